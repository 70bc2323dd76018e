//! Group commit: the writes of many executions, gathered into one batch for the backend.
//!
//! A durable write costs one commit (an fsync, a round trip to the database) whether it
//! carries one record or hundreds, so one commit per write caps a store at a few hundred or a
//! few thousand writes a second, however many executions run at once. [`GroupCommit`] sits
//! in front of a store and hands every write to one writer task. While a batch is being
//! committed, the writes that arrive queue up; as soon as there is room, the writer sends all
//! of them down as the next batch ([`ExecutionStore::write`]) and answers each caller with its
//! own outcome. A lone write waits for nobody: when nothing is queued or committing, it is
//! committed from the caller's own task.
//!
//! Order per execution is kept: two writes to one execution never share a batch, and the
//! second waits until the batch carrying the first has committed, even when several batches
//! are in flight. Everything but writes goes straight to the inner store.

use std::collections::HashSet;
use std::future::{self, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::FutureExt;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{RwLock, mpsc, oneshot};

use super::{
    Claim, ExecutionStore, Fence, Lease, LeaseStore, ListFilter, StoreError, StoredExecution,
    Write, WriteOutcomes,
};

/// The most writes one batch carries. Bounds the size of a transaction (the locks it holds,
/// the arrays of a PostgreSQL statement, a Redis pipeline) and so how long its first caller
/// waits behind the others; larger batches gain little once the commit is amortized.
const MAX_BATCH: usize = 512;

/// While a batch is committing and there is room for another, the writer yields to the
/// runtime up to this many times before it sends the writes queued so far, so that the
/// executions about to write (their previous write just answered, their next call just
/// answered) join the batch instead of starting one of their own. Under load that makes
/// fewer, larger batches: PostgreSQL spends far less per write in a larger one (8 saves per
/// call ran about 5 times the saves a second of 1 per call, bench/FINDINGS.md), and the
/// machine's cores are what run out at high concurrency. Measured at 64 concurrent
/// workflows: PostgreSQL and redis+postgresql 5 to 18 % faster, Redis about 5 %. A yield
/// costs about a microsecond, and an idle store (a write with nothing in flight) never
/// waits.
const GATHER_YIELDS: usize = 8;

/// Queued writes that make a batch worth sending without gathering more.
const ENOUGH_TO_SEND: usize = 4;

/// How errors of the wrapper itself name their source.
const BACKEND: &str = "state store writer";

/// One caller's write, waiting for a batch.
struct Pending {
    write: Write,
    reply: oneshot::Sender<Result<Fence, StoreError>>,
}

/// An [`ExecutionStore`] that commits concurrent writes together; see the module docs.
pub struct GroupCommit {
    inner: Arc<dyn ExecutionStore>,
    queue: mpsc::UnboundedSender<Pending>,
    /// Writes handed to this store and not answered yet, queued or not.
    outstanding: Arc<AtomicUsize>,
    /// Shared by every batch the writer commits, held alone by a write that goes straight
    /// to the inner store, so that neither overtakes the other.
    lane: Arc<RwLock<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts the writer task for `inner` (so this must run inside a tokio runtime), allowing
    /// up to `in_flight` batches to be committing at once: 1 for a store with a single
    /// connection (SQLite), a few for one with a pool, so that a batch is being gathered
    /// while another waits for its commit.
    pub fn new(inner: Arc<dyn ExecutionStore>, in_flight: usize) -> Self {
        let (queue, requests) = mpsc::unbounded_channel();
        let lane = Arc::new(RwLock::new(()));
        tokio::spawn(writer(
            Arc::clone(&inner),
            requests,
            in_flight.max(1),
            lane.clone(),
        ));
        GroupCommit {
            inner,
            queue,
            outstanding: Arc::default(),
            lane,
        }
    }

    /// Commits a write from the caller's own task; see [`ExecutionStore::write`] below.
    async fn commit_alone(&self, write: Write) -> Result<Fence, StoreError> {
        match AssertUnwindSafe(super::write_one(&*self.inner, write))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!("a state store write panicked; it is reported lost");
                Err(lost())
            }
        }
    }
}

/// Counts a caller's writes as outstanding until it has its answer (or gives up waiting).
struct Outstanding<'a> {
    counter: &'a AtomicUsize,
    writes: usize,
    /// How many other writes were outstanding when these were added.
    before: usize,
}

impl<'a> Outstanding<'a> {
    fn add(counter: &'a AtomicUsize, writes: usize) -> Self {
        let before = counter.fetch_add(writes, Ordering::AcqRel);
        Outstanding {
            counter,
            writes,
            before,
        }
    }
}

impl Drop for Outstanding<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.writes, Ordering::AcqRel);
    }
}

fn lost() -> StoreError {
    StoreError::backend(
        BACKEND,
        "the write was lost: the batch carrying it panicked or its runtime shut down, so \
         whether it committed is unknown",
    )
}

/// A batch being committed. The writer polls these itself rather than spawning a task per
/// batch, which would cost every write one more hand-off between threads.
struct InFlight {
    /// The executions it writes (see [`writer`]).
    ids: Vec<String>,
    commit: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Polls every batch in flight; the first one done gives back its executions. A batch that
/// panics counts as done: dropping it drops its callers' reply channels, which tells them.
fn poll_done(in_flight: &mut Vec<InFlight>, cx: &mut Context<'_>) -> Poll<Vec<String>> {
    for index in 0..in_flight.len() {
        let commit = &mut in_flight[index].commit;
        match panic::catch_unwind(AssertUnwindSafe(|| commit.as_mut().poll(cx))) {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(())) => return Poll::Ready(in_flight.swap_remove(index).ids),
            Err(_) => {
                tracing::error!("a state store batch panicked; its writes are reported lost");
                return Poll::Ready(in_flight.swap_remove(index).ids);
            }
        }
    }
    Poll::Pending
}

/// The writer task: gathers queued writes into batches and commits them. It ends once every
/// [`GroupCommit`] handle is gone and the last batch has been answered.
async fn writer(
    inner: Arc<dyn ExecutionStore>,
    mut requests: mpsc::UnboundedReceiver<Pending>,
    max_in_flight: usize,
    lane: Arc<RwLock<()>>,
) {
    let mut in_flight: Vec<InFlight> = Vec::with_capacity(max_in_flight);
    // The executions the batches in flight write, to keep a later write to one of them out
    // of the next batch until that batch has committed.
    let mut busy: HashSet<String> = HashSet::new();
    // Received but not sent yet: the head of the queue.
    let mut next: Option<Pending> = None;
    let mut open = true;
    loop {
        let to_send = next.is_some() || !requests.is_empty();
        if to_send && !in_flight.is_empty() && in_flight.len() < max_in_flight {
            gather(&requests).await;
        }
        while in_flight.len() < max_in_flight {
            if next.is_none() {
                match requests.try_recv() {
                    Ok(pending) => next = Some(pending),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            let Some(first) = next.take_if(|p| !busy.contains(p.write.id())) else {
                break;
            };
            let mut ids = vec![first.write.id().to_owned()];
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(pending) => {
                        let id = pending.write.id();
                        if busy.contains(id) || ids.iter().any(|i| i == id) {
                            next = Some(pending);
                            break;
                        }
                        ids.push(id.to_owned());
                        batch.push(pending);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            busy.extend(ids.iter().cloned());
            in_flight.push(InFlight {
                ids,
                commit: Box::pin(commit(Arc::clone(&inner), batch, lane.clone())),
            });
        }
        if !open && next.is_none() && in_flight.is_empty() {
            return;
        }
        let committing = !in_flight.is_empty();
        let receiving = open && next.is_none() && in_flight.len() < max_in_flight;
        tokio::select! {
            done = future::poll_fn(|cx| poll_done(&mut in_flight, cx)), if committing => {
                for id in done {
                    busy.remove(&id);
                }
            }
            received = requests.recv(), if receiving => {
                match received {
                    Some(pending) => next = Some(pending),
                    None => open = false,
                }
            }
            else => return,
        }
    }
}

/// Gives writers about to write a moment to queue; see [`GATHER_YIELDS`].
async fn gather(requests: &mpsc::UnboundedReceiver<Pending>) {
    for _ in 0..GATHER_YIELDS {
        if requests.len() >= ENOUGH_TO_SEND {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Commits one batch and answers its callers.
async fn commit(inner: Arc<dyn ExecutionStore>, batch: Vec<Pending>, lane: Arc<RwLock<()>>) {
    // After a write that went straight to the store, which may name one of these executions.
    let _shared = lane.read().await;
    let (writes, replies): (Vec<Write>, Vec<_>) =
        batch.into_iter().map(|p| (p.write, p.reply)).unzip();
    let count = writes.len();
    let failure = match inner.write(writes).await {
        Ok(outcomes) if outcomes.len() == count => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that stopped waiting does not need its answer.
                let _ = reply.send(outcome);
            }
            return;
        }
        Ok(outcomes) => (
            BACKEND,
            format!(
                "the store answered {} outcomes for a batch of {count} writes",
                outcomes.len()
            ),
        ),
        Err(StoreError::Backend { backend, message }) => (backend, message),
        Err(other) => (BACKEND, other.to_string()),
    };
    let (backend, message) = failure;
    for reply in replies {
        let _ = reply.send(Err(StoreError::Backend {
            backend,
            message: message.clone(),
        }));
    }
}

#[async_trait]
impl ExecutionStore for GroupCommit {
    /// Queues each write for the writer task. A caller's own batch may be split across
    /// batches of the inner store, so a failure of one of those comes back as the outcome
    /// of each of its writes rather than as an error for the whole call.
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let counted = Outstanding::add(&self.outstanding, batch.len());
        // A lone write that finds the store idle (nothing queued, nothing committing) has
        // nothing to be grouped with: it is committed from the caller's own task, sparing it
        // the two hand-offs to the writer task and back, which cost about as much as a commit.
        let batch = match <[Write; 1]>::try_from(batch) {
            Ok([write]) if counted.before == 0 => match self.lane.try_write() {
                Ok(_alone) => return Ok(vec![self.commit_alone(write).await]),
                Err(_) => vec![write],
            },
            Ok(one) => Vec::from(one),
            Err(batch) => batch,
        };
        let mut replies = Vec::with_capacity(batch.len());
        for write in batch {
            let (reply, outcome) = oneshot::channel();
            self.queue.send(Pending { write, reply }).map_err(|_| {
                StoreError::backend(
                    BACKEND,
                    "the writer task has stopped (its tokio runtime shut down); nothing was \
                     written",
                )
            })?;
            replies.push(outcome);
        }
        let mut outcomes = Vec::with_capacity(replies.len());
        for outcome in replies {
            outcomes.push(outcome.await.map_err(|_| lost())?);
        }
        Ok(outcomes)
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        self.inner.load(id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        self.inner.list(filter).await
    }

    async fn flush(&self) {
        self.inner.flush().await
    }

    fn changes(&self) -> &Arc<super::Changes> {
        self.inner.changes()
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    fn keeps_records(&self) -> bool {
        self.inner.keeps_records()
    }
}

#[async_trait]
impl LeaseStore for GroupCommit {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        self.inner.lease(id).await
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        self.inner.claim(id, claim).await
    }

    async fn renew(&self, id: &str, fence: Fence, lease_until_ms: u64) -> Result<(), StoreError> {
        self.inner.renew(id, fence, lease_until_ms).await
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        self.inner.release(id, fence).await
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.inner.list_expired(now_ms, limit).await
    }

    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        self.inner
            .claim_expired(owner, now_ms, until_ms, limit)
            .await
    }
}

#[cfg(test)]
mod tests;
