//! Component state in PostgreSQL, next to the executions.

use std::time::Duration;

use async_trait::async_trait;

use super::{PostgresStore, pg_error};
use crate::StoreError;
use crate::kv::{KvStore, MAX_LISTED_KEYS, now_ms};

#[async_trait]
impl KvStore for PostgresStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT value FROM orca_kv WHERE key = $1 AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
                &[&key, &(now_ms() as i64)],
            )
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let expires = ttl.map(|t| (now_ms() + t.as_millis() as u64) as i64);
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO orca_kv (key, value, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms",
                &[&key, &value, &expires],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM orca_kv WHERE key = $1", &[&key])
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key FROM orca_kv WHERE key >= $1 AND left(key, length($1)) = $1
                   AND (expires_at_ms IS NULL OR expires_at_ms > $2)
                 ORDER BY key LIMIT $3",
                &[&prefix, &(now_ms() as i64), &(MAX_LISTED_KEYS as i64)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
