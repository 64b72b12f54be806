//! Writing an object of the local store as it arrives (the S3 endpoint's PUT and multipart
//! uploads), and the S3 ETag kept on each file.
//!
//! S3 tools check an object's ETag against the MD5 of what they sent (rclone, `aws s3 sync`), so
//! the store keeps it: computed while the object is written, then stored in an extended
//! attribute of the file with the size and modification time it belongs to. A file changed by
//! other means (edited in place) no longer matches them and its MD5 is computed again.

use std::fs::File;
use std::path::PathBuf;

use md5::Digest;
use xxhash_rust::xxh3::Xxh3;

use super::{ObjectMeta, Result, StoreError};

const ETAG_XATTR: &str = "user.fogd.etag";

/// An object being written: a temporary file beside its final place, hashed as it grows; it
/// appears under its key only at `commit`, durable, and never half written. Dropped before
/// that, it leaves nothing behind. Its folder is held as a handle reached without links, so
/// the object lands beneath the store whatever is renamed or planted meanwhile.
pub struct ObjectWriter {
    key: String,
    /// The object's folder, its name there, the temporary's name (empty once renamed).
    dir: cap_std::fs::Dir,
    name: String,
    tmp: String,
    /// For messages only.
    shown: PathBuf,
    file: Option<tokio::fs::File>,
    xxh3: Xxh3,
    md5: md5::Md5,
    size: u64,
}

impl ObjectWriter {
    pub(crate) async fn create(root: PathBuf, key: &str) -> Result<ObjectWriter> {
        let k = key.to_string();
        let made = tokio::task::spawn_blocking(move || -> Result<_> {
            let root = super::root::open_store(&root)?;
            let shown = root.shown(&k);
            let o = root.new_object(&k).map_err(|e| StoreError::io(&shown, e))?;
            Ok((o.dir, o.name, o.tmp, shown, o.file))
        })
        .await
        .map_err(|e| StoreError::Io {
            path: PathBuf::from(key),
            source: std::io::Error::other(format!("store task failed: {e}")),
        })?;
        let (dir, name, tmp, shown, file) = made?;
        Ok(ObjectWriter {
            key: key.to_string(),
            dir,
            name,
            tmp,
            shown,
            file: Some(tokio::fs::File::from_std(file)),
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
            .map_err(|e| StoreError::io(&self.shown, e))?;
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
            path: self.shown.clone(),
            source: std::io::Error::other("committed twice"),
        })?;
        f.flush().await.map_err(|e| StoreError::io(&self.shown, e))?;
        f.sync_all().await.map_err(|e| StoreError::io(&self.shown, e))?;
        let f = f.into_std().await;
        let dir = self.dir.try_clone().map_err(|e| StoreError::io(&self.shown, e))?;
        let (tmp, name, tag, shown) = (
            self.tmp.clone(),
            self.name.clone(),
            etag.clone(),
            self.shown.clone(),
        );
        let done = tokio::task::spawn_blocking(move || -> Result<()> {
            remember_etag(&f, &tag);
            // A folder or a link someone put under the object's name is replaced as a name,
            // never written through (rename(2) does not follow the target).
            dir.rename(&tmp, &dir, &name)
                .map_err(|e| StoreError::io(&shown, e))?;
            super::root::sync_dir(&dir).map_err(|e| StoreError::io(&shown, e))
        })
        .await
        .map_err(|e| StoreError::Io {
            path: self.shown.clone(),
            source: std::io::Error::other(format!("store task failed: {e}")),
        })?;
        done?;
        let meta = ObjectMeta {
            key: std::mem::take(&mut self.key),
            size: self.size,
            etag: format!("{:032x}", self.xxh3.digest128()),
        };
        // Renamed: nothing to clean up.
        self.tmp.clear();
        Ok((meta, etag))
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if !self.tmp.is_empty() {
            let _ = self.dir.remove_file(&self.tmp);
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

/// The S3 ETag of an open store file (unquoted): the stored one while the file is unchanged,
/// else its MD5, computed now and stored. Works on the descriptor, so it only ever touches the
/// file the store's walk opened (never a path someone could swap for a link).
pub fn etag_of(f: &File) -> std::io::Result<String> {
    use xattr::FileExt;
    let meta = f.metadata()?;
    if let Ok(Some(v)) = f.get_xattr(ETAG_XATTR) {
        let v = String::from_utf8_lossy(&v);
        if let Some((etag, rest)) = v.split_once(' ') {
            if rest == stamp(&meta) {
                return Ok(etag.to_string());
            }
        }
    }
    let mut m = md5::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0u64;
    loop {
        let n = std::os::unix::fs::FileExt::read_at(f, &mut buf, at)?;
        if n == 0 {
            break;
        }
        m.update(&buf[..n]);
        at += n as u64;
    }
    let md5 = hex::encode(m.finalize());
    remember_etag(f, &md5);
    Ok(md5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_written_object_carries_its_md5_until_it_is_changed() {
        let dir = tempfile::tempdir().expect("tmp");
        let dst = dir.path().join("b/k.txt");
        let mut w = ObjectWriter::create(dir.path().to_path_buf(), "b/k.txt")
            .await
            .expect("create");
        w.write(b"hello ").await.expect("w");
        w.write(b"world").await.expect("w");
        let (meta, etag) = w.commit(None).await.expect("commit");
        assert_eq!(meta.size, 11);
        // md5("hello world")
        assert_eq!(etag, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let etag_at = |p: &std::path::Path| etag_of(&File::open(p).expect("open")).expect("etag");
        assert_eq!(etag_at(&dst), etag);
        assert_eq!(
            std::fs::read_dir(dir.path().join("b")).expect("dir").count(),
            1,
            "no temporary file left"
        );
        // Edited in place: the stored ETag is stale, and the MD5 is computed again.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&dst, b"other").expect("w");
        assert_eq!(etag_at(&dst), "795f3202b17cb6bc3d4b771d8c6c9eaf");
        // Dropped before commit: nothing appears, nothing is left.
        let mut w = ObjectWriter::create(dir.path().to_path_buf(), "b/gone")
            .await
            .expect("create");
        w.write(b"partial").await.expect("w");
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path().join("b")).expect("dir").count(), 1);
    }

    #[tokio::test]
    async fn a_link_in_the_way_is_never_written_through() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("b")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("b/esc")).expect("link");
        let e = ObjectWriter::create(root.clone(), "b/esc/x.txt")
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("link"), "{e}");
        // A link at the object's own name is replaced by the object, not written through.
        std::fs::write(outside.join("target"), b"keep").expect("w");
        std::os::unix::fs::symlink(outside.join("target"), root.join("b/t")).expect("link");
        let mut w = ObjectWriter::create(root.clone(), "b/t").await.expect("create");
        w.write(b"new").await.expect("w");
        w.commit(None).await.expect("commit");
        assert_eq!(std::fs::read(outside.join("target")).expect("r"), b"keep");
        assert_eq!(std::fs::read(root.join("b/t")).expect("r"), b"new");
        assert!(std::fs::read_dir(&outside).expect("dir").count() == 1);
    }
}
