//! Runs a script as a local process: `/bin/sh script.sh` (the shebang is ignored, as in OSCAR),
//! in its own process group, with a timeout, its stdout and stderr captured up to a cap.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::fdl::Script;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the script of this service was not resolved (loaded with --schema-only?)")]
    NoScript,
    #[error("cannot start /bin/sh: {0}")]
    Spawn(std::io::Error),
    #[error("local scripts cannot be confined: {0}")]
    Sandbox(String),
    #[error("output `{rel}` is {size} bytes, over max_output_bytes ({max}); nothing of this run was stored")]
    OutputTooLarge { rel: String, size: u64, max: u64 },
}

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExecError + '_ {
    move |source| ExecError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct ScriptSpec<'a> {
    pub script: Option<&'a Script>,
    /// The invocation's folder (cwd).
    pub dir: &'a Path,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub log_path: &'a Path,
    pub log_cap: u64,
    /// What the run may take of the disk while it runs.
    pub budget: DiskBudget,
    /// The namespace sandbox it runs in (None: unconfined), and what of the data folder it
    /// sees besides its own folder (the mounted bucket, the vision socket).
    pub sandbox: Option<&'a super::sandbox::Sandbox>,
    pub shared: Vec<PathBuf>,
}

/// Checked every second while a script runs: one script must not fill the disk under the
/// journal (whose commits then fail and wedge the node).
#[derive(Debug, Clone)]
pub struct DiskBudget {
    /// The invocation's folder (input, outputs, whatever it writes there) at most.
    pub max_work_bytes: u64,
    /// The data folder, whose free space must stay at least `min_free_bytes`.
    pub data_dir: PathBuf,
    pub min_free_bytes: u64,
}

use super::executor::{Overrun, ScriptStatus};

impl DiskBudget {
    /// Returns once the running script went over the budget.
    async fn overrun(&self, dir: &Path) -> Overrun {
        // Free space is one statvfs: looked at ten times a second, so a writer as fast as `dd`
        // on the disk is caught early; the folder's size (a walk) once a second.
        let mut tick = 0u32;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.disk_low() {
                return Overrun::Disk;
            }
            tick += 1;
            if !tick.is_multiple_of(10) {
                continue;
            }
            let d = dir.to_path_buf();
            let used = tokio::task::spawn_blocking(move || dir_bytes(&d))
                .await
                .unwrap_or(0);
            if used > self.max_work_bytes {
                return Overrun::WorkFolder;
            }
        }
    }

    /// Is the data folder under the free space that running scripts must leave?
    fn disk_low(&self) -> bool {
        crate::paths::DataDir::new(self.data_dir.clone())
            .free_for_work()
            .is_some_and(|f| f < self.min_free_bytes)
    }
}

/// Bytes of the files under `dir` (links not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

/// Variables of fogd's own environment that a script may see; everything else (fogd's secrets)
/// stays out.
const PASSED_THROUGH: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "FOGD_MODELS"];

/// Runs the script; returns how it ended and when its process started (µs since the epoch).
/// Kills every process whose working folder is `dir` or below: what is left of an earlier run of
/// the same invocation when fogd was killed (its scripts outlive it). A rerun must not share its
/// folder with them. Returns how many.
pub fn kill_leftovers(dir: &Path) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let in_dir = std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        // SAFETY: kill(2) on a pid; no memory is touched.
        if in_dir && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            killed += 1;
        }
    }
    killed
}

/// The script as a file: its own, or its text written into the invocation's folder.
pub async fn script_file(script: Option<&Script>, dir: &Path) -> Result<PathBuf, ExecError> {
    match script {
        Some(Script::File(p)) => Ok(p.clone()),
        Some(Script::Inline(text)) => {
            let p = dir.join("script.sh");
            tokio::fs::write(&p, text).await.map_err(io(&p))?;
            Ok(p)
        }
        Some(Script::Unchecked(_)) | None => Err(ExecError::NoScript),
    }
}

pub async fn run_script(spec: ScriptSpec<'_>) -> Result<(ScriptStatus, i64), ExecError> {
    let script_path = script_file(spec.script, spec.dir).await?;
    // No file the script writes may grow past max_work_bytes (RLIMIT_FSIZE, set by the shell
    // that then reads the script: no pre_exec hook, so the spawn stays a posix_spawn); the
    // watcher below bounds the folder as a whole. (`ulimit -f` counts 512-byte blocks in
    // dash, Debian's and Raspberry Pi OS's /bin/sh.)
    // Past a tebibyte (or u64::MAX, "no limit") the shell is told `unlimited`: dash parses the
    // count into a signed long, and a huge one would wrap into a tiny limit.
    let blocks = match spec.budget.max_work_bytes {
        b if b >= 1 << 40 => "unlimited".to_string(),
        b => (b / 512).max(1).to_string(),
    };
    let limited: Vec<std::ffi::OsString> = vec![
        // One shell, as `/bin/sh script` runs it ($0 the script, no arguments): it sets the
        // limit, then reads the script itself. A second exec of /bin/sh was a tenth of a
        // trivial invocation's cost (the loader's start; its cpuid calls trap under a VM).
        "-c".into(),
        "ulimit -f \"$1\" || exit 126; set --; . \"$0\"".into(),
        // Absolute: `.` searches PATH for a name without a slash.
        std::path::absolute(&script_path)
            .map_err(io(&script_path))?
            .into_os_string(),
        blocks.into(),
    ];
    let mut cmd = match spec.sandbox {
        Some(sb) => {
            let (rw, ro) = spec.shared.iter().partition::<Vec<_>, _>(|p| p.is_dir());
            let mut rw: Vec<&Path> = rw.into_iter().map(PathBuf::as_path).collect();
            rw.push(spec.dir);
            let mut ro: Vec<&Path> = ro.into_iter().map(PathBuf::as_path).collect();
            ro.push(&script_path);
            let c = super::sandbox::Confinement {
                data_dir: &spec.budget.data_dir,
                rw,
                ro,
            };
            let mut argv: Vec<&std::ffi::OsStr> = vec!["/bin/sh".as_ref()];
            argv.extend(limited.iter().map(|a| a.as_os_str()));
            sb.command(&c, &argv)
        }
        None => {
            let mut c = Command::new("/bin/sh");
            c.args(&limited);
            c
        }
    };
    cmd.current_dir(spec.dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // No pre_exec hook (a parent-death signal, say): it would force fork over posix_spawn and
    // halve the invocation rate. Scripts that outlive a killed fogd are found by
    // `kill_leftovers` before their invocation reruns.
    for k in PASSED_THROUGH {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let mut child = cmd.spawn().map_err(ExecError::Spawn)?;
    let spawned_us = crate::journal::now_us();
    let pgid = child.id().map(|p| p as i32);
    // Dropped before the script ends (the daemon's drain deadline passed): its whole group dies.
    let mut group = GroupKill(pgid);
    let (out, err) = (child.stdout.take(), child.stderr.take());
    let capture = super::scriptlog::capture(out, err, spec.log_path, spec.log_cap);
    let budget = spec.budget.clone();
    let waited = tokio::time::timeout(spec.timeout, async {
        let ended = async {
            let status = child.wait().await;
            // The script is the invocation's main process, as in OSCAR's pod: what it left
            // running in its group (`helper &`, `nohup helper &`) ends with it, and so closes
            // the output pipes it inherited (which would hold the slot until the timeout).
            kill_group(pgid);
            status
        };
        tokio::select! {
            done = async { tokio::join!(ended, capture) } => Ok(done),
            over = budget.overrun(spec.dir) => Err(over),
        }
    })
    .await;
    let status = match waited {
        Ok(Err(over)) => {
            kill_group(pgid);
            let _ = child.wait().await;
            // Its files go now: they are what filled the disk.
            clear_folder(spec.dir, spec.log_path).await;
            let why = match over {
                Overrun::WorkFolder => format!(
                    "its work folder went over max_work_bytes ({})",
                    spec.budget.max_work_bytes
                ),
                Overrun::Disk => format!(
                    "the data folder fell under {} bytes free",
                    spec.budget.min_free_bytes
                ),
            };
            // Best effort: the disk may be too full for the log's last line.
            let _ = super::scriptlog::append_note(
                spec.log_path,
                &format!("\n[fogd] killed while running: {why}\n"),
            )
            .await;
            ScriptStatus::OverBudget(over)
        }
        // It ended (a writer stopped by ENOSPC, say) leaving the disk under the line before
        // the watcher looked: its files go before anything is journalled, or the journal could
        // not record its end (and its log may not have taken its last lines: that is no error).
        Ok(Ok(_)) if spec.budget.disk_low() => {
            clear_folder(spec.dir, spec.log_path).await;
            let note = format!(
                "\n[fogd] ended with the data folder under {} bytes free: its files were removed\n",
                spec.budget.min_free_bytes
            );
            let _ = super::scriptlog::append_note(spec.log_path, &note).await;
            ScriptStatus::OverBudget(Overrun::Disk)
        }
        Ok(Ok((status, captured))) => {
            captured.map_err(io(spec.log_path))?;
            let status = status.map_err(io(&script_path))?;
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(c), _) => ScriptStatus::Exited(c),
                (None, Some(s)) => ScriptStatus::Signalled(s),
                (None, None) => ScriptStatus::Exited(-1),
            }
        }
        Err(_) => {
            // The whole group: a script's children must not outlive it.
            kill_group(pgid);
            let _ = child.wait().await;
            let note = format!("\n[fogd] killed after the timeout of {:?}\n", spec.timeout);
            super::scriptlog::append_note(spec.log_path, &note).await?;
            ScriptStatus::TimedOut
        }
    };
    group.0 = None;
    Ok((status, spawned_us))
}

/// Removes everything in the invocation's folder (what the script wrote, wherever in it), the
/// folder itself and the log (when it lies there) kept.
async fn clear_folder(dir: &Path, log: &Path) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(e)) = rd.next_entry().await {
        let p = e.path();
        if p == log {
            continue;
        }
        let _ = match e.file_type().await {
            Ok(t) if t.is_dir() => tokio::fs::remove_dir_all(&p).await,
            _ => tokio::fs::remove_file(&p).await,
        };
    }
}

/// Kills a process group when dropped, unless disarmed (`.0 = None`).
struct GroupKill(Option<i32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// SIGKILL to a script's process group (its pid: scripts lead their own group).
fn kill_group(pgid: Option<i32>) {
    if let Some(pg) = pgid.filter(|p| *p > 1) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
        unsafe {
            libc::kill(-pg, libc::SIGKILL);
        }
    }
}

/// Copies stdout and stderr into the log until `cap` bytes, then drains and counts the rest.
#[cfg(test)]
mod tests {
    use super::*;

    fn roomy(d: &Path) -> DiskBudget {
        DiskBudget {
            max_work_bytes: u64::MAX,
            data_dir: d.to_path_buf(),
            min_free_bytes: 0,
        }
    }

    /// A run of `script` in `d`, logging to `log`, with room and 20 s.
    fn spec<'a>(script: &'a Script, d: &'a Path, log: &'a Path) -> ScriptSpec<'a> {
        ScriptSpec {
            script: Some(script),
            dir: d,
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            timeout: Duration::from_secs(20),
            log_path: log,
            log_cap: 1 << 20,
            budget: roomy(d),
            sandbox: None,
            shared: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_script_that_writes_past_its_budget_is_killed_while_it_runs() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        std::fs::create_dir_all(d.join("output")).expect("out");
        // Writes forever (a MiB every 50 ms): only the budget stops it, long before the timeout.
        let script = Script::Inline(
            "i=0\nwhile :; do head -c 1048576 /dev/zero > output/f$i; i=$((i+1)); sleep 0.05; done\n".into(),
        );
        let log = d.join("log");
        let (status, _) = run_script(ScriptSpec {
            timeout: Duration::from_secs(60),
            budget: DiskBudget {
                max_work_bytes: 8 << 20,
                ..roomy(d)
            },
            ..spec(&script, d, &log)
        })
        .await
        .expect("run");
        assert_eq!(status, ScriptStatus::OverBudget(Overrun::WorkFolder));
        assert!(!d.join("output").exists(), "what filled the folder is gone");
        let log = std::fs::read_to_string(d.join("log")).expect("log");
        assert!(log.contains("max_work_bytes"), "{log}");
    }

    #[tokio::test]
    async fn a_script_runs_as_sh_runs_it_its_path_in_0_no_arguments_its_status_kept() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let script = Script::Inline("echo \"$0 $#\"\nexit 3\n".into());
        let log = d.join("log");
        let (status, _) = run_script(spec(&script, d, &log)).await.expect("run");
        assert_eq!(status, ScriptStatus::Exited(3));
        let log = std::fs::read_to_string(d.join("log")).expect("log");
        assert_eq!(log, format!("{} 0\n", d.join("script.sh").display()));
    }

    #[tokio::test]
    async fn a_script_file_whose_path_has_spaces_quotes_and_dollars_runs_as_itself() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let odd = d.join("a b $HOME 'q\"").join("run me.sh");
        std::fs::create_dir_all(odd.parent().expect("parent")).expect("mkdir");
        std::fs::write(&odd, "echo \"$0\"\n").expect("w");
        let script = Script::File(odd.clone());
        let log = d.join("log");
        let (status, _) = run_script(spec(&script, d, &log)).await.expect("run");
        assert_eq!(status, ScriptStatus::Exited(0));
        assert_eq!(
            std::fs::read_to_string(&log).expect("log"),
            format!("{}\n", odd.display())
        );
    }

    fn alive(pid: &str) -> bool {
        // A killed child of the script may linger as a zombie until its new parent reaps it.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
            !st.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn what_a_script_leaves_running_ends_with_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        // One helper holds the inherited stdout, one is nohup'ed with its output elsewhere.
        let script = Script::Inline(
            "sleep 30 & echo $! > bg.pid\nnohup sleep 30 > /dev/null 2>&1 &\necho $! > nohup.pid\necho done\n".into(),
        );
        let started = std::time::Instant::now();
        // In the namespace sandbox where this host has one: what is left ends there too.
        let sandbox = crate::exec::sandbox::probe().ok();
        let log = d.join("log");
        let (status, _) = run_script(ScriptSpec {
            sandbox: sandbox.as_ref(),
            ..spec(&script, d, &log)
        })
        .await
        .expect("run");
        assert_eq!(
            status,
            ScriptStatus::Exited(0),
            "ended with its script, not timed out"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(std::fs::read_to_string(d.join("log")).expect("log"), "done\n");
        std::thread::sleep(Duration::from_millis(200));
        // Pids written inside the sandbox are its own namespace's: the host's view is what
        // still runs in the folder.
        assert_eq!(
            kill_leftovers(d),
            0,
            "nothing still runs in the invocation's folder"
        );
        for f in ["bg.pid", "nohup.pid"] {
            let pid = std::fs::read_to_string(d.join(f)).expect("pid");
            assert!(
                sandbox.is_some() || !alive(pid.trim()),
                "{f}: {} still runs",
                pid.trim()
            );
        }
    }
}
