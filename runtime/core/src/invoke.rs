//! What the engine asks the outside world to do, and the trait that does it.
//!
//! The engine builds a [`Request`] (fully rendered, so a retry or a resumed run sends exactly
//! the same thing) and an [`Invoker`] carries it out. HTTP is the first kind of request; the
//! Wasm host adds components behind the same trait.

mod headers;

pub use headers::{Headers, HeadersBuilder};

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::cached_json::CachedJson;
use crate::component::{ComponentRequest, Phase};
use crate::payload::Payload;

/// A rendered call, stored on the execution before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Http(HttpRequest),
    /// Boxed: a component's request is nearly three times an HTTP one's size, and every step's
    /// request is moved a few times and kept in its execution's record.
    Component(Box<ComponentRequest>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: Arc<str>,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Kept with its JSON: the default body is the execution input, shared with it, and the
    /// bytes sent are the bytes a checkpoint writes.
    pub body: Option<CachedJson<Json>>,
    pub timeout_ms: u64,
    /// Sent as `Idempotency-Key`; the same for every attempt of one step of one execution.
    pub idempotency_key: String,
    /// The service name the URL was bound from, for metrics labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Arc<str>>,
}

/// `POST http://…/payments`: how progress lines and failures name a call. A `Display` rather
/// than a `String`, so that a call pays for the text only when a message needs it.
impl std::fmt::Display for HttpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.url)
    }
}

impl Request {
    /// A short description for progress lines and errors (`POST http://…/payments`).
    pub fn describe(&self) -> String {
        match self {
            Request::Http(http) => http.to_string(),
            Request::Component(c) => match c.phase {
                Phase::Run => format!("component {}", c.component),
                Phase::Compensate => format!("component {} (compensate)", c.component),
            },
        }
    }
}

/// A successful response: its JSON body (a string when it is not JSON), kept as text until
/// something reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub headers: Headers,
    pub body: Payload,
}

/// Why a call failed, classified so a retry policy can decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
    /// From a `Retry-After` response header.
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "status", rename_all = "snake_case")]
pub enum FailureKind {
    /// The service answered with a status outside 2xx.
    Status(u16),
    Timeout,
    /// Could not connect, or the connection broke.
    Connection,
    /// The response body exceeded the configured limit.
    BodyTooLarge,
    /// The request could not be built or sent (bad URL, …); never retried.
    Invalid,
    /// A component returned an error; it says whether trying again may help.
    Guest {
        retryable: bool,
    },
    /// A component was stopped by the host.
    Trap(TrapKind),
}

/// Why the host stopped a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// It ran past its wall-clock deadline.
    Deadline,
    /// It tried to grow memory past its cap.
    Memory,
    /// It used up its fuel.
    Fuel,
    /// Its call stack overflowed (runaway recursion).
    StackOverflow,
    /// Its result was larger than allowed.
    ResultTooLarge,
    /// Any other trap (a panic, `unreachable`, a bad result) or a failure to instantiate.
    Crash,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// Carries out requests. Implementations enforce the request's timeout themselves.
/// `attempt` is 1 for the first try; components see it in their context.
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, request: &Request, attempt: u32) -> Result<Response, Failure>;
}

/// Sends each request to the invoker for its kind.
pub struct Dispatcher {
    pub http: std::sync::Arc<dyn Invoker>,
    /// `None` when this process runs no Wasm host.
    pub component: Option<std::sync::Arc<dyn Invoker>>,
}

#[async_trait]
impl Invoker for Dispatcher {
    async fn invoke(&self, request: &Request, attempt: u32) -> Result<Response, Failure> {
        match request {
            Request::Http(_) => self.http.invoke(request, attempt).await,
            Request::Component(_) => match &self.component {
                Some(wasm) => wasm.invoke(request, attempt).await,
                None => Err(Failure::new(
                    FailureKind::Invalid,
                    format!("{}: this process has no Wasm host", request.describe()),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component request is stored with its step and read back when the execution is
    /// loaded or resumed, through the enum's tag: the earlier results in it must survive.
    #[test]
    fn a_component_request_reads_back_as_it_was_written() {
        use crate::component::{Export, Grants, Limits};
        use crate::payload::Payload;
        use serde_json::json;

        let request = Request::Component(Box::new(ComponentRequest {
            component: "refund".into(),
            digest: "sha256:00".into(),
            export: Export::Step,
            phase: Phase::Compensate,
            tenant: "t".into(),
            execution_id: "e".into(),
            workflow: "w".into(),
            step: "pay".into(),
            input: json!({"order": 7}).into(),
            results: [(
                Arc::from("pay"),
                Arc::new(Payload::from_body(br#"{"payment_id": "p-7"}"#.to_vec())),
            )]
            .into(),
            config: json!({}),
            grants: Grants::default(),
            limits: Limits::default(),
        }));
        let written = serde_json::to_string(&request).unwrap();
        let read: Request = serde_json::from_str(&written).unwrap();
        assert_eq!(read, request);
        let read: Request =
            serde_json::from_value(serde_json::to_value(&request).unwrap()).unwrap();
        assert_eq!(read, request);
    }

    /// Every step's request is moved a few times and then kept in its execution's record, so
    /// its size is paid in cache lines at each step: the HTTP request, which most steps
    /// make, is what sets it.
    #[test]
    fn a_request_is_no_larger_than_an_http_one_and_its_tag() {
        assert!(size_of::<Request>() <= size_of::<HttpRequest>() + size_of::<usize>());
    }
}
