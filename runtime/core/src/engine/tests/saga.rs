//! Compensation, cancellation and resuming: what is undone, in which order, and what is sent again.

use super::retries::RETRYING;
use super::*;

pub(super) const SAGA: &str = r#"
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
