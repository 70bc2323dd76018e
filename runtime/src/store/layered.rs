//! Redis in front of PostgreSQL: the specification's state store (`type: redis` with
//! `persistence: {enabled: true, backend: postgresql}`).
//!
//! PostgreSQL is the record of truth. Every save commits there first (with the fence check),
//! and only then goes to Redis with the configured `ttl`; leases live in PostgreSQL alone. A
//! batch of writes is one PostgreSQL commit followed by one Redis pipeline.
//! Reads of one execution come from Redis and fall back to PostgreSQL when the key is missing
//! (evicted, expired, flushed), refilling Redis on the way. Listing is a query, so PostgreSQL
//! answers it. An execution older than the TTL is therefore still readable and resumable.
//!
//! **Redis down.** Saves still commit to PostgreSQL and reads fall back to it: nothing is lost
//! and executions keep running, only slower. The store logs one warning when Redis becomes
//! unreachable and one note when it is back, and while it is down skips Redis for a few
//! seconds at a time instead of paying a connection attempt on every call.
//!
//! **Stale copies.** A Redis write can fail after PostgreSQL committed, leaving an older copy
//! in Redis. Within this process such ids are read from PostgreSQL until a Redis write for
//! them succeeds. Across processes, a *claim* (how `orca resume` and a takeover start)
//! rewrites the Redis copy from PostgreSQL under the new fence before the record is read, and
//! a late write from the fenced-out owner cannot overwrite a copy with a higher fence. Another
//! process that only *displays* an execution (`orca executions show`) may see a stale copy
//! until the owner's next successful save.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::redis::Put;
use super::{
    Claim, ExecutionStore, Fence, Lease, LeaseStore, ListFilter, PostgresConfig, PostgresStore,
    RedisConfig, RedisStore, StoreError, StoredExecution, Write, WriteOutcomes,
};

/// After a Redis failure, go straight to PostgreSQL for this long before trying Redis again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(3);

/// Redis as a write-through cache of PostgreSQL.
#[derive(Debug)]
pub struct LayeredStore {
    postgres: PostgresStore,
    redis: RedisStore,
    health: Health,
    /// Ids whose Redis copy may be older than PostgreSQL's (see the module docs).
    suspect: Mutex<HashSet<String>>,
}

#[derive(Debug, Default)]
struct Health {
    down: AtomicBool,
    last_failure: Mutex<Option<Instant>>,
}

impl Health {
    fn should_try(&self) -> bool {
        let last = *self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|at| at.elapsed() >= REDIS_RETRY_AFTER)
    }

    fn failed(&self, error: &StoreError) {
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "Redis is unavailable; executions are saved to and read from PostgreSQL \
                 until it is back"
            );
        }
    }

    fn succeeded(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
            tracing::info!("Redis is reachable again");
        }
    }
}

impl LayeredStore {
    /// Opens PostgreSQL (which must be reachable) and Redis (which may be down).
    pub async fn open(redis: &RedisConfig, postgres: &PostgresConfig) -> Result<Self, StoreError> {
        Ok(LayeredStore {
            postgres: PostgresStore::open(postgres).await?,
            redis: RedisStore::open_lazy(redis)?,
            health: Health::default(),
            suspect: Mutex::new(HashSet::new()),
        })
    }

    fn suspect(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // The set is only a hint about where to read; a panic mid-insert leaves it usable.
        self.suspect.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies a record PostgreSQL committed into Redis, best effort.
    async fn cache(&self, execution: &StoredExecution, fence: Fence, mode: Put) {
        self.cache_all(&[(execution, fence)], mode).await;
    }

    /// Copies records PostgreSQL committed into Redis, best effort, in one round trip.
    async fn cache_all(&self, copies: &[(&StoredExecution, Fence)], mode: Put) {
        if copies.is_empty() {
            return;
        }
        let ids = || copies.iter().map(|(execution, _)| execution.id.clone());
        if !self.health.should_try() {
            if mode == Put::Newer {
                self.suspect().extend(ids());
            }
            return;
        }
        match self.redis.put_all(copies, mode).await {
            Ok(written) => {
                self.health.succeeded();
                let mut suspect = self.suspect();
                for ((execution, _), written) in copies.iter().zip(written) {
                    if written || mode == Put::Newer {
                        suspect.remove(&execution.id);
                    }
                }
            }
            Err(error) => {
                self.health.failed(&error);
                self.suspect().extend(ids());
            }
        }
    }

    /// The record from Redis, or `None` when Redis does not have it or cannot be asked.
    async fn cached(&self, id: &str) -> Option<StoredExecution> {
        if self.suspect().contains(id) || !self.health.should_try() {
            return None;
        }
        match self.redis.load(id).await {
            Ok(found) => {
                self.health.succeeded();
                found
            }
            Err(error) => {
                self.health.failed(&error);
                None
            }
        }
    }

    /// Rewrites the Redis copy from PostgreSQL (after a claim raised the fence).
    async fn refresh(&self, id: &str) -> Result<(), StoreError> {
        if let Some((record, fence)) = self.postgres.load_fenced(id).await? {
            self.cache(&record, fence, Put::Newer).await;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&PostgresStore, &RedisStore) {
        (&self.postgres, &self.redis)
    }
}

#[async_trait]
impl ExecutionStore for LayeredStore {
    /// PostgreSQL's batch first (the record of truth, one commit), then one Redis round trip
    /// for the writes that committed, with the record exactly as PostgreSQL holds it.
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let committed = self.postgres.write_committed(&batch).await?;
        let mut copies = Vec::with_capacity(batch.len());
        let outcomes = batch
            .into_iter()
            .zip(committed)
            .map(|(write, outcome)| {
                let (fence, created_at_ms) = outcome?;
                let execution = match write {
                    Write::Create { execution, .. } => execution,
                    // A save keeps the first `created_at_ms`, whatever the caller sent.
                    Write::Save { execution, .. } => StoredExecution {
                        created_at_ms,
                        ..execution
                    },
                };
                copies.push((execution, fence));
                Ok(fence)
            })
            .collect();
        let copies: Vec<(&StoredExecution, Fence)> = copies.iter().map(|(e, f)| (e, *f)).collect();
        self.cache_all(&copies, Put::Newer).await;
        Ok(outcomes)
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        if let Some(found) = self.cached(id).await {
            return Ok(Some(found));
        }
        let Some((found, fence)) = self.postgres.load_fenced(id).await? else {
            return Ok(None);
        };
        // Refill only if Redis has nothing: a save may have landed since PostgreSQL answered.
        if !self.suspect().contains(id) {
            self.cache(&found, fence, Put::IfAbsent).await;
        }
        Ok(Some(found))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        self.postgres.list(filter).await
    }
}

#[async_trait]
impl LeaseStore for LayeredStore {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        self.postgres.lease(id).await
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        let fence = self.postgres.claim(id, claim).await?;
        if fence.is_some() {
            self.refresh(id).await?;
        }
        Ok(fence)
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        self.postgres.renew(id, fence, lease_until_ms).await
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        self.postgres.release(id, fence).await
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.postgres.list_expired(now_ms, limit).await
    }

    /// Like [`claim`](LeaseStore::claim): the Redis copies are rewritten from PostgreSQL
    /// under the new fences before anyone reads them.
    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(String, Fence)>, StoreError> {
        let claimed = self
            .postgres
            .claim_expired_records(owner, now_ms, until_ms, limit)
            .await?;
        let copies: Vec<(&StoredExecution, Fence)> = claimed.iter().map(|(e, f)| (e, *f)).collect();
        self.cache_all(&copies, Put::Newer).await;
        Ok(claimed
            .into_iter()
            .map(|(execution, fence)| (execution.id, fence))
            .collect())
    }
}

/// Component state lives with the record of truth: PostgreSQL.
#[async_trait::async_trait]
impl super::kv::KvStore for LayeredStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.postgres.get(key).await
    }

    async fn set(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<std::time::Duration>,
    ) -> Result<(), StoreError> {
        self.postgres.set(key, value, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.postgres.delete(key).await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.postgres.list_keys(prefix).await
    }
}

#[cfg(test)]
mod tests;
