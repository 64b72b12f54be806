//! Object stores, named as FDL providers name them: `local` (a directory; the embedded
//! `minio.default`) and `s3` (S3, MinIO, SeaweedFS). Keys are `bucket/folder/.../file`.

mod links;
mod local;
pub mod root;
mod s3;
mod writer;

use std::path::{Path, PathBuf};

pub use links::{Link, Links};
pub use local::{content_hash, file_digests, sync_filesystem, LocalStore, TMP_PREFIX};
pub use s3::S3Store;
pub use writer::{etag_of, ObjectWriter};

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
    /// The store did not answer (down, or the link is): nothing is wrong with the object.
    #[error("{provider} ({endpoint}): {op} `{key}`: cannot reach the endpoint (is it running, is the link up?): {message}")]
    Unreachable {
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
        if crate::paths::is_disk_full(&source) {
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

/// How the outbox sends an object.
pub struct PutOptions<'a> {
    pub multipart_threshold: u64,
    pub part_bytes: u64,
    pub pace: Option<&'a TokenBucket>,
    /// Stored with the object as `x-amz-meta-fogd-xxh3`, so a receiver can check it end to end.
    pub checksum: &'a str,
    /// An anonymised frame's receipt, stored as `x-amz-meta-fogd-receipt` (the JPEG carries it too).
    pub receipt: Option<&'a str>,
}

/// S3 keeps 2 KB of user metadata: a longer receipt (a frame with many faces) travels in the
/// JPEG only.
pub const MAX_RECEIPT_METADATA: usize = 1800;

/// A bandwidth cap: `rate` bytes a second, bursts up to one second's worth (or one request).
pub struct TokenBucket {
    rate: u64,
    state: tokio::sync::Mutex<(f64, std::time::Instant)>,
}

impl TokenBucket {
    pub fn new(rate: u64) -> TokenBucket {
        TokenBucket {
            rate,
            state: tokio::sync::Mutex::new((rate as f64, std::time::Instant::now())),
        }
    }

    /// Waits until `bytes` may be sent. Unlimited when the rate is 0.
    pub async fn take(&self, bytes: u64) {
        if self.rate == 0 {
            return;
        }
        let rate = self.rate as f64;
        // Held while waiting: senders queue in turn, each getting the rate in order.
        let mut st = self.state.lock().await;
        let now = std::time::Instant::now();
        st.0 = (st.0 + now.duration_since(st.1).as_secs_f64() * rate).min(rate);
        st.1 = now;
        st.0 -= bytes as f64;
        if st.0 < 0.0 {
            let wait = std::time::Duration::from_secs_f64(-st.0 / rate);
            tokio::time::sleep(wait).await;
            st.0 = 0.0;
            st.1 = std::time::Instant::now();
        }
    }
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

    /// As `put_file`, for the outbox: the store checks `md5` (Content-MD5, base64) on arrival,
    /// large files go up in parts, and `pace` is waited on before each part's bytes are sent.
    pub async fn put_checked(
        &self,
        key: &str,
        src: &Path,
        md5: &str,
        opts: &PutOptions<'_>,
    ) -> Result<ObjectMeta> {
        check_key(key)?;
        match self {
            AnyStore::Local(s) => s.put_file(key, src).await,
            AnyStore::S3(s) => s.put_checked(key, src, md5, opts).await,
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

    /// As `list`, only the keys that sort after `after` (S3's `start-after`); with `max`, one
    /// page of at most that many keys.
    pub async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<ObjectMeta>> {
        match self {
            AnyStore::Local(s) => s.list_after(prefix, after, max).await,
            AnyStore::S3(s) => s.list_after(prefix, after, max).await,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, AnyStore::Local(_))
    }

    /// Removes `key` (no error when it is not there).
    pub async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        match self {
            AnyStore::Local(s) => s.delete(key).await,
            AnyStore::S3(s) => s.delete(key).await,
        }
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
