//! The demo: `examples/order-saga.yaml` against `orca-mock`, the example services.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

use crate::support::{Orca, services, step};

const SAGA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/order-saga.yaml");
const SERVICES: [&str; 5] = [
    "order-service",
    "inventory-service",
    "payment-service",
    "discount-service",
    "shipping-service",
];

/// `orca-mock` on a free port; killed when dropped.
struct MockProcess {
    child: Child,
    url: String,
}

impl MockProcess {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orca-mock"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("orca-mock starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("orca-mock prints its address");
        let url = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        MockProcess { child, url }
    }
}

impl Drop for MockProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_order_saga_completes_against_the_example_services() {
    let mock = MockProcess::start();
    let orca = Orca::new();
    let mut args = vec![
        "run".to_string(),
        SAGA.to_string(),
        "--input".to_string(),
        json!({"order_id": "o-42", "amount": 1500}).to_string(),
    ];
    args.extend(services(&mock.url, &SERVICES));
    let out = orca.run(&args);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["status"], "completed");
    assert_eq!(
        ex["output"],
        json!({"order": "o-42", "payment": "pay-1", "tracking": "t-1"})
    );
    assert_eq!(
        step(&ex, "apply_discount")["result"],
        json!({"discount": 10})
    );
    assert_eq!(ex["api_calls"], 6);
}

#[test]
fn the_order_saga_refunds_when_shipping_fails() {
    let mock = MockProcess::start();
    let orca = Orca::new();
    let mut args = vec![
        "run".to_string(),
        SAGA.to_string(),
        "--input".to_string(),
        json!({"order_id": "o-43", "amount": 700, "fail_shipping": true}).to_string(),
    ];
    args.extend(services(&mock.url, &SERVICES));
    let out = orca.run(&args);
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "compensated");
    assert_eq!(step(&ex, "apply_discount")["status"], "skipped");
    let ship = step(&ex, "ship_order");
    assert_eq!(ship["status"], "failed");
    assert_eq!(ship["attempts"].as_array().map(Vec::len), Some(3));
    let compensations = ex["compensations"].as_array().expect("a list");
    assert_eq!(compensations.len(), 1, "{compensations:?}");
    assert_eq!(compensations[0]["step"], "create_payment");
    assert_eq!(compensations[0]["name"], "refund");
    assert_eq!(compensations[0]["status"], "completed");
}

#[cfg(unix)]
#[test]
fn orca_mock_stops_on_sigterm() {
    let mut mock = MockProcess::start();
    let status = Command::new("kill")
        .args(["-TERM", &mock.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(status) = mock.child.try_wait().expect("waiting for orca-mock") {
            assert!(status.success(), "orca-mock exited with {status}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "orca-mock ignored SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
