//! Seed 01 (sequential) and the ways of binding services.

use serde_json::json;

use crate::support::{Mock, Orca, Reply, execution_id, seed, services, step};

const SERVICES: [&str; 3] = ["order-service", "inventory-service", "payment-service"];

fn program(mock: &Mock) {
    mock.on(
        "/api/v1/orders/validate",
        Reply::json(json!({"valid": true, "order_id": "o-1"})),
    );
    mock.on(
        "/api/v1/inventory/check",
        Reply::json(json!({"in_stock": true, "units": 3})),
    );
    mock.on(
        "/api/v1/payments",
        Reply::json(json!({"payment_id": "pay-7", "status": "captured"})),
    );
}

#[test]
fn seed_01_calls_validate_inventory_payment_in_order() {
    let mock = Mock::start();
    program(&mock);
    let orca = Orca::new();
    let input = json!({"order_id": "o-1", "amount": 42, "items": ["a", "b"]});
    let mut args = vec![
        "run".to_string(),
        seed("01-SequentialOrchestration.yaml"),
        "--input".to_string(),
        input.to_string(),
    ];
    args.extend(services(&mock.url, &SERVICES));
    let out = orca.run(&args);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["status"], "completed");
    assert_eq!(ex["workflow"], "order-processing-orchestration");
    assert_eq!(ex["input"], input);
    assert_eq!(ex["api_calls"], 3);
    let id = ex["id"].as_str().expect("an id").to_string();
    assert_eq!(
        execution_id(out.stderr.lines().next().expect("a progress line")),
        id
    );

    let requests = mock.requests();
    let seen: Vec<(&str, &str)> = requests
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("POST", "/api/v1/orders/validate"),
            ("POST", "/api/v1/inventory/check"),
            ("POST", "/api/v1/payments"),
        ]
    );
    for (request, name) in
        requests
            .iter()
            .zip(["validate_order", "check_inventory", "create_payment"])
    {
        assert_eq!(
            request.idempotency_key.as_deref(),
            Some(format!("{id}:{name}").as_str())
        );
        assert_eq!(request.body, input, "the body is the execution input");
        assert!(
            request
                .content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/json")),
            "content-type: {:?}",
            request.content_type
        );
    }

    assert_eq!(
        ex["output"],
        json!({
            "validate_order": {"valid": true, "order_id": "o-1"},
            "check_inventory": {"in_stock": true, "units": 3},
            "create_payment": {"payment_id": "pay-7", "status": "captured"},
        })
    );
    let payment = step(&ex, "create_payment");
    assert_eq!(payment["status"], "completed");
    assert_eq!(payment["result"]["payment_id"], "pay-7");
}

#[test]
fn a_failing_step_stops_the_run() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/api/v1/inventory/check", Reply::status(500));
    let orca = Orca::new();
    let mut args = vec!["run".to_string(), seed("01-SequentialOrchestration.yaml")];
    args.extend(services(&mock.url, &SERVICES));
    let out = orca.run(&args);
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "failed");
    assert_eq!(step(&ex, "check_inventory")["status"], "failed");
    assert_eq!(step(&ex, "create_payment")["status"], "pending");
    assert!(mock.requests_to("/api/v1/payments").is_empty());
    let error = ex["error"].as_str().expect("an error message");
    assert!(
        error.contains("check_inventory") && error.contains("500"),
        "{error}"
    );
}

#[test]
fn services_come_from_env_and_services_documents() {
    let mock = Mock::start();
    program(&mock);
    let orca = Orca::new();
    // order-service from a Services document, the other two from the environment; the
    // document's entry for payment-service points nowhere and must lose to the environment.
    let doc = orca.write(
        "services.yaml",
        &format!(
            "apiVersion: orca.dev/v1\nkind: Services\nmetadata:\n  name: local\nspec:\n  services:\n    order-service: \"{}\"\n    payment-service: \"http://127.0.0.1:9\"\n",
            mock.url
        ),
    );
    let out = orca.run_env(
        &[
            "run".to_string(),
            seed("01-SequentialOrchestration.yaml"),
            doc,
        ],
        &[
            ("ORCA_SERVICE_INVENTORY_SERVICE", mock.url.as_str()),
            ("ORCA_SERVICE_PAYMENT_SERVICE", mock.url.as_str()),
        ],
    );
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["services"]["order-service"], mock.url.as_str());
    assert_eq!(ex["services"]["payment-service"], mock.url.as_str());
    assert_eq!(mock.requests().len(), 3);
}
