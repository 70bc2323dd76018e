//! The HTTP [`Invoker`]: turns a rendered [`HttpRequest`] into a real call.
//!
//! The engine decides whether to retry from the [`FailureKind`] alone, so this module's job is
//! mostly classification: a timeout, a broken connection, an oversized body, a bad request and
//! an error status must each come back as their own kind. It also protects the runtime from
//! the services it calls: the whole call is bounded by the step's timeout and a response body
//! is never buffered beyond the configured limit, however the server frames it.

use std::error::Error as _;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{
    ACCEPT, CONTENT_TYPE, Entry, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, StatusCode};

mod origins;

use orca_core::invoke::{
    Failure, FailureKind, Headers, HeadersBuilder, HttpRequest, Invoker, Request, Response,
};
use orca_core::payload::Payload;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// How much of an error response's body goes into the failure message: enough to show the
/// service's own explanation without flooding logs and stored executions.
const ERROR_SNIPPET_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Responses larger than this fail with [`FailureKind::BodyTooLarge`].
    pub max_body_bytes: usize,
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 10 * 1024 * 1024,
            user_agent: format!("orca/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Sends [`Request::Http`] requests. Cheap to share: one client keeps one connection pool.
#[derive(Debug, Clone)]
pub struct HttpInvoker {
    client: reqwest::Client,
    origins: origins::Origins,
    max_body_bytes: usize,
}

impl HttpInvoker {
    pub fn new(config: HttpConfig) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .build()
            .map_err(HttpError::Client)?;
        Ok(HttpInvoker {
            client,
            origins: origins::Origins::default(),
            max_body_bytes: config.max_body_bytes,
        })
    }

    async fn call(&self, request: &HttpRequest) -> Result<Response, Failure> {
        let prepared = self.prepare(request)?;
        let mut response = self.client.execute(prepared).await.map_err(|error| {
            let context = if error.is_connect() {
                "could not connect"
            } else {
                "request failed"
            };
            transport_failure(&error, request, context)
        })?;

        let status = response.status();
        let headers = collect_headers(response.headers());
        let retry_after_ms = retry_after_ms(response.headers());
        let body = read_body(&mut response, self.max_body_bytes).await;

        if !status.is_success() {
            // The status is what the retry policy acts on, so an unreadable or oversized error
            // body must not hide it; it only costs the message its snippet.
            let detail = match &body {
                Ok(bytes) => snippet(bytes),
                Err(error) => format!("({})", error.describe(self.max_body_bytes)),
            };
            let mut message = format!("{request} returned {}", status_text(status));
            if !detail.is_empty() {
                message.push_str(": ");
                message.push_str(&detail);
            }
            return Err(Failure {
                kind: FailureKind::Status(status.as_u16()),
                message,
                retry_after_ms,
            });
        }

        let body = body.map_err(|error| error.into_failure(self.max_body_bytes, request))?;
        Ok(Response {
            status: status.as_u16(),
            headers,
            body: Payload::from_body(body),
        })
    }

    /// Validates everything up front so a malformed request is reported as
    /// [`FailureKind::Invalid`] (never retried) instead of surfacing as a transport error.
    fn prepare(&self, request: &HttpRequest) -> Result<reqwest::Request, Failure> {
        let invalid =
            |reason: String| Failure::new(FailureKind::Invalid, format!("{request}: {reason}"));

        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| invalid(format!("invalid HTTP method {:?}", request.method)))?;
        let url = self
            .origins
            .parse(&request.url)
            .map_err(|error| invalid(format!("invalid URL {:?}: {error}", request.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "unsupported URL scheme {:?} (expected http or https)",
                url.scheme()
            )));
        }

        let mut builder = self.client.request(method, url);
        if let Some(body) = &request.body {
            let json = body
                .json()
                .map_err(|error| invalid(format!("could not serialize the body: {error}")))?;
            builder = builder.body(json.get().to_owned());
        }
        let mut prepared = builder.build().map_err(|error| {
            invalid(format!(
                "could not build the request: {}",
                error_chain(&error)
            ))
        })?;
        // Written into the request's own map: building a map and handing it to the builder
        // would hash every name twice.
        let headers = prepared.headers_mut();
        // The workflow's, the three below, and the client's `User-Agent`, added when the
        // request is sent: room for one fewer makes the map grow and hash everything again.
        headers.reserve(request.headers.len() + 4);
        for (name, value) in &request.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
            let header_value = HeaderValue::from_str(value)
                .map_err(|_| invalid(format!("invalid value for header {name:?}")))?;
            headers.append(header_name, header_value);
        }
        // A workflow may ask for a more specific media type; only fill in what it left out.
        if let Entry::Vacant(accept) = headers.entry(ACCEPT) {
            accept.insert(HeaderValue::from_static("application/json"));
        }
        if request.body.is_some()
            && let Entry::Vacant(content_type) = headers.entry(CONTENT_TYPE)
        {
            content_type.insert(HeaderValue::from_static("application/json"));
        }
        // Set last and unconditionally: the key is what makes retries safe, so a stray header
        // from the workflow must not replace it.
        let key = HeaderValue::from_str(&request.idempotency_key).map_err(|_| {
            invalid(format!(
                "invalid idempotency key {:?}",
                request.idempotency_key
            ))
        })?;
        headers.insert(IDEMPOTENCY_KEY, key);
        Ok(prepared)
    }
}

#[async_trait]
impl Invoker for HttpInvoker {
    async fn invoke(&self, request: &Request, _attempt: u32) -> Result<Response, Failure> {
        let Request::Http(http) = request else {
            return Err(Failure::new(
                FailureKind::Invalid,
                format!("{} is not an HTTP request", request.describe()),
            ));
        };
        // One deadline around everything, body included: a server that trickles its body must
        // not be able to hold a step longer than its timeout.
        let limit = Duration::from_millis(http.timeout_ms);
        match tokio::time::timeout(limit, self.call(http)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                FailureKind::Timeout,
                format!("{http} timed out after {}", format_millis(http.timeout_ms)),
            )),
        }
    }
}

/// Why a body could not be read; turned into a [`Failure`] only by the caller, which knows
/// whether the status matters more.
enum BodyError {
    TooLarge,
    Transport(reqwest::Error),
}

impl BodyError {
    fn describe(&self, limit: usize) -> String {
        match self {
            BodyError::TooLarge => {
                format!("response body exceeds the {} limit", format_bytes(limit))
            }
            BodyError::Transport(error) => {
                format!("reading the response failed: {}", error_chain(error))
            }
        }
    }

    fn into_failure(self, limit: usize, request: &HttpRequest) -> Failure {
        match self {
            BodyError::TooLarge => Failure::new(
                FailureKind::BodyTooLarge,
                format!("{request}: {}", self.describe(limit)),
            ),
            BodyError::Transport(error) => {
                transport_failure(&error, request, "reading the response failed")
            }
        }
    }
}

/// Reads the body chunk by chunk so an oversized response is cut off as soon as it crosses
/// the limit rather than after it has been held in memory.
async fn read_body(response: &mut reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge);
    }

    // The declared length is only a hint for the allocation, capped so a lying server cannot
    // make us reserve more than the limit.
    let mut body = Vec::with_capacity(declared.map_or(0, |length| length as usize).min(limit));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Maps a reqwest error raised while sending or reading to the kind a retry policy needs.
fn transport_failure(error: &reqwest::Error, request: &HttpRequest, context: &str) -> Failure {
    let kind = if error.is_timeout() {
        FailureKind::Timeout
    } else if error.is_builder() {
        FailureKind::Invalid
    } else {
        // Refused, reset, DNS, TLS and a body cut short all mean the service could not be
        // reached reliably; a retry may well succeed.
        FailureKind::Connection
    };
    Failure::new(
        kind,
        format!("{request}: {context}: {}", error_chain(error)),
    )
}

/// reqwest's own message is only "error sending request for url (…)", which repeats the URL
/// the caller already names; the useful part ("Connection refused", "dns error") is further
/// down the source chain.
fn error_chain(error: &reqwest::Error) -> String {
    let Some(first) = error.source() else {
        return error.to_string();
    };
    let mut parts = vec![first.to_string()];
    let mut source = first.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

fn collect_headers(headers: &HeaderMap) -> Headers {
    let bytes = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ", ".len())
        .sum();
    let mut collected = HeadersBuilder::with_capacity(headers.keys_len(), bytes);
    // A map yields each name's values one after another, which the builder joins onto the
    // entry just made. `HeaderName` is already lower case, which keeps lookups predictable.
    for (name, value) in headers {
        if let Ok(value) = value.to_str() {
            collected.append(name.as_str(), value);
        }
    }
    collected.build()
}

/// Only the delta-seconds form: the HTTP-date form needs a date parser the crate does not
/// depend on, and services that throttle overwhelmingly send seconds.
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(seconds.saturating_mul(1000))
}

fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let mut chars = text.char_indices();
    match chars.nth(ERROR_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `200ms`, `1.5s`, `30s`: the form people write timeouts in.
fn format_millis(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (seconds, fraction) = (ms / 1000, ms % 1000);
    if fraction == 0 {
        format!("{seconds}s")
    } else {
        let fraction = format!("{fraction:03}");
        format!("{seconds}.{}s", fraction.trim_end_matches('0'))
    }
}

/// `10 MiB`, `1 KiB`, `1.5 KiB`, `512 bytes`: limits are configured in round binary units.
fn format_bytes(bytes: usize) -> String {
    const UNITS: [(usize, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if bytes >= size {
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{:.1} {unit}", bytes as f64 / size as f64)
            };
        }
    }
    if bytes == 1 {
        "1 byte".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
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
}
