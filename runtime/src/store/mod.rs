//! Durable storage of executions.
//!
//! The engine never talks to a database directly: it hands a [`StoredExecution`] to an
//! [`ExecutionStore`] after every state change and waits for the write to be durable before it
//! acts on that change. The record body is opaque to the store (JSON produced by the engine);
//! the store only indexes the few columns that listing and resuming need.

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

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
pub trait ExecutionStore: Send + Sync {
    /// Inserts or replaces the execution with `execution.id`.
    async fn save(&self, execution: &StoredExecution) -> Result<(), StoreError>;
    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError>;
    /// Executions matching `filter`, newest first (by creation time).
    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError>;
}
