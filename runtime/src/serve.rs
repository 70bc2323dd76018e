//! Assembling the host for a command (HTTP client, Wasm host, runner, metrics) and serving
//! the API (`orca serve`).

use std::sync::Arc;

use anyhow::Context;
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Dispatcher, Invoker};
use orca_runtime::metrics::{Metered, Metrics};
use orca_runtime::progress::{Both, StderrProgress};
use orca_runtime::runner::{LeaseSettings, Runner};
use orca_runtime::server;
use orca_runtime::store::kv::KvStore;
use orca_runtime::store::{self, ExecutionStore, StoreConfig};
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost};

use crate::cli::StoreArgs;
use crate::{Failure, data_dir, store_failure};

/// The Wasm host and the runner around it, for one CLI command.
pub(crate) struct Host {
    pub(crate) runner: Runner,
    pub(crate) wasm: Arc<WasmHost>,
    pub(crate) metrics: Metrics,
}

/// `stderr_progress`: print each step's progress (the CLI's runs), besides counting it.
pub(crate) fn host(
    (store, kv): (Arc<dyn ExecutionStore>, Arc<dyn KvStore>),
    max_body_bytes: usize,
    stderr_progress: bool,
) -> Result<Host, Failure> {
    let http: Arc<dyn Invoker> = Arc::new(
        HttpInvoker::new(HttpConfig {
            max_body_bytes,
            ..HttpConfig::default()
        })
        .context("creating the HTTP client")?,
    );
    let metrics = Metrics::new();
    let data = data_dir();
    // Guests' HTTP calls go through the same client and are metered like HTTP steps.
    let guest_http: Arc<dyn Invoker> = Arc::new(Metered::new(http.clone(), metrics.clone()));
    let wasm = Arc::new(
        WasmHost::new(
            ComponentBlobs::new(data.join("components")),
            HostServices {
                http: guest_http,
                kv,
            },
            Some(&data.join("cache")),
        )
        .context("starting the Wasm host")?,
    );
    let dispatcher = Dispatcher {
        http,
        component: Some(wasm.clone()),
    };
    let invoker = Metered::new(Arc::new(dispatcher), metrics.clone());
    let runner = Runner::new(store, Arc::new(invoker));
    let runner = if stderr_progress {
        runner.with_progress(Arc::new(Both(StderrProgress, metrics.clone())))
    } else {
        runner.with_progress(Arc::new(metrics.clone()))
    };
    Ok(Host {
        runner,
        wasm,
        metrics,
    })
}

/// Where `orca serve` listens.
pub(crate) struct Listen {
    pub(crate) api: String,
    pub(crate) metrics: Option<String>,
}

pub(crate) async fn bind(address: &str, flag: &str) -> Result<tokio::net::TcpListener, Failure> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Failure::BadInput(format!("{flag} {address}: {e}")))
}

pub(crate) async fn serve(
    listen: &Listen,
    config: server::ServerConfig,
    grace: std::time::Duration,
    lease: LeaseSettings,
    max_body_bytes: usize,
    store: StoreArgs,
) -> Result<u8, Failure> {
    let env = |name: &str| std::env::var(name).ok();
    let store_config =
        StoreConfig::resolve(store.store.as_deref(), None, &env).map_err(store_failure)?;
    let tenants = store::open_tenants(&store_config)
        .await
        .map_err(store_failure)?;
    let (executions, kv) = store::open_with_state(&store_config)
        .await
        .map_err(store_failure)?;
    let Host {
        runner,
        wasm,
        metrics,
    } = host((executions.clone(), kv), max_body_bytes, false)?;
    let runner = runner.with_lease(lease);
    let app = server::App::new(config, tenants, executions.clone(), runner, wasm, metrics);
    let listener = bind(&listen.api, "--listen").await?;
    let metrics = match &listen.metrics {
        Some(address) => Some(bind(address, "--metrics-listen").await?),
        None => None,
    };
    let addr = listener.local_addr().context("reading the bound address")?;
    println!("listening on http://{addr}");
    if let Some(metrics) = &metrics {
        let addr = metrics.local_addr().context("reading the bound address")?;
        println!("metrics on http://{addr}/metrics");
    }
    let served = server::serve(app, listener, metrics, grace, shutdown_signal()).await;
    executions.flush().await;
    served.context("serving")?;
    Ok(0)
}

/// Resolves on SIGTERM or ctrl-c.
pub(crate) async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
    eprintln!("shutting down: finishing in-flight executions");
}
