//! Leases: released at the end, refused while a live owner holds one, taken over when it expires or its owner died, renewed, and fencing a runner that lost it.

use super::*;

#[tokio::test]
async fn a_finished_run_releases_its_lease() {
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::new(store.clone(), gated(10)).with_owner("me");
    let (workflow, plan) = source();
    let execution = runner
        .run(workflow, &plan, json!({}), bindings())
        .await
        .unwrap();
    assert_eq!(execution.status, Status::Completed);
    assert_eq!(store.lease(&execution.id).await.unwrap(), None);
    assert!(store.list_expired(u64::MAX, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn resuming_an_execution_a_live_owner_holds_is_refused() {
    let store = Arc::new(MemoryStore::new());
    let (id, _held) = stuck_execution(&store, "other-host/1/abc").await;
    let runner = Runner::new(store.clone(), gated(10)).with_owner("me");
    let err = runner.resume(&id, &BTreeMap::new()).await.unwrap_err();
    assert!(
        matches!(&err, RunError::Leased { owner, .. } if owner == "other-host/1/abc"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("other-host/1/abc") && message.contains("lease until"),
        "{message}"
    );
}

#[tokio::test]
async fn a_dead_owner_on_this_host_is_taken_over_at_once() {
    let store = Arc::new(MemoryStore::new());
    // A pid that cannot exist (above Linux's maximum), on this host.
    let dead = format!("{}/4999999/abc", owner_id().split('/').next().unwrap());
    let (id, stuck) = stuck_execution(&store, &dead).await;
    let runner = Runner::new(store.clone(), gated(10)).with_owner("me");
    let execution = runner.resume(&id, &BTreeMap::new()).await.unwrap();
    assert_eq!(execution.status, Status::Completed);
    // The original runner, still waiting on its call, now holds a stale fence.
    stuck.permits.add_permits(10);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, "completed");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over() {
    let store = Arc::new(MemoryStore::new());
    let (workflow, plan) = source();
    let execution = Execution::start(&plan, "e1".into(), json!({}), bindings(), 1_000).0;
    let record = ExecutionRecord {
        workflow,
        execution,
    };
    let writer = Runner::new(store.clone(), gated(0));
    store
        .create(&writer.stored(&record).unwrap(), "other-host/1/abc", 5_000)
        .await
        .unwrap();
    let clock = Arc::new(FixedClock(AtomicU64::new(4_000)));
    let runner = Runner::new(store.clone(), gated(10))
        .with_owner("me")
        .with_clock(clock.clone());
    assert!(matches!(
        runner.resume("e1", &BTreeMap::new()).await,
        Err(RunError::Leased { .. })
    ));
    clock.0.store(6_000, Ordering::SeqCst);
    let done = runner.resume("e1", &BTreeMap::new()).await.unwrap();
    assert_eq!(done.status, Status::Completed);
    assert!(matches!(
        runner.resume("e1", &BTreeMap::new()).await,
        Err(RunError::NotRunning { .. })
    ));
    assert!(matches!(
        runner.resume("nope", &BTreeMap::new()).await,
        Err(RunError::NotFound(_))
    ));
}

/// The two-step workflow run by `runner` on a task of its own, and its id once `store` has it:
/// on the memory store a run is first written when its checkpoint lag is up.
pub(super) async fn run_until_stored(
    runner: Runner,
    store: &MemoryStore,
) -> (
    tokio::task::JoinHandle<Result<Execution, RunError>>,
    Arc<str>,
) {
    let (workflow, plan) = source();
    let running =
        tokio::spawn(async move { runner.run(workflow, &plan, json!({}), bindings()).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(stored) = store.list(&Default::default()).await.unwrap().first() {
            return (running, stored.id.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "never stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_runner_that_was_fenced_out_stops() {
    let store = Arc::new(MemoryStore::new());
    let invoker = gated(0);
    let runner = Runner::new(store.clone(), invoker.clone())
        .with_owner("first")
        .with_lease(fast_leases());
    let (running, id) = run_until_stored(runner, &store).await;
    assert_eq!(invoker.calls.load(Ordering::SeqCst), 1);
    let lease = store.lease(&id).await.unwrap().unwrap();
    let claim = Claim {
        owner: "second",
        until_ms: u64::MAX,
        now_ms: 0,
        take_over: Some(lease.fence),
    };
    store.claim(&id, &claim).await.unwrap().unwrap();

    let outcome = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the fenced runner stops on its next renewal")
        .unwrap();
    assert!(
        matches!(&outcome, Err(RunError::LeaseLost { id: lost, .. }) if *lost == *id),
        "{outcome:?}"
    );
    assert_eq!(invoker.calls.load(Ordering::SeqCst), 1, "no further call");
    assert_eq!(store.load(&id).await.unwrap().unwrap().status, "running");
}

/// Milliseconds on tokio's clock, so that a test with paused time moves leases too.
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        1_000_000 + self.0.elapsed().as_millis() as u64
    }
}

#[tokio::test(start_paused = true)]
async fn one_runner_keeps_all_its_leases_renewed() {
    let store = Arc::new(MemoryStore::new());
    let invoker = gated(0);
    let clock = Arc::new(TokioClock(tokio::time::Instant::now()));
    let runner = Runner::new(store.clone(), invoker.clone())
        .with_owner("me")
        .with_clock(clock.clone())
        .with_lease(fast_leases());
    let (workflow, plan) = source();
    let plan = Arc::new(plan);
    for _ in 0..3 {
        let (runner, workflow, plan) = (runner.clone(), workflow.clone(), plan.clone());
        tokio::spawn(async move { runner.run(workflow, &plan, json!({}), bindings()).await });
    }
    while invoker.calls.load(Ordering::SeqCst) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids: Vec<String> = store
        .list(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id.to_string())
        .collect();
    let mut first = Vec::new();
    for id in &ids {
        first.push(store.lease(id).await.unwrap().unwrap().until_ms);
    }
    // Twice the lease's duration (on paused time: no real wait): without renewals every
    // lease would have run out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let now = clock.now_ms();
    for (id, first) in ids.iter().zip(first) {
        let lease = store.lease(id).await.unwrap().unwrap();
        assert_eq!(lease.owner, "me");
        assert!(
            lease.until_ms > first && lease.until_ms > now,
            "{id}: {lease:?}"
        );
    }
    assert!(store.list_expired(now, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn expired_executions_are_taken_over_in_one_claim() {
    let store = Arc::new(MemoryStore::new());
    let (workflow, plan) = source();
    let writer = Runner::new(store.clone(), gated(0));
    for (id, until) in [
        ("e1", 5_000),
        ("e2", 5_000),
        ("e3", 5_500),
        ("live", 60_000),
    ] {
        let execution = Execution::start(&plan, id.into(), json!({}), bindings(), 1_000).0;
        let record = ExecutionRecord {
            workflow: workflow.clone(),
            execution,
        };
        store
            .create(&writer.stored(&record).unwrap(), "other-host/1/abc", until)
            .await
            .unwrap();
    }
    let clock = Arc::new(FixedClock(AtomicU64::new(6_000)));
    let invoker = gated(10);
    let runner = Runner::new(store.clone(), invoker.clone())
        .with_owner("me")
        .with_clock(clock);
    let handles = runner.take_over_expired(10).await.unwrap();
    let mut ids: Vec<String> = handles.iter().map(|h| h.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    for handle in handles {
        assert_eq!(handle.join().await.unwrap().status, Status::Completed);
    }
    // Both steps of each, sent by this runner: the in-flight first one again, then the second.
    assert_eq!(invoker.calls.load(Ordering::SeqCst), 6);
    assert!(runner.take_over_expired(10).await.unwrap().is_empty());
    assert_eq!(store.load("live").await.unwrap().unwrap().status, "running");
    assert_eq!(
        store.lease("live").await.unwrap().unwrap().owner,
        "other-host/1/abc"
    );
}
