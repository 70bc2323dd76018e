//! State machines: choice, wait, parallel, pass, fail, loops.

use super::*;

pub(super) const MACHINE: &str = r#"
apiVersion: orca.dev/v1
kind: WorkflowDefinition
metadata: {name: machine}
spec:
  startAt: route
  states:
    - name: route
      type: choice
      choices:
        - condition: "input.amount > 100"
          next: review
      default: fanout
    - name: review
      type: wait
      seconds: 2
      next: fanout
    - name: fanout
      type: parallel
      branches:
        - startAt: one
          states:
            - {name: one, type: task, resource: a, end: true}
        - startAt: two
          states:
            - {name: two, type: pass, result: {doubled: "${input.amount * 2}"}, next: done_two}
            - {name: done_two, type: succeed}
      next: check
    - name: check
      type: choice
      choices:
        - {condition: "fanout[0].ok == true", next: finish}
      default: broken
    - name: finish
      type: pass
      end: true
    - name: broken
      type: fail
      error: NotOk
      cause: the task said no
  output:
    first: fanout[0]
    second: two.doubled
"#;

#[test]
fn state_machine_runs_choice_wait_parallel_and_pass() {
    let plan = plan_of(MACHINE);
    let (mut e, a) = start(&plan, json!({"amount": 500}));
    let [
        Action::Timer {
            attempt: 0,
            at_ms: 3_000,
            target,
        },
    ] = a.as_slice()
    else {
        panic!("{a:?}")
    };
    assert_eq!(e.current, [Arc::from("review")]);
    let a = e.apply(
        &plan,
        Event::Timer {
            target: *target,
            attempt: 0,
        },
        3_000,
    );
    assert_eq!(
        names(&plan, &e, &a),
        ["one"],
        "branch two completes at once"
    );
    let a = e.apply(&plan, ok(step(&plan, "one"), 1, json!({"ok": true})), 3_100);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed, "{:?}", e.error);
    assert_eq!(output(&e), json!({"first": {"ok": true}, "second": 1000}));
    let fanout = plan.find("fanout").unwrap();
    assert_eq!(
        e.steps[fanout].result.as_deref().map(|r| r.value()),
        Some(&json!([{"ok": true}, {"doubled": 1000}]))
    );
    assert_eq!(
        e.steps[plan.find("broken").unwrap()].status,
        StepStatus::Pending
    );
}

#[test]
fn state_machine_fail_state_fails_the_execution_with_its_error_and_cause() {
    let plan = plan_of(MACHINE);
    let (mut e, a) = start(&plan, json!({"amount": 5}));
    assert_eq!(names(&plan, &e, &a), ["one"], "small amounts skip the wait");
    let a = e.apply(&plan, ok(step(&plan, "one"), 1, json!({"ok": false})), 2);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    assert!(e.error.unwrap().contains("NotOk: the task said no"));
}

#[test]
fn state_machine_seed_runs_its_three_tasks_in_order() {
    let plan = seed("04-WorkflowDefinition.yaml");
    let (mut e, a) = start(&plan, json!({}));
    assert_eq!(names(&plan, &e, &a), ["validate_order"]);
    let a = e.apply(&plan, ok(step(&plan, "validate_order"), 1, json!(1)), 2);
    assert_eq!(names(&plan, &e, &a), ["check_inventory"]);
    let a = e.apply(&plan, ok(step(&plan, "check_inventory"), 1, json!(2)), 3);
    let calls = invokes(&plan, &e, &a);
    assert_eq!(calls[0].2.url, "http://payment-service.test/");
    let a = e.apply(&plan, ok(step(&plan, "create_payment"), 1, json!(3)), 4);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed);
}

#[test]
fn loops_through_a_choice_revisit_states_with_a_new_idempotency_key() {
    let plan = plan_of(
        r#"
apiVersion: orca.dev/v1
kind: WorkflowDefinition
metadata: {name: poll}
spec:
  startAt: poll
  states:
    - {name: poll, type: task, resource: jobs, endpoint: /status, method: GET, next: done}
    - name: done
      type: choice
      choices: [{condition: "poll.state == 'ready'", next: finish}]
      default: poll
    - {name: finish, type: succeed}
"#,
    );
    let (mut e, _) = start(&plan, json!({}));
    let a = e.apply(
        &plan,
        ok(step(&plan, "poll"), 1, json!({"state": "busy"})),
        2,
    );
    let calls = invokes(&plan, &e, &a);
    assert_eq!(calls[0].2.idempotency_key, "ex1:poll:2");
    assert!(calls[0].2.body.is_none(), "GET sends no body");
    let a = e.apply(
        &plan,
        ok(step(&plan, "poll"), 1, json!({"state": "ready"})),
        3,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.steps[0].visits, 2);
}
