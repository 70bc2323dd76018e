//! An execution driven on a background task, and the messages its drive loop takes.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use orca_core::engine::Execution;

use super::RunError;

/// A message into a running drive loop.
#[derive(Debug, Clone)]
pub enum Control {
    /// Cancel the execution (see [`Execution::cancel`]): it compensates and ends `cancelled`.
    Cancel(String),
    /// Stop driving at the last checkpoint and hand the lease over (process shutdown).
    Stop,
}

/// An execution driven on a background task.
pub struct Handle {
    pub id: String,
    /// Whose execution it is, when known as it was handed over: a start, or a takeover
    /// (read from the claimed record). Empty for a resume by id, whose record is read on
    /// the task itself.
    pub tenant: String,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    pub(crate) task: tokio::task::JoinHandle<Result<Arc<Execution>, RunError>>,
    pub(crate) finished: watch::Receiver<Option<Arc<Execution>>>,
}

impl Handle {
    /// Asks the drive loop to cancel; false if it has already ended.
    pub fn cancel(&self, reason: &str) -> bool {
        self.control
            .send(Control::Cancel(reason.to_string()))
            .is_ok()
    }

    /// Asks the drive loop to stop at its last checkpoint (see [`Control::Stop`]).
    pub fn stop(&self) {
        let _ = self.control.send(Control::Stop);
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Resolves with the execution once it has ended in a final status here, or with `None`
    /// when the drive loop stopped without one (a shutdown, a lost lease: the execution
    /// goes on elsewhere).
    pub fn finished(&self) -> impl Future<Output = Option<Arc<Execution>>> + Send + 'static {
        let mut finished = self.finished.clone();
        async move {
            let execution = finished.wait_for(Option::is_some).await.ok()?;
            execution.clone()
        }
    }

    /// Waits for the drive loop to end.
    pub async fn join(self) -> Result<Execution, RunError> {
        match self.task.await {
            Ok(result) => {
                result.map(|execution| Arc::try_unwrap(execution).unwrap_or_else(|e| (*e).clone()))
            }
            Err(e) => Err(RunError::LeaseLost {
                id: self.id,
                reason: format!("the drive task ended abnormally: {e}"),
            }),
        }
    }
}

pub(crate) async fn receive(
    control: &mut Option<&mut mpsc::UnboundedReceiver<Control>>,
) -> Option<Control> {
    match control {
        Some(control) => control.recv().await,
        None => None,
    }
}
