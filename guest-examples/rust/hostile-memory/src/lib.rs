//! `hostile-memory` (step): allocates and touches memory, 1 MiB at a time, until the host's
//! memory cap stops it (a trap when the host traps on a refused `memory.grow`).
//!
//! If the host instead refuses the growth quietly, the allocation fails and the step returns a
//! fatal error, code `out_of_memory`, saying how much it got. With config `max_mib` it stops
//! after that many MiB and returns `{"allocated_mib": N}` (to check that a guest under the cap
//! runs).

use orca_sdk::{Context, Error};
use serde::Deserialize;

const MIB: usize = 1 << 20;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    max_mib: Option<usize>,
}

fn hog(ctx: Context) -> Result<serde_json::Value, Error> {
    let config: Config = ctx.config()?;
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while config.max_mib.is_none_or(|max| chunks.len() < max) {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(MIB).is_err() {
            return Err(
                Error::fatal(format!("allocation failed after {} MiB", chunks.len()))
                    .with_code("out_of_memory"),
            );
        }
        // Touch every page so the memory is really used.
        chunk.resize(MIB, 0xA5);
        for i in (0..MIB).step_by(4096) {
            chunk[i] = std::hint::black_box(i as u8);
        }
        chunks.push(chunk);
    }
    Ok(serde_json::json!({ "allocated_mib": std::hint::black_box(&chunks).len() }))
}

orca_sdk::export_step!(hog);
