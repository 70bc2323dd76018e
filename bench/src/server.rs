//! Section 7: the same workflow as section 4, started through `orca serve`'s API and waited
//! for (`POST /v1/executions?wait=30s`) over a real loopback socket by a keep-alive HTTP/1.1
//! client, beside the same store's in-process figures measured in the same run, which are
//! its floor: what the server adds is the HTTP request, the tenant's token, the cached plan
//! and the wait for the completion.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::metrics::Metrics;
use orca_runtime::runner::Runner;
use orca_runtime::server::{self, App, ServerConfig};
use orca_runtime::store::tenants::NewDefinition;
use orca_runtime::store::{self, StoreConfig};
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost};

use crate::Report;
use crate::common::{self, Settings, input};
use crate::durable::{latency, postgres, redis, runs, throughput};
use crate::stats::{Row, fmt_rate, fmt_us};

/// The stores this section measures, as `--stores` names them: those `orca serve` runs on
/// with several nodes in mind, and the embedded one.
pub(crate) const STORES: [&str; 3] = ["sqlite", "postgresql", "redis+postgresql"];

const WORKFLOW: &str = "bench-3posts";
const TOKEN: &str = "bench-token";
/// Targets, as ratios to the same store in process.
const LATENCY_AT_MOST: f64 = 1.3;
const THROUGHPUT_AT_LEAST: f64 = 0.7;

pub(crate) async fn through_server(
    settings: &Settings,
    base: &str,
    dir: &std::path::Path,
    report: &mut Report,
) -> Result<()> {
    let yaml = common::http_steps(WORKFLOW, 3, false);
    let (source, plan) = common::workflow(WORKFLOW, yaml.clone())?;
    let bindings = common::bindings(base);
    let tag = &settings.tag;
    let configs = [
        StoreConfig::Sqlite(dir.join("server.db")),
        StoreConfig::Postgres(postgres(settings, &format!("{tag}_s"))),
        StoreConfig::Redis {
            redis: redis(settings, "s"),
            persistence: Some(postgres(settings, &format!("{tag}_sl"))),
        },
    ];
    for (name, config) in STORES.into_iter().zip(configs) {
        if let Some(only) = &settings.stores
            && !only.iter().any(|s| s == name)
        {
            continue;
        }
        let (app, runner) = match app(&config, dir).await {
            Ok(made) => made,
            Err(e) => {
                report
                    .rows
                    .push(Row::new("7", &format!("{name}: could not open")).orca(format!("{e:#}")));
                continue;
            }
        };
        app.tenants.create_tenant("bench", 0).await?;
        app.tenants
            .add_token("bench", &server::sha256_hex(TOKEN))
            .await?;
        app.tenants
            .apply(
                "bench",
                vec![NewDefinition {
                    name: WORKFLOW.into(),
                    kind: "SequentialOrchestration".into(),
                    yaml: yaml.clone(),
                }],
                0,
            )
            .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url: reqwest::Url =
            format!("http://{}/v1/executions?wait=30s", listener.local_addr()?).parse()?;
        let serving = tokio::spawn(server::serve(
            app.clone(),
            listener,
            None,
            Duration::from_secs(1),
            std::future::pending(),
        ));
        let client = reqwest::Client::builder()
            .http1_only()
            .pool_max_idle_per_host(256)
            .build()?;
        let start = {
            let (client, url, base) = (client.clone(), url.clone(), base.to_string());
            move |i: u64| {
                let (client, url, base) = (client.clone(), url.clone(), base.clone());
                async move { start_and_wait(&client, &url, &base, i).await }
            }
        };
        let in_process = runs(runner, &source, &plan, &bindings);
        // Floor and server alternate window by window would be fairer still; measured one
        // after the other, each right before the other, on the same open store.
        let mut floor1 = latency(settings, || in_process(0)).await?;
        let mut served1 = latency(settings, || start(0)).await?;
        let floor64 = throughput(settings, 64, in_process.clone()).await?;
        let served64 = throughput(settings, 64, start.clone()).await?;
        serving.abort();

        let ratio = served1.p50() / floor1.p50();
        let met = ratio <= LATENCY_AT_MOST;
        report.rows.push(
            Row::new("7", &format!("{name}: through the server, c=1 p50 / p99"))
                .orca(format!(
                    "{} / {}",
                    fmt_us(served1.p50()),
                    fmt_us(served1.p99())
                ))
                .floor(format!(
                    "{} / {}",
                    fmt_us(floor1.p50()),
                    fmt_us(floor1.p99())
                ))
                .ratio(ratio)
                .target(format!("<= {LATENCY_AT_MOST}x in process"), met),
        );
        if !met {
            report.missed.push(format!(
                "{name}: through the server, p50 at concurrency 1 is {} against {} in process \
                 ({ratio:.2}x; target <= {LATENCY_AT_MOST}x).",
                fmt_us(served1.p50()),
                fmt_us(floor1.p50())
            ));
        }
        let ratio = served64.median() / floor64.median();
        let met = ratio >= THROUGHPUT_AT_LEAST;
        report.rows.push(
            Row::new("7", &format!("{name}: through the server, c=64 throughput"))
                .orca(served64.describe())
                .floor(floor64.describe())
                .ratio(ratio)
                .target(format!(">= {THROUGHPUT_AT_LEAST}x in process"), met),
        );
        if !met {
            report.missed.push(format!(
                "{name}: through the server, {} workflows at concurrency 64 against {} in \
                 process ({ratio:.2}x; target >= {THROUGHPUT_AT_LEAST}x).",
                fmt_rate(served64.median()),
                fmt_rate(floor64.median())
            ));
        }
        report.notes.push(format!(
            "7. {name}: {} requests at c=1 through the server, {} runs in process.",
            served1.len(),
            floor1.len()
        ));
    }
    Ok(())
}

/// The server of `orca serve` on `config` (executions, tenants and component state in the
/// same backend), and its runner for the in-process floor.
async fn app(config: &StoreConfig, dir: &std::path::Path) -> Result<(App, Runner)> {
    let tenants = store::open_tenants(config).await?;
    let (executions, kv) = store::open_with_state(config).await?;
    let http = Arc::new(HttpInvoker::new(HttpConfig::default())?);
    let wasm = Arc::new(WasmHost::new(
        ComponentBlobs::new(dir.join("components")),
        HostServices {
            http: http.clone(),
            kv,
        },
        None,
    )?);
    let runner = Runner::new(executions.clone(), http);
    let config = ServerConfig {
        max_running_per_tenant: 10_000,
        ..ServerConfig::default()
    };
    let app = App::new(
        config,
        tenants,
        executions,
        runner.clone(),
        wasm,
        Metrics::new(),
    );
    Ok((app, runner))
}

/// One start, waited for, as a load generator sends it: the body made without a JSON
/// library, and of the answer only the status read (a client's own work on the execution is
/// its cost, not the server's, and here it would share the server's two cores).
async fn start_and_wait(
    client: &reqwest::Client,
    url: &reqwest::Url,
    base: &str,
    i: u64,
) -> Result<()> {
    let body = format!(
        r#"{{"workflow":"{WORKFLOW}","input":{},"services":{{"svc":"{base}"}}}}"#,
        input(i)
    );
    let response = client
        .post(url.clone())
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("orca serve")?;
    let status = response.status();
    let body = response.bytes().await.context("orca serve's answer")?;
    let ended: Option<Ended> = serde_json::from_slice(&body).ok();
    ensure!(
        status.as_u16() == 200 && ended.is_some_and(|e| e.status == "completed"),
        "the start answered {status}: {}",
        String::from_utf8_lossy(&body)
    );
    Ok(())
}

/// All a load generator reads of the answer.
#[derive(serde::Deserialize)]
struct Ended {
    status: String,
}
