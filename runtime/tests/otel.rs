//! With the `otel` feature, `orca run` exports its spans over OTLP/HTTP.
//!
//! A local receiver decodes what the real binary posts to `/v1/traces` while it runs a
//! two-step workflow against a local service; nothing is awaited after the process exits, so
//! the spans must have been flushed before it did. Run with
//! `cargo test -p orca-runtime --features otel --test otel`.
#![cfg(feature = "otel")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Attr;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::{Value, json};

const WORKFLOW: &str = r#"
apiVersion: api.example.com/v1
kind: SequentialOrchestration
metadata:
  name: otel-check
spec:
  steps:
    - step: 1
      name: "reserve"
      api: "shop"
      endpoint: "/reserve"
      method: "POST"
    - step: 2
      name: "charge"
      api: "shop"
      endpoint: "/charge"
      method: "POST"
      dependsOn: ["reserve"]
"#;

/// What the receiver was sent: a decoded request per POST, or why it could not be decoded.
type Received = Arc<Mutex<Vec<Result<ExportTraceServiceRequest, String>>>>;

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// An OTLP/HTTP receiver for traces: its base URL and what it got.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/v1/traces", post(collect))
        .with_state(received.clone());
    (serve(app).await, received)
}

async fn collect(
    State(received): State<Received>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let decoded = if content_type != Some("application/x-protobuf") {
        Err(format!("content-type {content_type:?}, not protobuf"))
    } else {
        ExportTraceServiceRequest::decode(body).map_err(|e| e.to_string())
    };
    let status = if decoded.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    received.lock().unwrap().push(decoded);
    let reply = ExportTraceServiceResponse::default().encode_to_vec();
    (status, [(CONTENT_TYPE, "application/x-protobuf")], reply)
}

/// The service the workflow calls.
async fn shop() -> String {
    let app = Router::new()
        .route(
            "/reserve",
            post(|| async { axum::Json(json!({"reservation": "r-1"})) }),
        )
        .route(
            "/charge",
            post(|| async { axum::Json(json!({"charged": true})) }),
        );
    serve(app).await
}

/// Runs `orca run` on [`WORKFLOW`] with `extra` arguments and environment, none of the
/// caller's OTEL_* variables, and an in-memory store; returns the printed execution.
async fn orca_run(shop: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Value {
    let home = tempfile::tempdir().unwrap();
    let workflow = home.path().join("otel-check.yaml");
    std::fs::write(&workflow, WORKFLOW).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_orca"));
    command
        .arg("run")
        .arg(&workflow)
        .args(["--store", "memory", "--service", &format!("shop={shop}")])
        .args(extra_args)
        .env("NO_PROXY", "127.0.0.1")
        .kill_on_drop(true);
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") || name.starts_with("ORCA_") {
            command.env_remove(name);
        }
    }
    command
        .env("ORCA_HOME", home.path())
        .envs(env.iter().copied());
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("orca run ends within a minute")
        .expect("orca runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "orca run failed: {stderr}");
    let execution: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(execution["status"], "completed", "{stderr}");
    execution
}

/// Every span received, with its resource's attributes.
fn spans(received: &Received) -> Vec<(Vec<KeyValue>, Span)> {
    let mut spans = Vec::new();
    for request in received.lock().unwrap().iter() {
        let request = request.as_ref().expect("the receiver decodes every export");
        for resource_spans in &request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for scope_spans in &resource_spans.scope_spans {
                for span in &scope_spans.spans {
                    spans.push((resource.clone(), span.clone()));
                }
            }
        }
    }
    spans
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Attr> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key) {
        Some(Attr::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn summary(spans: &[(Vec<KeyValue>, Span)]) -> Vec<String> {
    spans
        .iter()
        .map(|(_, s)| {
            let keys: Vec<&str> = s.attributes.iter().map(|kv| kv.key.as_str()).collect();
            format!("{} {keys:?}", s.name)
        })
        .collect()
}

/// The execution's span and its attempts: the ids, the resource and the parent links.
fn assert_exported(received: &Received, execution: &Value) {
    let id = execution["id"].as_str().expect("an execution id");
    let spans = spans(received);
    let names = summary(&spans);
    assert!(!spans.is_empty(), "no span reached the receiver");
    for (resource, span) in &spans {
        assert_eq!(
            string_attr(resource, "service.name"),
            Some("orca"),
            "resource of span {}",
            span.name
        );
    }

    let executions: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "execution")
        .collect();
    assert_eq!(executions.len(), 1, "one execution span in {names:?}");
    let root = executions[0];
    assert_eq!(string_attr(&root.attributes, "execution"), Some(id));
    assert_eq!(
        string_attr(&root.attributes, "workflow"),
        Some("otel-check")
    );
    assert_eq!(string_attr(&root.attributes, "tenant"), Some("default"));
    assert_eq!(root.trace_id.len(), 16, "a trace id");
    assert_eq!(root.span_id.len(), 8, "a span id");

    let mut steps: Vec<&str> = Vec::new();
    for (_, span) in spans.iter().filter(|(_, s)| s.name == "attempt") {
        let step = string_attr(&span.attributes, "step").expect("an attempt names its step");
        steps.push(step);
        assert_eq!(string_attr(&span.attributes, "execution"), Some(id));
        assert_eq!(
            string_attr(&span.attributes, "workflow"),
            Some("otel-check")
        );
        // tracing-opentelemetry 0.34 records unsigned fields (the attempt is a u32) as text.
        let attempt = match attr(&span.attributes, "attempt") {
            Some(Attr::IntValue(n)) => Some(*n),
            Some(Attr::StringValue(s)) => s.parse().ok(),
            _ => None,
        };
        assert_eq!(attempt, Some(1), "attempt {step}: {:?}", span.attributes);
        assert_eq!(span.trace_id, root.trace_id, "attempt {step}: same trace");
        assert_eq!(
            span.parent_span_id, root.span_id,
            "attempt {step}: a child of the execution span"
        );
    }
    steps.sort_unstable();
    assert_eq!(steps, ["charge", "reserve"], "attempts in {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orca_run_exports_to_the_collector_named_by_the_environment() {
    let (collector, received) = receiver().await;
    let shop = shop().await;
    let execution = orca_run(&shop, &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector)]).await;
    assert_exported(&received, &execution);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_endpoint_overrides_the_environment() {
    let (from_env, ignored) = receiver().await;
    let (from_flag, received) = receiver().await;
    let shop = shop().await;
    let execution = orca_run(
        &shop,
        &["--otel-endpoint", &from_flag],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &from_env)],
    )
    .await;
    assert_exported(&received, &execution);
    assert!(
        ignored.lock().unwrap().is_empty(),
        "the environment's collector got spans despite --otel-endpoint"
    );
}
