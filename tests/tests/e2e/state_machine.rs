//! Seed 04: a WorkflowDefinition state machine whose resources are services.

use serde_json::json;

use crate::support::{Mock, Orca, Reply, seed, step};

#[test]
fn seed_04_posts_to_each_service_in_state_order() {
    // One mock per service, so each sees only its own state's request.
    let order = Mock::start();
    let inventory = Mock::start();
    let payment = Mock::start();
    order.on("/", Reply::json(json!({"valid": true})));
    inventory.on("/", Reply::json(json!({"in_stock": true})));
    payment.on("/", Reply::json(json!({"payment_id": "pay-4"})));
    let orca = Orca::new();
    let input = json!({"order_id": "o-4"});
    let out = orca.run(&[
        "run".to_string(),
        seed("04-WorkflowDefinition.yaml"),
        "--input".to_string(),
        input.to_string(),
        "--service".to_string(),
        format!("order-service={}", order.url),
        "--service".to_string(),
        format!("inventory-service={}", inventory.url),
        "--service".to_string(),
        format!("payment-service={}", payment.url),
    ]);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["status"], "completed");
    assert_eq!(ex["workflow"], "order-processing-workflow");
    let id = ex["id"].as_str().expect("an id");

    let mut seqs = Vec::new();
    for (mock, state) in [
        (&order, "validate_order"),
        (&inventory, "check_inventory"),
        (&payment, "create_payment"),
    ] {
        let requests = mock.requests();
        assert_eq!(requests.len(), 1, "{state}: {requests:?}");
        let r = &requests[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/"),
            "{state}"
        );
        assert_eq!(
            r.idempotency_key.as_deref(),
            Some(format!("{id}:{state}").as_str())
        );
        assert_eq!(r.body, input);
        seqs.push(r.seq);
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "states ran out of order: {seqs:?}"
    );
    assert_eq!(
        step(&ex, "create_payment")["result"],
        json!({"payment_id": "pay-4"})
    );
}
