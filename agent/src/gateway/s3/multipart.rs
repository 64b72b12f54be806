//! Multipart uploads of the S3 endpoint: one folder per upload under `data_dir/s3-uploads`
//! (its object's bucket, key and uploader in `upload.json`, each part a file with its MD5
//! beside it). Completing joins the parts into the store as one object written like any other;
//! uploads left unfinished for a week are removed.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use md5::Digest;
use s3s::dto::{CompletedPart, StreamingBlob};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};

use super::errors::store_err;
use super::store::FogS3;
use crate::store::ObjectMeta;

/// S3's bounds: parts numbered 1 to 10,000, each but the last at least 5 MiB, at most 5 GiB.
const MAX_PART_NUMBER: i32 = 10_000;
const MIN_PART_BYTES: u64 = 5 << 20;
const MAX_PART_BYTES: u64 = 5 << 30;
/// An upload nobody added to for this long is abandoned and removed (a client that resumes
/// later starts again); sooner when the disk runs low (`STALE_WHEN_LOW`).
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);
pub const STALE_WHEN_LOW: Duration = Duration::from_secs(10 * 60);
/// How many uploads one ListMultipartUploads answers at most.
const MAX_UPLOADS_LISTED: usize = 1000;

#[derive(Serialize, Deserialize)]
struct Upload {
    bucket: String,
    key: String,
    /// The access key that began it: only that key may add to it, finish or abort it.
    owner: Option<String>,
}

pub struct Uploads {
    dir: PathBuf,
    /// The admin's access key: it may list and abort anyone's upload.
    admin: String,
}

/// An upload as ListMultipartUploads shows it.
pub struct Listed {
    pub id: String,
    pub key: String,
    pub owner: Option<String>,
    pub initiated: Option<std::time::SystemTime>,
}

fn io(path: &std::path::Path, e: std::io::Error) -> s3s::S3Error {
    store_err(crate::store::StoreError::io(path, e))
}

impl Uploads {
    pub fn new(dir: PathBuf, admin: &str) -> Uploads {
        Uploads {
            dir,
            admin: admin.to_string(),
        }
    }

    /// Every upload (id, what it is for, its folder), read from the uploads folder.
    fn all(&self) -> Vec<(String, Upload, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        rd.flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let text = std::fs::read(e.path().join("upload.json")).ok()?;
                let u: Upload = serde_json::from_slice(&text).ok()?;
                Some((e.file_name().to_string_lossy().into_owned(), u, e.path()))
            })
            .collect()
    }

    /// The uploads into `bucket` that `caller` may see (its own; the admin's: all), in key
    /// order, at most 1,000.
    pub async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        caller: Option<String>,
    ) -> S3Result<(Vec<Listed>, bool)> {
        let this = Uploads::new(self.dir.clone(), &self.admin);
        let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
        super::errors::blocking(move || {
            let mut out: Vec<Listed> = this
                .all()
                .into_iter()
                .filter(|(_, u, _)| u.bucket == bucket && u.key.starts_with(&prefix))
                .filter(|(_, u, _)| caller.as_deref() == Some(this.admin.as_str()) || u.owner == caller)
                .map(|(id, u, d)| Listed {
                    initiated: std::fs::metadata(d.join("upload.json"))
                        .and_then(|m| m.modified())
                        .ok(),
                    id,
                    key: u.key,
                    owner: u.owner,
                })
                .collect();
            out.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
            let truncated = out.len() > MAX_UPLOADS_LISTED;
            out.truncate(MAX_UPLOADS_LISTED);
            Ok((out, truncated))
        })
        .await
    }

    /// Bytes parked in the parts of unfinished uploads into `bucket` (they count in its usage).
    pub fn parked(&self, bucket: &str) -> u64 {
        self.all()
            .into_iter()
            .filter(|(_, u, _)| u.bucket == bucket)
            .flat_map(|(_, _, d)| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }

    pub async fn create(&self, bucket: &str, key: &str, owner: Option<String>) -> S3Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let d = self.dir.join(&id);
        tokio::fs::create_dir_all(&d).await.map_err(|e| io(&d, e))?;
        let u = Upload {
            bucket: bucket.into(),
            key: key.into(),
            owner,
        };
        let f = d.join("upload.json");
        let json = serde_json::to_vec(&u).unwrap_or_default();
        tokio::fs::write(&f, json).await.map_err(|e| io(&f, e))?;
        Ok(id)
    }

    /// The upload's folder, once the id, object and uploader are its own.
    async fn open(&self, id: &str, bucket: &str, key: &str, owner: &Option<String>) -> S3Result<PathBuf> {
        // Ids are ours (hex); anything else names no upload (and no path).
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(s3_error!(NoSuchUpload));
        }
        let d = self.dir.join(id);
        let text = tokio::fs::read(d.join("upload.json"))
            .await
            .map_err(|_| s3_error!(NoSuchUpload))?;
        let u: Upload = serde_json::from_slice(&text).map_err(|_| s3_error!(NoSuchUpload))?;
        if u.bucket != bucket || u.key != key {
            return Err(s3_error!(NoSuchUpload, "upload `{id}` is for another object"));
        }
        if &u.owner != owner && owner.as_deref() != Some(self.admin.as_str()) {
            return Err(s3_error!(
                AccessDenied,
                "upload `{id}` was begun with other credentials"
            ));
        }
        Ok(d)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn put_part(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
        owner: Option<String>,
        number: i32,
        body: Option<StreamingBlob>,
        content_length: Option<i64>,
        content_md5: Option<&str>,
        room: &(dyn Fn() -> S3Result<()> + Sync),
    ) -> S3Result<String> {
        if !(1..=MAX_PART_NUMBER).contains(&number) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers run from 1 to {MAX_PART_NUMBER}"
            ));
        }
        let d = self.open(id, bucket, key, &owner).await?;
        let tmp = d.join(format!("part-{number}.{}", uuid::Uuid::new_v4().simple()));
        let r = write_part(&tmp, body, content_length, content_md5, room).await;
        let md5 = match r {
            Ok(m) => m,
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        let part = d.join(format!("part-{number}"));
        tokio::fs::write(d.join(format!("part-{number}.md5")), &md5)
            .await
            .map_err(|e| io(&d, e))?;
        tokio::fs::rename(&tmp, &part).await.map_err(|e| io(&part, e))?;
        Ok(md5)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn complete(
        &self,
        s3: &FogS3,
        id: &str,
        bucket: &str,
        key: &str,
        store_key: &str,
        owner: Option<String>,
        parts: Vec<CompletedPart>,
    ) -> S3Result<(ObjectMeta, String)> {
        use tokio::io::AsyncReadExt;
        let d = self.open(id, bucket, key, &owner).await?;
        if parts.is_empty() {
            return Err(s3_error!(MalformedXML, "no parts listed"));
        }
        // Check every part before writing anything.
        let mut files = Vec::with_capacity(parts.len());
        let mut joined = md5::Md5::new();
        let mut prev = 0;
        for (i, p) in parts.iter().enumerate() {
            let n = p.part_number.unwrap_or(0);
            if n <= prev {
                return Err(s3_error!(InvalidPartOrder));
            }
            prev = n;
            let stored = tokio::fs::read_to_string(d.join(format!("part-{n}.md5")))
                .await
                .map_err(|_| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
            let given = p.e_tag.as_ref().map(|e| e.value().trim_matches('"').to_string());
            if given.as_deref().is_some_and(|g| g != stored) {
                return Err(s3_error!(InvalidPart, "part {n}: ETag does not match"));
            }
            let file = d.join(format!("part-{n}"));
            let len = tokio::fs::metadata(&file).await.map_err(|e| io(&file, e))?.len();
            if len < MIN_PART_BYTES && i + 1 < parts.len() {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} is {len} bytes; all but the last must be 5 MiB or more"
                ));
            }
            joined.update(hex::decode(&stored).unwrap_or_default());
            files.push(file);
        }
        let etag = format!("{}-{}", hex::encode(joined.finalize()), parts.len());
        let mut w = s3.store.writer(store_key).await.map_err(store_err)?;
        let mut buf = vec![0u8; 1 << 20];
        for f in &files {
            let mut src = tokio::fs::File::open(f).await.map_err(|e| io(f, e))?;
            loop {
                let n = src.read(&mut buf).await.map_err(|e| io(f, e))?;
                if n == 0 {
                    break;
                }
                w.write(&buf[..n]).await.map_err(store_err)?;
            }
        }
        let done = w.commit(Some(etag)).await.map_err(store_err)?;
        let _ = tokio::fs::remove_dir_all(&d).await;
        Ok(done)
    }

    pub async fn abort(&self, id: &str, bucket: &str, key: &str, owner: Option<String>) -> S3Result<()> {
        let d = self.open(id, bucket, key, &owner).await?;
        tokio::fs::remove_dir_all(&d).await.map_err(|e| io(&d, e))
    }

    /// Removes uploads untouched for `age`. Returns how many.
    pub fn sweep(&self, age: Duration) -> usize {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut n = 0;
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|el| el >= age);
            if old && std::fs::remove_dir_all(e.path()).is_ok() {
                n += 1;
            }
        }
        n
    }
}

/// Writes one part; returns its MD5 (hex).
async fn write_part(
    path: &std::path::Path,
    body: Option<StreamingBlob>,
    content_length: Option<i64>,
    content_md5: Option<&str>,
    room: &(dyn Fn() -> S3Result<()> + Sync),
) -> S3Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path).await.map_err(|e| io(path, e))?;
    let mut m = md5::Md5::new();
    let mut size = 0u64;
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| s3_error!(IncompleteBody, "the body was cut short: {e}"))?;
            let before = size;
            size += chunk.len() as u64;
            if size > MAX_PART_BYTES {
                return Err(s3_error!(EntityTooLarge, "a part is 5 GiB at most"));
            }
            if before / super::store::ROOM_EVERY != size / super::store::ROOM_EVERY {
                room()?;
            }
            m.update(&chunk);
            f.write_all(&chunk).await.map_err(|e| io(path, e))?;
        }
    }
    f.flush().await.map_err(|e| io(path, e))?;
    let md5 = hex::encode(m.finalize());
    super::store::check_sent(size, &md5, content_length, content_md5)?;
    Ok(md5)
}
