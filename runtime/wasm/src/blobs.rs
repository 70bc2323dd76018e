//! Component bytes, content-addressed on disk.
//!
//! Executions refer to a component by the sha256 of its bytes, so a resumed execution runs
//! exactly what it started with even if the workflow's file now names other bytes.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no component with digest {0} is stored; load its workflow again to store it")]
    Missing(String),
    #[error("component store {path}: {message}")]
    Io { path: String, message: String },
    #[error("`{0}` is not a digest (expected sha256:<64 hex digits>)")]
    BadDigest(String),
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, Clone)]
pub struct ComponentBlobs {
    dir: PathBuf,
}

impl ComponentBlobs {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ComponentBlobs { dir: dir.into() }
    }

    fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| BlobError::BadDigest(digest.to_string()))?;
        Ok(self.dir.join(format!("sha256-{hex}.wasm")))
    }

    /// Stores `bytes` (idempotent) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let digest = digest_of(bytes);
        let path = self.path(&digest)?;
        if path.exists() {
            return Ok(digest);
        }
        let io = |e: std::io::Error| BlobError::Io {
            path: self.dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        // Write then rename, so a reader never sees half a component.
        let partial = path.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, bytes).map_err(io)?;
        std::fs::rename(&partial, &path).map_err(io)?;
        Ok(digest)
    }

    pub fn get(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) if digest_of(&bytes) == digest => Ok(bytes),
            Ok(_) => Err(BlobError::Io {
                path: path.display().to_string(),
                message: "contents do not match the digest".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BlobError::Missing(digest.to_string()))
            }
            Err(e) => Err(BlobError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_by_content_and_rejects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ComponentBlobs::new(dir.path());
        let digest = blobs.put(b"\0asm component").unwrap();
        assert_eq!(digest, digest_of(b"\0asm component"));
        assert_eq!(blobs.put(b"\0asm component").unwrap(), digest);
        assert_eq!(blobs.get(&digest).unwrap(), b"\0asm component");
        std::fs::write(blobs.path(&digest).unwrap(), b"other").unwrap();
        assert!(blobs.get(&digest).is_err());
        assert!(matches!(
            blobs.get(&digest_of(b"nope")),
            Err(BlobError::Missing(_))
        ));
        assert!(matches!(blobs.get("md5:1"), Err(BlobError::BadDigest(_))));
    }
}
