//! How each orchestration shape compiles into nodes and joins.

use super::*;
use crate::definition::Source;

fn compile_yaml(yaml: &str) -> Result<Plan, LoadError> {
    let set = DefinitionSet::load(vec![Source {
        name: "wf.yaml".into(),
        text: yaml.into(),
    }])?;
    compile(&set, None)
}

fn deps(plan: &Plan, name: &str) -> Vec<String> {
    match &plan.node(plan.find(name).unwrap()).join {
        Join::AllOf(groups) => groups
            .iter()
            .flatten()
            .map(|&d| plan.node(d).name.to_string())
            .collect(),
        Join::Any => vec!["<any>".into()],
    }
}

const HEADER: &str = "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata: {name: wf}\nspec:\n  steps:\n";

fn steps(body: &str) -> String {
    format!("{HEADER}{body}")
}

#[test]
fn order_implies_edges_and_parallel_groups_fork_and_join() {
    let plan = compile_yaml(&steps(
        "    - {name: a, api: s}\n    - {name: b, api: s, parallel: true}\n    - {name: c, api: s, parallel: true}\n    - {name: d, api: s}\n    - {name: e, api: s}\n",
    ))
    .unwrap();
    assert_eq!(plan.roots, [0]);
    assert!(deps(&plan, "a").is_empty());
    assert_eq!(deps(&plan, "b"), ["a"]);
    assert_eq!(deps(&plan, "c"), ["a"]);
    assert_eq!(deps(&plan, "d"), ["b", "c"]);
    assert_eq!(deps(&plan, "e"), ["d"]);
}

#[test]
fn depends_on_replaces_the_implicit_edge_and_makes_a_dag() {
    let plan = compile_yaml(&steps(
        "    - {name: a, api: s}\n    - {name: b, api: s, dependsOn: []}\n    - {name: c, api: s, dependsOn: [a]}\n    - {name: d, api: s, dependsOn: [b, c]}\n",
    ))
    .unwrap();
    assert_eq!(
        deps(&plan, "b"),
        ["a"],
        "an empty dependsOn keeps the order"
    );
    let plan = compile_yaml(&steps(
        "    - {name: a, api: s}\n    - {name: b, api: s}\n    - {name: c, api: s, dependsOn: [a]}\n    - {name: d, api: s, dependsOn: [b, c]}\n",
    ))
    .unwrap();
    assert_eq!(deps(&plan, "c"), ["a"]);
    assert_eq!(deps(&plan, "d"), ["b", "c"]);
    assert_eq!(plan.node(0).next, [1, 2]);
}

#[test]
fn a_forward_dependency_that_closes_a_loop_is_a_cycle() {
    let err = compile_yaml(&steps(
        "    - {name: a, api: s, dependsOn: [c]}\n    - {name: b, api: s}\n    - {name: c, api: s}\n",
    ))
    .unwrap_err();
    assert!(err.message.contains("cycle: a -> c -> b -> a"), "{err}");
    assert_eq!(err.line, 6);
}

#[test]
fn a_sole_retry_policy_loaded_alongside_is_the_default_and_a_named_one_wins() {
    let policy = |name: &str, retries: u32| {
        format!(
            "---\napiVersion: orca.dev/v1\nkind: RetryPolicy\nmetadata: {{name: {name}}}\nspec: {{maxRetries: {retries}}}\n"
        )
    };
    let wf = steps("    - {name: a, api: s}\n    - {name: b, api: s, retryPolicy: many}\n");
    let set = DefinitionSet::load(vec![Source {
        name: "wf.yaml".into(),
        text: format!("{wf}{}", policy("one", 1)),
    }])
    .unwrap();
    let plan = compile(&set, None).unwrap_err();
    assert!(
        plan.message.contains("unknown retry policy `many`"),
        "{plan}"
    );

    let set = DefinitionSet::load(vec![Source {
        name: "wf.yaml".into(),
        text: format!("{wf}{}{}", policy("one", 1), policy("many", 5)),
    }])
    .unwrap();
    let plan = compile(&set, None).unwrap();
    assert_eq!(
        plan.node(0).retry.max_retries,
        0,
        "two policies loaded: no implicit default"
    );
    assert_eq!(plan.node(1).retry.max_retries, 5);

    let wf = steps("    - {name: a, api: s}\n");
    let set = DefinitionSet::load(vec![Source {
        name: "wf.yaml".into(),
        text: format!("{wf}{}", policy("one", 1)),
    }])
    .unwrap();
    assert_eq!(compile(&set, None).unwrap().node(0).retry.max_retries, 1);
}

#[test]
fn expressions_may_only_read_known_names() {
    let err = compile_yaml(&steps(
        "    - {name: a, step: 1, api: s}\n    - {name: b, api: s, condition: \"step2.x > 1\"}\n",
    ))
    .unwrap_err();
    assert!(err.message.contains("`step2`"), "{err}");
    assert_eq!(err.hint.as_deref(), Some("did you mean `step1`?"));
    compile_yaml(&steps(
        "    - {name: a, step: 1, api: s}\n    - {name: b, api: s, condition: \"step1.x > 1 && a.x < 3 && input.y == 'z'\", body: {v: \"${steps.a.status}\"}}\n",
    ))
    .unwrap();
}

#[test]
fn the_seed_files_compile_with_their_documented_shapes() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/spec");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        sources.push(Source {
            name: path.display().to_string(),
            text: std::fs::read_to_string(&path).unwrap(),
        });
    }
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    let set = DefinitionSet::load(sources).unwrap();
    let plans = validate(&set).unwrap();
    assert_eq!(plans.len(), 4);
    let retry = &plans[0].node(0).retry;
    assert_eq!(
        (
            retry.max_retries,
            retry.initial_delay.as_secs(),
            retry.max_delay.as_secs()
        ),
        (3, 1, 10)
    );
    assert!(retry.retry_on.statuses.contains(&503) && !retry.retry_on.statuses.contains(&404));
}

#[test]
fn state_machines_reject_unreachable_states_and_misplaced_fields() {
    let machine = |states: &str| {
        format!(
            "apiVersion: orca.dev/v1\nkind: WorkflowDefinition\nmetadata: {{name: m}}\nspec:\n  startAt: a\n  states:\n{states}"
        )
    };
    let err = compile_yaml(&machine(
        "    - {name: a, type: pass, end: true}\n    - {name: b, type: pass, end: true}\n",
    ))
    .unwrap_err();
    assert!(err.message.contains("`b` is never reached"), "{err}");
    let err = compile_yaml(&machine(
        "    - {name: a, type: pass, seconds: 3, end: true}\n",
    ))
    .unwrap_err();
    assert!(
        err.message
            .contains("`seconds` does not apply to a pass state"),
        "{err}"
    );
    let err = compile_yaml(&machine("    - {name: a, type: task, resource: s}\n")).unwrap_err();
    assert!(
        err.message
            .contains("exactly one of `next` and `end: true`"),
        "{err}"
    );
    let err = compile_yaml(&machine(
        "    - {name: a, type: taks, resource: s, end: true}\n",
    ))
    .unwrap_err();
    assert!(err.message.contains("unknown state type `taks`"), "{err}");
}

#[test]
fn compile_checked_reports_any_broken_workflow_and_returns_the_chosen_one() {
    let workflow = |name: &str, api: &str| {
        format!(
            "---\napiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata: {{name: {name}}}\nspec:\n  steps:\n    - {{name: a, api: {api}}}\n"
        )
    };
    let load = |text: String| {
        DefinitionSet::load(vec![Source {
            name: "w.yaml".into(),
            text,
        }])
        .unwrap()
    };
    let good = load(workflow("one", "svc") + &workflow("two", "svc"));
    let plan = compile_checked(&good, Some("two")).unwrap();
    assert_eq!(&*plan.workflow_id, "two");
    // `compile` looks at the chosen workflow only; `compile_checked` at every one.
    let broken = load(workflow("one", "svc") + &workflow("two", "Bad_Service"));
    assert!(compile(&broken, Some("one")).is_ok());
    let error = compile_checked(&broken, Some("one")).unwrap_err();
    assert!(error.to_string().contains("Bad_Service"), "{error}");
    assert!(compile_checked(&good, Some("three")).is_err());
}
