//! `orca-bench`: Orca measured side by side with its floors, in one run.
//!
//! ```text
//! cargo run --release -p orca-bench -- [--quick] [--out BENCHMARKS.md] [--only 1,2,3,4,5,6,7]
//!     [--stores memory,sqlite,postgresql,redis,redis+postgresql]
//! cargo run --release -p orca-bench -- --profile engine|floor|invoker|runner|wasm-engine|wasm-host|wasm-floor [--runs 2000]
//! ```
//!
//! Prints a table and writes it, with the method, date and machine, to `--out`. PostgreSQL
//! and Redis are taken from `ORCA_BENCH_POSTGRES_URL` / `ORCA_BENCH_REDIS_URL` (default: the
//! local servers); everything this run creates there is dropped at the end. Section 5 runs in
//! a process of its own (this program with `--child --only 5`, which prints its report as
//! JSON), unless it is the only section asked for.

mod common;
mod durable;
mod engine;
mod memory;
mod recovery;
mod server;
mod stats;
mod wasm;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use orca_runtime::store::StoreConfig;

use common::Settings;
use stats::Row;

/// What the measurements produce.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    /// How each number was obtained.
    pub(crate) notes: Vec<String>,
    /// Targets missed, each with the measured number.
    pub(crate) missed: Vec<String>,
}

struct Args {
    quick: bool,
    out: PathBuf,
    only: BTreeSet<u32>,
    stores: Option<Vec<String>>,
    /// `--profile KIND`: section 1's runs of one kind only, `runs` of them, for a profiler.
    profile: Option<engine::Profiled>,
    runs: u64,
    /// `--one-thread`: a profile on a current-thread runtime (see [`main`]).
    one_thread: bool,
    /// `--child`: run the sections of `--only` and print their report as JSON, nothing else.
    child: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        quick: false,
        out: PathBuf::from("BENCHMARKS.md"),
        only: (1..=7).collect(),
        stores: None,
        profile: None,
        runs: 2_000,
        one_thread: false,
        child: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--child" => args.child = true,
            "--one-thread" => args.one_thread = true,
            "--out" => args.out = it.next().context("--out needs a path")?.into(),
            "--only" => {
                args.only = it
                    .next()
                    .context("--only needs a list like 1,3")?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<_, _>>()
                    .context("--only takes section numbers 1 to 7")?;
            }
            "--stores" => {
                let list = it
                    .next()
                    .context("--stores needs a list like sqlite,postgresql")?;
                let stores: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
                if let Some(unknown) = stores
                    .iter()
                    .find(|s| !durable::STORES.contains(&s.as_str()))
                {
                    bail!(
                        "--stores: unknown store `{unknown}` (known: {})",
                        durable::STORES.join(", ")
                    );
                }
                args.stores = Some(stores);
            }
            "--profile" => {
                let kind = it
                    .next()
                    .with_context(|| format!("--profile needs {}", engine::PROFILED))?;
                args.profile = Some(kind.parse()?);
            }
            "--runs" => {
                args.runs = it
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs takes a whole number")?;
            }
            "-h" | "--help" => {
                println!(
                    "orca-bench [--quick] [--out BENCHMARKS.md] [--only 1,2,3,4,5,6,7] \
                     [--stores memory,sqlite,postgresql,redis,redis+postgresql]\n\
                     orca-bench --profile engine|floor|invoker|runner|wasm-engine|wasm-host|wasm-floor \
                     [--runs 2000] [--one-thread]: section 1's (or section 3's) runs of one kind \
                     only, nothing written, for perf or callgrind; --one-thread runs them and the \
                     mock service on one thread, so that cachegrind's counts repeat.\n\
                     Full run ~5 min, --quick ~1 min."
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    // The timed sections measure the multi-threaded runtime that `orca` runs on.
    if args.one_thread && args.profile.is_none() {
        bail!("--one-thread applies only to --profile runs (try --help)");
    }
    Ok(args)
}

/// The allocator the `orca` binary ships with, so library code is measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let args = parse_args()?;
    // Under valgrind the threads of a multi-threaded runtime interleave differently from run
    // to run, and a count of cache misses moved by 2 to 4 % with one binary. On one thread
    // the same runs make the same misses, as when `orca serve` drives a workflow whose calls
    // all land on its worker (bench/FINDINGS.md, section 1).
    let runtime = if args.one_thread {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    match args.profile {
        Some(engine::Profiled::Sequential(way)) => {
            let base = common::mock_service().await?;
            return engine::profile(way, args.runs, &base).await;
        }
        // Its guest calls a mock service of its own.
        Some(engine::Profiled::Score(way)) => return wasm::profile(way, args.runs).await,
        None => {}
    }
    let mut settings = Settings::new(args.quick);
    settings.stores = args.stores.clone();
    let started = Instant::now();
    let base = common::mock_service().await?;
    let dir = tempfile::Builder::new()
        .prefix("orca-bench-")
        .tempdir_in("/var/tmp")?;
    let mut report = Report::default();
    let result = sections(&args, &settings, &base, dir.path(), &mut report).await;
    if let Err(e) = durable::clean_up(&settings).await {
        eprintln!("cleaning up PostgreSQL/Redis: {e:#}");
    }
    if args.child {
        result?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if let Err(e) = &result {
        report.notes.push(format!("The run stopped early: {e:#}"));
    }
    let elapsed = started.elapsed();
    let table = stats::table(&report.rows);
    println!("\n{table}");
    for m in &report.missed {
        println!("MISSED: {m}");
    }
    let doc = markdown(&args, &settings, &report, &table, elapsed);
    std::fs::write(&args.out, doc).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({:.0} s)",
        args.out.display(),
        elapsed.as_secs_f64()
    );
    result
}

async fn sections(
    args: &Args,
    settings: &Settings,
    base: &str,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    let on = |n: u32| args.only.contains(&n);
    if on(5) {
        progress("5 memory with parked executions");
        if args.child || args.only.len() == 1 {
            memory::parked(settings, report).await?;
        } else {
            // In a process of its own: on a heap that earlier sections used, what they freed
            // would be reused and hidden from the difference, and the 550 MiB it leaves
            // behind slowed the sections after it (section 1 by 3 to 6 %).
            report.extend(in_own_process(args, 5)?);
        }
    }
    if on(1) {
        progress("1 engine overhead");
        engine::sequential(settings, base, report).await?;
    }
    if on(2) {
        progress("2 fan-out");
        engine::fan_out(settings, base, report).await?;
    }
    if on(3) {
        progress("3 Wasm step");
        wasm::wasm_step(settings, report).await?;
    }
    if on(4) {
        progress("4 durable workflows");
        durable::durable(settings, base, dir, report).await?;
    }
    if on(6) {
        progress("6 recovery (sqlite)");
        recovery::recovery(
            settings,
            "sqlite",
            StoreConfig::Sqlite(dir.join("recovery.db")),
            report,
        )
        .await?;
        progress("6 recovery (postgresql)");
        let pg = durable::postgres(settings, &format!("{}_r", settings.tag));
        recovery::recovery(settings, "postgresql", StoreConfig::Postgres(pg), report).await?;
    }
    if on(7) {
        progress("7 through the server");
        server::through_server(settings, base, dir, report).await?;
    }
    Ok(())
}

impl Report {
    fn extend(&mut self, other: Report) {
        self.rows.extend(other.rows);
        self.notes.extend(other.notes);
        self.missed.extend(other.missed);
    }
}

/// Runs `section` in a new process of this program and returns its report.
fn in_own_process(args: &Args, section: u32) -> Result<Report> {
    let mut child = std::process::Command::new(std::env::current_exe()?);
    child.args(["--child", "--only", &section.to_string()]);
    if args.quick {
        child.arg("--quick");
    }
    if let Some(stores) = &args.stores {
        child.args(["--stores", &stores.join(",")]);
    }
    let output = child
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting a process for one section")?;
    if !output.status.success() {
        bail!("section {section}'s process failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("reading section {section}'s report"))
}

fn progress(what: &str) {
    eprintln!("[orca-bench] {what} ...");
}

fn command(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn markdown(
    args: &Args,
    settings: &Settings,
    report: &Report,
    table: &str,
    elapsed: std::time::Duration,
) -> String {
    let mut doc = String::new();
    doc.push_str("# Orca benchmarks\n\n");
    doc.push_str(
        "Generated by `orca-bench` (`make bench`, or `cargo run --release -p orca-bench -- \
         [--quick]`); the table and the sections \"Method\", \"Missed targets\" and \
         \"Notes\" are rewritten by every run, \"Findings\" comes from `bench/FINDINGS.md`.\n\n",
    );
    doc.push_str(&format!(
        "- Date: {}\n- Run: {} ({:.0} s){}\n- Machine: {} cores (`nproc`), {}, {} MiB RAM\n- Rust: {}\n\n",
        command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        if settings.quick { "`--quick` (short windows, 10k parked, 1k recovered)" } else { "full" },
        elapsed.as_secs_f64(),
        if args.only.len() < 7 { format!(", sections {:?} only", args.only) } else { String::new() }
            + &args.stores.as_ref().map(|s| format!(", stores {s:?} only")).unwrap_or_default(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model(),
        mem_total_mib(),
        command("rustc", &["--version"]),
    ));
    doc.push_str("## Results\n\n");
    doc.push_str(table);
    doc.push_str("\n\"floor\" is the same work done without Orca, measured in the same run. ");
    doc.push_str("Latencies are per workflow (or per call), p50/p99 by nearest rank.\n\n");
    doc.push_str("## Missed targets\n\n");
    if report.missed.is_empty() {
        doc.push_str("None.\n");
    }
    for m in &report.missed {
        doc.push_str(&format!("- {m}\n"));
    }
    doc.push_str("\n## Method\n\n");
    doc.push_str(&format!(
        "One process, a multi-threaded tokio runtime (as many workers as cores), release build. \
         The mock service is axum on 127.0.0.1:0 in the same process and answers `{{\"ok\": true}}` \
         to everything; it shares the cores with the engine and with the floors. HTTP steps go \
         through the runtime's `HttpInvoker` (reqwest); the hand-written floors use one reqwest \
         client with the same body and an `Idempotency-Key` header. Each latency window is {:.0} s. \
         A throughput is measured over {} windows of that length, one after another (workers \
         loop over whole workflows until a window closes): the median is reported, with the \
         range beside it when there are several. \
         PostgreSQL (synchronous_commit as configured on the server) and Redis are the local \
         servers; this run's schemas and keys (`{}*`) are dropped at the end. SQLite files live \
         in a temporary directory under /var/tmp, on the same disk as the fsync floor.\n\n",
        settings.window.as_secs_f64(),
        settings.rate_windows,
        settings.tag
    ));
    doc.push_str("## Notes\n\n");
    for n in &report.notes {
        doc.push_str(&format!("- {n}\n"));
    }
    if let Ok(findings) = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("FINDINGS.md"),
    ) {
        doc.push_str("\n## Findings\n\n");
        doc.push_str(findings.trim());
        doc.push('\n');
    }
    doc
}

fn mem_total_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
