//! The executor loop: carries out the engine's actions and makes every decision durable.
//!
//! After each batch of events the record is written to the store *before* any resulting
//! request is sent or timer armed, so a crash at any point leaves a record from which
//! [`Runner::resume`] continues: completed steps are never called again, and a call that was
//! in flight is sent again with the same `Idempotency-Key`. A store that keeps nothing across
//! a crash (memory) is written at most every [`CHECKPOINT_LAG`] instead, and at the end.
//!
//! A runner drives an execution only while it holds the execution's lease: it creates new
//! executions leased to itself, claims existing ones before resuming them, renews the lease in
//! the background, and presents the lease's fence with every save. If another process takes
//! the execution over, the next save or renewal fails and this runner stops, so two processes
//! never drive one execution at once.

mod checkpoint;
mod drive;
mod handle;
mod in_flight;
pub mod launch;
mod lease;
mod plans;
mod record;

pub use checkpoint::CHECKPOINT_LAG;
use checkpoint::Stored;
pub use handle::{Control, Handle};
pub use lease::{Claiming, LeaseSettings};
pub use record::{ExecutionRecord, Sources, WorkflowSource, tenant_of};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::sync::mpsc;

use lease::{HeldLease, Leases};
use orca_core::definition::LoadError;
use orca_core::engine::{Action, Bindings, Execution};
use orca_core::invoke::Invoker;
use orca_core::plan::Plan;
use orca_core::progress::Progress;
use orca_store::{self, ExecutionStore, Fence, StoreError, StoredExecution, Write, owner_id};
use plans::Plans;

/// Milliseconds since the Unix epoch; a trait so tests can control time.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no execution with id `{0}`")]
    NotFound(String),
    #[error("execution `{id}` is {status}, not running: only a running execution can be resumed")]
    NotRunning { id: String, status: &'static str },
    #[error("the stored definition of execution `{id}` no longer loads: {error}")]
    Definition {
        id: String,
        // Boxed: a load error is large, and every `Result<_, RunError>` would carry its size.
        error: Box<LoadError>,
    },
    #[error("execution `{id}` has an unreadable record: {message}")]
    Corrupt { id: String, message: String },
    /// Another live process holds the lease.
    #[error(
        "execution `{id}` is being driven by {owner} (lease until {until}); resume it once that \
         process has stopped or its lease has expired",
        until = format_ms(*until_ms)
    )]
    Leased {
        id: String,
        owner: String,
        until_ms: u64,
    },
    /// The process is shutting down: the execution was left at its last checkpoint with its
    /// lease released, for a later [`Runner::resume`].
    #[error("stopped driving execution `{id}`: the process is shutting down")]
    Stopped { id: String },
    /// This runner was fenced out (another process took over) or could not renew its lease.
    #[error("stopped driving execution `{id}`: {reason}")]
    LeaseLost { id: String, reason: String },
}

fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Runs executions against an [`ExecutionStore`] and an [`Invoker`].
#[derive(Clone)]
pub struct Runner {
    store: Arc<dyn ExecutionStore>,
    invoker: Arc<dyn Invoker>,
    clock: Arc<dyn Clock>,
    progress: Option<Arc<dyn Progress>>,
    /// Who this runner is in the store's leases.
    owner: String,
    lease: LeaseSettings,
    leases: Arc<Leases>,
    plans: Arc<Plans>,
    checkpoint_lag: Duration,
}

impl Runner {
    pub fn new(store: Arc<dyn ExecutionStore>, invoker: Arc<dyn Invoker>) -> Self {
        let _ = orca_core::expr::LONG_EVALUATIONS.set(off_the_async_workers);
        Runner {
            store,
            invoker,
            clock: Arc::new(SystemClock),
            progress: None,
            owner: owner_id(),
            lease: LeaseSettings::default(),
            leases: Arc::default(),
            plans: Arc::default(),
            checkpoint_lag: CHECKPOINT_LAG,
        }
    }

    /// How far a running execution's checkpoint may lag behind it on a store that keeps
    /// nothing across a crash (default [`CHECKPOINT_LAG`]); durable stores are always written
    /// before the engine acts.
    pub fn with_checkpoint_lag(mut self, lag: Duration) -> Self {
        self.checkpoint_lag = lag;
        self
    }

    /// The owner id written into leases (default: [`owner_id`], unique per runner).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// How long leases last and how often they are renewed (default 30 s and 10 s). A
    /// `renew_every` that is not shorter than `duration` is replaced by a third of it.
    pub fn with_lease(mut self, mut lease: LeaseSettings) -> Self {
        if lease.renew_every >= lease.duration {
            lease.renew_every = lease.duration / 3;
        }
        self.lease = lease;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reports each change of each step (the CLI prints these on stderr).
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Starts a new execution and drives it to a final status.
    ///
    /// On a store that keeps nothing across a crash the execution is first written when its
    /// checkpoint lag is up or when it ends, whichever comes first: nobody has its id before
    /// this returns, so nobody can miss it, and a short run is written once instead of twice.
    pub async fn run(
        &self,
        workflow: WorkflowSource,
        plan: &Plan,
        input: Json,
        bindings: Bindings,
    ) -> Result<Execution, RunError> {
        let (mut record, actions) = self.new_record(workflow, plan, input, bindings);
        let stored = if self.store.is_durable() {
            Stored::Leased(self.create(&record).await?)
        } else {
            Stored::NotYet
        };
        self.drive(&mut record, plan, actions, stored, None).await?;
        Ok(record.execution)
    }

    /// Creates a new execution (durable when this returns) and drives it on a background
    /// task; the handle carries its id and can cancel or stop it.
    pub async fn start(
        &self,
        workflow: WorkflowSource,
        plan: Arc<Plan>,
        input: Json,
        bindings: Bindings,
    ) -> Result<Handle, RunError> {
        let (mut record, actions) = self.new_record(workflow, &plan, input, bindings);
        let lease = self.create(&record).await?;
        let id = record.execution.id.to_string();
        let tenant = record.execution.tenant.to_string();
        Ok(
            self.in_background(id, tenant, move |runner, mut inbox| async move {
                let stored = Stored::Leased(lease);
                runner
                    .drive(&mut record, &plan, actions, stored, Some(&mut inbox))
                    .await
                    .map(|()| record.execution)
            }),
        )
    }

    /// [`Runner::resume`] on a background task. `control` messages queued before the
    /// execution is claimed (a cancel) are applied as soon as it is.
    pub fn resume_in_background(&self, id: &str, services: BTreeMap<String, String>) -> Handle {
        self.claim_in_background(id, services, Claiming::Free)
    }

    /// Takes the execution from whoever drives it, alive or not, and drives it here: to
    /// cancel, from any process, an execution another one drives. The other is fenced out
    /// at its next write or renewal; a call it has in flight is sent again from here, with
    /// the same idempotency key.
    pub fn take_in_background(&self, id: &str) -> Handle {
        self.claim_in_background(id, BTreeMap::new(), Claiming::Away)
    }

    fn claim_in_background(
        &self,
        id: &str,
        services: BTreeMap<String, String>,
        how: Claiming,
    ) -> Handle {
        let owned = id.to_string();
        self.in_background(
            id.to_string(),
            String::new(),
            move |runner, mut inbox| async move {
                runner
                    .resume_with(&owned, &services, how, Some(&mut inbox))
                    .await
            },
        )
    }

    /// Takes over up to `limit` executions whose lease has expired (their owner stopped
    /// renewing: it crashed, hung or lost the store) in one claim, and drives each on a
    /// background task. Empty when there are none.
    pub async fn take_over_expired(&self, limit: usize) -> Result<Vec<Handle>, RunError> {
        let until = self.lease_until();
        let claimed = self
            .store
            .claim_expired(&self.owner, self.clock.now_ms(), until, limit)
            .await?;
        Ok(claimed
            .into_iter()
            .map(|(stored, fence)| {
                let id = stored.id.to_string();
                let tenant = tenant_of(&stored.body);
                self.in_background(id, tenant, move |runner, mut inbox| async move {
                    let id = stored.id.clone();
                    let services = BTreeMap::new();
                    runner
                        .resume_claimed(
                            &id,
                            fence,
                            until,
                            Some(stored),
                            &services,
                            Some(&mut inbox),
                        )
                        .await
                })
            })
            .collect())
    }

    /// Runs `drive` on a task of its own, with the receiving end of the handle's control
    /// channel, and logs why it ended when that was not a normal end or a shutdown.
    fn in_background<F, D>(&self, id: String, tenant: String, drive: D) -> Handle
    where
        D: FnOnce(Runner, mpsc::UnboundedReceiver<Control>) -> F,
        F: Future<Output = Result<Execution, RunError>> + Send + 'static,
    {
        let (control, inbox) = mpsc::unbounded_channel();
        let (ended, finished) = tokio::sync::watch::channel(None);
        let driven = drive(self.clone(), inbox);
        let logged = id.clone();
        let task = tokio::spawn(async move {
            let outcome = driven.await.map(Arc::new);
            match &outcome {
                // A caller waiting here is answered without reading the store.
                Ok(execution) if execution.status.is_final() => {
                    ended.send_replace(Some(execution.clone()));
                }
                Ok(_) | Err(RunError::Stopped { .. }) => {}
                // Nobody awaits a background execution right away; say why it stopped.
                Err(error) => tracing::warn!(execution = %logged, "execution stopped: {error}"),
            }
            outcome
        });
        Handle {
            id,
            tenant,
            control,
            task,
            finished,
        }
    }

    /// A new execution's record and its first actions, not yet written anywhere.
    fn new_record(
        &self,
        mut workflow: WorkflowSource,
        plan: &Plan,
        input: Json,
        bindings: Bindings,
    ) -> (ExecutionRecord, Vec<Action>) {
        self.plans.share(&mut workflow, plan);
        let id = uuid::Uuid::now_v7().to_string();
        let (execution, actions) = Execution::start(plan, id, input, bindings, self.clock.now_ms());
        if let Some(p) = &self.progress {
            p.started(&execution);
        }
        let record = ExecutionRecord {
            workflow,
            execution,
        };
        (record, actions)
    }

    /// Writes a new execution's first record, leased to this runner.
    async fn create(&self, record: &ExecutionRecord) -> Result<HeldLease, RunError> {
        let until = self.lease_until();
        let create = self.creation(self.stored(record)?, until);
        let fence = orca_store::write_one(&*self.store, create).await?;
        Ok(self.keep(record.execution.id.clone(), fence, until))
    }

    /// The write that creates `execution`, leased to this runner until `until`.
    fn creation(&self, execution: StoredExecution, until: u64) -> Write {
        Write::Create {
            execution,
            owner: self.owner.clone(),
            lease_until_ms: until,
        }
    }

    /// Continues a `running` (or `compensating`) execution from its last checkpoint.
    /// `services` overrides the stored bindings by name.
    ///
    /// The execution is taken over at once if nobody holds its lease, the lease has expired,
    /// or its owner is a process on this host that has died; otherwise this is refused with
    /// [`RunError::Leased`].
    pub async fn resume(
        &self,
        id: &str,
        services: &BTreeMap<String, String>,
    ) -> Result<Execution, RunError> {
        self.resume_with(id, services, Claiming::Free, None).await
    }

    async fn resume_with(
        &self,
        id: &str,
        services: &BTreeMap<String, String>,
        how: Claiming,
        inbox: Option<&mut mpsc::UnboundedReceiver<Control>>,
    ) -> Result<Execution, RunError> {
        // A finished execution or a definition that no longer loads is reported before the
        // lease is taken.
        self.load_resumable(id).await?;
        let (fence, until) = self.claim(id, how).await?;
        self.resume_claimed(id, fence, until, None, services, inbox)
            .await
    }

    /// Continues an execution whose lease this runner has just claimed with `fence`.
    /// `claimed` is its record as the claim returned it, if it did; otherwise it is read here.
    async fn resume_claimed(
        &self,
        id: &str,
        fence: Fence,
        until: u64,
        claimed: Option<StoredExecution>,
        services: &BTreeMap<String, String>,
        inbox: Option<&mut mpsc::UnboundedReceiver<Control>>,
    ) -> Result<Execution, RunError> {
        let lease = self.keep(id.into(), fence, until);
        // The record as of the claim, when no one else can write any more: it may have moved
        // on since any earlier read (or that read came from a cache that was behind).
        let loaded = match claimed {
            Some(stored) => self
                .decode(id, &stored)
                .and_then(|record| self.resumable(id, record)),
            None => self.load_resumable(id).await,
        };
        let (mut record, plan) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                drop(lease);
                self.release(id, fence).await;
                return Err(error);
            }
        };
        for (name, url) in services {
            record.execution.services.insert(name.clone(), url.clone());
        }
        if let Some(p) = &self.progress {
            p.resumed(&record.execution);
        }
        let actions = record.execution.resume(&plan, self.clock.now_ms());
        self.write_record(&record, fence, false).await?;
        self.drive(&mut record, &plan, actions, Stored::Leased(lease), inbox)
            .await?;
        Ok(record.execution)
    }

    async fn load_resumable(&self, id: &str) -> Result<(ExecutionRecord, Arc<Plan>), RunError> {
        let record = self.load(id).await?;
        self.resumable(id, record)
    }

    /// `record` with its compiled plan, if it can be resumed.
    fn resumable(
        &self,
        id: &str,
        mut record: ExecutionRecord,
    ) -> Result<(ExecutionRecord, Arc<Plan>), RunError> {
        not_final(id, &record)?;
        let plan = self.plan(id, &mut record.workflow)?;
        Ok((record, plan))
    }

    fn plan(&self, id: &str, workflow: &mut WorkflowSource) -> Result<Arc<Plan>, RunError> {
        self.plans
            .compile(workflow)
            .map_err(|error| RunError::Definition {
                id: id.to_string(),
                error: Box::new(error),
            })
    }

    pub async fn load(&self, id: &str) -> Result<ExecutionRecord, RunError> {
        let stored = self
            .store
            .load(id)
            .await?
            .ok_or_else(|| RunError::NotFound(id.to_string()))?;
        self.decode(id, &stored)
    }

    fn decode(&self, id: &str, stored: &StoredExecution) -> Result<ExecutionRecord, RunError> {
        serde_json::from_slice(&stored.body).map_err(|e| RunError::Corrupt {
            id: id.to_string(),
            message: e.to_string(),
        })
    }
}

/// Runs a long expression evaluation (see `expr::LONG_EVALUATIONS`) so that the runtime's
/// other tasks (request handling, other executions) go on meanwhile: on a multi-threaded
/// runtime the worker hands its queue to another thread first. A current-thread runtime
/// has nowhere else to run it.
fn off_the_async_workers(work: &mut dyn FnMut()) {
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if multi_threaded {
        tokio::task::block_in_place(work);
    } else {
        work();
    }
}

fn not_final(id: &str, record: &ExecutionRecord) -> Result<(), RunError> {
    let status = record.execution.status;
    if status.is_final() {
        return Err(RunError::NotRunning {
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
