//! The face-mask classifier (MobileNetV2), run on the face crops of the raw frame so masks are
//! judged before any blurring. Also the frame-level verdict of the paper's use case.

use std::path::Path;

use opencv::core::{Mat, Size, CV_32F};
use opencv::imgproc;
use opencv::prelude::*;

use super::detect::FaceBox;
use super::engine::{Backend, Input, Net};
use super::models::{Model, Precision};
use super::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskClass {
    Mask,
    NoMask,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskVerdict {
    pub class: MaskClass,
    /// The classifier's probability of `class`.
    pub score: f32,
}

pub use fogd_vision_proto::masks::Status;

const SIDE: i32 = 224;

/// A face is judged only when it is this large (the detector's box, shorter side, in the frame's
/// pixels) and the classifier this sure; else it is "not judged", since a wrong verdict would be
/// counted as a person without a mask. On the bench's camera-like 1080p footage, masked faces
/// under 64 px were judged wrong 27 times in 41, most of them surely (scores up to 0.99); from
/// 64 px up, verdicts under 0.7 were wrong 4 times in 13, and the rest right 74 times in 76.
/// (Faces without a mask: right at every size.)
pub const MIN_JUDGED_PX: f32 = 64.0;
pub const MIN_VERDICT_SCORE: f32 = 0.7;

/// The classifier was trained on the squarish boxes of an SSD face detector; CenterFace's boxes
/// are tight and tall. A square of 1.1 x the longer side (`scripts/mask-crop-study`, ~350 faces
/// of the bench clip): every verdict right with the fp32 and the int8 detector and classifier,
/// none flipped by moving the box 2 px. The tall box grown by 1.2 (used before): 160-171 of
/// 166-171 masked faces right, 10-12 flipped by 2 px.
const CROP_GROW: f32 = 1.1;

pub struct MaskClassifier {
    net: Net,
}

impl MaskClassifier {
    pub fn model(&self) -> crate::models::Model {
        self.net.model()
    }

    pub fn load(
        models_dir: Option<&Path>,
        backend: Backend,
        precision: Precision,
        threads: usize,
        sessions: usize,
    ) -> Result<MaskClassifier> {
        Ok(MaskClassifier {
            net: Net::load(
                Model::MaskClassifier.at(precision),
                models_dir,
                backend,
                threads,
                sessions,
            )?,
        })
    }

    /// One verdict per face (None where the crop is empty), one run per face: a batch the size
    /// of each frame's face count is a new shape every frame, and ONNX Runtime's arena kept a
    /// block for each (peak RSS grew by 100+ MB over five bench runs); on a CPU, batching gains
    /// little for this network.
    /// A verdict per face; None for a face too small to judge (`MIN_JUDGED_PX`).
    pub fn classify(&self, bgr: &Mat, faces: &[FaceBox]) -> Result<Vec<Option<MaskVerdict>>> {
        let (w, h) = (bgr.cols(), bgr.rows());
        let mut verdicts = Vec::with_capacity(faces.len());
        for f in faces {
            let r = (f.shorter_side() >= MIN_JUDGED_PX)
                .then(|| f.grown_square(CROP_GROW, w, h))
                .flatten();
            let Some(r) = r else {
                verdicts.push(None);
                continue;
            };
            // NHWC, RGB, x/127.5 - 1: the Keras MobileNetV2 preprocessing the model was trained
            // with.
            let crop = Mat::roi(bgr, r)?;
            let mut resized = Mat::default();
            imgproc::resize(
                &crop,
                &mut resized,
                Size::new(SIDE, SIDE),
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
            let mut rgb = Mat::default();
            imgproc::cvt_color_def(&resized, &mut rgb, imgproc::COLOR_BGR2RGB)?;
            let mut f = Mat::default();
            rgb.convert_to(&mut f, CV_32F, 1.0 / 127.5, -1.0)?;
            // Continuous, HWC: the model's [1, 224, 224, 3] input as it is.
            let input = f.reshape(1, 0)?;
            let outs = self.net.run_data(
                &[1, SIDE as usize, SIDE as usize, 3],
                Input::F32(input.data_typed::<f32>()?),
                1,
            )?;
            let verdict = match outs.first().map(|t| t.data.as_slice()) {
                Some(&[m, nm, ..]) if m.max(nm) < MIN_VERDICT_SCORE => None,
                Some(&[m, nm, ..]) if m >= nm => Some(MaskVerdict {
                    class: MaskClass::Mask,
                    score: m,
                }),
                Some(&[_, nm, ..]) => Some(MaskVerdict {
                    class: MaskClass::NoMask,
                    score: nm,
                }),
                _ => None,
            };
            verdicts.push(verdict);
        }
        Ok(verdicts)
    }
}
