//! A first look at uploaded bytes, before they reach the Wasm compiler: is this a valid
//! component, and does it export a step or a condition? It reads the binary format only
//! (wasmparser), so it is fast, safe on any input, and fuzzed (`fuzz/`); the host compiles
//! only what passes.

use wasmparser::{ComponentExternalKind, Encoding, Parser, Payload, Validator, WasmFeatures};

/// The interfaces a component can export to be used by a workflow.
pub const STEP_EXPORT: &str = "orca:plugin/step";
pub const CONDITION_EXPORT: &str = "orca:plugin/condition";

/// What a valid component offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exports {
    /// `step`, which compensations call too (with `phase: compensate`).
    pub step: bool,
    pub condition: bool,
}

/// Checks that `bytes` are a valid component and reads which of Orca's interfaces it
/// exports; the error says what is wrong, in words for the uploader.
pub fn inspect(bytes: &[u8]) -> Result<Exports, String> {
    let mut exports = Exports::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a WebAssembly binary: {e}"))?;
        match payload {
            Payload::Version { encoding, .. } => {
                if depth == 0 && encoding != Encoding::Component {
                    return Err(
                        "this is a core WebAssembly module, not a component: build for \
                                wasm32-wasip2 or wrap it with `wasm-tools component new`"
                            .to_string(),
                    );
                }
                depth += 1;
            }
            Payload::End(_) => depth = depth.saturating_sub(1),
            // Only the outermost component's exports are what the host can call.
            Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    let export = export.map_err(|e| format!("a malformed export: {e}"))?;
                    if export.kind != ComponentExternalKind::Instance {
                        continue;
                    }
                    let name = export.name.name;
                    exports.step |= exports_interface(name, STEP_EXPORT);
                    exports.condition |= exports_interface(name, CONDITION_EXPORT);
                }
            }
            _ => {}
        }
    }
    let mut validator = Validator::new_with_features(WasmFeatures::all());
    validator
        .validate_all(bytes)
        .map_err(|e| format!("not a valid component: {e}"))?;
    if !(exports.step || exports.condition) {
        return Err(format!(
            "it exports neither {STEP_EXPORT} nor {CONDITION_EXPORT}"
        ));
    }
    Ok(exports)
}

/// `orca:plugin/step` or `orca:plugin/step@0.1.0`.
fn exports_interface(name: &str, interface: &str) -> bool {
    name.strip_prefix(interface)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_a_component_is_refused_with_a_reason() {
        assert!(
            inspect(b"")
                .unwrap_err()
                .contains("not a WebAssembly binary")
        );
        assert!(
            inspect(b"\0asm")
                .unwrap_err()
                .contains("not a WebAssembly binary")
        );
        // An empty core module.
        let core = b"\0asm\x01\0\0\0";
        assert!(
            inspect(core)
                .unwrap_err()
                .contains("core WebAssembly module")
        );
        // An empty component: valid, but it exports nothing Orca can call.
        let component = b"\0asm\x0d\0\x01\0";
        assert!(inspect(component).unwrap_err().contains("exports neither"));
    }

    #[test]
    fn interface_names_match_with_or_without_a_version() {
        assert!(exports_interface("orca:plugin/step@0.1.0", STEP_EXPORT));
        assert!(exports_interface("orca:plugin/step", STEP_EXPORT));
        assert!(!exports_interface("orca:plugin/steps", STEP_EXPORT));
    }
}
