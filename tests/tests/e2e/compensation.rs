//! Sagas: when a step fails, the completed steps' compensations run in reverse order.

use serde_json::json;

use crate::support::{Mock, Orca, Reply, attempts, services, step};

const SAGA: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: saga
spec:
  steps:
    - name: reserve
      api: inventory-service
      endpoint: /reserve
      compensation:
        name: release
        api: inventory-service
        endpoint: /release
    - name: charge
      api: payment-service
      endpoint: /charge
      compensation:
        name: refund
        api: payment-service
        endpoint: /refund
        method: POST
        body:
          payment_id: "${charge.payment_id}"
    - name: notify
      api: notification-service
      endpoint: /notify
    - name: ship
      api: shipping-service
      endpoint: /ship
"#;

fn run_saga(mock: &Mock) -> (crate::support::Outcome, serde_json::Value) {
    let orca = Orca::new();
    let workflow = orca.write("saga.yaml", SAGA);
    let mut args = vec![
        "run".to_string(),
        workflow,
        "--input".to_string(),
        json!({"order_id": "o-9"}).to_string(),
    ];
    args.extend(services(
        &mock.url,
        &[
            "inventory-service",
            "payment-service",
            "notification-service",
            "shipping-service",
        ],
    ));
    let out = orca.run(&args);
    let ex = out.json();
    (out, ex)
}

fn program(mock: &Mock) {
    mock.on("/reserve", Reply::json(json!({"reservation": "r-1"})));
    mock.on("/charge", Reply::json(json!({"payment_id": "pay-9"})));
    mock.on("/notify", Reply::json(json!({"sent": true})));
    mock.on("/ship", Reply::status(500));
    mock.on("/refund", Reply::json(json!({"refunded": true})));
    mock.on("/release", Reply::json(json!({"released": true})));
}

#[test]
fn a_failed_step_compensates_completed_steps_in_reverse_order() {
    let mock = Mock::start();
    program(&mock);
    let (out, ex) = run_saga(&mock);
    out.expect_code(1);
    assert_eq!(ex["status"], "compensated");
    let id = ex["id"].as_str().expect("an id");
    assert_eq!(
        mock.paths(),
        [
            "/reserve", "/charge", "/notify", "/ship", "/refund", "/release"
        ]
    );
    let refund = &mock.requests_to("/refund")[0];
    assert_eq!(
        refund.idempotency_key.as_deref(),
        Some(format!("{id}:charge:compensate").as_str())
    );
    assert_eq!(refund.body, json!({"payment_id": "pay-9"}));
    let release = &mock.requests_to("/release")[0];
    assert_eq!(
        release.idempotency_key.as_deref(),
        Some(format!("{id}:reserve:compensate").as_str())
    );
    assert_eq!(
        release.body,
        json!({"order_id": "o-9"}),
        "without `body:` a compensation sends the execution input"
    );

    let compensations = ex["compensations"].as_array().expect("a list");
    let summary: Vec<(&str, &str, &str)> = compensations
        .iter()
        .map(|c| {
            (
                c["step"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?"),
                c["status"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("charge", "refund", "completed"),
            ("reserve", "release", "completed")
        ]
    );
    assert_eq!(step(&ex, "ship")["status"], "failed");
    assert_eq!(step(&ex, "charge")["status"], "completed");
}

#[test]
fn a_failing_compensation_ends_compensation_failed() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/refund", Reply::status(500));
    let (out, ex) = run_saga(&mock);
    out.expect_code(1);
    assert_eq!(ex["status"], "compensation_failed");
    let refund = ex["compensations"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|c| c["step"] == "charge")
        .expect("the refund is recorded");
    assert_eq!(refund["status"], "failed");
    assert!(attempts(refund) >= 1);
    assert!(!mock.requests_to("/refund").is_empty());
}
