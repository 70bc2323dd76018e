//! Engine CPU per workflow: 10 steps with an invoker that answers at once.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use orca_runtime::definition::{DefinitionSet, Source};
use orca_runtime::engine::Bindings;
use orca_runtime::invoke::{Failure, Invoker, Request, Response};
use orca_runtime::plan;
use orca_runtime::runner::{Runner, WorkflowSource};
use orca_runtime::store::MemoryStore;
use serde_json::json;

struct Instant0;
#[async_trait::async_trait]
impl Invoker for Instant0 {
    async fn invoke(&self, _r: &Request, _a: u32) -> Result<Response, Failure> {
        Ok(Response {
            status: 200,
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: json!({"ok": true}),
        })
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut yaml = "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: p\nspec:\n  steps:\n".to_string();
        for i in 0..10 { yaml.push_str(&format!("    - name: s{i}\n      api: svc\n      endpoint: /s{i}\n      method: POST\n")); }
        let sources = vec![Source { name: "p.yaml".into(), text: yaml }];
        let set = DefinitionSet::load(sources.clone()).unwrap();
        let plan = Arc::new(plan::compile(&set, None).unwrap());
        let source = WorkflowSource { name: plan.workflow_id.clone(), sources: sources.into() };
        let runner = Runner::new(Arc::new(MemoryStore::new()), Arc::new(Instant0));
        let bindings = Bindings { tenant: "default".into(), services: BTreeMap::from([("svc".to_string(), "http://127.0.0.1:1".to_string())]), components: BTreeMap::new() };
        let n: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(20000);
        let t = Instant::now();
        for i in 0..n {
            let input = json!({"order_id": format!("o-{i}"), "amount": 1500});
            runner.run(source.clone(), &plan, input, bindings.clone()).await.unwrap();
        }
        let e = t.elapsed();
        println!("{:.1} µs per workflow", e.as_secs_f64() * 1e6 / n as f64);
    });
}
