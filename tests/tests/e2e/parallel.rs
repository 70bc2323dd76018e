//! Seed 02: `parallel: true` steps run at the same time.

use std::time::Duration;

use serde_json::json;

use crate::support::{Barrier, Mock, Orca, Reply, seed, services, step};

#[test]
fn seed_02_parallel_steps_overlap() {
    let mock = Mock::start();
    // Neither parallel endpoint answers before both requests have arrived: if the runtime
    // ran them one after the other, the first would time out at the barrier with a 500.
    let both = Barrier::new(2, Duration::from_secs(5));
    mock.on(
        "/api/v1/orders/validate",
        Reply::json(json!({"valid": true})),
    );
    mock.on(
        "/api/v1/inventory/check",
        Reply::json(json!({"in_stock": true})).barrier(&both),
    );
    mock.on(
        "/api/v1/payment-methods/check",
        Reply::json(json!({"accepted": true})).barrier(&both),
    );
    let orca = Orca::new();
    let mut args = vec!["run".to_string(), seed("02-ParallelOrchestration.yaml")];
    args.extend(services(
        &mock.url,
        &["order-service", "inventory-service", "payment-service"],
    ));
    let out = orca.run(&args);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["status"], "completed");
    assert_eq!(
        step(&ex, "check_inventory")["result"],
        json!({"in_stock": true})
    );
    assert_eq!(
        step(&ex, "check_payment_method")["result"],
        json!({"accepted": true})
    );

    let paths = mock.paths();
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert_eq!(paths[0], "/api/v1/orders/validate", "validate runs first");
    let mut rest = paths[1..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        ["/api/v1/inventory/check", "/api/v1/payment-methods/check"]
    );
}
