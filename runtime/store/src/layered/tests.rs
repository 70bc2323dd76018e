//! The layered store against real servers: the shared suite, and the promises of the module
//! docs: PostgreSQL answers when Redis lost a key or is down, and stale copies never win.

use std::time::Duration;

use super::*;
use crate::conformance::execution;
use crate::testing::{self, PrefixGuard, SchemaGuard};

pub(super) struct Fixture {
    store: LayeredStore,
    redis: RedisConfig,
    postgres: PostgresConfig,
    _guards: (PrefixGuard, SchemaGuard),
}

impl Fixture {
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

async fn with_redis(redis: (RedisConfig, PrefixGuard)) -> Fixture {
    gathering_for(GATHER_COPIES_FOR, redis).await
}

async fn gathering_for(gather: Duration, (redis, prefix): (RedisConfig, PrefixGuard)) -> Fixture {
    let (postgres, schema) = testing::postgres();
    Fixture {
        store: LayeredStore::open_gathering(&redis, &postgres, gather)
            .await
            .unwrap(),
        redis,
        postgres,
        _guards: (prefix, schema),
    }
}

async fn fresh() -> Fixture {
    with_redis(testing::redis(Duration::from_secs(60))).await
}

crate::conformance::suite!(fresh);

#[tokio::test]
async fn component_state() {
    let fixture = fresh().await;
    crate::conformance::component_state(&fixture.store).await;
}

fn step(id: &str, status: &str, n: u8) -> StoredExecution {
    let mut e = execution(id, "wf", status, 1_000);
    e.updated_at_ms = 1_000 + i64::from(n);
    e.body = vec![n].into();
    e
}

/// Saves `e1` as of each of `saves`, then checks that the store reads back the last.
async fn save_running(f: &Fixture, fence: Fence, saves: std::ops::RangeInclusive<u8>) {
    let last = *saves.end();
    for n in saves {
        f.store
            .save(&step("e1", "running", n), fence)
            .await
            .unwrap();
    }
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", last))
    );
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
    f.store.flush().await;
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
    f.store.flush().await;
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
    f.store.flush().await;
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
    // Other processes read the Redis copy, which is written behind the commit.
    other.flush().await;
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
    save_running(&f, fence, 1..=19).await;
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
        f.store.flush().await;
        // Committed to PostgreSQL but not copied to Redis (as when Redis was down).
        postgres.save(&step(id, "running", 5), first).await.unwrap();
    }
    assert_eq!(
        redis.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );

    let other = f.other_process().await;
    let claimed = other.claim_expired("b", 50, 100, 10).await.unwrap();
    // PostgreSQL's records, not Redis's stale copies.
    assert_eq!(
        claimed,
        [(step("e1", "running", 5), 2), (step("e2", "running", 5), 2)]
    );
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
    other.flush().await;
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "completed", 7))
    );
    assert_eq!(f.store.lease("e1").await.unwrap(), None);
}

/// A TCP proxy to the real Redis whose requests can be held back: lets a test stop the
/// copy task mid-flight without touching the server other tests share.
struct HeldProxy {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
    /// Script calls (one per copy written) passed on to Redis.
    scripts: Arc<std::sync::atomic::AtomicUsize>,
}

impl HeldProxy {
    async fn start(upstream: &str) -> HeldProxy {
        let upstream = url::Url::parse(upstream).unwrap();
        let upstream = format!(
            "{}:{}",
            upstream.host_str().unwrap(),
            upstream.port().unwrap_or(6379)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let (open, gate) = tokio::sync::watch::channel(true);
        let scripts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = scripts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (mut from_client, to_server) = (client, server);
                let mut gate = gate.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let (mut client_read, mut client_write) = from_client.split();
                    let mut to_server = to_server;
                    let (mut server_read, mut server_write) = to_server.split();
                    let requests = async {
                        let mut buffer = vec![0u8; 64 * 1024];
                        loop {
                            let n = client_read.read(&mut buffer).await?;
                            if n == 0 {
                                return Ok::<_, std::io::Error>(());
                            }
                            // Held requests wait here, already read from the client.
                            let _ = gate.wait_for(|open| *open).await;
                            let calls = buffer[..n].windows(7).filter(|w| w == b"EVALSHA");
                            counted.fetch_add(calls.count(), Ordering::SeqCst);
                            server_write.write_all(&buffer[..n]).await?;
                        }
                    };
                    let replies = tokio::io::copy(&mut server_read, &mut client_write);
                    let _ = tokio::join!(requests, replies);
                });
            }
        });
        HeldProxy { url, open, scripts }
    }

    fn hold(&self) {
        self.open.send_replace(false);
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

/// A store gathering copies for `gather` whose Redis traffic goes through a [`HeldProxy`],
/// with execution `e1` created (its copy perhaps not landed yet); also a connection straight
/// to Redis, and `e1`'s fence.
async fn proxied_with_e1(gather: Duration) -> (Fixture, HeldProxy, RedisStore, Fence) {
    let (real, guard) = testing::redis(Duration::from_secs(60));
    let proxy = HeldProxy::start(&real.url).await;
    let proxied = RedisConfig {
        url: proxy.url.clone(),
        ..real.clone()
    };
    let f = gathering_for(gather, (proxied, guard)).await;
    let direct = RedisStore::open(&real).await.unwrap();
    // Script calls through the proxy then count copies, whatever the server held before.
    direct.load_copy_script().await.unwrap();
    let fence = f
        .store
        .create(&step("e1", "running", 0), "a", 10)
        .await
        .unwrap();
    (f, proxy, direct, fence)
}

/// A store whose Redis traffic goes through a [`HeldProxy`], with execution `e1` created and
/// its copy landed; also a connection straight to Redis, and `e1`'s fence.
async fn behind_a_proxy() -> (Fixture, HeldProxy, RedisStore, Fence) {
    let (f, proxy, direct, fence) = proxied_with_e1(GATHER_COPIES_FOR).await;
    f.store.flush().await;
    (f, proxy, direct, fence)
}

/// Lets the held copies through and checks that Redis then holds `e1` as of save `n`.
async fn release_and_expect(f: &Fixture, proxy: &HeldProxy, direct: &RedisStore, n: u8) {
    proxy.release();
    f.store.flush().await;
    assert_eq!(
        direct.load("e1").await.unwrap(),
        Some(step("e1", "running", n))
    );
    assert!(!f.store.cache.is_stale("e1"));
}

#[tokio::test]
async fn a_save_is_answered_before_its_redis_copy_lands_and_reads_never_go_back() {
    let (f, proxy, direct, fence) = behind_a_proxy().await;
    assert_eq!(
        direct.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );

    proxy.hold();
    f.store
        .save(&step("e1", "running", 1), fence)
        .await
        .unwrap();
    // Committed and answered while Redis has not seen the save; reads go to PostgreSQL.
    assert_eq!(
        direct.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", 1))
    );

    release_and_expect(&f, &proxy, &direct, 1).await;
    assert_eq!(
        f.store.load("e1").await.unwrap(),
        Some(step("e1", "running", 1))
    );
}

#[tokio::test]
async fn copies_queued_for_one_execution_are_sent_as_the_newest_alone() {
    let (f, proxy, direct, fence) = behind_a_proxy().await;
    let before = proxy.scripts.load(Ordering::SeqCst);

    // The first copy is held on its way; the next two queue behind it.
    proxy.hold();
    save_running(&f, fence, 1..=3).await;
    release_and_expect(&f, &proxy, &direct, 3).await;
    // Copy 1 went out alone (unless the copy task was slow to pick it up); 2 and 3 as one.
    let sent = proxy.scripts.load(Ordering::SeqCst) - before;
    assert!((1..=2).contains(&sent), "{sent} copies sent for 3 saves");
}

#[tokio::test]
async fn copies_gathered_meanwhile_reach_redis_as_the_newest_alone() {
    let (f, proxy, direct, fence) = proxied_with_e1(Duration::from_secs(3600)).await;
    save_running(&f, fence, 1..=4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Still gathering: nothing has gone to Redis, and reads come from PostgreSQL.
    assert_eq!(proxy.scripts.load(Ordering::SeqCst), 0);
    assert_eq!(direct.load("e1").await.unwrap(), None);
    assert!(f.store.cache.is_stale("e1"));

    f.store.flush().await;
    assert_eq!(
        proxy.scripts.load(Ordering::SeqCst),
        1,
        "one copy for five writes"
    );
    assert_eq!(
        direct.load("e1").await.unwrap(),
        Some(step("e1", "running", 4))
    );
    assert!(!f.store.cache.is_stale("e1"));
}

#[tokio::test]
async fn gathered_copies_land_by_themselves_once_the_wait_is_over() {
    let (f, proxy, direct, fence) = proxied_with_e1(Duration::from_millis(50)).await;
    save_running(&f, fence, 1..=2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    // The copy task counts the copy as landed once Redis has answered.
    while f.store.cache.is_stale("e1")
        || direct.load("e1").await.unwrap() != Some(step("e1", "running", 2))
    {
        assert!(Instant::now() < deadline, "the copy never reached Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!((1..=3).contains(&proxy.scripts.load(Ordering::SeqCst)));
}

#[tokio::test]
async fn a_finished_execution_leaves_redis_and_is_read_from_postgresql() {
    let (f, proxy, direct, fence) = proxied_with_e1(Duration::from_secs(3600)).await;
    f.store.flush().await;
    assert_eq!(
        direct.load("e1").await.unwrap(),
        Some(step("e1", "running", 0))
    );

    f.store
        .save(&step("e1", "running", 1), fence)
        .await
        .unwrap();
    f.store
        .finish(&step("e1", "completed", 2), fence)
        .await
        .unwrap();
    f.store.flush().await;
    // Only the create's copy ran the script: the last save removed the copy instead.
    assert_eq!(proxy.scripts.load(Ordering::SeqCst), 1);
    assert_eq!(direct.load("e1").await.unwrap(), None);
    let other = f.other_process().await;
    for store in [&f.store, &other] {
        assert_eq!(
            store.load("e1").await.unwrap(),
            Some(step("e1", "completed", 2))
        );
    }
    // Reading it does not copy it back.
    assert_eq!(direct.load("e1").await.unwrap(), None);
}

/// Told through Redis once the copy there has landed: the other process, which reads
/// Redis first, then reads the final record rather than a copy that lags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announces_to_other_processes() {
    let fixture = fresh().await;
    let there = fixture.other_process().await;
    crate::conformance::announces_to_other_processes(&fixture.store, &there).await;
}
