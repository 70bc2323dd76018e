//! `orca validate` and `orca graph` on the specification's own examples.

use crate::support::{Orca, SEEDS, seed};

#[test]
fn every_seed_example_validates() {
    let mut seeds: Vec<_> = std::fs::read_dir(SEEDS)
        .unwrap_or_else(|e| panic!("cannot read {SEEDS}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    seeds.sort();
    assert_eq!(
        seeds.len(),
        7,
        "expected the 7 seed examples, found {seeds:?}"
    );
    let orca = Orca::new();
    for path in &seeds {
        let out = orca.run(&[std::ffi::OsStr::new("validate"), path.as_os_str()]);
        out.expect_code(0);
        assert!(
            out.stdout.contains(&format!("ok: {}", path.display())),
            "validate should report the file: {}",
            out.stdout
        );
    }
}

#[test]
fn all_seed_examples_validate_together() {
    let orca = Orca::new();
    let mut args = vec!["validate".to_string()];
    for n in [
        "01-SequentialOrchestration.yaml",
        "02-ParallelOrchestration.yaml",
        "03-ConditionalOrchestration.yaml",
        "04-WorkflowDefinition.yaml",
        "05-RetryPolicy.yaml",
        "06-StateStore.yaml",
        "07-PrometheusRule.yaml",
    ] {
        args.push(seed(n));
    }
    let out = orca.run(&args);
    out.expect_code(0);
    assert_eq!(out.stdout.lines().count(), 7, "{}", out.stdout);
}

#[test]
fn the_demo_workflow_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/order-saga.yaml");
    let out = Orca::new().run(&["validate", path]);
    out.expect_code(0);
    assert!(
        out.stdout.contains("SequentialOrchestration order-saga"),
        "{}",
        out.stdout
    );
}

#[test]
fn graph_of_seed_02_forks_after_validate_order() {
    let out = Orca::new().run(&["graph".to_string(), seed("02-ParallelOrchestration.yaml")]);
    out.expect_code(0);
    assert!(
        out.stdout.starts_with("flowchart TD\n"),
        "not a Mermaid flowchart:\n{}",
        out.stdout
    );
    // Each step is a node `ID["name…`; find the ids to check the edges between them.
    let node = |name: &str| {
        out.stdout
            .lines()
            .map(str::trim)
            .find_map(|l| {
                let (id, rest) = l.split_once("[\"")?;
                rest.starts_with(name).then(|| id.to_string())
            })
            .unwrap_or_else(|| panic!("no node for `{name}` in:\n{}", out.stdout))
    };
    let validate = node("validate_order");
    let inventory = node("check_inventory");
    let payment = node("check_payment_method");
    let edges: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    for to in [&inventory, &payment] {
        let edge = format!("{validate} --> {to}");
        assert!(
            edges.contains(&edge.as_str()),
            "missing `{edge}` in:\n{}",
            out.stdout
        );
    }
    assert!(
        !edges.contains(&format!("{inventory} --> {payment}").as_str()),
        "the parallel steps must not depend on each other:\n{}",
        out.stdout
    );
}
