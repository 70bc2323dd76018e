//! `hostile-result` (step): returns a huge result, a JSON string of `config.mib` MiB (default
//! 16) of `x`s, so the host's result-size limit must refuse it.
//!
//! Peak guest memory is about twice `mib` (the string, then its exact-size JSON text): with the
//! default 16, a memory cap of 40 MiB (34 MiB measured minimum) lets the result-size limit, not
//! the memory cap, be what stops it.

use orca_sdk::{Context, Error};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    mib: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { mib: 16 }
    }
}

fn huge(ctx: Context) -> Result<String, Error> {
    let config: Config = ctx.config()?;
    Ok("x".repeat(config.mib << 20))
}

orca_sdk::export_step!(huge);
