//! Stopping: a step that fails for good, a cancel on request, and the compensations of the
//! completed steps that follow, in reverse order of completion.

use super::{Action, Compensation, Execution, StepStatus};
use crate::plan::{NodeId, Plan};

impl Execution {
    /// Stops the execution on request: nothing new starts, waits and retries are cancelled,
    /// calls in flight settle (their outcome decides whether they need undoing), then the
    /// completed steps are compensated. Ends `cancelled`, or `compensation_failed`.
    pub fn cancel(&mut self, plan: &Plan, reason: &str, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.status.is_final() || self.cancelled {
            return actions;
        }
        self.cancelled = true;
        if self.failure.is_none() {
            self.failure = Some(format!("cancelled: {reason}"));
        }
        self.cancel_waiting(now_ms);
        for run in &mut self.steps {
            run.armed = false;
        }
        self.advance(plan, now_ms, &mut actions);
        actions
    }

    pub(super) fn cancel_waiting(&mut self, now_ms: u64) {
        for run in &mut self.steps {
            if matches!(
                run.status,
                StepStatus::Retrying | StepStatus::Waiting | StepStatus::Evaluating
            ) {
                self.seq += 1;
                run.status = StepStatus::Cancelled;
                run.timer_at_ms = None;
                run.end(now_ms, self.seq);
            }
        }
    }

    /// Marks step `i` failed and stops the execution from starting anything new; steps already
    /// in flight settle first, then the completed steps are compensated.
    pub(super) fn fail_step(&mut self, i: NodeId, message: String, now_ms: u64) {
        let ended = self.stamp();
        let run = &mut *self.steps[i];
        run.status = StepStatus::Failed;
        run.error = Some(message.clone());
        run.end(now_ms, ended);
        if self.failure.is_none() {
            self.failure = Some(format!("step `{}` failed: {message}", run.name));
        }
        self.cancel_waiting(now_ms);
    }

    pub(super) fn begin_compensation(&mut self, plan: &Plan) {
        let mut seen = std::collections::BTreeSet::new();
        self.compensations = self
            .completion_order
            .iter()
            .rev()
            .filter(|&&i| {
                plan.node(i).compensation.is_some()
                    && self.steps[i].status == StepStatus::Completed
                    && seen.insert(i)
            })
            .map(|&i| Compensation::new(i, plan))
            .collect();
    }
}
