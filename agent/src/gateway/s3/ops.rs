//! The S3 operations over the local store (`data_dir/store/<bucket>/<key>`): buckets are its
//! top folders, objects its files. s3s parses requests, checks signatures and writes the XML;
//! this answers them. An object that arrives (PUT, multipart, copy) is routed as one put with
//! `fogd put`: the services watching its path are queued in the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};

use super::multipart::Uploads;
use crate::fdl::{ProviderKind, ProviderRef};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{check_key, etag_of, ObjectMeta, StoreError};

/// The MD5 of nothing: a folder marker's ETag.
const EMPTY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
const READ_CHUNK: usize = 256 * 1024;

pub struct FogS3 {
    rt: Arc<Runtime>,
    pub(super) root: PathBuf,
    pub(super) uploads: Uploads,
    /// Where camera items land before they are anonymised (`ingest.path`, `bucket/folder/`):
    /// they may be put there, never read back out.
    raw: String,
}

impl FogS3 {
    pub fn new(rt: Arc<Runtime>) -> FogS3 {
        let root = rt.data.store();
        let uploads = Uploads::new(rt.data.s3_uploads());
        let raw = format!("{}/", rt.cfg.ingest.path.trim_matches('/'));
        FogS3 {
            rt,
            root,
            uploads,
            raw,
        }
    }

    /// Raw camera footage never leaves the node, whoever asks.
    fn refuse_raw(&self, bucket: &str, key: &str) -> S3Result<()> {
        if format!("{bucket}/{key}").starts_with(&self.raw) {
            return Err(s3_error!(
                AccessDenied,
                "`{bucket}/{key}` is raw camera footage (ingest.path): it is anonymised on the node and never read out"
            ));
        }
        Ok(())
    }

    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        // s3s checks names against S3's rules; a leading dot would also reach fogd's own files.
        if bucket.starts_with('.') || bucket.contains('/') {
            return Err(s3_error!(InvalidBucketName));
        }
        Ok(self.root.join(bucket))
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<PathBuf> {
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
        let store = crate::store::LocalStore::new("minio.default", self.root.clone());
        let mut w = store.writer(key).await.map_err(store_err)?;
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "the body was cut short: {e}"))?;
                w.write(&chunk).await.map_err(store_err)?;
            }
        }
        if content_length.is_some_and(|n| n >= 0 && n as u64 != w.size()) {
            return Err(s3_error!(IncompleteBody));
        }
        if let Some(want) = content_md5 {
            use base64::Engine;
            let got = base64::engine::general_purpose::STANDARD
                .encode(hex::decode(w.md5_hex()).unwrap_or_default());
            if got != want {
                return Err(s3_error!(BadDigest, "Content-MD5 does not match the body"));
            }
        }
        w.commit(etag).await.map_err(store_err)
    }
}

pub(super) fn store_err(e: StoreError) -> S3Error {
    match e {
        StoreError::InvalidKey { .. } => S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()),
        StoreError::NotFound { .. } => S3Error::with_message(S3ErrorCode::NoSuchKey, e.to_string()),
        StoreError::DiskFull { .. } => storage_full(e.to_string()),
        StoreError::Io { ref source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::EISDIR)) =>
        {
            // `a/b` is an object and `a/b/c` was asked for, or the other way round.
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("XMinioParentIsObject".into()),
                format!("{e} (an object and a folder cannot share a name)"),
            );
            err.set_status_code(axum::http::StatusCode::BAD_REQUEST);
            err
        }
        _ => {
            tracing::error!("S3 endpoint: {e}");
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

/// MinIO's answer for a full disk (507), which its clients know.
fn storage_full(message: String) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom("XMinioStorageFull".into()), message);
    err.set_status_code(axum::http::StatusCode::INSUFFICIENT_STORAGE);
    err
}

pub(super) fn runtime_err(e: RuntimeError) -> S3Error {
    match e {
        RuntimeError::LowDisk { .. } | RuntimeError::LowInodes { .. } => storage_full(e.to_string()),
        RuntimeError::Store(s) => store_err(s),
        other => {
            tracing::error!("S3 endpoint: {other}");
            S3Error::with_message(S3ErrorCode::InternalError, other.to_string())
        }
    }
}

fn io_err(path: &Path, e: std::io::Error) -> S3Error {
    store_err(StoreError::io(path, e))
}

fn timestamp(t: Option<std::time::SystemTime>) -> Option<Timestamp> {
    t.map(Timestamp::from)
}

/// One entry of a listing, in key order.
enum Entry {
    Object { key: String, path: PathBuf },
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object { key, .. } => key,
            Entry::Prefix(p) => p,
        }
    }
}

struct Page {
    objects: Vec<Object>,
    prefixes: Vec<String>,
    truncated: bool,
    last: Option<String>,
}

/// Every key under `prefix` in the bucket folder `dir` (files, and empty folders as `name/`
/// markers, as OSCAR makes for its input paths), sorted as S3 sorts (by UTF-8 bytes).
fn keys_under(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let start = prefix.rsplit_once('/').map_or("", |(d, _)| d);
    let mut out = Vec::new();
    let mut stack = vec![dir.join(start)];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(e),
        };
        let mut empty = true;
        for e in rd {
            let e = e?;
            empty = false;
            let name = e.file_name();
            if name.to_string_lossy().starts_with(crate::store::TMP_PREFIX) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(rel) = e.path().strip_prefix(dir) {
                    out.push((rel.to_string_lossy().into_owned(), e.path()));
                }
            }
        }
        if empty && d != dir {
            if let Ok(rel) = d.strip_prefix(dir) {
                out.push((format!("{}/", rel.to_string_lossy()), d.clone()));
            }
        }
    }
    out.retain(|(k, _)| k.starts_with(prefix));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A page of the listing: objects and common prefixes (with a delimiter) after `after`, at
/// most `max` of them together.
fn list_page(
    dir: &Path,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> S3Result<Page> {
    let keys = keys_under(dir, prefix).map_err(|e| io_err(dir, e))?;
    let mut entries: Vec<Entry> = Vec::new();
    for (key, path) in keys {
        let grouped = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        match grouped {
            Some(p) => {
                if !matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p) {
                    entries.push(Entry::Prefix(p));
                }
            }
            None => entries.push(Entry::Object { key, path }),
        }
    }
    let mut rest = entries
        .into_iter()
        .filter(|e| after.is_none_or(|a| e.name() > a))
        .peekable();
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let mut n = 0;
    while n < max {
        let Some(e) = rest.next() else { break };
        page.last = Some(e.name().to_string());
        match e {
            Entry::Prefix(p) => page.prefixes.push(p),
            Entry::Object { key, path } => {
                let meta = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?;
                let etag = if meta.is_dir() {
                    Some(EMPTY_MD5.to_string())
                } else {
                    etag_of(&path).map_err(store_err)?
                };
                page.objects.push(Object {
                    key: Some(key),
                    size: Some(if meta.is_dir() { 0 } else { meta.len() as i64 }),
                    last_modified: timestamp(meta.modified().ok()),
                    e_tag: etag.map(ETag::Strong),
                    storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
                    ..Default::default()
                });
            }
        }
        n += 1;
    }
    page.truncated = rest.peek().is_some();
    Ok(page)
}

const MAX_KEYS: i32 = 1000;

fn max_keys(asked: Option<i32>) -> usize {
    asked.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(S3Error::with_message(S3ErrorCode::InternalError, e.to_string())))
}

/// `remaining` bytes of the file (from where it stands) as a body stream. A task reads ahead
/// one chunk or two; it stops when the client goes (the channel closes).
fn file_stream(
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

struct Found {
    path: PathBuf,
    meta: std::fs::Metadata,
    etag: String,
}

impl FogS3 {
    /// The object's file, metadata and ETag; NoSuchKey / NoSuchBucket as S3 says them.
    async fn find(&self, bucket: &str, key: &str) -> S3Result<Found> {
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

#[async_trait::async_trait]
impl S3 for FogS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let root = self.root.clone();
        let buckets = blocking(move || {
            let mut out = Vec::new();
            let rd = match std::fs::read_dir(&root) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io_err(&root, e)),
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let created = e.metadata().ok().and_then(|m| m.modified().ok());
                out.push(Bucket {
                    name: Some(name),
                    creation_date: timestamp(created),
                    ..Default::default()
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let dir = self.bucket_dir(&req.input.bucket)?;
        match tokio::fs::create_dir(&dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(s3_error!(BucketAlreadyOwnedByYou));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| io_err(&dir, e))?;
            }
            Err(e) => return Err(io_err(&dir, e)),
        }
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", req.input.bucket)),
        }))
    }

    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let dir = self.require_bucket(&req.input.bucket).await?;
        let d = dir.clone();
        let empty = blocking(move || {
            Ok(keys_under(&d, "")
                .map_err(|e| io_err(&d, e))?
                .iter()
                .all(|(k, _)| k.ends_with('/')))
        })
        .await?;
        if !empty {
            return Err(s3_error!(
                BucketNotEmpty,
                "bucket `{}` holds objects",
                req.input.bucket
            ));
        }
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| io_err(&dir, e))?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let after = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(t.clone()),
            (None, s) => s.clone(),
        };
        let (delim, max) = (i.delimiter.clone(), max_keys(i.max_keys));
        let page =
            blocking(move || list_page(&dir, &prefix, delim.as_deref(), after.as_deref(), max)).await?;
        let count = (page.objects.len() + page.prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            max_keys: Some(max as i32),
            key_count: Some(count),
            is_truncated: Some(page.truncated),
            continuation_token: i.continuation_token,
            next_continuation_token: page.truncated.then_some(page.last).flatten(),
            start_after: i.start_after,
            encoding_type: i.encoding_type,
            contents: Some(page.objects),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let (delim, after, max) = (i.delimiter.clone(), i.marker.clone(), max_keys(i.max_keys));
        let page =
            blocking(move || list_page(&dir, &prefix, delim.as_deref(), after.as_deref(), max)).await?;
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            marker: i.marker,
            max_keys: Some(max as i32),
            is_truncated: Some(page.truncated),
            next_marker: page.truncated.then_some(page.last).flatten(),
            encoding_type: i.encoding_type,
            contents: Some(page.objects),
            common_prefixes: Some(
                page.prefixes
                    .into_iter()
                    .map(|p| CommonPrefix { prefix: Some(p) })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let key = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        if i.key.ends_with('/') {
            // A folder marker (OSCAR makes one per input path): a folder, never a trigger.
            if i.content_length.unwrap_or(0) > 0 {
                return Err(s3_error!(
                    InvalidArgument,
                    "a key ending in `/` names a folder and takes no data"
                ));
            }
            let d = dir.join(&i.key);
            tokio::fs::create_dir_all(&d).await.map_err(|e| io_err(&d, e))?;
            return Ok(S3Response::new(PutObjectOutput {
                e_tag: Some(ETag::Strong(EMPTY_MD5.into())),
                ..Default::default()
            }));
        }
        let (meta, etag) = self
            .write_body(&key, i.body, i.content_length, i.content_md5.as_deref(), None)
            .await?;
        self.arrived(&meta).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            size: Some(meta.size as i64),
            ..Default::default()
        }))
    }

    async fn copy_object(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let CopySource::Bucket { bucket, key, .. } = &i.copy_source else {
            return Err(s3_error!(NotImplemented, "copies from access points"));
        };
        self.refuse_raw(bucket, key)?;
        let src = self.find(bucket, key).await?;
        if src.meta.is_dir() {
            return Err(s3_error!(InvalidArgument, "a folder marker cannot be copied"));
        }
        self.require_bucket(&i.bucket).await?;
        let dst = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let store = crate::store::LocalStore::new("minio.default", self.root.clone());
        let meta = store.put_file(&dst, &src.path).await.map_err(store_err)?;
        let etag = etag_of(&self.root.join(&dst))
            .map_err(store_err)?
            .unwrap_or_default();
        self.arrived(&meta).await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(Timestamp::from(std::time::SystemTime::now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let f = self.find(&req.input.bucket, &req.input.key).await?;
        let len = if f.meta.is_dir() { 0 } else { f.meta.len() };
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.meta.modified().ok()),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".to_string()),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        use tokio::io::AsyncSeekExt;
        let i = req.input;
        self.refuse_raw(&i.bucket, &i.key)?;
        let f = self.find(&i.bucket, &i.key).await?;
        let len = if f.meta.is_dir() { 0 } else { f.meta.len() };
        let (range, content_range) = match &i.range {
            None => (0..len, None),
            Some(r) => {
                let r = r.check(len)?;
                let cr = format!("bytes {}-{}/{len}", r.start, r.end.saturating_sub(1));
                (r, Some(cr))
            }
        };
        let body = if f.meta.is_dir() {
            None
        } else {
            let mut file = tokio::fs::File::open(&f.path)
                .await
                .map_err(|e| io_err(&f.path, e))?;
            file.seek(std::io::SeekFrom::Start(range.start))
                .await
                .map_err(|e| io_err(&f.path, e))?;
            Some(StreamingBlob::wrap(file_stream(file, range.end - range.start)))
        };
        Ok(S3Response::new(GetObjectOutput {
            body,
            content_length: Some((range.end - range.start) as i64),
            content_range,
            e_tag: Some(ETag::Strong(f.etag)),
            last_modified: timestamp(f.meta.modified().ok()),
            accept_ranges: Some("bytes".into()),
            content_type: Some("application/octet-stream".to_string()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let dir = self.require_bucket(&req.input.bucket).await?;
        self.remove(&dir, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        let dir = self.require_bucket(&i.bucket).await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            match self.remove(&dir, &i.bucket, &o.key).await {
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    message: e.message().map(str::to_string),
                    key: Some(o.key),
                    ..Default::default()
                }),
            }
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = &req.input;
        self.require_bucket(&i.bucket).await?;
        Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let id = self.uploads.create(&i.bucket, &i.key, owner).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(req.input.bucket),
            key: Some(req.input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        self.check_disk()?;
        let etag = self
            .uploads
            .put_part(
                &i.upload_id,
                &i.bucket,
                &i.key,
                owner,
                i.part_number,
                i.body,
                i.content_length,
                i.content_md5.as_deref(),
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        let key = Self::store_key(&i.bucket, &i.key)?;
        self.check_disk()?;
        let parts = i.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        let (meta, etag) = self
            .uploads
            .complete(self, &i.upload_id, &i.bucket, &i.key, &key, owner, parts)
            .await?;
        self.arrived(&meta).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket.clone()),
            key: Some(i.key.clone()),
            e_tag: Some(ETag::Strong(etag)),
            location: Some(format!("/{}/{}", i.bucket, i.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let owner = req.credentials.as_ref().map(|c| c.access_key.clone());
        let i = req.input;
        self.uploads.abort(&i.upload_id, &i.bucket, &i.key, owner).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

impl FogS3 {
    /// Deletes an object (S3 answers a missing one as deleted too). A folder marker goes with
    /// its folder when that is empty.
    async fn remove(&self, dir: &Path, bucket: &str, key: &str) -> S3Result<()> {
        Self::store_key(bucket, key)?;
        let path = dir.join(key);
        let r = if key.ends_with('/') {
            tokio::fs::remove_dir(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        match r {
            Ok(()) => Ok(()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Page) -> (Vec<String>, Vec<String>) {
        (
            p.objects.iter().filter_map(|o| o.key.clone()).collect(),
            p.prefixes.clone(),
        )
    }

    #[test]
    fn listings_group_by_delimiter_and_page_in_key_order() {
        let d = tempfile::tempdir().expect("tmp");
        for k in ["a/1", "a/2", "b", "c/x/y", "ü"] {
            let p = d.path().join(k);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, k).expect("w");
        }
        std::fs::create_dir_all(d.path().join("in")).expect("mkdir");
        std::fs::write(d.path().join("a/.fogd-tmp-x"), b"partial").expect("w");
        let all = list_page(d.path(), "", None, None, 1000).expect("list");
        assert_eq!(names(&all).0, ["a/1", "a/2", "b", "c/x/y", "in/", "ü"]);
        let top = list_page(d.path(), "", Some("/"), None, 1000).expect("list");
        assert_eq!(
            names(&top),
            (
                vec!["b".into(), "ü".into()],
                vec!["a/".into(), "c/".into(), "in/".into()]
            )
        );
        // Pages of two: each resumes after the last name of the one before.
        let p1 = list_page(d.path(), "", Some("/"), None, 2).expect("list");
        assert_eq!(
            (names(&p1).1, p1.truncated, p1.last.as_deref()),
            (vec!["a/".to_string()], true, Some("b"))
        );
        let p2 = list_page(d.path(), "", Some("/"), Some("b"), 2).expect("list");
        assert_eq!(names(&p2).1, ["c/", "in/"]);
        let p3 = list_page(d.path(), "", Some("/"), Some("in/"), 2).expect("list");
        assert_eq!((names(&p3).0, p3.truncated), (vec!["ü".to_string()], false));
        let sub = list_page(d.path(), "a/", Some("/"), None, 1000).expect("list");
        assert_eq!(names(&sub).0, ["a/1", "a/2"]);
        assert_eq!(
            all.objects[0].e_tag,
            Some(ETag::Strong(format!("{:x}", md5_of(b"a/1"))))
        );
    }

    fn md5_of(b: &[u8]) -> md5::digest::Output<md5::Md5> {
        use md5::Digest;
        md5::Md5::digest(b)
    }
}
