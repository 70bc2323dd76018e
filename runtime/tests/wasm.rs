//! The Wasm host against the real example and hostile components (built by `make guests`).
//!
//! Each hostile guest must be stopped within its limit with an error that names the component
//! and the limit, while other calls on the same host go on normally.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use orca_runtime::component::{ComponentRequest, Export, Grants, Limits, Phase};
use orca_runtime::http::{HttpConfig, HttpInvoker};
use orca_runtime::invoke::{Failure, FailureKind, Invoker, Request, Response, TrapKind};
use orca_runtime::payload::Payload;
use orca_runtime::store::kv::{KvStore, MemoryKv};
use orca_runtime::wasm::{ComponentBlobs, HostServices, WasmHost};
use serde_json::{Value, json};

/// Earlier steps' results as a component request carries them, from one JSON object.
fn results(object: Value) -> BTreeMap<Arc<str>, Arc<Payload>> {
    let Value::Object(map) = object else {
        panic!("results are an object")
    };
    map.into_iter()
        .map(|(name, result)| (name.into(), Arc::new(result.into())))
        .collect()
}

/// Where `guest-examples/build.sh` put the components: `$ORCA_GUEST_DIR`, else `guests/` in
/// the target directory this test binary was built into.
fn guest_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORCA_GUEST_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().unwrap();
    // <target>/debug/deps/wasm-<hash>
    exe.ancestors().nth(3).unwrap().join("guests")
}

struct Fixture {
    host: WasmHost,
    kv: Arc<MemoryKv>,
    digests: BTreeMap<String, String>,
    _blobs: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let blobs_dir = tempfile::tempdir().unwrap();
        let kv = Arc::new(MemoryKv::new());
        let http = Arc::new(HttpInvoker::new(HttpConfig::default()).unwrap());
        // A cache shared by the test binaries, so each component is compiled once per build.
        let cache = guest_dir().join("../wasmtime-cache");
        let host = WasmHost::new(
            ComponentBlobs::new(blobs_dir.path()),
            HostServices {
                http,
                kv: kv.clone(),
            },
            Some(&cache),
        )
        .unwrap();
        Fixture {
            host,
            kv,
            digests: BTreeMap::new(),
            _blobs: blobs_dir,
        }
    }

    fn load(&mut self, name: &str) -> String {
        let path = guest_dir().join(format!("{name}.wasm"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; build the guests first with `make guests`",
                path.display()
            )
        });
        self.host.check(name, &bytes).unwrap();
        let digest = self.host.blobs().put(&bytes).unwrap();
        self.digests.insert(name.to_string(), digest.clone());
        digest
    }

    fn request(
        &mut self,
        name: &str,
        export: Export,
        input: Value,
        config: Value,
    ) -> ComponentRequest {
        let digest = match self.digests.get(name) {
            Some(d) => d.clone(),
            None => self.load(name),
        };
        ComponentRequest {
            component: name.to_string(),
            digest,
            export,
            phase: Phase::Run,
            tenant: "tenant-a".into(),
            execution_id: "ex-1".into(),
            workflow: "wf".into(),
            step: "score".into(),
            input: input.into(),
            results: Default::default(),
            config,
            grants: Grants::default(),
            limits: Limits::default(),
        }
    }

    async fn call(&self, request: ComponentRequest) -> Result<Response, Failure> {
        self.host
            .invoke(&Request::Component(Box::new(request)), 1)
            .await
    }
}

/// A mock API recording each request's path, idempotency key and body.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(String, String, Value)>>>);

async fn serve(seen: Seen, status: StatusCode, reply: Value) -> SocketAddr {
    let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
        let seen = seen.clone();
        let reply = reply.clone();
        async move {
            let key = headers
                .get("idempotency-key")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            seen.0.lock().unwrap().push((
                uri.path().to_string(),
                key,
                serde_json::from_str(&body).unwrap_or(Value::Null),
            ));
            (status, axum::Json(reply))
        }
    };
    let app = Router::new().route("/{*path}", post(handler.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn trap_kind(outcome: &Result<Response, Failure>) -> Option<TrapKind> {
    match outcome {
        Err(Failure {
            kind: FailureKind::Trap(kind),
            ..
        }) => Some(*kind),
        _ => None,
    }
}

#[tokio::test]
async fn fraud_score_calls_the_risk_api_through_the_host() {
    let seen = Seen::default();
    let addr = serve(seen.clone(), StatusCode::OK, json!({"risk": 0.2})).await;
    let mut f = Fixture::new();
    let mut request = f.request(
        "fraud-score",
        Export::Step,
        json!({"order_id": "o-1", "amount": 5000.0}),
        json!({"risk_url": format!("http://{addr}/risk")}),
    );
    request.grants.http = vec!["127.0.0.1:*".into()];
    let response = f.call(request).await.unwrap();
    // 100 * (0.7 * 0.2 + 0.3 * 0.5) = 29
    assert_eq!(
        response.body,
        json!({"order_id": "o-1", "score": 29, "decision": "approve", "risk": 0.2})
    );
    let seen = seen.0.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "/risk");
    assert_eq!(
        seen[0].1, "ex-1:score:http:1",
        "host calls follow the step idempotency rule"
    );
    assert_eq!(seen[0].2["order_id"], "o-1");
}

#[tokio::test]
async fn a_failing_api_makes_a_retryable_guest_error() {
    let addr = serve(Seen::default(), StatusCode::SERVICE_UNAVAILABLE, json!({})).await;
    let mut f = Fixture::new();
    let mut request = f.request(
        "fraud-score",
        Export::Step,
        json!({"order_id": "o-1", "amount": 10.0}),
        json!({"risk_url": format!("http://{addr}/risk")}),
    );
    request.grants.http = vec!["127.0.0.1:*".into()];
    let failure = f.call(request).await.unwrap_err();
    assert_eq!(
        failure.kind,
        FailureKind::Guest { retryable: true },
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("fraud-score"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn calls_outside_the_allowlist_are_refused_before_any_connection() {
    let seen = Seen::default();
    let addr = serve(seen.clone(), StatusCode::OK, json!({})).await;
    let mut f = Fixture::new();
    let mut request = f.request(
        "hostile-egress",
        Export::Step,
        json!({}),
        json!({"url": format!("http://{addr}/steal")}),
    );
    request.grants.http = vec!["api.example.com".into()];
    let response = f.call(request).await.unwrap();
    let denied = response.body["denied"].as_str().unwrap_or_default();
    assert!(
        denied.contains("127.0.0.1") && denied.contains("hostile-egress"),
        "{}",
        response.body
    );
    assert!(
        seen.0.lock().unwrap().is_empty(),
        "no request may reach the server"
    );
}

#[tokio::test]
async fn the_condition_threshold_comes_from_config() {
    let mut f = Fixture::new();
    for (threshold, expected) in [(1000, true), (2000, false)] {
        let request = f.request(
            "high-value",
            Export::Condition,
            json!({"amount": 1500}),
            json!({"threshold": threshold}),
        );
        assert_eq!(f.call(request).await.unwrap().body, json!(expected));
    }
    let request = f.request(
        "high-value",
        Export::Step,
        json!({"amount": 1500}),
        json!({}),
    );
    assert!(
        f.call(request).await.is_err(),
        "a condition-only component is no step"
    );
}

#[tokio::test]
async fn an_endless_loop_stops_at_its_deadline_while_other_calls_finish() {
    let mut f = Fixture::new();
    let mut looping = f.request("hostile-loop", Export::Step, json!({}), json!({}));
    looping.limits.deadline_ms = 300;
    let normal: Vec<_> = (0..20)
        .map(|i| {
            f.request(
                "high-value",
                Export::Condition,
                json!({"amount": i * 100}),
                json!({}),
            )
        })
        .collect();
    let started = Instant::now();
    let f = Arc::new(f);
    let loop_task = {
        let f = f.clone();
        tokio::spawn(async move { f.call(looping).await })
    };
    for request in normal {
        let amount = request.input["amount"].as_i64().unwrap();
        assert_eq!(f.call(request).await.unwrap().body, json!(amount > 1000));
    }
    let outcome = loop_task.await.unwrap();
    assert_eq!(trap_kind(&outcome), Some(TrapKind::Deadline), "{outcome:?}");
    let message = outcome.unwrap_err().message;
    assert!(
        message.contains("hostile-loop") && message.contains("300ms deadline"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_fuel_budget_stops_a_loop_deterministically() {
    let mut f = Fixture::new();
    let mut request = f.request("hostile-loop", Export::Step, json!({}), json!({}));
    request.limits.fuel = Some(5_000_000);
    request.limits.deadline_ms = 30_000;
    let outcome = f.call(request).await;
    assert_eq!(trap_kind(&outcome), Some(TrapKind::Fuel), "{outcome:?}");
    assert!(
        outcome
            .unwrap_err()
            .message
            .contains("ran out of fuel (budget 5000000)")
    );
}

#[tokio::test]
async fn a_memory_bomb_stops_at_its_cap() {
    let mut f = Fixture::new();
    let mut request = f.request("hostile-memory", Export::Step, json!({}), json!({}));
    request.limits.memory_bytes = 16 << 20;
    let outcome = f.call(request).await;
    assert_eq!(trap_kind(&outcome), Some(TrapKind::Memory), "{outcome:?}");
    assert!(
        outcome
            .unwrap_err()
            .message
            .contains("memory limit of 16 MiB")
    );
}

#[tokio::test]
async fn runaway_recursion_overflows_the_stack_without_harming_the_host() {
    let mut f = Fixture::new();
    let request = f.request("hostile-recursion", Export::Step, json!({}), json!({}));
    let outcome = f.call(request).await;
    assert_eq!(
        trap_kind(&outcome),
        Some(TrapKind::StackOverflow),
        "{outcome:?}"
    );
    // The host goes on serving.
    let request = f.request(
        "high-value",
        Export::Condition,
        json!({"amount": 5}),
        json!({}),
    );
    assert_eq!(f.call(request).await.unwrap().body, json!(false));
}

#[tokio::test]
async fn a_huge_result_is_rejected() {
    let mut f = Fixture::new();
    let request = f.request("hostile-result", Export::Step, json!({}), json!({}));
    let outcome = f.call(request).await;
    assert_eq!(
        trap_kind(&outcome),
        Some(TrapKind::ResultTooLarge),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn state_keys_cannot_reach_another_tenant() {
    let mut f = Fixture::new();
    for key in [
        "t/tenant-b/s/secret",
        "t/tenant-b/x/ex-1/secret",
        "t/tenant-b/s/../tenant-b/secret",
    ] {
        f.kv.set(key, b"b's secret", None).await.unwrap();
    }
    let mut request = f.request("hostile-snoop", Export::Step, json!({}), json!({}));
    request.grants.state_execution = true;
    request.grants.state_tenant = true;
    let response = f.call(request).await.unwrap();
    assert_eq!(response.body["found"], json!([]), "{}", response.body);
    // Without grants, every attempt is denied rather than answered.
    let request = f.request("hostile-snoop", Export::Step, json!({}), json!({}));
    let response = f.call(request).await.unwrap();
    assert_eq!(response.body["found"], json!([]));
    let errors = response.body["errors"].as_array().unwrap();
    assert!(
        !errors.is_empty()
            && errors
                .iter()
                .all(|e| e["error"].as_str().unwrap().contains("no grant")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn refund_compensates_with_the_payment_from_earlier_results_and_records_it() {
    let seen = Seen::default();
    let addr = serve(seen.clone(), StatusCode::OK, json!({"refunded": true})).await;
    let mut f = Fixture::new();
    let mut request = f.request(
        "refund",
        Export::Step,
        json!({}),
        json!({"refund_url": format!("http://{addr}/refund"), "payment_step": "pay"}),
    );
    request.phase = Phase::Compensate;
    request.results = results(json!({"pay": {"payment_id": "p-7"}}));
    request.grants.http = vec!["127.0.0.1:*".into()];
    request.grants.state_execution = true;
    let response = f.call(request).await.unwrap();
    assert_eq!(response.body["refunded"], json!(true));
    assert_eq!(seen.0.lock().unwrap()[0].2, json!({"payment_id": "p-7"}));
    let stored = f.kv.get("t/tenant-a/x/ex-1/refunded:p-7").await.unwrap();
    assert!(
        stored.is_some(),
        "the refund is recorded in execution state"
    );
    // In the run phase the component refuses.
    let request = f.request(
        "refund",
        Export::Step,
        json!({}),
        json!({"refund_url": "http://x/"}),
    );
    assert!(matches!(
        f.call(request).await,
        Err(Failure {
            kind: FailureKind::Guest { retryable: false },
            ..
        })
    ));
}

#[tokio::test]
async fn aggregate_merges_earlier_results() {
    let mut f = Fixture::new();
    let mut request = f.request(
        "aggregate",
        Export::Step,
        json!({"order_id": "o-9"}),
        json!({}),
    );
    request.results =
        results(json!({"score": {"decision": "approve"}, "pay": {"payment_id": "p-1"}}));
    let response = f.call(request).await.unwrap();
    assert_eq!(response.body["decision"], "approve");
    assert_eq!(response.body["payment_id"], "p-1");
    assert_eq!(response.body["order_id"], "o-9");
    assert_eq!(response.body["steps"], json!(["pay", "score"]));
}

#[tokio::test]
async fn a_javascript_step_runs_on_the_same_contract() {
    let mut f = Fixture::new();
    let request = f.request(
        "discount-js",
        Export::Step,
        json!({"order_id": "o-1", "amount": 1500}),
        json!({"rate": 0.2}),
    );
    let response = f.call(request).await.unwrap();
    assert_eq!(
        response.body,
        json!({"order_id": "o-1", "amount": 1500, "discount": 300, "total": 1200})
    );
    let request = f.request(
        "discount-js",
        Export::Step,
        json!({"order_id": "o-1"}),
        json!({}),
    );
    let failure = f.call(request).await.unwrap_err();
    assert_eq!(failure.kind, FailureKind::Guest { retryable: false });
    assert!(failure.message.contains("bad_input"), "{}", failure.message);
}

#[tokio::test]
async fn a_python_step_runs_and_keeps_execution_state() {
    let mut f = Fixture::new();
    let mut request = f.request(
        "tax-python",
        Export::Step,
        json!({"order_id": "o-2", "amount": 100.0, "region": "EU"}),
        json!({"rates": {"EU": 0.21, "default": 0.2}}),
    );
    request.grants.state_execution = true;
    // Python needs more than the default memory to start.
    request.limits.memory_bytes = 128 << 20;
    request.limits.deadline_ms = 20_000;
    let first = f.call(request.clone()).await.unwrap();
    assert_eq!(first.body["tax"], json!(21.0));
    assert_eq!(first.body["cached"], json!(false));
    let second = f.call(request).await.unwrap();
    assert_eq!(
        second.body["cached"],
        json!(true),
        "the second call reads what the first stored"
    );
    assert!(
        f.kv.get("t/tenant-a/x/ex-1/tax:o-2")
            .await
            .unwrap()
            .is_some()
    );
}

#[test]
fn every_built_guest_has_a_test_here() {
    let source = include_str!("wasm.rs");
    let dir = guest_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make guests`", dir.display()));
    for entry in entries {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".wasm") {
            assert!(
                source.contains(&format!("\"{stem}\"")),
                "guest {stem} has no test in tests/wasm.rs"
            );
        }
    }
}
