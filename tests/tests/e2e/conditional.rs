//! Seed 03: conditions on earlier results, `always`, and input placeholders in paths.

use serde_json::{Value as Json, json};

use crate::support::{Mock, Orca, Reply, seed, services, step};

const SERVICES: [&str; 3] = ["order-service", "discount-service", "payment-service"];

fn run_seed_03(mock: &Mock, input: &Json) -> (i32, Json) {
    mock.on(
        "/api/v1/discounts/apply",
        Reply::json(json!({"discount": 10})),
    );
    mock.on(
        "/api/v1/payments",
        Reply::json(json!({"payment_id": "p-1"})),
    );
    let orca = Orca::new();
    let mut args = vec![
        "run".to_string(),
        seed("03-ConditionalOrchestration.yaml"),
        "--input".to_string(),
        input.to_string(),
    ];
    args.extend(services(&mock.url, &SERVICES));
    let out = orca.run(&args);
    (out.code, out.json())
}

#[test]
fn seed_03_applies_the_discount_above_1000() {
    let mock = Mock::start();
    mock.on(
        "/api/v1/orders/o-7/amount",
        Reply::json(json!({"amount": 1500})),
    );
    let (code, ex) = run_seed_03(&mock, &json!({"id": "o-7"}));
    assert_eq!(code, 0, "{ex:#}");
    assert_eq!(ex["status"], "completed");
    assert_eq!(
        mock.paths(),
        [
            "/api/v1/orders/o-7/amount",
            "/api/v1/discounts/apply",
            "/api/v1/payments"
        ]
    );
    assert_eq!(step(&ex, "apply_discount")["status"], "completed");
    assert_eq!(
        step(&ex, "apply_discount")["result"],
        json!({"discount": 10})
    );
}

#[test]
fn seed_03_skips_the_discount_at_or_below_1000() {
    let mock = Mock::start();
    mock.on(
        "/api/v1/orders/o-8/amount",
        Reply::json(json!({"amount": 1000})),
    );
    let (code, ex) = run_seed_03(&mock, &json!({"id": "o-8"}));
    assert_eq!(code, 0, "{ex:#}");
    assert_eq!(ex["status"], "completed");
    assert_eq!(
        mock.paths(),
        ["/api/v1/orders/o-8/amount", "/api/v1/payments"],
        "the discount service must not be called"
    );
    assert_eq!(step(&ex, "apply_discount")["status"], "skipped");
    assert_eq!(step(&ex, "create_payment")["status"], "completed");
}

#[test]
fn path_placeholders_are_percent_encoded() {
    let mock = Mock::start();
    // A space and a slash must stay inside the one path segment.
    mock.on(
        "/api/v1/orders/o%207%2Fx/amount",
        Reply::json(json!({"amount": 5})),
    );
    let (code, ex) = run_seed_03(&mock, &json!({"id": "o 7/x"}));
    assert_eq!(code, 0, "{ex:#}");
    assert_eq!(mock.paths()[0], "/api/v1/orders/o%207%2Fx/amount");
    assert_eq!(step(&ex, "apply_discount")["status"], "skipped");
}
