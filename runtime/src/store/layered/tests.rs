//! The layered store against real servers: the shared suite, and the promises of the module
//! docs: PostgreSQL answers when Redis lost a key or is down, and stale copies never win.

use std::time::Duration;

use super::*;
use crate::store::conformance::execution;
use crate::store::testing::{self, PrefixGuard, SchemaGuard};

pub(super) struct Fixture {
    store: LayeredStore,
    redis: RedisConfig,
    postgres: PostgresConfig,
    _guards: (PrefixGuard, SchemaGuard),
}

impl Fixture {
    fn store(&self) -> &dyn ExecutionStore {
        &self.store
    }

    /// What FLUSHALL does to this test's data, without touching other tests' keys.
    async fn flush_redis(&self) {
        PrefixGuard::delete_keys(&self.redis.prefix).await;
    }

    /// Another process on the same servers.
    async fn other_process(&self) -> LayeredStore {
        LayeredStore::open(&self.redis, &self.postgres)
            .await
            .unwrap()
    }
}

async fn with_redis((redis, prefix): (RedisConfig, PrefixGuard)) -> Fixture {
    let (postgres, schema) = testing::postgres();
    Fixture {
        store: LayeredStore::open(&redis, &postgres).await.unwrap(),
        redis,
        postgres,
        _guards: (prefix, schema),
    }
}

async fn fresh() -> Fixture {
    with_redis(testing::redis(Duration::from_secs(60))).await
}

crate::store::conformance::suite!(fresh);

#[tokio::test]
async fn component_state() {
    let fixture = fresh().await;
    crate::store::conformance::component_state(&fixture.store).await;
}

fn step(id: &str, status: &str, n: u8) -> StoredExecution {
    let mut e = execution(id, "wf", status, 1_000);
    e.updated_at_ms = 1_000 + i64::from(n);
    e.body = vec![n];
    e
}

fn claim(owner: &str) -> Claim<'_> {
    Claim {
        owner,
        until_ms: 100,
        now_ms: 50,
        take_over: None,
    }
}

#[tokio::test]
async fn reads_come_from_redis_and_survive_a_flush_mid_run() {
    let f = fresh().await;
    let (postgres, redis) = f.store.parts();
    let fence = f
        .store
        .create(&step("e1", "running", 0), "a", 10)
        .await
        .unwrap();
    f.store
        .save(&step("e1", "running", 1), fence)
        .await
        .unwrap();
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "running", 1))
    );

    f.flush_redis().await;
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", 1))
    );
    // The read refilled Redis.
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "running", 1))
    );

    f.flush_redis().await;
    f.store
        .save(&step("e1", "completed", 2), fence)
        .await
        .unwrap();
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "completed", 2))
    );
    assert_eq!(
        postgres.load("e1").await.unwrap(),
        Some(step("e1", "completed", 2))
    );
    f.flush_redis().await;
    assert_eq!(f.store.list(&ListFilter::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_execution_older_than_the_ttl_is_still_readable_and_claimable() {
    let f = with_redis(testing::redis(Duration::from_millis(200))).await;
    let (_, redis) = f.store.parts();
    f.store
        .create(&step("e1", "running", 0), "a", 10)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(redis.load("e1").await.unwrap(), None);
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );
    let fence = f.store.claim("e1", &claim("b")).await.unwrap().unwrap();
    f.store
        .save(&step("e1", "completed", 1), fence)
        .await
        .unwrap();
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "completed", 1))
    );
}

#[tokio::test]
async fn a_stale_copy_in_redis_is_replaced_on_claim() {
    let f = fresh().await;
    let (postgres, redis) = f.store.parts();
    let first = f
        .store
        .create(&step("e1", "running", 0), "a", 10)
        .await
        .unwrap();
    // The owner's later save reached PostgreSQL but not Redis (as when Redis was down).
    postgres
        .save(&step("e1", "running", 5), first)
        .await
        .unwrap();
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );

    // Another process takes over: what it reads after the claim is PostgreSQL's record.
    let other = f.other_process().await;
    let second = other.claim("e1", &claim("b")).await.unwrap().unwrap();
    assert_eq!(
        other.load("e1").await.unwrap(),
        Some(step("e1", "running", 5))
    );
    // A late Redis write from the fenced-out owner does not overwrite the newer copy.
    assert!(
        !redis
            .put(&step("e1", "running", 6), first, Put::Newer)
            .await
            .unwrap()
    );
    other
        .save(&step("e1", "completed", 7), second)
        .await
        .unwrap();
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "completed", 7))
    );
}

#[tokio::test]
async fn with_redis_down_everything_still_goes_to_postgresql() {
    let (mut dead, guard) = testing::redis(Duration::from_secs(60));
    dead.url = "redis://127.0.0.1:1".to_string();
    let f = with_redis((dead, guard)).await;
    let started = Instant::now();
    let fence = f
        .store
        .create(&step("e1", "running", 0), "a", 10)
        .await
        .unwrap();
    for n in 1..20 {
        f.store
            .save(&step("e1", "running", n), fence)
            .await
            .unwrap();
    }
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", 19))
    );
    assert_eq!(f.store.list(&ListFilter::default()).await.unwrap().len(), 1);
    let second = f.store.claim("e1", &claim("b")).await.unwrap().unwrap();
    assert!(matches!(
        f.store.save(&step("e1", "failed", 20), fence).await,
        Err(StoreError::Fenced { .. })
    ));
    f.store
        .save(&step("e1", "completed", 21), second)
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a down Redis is skipped, not retried on every call"
    );
}

#[tokio::test]
async fn a_bulk_claim_replaces_stale_copies_in_redis() {
    let f = fresh().await;
    let (postgres, redis) = f.store.parts();
    for id in ["e1", "e2"] {
        let first = f
            .store
            .create(&step(id, "running", 0), "dead", 10)
            .await
            .unwrap();
        // Committed to PostgreSQL but not copied to Redis (as when Redis was down).
        postgres.save(&step(id, "running", 5), first).await.unwrap();
    }
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );

    let other = f.other_process().await;
    let claimed = other.claim_expired("b", 50, 100, 10).await.unwrap();
    assert_eq!(claimed, [("e1".to_string(), 2), ("e2".to_string(), 2)]);
    for id in ["e1", "e2"] {
        assert_eq!(redis.load(id).await.unwrap(), Some(step(id, "running", 5)));
        // A late write from the owner that lost the lease cannot put the old copy back.
        assert!(
            !redis
                .put(&step(id, "running", 6), 1, Put::Newer)
                .await
                .unwrap()
        );
    }
    other.finish(&step("e1", "completed", 7), 2).await.unwrap();
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "completed", 7))
    );
    assert_eq!(f.store.lease("e1").await.unwrap(), None);
}
