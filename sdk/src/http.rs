//! Outbound HTTP through the host.
//!
//! The host only lets a component reach the hosts its `grants.http` allowlist names; any other
//! URL fails with [`HttpError::Denied`] before a connection is made. The host also caps each
//! request's timeout by the call's remaining deadline.
//!
//! Like most HTTP clients, [`send`], [`get`] and [`post_json`] return any response the server
//! gave, whatever its status; call [`Response::error_for_status`] to turn 4xx/5xx into an
//! error (5xx, 408 and 429 then become retryable [`crate::Error`]s through `?`).
//!
//! ```no_run
//! # fn demo() -> Result<(), orca_sdk::Error> {
//! use orca_sdk::http;
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Risk { risk: f64 }
//!
//! let risk: Risk = http::Request::post("http://risk.internal/score")
//!     .header("x-request-id", "abc")
//!     .json(&serde_json::json!({"amount": 12}))
//!     .timeout(Duration::from_secs(2))
//!     .send()?
//!     .error_for_status()?
//!     .json()?;
//! # let _ = risk.risk; Ok(()) }
//! ```

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::orca::plugin::http as wit;

/// Why an HTTP call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The host is not in the component's `grants.http` allowlist (the text says which grant
    /// would allow it). No connection was made.
    Denied(String),
    /// The request was malformed (bad URL, method or header), or its body could not be
    /// serialized.
    Invalid(String),
    /// The request timed out.
    Timeout,
    /// Could not connect, or the connection broke.
    Connection(String),
    /// The response body exceeded the host's limit.
    TooLarge,
    /// The server answered with an error status ([`Response::error_for_status`]).
    Status {
        /// The status code.
        status: u16,
        /// The request's URL.
        url: String,
        /// The start of the response body, as text.
        body: String,
    },
    /// The response body could not be decoded ([`Response::json`]).
    Decode(String),
}

impl HttpError {
    /// Whether trying again may help: timeouts, connection failures and statuses 408, 429
    /// and 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Timeout | HttpError::Connection(_) => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            HttpError::Denied(_)
            | HttpError::Invalid(_)
            | HttpError::TooLarge
            | HttpError::Decode(_) => false,
        }
    }

    /// A short machine-readable code (`http_denied`, `http_timeout`, `http_status`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            HttpError::Denied(_) => "http_denied",
            HttpError::Invalid(_) => "http_invalid",
            HttpError::Timeout => "http_timeout",
            HttpError::Connection(_) => "http_connection",
            HttpError::TooLarge => "http_too_large",
            HttpError::Status { .. } => "http_status",
            HttpError::Decode(_) => "http_bad_response",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Denied(m) => write!(f, "http request denied: {m}"),
            HttpError::Invalid(m) => write!(f, "invalid http request: {m}"),
            HttpError::Timeout => f.write_str("http request timed out"),
            HttpError::Connection(m) => write!(f, "http connection failed: {m}"),
            HttpError::TooLarge => f.write_str("http response body too large"),
            HttpError::Status { status, url, body } if body.is_empty() => {
                write!(f, "HTTP {status} from {url}")
            }
            HttpError::Status { status, url, body } => {
                write!(f, "HTTP {status} from {url}: {body}")
            }
            HttpError::Decode(m) => write!(f, "cannot decode the http response: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::Error {
    fn from(e: HttpError) -> Self {
        crate::Error::new(e.to_string(), e.is_retryable()).with_code(e.code())
    }
}

impl From<wit::Error> for HttpError {
    fn from(e: wit::Error) -> Self {
        match e {
            wit::Error::Denied(m) => HttpError::Denied(m),
            wit::Error::Invalid(m) => HttpError::Invalid(m),
            wit::Error::Timeout => HttpError::Timeout,
            wit::Error::Connection(m) => HttpError::Connection(m),
            wit::Error::TooLarge => HttpError::TooLarge,
        }
    }
}

/// An HTTP request under construction.
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until `send` is called"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    /// A body serialization error, reported by `send`.
    pending_error: Option<String>,
}

impl Request {
    /// A request with any method.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            pending_error: None,
        }
    }

    /// A GET request.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// A POST request.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new("POST", url)
    }

    /// A PUT request.
    pub fn put(url: impl Into<String>) -> Self {
        Request::new("PUT", url)
    }

    /// A DELETE request.
    pub fn delete(url: impl Into<String>) -> Self {
        Request::new("DELETE", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and, unless already set, `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => self.body = Some(body),
            Err(e) => self.pending_error = Some(format!("cannot serialize the JSON body: {e}")),
        }
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self
    }

    /// Sets the timeout (the host caps it by the call's remaining deadline; sub-millisecond
    /// parts round up).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The method.
    pub fn method_str(&self) -> &str {
        &self.method
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request through the host.
    pub fn send(self) -> Result<Response, HttpError> {
        if let Some(e) = self.pending_error {
            return Err(HttpError::Invalid(e));
        }
        let request = wit::Request {
            method: self.method,
            url: self.url,
            headers: self.headers,
            body: self.body,
            timeout_ms: self.timeout.map(duration_to_ms),
        };
        let response = host_send(&request)?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
            url: request.url,
        })
    }
}

fn duration_to_ms(d: Duration) -> u32 {
    let ms = d.as_nanos().div_ceil(1_000_000);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

fn host_send(request: &wit::Request) -> Result<wit::Response, HttpError> {
    if cfg!(not(target_arch = "wasm32")) {
        panic!(
            "orca_sdk::http: {} {} needs the Orca host; it is only available inside a component",
            request.method, request.url
        )
    }
    wit::send(request).map_err(HttpError::from)
}

/// Sends a request.
pub fn send(request: Request) -> Result<Response, HttpError> {
    request.send()
}

/// `GET url`.
pub fn get(url: impl Into<String>) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: Serialize + ?Sized>(
    url: impl Into<String>,
    value: &T,
) -> Result<Response, HttpError> {
    Request::post(url).json(value).send()
}

/// An HTTP response (any status).
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    url: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError::Decode(format!("{e} (from {})", self.url)))
    }

    /// The response itself if its status is below 400, else [`HttpError::Status`] with the
    /// start of the body.
    pub fn error_for_status(self) -> Result<Self, HttpError> {
        if self.status < 400 {
            return Ok(self);
        }
        let mut body = self.text();
        if body.len() > 512 {
            let mut end = 512;
            while !body.is_char_boundary(end) {
                end -= 1;
            }
            body.truncate(end);
            body.push_str("...");
        }
        Err(HttpError::Status {
            status: self.status,
            url: self.url,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "x".into())],
            body: body.into(),
            url: "http://h/p".into(),
        }
    }

    #[test]
    fn status_errors_and_retryability() {
        assert!(response(204, "").error_for_status().is_ok());
        let e = response(503, "down").error_for_status().unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "HTTP 503 from http://h/p: down");
        let e: crate::Error = response(404, "").error_for_status().unwrap_err().into();
        assert!(!e.retryable);
        assert_eq!(e.code.as_deref(), Some("http_status"));
        assert!(
            HttpError::Status {
                status: 429,
                url: String::new(),
                body: String::new()
            }
            .is_retryable()
        );
        assert!(HttpError::Timeout.is_retryable());
        assert!(HttpError::Connection("reset".into()).is_retryable());
        assert!(!HttpError::Denied("x".into()).is_retryable());
        assert!(!HttpError::TooLarge.is_retryable());
    }

    #[test]
    fn response_helpers() {
        let r = response(200, r#"{"risk": 0.5}"#);
        assert_eq!(r.header("content-type"), Some("x"));
        assert!(r.is_success());
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["risk"], 0.5);
        assert!(matches!(
            response(200, "nope").json::<serde_json::Value>(),
            Err(HttpError::Decode(_))
        ));
        let long = "é".repeat(600);
        match response(500, &long).error_for_status() {
            Err(HttpError::Status { body, .. }) => {
                assert!(body.ends_with("...") && body.len() <= 515)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_builder() {
        let r = Request::post("http://h")
            .json(&serde_json::json!({"a": 1}))
            .timeout(Duration::from_micros(1500));
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(r.body.as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(r.timeout.map(duration_to_ms), Some(2));
        assert_eq!(duration_to_ms(Duration::from_secs(u64::MAX)), u32::MAX);
        let r = Request::put("http://h")
            .header("Content-Type", "text/plain")
            .json("x");
        assert_eq!(r.headers.len(), 1);
    }
}
