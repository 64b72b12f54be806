//! Licence plates: `clp_det.onnx` (models/README.md), a RetinaFace-style detector that gives a
//! box and the plate's four corners. What is redacted is the box that holds both, grown: a
//! slanted plate's corners reach past the box the network regressed.

use std::path::Path;

use opencv::core::{Mat, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::detect::{nms, FaceBox};
use super::engine::{Backend, Input, Net, Tensor};
use super::models::Model;
use super::{Result, VisionError};

/// A plate this sure is redacted (`COUNT_THRESHOLD` for counting). Low, as for faces: a missed
/// plate leaves the frame identifiable, a false one blurs a patch. On the test photos
/// (examples/camera-ingest/media/plates) every plate scored 0.62 or more in its best pass, and
/// the false alarms seen 0.30-0.35.
pub const DEFAULT_THRESHOLD: f32 = fogd_vision_proto::receipt::policy::PLATE_REDACT;

/// Plates at least this sure are counted (sidecar, Home Assistant, metrics); fainter ones are
/// blurred only. The test photos' plates scored 0.6 or more; the false alarms seen, on a
/// uniform's ribbons (grace_hopper.jpg, 0.35) and a building's sign, 0.30-0.35.
pub const COUNT_THRESHOLD: f32 = 0.5;

/// Frames whose shorter side is under this are also searched enlarged to it: the network lost
/// plates under ~60 px wide at less than native 720p (a 512 px photo's plate scored 0.10 as it
/// was, 0.67 enlarged 1.4x).
const MIN_SHORT_SIDE: f32 = 720.0;
/// And never more than this enlarged (the cost grows with the square).
const MAX_UPSCALE: f32 = 3.0;
/// Frames whose longer side is over this are searched at it (a 4K frame's plates are large).
const MAX_LONG_SIDE: f32 = 1920.0;
/// The enlarged pass's longer side at most (a thin panorama would otherwise be enlarged to a
/// tensor of hundreds of MB).
const MAX_ENLARGED_LONG_SIDE: f32 = 2880.0;

const TOP_K: usize = 1000;
const STEPS: [usize; 3] = [8, 16, 32];
const MIN_SIZES: [[f32; 2]; 3] = [[24.0, 48.0], [96.0, 192.0], [384.0, 768.0]];
const VARIANCES: [f32; 2] = [0.1, 0.2];
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];

/// One plate, in the image's pixels.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Plate {
    /// The box holding the regressed box and the four corners.
    pub bbox: [f32; 4],
    pub score: f32,
    /// The corners as the network gave them (clockwise from top left, for a plate seen square).
    pub corners: [[f32; 2]; 4],
}

impl Plate {
    pub fn as_box(&self) -> FaceBox {
        FaceBox::from_array(self.bbox, self.score)
    }
}

pub struct PlateDetector {
    pub threshold: f32,
    net: Net,
}

impl PlateDetector {
    pub fn load(
        threshold: Option<f32>,
        models_dir: Option<&Path>,
        backend: Backend,
        threads: usize,
        sessions: usize,
    ) -> Result<PlateDetector> {
        let threshold = threshold.unwrap_or(DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(VisionError::Other(format!(
                "plate threshold {threshold}: must be between 0 and 1"
            )));
        }
        Ok(PlateDetector {
            threshold,
            net: Net::load(Model::PlateDetector, models_dir, backend, threads, sessions)?,
        })
    }

    /// Plates in a BGR image. Plates seen in more than one pass are merged into one box that holds
    /// them all (redaction wants the widest extent, not the best-scored one).
    pub fn detect(&self, bgr: &Mat) -> Result<Vec<Plate>> {
        let (w, h) = (bgr.cols(), bgr.rows());
        if w <= 0 || h <= 0 {
            return Err(VisionError::Other("empty image".into()));
        }
        if bgr.typ() != CV_8UC3 {
            return Err(VisionError::Other(format!(
                "the plate detector takes 8-bit BGR frames, got {} channel(s) of depth {}",
                bgr.channels(),
                bgr.depth()
            )));
        }
        let (short, long) = (w.min(h) as f32, w.max(h) as f32);
        let first = (MAX_LONG_SIDE / long).min(1.0);
        let mut found = self.detect_at(bgr, first)?;
        let up = (MIN_SHORT_SIDE / short)
            .min(MAX_UPSCALE)
            .min(MAX_ENLARGED_LONG_SIDE / long);
        if short < MIN_SHORT_SIDE && up > first {
            found.extend(self.detect_at(bgr, up)?);
        }
        Ok(merge(found))
    }

    fn detect_at(&self, bgr: &Mat, scale: f32) -> Result<Vec<Plate>> {
        let (w, h) = (bgr.cols(), bgr.rows());
        let (nw, nh) = (
            ((w as f32 * scale).round() as i32).max(32),
            ((h as f32 * scale).round() as i32).max(32),
        );
        let mut resized = Mat::default();
        let src = if (nw, nh) == (w, h) {
            bgr
        } else {
            imgproc::resize(
                bgr,
                &mut resized,
                Size::new(nw, nh),
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )?;
            &resized
        };
        let pixels = src.data_bytes()?;
        let plane = (nw * nh) as usize;
        let mut planar = vec![0f32; 3 * plane];
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                planar[c * plane + i] = f32::from(px[c]) - MEAN_BGR[c];
            }
        }
        let shape = [1, 3, nh as usize, nw as usize];
        let outs = self.net.run_data(&shape, Input::F32(&planar), usize::MAX)?;
        let plates = decode(&outs, self.threshold, nw as usize, nh as usize).map_err(VisionError::Other)?;
        let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
        Ok(plates
            .into_iter()
            .map(|p| {
                let b = p.bbox;
                Plate {
                    bbox: [b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy],
                    score: p.score,
                    corners: p.corners.map(|[x, y]| [x / sx, y / sy]),
                }
            })
            .collect())
    }
}

/// The network's outputs, told apart by their last dimension (OpenCV names them in its own
/// order): boxes (4), scores (2), corners (8).
fn decode(outs: &[Tensor], threshold: f32, w: usize, h: usize) -> Result<Vec<Plate>, String> {
    let find = |last: usize| outs.iter().find(|t| t.shape.last() == Some(&last));
    let (Some(loc), Some(conf), Some(landms)) = (find(4), find(2), find(8)) else {
        return Err("plate detector: unexpected outputs".into());
    };
    let n: usize = STEPS.iter().map(|s| w.div_ceil(*s) * h.div_ceil(*s) * 2).sum();
    if loc.data.len() != n * 4 || conf.data.len() != n * 2 || landms.data.len() != n * 8 {
        return Err(format!(
            "plate detector: {} priors expected for {w}x{h}, outputs of {}, {} and {} values",
            n,
            loc.data.len(),
            conf.data.len(),
            landms.data.len()
        ));
    }
    let (wf, hf) = (w as f32, h as f32);
    let mut found = Vec::new();
    let mut i = 0;
    for (k, step) in STEPS.iter().enumerate() {
        for y in 0..h.div_ceil(*step) {
            for x in 0..w.div_ceil(*step) {
                for size in MIN_SIZES[k] {
                    let score = conf.data[i * 2 + 1];
                    if score > threshold {
                        let (cx, cy) = ((x as f32 + 0.5) * *step as f32, (y as f32 + 0.5) * *step as f32);
                        let l = &loc.data[i * 4..i * 4 + 4];
                        let bx = cx + l[0] * VARIANCES[0] * size;
                        let by = cy + l[1] * VARIANCES[0] * size;
                        let bw = size * (l[2] * VARIANCES[1]).exp();
                        let bh = size * (l[3] * VARIANCES[1]).exp();
                        let m = &landms.data[i * 8..i * 8 + 8];
                        let corners: [[f32; 2]; 4] = std::array::from_fn(|c| {
                            [
                                cx + m[c * 2] * VARIANCES[0] * size,
                                cy + m[c * 2 + 1] * VARIANCES[0] * size,
                            ]
                        });
                        let mut b = [bx - bw / 2.0, by - bh / 2.0, bx + bw / 2.0, by + bh / 2.0];
                        for [px, py] in corners {
                            b = [b[0].min(px), b[1].min(py), b[2].max(px), b[3].max(py)];
                        }
                        let b = [
                            b[0].clamp(0.0, wf),
                            b[1].clamp(0.0, hf),
                            b[2].clamp(0.0, wf),
                            b[3].clamp(0.0, hf),
                        ];
                        if b[2] > b[0] && b[3] > b[1] && b.iter().all(|v| v.is_finite()) {
                            found.push(Plate {
                                bbox: b,
                                score,
                                corners,
                            });
                        }
                    }
                    i += 1;
                }
            }
        }
    }
    // The best 1,000 (RetinaFace's top_k): at a threshold near 0 every anchor of a frame passes,
    // and the suppression below is quadratic.
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    found.truncate(TOP_K);
    // The best of each cluster of overlapping anchors, as RetinaFace's NMS (0.4) does.
    let kept = nms(found.iter().map(Plate::as_box).collect(), 0.4);
    Ok(kept
        .into_iter()
        .filter_map(|b| {
            found
                .iter()
                .find(|p| p.bbox == b.as_array() && p.score == b.score)
                .copied()
        })
        .collect())
}

/// Plates from several passes, each cluster of overlapping ones (any overlap of a tenth of the
/// smaller) made one: the box holding them all, the best score, that one's corners.
fn merge(mut plates: Vec<Plate>) -> Vec<Plate> {
    plates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out: Vec<Plate> = Vec::new();
    for p in plates {
        let overlaps = |q: &Plate| {
            let (a, b) = (p.as_box(), q.as_box());
            a.intersection(&b) > 0.1 * a.area().min(b.area())
        };
        match out.iter_mut().find(|q| overlaps(q)) {
            Some(q) => {
                q.bbox = [
                    q.bbox[0].min(p.bbox[0]),
                    q.bbox[1].min(p.bbox[1]),
                    q.bbox[2].max(p.bbox[2]),
                    q.bbox[3].max(p.bbox[3]),
                ];
            }
            None => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: [f32; 4], score: f32) -> Plate {
        Plate {
            bbox: b,
            score,
            corners: [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]],
        }
    }

    #[test]
    fn passes_that_see_one_plate_merge_into_the_box_holding_both() {
        let m = merge(vec![
            p([10., 10., 60., 30.], 0.5),
            p([20., 12., 90., 32.], 0.9),
            p([200., 200., 260., 220.], 0.4),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].bbox, [10., 10., 90., 32.]);
        assert_eq!(m[0].score, 0.9);
        assert_eq!(m[1].bbox, [200., 200., 260., 220.]);
    }

    /// A thin panorama and a tiny picture: searched within bounds, nothing found in flat grey;
    /// a 4-channel picture is an error (the frame's fail-safe applies), never garbage.
    #[test]
    fn odd_shapes_are_searched_within_bounds() {
        use opencv::core::{Scalar, CV_8UC3, CV_8UC4};
        let d = PlateDetector::load(None, None, Backend::Auto, 1, 1).expect("model");
        for (rows, cols) in [(100, 6000), (6000, 100), (8, 8)] {
            let img = Mat::new_rows_cols_with_default(rows, cols, CV_8UC3, Scalar::all(128.0)).expect("mat");
            assert!(d.detect(&img).expect("detect").is_empty(), "{rows}x{cols}");
        }
        let rgba = Mat::new_rows_cols_with_default(64, 64, CV_8UC4, Scalar::all(0.0)).expect("mat");
        assert!(d.detect(&rgba).unwrap_err().to_string().contains("8-bit BGR"));
    }

    #[test]
    fn outputs_of_the_wrong_size_are_an_error_not_garbage() {
        let t = |last: usize, n: usize| Tensor {
            shape: vec![1, n, last],
            data: vec![0.0; n * last],
        };
        let e = decode(&[t(4, 10), t(2, 10), t(8, 10)], 0.3, 64, 64).unwrap_err();
        assert!(e.contains("priors expected"), "{e}");
        // 64x64: 8x8 + 4x4 + 2x2 cells, two anchors each.
        let n = (64 + 16 + 4) * 2;
        assert!(decode(&[t(4, n), t(2, n), t(8, n)], 0.3, 64, 64)
            .unwrap()
            .is_empty());
    }
}
