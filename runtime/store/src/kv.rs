//! Key-value state for components (the WIT `state` interface).
//!
//! Keys arrive here already namespaced by the Wasm host (tenant, then scope and execution), so
//! a backend only stores bytes under opaque keys, with an optional expiry.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;

/// At most this many keys are returned by one listing, so a guest cannot make the host build
/// an unbounded reply.
pub const MAX_LISTED_KEYS: usize = 1000;

#[async_trait]
pub trait KvStore: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Keys starting with `prefix`, in lexical order, at most [`MAX_LISTED_KEYS`].
    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Values with their expiry (Unix milliseconds), by key.
type Entries = BTreeMap<String, (Vec<u8>, Option<u64>)>;

/// Process-local state, for tests and the `memory` store.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<Entries>,
}

impl MemoryKv {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Entries>, StoreError> {
        self.entries
            .lock()
            .map_err(|_| StoreError::backend("memory", "state lock poisoned"))
    }
}

fn live(expires: Option<u64>, now: u64) -> bool {
    expires.is_none_or(|at| at > now)
}

#[async_trait]
impl KvStore for MemoryKv {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let now = now_ms();
        Ok(self
            .lock()?
            .get(key)
            .filter(|(_, exp)| live(*exp, now))
            .map(|(v, _)| v.clone()))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let expires = ttl.map(|t| now_ms() + t.as_millis() as u64);
        self.lock()?
            .insert(key.to_string(), (value.to_vec(), expires));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.lock()?.remove(key);
        Ok(())
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        Ok(self
            .lock()?
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(_, (_, exp))| live(*exp, now))
            .map(|(k, _)| k.clone())
            .take(MAX_LISTED_KEYS)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn component_state() {
        crate::conformance::component_state(&MemoryKv::new()).await;
    }
}
