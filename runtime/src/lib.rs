//! Orca: the `orca` binary, and one import path for the crates it is built from, so that
//! tools and tests can reach every part as `orca_runtime::<part>`.
//!
//! The parts, and what each may depend on (`.ci/check-deps` keeps it so):
//! - `orca-definition`: YAML documents and the naming rule.
//! - `orca-core`: plan, expressions, the engine (and the definitions); no I/O, no async
//!   runtime, no Wasm.
//! - `orca-store`: executions, leases, component state, tenants; reaches the definitions,
//!   never the engine.
//! - `orca-http`: the invoker for HTTP steps.
//! - `orca-wasm`: the component host (wasmtime); never the server.
//! - `orca-metrics`: Prometheus metrics.
//! - `orca-runner`: carries out the engine's actions against a store and an invoker.
//! - `orca-server`: the HTTP API (`orca serve`).

pub use orca_core::{
    cached_json, component, definition, engine, events, expr, invoke, payload, plan, progress,
    retry, services, view,
};
pub use orca_http as http;
pub use orca_metrics as metrics;
pub use orca_runner as runner;
pub use orca_server as server;
pub use orca_store as store;
pub use orca_wasm as wasm;

#[cfg(feature = "otel")]
pub mod telemetry;
