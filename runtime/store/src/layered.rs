//! Redis in front of PostgreSQL: the specification's state store (`type: redis` with
//! `persistence: {enabled: true, backend: postgresql}`).
//!
//! PostgreSQL is the record of truth. Every save commits there first (with the fence check),
//! and the caller is answered as soon as it has: the Redis copy (with the configured `ttl`)
//! is written behind, by one task that gathers copies for a few milliseconds and sends the
//! newest of each execution as one pipeline, in the order PostgreSQL committed them. Leases
//! live in PostgreSQL alone. Reads of one execution come from Redis and fall back to
//! PostgreSQL when the key is missing (evicted, expired, flushed), refilling Redis on the
//! way. Listing is a query, so PostgreSQL answers it. An execution older than the TTL is
//! therefore still readable and resumable.
//!
//! **Executions live in Redis while they run**, as the specification puts it: the save that
//! ends one (and gives its lease up) removes its copy, and a finished execution is read from
//! PostgreSQL without being copied back. Redis so holds about as many records as there are
//! running executions, not a TTL's worth of finished ones.
//!
//! **Redis down.** Saves still commit to PostgreSQL and reads fall back to it: nothing is lost
//! and executions keep running, only slower. The store logs one warning when Redis becomes
//! unreachable and one note when it is back, and while it is down skips Redis for a few
//! seconds at a time instead of paying a connection attempt on every call.
//!
//! **Stale copies.** Redis lags PostgreSQL while a copy is queued, and stays behind if a copy
//! fails to land. Within this process such ids are read from PostgreSQL until their last
//! queued copy has landed. Across processes, a *claim* (how `orca resume` and a takeover
//! start) rewrites the Redis copy from PostgreSQL under the new fence before the record is
//! read, and a late write from the fenced-out owner cannot overwrite a copy with a higher
//! fence (removing one is always safe: a reader that finds none reads PostgreSQL). Another
//! process that only *displays* an execution (`orca executions show`) may see a copy that is
//! behind by the writes of the last moment (up to [`GATHER_COPIES_FOR`]), or, if the owner
//! died with copies still queued or Redis failed, until the owner's next successful save.
//! [`ExecutionStore::flush`] waits for the queue to empty; `orca` calls it before it exits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::redis::{CacheWrite, Put};
use super::{
    Changes, Claim, ExecutionStore, Fence, Lease, LeaseStore, ListFilter, PostgresConfig,
    PostgresStore, RedisConfig, RedisStore, StoreError, StoredExecution, Write, WriteOutcomes,
};

/// After a Redis failure, go straight to PostgreSQL for this long before trying Redis again.
const REDIS_RETRY_AFTER: Duration = Duration::from_secs(3);

/// Batches of copies that may wait for Redis before a commit waits for room in the queue:
/// a slow Redis slows the writers down instead of piling records up in memory.
const QUEUED_BATCHES: usize = 64;

/// The most copies one Redis pipeline carries.
const MAX_PIPELINE: usize = 512;

/// How long the copy task gathers copies before it sends them. An execution saves after
/// every step, quickly one after another, and Redis needs only the newest of those copies:
/// gathering sends about one copy per short execution instead of one per save (a third of
/// the script calls in the redis+postgresql benchmark, where each costs Redis 8 to 20 µs).
/// This process reads a gathered id from PostgreSQL meanwhile, `flush` cuts the wait short,
/// and another process reading Redis sees a save at most this much later.
const GATHER_COPIES_FOR: Duration = Duration::from_millis(25);

/// Redis as a write-behind cache of PostgreSQL.
#[derive(Debug)]
pub struct LayeredStore {
    postgres: PostgresStore,
    cache: Arc<Cache>,
    /// To the task that writes committed records to Redis ([`copy_behind`]).
    behind: mpsc::Sender<Behind>,
}

/// What the copy task is handed, in commit order.
enum Behind {
    Copies(Vec<QueuedCopy>),
    /// Answered once every copy queued before it has been sent.
    Flush(oneshot::Sender<()>),
}

/// A record PostgreSQL committed, on its way to Redis.
struct QueuedCopy {
    execution: StoredExecution,
    fence: Fence,
    /// Its execution's last save (the one that gave the lease up): Redis drops the copy
    /// instead of holding it, since executions live in Redis only while they run.
    last: bool,
}

impl QueuedCopy {
    fn to_cache(&self) -> CacheWrite<'_> {
        if self.last {
            CacheWrite::Remove(&self.execution.id)
        } else {
            CacheWrite::Put(&self.execution, self.fence, Put::Newer)
        }
    }
}

#[derive(Debug)]
struct Cache {
    redis: RedisStore,
    health: Health,
    /// Ids whose Redis copy may be older than PostgreSQL's (see the module docs).
    stale: Mutex<HashMap<Arc<str>, Stale>>,
}

#[derive(Debug, Default)]
struct Stale {
    /// Copies committed to PostgreSQL and not sent to Redis yet.
    queued: usize,
    /// The last copy sent did not land.
    failed: bool,
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

impl Cache {
    fn stale(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Stale>> {
        // The map is only a hint about where to read; a panic mid-update leaves it usable.
        self.stale.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_stale(&self, id: &str) -> bool {
        self.stale().contains_key(id)
    }

    /// Counts copies as queued before their writers are answered, so that a read that
    /// follows a save goes to PostgreSQL until the copy has landed.
    fn queued<'a>(&self, ids: impl IntoIterator<Item = &'a Arc<str>>) {
        let mut stale = self.stale();
        for id in ids {
            stale.entry(id.clone()).or_default().queued += 1;
        }
    }

    /// A queued copy that a newer copy of the same execution replaces: it lands with that one.
    fn superseded(&self, id: &str) {
        if let Some(entry) = self.stale().get_mut(id) {
            entry.queued = entry.queued.saturating_sub(1);
        }
    }

    /// Carries out `writes` (of records PostgreSQL committed) in Redis, best effort, in one
    /// round trip. `queued`: these copies were counted by [`queued`](Self::queued).
    async fn write(&self, writes: &[CacheWrite<'_>], queued: bool) {
        if writes.is_empty() {
            return;
        }
        let written = if self.health.should_try() {
            match self.redis.write_cache(writes).await {
                Ok(written) => {
                    self.health.succeeded();
                    Some(written)
                }
                Err(error) => {
                    self.health.failed(&error);
                    None
                }
            }
        } else {
            None
        };
        let mut stale = self.stale();
        for (index, write) in writes.iter().enumerate() {
            // `Some(false)`: a refill found a copy already there. A copy that Redis declined
            // because it holds a higher fence is not behind, so it counts as landed.
            let landed = written
                .as_ref()
                .map(|w| w[index] || matches!(write, CacheWrite::Put(_, _, Put::Newer)));
            let id = write.id();
            if landed.is_some() && !stale.contains_key(id) {
                continue;
            }
            if !stale.contains_key(id) {
                stale.insert(Arc::from(id), Stale::default());
            }
            let Some(entry) = stale.get_mut(id) else {
                continue;
            };
            if queued {
                entry.queued = entry.queued.saturating_sub(1);
            }
            match landed {
                Some(true) => entry.failed = false,
                Some(false) => {}
                None => entry.failed = true,
            }
            if entry.queued == 0 && !entry.failed {
                stale.remove(id);
            }
        }
    }
}

/// The copy task: sends committed records to Redis in the order they were committed. It
/// gathers copies for `gather` after the first one arrives (less if a flush asks or a
/// pipeline's worth is waiting), then sends the newest copy of each execution as one
/// pipeline. Ends when the store is dropped and the queue is empty.
async fn copy_behind(cache: Arc<Cache>, mut queue: mpsc::Receiver<Behind>, gather: Duration) {
    let mut gathered = Gathered::default();
    while let Some(first) = queue.recv().await {
        gathered.add(&cache, first);
        let deadline = tokio::time::Instant::now() + gather;
        while gathered.newest.len() < MAX_PIPELINE && gathered.flushes.is_empty() {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(item)) => gathered.add(&cache, item),
                // Dropped (send what is here, then end) or waited long enough.
                Ok(None) | Err(_) => break,
            }
        }
        let sent: Vec<CacheWrite<'_>> =
            gathered.newest.values().map(QueuedCopy::to_cache).collect();
        cache.write(&sent, true).await;
        cache.redis.publish(
            gathered
                .newest
                .values()
                .map(|copy| (&*copy.execution.id, copy.last)),
        );
        gathered.newest.clear();
        for done in gathered.flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// What the copy task holds between sends.
#[derive(Default)]
struct Gathered {
    /// The newest copy of each execution: it overwrites the older ones in Redis anyway.
    newest: HashMap<Arc<str>, QueuedCopy>,
    flushes: Vec<oneshot::Sender<()>>,
}

impl Gathered {
    fn add(&mut self, cache: &Cache, item: Behind) {
        match item {
            Behind::Copies(batch) => {
                for copy in batch {
                    let id = copy.execution.id.clone();
                    if self.newest.insert(id.clone(), copy).is_some() {
                        cache.superseded(&id);
                    }
                }
            }
            Behind::Flush(done) => self.flushes.push(done),
        }
    }
}

impl LayeredStore {
    /// Opens PostgreSQL (which must be reachable) and Redis (which may be down). Starts the
    /// copy task, so this must run inside a tokio runtime.
    pub async fn open(redis: &RedisConfig, postgres: &PostgresConfig) -> Result<Self, StoreError> {
        Self::open_gathering(redis, postgres, GATHER_COPIES_FOR).await
    }

    /// [`open`](Self::open) with the copy task gathering copies for `gather`.
    pub(crate) async fn open_gathering(
        redis: &RedisConfig,
        postgres: &PostgresConfig,
        gather: Duration,
    ) -> Result<Self, StoreError> {
        let cache = Arc::new(Cache {
            redis: RedisStore::open_lazy(redis)?,
            health: Health::default(),
            stale: Mutex::new(HashMap::new()),
        });
        let postgres = PostgresStore::open_unannounced(postgres).await?;
        let (behind, queue) = mpsc::channel(QUEUED_BATCHES);
        tokio::spawn(copy_behind(cache.clone(), queue, gather));
        Ok(LayeredStore {
            postgres,
            cache,
            behind,
        })
    }

    /// The record from Redis, or `None` when Redis does not have it, may be behind, or
    /// cannot be asked.
    async fn cached(&self, id: &str) -> Option<StoredExecution> {
        if self.cache.is_stale(id) || !self.cache.health.should_try() {
            return None;
        }
        match self.cache.redis.load(id).await {
            Ok(found) => {
                self.cache.health.succeeded();
                found
            }
            Err(error) => {
                self.cache.health.failed(&error);
                None
            }
        }
    }

    /// Rewrites the Redis copy from PostgreSQL (after a claim raised the fence).
    async fn refresh(&self, id: &str) -> Result<(), StoreError> {
        if let Some(found) = self.postgres.load_leased(id).await? {
            let copy = CacheWrite::Put(&found.execution, found.fence, Put::Newer);
            self.cache.write(&[copy], false).await;
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn parts(&self) -> (&PostgresStore, &RedisStore) {
        (&self.postgres, &self.cache.redis)
    }
}

#[async_trait]
impl ExecutionStore for LayeredStore {
    /// PostgreSQL's batch (the record of truth, one commit); the writes that committed are
    /// queued for Redis with the record exactly as PostgreSQL holds it.
    /// Announced here at once; to other processes once the copies are in Redis, which is
    /// where they read them (see [`copy_behind`]).
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let committed = self.postgres.write_committed(&batch).await?;
        let changed = super::changes_of(&batch);
        let mut copies = Vec::with_capacity(batch.len());
        let outcomes = batch
            .into_iter()
            .zip(committed)
            .map(|(write, outcome)| {
                let (fence, created_at_ms) = outcome?;
                copies.push(match write {
                    Write::Create { execution, .. } => QueuedCopy {
                        execution,
                        fence,
                        last: false,
                    },
                    // A save keeps the first `created_at_ms`, whatever the caller sent.
                    Write::Save {
                        execution, release, ..
                    } => QueuedCopy {
                        execution: StoredExecution {
                            created_at_ms,
                            ..execution
                        },
                        fence,
                        last: release,
                    },
                });
                Ok(fence)
            })
            .collect();
        let outcomes = Ok(outcomes);
        super::announce_committed(self.changes(), &changed, &outcomes);
        if !copies.is_empty() {
            self.cache
                .queued(copies.iter().map(|copy| &copy.execution.id));
            if let Err(mpsc::error::SendError(Behind::Copies(lost))) =
                self.behind.send(Behind::Copies(copies)).await
            {
                // The copy task is gone (its runtime is shutting down): Redis stays behind.
                let writes: Vec<_> = lost.iter().map(QueuedCopy::to_cache).collect();
                self.cache.write(&writes, true).await;
                self.cache
                    .redis
                    .publish(lost.iter().map(|copy| (&*copy.execution.id, copy.last)));
            }
        }
        outcomes
    }

    fn changes(&self) -> &Arc<Changes> {
        self.cache.redis.changes()
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        if let Some(found) = self.cached(id).await {
            return Ok(Some(found));
        }
        let Some(found) = self.postgres.load_leased(id).await? else {
            return Ok(None);
        };
        // Refill only if Redis has nothing (a save may have landed since PostgreSQL
        // answered), and only while someone drives the execution: a finished one is not
        // copied back.
        if found.held && !self.cache.is_stale(id) {
            let copy = CacheWrite::Put(&found.execution, found.fence, Put::IfAbsent);
            self.cache.write(&[copy], false).await;
        }
        Ok(Some(found.execution))
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        self.postgres.list(filter).await
    }

    /// Waits until every copy queued so far has been sent to Redis.
    async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.behind.send(Behind::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
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
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        let claimed = self
            .postgres
            .claim_expired(owner, now_ms, until_ms, limit)
            .await?;
        let copies: Vec<_> = claimed
            .iter()
            .map(|(execution, fence)| CacheWrite::Put(execution, *fence, Put::Newer))
            .collect();
        self.cache.write(&copies, false).await;
        Ok(claimed)
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
