//! The drive loop: puts the engine's calls and timers in flight, applies their outcomes in
//! batches, writes each batch's checkpoint before acting on it, and ends when the execution
//! does, is cancelled or stopped, or loses its lease.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::mpsc;

use orca_core::engine::{Action, Event, Execution, Target};
use orca_core::invoke::{Failure, FailureKind, Request, TrapKind};
use orca_core::plan::Plan;

use crate::checkpoint::{Stored, due};
use crate::handle::receive;
use crate::in_flight::InFlight;
use crate::{Control, ExecutionRecord, RunError, Runner};

impl Runner {
    /// Carries out `actions` and the ones that follow until the execution is final. The
    /// caller has persisted the record as it is when this is called, unless it is
    /// [`Stored::NotYet`].
    #[tracing::instrument(
        name = "execution",
        skip_all,
        fields(
            execution = %record.execution.id,
            workflow = %record.execution.workflow_id,
            tenant = %record.execution.tenant,
        )
    )]
    pub(crate) async fn drive(
        &self,
        record: &mut ExecutionRecord,
        plan: &Plan,
        mut actions: Vec<Action>,
        mut stored: Stored,
        mut control: Option<&mut mpsc::UnboundedReceiver<Control>>,
    ) -> Result<(), RunError> {
        // Once every sender is gone (or there never was a channel: an execution driven to its
        // end by its caller), `recv` would return `None` at once: stop polling it.
        let mut control_open = true;
        // Calls and timers in flight, polled by this task. Dropping the set when the loop
        // returns cancels whatever is still pending.
        let mut pending: InFlight<Pending> = InFlight::new();
        // The outcomes applied together in one turn; kept across turns for its capacity.
        let mut batch = Vec::new();
        // On a store that keeps nothing across a crash: when the changes not yet written are
        // due to be (see `CHECKPOINT_LAG`).
        let mut unsaved: Option<Pin<Box<tokio::time::Sleep>>> = match stored {
            Stored::Leased(_) => None,
            Stored::NotYet => Some(Box::pin(tokio::time::sleep(self.checkpoint_lag))),
        };
        loop {
            if self.put_in_flight(&record.execution, plan, actions.drain(..), &mut pending) {
                match &stored {
                    // The record as it is was written: only the lease is left.
                    Stored::Leased(lease) => {
                        self.release(&record.execution.id, lease.fence()).await
                    }
                    Stored::NotYet => self.write(record, &mut stored, true).await?,
                }
                self.report_finished(record);
                return Ok(());
            }
            let first = tokio::select! {
                // The calls last: the first poll of a new call is what sends it, and
                // whatever this task does between sending and waiting competes with the
                // call for the cores.
                biased;
                () = due(&mut unsaved), if unsaved.is_some() => {
                    unsaved = None;
                    self.write(record, &mut stored, false).await?;
                    continue;
                }
                reason = stored.lost() => {
                    return Err(RunError::LeaseLost {
                        id: record.execution.id.to_string(),
                        reason,
                    });
                }
                message = receive(&mut control), if control_open => {
                    match message {
                        Some(Control::Cancel(reason)) => {
                            let now = self.clock.now_ms();
                            actions.extend(record.execution.cancel(plan, &reason, now));
                            unsaved = None;
                            self.write(record, &mut stored, false).await?;
                        }
                        Some(Control::Stop) => {
                            // The last save is the checkpoint: calls in flight are sent
                            // again (same idempotency key) by whoever resumes.
                            if unsaved.take().is_some() {
                                self.write(record, &mut stored, false).await?;
                            }
                            if let Stored::Leased(lease) =
                                std::mem::replace(&mut stored, Stored::NotYet)
                            {
                                self.hand_over(&record.execution.id, lease).await;
                            }
                            return Err(RunError::Stopped {
                                id: record.execution.id.to_string(),
                            });
                        }
                        None => control_open = false,
                    }
                    continue;
                }
                // With nothing pending this branch is disabled until the next turn.
                Some(event) = pending.next() => event,
            };
            // Apply everything that has already arrived before the next write: one commit
            // covers a whole batch of step outcomes.
            batch.push(first);
            while let Some(Some(more)) = pending.next().now_or_never() {
                batch.push(more);
            }
            for event in batch.drain(..) {
                let compared = self.progress.as_ref().filter(|p| p.compares_changes());
                let before = compared.map(|_| record.execution.clone());
                let now = self.clock.now_ms();
                record.execution.apply_into(plan, event, now, &mut actions);
                if let (Some(p), Some(before)) = (compared, before) {
                    p.changed(plan, &before, &record.execution);
                }
            }
            if actions.iter().any(|a| matches!(a, Action::Finished)) {
                // The final record and the lease's release share one commit.
                self.write(record, &mut stored, true).await?;
                self.report_finished(record);
                return Ok(());
            }
            if self.store.is_durable() {
                // Durable before any action this batch produced is carried out.
                self.write(record, &mut stored, false).await?;
            } else if unsaved.is_none() {
                // A store that keeps nothing across a crash protects nothing by being
                // written first, and its checkpoints only serve readers: send the calls, and
                // write once the lag is up, with whatever has changed by then.
                unsaved = Some(Box::pin(tokio::time::sleep(self.checkpoint_lag)));
            }
        }
    }

    /// Puts the calls and timers of `actions` in flight (they start when `pending` is next
    /// polled); whether one of the actions is [`Action::Finished`].
    pub(crate) fn put_in_flight(
        &self,
        execution: &Execution,
        plan: &Plan,
        actions: impl Iterator<Item = Action>,
        pending: &mut InFlight<Pending>,
    ) -> bool {
        let mut finished = false;
        let mut actions = actions.peekable();
        // Nothing else will be polled beside a call that starts alone (see `call`).
        let mut alone = pending.is_empty();
        while let Some(action) = actions.next() {
            alone &= actions.peek().is_none();
            match action {
                Action::Invoke {
                    target,
                    attempt,
                    request,
                } => pending.push(self.call(execution, plan, target, attempt, request, alone)),
                Action::Timer {
                    target,
                    attempt,
                    at_ms,
                } => {
                    let delay = at_ms.saturating_sub(self.clock.now_ms());
                    pending.push(Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        Event::Timer { target, attempt }
                    }));
                }
                Action::Finished => finished = true,
            }
        }
        finished
    }

    pub(crate) fn report_finished(&self, record: &ExecutionRecord) {
        if let Some(p) = &self.progress {
            p.finished(&record.execution);
        }
    }

    /// One call as a future of its outcome. HTTP calls are polled by the drive task itself.
    /// A component computes inside `poll`, so one that starts beside other calls or timers
    /// (`alone` false) runs on a task of its own: parallel components of one execution use
    /// every core, and the drive task goes on applying the others' outcomes meanwhile. A
    /// component that starts alone, as every step of a sequential workflow does, is polled by
    /// the drive task too: a task of its own would only add two hand-offs between threads,
    /// which cost a call driven from outside the runtime (`orca run`) 50 to 70 µs on the
    /// benchmark machine, a fifth of a component step that makes an HTTP call
    /// (bench/FINDINGS.md, section 3).
    pub(crate) fn call(
        &self,
        execution: &Execution,
        plan: &Plan,
        target: Target,
        attempt: u32,
        request: Arc<Request>,
        alone: bool,
    ) -> Pending {
        let invoker = self.invoker.clone();
        let on_its_own_task = !alone && matches!(*request, Request::Component(_));
        let call = tracing::Instrument::instrument(
            async move {
                match invoker.invoke(&request, attempt).await {
                    Ok(response) => Event::Succeeded {
                        target,
                        attempt,
                        response,
                    },
                    Err(failure) => Event::Failed {
                        target,
                        attempt,
                        failure,
                    },
                }
            },
            call_span(execution, plan, target, attempt),
        );
        if !on_its_own_task {
            return Box::pin(call);
        }
        let task = AbortOnDrop(tokio::spawn(call));
        Box::pin(async move {
            match task.await {
                Ok(event) => event,
                Err(error) => Event::Failed {
                    target,
                    attempt,
                    failure: Failure::new(
                        FailureKind::Trap(TrapKind::Crash),
                        format!("the component call ended abnormally: {error}"),
                    ),
                },
            }
        })
    }
}

/// A call or timer in flight, resolving to the event it produces.
type Pending = Pin<Box<dyn Future<Output = Event> + Send>>;

/// A spawned task that is aborted, not detached, when its handle is dropped: a component
/// call must not outlive the drive loop that started it.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The span of one call: `attempt` for a step (or its condition, attempt 0), `compensation`
/// for an undo, with the ids that let logs be joined to the execution.
fn call_span(execution: &Execution, plan: &Plan, target: Target, attempt: u32) -> tracing::Span {
    match target {
        Target::Step(i) => tracing::info_span!(
            "attempt",
            execution = %execution.id,
            workflow = %execution.workflow_id,
            tenant = %execution.tenant,
            step = %plan.node(i).name,
            attempt,
        ),
        Target::Compensation(k) => tracing::info_span!(
            "compensation",
            execution = %execution.id,
            workflow = %execution.workflow_id,
            tenant = %execution.tenant,
            step = %execution.compensations[k].step,
            attempt,
        ),
    }
}
