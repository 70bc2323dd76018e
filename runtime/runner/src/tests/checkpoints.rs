//! Checkpoints: what is written when, on durable stores and on memory with its lag, and how.

use super::leases::run_until_stored;
use super::*;

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
        .start(workflow, Arc::new(plan), json!({}), bindings())
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
        .start(workflow, Arc::new(plan), json!({}), bindings())
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
pub(super) fn new_record(runner: &Runner) -> (ExecutionRecord, Plan) {
    let (mut workflow, plan) = source();
    runner.plans.share(&mut workflow, &plan);
    let (execution, _) = Execution::start(&plan, "e1".into(), json!({"n": 1}), bindings(), 5);
    let record = ExecutionRecord {
        workflow,
        execution,
    };
    (record, plan)
}

pub(super) fn succeed(plan: &Plan, execution: &mut Execution, step: usize) {
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
