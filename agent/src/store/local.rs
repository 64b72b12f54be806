//! The local store: a directory tree, `<root>/<bucket>/<key...>`. Writes go to a temporary file in
//! the same folder, are fsynced, then renamed into place, so a reader (or a crash) never sees half
//! an object.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::Xxh3;

use super::root::{open_store, NewObject, Root, Stat, Walk, Walked};
use super::{ObjectMeta, Result, StoreError};

pub struct LocalStore {
    name: String,
    root: PathBuf,
}

/// Names of writes in progress (never listed).
pub const TMP_PREFIX: &str = ".fogd-tmp-";

impl LocalStore {
    pub fn new(name: impl Into<String>, root: PathBuf) -> LocalStore {
        LocalStore {
            name: name.into(),
            root,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `key` would be, for messages and comparisons only: every file of the store is
    /// opened through `root()` (beneath the root, no link followed), never by this path.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The store's root, opened for resolving keys beneath it.
    pub fn open_root(&self) -> Result<Root> {
        open_store(&self.root)
    }

    pub async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta> {
        let root = self.root.clone();
        let (src, key) = (src.to_path_buf(), key.to_string());
        blocking(move || put_blocking(&root, &src, key)).await
    }

    /// An object written as it arrives; it appears under `key` at `commit`.
    pub async fn writer(&self, key: &str) -> Result<super::ObjectWriter> {
        super::ObjectWriter::create(self.root.clone(), key).await
    }

    pub async fn get_file(&self, key: &str, dst: &Path) -> Result<ObjectMeta> {
        let root = self.root.clone();
        let (dst, key, name) = (dst.to_path_buf(), key.to_string(), self.name.clone());
        blocking(move || {
            let root = open_store(&root)?;
            let shown = root.shown(&key);
            let Some((mut from, _)) = root.open_file(&key).map_err(|e| StoreError::io(&shown, e))? else {
                return Err(StoreError::NotFound { provider: name, key });
            };
            let mut to = File::create(&dst).map_err(|e| StoreError::io(&dst, e))?;
            let (size, etag, _) = copy_hashing(&mut from, &mut to, &shown, &dst)?;
            Ok(ObjectMeta { key, size, etag })
        })
        .await
    }

    /// Removes `key` (no error when it is not there; a link there goes as a link).
    pub async fn delete(&self, key: &str) -> Result<()> {
        let root = self.root.clone();
        let key = key.to_string();
        blocking(move || {
            let root = open_store(&root)?;
            root.remove(&key)
                .map_err(|e| StoreError::io(&root.shown(&key), e))?;
            Ok(())
        })
        .await
    }

    /// Removes temporary files older than `age` that a crash left behind (a write in progress
    /// is younger). Returns how many.
    pub fn sweep_temporary(&self, age: std::time::Duration) -> usize {
        let mut removed = 0;
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(p);
                } else if e.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|el| el > age);
                    if old && std::fs::remove_file(&p).is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    /// Objects (files) under `prefix` after `after`, at most `max`, in key order with their
    /// size and time, read folder by folder from the marker on: a page costs its size.
    pub async fn entries(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<(String, Stat)>> {
        let root = self.root.clone();
        let (prefix, after) = (prefix.to_string(), after.map(str::to_string));
        blocking(move || {
            let mut out = Vec::new();
            let root = open_store(&root)?;
            let shown = root.path().to_path_buf();
            let walk = Walk::new(root.dir(), &prefix, after.as_deref(), false)
                .map_err(|e| StoreError::io(&shown, e))?;
            for w in walk {
                if out.len() >= max.unwrap_or(usize::MAX) {
                    break;
                }
                let Walked::Key(f) = w.map_err(|e| StoreError::io(&shown, e))? else {
                    continue;
                };
                if !f.is_folder() {
                    out.push((f.key, f.stat));
                }
            }
            Ok(out)
        })
        .await
    }

    /// How many objects lie under `prefix` and their bytes (one walk, nothing kept).
    pub async fn usage(&self, prefix: &str) -> Result<(u64, u64)> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        blocking(move || {
            let root = open_store(&root)?;
            let shown = root.path().to_path_buf();
            let mut total = (0, 0);
            for w in Walk::new(root.dir(), &prefix, None, false).map_err(|e| StoreError::io(&shown, e))? {
                if let Walked::Key(f) = w.map_err(|e| StoreError::io(&shown, e))? {
                    if !f.is_folder() {
                        total = (total.0 + 1, total.1 + f.stat.size);
                    }
                }
            }
            Ok(total)
        })
        .await
    }

    /// Objects under `prefix` after `after`, at most `max`. The etag of a listed object is its
    /// size and modification time (hashing every file to list it would be too slow);
    /// `put_file` returns the content hash.
    pub async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .entries(prefix, after, max)
            .await?
            .into_iter()
            .map(|(key, st)| {
                let mtime = st
                    .modified
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                ObjectMeta {
                    key,
                    size: st.size,
                    etag: format!("{:x}-{mtime:x}", st.size),
                }
            })
            .collect())
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list_after(prefix, None, None).await
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(format!("store task failed: {e}")),
        })
    })
}

fn put_blocking(root: &Path, src: &Path, key: String) -> Result<ObjectMeta> {
    use std::os::unix::fs::OpenOptionsExt;
    let root = open_store(root)?;
    let shown = root.shown(&key);
    let NewObject {
        dir,
        name,
        tmp,
        file: mut to,
    } = root.new_object(&key).map_err(|e| StoreError::io(&shown, e))?;
    let result = (|| {
        // The source is a script's output: a link it swapped in late is refused, not followed.
        let mut from = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(src)
            .map_err(|e| StoreError::io(src, e))?;
        let (size, etag, md5) = copy_hashing(&mut from, &mut to, src, &shown)?;
        to.sync_all().map_err(|e| StoreError::io(&shown, e))?;
        super::writer::remember_etag(&to, &md5);
        dir.rename(&tmp, &dir, &name)
            .map_err(|e| StoreError::io(&shown, e))?;
        // The rename is durable only once the folder is synced.
        super::root::sync_dir(&dir).map_err(|e| StoreError::io(&shown, e))?;
        Ok(ObjectMeta { key, size, etag })
    })();
    if result.is_err() {
        let _ = dir.remove_file(&tmp);
    }
    result
}

/// The content hash that the local store uses as etag (xxh3-128, hex).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// Makes every write on the filesystem of `path` durable (syncfs(2)): one call for a batch of
/// files and their renames, far cheaper than an fsync of each file and folder.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    // SAFETY: the descriptor is open for the call's duration.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(StoreError::io(path, std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Hashes a file: (size, xxh3-128 hex, MD5 base64).
pub fn file_digests(path: &Path) -> Result<(u64, String, String)> {
    use base64::Engine;
    use md5::Digest;
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let (mut h, mut m) = (Xxh3::new(), md5::Md5::new());
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| StoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        m.update(&buf[..n]);
        total += n as u64;
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(m.finalize());
    Ok((total, format!("{:032x}", h.digest128()), md5))
}

/// Copies and hashes in one pass. Returns (bytes, xxh3-128 hex, MD5 hex: the S3 ETag).
pub(crate) fn copy_hashing(
    from: &mut impl Read,
    to: &mut impl Write,
    src: &Path,
    dst: &Path,
) -> Result<(u64, String, String)> {
    use md5::Digest;
    let mut h = Xxh3::new();
    let mut m = md5::Md5::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = from.read(&mut buf).map_err(|e| StoreError::io(src, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        m.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(|e| StoreError::io(dst, e))?;
        total += n as u64;
    }
    Ok((
        total,
        format!("{:032x}", h.digest128()),
        hex::encode(m.finalize()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_list_and_sweep() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = LocalStore::new("minio.default", dir.path().join("store"));
        let src = dir.path().join("src");
        std::fs::write(&src, b"abc").expect("w");
        let m = s.put_file("b/x/ü y.txt", &src).await.expect("put");
        assert_eq!((m.size, m.etag.len()), (3, 32));
        let back = dir.path().join("back");
        assert_eq!(s.get_file("b/x/ü y.txt", &back).await.expect("get").etag, m.etag);
        // A write cut short by a crash: listed never, swept once old enough.
        std::fs::write(dir.path().join("store/b/x/.fogd-tmp-123"), b"partial").expect("w");
        let keys: Vec<String> = s
            .list("b/")
            .await
            .expect("list")
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["b/x/ü y.txt"]);
        assert_eq!(
            s.sweep_temporary(std::time::Duration::from_secs(3600)),
            0,
            "too young"
        );
        assert_eq!(s.sweep_temporary(std::time::Duration::ZERO), 1);
        assert!(s.get_file("b/x/nope", &back).await.is_err());
    }
}
