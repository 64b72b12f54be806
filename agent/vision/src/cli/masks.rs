//! `fogd detect-masks`: each frame's mask verdict (the faces it has, masked or not, Safe /
//! Warning / Danger) and the frame annotated with it, from the report an anonymised frame carries,
//! the anonymiser's sidecar, or detection on the picture itself.

use std::path::PathBuf;
use std::process::ExitCode;

use opencv::core::{Mat, Point, Rect, Scalar};
use opencv::imgproc;
use opencv::prelude::*;

use super::commands::{on_stdio, DetectArgs};
use super::privacy::Env;
use super::worker::{cached, Out, Warm};
use crate::anonymize::{sidecar_faces, FrameReport};
use crate::masks::{MaskClass, MaskClassifier, MaskVerdict, Status};
use crate::media;
use crate::{Detector, FaceBox};
use fogd_vision_proto::masks::{FacesFrom, MaskSummary};

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
    faces: Vec<crate::anonymize::FaceReport>,
    /// Where the faces came from, the counts and the verdict: what fogd reads back (typed in
    /// `fogd-vision-proto`, so the two sides cannot drift apart).
    #[serde(flatten)]
    summary: MaskSummary,
}

pub fn detect_masks(a: &DetectMasksArgs) -> anyhow::Result<ExitCode> {
    on_stdio(a, detect_masks_with)
}

pub fn detect_masks_with(
    a: &DetectMasksArgs,
    warm: &mut Warm,
    o: &mut Out<'_>,
    env: &Env,
) -> anyhow::Result<ExitCode> {
    // One image at a time: one session of each model, on every core.
    let opts = a.detect.options_for(1);
    let ledger = warm.ledger.clone();
    let key = format!("{:?}", a.detect);
    let mut failed = 0;
    let mut results = Vec::new();
    for image in &a.images {
        let r = (|| -> anyhow::Result<MaskResult> {
            // The faces and masks judged before blurring, in order of preference: the report
            // an anonymised frame carries, a sidecar given directly (a workflow step triggered by
            // the anonymiser's .json), or the sidecar next to the image.
            let is_json = image.extension().is_some_and(|e| e == "json");
            let picture = if is_json {
                ["jpg", "png", "jpeg"]
                    .iter()
                    .map(|e| image.with_extension(e))
                    .find(|p| p.is_file())
            } else {
                Some(image.clone())
            };
            // Read once: the report it carries, its ledger entry and the pixels decoded all come
            // from these bytes (a process a script left behind could swap the file between two
            // reads, or put a FIFO there).
            let bytes = picture.as_deref().map(read_picture).transpose()?;
            let embedded = match bytes.as_deref().filter(|_| !is_json) {
                Some(b) => crate::jpeg_note::read(b)
                    .map(|note| serde_json::from_slice::<FrameReport>(&note))
                    .transpose()
                    .map_err(|e| {
                        anyhow::anyhow!("{}: its fogd report is not readable: {e}", image.display())
                    })?,
                None => None,
            };
            let sidecar_path = if is_json {
                image.clone()
            } else {
                image.with_extension("json")
            };
            // An anonymised picture is blurred: its own report is all there is to judge by.
            let carried = embedded.is_some();
            let keep_report = is_json || carried;
            let sidecar = match embedded {
                Some(r) => Some(r),
                None => match std::fs::read(&sidecar_path) {
                    Ok(b) => match serde_json::from_slice::<FrameReport>(&b) {
                        Ok(r) => Some(r),
                        Err(e) if is_json => {
                            anyhow::bail!("{}: not a fogd sidecar: {e}", sidecar_path.display())
                        }
                        Err(_) => None,
                    },
                    Err(e) if is_json => anyhow::bail!("{}: {e}", sidecar_path.display()),
                    Err(_) => None,
                },
            };
            let mut img = picture
                .as_deref()
                .zip(bytes.as_deref())
                .map(|(p, b)| media::decode_image(p, b))
                .transpose()?;
            // A report made without mask classification, next to a raw picture: judge the picture
            // itself. (Faint faces, redacted but not sure enough to judge, have no verdict even
            // when masks were classified.)
            let sidecar = sidecar.filter(|r| keep_report || r.mask_status.is_some());
            let detection_status = sidecar.as_ref().map_or("ok".to_string(), |r| r.status.clone());
            // A report made without mask classification judged nothing: never "Safe".
            let classified = sidecar
                .as_ref()
                .is_none_or(|r| r.mask_status.is_some_and(|m| m != Status::NotJudged));
            // The annotated copy of an anonymised picture carries its report on (the node signs
            // a receipt for it from the worker's ledger); one drawn on a picture judged afresh
            // carries none.
            let given = sidecar.as_ref().filter(|_| keep_report);
            let (note, vouched) = super::privacy::carried_report(ledger.as_deref(), bytes.as_deref(), given);
            // A verdict the worker vouches for (its camera counts it) is the report of a frame
            // the worker itself wrote within the node's policy: never a sidecar (a script's to
            // edit), nor faces found afresh (the script chooses the detector's settings).
            let judged_input = vouched
                .as_ref()
                .filter(|_| carried && super::privacy::within_policy(note.as_deref(), env))
                .map(|(input, _)| input.clone());
            let plates = sidecar.as_ref().map_or(0, |r| r.counts.plates);
            let (faces, from): (Vec<(FaceBox, Option<MaskVerdict>)>, _) = match (sidecar, img.as_ref()) {
                (Some(r), _) => (
                    sidecar_faces(&r),
                    if carried {
                        FacesFrom::Report
                    } else {
                        FacesFrom::Sidecar
                    },
                ),
                (None, Some(raw)) => {
                    let (d, c) = cached(&mut warm.detectors, key.clone(), || {
                        let d = Detector::load(&opts, a.detect.models.as_deref())?;
                        let c = MaskClassifier::load(
                            a.detect.models.as_deref(),
                            a.detect.backend,
                            a.detect.precision,
                            opts.threads,
                            opts.sessions,
                        )?;
                        Ok((d, c))
                    })?;
                    let min = d.count_min();
                    let boxes: Vec<FaceBox> = d.detect(raw)?.into_iter().filter(|b| b.score >= min).collect();
                    let verdicts = c.classify(raw, &boxes)?;
                    (boxes.into_iter().zip(verdicts).collect(), FacesFrom::Detection)
                }
                (None, None) => anyhow::bail!("{}: nothing to read", image.display()),
            };
            let reports: Vec<_> = faces
                .iter()
                .map(|(b, m)| crate::anonymize::FaceReport {
                    bbox: b.as_array(),
                    score: b.score,
                    mask: *m,
                })
                .collect();
            let counts = crate::anonymize::Counts {
                plates,
                ..crate::anonymize::counts_of(&reports)
            };
            let status = if classified {
                Status::of(counts.mask, counts.no_mask)
            } else {
                Status::NotJudged
            };
            let stem = image.file_stem().and_then(|s| s.to_str()).unwrap_or("image");
            let annotated = match img.as_mut() {
                Some(img) => {
                    annotate(img, &faces, &counts, status)?;
                    let p = a.out.join(format!("{stem}.masks.jpg"));
                    let bytes = media::encode_image(&p, img, 90)?;
                    let bytes = note
                        .as_ref()
                        .and_then(|n| crate::jpeg_note::embed(&bytes, n))
                        .unwrap_or(bytes);
                    media::write_atomic(&p, &bytes)?;
                    super::privacy::record(ledger.as_deref(), &bytes, note.as_deref(), vouched);
                    Some(p)
                }
                None => None,
            };
            let result = MaskResult {
                image: image.display().to_string(),
                annotated,
                faces: reports,
                summary: MaskSummary::new(from, counts, status, detection_status),
            };
            let json = serde_json::to_vec_pretty(&result)?;
            media::write_atomic(&a.out.join(format!("{stem}.masks.json")), &json)?;
            super::privacy::record_verdict(ledger.as_deref(), &json, judged_input);
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
                r.summary.counts.faces,
                r.summary.counts.mask,
                r.summary.counts.no_mask,
                r.summary.counts.no_mask_share * 100.0,
                r.summary.status,
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

pub(crate) fn text(
    img: &mut Mat,
    s: &str,
    at: Point,
    font: f64,
    colour: Scalar,
    thick: i32,
) -> opencv::Result<()> {
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
    counts: &crate::anonymize::Counts,
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
        Status::Warning | Status::NotJudged => amber,
        Status::Danger => red,
    };
    let banner = match status {
        Status::NotJudged => format!("Not judged: {} faces, masks not classified", counts.faces),
        _ => format!(
            "{:?}: {} faces, {} masked, {} without ({:.0}%)",
            status,
            counts.faces,
            counts.mask,
            counts.no_mask,
            counts.no_mask_share * 100.0
        ),
    };
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

/// Largest picture `detect-masks` reads.
const MAX_PICTURE: u64 = 64 << 20;

/// A picture's bytes: a regular file, opened without waiting (a FIFO would hold the worker,
/// shared by every invocation), read whole up to `MAX_PICTURE`.
fn read_picture(p: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    let meta = f
        .metadata()
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    anyhow::ensure!(meta.is_file(), "{}: not a regular file", p.display());
    anyhow::ensure!(
        meta.len() <= MAX_PICTURE,
        "{}: {} bytes, over the {MAX_PICTURE} a picture may have",
        p.display(),
        meta.len()
    );
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_PICTURE)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    Ok(bytes)
}
