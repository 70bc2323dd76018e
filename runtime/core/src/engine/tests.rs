//! The engine fed events by hand: every decision is checked without I/O or clocks.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use super::*;
use crate::definition::{DefinitionSet, Source};
use crate::invoke::{Failure, FailureKind, Headers, HttpRequest, Request, Response};
use crate::plan::{self, Plan};

fn plan_of(yaml: &str) -> Plan {
    let set = DefinitionSet::load(vec![Source {
        name: "test.yaml".into(),
        text: yaml.into(),
    }])
    .unwrap();
    plan::compile(&set, None).unwrap()
}

fn seed(name: &str) -> Plan {
    let path = format!("{}/../../examples/spec/{name}", env!("CARGO_MANIFEST_DIR"));
    plan_of(&std::fs::read_to_string(path).unwrap())
}

fn start(plan: &Plan, input: Json) -> (Execution, Vec<Action>) {
    let services = plan
        .services
        .iter()
        .map(|s| (s.clone(), format!("http://{s}.test")))
        .collect::<BTreeMap<_, _>>();
    let bindings = Bindings {
        tenant: "default".into(),
        services,
        components: BTreeMap::new(),
    };
    Execution::start(plan, "ex1".into(), input, bindings, 1_000)
}

/// The (step name, attempt, request) of each invoke action.
fn invokes<'a>(
    plan: &'a Plan,
    e: &'a Execution,
    actions: &'a [Action],
) -> Vec<(String, u32, &'a HttpRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Invoke {
                target,
                attempt,
                request,
            } => {
                let Request::Http(r) = &**request else {
                    return None;
                };
                let name = match target {
                    Target::Step(i) => plan.node(*i).name.to_string(),
                    Target::Compensation(k) => format!("undo:{}", e.compensations[*k].step),
                };
                Some((name, *attempt, r))
            }
            _ => None,
        })
        .collect()
}

fn names(plan: &Plan, e: &Execution, actions: &[Action]) -> Vec<String> {
    invokes(plan, e, actions)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect()
}

fn ok(target: Target, attempt: u32, body: Json) -> Event {
    Event::Succeeded {
        target,
        attempt,
        response: Response {
            status: 200,
            headers: Headers::default(),
            body: body.into(),
        },
    }
}

fn fail(target: Target, attempt: u32, status: u16) -> Event {
    Event::Failed {
        target,
        attempt,
        failure: Failure::new(FailureKind::Status(status), format!("returned {status}")),
    }
}

/// The execution's output as JSON (null before it has one).
fn output(e: &Execution) -> Json {
    serde_json::to_value(&e.output).unwrap()
}

fn step(plan: &Plan, name: &str) -> Target {
    Target::Step(plan.find(name).unwrap())
}

#[test]
fn sequential_seed_runs_steps_one_after_another() {
    let plan = seed("01-SequentialOrchestration.yaml");
    let (mut e, actions) = start(&plan, json!({"order": 7}));
    assert_eq!(names(&plan, &e, &actions), ["validate_order"]);
    let (_, _, request) = &invokes(&plan, &e, &actions)[0];
    assert_eq!(
        request.url,
        "http://order-service.test/api/v1/orders/validate"
    );
    assert_eq!(&*request.method, "POST");
    assert_eq!(request.body.as_deref(), Some(&json!({"order": 7})));
    assert!(
        request
            .body
            .as_ref()
            .is_some_and(|body| body.shares(&e.input)),
        "a step without a body sends the input itself, not a copy"
    );
    assert_eq!(request.idempotency_key, "ex1:validate_order");

    let a = e.apply(
        &plan,
        ok(step(&plan, "validate_order"), 1, json!({"valid": true})),
        2_000,
    );
    assert_eq!(names(&plan, &e, &a), ["check_inventory"]);
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_inventory"), 1, json!({"in_stock": true})),
        3_000,
    );
    assert_eq!(names(&plan, &e, &a), ["create_payment"]);
    assert_eq!(e.current, [Arc::from("create_payment")]);
    let a = e.apply(
        &plan,
        ok(step(&plan, "create_payment"), 1, json!({"id": "p1"})),
        4_000,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed);
    assert_eq!(
        output(&e),
        json!({"validate_order": {"valid": true}, "check_inventory": {"in_stock": true}, "create_payment": {"id": "p1"}})
    );
    // The default output shares each step's result instead of copying it.
    let payment = &e.steps[plan.find("create_payment").unwrap()];
    let shared = &e.output.as_ref().unwrap()["create_payment"];
    assert!(Arc::ptr_eq(shared, payment.result.as_ref().unwrap()));
    assert_eq!(e.api_calls, 3);
    assert_eq!(e.ended_at_ms, Some(4_000));

    // A stored record reads back whole, its results as text that nothing has parsed yet.
    let read: Execution = serde_json::from_slice(&serde_json::to_vec(&e).unwrap()).unwrap();
    assert_eq!(read, e);
    let result = read.steps[plan.find("create_payment").unwrap()]
        .result
        .as_ref();
    assert!(result.is_some_and(|r| r.parsed().is_none()));
}

#[test]
fn parallel_seed_forks_after_the_first_step_and_joins_at_the_end() {
    let plan = seed("02-ParallelOrchestration.yaml");
    let (mut e, actions) = start(&plan, json!({}));
    assert_eq!(names(&plan, &e, &actions), ["validate_order"]);
    let a = e.apply(&plan, ok(step(&plan, "validate_order"), 1, json!(1)), 2);
    assert_eq!(
        names(&plan, &e, &a),
        ["check_inventory", "check_payment_method"]
    );
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_payment_method"), 1, json!(2)),
        3,
    );
    assert!(a.is_empty(), "{a:?}");
    assert_eq!(e.status, Status::Running);
    let a = e.apply(&plan, ok(step(&plan, "check_inventory"), 1, json!(3)), 4);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Completed);
}

#[test]
fn a_failure_in_a_parallel_group_waits_for_the_group_to_settle() {
    let plan = seed("02-ParallelOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({}));
    e.apply(&plan, ok(step(&plan, "validate_order"), 1, json!(1)), 2);
    let a = e.apply(&plan, fail(step(&plan, "check_inventory"), 1, 500), 3);
    assert!(a.is_empty(), "the other branch is still running: {a:?}");
    assert_eq!(e.status, Status::Running);
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_payment_method"), 1, json!(2)),
        4,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    assert!(
        e.error.as_deref().unwrap().contains("check_inventory"),
        "{:?}",
        e.error
    );
}

#[test]
fn conditional_seed_skips_the_discount_for_small_orders() {
    let plan = seed("03-ConditionalOrchestration.yaml");
    for (amount, expected) in [(1500, "apply_discount"), (999, "create_payment")] {
        let (mut e, actions) = start(&plan, json!({"id": "o-1"}));
        let (_, _, request) = &invokes(&plan, &e, &actions)[0];
        assert_eq!(
            request.url,
            "http://order-service.test/api/v1/orders/o-1/amount"
        );
        let a = e.apply(
            &plan,
            ok(
                step(&plan, "check_order_amount"),
                1,
                json!({"amount": amount}),
            ),
            2,
        );
        assert_eq!(names(&plan, &e, &a), [expected], "amount {amount}");
        if amount < 1000 {
            assert_eq!(e.steps[1].status, StepStatus::Skipped);
        }
    }
}

#[test]
fn a_condition_that_fails_at_run_time_fails_the_execution_naming_step_and_expression() {
    let plan = seed("03-ConditionalOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({"id": 1}));
    let a = e.apply(
        &plan,
        ok(step(&plan, "check_order_amount"), 1, json!({"total": 5})),
        2,
    );
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    let error = e.error.unwrap();
    assert!(
        error.contains("apply_discount") && error.contains("step1.amount > 1000"),
        "{error}"
    );
}

const RETRYING: &str = r#"
apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata: {name: retrying}
spec:
  retry:
    maxRetries: 2
    backoff: {strategy: exponential, initialDelay: 1s, maxDelay: 10s, multiplier: 2, jitter: 0.5}
    retryableErrors: ["503"]
  steps:
    - name: a
      api: svc
      endpoint: /a
"#;

#[test]
fn retries_wait_with_backoff_then_give_up() {
    let plan = plan_of(RETRYING);
    let (mut e, _) = start(&plan, json!({}));
    let a = e.apply(&plan, fail(step(&plan, "a"), 1, 503), 10_000);
    let [
        Action::Timer {
            attempt: 2, at_ms, ..
        },
    ] = a.as_slice()
    else {
        panic!("{a:?}")
    };
    assert!(
        (10_500..=11_500).contains(at_ms),
        "first delay is 1s +-50%: {at_ms}"
    );
    assert_eq!(e.steps[0].status, StepStatus::Retrying);
    // A timer for a stale attempt does nothing.
    assert!(
        e.apply(
            &plan,
            Event::Timer {
                target: step(&plan, "a"),
                attempt: 5
            },
            11_000
        )
        .is_empty()
    );
    let a = e.apply(
        &plan,
        Event::Timer {
            target: step(&plan, "a"),
            attempt: 2,
        },
        *at_ms,
    );
    let calls = invokes(&plan, &e, &a);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].1, calls[0].2.idempotency_key.as_str()),
        (2, "ex1:a")
    );
    let a = e.apply(&plan, fail(step(&plan, "a"), 2, 503), 20_000);
    let [
        Action::Timer {
            attempt: 3, at_ms, ..
        },
    ] = a.as_slice()
    else {
        panic!("{a:?}")
    };
    assert!(
        (21_000..=23_000).contains(at_ms),
        "second delay is 2s +-50%: {at_ms}"
    );
    e.apply(
        &plan,
        Event::Timer {
            target: step(&plan, "a"),
            attempt: 3,
        },
        *at_ms,
    );
    let a = e.apply(&plan, fail(step(&plan, "a"), 3, 503), 30_000);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Failed);
    assert_eq!(e.steps[0].attempts.len(), 3);
    assert!(e.error.unwrap().contains("after 3 attempts"));
}

#[test]
fn failures_not_listed_are_not_retried_and_retry_after_is_honoured() {
    let plan = plan_of(RETRYING);
    let (mut e, _) = start(&plan, json!({}));
    assert_eq!(
        e.apply(&plan, fail(step(&plan, "a"), 1, 404), 5),
        [Action::Finished]
    );
    assert_eq!(e.steps[0].attempts.len(), 1);

    let (mut e, _) = start(&plan, json!({}));
    let mut failure = Failure::new(FailureKind::Status(503), "busy");
    failure.retry_after_ms = Some(7_000);
    let a = e.apply(
        &plan,
        Event::Failed {
            target: step(&plan, "a"),
            attempt: 1,
            failure,
        },
        100,
    );
    assert!(
        matches!(a.as_slice(), [Action::Timer { at_ms: 7_100, .. }]),
        "{a:?}"
    );
}

const SAGA: &str = r#"
apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata: {name: saga}
spec:
  retry: {maxRetries: 1, backoff: {initialDelay: 10ms}, retryableErrors: ["503"]}
  steps:
    - name: reserve
      api: inventory
      endpoint: /reserve
      compensation: {name: release, api: inventory, endpoint: "/release/${reserve.id}", method: DELETE}
    - name: log
      api: audit
      endpoint: /log
    - name: charge
      api: payments
      endpoint: /charge
      compensation: {api: payments, endpoint: /refund}
    - name: ship
      api: shipping
      endpoint: /ship
"#;

#[test]
fn a_failed_step_compensates_completed_steps_in_reverse_order() {
    let plan = plan_of(SAGA);
    let (mut e, _) = start(&plan, json!({}));
    e.apply(
        &plan,
        ok(step(&plan, "reserve"), 1, json!({"id": "r 9"})),
        2,
    );
    e.apply(&plan, ok(step(&plan, "log"), 1, json!({})), 3);
    e.apply(&plan, ok(step(&plan, "charge"), 1, json!({})), 4);
    let a = e.apply(&plan, fail(step(&plan, "ship"), 1, 400), 5);
    assert_eq!(e.status, Status::Compensating);
    assert_eq!(names(&plan, &e, &a), ["undo:charge"]);
    let (_, _, refund) = invokes(&plan, &e, &a)[0];
    assert_eq!(refund.idempotency_key, "ex1:charge:compensate");
    let a = e.apply(&plan, ok(Target::Compensation(0), 1, json!({})), 6);
    let calls = invokes(&plan, &e, &a);
    assert_eq!(calls[0].0, "undo:reserve");
    assert_eq!(
        (&*calls[0].2.method, calls[0].2.url.as_str()),
        ("DELETE", "http://inventory.test/release/r%209")
    );
    assert!(calls[0].2.body.is_none());
    let a = e.apply(&plan, ok(Target::Compensation(1), 1, json!({})), 7);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Compensated);
    assert!(e.error.unwrap().contains("ship"));
}

#[test]
fn a_compensation_that_keeps_failing_ends_in_compensation_failed_naming_it() {
    let plan = plan_of(SAGA);
    let (mut e, _) = start(&plan, json!({}));
    e.apply(&plan, ok(step(&plan, "reserve"), 1, json!({"id": 1})), 2);
    e.apply(&plan, ok(step(&plan, "log"), 1, json!({})), 3);
    e.apply(&plan, ok(step(&plan, "charge"), 1, json!({})), 4);
    e.apply(&plan, fail(step(&plan, "ship"), 1, 400), 5);
    let a = e.apply(&plan, fail(Target::Compensation(0), 1, 503), 6);
    assert!(
        matches!(a.as_slice(), [Action::Timer { attempt: 2, .. }]),
        "retried under the step's policy: {a:?}"
    );
    let a = e.apply(
        &plan,
        Event::Timer {
            target: Target::Compensation(0),
            attempt: 2,
        },
        20,
    );
    assert_eq!(invokes(&plan, &e, &a)[0].1, 2);
    let a = e.apply(&plan, fail(Target::Compensation(0), 2, 503), 30);
    assert_eq!(
        names(&plan, &e, &a),
        ["undo:reserve"],
        "the rest is still undone"
    );
    let a = e.apply(&plan, ok(Target::Compensation(1), 1, json!({})), 40);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::CompensationFailed);
    assert!(e.error.unwrap().contains("could not undo: charge"));
}

#[test]
fn a_resumed_execution_resends_in_flight_calls_with_the_same_key_and_skips_completed_ones() {
    let plan = seed("01-SequentialOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({}));
    e.apply(
        &plan,
        ok(step(&plan, "validate_order"), 1, json!({"ok": 1})),
        2,
    );
    // The record as a crash would leave it: check_inventory sent, no outcome.
    let stored = serde_json::to_string(&e).unwrap();
    let mut revived: Execution = serde_json::from_str(&stored).unwrap();
    let a = revived.resume(&plan, 50);
    let calls = invokes(&plan, &revived, &a);
    assert_eq!(calls.len(), 1);
    assert_eq!((calls[0].0.as_str(), calls[0].1), ("check_inventory", 1));
    assert_eq!(calls[0].2.idempotency_key, "ex1:check_inventory");
    revived.apply(&plan, ok(step(&plan, "check_inventory"), 1, json!(2)), 60);
    let a = revived.apply(&plan, ok(step(&plan, "create_payment"), 1, json!(3)), 70);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(output(&revived)["validate_order"], json!({"ok": 1}));
}

/// Attempts and signals are kept inline, not in a `Vec`; records keep writing them as lists,
/// so records written before still load and readers of the JSON see no change.
#[test]
fn a_step_s_attempts_and_signals_are_written_as_lists() {
    let plan = seed("01-SequentialOrchestration.yaml");
    let (mut e, _) = start(&plan, json!({}));
    e.apply(
        &plan,
        ok(step(&plan, "validate_order"), 1, json!({"ok": 1})),
        2,
    );
    let record = serde_json::to_value(&e).unwrap();
    let validated_at = plan.find("validate_order").unwrap();
    let validated = &record["steps"][validated_at];
    assert_eq!(validated["attempts"][0]["number"], 1);
    assert_eq!(validated["attempts"][0]["outcome"]["result"], "ok");
    assert_eq!(validated["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(validated["signals"], json!([]));

    let mut written_before = record.clone();
    written_before["steps"][validated_at]["signals"] = json!([0, 1, 2]);
    let loaded: Execution = serde_json::from_value(written_before).unwrap();
    let signals = &loaded.steps[validated_at].signals;
    assert_eq!(signals.as_slice(), [0, 1, 2]);
}

const MACHINE: &str = r#"
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

#[test]
fn cancel_lets_calls_in_flight_settle_then_compensates_and_ends_cancelled() {
    let plan = plan_of(SAGA);
    let (mut e, _) = start(&plan, json!({}));
    e.apply(&plan, ok(step(&plan, "reserve"), 1, json!({"id": 1})), 2);
    assert!(
        e.cancel(&plan, "by user", 3).is_empty(),
        "log is in flight: wait for it"
    );
    assert_eq!(e.status, Status::Running);
    let a = e.apply(&plan, ok(step(&plan, "log"), 1, json!({})), 4);
    assert_eq!(
        names(&plan, &e, &a),
        ["undo:reserve"],
        "nothing new starts; reserve is undone"
    );
    let a = e.apply(&plan, ok(Target::Compensation(0), 1, json!({})), 5);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Cancelled);
    assert_eq!(
        e.steps[plan.find("charge").unwrap()].status,
        StepStatus::Pending
    );
    assert!(e.error.as_deref().unwrap().contains("cancelled: by user"));
    assert!(e.cancel(&plan, "again", 6).is_empty());
}

#[test]
fn cancel_stops_a_retry_wait_at_once() {
    let plan = plan_of(RETRYING);
    let (mut e, _) = start(&plan, json!({}));
    e.apply(&plan, fail(step(&plan, "a"), 1, 503), 10);
    let a = e.cancel(&plan, "stop", 20);
    assert_eq!(a, [Action::Finished]);
    assert_eq!(e.status, Status::Cancelled);
    assert_eq!(e.steps[0].status, StepStatus::Cancelled);
    assert!(
        e.apply(
            &plan,
            Event::Timer {
                target: step(&plan, "a"),
                attempt: 2
            },
            1_500
        )
        .is_empty()
    );
}

/// A checkpoint reuses the JSON of the parts of the record that did not change since the
/// last one; a clone keeps none. The two must serialize alike after every event, or a
/// resumed execution would start from a record that is not the one the engine held.
fn assert_checkpoint_is_current(e: &Execution) {
    let checkpoint = serde_json::to_string(e).unwrap();
    let fresh = serde_json::to_string(&e.clone()).unwrap();
    assert_eq!(checkpoint, fresh);
    let back: Execution = serde_json::from_str(&checkpoint).unwrap();
    assert_eq!(&back, e);
}

/// Drives a new execution of `plan` to its end, answering each call with `answer` (a body,
/// or an error status) and checkpointing after every event as the runner does.
fn run_checkpointing(
    plan: &Plan,
    input: Json,
    answer: impl Fn(&str, u32) -> Result<Json, u16>,
) -> Execution {
    let (mut e, mut actions) = start(plan, input);
    assert_checkpoint_is_current(&e);
    let mut now = 1_000;
    for _ in 0..1_000 {
        if actions.is_empty() {
            break;
        }
        let event = match actions.remove(0) {
            Action::Invoke {
                target, attempt, ..
            } => {
                let name = match target {
                    Target::Step(i) => plan.node(i).name.to_string(),
                    Target::Compensation(k) => format!("undo:{}", e.compensations[k].step),
                };
                match answer(&name, attempt) {
                    Ok(body) => ok(target, attempt, body),
                    Err(status) => fail(target, attempt, status),
                }
            }
            Action::Timer {
                target,
                attempt,
                at_ms,
            } => {
                now = now.max(at_ms);
                Event::Timer { target, attempt }
            }
            Action::Finished => continue,
        };
        now += 10;
        actions.extend(e.apply(plan, event, now));
        assert_checkpoint_is_current(&e);
    }
    assert!(e.status.is_final(), "ended {:?}", e.status);
    e
}

#[test]
fn every_checkpoint_matches_the_record_through_retries_compensation_and_loops() {
    let e = run_checkpointing(&plan_of(SAGA), json!({}), |name, _| match name {
        "ship" => Err(400),
        _ => Ok(json!({"id": "r 9"})),
    });
    assert_eq!(e.status, Status::Compensated);

    let e = run_checkpointing(&plan_of(RETRYING), json!({}), |_, attempt| {
        if attempt < 3 { Err(503) } else { Ok(json!({})) }
    });
    assert!(e.steps.iter().any(|s| s.attempts.len() == 3));

    let e = run_checkpointing(&plan_of(MACHINE), json!({"amount": 5}), |_, _| {
        Ok(json!({"state": "ready", "ok": true}))
    });
    assert!(e.status.is_final());

    let e = run_checkpointing(
        &seed("02-ParallelOrchestration.yaml"),
        json!({"order": 1}),
        |_, _| Ok(json!({"ok": true})),
    );
    assert_eq!(e.status, Status::Completed);
}
