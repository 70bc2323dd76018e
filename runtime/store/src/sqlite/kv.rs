//! Component state in the same SQLite file as the executions, so it survives a restart and is
//! there when an execution resumes.

use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::SqliteStore;
use crate::StoreError;
use crate::kv::{KvStore, MAX_LISTED_KEYS, now_ms};

#[async_trait]
impl KvStore for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        let now = now_ms() as i64;
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "SELECT value FROM kv WHERE key = ?1 AND (expires_at_ms IS NULL OR expires_at_ms > ?2)",
            )?
            .query_row(params![key, now], |row| row.get(0))
            .optional()
        })
        .await
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let (key, value) = (key.to_string(), value.to_vec());
        let expires = ttl.map(|t| (now_ms() + t.as_millis() as u64) as i64);
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO kv (key, value, expires_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![key, value, expires])
            .map(|_| ())
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_string();
        self.with_conn(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute(params![key])
                .map(|_| ())
        })
        .await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_string();
        let now = now_ms() as i64;
        self.with_conn(move |conn| {
            // A range scan on the primary key: `substr` keeps the comparison exact for any
            // prefix (no LIKE wildcards to escape).
            let mut statement = conn.prepare_cached(
                "SELECT key FROM kv WHERE key >= ?1 AND substr(key, 1, length(?1)) = ?1
                   AND (expires_at_ms IS NULL OR expires_at_ms > ?2)
                 ORDER BY key LIMIT ?3",
            )?;
            let rows = statement
                .query_map(params![prefix, now, MAX_LISTED_KEYS as i64], |row| {
                    row.get(0)
                })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn component_state() {
        let store = SqliteStore::open_in_memory().unwrap();
        crate::conformance::component_state(&store).await;
    }

    #[tokio::test]
    async fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orca.db");
        {
            let store = SqliteStore::open(&path).unwrap();
            store.set("t/a/x/e1/k", b"v", None).await.unwrap();
            store
                .set("t/a/x/e1/later", b"s", Some(Duration::from_secs(600)))
                .await
                .unwrap();
            store.set("t/a/x/e2/k", b"w", None).await.unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get("t/a/x/e1/k").await.unwrap(), Some(b"v".to_vec()));
        assert_eq!(
            store.list_keys("t/a/x/e1/").await.unwrap(),
            ["t/a/x/e1/k", "t/a/x/e1/later"]
        );
    }
}
