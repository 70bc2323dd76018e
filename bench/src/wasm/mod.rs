//! Section 3: a Wasm step. Two components, each instantiated, called and dropped once per
//! call, alternating in blocks with plain wasmtime doing the same (the floor, in
//! [`floor`]):
//!
//! - `fraud-score`, the step the issue names: a one-step workflow through the engine
//!   (`Runner` on the memory store), the guest calling the risk API (the in-process mock)
//!   through the host; also through `WasmHost::invoke` alone, which splits the engine's
//!   share from the host's. The target is on this one.
//! - `high-value`, a pure condition (`input.amount > threshold`): the host's own cost with
//!   no HTTP call to hide it.

mod floor;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, ensure};
use orca_runtime::component::{ComponentRequest, Export, Grants, Limits, Phase};
use orca_runtime::engine::{Bindings, Status};
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Dispatcher, Invoker, Request};
use orca_runtime::plan::Plan;
use orca_runtime::runner::{Runner, WorkflowSource};
use orca_runtime::store::MemoryStore;
use orca_runtime::store::kv::MemoryKv;
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost, bind_components};
use serde_json::{Value, json};

use self::floor::RawFloor;
use crate::Report;
use crate::common::{Settings, definitions, mock_service};
use crate::stats::{Row, Samples, fmt_rate, fmt_us};

/// Calls of each kind per block: long enough to amortize switching, short enough that drift
/// (other load, CPU frequency) hits every kind alike.
const BLOCK: usize = 200;
const TARGET: f64 = 1.5;

fn guest_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var("ORCA_GUEST_DIR").unwrap_or_else(|_| {
        let target =
            std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "/var/tmp/orca-target".into());
        format!("{target}/guests")
    });
    std::path::Path::new(&dir).join(format!("{name}.wasm"))
}

fn guest_bytes(name: &str) -> Result<Vec<u8>> {
    let path = guest_path(name);
    std::fs::read(&path)
        .with_context(|| format!("{} (build it with `make guests`)", path.display()))
}

/// One way of making the call, as a boxed future so that several can take turns.
type Call<'a> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> + Send + Sync + 'a>;

/// Runs every call in `calls` once to warm up, then in blocks of [`BLOCK`], one kind after
/// the other, for `window`; one sample set per kind, and the mean of each in seconds.
async fn alternate<const N: usize>(
    window: Duration,
    calls: &[Call<'_>; N],
) -> Result<[(Samples, f64); N]> {
    for _ in 0..BLOCK {
        for call in calls {
            call().await?;
        }
    }
    let mut out: [(Samples, f64); N] = std::array::from_fn(|_| Default::default());
    let deadline = Instant::now() + window;
    while Instant::now() < deadline {
        for (call, (samples, total)) in calls.iter().zip(&mut out) {
            for _ in 0..BLOCK {
                let t = Instant::now();
                call().await?;
                let d = t.elapsed();
                *total += d.as_secs_f64();
                samples.push(d);
            }
        }
    }
    for (samples, total) in &mut out {
        *total /= samples.len().max(1) as f64;
    }
    Ok(out)
}

/// One kind of call's median against the floor's.
fn p50_row(metric: &str, orca: &mut Samples, raw: &mut Samples) -> Row {
    Row::new("3", metric)
        .orca(fmt_us(orca.p50()))
        .floor(fmt_us(raw.p50()))
        .ratio(orca.p50() / raw.p50())
}

/// The rows every kind of call reports against its floor: p50, p99 and calls a second.
fn call_rows(
    metric: &str,
    (orca, orca_mean): &mut (Samples, f64),
    (raw, raw_mean): &mut (Samples, f64),
) -> [Row; 3] {
    [
        p50_row(metric, orca, raw),
        Row::new("3", "  p99")
            .orca(fmt_us(orca.p99()))
            .floor(fmt_us(raw.p99()))
            .ratio(orca.p99() / raw.p99()),
        Row::new("3", "  invocations/s/core (1 / mean)")
            .orca(fmt_rate(1.0 / *orca_mean))
            .floor(fmt_rate(1.0 / *raw_mean))
            .ratio(*orca_mean / *raw_mean),
    ]
}

/// The host as `orca` builds it: HTTP steps and guests' calls through one `HttpInvoker`.
fn wasm_host() -> Result<(Arc<WasmHost>, Arc<HttpInvoker>, tempfile::TempDir)> {
    let blobs_dir = tempfile::tempdir()?;
    let http = Arc::new(HttpInvoker::new(HttpConfig::default())?);
    let services = HostServices {
        http: http.clone(),
        kv: Arc::new(MemoryKv::new()),
    };
    let host = WasmHost::new(ComponentBlobs::new(blobs_dir.path()), services, None)?;
    Ok((Arc::new(host), http, blobs_dir))
}

/// How section 3's fraud-score is run, for a profiler (`--profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScoreWay {
    /// A one-step workflow through the engine.
    Engine,
    /// `WasmHost::invoke` alone.
    Host,
    /// Plain wasmtime.
    Floor,
}

/// Section 3's fraud-score run `runs` times one way only (see [`crate::engine::profile`]).
pub(crate) async fn profile(way: ScoreWay, runs: u64) -> Result<()> {
    let (host, http, _blobs) = wasm_host()?;
    let calls = ScoreCalls::new(&host, http).await?;
    let [engine, alone, raw] = calls.kinds();
    let call = match way {
        ScoreWay::Engine => engine,
        ScoreWay::Host => alone,
        ScoreWay::Floor => raw,
    };
    let started = Instant::now();
    for _ in 0..runs {
        call().await?;
    }
    let mean = started.elapsed().as_secs_f64() * 1e6 / runs.max(1) as f64;
    println!("{way:?}: {runs} runs of fraud-score, mean {mean:.1} µs per run");
    Ok(())
}

pub(crate) async fn wasm_step(settings: &Settings, report: &mut Report) -> Result<()> {
    let (host, http, _blobs) = wasm_host()?;
    let window = settings.window * 2;
    fraud_score(&host, http, window, report).await?;
    high_value(&host, window, report).await
}

/// A one-step workflow whose step is `fraud-score`, for the engine's runs.
fn score_workflow(guest: &std::path::Path, risk_url: &str) -> String {
    format!(
        "apiVersion: orca.dev/v1\nkind: Component\nmetadata:\n  name: fraud-score\nspec:\n  \
         source: {}\n  grants:\n    http: [\"127.0.0.1:*\"]\n---\napiVersion: orca.dev/v1\n\
         kind: SequentialOrchestration\nmetadata:\n  name: bench-wasm-step\nspec:\n  steps:\n    \
         - name: score\n      component: fraud-score\n      config:\n        risk_url: \"{risk_url}\"\n",
        guest.display()
    )
}

/// What fraud-score answers for the mock's risk of 0.2 and an amount of 1500.
fn check_score(result: &Value) -> Result<()> {
    ensure!(
        result["score"] == json!(19) && result["decision"] == json!("approve"),
        "fraud-score said {result}"
    );
    Ok(())
}

/// Section 3's three ways of running `fraud-score` once.
struct ScoreCalls {
    runner: Runner,
    source: WorkflowSource,
    plan: Plan,
    bindings: Bindings,
    input: Value,
    host: Arc<WasmHost>,
    /// What the engine hands the host for the workflow's step.
    request: Request,
    floor: RawFloor,
    context: floor::Context,
}

impl ScoreCalls {
    async fn new(host: &Arc<WasmHost>, http: Arc<HttpInvoker>) -> Result<Self> {
        let base = mock_service().await?;
        let risk_url = format!("{base}/risk");
        let input = json!({"order_id": "o-1", "amount": 1500});
        let config = json!({"risk_url": risk_url});

        // Orca: the engine, as `orca run` wires it.
        let yaml = score_workflow(&guest_path("fraud-score"), &risk_url);
        let (source, plan, set) = definitions("bench-wasm-step", yaml)?;
        let bindings = Bindings {
            tenant: "default".into(),
            services: Default::default(),
            components: bind_components(&set, host).map_err(|e| anyhow!("{e}"))?,
        };
        let dispatcher = Dispatcher {
            http,
            component: Some(host.clone()),
        };
        let runner = Runner::new(Arc::new(MemoryStore::new()), Arc::new(dispatcher));

        let request = Request::Component(Box::new(ComponentRequest {
            component: "fraud-score".into(),
            digest: bindings.components["fraud-score"].clone(),
            export: Export::Step,
            phase: Phase::Run,
            tenant: "default".into(),
            execution_id: "0190aaaa-bench".into(),
            workflow: "bench-wasm-step".into(),
            step: "score".into(),
            input: input.clone().into(),
            results: Default::default(),
            config: config.clone(),
            grants: Grants {
                http: vec!["127.0.0.1:*".into()],
                ..Grants::default()
            },
            limits: Limits::default(),
        }));
        let floor = RawFloor::new(&guest_bytes("fraud-score")?)?;
        let context = floor::context("score", &input.to_string(), &config.to_string());
        let calls = ScoreCalls {
            runner,
            source,
            plan,
            bindings,
            input,
            host: host.clone(),
            request,
            floor,
            context,
        };
        let ran = calls.run().await?;
        let output = ran
            .output
            .as_deref()
            .context("the workflow has no output")?;
        check_score(output.get("score").context("no `score` in the output")?)?;
        Ok(calls)
    }

    async fn run(&self) -> Result<orca_runtime::engine::Execution> {
        let done = self
            .runner
            .run(
                self.source.clone(),
                &self.plan,
                self.input.clone(),
                self.bindings.clone(),
            )
            .await?;
        ensure!(done.status == Status::Completed, "ended {:?}", done.status);
        Ok(done)
    }

    async fn through_the_engine(&self) -> Result<()> {
        self.run().await.map(drop)
    }

    async fn through_the_host(&self) -> Result<()> {
        let response = self
            .host
            .invoke(&self.request, 1)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        check_score(&response.body)
    }

    async fn by_hand(&self) -> Result<()> {
        let result: Value = serde_json::from_str(&self.floor.run(&self.context).await?)?;
        check_score(&result)
    }

    /// The three ways, in the order of [`alternate`]'s results: engine, host alone, floor.
    fn kinds(&self) -> [Call<'_>; 3] {
        [
            Box::new(|| Box::pin(self.through_the_engine())),
            Box::new(|| Box::pin(self.through_the_host())),
            Box::new(|| Box::pin(self.by_hand())),
        ]
    }
}

/// Engine, host alone and floor, alternating, on a task spawned onto the runtime's workers, where
/// `orca serve` drives executions (the main measurement awaits from the thread that blocks
/// on the runtime, as `orca run` does).
async fn on_a_worker(calls: Arc<ScoreCalls>, window: Duration) -> Result<[(Samples, f64); 3]> {
    tokio::spawn(async move { alternate(window, &calls.kinds()).await }).await?
}

async fn fraud_score(
    host: &Arc<WasmHost>,
    http: Arc<HttpInvoker>,
    window: Duration,
    report: &mut Report,
) -> Result<()> {
    let calls = Arc::new(ScoreCalls::new(host, http).await?);
    let [mut engine, mut alone, mut raw] = alternate(window, &calls.kinds()).await?;
    let [
        (mut worker_engine, _),
        (mut worker_alone, _),
        (mut worker_raw, _),
    ] = on_a_worker(calls, window / 2).await?;

    let ratio = engine.0.p50() / raw.0.p50();
    let [p50, p99, rate] = call_rows(
        "Wasm step (fraud-score, 1 HTTP call) through the engine: p50",
        &mut engine,
        &mut raw,
    );
    report
        .rows
        .extend([p50.target("<= 1.5x", ratio <= TARGET), p99, rate]);
    let (raw, alone) = (&mut raw.0, &mut alone.0);
    report.rows.extend([
        p50_row("  of which WasmHost::invoke alone: p50", alone, raw),
        p50_row(
            "  the same, driven from a task on a worker (as `orca serve`): p50",
            &mut worker_engine,
            &mut worker_raw,
        ),
        p50_row(
            "    of which WasmHost::invoke alone: p50",
            &mut worker_alone,
            &mut worker_raw,
        ),
    ]);
    report.notes.push(format!(
        "3. `fraud-score.wasm` (the step the issue names): it parses the order, POSTs it to the \
         risk API (the in-process mock, answering `{{\"risk\": 0.2}}`) through the host's \
         `http.send`, and scores it. {} calls of each kind, sequential on one task awaited \
         from the thread that blocks on the runtime (as `orca run` does), in alternating \
         blocks of {BLOCK}; then {} more of each from a task on a worker. Orca: a \
         one-step workflow run by `Runner::run` on the memory store with the invoker `orca \
         run` builds (HTTP and Wasm behind one dispatcher), so each call also makes the \
         execution record, its checkpoint and its output; the guest's call goes through \
         `HttpInvoker` after the grant check, under the default limits (epoch deadline, fuel \
         accounting, memory limiter, WASI context). `WasmHost::invoke alone` is the same \
         component call without the engine. Floor: wasmtime with the pooling allocator, \
         `InstancePre`, a fresh `Store` per call, `http.send` answered by a plain \
         `reqwest::Client` (no grant check, no deadline), `log.log` dropping the line, every \
         other import a trap, no fuel, no epoch, typed `bindgen!` bindings.",
        raw.len(),
        worker_raw.len()
    ));
    if ratio > TARGET {
        report.missed.push(format!(
            "Wasm step (fraud-score through the engine): p50 {} vs {} raw = {ratio:.2}x \
             (target <= 1.5x).",
            fmt_us(engine.0.p50()),
            fmt_us(raw.p50())
        ));
    }
    Ok(())
}

async fn high_value(host: &WasmHost, window: Duration, report: &mut Report) -> Result<()> {
    let bytes = guest_bytes("high-value")?;
    let request = Request::Component(Box::new(ComponentRequest {
        component: "high-value".into(),
        digest: host.blobs().put(&bytes)?,
        export: Export::Condition,
        phase: Phase::Run,
        tenant: "default".into(),
        execution_id: "0190aaaa-bench".into(),
        workflow: "bench".into(),
        step: "check".into(),
        input: json!({"amount": 1500}).into(),
        results: Default::default(),
        config: json!({}),
        grants: Grants::default(),
        limits: Limits::default(),
    }));
    let through_the_host = async || -> Result<()> {
        let r = host.invoke(&request, 1).await.map_err(|e| anyhow!("{e}"))?;
        ensure!(r.body == json!(true), "high-value said {}", r.body);
        Ok(())
    };
    let floor = RawFloor::new(&bytes)?;
    let context = floor::context("check", r#"{"amount":1500}"#, "{}");
    let by_hand = async || -> Result<()> {
        ensure!(floor.evaluate(&context).await?, "the raw call said false");
        Ok(())
    };
    let calls: [Call<'_>; 2] = [
        Box::new(|| Box::pin(through_the_host())),
        Box::new(|| Box::pin(by_hand())),
    ];
    let [mut orca, mut raw] = alternate(window, &calls).await?;
    report.rows.extend(call_rows(
        "Wasm condition (high-value, no I/O), WasmHost::invoke: p50",
        &mut orca,
        &mut raw,
    ));
    report.notes.push(format!(
        "3. `high-value.wasm` (a pure condition: `input.amount > threshold`): what the host \
         adds to a call when there is no I/O to hide it. {} calls each, as above. Orca: \
         `WasmHost::invoke` with default limits. Floor: as above (this guest calls no import).",
        raw.0.len()
    ));
    Ok(())
}
