//! Connections to the real servers the store tests run against, each test isolated.
//!
//! PostgreSQL at `ORCA_TEST_POSTGRES_URL` (default `postgresql://postgres@127.0.0.1/test`)
//! and Redis at `ORCA_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); `.ci/run` starts
//! both. Every test gets a schema or key prefix of its own, so tests run in parallel and
//! never flush data another test is using; guards remove them when the test ends, failed
//! or not.

use std::time::Duration;

use super::{PostgresConfig, RedisConfig};

fn unique(kind: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The tail of a v7 UUID is random.
    format!("orca_test_{kind}_{}", &id[id.len() - 16..])
}

fn postgres_url() -> String {
    std::env::var("ORCA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1/test".to_string())
}

fn redis_url() -> String {
    std::env::var("ORCA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A store under test, and what must live as long as it does: the guard of its schema or
/// keys, if it has any.
pub(crate) struct Fixture<S, G = ()> {
    pub(crate) store: S,
    _guard: G,
}

impl<S, G> Fixture<S, G> {
    pub(crate) fn new(store: S, guard: G) -> Self {
        Fixture {
            store,
            _guard: guard,
        }
    }
}

/// A config naming a fresh schema, and the guard that drops it.
pub(crate) fn postgres() -> (PostgresConfig, SchemaGuard) {
    let schema = unique("pg");
    let config = PostgresConfig {
        url: postgres_url(),
        schema: Some(schema.clone()),
    };
    (config, SchemaGuard(schema))
}

/// A config with a fresh key prefix, and the guard that deletes its keys.
pub(crate) fn redis(ttl: Duration) -> (RedisConfig, PrefixGuard) {
    let prefix = format!("{}:", unique("redis"));
    let config = RedisConfig {
        url: redis_url(),
        prefix: prefix.clone(),
        ttl,
    };
    (config, PrefixGuard(prefix))
}

/// Drops its schema when dropped.
pub(crate) struct SchemaGuard(String);

/// Deletes every key under its prefix when dropped.
pub(crate) struct PrefixGuard(pub(crate) String);

/// Runs `cleanup` to completion from `Drop`, which may run inside a test's runtime (where
/// blocking on another future is not allowed) or while unwinding from a failed assertion.
fn in_own_runtime(cleanup: impl Future<Output = ()> + Send + 'static) {
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for cleanup");
        runtime.block_on(cleanup);
    })
    .join();
    if done.is_err() && !std::thread::panicking() {
        panic!("test cleanup failed");
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        in_own_runtime(async move {
            let (client, connection) =
                tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL for cleanup");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .expect("the test schema drops");
        });
    }
}

impl PrefixGuard {
    /// Deletes the keys now (what FLUSHALL would do, limited to this test's data).
    pub(crate) async fn delete_keys(prefix: &str) {
        use ::redis::AsyncCommands;
        let client = ::redis::Client::open(redis_url()).expect("a Redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis for cleanup");
        let mut keys = Vec::new();
        {
            let mut iter = conn
                .scan_match::<_, String>(format!("{prefix}*"))
                .await
                .expect("SCAN works");
            while let Some(key) = iter.next_item().await {
                keys.push(key.expect("a key"));
            }
        }
        if !keys.is_empty() {
            let _: () = conn.del(keys).await.expect("DEL works");
        }
    }
}

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        in_own_runtime(async move { PrefixGuard::delete_keys(&prefix).await });
    }
}
