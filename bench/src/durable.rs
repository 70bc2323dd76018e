//! Section 4: Durable workflows: 3 POSTs on each store, latency at concurrency 1 and throughput at
//! 16 and 64, with the floors (the 3 POSTs by hand, a Redis SET, a PostgreSQL INSERT+COMMIT,
//! one fsync, and for SQLite and PostgreSQL the whole workflow written by hand with the same
//! 4 commits) measured in the same run.

use std::io::{Seek, SeekFrom, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use orca_runtime::engine::Status;
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::plan::Plan;
use orca_runtime::runner::{Runner, WorkflowSource};
use orca_runtime::store::{self, PostgresConfig, RedisConfig, StoreConfig};
use tokio::task::JoinSet;

use crate::Report;
use crate::common::{self, Settings, by_hand, input, post};
use crate::stats::{Rates, Row, Samples, fmt_rate, fmt_us};

const STEPS: usize = 3;

pub(crate) fn postgres(settings: &Settings, schema: &str) -> PostgresConfig {
    PostgresConfig {
        url: settings.postgres_url.clone(),
        schema: Some(schema.to_string()),
    }
}

pub(crate) fn redis(settings: &Settings, prefix: &str) -> RedisConfig {
    RedisConfig {
        url: settings.redis_url.clone(),
        prefix: format!("{}:{prefix}:", settings.tag),
        ttl: Duration::from_secs(3600),
    }
}

/// The stores section 4 measures, as `--stores` names them.
pub(crate) const STORES: [&str; 5] = [
    "memory",
    "sqlite",
    "postgresql",
    "redis",
    "redis+postgresql",
];

pub(crate) async fn durable(
    settings: &Settings,
    base: &str,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    let (source, plan) = common::workflow(
        "bench-3posts",
        common::http_steps("bench-3posts", STEPS, false),
    )?;
    let bindings = common::bindings(base);

    // Floors first: the same 3 POSTs by hand at c=1 and c=64.
    let client = reqwest::Client::new();
    let hand = latency(settings, || {
        let client = client.clone();
        let base = base.to_string();
        async move { by_hand(&client, &base, STEPS, 0).await }
    })
    .await?;
    let hand64 = {
        let (client, base) = (client.clone(), base.to_string());
        throughput(settings, 64, move |i| {
            let (client, base) = (client.clone(), base.clone());
            async move { by_hand(&client, &base, STEPS, i).await }
        })
        .await?
    };
    let mut hand = hand;
    report.rows.push(
        Row::new("4", "floor: 3 POSTs by hand, c=1 p50 / p99").floor(format!(
            "{} / {}",
            fmt_us(hand.p50()),
            fmt_us(hand.p99())
        )),
    );
    report
        .rows
        .push(Row::new("4", "floor: 3 POSTs by hand, c=64").floor(hand64.describe()));
    let hand64 = hand64.median();
    let mut fsync = fsync_floor(settings, dir)?;
    report.rows.push(
        Row::new("4", "floor: one 4 KiB write + fdatasync, p50 / p99").floor(format!(
            "{} / {}",
            fmt_us(fsync.p50()),
            fmt_us(fsync.p99())
        )),
    );
    match redis_floor(settings).await {
        Ok(mut s) => report.rows.push(
            Row::new("4", "floor: Redis SET (2 KiB), p50 / p99").floor(format!(
                "{} / {}",
                fmt_us(s.p50()),
                fmt_us(s.p99())
            )),
        ),
        Err(e) => report
            .notes
            .push(format!("Redis floor not measured: {e:#}")),
    }
    match postgres_floor(settings).await {
        Ok(mut s) => report.rows.push(
            Row::new("4", "floor: PostgreSQL INSERT+COMMIT (2 KiB), p50 / p99").floor(format!(
                "{} / {}",
                fmt_us(s.p50()),
                fmt_us(s.p99())
            )),
        ),
        Err(e) => report
            .notes
            .push(format!("PostgreSQL floor not measured: {e:#}")),
    }

    let tag = &settings.tag;
    // In the order of `STORES`.
    let configs = [
        StoreConfig::Memory,
        StoreConfig::Sqlite(dir.join("durable.db")),
        StoreConfig::Postgres(postgres(settings, &format!("{tag}_d"))),
        StoreConfig::Redis {
            redis: redis(settings, "d"),
            persistence: None,
        },
        StoreConfig::Redis {
            redis: redis(settings, "l"),
            persistence: Some(postgres(settings, &format!("{tag}_l"))),
        },
    ];
    for (name, config) in STORES.into_iter().zip(configs) {
        if let Some(only) = &settings.stores
            && !only.iter().any(|s| s == name)
        {
            continue;
        }
        let store = match store::open(&config).await {
            Ok(s) => s,
            Err(e) => {
                report
                    .rows
                    .push(Row::new("4", &format!("{name}: could not open")).orca(e.to_string()));
                continue;
            }
        };
        let runner = Runner::new(store, Arc::new(HttpInvoker::new(HttpConfig::default())?));
        let run = runs(runner, &source, &plan, &bindings);
        let mut c1 = latency(settings, || run(0)).await?;
        let by_hand_durable = match name {
            "sqlite" => Some(sqlite_by_hand(settings, dir, &client, base).await),
            "postgresql" => Some(postgres_by_hand(settings, &client, base).await),
            _ => None,
        };
        match by_hand_durable {
            Some(Ok(mut floor)) => report.rows.push(
                Row::new(
                    "4",
                    &format!("{name}: the same workflow by hand (4 commits), c=1 p50 / p99"),
                )
                .orca(format!("{} / {}", fmt_us(c1.p50()), fmt_us(c1.p99())))
                .floor(format!("{} / {}", fmt_us(floor.p50()), fmt_us(floor.p99())))
                .ratio(c1.p50() / floor.p50()),
            ),
            Some(Err(e)) => report.notes.push(format!(
                "{name}: hand-written durable floor not measured: {e:#}"
            )),
            None => {}
        }
        let c16 = throughput(settings, 16, run.clone()).await?;
        let c64 = throughput(settings, 64, run.clone()).await?;
        let c64_median = c64.median();
        let ratio = c1.p50() / hand.p50();
        let mut row = Row::new("4", &format!("{name}: 3 POSTs, c=1 p50 / p99"))
            .orca(format!("{} / {}", fmt_us(c1.p50()), fmt_us(c1.p99())))
            .floor(format!("{} / {}", fmt_us(hand.p50()), fmt_us(hand.p99())))
            .ratio(ratio);
        if matches!(name, "sqlite" | "postgresql") {
            let met = c1.p50() <= 1_500.0;
            row = row.target("p50 <= 1.5 ms", met);
            if !met {
                report.missed.push(format!(
                    "{name}: p50 at concurrency 1 is {} (target <= 1.5 ms; 3 POSTs by hand: {}).",
                    fmt_us(c1.p50()),
                    fmt_us(hand.p50())
                ));
            }
        }
        report.rows.push(row);
        report.rows.push(
            Row::new("4", &format!("{name}: c=16 throughput"))
                .orca(c16.describe())
                .floor(fmt_rate(hand64)),
        );
        let mut row = Row::new("4", &format!("{name}: c=64 throughput"))
            .orca(c64.describe())
            .floor(fmt_rate(hand64))
            .ratio(c64_median / hand64);
        if matches!(name, "sqlite" | "redis+postgresql") {
            let met = c64_median >= 4_000.0;
            row = row.target(">= 4,000/s", met);
            if !met {
                report.missed.push(format!(
                    "{name}: {} workflows at concurrency 64 (target >= 4,000/s; 3 POSTs by hand: {}).",
                    fmt_rate(c64_median),
                    fmt_rate(hand64)
                ));
            }
        }
        report.rows.push(row);
        report
            .notes
            .push(format!("4. {name}: {} runs at c=1.", c1.len()));
    }
    Ok(())
}

/// Workflow `i` of `plan` run to its end by `runner`, as often as a measurement asks.
pub(crate) fn runs(
    runner: Runner,
    source: &WorkflowSource,
    plan: &Arc<Plan>,
    bindings: &orca_runtime::engine::Bindings,
) -> impl Fn(u64) -> std::pin::Pin<Box<dyn Future<Output = Result<()>> + Send>> + Clone + Send + 'static
{
    let (source, plan, bindings) = (source.clone(), plan.clone(), bindings.clone());
    move |i: u64| {
        let (runner, source, plan, bindings) = (
            runner.clone(),
            source.clone(),
            plan.clone(),
            bindings.clone(),
        );
        Box::pin(async move { run_once(&runner, source, &plan, bindings, i).await })
    }
}

async fn run_once(
    runner: &Runner,
    source: WorkflowSource,
    plan: &Plan,
    bindings: orca_runtime::engine::Bindings,
    i: u64,
) -> Result<()> {
    let done = runner.run(source, plan, input(i), bindings).await?;
    ensure!(
        done.status == Status::Completed,
        "the workflow ended {:?}",
        done.status
    );
    Ok(())
}

/// Sequential runs for the time window (at least 20), after 10 warm-up runs.
pub(crate) async fn latency<F, Fut>(settings: &Settings, mut f: F) -> Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    for _ in 0..10 {
        f().await?;
    }
    let mut samples = Samples::default();
    let deadline = Instant::now() + settings.window;
    while Instant::now() < deadline || samples.len() < 20 {
        let t = Instant::now();
        f().await?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Completions per second with `concurrency` workers looping over `f`, in each of the
/// settings' throughput windows.
pub(crate) async fn throughput<F, Fut>(
    settings: &Settings,
    concurrency: usize,
    f: F,
) -> Result<Rates>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let mut rates = Vec::with_capacity(settings.rate_windows);
    for window in 0..settings.rate_windows.max(1) {
        // Workflow numbers stay distinct across windows: they name the executions.
        let first = (window as u64) << 48;
        rates.push(one_window(settings.window, concurrency, first, f.clone()).await?);
    }
    Ok(Rates(rates))
}

/// Completions per second with `concurrency` workers looping over `f` for `window`.
async fn one_window<F, Fut>(window: Duration, concurrency: usize, first: u64, f: F) -> Result<f64>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + window;
    let mut set = JoinSet::new();
    for w in 0..concurrency {
        let (f, done) = (f.clone(), done.clone());
        set.spawn(async move {
            let mut i = first + ((w as u64) << 32);
            while Instant::now() < deadline {
                f(i).await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn fsync_floor(settings: &Settings, dir: &std::path::Path) -> Result<Samples> {
    let mut file = std::fs::File::create(dir.join("fsync.bin"))?;
    let block = vec![7u8; 4096];
    let mut samples = Samples::default();
    let deadline = Instant::now() + settings.window;
    while Instant::now() < deadline || samples.len() < 50 {
        let t = Instant::now();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

async fn redis_floor(settings: &Settings) -> Result<Samples> {
    let client = ::redis::Client::open(settings.redis_url.as_str())?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let value = vec![b'x'; 2048];
    let key = format!("{}:floor", settings.tag);
    let mut samples = Samples::default();
    let deadline = Instant::now() + settings.window;
    while Instant::now() < deadline || samples.len() < 50 {
        let t = Instant::now();
        let () = ::redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query_async(&mut con)
            .await?;
        samples.push(t.elapsed());
    }
    let () = ::redis::cmd("DEL").arg(&key).query_async(&mut con).await?;
    Ok(samples)
}

/// The durable floor for one backend: the 3-step workflow written by hand, as a careful
/// programmer would without an engine: INSERT the record, then after each POST UPDATE it,
/// each statement its own synchronously committed transaction (the same 4 commits Orca makes).
const HAND_BODY: usize = 2048;

/// The record as the hand-written workflow writes it after `step` steps: it changes with every
/// write, as Orca's does. SQLite leaves a row alone when an UPDATE sets it to the bytes it
/// already holds (the B-tree compares the cell first), so a constant body would make the 3
/// UPDATEs commit nothing and sync nothing.
fn hand_body(step: usize) -> Vec<u8> {
    let mut body = vec![b'x'; HAND_BODY];
    body[..8].copy_from_slice(&(step as u64).to_le_bytes());
    body
}

async fn postgres_by_hand(
    settings: &Settings,
    http: &reqwest::Client,
    base: &str,
) -> Result<Samples> {
    let client = pg_client(settings).await?;
    let table = format!("{}_by_hand", settings.tag);
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id text PRIMARY KEY, body bytea NOT NULL)"
        ))
        .await?;
    let insert = client
        .prepare(&format!("INSERT INTO {table} (id, body) VALUES ($1, $2)"))
        .await?;
    let update = client
        .prepare(&format!("UPDATE {table} SET body = $2 WHERE id = $1"))
        .await?;
    let next = AtomicU64::new(0);
    let samples = latency(settings, || {
        let (client, insert, update) = (&client, &insert, &update);
        let id = format!("h{}", next.fetch_add(1, Ordering::Relaxed));
        async move {
            client.execute(insert, &[&id, &hand_body(0)]).await?;
            for step in 0..STEPS {
                post(http, base, step, 0, &input(0)).await?;
                client.execute(update, &[&id, &hand_body(step + 1)]).await?;
            }
            Ok(())
        }
    })
    .await;
    client.batch_execute(&format!("DROP TABLE {table}")).await?;
    samples
}

async fn sqlite_by_hand(
    settings: &Settings,
    dir: &std::path::Path,
    http: &reqwest::Client,
    base: &str,
) -> Result<Samples> {
    let conn = rusqlite::Connection::open(dir.join("by-hand.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE records (id TEXT PRIMARY KEY, body BLOB NOT NULL)")?;
    let conn = Arc::new(std::sync::Mutex::new(conn));
    // rusqlite blocks, so each statement goes to tokio's blocking pool.
    let exec = |sql: &'static str, id: String, step: usize| {
        let conn = conn.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let conn = conn.lock().map_err(|_| anyhow!("poisoned"))?;
                conn.prepare_cached(sql)?
                    .execute(rusqlite::params![id, hand_body(step)])?;
                Ok::<_, anyhow::Error>(())
            })
            .await?
        }
    };
    let next = AtomicU64::new(0);
    latency(settings, || {
        let id = format!("h{}", next.fetch_add(1, Ordering::Relaxed));
        let exec = &exec;
        async move {
            exec(
                "INSERT INTO records (id, body) VALUES (?1, ?2)",
                id.clone(),
                0,
            )
            .await?;
            for step in 0..STEPS {
                post(http, base, step, 0, &input(0)).await?;
                exec(
                    "UPDATE records SET body = ?2 WHERE id = ?1",
                    id.clone(),
                    step + 1,
                )
                .await?;
            }
            Ok(())
        }
    })
    .await
}

pub(crate) async fn pg_client(settings: &Settings) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(&settings.postgres_url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

async fn postgres_floor(settings: &Settings) -> Result<Samples> {
    let client = pg_client(settings).await?;
    let table = format!("{}_floor", settings.tag);
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id bigserial PRIMARY KEY, body bytea NOT NULL)"
        ))
        .await?;
    let insert = client
        .prepare(&format!("INSERT INTO {table} (body) VALUES ($1)"))
        .await?;
    let body = vec![b'x'; 2048];
    let mut samples = Samples::default();
    let deadline = Instant::now() + settings.window;
    let result = async {
        while Instant::now() < deadline || samples.len() < 50 {
            let t = Instant::now();
            // Autocommit: each INSERT is its own transaction, committed synchronously.
            client.execute(&insert, &[&body]).await?;
            samples.push(t.elapsed());
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    client.batch_execute(&format!("DROP TABLE {table}")).await?;
    result.map_err(|e| anyhow!("{e:#}"))?;
    Ok(samples)
}

/// Drops what this run created in PostgreSQL and Redis.
pub(crate) async fn clean_up(settings: &Settings) -> Result<()> {
    if let Ok(client) = pg_client(settings).await {
        let rows = client
            .query(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                &[&format!("{}%", settings.tag)],
            )
            .await?;
        for row in rows {
            let schema: String = row.get(0);
            client
                .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .await?;
        }
    }
    if let Ok(client) = ::redis::Client::open(settings.redis_url.as_str())
        && let Ok(mut con) = client.get_multiplexed_async_connection().await
    {
        let keys: Vec<String> = ::redis::cmd("KEYS")
            .arg(format!("{}:*", settings.tag))
            .query_async(&mut con)
            .await?;
        for chunk in keys.chunks(1000) {
            let () = ::redis::cmd("DEL").arg(chunk).query_async(&mut con).await?;
        }
    }
    Ok(())
}
