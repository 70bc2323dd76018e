//! Orca's runtime: workflow definitions, the engine that runs them, and the pieces it drives.

pub mod cached_json;
pub mod component;
pub mod definition;
pub mod engine;
pub mod expr;
pub mod http;
pub mod invoke;
pub mod metrics;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod runner;
pub mod server;
pub mod services;
pub mod store;
#[cfg(feature = "otel")]
pub mod telemetry;
pub mod view;
pub mod wasm;
