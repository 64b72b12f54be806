//! The kernel's fence around one request of the daemon's vision worker (Landlock). `confine`
//! checks each path a request names, but a script can swap a checked path for a link before the
//! worker opens it; the fence makes the kernel refuse, on the thread that serves the request and
//! any thread it starts, every file read or write outside the invocation's folders, and every
//! read outside the ledger, the models and a short list of system files (`SYSTEM_READ`). No
//! folder that holds the node's data is opened up; the ledger is written by the worker's own
//! thread after the request (`crate::ledger`).
//!
//! Not fenced: directory listings and execution (a name is not a picture; the worker runs no
//! program), a swap between two files of the invocation's own folders (the receipts check what
//! was made from what). Threads that ONNX Runtime or OpenCV start during a request keep that
//! request's fence; they do no file I/O. On a kernel without Landlock the request runs with
//! `confine`'s checks only, and the worker says so at its start.

use std::path::{Path, PathBuf};

use landlock::{
    make_bitflags, Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};

/// The newest rights fogd asks for; older kernels get what they have (best effort).
const ABI_USED: ABI = ABI::V3;

/// What of the system a request may read: the libraries, and the few files the C++ runtimes
/// read for the CPU's layout and the time. Not /etc as a whole (fogd's own configuration, with
/// its store keys, may be there), nor /proc beyond these (a process's environment is).
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/stat",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/dev/null",
    "/dev/urandom",
];

fn fenced() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI_USED) & !make_bitflags!(AccessFs::{ReadDir | Execute})
}

/// Where a request may read, besides its invocation's folders (where it may also write).
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// The worker's ledger: a picture's entry is read.
    pub ledger: Option<PathBuf>,
    /// The models' folders, the ONNX Runtime library's, `SYSTEM_READ`: none holding the data.
    pub read: Vec<PathBuf>,
    /// The kernel enforces Landlock (seen once, at the worker's start: a container's seccomp
    /// filter may refuse its calls outright).
    pub kernel: bool,
}

impl Fence {
    /// The folders of a worker serving the node at `ledger` (whose parent is the node's data).
    pub fn for_worker(ledger: Option<&Path>) -> Fence {
        let data = ledger
            .and_then(Path::parent)
            .and_then(|d| std::fs::canonicalize(d).ok());
        let ort = crate::engine::onnxruntime_path().and_then(|p| p.parent().map(Path::to_path_buf));
        // Absolute folders only (a relative one names wherever the worker started), as they
        // really are, and none that holds the node's data.
        let read = crate::models::search_path(None)
            .into_iter()
            .chain(ort)
            .chain(SYSTEM_READ.iter().map(PathBuf::from))
            .filter(|d| d.is_absolute())
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .filter(|d| data.as_deref().is_none_or(|data| !data.starts_with(d)))
            .collect();
        Fence {
            ledger: ledger.map(Path::to_path_buf),
            read,
            kernel: available(),
        }
    }

    /// Fences the calling thread (and the threads it starts) to `rw` (all rights) and this
    /// fence's folders (read). Irreversible: call it on a thread made for one request. Whether
    /// the kernel enforced it (fully, partly, not at all) comes back.
    pub fn enter(&self, rw: &[PathBuf]) -> Result<RulesetStatus, landlock::RulesetError> {
        if !self.kernel {
            return Ok(RulesetStatus::NotEnforced);
        }
        let all = fenced();
        let read: BitFlags<AccessFs> = AccessFs::ReadFile.into();
        let mut rules: Vec<(&PathBuf, BitFlags<AccessFs>)> = rw.iter().map(|p| (p, all)).collect();
        rules.extend(self.ledger.iter().chain(&self.read).map(|p| (p, read)));
        let mut set = Ruleset::default().handle_access(all)?.create()?;
        for (path, access) in rules {
            // A folder that is not there (no models beside the binary) gives nothing to allow.
            if let Ok(fd) = PathFd::new(path) {
                set = set.add_rule(PathBeneath::new(fd, access & all))?;
            }
        }
        Ok(set.restrict_self()?.ruleset)
    }
}

/// Whether this kernel enforces Landlock at all (for the worker's one line at its start).
pub fn available() -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            Ruleset::default()
                .handle_access(AccessFs::ReadFile)
                .and_then(|r| r.create())
                .and_then(|r| r.restrict_self())
                .is_ok_and(|st| st.ruleset != RulesetStatus::NotEnforced)
        })
        .join()
        .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link swapped in after a check, and a path outside outright: the kernel refuses both
    /// reads and writes on the fenced thread, and the invocation's own files stay usable.
    #[test]
    fn a_fenced_thread_reaches_only_its_folders() {
        if !available() {
            eprintln!("no Landlock on this kernel: nothing to check");
            return;
        }
        let tmp = std::env::temp_dir().join(format!("fogd-fence-{}", std::process::id()));
        let (own, data) = (tmp.join("work"), tmp.join("data"));
        std::fs::create_dir_all(&own).expect("dir");
        std::fs::create_dir_all(data.join("vision-ledger")).expect("dir");
        std::fs::write(data.join("secret.jpg"), b"raw").expect("write");
        std::fs::write(own.join("in.jpg"), b"mine").expect("write");
        std::os::unix::fs::symlink(data.join("secret.jpg"), own.join("swapped.jpg")).expect("link");
        std::os::unix::fs::symlink(&data, own.join("out")).expect("link");
        let fence = Fence::for_worker(Some(&data.join("vision-ledger")));
        assert!(fence.kernel);
        let own_c = std::fs::canonicalize(&own).expect("canon");
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                fence.enter(std::slice::from_ref(&own_c)).expect("fence");
                (
                    std::fs::read(own.join("in.jpg")).ok(),
                    std::fs::read(own.join("swapped.jpg")).map_err(|e| e.kind()),
                    std::fs::read(data.join("secret.jpg")).map_err(|e| e.kind()),
                    std::fs::write(own.join("out/planted.jpg"), b"x").map_err(|e| e.kind()),
                    std::fs::write(own.join("made.jpg"), b"x").is_ok(),
                    std::fs::write(data.join("vision-ledger/e.json"), b"{}").map_err(|e| e.kind()),
                    std::fs::read("/etc/passwd").map_err(|e| e.kind()),
                )
            })
            .join()
            .expect("thread")
        });
        let denied = Err(std::io::ErrorKind::PermissionDenied);
        assert_eq!(outcome.0.as_deref(), Some(&b"mine"[..]));
        assert!(outcome.4, "{outcome:?}");
        assert_eq!(
            outcome.5, denied,
            "the ledger is written by the worker's own thread only"
        );
        assert_eq!(outcome.6.map(|_| ()), denied, "/etc is not open as a whole");
        assert_eq!(outcome.1.map(|_| ()), denied);
        assert_eq!(outcome.2.map(|_| ()), denied);
        assert_eq!(outcome.3, denied);
        assert!(!data.join("planted.jpg").exists());
        // The thread that made the fence is the only one fenced.
        assert_eq!(std::fs::read(data.join("secret.jpg")).expect("read"), b"raw");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
