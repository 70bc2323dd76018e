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
mod tests;
