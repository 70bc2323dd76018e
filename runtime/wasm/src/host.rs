//! The host side of the WIT interfaces: one state struct per invocation, and the small
//! capability pieces (`http`, `state`, `log`, `config`) that guests call.
//!
//! Every capability is deny-by-default: a call outside the component's grants returns the
//! WIT `denied` error (the guest decides what to do) and logs which grant would allow it.
//! Host functions return `wasmtime::Result<Result<T, E>>`: the outer error traps the guest
//! and is reserved for host bugs; the inner one is what the guest sees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::engine::CallLimits;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use orca_core::cached_json::CachedJson;
use orca_core::invoke::{FailureKind, HttpRequest, Invoker, Request};
use orca_core::payload::Payload;
use orca_store::kv::KvStore;

use orca_core::component::Grants;

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

use orca::plugin::{http, log, state};

/// Guest stdout/stderr are captured up to this size and then logged; the rest is dropped so a
/// chatty guest cannot fill the host's memory.
const CAPTURED_OUTPUT_BYTES: usize = 64 * 1024;
/// Largest value a guest may store under one key.
pub(super) const MAX_STATE_VALUE_BYTES: usize = 1 << 20;
const MAX_STATE_KEY_BYTES: usize = 512;

/// Who is calling, for namespacing state and tagging logs.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub tenant: String,
    pub execution_id: String,
    pub workflow: String,
    pub step: String,
    pub component: String,
}

/// The services a guest's host calls use, shared by every invocation.
#[derive(Clone)]
pub struct HostServices {
    pub http: Arc<dyn Invoker>,
    pub kv: Arc<dyn KvStore>,
}

/// Per-invocation state of one instance.
pub(super) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: CallLimits,
    call: CallInfo,
    grants: Arc<Grants>,
    config: String,
    services: HostServices,
    deadline: Instant,
    http_calls: u32,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(super) fn new(
        call: CallInfo,
        grants: Arc<Grants>,
        config: String,
        services: HostServices,
        memory_bytes: usize,
        deadline: Instant,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(CAPTURED_OUTPUT_BYTES);
        // WASI is linked because language toolchains import it, but it grants nothing: no
        // preopened directories, no environment, no arguments, no sockets, no inherited stdio.
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = CallLimits::new(memory_bytes);
        HostState {
            wasi,
            table: ResourceTable::new(),
            limits,
            call,
            grants,
            config,
            services,
            deadline,
            http_calls: 0,
            stdout,
            stderr,
        }
    }

    /// Logs what the guest printed, tagged with the execution.
    pub(super) fn flush_output(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                tracing::info!(
                    execution = %self.call.execution_id,
                    step = %self.call.step,
                    component = %self.call.component,
                    stream,
                    "{line}"
                );
            }
        }
    }

    /// The key prefix of `scope` for this call, once the grant for it is checked. The
    /// namespace is the host's: whatever the guest writes only ever follows it.
    fn namespace(&self, scope: state::Scope) -> Result<String, state::Error> {
        let (granted, name) = match scope {
            state::Scope::Execution => (self.grants.state_execution, "execution"),
            state::Scope::Tenant => (self.grants.state_tenant, "tenant"),
        };
        if !granted {
            tracing::warn!(component = %self.call.component, "state access denied: add `{name}` to grants.state");
            return Err(state::Error::Denied(format!(
                "component `{}` has no grant for {name} state (grants.state: [{name}])",
                self.call.component
            )));
        }
        Ok(match scope {
            state::Scope::Execution => {
                format!("t/{}/x/{}/", self.call.tenant, self.call.execution_id)
            }
            state::Scope::Tenant => format!("t/{}/s/", self.call.tenant),
        })
    }

    fn state_key(&self, scope: state::Scope, key: &str) -> Result<String, state::Error> {
        if key.is_empty() || key.len() > MAX_STATE_KEY_BYTES {
            return Err(state::Error::Invalid(format!(
                "keys are 1 to {MAX_STATE_KEY_BYTES} bytes"
            )));
        }
        Ok(self.namespace(scope)? + key)
    }

    /// The store and the guest's key in its namespace. Not async: `HostState` is not `Sync`,
    /// so host functions must not hold `&self` across an await.
    fn scoped(
        &self,
        scope: state::Scope,
        key: &str,
    ) -> Result<(Arc<dyn KvStore>, String), state::Error> {
        Ok((self.services.kv.clone(), self.state_key(scope, key)?))
    }
}

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

fn unavailable(error: orca_store::StoreError) -> state::Error {
    state::Error::Unavailable(error.to_string())
}

/// Links the Orca interfaces and WASI into `linker`, once per engine.
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl orca::plugin::types::Host for HostState {}

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

impl state::Host for HostState {
    async fn get(
        &mut self,
        scope: state::Scope,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, state::Error>> {
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.get(&key).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn set(
        &mut self,
        scope: state::Scope,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), state::Error>> {
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Ok(Err(state::Error::Invalid(format!(
                "values are at most {MAX_STATE_VALUE_BYTES} bytes"
            ))));
        }
        let ttl = ttl_seconds.map(|s| Duration::from_secs(u64::from(s)));
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.set(&key, &value, ttl).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn delete(
        &mut self,
        scope: state::Scope,
        key: String,
    ) -> wasmtime::Result<Result<(), state::Error>> {
        Ok(match self.scoped(scope, &key) {
            Ok((kv, key)) => kv.delete(&key).await.map_err(unavailable),
            Err(e) => Err(e),
        })
    }

    async fn list_keys(
        &mut self,
        scope: state::Scope,
        prefix: String,
    ) -> wasmtime::Result<Result<Vec<String>, state::Error>> {
        let namespace = match self.namespace(scope) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let keys = self
            .services
            .kv
            .list_keys(&(namespace.clone() + &prefix))
            .await;
        Ok(keys
            .map(|keys| {
                keys.into_iter()
                    .map(|k| k[namespace.len()..].to_string())
                    .collect()
            })
            .map_err(unavailable))
    }
}

impl log::Host for HostState {
    async fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let c = &self.call;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(execution = %c.execution_id, step = %c.step, component = %c.component, %fields, "{message}")
            };
        }
        match level {
            log::Level::Trace => emit!(trace),
            log::Level::Debug => emit!(debug),
            log::Level::Info => emit!(info),
            log::Level::Warn => emit!(warn),
            log::Level::Error => emit!(error),
        }
        Ok(())
    }
}

impl orca::plugin::config::Host for HostState {
    async fn get(&mut self) -> wasmtime::Result<String> {
        Ok(self.config.clone())
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
