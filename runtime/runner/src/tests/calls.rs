//! Calls: what a store is handed, and which calls get a task of their own.

use super::checkpoints::{new_record, succeed};
use super::*;

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
