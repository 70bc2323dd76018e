//! An execution's history as events (step started, attempt ended, retry scheduled, ...),
//! derived from its record alone: what `GET /v1/executions/ID/events` streams and what the
//! progress lines of `orca run` and `orca watch` are made of.
//!
//! Every change the engine makes to a record is stamped with the next number of the
//! execution's own sequence ([`Execution::seq`]), and each event takes its id from the stamp
//! of the change it reports: twice the stamp, plus one for the second event a change makes
//! (a failed attempt that is retried, a wait state that starts). So ids only grow, the same
//! record always gives the same events, and a later record gives the earlier record's
//! events and then new ones with higher ids: a reader that saw up to id N resumes after N
//! with no gap and no repeat, on any process, after any restart. A state-machine loop that
//! visits a step again replaces that step's earlier visit in the record, and so in a
//! history read afresh; a reader following along saw both.

use serde_json::{Value as Json, json};

use crate::engine::{Attempt, Execution, Outcome, Run, StepStatus};

/// One event of an execution's history.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEvent {
    /// Grows with every event of the execution; see the module docs.
    pub id: u64,
    /// `execution.started`, `step.started`, `attempt.ended`, ...
    pub kind: &'static str,
    pub data: Json,
}

/// The id of the first event: the execution started.
pub const STARTED: u64 = 0;

/// The execution's events, in order.
pub fn events(execution: &Execution) -> Vec<ExecutionEvent> {
    let mut events = vec![ExecutionEvent {
        id: STARTED,
        kind: "execution.started",
        data: json!({
            "execution": &*execution.id,
            "workflow": &*execution.workflow_id,
            "started_at_ms": execution.started_at_ms,
        }),
    }];
    for step in execution.steps.iter().filter(|s| !s.internal) {
        let name = &*step.name;
        if let Some(seq) = step.started_seq {
            events.push(event(
                seq,
                0,
                "step.started",
                json!({"step": name, "visit": step.visits}),
            ));
        }
        if let (Some(seq), Some(until)) = (step.started_seq, step.wait_until_ms) {
            events.push(event(
                seq,
                1,
                "step.waiting",
                json!({"step": name, "until_ms": until}),
            ));
        }
        attempt_events(&mut events, name, false, &step.run);
        if let Some(seq) = step.ended_seq {
            let kind = match step.status {
                StepStatus::Completed => "step.completed",
                StepStatus::Skipped => "step.skipped",
                StepStatus::Failed => "step.failed",
                StepStatus::Cancelled => "step.cancelled",
                _ => "step.ended",
            };
            let data = json!({"step": name, "error": step.error, "attempts": step.attempts.len()});
            events.push(event(seq, 0, kind, data));
        }
    }
    for comp in &execution.compensations {
        let name = comp.step.as_str();
        if let Some(seq) = comp.started_seq {
            events.push(event(seq, 0, "compensation.started", json!({"step": name})));
        }
        attempt_events(&mut events, name, true, &comp.run);
        if let Some(seq) = comp.ended_seq {
            let status = if comp.status == StepStatus::Completed {
                "completed"
            } else {
                "failed"
            };
            events.push(event(
                seq,
                0,
                "compensation.ended",
                json!({"step": name, "compensation": true, "status": status,
                       "error": comp.error, "attempts": comp.attempts.len()}),
            ));
        }
    }
    if let (Some(seq), Some(ended)) = (execution.ended_seq, execution.ended_at_ms) {
        events.push(event(
            seq,
            0,
            "execution.ended",
            json!({
                "status": execution.status.as_str(),
                "error": execution.error,
                "duration_ms": ended.saturating_sub(execution.started_at_ms),
            }),
        ));
    }
    events.sort_by_key(|e| e.id);
    events
}

fn event(seq: u64, second: u64, kind: &'static str, data: Json) -> ExecutionEvent {
    ExecutionEvent {
        id: seq * 2 + second,
        kind,
        data,
    }
}

fn attempt_events(events: &mut Vec<ExecutionEvent>, step: &str, compensation: bool, run: &Run) {
    let target = run.request.as_ref().map(|r| r.describe());
    for attempt in &run.attempts {
        let Attempt {
            number,
            started_at_ms,
            ..
        } = *attempt;
        if let Some(seq) = attempt.seq {
            events.push(event(
                seq,
                0,
                "attempt.started",
                json!({"step": step, "compensation": compensation, "attempt": number,
                       "target": target}),
            ));
        }
        let (Some(seq), Some(ended), Some(outcome)) =
            (attempt.ended_seq, attempt.ended_at_ms, &attempt.outcome)
        else {
            continue;
        };
        let mut data = json!({
            "step": step,
            "compensation": compensation,
            "attempt": number,
            "duration_ms": ended.saturating_sub(started_at_ms),
        });
        match outcome {
            Outcome::Ok { status } => {
                data["result"] = json!("ok");
                data["status"] = json!(status);
            }
            Outcome::Error { kind, message } => {
                data["result"] = json!("error");
                data["kind"] = json!(kind);
                data["message"] = json!(message);
            }
        }
        events.push(event(seq, 0, "attempt.ended", data));
        if let Some(at) = attempt.retry_at_ms {
            events.push(event(
                seq,
                1,
                "retry.scheduled",
                json!({"step": step, "compensation": compensation, "attempt": number + 1,
                       "delay_ms": at.saturating_sub(ended)}),
            ));
        }
    }
}

/// The progress line `orca run` and `orca watch` print for an event of `kind` carrying
/// `data`, if it gets one.
pub fn line(kind: &str, data: &Json) -> Option<String> {
    let text = |key: &str| data[key].as_str().unwrap_or_default().to_string();
    let step = || {
        let prefix = if data["compensation"] == true {
            "compensation of "
        } else {
            ""
        };
        format!("{prefix}{}", text("step"))
    };
    Some(match kind {
        "execution.started" => format!(
            "execution {} of {} started",
            text("execution"),
            text("workflow")
        ),
        "attempt.started" => {
            let which = match data["attempt"].as_u64() {
                Some(n) if n > 1 => format!(" (attempt {n})"),
                _ => String::new(),
            };
            format!("  → {}: {}{which}", step(), text("target"))
        }
        "attempt.ended" => {
            let took = millis(data["duration_ms"].as_u64().unwrap_or(0));
            if data["result"] == "ok" {
                format!("  ✓ {}: {} in {took}", step(), data["status"])
            } else {
                format!("  ✗ {}: {} ({took})", step(), text("message"))
            }
        }
        "retry.scheduled" => format!(
            "  ↻ {}: retrying in {}",
            step(),
            millis(data["delay_ms"].as_u64().unwrap_or(0))
        ),
        "step.waiting" => format!("  … {}: waiting", step()),
        "step.skipped" => format!("  – {}: skipped (condition is false)", step()),
        "step.cancelled" => format!("  – {}: cancelled", step()),
        // A failed attempt said why already; a step failing without one says it here.
        "step.failed" | "compensation.ended"
            if data["error"].is_string() && data["attempts"] == 0 =>
        {
            format!("  ✗ {}: {}", step(), text("error"))
        }
        _ => return None,
    })
}

/// The line for the end of an execution: `data` of its `execution.ended` event.
pub fn ended_line(id: &str, data: &Json) -> String {
    let duration = millis(data["duration_ms"].as_u64().unwrap_or(0));
    let error = data["error"]
        .as_str()
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    format!(
        "execution {id} {} in {duration}{error}",
        data["status"].as_str().unwrap_or_default()
    )
}

pub(crate) fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}
