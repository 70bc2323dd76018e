//! Durable state through the real binary, on every durable backend: SQLite, PostgreSQL, and
//! the seed's Redis persisted to PostgreSQL.
//!
//! The servers are the real ones on 127.0.0.1 (`.ci/run` starts them). Each test works in a
//! PostgreSQL schema and a Redis key prefix of its own, removed when it ends, so tests run in
//! parallel and never flush anything another test uses.

mod cli;
mod crash;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Orca, Outcome, Running, seed};

pub fn postgres_url() -> String {
    std::env::var("ORCA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1/test".to_string())
}

fn redis_url() -> String {
    std::env::var("ORCA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

pub fn unique(kind: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "orca_e2e_{kind}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where a test's executions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// The seed's StateStore document, its endpoints overridden by ORCA_REDIS_URL and
    /// ORCA_POSTGRES_URL.
    RedisPersisted,
}

/// An `orca` working directory bound to one backend, cleaned up when dropped.
pub struct Store {
    pub backend: Backend,
    pub orca: Orca,
    schema: String,
    pub prefix: String,
}

impl Store {
    pub fn new(backend: Backend) -> Self {
        Store {
            backend,
            orca: Orca::new(),
            schema: unique("pg"),
            prefix: format!("{}:", unique("redis")),
        }
    }

    pub fn postgres(&self) -> String {
        format!("{}?schema={}", postgres_url(), self.schema)
    }

    /// `orca ARGS` on this store. A `run` of the persisted-Redis backend gets the seed's
    /// StateStore document as one more file; every other command names it with `--store`.
    pub fn command(&self, args: &[String]) -> Command {
        let mut args = args.to_vec();
        let is_run = args.first().is_some_and(|a| a == "run");
        let mut command = match self.backend {
            Backend::Sqlite => self.orca.command(&args),
            Backend::Postgres => {
                let mut command = self.orca.command(&args);
                command.env("ORCA_STORE", self.postgres());
                command
            }
            Backend::RedisPersisted => {
                if is_run {
                    args.insert(1, seed("06-StateStore.yaml"));
                }
                let mut command = self.orca.command(&args);
                if is_run {
                    command.env_remove("ORCA_STORE");
                } else {
                    command.env("ORCA_STORE", seed("06-StateStore.yaml"));
                }
                command
                    .env(
                        "ORCA_REDIS_URL",
                        format!("{}?prefix={}", redis_url(), self.prefix),
                    )
                    .env("ORCA_POSTGRES_URL", self.postgres());
                command
            }
        };
        command.env("ORCA_LOG", "warn");
        command
    }

    /// Runs `orca ARGS` to the end (killed after 30 s so a hang fails instead of blocking).
    pub fn run(&self, args: &[String]) -> Outcome {
        finish(self.command(args))
    }

    /// Starts `orca ARGS`; its stderr lines arrive on a channel.
    pub fn spawn(&self, args: &[String]) -> Running {
        Running::start(self.command(args))
    }

    /// The `status` of this store's Redis copy of execution `id`, if Redis holds one.
    pub fn redis_status(&self, id: &str) -> Option<String> {
        let key = format!("{}exec:{id}", self.prefix);
        let (sender, status) = mpsc::channel();
        on_runtime(async move {
            let mut conn = connect_redis().await;
            let found: Option<String> = redis::AsyncCommands::hget(&mut conn, key, "status")
                .await
                .expect("HGET works");
            let _ = sender.send(found);
        });
        status.recv().expect("the status was read")
    }

    /// The ids of the executions this store's Redis holds a copy of.
    pub fn redis_copies(&self) -> Vec<String> {
        let records = format!("{}exec:", self.prefix);
        let (sender, keys) = mpsc::channel();
        let under = records.clone();
        on_runtime(async move {
            let _ = sender.send(keys_under(&under).await);
        });
        let keys = keys.recv().expect("the keys were read");
        keys.iter()
            .filter_map(|key| key.strip_prefix(&records))
            .map(str::to_string)
            .collect()
    }

    /// Deletes this store's Redis keys: what FLUSHALL does, to this test's data only.
    pub fn flush_redis(&self) {
        let prefix = self.prefix.clone();
        on_runtime(async move { delete_keys(&prefix).await });
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.backend == Backend::Sqlite {
            return;
        }
        let (schema, prefix) = (self.schema.clone(), self.prefix.clone());
        on_runtime(async move {
            let (client, connection) =
                tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
                    .await
                    .expect("PostgreSQL for cleanup");
            tokio::spawn(connection);
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .expect("the test schema drops");
            delete_keys(&prefix).await;
        });
    }
}

async fn connect_redis() -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis_url()).expect("a Redis URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis is reachable")
}

async fn keys_under(prefix: &str) -> Vec<String> {
    let mut conn = connect_redis().await;
    let mut keys: Vec<String> = Vec::new();
    let mut iter = redis::AsyncCommands::scan_match::<_, String>(&mut conn, format!("{prefix}*"))
        .await
        .expect("SCAN works");
    while let Some(key) = iter.next_item().await {
        keys.push(key.expect("a key"));
    }
    keys
}

async fn delete_keys(prefix: &str) {
    let keys = keys_under(prefix).await;
    if !keys.is_empty() {
        let _: () = redis::AsyncCommands::del(&mut connect_redis().await, keys)
            .await
            .expect("DEL works");
    }
}

/// Runs `work` on a runtime of its own thread: callers are plain tests, or `Drop` while a
/// failed assertion unwinds.
fn on_runtime(work: impl Future<Output = ()> + Send + 'static) {
    let done = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(work);
    })
    .join();
    if done.is_err() && !std::thread::panicking() {
        panic!("talking to Redis or PostgreSQL failed");
    }
}

fn finish(mut command: Command) -> Outcome {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orca starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(output) => {
            let output = output.expect("orca's output");
            Outcome {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            }
        }
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("orca did not finish within 30 s");
        }
    }
}
