//! Supervision of the executions this process drives: admission under a tenant's quota,
//! tracking by id (to cancel, to count), recovery of executions whose owner is gone, and the
//! drain at shutdown. Handlers reach it through [`App`]'s methods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orca_runner::{Handle, tenant_of};

use super::App;

/// An execution this process drives, and whose it is.
pub struct Driven {
    tenant: String,
    handle: Handle,
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
        self.track_owned([(tenant.to_string(), handle)]);
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

/// Executions taken over per claim: one statement claims a batch, and their first saves
/// share commits.
const RECOVERY_BATCH: usize = 1_000;
