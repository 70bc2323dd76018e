//! The definition loader and the plan compiler: any text in, a set of plans or a positioned
//! error out, never a panic, an overflow or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orca_core::definition::{DefinitionSet, Source};
use orca_core::plan;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = Source {
        name: "fuzz.yaml".to_string(),
        text: text.to_string(),
    };
    match DefinitionSet::load(vec![source]) {
        Ok(set) => {
            let _ = plan::validate(&set);
        }
        Err(error) => {
            // Every error names where it is.
            assert!(error.line >= 1, "{error}");
        }
    }
});
