//! What the engine asks the outside world to do, and the trait that does it.
//!
//! The engine builds a [`Request`] (fully rendered, so a retry or a resumed run sends exactly
//! the same thing) and an [`Invoker`] carries it out. HTTP is the first kind of request; the
//! Wasm host adds components behind the same trait.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A rendered call, stored on the execution before it is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Http(HttpRequest),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Json>,
    pub timeout_ms: u64,
    /// Sent as `Idempotency-Key`; the same for every attempt of one step of one execution.
    pub idempotency_key: String,
}

impl Request {
    /// A short description for progress lines and errors (`POST http://…/payments`).
    pub fn describe(&self) -> String {
        match self {
            Request::Http(http) => format!("{} {}", http.method, http.url),
        }
    }
}

/// A successful response: the parsed JSON body (a string when it is not JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: Json,
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
#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, request: &Request) -> Result<Response, Failure>;
}
