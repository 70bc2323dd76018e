//! The HTTP invoker against real loopback servers.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, Method as AxumMethod, StatusCode as AxumStatus};
use axum::response::AppendHeaders;
use axum::routing::{any, get};
use futures_util::{StreamExt, stream};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;

use super::*;

/// What the test server received, sent back to the test through a channel.
#[derive(Debug)]
struct Seen {
    method: AxumMethod,
    headers: AxumHeaders,
    body: Bytes,
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

fn http(method: &str, url: String) -> HttpRequest {
    HttpRequest {
        method: method.into(),
        url,
        headers: Vec::new(),
        body: None,
        timeout_ms: 5_000,
        idempotency_key: "exec-1:step-1".to_owned(),
        service: None,
    }
}

fn invoker() -> HttpInvoker {
    HttpInvoker::new(HttpConfig::default()).unwrap()
}

fn small_invoker() -> HttpInvoker {
    HttpInvoker::new(HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    })
    .unwrap()
}

async fn invoke(invoker: &HttpInvoker, request: HttpRequest) -> Result<Response, Failure> {
    invoker.invoke(&Request::Http(request), 1).await
}

/// A body that never ends, to prove the invoker stops on its own rather than at EOF.
fn endless_after(chunks: Vec<Bytes>) -> Body {
    let chunks = stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    Body::from_stream(chunks.chain(stream::pending()))
}

#[tokio::test]
async fn json_response_is_kept_as_the_text_it_came_as() {
    let router = Router::new().route(
        "/items/7",
        get(|| async {
            (
                // Plain header arrays replace duplicates; the repeated header needs appending.
                [("content-type", "application/json")],
                AppendHeaders([("x-trace", "abc"), ("x-multi", "a"), ("x-multi", "b")]),
                r#"{"id": 7,  "tags": ["a", "b"], "ok": true}"#,
            )
        }),
    );
    let address = serve(router).await;

    let response = invoke(&invoker(), http("GET", format!("http://{address}/items/7")))
        .await
        .unwrap();

    assert_eq!(response.status, 200);
    assert!(response.body.parsed().is_none(), "parsed only when read");
    assert_eq!(
        response.body.json().get(),
        r#"{"id": 7,  "tags": ["a", "b"], "ok": true}"#
    );
    assert_eq!(
        response.body,
        json!({"id": 7, "tags": ["a", "b"], "ok": true})
    );
    assert_eq!(
        response.headers.get("content-type"),
        Some("application/json")
    );
    assert_eq!(response.headers.get("x-trace"), Some("abc"));
    assert_eq!(response.headers.get("x-multi"), Some("a, b"));
}

#[tokio::test]
async fn text_response_is_kept_as_a_string() {
    let router = Router::new()
        .route("/text", get(|| async { "hello, {not json" }))
        .route("/empty", get(|| async { AxumStatus::NO_CONTENT }));
    let address = serve(router).await;

    let text = invoke(&invoker(), http("GET", format!("http://{address}/text")))
        .await
        .unwrap();
    assert_eq!(text.status, 200);
    assert_eq!(text.body, Json::String("hello, {not json".to_owned()));

    let empty = invoke(&invoker(), http("GET", format!("http://{address}/empty")))
        .await
        .unwrap();
    assert_eq!(empty.status, 204);
    assert_eq!(empty.body, Json::Null);
}

#[tokio::test]
async fn server_receives_key_headers_and_json_body() {
    let (sender, mut received) = mpsc::unbounded_channel::<Seen>();
    let router = Router::new()
        .route(
            "/payments",
            any(
                |State(sender): State<mpsc::UnboundedSender<Seen>>,
                 method: AxumMethod,
                 headers: AxumHeaders,
                 body: Bytes| async move {
                    sender
                        .send(Seen {
                            method,
                            headers,
                            body,
                        })
                        .unwrap();
                    (AxumStatus::CREATED, axum::Json(json!({"payment": "p-1"})))
                },
            ),
        )
        .with_state(sender);
    let address = serve(router).await;

    let mut request = http("POST", format!("http://{address}/payments"));
    request.headers = vec![
        ("X-Tenant".to_owned(), "acme".to_owned()),
        ("Authorization".to_owned(), "Bearer t0ken".to_owned()),
    ];
    request.body = Some(json!({"amount": 1250, "currency": "EUR"}).into());
    let response = invoke(&invoker(), request).await.unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.body, json!({"payment": "p-1"}));

    let seen = received.recv().await.unwrap();
    let header = |name: &str| seen.headers.get(name).map(|value| value.to_str().unwrap());
    assert_eq!(seen.method, AxumMethod::POST);
    assert_eq!(header("idempotency-key"), Some("exec-1:step-1"));
    assert_eq!(header("x-tenant"), Some("acme"));
    assert_eq!(header("authorization"), Some("Bearer t0ken"));
    assert_eq!(header("content-type"), Some("application/json"));
    assert_eq!(header("accept"), Some("application/json"));
    assert_eq!(
        header("user-agent"),
        Some(format!("orca/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let body: Json = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body, json!({"amount": 1250, "currency": "EUR"}));
}

#[tokio::test]
async fn error_status_carries_retry_after() {
    let router = Router::new().route(
        "/busy",
        any(|| async {
            (
                AxumStatus::SERVICE_UNAVAILABLE,
                [("retry-after", "2")],
                "overloaded, come back later",
            )
        }),
    );
    let address = serve(router).await;
    let url = format!("http://{address}/busy");

    let failure = invoke(&invoker(), http("POST", url.clone()))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Status(503));
    assert_eq!(failure.retry_after_ms, Some(2000));
    assert_eq!(
        failure.message,
        format!("POST {url} returned 503 Service Unavailable: overloaded, come back later")
    );
}

#[tokio::test]
async fn error_body_is_cut_to_a_snippet() {
    let long = "e".repeat(500);
    let router = Router::new().route(
        "/bad",
        get(move || async move { (AxumStatus::BAD_REQUEST, long) }),
    );
    let address = serve(router).await;

    let failure = invoke(&invoker(), http("GET", format!("http://{address}/bad")))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Status(400));
    assert_eq!(failure.retry_after_ms, None);
    let expected_tail = format!("400 Bad Request: {}…", "e".repeat(200));
    assert!(
        failure.message.ends_with(&expected_tail),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn slow_server_times_out() {
    let router = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "too late"
        }),
    );
    let address = serve(router).await;
    let mut request = http("GET", format!("http://{address}/slow"));
    request.timeout_ms = 200;

    let started = Instant::now();
    let failure = invoke(&invoker(), request).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(
        failure.message.ends_with("timed out after 200ms"),
        "{}",
        failure.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn slow_body_times_out() {
    // Headers arrive at once, the body never finishes: the deadline must cover the body too.
    let router = Router::new().route(
        "/trickle",
        get(|| async { endless_after(vec![Bytes::from_static(b"{\"partial\":")]) }),
    );
    let address = serve(router).await;
    let mut request = http("GET", format!("http://{address}/trickle"));
    request.timeout_ms = 1_500;

    let failure = invoke(&invoker(), request).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Timeout);
    assert!(
        failure.message.ends_with("timed out after 1.5s"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn refused_connection_is_a_connection_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{address}/gone");

    let failure = invoke(&invoker(), http("GET", url.clone()))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Connection, "{}", failure.message);
    assert!(
        failure
            .message
            .starts_with(&format!("GET {url}: could not connect: ")),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn body_over_the_limit_with_content_length() {
    let router = Router::new()
        .route("/big", get(|| async { vec![b'x'; 10 * 1024] }))
        // Declares 10 KiB but never sends a byte: only the Content-Length check can stop it.
        .route(
            "/declared",
            get(|| async { ([("content-length", "10240")], endless_after(Vec::new())) }),
        );
    let address = serve(router).await;

    for path in ["big", "declared"] {
        let url = format!("http://{address}/{path}");
        let failure = invoke(&small_invoker(), http("GET", url.clone()))
            .await
            .unwrap_err();
        assert_eq!(
            failure.kind,
            FailureKind::BodyTooLarge,
            "{path}: {}",
            failure.message
        );
        assert_eq!(
            failure.message,
            format!("GET {url}: response body exceeds the 1 KiB limit")
        );
    }
}

#[tokio::test]
async fn body_over_the_limit_without_content_length() {
    // Ten 1 KiB chunks and then silence: the invoker must give up on the second chunk,
    // long before the request's timeout, instead of waiting for the end of the body.
    let router = Router::new().route(
        "/stream",
        get(|| async {
            let chunks = (0..10).map(|_| Bytes::from(vec![b'y'; 1024])).collect();
            endless_after(chunks)
        }),
    );
    let address = serve(router).await;
    let url = format!("http://{address}/stream");

    // Make sure this really is the no-Content-Length case.
    let raw = reqwest::get(&url).await.unwrap();
    assert!(raw.headers().get("content-length").is_none());
    assert_eq!(raw.content_length(), None);
    drop(raw);

    let started = Instant::now();
    let failure = invoke(&small_invoker(), http("GET", url.clone()))
        .await
        .unwrap_err();

    assert_eq!(
        failure.kind,
        FailureKind::BodyTooLarge,
        "{}",
        failure.message
    );
    assert_eq!(
        failure.message,
        format!("GET {url}: response body exceeds the 1 KiB limit")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn oversized_error_body_still_reports_the_status() {
    let router = Router::new().route(
        "/fail",
        get(|| async { (AxumStatus::BAD_GATEWAY, vec![b'x'; 10 * 1024]) }),
    );
    let address = serve(router).await;
    let url = format!("http://{address}/fail");

    let failure = invoke(&small_invoker(), http("GET", url.clone()))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Status(502));
    assert_eq!(
        failure.message,
        format!("GET {url} returned 502 Bad Gateway: (response body exceeds the 1 KiB limit)")
    );
}

#[tokio::test]
async fn body_exactly_at_the_limit_is_accepted() {
    let router = Router::new().route("/edge", get(|| async { "z".repeat(1024) }));
    let address = serve(router).await;

    let response = invoke(
        &small_invoker(),
        http("GET", format!("http://{address}/edge")),
    )
    .await
    .unwrap();

    assert_eq!(response.body, Json::String("z".repeat(1024)));
}

#[tokio::test]
async fn malformed_requests_are_invalid() {
    let address = serve(Router::new()).await;
    let good_url = format!("http://{address}/x");

    let bad_url = http("GET", "not a url".to_owned());
    let bad_scheme = http("GET", "ftp://example.com/file".to_owned());
    let bad_method = http("GE T", good_url.clone());
    let mut bad_name = http("GET", good_url.clone());
    bad_name.headers = vec![("bad header".to_owned(), "v".to_owned())];
    let mut bad_value = http("GET", good_url);
    bad_value.headers = vec![("x-ok".to_owned(), "line\nbreak".to_owned())];

    for request in [bad_url, bad_scheme, bad_method, bad_name, bad_value] {
        let described = format!("{request:?}");
        let failure = invoke(&invoker(), request).await.unwrap_err();
        assert_eq!(
            failure.kind,
            FailureKind::Invalid,
            "{described}: {}",
            failure.message
        );
    }
}

#[test]
fn limits_and_durations_read_naturally() {
    assert_eq!(format_bytes(10 * 1024 * 1024), "10 MiB");
    assert_eq!(format_bytes(1024), "1 KiB");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes(512), "512 bytes");
    assert_eq!(format_millis(200), "200ms");
    assert_eq!(format_millis(1500), "1.5s");
    assert_eq!(format_millis(1250), "1.25s");
    assert_eq!(format_millis(30_000), "30s");
}
