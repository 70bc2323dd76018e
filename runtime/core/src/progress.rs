//! Human-readable progress: one line per step change, derived from consecutive records.

use std::io::Write;

use crate::engine::Execution;
use crate::events;
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

/// Writes progress lines to stderr: the lines of the execution's events (see
/// [`crate::events::line`]), the same `orca watch` prints for an execution on a server.
pub struct StderrProgress;

impl Progress for StderrProgress {
    fn started(&self, execution: &Execution) {
        for l in new_lines(None, execution) {
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
        for l in new_lines(Some(before), after) {
            line(l);
        }
    }

    fn finished(&self, execution: &Execution) {
        let ended = events::events(execution)
            .into_iter()
            .rfind(|e| e.kind == "execution.ended");
        if let Some(ended) = ended {
            line(events::ended_line(&execution.id, &ended.data));
        }
    }
}

fn line(text: String) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The lines of the events `after` has that `before` had not.
pub fn new_lines(before: Option<&Execution>, after: &Execution) -> Vec<String> {
    let seen = before.and_then(|b| events::events(b).last().map(|e| e.id));
    events::events(after)
        .iter()
        .filter(|e| seen.is_none_or(|seen| e.id > seen))
        .filter_map(|e| events::line(e.kind, &e.data))
        .collect()
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
