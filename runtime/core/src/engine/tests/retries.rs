//! Retries: backoff, giving up, what is not retried, Retry-After.

use super::*;

pub(super) const RETRYING: &str = r#"
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
