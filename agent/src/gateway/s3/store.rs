//! fogd's side of the S3 endpoint: the local store's folders as buckets and files as objects,
//! and an object that arrives routed as `fogd put` routes it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};

use super::errors::{blocking, io_err, runtime_err, store_err};
use super::multipart::Uploads;
use crate::fdl::{ProviderKind, ProviderRef};
use crate::runtime::Runtime;
use crate::store::{check_key, etag_of, ObjectMeta};

pub(super) const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
pub(super) const READ_CHUNK: usize = 256 * 1024;

pub struct FogS3 {
    rt: Arc<Runtime>,
    /// The local store the endpoint serves (`data_dir/store`).
    pub(super) store: crate::store::LocalStore,
    pub(super) uploads: Uploads,
    /// Where camera items land before they are anonymised (`ingest.path`, `bucket/folder/`):
    /// they may be put there, never read back out.
    raw: String,
}

impl FogS3 {
    pub fn new(rt: Arc<Runtime>) -> FogS3 {
        let store = crate::store::LocalStore::new("minio.default", rt.data.store());
        let uploads = Uploads::new(rt.data.s3_uploads());
        let raw = format!("{}/", rt.cfg.ingest.path.trim_matches('/'));
        FogS3 {
            rt,
            store,
            uploads,
            raw,
        }
    }

    /// Raw camera footage never leaves the node, whoever asks.
    pub(super) fn refuse_raw(&self, bucket: &str, key: &str) -> S3Result<()> {
        if format!("{bucket}/{key}").starts_with(&self.raw) {
            return Err(s3_error!(
                AccessDenied,
                "`{bucket}/{key}` is raw camera footage (ingest.path): it is anonymised on the node and never read out"
            ));
        }
        Ok(())
    }

    pub(super) fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        // s3s checks names against S3's rules; a leading dot would also reach fogd's own files.
        if bucket.starts_with('.') || bucket.contains('/') {
            return Err(s3_error!(InvalidBucketName));
        }
        Ok(self.store.root().join(bucket))
    }

    pub(super) async fn require_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.bucket_dir(bucket)?;
        match tokio::fs::metadata(&dir).await {
            Ok(m) if m.is_dir() => Ok(dir),
            _ => Err(s3_error!(NoSuchBucket, "no bucket `{bucket}`")),
        }
    }

    /// The store key (`bucket/key`) of an object, checked as every key of the store is.
    pub(super) fn store_key(bucket: &str, key: &str) -> S3Result<String> {
        let k = format!("{bucket}/{key}");
        check_key(&k).map_err(store_err)?;
        Ok(k)
    }

    pub(super) fn check_disk(&self) -> S3Result<()> {
        self.rt.check_disk().map_err(runtime_err)
    }

    /// Routes an object that arrived, as `fogd put` does.
    pub(super) async fn arrived(&self, meta: &ObjectMeta) -> S3Result<()> {
        let provider = ProviderRef::new(ProviderKind::Minio, "default");
        let r = self.rt.emit(&provider, meta, "s3").await.map_err(runtime_err)?;
        let queued = r.map_or(0, |(_, invs)| invs.len());
        tracing::info!(key = %meta.key, size = meta.size, queued, "object arrived through the S3 endpoint");
        Ok(())
    }

    /// Writes a request body to `key`; returns its meta and ETag.
    pub(super) async fn write_body(
        &self,
        key: &str,
        body: Option<StreamingBlob>,
        content_length: Option<i64>,
        content_md5: Option<&str>,
        etag: Option<String>,
    ) -> S3Result<(ObjectMeta, String)> {
        let mut w = self.store.writer(key).await.map_err(store_err)?;
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "the body was cut short: {e}"))?;
                w.write(&chunk).await.map_err(store_err)?;
            }
        }
        check_sent(w.size(), &w.md5_hex(), content_length, content_md5)?;
        w.commit(etag).await.map_err(store_err)
    }
}

/// Did the body that arrived (`size` bytes, MD5 `md5_hex`) match what the client declared
/// (Content-Length, Content-MD5 in base64)?
pub(super) fn check_sent(
    size: u64,
    md5_hex: &str,
    content_length: Option<i64>,
    content_md5: Option<&str>,
) -> S3Result<()> {
    if content_length.is_some_and(|n| n >= 0 && n as u64 != size) {
        return Err(s3_error!(IncompleteBody));
    }
    if let Some(want) = content_md5 {
        use base64::Engine;
        let got = base64::engine::general_purpose::STANDARD.encode(hex::decode(md5_hex).unwrap_or_default());
        if got != want {
            return Err(s3_error!(BadDigest, "Content-MD5 does not match what was sent"));
        }
    }
    Ok(())
}

/// `remaining` bytes of the file (from where it stands) as a body stream. A task reads ahead
/// one chunk or two; it stops when the client goes (the channel closes).
pub(super) fn file_stream(
    mut file: tokio::fs::File,
    mut remaining: u64,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static {
    use tokio::io::AsyncReadExt;
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        while remaining > 0 {
            let mut buf = vec![0u8; READ_CHUNK.min(remaining as usize)];
            let item = match file.read(&mut buf).await {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the object was shortened while it was read",
                )),
                Ok(n) => {
                    remaining -= n as u64;
                    buf.truncate(n);
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

pub(super) struct Found {
    pub(super) path: PathBuf,
    pub(super) meta: std::fs::Metadata,
    pub(super) etag: String,
}

impl FogS3 {
    /// The object's file, metadata and ETag; NoSuchKey / NoSuchBucket as S3 says them.
    pub(super) async fn find(&self, bucket: &str, key: &str) -> S3Result<Found> {
        let dir = self.require_bucket(bucket).await?;
        Self::store_key(bucket, key)?;
        let p = dir.join(key);
        let key = key.to_string();
        blocking(move || {
            let meta = match std::fs::metadata(&p) {
                Ok(m) => m,
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::NotFound)
                        || e.raw_os_error() == Some(libc::ENOTDIR) =>
                {
                    return Err(s3_error!(NoSuchKey));
                }
                Err(e) => return Err(io_err(&p, e)),
            };
            // A folder is an object only as its `name/` marker.
            if meta.is_dir() != key.ends_with('/') {
                return Err(s3_error!(NoSuchKey));
            }
            let etag = if meta.is_dir() {
                EMPTY_MD5.to_string()
            } else {
                etag_of(&p)
                    .map_err(store_err)?
                    .ok_or_else(|| s3_error!(NoSuchKey))?
            };
            Ok(Found { path: p, meta, etag })
        })
        .await
    }
}

impl FogS3 {
    /// Deletes an object (S3 answers a missing one as deleted too). A folder marker goes with
    /// its folder when that is empty.
    /// As S3 has no folders, a prefix goes with its last object: the empty folders above a
    /// deleted object are removed, up to the bucket, but for the folders of services' paths
    /// (OSCAR keeps those as folder objects).
    async fn prune(&self, bucket_dir: &Path, bucket: &str, removed: &Path) {
        let wf = self.rt.workflow();
        let kept: Vec<PathBuf> = wf
            .services
            .iter()
            .flat_map(|s| s.storage_paths())
            .filter(|b| b.bucket() == bucket)
            .map(|b| self.store.path_of(&b.path))
            .collect();
        let mut d = removed.parent();
        while let Some(dir) = d.filter(|d| d.starts_with(bucket_dir) && *d != bucket_dir) {
            if kept.iter().any(|k| k == dir) || tokio::fs::remove_dir(dir).await.is_err() {
                break;
            }
            d = dir.parent();
        }
    }

    pub(super) async fn remove(&self, dir: &Path, bucket: &str, key: &str) -> S3Result<()> {
        Self::store_key(bucket, key)?;
        let path = dir.join(key);
        let r = if key.ends_with('/') {
            tokio::fs::remove_dir(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        match r {
            Ok(()) => {
                self.prune(dir, bucket, &path).await;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
                Ok(())
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                    || e.raw_os_error() == Some(libc::EISDIR) =>
            {
                Ok(())
            }
            Err(e) => Err(io_err(&path, e)),
        }
    }
}
