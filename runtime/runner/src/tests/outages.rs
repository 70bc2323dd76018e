//! A store that fails for a while: saves are tried again, and the execution goes on once
//! the store is back, as long as that is within the lease.

use orca_store::{ListFilter, SqliteStore, StoredExecution, Write, WriteOutcomes};

use super::*;

/// A durable store whose writes fail (as a lost connection does) while `failing` is above
/// zero, one write at a time.
struct Flaky {
    store: SqliteStore,
    failing: AtomicUsize,
    failed: AtomicUsize,
}

#[async_trait]
impl ExecutionStore for Flaky {
    async fn write(&self, batch: Vec<Write>) -> WriteOutcomes {
        let failing = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if failing.is_ok() {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(orca_store::StoreError::Backend {
                backend: "flaky",
                message: "connection reset by peer".into(),
            });
        }
        self.store.write(batch).await
    }

    async fn load(&self, id: &str) -> Result<Option<StoredExecution>, orca_store::StoreError> {
        self.store.load(id).await
    }

    async fn list(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<StoredExecution>, orca_store::StoreError> {
        self.store.list(filter).await
    }

    fn changes(&self) -> &Arc<orca_store::Changes> {
        self.store.changes()
    }
}

#[async_trait]
impl LeaseStore for Flaky {
    async fn lease(&self, id: &str) -> Result<Option<orca_store::Lease>, orca_store::StoreError> {
        self.store.lease(id).await
    }

    async fn claim(
        &self,
        id: &str,
        claim: &Claim<'_>,
    ) -> Result<Option<orca_store::Fence>, orca_store::StoreError> {
        self.store.claim(id, claim).await
    }

    async fn renew(
        &self,
        id: &str,
        fence: orca_store::Fence,
        until_ms: u64,
    ) -> Result<(), orca_store::StoreError> {
        self.store.renew(id, fence, until_ms).await
    }

    async fn release(
        &self,
        id: &str,
        fence: orca_store::Fence,
    ) -> Result<(), orca_store::StoreError> {
        self.store.release(id, fence).await
    }

    async fn list_expired(
        &self,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<orca_store::Lease>, orca_store::StoreError> {
        self.store.list_expired(now_ms, limit).await
    }

    async fn claim_expired(
        &self,
        owner: &str,
        now_ms: u64,
        until_ms: u64,
        limit: usize,
    ) -> Result<Vec<(StoredExecution, orca_store::Fence)>, orca_store::StoreError> {
        self.store
            .claim_expired(owner, now_ms, until_ms, limit)
            .await
    }
}

fn flaky() -> Arc<Flaky> {
    Arc::new(Flaky {
        store: SqliteStore::open_in_memory().unwrap(),
        failing: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    })
}

#[tokio::test]
async fn saves_that_fail_for_a_moment_are_tried_again_and_the_execution_completes() {
    let store = flaky();
    let invoker = gated(0);
    let runner = Runner::new(store.clone(), invoker.clone());
    let (workflow, plan) = source();
    // Created, then the next three saves fail: those of the calls' outcomes.
    let handle = runner
        .start(workflow, Arc::new(plan), json!({}), bindings())
        .await
        .unwrap();
    store.failing.store(3, Ordering::SeqCst);
    invoker.permits.add_permits(2);
    let done = handle.join().await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert!(
        store.failed.load(Ordering::SeqCst) >= 3,
        "the outage happened"
    );
    let stored = store.load(&done.id).await.unwrap().unwrap();
    assert_eq!(stored.status, "completed");
}

#[tokio::test(start_paused = true)]
async fn a_store_down_for_longer_than_the_lease_gives_the_execution_up() {
    let store = flaky();
    let invoker = gated(0);
    let runner = Runner::new(store.clone(), invoker.clone()).with_lease(fast_leases());
    let (workflow, plan) = source();
    let handle = runner
        .start(workflow, Arc::new(plan), json!({}), bindings())
        .await
        .unwrap();
    store.failing.store(usize::MAX, Ordering::SeqCst);
    invoker.permits.add_permits(2);
    let stopped = handle.join().await;
    assert!(stopped.is_err(), "{stopped:?}");
}
