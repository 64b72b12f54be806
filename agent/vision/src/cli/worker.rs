//! The daemon's vision worker (`fogd-vision vision-serve`): runs the scripts' `fogd anonymize`
//! and `fogd detect-masks` with the models kept loaded, and what the commands share with it (the
//! model cache, where output goes).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::commands::{anonymize_with, detect_masks_with};
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
    tracing::info!(socket = %socket.display(), "vision worker ready");
    let mut warm = Warm {
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
    use std::io::BufRead;
    // One client that stalls or sends without end must not hold every script's anonymisation.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = String::new();
    std::io::Read::take(std::io::BufReader::new(&conn), 1 << 20).read_line(&mut line)?;
    let req: Request = serde_json::from_str(&line).context("request")?;
    // Only the variables a request may carry: the worker's own environment is not the script's.
    let env = Request::env_from(|k| req.env.get(k).cloned());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = {
        let mut o = Out {
            out: &mut out,
            err: &mut err,
            terminal: false,
        };
        // Requests run one at a time, so the process's folder can follow each one.
        let ran = std::env::set_current_dir(&req.cwd)
            .with_context(|| req.cwd.display().to_string())
            .and_then(
                |()| match <super::Cli as clap::Parser>::try_parse_from(&req.argv) {
                    Ok(cli) => match cli.command {
                        super::Command::Anonymize(a) => anonymize_with(&a, warm, &mut o, &env),
                        super::Command::DetectMasks(a) => detect_masks_with(&a, warm, &mut o, &env),
                        _ => anyhow::bail!("the vision worker runs anonymize and detect-masks"),
                    },
                    Err(e) => {
                        write!(o.err, "{e}")?;
                        Ok(ExitCode::from(2))
                    }
                },
            );
        match ran {
            Ok(c) if c == ExitCode::SUCCESS => 0,
            Ok(c) if c == ExitCode::from(2) => 2,
            Ok(_) => 1,
            Err(e) => {
                writeln!(o.err, "fogd: {e:#}")?;
                2
            }
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
