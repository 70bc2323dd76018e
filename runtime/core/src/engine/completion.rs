//! A node's end: completed (with its result), or skipped; either way the nodes after it are
//! signalled, a choice state's pick alone.

use std::sync::Arc;

use super::{Execution, ResponseMeta, StepStatus};
use crate::invoke::Response;
use crate::payload::Payload;
use crate::plan::{NodeId, Plan, Work};

impl Execution {
    pub(super) fn skip(&mut self, plan: &Plan, i: NodeId, now_ms: u64) {
        let ended = self.stamp();
        let run = &mut *self.steps[i];
        run.status = StepStatus::Skipped;
        run.result = None;
        run.end(now_ms, ended);
        self.signal_next(plan, i, &plan.node(i).next);
    }

    pub(super) fn complete(
        &mut self,
        plan: &Plan,
        i: NodeId,
        response: Option<Response>,
        now_ms: u64,
    ) {
        match response {
            Some(Response {
                status,
                headers,
                body,
            }) => {
                let meta = ResponseMeta { status, headers };
                self.complete_with(plan, i, Some(Arc::new(body)), Some(meta), now_ms);
            }
            None => self.complete_with(plan, i, None, None, now_ms),
        }
    }

    pub(super) fn complete_with(
        &mut self,
        plan: &Plan,
        i: NodeId,
        result: Option<Arc<Payload>>,
        response: Option<ResponseMeta>,
        now_ms: u64,
    ) {
        let ended = self.stamp();
        let run = &mut *self.steps[i];
        run.status = StepStatus::Completed;
        run.result = result;
        run.response = response;
        run.end(now_ms, ended);
        self.completion_order.push(i);
        match self.steps[i].chosen {
            Some(chosen) if matches!(plan.node(i).work, Work::Choice { .. }) => {
                self.signal_next(plan, i, &[chosen]);
            }
            _ => self.signal_next(plan, i, &plan.node(i).next),
        }
    }

    fn signal_next(&mut self, _plan: &Plan, from: NodeId, next: &[NodeId]) {
        for &to in next {
            let run = &mut *self.steps[to];
            run.armed = true;
            run.signals.push(from);
        }
    }
}
