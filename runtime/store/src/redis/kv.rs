//! Component state in Redis: native expiry for TTLs, SCAN for prefix listing.

use std::time::Duration;

use async_trait::async_trait;

use super::{RedisStore, redis_error};
use crate::StoreError;
use crate::kv::{KvStore, MAX_LISTED_KEYS};

impl RedisStore {
    fn kv_key(&self, key: &str) -> String {
        format!("{}kv:{key}", self.prefix)
    }
}

/// Escapes Redis glob characters so a prefix matches only itself.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[async_trait]
impl KvStore for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        ::redis::cmd("GET")
            .arg(self.kv_key(key))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(redis_error)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StoreError> {
        let mut cmd = ::redis::cmd("SET");
        cmd.arg(self.kv_key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        cmd.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_error)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        ::redis::cmd("DEL")
            .arg(self.kv_key(key))
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(redis_error)
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let full = self.kv_key(prefix);
        let strip = self.kv_key("").len();
        let pattern = format!("{}*", glob_escape(&full));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn.clone())
                .await
                .map_err(redis_error)?;
            keys.extend(batch.into_iter().map(|k| k[strip..].to_string()));
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(MAX_LISTED_KEYS);
        Ok(keys)
    }
}
