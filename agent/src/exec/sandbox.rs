//! Local scripts are other people's code running on the node: each runs in its own mount and
//! PID namespace (bubblewrap, `bwrap`), where the data folder is an empty tmpfs but for what
//! the invocation owns: its work folder, its mounted bucket folder, the vision socket. The
//! journal (every service's secrets and tokens), the admin's S3 keys and password, the other
//! invocations' folders and the raw spool are not there to read; other processes (and their
//! environments, which hold their services' secrets) are not in its /proc. The rest of the host
//! is as before (PATH, network, devices), so OSCAR scripts run unchanged.
//!
//! Why namespaces and not a uid of its own: fogd runs as the unprivileged `fogd` user, which
//! cannot switch uids; unprivileged user namespaces (what bwrap uses there) can, on every kernel
//! Debian and Raspberry Pi OS ship. A uid alone would also leave the store's buckets readable
//! to every script. Where no namespace can be made (bwrap missing, namespaces forbidden),
//! `isolation: auto` runs scripts as before and says so at start and in `fogd check`;
//! `isolation: namespaces` refuses to run them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use crate::config::Isolation;

/// The sandbox command, once found to work on this host.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
}

/// What `resolve` found, for `fogd check` and the start-up log.
pub fn probe() -> Result<Sandbox, String> {
    static FOUND: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let bwrap =
                find_on_path("bwrap").ok_or_else(|| "bwrap (bubblewrap) is not installed".to_string())?;
            let out = std::process::Command::new(&bwrap)
                .args(base_args())
                .args(["--", "/bin/true"])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| format!("{}: {e}", bwrap.display()))?;
            if out.status.success() {
                Ok(Sandbox { bwrap })
            } else {
                Err(format!(
                    "{} cannot make namespaces here: {}",
                    bwrap.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        })
        .clone()
}

/// The sandbox to run local scripts in under `mode`: None runs them unconfined.
pub fn resolve(mode: Isolation) -> Result<Option<Sandbox>, String> {
    match mode {
        Isolation::None => Ok(None),
        Isolation::Auto => Ok(probe().ok()),
        Isolation::Namespaces => probe().map(Some).map_err(|e| {
            format!("isolation: namespaces, but {e} (install bubblewrap, or allow user namespaces)")
        }),
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn base_args() -> Vec<&'static str> {
    vec![
        "--bind",
        "/",
        "/",
        "--dev-bind",
        "/dev",
        "/dev",
        "--unshare-pid",
        "--unshare-ipc",
        "--proc",
        "/proc",
    ]
}

/// What one script may see of the data folder.
pub struct Confinement<'a> {
    pub data_dir: &'a Path,
    /// Read-write: the invocation's folder, the mounted bucket folder.
    pub rw: Vec<&'a Path>,
    /// Read-only: the script file, the vision socket.
    pub ro: Vec<&'a Path>,
}

impl Sandbox {
    /// `bwrap <args> -- <argv>`: the command that runs `argv` confined.
    pub fn command(&self, c: &Confinement<'_>, argv: &[&std::ffi::OsStr]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bwrap);
        cmd.args(base_args());
        // The data folder hidden whole, then what this invocation owns put back in it.
        let data = absolute(c.data_dir);
        cmd.arg("--tmpfs").arg(&data);
        for p in &c.rw {
            let p = absolute(p);
            if p.starts_with(&data) {
                cmd.arg("--bind").arg(&p).arg(&p);
            }
        }
        for p in &c.ro {
            let p = absolute(p);
            if p.starts_with(&data) && p.exists() {
                cmd.arg("--ro-bind").arg(&p).arg(&p);
            }
        }
        cmd.arg("--").args(argv);
        cmd
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
}
