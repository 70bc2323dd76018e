//! End-to-end tests: the real `orca` binary against in-process mock HTTP services.
//!
//! One module per area, sharing `support` (the binary, the mock, running `orca`). The `orca`
//! binary is taken from the same target directory as this test (built once if missing), so
//! run `cargo build -p orca-runtime --bin orca` first when the runtime changed.

// A test binary has no public API: `pub` in its modules only shares items between them.
#![allow(unreachable_pub)]

mod support;

mod bad_input;
mod cluster;
mod compensation;
mod components;
mod conditional;
mod demo;
mod durable;
mod events;
mod executions;
mod hostile;
mod limits;
mod metrics;
mod parallel;
mod resume;
mod retry;
mod sequential;
mod server;
mod state_machine;
mod validate;
