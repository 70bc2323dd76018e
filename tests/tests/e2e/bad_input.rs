//! Bad definitions: `orca validate` and `orca run` exit 2 and point at the file, the line and
//! the field at fault.

use crate::support::{Orca, Outcome};

const HEAD: &str = "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: wf\nspec:\n  steps:\n";

/// Writes `text` as `name`, then checks that both `validate` and `run` exit 2 with an error
/// at `<file>:<line>:` whose text contains every `needle`. Returns the `validate` outcome.
#[track_caller]
fn rejects(name: &str, text: &str, line: u64, needles: &[&str]) -> Outcome {
    let orca = Orca::new();
    let file = orca.write(name, text);
    let mut first = None;
    for command in ["validate", "run"] {
        let out = orca.run(&[command, file.as_str()]);
        out.expect_code(2);
        let error = out
            .stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("`orca {command}` printed no error:\n{}", out.stderr));
        let at = format!("error: {file}:{line}:");
        assert!(
            error.starts_with(&at),
            "`orca {command}`: expected the error at `{at}`, got:\n{}",
            out.stderr
        );
        for needle in needles {
            assert!(
                error.contains(needle),
                "`orca {command}`: `{needle}` missing from:\n{}",
                out.stderr
            );
        }
        assert!(
            out.stdout.is_empty(),
            "no execution on bad input: {}",
            out.stdout
        );
        first.get_or_insert(out);
    }
    first.expect("validate ran")
}

#[test]
fn yaml_syntax_error() {
    let text = format!("{HEAD}    - name: a\n      api: order-service: x\n      endpoint: /x\n");
    rejects("syntax.yaml", &text, 8, &[" api: "]);
}

#[test]
fn unknown_kind() {
    let text = "apiVersion: orca.dev/v1\nkind: SequentialOrchestraton\nmetadata:\n  name: wf\nspec:\n  steps:\n    - name: a\n      api: order-service\n";
    let out = rejects("kind.yaml", text, 2, &["kind", "`SequentialOrchestraton`"]);
    assert!(
        out.stderr.contains("SequentialOrchestration`?"),
        "suggests the right kind: {}",
        out.stderr
    );
}

#[test]
fn unknown_field() {
    let text = format!("{HEAD}    - name: a\n      api: order-service\n      endpont: /x\n");
    let out = rejects("field.yaml", &text, 9, &["endpont", "unknown field"]);
    assert!(
        out.stderr.contains("help: did you mean `endpoint`?"),
        "{}",
        out.stderr
    );
}

const MISSING_NAME: &str = "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: wf\nspec:\n  steps:\n    - name: a\n      api: order-service\n    - api: inventory-service\n      endpoint: /x\n      method: POST\n";

#[test]
fn missing_required_name() {
    // The step without a name spans lines 9 to 11; the error must point inside it.
    let orca = Orca::new();
    let file = orca.write("missing.yaml", MISSING_NAME);
    for command in ["validate", "run"] {
        let out = orca.run(&[command, file.as_str()]);
        out.expect_code(2);
        let line: u64 = out
            .stderr
            .strip_prefix(&format!("error: {file}:"))
            .and_then(|rest| rest.split(':').next())
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("no file:line in:\n{}", out.stderr));
        assert!((9..=11).contains(&line), "line {line}:\n{}", out.stderr);
        assert!(
            out.stderr.contains("missing field `name`"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn missing_required_name_points_at_the_step() {
    rejects("missing.yaml", MISSING_NAME, 9, &["missing field `name`"]);
}

#[test]
fn unknown_depends_on_target() {
    let text = format!(
        "{HEAD}    - name: a\n      api: order-service\n    - name: b\n      api: inventory-service\n      dependsOn: [\"nope\"]\n"
    );
    rejects("dep.yaml", &text, 11, &["dependsOn", "`nope`"]);
}

#[test]
fn depends_on_cycle() {
    let text = format!(
        "{HEAD}    - name: a\n      api: order-service\n      dependsOn: [\"c\"]\n    - name: b\n      api: inventory-service\n      dependsOn: [\"a\"]\n    - name: c\n      api: payment-service\n      dependsOn: [\"b\"]\n"
    );
    rejects(
        "cycle.yaml",
        &text,
        9,
        &["dependsOn", "cycle", "a -> c -> b -> a"],
    );
}

#[test]
fn duplicate_step_names() {
    let text = format!(
        "{HEAD}    - name: a\n      api: order-service\n    - name: b\n      api: inventory-service\n    - name: a\n      api: payment-service\n"
    );
    rejects(
        "dup.yaml",
        &text,
        11,
        &["spec.steps[2].name", "`a`", "line 7"],
    );
}

#[test]
fn unknown_retry_policy() {
    let text = format!(
        "{HEAD}    - name: a\n      api: order-service\n      retryPolicy: no-such-policy\n"
    );
    rejects(
        "policy.yaml",
        &text,
        9,
        &["retryPolicy", "`no-such-policy`"],
    );
}

#[test]
fn condition_that_does_not_compile() {
    let text = format!(
        "{HEAD}    - step: 1\n      name: a\n      api: order-service\n    - step: 2\n      name: b\n      api: inventory-service\n      condition: \"step1.amount >\"\n"
    );
    rejects(
        "cond.yaml",
        &text,
        13,
        &["spec.steps[1].condition", "step1.amount >"],
    );
}

#[test]
fn condition_reading_an_unknown_step() {
    let text = format!(
        "{HEAD}    - step: 1\n      name: a\n      api: order-service\n    - step: 2\n      name: b\n      api: inventory-service\n      condition: \"step3.amount > 1\"\n"
    );
    rejects("cond2.yaml", &text, 13, &["condition", "`step3`"]);
}

#[test]
fn unknown_next_state() {
    let text = "apiVersion: orca.dev/v1\nkind: WorkflowDefinition\nmetadata:\n  name: wf\nspec:\n  startAt: a\n  states:\n    - name: a\n      type: task\n      resource: order-service\n      next: bb\n    - name: b\n      type: task\n      resource: inventory-service\n      end: true\n";
    let out = rejects("next.yaml", text, 11, &["next", "`bb`"]);
    assert!(out.stderr.contains("did you mean `b`?"), "{}", out.stderr);
}

#[test]
fn lines_count_from_the_top_of_the_file_in_later_documents() {
    let text = format!(
        "{HEAD}    - name: a\n      api: order-service\n---\napiVersion: orca.dev/v1\nkind: RetryPolicy\nmetadata:\n  name: p\nspec:\n  maxRetries: 2\n  backof:\n    initialDelay: 1s\n"
    );
    rejects("multi.yaml", &text, 16, &["backof"]);
}

#[test]
fn input_that_is_not_json() {
    let orca = Orca::new();
    let file = orca.write(
        "ok.yaml",
        &format!("{HEAD}    - name: a\n      api: order-service\n"),
    );
    let out = orca.run(&["run", file.as_str(), "--input", "{\"order\": "]);
    out.expect_code(2);
    assert!(out.stderr.contains("--input"), "{}", out.stderr);
}

/// Inputs that used to panic (`orca validate` exited 101): a wait too long for a `Duration`,
/// and a condition whose syntax error lies past the column the CEL parser can report.
#[test]
fn former_panics_are_positioned_errors() {
    let wait = "apiVersion: orca.dev/v1\nkind: WorkflowDefinition\nmetadata:\n  name: w\nspec:\n  startAt: pause\n  states:\n    - {name: pause, type: wait, seconds: 1e30, next: d}\n    - {name: d, type: succeed}\n";
    rejects("wait.yaml", wait, 8, &["seconds", "out of range"]);
    let condition = format!(
        "{HEAD}    - name: a\n      api: svc\n      condition: \"{})\"\n",
        "true || ".repeat(9_000)
    );
    rejects("cel.yaml", &condition, 9, &["condition", "at most 4096"]);
}

#[test]
fn numbers_must_be_numbers_and_in_range() {
    let quoted = format!("{HEAD}    - name: a\n      api: svc\n      retry: {{maxRetries: '3'}}\n");
    rejects("quoted.yaml", &quoted, 9, &["without quotes"]);
    let zero = format!("{HEAD}    - name: a\n      api: svc\n      timeout: 0s\n");
    rejects("zero.yaml", &zero, 9, &["timeout", "from 1ms to 1h"]);
}

#[test]
fn names_follow_the_dns_subdomain_rule() {
    for (name, needle) in [
        ("\"../../etc\"", "`/`"),
        ("\"\"", "cannot be empty"),
        ("\"a\\nb\"", "control character"),
        ("Orders", "capital letter"),
    ] {
        let text = format!(
            "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: {name}\nspec:\n  steps:\n    - {{name: a, api: svc}}\n"
        );
        rejects("name.yaml", &text, 4, &["metadata.name", needle]);
    }
}

/// `all`, `exists`, `exists_one`, `map` and `filter` bind their own variable.
#[test]
fn cel_macros_load_and_run() {
    let orca = Orca::new();
    let file = orca.write(
        "macros.yaml",
        "apiVersion: orca.dev/v1\nkind: WorkflowDefinition\nmetadata:\n  name: macros\nspec:\n  startAt: pick\n  states:\n    - name: pick\n      type: choice\n      choices:\n        - condition: \"input.lines.all(l, l.qty > 0) && input.lines.exists(l, l.sku == 'b')\"\n          next: mapped\n      default: none\n    - name: mapped\n      type: pass\n      result: {skus: \"${input.lines.filter(l, l.qty > 1).map(l, l.sku)}\"}\n      end: true\n    - {name: none, type: fail, error: nothing}\n",
    );
    let out = orca.run(&[
        "run",
        file.as_str(),
        "--input",
        r#"{"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}"#,
    ]);
    out.expect_code(0);
    let execution = out.json();
    assert_eq!(
        execution["output"]["mapped"]["skus"],
        serde_json::json!(["b"]),
        "{execution}"
    );
}
