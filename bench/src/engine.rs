//! Sections 1 and 2: engine overhead (10 sequential steps) and fan-out (100 parallel steps),
//! on the memory store against the in-process mock, each interleaved run by run with its floor.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use orca_runtime::cached_json::CachedJson;
use orca_runtime::engine::{Action, Bindings, Event, Execution, Status};
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Failure, HeadersBuilder, HttpRequest, Invoker, Request, Response};
use orca_runtime::payload::Payload;
use orca_runtime::plan::Plan;
use orca_runtime::runner::{Runner, WorkflowSource};
use orca_runtime::store::MemoryStore;
use tokio::task::JoinSet;

use crate::Report;
use crate::common::{self, Settings, by_hand, input, post};
use crate::stats::{Row, Samples, fmt_us};

const WARMUP: u64 = 30;

/// The memory store's checkpoint lag under `--profile engine` (see [`profile`]).
const PROFILED_CHECKPOINT_LAG: Duration = Duration::from_secs(1);

fn runner() -> Result<Runner> {
    Ok(Runner::new(
        Arc::new(MemoryStore::new()),
        Arc::new(HttpInvoker::new(HttpConfig::default())?),
    ))
}

/// `HttpInvoker` with the moment each call began and ended written down, so that a run
/// through the engine can be split into the time spent in calls and the time between them.
struct Stamped {
    inner: HttpInvoker,
    calls: Mutex<Vec<(Instant, Instant)>>,
}

#[async_trait::async_trait]
impl Invoker for Stamped {
    async fn invoke(&self, request: &Request, attempt: u32) -> Result<Response, Failure> {
        let began = Instant::now();
        let outcome = self.inner.invoke(request, attempt).await;
        let ended = Instant::now();
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((began, ended));
        outcome
    }
}

/// Where one run through the engine spent its time, in microseconds.
struct Split {
    /// From `Runner::run` to the first call: the record made and written, the first request.
    before_first: f64,
    /// From one call's answer to the next call, summed over the run: applying the answer,
    /// rendering the next request, putting it in flight.
    between: f64,
    /// From the last answer until `Runner::run` returns: the final checkpoint, the lease.
    after_last: f64,
    /// Inside the calls, summed.
    in_calls: f64,
}

impl Split {
    fn of(began: Instant, calls: &[(Instant, Instant)], ended: Instant) -> Option<Split> {
        let us =
            |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e6;
        let (first, last) = (calls.first()?, calls.last()?);
        Some(Split {
            before_first: us(began, first.0),
            between: calls.windows(2).map(|w| us(w[0].1, w[1].0)).sum(),
            after_last: us(last.1, ended),
            in_calls: calls.iter().map(|&(from, to)| us(from, to)).sum(),
        })
    }
}

/// The 10 calls of section 1 through the runtime's `HttpInvoker` alone, without the engine:
/// splits Orca's overhead into what the HTTP client adds and what the engine adds. Like the
/// engine (and the floor), it makes the body once per workflow; like the engine, it then
/// sends the same body's JSON with every call.
async fn through_the_invoker(
    invoker: &HttpInvoker,
    base: &str,
    steps: usize,
    i: u64,
) -> Result<()> {
    let body: CachedJson<serde_json::Value> = input(i).into();
    for s in 0..steps {
        let request = Request::Http(HttpRequest {
            method: "POST".into(),
            url: format!("{base}/s{s}"),
            headers: Vec::new(),
            body: Some(body.clone()),
            timeout_ms: 30_000,
            idempotency_key: format!("{i}:s{s}"),
            service: None,
        });
        invoker
            .invoke(&request, 1)
            .await
            .map_err(|failure| anyhow::anyhow!("mock service: {failure}"))?;
    }
    Ok(())
}

/// One kind of section 1's or section 3's runs, alone, for a profiler (`--profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profiled {
    /// Section 1's 10 calls.
    Sequential(SequentialWay),
    /// Section 3's fraud-score.
    Score(crate::wasm::ScoreWay),
}

/// How section 1's 10 calls are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequentialWay {
    Engine,
    Floor,
    Invoker,
    /// Through the engine with an invoker that answers at once: no I/O.
    Runner,
}

/// What `--profile` takes, for its error messages and `--help`.
pub(crate) const PROFILED: &str =
    "engine, floor, invoker, runner, wasm-engine, wasm-host or wasm-floor";

impl std::str::FromStr for Profiled {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        use crate::wasm::ScoreWay;
        match s {
            "engine" => Ok(Profiled::Sequential(SequentialWay::Engine)),
            "floor" => Ok(Profiled::Sequential(SequentialWay::Floor)),
            "invoker" => Ok(Profiled::Sequential(SequentialWay::Invoker)),
            "runner" => Ok(Profiled::Sequential(SequentialWay::Runner)),
            "wasm-engine" => Ok(Profiled::Score(ScoreWay::Engine)),
            "wasm-host" => Ok(Profiled::Score(ScoreWay::Host)),
            "wasm-floor" => Ok(Profiled::Score(ScoreWay::Floor)),
            other => anyhow::bail!("--profile takes {PROFILED}, not `{other}`"),
        }
    }
}

/// Section 1's 10 calls made `runs` times one way only, with no report: run under `perf` or
/// `valgrind --tool=callgrind`, the difference between two kinds is what Orca adds, counted
/// instruction by instruction instead of timed on a noisy machine.
pub(crate) async fn profile(way: SequentialWay, runs: u64, base: &str) -> Result<()> {
    let calls = Sequential::new(base)?;
    let at_once = AnswersAtOnce::runner();
    // Under valgrind a workflow takes about 50 times as long as in the timed runs, so with the
    // shipped lag it would write checkpoints that a timed run never reaches. A lag scaled to
    // match keeps the profile to the work the timed runs do.
    let engine = runner()?.with_checkpoint_lag(PROFILED_CHECKPOINT_LAG);
    let started = Instant::now();
    for i in 0..runs {
        match way {
            SequentialWay::Engine => calls.run_on(&engine, i).await?,
            SequentialWay::Floor => calls.by_hand(i).await?,
            SequentialWay::Invoker => calls.through_the_invoker(i).await?,
            SequentialWay::Runner => calls.run_on(&at_once, i).await?,
        }
    }
    let mean = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
    println!(
        "{way:?}: {runs} runs of {} calls, mean {mean:.1} µs per run",
        Sequential::STEPS
    );
    Ok(())
}

/// Section 1's three ways of making the same 10 calls.
struct Sequential {
    base: String,
    source: WorkflowSource,
    plan: Arc<Plan>,
    runner: Runner,
    bindings: Bindings,
    client: reqwest::Client,
    invoker: HttpInvoker,
    /// The same engine, calling through [`Stamped`].
    stamped: (Runner, Arc<Stamped>),
}

impl Sequential {
    const STEPS: usize = 10;

    fn new(base: &str) -> Result<Self> {
        let (source, plan) = common::workflow(
            "bench-seq10",
            common::http_steps("bench-seq10", Self::STEPS, false),
        )?;
        Ok(Sequential {
            base: base.to_string(),
            source,
            plan,
            runner: runner()?,
            bindings: common::bindings(base),
            client: reqwest::Client::new(),
            invoker: HttpInvoker::new(HttpConfig::default())?,
            stamped: {
                let stamped = Arc::new(Stamped {
                    inner: HttpInvoker::new(HttpConfig::default())?,
                    calls: Mutex::default(),
                });
                let runner = Runner::new(Arc::new(MemoryStore::new()), stamped.clone());
                (runner, stamped)
            },
        })
    }

    /// A run through the engine, split by the calls' stamps.
    async fn split(&self, i: u64) -> Result<Split> {
        let (runner, stamped) = &self.stamped;
        stamped
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        let began = Instant::now();
        self.run_on(runner, i).await?;
        let ended = Instant::now();
        let calls = stamped.calls.lock().unwrap_or_else(PoisonError::into_inner);
        Split::of(began, &calls, ended).ok_or_else(|| anyhow::anyhow!("the run made no calls"))
    }

    async fn through_the_engine(&self, i: u64) -> Result<()> {
        self.run_on(&self.runner, i).await
    }

    /// Workflow `i` to its end on `runner`, which must complete it.
    async fn run_on(&self, runner: &Runner, i: u64) -> Result<()> {
        let done = runner
            .run(
                self.source.clone(),
                &self.plan,
                input(i),
                self.bindings.clone(),
            )
            .await?;
        ensure!(
            done.status == Status::Completed,
            "the workflow ended {:?}",
            done.status
        );
        Ok(())
    }

    async fn by_hand(&self, i: u64) -> Result<()> {
        by_hand(&self.client, &self.base, Self::STEPS, i).await
    }

    async fn through_the_invoker(&self, i: u64) -> Result<()> {
        through_the_invoker(&self.invoker, &self.base, Self::STEPS, i).await
    }
}

/// What the mock service answers, as `HttpInvoker` hands it to the engine.
fn mock_answer() -> Response {
    let mut headers = HeadersBuilder::with_capacity(3, 80);
    headers.append("content-length", "11");
    headers.append("content-type", "application/json");
    headers.append("date", "Sun, 06 Dec 2026 05:00:00 GMT");
    Response {
        status: 200,
        headers: headers.build(),
        // As it came: JSON text, not yet parsed.
        body: Payload::from_body(br#"{"ok": true}"#.to_vec()),
    }
}

/// The engine's state machine alone, with its cache warm: `runs` executions of the workflow
/// started and applied answers until they finish, with no I/O, runner or store. The engine
/// does the same work between two calls of a real run, on caches that the kernel's network
/// stack, the HTTP client and the mock service have been through since; the difference
/// between the two is what touching that memory again costs. Microseconds per step.
fn state_machine_alone(plan: &Plan, bindings: &Bindings, runs: u64) -> Result<f64> {
    // Each step is handed a copy, as the invoker hands it a new one.
    let answer = mock_answer();
    let (mut steps, started) = (0u64, Instant::now());
    for i in 0..runs {
        let (mut execution, mut actions) =
            Execution::start(plan, format!("alone-{i}"), input(i), bindings.clone(), 0);
        loop {
            let next = actions.drain(..).find_map(|action| match action {
                Action::Invoke {
                    target, attempt, ..
                } => Some((target, attempt)),
                _ => None,
            });
            let Some((target, attempt)) = next else {
                break;
            };
            let response = answer.clone();
            let event = Event::Succeeded {
                target,
                attempt,
                response,
            };
            execution.apply_into(plan, event, 0, &mut actions);
            steps += 1;
        }
        ensure!(
            execution.status == Status::Completed,
            "the workflow ended {:?}",
            execution.status
        );
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / steps.max(1) as f64)
}

/// Answers every call at once with the same response, as the mock would.
struct AnswersAtOnce(Response);

impl AnswersAtOnce {
    /// The engine on the memory store, calling through this invoker.
    fn runner() -> Runner {
        let answers = Arc::new(AnswersAtOnce(mock_answer()));
        Runner::new(Arc::new(MemoryStore::new()), answers)
    }
}

#[async_trait::async_trait]
impl Invoker for AnswersAtOnce {
    async fn invoke(&self, _request: &Request, _attempt: u32) -> Result<Response, Failure> {
        Ok(self.0.clone())
    }
}

/// The whole engine (runner, store, state machine) with an invoker that answers at once, so
/// with no I/O and its cache warm: microseconds per workflow.
async fn runner_alone(calls: &Sequential, runs: u64) -> Result<f64> {
    let runner = AnswersAtOnce::runner();
    let started = Instant::now();
    for i in 0..runs {
        calls.run_on(&runner, i).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / runs as f64)
}

/// How long `run` took, if it succeeded.
async fn timed(run: impl Future<Output = Result<()>>) -> Result<Duration> {
    let started = Instant::now();
    run.await?;
    Ok(started.elapsed())
}

/// Engine and floor runs, alternating, from a task on the runtime's workers: where
/// `orca serve` drives executions. The main measurement awaits from the thread that blocks on
/// the runtime, as `orca run` does, so every call wakes a worker; here the drive task and the
/// calls' connection tasks share the workers, and anything that wakes the drive task while it
/// runs (a yield) sends it to another worker, which the main measurement cannot show.
async fn on_a_worker(calls: Arc<Sequential>, window: Duration) -> Result<(Samples, Samples)> {
    tokio::spawn(async move {
        let (mut orca, mut floor) = (Samples::default(), Samples::default());
        let deadline = Instant::now() + window;
        let mut i = 0u64;
        while Instant::now() < deadline || orca.len() < 100 {
            let took = timed(calls.through_the_engine(i)).await?;
            let floor_took = timed(calls.by_hand(i)).await?;
            if i >= WARMUP {
                orca.push(took);
                floor.push(floor_took);
            }
            i += 1;
        }
        Ok((orca, floor))
    })
    .await?
}

pub(crate) async fn sequential(settings: &Settings, base: &str, report: &mut Report) -> Result<()> {
    const STEPS: usize = Sequential::STEPS;
    let calls = Arc::new(Sequential::new(base)?);
    let (mut orca, mut floor, mut alone) =
        (Samples::default(), Samples::default(), Samples::default());
    let (mut before_first, mut between, mut after_last, mut in_calls) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let deadline = Instant::now() + settings.window * 2;
    let mut i = 0u64;
    while Instant::now() < deadline || orca.len() < 100 {
        let took = timed(calls.through_the_engine(i)).await?;
        let floor_took = timed(calls.by_hand(i)).await?;
        let alone_took = timed(calls.through_the_invoker(i)).await?;
        let split = calls.split(i).await?;
        if i >= WARMUP {
            orca.push(took);
            floor.push(floor_took);
            alone.push(alone_took);
            before_first.push_us(split.before_first);
            between.push_us(split.between);
            after_last.push_us(split.after_last);
            in_calls.push_us(split.in_calls);
        }
        i += 1;
    }
    let (mut worker_orca, mut worker_floor) = on_a_worker(calls.clone(), settings.window).await?;
    let alone_per_step = state_machine_alone(&calls.plan, &calls.bindings, 5_000)?;
    let runner_per_workflow = runner_alone(&calls, 5_000).await?;
    let ratio = orca.p50() / floor.p50();
    let per_step = (orca.p50() - floor.p50()) / STEPS as f64;
    report.rows.push(
        Row::new("1", "10 sequential HTTP steps, memory store: p50")
            .orca(fmt_us(orca.p50()))
            .floor(fmt_us(floor.p50()))
            .ratio(ratio)
            .target("<= 1.05x", ratio <= 1.05),
    );
    report.rows.push(
        Row::new("1", "  p99")
            .orca(fmt_us(orca.p99()))
            .floor(fmt_us(floor.p99()))
            .ratio(orca.p99() / floor.p99()),
    );
    report
        .rows
        .push(Row::new("1", "  engine overhead per step (p50)").orca(fmt_us(per_step)));
    report.rows.push(
        Row::new("1", "  of which HttpInvoker alone, the same 10 calls: p50")
            .orca(fmt_us(alone.p50()))
            .floor(fmt_us(floor.p50()))
            .ratio(alone.p50() / floor.p50()),
    );
    // Medians of each part; they need not add up to the median of the whole.
    let (alone_calls, steps) = (alone.p50(), STEPS as f64);
    report.rows.push(
        Row::new(
            "1",
            "  where the engine's time goes (p50 per workflow): before the first call",
        )
        .orca(fmt_us(before_first.p50())),
    );
    report.rows.push(
        Row::new("1", "    between an answer and the next call, per step")
            .orca(fmt_us(between.p50() / (steps - 1.0))),
    );
    report.rows.push(
        Row::new("1", "      of which the state machine, run alone, warm")
            .orca(fmt_us(alone_per_step)),
    );
    report
        .rows
        .push(Row::new("1", "    after the last answer").orca(fmt_us(after_last.p50())));
    report.rows.push(
        Row::new("1", "    in the 10 calls, over HttpInvoker alone")
            .orca(fmt_us(in_calls.p50() - alone_calls)),
    );
    report.rows.push(
        Row::new(
            "1",
            "  the engine with an invoker that answers at once (no I/O, warm): per workflow",
        )
        .orca(fmt_us(runner_per_workflow)),
    );
    report.rows.push(
        Row::new(
            "1",
            "  the same, driven from a task on a worker (as `orca serve`): p50",
        )
        .orca(fmt_us(worker_orca.p50()))
        .floor(fmt_us(worker_floor.p50()))
        .ratio(worker_orca.p50() / worker_floor.p50()),
    );
    report.rows.push(
        Row::new("1", "    engine overhead per step (p50)").orca(fmt_us(
            (worker_orca.p50() - worker_floor.p50()) / STEPS as f64,
        )),
    );
    report.notes.push(format!(
        "1. {} workflows of each kind after {WARMUP} warm-up runs, engine, floor and \
         HttpInvoker alone (the same requests, without the engine) alternating run by run. \
         A fourth run of each round goes through the engine with an invoker that stamps when \
         each call begins and ends, which splits the engine's time into what comes before, \
         between and after the calls. These runs await from the thread that blocks on the \
         runtime, as `orca run` does; then {} more of engine and floor alternate on a task \
         spawned onto the runtime's workers, where `orca serve` drives executions. Last, with \
         no I/O and so with warm caches, 5,000 workflows through the state machine alone \
         (answers applied as they would arrive) and 5,000 through the engine with an invoker \
         that answers at once: set against the timed runs, they show how much of the engine's \
         time is its work and how much is touching memory that the network stack, the HTTP \
         client and the mock service have been through since.",
        orca.len(),
        worker_orca.len()
    ));
    if ratio > 1.05 {
        report.missed.push(format!(
            "Engine overhead: p50 ratio {ratio:.2}x (target <= 1.05x): {} per workflow vs {} by hand, {} per step.",
            fmt_us(orca.p50()),
            fmt_us(floor.p50()),
            fmt_us(per_step)
        ));
    }
    Ok(())
}

pub(crate) async fn fan_out(settings: &Settings, base: &str, report: &mut Report) -> Result<()> {
    const BRANCHES: usize = 100;
    let (source, plan) = common::workflow(
        "bench-fan100",
        common::http_steps("bench-fan100", BRANCHES, true),
    )?;
    let runner = runner()?;
    let bindings = common::bindings(base);
    let client = reqwest::Client::new();
    let (mut orca, mut floor, mut one) =
        (Samples::default(), Samples::default(), Samples::default());
    let deadline = Instant::now() + settings.window * 2;
    let mut i = 0u64;
    while Instant::now() < deadline || orca.len() < 30 {
        let t = Instant::now();
        let done = runner
            .run(source.clone(), &plan, input(i), bindings.clone())
            .await?;
        let took = t.elapsed();
        ensure!(
            done.status == Status::Completed,
            "the workflow ended {:?}",
            done.status
        );

        let t = Instant::now();
        let mut set = JoinSet::new();
        for s in 0..BRANCHES {
            let (client, base) = (client.clone(), base.to_string());
            set.spawn(async move { post(&client, &base, s, i, &input(i)).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        let floor_took = t.elapsed();

        let t = Instant::now();
        post(&client, base, 0, i, &input(i)).await?;
        let one_took = t.elapsed();
        if i >= 5 {
            orca.push(took);
            floor.push(floor_took);
            one.push(one_took);
        }
        i += 1;
    }
    report.rows.push(
        Row::new("2", "100 parallel HTTP steps: wall p50")
            .orca(fmt_us(orca.p50()))
            .floor(fmt_us(floor.p50()))
            .ratio(orca.p50() / floor.p50()),
    );
    report.rows.push(
        Row::new("2", "  one call p50 (fan-out / one call)")
            .orca(format!("{:.1}x", orca.p50() / one.p50()))
            .floor(fmt_us(one.p50())),
    );
    report.rows.push(
        Row::new("2", "  scheduler overhead per branch (p50)")
            .orca(fmt_us((orca.p50() - floor.p50()) / BRANCHES as f64)),
    );
    report.notes.push(format!(
        "2. {} fan-outs; the floor sends the same 100 POSTs as 100 tokio tasks on one reqwest client. \
         Overhead per branch = (orca p50 - floor p50) / 100.",
        orca.len()
    ));
    Ok(())
}
