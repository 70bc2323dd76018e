//! Crash and resume: a killed `orca` leaves its execution `running`; `orca resume` finishes it
//! without calling completed steps again.

use std::time::Duration;

use serde_json::json;

use crate::support::{Gate, Mock, Orca, Reply, execution_id, services, step};

const THREE_STEPS: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: three-steps
spec:
  steps:
    - name: first
      api: svc
      endpoint: /first
    - name: second
      api: svc
      endpoint: /second
    - name: third
      api: svc
      endpoint: /third
"#;

#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let mock = Mock::start();
    let gate = Gate::new();
    mock.on("/first", Reply::json(json!({"n": 1})));
    mock.on("/second", Reply::json(json!({"n": 2})).gate(&gate));
    mock.on("/third", Reply::json(json!({"n": 3})));
    let orca = Orca::new();
    let workflow = orca.write("three.yaml", THREE_STEPS);
    let mut args = vec![
        "run".to_string(),
        workflow,
        "--input".to_string(),
        json!({"k": "v"}).to_string(),
    ];
    args.extend(services(&mock.url, &["svc"]));

    let mut running = orca.spawn(&args);
    let id = execution_id(&running.next_line(Duration::from_secs(10)));
    let arrived = mock.wait_until(Duration::from_secs(10), |r| {
        r.iter().any(|r| r.path == "/second")
    });
    if !arrived {
        let _ = running.child.kill();
        panic!("the second step never reached the mock: {:?}", mock.paths());
    }
    running.child.kill().expect("SIGKILL orca");
    running.child.wait().expect("reap orca");
    gate.release();

    let listed = orca.run(&["executions", "list", "--status", "running"]);
    listed.expect_code(0);
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);

    let out = orca.run(&["resume", &id]);
    out.expect_code(0);
    let ex = out.json();
    assert_eq!(ex["id"], id.as_str());
    assert_eq!(ex["status"], "completed");
    assert_eq!(ex["resumes"], 1);
    assert_eq!(step(&ex, "third")["result"], json!({"n": 3}));

    assert_eq!(mock.paths(), ["/first", "/second", "/second", "/third"]);
    let second = mock.requests_to("/second");
    let key = format!("{id}:second");
    assert_eq!(second[0].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(second[1].idempotency_key.as_deref(), Some(key.as_str()));
    assert_eq!(second[1].body, json!({"k": "v"}));

    let shown = orca.run(&["executions", "show", &id]);
    shown.expect_code(0);
    assert_eq!(shown.json()["status"], "completed");
}

#[test]
fn resuming_a_completed_execution_is_refused() {
    let mock = Mock::start();
    mock.on("/first", Reply::json(json!({"n": 1})));
    mock.on("/second", Reply::json(json!({"n": 2})));
    mock.on("/third", Reply::json(json!({"n": 3})));
    let orca = Orca::new();
    let workflow = orca.write("three.yaml", THREE_STEPS);
    let mut args = vec!["run".to_string(), workflow];
    args.extend(services(&mock.url, &["svc"]));
    let run = orca.run(&args);
    run.expect_code(0);
    let id = run.json()["id"].as_str().expect("an id").to_string();

    let out = orca.run(&["resume", &id]);
    out.expect_code(2);
    assert!(out.stderr.contains("not running"), "{}", out.stderr);
    assert!(out.stderr.contains(&id), "{}", out.stderr);
    assert_eq!(mock.requests().len(), 3, "nothing is called again");
}

#[test]
fn resuming_an_unknown_execution_is_refused() {
    let orca = Orca::new();
    let out = orca.run(&["resume", "no-such-execution"]);
    out.expect_code(2);
    assert!(out.stderr.contains("no-such-execution"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
