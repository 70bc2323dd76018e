//! The check an upload passes before the host compiles it: any bytes in, the exports of a
//! valid component or a reason out, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(exports) = orca_core::component::inspect(data) {
        assert!(exports.step || exports.condition);
    }
});
