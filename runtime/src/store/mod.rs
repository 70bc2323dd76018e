//! Durable storage of executions.
//!
//! The engine never talks to a database directly: it hands a [`StoredExecution`] to an
//! [`ExecutionStore`] after every state change and waits for the write to be durable before it
//! acts on that change. The record body is opaque to the store (JSON produced by the engine);
//! the store only indexes the few columns that listing and resuming need.
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

mod config;
pub mod kv;
mod layered;
mod lease;
mod memory;
mod postgres;
mod redis;
mod sqlite;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod testing;

pub use self::config::{
    DEFAULT_REDIS_PREFIX, DEFAULT_REDIS_TTL, ENV_POSTGRES_URL, ENV_REDIS_URL, Env, PostgresConfig,
    RedisConfig, StoreConfig, open, open_with_state,
};
pub use self::layered::LayeredStore;
pub use self::lease::{Claim, Fence, Lease, owner_id, owner_is_dead_locally};
pub use self::memory::MemoryStore;
pub use self::postgres::PostgresStore;
pub(crate) use self::postgres::pool as postgres_pool;
pub use self::redis::RedisStore;
pub use self::sqlite::SqliteStore;

use async_trait::async_trait;

/// What a store keeps for one execution: a few indexed columns and the engine's record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredExecution {
    pub id: String,
    pub workflow_id: String,
    /// The execution status as the engine spells it (`running`, `completed`, ...).
    pub status: String,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The engine's serialized execution record (JSON).
    pub body: Vec<u8>,
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

/// Where executions are kept. Every method returns only once the effect is durable as far as
/// the backend promises (for SQLite: committed and synced to disk).
#[async_trait]
pub trait ExecutionStore: LeaseStore {
    /// Stores a new execution leased to `owner` until `lease_until_ms` and returns its first
    /// fence; [`StoreError::Exists`] if the id is taken.
    async fn create(
        &self,
        execution: &StoredExecution,
        owner: &str,
        lease_until_ms: u64,
    ) -> Result<Fence, StoreError>;
    /// Replaces the record (all but `created_at_ms`) if `fence` is still the current one;
    /// [`StoreError::Fenced`] if another owner has claimed it since.
    async fn save(&self, execution: &StoredExecution, fence: Fence) -> Result<(), StoreError>;
    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError>;
    /// Executions matching `filter`, newest first (by creation time, then id).
    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError>;
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
}
