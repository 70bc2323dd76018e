//! The history derived from records ([`crate::events`]): each record's events are the
//! previous record's and then new ones with higher ids, whatever happens in between.

use super::saga::SAGA;
use super::*;
use crate::events::{ExecutionEvent, events, line};

/// Applies `steps` one by one and checks after each that the events only grew.
fn history(plan: &Plan, mut e: Execution, steps: Vec<(Event, u64)>) -> Vec<ExecutionEvent> {
    let mut seen = events(&e);
    for (event, now) in steps {
        e.apply(plan, event, now);
        let now_seen = events(&e);
        assert!(
            now_seen.windows(2).all(|w| w[0].id < w[1].id),
            "ids grow: {now_seen:?}"
        );
        assert_eq!(
            &now_seen[..seen.len()],
            &seen[..],
            "a later record keeps the earlier events as they were"
        );
        // Through the record's JSON (another process, a restart): the same events.
        let stored: Execution = serde_json::from_value(serde_json::to_value(&e).unwrap()).unwrap();
        assert_eq!(events(&stored), now_seen);
        seen = now_seen;
    }
    seen
}

#[test]
fn a_retried_step_and_a_saga_make_one_growing_history() {
    let plan = plan_of(SAGA);
    let (e, _) = start(&plan, json!({}));
    let timer = Event::Timer {
        target: step(&plan, "log"),
        attempt: 2,
    };
    let all = history(
        &plan,
        e,
        vec![
            (ok(step(&plan, "reserve"), 1, json!({"id": "r1"})), 2),
            (fail(step(&plan, "log"), 1, 503), 3),
            (timer, 20),
            (ok(step(&plan, "log"), 2, json!({})), 21),
            (ok(step(&plan, "charge"), 1, json!({})), 22),
            (fail(step(&plan, "ship"), 1, 400), 23),
            (ok(Target::Compensation(0), 1, json!({})), 24),
            (ok(Target::Compensation(1), 1, json!({})), 25),
        ],
    );
    let kinds: Vec<&str> = all.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            "execution.started",
            "step.started",
            "attempt.started",
            "attempt.ended",
            "step.completed",
            "step.started",
            "attempt.started",
            "attempt.ended",
            "retry.scheduled",
            "attempt.started",
            "attempt.ended",
            "step.completed",
            "step.started",
            "attempt.started",
            "attempt.ended",
            "step.completed",
            "step.started",
            "attempt.started",
            "attempt.ended",
            "step.failed",
            "compensation.started",
            "attempt.started",
            "attempt.ended",
            "compensation.ended",
            "compensation.started",
            "attempt.started",
            "attempt.ended",
            "compensation.ended",
            "execution.ended",
        ]
    );
    let retry = all.iter().find(|e| e.kind == "retry.scheduled").unwrap();
    assert_eq!(retry.data["delay_ms"], 10, "the scheduled delay: {retry:?}");
    assert_eq!(retry.data["attempt"], 2);
    let ended = all.last().unwrap();
    assert_eq!(ended.data["status"], "compensated");
    let lines: Vec<String> = all.iter().filter_map(|e| line(e.kind, &e.data)).collect();
    assert!(
        lines.contains(&"  ↻ log: retrying in 10ms".to_string()),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("  ✓ compensation of charge: 200")),
        "{lines:?}"
    );
}

#[test]
fn a_records_events_stop_at_what_it_holds() {
    let plan = plan_of(SAGA);
    let (e, _) = start(&plan, json!({}));
    let all = events(&e);
    assert_eq!(
        all.iter().map(|e| e.kind).collect::<Vec<_>>(),
        ["execution.started", "step.started", "attempt.started"]
    );
    assert_eq!(all[0].id, crate::events::STARTED);
}
