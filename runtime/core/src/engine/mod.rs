//! The engine: a pure state machine over one execution.
//!
//! [`Execution::start`], [`Execution::apply`] and [`Execution::resume`] take the plan, an
//! event and the current time, update the execution record and return the [`Action`]s to
//! carry out (send a request, arm a timer, report the end). They do no I/O and read no clock,
//! so every decision can be replayed and tested by feeding events. `crate::runner` carries
//! the actions out and persists the record after every step.

mod attempts;
mod completion;
mod render;
mod saga;
mod state;

pub use state::*;

use attempts::describe_failure;

use std::sync::Arc;

use serde_json::Value as Json;

use crate::component::{Export, Phase};
use crate::invoke::{Failure, Request, Response};
use crate::payload::Payload;
use crate::plan::{Condition, Join, NodeId, Plan, Work};

/// What an action or event is about: a step, or the compensation at this index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "index", rename_all = "snake_case")]
pub enum Target {
    Step(NodeId),
    Compensation(usize),
}

/// Something that happened outside the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Succeeded {
        target: Target,
        attempt: u32,
        response: Response,
    },
    Failed {
        target: Target,
        attempt: u32,
        failure: Failure,
    },
    /// A timer armed by [`Action::Timer`] went off.
    Timer { target: Target, attempt: u32 },
}

/// Something the engine wants done. The record must be persisted before these are carried out.
// Actions live for one turn of the runner's loop; boxing the request would cost an allocation
// per call to save a few hundred bytes of stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Invoke {
        target: Target,
        attempt: u32,
        request: Arc<Request>,
    },
    /// Deliver `Event::Timer { target, attempt }` at `at_ms` (Unix milliseconds).
    Timer {
        target: Target,
        attempt: u32,
        at_ms: u64,
    },
    /// The execution reached a final status.
    Finished,
}

impl Execution {
    /// Creates the execution and starts its first nodes.
    pub fn start(
        plan: &Plan,
        id: String,
        input: Json,
        bindings: Bindings,
        now_ms: u64,
    ) -> (Execution, Vec<Action>) {
        let mut execution = Execution::new(plan, id, input, bindings, now_ms);
        let mut actions = Vec::new();
        for &root in &plan.roots {
            execution.steps[root].armed = true;
        }
        execution.advance(plan, now_ms, &mut actions);
        (execution, actions)
    }

    /// Re-issues what was in flight when the record was last saved (after a crash or restart).
    /// A step that had started but has no outcome is sent again with the same request, so the
    /// same `Idempotency-Key`.
    pub fn resume(&mut self, plan: &Plan, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for (i, run) in self.steps.iter().enumerate() {
            let target = Target::Step(i);
            match run.status {
                StepStatus::Running | StepStatus::Evaluating => actions.push(Action::Invoke {
                    target,
                    attempt: run.attempts.len() as u32,
                    request: run.request.clone().expect("a running step has its request"),
                }),
                StepStatus::Retrying => actions.push(Action::Timer {
                    target,
                    attempt: run.attempts.len() as u32 + 1,
                    at_ms: run.timer_at_ms.unwrap_or(now_ms),
                }),
                StepStatus::Waiting => actions.push(Action::Timer {
                    target,
                    attempt: 0,
                    at_ms: run.timer_at_ms.unwrap_or(now_ms),
                }),
                _ => {}
            }
        }
        for (k, comp) in self.compensations.iter().enumerate() {
            let target = Target::Compensation(k);
            match comp.status {
                StepStatus::Running => actions.push(Action::Invoke {
                    target,
                    attempt: comp.attempts.len() as u32,
                    request: comp
                        .request
                        .clone()
                        .expect("a running compensation has its request"),
                }),
                StepStatus::Retrying => actions.push(Action::Timer {
                    target,
                    attempt: comp.attempts.len() as u32 + 1,
                    at_ms: comp.timer_at_ms.unwrap_or(now_ms),
                }),
                _ => {}
            }
        }
        self.api_calls += actions
            .iter()
            .filter(|a| matches!(a, Action::Invoke { .. }))
            .count() as u32;
        self.resumes += 1;
        self.advance(plan, now_ms, &mut actions);
        actions
    }

    /// Applies one event. Events for attempts that are no longer current are ignored.
    pub fn apply(&mut self, plan: &Plan, event: Event, now_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        self.apply_into(plan, event, now_ms, &mut actions);
        actions
    }

    /// [`Execution::apply`], adding the actions to `actions`: a driver that applies event
    /// after event reuses one list instead of allocating one per event.
    pub fn apply_into(
        &mut self,
        plan: &Plan,
        event: Event,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) {
        match event {
            Event::Succeeded {
                target: Target::Step(i),
                attempt: 0,
                response,
            } if self.steps[i].is_current(StepStatus::Evaluating, 0) => match response.body.value()
            {
                Json::Bool(true) => self.perform(plan, i, Signals::new(), now_ms, actions),
                Json::Bool(false) => self.skip(plan, i, now_ms),
                other => self.fail_step(
                    i,
                    format!("condition component returned {other}, not a boolean"),
                    now_ms,
                ),
            },
            Event::Failed {
                target: Target::Step(i),
                attempt: 0,
                failure,
            } if self.steps[i].is_current(StepStatus::Evaluating, 0) => {
                self.fail_step(i, format!("condition: {}", failure.message), now_ms);
            }
            Event::Succeeded {
                target: Target::Step(i),
                attempt,
                response,
            } => {
                if self.steps[i].is_current(StepStatus::Running, attempt) {
                    let seq = self.stamp();
                    self.steps[i].finish_attempt(now_ms, seq, Outcome::ok(&response));
                    self.complete(plan, i, Some(response), now_ms);
                }
            }
            Event::Failed {
                target: Target::Step(i),
                attempt,
                failure,
            } => {
                if self.steps[i].is_current(StepStatus::Running, attempt) {
                    let seq = self.stamp();
                    self.steps[i].finish_attempt(now_ms, seq, Outcome::failed(&failure));
                    let policy = &plan.node(i).retry;
                    if self.failure.is_none() && policy.should_retry(attempt, failure.kind) {
                        let at_ms =
                            now_ms + self.retry_delay_ms(plan, Target::Step(i), attempt, &failure);
                        self.steps[i].retry_at(at_ms);
                        actions.push(Action::Timer {
                            target: Target::Step(i),
                            attempt: attempt + 1,
                            at_ms,
                        });
                    } else {
                        let message = describe_failure(&failure, attempt);
                        self.fail_step(i, message, now_ms);
                    }
                }
            }
            Event::Timer {
                target: Target::Step(i),
                attempt,
            } => match self.steps[i].status {
                StepStatus::Retrying if attempt == self.steps[i].attempts.len() as u32 + 1 => {
                    self.steps[i].timer_at_ms = None;
                    self.start_attempt(Target::Step(i), now_ms, actions);
                }
                StepStatus::Waiting if attempt == 0 => {
                    self.steps[i].timer_at_ms = None;
                    self.complete(plan, i, None, now_ms);
                }
                _ => {}
            },
            Event::Succeeded {
                target: Target::Compensation(k),
                attempt,
                response,
            } => {
                if self.compensations[k].is_current(StepStatus::Running, attempt) {
                    let (seq, ended) = (self.stamp(), self.stamp());
                    let comp = &mut self.compensations[k];
                    comp.finish_attempt(now_ms, seq, Outcome::ok(&response));
                    comp.status = StepStatus::Completed;
                    comp.end(now_ms, ended);
                }
            }
            Event::Failed {
                target: Target::Compensation(k),
                attempt,
                failure,
            } => {
                if self.compensations[k].is_current(StepStatus::Running, attempt) {
                    let seq = self.stamp();
                    self.compensations[k].finish_attempt(now_ms, seq, Outcome::failed(&failure));
                    let node = self.compensations[k].node;
                    if plan.node(node).retry.should_retry(attempt, failure.kind) {
                        let at_ms = now_ms
                            + self.retry_delay_ms(plan, Target::Compensation(k), attempt, &failure);
                        self.compensations[k].retry_at(at_ms);
                        actions.push(Action::Timer {
                            target: Target::Compensation(k),
                            attempt: attempt + 1,
                            at_ms,
                        });
                    } else {
                        let ended = self.stamp();
                        let comp = &mut self.compensations[k];
                        comp.status = StepStatus::Failed;
                        comp.error = Some(describe_failure(&failure, attempt));
                        comp.end(now_ms, ended);
                    }
                }
            }
            Event::Timer {
                target: Target::Compensation(k),
                attempt,
            } => {
                let comp = &self.compensations[k];
                if comp.status == StepStatus::Retrying && attempt == comp.attempts.len() as u32 + 1
                {
                    self.compensations[k].timer_at_ms = None;
                    self.start_attempt(Target::Compensation(k), now_ms, actions);
                }
            }
        }
        self.advance(plan, now_ms, actions);
    }

    /// Starts every node that may start, then moves the execution on when nothing is left to
    /// run: to completion, to compensation, or to its final status.
    fn advance(&mut self, plan: &Plan, now_ms: u64, actions: &mut Vec<Action>) {
        if self.status.is_final() {
            return;
        }
        if self.status == Status::Running {
            while self.failure.is_none() {
                let Some(i) = (0..self.steps.len()).find(|&i| self.is_ready(plan, i)) else {
                    break;
                };
                self.begin(plan, i, now_ms, actions);
            }
            if self.steps.iter().any(|s| s.status == StepStatus::Running)
                || (self.failure.is_none() && self.steps.iter().any(|s| s.status.is_active()))
            {
                self.refresh_current();
                return;
            }
            if self.failure.is_none() {
                match self.render_output(plan) {
                    Ok(output) => {
                        self.output = Some(output.into());
                        self.finish(Status::Completed, now_ms, actions);
                        return;
                    }
                    Err(message) => self.failure = Some(message),
                }
            }
            self.begin_compensation(plan);
            if self.compensations.is_empty() {
                self.error = self.failure.clone();
                let status = if self.cancelled {
                    Status::Cancelled
                } else {
                    Status::Failed
                };
                self.finish(status, now_ms, actions);
                return;
            }
            self.status = Status::Compensating;
        }
        // Compensating: one at a time, newest completion first.
        if self.compensations.iter().any(|c| c.status.is_active()) {
            self.refresh_current();
            return;
        }
        if let Some(k) = self
            .compensations
            .iter()
            .position(|c| c.status == StepStatus::Pending)
        {
            match self.render_compensation(plan, k) {
                Ok(request) => {
                    let started = self.stamp();
                    self.compensations[k].request = Some(Arc::new(request));
                    self.compensations[k].started_at_ms = Some(now_ms);
                    self.compensations[k].started_seq = Some(started);
                    self.start_attempt(Target::Compensation(k), now_ms, actions);
                    self.refresh_current();
                }
                Err(message) => {
                    let ended = self.stamp();
                    let comp = &mut self.compensations[k];
                    comp.status = StepStatus::Failed;
                    comp.error = Some(message);
                    comp.end(now_ms, ended);
                    self.advance(plan, now_ms, actions);
                }
            }
            return;
        }
        let not_undone: Vec<&str> = self
            .compensations
            .iter()
            .filter(|c| c.status != StepStatus::Completed)
            .map(|c| c.step.as_str())
            .collect();
        let failure = self.failure.clone().unwrap_or_default();
        if not_undone.is_empty() {
            self.error = Some(failure);
            let status = if self.cancelled {
                Status::Cancelled
            } else {
                Status::Compensated
            };
            self.finish(status, now_ms, actions);
        } else {
            self.error = Some(format!(
                "{failure}; could not undo: {}",
                not_undone.join(", ")
            ));
            self.finish(Status::CompensationFailed, now_ms, actions);
        }
    }

    fn is_ready(&self, plan: &Plan, i: NodeId) -> bool {
        let run = &self.steps[i];
        if !run.armed || run.status.is_active() {
            return false;
        }
        match &plan.node(i).join {
            Join::Any => true,
            Join::AllOf(groups) => groups
                .iter()
                .all(|group| group.iter().any(|m| run.signals.contains(m))),
        }
    }

    /// Starts node `i`: checks its condition, then does its work.
    fn begin(&mut self, plan: &Plan, i: NodeId, now_ms: u64, actions: &mut Vec<Action>) {
        let node = plan.node(i);
        let started = self.stamp();
        let senders = {
            let run = &mut *self.steps[i];
            run.armed = false;
            run.visits += 1;
            run.attempts.clear();
            run.error = None;
            run.started_at_ms = Some(now_ms);
            run.ended_at_ms = None;
            run.started_seq = Some(started);
            run.ended_seq = None;
            run.wait_until_ms = None;
            std::mem::take(&mut run.signals)
        };
        match &node.condition {
            None => self.perform(plan, i, senders, now_ms, actions),
            Some(Condition::Expression(condition)) => {
                let verdict = condition.eval_bool(&self.scope(plan));
                match verdict {
                    Ok(true) => self.perform(plan, i, senders, now_ms, actions),
                    Ok(false) => self.skip(plan, i, now_ms),
                    Err(e) => self.fail_step(i, format!("condition: {e}"), now_ms),
                }
            }
            Some(Condition::Component(component)) => {
                match self.render_component(plan, i, component, Export::Condition, Phase::Run) {
                    Ok(request) => {
                        let request = Arc::new(request);
                        let run = &mut *self.steps[i];
                        run.status = StepStatus::Evaluating;
                        run.request = Some(request.clone());
                        self.api_calls += 1;
                        actions.push(Action::Invoke {
                            target: Target::Step(i),
                            attempt: 0,
                            request,
                        });
                    }
                    Err(message) => self.fail_step(i, format!("condition: {message}"), now_ms),
                }
            }
        }
    }

    /// Does node `i`'s work, once its condition (if any) said yes.
    fn perform(
        &mut self,
        plan: &Plan,
        i: NodeId,
        senders: Signals,
        now_ms: u64,
        actions: &mut Vec<Action>,
    ) {
        let node = plan.node(i);
        match &node.work {
            Work::Call(call) => match self.render_call(plan, i, call) {
                Ok(request) => {
                    self.steps[i].request = Some(Arc::new(request));
                    self.start_attempt(Target::Step(i), now_ms, actions);
                }
                Err(message) => self.fail_step(i, message, now_ms),
            },
            Work::Pass(template) => {
                let result = match template {
                    Some(t) => t.render(&self.scope(plan)),
                    None => Ok((*self.input).clone()),
                };
                match result {
                    Ok(value) => {
                        let result = Arc::new(Payload::from(value));
                        self.complete_with(plan, i, Some(result), None, now_ms);
                    }
                    Err(e) => self.fail_step(i, format!("result: {e}"), now_ms),
                }
            }
            Work::Wait(duration) => {
                let at_ms = now_ms + duration.as_millis() as u64;
                let run = &mut *self.steps[i];
                run.status = StepStatus::Waiting;
                run.timer_at_ms = Some(at_ms);
                run.wait_until_ms = Some(at_ms);
                actions.push(Action::Timer {
                    target: Target::Step(i),
                    attempt: 0,
                    at_ms,
                });
            }
            Work::Choice { rules, default } => {
                let scope = self.scope(plan);
                let mut chosen = None;
                for (expr, target) in rules {
                    match expr.eval_bool(&scope) {
                        Ok(true) => {
                            chosen = Some(*target);
                            break;
                        }
                        Ok(false) => {}
                        Err(e) => return self.fail_step(i, format!("choice rule: {e}"), now_ms),
                    }
                }
                match chosen.or(*default) {
                    Some(target) => {
                        self.steps[i].chosen = Some(target);
                        self.complete_with(plan, i, None, None, now_ms);
                    }
                    None => self.fail_step(
                        i,
                        "no choice rule matched and there is no `default`".into(),
                        now_ms,
                    ),
                }
            }
            // A succeed state hands on what reached it, so a branch ending in one still has a result.
            Work::Succeed => {
                let passed = senders.first().and_then(|&s| self.steps[s].result.clone());
                self.complete_with(plan, i, passed, None, now_ms);
            }
            Work::Fork => self.complete_with(plan, i, None, None, now_ms),
            Work::Fail { error, cause } => {
                let message = match cause {
                    Some(cause) => format!("{error}: {cause}"),
                    None => error.clone(),
                };
                self.fail_step(i, message, now_ms);
            }
            Work::Collect => {
                let Join::AllOf(groups) = &node.join else {
                    unreachable!("a parallel join waits for all of its branches")
                };
                let results = groups
                    .iter()
                    .map(|group| {
                        senders
                            .iter()
                            .find(|s| group.contains(s))
                            .and_then(|&s| self.steps[s].result.as_ref())
                            .map_or(Json::Null, |result| result.value().clone())
                    })
                    .collect();
                let results = Arc::new(Payload::from(Json::Array(results)));
                self.complete_with(plan, i, Some(results), None, now_ms);
            }
        }
    }

    fn finish(&mut self, status: Status, now_ms: u64, actions: &mut Vec<Action>) {
        self.status = status;
        self.ended_at_ms = Some(now_ms);
        self.ended_seq = Some(self.stamp());
        self.refresh_current();
        actions.push(Action::Finished);
    }

    fn refresh_current(&mut self) {
        // Refilled in place: it changes at every step, and one buffer serves them all.
        let mut current = std::mem::take(&mut self.current);
        current.clear();
        current.extend(
            self.steps
                .iter()
                .filter(|s| s.status.is_active())
                .map(|s| s.name.clone()),
        );
        current.extend(
            self.compensations
                .iter()
                .filter(|c| c.status.is_active())
                .map(|c| Arc::<str>::from(format!("{} (compensation)", c.step))),
        );
        self.current = current;
    }
}

#[cfg(test)]
mod tests;
