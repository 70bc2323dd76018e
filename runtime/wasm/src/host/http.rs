//! The `http` capability: a guest's request, sent through the host's client to the hosts its
//! grants allow (nothing by default), with the same body limit and idempotency rule as HTTP
//! steps.

use std::time::{Duration, Instant};

use orca_core::cached_json::CachedJson;
use orca_core::invoke::{FailureKind, HttpRequest, Request};
use orca_core::payload::Payload;

use super::HostState;
use super::orca::plugin::http;

/// The response body as the guest reads it: the service's own text. A body that was not JSON
/// reached the payload as a JSON string and an empty one as `null`; both go back to what came.
fn body_bytes(body: Payload) -> Vec<u8> {
    let text_or_empty = match body.parsed() {
        Some(value) => matches!(
            value,
            serde_json::Value::String(_) | serde_json::Value::Null
        ),
        // JSON text never starts with whitespace in a payload: only a string or `null` start so.
        None => matches!(body.json().get().as_bytes().first(), Some(b'"' | b'n')),
    };
    if !text_or_empty {
        return body.json().get().as_bytes().to_vec();
    }
    match body.into_value() {
        serde_json::Value::String(text) => text.into_bytes(),
        _ => Vec::new(),
    }
}

impl http::Host for HostState {
    async fn send(
        &mut self,
        request: http::Request,
    ) -> wasmtime::Result<Result<http::Response, http::Error>> {
        let url = match reqwest::Url::parse(&request.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url,
            Ok(url) => {
                return Ok(Err(http::Error::Invalid(format!(
                    "scheme `{}` is not allowed: use http or https",
                    url.scheme()
                ))));
            }
            Err(e) => return Ok(Err(http::Error::Invalid(format!("bad URL: {e}")))),
        };
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = url.port_or_known_default().unwrap_or(0);
        if !self.grants.allows_host(&host, port) {
            tracing::warn!(
                component = %self.call.component,
                execution = %self.call.execution_id,
                "http to {host}:{port} denied: add `{host}:{port}` to the component's grants.http"
            );
            return Ok(Err(http::Error::Denied(format!(
                "{host}:{port} is not in the grants.http of component `{}`",
                self.call.component
            ))));
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = request
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)).min(remaining))
            .unwrap_or(remaining);
        let body = match request.body {
            None => None,
            Some(bytes) if bytes.is_empty() => None,
            Some(bytes) => match serde_json::from_slice(&bytes) {
                Ok(json) => Some(CachedJson::new(json)),
                Err(_) => {
                    return Ok(Err(http::Error::Invalid(
                        "request bodies must be JSON".into(),
                    )));
                }
            },
        };
        self.http_calls += 1;
        // The same idempotency rule as HTTP steps: stable across retries and resumes of this
        // step, distinct per call the guest makes.
        let idempotency_key = format!(
            "{}:{}:http:{}",
            self.call.execution_id, self.call.step, self.http_calls
        );
        let outcome = self
            .services
            .http
            .invoke(
                &Request::Http(HttpRequest {
                    method: request.method.to_ascii_uppercase().into(),
                    url: url.to_string(),
                    headers: request.headers,
                    body,
                    timeout_ms: timeout.as_millis() as u64,
                    idempotency_key,
                    service: Some(format!("component:{}", self.call.component).into()),
                }),
                1,
            )
            .await;
        Ok(match outcome {
            Ok(response) => Ok(http::Response {
                status: response.status,
                headers: response
                    .headers
                    .iter()
                    .map(|(name, value)| (name.to_owned(), value.to_owned()))
                    .collect(),
                body: body_bytes(response.body),
            }),
            Err(failure) => match failure.kind {
                // A non-2xx answer is still an answer: the guest sees the status.
                FailureKind::Status(status) => Ok(http::Response {
                    status,
                    headers: Vec::new(),
                    body: failure.message.into_bytes(),
                }),
                FailureKind::Timeout => Err(http::Error::Timeout),
                FailureKind::Connection => Err(http::Error::Connection(failure.message)),
                FailureKind::BodyTooLarge => Err(http::Error::TooLarge),
                FailureKind::Invalid | FailureKind::Guest { .. } | FailureKind::Trap(_) => {
                    Err(http::Error::Invalid(failure.message))
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_guest_reads_the_body_the_service_sent() {
        // JSON as it came, spacing and key order included: not parsed and written again.
        let sent = br#"{"score": 0.25,  "b": [1]}"#;
        assert_eq!(body_bytes(Payload::from_body(sent.to_vec())), sent);
        assert_eq!(
            body_bytes(Payload::from_body(b"not json".to_vec())),
            b"not json"
        );
        assert_eq!(body_bytes(Payload::from_body(Vec::new())), b"");
        assert_eq!(
            body_bytes(Payload::from_body(br#""quoted""#.to_vec())),
            b"quoted"
        );
        assert_eq!(body_bytes(Payload::from_body(b"null".to_vec())), b"");
        assert_eq!(body_bytes(Payload::from(json!({"k": 1}))), br#"{"k":1}"#);
        assert_eq!(body_bytes(Payload::from(json!(12))), b"12");
    }
}
