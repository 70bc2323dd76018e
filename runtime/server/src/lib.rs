//! `orca serve`: the multi-tenant HTTP API.
//!
//! Handlers are thin: they authenticate (see [`auth`]), parse, call the runner, the stores or
//! the Wasm host, and map failures through [`error::ApiError`]. A tenant only ever sees its own
//! definitions, components and executions; another tenant's object answers 404, exactly as an
//! unknown one does.

mod admin;
mod auth;
mod components;
mod definitions;
mod error;
mod executions;
mod names;
mod openapi;
mod ops;
mod plans;
mod quotas;
mod router;
mod stream;
mod supervisor;

#[cfg(test)]
mod tests;

pub use auth::sha256_hex;
pub use openapi::document as openapi_document;
pub use orca_store::tenants::{SqliteTenants, TenantStore};
pub use orca_store::tenants_pg::PostgresTenants;
pub use router::router;
pub use supervisor::Driven;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orca_metrics::Metrics;
use orca_runner::Runner;
use orca_store::ExecutionStore;
use orca_wasm::WasmHost;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// sha256 (hex) of the admin token; `None`: the admin endpoints refuse every request.
    pub admin_token_sha256: Option<String>,
    /// Largest component upload, in bytes.
    pub max_component_bytes: usize,
    /// Largest body of any other request (definitions, execution input).
    pub max_body_bytes: usize,
    /// Upper bound of `?wait=` on `POST /v1/executions`.
    pub max_wait: Duration,
    /// Executions one tenant may have running on this server at once; more get 429.
    pub max_running_per_tenant: usize,
    /// Ceiling on a component's `spec.limits.memory` (per call).
    pub max_call_memory_bytes: u64,
    /// Ceiling on a component's `spec.limits.deadline` (per call).
    pub max_call_deadline: Duration,
    /// Host patterns a component may be granted (`spec.grants.http`); `None`: any.
    pub egress_ceiling: Option<Vec<String>>,
    /// sha256 (hex) of the token a scraper presents for `/metrics` on the API's listener
    /// (the admin token is accepted too).
    pub metrics_token_sha256: Option<String>,
    /// `/metrics` is served on a listener of its own (`--metrics-listen`), without a token,
    /// and not on the API's.
    pub metrics_elsewhere: bool,
    /// How often the server looks for executions to take over: those whose lease expired
    /// (their process died or stopped) on any server sharing the store.
    pub sweep_every: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            admin_token_sha256: None,
            // The largest example component (JavaScript, with its interpreter) is ~12 MB.
            max_component_bytes: 32 * 1024 * 1024,
            max_body_bytes: 1024 * 1024,
            max_wait: Duration::from_secs(60),
            max_running_per_tenant: 100,
            max_call_memory_bytes: 256 << 20,
            max_call_deadline: Duration::from_secs(60),
            egress_ceiling: None,
            metrics_token_sha256: None,
            metrics_elsewhere: false,
            sweep_every: Duration::from_secs(1),
        }
    }
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct App {
    pub config: Arc<ServerConfig>,
    pub tenants: Arc<dyn TenantStore>,
    pub executions: Arc<dyn ExecutionStore>,
    pub runner: Runner,
    pub wasm: Arc<WasmHost>,
    pub metrics: Metrics,
    /// Executions this process drives, by id.
    pub driving: Arc<Mutex<HashMap<String, Driven>>>,
    /// Starts admitted under a tenant's quota but not yet tracked in `driving`, by tenant.
    starting: Arc<Mutex<HashMap<String, usize>>>,
    /// Becomes true when the server starts shutting down: open waits answer at once.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Workflows ready to start.
    plans: Arc<plans::Plans>,
    /// Tenant tokens recently found in the store.
    tokens: Arc<auth::KnownTokens>,
}

impl App {
    pub fn new(
        config: ServerConfig,
        tenants: Arc<dyn TenantStore>,
        executions: Arc<dyn ExecutionStore>,
        runner: Runner,
        wasm: Arc<WasmHost>,
        metrics: Metrics,
    ) -> Self {
        App {
            config: Arc::new(config),
            tenants,
            executions,
            runner,
            wasm,
            metrics,
            driving: Arc::default(),
            starting: Arc::default(),
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            plans: Arc::default(),
            tokens: Arc::default(),
        }
    }

    /// Resolves once the server has begun to shut down.
    pub(crate) async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        // An error means the sender is gone, which only happens with the app itself.
        let _ = closing.wait_for(|closing| *closing).await;
    }

    /// Starts the shutdown: requests waiting for an execution answer with it as it stands.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// Serves `app` on `listener` (and `/metrics` alone on `metrics`, when given) until
/// `shutdown` resolves. Then, within `grace`: new connections are refused, open waits answer
/// with the execution as it stands, requests still open are given the grace to end, and the
/// executions this process drives are drained (see [`App::drain`]): none is held up or
/// failed by the shutdown.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    metrics: Option<tokio::net::TcpListener>,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let recovering = app.clone();
    let sweeper = tokio::spawn(async move {
        recovering.recover().await;
        loop {
            tokio::time::sleep(recovering.config.sweep_every).await;
            recovering.recover_expired().await;
        }
    });
    let closing = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        closing.close();
    });
    let scraped = metrics.map(|listener| {
        let closed = app.clone();
        tokio::spawn(async move {
            axum::serve(
                without_delay(listener),
                router::metrics_only(closed.clone()),
            )
            .with_graceful_shutdown(async move { closed.closed().await })
            .await
        })
    });
    let closed = app.clone();
    let served = axum::serve(without_delay(listener), router(app.clone()))
        .with_graceful_shutdown(async move { closed.closed().await })
        .into_future();
    let drained = async {
        app.closed().await;
        sweeper.abort();
        app.drain(grace).await;
    };
    // A request that outlives the grace (a slow upload, a client that stops reading) is cut
    // off rather than keeping the process alive.
    let bounded = async {
        tokio::select! {
            served = served => served,
            () = async { app.closed().await; tokio::time::sleep(grace + CUT_OFF_AFTER_GRACE).await } => {
                tracing::warn!("requests still open after the grace period; closing them");
                Ok(())
            }
        }
    };
    let (served, ()) = tokio::join!(bounded, drained);
    if let Some(scraped) = scraped {
        scraped.abort();
    }
    served
}

/// `listener` with Nagle's algorithm off on every connection: an answer goes out when it is
/// written, not when the client acknowledged the one before.
fn without_delay(
    listener: tokio::net::TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|connection| {
        let _ = connection.set_nodelay(true);
    })
}

/// How much longer than the grace an open request may hold the shutdown: enough for the
/// answers of the executions stopped at the end of the grace to be written out.
const CUT_OFF_AFTER_GRACE: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    orca_runner::Clock::now_ms(&orca_runner::SystemClock)
}
