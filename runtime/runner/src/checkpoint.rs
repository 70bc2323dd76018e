//! The checkpoint write: how an execution's record reaches the store after every batch of
//! events (or, on a store that keeps nothing across a crash, at most every
//! [`CHECKPOINT_LAG`]), fenced by the lease the drive loop holds.

use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

use orca_store::{self, Fence, RecordBody, StoreError, StoredExecution, Write};

use super::lease::HeldLease;
use super::{ExecutionRecord, RunError, Runner};

/// The wait before a failed save is sent again, doubled each time up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const LAST_RETRY: Duration = Duration::from_secs(2);

impl Runner {
    /// Writes the record where `stored` says; `release` (the execution is final) also gives
    /// the lease up in the same commit. The first write of a [`Stored::NotYet`] execution
    /// creates it, leased to this runner unless it is released at once.
    pub(crate) async fn write(
        &self,
        record: &ExecutionRecord,
        stored: &mut Stored,
        release: bool,
    ) -> Result<(), RunError> {
        if let Stored::Leased(lease) = stored {
            return self.write_record(record, lease.fence(), release).await;
        }
        if !release {
            *stored = Stored::Leased(self.create(record).await?);
            return Ok(());
        }
        // Created and released in one commit: the execution ended before it was first written.
        let execution = self.stored(record)?;
        let finish = Write::Save {
            execution: execution.clone(),
            fence: orca_store::FIRST_FENCE,
            release: true,
        };
        let create = self.creation(execution, self.lease_until());
        for outcome in self.store.write(vec![create, finish]).await? {
            outcome?;
        }
        Ok(())
    }

    /// Saves the record under `fence`. A store that fails (a lost connection, a database
    /// failing over) is tried again with backoff for as long as the lease lasts, so an outage
    /// shorter than that only stalls the execution; after it, another process may have taken
    /// the execution over, and this one gives it up. Saving the same record twice under the
    /// same fence is harmless, so a write whose answer was lost can be sent again.
    pub(crate) async fn write_record(
        &self,
        record: &ExecutionRecord,
        fence: Fence,
        release: bool,
    ) -> Result<(), RunError> {
        let given_up_at = tokio::time::Instant::now() + self.lease.duration;
        let mut delay = FIRST_RETRY;
        loop {
            let save = Write::Save {
                execution: self.stored(record)?,
                fence,
                release,
            };
            match orca_store::write_one(&*self.store, save).await {
                Ok(_) => return Ok(()),
                Err(error @ StoreError::Fenced { .. }) => {
                    return Err(RunError::LeaseLost {
                        id: record.execution.id.to_string(),
                        reason: error.to_string(),
                    });
                }
                Err(error @ StoreError::Backend { .. })
                    if tokio::time::Instant::now() + delay < given_up_at =>
                {
                    tracing::warn!(
                        execution = %record.execution.id,
                        %error,
                        retry_in = ?delay,
                        "could not save the execution; trying again"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(LAST_RETRY);
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The record as the store is handed it: its JSON, made here, or, for a store that keeps
    /// records in this process, a snapshot that shares the record's unchanged parts.
    pub(crate) fn stored(&self, record: &ExecutionRecord) -> Result<StoredExecution, RunError> {
        let execution = &record.execution;
        let body = if self.store.keeps_records() {
            RecordBody::record(record.clone())
        } else {
            RecordBody::json(record.checkpoint().map_err(|e| RunError::Corrupt {
                id: execution.id.to_string(),
                message: e.to_string(),
            })?)
        };
        Ok(StoredExecution {
            id: execution.id.clone(),
            workflow_id: execution.workflow_id.clone(),
            status: Cow::Borrowed(execution.status.as_str()),
            created_at_ms: execution.started_at_ms as i64,
            updated_at_ms: self.clock.now_ms() as i64,
            body,
        })
    }
}

impl ExecutionRecord {
    /// The record's JSON, written into a buffer sized for it up front.
    pub(crate) fn checkpoint(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut json = Vec::with_capacity(checkpoint_size(self)?);
        serde_json::to_writer(&mut json, self)?;
        Ok(json)
    }
}

impl orca_store::Record for ExecutionRecord {
    fn to_json(&self) -> Vec<u8> {
        // Every map in a record has string keys and every value is plain data, so writing
        // it into memory cannot fail; should it ever, the reader sees why instead of a panic.
        self.checkpoint().unwrap_or_else(|error| {
            serde_json::to_vec(&serde_json::json!({"unserializable": error.to_string()}))
                .unwrap_or_default()
        })
    }
}

/// About the size of `record`'s JSON, so that a checkpoint's buffer is allocated once instead
/// of doubling its way up and copying what it had written each time. Most of a record is parts
/// whose JSON is kept between checkpoints; those that changed are serialized here, which is
/// work the checkpoint would do anyway, and then only the execution's own fields are guessed.
fn checkpoint_size(record: &ExecutionRecord) -> Result<usize, serde_json::Error> {
    /// Ids, status, services, times, output and the like, with room to spare.
    const FIELDS: usize = 768;
    let execution = &record.execution;
    let mut size = record.workflow.sources.list.json()?.get().len() + FIELDS;
    size += execution.input.json()?.get().len();
    size += execution.services.json()?.get().len() + execution.components.json()?.get().len();
    for step in &execution.steps {
        size += step.json()?.get().len();
    }
    Ok(size)
}

/// Where the drive loop writes an execution.
pub(crate) enum Stored {
    /// The store has the record, leased to this runner.
    Leased(HeldLease),
    /// A new execution on a store that keeps nothing across a crash, whose id nobody has been
    /// given: its first write creates it (see [`Runner::run`]).
    NotYet,
}

impl Stored {
    /// Resolves (with the reason) once the lease is lost; pending forever before there is one.
    pub(crate) async fn lost(&mut self) -> String {
        match self {
            Stored::Leased(lease) => lease.lost().await,
            Stored::NotYet => std::future::pending().await,
        }
    }
}

/// How far a running execution's checkpoint may lag behind it on a store that keeps nothing
/// across a crash (the memory store). There a checkpoint protects nothing and only serves
/// readers (the API), who cannot tell one written every few milliseconds from one written
/// after every step. One per step was about a third of the engine's CPU in a 10-step
/// workflow, spent on the cores its calls need. The final state is written at once.
pub const CHECKPOINT_LAG: Duration = Duration::from_millis(5);

/// Resolves when the unsaved changes are due to be written; never without any.
pub(crate) async fn due(unsaved: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match unsaved {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}
