//! Batching, ordering and failure rules against an instrumented store, and the shared suite
//! through the wrapper over SQLite.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::*;
use crate::conformance::execution;
use crate::testing::Fixture;
use crate::{MemoryStore, SqliteStore};

async fn fresh() -> Fixture<GroupCommit> {
    let sqlite = SqliteStore::open_in_memory().unwrap();
    Fixture::new(GroupCommit::new(Arc::new(sqlite), 1), ())
}

crate::conformance::suite!(fresh);

/// A memory store that records the ids of every batch it is given, can hold batches until
/// the test lets them through, and fails (or panics on) batches naming a chosen id.
#[derive(Default)]
struct Counting {
    memory: MemoryStore,
    batches: Mutex<Vec<Vec<String>>>,
    /// The task each batch was written from.
    tasks: Mutex<Vec<Option<tokio::task::Id>>>,
    /// `Some` holds every batch until it gets a permit.
    gate: Option<Semaphore>,
    fail_on: Option<&'static str>,
    panic_on: Option<&'static str>,
}

impl Counting {
    fn gated() -> Self {
        Counting {
            gate: Some(Semaphore::new(0)),
            ..Counting::default()
        }
    }

    fn batches(&self) -> Vec<Vec<String>> {
        self.batches.lock().unwrap().clone()
    }

    fn open_gate(&self) {
        if let Some(gate) = &self.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    /// Waits until `n` batches have reached the store.
    async fn reached(&self, n: usize) {
        while self.batches.lock().unwrap().len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[async_trait]
impl ExecutionStore for Counting {
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let ids: Vec<String> = batch.iter().map(|w| w.id().to_owned()).collect();
        self.tasks.lock().unwrap().push(tokio::task::try_id());
        self.batches.lock().unwrap().push(ids.clone());
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if ids.iter().any(|id| Some(id.as_str()) == self.panic_on) {
            panic!("the store panicked");
        }
        if ids.iter().any(|id| Some(id.as_str()) == self.fail_on) {
            return Err(StoreError::backend("counting", "the connection was lost"));
        }
        self.memory.write(batch).await
    }

    fn changes(&self) -> &Arc<crate::Changes> {
        self.memory.changes()
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, StoreError> {
        self.memory.load(id).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<StoredExecution>, StoreError> {
        self.memory.list(filter).await
    }
}

#[async_trait]
impl LeaseStore for Counting {
    async fn lease(&self, id: &str) -> Result<Option<Lease>, StoreError> {
        self.memory.lease(id).await
    }

    async fn claim(&self, id: &str, claim: &Claim<'_>) -> Result<Option<Fence>, StoreError> {
        self.memory.claim(id, claim).await
    }

    async fn renew(&self, id: &str, fence: Fence, until_ms: u64) -> Result<(), StoreError> {
        self.memory.renew(id, fence, until_ms).await
    }

    async fn release(&self, id: &str, fence: Fence) -> Result<(), StoreError> {
        self.memory.release(id, fence).await
    }

    async fn list_expired(&self, now_ms: u64, limit: usize) -> Result<Vec<Lease>, StoreError> {
        self.memory.list_expired(now_ms, limit).await
    }

    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, Fence)>, StoreError> {
        self.memory
            .claim_expired(owner, now_ms, until_ms, limit)
            .await
    }
}

fn wrap(inner: &Arc<Counting>, in_flight: usize) -> Arc<GroupCommit> {
    Arc::new(GroupCommit::new(inner.clone(), in_flight))
}

/// A gated store holding a running execution for each of `ids`, created past the gate.
async fn gated_holding(ids: &[String]) -> Arc<Counting> {
    let inner = Arc::new(Counting::gated());
    for id in ids {
        inner
            .memory
            .create(&execution(id, "wf", "running", 1), "o", 10)
            .await
            .unwrap();
    }
    inner
}

fn save(id: &str, fence: Fence, status: &str) -> Write {
    Write::Save {
        execution: execution(id, "wf", status, 1),
        fence,
        release: false,
    }
}

fn create(id: &str) -> Write {
    Write::Create {
        execution: execution(id, "wf", "running", 1),
        owner: "o".into(),
        lease_until_ms: 10,
    }
}

#[tokio::test]
async fn concurrent_saves_share_one_commit_and_get_their_own_outcomes() {
    let ids: Vec<String> = (0..20).map(|i| format!("e{i:02}")).collect();
    let inner = gated_holding(&ids).await;
    let group = wrap(&inner, 1);

    let mut saves = JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        // Every fifth writer holds a stale fence.
        let fence = if i % 5 == 4 { 7 } else { 1 };
        let (group, id) = (group.clone(), id.clone());
        saves.spawn(async move {
            let outcome = group
                .save(&execution(&id, "wf", "completed", 1), fence)
                .await;
            (id, outcome)
        });
        if i == 0 {
            // The first goes out alone and holds the store; the rest queue behind it.
            inner.reached(1).await;
        }
    }
    // Let every writer reach the queue before the first commit finishes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    inner.open_gate();
    while let Some(done) = saves.join_next().await {
        let (id, outcome) = done.unwrap();
        let stale = ids.iter().position(|i| *i == id).unwrap() % 5 == 4;
        match outcome {
            Ok(()) if !stale => {}
            Err(StoreError::Fenced { fence: 7, .. }) if stale => {}
            other => panic!("{id}: {other:?}"),
        }
        let status = inner.memory.load(&id).await.unwrap().unwrap().status;
        assert_eq!(status, if stale { "running" } else { "completed" });
    }

    let batches = inner.batches();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[0], ["e00"]);
    let mut rest = batches[1].clone();
    rest.sort();
    assert_eq!(rest, ids[1..]);
}

#[tokio::test]
async fn writes_to_one_execution_go_in_separate_batches_in_order() {
    let inner = Arc::new(Counting::default());
    // Several batches may be in flight; order per execution must still hold.
    let group = wrap(&inner, 4);
    let outcomes = group
        .write(vec![
            create("x"),
            save("x", 1, "first"),
            save("x", 1, "second"),
            create("y"),
            Write::Save {
                execution: execution("x", "wf", "completed", 1),
                fence: 1,
                release: true,
            },
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, Ok(1))), "{outcomes:?}");
    assert_eq!(
        inner.batches(),
        [vec!["x"], vec!["x"], vec!["x", "y"], vec!["x"]]
    );
    assert_eq!(inner.load("x").await.unwrap().unwrap().status, "completed");
    assert_eq!(inner.lease("x").await.unwrap(), None);
    assert!(inner.lease("y").await.unwrap().is_some());
}

#[tokio::test]
async fn a_failed_batch_fails_every_write_in_it_and_the_next_batch_still_runs() {
    let inner = Arc::new(Counting {
        fail_on: Some("poison"),
        ..Counting::gated()
    });
    let group = wrap(&inner, 1);
    let first = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .create(&execution("a", "wf", "running", 1), "o", 10)
                .await
        }
    });
    inner.reached(1).await;
    let mut queued = JoinSet::new();
    for id in ["b", "poison", "c"] {
        let group = group.clone();
        queued.spawn(async move {
            group
                .create(&execution(id, "wf", "running", 1), "o", 10)
                .await
        });
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    inner.open_gate();

    assert_eq!(first.await.unwrap().unwrap(), 1);
    while let Some(done) = queued.join_next().await {
        match done.unwrap() {
            Err(StoreError::Backend { backend, message }) => {
                assert_eq!(backend, "counting");
                assert_eq!(message, "the connection was lost");
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(inner.batches().len(), 2);
    assert_eq!(inner.load("b").await.unwrap(), None);
    assert_eq!(
        group
            .create(&execution("d", "wf", "running", 1), "o", 10)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_panicking_batch_is_reported_and_the_writer_carries_on() {
    let inner = Arc::new(Counting {
        panic_on: Some("boom"),
        ..Counting::default()
    });
    let group = wrap(&inner, 1);
    let err = group
        .create(&execution("boom", "wf", "running", 1), "o", 10)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the write was lost"), "{err}");
    assert_eq!(
        group
            .create(&execution("fine", "wf", "running", 1), "o", 10)
            .await
            .unwrap(),
        1
    );
}

#[test]
fn without_its_writer_a_write_fails_instead_of_hanging() {
    let inner = Arc::new(Counting::default());
    let writer_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let group = writer_runtime.block_on(async { GroupCommit::new(inner.clone(), 1) });
    // Shutting the runtime down drops the writer task with it.
    drop(writer_runtime);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Two writes: a lone one would not need the writer.
    let err = runtime
        .block_on(group.write(vec![create("a"), create("b")]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("the writer task has stopped"), "{err}");
    assert!(inner.batches().is_empty());
}

#[tokio::test]
async fn a_lone_write_is_committed_from_its_own_task_and_later_writes_wait_for_it() {
    let inner = Arc::new(Counting::gated());
    let group = wrap(&inner, 4);
    let first = tokio::spawn({
        let group = group.clone();
        async move {
            group
                .create(&execution("x", "wf", "first", 1), "o", 10)
                .await
        }
    });
    inner.reached(1).await;
    let first_task = first.id();
    assert_eq!(inner.tasks.lock().unwrap()[0], Some(first_task));

    // A second write to the same execution, queued while the first is still committing,
    // must not reach the store before it.
    let second = tokio::spawn({
        let group = group.clone();
        async move { group.save(&execution("x", "wf", "second", 1), 1).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(inner.batches().len(), 1);

    inner.open_gate();
    assert_eq!(first.await.unwrap().unwrap(), 1);
    second.await.unwrap().unwrap();
    assert_eq!(inner.batches(), [vec!["x"], vec!["x"]]);
    assert_ne!(inner.tasks.lock().unwrap()[1], Some(first_task));
    assert_eq!(inner.load("x").await.unwrap().unwrap().status, "second");
}

/// While a batch commits, writes that arrive one after another within a few turns of the
/// runtime are sent as one batch, though there is room to send each on its own.
#[tokio::test]
async fn writes_arriving_while_a_batch_commits_are_gathered_into_one() {
    let ids: Vec<String> = (0..6).map(|i| format!("e{i}")).collect();
    let inner = gated_holding(&ids).await;
    let group = wrap(&inner, 2);
    let mut saves = JoinSet::new();
    let spawn_save = |saves: &mut JoinSet<_>, id: &str, turns: usize| {
        let (group, id) = (group.clone(), id.to_owned());
        saves.spawn(async move {
            for _ in 0..turns {
                tokio::task::yield_now().await;
            }
            group.save(&execution(&id, "wf", "completed", 1), 1).await
        });
    };
    // e0 goes out alone and holds the store; e1 becomes the writer's first batch in flight.
    spawn_save(&mut saves, "e0", 0);
    inner.reached(1).await;
    spawn_save(&mut saves, "e1", 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
    // The next four arrive a turn apart: room for a second batch the whole time.
    for (turns, id) in ids[2..].iter().enumerate() {
        spawn_save(&mut saves, id, turns);
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    inner.open_gate();
    while let Some(done) = saves.join_next().await {
        done.unwrap().unwrap();
    }

    let batches = inner.batches();
    assert_eq!(batches.len(), 3, "{batches:?}");
    assert_eq!(batches[..2], [["e0"], ["e1"]]);
    let mut last = batches[2].clone();
    last.sort();
    assert_eq!(last, ids[2..], "{batches:?}");
}
