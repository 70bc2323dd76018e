//! Human-readable progress: one line per step change, derived from consecutive records.

use std::io::Write;

use crate::engine::{Execution, Outcome, Run, StepStatus};
use crate::plan::Plan;

/// Receives an execution's changes as they happen.
pub trait Progress: Send + Sync {
    fn started(&self, execution: &Execution);
    fn resumed(&self, execution: &Execution);
    fn changed(&self, plan: &Plan, before: &Execution, after: &Execution);
    fn finished(&self, execution: &Execution);

    /// Whether to call [`changed`](Self::changed) at all. Giving it `before` costs a copy of
    /// the whole record on every event, which an observer that only counts starts and ends
    /// (the metrics) should not pay for.
    fn compares_changes(&self) -> bool {
        true
    }
}

/// Writes progress lines to stderr.
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn started(&self, execution: &Execution) {
        line(format!(
            "execution {} of {} started",
            execution.id, execution.workflow_id
        ));
        for l in step_lines(None, execution) {
            line(l);
        }
    }

    fn resumed(&self, execution: &Execution) {
        line(format!(
            "execution {} of {} resumed ({} in flight)",
            execution.id,
            execution.workflow_id,
            if execution.current.is_empty() {
                "nothing".to_string()
            } else {
                execution.current.join(", ")
            }
        ));
    }

    fn changed(&self, _plan: &Plan, before: &Execution, after: &Execution) {
        for l in step_lines(Some(before), after) {
            line(l);
        }
    }

    fn finished(&self, execution: &Execution) {
        let duration = execution
            .ended_at_ms
            .map(|end| {
                format!(
                    " in {}",
                    millis(end.saturating_sub(execution.started_at_ms))
                )
            })
            .unwrap_or_default();
        let error = execution
            .error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        line(format!(
            "execution {} {}{duration}{error}",
            execution.id,
            execution.status.as_str()
        ));
    }
}

fn line(text: String) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Lines describing what changed between two records of the same execution.
pub fn step_lines(before: Option<&Execution>, after: &Execution) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, run) in after.steps.iter().enumerate() {
        if run.internal {
            continue;
        }
        let old = before.map(|b| &b.steps[i]);
        describe(
            &mut lines,
            &run.name,
            "",
            &run.run,
            old.map(|o| &o.run),
            old.map(|o| o.visits) != Some(run.visits),
        );
    }
    for (k, comp) in after.compensations.iter().enumerate() {
        let old = before.and_then(|b| b.compensations.get(k));
        describe(
            &mut lines,
            &comp.step,
            "compensation of ",
            &comp.run,
            old.map(|o| &o.run),
            old.is_none(),
        );
    }
    lines
}

fn describe(
    lines: &mut Vec<String>,
    name: &str,
    prefix: &str,
    run: &Run,
    old: Option<&Run>,
    new_visit: bool,
) {
    let old_status = old.map(|o| o.status);
    let old_attempts = if new_visit {
        0
    } else {
        old.map_or(0, |o| o.attempts.len())
    };
    // Outcomes of attempts that finished since `before`.
    for attempt in run.attempts.iter().skip(old_attempts.saturating_sub(1)) {
        let was_open = old
            .and_then(|o| o.attempts.get(attempt.number as usize - 1))
            .is_some_and(|a| a.outcome.is_none())
            && !new_visit;
        let is_new = attempt.number as usize > old_attempts;
        if !(was_open || is_new) {
            continue;
        }
        if is_new {
            let target = run
                .request
                .as_ref()
                .map(|r| r.describe())
                .unwrap_or_default();
            let which = if attempt.number > 1 {
                format!(" (attempt {})", attempt.number)
            } else {
                String::new()
            };
            lines.push(format!("  → {prefix}{name}: {target}{which}"));
        }
        if let (Some(outcome), Some(end)) = (&attempt.outcome, attempt.ended_at_ms) {
            let took = millis(end.saturating_sub(attempt.started_at_ms));
            match outcome {
                Outcome::Ok { status } => {
                    lines.push(format!("  ✓ {prefix}{name}: {status} in {took}"))
                }
                Outcome::Error { message, .. } => {
                    lines.push(format!("  ✗ {prefix}{name}: {message} ({took})"))
                }
            }
        }
    }
    if old_status == Some(run.status) && !new_visit {
        return;
    }
    match run.status {
        StepStatus::Retrying => {
            let wait = match (
                run.timer_at_ms,
                run.attempts.last().and_then(|a| a.ended_at_ms),
            ) {
                (Some(at), Some(end)) => millis(at.saturating_sub(end)),
                _ => "a moment".into(),
            };
            lines.push(format!("  ↻ {prefix}{name}: retrying in {wait}"));
        }
        StepStatus::Skipped => {
            lines.push(format!("  – {prefix}{name}: skipped (condition is false)"))
        }
        StepStatus::Waiting => lines.push(format!("  … {prefix}{name}: waiting")),
        StepStatus::Cancelled => lines.push(format!("  – {prefix}{name}: cancelled")),
        StepStatus::Failed if run.attempts.is_empty() => {
            lines.push(format!(
                "  ✗ {prefix}{name}: {}",
                run.error.clone().unwrap_or_default()
            ));
        }
        _ => {}
    }
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Reports to two observers (for example stderr lines and metrics).
pub struct Both<A, B>(pub A, pub B);

impl<A: Progress, B: Progress> Progress for Both<A, B> {
    fn started(&self, execution: &Execution) {
        self.0.started(execution);
        self.1.started(execution);
    }

    fn resumed(&self, execution: &Execution) {
        self.0.resumed(execution);
        self.1.resumed(execution);
    }

    fn changed(&self, plan: &Plan, before: &Execution, after: &Execution) {
        self.0.changed(plan, before, after);
        self.1.changed(plan, before, after);
    }

    fn finished(&self, execution: &Execution) {
        self.0.finished(execution);
        self.1.finished(execution);
    }

    fn compares_changes(&self) -> bool {
        self.0.compares_changes() || self.1.compares_changes()
    }
}
