//! An [`ExecutionStore`] that keeps nothing beyond the life of the process.
//!
//! It exists for tests and for one-shot runs where durability is not wanted, so that the engine
//! can always be handed a store instead of special-casing "no persistence". It mirrors the
//! durable backends' semantics (saves keep the first `created_at_ms`, listing is newest first
//! with ties broken by id, the same lease and fence rules) so that code tested against it
//! behaves the same in production; `super::conformance` runs one suite against all of them.
//!
//! Unlike them it forgets: of the executions that have finished, only the most recent
//! [`MemoryStore::KEEP_FINISHED`] are kept, so that a long-lived process (`orca serve --store
//! memory`) does not grow without bound. Running executions are never dropped.

use std::collections::{HashMap, VecDeque, hash_map};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    Changes, Claim, ExecutionStore, FIRST_FENCE, Fence, Lease, LeaseStore, ListFilter, StoreError,
    StoredExecution, Write, WriteOutcomes,
};

#[derive(Debug, Clone)]
struct Entry {
    record: StoredExecution,
    /// `None` once released.
    owner: Option<String>,
    fence: Fence,
    until_ms: u64,
}

/// Keyed by execution id.
type ById = HashMap<Arc<str>, Entry>;

#[derive(Debug, Default)]
struct Executions {
    by_id: ById,
    /// The ids of finished executions, oldest first: the order they are forgotten in.
    finished: VecDeque<Arc<str>>,
}

/// Executions held in process memory, keyed by execution id.
#[derive(Debug)]
pub struct MemoryStore {
    executions: Mutex<Executions>,
    keep_finished: usize,
    changes: Arc<Changes>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// How many finished executions [`MemoryStore::new`] keeps: enough to look back over a
    /// working session, and at a few tens of KB for a ten-step execution, tens of MB at most.
    pub const KEEP_FINISHED: usize = 1_000;

    pub fn new() -> Self {
        Self::keeping_finished(Self::KEEP_FINISHED)
    }

    /// A store that keeps the `keep` most recently finished executions and forgets older ones.
    pub fn keeping_finished(keep: usize) -> Self {
        MemoryStore {
            executions: Mutex::default(),
            keep_finished: keep,
            changes: Changes::local(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Executions>, StoreError> {
        // A poisoned lock means another task panicked mid-operation; the map itself is never
        // left half-updated (every mutation is a single assignment), but report it rather
        // than silently carrying on.
        self.executions
            .lock()
            .map_err(|e| StoreError::backend("memory", e))
    }

    /// Runs `op` on the entry of `id` if `fence` is current.
    fn with_fenced<T>(
        &self,
        id: &str,
        fence: Fence,
        op: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, StoreError> {
        let mut executions = self.lock()?;
        Ok(op(fenced(&mut executions.by_id, id, fence)?))
    }
}

impl Executions {
    /// Forgets the oldest finished executions beyond the `keep` most recent. Returned rather
    /// than dropped here: freeing a record is the caller's work, not the lock holder's.
    fn forget_beyond(&mut self, keep: usize) -> Vec<Entry> {
        let excess = self.finished.len().saturating_sub(keep);
        let mut forgotten = Vec::new();
        for id in self.finished.drain(..excess) {
            // Claimed again since it finished (only ever by hand): it is not finished now.
            if let hash_map::Entry::Occupied(entry) = self.by_id.entry(id)
                && entry.get().owner.is_none()
            {
                forgotten.push(entry.remove());
            }
        }
        forgotten
    }
}

/// One write of a batch, under the lock the whole batch holds.
fn apply(executions: &mut Executions, write: Write) -> Result<Fence, StoreError> {
    let Executions {
        by_id: executions,
        finished,
    } = executions;
    match write {
        Write::Create {
            execution,
            owner,
            lease_until_ms,
        } => {
            if executions.contains_key(&execution.id) {
                return Err(StoreError::Exists(execution.id.to_string()));
            }
            executions.insert(
                execution.id.clone(),
                Entry {
                    record: kept(execution),
                    owner: Some(owner),
                    fence: FIRST_FENCE,
                    until_ms: lease_until_ms,
                },
            );
            Ok(FIRST_FENCE)
        }
        Write::Save {
            execution,
            fence,
            release,
        } => {
            let entry = fenced(executions, &execution.id, fence)?;
            let created_at_ms = entry.record.created_at_ms;
            entry.record = kept(execution);
            entry.record.created_at_ms = created_at_ms;
            // Saved with its lease released: the execution has finished.
            if release && entry.owner.take().is_some() {
                entry.until_ms = 0;
                finished.push_back(entry.record.id.clone());
            }
            Ok(fence)
        }
    }
}

/// The record as this store keeps it: every record stays in memory for the life of the
/// process, so JSON written into a roomier buffer than it needed gives the room back.
fn kept(mut record: StoredExecution) -> StoredExecution {
    if let Some(json) = record.body.as_json_vec()
        && json.capacity() > json.len() + json.len() / 4
    {
        json.shrink_to_fit();
    }
    record
}

/// The entry of `id` if `fence` is current.
fn fenced<'a>(
    executions: &'a mut ById,
    id: &str,
    fence: Fence,
) -> Result<&'a mut Entry, StoreError> {
    let entry = executions
        .get_mut(id)
        .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    if entry.fence != fence {
        return Err(StoreError::Fenced {
            id: id.to_string(),
            fence,
        });
    }
    Ok(entry)
}

fn lease_of(id: &str, entry: &Entry) -> Option<Lease> {
    entry.owner.as_ref().map(|owner| Lease {
        execution_id: id.to_string(),
        owner: owner.clone(),
        fence: entry.fence,
        until_ms: entry.until_ms,
    })
}

#[async_trait]
impl ExecutionStore for MemoryStore {
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let changed = super::changes_of(&batch);
        let (outcomes, forgotten) = {
            let mut executions = self.lock()?;
            let outcomes = batch
                .into_iter()
                .map(|write| apply(&mut executions, write))
                .collect();
            (outcomes, executions.forget_beyond(self.keep_finished))
        };
        drop(forgotten);
        let outcomes = Ok(outcomes);
        super::announce_committed(&self.changes, &changed, &outcomes);
        outcomes
    }

    fn changes(&self) -> &Arc<Changes> {
        &self.changes
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        Ok(self.lock()?.by_id.get(id).map(|e| e.record.clone()))
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn keeps_records(&self) -> bool {
        true
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        let mut matching: Vec<StoredExecution> = {
            let executions = self.lock()?;
            executions
                .by_id
                .values()
                .map(|e| &e.record)
                .filter(|e| {
                    filter
                        .workflow_id
                        .as_deref()
                        .is_none_or(|w| *e.workflow_id == *w)
                        && filter.status.as_deref().is_none_or(|s| e.status == s)
                })
                .cloned()
                .collect()
        };
        matching.sort_by(|a, b| {
            b.created_at_ms
                .cmp(&a.created_at_ms)
                .then_with(|| b.id.cmp(&a.id))
        });
        if let Some(limit) = filter.limit {
            matching.truncate(limit);
        }
        Ok(matching)
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self.lock()?.by_id.get(id).and_then(|e| lease_of(id, e)))
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        let mut executions = self.lock()?;
        let entry = executions
            .by_id
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let free = match &entry.owner {
            None => true,
            Some(owner) => {
                entry.until_ms < claim.now_ms
                    || owner == claim.owner
                    || claim.take_over == Some(entry.fence)
            }
        };
        if !free {
            return Ok(None);
        }
        entry.owner = Some(claim.owner.to_string());
        entry.fence += 1;
        entry.until_ms = claim.until_ms;
        Ok(Some(entry.fence))
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        self.with_fenced(id, fence, |entry| entry.until_ms = lease_until_ms)
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        self.with_fenced(id, fence, |entry| {
            entry.owner = None;
            entry.until_ms = 0;
        })
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        let mut expired: Vec<Lease> = self
            .lock()?
            .by_id
            .iter()
            .filter_map(|(id, e)| lease_of(id, e))
            .filter(|l| l.expired_at(now_ms))
            .collect();
        expired.sort_by(|a, b| {
            a.until_ms
                .cmp(&b.until_ms)
                .then_with(|| a.execution_id.cmp(&b.execution_id))
        });
        expired.truncate(limit);
        Ok(expired)
    }

    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        let mut executions = self.lock()?;
        let executions = &mut executions.by_id;
        let mut expired: Vec<(u64, String)> = executions
            .iter()
            .filter_map(|(id, e)| lease_of(id, e))
            .filter(|l| l.expired_at(now_ms))
            .map(|l| (l.until_ms, l.execution_id))
            .collect();
        expired.sort();
        expired.truncate(limit);
        Ok(expired
            .into_iter()
            .filter_map(|(_, id)| {
                let entry = executions.get_mut(id.as_str())?;
                entry.owner = Some(owner.to_string());
                entry.fence += 1;
                entry.until_ms = until_ms;
                Some((entry.record.clone(), entry.fence))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::testing::Fixture;
    use crate::{Record, RecordBody};

    async fn fresh() -> Fixture<MemoryStore> {
        Fixture::new(MemoryStore::new(), ())
    }

    crate::conformance::suite!(fresh);

    fn record(body: RecordBody) -> StoredExecution {
        StoredExecution {
            id: "e1".into(),
            workflow_id: "wf".into(),
            status: "running".into(),
            created_at_ms: 1,
            updated_at_ms: 1,
            body,
        }
    }

    #[test]
    fn a_kept_body_gives_back_room_it_does_not_use() {
        let mut roomy = Vec::with_capacity(8192);
        roomy.extend_from_slice(&[b'x'; 1000]);
        let mut shrunk = kept(record(roomy.into()));
        assert_eq!(&*shrunk.body, &[b'x'; 1000][..]);
        let capacity = shrunk.body.as_json_vec().unwrap().capacity();
        assert!(capacity < 1250, "{capacity}");

        // A little slack is not worth a copy.
        let mut snug = Vec::with_capacity(1100);
        snug.extend_from_slice(&[b'y'; 1000]);
        let pointer = snug.as_ptr();
        assert_eq!(kept(record(snug.into())).body.as_ptr(), pointer);
    }

    fn execution(id: &str, status: &'static str) -> StoredExecution {
        StoredExecution {
            id: id.into(),
            status: status.into(),
            ..record(RecordBody::json(b"{}".to_vec()))
        }
    }

    #[tokio::test]
    async fn only_the_most_recently_finished_executions_are_kept() {
        let store = MemoryStore::keeping_finished(2);
        for id in ["a", "b", "c", "running", "stopped"] {
            store
                .create(&execution(id, "running"), "me", u64::MAX)
                .await
                .unwrap();
        }
        // Given up at shutdown, not finished: resumable, so never forgotten.
        store.release("stopped", FIRST_FENCE).await.unwrap();
        for id in ["a", "b", "c"] {
            let finished = execution(id, "completed");
            store.finish(&finished, FIRST_FENCE).await.unwrap();
        }

        let kept = |id: &'static str| {
            let store = &store;
            async move { store.load(id).await.unwrap().is_some() }
        };
        assert!(
            !kept("a").await,
            "the oldest finished execution is forgotten"
        );
        for id in ["b", "c", "running", "stopped"] {
            assert!(kept(id).await, "{id} is kept");
        }
        let listed = store.list(&ListFilter::default()).await.unwrap();
        assert_eq!(listed.len(), 4);

        // A save that keeps the lease is not an end; the next finish pushes `b` out.
        store
            .save(&execution("running", "running"), FIRST_FENCE)
            .await
            .unwrap();
        assert!(kept("b").await);
        store
            .finish(&execution("running", "completed"), FIRST_FENCE)
            .await
            .unwrap();
        assert!(!kept("b").await);
        assert!(kept("c").await && kept("running").await);
    }

    /// Counts how often it is serialized.
    struct Counted(Arc<AtomicUsize>);

    impl Record for Counted {
        fn to_json(&self) -> Vec<u8> {
            self.0.fetch_add(1, Ordering::SeqCst);
            br#"{"kept":"as a value"}"#.to_vec()
        }
    }

    #[tokio::test]
    async fn a_record_is_kept_as_a_value_and_serialized_once_when_first_read() {
        let store = MemoryStore::new();
        assert!(store.keeps_records());
        let made = Arc::new(AtomicUsize::new(0));
        let body = RecordBody::record(Counted(made.clone()));
        store.create(&record(body), "me", u64::MAX).await.unwrap();
        assert_eq!(
            made.load(Ordering::SeqCst),
            0,
            "nothing is serialized by a write"
        );

        let loaded = store.load("e1").await.unwrap().unwrap();
        assert_eq!(&*loaded.body, br#"{"kept":"as a value"}"#);
        let listed = store.list(&ListFilter::default()).await.unwrap();
        assert_eq!(&*listed[0].body, br#"{"kept":"as a value"}"#);
        assert_eq!(made.load(Ordering::SeqCst), 1, "the JSON is made once");
    }
}
