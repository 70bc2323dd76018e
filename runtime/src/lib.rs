//! Orca's runtime: the host around the pure core (`orca-core`): the runner that carries out
//! the engine's actions, the HTTP client, the Wasm host, the stores, metrics and the server.

pub use orca_core::{
    cached_json, component, definition, engine, expr, invoke, payload, plan, progress, retry,
    services, view,
};

pub mod http;
pub mod metrics;
pub mod runner;
pub mod server;
pub mod store;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod wasm;
