//! The API through the router, without a socket: authentication, tenant isolation, malformed
//! requests, and executions run against a service on a local socket.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use super::*;
use orca_core::invoke::{Dispatcher, Invoker};
use orca_http::{HttpConfig, HttpInvoker};
use orca_store::MemoryStore;
use orca_store::kv::MemoryKv;
use orca_wasm::{ComponentBlobs, HostServices};

const ADMIN: &str = "admin-secret";

struct Api {
    router: Router,
    _dir: tempfile::TempDir,
}

fn app(dir: &std::path::Path) -> App {
    let http: Arc<dyn Invoker> = Arc::new(HttpInvoker::new(HttpConfig::default()).unwrap());
    let wasm = Arc::new(
        WasmHost::new(
            ComponentBlobs::new(dir.join("components")),
            HostServices {
                http: http.clone(),
                kv: Arc::new(MemoryKv::new()),
            },
            None,
        )
        .unwrap(),
    );
    let dispatcher = Dispatcher {
        http,
        component: Some(wasm.clone()),
    };
    let executions: Arc<dyn ExecutionStore> = Arc::new(MemoryStore::new());
    let runner = Runner::new(executions.clone(), Arc::new(dispatcher));
    let config = ServerConfig {
        admin_token_sha256: Some(sha256_hex(ADMIN)),
        max_component_bytes: 4 * 1024 * 1024,
        max_body_bytes: 64 * 1024,
        max_running_per_tenant: 2,
        max_call_memory_bytes: 128 << 20,
        egress_ceiling: Some(vec!["127.0.0.1:*".into(), "*.example.com".into()]),
        ..ServerConfig::default()
    };
    App::new(
        config,
        Arc::new(SqliteTenants::in_memory().unwrap()),
        executions,
        runner,
        wasm,
        Metrics::new(),
    )
}

impl Api {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Api {
            router: router(app(dir.path())),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Body,
        content_type: &str,
    ) -> (StatusCode, Json) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (status, json)
    }

    async fn json(&self, method: &str, uri: &str, token: &str, body: Json) -> (StatusCode, Json) {
        self.call(
            method,
            uri,
            Some(token),
            Body::from(body.to_string()),
            "application/json",
        )
        .await
    }

    async fn get(&self, uri: &str, token: &str) -> (StatusCode, Json) {
        self.call("GET", uri, Some(token), Body::empty(), "text/plain")
            .await
    }

    async fn yaml(&self, token: &str, yaml: &str) -> (StatusCode, Json) {
        self.call(
            "POST",
            "/v1/definitions",
            Some(token),
            Body::from(yaml.to_string()),
            "application/yaml",
        )
        .await
    }

    /// Creates `tenant` and returns a token of it.
    async fn tenant(&self, tenant: &str) -> String {
        let (status, _) = self
            .json("POST", "/v1/tenants", ADMIN, json!({ "name": tenant }))
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let (status, body) = self
            .json(
                "POST",
                &format!("/v1/tenants/{tenant}/tokens"),
                ADMIN,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().unwrap().to_string()
    }
}

fn workflow(name: &str) -> String {
    format!(
        "apiVersion: orca.dev/v1
kind: SequentialOrchestration
metadata:
  name: {name}
spec:
  steps:
    - step: 1
      name: ping
      api: svc
      endpoint: /ping
      method: GET
"
    )
}

/// A service answering every request with `{\"ok\": true}`, on a local socket.
async fn service() -> String {
    let app = Router::new().fallback(|| async { axum::Json(json!({ "ok": true })) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn guest(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("ORCA_GUEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().join("guests")
        });
    std::fs::read(dir.join(format!("{name}.wasm")))
        .unwrap_or_else(|e| panic!("{name}.wasm in {}: {e}; run `make guests`", dir.display()))
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_message() {
    let api = Api::new();
    let (status, body) = api
        .call("GET", "/v1/definitions", None, Body::empty(), "text/plain")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
    let (status, _) = api.get("/v1/executions", "wrong").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A tenant token is not the admin token.
    let token = api.tenant("a").await;
    let (status, _) = api
        .json("POST", "/v1/tenants", &token, json!({ "name": "b" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Unauthenticated operations endpoints.
    let (status, _) = api.call("GET", "/healthz", None, Body::empty(), "").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.call("GET", "/readyz", None, Body::empty(), "").await;
    assert_eq!(status, StatusCode::OK);
    // Metrics name every tenant's workflows: they need the admin (or metrics) token.
    let (status, _) = api.call("GET", "/metrics", None, Body::empty(), "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .call("GET", "/metrics", Some(&token), Body::empty(), "")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .call("GET", "/metrics", Some(ADMIN), Body::empty(), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.as_str().unwrap().contains("workflow_executions_total") || body.is_string());
}

#[tokio::test]
async fn definitions_are_versioned_and_a_bad_document_rejects_the_whole_apply() {
    let api = Api::new();
    let a = api.tenant("a").await;
    let (status, body) = api.yaml(&a, &workflow("hello")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.yaml(&a, &workflow("hello")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["applied"][0]["version"], 2);

    // The second document is bad: nothing of this apply is stored.
    let bad = format!(
        "{}---\napiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: broken\nspec:\n  stepz: []\n",
        workflow("other")
    );
    let (status, body) = api.yaml(&a, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["line"], 18, "{body}");
    assert!(body["error"].as_str().unwrap().contains("stepz"), "{body}");
    let (status, _) = api.get("/v1/definitions/other", &a).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = api.get("/v1/definitions", &a).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    let (_, body) = api.get("/v1/definitions/hello?version=1", &a).await;
    assert_eq!(body["version"], 1);
    assert!(body["yaml"].as_str().unwrap().contains("name: hello"));

    // No file paths on the server.
    let with_source = "apiVersion: orca.dev/v1\nkind: Component\nmetadata:\n  name: c\nspec:\n  source: ./c.wasm\n";
    let (status, body) = api.yaml(&a, with_source).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "spec.source", "{body}");

    let (status, _) = api
        .call(
            "DELETE",
            "/v1/definitions/hello",
            Some(&a),
            Body::empty(),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/v1/definitions/hello", &a).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn malformed_uploads_and_oversize_bodies_are_rejected() {
    let api = Api::new();
    let a = api.tenant("a").await;
    let (status, body) = api
        .call(
            "POST",
            "/v1/components",
            Some(&a),
            Body::from("not wasm"),
            "application/wasm",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not a usable component")
    );
    let (status, _) = api
        .call(
            "POST",
            "/v1/components",
            Some(&a),
            Body::from(vec![0u8; 5 * 1024 * 1024]),
            "application/wasm",
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let big = format!("# {}\n{}", "x".repeat(100 * 1024), workflow("w"));
    let (status, body) = api.yaml(&a, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _) = api
        .call(
            "POST",
            "/v1/executions",
            Some(&a),
            Body::from("{not json"),
            "application/json",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/v1/executions/nope", &a).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .json("POST", "/v1/executions", &a, json!({ "workflow": "nope" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn executions_run_and_wait() {
    let api = Api::new();
    let a = api.tenant("a").await;
    api.yaml(&a, &workflow("hello")).await;
    let url = service().await;
    let (status, body) = api
        .json(
            "POST",
            "/v1/executions?wait=10s",
            &a,
            json!({ "workflow": "hello", "input": {"n": 1}, "services": { "svc": url } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (_, listed) = api.get("/v1/executions?workflow=hello", &a).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let (status, _) = api
        .json(
            "POST",
            &format!("/v1/executions/{id}/cancel"),
            &a,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn cancel_reaches_the_running_drive_loop() {
    let api = Api::new();
    let a = api.tenant("a").await;
    api.yaml(&a, &workflow("slow")).await;
    // A slow service: the call is in flight when the cancel arrives, and settles first.
    let app = Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        "late"
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, body) = api
        .json(
            "POST",
            "/v1/executions",
            &a,
            json!({ "workflow": "slow", "services": { "svc": format!("http://{addr}") } }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let (status, _) = api
        .json(
            "POST",
            &format!("/v1/executions/{id}/cancel"),
            &a,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mut last = Json::Null;
    for _ in 0..100 {
        last = api.get(&format!("/v1/executions/{id}"), &a).await.1;
        if last["status"] != "running" && last["status"] != "compensating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last["status"], "cancelled", "{last}");
}

#[tokio::test]
async fn tenant_b_sees_none_of_tenant_a_s_objects() {
    let api = Api::new();
    let a = api.tenant("a").await;
    let b = api.tenant("b").await;
    let (status, component) = api
        .call(
            "POST",
            "/v1/components",
            Some(&a),
            Body::from(guest("aggregate")),
            "application/wasm",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{component}");
    let digest = component["digest"].as_str().unwrap().to_string();
    let uses = |tenant_wf: &str| {
        format!(
            "apiVersion: orca.dev/v1\nkind: Component\nmetadata:\n  name: agg\nspec:\n  digest: {digest}\n---\n\
             apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: {tenant_wf}\nspec:\n  steps:\n    - name: sum\n      component: agg\n"
        )
    };
    let (status, body) = api.yaml(&a, &uses("merge")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api
        .json(
            "POST",
            "/v1/executions?wait=20s",
            &a,
            json!({ "workflow": "merge" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    let id = body["id"].as_str().unwrap().to_string();

    // Every one of A's objects is 404 for B.
    for uri in [
        "/v1/definitions/merge".to_string(),
        "/v1/definitions/agg".to_string(),
        format!("/v1/components/{digest}"),
        format!("/v1/executions/{id}"),
    ] {
        let (status, body) = api.get(&uri, &b).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
    }
    for uri in [
        format!("/v1/executions/{id}/cancel"),
        format!("/v1/executions/{id}/resume"),
    ] {
        let (status, _) = api.json("POST", &uri, &b, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    for uri in [
        "/v1/definitions/merge".to_string(),
        format!("/v1/components/{digest}"),
    ] {
        let (status, _) = api.call("DELETE", &uri, Some(&b), Body::empty(), "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    for uri in ["/v1/definitions", "/v1/components", "/v1/executions"] {
        let (_, body) = api.get(uri, &b).await;
        assert_eq!(body["items"], json!([]), "{uri}");
    }
    // B cannot run A's workflow by name, nor A's component by digest.
    let (status, _) = api
        .json("POST", "/v1/executions", &b, json!({ "workflow": "merge" }))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api.yaml(&b, &uses("steal")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "spec.digest", "{body}");
    // By name: B has no component `agg`, whatever A has.
    let by_name = "apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: steal\nspec:\n  steps:\n    - name: sum\n      component: agg\n";
    let (status, body) = api.yaml(&b, by_name).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("agg"), "{body}");
    let (_, listed) = api.get("/v1/definitions", &b).await;
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn the_served_openapi_document_is_the_repository_copy() {
    let api = Api::new();
    let (status, served) = api
        .call("GET", "/v1/openapi.json", None, Body::empty(), "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let kept: Json = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
    assert_eq!(
        served, kept,
        "runtime/openapi.json differs from the served document"
    );
}

#[tokio::test]
async fn a_component_asking_over_the_server_s_ceilings_is_refused() {
    let api = Api::new();
    let a = api.tenant("a").await;
    let (status, component) = api
        .call(
            "POST",
            "/v1/components",
            Some(&a),
            Body::from(guest("aggregate")),
            "application/wasm",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{component}");
    let digest = component["digest"].as_str().unwrap();
    let yaml = format!(
        "apiVersion: orca.dev/v1\nkind: Component\nmetadata:\n  name: agg\nspec:\n  digest: {digest}\n  limits:\n    memory: 200MiB\n---\n\
         apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: big\nspec:\n  steps:\n    - name: sum\n      component: agg\n"
    );
    let (status, body) = api.yaml(&a, &yaml).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 128 MiB"),
        "{body}"
    );
    let (_, listed) = api.get("/v1/definitions", &a).await;
    assert_eq!(listed["items"], json!([]), "nothing of the apply is stored");

    let granted = |grant: &str| {
        format!(
            "apiVersion: orca.dev/v1\nkind: Component\nmetadata:\n  name: agg\nspec:\n  digest: {digest}\n  grants:\n    http: [\"{grant}\"]\n---\n\
             apiVersion: orca.dev/v1\nkind: SequentialOrchestration\nmetadata:\n  name: egress\nspec:\n  steps:\n    - name: sum\n      component: agg\n"
        )
    };
    let (status, body) = api.yaml(&a, &granted("evil.org")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("`evil.org`"),
        "{body}"
    );
    let (status, body) = api.yaml(&a, &granted("*.org")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for allowed in ["api.example.com", "127.0.0.1:8080", "*.example.com"] {
        let (status, body) = api.yaml(&a, &granted(allowed)).await;
        assert_eq!(status, StatusCode::CREATED, "{allowed}: {body}");
    }
}

#[tokio::test]
async fn quota_slots_are_taken_atomically_and_given_back() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    // Starts still being set up count against the quota, so a third concurrent start is
    // refused even though nothing is running yet.
    let first = app.admit("acme", 2).expect("within quota");
    let second = app.admit("acme", 2).expect("within quota");
    assert!(app.admit("acme", 2).is_none());
    assert!(app.admit("other", 2).is_some(), "quotas are per tenant");
    drop(first);
    let third = app
        .admit("acme", 2)
        .expect("a failed or finished start gives its place back");
    drop((second, third));
    assert!(app.admit("acme", 2).is_some());
}
