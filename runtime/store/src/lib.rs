//! Durable storage of executions, and of the server's tenants, tokens, definitions and
//! component ownership ([`tenants`]), beside them in the same store.
//!
//! The engine never talks to a database directly: it hands a [`StoredExecution`] to an
//! [`ExecutionStore`] after every state change and waits for the write to be durable before it
//! acts on that change. The record body is opaque to the store (the engine's JSON, or for the
//! memory store the record itself, see [`RecordBody`]); the store only indexes the few
//! columns that listing and resuming need.
//!
//! Every execution also carries a [`Lease`]: an owner, an expiry and a fence. Only the owner
//! holding the current fence may write the record, so two processes that both believe they
//! drive an execution (one stalled, one that took over after the lease expired) can never
//! interleave their writes: the stale one gets [`StoreError::Fenced`] and stops.
//!
//! Backends, chosen by [`StoreConfig`] and opened with [`open`]:
//! - `memory`: nothing survives the process; for tests and throwaway runs.
//! - `sqlite`: one local file; the default.
//! - `postgresql`: a shared database (see [`PostgresStore`]).
//! - `redis`: hot state that expires `ttl` after its last write (see [`RedisStore`]).
//! - `redis` persisted to `postgresql`: PostgreSQL is the record of truth and Redis a cache
//!   in front of it (see [`LayeredStore`]).
//!
//! Writes go to the backend in batches ([`ExecutionStore::write`]): one transaction and one
//! sync to disk for many executions is what makes a durable store fast under load, because
//! the commit, not the statement, is what costs. [`open`] puts every durable backend behind
//! [`GroupCommit`], which gathers the writes of concurrent executions into such batches.

mod changes;
mod config;
mod group;
pub mod kv;
mod layered;
mod lease;
mod memory;
mod postgres;
mod redis;
pub(crate) mod sqlite;
pub mod tenants;
pub mod tenants_pg;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod testing;

pub use self::changes::{Changes, Watch};
pub use self::config::{
    DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TTL, ENV_POSTGRES_URL, ENV_REDIS_URL, Env, PostgresConfig,
    RedisConfig, StoreConfig, open, open_tenants, open_with_state,
};
pub use self::group::GroupCommit;
pub use self::layered::LayeredStore;
pub use self::lease::{Claim, Fence, Lease, owner_id, owner_is_dead_locally};
pub use self::memory::MemoryStore;
pub use self::postgres::PostgresStore;
pub(crate) use self::postgres::pool as postgres_pool;
pub use self::redis::RedisStore;
pub use self::sqlite::SqliteStore;

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

/// What a store keeps for one execution: a few indexed columns and the engine's record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExecution {
    /// Shared with the live record: a save hands these over without copying them.
    pub id: Arc<str>,
    pub workflow_id: Arc<str>,
    /// The execution status as the engine spells it (`running`, `completed`, ...).
    pub status: Cow<'static, str>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The engine's execution record.
    pub body: RecordBody,
}

/// The engine's record of one execution as a store is handed it: its JSON, or the record
/// itself, which makes its JSON when first asked. Derefs to the JSON.
///
/// A store that writes the record somewhere is handed JSON, made on the task that wrote it.
/// A store that keeps records in this process ([`ExecutionStore::keeps_records`]) is handed
/// the record instead: it keeps a snapshot that shares its unchanged parts with the live
/// record, and nothing is serialized until somebody reads it.
#[derive(Clone)]
pub struct RecordBody(BodyForm);

#[derive(Clone)]
enum BodyForm {
    Json(Vec<u8>),
    Record(Arc<Deferred<dyn Record>>),
}

/// The record and, once read, its JSON; unsized, so the record lives in the same allocation.
struct Deferred<R: ?Sized> {
    json: OnceLock<Vec<u8>>,
    record: R,
}

/// A record that can write itself as JSON; see [`RecordBody::record`].
pub trait Record: Send + Sync + 'static {
    fn to_json(&self) -> Vec<u8>;
}

impl RecordBody {
    pub fn json(json: Vec<u8>) -> Self {
        RecordBody(BodyForm::Json(json))
    }

    /// A body whose JSON is made when it is first read.
    pub fn record(record: impl Record) -> Self {
        RecordBody(BodyForm::Record(Arc::new(Deferred {
            json: OnceLock::new(),
            record,
        })))
    }

    /// The JSON bytes, if they are what this body holds (a record not yet serialized is not).
    pub fn as_json_vec(&mut self) -> Option<&mut Vec<u8>> {
        match &mut self.0 {
            BodyForm::Json(json) => Some(json),
            BodyForm::Record(_) => None,
        }
    }
}

impl From<Vec<u8>> for RecordBody {
    fn from(json: Vec<u8>) -> Self {
        RecordBody::json(json)
    }
}

impl std::ops::Deref for RecordBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            BodyForm::Json(json) => json,
            BodyForm::Record(deferred) => deferred.json.get_or_init(|| deferred.record.to_json()),
        }
    }
}

impl AsRef<[u8]> for RecordBody {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for RecordBody {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for RecordBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RecordBody")
            .field(&String::from_utf8_lossy(self))
            .finish()
    }
}

/// Filter for [`ExecutionStore::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub workflow_id: Option<String>,
    pub status: Option<String>,
    /// At most this many rows, newest first; `None` means no limit.
    pub limit: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {backend}: {message}")]
    Backend {
        backend: &'static str,
        message: String,
    },
    /// Another owner claimed the execution since this fence was handed out.
    #[error(
        "execution `{id}` was taken over by another process (fence {fence} is no longer current)"
    )]
    Fenced { id: String, fence: Fence },
    #[error("no execution with id `{0}` in the state store")]
    NotFound(String),
    #[error("an execution with id `{0}` already exists")]
    Exists(String),
    /// The store's settings are wrong (an unknown option, a missing endpoint, ...).
    #[error("{0}")]
    Config(String),
}

impl StoreError {
    pub(crate) fn backend(backend: &'static str, error: impl std::fmt::Display) -> Self {
        StoreError::Backend {
            backend,
            message: error.to_string(),
        }
    }
}

/// The fence of a newly created execution's lease.
pub const FIRST_FENCE: Fence = 1;

/// One durable write; see [`ExecutionStore::write`].
#[derive(Debug, Clone)]
pub enum Write {
    /// A new execution leased to `owner` until `lease_until_ms`; its fence is [`FIRST_FENCE`].
    Create {
        execution: StoredExecution,
        owner: String,
        lease_until_ms: u64,
    },
    /// Replaces the record if `fence` is current; `release: true` also gives the lease up in
    /// the same commit (the execution reached a final status), exactly like
    /// [`LeaseStore::release`].
    Save {
        execution: StoredExecution,
        fence: Fence,
        release: bool,
    },
}

impl Write {
    /// Whether this write ends its execution: the final record, saved with the lease given
    /// up.
    pub fn finishes(&self) -> bool {
        matches!(self, Write::Save { release: true, .. })
    }

    /// The execution this write is for.
    pub fn id(&self) -> &str {
        match self {
            Write::Create { execution, .. } | Write::Save { execution, .. } => &execution.id,
        }
    }
}

/// What [`ExecutionStore::write`] answers: the batch as a whole failed (`Err`), or one
/// outcome per write, in order.
pub type WriteOutcomes = Result<Vec<Result<Fence, StoreError>>, StoreError>;

/// Where executions are kept. Every method returns only once the effect is durable as far as
/// the backend promises (for SQLite: committed and synced to disk).
#[async_trait]
pub trait ExecutionStore: LeaseStore {
    /// Applies `batch` in order, in one transaction (one commit, one sync) where the backend
    /// has them.
    ///
    /// `Err` means the batch failed as a whole (connection lost, transaction aborted) and
    /// none of it committed. Otherwise there is one outcome per write, in order: `Ok(fence)`
    /// (1 for a create, the given fence for a save), or [`StoreError::Exists`],
    /// [`StoreError::Fenced`] or [`StoreError::NotFound`] for that write alone, while the
    /// others still commit. Writes to one execution within a batch apply in order.
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes;

    /// Stores a new execution leased to `owner` until `lease_until_ms` and returns its first
    /// fence; [`StoreError::Exists`] if the id is taken.
    async fn create(
        &self,
        execution: &StoredExecution,
        owner: &str,
        lease_until_ms: u64,
    ) -> Result<Fence, StoreError> {
        let create = Write::Create {
            execution: execution.clone(),
            owner: owner.to_owned(),
            lease_until_ms,
        };
        write_one(self, create).await
    }

    /// Replaces the record (all but `created_at_ms`) if `fence` is still the current one;
    /// [`StoreError::Fenced`] if another owner has claimed it since.
    async fn save(&self, execution: &StoredExecution, fence: Fence) -> Result<(), StoreError> {
        let save = Write::Save {
            execution: execution.clone(),
            fence,
            release: false,
        };
        write_one(self, save).await.map(drop)
    }

    /// [`save`](Self::save) and [`release`](LeaseStore::release) in one commit: for the
    /// last write of an execution that reached a final status.
    async fn finish(&self, execution: &StoredExecution, fence: Fence) -> Result<(), StoreError> {
        let save = Write::Save {
            execution: execution.clone(),
            fence,
            release: true,
        };
        write_one(self, save).await.map(drop)
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError>;
    /// Executions matching `filter`, newest first (by creation time, then id).
    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError>;

    /// Waits until what the store does behind its writes is done: the layered store's Redis
    /// copies. Every write is durable when it returns; this only keeps other processes that
    /// read the cache from seeing it behind once this one has exited.
    async fn flush(&self) {}

    /// Where this process hears of changes to executions: its own writes through this
    /// store, and for a store several processes share, theirs too.
    fn changes(&self) -> &Arc<Changes>;

    /// Whether the store keeps executions across a crash of this process. The runner writes
    /// a checkpoint before acting on it only where the checkpoint can outlive a crash.
    fn is_durable(&self) -> bool {
        true
    }

    /// Whether the store keeps records in this process, so that it would rather be handed
    /// the record than its JSON (see [`RecordBody`]).
    fn keeps_records(&self) -> bool {
        false
    }
}

/// A batch of one, unwrapped. Takes the record by value, so a caller that built it for the
/// write (the runner) does not pay for a copy.
pub async fn write_one<S: ExecutionStore + ?Sized>(
    store: &S,
    write: Write,
) -> Result<Fence, StoreError> {
    let mut outcomes = store.write(vec![write]).await?;
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(outcome), true) => outcome,
        _ => Err(StoreError::Backend {
            backend: "store",
            message: "a batch of one write did not get exactly one outcome".to_string(),
        }),
    }
}

/// Each write of `batch` by its execution's id, with whether it finishes the execution: what
/// a store announces once the batch has committed (see [`announce_committed`]).
pub(crate) fn changes_of(batch: &[Write]) -> Vec<(Arc<str>, bool)> {
    batch
        .iter()
        .map(|write| match write {
            Write::Create { execution, .. } | Write::Save { execution, .. } => {
                (execution.id.clone(), write.finishes())
            }
        })
        .collect()
}

/// Announces to `changes` the writes of `changed` (see [`changes_of`]) that committed, and
/// returns them for the other processes.
pub(crate) fn announce_committed<'a>(
    changes: &Changes,
    changed: &'a [(Arc<str>, bool)],
    outcomes: &WriteOutcomes,
) -> Vec<(&'a str, bool)> {
    let outcomes = outcomes.as_deref().unwrap_or_default();
    let committed: Vec<(&str, bool)> = changed
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| outcome.is_ok())
        .map(|((id, finished), _)| (&**id, *finished))
        .collect();
    for (id, finished) in &committed {
        changes.announce(id, *finished);
    }
    committed
}

/// Splits `batch` into consecutive runs in which no execution appears twice, for backends
/// that apply a run as one set-based statement (whose parts cannot see each other's
/// effects): applied run after run, writes to one execution keep their order.
pub(crate) fn distinct_runs(batch: &[Write]) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut start = 0;
    for (index, write) in batch.iter().enumerate() {
        if !seen.insert(write.id()) {
            runs.push(start..index);
            seen.clear();
            seen.insert(write.id());
            start = index;
        }
    }
    if start < batch.len() {
        runs.push(start..batch.len());
    }
    runs
}

/// Who may drive which execution. Kept apart from the records so that a future scheduler can
/// depend on leases alone.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// The current lease, or `None` if the execution is unknown or nobody holds it.
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError>;
    /// Takes the execution over with a new, higher fence, if its lease is free: released,
    /// expired at `claim.now_ms`, already `claim.owner`'s, or carrying `claim.take_over`.
    /// `Ok(None)` if someone else holds it; [`StoreError::NotFound`] if the id is unknown.
    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError>;
    /// Extends the lease held with `fence`; [`StoreError::Fenced`] if it was taken over.
    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError>;
    /// Gives the lease up (the execution finished); the fence stays, so stale writers stay
    /// locked out.
    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError>;
    /// Leases that expired before `now_ms`, soonest-expired first: the executions whose
    /// owner died and which a long-running process should resume.
    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError>;
    /// Takes over, in one atomic step, up to `limit` of the leases that expired before
    /// `now_ms` (soonest-expired first): each goes to `owner` until `until_ms` with its fence
    /// raised by one, which is returned with the record as it is under the new fence, so
    /// that whoever resumes the execution needs no second read. Released leases are not
    /// expired ones. Two processes recovering at once split the work: no execution is
    /// handed to both.
    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError>;
}
