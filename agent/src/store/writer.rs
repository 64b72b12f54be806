//! Writing an object of the local store as it arrives (the S3 endpoint's PUT and multipart
//! uploads), and the S3 ETag kept on each file.
//!
//! S3 tools check an object's ETag against the MD5 of what they sent (rclone, `aws s3 sync`), so
//! the store keeps it: computed while the object is written, then stored in an extended
//! attribute of the file with the size and modification time it belongs to. A file changed by
//! other means (edited in place) no longer matches them and its MD5 is computed again.

use std::fs::File;
use std::path::{Path, PathBuf};

use md5::Digest;
use xxhash_rust::xxh3::Xxh3;

use super::local::TMP_PREFIX;
use super::{ObjectMeta, Result, StoreError};

const ETAG_XATTR: &str = "user.fogd.etag";

/// An object being written: a temporary file beside its final place, hashed as it grows; it
/// appears under its key only at `commit`, durable, and never half written. Dropped before
/// that, it leaves nothing behind.
pub struct ObjectWriter {
    key: String,
    dst: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    xxh3: Xxh3,
    md5: md5::Md5,
    size: u64,
}

impl ObjectWriter {
    pub(crate) async fn create(key: &str, dst: PathBuf) -> Result<ObjectWriter> {
        let dir = dst.parent().unwrap_or(Path::new(".")).to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| StoreError::io(&dir, e))?;
        let tmp = dir.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4()));
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| StoreError::io(&tmp, e))?;
        Ok(ObjectWriter {
            key: key.to_string(),
            dst,
            tmp,
            file: Some(file),
            xxh3: Xxh3::new(),
            md5: md5::Md5::new(),
            size: 0,
        })
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.write_all(bytes)
            .await
            .map_err(|e| StoreError::io(&self.tmp, e))?;
        self.xxh3.update(bytes);
        self.md5.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The MD5 of what was written so far, hex.
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5.clone().finalize())
    }

    /// Makes the object durable and visible under its key, with `etag` (its MD5 when None) as
    /// its S3 ETag. The returned meta carries the content hash the journal identifies it by.
    pub async fn commit(mut self, etag: Option<String>) -> Result<(ObjectMeta, String)> {
        use tokio::io::AsyncWriteExt;
        let etag = etag.unwrap_or_else(|| self.md5_hex());
        let mut f = self.file.take().ok_or_else(|| StoreError::Io {
            path: self.tmp.clone(),
            source: std::io::Error::other("committed twice"),
        })?;
        f.flush().await.map_err(|e| StoreError::io(&self.tmp, e))?;
        f.sync_all().await.map_err(|e| StoreError::io(&self.tmp, e))?;
        let f = f.into_std().await;
        let (tmp, dst, tag) = (self.tmp.clone(), self.dst.clone(), etag.clone());
        let done = tokio::task::spawn_blocking(move || -> Result<()> {
            remember_etag(&f, &tag);
            std::fs::rename(&tmp, &dst).map_err(|e| StoreError::io(&dst, e))?;
            let dir = dst.parent().unwrap_or(Path::new("."));
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| StoreError::io(dir, e))
        })
        .await
        .map_err(|e| StoreError::Io {
            path: self.dst.clone(),
            source: std::io::Error::other(format!("store task failed: {e}")),
        })?;
        done?;
        let meta = ObjectMeta {
            key: std::mem::take(&mut self.key),
            size: self.size,
            etag: format!("{:032x}", self.xxh3.digest128()),
        };
        // Renamed: nothing to clean up.
        self.tmp = PathBuf::new();
        Ok((meta, etag))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// What the attribute holds: the ETag, then the size and modification time (ns) it is for.
fn stamp(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("{} {mtime}", meta.len())
}

/// Stores `etag` on the (fully written) file. A filesystem without user attributes keeps
/// nothing, and the MD5 is computed when asked for.
pub(crate) fn remember_etag(f: &File, etag: &str) {
    use xattr::FileExt;
    if let Ok(meta) = f.metadata() {
        let _ = f.set_xattr(ETAG_XATTR, format!("{etag} {}", stamp(&meta)).as_bytes());
    }
}

/// The S3 ETag of the file at `path` (unquoted): the stored one while the file is unchanged,
/// else its MD5, computed now and stored. None when there is no such file.
pub fn etag_of(path: &Path) -> Result<Option<String>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(path, e)),
    };
    if let Ok(Some(v)) = xattr::get(path, ETAG_XATTR) {
        let v = String::from_utf8_lossy(&v);
        if let Some((etag, rest)) = v.split_once(' ') {
            if rest == stamp(&meta) {
                return Ok(Some(etag.to_string()));
            }
        }
    }
    let (_, _, md5) = super::file_digests(path)?;
    let md5 = base64_to_hex(&md5);
    if let Ok(f) = File::open(path) {
        remember_etag(&f, &md5);
    }
    Ok(Some(md5))
}

fn base64_to_hex(b64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(hex::encode)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_object_carries_its_md5_until_it_is_changed() {
        let dir = tempfile::tempdir().expect("tmp");
        let dst = dir.path().join("b/k.txt");
        let mut w = ObjectWriter::create("b/k.txt", dst.clone())
            .await
            .expect("create");
        w.write(b"hello ").await.expect("w");
        w.write(b"world").await.expect("w");
        let (meta, etag) = w.commit(None).await.expect("commit");
        assert_eq!(meta.size, 11);
        // md5("hello world")
        assert_eq!(etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(etag_of(&dst).expect("etag").as_deref(), Some(etag.as_str()));
        assert_eq!(
            std::fs::read_dir(dir.path().join("b")).expect("dir").count(),
            1,
            "no temporary file left"
        );
        // Edited in place: the stored ETag is stale, and the MD5 is computed again.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&dst, b"other").expect("w");
        assert_eq!(
            etag_of(&dst).expect("etag").as_deref(),
            Some("795f3202b17cb6bc3d4b771d8c6c9eaf")
        );
        // Dropped before commit: nothing appears, nothing is left.
        let mut w = ObjectWriter::create("b/gone", dir.path().join("b/gone"))
            .await
            .expect("create");
        w.write(b"partial").await.expect("w");
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join("b")).expect("dir").count(), 1);
    }
}
