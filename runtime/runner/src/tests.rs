//! The runner's lease handling, on the memory store with a scripted invoker: who may resume,
//! and that a runner which was fenced out stops instead of writing on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use tokio::sync::Semaphore;

use super::*;
use orca_core::definition::{DefinitionSet, Source};
use orca_core::engine::{Bindings, Event, Status, Target};
use orca_core::invoke::{Failure, Headers, Request, Response};
use orca_core::plan;
use orca_store::{Claim, LeaseStore, MemoryStore};

const WORKFLOW: &str = r#"apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: two-steps
spec:
  steps:
    - name: first
      api: svc
      endpoint: /first
      method: POST
    - name: second
      api: svc
      endpoint: /second
      method: POST
"#;

/// Answers 200 to every call once a permit is available; counts the calls.
struct Gated {
    permits: Semaphore,
    calls: AtomicUsize,
}

#[async_trait]
impl Invoker for Gated {
    async fn invoke(&self, _request: &Request, _attempt: u32) -> Result<Response, Failure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.permits
            .acquire()
            .await
            .expect("the semaphore stays open")
            .forget();
        Ok(Response {
            status: 200,
            headers: Headers::default(),
            body: json!({"ok": true}).into(),
        })
    }
}

struct FixedClock(AtomicU64);

impl Clock for FixedClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn source() -> (WorkflowSource, Plan) {
    source_of(WORKFLOW.into())
}

fn source_of(yaml: String) -> (WorkflowSource, Plan) {
    let sources = vec![Source {
        name: "wf.yaml".into(),
        text: yaml,
    }];
    let set = DefinitionSet::load(sources.clone()).unwrap();
    let plan = plan::compile(&set, None).unwrap();
    let workflow = WorkflowSource {
        name: plan.workflow_id.clone(),
        sources: sources.into(),
    };
    (workflow, plan)
}

fn bindings() -> Bindings {
    Bindings {
        tenant: "default".into(),
        services: BTreeMap::from([("svc".to_string(), "http://svc.test".to_string())]),
        components: BTreeMap::new(),
    }
}

fn gated(permits: usize) -> Arc<Gated> {
    Arc::new(Gated {
        permits: Semaphore::new(permits),
        calls: AtomicUsize::new(0),
    })
}

fn fast_leases() -> LeaseSettings {
    LeaseSettings {
        duration: Duration::from_millis(300),
        renew_every: Duration::from_millis(50),
    }
}

/// Starts an execution on `store` whose first call blocks; returns its id once it is stored
/// and the call has been made.
async fn stuck_execution(store: &Arc<MemoryStore>, owner: &str) -> (String, Arc<Gated>) {
    let invoker = gated(0);
    let runner = Runner::new(store.clone(), invoker.clone())
        .with_owner(owner)
        .with_lease(fast_leases());
    let (workflow, plan) = source();
    let handle = runner
        .start(workflow, plan, json!({}), bindings())
        .await
        .unwrap();
    for _ in 0..200 {
        if invoker.calls.load(Ordering::SeqCst) > 0 {
            return (handle.id.clone(), invoker);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the execution never called its first step");
}

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
async fn run_until_stored(
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

#[test]
fn a_record_written_with_the_shared_sources_json_reads_back_the_same() {
    let (workflow, plan) = source();
    let (execution, _) = Execution::start(&plan, "e1".into(), json!({"n": 1}), bindings(), 5);
    let record = ExecutionRecord {
        workflow: workflow.clone(),
        execution,
    };
    // The first write makes the sources' JSON; the second reuses it.
    let first = serde_json::to_vec(&record).unwrap();
    let second = serde_json::to_vec(&record).unwrap();
    assert_eq!(first, second);
    let back: ExecutionRecord = serde_json::from_slice(&second).unwrap();
    assert_eq!(back.workflow, workflow);
    assert_eq!(back.workflow.sources[0].text, WORKFLOW);
    assert_eq!(back.execution, record.execution);
    // As plain JSON too, as the API shows it.
    let value = serde_json::to_value(&record).unwrap();
    assert_eq!(value["workflow"]["sources"][0]["text"], WORKFLOW);
}

/// Counts what it is told; compares changes only if asked to.
#[derive(Default)]
struct Counting {
    compares: bool,
    started: AtomicUsize,
    changed: AtomicUsize,
    finished: AtomicUsize,
}

impl orca_core::progress::Progress for Counting {
    fn started(&self, _: &Execution) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn resumed(&self, _: &Execution) {}
    fn changed(&self, _: &Plan, before: &Execution, after: &Execution) {
        assert_ne!(before, after, "an event changes the record");
        self.changed.fetch_add(1, Ordering::SeqCst);
    }
    fn finished(&self, _: &Execution) {
        self.finished.fetch_add(1, Ordering::SeqCst);
    }
    fn compares_changes(&self) -> bool {
        self.compares
    }
}

#[tokio::test]
async fn only_observers_that_compare_records_are_shown_each_change() {
    let comparing = Arc::new(Counting {
        compares: true,
        ..Counting::default()
    });
    let counting = Arc::new(Counting::default());
    for observer in [&comparing, &counting] {
        let runner = Runner::new(Arc::new(MemoryStore::new()), gated(10))
            .with_progress(observer.clone() as Arc<dyn orca_core::progress::Progress>);
        let (workflow, plan) = source();
        runner
            .run(workflow, &plan, json!({}), bindings())
            .await
            .unwrap();
    }
    // Two steps, each answered: two events.
    assert_eq!(comparing.changed.load(Ordering::SeqCst), 2);
    assert_eq!(counting.changed.load(Ordering::SeqCst), 0);
    for observer in [&comparing, &counting] {
        assert_eq!(observer.started.load(Ordering::SeqCst), 1);
        assert_eq!(observer.finished.load(Ordering::SeqCst), 1);
    }
    let both = orca_core::progress::Both(Counting::default(), orca_metrics::Metrics::new());
    assert!(!orca_core::progress::Progress::compares_changes(&both));
}

/// Answers every call at once; notes how many executions the store holds when `first` is
/// called, and what it holds for step `first` when `second` is called.
struct Peeking {
    store: Arc<dyn ExecutionStore>,
    stored_when_first_called: std::sync::Mutex<Option<usize>>,
    first_when_second_called: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl Invoker for Peeking {
    async fn invoke(&self, request: &Request, _attempt: u32) -> Result<Response, Failure> {
        if let Request::Http(http) = request
            && http.url.ends_with("/first")
        {
            let stored = self.store.list(&Default::default()).await.unwrap();
            *self.stored_when_first_called.lock().unwrap() = Some(stored.len());
        }
        if let Request::Http(http) = request
            && http.url.ends_with("/second")
        {
            let steps = stored_steps(&*self.store).await;
            let first = steps.first().map_or("not stored", String::as_str);
            *self.first_when_second_called.lock().unwrap() = Some(first.to_string());
        }
        Ok(Response {
            status: 200,
            headers: Headers::default(),
            body: json!({"ok": true}).into(),
        })
    }
}

/// How many executions the store held when step `first` was called, and what it held for
/// step `first` when step `second` was called.
async fn stored_when_called(store: Arc<dyn ExecutionStore>) -> (usize, String) {
    let invoker = Arc::new(Peeking {
        store: store.clone(),
        stored_when_first_called: Default::default(),
        first_when_second_called: Default::default(),
    });
    let (workflow, plan) = source();
    let done = Runner::new(store, invoker.clone())
        .run(workflow, &plan, json!({}), bindings())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    let executions = *invoker.stored_when_first_called.lock().unwrap();
    let seen = invoker.first_when_second_called.lock().unwrap().clone();
    (
        executions.expect("step first was called"),
        seen.expect("step second was called"),
    )
}

#[tokio::test]
async fn a_durable_store_has_the_checkpoint_before_the_next_call_and_memory_does_not_wait() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = orca_store::open(&orca_store::StoreConfig::Sqlite(dir.path().join("e.db")))
        .await
        .unwrap();
    assert!(sqlite.is_durable());
    assert_eq!(
        stored_when_called(sqlite).await,
        (1, "completed".to_string())
    );

    // Nothing in memory survives a crash, so a call goes out before the write that records
    // it; a run shorter than the checkpoint lag is written once, when it ends.
    let memory: Arc<dyn ExecutionStore> = Arc::new(MemoryStore::new());
    assert!(!memory.is_durable());
    assert_eq!(
        stored_when_called(memory.clone()).await,
        (0, "not stored".to_string())
    );
    let stored = memory.list(&Default::default()).await.unwrap();
    assert_eq!(
        stored[0].status, "completed",
        "the last checkpoint still lands"
    );
}

#[tokio::test]
async fn the_lease_renewer_lets_the_store_go_as_soon_as_its_runners_are_gone() {
    let store = Arc::new(MemoryStore::new());
    let runner = Runner::new(store.clone(), gated(10));
    let (workflow, plan) = source();
    runner
        .run(workflow, &plan, json!({}), bindings())
        .await
        .unwrap();
    // The renewer (started by the run) holds the store too, and wakes every 10 s.
    assert!(Arc::strong_count(&store) > 1);
    drop(runner);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&store) > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store is still held"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The status of each step in the one execution `store` holds, as its checkpoint says; none
/// while it holds none.
async fn stored_steps(store: &dyn ExecutionStore) -> Vec<String> {
    let stored = store.list(&Default::default()).await.unwrap();
    let Some(stored) = stored.first() else {
        return Vec::new();
    };
    let record: serde_json::Value = serde_json::from_slice(&stored.body).unwrap();
    record["execution"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["status"].as_str().unwrap().to_string())
        .collect()
}

/// Answers every call at once, noting what the store held for each step when it was called.
struct Recording {
    store: Arc<dyn ExecutionStore>,
    seen: std::sync::Mutex<Vec<Vec<String>>>,
}

#[async_trait]
impl Invoker for Recording {
    async fn invoke(&self, _request: &Request, _attempt: u32) -> Result<Response, Failure> {
        let steps = stored_steps(&*self.store).await;
        self.seen.lock().unwrap().push(steps);
        Ok(Response {
            status: 200,
            headers: Headers::default(),
            body: json!({"ok": true}).into(),
        })
    }
}

/// Long enough that it never runs out during a test.
const AN_HOUR: Duration = Duration::from_secs(3600);

/// The three-step workflow on a memory store whose checkpoints lag by an hour, through an
/// invoker that notes what the store held for each step at each call.
fn three_steps_recorded() -> (
    Arc<dyn ExecutionStore>,
    Arc<Recording>,
    Runner,
    WorkflowSource,
    Plan,
) {
    let store: Arc<dyn ExecutionStore> = Arc::new(MemoryStore::new());
    let invoker = Arc::new(Recording {
        store: store.clone(),
        seen: Default::default(),
    });
    let yaml = format!(
        "{WORKFLOW}    - name: third\n      api: svc\n      endpoint: /third\n      method: POST\n"
    );
    let (workflow, plan) = source_of(yaml);
    let runner = Runner::new(store.clone(), invoker.clone()).with_checkpoint_lag(AN_HOUR);
    (store, invoker, runner, workflow, plan)
}

#[tokio::test]
async fn memory_is_written_when_a_started_execution_starts_and_ends_not_after_every_step() {
    let (store, invoker, runner, workflow, plan) = three_steps_recorded();
    let handle = runner
        .start(workflow, plan, json!({}), bindings())
        .await
        .unwrap();
    assert_eq!(handle.join().await.unwrap().status, Status::Completed);
    let as_created = vec!["running", "pending", "pending"];
    assert_eq!(*invoker.seen.lock().unwrap(), vec![as_created; 3]);
    assert_eq!(
        stored_steps(&*store).await,
        ["completed", "completed", "completed"]
    );
}

#[tokio::test]
async fn a_run_shorter_than_the_lag_is_written_to_memory_once_when_it_ends() {
    let (store, invoker, runner, workflow, plan) = three_steps_recorded();
    let done = runner
        .run(workflow, &plan, json!({}), bindings())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    // Nobody had the id before `run` returned: no reader missed anything.
    let nothing: Vec<Vec<String>> = vec![vec![]; 3];
    assert_eq!(*invoker.seen.lock().unwrap(), nothing);
    assert_eq!(
        stored_steps(&*store).await,
        ["completed", "completed", "completed"]
    );
    assert_eq!(store.lease(&done.id).await.unwrap(), None, "released");
}

#[tokio::test]
async fn a_run_in_memory_is_created_once_the_lag_is_up_while_its_first_call_waits() {
    let store = Arc::new(MemoryStore::new());
    let invoker = gated(0);
    let runner = Runner::new(store.clone(), invoker.clone())
        .with_owner("me")
        .with_checkpoint_lag(Duration::from_millis(20));
    let (run, id) = run_until_stored(runner, &store).await;
    assert_eq!(stored_steps(&*store).await, ["running", "pending"]);
    assert_eq!(invoker.calls.load(Ordering::SeqCst), 1);
    let lease = store.lease(&id).await.unwrap().expect("leased");
    assert_eq!(lease.owner, "me");
    invoker.permits.add_permits(2);
    let done = run.await.unwrap().unwrap();
    assert_eq!((done.id.as_ref(), done.status), (&*id, Status::Completed));
    assert_eq!(stored_steps(&*store).await, ["completed", "completed"]);
    assert_eq!(store.lease(&id).await.unwrap(), None, "released");
}

#[tokio::test]
async fn a_run_that_ends_as_it_starts_is_written_to_memory_released() {
    let store = Arc::new(MemoryStore::new());
    let yaml = r#"apiVersion: api.example.com/v1
kind: WorkflowDefinition
metadata:
  name: passes
spec:
  startAt: only
  states:
    - {name: only, type: pass, result: {done: true}, end: true}
"#;
    let (workflow, plan) = source_of(yaml.into());
    let done = Runner::new(store.clone(), gated(0))
        .with_checkpoint_lag(AN_HOUR)
        .run(workflow, &plan, json!({}), bindings())
        .await
        .unwrap();
    assert_eq!(done.status, Status::Completed);
    let stored = store.load(&done.id).await.unwrap().expect("written");
    assert_eq!(stored.status, "completed");
    assert_eq!(store.lease(&done.id).await.unwrap(), None, "released");
}

/// The two-step workflow started on a memory store with checkpoints lagging by `lag`; the
/// first call is answered, the second waits for a permit.
async fn started_with_lag(lag: Duration) -> (Arc<MemoryStore>, Arc<Gated>, Handle) {
    let store = Arc::new(MemoryStore::new());
    let invoker = gated(1);
    let (workflow, plan) = source();
    let handle = Runner::new(store.clone(), invoker.clone())
        .with_checkpoint_lag(lag)
        .start(workflow, plan, json!({}), bindings())
        .await
        .unwrap();
    (store, invoker, handle)
}

#[tokio::test]
async fn memory_gets_the_changes_once_the_lag_is_up_while_a_call_is_in_flight() {
    let (store, invoker, handle) = started_with_lag(Duration::from_millis(20)).await;
    // The first call's outcome is written while the second waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stored_steps(&*store).await != ["completed", "running"] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            stored_steps(&*store).await
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(invoker.calls.load(Ordering::SeqCst), 2);
    invoker.permits.add_permits(1);
    assert_eq!(handle.join().await.unwrap().status, Status::Completed);
    assert_eq!(stored_steps(&*store).await, ["completed", "completed"]);
}

#[tokio::test]
async fn stopping_writes_the_changes_the_lag_held_back() {
    let (store, invoker, handle) = started_with_lag(AN_HOUR).await;
    // The second call is sent in the same turn that applies the first one's outcome.
    while invoker.calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(stored_steps(&*store).await, ["running", "pending"]);
    handle.stop();
    assert!(matches!(handle.join().await, Err(RunError::Stopped { .. })));
    assert_eq!(stored_steps(&*store).await, ["completed", "running"]);
}

#[tokio::test]
async fn a_checkpoint_buffer_is_sized_before_it_is_written() {
    let runner = Runner::new(Arc::new(MemoryStore::new()), gated(10));
    let (mut record, plan) = new_record(&runner);
    let mut sizes = Vec::new();
    // As created, once the first step has an outcome, and once the second has.
    for step in 0..3 {
        if step > 0 {
            succeed(&plan, &mut record.execution, step - 1);
        }
        let json = record.checkpoint().unwrap();
        assert_eq!(json, serde_json::to_vec(&record).unwrap());
        let slack = json.capacity() - json.len();
        // Room for the execution's own fields, never a doubled buffer.
        assert!(
            slack <= 1024,
            "{} bytes for {}",
            json.capacity(),
            json.len()
        );
        sizes.push(json.len());
    }
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    assert_eq!(record.execution.status, Status::Completed);
}

/// A new execution of [`source`] as `runner` records it, before anything has run.
fn new_record(runner: &Runner) -> (ExecutionRecord, Plan) {
    let (mut workflow, plan) = source();
    runner.plans.share(&mut workflow, &plan);
    let (execution, _) = Execution::start(&plan, "e1".into(), json!({"n": 1}), bindings(), 5);
    let record = ExecutionRecord {
        workflow,
        execution,
    };
    (record, plan)
}

fn succeed(plan: &Plan, execution: &mut Execution, step: usize) {
    let response = Response {
        status: 200,
        headers: [("content-type", "application/json")].into_iter().collect(),
        body: json!({"ok": true, "step": step + 1}).into(),
    };
    let event = Event::Succeeded {
        target: Target::Step(step),
        attempt: 1,
        response,
    };
    execution.apply(plan, event, 10);
}

/// The memory store is handed snapshots, not JSON: what it keeps does not move when the
/// live record does, and the parts that did not change are shared, not copied.
#[tokio::test]
async fn a_store_that_keeps_records_is_handed_a_snapshot_of_the_record() {
    let runner = Runner::new(Arc::new(MemoryStore::new()), gated(10));
    let (mut record, plan) = new_record(&runner);
    let stored = runner.stored(&record).unwrap();
    let before = serde_json::to_vec(&record).unwrap();

    succeed(&plan, &mut record.execution, 0);
    assert_ne!(serde_json::to_vec(&record).unwrap(), before);
    assert_eq!(
        &*stored.body,
        &before[..],
        "the snapshot is the record as it was"
    );

    // Durable stores get the JSON, made on the spot.
    let sqlite = orca_store::SqliteStore::open_in_memory().unwrap();
    let durable = Runner::new(Arc::new(sqlite), gated(10));
    let stored = durable.stored(&record).unwrap();
    assert_eq!(&*stored.body, &serde_json::to_vec(&record).unwrap()[..]);
}

/// Which task each component step ran on.
#[derive(Default)]
struct TaskOfEachStep(std::sync::Mutex<Vec<(String, Option<tokio::task::Id>)>>);

#[async_trait]
impl Invoker for TaskOfEachStep {
    async fn invoke(&self, request: &Request, _attempt: u32) -> Result<Response, Failure> {
        if let Request::Component(call) = request {
            let task = tokio::task::try_id();
            self.0.lock().unwrap().push((call.step.clone(), task));
        }
        // Both parallel steps are in flight before either answers.
        tokio::task::yield_now().await;
        Ok(Response {
            status: 200,
            headers: Headers::default(),
            body: json!({"ok": true}).into(),
        })
    }
}

/// A component computes inside `poll`: parallel ones get tasks of their own, so that they
/// can use every core, while one that is the only call in flight is polled by the drive
/// task, saving two hand-offs between threads per step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_component_call_that_starts_beside_others_gets_a_task_of_its_own() {
    let yaml = r#"apiVersion: orca.dev/v1
kind: Component
metadata:
  name: score
spec:
  source: score.wasm
---
apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: components
spec:
  steps:
    - name: alone
      component: score
    - name: left
      component: score
      parallel: true
    - name: right
      component: score
      parallel: true
    - name: last
      component: score
"#;
    let (workflow, plan) = source_of(yaml.into());
    let mut bindings = bindings();
    bindings
        .components
        .insert("score".into(), "sha256:00".into());
    let invoker = Arc::new(TaskOfEachStep::default());
    let runner = Runner::new(Arc::new(MemoryStore::new()), invoker.clone());
    let drive_task = tokio::spawn(async move {
        let execution = runner
            .run(workflow, &plan, json!({}), bindings)
            .await
            .unwrap();
        assert_eq!(execution.status, Status::Completed);
        tokio::task::id()
    })
    .await
    .unwrap();

    let seen = invoker.0.lock().unwrap();
    let task_of = |step: &str| {
        let found = seen.iter().find(|(name, _)| name == step);
        found.and_then(|(_, task)| *task).unwrap()
    };
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert_eq!(task_of("alone"), drive_task);
    assert_eq!(task_of("last"), drive_task);
    assert_ne!(task_of("left"), drive_task);
    assert_ne!(task_of("right"), drive_task);
    assert_ne!(task_of("left"), task_of("right"));
}
