//! Calls podman: the image made present under the pull policy, the container started (or found,
//! after a restart), waited for, its end read (exit status, OOM kill, timeout), its log copied
//! into `fogd logs`, and removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{container_name, env_file, run_args, ContainerSpec, PodmanError};
use crate::config::{PodmanConfig, PullPolicy};
use crate::exec::ScriptStatus;
use crate::fdl::Service;

/// One invocation in a container.
pub struct PodmanRun<'a> {
    pub cfg: &'a PodmanConfig,
    pub svc: &'a Service,
    pub job: &'a str,
    pub node: &'a str,
    /// The invocation's folder: `input/`, `output/`, and the script and env file fogd writes.
    pub dir: &'a Path,
    pub script: &'a Path,
    pub env: Vec<(String, String)>,
    pub mount: Option<(PathBuf, String)>,
    pub timeout: Duration,
    pub log_path: &'a Path,
    pub log_cap: u64,
    /// A rerun after a restart whose container exists (the caller looked): it is followed.
    pub adopt: bool,
}

/// What podman printed, or why it could not be run.
pub(super) async fn podman(cfg: &PodmanConfig, args: &[&str]) -> Result<std::process::Output, PodmanError> {
    Command::new(&cfg.binary)
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| PodmanError::Missing {
            binary: cfg.binary.clone(),
            source,
        })
}

/// `podman args` with `input` on its standard input (a secret's value: never on the command line).
pub(super) async fn podman_with_input(
    cfg: &PodmanConfig,
    args: &[&str],
    input: &[u8],
) -> Result<std::process::Output, PodmanError> {
    use tokio::io::AsyncWriteExt;
    let missing = |source| PodmanError::Missing {
        binary: cfg.binary.clone(),
        source,
    };
    let mut child = Command::new(&cfg.binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(missing)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await.map_err(missing)?;
    }
    child.wait_with_output().await.map_err(missing)
}

pub(super) fn failed(what: &str, out: &std::process::Output) -> PodmanError {
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    PodmanError::Command {
        what: what.to_string(),
        msg: if msg.is_empty() {
            format!("exited with {}", out.status)
        } else {
            msg
        },
    }
}

/// `fogd check`: podman's version, whether it runs rootless, and its OCI runtime.
pub async fn check(cfg: &PodmanConfig) -> Result<String, PodmanError> {
    let out = podman(
        cfg,
        &[
            "info",
            "--format",
            "{{.Version.Version}} {{.Host.Security.Rootless}} {{.Host.OCIRuntime.Name}}",
        ],
    )
    .await?;
    if !out.status.success() {
        return Err(failed("info", &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut it = text.split_whitespace();
    let (v, rootless, oci) = (
        it.next().unwrap_or("?"),
        it.next() == Some("true"),
        it.next().unwrap_or("?"),
    );
    let runtime = cfg.runtime.as_deref().unwrap_or(oci);
    Ok(format!(
        "podman {v}, {}, runtime {runtime}",
        if rootless {
            "rootless"
        } else {
            "rootful (fogd runs as root; as another user podman runs rootless)"
        }
    ))
}

/// Whether the container of `job` exists (a run that a killed fogd left behind).
pub async fn exists(cfg: &PodmanConfig, job: &str) -> bool {
    podman(cfg, &["container", "exists", &container_name(job)])
        .await
        .is_ok_and(|o| o.status.success())
}

/// The image on this node, pulled if the policy says so.
pub(super) async fn ensure_image(cfg: &PodmanConfig, image: &str) -> Result<(), PodmanError> {
    let present = || async {
        podman(cfg, &["image", "exists", image])
            .await
            .map(|o| o.status.success())
    };
    match cfg.image_pull_policy {
        PullPolicy::Never if present().await? => Ok(()),
        PullPolicy::Never => Err(PodmanError::ImageAbsent { image: image.into() }),
        PullPolicy::IfNotPresent if present().await? => Ok(()),
        PullPolicy::IfNotPresent | PullPolicy::Always => {
            tracing::info!(image, "pulling the image");
            let out = podman(cfg, &["pull", "--quiet", image]).await?;
            if out.status.success() {
                Ok(())
            } else {
                Err(PodmanError::PullFailed {
                    image: image.into(),
                    msg: failed("pull", &out).to_string(),
                })
            }
        }
    }
}

/// Writes the env file (0600: it holds the secrets, which must not show in `ps` as `--env` would).
pub(super) fn write_env(path: &Path, env: &[(String, String)]) -> Result<(), PodmanError> {
    crate::paths::write_private(path, env_file(env)?.as_bytes()).map_err(|source| PodmanError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// State of a container: (running, exit code, OOM-killed, seconds it ran).
async fn inspect(cfg: &PodmanConfig, name: &str) -> Result<(bool, i32, bool, i64), PodmanError> {
    let out = podman(
        cfg,
        &[
            "container",
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}} {{.State.StartedAt.Unix}} {{.State.FinishedAt.Unix}}",
            name,
        ],
    )
    .await?;
    if !out.status.success() {
        return Err(failed("inspect", &out));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
    Ok((
        f.first() == Some(&"true"),
        num(1) as i32,
        f.get(2) == Some(&"true"),
        num(4) - num(3),
    ))
}

/// Runs (or, after a restart, follows) the invocation's container to its end.
pub async fn run(r: PodmanRun<'_>) -> Result<(ScriptStatus, i64), PodmanError> {
    let name = container_name(r.job);
    let image = r.cfg.image_for(r.svc.image.as_deref().unwrap_or_default());
    if r.adopt {
        // Never doubled: the container of this invocation is followed to its end.
        tracing::warn!(job = r.job, container = %name, "the container exists already (fogd restarted while it ran): followed, not started again");
    } else {
        if r.cfg.image_pull_policy == PullPolicy::Always {
            ensure_image(r.cfg, &image).await?;
        }
        let env_path = r.dir.join("env");
        let mut env = r.env.clone();
        let secrets = super::owned::secrets(r.cfg, r.svc, &mut env).await?;
        super::owned::ensure_volume(r.cfg, r.svc).await?;
        write_env(&env_path, &env)?;
        let supervisor = supervisor(r.cfg)?;
        let args = run_args(&ContainerSpec {
            cfg: r.cfg,
            svc: r.svc,
            name: &name,
            node: r.node,
            job: Some(r.job),
            env_file: &env_path,
            secrets: &secrets,
            supervisor: &supervisor,
            script: Some(r.script),
            work: Some((&r.dir.join("input"), &r.dir.join("output"))),
            mount: r.mount.clone(),
            timeout: Some(r.timeout),
        });
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // The image is looked for only when podman misses it: one podman call on the way in.
        let mut out = podman(r.cfg, &args).await;
        let missing = |o: &std::process::Output| {
            let e = String::from_utf8_lossy(&o.stderr);
            !o.status.success() && (e.contains("image not known") || e.contains("no such image"))
        };
        if out.as_ref().is_ok_and(missing) {
            let _ = podman(r.cfg, &["rm", "--force", &name]).await;
            match ensure_image(r.cfg, &image).await {
                Ok(()) => out = podman(r.cfg, &args).await,
                Err(e) => {
                    let _ = std::fs::remove_file(&env_path);
                    return Err(e);
                }
            }
        }
        let _ = std::fs::remove_file(&env_path);
        let out = out?;
        if !out.status.success() {
            return Err(failed(&format!("run {image}"), &out));
        }
    }
    let spawned_us = crate::journal::now_us();
    let since = std::time::Instant::now();
    // One second over conmon's `--timeout`: the limit is conmon's, this wait only backs it up.
    let waited = tokio::time::timeout(
        r.timeout + Duration::from_secs(1),
        podman(r.cfg, &["wait", "--interval=100ms", &name]),
    )
    .await;
    let mut logged = false;
    let status = match waited {
        Err(_) => ScriptStatus::TimedOut,
        Ok(w) => {
            w?;
            let (state, copied) = tokio::join!(
                inspect(r.cfg, &name),
                copy_log(r.cfg, &name, r.log_path, r.log_cap)
            );
            logged = copied.map(|()| true)?;
            let (running, code, oom, ran_s) = state?;
            // Killed by conmon at `--timeout`: podman reports -1 (no script exits so), or 137
            // with how long it ran (its own times when it was adopted after a restart; conmon
            // counts from before the container's start, so a second's slack).
            let limit = r.timeout.saturating_sub(Duration::from_secs(1));
            let over = since.elapsed() >= limit || ran_s >= limit.as_secs() as i64;
            match (running, code, oom) {
                (true, ..) => ScriptStatus::TimedOut,
                (_, _, true) => ScriptStatus::OutOfMemory,
                (_, -1, _) => ScriptStatus::TimedOut,
                (_, 137, _) if over => ScriptStatus::TimedOut,
                (_, c, _) if c > 128 && c < 160 => ScriptStatus::Signalled(c - 128),
                (_, c, _) => ScriptStatus::Exited(c),
            }
        }
    };
    if !logged {
        copy_log(r.cfg, &name, r.log_path, r.log_cap).await?;
    }
    // The supervisor says an OOM kill that the runtime did not see (conmon on hybrid cgroups).
    let status = match status {
        ScriptStatus::Exited(137) | ScriptStatus::Signalled(9) if said_oom(r.log_path).await => {
            ScriptStatus::OutOfMemory
        }
        s => s,
    };
    let note = match status {
        ScriptStatus::TimedOut => Some(format!("killed after the timeout of {:?}", r.timeout)),
        ScriptStatus::OutOfMemory => Some(format!(
            "killed by the kernel: over its memory limit of {} bytes",
            r.svc.memory_bytes.unwrap_or(0)
        )),
        _ => None,
    };
    if let Some(n) = note {
        crate::exec::scriptlog::append_note(r.log_path, &format!("\n[fogd] container {name} {n}\n"))
            .await
            .map_err(|e| PodmanError::Invalid(e.to_string()))?;
    }
    let out = podman(r.cfg, &["rm", "--force", "--time", "0", &name]).await?;
    if !out.status.success() {
        tracing::warn!(container = %name, error = %failed("rm", &out), "container not removed");
    }
    Ok((status, spawned_us))
}

async fn said_oom(log: &Path) -> bool {
    let text = tokio::fs::read(log).await.unwrap_or_default();
    let tail = &text[text.len().saturating_sub(4096)..];
    String::from_utf8_lossy(tail).contains(crate::exec::contract::OOM_NOTE)
}

/// The binary mounted as the supervisor: `podman.supervisor`, else this fogd (the `fogd` beside
/// this executable when a node runs inside another binary, `fogd-bench`).
pub(super) fn supervisor(cfg: &PodmanConfig) -> Result<PathBuf, PodmanError> {
    if let Some(p) = &cfg.supervisor {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().map_err(|source| PodmanError::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })?;
    let fogd = me.with_file_name("fogd");
    Ok(if me.file_name().is_some_and(|n| n != "fogd") && fogd.is_file() {
        fogd
    } else {
        me
    })
}

/// The container's log (stdout and stderr) into the invocation's log file, up to `cap` bytes.
async fn copy_log(cfg: &PodmanConfig, name: &str, log_path: &Path, cap: u64) -> Result<(), PodmanError> {
    let io = |source| PodmanError::Io {
        path: log_path.to_path_buf(),
        source,
    };
    let mut child = Command::new(&cfg.binary)
        .args(["logs", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| PodmanError::Missing {
            binary: cfg.binary.clone(),
            source,
        })?;
    let (out, err) = (child.stdout.take(), child.stderr.take());
    crate::exec::scriptlog::capture(out, err, log_path, cap)
        .await
        .map_err(io)?;
    let _ = child.wait().await;
    Ok(())
}
