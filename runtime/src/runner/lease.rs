//! The runner's side of leases: claiming an execution, and keeping the lease alive while it
//! drives the execution.
//!
//! A step can wait on a slow service for longer than the lease, so renewal cannot piggyback
//! on saves: a background task renews every `renew_every`. If the store says the execution
//! was taken over, or renewals keep failing until the lease has run out, the keeper reports
//! the lease lost and the runner stops; from that moment another process may legitimately be
//! driving the execution, and the fence would reject this one's next save anyway.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Clock, RunError, Runner};
use crate::store::{Claim, ExecutionStore, Fence, StoreError, owner_is_dead_locally};

/// How long an owner's claim on an execution lasts, and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How long another process waits after this one stops renewing (a crash, a hang, a
    /// partition) before it may take the execution over.
    pub duration: Duration,
    /// Well below `duration`, so that a renewal or two can fail (a store hiccup) without
    /// losing the lease.
    pub renew_every: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            duration: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
        }
    }
}

impl LeaseSettings {
    pub(super) fn duration_ms(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }
}

/// The background renewal of one lease; stops when dropped.
pub(super) struct Keeper {
    lost: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Keeper {
    /// Starts renewing the lease on `id` held with `fence` until `held_until` (Unix ms).
    pub(super) fn start(
        store: Arc<dyn ExecutionStore>,
        clock: Arc<dyn Clock>,
        id: String,
        fence: Fence,
        settings: LeaseSettings,
        held_until: u64,
    ) -> Self {
        let (report, lost) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut held_until = held_until;
            loop {
                tokio::time::sleep(settings.renew_every).await;
                let until = clock.now_ms().saturating_add(settings.duration_ms());
                match store.renew(&id, fence, until).await {
                    Ok(()) => held_until = until,
                    Err(error @ (StoreError::Fenced { .. } | StoreError::NotFound(_))) => {
                        report.send_replace(Some(error.to_string()));
                        return;
                    }
                    Err(error) if clock.now_ms() >= held_until => {
                        report.send_replace(Some(format!(
                            "the lease ran out while the store could not be reached: {error}"
                        )));
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(execution = %id, %error, "could not renew the lease; retrying");
                    }
                }
            }
        });
        Keeper { lost, task }
    }

    /// Resolves (with the reason) once the lease is lost; pending forever otherwise.
    pub(super) async fn lost(&mut self) -> String {
        // Copied out in its own statement: the borrow of the channel must end before the
        // pending await below, or the future would not be `Send`.
        let reason = match self.lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone(),
            // The task ended without reporting, which only happens when it was aborted.
            Err(_) => None,
        };
        match reason {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Runner {
    /// Takes the lease on `id`; returns the fence and the lease's end.
    pub(super) async fn claim(&self, id: &str) -> Result<(Fence, u64), RunError> {
        let now = self.clock.now_ms();
        let take_over = match self.store.lease(id).await? {
            Some(lease) if !lease.expired_at(now) && lease.owner != self.owner => {
                if !owner_is_dead_locally(&lease.owner) {
                    return Err(RunError::Leased {
                        id: id.to_string(),
                        owner: lease.owner,
                        until_ms: lease.until_ms,
                    });
                }
                tracing::info!(execution = id, owner = %lease.owner, "taking over from a dead owner");
                Some(lease.fence)
            }
            _ => None,
        };
        let until = self.lease_until();
        let claim = Claim {
            owner: &self.owner,
            until_ms: until,
            now_ms: now,
            take_over,
        };
        match self.store.claim(id, &claim).await {
            Ok(Some(fence)) => Ok((fence, until)),
            // Someone claimed it between our look and our claim.
            Ok(None) => Err(match self.store.lease(id).await? {
                Some(lease) => RunError::Leased {
                    id: id.to_string(),
                    owner: lease.owner,
                    until_ms: lease.until_ms,
                },
                None => RunError::LeaseLost {
                    id: id.to_string(),
                    reason: "another process claimed it first".to_string(),
                },
            }),
            Err(StoreError::NotFound(_)) => Err(RunError::NotFound(id.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn lease_until(&self) -> u64 {
        self.clock.now_ms().saturating_add(self.lease.duration_ms())
    }

    pub(super) fn keep(&self, id: &str, fence: Fence, until: u64) -> Keeper {
        Keeper::start(
            self.store.clone(),
            self.clock.clone(),
            id.to_string(),
            fence,
            self.lease,
            until,
        )
    }

    /// Gives the lease up; a failure only delays a future takeover until the lease expires.
    pub(super) async fn release(&self, id: &str, fence: Fence) {
        if let Err(error) = self.store.release(id, fence).await {
            tracing::warn!(execution = id, %error, "could not release the lease");
        }
    }
}
