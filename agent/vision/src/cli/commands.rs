//! `fogd anonymize` (and `detect-masks` in `masks.rs`): the vision functions at the CLI, usable
//! inside a FaaS-contract script (`fogd anonymize "$INPUT_FILE_PATH" --out "$TMP_OUTPUT_DIR"`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use super::detect_args::DetectArgs;
pub use super::privacy::Env;
use super::worker::{cached, Out, Warm};
use crate::media::Sampling;
use crate::redact::{Mode, RedactOptions, Shape};
use crate::{AnonymizeOptions, Anonymizer, OnFailure};

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
    /// Decoders at once for exact frames (each decodes whole keyframe intervals; default: one
    /// per core, at most 8).
    #[arg(long)]
    pub decoders: Option<usize>,
    #[arg(long, value_enum, default_value_t = Mode::Blur)]
    pub mode: Mode,
    #[arg(long, value_enum, default_value_t = Shape::Ellipse)]
    pub shape: Shape,
    /// The redacted area is the face box grown by this factor (and by 8 px a side at least).
    #[arg(long, default_value_t = fogd_vision_proto::receipt::policy::GROW)]
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
    /// Privacy zones, blacked out before detection: a JSON file, or the JSON itself:
    /// `{"camera": "door", "zones": [{"points": [[x, y], ...]}]}`, x and y from 0 to 1 of the
    /// width and height (default: FOGD_PRIVACY_ZONES, which fogd sets for a camera with zones).
    #[arg(long)]
    pub zones: Option<String>,
    /// The live privacy check: one frame in N is searched again after redaction by a second,
    /// independent detector, and what it finds is in the report (default:
    /// FOGD_PRIVACY_AUDIT_EVERY, fogd.yaml's `privacy.audit_every`; 0: off).
    #[arg(long)]
    pub audit_every: Option<u64>,
    /// Also find and blur licence plates (default: FOGD_PRIVACY_PLATES=1, which fogd sets for a
    /// camera with `plates: true`).
    #[arg(long)]
    pub plates: bool,
    /// The plate detector's score threshold (default 0.3).
    #[arg(long)]
    pub plate_thresh: Option<f32>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Runs a command once, cold, on this process's stdout and stderr and with its environment.
pub(super) fn on_stdio<A>(
    a: &A,
    run: fn(&A, &mut Warm, &mut Out<'_>, &Env) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    let mut o = Out {
        out: &mut out,
        err: &mut err,
        terminal: std::io::stderr().is_terminal(),
    };
    let env = fogd_vision_proto::worker::Request::env_from(|k| std::env::var(k).ok());
    run(a, &mut Warm::default(), &mut o, &env)
}

pub fn anonymize(a: &AnonymizeArgs) -> anyhow::Result<ExitCode> {
    on_stdio(a, anonymize_with)
}

pub fn anonymize_with(
    a: &AnonymizeArgs,
    warm: &mut Warm,
    o: &mut Out<'_>,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    if !(a.grow >= 1.0 && a.grow <= 4.0) {
        anyhow::bail!("--grow {}: must be between 1 and 4", a.grow);
    }
    if a.every.is_zero() {
        anyhow::bail!("--every: must be more than 0");
    }
    let zones = super::privacy::zones_of(a, env)?;
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
        decoders: a.decoders.unwrap_or_else(crate::default_decoders).max(1),
        classify_masks: a.classify_masks,
        plates: super::privacy::plates(a, env)?,
        on_failure: a.on_failure,
        jpeg_quality: a.quality.clamp(1, 100),
        models_dir: a.detect.models.clone(),
        audit_every: super::privacy::audit_every(a, env)?,
        ledger: warm.ledger.clone(),
    };
    let started = Instant::now();
    let key = format!("{opts:?}");
    let anon = cached(&mut warm.anonymizers, key, || Ok(Anonymizer::new(opts)?))?;
    let bar = if o.terminal { super::progress::bar() } else { None };
    let mut failed = 0usize;
    let mut summaries = Vec::new();
    for input in &a.inputs {
        if let Some(b) = &bar {
            b.set_message(input.clone());
            b.set_position(0);
        }
        let result = anon.run(input, &a.out, &zones, &mut |done, expected| {
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
