//! The daemon's vision worker (`fogd-vision vision-serve`): runs the scripts' `fogd anonymize`
//! and `fogd detect-masks` with the models kept loaded, and what the commands share with it (the
//! model cache, where output goes).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::commands::anonymize_with;
use super::masks::detect_masks_with;
use super::privacy::Env;
use crate::masks::MaskClassifier;
use crate::{Anonymizer, Detector};

/// Models kept loaded between requests of `fogd-vision serve`, keyed by the options they were
/// made with (a workflow calls with the same arguments every time).
#[derive(Default)]
pub struct Warm {
    pub(super) anonymizers: Vec<(String, Anonymizer)>,
    pub(super) detectors: Vec<(String, (Detector, MaskClassifier))>,
    /// The worker's ledger of what it wrote (none when a command runs by itself).
    pub(super) ledger: Option<PathBuf>,
    /// What a request's thread may reach besides its invocation's folders.
    fence: super::fence::Fence,
}

/// Few option sets are in use at once; more would only hold memory.
const WARM_MAX: usize = 4;

pub(super) fn cached<T>(
    list: &mut Vec<(String, T)>,
    key: String,
    make: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<&T> {
    let i = match list.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            if list.len() >= WARM_MAX {
                list.remove(0);
            }
            list.push((key, make()?));
            list.len() - 1
        }
    };
    Ok(&list[i].1)
}

/// Where a command's output goes: the terminal, or the reply of `fogd-vision serve`.
pub struct Out<'w> {
    pub out: &'w mut dyn std::io::Write,
    pub err: &'w mut dyn std::io::Write,
    /// A progress bar is drawn only on a terminal, never into a reply.
    pub terminal: bool,
}

pub use fogd_vision_proto::worker::{Reply, Request};

/// `fogd-vision serve --socket PATH`: the daemon's vision worker. Runs `anonymize` and
/// `detect-masks` requests one at a time (inference uses every core already) with the models
/// kept loaded between them.
pub fn serve(socket: &Path, ledger: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    // Loaded before any request is fenced (the library's folder stays readable all the same).
    let _ = crate::engine::onnxruntime();
    let fence = super::fence::Fence::for_worker(ledger.as_deref());
    if !fence.kernel {
        tracing::warn!(
            "no Landlock here (kernel or container): the vision worker checks each path a request names, but a link a script swaps in after the check is not refused by the kernel"
        );
    }
    tracing::info!(socket = %socket.display(), landlock = fence.kernel, "vision worker ready");
    let mut warm = Warm {
        fence,
        ledger,
        ..Warm::default()
    };
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = serve_one(c, &mut warm) {
                    tracing::warn!(error = %e, "vision request failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "vision worker: accept"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn serve_one(conn: std::os::unix::net::UnixStream, warm: &mut Warm) -> anyhow::Result<()> {
    // One client that stalls, trickles or sends without end must not hold every script's
    // anonymisation: 10 s and 1 MiB for the whole request.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut raw = Vec::new();
    let mut r = std::io::Read::take(&conn, 1 << 20);
    let mut buf = [0u8; 8192];
    while !raw.contains(&b'\n') {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        anyhow::ensure!(!left.is_zero(), "request: not sent whole in 10 s");
        conn.set_read_timeout(Some(left))?;
        let n = std::io::Read::read(&mut r, &mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8(raw).context("request: not UTF-8")?;
    let req: Request = serde_json::from_str(&line).context("request")?;
    // Only the variables a request may carry: the worker's own environment is not the script's.
    let mut env = Request::env_from(|k| req.env.get(k).cloned());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ran = (|| -> anyhow::Result<ExitCode> {
        // Requests run one at a time, so the process's folder can follow each one.
        std::env::set_current_dir(&req.cwd).with_context(|| req.cwd.display().to_string())?;
        let cli = match <super::Cli as clap::Parser>::try_parse_from(&req.argv) {
            Ok(cli) => cli,
            Err(e) => {
                write!(err, "{e}")?;
                return Ok(ExitCode::from(2));
            }
        };
        // The folder the worker is now in, as it really is: the request's path to it could lead
        // elsewhere by the time it is read again.
        let cwd = std::env::current_dir()?;
        let confined = confine(&cli.command, &cwd, warm.ledger.as_deref(), &env)?;
        // The node's privacy settings for the invocation, not the script's.
        if let Some((g, _)) = &confined {
            g.apply(&mut env);
        }
        let grant = confined.is_some();
        let fence = warm.fence.clone();
        if grant {
            crate::ledger::hold();
        }
        // A thread of its own, fenced by the kernel to the invocation's folders (irreversibly:
        // the next request gets a new one); a panic there fails the request, not the worker.
        // The main thread's stack size: decoders and models recurse deeper than 2 MiB allow.
        let ran = std::thread::scope(|s| {
            let run = std::thread::Builder::new()
                .stack_size(8 << 20)
                .spawn_scoped(s, || {
                    if let Some((_, roots)) = &confined {
                        let status = fence
                            .enter(roots)
                            .context("fencing the request to its invocation's folders")?;
                        if fence.kernel && status != landlock::RulesetStatus::FullyEnforced {
                            tracing::warn!(
                                ?status,
                                "the request's fence is only partly enforced by this kernel"
                            );
                        }
                    }
                    let mut o = Out {
                        out: &mut out,
                        err: &mut err,
                        terminal: false,
                    };
                    match cli.command {
                        super::Command::Anonymize(mut a) => {
                            // Flags too: the node's zones and audit rate hold.
                            if grant {
                                a.audit_every = None;
                                a.zones = None;
                            }
                            anonymize_with(&a, warm, &mut o, &env)
                        }
                        super::Command::DetectMasks(a) => detect_masks_with(&a, warm, &mut o, &env),
                        _ => anyhow::bail!("the vision worker runs anonymize and detect-masks"),
                    }
                })?;
            run.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the request failed (a panic in the worker)")))
        });
        // Written here, unfenced, before the reply: the script's next step may need them.
        crate::ledger::release();
        ran
    })();
    let code = match ran {
        Ok(c) if c == ExitCode::SUCCESS => 0,
        Ok(c) if c == ExitCode::from(2) => 2,
        Ok(_) => 1,
        Err(e) => {
            writeln!(err, "fogd: {e:#}")?;
            2
        }
    };
    tracing::info!(
        command = req.argv.get(1).map(String::as_str).unwrap_or(""),
        code,
        "vision request served"
    );
    let reply = Reply {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    };
    serde_json::to_writer(&conn, &reply)?;
    Ok(())
}

/// In the daemon's worker, a request comes from an invocation (its `grant` token) and touches no
/// file outside that invocation's folders (its work folder, its mount), and reads no URL: the
/// worker runs outside the scripts' sandbox, with the node's rights, and a script must not reach
/// raw items, snapshots, the store, the ledger, another invocation's files or anything else on
/// the machine through it. (A path swapped for a link after this check is not caught here; the
/// node's receipts check what was made from what.) Returns the request's grant (None outside the
/// daemon).
fn confine(
    cmd: &super::Command,
    cwd: &Path,
    ledger: Option<&Path>,
    env: &Env,
) -> anyhow::Result<Option<(fogd_vision_proto::grant::Grant, Vec<PathBuf>)>> {
    let Some(data) = ledger.and_then(Path::parent) else {
        return Ok(None);
    };
    let token = env.get(fogd_vision_proto::grant::ENV_TOKEN).map(String::as_str);
    let grant = fogd_vision_proto::grant::read(data, token)?;
    // fogd wrote each folder as it really was when the invocation started: one that now leads
    // elsewhere (a folder of a mount replaced by a link, by another service's script) is not
    // taken, rather than followed.
    let mut roots = Vec::with_capacity(grant.roots.len());
    for r in &grant.roots {
        match std::fs::canonicalize(r) {
            Ok(real) if real == *r => roots.push(real),
            Ok(_) => anyhow::bail!(
                "{}: the invocation's folder no longer leads where it did when it started; the node's vision worker does not take it",
                r.display()
            ),
            Err(_) => {}
        }
    }
    let check = |p: &Path, what: &str| -> anyhow::Result<()> {
        if p.components().any(|c| c == std::path::Component::ParentDir) {
            anyhow::bail!(
                "{what} {}: `..` is not taken by the node's vision worker",
                p.display()
            );
        }
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        // Where the path really goes: its nearest existing part, links resolved.
        let real = abs
            .ancestors()
            .find_map(|a| std::fs::canonicalize(a).ok())
            .unwrap_or_default();
        if !roots.iter().any(|r| real.starts_with(r)) {
            anyhow::bail!(
                "{what} {}: outside the invocation's own folders; the node's vision worker takes only its files",
                p.display()
            );
        }
        Ok(())
    };
    // A file read must be a regular file where it leads (a FIFO would hold the worker, shared by
    // every invocation, forever).
    let check_read = |p: &Path, what: &str| -> anyhow::Result<()> {
        check(p, what)?;
        match std::fs::metadata(cwd.join(p)) {
            Ok(m) if !m.is_file() => anyhow::bail!("{what} {}: not a regular file", p.display()),
            _ => Ok(()),
        }
    };
    // Every file detect-masks may read beside an image: its sidecar, or a report's picture.
    let beside = |p: &Path| -> anyhow::Result<()> {
        check_read(p, "image")?;
        for ext in ["json", "jpg", "png", "jpeg"] {
            let sibling = p.with_extension(ext);
            if std::fs::symlink_metadata(cwd.join(&sibling)).is_ok() {
                check_read(&sibling, "file beside the image")?;
            }
        }
        Ok(())
    };
    match cmd {
        super::Command::Anonymize(a) => {
            for i in &a.inputs {
                if crate::media::is_stream_url(i) {
                    anyhow::bail!("{i}: the node's vision worker reads files only (a camera's stream is ingested by fogd)");
                }
                // libav reads `file:`, `concat:`, `subfile:` ... as protocols, not as the path
                // checked here.
                if !i.starts_with('/') && i.split('/').next().is_some_and(|first| first.contains(':')) {
                    anyhow::bail!(
                        "{i}: a protocol prefix is not taken by the node's vision worker (give a path)"
                    );
                }
                check_read(Path::new(i), "input")?;
            }
            check(&a.out, "--out")?;
            if let Some(z) = a.zones.as_deref().filter(|z| !z.trim_start().starts_with('{')) {
                check_read(Path::new(z), "--zones")?;
            }
            a.detect
                .models
                .as_deref()
                .map_or(Ok(()), |m| check(m, "--models"))?;
        }
        super::Command::DetectMasks(a) => {
            for i in &a.images {
                beside(i)?;
            }
            check(&a.out, "--out")?;
            a.detect
                .models
                .as_deref()
                .map_or(Ok(()), |m| check(m, "--models"))?;
        }
        _ => {}
    }
    Ok(Some((grant, roots)))
}
