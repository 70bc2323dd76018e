//! Every checkpoint matches the record, through retries, compensation and loops.

use super::retries::RETRYING;
use super::saga::SAGA;
use super::state_machines::MACHINE;
use super::*;

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
