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
        .start(workflow, Arc::new(plan), json!({}), bindings())
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

mod calls;
mod checkpoints;
mod leases;
mod outages;
