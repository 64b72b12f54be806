//! Object stores, named as FDL providers name them: `local` (a directory; the embedded
//! `minio.default`) and `s3` (S3, MinIO, SeaweedFS). Keys are `bucket/folder/.../file`.

mod local;
mod s3;

use std::path::{Path, PathBuf};

pub use local::LocalStore;
pub use s3::S3Store;

use crate::fdl::{Provider, ProviderKind, ProviderSettings};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object key `{key}` refused: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no space left on the device (free some space, or move data_dir)")]
    DiskFull { path: PathBuf },
    #[error("{provider}: no object `{key}`")]
    NotFound { provider: String, key: String },
    #[error("{provider} ({endpoint}): {op} `{key}` failed: {message}")]
    Remote {
        provider: String,
        endpoint: String,
        op: &'static str,
        key: String,
        message: String,
    },
    #[error("{provider}: {message}")]
    Unsupported { provider: String, message: String },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            return StoreError::DiskFull {
                path: path.to_path_buf(),
            };
        }
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What a store says about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Content identity (S3's ETag; an xxh3 hash of the content for the local store).
    pub etag: String,
}

/// Checks an object key: relative, no `..` or `.` segments, no empty segments, no control
/// characters, at most 1024 bytes (S3's limit). Spaces and any Unicode are fine.
pub fn check_key(key: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidKey {
            key: key.escape_debug().to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return bad("absolute (starts with `/`)");
    }
    if key.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if key.contains('\\') {
        return bad("contains `\\`");
    }
    let body = key.strip_suffix('/').unwrap_or(key);
    for seg in body.split('/') {
        match seg {
            "" => return bad("contains an empty segment (`//`)"),
            "." | ".." => return bad("contains a `.` or `..` segment"),
            _ => {}
        }
    }
    if !body.contains('/') && !key.ends_with('/') {
        return bad("has no bucket (write `bucket/name`)");
    }
    Ok(())
}

/// One of the stores fogd can talk to.
pub enum AnyStore {
    Local(LocalStore),
    S3(S3Store),
}

impl AnyStore {
    /// The store behind an FDL provider. `minio.default` without an endpoint is the embedded
    /// local store under `data_dir/store`.
    pub fn for_provider(p: &Provider, data_dir: &Path) -> Result<AnyStore> {
        let name = p.reference.to_string();
        match (&p.settings, p.reference.kind) {
            (ProviderSettings::Implicit, ProviderKind::Minio) if p.reference.id == "default" => {
                Ok(AnyStore::Local(LocalStore::new(name, data_dir.join("store"))))
            }
            (ProviderSettings::Minio(m), _) if m.endpoint.as_deref().is_some_and(|e| !e.trim().is_empty()) => {
                Ok(AnyStore::S3(S3Store::from_minio(name, m)?))
            }
            (ProviderSettings::S3(s), _) => Ok(AnyStore::S3(S3Store::from_s3(name, s)?)),
            (ProviderSettings::Implicit, ProviderKind::S3) => {
                Ok(AnyStore::S3(S3Store::from_s3(name, &Default::default())?))
            }
            (_, kind) => Err(StoreError::Unsupported {
                provider: name,
                message: format!(
                    "fogd cannot reach {} providers yet (only the local store, S3 and MinIO with an endpoint)",
                    kind.as_str()
                ),
            }),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            AnyStore::Local(s) => s.name(),
            AnyStore::S3(s) => s.name(),
        }
    }

    /// Stores the file at `src` as `key`. Returns what the store now holds.
    pub async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta> {
        check_key(key)?;
        match self {
            AnyStore::Local(s) => s.put_file(key, src).await,
            AnyStore::S3(s) => s.put_file(key, src).await,
        }
    }

    /// Copies `key` into the file `dst` (created or replaced).
    pub async fn get_file(&self, key: &str, dst: &Path) -> Result<ObjectMeta> {
        check_key(key)?;
        match self {
            AnyStore::Local(s) => s.get_file(key, dst).await,
            AnyStore::S3(s) => s.get_file(key, dst).await,
        }
    }

    /// Every object under `prefix` (`bucket/folder/`), folder markers included.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        match self {
            AnyStore::Local(s) => s.list(prefix).await,
            AnyStore::S3(s) => s.list(prefix).await,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, AnyStore::Local(_))
    }
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys() {
        for ok in ["b/x", "b/a b/ü ñ.jpg", "b/folder/", "bucket/"] {
            assert!(check_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/b/x", "b/../x", "b/./x", "b//x", "b/x\n", "..", "b\\x", "nobucket",
        ] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}
