//! fogd's side of the S3 endpoint: the local store's folders as buckets and files as objects,
//! and an object that arrives routed as `fogd put` routes it.

use std::sync::Arc;

use futures_util::StreamExt;
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};

use super::errors::{blocking, io_err, runtime_err, store_err};
use super::listing::{list_page, Page};
use super::multipart::Uploads;
use crate::fdl::{ProviderKind, ProviderRef};
use crate::runtime::Runtime;
use crate::store::root::{segments, Node, Root, Stat};
use crate::store::{check_key, etag_of, ObjectMeta};

pub(super) const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
pub(super) const READ_CHUNK: usize = 256 * 1024;
/// Free space is checked again each time a body has streamed this much more: a body is
/// refused (and its partial file removed) when the disk runs low while it arrives, not only
/// before it starts.
pub(super) const ROOM_EVERY: u64 = 8 << 20;

pub struct FogS3 {
    pub(super) rt: Arc<Runtime>,
    /// The local store the endpoint serves (`data_dir/store`).
    pub(super) store: crate::store::LocalStore,
    pub(super) uploads: Uploads,
    /// Where camera items land before they are anonymised (`ingest.path`, `bucket/folder/`):
    /// they may be put there, never read back out.
    raw: String,
    /// The admin's access key.
    pub(super) admin: String,
}

impl FogS3 {
    pub fn new(rt: Arc<Runtime>, admin: &str) -> FogS3 {
        let store = crate::store::LocalStore::new("minio.default", rt.data.store());
        let uploads = Uploads::new(rt.data.s3_uploads(), admin);
        let raw = rt.cfg.ingest.raw_prefix();
        FogS3 {
            rt,
            store,
            uploads,
            raw,
            admin: admin.to_string(),
        }
    }

    /// Raw camera footage never leaves the node, whoever asks.
    pub(super) fn refuse_raw(&self, bucket: &str, key: &str) -> S3Result<()> {
        if self.is_raw(bucket, key) {
            return Err(s3_error!(
                AccessDenied,
                "`{bucket}/{key}` is raw camera footage (ingest.path): it is anonymised on the node and never read out"
            ));
        }
        Ok(())
    }

    /// Where the raw area lies in `bucket` (`folder/`, or `""` for the whole bucket), if there.
    pub(super) fn raw_in(&self, bucket: &str) -> Option<&str> {
        self.raw.strip_prefix(bucket)?.strip_prefix('/')
    }

    /// Is `bucket/key` raw footage?
    pub(super) fn is_raw(&self, bucket: &str, key: &str) -> bool {
        self.raw_in(bucket).is_some_and(|r| key.starts_with(r))
    }

    pub(super) fn check_bucket_name(bucket: &str) -> S3Result<()> {
        // s3s checks names against S3's rules; a leading dot would also reach fogd's own files.
        if bucket.starts_with('.') || bucket.contains('/') || bucket.is_empty() {
            return Err(s3_error!(InvalidBucketName));
        }
        Ok(())
    }

    /// The store's root, for resolving keys beneath it (no link followed).
    pub(super) fn root(&self) -> S3Result<Root> {
        self.store.open_root().map_err(store_err)
    }

    /// The bucket's folder handle; NoSuchBucket when it is missing (or a link).
    pub(super) fn bucket_handle(&self, bucket: &str) -> S3Result<(Root, cap_std::fs::Dir)> {
        open_bucket(self.root()?, bucket)
    }

    pub(super) async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let (root, b) = (self.root()?, bucket.to_string());
        blocking(move || open_bucket(root, &b).map(|_| ())).await
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
                let before = w.size();
                w.write(&chunk).await.map_err(store_err)?;
                if before / ROOM_EVERY != w.size() / ROOM_EVERY {
                    self.check_disk()?;
                }
            }
        }
        check_sent(w.size(), &w.md5_hex(), content_length, content_md5)?;
        w.commit(etag).await.map_err(store_err)
    }
}

/// The folder of `bucket` beneath the store's root, checked by name; NoSuchBucket when it is
/// missing (or a link).
fn open_bucket(root: Root, bucket: &str) -> S3Result<(Root, cap_std::fs::Dir)> {
    FogS3::check_bucket_name(bucket)?;
    match root.bucket(bucket) {
        Ok(Some(d)) => Ok((root, d)),
        Ok(None) => Err(s3_error!(NoSuchBucket, "no bucket `{bucket}`")),
        Err(e) => Err(io_err(&root.shown(bucket), e)),
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
    /// The object's file, opened beneath the store (None for a folder marker).
    pub(super) file: Option<std::fs::File>,
    pub(super) stat: Stat,
    pub(super) etag: String,
}

impl FogS3 {
    /// The object's file, metadata and ETag; NoSuchKey / NoSuchBucket as S3 says them. A link
    /// anywhere on the key's way is no object.
    pub(super) async fn find(&self, bucket: &str, key: &str) -> S3Result<Found> {
        self.require_bucket(bucket).await?;
        let k = Self::store_key(bucket, key)?;
        let root = self.root()?;
        blocking(move || {
            let shown = root.shown(&k);
            match root.node(&k).map_err(|e| io_err(&shown, e))? {
                None => Err(s3_error!(NoSuchKey)),
                Some(Node::Folder(stat)) => Ok(Found {
                    file: None,
                    stat,
                    etag: EMPTY_MD5.to_string(),
                }),
                Some(Node::File(f, meta)) => {
                    let etag = etag_of(&f).map_err(|e| io_err(&shown, e))?;
                    Ok(Found {
                        file: Some(f),
                        stat: Stat::of_std(&meta),
                        etag,
                    })
                }
            }
        })
        .await
    }
}

impl FogS3 {
    /// Deletes an object (S3 answers a missing one as deleted too). A folder marker goes with
    /// its folder when that is empty. A link is removed as a link, never followed.
    /// As S3 has no folders, a prefix goes with its last object: the empty folders above a
    /// deleted object are removed, up to the bucket, but for the folders of services' paths
    /// (OSCAR keeps those as folder objects).
    pub(super) async fn remove(&self, bucket: &str, key: &str) -> S3Result<()> {
        let k = Self::store_key(bucket, key)?;
        let wf = self.rt.workflow();
        let kept: Vec<String> = wf
            .services
            .iter()
            .flat_map(|s| s.storage_paths())
            .filter(|b| b.bucket() == bucket)
            .map(|b| b.path.trim_matches('/').to_string())
            .collect();
        let root = self.root()?;
        blocking(move || {
            let shown = root.shown(&k);
            match root.remove(&k) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::DirectoryNotEmpty
                        || e.raw_os_error() == Some(libc::EISDIR) =>
                {
                    return Ok(());
                }
                Err(e) => return Err(io_err(&shown, e)),
            }
            let segs = segments(&k).map_err(|e| io_err(&shown, e))?;
            // From the deepest folder above the object up to (not including) the bucket.
            let last = if k.ends_with('/') {
                segs.len() - 1
            } else {
                segs.len().saturating_sub(1)
            };
            for i in (1..last).rev() {
                let folder = segs[..=i].join("/");
                if kept.contains(&folder) {
                    break;
                }
                let Ok(Some(parent)) = root.folder(&segs[..i], false) else {
                    break;
                };
                if parent.remove_dir(segs[i]).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .await
    }
}

impl FogS3 {
    /// A listing page of `bucket`. The raw area is left out of it, and a listing inside it is a
    /// read of raw footage (its names carry cameras and capture times): refused.
    pub(super) async fn page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        delimiter: Option<&str>,
        after: Option<String>,
        max: usize,
    ) -> S3Result<Page> {
        let prefix = prefix.unwrap_or_default().to_string();
        // A prefix is checked like a key: its folders are names beneath the bucket.
        let folders = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        if segments(folders).is_err() || prefix.chars().any(char::is_control) {
            return Err(s3_error!(
                InvalidArgument,
                "prefix `{}` does not name folders beneath the bucket (no `.`, `..` or empty segments)",
                prefix.escape_debug()
            ));
        }
        let skip = match self.raw_in(bucket) {
            Some(r) if prefix.starts_with(r) => {
                self.refuse_raw(bucket, &prefix)?;
                None
            }
            Some(r) => Some(r.to_string()),
            None => None,
        };
        let (root, dir) = self.bucket_handle(bucket)?;
        let (b, delimiter) = (bucket.to_string(), delimiter.map(str::to_string));
        blocking(move || {
            list_page(
                &dir,
                &prefix,
                delimiter.as_deref(),
                after.as_deref(),
                max,
                skip.as_deref(),
            )
            .map_err(|e| io_err(&root.shown(&b), e))
        })
        .await
    }

    /// Drops a bucket's settings (visibility, members, quota) from the journal.
    pub(super) async fn forget_settings(&self, bucket: &str) -> S3Result<()> {
        let b = bucket.to_string();
        self.rt
            .journal
            .call(move |j| j.delete_bucket_settings(&b))
            .await
            .map_err(|e| runtime_err(e.into()))
    }

    /// Who may write raw footage: the admin and the services whose own paths hold the raw area
    /// (cameras and uploads that start the anonymiser) may add new items; nobody may replace
    /// one, which would forge what the camera saw.
    pub(super) async fn check_raw_write(
        &self,
        bucket: &str,
        key: &str,
        who: Option<&s3s::auth::Credentials>,
    ) -> S3Result<()> {
        if !self.is_raw(bucket, key) {
            return Ok(());
        }
        if who.is_none() {
            return Err(s3_error!(AccessDenied));
        }
        let k = Self::store_key(bucket, key)?;
        let root = self.root()?;
        let exists = blocking(move || {
            root.node(&k)
                .map(|n| n.is_some())
                .map_err(|e| io_err(&root.shown(&k), e))
        })
        .await?;
        if exists {
            return Err(s3_error!(
                AccessDenied,
                "`{bucket}/{key}` is raw camera footage waiting to be anonymised: it is never replaced"
            ));
        }
        Ok(())
    }

    /// Raw items are deleted by the node once anonymised; through S3 only the admin may.
    pub(super) fn check_raw_delete(
        &self,
        bucket: &str,
        key: &str,
        who: Option<&s3s::auth::Credentials>,
    ) -> S3Result<()> {
        if self.is_raw(bucket, key) && who.is_none_or(|c| c.access_key != self.admin) {
            return Err(s3_error!(
                AccessDenied,
                "`{bucket}/{key}` is raw camera footage: only the admin may delete it through S3"
            ));
        }
        Ok(())
    }
}
