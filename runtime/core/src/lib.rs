//! Orca's core: what a workflow is and how it runs, as pure data and pure functions.
//!
//! `definition` parses YAML into typed documents, `plan` compiles them into one execution
//! plan, `expr` is the CEL used by conditions and templates, and `engine` is the state
//! machine that turns events into actions. Nothing here performs I/O, owns an async runtime
//! or knows wasmtime: the host crate (`orca-runtime`) carries the actions out. The crate's
//! dependencies are checked by `.ci/check-deps` so it stays that way.

pub use orca_definition as definition;

pub mod cached_json;
pub mod component;
pub mod engine;
pub mod events;
pub mod expr;
pub mod invoke;
pub mod payload;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod services;
pub mod view;
