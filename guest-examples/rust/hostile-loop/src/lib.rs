//! `hostile-loop` (step): never returns. The host's per-call deadline (epoch interruption, or
//! fuel) must stop it. No config.

use orca_sdk::{Context, Error};

fn spin(_ctx: Context) -> Result<u64, Error> {
    let mut n: u64 = 0;
    loop {
        // black_box keeps the optimizer from proving anything about the loop.
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

orca_sdk::export_step!(spin);
