//! `high-value` (condition): true when `input.amount > config.threshold`.
//!
//! - input: `{"amount": 1500, ...}` (a missing or non-numeric amount is a fatal error).
//! - config: optional `threshold` (default 1000).

use orca_sdk::{Context, Error};
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    amount: f64,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default = "default_threshold")]
    threshold: f64,
}

fn default_threshold() -> f64 {
    1000.0
}

fn high_value(ctx: Context) -> Result<bool, Error> {
    let input: Input = ctx.input()?;
    let config: Config = ctx.config()?;
    Ok(input.amount > config.threshold)
}

orca_sdk::export_condition!(high_value);
