//! `hostile-recursion` (step): recurses without end. The host must stop it with a trap.
//!
//! config: optional `shadow_stack` (default false). By default each frame lives in wasm
//! locals only, so wasm's own stack overflows (wasmtime's `max_wasm_stack`: a stack-overflow
//! trap). With `shadow_stack: true` each frame also keeps a 1 KiB buffer on the shadow stack
//! in linear memory, which then runs out first (an out-of-bounds memory access trap).

use orca_sdk::{Context, Error};
use serde::Deserialize;
use std::hint::black_box;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    shadow_stack: bool,
}

#[inline(never)]
fn deep(n: u64) -> u64 {
    if black_box(n == u64::MAX) {
        return n;
    }
    // The result goes through black_box after the call, so this is no tail call.
    black_box(deep(black_box(n + 1))) ^ n
}

#[inline(never)]
fn deep_with_buffer(n: u64) -> u64 {
    if black_box(n == u64::MAX) {
        return n;
    }
    let buffer = [n as u8; 1024];
    let first = black_box(&buffer)[0] as u64;
    black_box(deep_with_buffer(black_box(n + 1))) ^ first
}

fn recurse(ctx: Context) -> Result<u64, Error> {
    let config: Config = ctx.config()?;
    Ok(if config.shadow_stack {
        deep_with_buffer(0)
    } else {
        deep(0)
    })
}

orca_sdk::export_step!(recurse);
