//! The runner's side of leases: claiming an execution, and keeping the lease alive while it
//! drives the execution.
//!
//! A step can wait on a slow service for longer than the lease, so renewal cannot piggyback
//! on saves: one background task per runner renews every lease it holds each `renew_every`. If the store says the execution
//! was taken over, or renewals keep failing until the lease has run out, the keeper reports
//! the lease lost and the runner stops; from that moment another process may legitimately be
//! driving the execution, and the fence would reject this one's next save anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tokio::sync::oneshot;

use super::{Clock, RunError, Runner};
use orca_store::{Claim, ExecutionStore, Fence, StoreError, owner_is_dead_locally};

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
    /// A process that dies is taken over within about 8 s (plus the sweep's interval, see
    /// `orca serve --sweep-every`); three renewals in a row can fail before the lease is lost.
    fn default() -> Self {
        LeaseSettings {
            duration: Duration::from_secs(8),
            renew_every: Duration::from_secs(2),
        }
    }
}

impl LeaseSettings {
    pub(super) fn duration_ms(&self) -> u64 {
        u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Every lease a runner holds, renewed by one background task.
///
/// One task per runner rather than one per execution: a process may hold a hundred thousand
/// executions parked on timers, and a task, a timer and a channel each would cost more memory
/// than the executions themselves.
#[derive(Default)]
pub(super) struct Leases {
    held: Mutex<HashMap<Arc<str>, Held>>,
    /// Dropped with the last runner, which tells the renewing task to stop at once: it holds
    /// the store, and a store of a hundred thousand records should not outlive its runners
    /// until the next renewal.
    renewer: OnceLock<oneshot::Sender<()>>,
}

struct Held {
    fence: Fence,
    held_until: u64,
    /// Told why, once, when the lease is lost.
    lost: Option<oneshot::Sender<String>>,
}

/// A lease this runner holds while it drives one execution; stops being renewed when dropped.
pub(super) struct HeldLease {
    leases: Arc<Leases>,
    id: Arc<str>,
    fence: Fence,
    lost: oneshot::Receiver<String>,
}

impl HeldLease {
    pub(super) fn fence(&self) -> Fence {
        self.fence
    }

    /// Resolves (with the reason) once the lease is lost; pending forever otherwise.
    pub(super) async fn lost(&mut self) -> String {
        match (&mut self.lost).await {
            Ok(reason) => reason,
            // The sender is dropped without a word only once this lease is no longer held.
            Err(_) => std::future::pending().await,
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let mut held = lock(&self.leases.held);
        // A newer claim of the same execution by this runner has replaced the entry: keep it.
        if held
            .get(&self.id)
            .is_some_and(|entry| entry.fence == self.fence)
        {
            held.remove(&self.id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are plain data updated in one statement; a panic elsewhere cannot leave one
    // half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Renewals in flight at once: enough to renew thousands of leases per interval without
/// opening as many store connections.
const RENEWALS_IN_FLIGHT: usize = 32;

impl Leases {
    fn hold(
        self: &Arc<Self>,
        runner: &Runner,
        id: Arc<str>,
        fence: Fence,
        until: u64,
    ) -> HeldLease {
        let (report, lost) = oneshot::channel();
        lock(&self.held).insert(
            id.clone(),
            Held {
                fence,
                held_until: until,
                lost: Some(report),
            },
        );
        self.renewer.get_or_init(|| {
            let leases = Arc::downgrade(self);
            let (store, clock, settings) =
                (runner.store.clone(), runner.clock.clone(), runner.lease);
            let (alive, gone) = oneshot::channel();
            tokio::spawn(renew_forever(leases, gone, store, clock, settings));
            alive
        });
        HeldLease {
            leases: self.clone(),
            id,
            fence,
            lost,
        }
    }

    fn lose(&self, id: &str, fence: Fence, reason: String) {
        let mut held = lock(&self.held);
        if let Some(entry) = held.get_mut(id).filter(|entry| entry.fence == fence)
            && let Some(report) = entry.lost.take()
        {
            let _ = report.send(reason);
        }
    }
}

/// Renews every held lease each `renew_every` until the runner (every clone) is gone.
async fn renew_forever(
    leases: Weak<Leases>,
    mut gone: oneshot::Receiver<()>,
    store: Arc<dyn ExecutionStore>,
    clock: Arc<dyn Clock>,
    settings: LeaseSettings,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(settings.renew_every) => {}
            // Nothing is ever sent: the sender is dropped with the leases.
            _ = &mut gone => return,
        }
        let Some(leases) = leases.upgrade() else {
            return;
        };
        let due: Vec<(Arc<str>, Fence, u64)> = lock(&leases.held)
            .iter()
            .filter(|(_, held)| held.lost.is_some())
            .map(|(id, held)| (id.clone(), held.fence, held.held_until))
            .collect();
        let until = clock.now_ms().saturating_add(settings.duration_ms());
        stream::iter(due)
            .for_each_concurrent(RENEWALS_IN_FLIGHT, |(id, fence, held_until)| {
                let (leases, store, clock) = (&leases, &store, &clock);
                async move {
                    match store.renew(&id, fence, until).await {
                        Ok(()) => {
                            if let Some(held) = lock(&leases.held).get_mut(&id)
                                && held.fence == fence
                            {
                                held.held_until = until;
                            }
                        }
                        Err(error @ (StoreError::Fenced { .. } | StoreError::NotFound(_))) => {
                            leases.lose(&id, fence, error.to_string());
                        }
                        Err(error) if clock.now_ms() >= held_until => leases.lose(
                            &id,
                            fence,
                            format!("the lease ran out while the store could not be reached: {error}"),
                        ),
                        Err(error) => {
                            tracing::warn!(execution = %id, %error, "could not renew the lease; retrying");
                        }
                    }
                }
            })
            .await;
    }
}

/// Whether a claim may take an execution from an owner that is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claiming {
    /// Only a free lease, an expired one, or one whose owner died on this host.
    Free,
    /// From whoever holds it: to cancel an execution another process drives.
    Away,
}

impl Runner {
    /// Takes the lease on `id`; returns the fence and the lease's end. `Claiming::Away`
    /// takes it from a live owner too, which the fence then stops at its next write.
    pub(super) async fn claim(&self, id: &str, how: Claiming) -> Result<(Fence, u64), RunError> {
        let now = self.clock.now_ms();
        let take_over = match self.store.lease(id).await? {
            Some(lease) if !lease.expired_at(now) && lease.owner != self.owner => {
                if how == Claiming::Away {
                    tracing::info!(execution = id, owner = %lease.owner, "taking over from a live owner");
                    Some(lease.fence)
                } else if !owner_is_dead_locally(&lease.owner) {
                    return Err(RunError::Leased {
                        id: id.to_string(),
                        owner: lease.owner,
                        until_ms: lease.until_ms,
                    });
                } else {
                    tracing::info!(execution = id, owner = %lease.owner, "taking over from a dead owner");
                    Some(lease.fence)
                }
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

    /// Keeps the lease on `id` renewed until the returned guard is dropped.
    pub(super) fn keep(&self, id: Arc<str>, fence: Fence, until: u64) -> HeldLease {
        self.leases.hold(self, id, fence, until)
    }

    /// Hands the execution over to whichever process sweeps next (a shutdown): the lease
    /// expires now, so every process sharing the store takes it as it takes over from one
    /// that died, without waiting for the lease to run out. Renewals stop first; a failure,
    /// or a renewal already on its way, only delays the takeover until the lease runs out.
    pub(super) async fn hand_over(&self, id: &str, lease: HeldLease) {
        let fence = lease.fence();
        drop(lease);
        if let Err(error) = self.store.renew(id, fence, self.clock.now_ms()).await {
            tracing::warn!(execution = id, %error, "could not hand the lease over");
        }
    }

    /// Gives the lease up; a failure only delays a future takeover until the lease expires.
    pub(super) async fn release(&self, id: &str, fence: Fence) {
        if let Err(error) = self.store.release(id, fence).await {
            tracing::warn!(execution = id, %error, "could not release the lease");
        }
    }
}
