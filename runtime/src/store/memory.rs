//! An [`ExecutionStore`] that keeps nothing beyond the life of the process.
//!
//! It exists for tests and for one-shot runs where durability is not wanted, so that the engine
//! can always be handed a store instead of special-casing "no persistence". It mirrors the
//! SQLite backend's semantics (upsert keeps the first `created_at_ms`, listing is newest first
//! with ties broken by id) so that code tested against it behaves the same in production.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::{ExecutionStore, ListFilter, StoreError, StoredExecution};

/// Executions held in process memory, keyed by execution id.
#[derive(Debug, Default)]
pub struct MemoryStore {
    executions: Mutex<HashMap<String, StoredExecution>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, HashMap<String, StoredExecution>>, StoreError> {
        // A poisoned lock means another task panicked mid-operation; the map itself is never
        // left half-updated (every mutation is a single insert), but report it rather than
        // silently carrying on.
        self.executions
            .lock()
            .map_err(|e| StoreError::backend("memory", e))
    }
}

#[async_trait]
impl ExecutionStore for MemoryStore {
    async fn save(&self, execution: &StoredExecution) -> Result<(), StoreError> {
        let mut executions = self.lock()?;
        let mut record = execution.clone();
        if let Some(existing) = executions.get(&execution.id) {
            record.created_at_ms = existing.created_at_ms;
        }
        executions.insert(record.id.clone(), record);
        Ok(())
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        Ok(self.lock()?.get(id).cloned())
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        let mut matching: Vec<StoredExecution> = {
            let executions = self.lock()?;
            executions
                .values()
                .filter(|e| {
                    filter
                        .workflow_id
                        .as_deref()
                        .is_none_or(|w| e.workflow_id == w)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn execution(id: &str, workflow_id: &str, status: &str, created_at_ms: i64) -> StoredExecution {
        StoredExecution {
            id: id.to_owned(),
            workflow_id: workflow_id.to_owned(),
            status: status.to_owned(),
            created_at_ms,
            updated_at_ms: created_at_ms,
            body: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        }
    }

    fn ids(executions: &[StoredExecution]) -> Vec<&str> {
        executions.iter().map(|e| e.id.as_str()).collect()
    }

    #[tokio::test]
    async fn save_then_load_round_trips() {
        let store = MemoryStore::new();
        let original = execution("e1", "wf", "running", 1_000);
        store.save(&original).await.unwrap();
        assert_eq!(store.load("e1").await.unwrap(), Some(original));
    }

    #[tokio::test]
    async fn load_of_unknown_id_is_none() {
        let store = MemoryStore::new();
        store
            .save(&execution("e1", "wf", "running", 1_000))
            .await
            .unwrap();
        assert_eq!(store.load("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn upsert_keeps_created_at_and_updates_the_rest() {
        let store = MemoryStore::new();
        store
            .save(&execution("e1", "wf", "running", 1_000))
            .await
            .unwrap();

        let mut update = execution("e1", "wf", "completed", 5_000);
        update.updated_at_ms = 6_000;
        update.body = b"{\"done\":true}".to_vec();
        store.save(&update).await.unwrap();

        let loaded = store.load("e1").await.unwrap().unwrap();
        assert_eq!(loaded.created_at_ms, 1_000);
        assert_eq!(loaded.updated_at_ms, 6_000);
        assert_eq!(loaded.status, "completed");
        assert_eq!(loaded.body, b"{\"done\":true}".to_vec());
        assert_eq!(store.list(&ListFilter::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn list_filters_orders_newest_first_and_limits() {
        let store = MemoryStore::new();
        for e in [
            execution("a", "wf1", "completed", 1_000),
            execution("b", "wf1", "running", 3_000),
            execution("c", "wf2", "running", 2_000),
            execution("d", "wf1", "running", 3_000),
            execution("e", "wf1", "failed", 4_000),
        ] {
            store.save(&e).await.unwrap();
        }

        let all = store.list(&ListFilter::default()).await.unwrap();
        assert_eq!(ids(&all), ["e", "d", "b", "c", "a"]);

        let wf1 = ListFilter {
            workflow_id: Some("wf1".into()),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&wf1).await.unwrap()), ["e", "d", "b", "a"]);

        let running = ListFilter {
            status: Some("running".into()),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&running).await.unwrap()), ["d", "b", "c"]);

        let wf1_running_limited = ListFilter {
            workflow_id: Some("wf1".into()),
            status: Some("running".into()),
            limit: Some(1),
        };
        assert_eq!(ids(&store.list(&wf1_running_limited).await.unwrap()), ["d"]);

        let limited = ListFilter {
            limit: Some(2),
            ..ListFilter::default()
        };
        assert_eq!(ids(&store.list(&limited).await.unwrap()), ["e", "d"]);

        let none = ListFilter {
            workflow_id: Some("missing".into()),
            ..ListFilter::default()
        };
        assert!(store.list(&none).await.unwrap().is_empty());
    }
}
