//! Step timeouts and the response size limit.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Mock, Orca, Reply, attempts, services, step};

fn one_step(timeout: Option<&str>) -> String {
    let timeout = timeout.map_or(String::new(), |t| format!("      timeout: {t}\n"));
    format!(
        "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: limits\nspec:\n  steps:\n    - name: slow\n      api: svc\n      endpoint: /slow\n{timeout}    - name: after\n      api: svc\n      endpoint: /after\n"
    )
}

#[test]
fn a_step_timeout_fails_the_execution() {
    let mock = Mock::start();
    mock.on(
        "/slow",
        Reply::json(json!({"late": true})).delay(Duration::from_secs(2)),
    );
    mock.on("/after", Reply::json(json!({})));
    let orca = Orca::new();
    let workflow = orca.write("timeout.yaml", &one_step(Some("200ms")));
    let mut args = vec!["run".to_string(), workflow];
    args.extend(services(&mock.url, &["svc"]));
    let started = Instant::now();
    let out = orca.run(&args);
    let elapsed = started.elapsed();
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "failed");
    let slow = step(&ex, "slow");
    assert_eq!(slow["status"], "failed");
    assert_eq!(
        attempts(slow),
        1,
        "a timeout is not retried without a policy"
    );
    let error = slow["error"].as_str().expect("an error");
    assert!(
        error.contains("timed out") || error.contains("timeout"),
        "{error}"
    );
    assert!(
        error.contains("200ms"),
        "the error names the limit: {error}"
    );
    assert!(
        elapsed < Duration::from_millis(1800),
        "orca waited for the slow answer: {elapsed:?}"
    );
    assert!(mock.requests_to("/after").is_empty());
}

#[test]
fn a_response_over_max_body_bytes_fails_the_step() {
    let mock = Mock::start();
    let big = "x".repeat(2000);
    mock.on("/slow", Reply::json(json!({ "data": big })));
    mock.on("/after", Reply::json(json!({})));
    let orca = Orca::new();
    let workflow = orca.write("big.yaml", &one_step(None));
    let mut args = vec![
        "run".to_string(),
        workflow,
        "--max-body-bytes".to_string(),
        "1000".to_string(),
    ];
    args.extend(services(&mock.url, &["svc"]));
    let out = orca.run(&args);
    out.expect_code(1);
    let ex = out.json();
    assert_eq!(ex["status"], "failed");
    let slow = step(&ex, "slow");
    assert_eq!(slow["status"], "failed");
    let error = slow["error"].as_str().expect("an error");
    assert!(error.contains("1000"), "the error names the limit: {error}");
    assert!(mock.requests_to("/after").is_empty());

    // The same body within the limit is fine.
    let mut args = vec!["run".to_string(), orca.write("big2.yaml", &one_step(None))];
    args.extend(services(&mock.url, &["svc"]));
    args.extend(["--max-body-bytes".to_string(), "3000".to_string()]);
    orca.run(&args).expect_code(0);
}
