//! `fogd bench streams`: what live cameras cost. The bench's camera-like 1080p25 clip is served
//! by a real RTSP server (GStreamer's gst-rtsp-server: `tests/rtsp/serve.py`), N cameras read it
//! at once for a while, one frame every `every`, first by `fogd-vision grab` (what `fogd run`
//! uses), then by the `ffmpeg -vf fps` pipe it replaced; each reader's CPU time over the wall
//! time is its share of one core. The frames' stream timestamps are checked against the times
//! asked for.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sample::SampleSpec;
use crate::{Result, VisionError};

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReaderRun {
    pub reader: String,
    pub cameras: usize,
    pub seconds: f64,
    /// CPU seconds over wall seconds, per camera (mean and worst), in % of one core.
    pub cpu_pct_mean: f64,
    pub cpu_pct_max: f64,
    /// Peak resident memory per reader process (largest), MB.
    pub peak_rss_mb: f64,
    /// Frames taken by each camera.
    pub frames: Vec<usize>,
    /// fogd-vision only: the largest gap between a frame's stream time and the time it stood for
    /// (the first frame at or after each multiple of `every`), in s.
    pub max_lateness_s: Option<f64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamsBench {
    pub clip: PathBuf,
    pub spec: SampleSpec,
    pub every_s: f64,
    pub keyframe_interval_s: f64,
    pub runs: Vec<ReaderRun>,
}

fn other(e: impl std::fmt::Display) -> VisionError {
    VisionError::Other(e.to_string())
}

/// The RTSP server of the tests, serving `clip` on a free loopback port; stopped when dropped.
struct Rtsp {
    child: Child,
    url: String,
}

impl Rtsp {
    fn start(clip: &Path) -> Result<Rtsp> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/rtsp/serve.py");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(other)?
            .port();
        // Debian's python3 has the GStreamer bindings (scripts/setup installs them).
        let mut child = Command::new("/usr/bin/python3")
            .arg(&script)
            .arg(port.to_string())
            .arg(clip)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| other(format!("{}: {e}", script.display())))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(other(
                "the RTSP server did not start (scripts/setup installs GStreamer's)",
            ));
        }
        Ok(Rtsp {
            child,
            url: format!("rtsp://127.0.0.1:{port}/cam"),
        })
    }
}

impl Drop for Rtsp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a live process, in seconds; and its peak RSS (MB).
fn usage(pid: u32) -> (f64, f64) {
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces), from its closing paren.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .unwrap_or(0.0);
    (cpu, super::peak_rss_mb_of(&pid.to_string()))
}

/// Frames in a JPEG stream, and the stream times fogd-vision's notes give.
fn count_frames(mut out: impl Read) -> (usize, Vec<f64>) {
    let mut all = Vec::new();
    let _ = out.read_to_end(&mut all);
    let frames = all.windows(3).filter(|w| *w == [0xFF, 0xD8, 0xFF]).count();
    let key = b"\"stream_time_s\":";
    let mut times = Vec::new();
    let mut at = 0;
    while let Some(i) = all[at..].windows(key.len()).position(|w| w == key) {
        let from = at + i + key.len();
        let num: String = all[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'.' || **c == b'-')
            .map(|c| char::from(*c))
            .collect();
        if let Ok(t) = num.parse() {
            times.push(t);
        }
        at = from;
    }
    (frames, times)
}

fn reader(kind: &str, url: &str, every_s: f64) -> Result<Command> {
    let every = format!("{}ms", (every_s * 1000.0).round() as u64);
    Ok(match kind {
        "fogd-vision grab" => {
            let mut c = Command::new(std::env::current_exe().map_err(other)?);
            c.args(["grab", "--every", &every, url]);
            c
        }
        _ => {
            let mut c = Command::new("ffmpeg");
            c.args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-rtsp_transport",
                "tcp",
                "-i",
                url,
            ])
            .args([
                "-vf",
                &format!("fps=1/{every_s}"),
                "-f",
                "image2pipe",
                "-c:v",
                "mjpeg",
                "-q:v",
                "3",
                "-",
            ]);
            c
        }
    })
}

fn measure(kind: &str, clip: &Path, cameras: usize, seconds: f64, every_s: f64) -> Result<ReaderRun> {
    let server = Rtsp::start(clip)?;
    let mut children = Vec::new();
    for _ in 0..cameras {
        let mut c = reader(kind, &server.url, every_s)?;
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| other(format!("{kind}: {e}")))?;
        let out = child.stdout.take().ok_or_else(|| other("no stdout"))?;
        children.push((child, std::thread::spawn(move || count_frames(out))));
    }
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let wall = started.elapsed().as_secs_f64();
    let mut cpu = Vec::new();
    let mut rss: f64 = 0.0;
    let mut frames = Vec::new();
    let mut lateness: Option<f64> = None;
    for (mut child, counter) in children {
        let (c, r) = usage(child.id());
        cpu.push(100.0 * c / wall);
        rss = rss.max(r);
        let _ = child.kill();
        let _ = child.wait();
        let (n, times) = counter.join().map_err(|_| other("a counter panicked"))?;
        frames.push(n);
        for (i, t) in times.iter().enumerate() {
            let late = t - i as f64 * every_s;
            lateness = Some(lateness.map_or(late, |l: f64| l.max(late.abs())));
        }
    }
    drop(server);
    Ok(ReaderRun {
        reader: kind.to_string(),
        cameras,
        seconds: wall,
        cpu_pct_mean: cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
        cpu_pct_max: cpu.iter().copied().fold(0.0, f64::max),
        peak_rss_mb: rss,
        frames,
        max_lateness_s: lateness,
    })
}

/// Both readers, one after the other, on the same clip and server.
pub fn run(
    cache: &Path,
    spec: SampleSpec,
    cameras: usize,
    seconds: f64,
    every_s: f64,
    note: &mut dyn FnMut(&str),
) -> Result<StreamsBench> {
    std::fs::create_dir_all(cache).map_err(crate::io_err(cache))?;
    note("the sample clip (made once, then cached)");
    let (clip, _) = super::clip(cache, &spec)?;
    let mut runs = Vec::new();
    for kind in ["fogd-vision grab", "ffmpeg -vf fps"] {
        note(&format!("{cameras} cameras read by {kind} for {seconds:.0} s"));
        runs.push(measure(kind, &clip, cameras, seconds, every_s)?);
    }
    Ok(StreamsBench {
        clip,
        keyframe_interval_s: spec.gop as f64 / spec.fps.max(1) as f64,
        spec,
        every_s,
        runs,
    })
}
