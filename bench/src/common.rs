//! What several measurements share: the mock service, workflow documents, settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use axum::{Json, Router};
use orca_runtime::definition::{DefinitionSet, Source};
use orca_runtime::engine::Bindings;
use orca_runtime::plan::{self, Plan};
use orca_runtime::runner::WorkflowSource;
use serde_json::{Value, json};

/// How long each measurement runs, and how big the memory and recovery runs are.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) quick: bool,
    /// Time box of one latency measurement, and of each throughput window.
    pub(crate) window: Duration,
    /// How many windows a throughput is measured over (see `durable::Rates`).
    pub(crate) rate_windows: usize,
    pub(crate) parked: usize,
    pub(crate) recovery: usize,
    pub(crate) postgres_url: String,
    pub(crate) redis_url: String,
    /// Unique per run: PostgreSQL schemas and Redis key prefixes are named after it.
    pub(crate) tag: String,
    /// Section 4 measures only these stores (`None`: all five).
    pub(crate) stores: Option<Vec<String>>,
}

impl Settings {
    pub(crate) fn new(quick: bool) -> Self {
        Settings {
            quick,
            window: Duration::from_millis(if quick { 1_000 } else { 4_000 }),
            rate_windows: if quick { 1 } else { 3 },
            parked: if quick { 10_000 } else { 100_000 },
            recovery: if quick { 1_000 } else { 10_000 },
            postgres_url: std::env::var("ORCA_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5432/test".into()),
            redis_url: std::env::var("ORCA_BENCH_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            tag: format!("orca_bench_{}", std::process::id()),
            stores: None,
        }
    }
}

/// An in-process HTTP service on 127.0.0.1:0 that answers `{"ok": true}` to everything but
/// `/risk`, the risk API of the `fraud-score` guest, which answers `{"risk": 0.2}`.
pub(crate) async fn mock_service() -> Result<String> {
    let app = Router::new()
        .route(
            "/risk",
            axum::routing::post(|| async { Json(json!({"risk": 0.2})) }),
        )
        .fallback(|| async { Json(json!({"ok": true})) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// A compiled workflow and the source stored with each execution.
pub(crate) fn workflow(name: &str, yaml: String) -> Result<(WorkflowSource, Arc<Plan>)> {
    let (source, plan, _) = definitions(name, yaml)?;
    Ok((source, Arc::new(plan)))
}

/// [`workflow`], with the loaded definitions, for binding the components they declare.
pub(crate) fn definitions(
    name: &str,
    yaml: String,
) -> Result<(WorkflowSource, Plan, DefinitionSet)> {
    let sources = vec![Source {
        name: format!("{name}.yaml"),
        text: yaml,
    }];
    let set = DefinitionSet::load(sources.clone()).map_err(|e| anyhow!("{e}"))?;
    let plan = plan::compile(&set, None).map_err(|e| anyhow!("{e}"))?;
    let source = WorkflowSource {
        name: plan.workflow_id.clone(),
        sources: sources.into(),
    };
    Ok((source, plan, set))
}

/// `steps` POST steps to service `svc` (`/s0`, `/s1`, ...), all `parallel: true` if asked.
pub(crate) fn http_steps(name: &str, steps: usize, parallel: bool) -> String {
    let mut yaml = format!(
        "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: {name}\nspec:\n  steps:\n"
    );
    for i in 0..steps {
        yaml.push_str(&format!(
            "    - name: s{i}\n      api: svc\n      endpoint: /s{i}\n      method: POST\n"
        ));
        if parallel {
            yaml.push_str("      parallel: true\n");
        }
    }
    yaml
}

pub(crate) fn bindings(base: &str) -> Bindings {
    Bindings {
        tenant: "default".into(),
        services: BTreeMap::from([("svc".to_string(), base.to_string())]),
        components: BTreeMap::new(),
    }
}

/// The workflow input, also the body every step sends (steps default to the input).
pub(crate) fn input(i: u64) -> Value {
    json!({"order_id": format!("o-{i}"), "amount": 1500})
}

/// The floor: `steps` POSTs sent one after another by hand, with the same body and an
/// `Idempotency-Key`, each response read as JSON.
pub(crate) async fn by_hand(
    client: &reqwest::Client,
    base: &str,
    steps: usize,
    i: u64,
) -> Result<()> {
    let body = input(i);
    for s in 0..steps {
        post(client, base, s, i, &body).await?;
    }
    Ok(())
}

pub(crate) async fn post(
    client: &reqwest::Client,
    base: &str,
    step: usize,
    i: u64,
    body: &Value,
) -> Result<Value> {
    client
        .post(format!("{base}/s{step}"))
        .header("idempotency-key", format!("{i}:s{step}"))
        .json(body)
        .send()
        .await
        .context("mock service")?
        .error_for_status()?
        .json::<Value>()
        .await
        .context("mock service body")
}

/// Resident memory of this process in bytes (`VmRSS` of /proc/self/status).
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
