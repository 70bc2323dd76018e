//! # orca-sdk: Orca components in Rust
//!
//! Write an Orca workflow **step**, **compensation** or **condition** as a plain Rust function
//! and build it as a WebAssembly component:
//!
//! ```text
//! rustup target add wasm32-wasip2
//! cargo build --release --target wasm32-wasip2   # -> target/wasm32-wasip2/release/<crate>.wasm
//! ```
//!
//! The crate must be a `cdylib` (`[lib] crate-type = ["cdylib"]`); the `.wasm` it builds is a
//! component of the `orca:plugin@0.1.0` world `plugin` (see `wit/orca.wit`), ready for a
//! `Component` definition. The generated bindings stay hidden: a component sees a [`Context`]
//! and returns `Result<impl Serialize, Error>`; JSON crosses the boundary as UTF-8 text and is
//! (de)serialized with serde.
//!
//! ## A complete component
//!
//! ```no_run
//! use orca_sdk::{Context, Error, Phase, http, state::{self, Scope}};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Order { order_id: String, amount: f64 }
//!
//! #[derive(Deserialize)]
//! struct Config {
//!     risk_url: String,
//!     #[serde(default = "default_threshold")]
//!     threshold: f64,
//! }
//! fn default_threshold() -> f64 { 1000.0 }
//!
//! #[derive(Deserialize)]
//! struct Risk { risk: f64 }
//!
//! #[derive(Serialize)]
//! struct Score { order_id: String, score: u32 }
//!
//! /// The step: `ctx.input()`, `ctx.config()`, `ctx.result("step")` decode JSON with serde.
//! fn score(ctx: Context) -> Result<Score, Error> {
//!     if ctx.phase() == Phase::Compensate {
//!         // Called as a compensation: undo (here, nothing to undo).
//!         state::delete(Scope::Execution, "score")?;
//!         return Ok(Score { order_id: String::new(), score: 0 });
//!     }
//!     let order: Order = ctx.input()?;
//!     let config: Config = ctx.config()?;
//!     // Through the host, only to hosts in the component's `grants.http`. A 5xx or a timeout
//!     // becomes a retryable Error through `?`, so the step's retry policy applies.
//!     let risk: Risk = http::post_json(&config.risk_url, &serde_json::json!({"amount": order.amount}))?
//!         .error_for_status()?
//!         .json()?;
//!     let score = (risk.risk * 100.0).round() as u32;
//!     state::set_json(Scope::Execution, "score", &score, None)?;
//!     orca_sdk::info!("scored order {}", order.order_id; score = score, attempt = ctx.attempt());
//!     if score > 95 {
//!         return Err(Error::fatal("risk too high").with_code("too_risky"));
//!     }
//!     Ok(Score { order_id: order.order_id, score })
//! }
//!
//! /// The condition.
//! fn high_value(ctx: Context) -> Result<bool, Error> {
//!     let order: Order = ctx.input()?;
//!     let config: Config = ctx.config()?;
//!     Ok(order.amount > config.threshold)
//! }
//!
//! // One macro exports the component. Equivalent single forms:
//! // `orca_sdk::export_step!(score);`, `orca_sdk::export_condition!(high_value);`,
//! // `orca_sdk::export_compensation!(undo);`.
//! orca_sdk::export_component!(step = score, condition = high_value);
//! # fn main() {}
//! ```
//!
//! ## Exports
//!
//! Every component built with this SDK exports both the `step` and the `condition` interface
//! (world `plugin`); the host calls the one the workflow uses. The export a component does not
//! provide answers with a fatal [`Error`] naming what the component is, with code
//! `not_a_step`, `not_a_compensation` or `not_a_condition`:
//!
//! | macro | step (`run`) | compensation (`compensate`) | condition |
//! |---|---|---|---|
//! | [`export_step!`]`(f)` | `f` | `f` (checks [`Context::phase`]) | error |
//! | [`export_compensation!`]`(h)` | error | `h` | error |
//! | [`export_condition!`]`(g)` | error | error | `g` |
//! | [`export_component!`]`(step = f, compensate = h, condition = g)` | `f` | `h`, else `f` | `g` |
//!
//! Use only one export macro per component. Step functions have the shape
//! `fn(Context) -> Result<T, E>` with `T: Serialize` and `E: Into<Error>`; condition functions
//! `fn(Context) -> Result<bool, E>`.
//!
//! ## Host services
//!
//! - [`http`]: [`http::get`], [`http::post_json`], a [`http::Request`] builder and
//!   [`http::Response::json`]; failures are a typed [`http::HttpError`].
//! - [`state`]: [`state::get_json`], [`state::set_json`] (with an optional TTL),
//!   [`state::delete`], [`state::list_keys`], in [`state::Scope::Execution`] or
//!   [`state::Scope::Tenant`]; failures are a typed [`state::StateError`].
//! - [`log`]: [`info!`], [`warn!`], ... with `key = value` fields after a `;`.
//! - [`config`]: [`config::get`] (the same document as [`Context::config`]).
//!
//! Every host call is checked against the component's grants; a refused call returns an error
//! (it never traps). Errors convert into [`Error`] with `?`; transient ones (timeouts,
//! connection failures, HTTP 5xx/408/429, an unavailable store) are retryable.
//!
//! ## Testing
//!
//! The crate also builds for the host, so a component's logic can be unit-tested with
//! [`Context::new`] and its `with_*` setters; the host services themselves (`http`, `state`,
//! `config::get`) panic outside a component, and logging goes to stderr.

#![warn(missing_docs)]

extern crate self as orca_sdk;

mod context;
mod error;
mod export;

pub mod config;
pub mod http;
pub mod log;
pub mod state;

pub use context::{Context, Phase};
pub use error::Error;

/// Re-exported for components that build JSON by hand.
pub use serde_json;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        ConditionFn, StepFn, call_condition, call_step, dispatch_evaluate, dispatch_run,
    };
}

/// The bindings generated from `wit/orca.wit` (world `plugin`). Not public API: use the
/// modules above.
#[doc(hidden)]
#[allow(missing_docs, unreachable_pub, dead_code, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__orca_export_plugin",
        default_bindings_module: "::orca_sdk::__bindings",
        runtime_path: "::orca_sdk::__wit_bindgen::rt",
    });
}
