//! The Wasm host: runs components as steps, conditions and compensations.
//!
//! One shared [`wasmtime::Engine`] (configured in [`engine`]), each component compiled once
//! per process (and cached compiled on disk by wasmtime, keyed by content and engine version)
//! and kept as an `InstancePre`, and a fresh instance per call so no state leaks between
//! executions. A semaphore in front of the pooling allocator keeps concurrent calls within
//! the pool. Every call runs under its component's limits: an epoch deadline, a memory cap,
//! optional fuel, a stack limit and a result-size limit; breaking one stops that call with
//! an error naming the component and the limit, and nothing else.

mod bind;
mod blobs;
pub mod engine;
mod host;

pub use bind::bind_components;
pub use blobs::{BlobError, ComponentBlobs, digest_of};
pub use host::{CallInfo, HostServices};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Engine, Store, Trap};

use orca_core::component::{ComponentRequest, Export, Phase};
use orca_core::invoke::{Failure, FailureKind, Invoker, Request, Response, TrapKind};
use orca_core::payload::Payload;

use host::HostState;
use host::exports::orca::plugin::{condition, step};
use host::orca::plugin::types;

/// A compiled component, ready to instantiate.
struct Loaded {
    pre: InstancePre<HostState>,
    step: Option<step::GuestIndices>,
    condition: Option<condition::GuestIndices>,
}

#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error("cannot start the Wasm engine: {0}")]
    Engine(String),
    #[error("`{path}` is not a usable component: {message}")]
    Invalid { path: String, message: String },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// Runs component requests. Cheap to share behind an `Arc`.
pub struct WasmHost {
    engine: Engine,
    linker: Linker<HostState>,
    blobs: ComponentBlobs,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    services: HostServices,
    permits: Semaphore,
    _ticker: engine::EpochTicker,
}

impl WasmHost {
    /// `cache_dir` holds wasmtime's compiled-code cache (None: compile on every start).
    pub fn new(
        blobs: ComponentBlobs,
        services: HostServices,
        cache_dir: Option<&Path>,
    ) -> Result<Self, WasmError> {
        let engine =
            engine::build_engine(cache_dir).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let ticker = engine::EpochTicker::start(&engine);
        Ok(WasmHost {
            engine,
            linker,
            blobs,
            loaded: Mutex::new(HashMap::new()),
            services,
            permits: Semaphore::new(engine::MAX_INSTANCES as usize),
            _ticker: ticker,
        })
    }

    /// Where component bytes are kept.
    pub fn blobs(&self) -> &ComponentBlobs {
        &self.blobs
    }

    /// Checks that `bytes` is a component this host can run, and which exports it has.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<(bool, bool), WasmError> {
        // The binary format first: bad bytes are refused without reaching the compiler.
        orca_core::component::inspect(bytes).map_err(|message| WasmError::Invalid {
            path: name.to_string(),
            message,
        })?;
        let loaded = self.compile(name, bytes)?;
        Ok((loaded.step.is_some(), loaded.condition.is_some()))
    }

    fn compile(&self, name: &str, bytes: &[u8]) -> Result<Loaded, WasmError> {
        let invalid = |message: String| WasmError::Invalid {
            path: name.to_string(),
            message,
        };
        let component =
            Component::new(&self.engine, bytes).map_err(|e| invalid(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("it imports something Orca does not provide: {e:#}")))?;
        let step = step::GuestIndices::new(&pre).ok();
        let condition = condition::GuestIndices::new(&pre).ok();
        if step.is_none() && condition.is_none() {
            return Err(invalid(
                "it exports neither orca:plugin/step nor orca:plugin/condition".into(),
            ));
        }
        Ok(Loaded {
            pre,
            step,
            condition,
        })
    }

    async fn load(&self, request: &ComponentRequest) -> Result<Arc<Loaded>, Failure> {
        if let Some(found) = self.lock_loaded().get(&request.digest) {
            return Ok(found.clone());
        }
        let crash = |message: String| Failure::new(FailureKind::Trap(TrapKind::Crash), message);
        let bytes = self
            .blobs
            .get(&request.digest)
            .map_err(|e| crash(format!("component `{}`: {e}", request.component)))?;
        let loaded = Arc::new(
            self.compile(&request.component, &bytes)
                .map_err(|e| crash(e.to_string()))?,
        );
        self.lock_loaded()
            .insert(request.digest.clone(), loaded.clone());
        Ok(loaded)
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[tracing::instrument(
        name = "wasm_invocation",
        skip_all,
        fields(
            component = %request.component,
            tenant = %request.tenant,
            execution = %request.execution_id,
            step = %request.step,
            attempt = attempt,
        )
    )]
    async fn call(&self, request: &ComponentRequest, attempt: u32) -> Result<Response, Failure> {
        let loaded = self.load(request).await?;
        let _permit = self.permits.acquire().await.map_err(|_| {
            Failure::new(
                FailureKind::Trap(TrapKind::Crash),
                "the Wasm host is shutting down",
            )
        })?;
        let limits = request.limits;
        let deadline_after = Duration::from_millis(limits.deadline_ms);
        let deadline = Instant::now() + deadline_after;
        let state = HostState::new(
            CallInfo {
                tenant: request.tenant.clone(),
                execution_id: request.execution_id.clone(),
                workflow: request.workflow.clone(),
                step: request.step.clone(),
                component: request.component.clone(),
            },
            Arc::new(request.grants.clone()),
            request.config.to_string(),
            self.services.clone(),
            limits.memory_bytes.min(engine::MAX_MEMORY_BYTES as u64) as usize,
            deadline,
        );
        let mut store = Store::new(&self.engine, state);
        engine::limit_store(&mut store, deadline_after, limits.fuel)
            .map_err(|e| Failure::new(FailureKind::Trap(TrapKind::Crash), format!("{e:#}")))?;
        let context = types::Context {
            execution_id: request.execution_id.clone(),
            workflow: request.workflow.clone(),
            step: request.step.clone(),
            phase: match request.phase {
                Phase::Run => types::Phase::Run,
                Phase::Compensate => types::Phase::Compensate,
            },
            attempt,
            // Both kept as JSON text (shared with the execution): copied, not serialized.
            input: match request.input.json() {
                Ok(json) => json.get().to_owned(),
                Err(_) => request.input.to_string(),
            },
            results: serde_json::to_string(&request.results).unwrap_or_else(|_| "{}".into()),
            config: request.config.to_string(),
        };
        let run = async {
            let instance = loaded.pre.instantiate_async(&mut store).await?;
            let outcome = match request.export {
                Export::Step => {
                    let indices = loaded.step.as_ref().ok_or_else(|| {
                        wasmtime::Error::msg("it does not export orca:plugin/step")
                    })?;
                    let guest = indices.load(&mut store, &instance)?;
                    guest
                        .call_run(&mut store, &context)
                        .await?
                        .map(Output::Json)
                }
                Export::Condition => {
                    let indices = loaded.condition.as_ref().ok_or_else(|| {
                        wasmtime::Error::msg("it does not export orca:plugin/condition")
                    })?;
                    let guest = indices.load(&mut store, &instance)?;
                    guest
                        .call_evaluate(&mut store, &context)
                        .await?
                        .map(Output::Bool)
                }
            };
            wasmtime::Result::Ok(outcome)
        };
        // The epoch stops guest code; this stops a guest parked in a host call that hangs.
        let outcome = tokio::time::timeout(deadline_after + Duration::from_secs(1), run).await;
        store.data().flush_output();
        let name = &request.component;
        match outcome {
            Err(_) => Err(trap(
                TrapKind::Deadline,
                format!(
                    "component `{name}` exceeded its {} deadline",
                    millis(limits.deadline_ms)
                ),
            )),
            Ok(Err(error)) => {
                let memory_refused = store.data().limits.memory_refused;
                Err(classify(name, &limits, &error, memory_refused))
            }
            Ok(Ok(Err(guest))) => Err(Failure::new(
                FailureKind::Guest {
                    retryable: guest.retryable,
                },
                match guest.code {
                    Some(code) => format!("component `{name}`: {} ({code})", guest.message),
                    None => format!("component `{name}`: {}", guest.message),
                },
            )),
            Ok(Ok(Ok(Output::Bool(b)))) => Ok(ok(serde_json::Value::Bool(b).into())),
            Ok(Ok(Ok(Output::Json(text)))) => {
                if text.len() as u64 > limits.max_result_bytes {
                    return Err(trap(
                        TrapKind::ResultTooLarge,
                        format!(
                            "component `{name}` returned {} bytes, over its result limit of {}",
                            text.len(),
                            limits.max_result_bytes
                        ),
                    ));
                }
                Payload::parse(text).map(ok).map_err(|e| {
                    trap(
                        TrapKind::Crash,
                        format!("component `{name}` returned invalid JSON: {e}"),
                    )
                })
            }
        }
    }
}

enum Output {
    Json(String),
    Bool(bool),
}

fn ok(body: Payload) -> Response {
    Response {
        status: 200,
        headers: Default::default(),
        body,
    }
}

fn trap(kind: TrapKind, message: String) -> Failure {
    Failure::new(FailureKind::Trap(kind), message)
}

/// Names the limit a trap came from. A memory cap is not a `wasmtime::Trap` (the limiter
/// fails the grow and `trap_on_grow_failure` turns that into an error): the limiter says
/// whether it refused memory.
fn classify(
    name: &str,
    limits: &orca_core::component::Limits,
    error: &wasmtime::Error,
    memory_refused: bool,
) -> Failure {
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => trap(
            TrapKind::Deadline,
            format!(
                "component `{name}` exceeded its {} deadline",
                millis(limits.deadline_ms)
            ),
        ),
        Some(Trap::OutOfFuel) => trap(
            TrapKind::Fuel,
            format!(
                "component `{name}` ran out of fuel (budget {})",
                limits.fuel.unwrap_or(0)
            ),
        ),
        Some(Trap::StackOverflow) => trap(
            TrapKind::StackOverflow,
            format!("component `{name}` overflowed its stack (runaway recursion?)"),
        ),
        _ if memory_refused => trap(
            TrapKind::Memory,
            format!(
                "component `{name}` exceeded its memory limit of {} MiB",
                limits.memory_bytes >> 20
            ),
        ),
        Some(other) => trap(
            TrapKind::Crash,
            format!("component `{name}` trapped: {other}"),
        ),
        None => trap(
            TrapKind::Crash,
            format!("component `{name}` failed: {error:#}"),
        ),
    }
}

fn millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[async_trait]
impl Invoker for WasmHost {
    async fn invoke(&self, request: &Request, attempt: u32) -> Result<Response, Failure> {
        match request {
            Request::Component(c) => self.call(c, attempt).await,
            other => Err(Failure::new(
                FailureKind::Invalid,
                format!("{} is not a component request", other.describe()),
            )),
        }
    }
}
