//! Attempts: starting one (the request was rendered before), and the delay before the next
//! when one fails and its policy retries.

use super::{Action, Attempt, Execution, StepStatus, Target};
use crate::invoke::Failure;
use crate::plan::Plan;

impl Execution {
    pub(super) fn start_attempt(&mut self, target: Target, now_ms: u64, actions: &mut Vec<Action>) {
        let seq = self.stamp();
        let run = match target {
            Target::Step(i) => &mut self.steps[i].run,
            Target::Compensation(k) => &mut self.compensations[k].run,
        };
        let attempt = run.attempts.len() as u32 + 1;
        run.status = StepStatus::Running;
        run.attempts.push(Attempt {
            number: attempt,
            started_at_ms: now_ms,
            ended_at_ms: None,
            seq: Some(seq),
            ended_seq: None,
            retry_at_ms: None,
            outcome: None,
        });
        let request = run
            .request
            .clone()
            .expect("a request is rendered before its attempt");
        self.api_calls += 1;
        actions.push(Action::Invoke {
            target,
            attempt,
            request,
        });
    }

    pub(super) fn retry_delay_ms(
        &self,
        plan: &Plan,
        target: Target,
        attempt: u32,
        failure: &Failure,
    ) -> u64 {
        let (node, salt) = match target {
            Target::Step(i) => (i, 0u64),
            Target::Compensation(k) => (self.compensations[k].node, 1),
        };
        let seed = self
            .id
            .bytes()
            .chain(plan.node(node).name.bytes())
            .fold(salt ^ u64::from(attempt), |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let backoff = plan.node(node).retry.delay(attempt, seed).as_millis() as u64;
        backoff.max(failure.retry_after_ms.unwrap_or(0))
    }
}

pub(super) fn describe_failure(failure: &Failure, attempt: u32) -> String {
    if attempt > 1 {
        format!("{} (after {attempt} attempts)", failure.message)
    } else {
        failure.message.clone()
    }
}
