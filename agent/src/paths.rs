//! The data folder's layout in one place: every path fogd keeps under `data_dir`, and the free
//! space of its filesystem; and where the `fogd-vision` binary is. Pure but for `statvfs` and
//! file checks.

use std::path::{Path, PathBuf};

/// `data_dir` and what lives in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// The journal (SQLite, WAL).
    pub fn journal(&self) -> PathBuf {
        self.0.join("journal.sqlite")
    }

    /// The embedded local store (`minio.default`): `store/<bucket>/<key>`.
    pub fn store(&self) -> PathBuf {
        self.0.join("store")
    }

    /// A key's file in the local store.
    pub fn store_object(&self, key: &str) -> PathBuf {
        self.store().join(key)
    }

    /// Where camera items land (`<ingest.path>` in the local store). Nothing under it may leave
    /// the node.
    pub fn raw_area(&self, ingest_path: &str) -> PathBuf {
        self.store().join(ingest_path.trim_end_matches('/'))
    }

    /// The node's recent log lines (this run), and the run's before it.
    pub fn node_log(&self) -> PathBuf {
        self.0.join("node.log")
    }

    pub fn node_log_previous(&self) -> PathBuf {
        self.0.join("node-previous.log")
    }

    /// The S3 endpoint's admin keys (access and secret, 0600).
    pub fn s3_keys(&self) -> PathBuf {
        self.0.join("s3-keys")
    }

    /// Multipart uploads in progress on the S3 endpoint, one folder each (outside the store:
    /// parts are not objects and trigger nothing).
    pub fn s3_uploads(&self) -> PathBuf {
        self.0.join("s3-uploads")
    }

    /// Invocations' work folders.
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }

    /// One invocation's work folder.
    pub fn work_of(&self, uuid: &str) -> PathBuf {
        self.work().join(uuid)
    }

    /// Space held back for the journal: released when the disk is full (so that the journal
    /// opens and records the end of what runs), made again once there is room.
    pub fn reserve(&self) -> PathBuf {
        self.0.join("reserve")
    }

    /// Is the reserve released (the disk was full)? Free space then counts without it.
    pub fn reserve_released(&self) -> bool {
        !self.reserve().exists()
    }

    /// Releases the reserve when fewer than `min_free` bytes are free. Returns the bytes given.
    pub fn release_reserve_if_full(&self, min_free: u64) -> u64 {
        let p = self.reserve();
        let Ok(m) = std::fs::metadata(&p) else { return 0 };
        if self.free_bytes().is_some_and(|f| f < min_free) && std::fs::remove_file(&p).is_ok() {
            return m.len();
        }
        0
    }

    /// Makes the reserve (real blocks, not a sparse file) when it is missing and the space is
    /// there beyond `min_free`. Returns whether it was made now.
    pub fn make_reserve(&self, min_free: u64) -> bool {
        use std::io::Write;
        let p = self.reserve();
        if p.exists() || self.free_bytes().is_none_or(|f| f < min_free + 2 * RESERVE_BYTES) {
            return false;
        }
        let tmp = self.0.join("reserve.tmp");
        let made = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            let block = vec![0u8; 1 << 20];
            for _ in 0..RESERVE_BYTES >> 20 {
                f.write_all(&block)?;
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &p)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        made.is_ok()
    }

    /// Raw items given up on (their anonymisation kept failing): out of every workflow's reach.
    pub fn quarantine(&self) -> PathBuf {
        self.0.join("quarantine")
    }

    /// A camera's latest anonymised frame (`camera` is a checked camera name: one safe segment).
    pub fn snapshot(&self, camera: &str) -> PathBuf {
        self.0.join("snapshots").join(format!("{camera}.jpg"))
    }

    /// One invocation's log (stdout and stderr).
    pub fn log(&self, service: &str, uuid: &str) -> PathBuf {
        self.logs().join(service).join(format!("{uuid}.log"))
    }

    /// Files spooled for the next tier.
    pub fn outbox(&self) -> PathBuf {
        self.0.join("outbox")
    }

    /// The vision worker's socket.
    pub fn vision_socket(&self) -> PathBuf {
        self.0.join("vision.sock")
    }

    /// What the vision worker wrote (`fogd_vision_proto::ledger`): receipts are signed from it.
    pub fn vision_ledger(&self) -> PathBuf {
        self.0.join("vision-ledger")
    }

    /// Outputs with their receipt stamped, stored from here (not from the script's folder).
    pub fn stamped(&self) -> PathBuf {
        self.0.join("stamped")
    }

    /// The key that signs the kube executor's per-job tokens.
    pub fn kube_token_key(&self) -> PathBuf {
        self.0.join("kube-token-key")
    }

    /// A temporary file for an upload being received (removed once stored).
    pub fn upload_tmp(&self, tag: &str) -> PathBuf {
        self.0.join(format!("upload-{tag}.tmp"))
    }

    /// Free bytes for unprivileged users on the data folder's filesystem.
    pub fn free_bytes(&self) -> Option<u64> {
        free_bytes(&self.0)
    }

    /// Free bytes for work: a released reserve's space is the journal's, not a script's.
    pub fn free_for_work(&self) -> Option<u64> {
        let held = if self.reserve_released() { RESERVE_BYTES } else { 0 };
        self.free_bytes().map(|f| f.saturating_sub(held))
    }

    /// Free bytes and free inodes (where counted), from one `statvfs`.
    pub fn free_space(&self) -> Option<(u64, Option<u64>)> {
        free_space(&self.0)
    }

    /// The per-invocation logs, a folder per service.
    pub fn logs(&self) -> PathBuf {
        self.0.join("logs")
    }
}

/// The journal's reserve: room for its WAL and shared memory and many commits.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// Makes `dir` (and its parents) and keeps it to the node's user (0700).
pub fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Creates (or truncates) `path` readable by this user only (0600), writes `bytes` and makes them
/// durable. Callers write a temporary name and then rename or link it into place.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Free bytes for unprivileged users on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    free_space(path).map(|(bytes, _)| bytes)
}

/// Free inodes for unprivileged users on `path`'s filesystem (every file takes one: a folder of
/// small logs can run out of inodes with gigabytes free). None where the filesystem does not
/// count them (btrfs says 0 in all).
pub fn free_inodes(path: &Path) -> Option<u64> {
    free_space(path).and_then(|(_, inodes)| inodes)
}

/// (free bytes, free inodes when counted), for unprivileged users.
fn free_space(path: &Path) -> Option<(u64, Option<u64>)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by statvfs before use.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32 bits on armhf).
    #[allow(clippy::unnecessary_cast)]
    let (files, favail, bavail, frsize) = (
        st.f_files as u64,
        st.f_favail as u64,
        st.f_bavail as u64,
        st.f_frsize as u64,
    );
    Some((bavail * frsize, (files > 0).then_some(favail)))
}

/// The error a full disk (or a used-up quota) gives.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// The `fogd-vision` binary: FOGD_VISION_BIN, else next to this one (installed side by side,
/// or a build's `target/<profile>/`, which is also the folder above a test binary's `deps/`).
pub fn vision_binary() -> Option<PathBuf> {
    use fogd_vision_proto::builtin;
    if let Some(p) = std::env::var_os(builtin::ENV_BIN) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    builtin::binary_beside(&std::env::current_exe().ok()?)
}

/// Reads a file without following a link in its last component (a script's leftover process
/// could swap an output for a link to something else), up to `max` bytes.
pub fn read_no_follow(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking open: a FIFO put where a file was would otherwise hold the thread for good.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("over {max} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_no_follow_takes_a_small_regular_file_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        std::fs::write(d.join("f"), b"12345").expect("w");
        assert_eq!(read_no_follow(&d.join("f"), 5).expect("read"), b"12345");
        assert!(read_no_follow(&d.join("f"), 4).is_err(), "over its bound");
        std::os::unix::fs::symlink(d.join("f"), d.join("link")).expect("link");
        assert!(
            read_no_follow(&d.join("link"), 5).is_err(),
            "a link is not followed"
        );
        let fifo = std::ffi::CString::new(d.join("fifo").display().to_string()).expect("c");
        // SAFETY: mkfifo(3) on a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        // Returns at once (no writer would ever come): refused, not waited on.
        assert!(read_no_follow(&d.join("fifo"), 5).is_err());
        assert!(read_no_follow(&d.join("..").join("nowhere-at-all"), 5).is_err());
    }

    #[test]
    fn every_path_is_under_the_root() {
        let d = DataDir::new("/var/lib/fogd");
        for p in [
            d.journal(),
            d.store_object("b/k.jpg"),
            d.raw_area("cameras/incoming/"),
            d.work_of("u"),
            d.log("svc", "u"),
            d.outbox(),
            d.vision_socket(),
            d.kube_token_key(),
            d.upload_tmp("x"),
        ] {
            assert!(p.starts_with("/var/lib/fogd"), "{}", p.display());
        }
        assert_eq!(
            d.raw_area("cameras/incoming/"),
            Path::new("/var/lib/fogd/store/cameras/incoming")
        );
        assert!(free_bytes(Path::new("/")).is_some());
    }
}
