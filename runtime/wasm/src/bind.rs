//! Binding a definition set's `Component` documents to stored, checked component bytes.

use std::collections::BTreeMap;
use std::path::Path;

use orca_core::definition::{DefinitionSet, Document, Kind, LoadError};

use super::WasmHost;

/// Reads each component's `source` (relative to its YAML file), stores the bytes by digest,
/// checks that they are a component the host can run, and returns name -> digest.
/// A component given only by `digest` must already be stored.
pub fn bind_components(
    set: &DefinitionSet,
    host: &WasmHost,
) -> Result<BTreeMap<String, String>, LoadError> {
    let mut bound = BTreeMap::new();
    for doc in set.of_kind(Kind::Component) {
        let Document::Component(manifest) = &doc.document else {
            continue;
        };
        let spec = &manifest.spec;
        let pos = &doc.position;
        let digest = match &spec.source {
            Some(source) => {
                let base = Path::new(&pos.file).parent().unwrap_or(Path::new("."));
                let path = base.join(&source.value);
                let bytes = std::fs::read(&path).map_err(|e| {
                    pos.error_at(source, "spec.source", format!("cannot read `{}`: {e}", path.display()))
                        .with_hint("build the component first (make guests), or fix the path: it is relative to this file")
                })?;
                host.check(&doc.name, &bytes)
                    .map_err(|e| pos.error_at(source, "spec.source", e.to_string()))?;
                let digest = host
                    .blobs()
                    .put(&bytes)
                    .map_err(|e| pos.error_at(source, "spec.source", e.to_string()))?;
                if let Some(pinned) = &spec.digest
                    && pinned.value != digest
                {
                    return Err(pos
                        .error_at(
                            pinned,
                            "spec.digest",
                            format!(
                                "`{}` does not match the source, whose digest is {digest}",
                                pinned.value
                            ),
                        )
                        .with_hint("update the pinned digest, or restore the source it pins"));
                }
                digest
            }
            None => {
                let Some(pinned) = &spec.digest else {
                    unreachable!("component documents are checked to have source or digest")
                };
                host.blobs()
                    .get(&pinned.value)
                    .map_err(|e| pos.error_at(pinned, "spec.digest", e.to_string()))?;
                pinned.value.clone()
            }
        };
        bound.insert(doc.name.clone(), digest);
    }
    Ok(bound)
}
