//! `orca executions list|show` over the store the runs wrote.

use serde_json::json;

use crate::support::{Mock, Orca, Reply, services};

#[test]
fn list_and_show_report_stored_executions() {
    let mock = Mock::start();
    mock.on("/ok", Reply::json(json!({"fine": true})));
    mock.on("/bad", Reply::status(400));
    let orca = Orca::new();
    let workflow = |name: &str, path: &str| {
        orca.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: {name}\nspec:\n  steps:\n    - name: only\n      api: svc\n      endpoint: {path}\n"
            ),
        )
    };
    let good = workflow("good", "/ok");
    let bad = workflow("bad", "/bad");
    let run = |file: &str| {
        let mut args = vec!["run".to_string(), file.to_string()];
        args.extend(services(&mock.url, &["svc"]));
        let out = orca.run(&args);
        out.json()["id"].as_str().expect("an id").to_string()
    };
    let good_id = run(&good);
    let bad_id = run(&bad);

    let all = orca.run(&["executions", "list"]);
    all.expect_code(0);
    let row = |id: &str| {
        all.stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", all.stdout))
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
    };
    assert_eq!(row(&good_id), [good_id.as_str(), "good", "completed"]);
    assert_eq!(row(&bad_id), [bad_id.as_str(), "bad", "failed"]);

    let failed = orca.run(&["executions", "list", "--status", "failed"]);
    failed.expect_code(0);
    assert!(failed.stdout.contains(&bad_id) && !failed.stdout.contains(&good_id));
    let by_workflow = orca.run(&["executions", "list", "--workflow", "good"]);
    assert!(by_workflow.stdout.contains(&good_id) && !by_workflow.stdout.contains(&bad_id));

    let shown = orca.run(&["executions", "show", &good_id]);
    shown.expect_code(0);
    let ex = shown.json();
    assert_eq!(ex["id"], good_id.as_str());
    assert_eq!(ex["status"], "completed");
    assert_eq!(ex["output"], json!({"only": {"fine": true}}));

    let missing = orca.run(&["executions", "show", "nope"]);
    missing.expect_code(2);
}
