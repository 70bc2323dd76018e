//! The execution as users read it (`orca run`, `orca executions show`): the record without the
//! engine's bookkeeping, with durations computed.

use serde_json::{Value as Json, json};

use crate::engine::{Attempt, Execution, Outcome, Run};

pub fn execution(e: &Execution) -> Json {
    json!({
        "id": e.id,
        "workflow": e.workflow_id,
        "status": e.status.as_str(),
        "input": e.input,
        "output": e.output,
        "error": e.error,
        "current": e.current,
        "started_at_ms": e.started_at_ms,
        "ended_at_ms": e.ended_at_ms,
        "duration_ms": e.ended_at_ms.map(|end| end.saturating_sub(e.started_at_ms)),
        "api_calls": e.api_calls,
        "resumes": e.resumes,
        "services": *e.services,
        "steps": e.steps.iter().filter(|s| !s.internal).map(|s| {
            let mut v = run(&s.run);
            v["name"] = json!(s.name);
            if s.visits > 1 {
                v["visits"] = json!(s.visits);
            }
            if let Some(r) = &s.result {
                v["result"] = r.value().clone();
            }
            v
        }).collect::<Vec<_>>(),
        "compensations": e.compensations.iter().map(|c| {
            let mut v = run(&c.run);
            v["step"] = json!(c.step);
            if let Some(label) = &c.label {
                v["name"] = json!(label);
            }
            v
        }).collect::<Vec<_>>(),
    })
}

fn run(r: &Run) -> Json {
    let mut v = json!({
        "status": r.status,
        "attempts": r.attempts.iter().map(attempt).collect::<Vec<_>>(),
    });
    if let Some(request) = &r.request {
        v["request"] = json!(request.describe());
    }
    if let Some(error) = &r.error {
        v["error"] = json!(error);
    }
    if let (Some(start), Some(end)) = (r.started_at_ms, r.ended_at_ms) {
        v["duration_ms"] = json!(end.saturating_sub(start));
    }
    v
}

fn attempt(a: &Attempt) -> Json {
    let mut v = json!({
        "number": a.number,
        "started_at_ms": a.started_at_ms,
        "duration_ms": a.ended_at_ms.map(|end| end.saturating_sub(a.started_at_ms)),
    });
    match &a.outcome {
        Some(Outcome::Ok { status }) => v["status"] = json!(status),
        Some(Outcome::Error { kind, message }) => {
            v["error"] = json!(message);
            v["failure"] = json!(kind);
        }
        None => v["in_flight"] = json!(true),
    }
    v
}
