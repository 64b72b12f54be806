//! What the anonymiser reports: each frame's sidecar (faces, mask verdicts, counts, stage
//! timings) and each input's summary.

use std::path::PathBuf;
use std::time::Duration;

use crate::detect::FaceBox;
use crate::masks::{MaskClass, MaskVerdict, Status};
use crate::media::Truncated;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FaceReport {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask: Option<MaskVerdict>,
}

impl FaceReport {
    pub fn face_box(&self) -> FaceBox {
        FaceBox::from_array(self.bbox, self.score)
    }
}

/// A licence plate redacted (`plates.rs`): the box blurred (before its margin) and its score.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct PlateReport {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
}

impl PlateReport {
    pub fn of(p: &crate::plates::Plate) -> PlateReport {
        PlateReport {
            bbox: p.bbox.map(|v| (v * 10.0).round() / 10.0),
            score: (p.score * 1000.0).round() / 1000.0,
        }
    }
}

/// What one frame's detection found (and redacted): faces, plates, and "ok" or "redacted-whole".
pub struct Found {
    pub faces: Vec<FaceReport>,
    pub plates: Vec<PlateReport>,
    pub status: &'static str,
}

impl Found {
    /// A frame blurred whole because detection failed: nothing was found or judged.
    pub fn whole() -> Found {
        Found {
            faces: Vec::new(),
            plates: Vec::new(),
            status: "redacted-whole",
        }
    }
}

pub use fogd_vision_proto::masks::Counts;

/// The counts of these faces (no plates: the caller adds them).
pub fn counts_of(faces: &[FaceReport]) -> Counts {
    let judged = |class| {
        faces
            .iter()
            .filter(|f| f.mask.is_some_and(|m| m.class == class))
            .count()
    };
    Counts::judged(faces.len(), judged(MaskClass::Mask), judged(MaskClass::NoMask))
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The JSON sidecar written next to each frame.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct FrameReport {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub frame: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timestamp_s: Option<f64>,
    pub width: i32,
    pub height: i32,
    pub detector: String,
    pub backend: String,
    /// "ok", or "redacted-whole" when detection failed and the frame was redacted entirely.
    pub status: String,
    pub faces: Vec<FaceReport>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub plates: Vec<PlateReport>,
    pub counts: Counts,
    /// Privacy zones blacked out before detection (the camera's, from fogd).
    #[serde(skip_serializing_if = "is_zero", default)]
    pub zones: usize,
    /// The models that ran (file and the SHA-256 it was checked against), and the thresholds:
    /// what a receipt for the frame states.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub models: Vec<fogd_vision_proto::receipt::ModelRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thresholds: Option<fogd_vision_proto::receipt::Thresholds>,
    /// The live privacy check, on the frames whose turn it was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub audit: Option<fogd_vision_proto::receipt::Audit>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask_status: Option<Status>,
    /// What this frame cost, per stage, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub timings_ms: Option<StageMs>,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct StageMs {
    pub decode: f64,
    pub detect: f64,
    pub classify: f64,
    pub redact: f64,
    pub encode: f64,
}

impl From<&Timings> for StageMs {
    fn from(t: &Timings) -> StageMs {
        let ms = |d: Duration| (d.as_secs_f64() * 1e4).round() / 10.0;
        StageMs {
            decode: ms(t.decode),
            detect: ms(t.detect),
            classify: ms(t.classify),
            redact: ms(t.redact),
            encode: ms(t.encode),
        }
    }
}

/// Time per stage, summed over frames (seconds in JSON).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Timings {
    #[serde(serialize_with = "secs")]
    pub decode: Duration,
    #[serde(serialize_with = "secs")]
    pub detect: Duration,
    #[serde(serialize_with = "secs")]
    pub classify: Duration,
    #[serde(serialize_with = "secs")]
    pub redact: Duration,
    #[serde(serialize_with = "secs")]
    pub encode: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Timings {
    pub(crate) fn add(&mut self, o: &Timings) {
        self.decode += o.decode;
        self.detect += o.detect;
        self.classify += o.classify;
        self.redact += o.redact;
        self.encode += o.encode;
    }
}

/// What one input gave.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct InputSummary {
    pub input: String,
    pub frames_written: usize,
    pub frames_dropped: usize,
    pub faces: usize,
    pub mask: usize,
    pub no_mask: usize,
    pub outputs: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<Truncated>,
    pub timings: Timings,
}

impl InputSummary {
    pub(crate) fn add_frame(&mut self, r: &FrameReport, dest: PathBuf) {
        self.frames_written += 1;
        self.faces += r.counts.faces;
        self.mask += r.counts.mask;
        self.no_mask += r.counts.no_mask;
        self.outputs.push(dest);
    }
}

/// Boxes of a sidecar, as detector boxes.
pub fn sidecar_faces(r: &FrameReport) -> Vec<(FaceBox, Option<MaskVerdict>)> {
    r.faces.iter().map(|f| (f.face_box(), f.mask)).collect()
}
