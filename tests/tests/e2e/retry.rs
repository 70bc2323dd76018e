//! Seed 05: a RetryPolicy loaded with a workflow retries the listed statuses only.

use std::time::Duration;

use serde_json::json;

use crate::support::{Mock, Orca, Reply, attempts, seed, services, step};

const SERVICES: [&str; 3] = ["order-service", "inventory-service", "payment-service"];

fn program(mock: &Mock) {
    mock.on(
        "/api/v1/orders/validate",
        Reply::json(json!({"valid": true})),
    );
    mock.on(
        "/api/v1/inventory/check",
        Reply::json(json!({"in_stock": true})),
    );
    mock.on(
        "/api/v1/payments",
        Reply::json(json!({"payment_id": "pay-5"})),
    );
}

fn run(mock: &Mock) -> crate::support::Outcome {
    let mut args = vec![
        "run".to_string(),
        seed("01-SequentialOrchestration.yaml"),
        seed("05-RetryPolicy.yaml"),
    ];
    args.extend(services(&mock.url, &SERVICES));
    Orca::new().run(&args)
}

#[test]
fn seed_05_retries_503_with_backoff_until_it_succeeds() {
    let mock = Mock::start();
    program(&mock);
    mock.script(
        "/api/v1/inventory/check",
        vec![Reply::status(503), Reply::status(503)],
    );
    let out = run(&mock);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["status"], "completed");
    let inventory = step(&ex, "check_inventory");
    assert_eq!(inventory["status"], "completed");
    assert_eq!(attempts(inventory), 3, "{inventory:#}");
    assert_eq!(inventory["attempts"][2]["status"], 200);
    assert_eq!(ex["api_calls"], 5);

    let calls = mock.requests_to("/api/v1/inventory/check");
    assert_eq!(calls.len(), 3);
    let key = calls[0]
        .idempotency_key
        .clone()
        .expect("an idempotency key");
    assert!(
        calls
            .iter()
            .all(|c| c.idempotency_key.as_ref() == Some(&key)),
        "every attempt carries the same key: {calls:?}"
    );
    // initialDelay 1s, multiplier 2, jitter at most 20%: >= 0.8 s, then >= 1.6 s.
    let first_gap = calls[1].at - calls[0].at;
    let second_gap = calls[2].at - calls[1].at;
    assert!(first_gap >= Duration::from_millis(790), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(1590), "{second_gap:?}");
    assert!(second_gap > first_gap, "{first_gap:?} then {second_gap:?}");
    assert_eq!(mock.requests_to("/api/v1/payments").len(), 1);
}

#[test]
fn seed_05_does_not_retry_a_404() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/api/v1/inventory/check", Reply::status(404));
    let out = run(&mock);
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "failed");
    let inventory = step(&ex, "check_inventory");
    assert_eq!(inventory["status"], "failed");
    assert_eq!(attempts(inventory), 1, "{inventory:#}");
    assert_eq!(mock.requests_to("/api/v1/inventory/check").len(), 1);
    assert!(mock.requests_to("/api/v1/payments").is_empty());
    assert!(
        ex["error"].as_str().is_some_and(|e| e.contains("404")),
        "{}",
        ex["error"]
    );
}

#[test]
fn retry_after_is_honoured() {
    let mock = Mock::start();
    program(&mock);
    // The policy would wait 10 ms; the service asks for 1 s.
    mock.script(
        "/api/v1/inventory/check",
        vec![Reply::status(503).with_header("retry-after", "1")],
    );
    let orca = Orca::new();
    let workflow = orca.write(
        "retry-after.yaml",
        r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: retry-after
spec:
  retry:
    maxRetries: 2
    backoff: {initialDelay: 10ms, maxDelay: 50ms, multiplier: 2}
    retryableErrors: ["503"]
  steps:
    - name: check_inventory
      api: inventory-service
      endpoint: /api/v1/inventory/check
"#,
    );
    let mut args = vec!["run".to_string(), workflow];
    args.extend(services(&mock.url, &["inventory-service"]));
    let out = orca.run(&args);
    out.expect_code(0);
    let calls = mock.requests_to("/api/v1/inventory/check");
    assert_eq!(calls.len(), 2);
    let gap = calls[1].at - calls[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
}
