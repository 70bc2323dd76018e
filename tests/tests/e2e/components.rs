//! Wasm components in workflows, through the `orca` binary: the README's mixed example (a
//! component step calling an API through the host, a component condition gating an HTTP step,
//! a component compensation) and a hostile guest stopped by its limit.

use std::path::PathBuf;

use serde_json::json;

use crate::support::{Mock, Orca, Reply, services, step};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/mixed-order.yaml");

/// Where `make guests` put the components (next to this test's target directory).
fn guests() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.ancestors().nth(3).unwrap().join("guests");
    assert!(
        dir.join("fraud-score.wasm").is_file(),
        "{}: build the guests first with `make guests`",
        dir.display()
    );
    dir
}

fn program(mock: &Mock) {
    mock.on("/api/v1/risk", Reply::json(json!({"risk": 0.1})));
    mock.on(
        "/api/v1/payments",
        Reply::json(json!({"payment_id": "pay-3"})),
    );
    mock.on(
        "/api/v1/payments/refund",
        Reply::json(json!({"refunded": true})),
    );
    mock.on(
        "/api/v1/shipping/priority",
        Reply::json(json!({"priority": true})),
    );
}

fn run_example(orca: &Orca, mock: &Mock, input: serde_json::Value) -> crate::support::Outcome {
    guests();
    let mut args = vec![
        "run".to_string(),
        EXAMPLE.to_string(),
        "--input".into(),
        input.to_string(),
    ];
    args.extend(services(
        &mock.url,
        &["payment-service", "shipping-service", "risk-service"],
    ));
    orca.run(&args)
}

#[test]
fn the_mixed_example_runs_components_and_http_steps_together() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/api/v1/shipping", Reply::json(json!({"tracking": "t-9"})));
    let orca = Orca::new();
    let out = run_example(&orca, &mock, json!({"order_id": "o-7", "amount": 2500}));
    out.expect_code(0);
    let ex = out.json();
    // The component called the risk API through the host, with the step's idempotency rule.
    let risk = mock.requests_to("/api/v1/risk");
    assert_eq!(risk.len(), 1);
    assert_eq!(risk[0].body, json!({"order_id": "o-7", "amount": 2500}));
    assert_eq!(
        risk[0].idempotency_key.as_deref(),
        Some(format!("{}:score:http:1", ex["id"].as_str().unwrap()).as_str())
    );
    assert_eq!(step(&ex, "score")["result"]["decision"], "approve");
    // 2500 > the use's threshold of 2000: the condition component let priority shipping run.
    assert_eq!(mock.requests_to("/api/v1/shipping/priority").len(), 1);
    assert_eq!(step(&ex, "priority_shipping")["status"], "completed");
    assert_eq!(
        mock.paths(),
        [
            "/api/v1/risk",
            "/api/v1/payments",
            "/api/v1/shipping/priority",
            "/api/v1/shipping"
        ]
    );
    let summary = &step(&ex, "summary")["result"];
    assert_eq!(summary["payment_id"], "pay-3");
    assert_eq!(summary["tracking"], "t-9");
    assert_eq!(
        summary["steps"],
        json!(["create_payment", "priority_shipping", "score", "ship_order"])
    );
    // The stored record, whose component requests carry the earlier results, loads again.
    let shown = orca.run(&["executions", "show", ex["id"].as_str().unwrap()]);
    shown.expect_code(0);
    let stored = shown.json();
    assert_eq!(stored["status"], "completed");
    assert_eq!(step(&stored, "summary")["result"], *summary);
}

#[test]
fn a_failing_step_is_undone_by_the_refund_component() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/api/v1/shipping", Reply::status(503));
    let orca = Orca::new();
    let out = run_example(&orca, &mock, json!({"order_id": "o-8", "amount": 500}));
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "compensated", "{ex:#}");
    assert_eq!(
        step(&ex, "priority_shipping")["status"],
        "skipped",
        "500 is under the threshold"
    );
    assert_eq!(
        mock.requests_to("/api/v1/shipping").len(),
        2,
        "one retry on 503"
    );
    let refunds = mock.requests_to("/api/v1/payments/refund");
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].body, json!({"payment_id": "pay-3"}));
    assert_eq!(ex["compensations"][0]["name"], "refund");
    assert_eq!(ex["compensations"][0]["status"], "completed");
}

#[test]
fn a_guest_that_loops_is_stopped_at_its_deadline_and_the_run_compensates() {
    let mock = Mock::start();
    mock.on("/reserve", Reply::json(json!({"id": "r-1"})));
    mock.on("/release", Reply::json(json!({})));
    let orca = Orca::new();
    let workflow = orca.write(
        "loop.yaml",
        &format!(
            r#"apiVersion: orca.dev/v1
kind: Component
metadata: {{name: spinner}}
spec:
  source: {}
  limits: {{deadline: 300ms}}
---
apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata: {{name: looping}}
spec:
  steps:
    - name: reserve
      api: inventory
      endpoint: /reserve
      compensation: {{api: inventory, endpoint: /release}}
    - name: spin
      component: spinner
"#,
            guests().join("hostile-loop.wasm").display()
        ),
    );
    let mut args = vec!["run".to_string(), workflow];
    args.extend(services(&mock.url, &["inventory"]));
    let started = std::time::Instant::now();
    let out = orca.run(&args);
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "compensated");
    let error = step(&ex, "spin")["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("spinner") && error.contains("300ms deadline"),
        "{error}"
    );
    assert_eq!(mock.requests_to("/release").len(), 1);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn a_component_source_that_is_not_a_component_is_a_load_error() {
    let orca = Orca::new();
    orca.write("bogus.wasm", "not wasm at all");
    let workflow = orca.write(
        "bad.yaml",
        "apiVersion: orca.dev/v1\nkind: Component\nmetadata: {name: bogus}\nspec:\n  source: bogus.wasm\n---\napiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata: {name: w}\nspec:\n  steps:\n    - {name: a, component: bogus}\n",
    );
    let out = orca.run(&["run", &workflow]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("bad.yaml:5:11") && out.stderr.contains("bogus"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_logs_carry_the_execution_step_and_component_of_a_guest_log_line() {
    let mock = Mock::start();
    program(&mock);
    mock.on("/api/v1/shipping", Reply::json(json!({"tracking": "t-1"})));
    guests();
    let orca = Orca::new();
    let mut args = vec![
        "--log-format".to_string(),
        "json".into(),
        "run".into(),
        EXAMPLE.to_string(),
        "--input".into(),
        json!({"order_id": "o-5", "amount": 100}).to_string(),
    ];
    args.extend(services(
        &mock.url,
        &["payment-service", "shipping-service", "risk-service"],
    ));
    let out = orca.run_env(&args, &[("ORCA_LOG", "info")]);
    out.expect_code(0);
    let id = out.json()["id"].as_str().unwrap().to_string();
    let line = out
        .stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("every log line is JSON"))
        .find(|l| l["fields"]["message"] == "scored order o-5")
        .unwrap_or_else(|| panic!("no guest log line in:\n{}", out.stderr));
    let spans: Vec<&str> = line["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(spans, ["execution", "attempt", "wasm_invocation"]);
    assert_eq!(line["span"]["execution"], id.as_str());
    assert_eq!(line["span"]["component"], "fraud-score");
    assert_eq!(line["span"]["step"], "score");
}
