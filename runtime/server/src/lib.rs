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
mod quotas;
mod router;

#[cfg(test)]
mod tests;

pub use auth::sha256_hex;
pub use openapi::document as openapi_document;
pub use orca_store::tenants::{SqliteTenants, TenantStore};
pub use orca_store::tenants_pg::PostgresTenants;
pub use router::router;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orca_metrics::Metrics;
use orca_runner::{Handle, Runner, tenant_of};
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
        }
    }
}

/// An execution this process drives, and whose it is.
pub struct Driven {
    tenant: String,
    handle: Handle,
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
}

/// A place under a tenant's running-executions quota, held from admission until the
/// execution is tracked (or the start fails); dropping it gives the place back.
pub(crate) struct QuotaSlot {
    starting: Arc<Mutex<HashMap<String, usize>>>,
    tenant: String,
}

impl Drop for QuotaSlot {
    fn drop(&mut self) {
        let mut starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = starting.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                starting.remove(&self.tenant);
            }
        }
    }
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

    /// Admits one more start for `tenant` if it stays within `quota` counting both running
    /// executions and starts still being set up, so concurrent starts cannot overshoot.
    pub(crate) fn admit(&self, tenant: &str, quota: usize) -> Option<QuotaSlot> {
        // Lock order: `driving` inside `starting`, here and nowhere the other way round.
        let mut starting = self.starting.lock().unwrap_or_else(PoisonError::into_inner);
        let in_setup = starting.get(tenant).copied().unwrap_or(0);
        if self.running_of(tenant) + in_setup >= quota {
            return None;
        }
        *starting.entry(tenant.to_string()).or_default() += 1;
        Some(QuotaSlot {
            starting: self.starting.clone(),
            tenant: tenant.to_string(),
        })
    }

    fn driving(&self) -> std::sync::MutexGuard<'_, HashMap<String, Driven>> {
        self.driving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers an execution this process now drives (and forgets the ones that ended).
    pub(crate) fn track(&self, tenant: &str, handle: Handle) {
        self.track_all(tenant, vec![handle]);
    }

    fn track_all(&self, tenant: &str, handles: Vec<Handle>) {
        self.track_owned(handles.into_iter().map(|h| (tenant.to_string(), h)));
    }

    /// Tracks executions of several tenants at once (taken over or resumed at start-up).
    fn track_owned(&self, handles: impl IntoIterator<Item = (String, Handle)>) {
        let mut driving = self.driving();
        driving.retain(|_, d| !d.handle.is_finished());
        for (tenant, handle) in handles {
            driving.insert(handle.id.clone(), Driven { tenant, handle });
        }
    }

    /// How many of `tenant`'s executions this process is driving.
    pub(crate) fn running_of(&self, tenant: &str) -> usize {
        self.driving()
            .values()
            .filter(|d| d.tenant == tenant && !d.handle.is_finished())
            .count()
    }

    /// Whether this process is driving `id` right now.
    pub(crate) fn is_driving(&self, id: &str) -> bool {
        self.driving()
            .get(id)
            .is_some_and(|d| !d.handle.is_finished())
    }

    /// Sends a cancel into the drive loop of `id`; false if this process is not driving it.
    pub(crate) fn cancel_driven(&self, id: &str, reason: &str) -> bool {
        self.driving()
            .get(id)
            .is_some_and(|d| !d.handle.is_finished() && d.handle.cancel(reason))
    }

    /// Resumes, in the background, every execution whose owner is gone: leases that expired,
    /// running executions whose lease was released (a drained shutdown), and those whose
    /// owner was a process on this host that has died (after a crash the lease may not have
    /// run out yet).
    pub async fn recover(&self) {
        self.recover_expired().await;
        let mut ids = Vec::new();
        for status in ["running", "compensating"] {
            let filter = orca_store::ListFilter {
                status: Some(status.to_string()),
                ..Default::default()
            };
            let Ok(rows) = self.executions.list(&filter).await else {
                continue;
            };
            for row in rows {
                // No lease: its owner stopped at a checkpoint and released it (a drained
                // shutdown).
                let orphaned = match self.executions.lease(&row.id).await {
                    Ok(None) => true,
                    Ok(Some(lease)) => orca_store::owner_is_dead_locally(&lease.owner),
                    Err(_) => false,
                };
                if orphaned {
                    ids.push((tenant_of(&row.body), row.id.to_string()));
                }
            }
        }
        self.resume_all(ids);
    }

    /// Takes over the executions whose lease has expired (their owner, maybe on another host,
    /// stopped renewing), a batch per claim; run at start and periodically while serving.
    pub async fn recover_expired(&self) {
        loop {
            match self.runner.take_over_expired(RECOVERY_BATCH).await {
                Ok(handles) => {
                    let claimed = handles.len();
                    if claimed > 0 {
                        tracing::info!(claimed, "resuming executions whose lease expired");
                    }
                    self.track_owned(handles.into_iter().map(|h| (h.tenant.clone(), h)));
                    if claimed < RECOVERY_BATCH {
                        return;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot take over expired executions");
                    return;
                }
            }
        }
    }

    fn resume_all(&self, ids: Vec<(String, String)>) {
        let handles: Vec<_> = ids
            .into_iter()
            .filter(|(_, id)| !self.is_driving(id))
            .map(|(tenant, id)| {
                tracing::info!(execution = %id, "resuming an execution whose owner is gone");
                (
                    tenant,
                    self.runner.resume_in_background(&id, Default::default()),
                )
            })
            .collect();
        self.track_owned(handles);
    }

    /// Waits up to `grace` for the executions this process drives to finish, then stops the
    /// others at their last checkpoint and releases their leases.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.driving().values().all(|d| d.handle.is_finished()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let handles: Vec<Handle> = self.driving().drain().map(|(_, d)| d.handle).collect();
        for handle in &handles {
            handle.stop();
        }
        for handle in handles {
            let _ = handle.join().await;
        }
    }
}

/// How often a serving process looks for executions whose lease expired. Well under the
/// lease's 30 s, so an execution whose owner died waits at most about a lease and this.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Executions taken over per claim: one statement claims a batch, and their first saves
/// share commits.
const RECOVERY_BATCH: usize = 1_000;

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
            tokio::time::sleep(SWEEP_EVERY).await;
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
            axum::serve(listener, router::metrics_only(closed.clone()))
                .with_graceful_shutdown(async move { closed.closed().await })
                .await
        })
    });
    let closed = app.clone();
    let served = axum::serve(listener, router(app.clone()))
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

/// How much longer than the grace an open request may hold the shutdown: enough for the
/// answers of the executions stopped at the end of the grace to be written out.
const CUT_OFF_AFTER_GRACE: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    orca_runner::Clock::now_ms(&orca_runner::SystemClock)
}
