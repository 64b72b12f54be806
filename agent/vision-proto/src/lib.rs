//! The typed seam between `fogd` (the agent, no OpenCV) and `fogd-vision` (the binary that links
//! it): what travels between them is defined once, here, so that a changed field fails to compile
//! on both sides instead of at run time. No OpenCV, no async: serde, sha2 and libc.

pub mod builtin;
pub mod grant;
pub mod jpeg_note;
pub mod ledger;
pub mod masks;
pub mod receipt;
pub mod worker;
pub mod zones;

/// What fogd reads of the report an anonymised frame carries (`jpeg_note`): fogd-vision's
/// `FrameReport` has these fields under these names (its tests parse one into this).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ReportPrivacy {
    /// `ok`, or `redacted-whole` when detection failed and the frame was blurred whole.
    pub status: String,
    /// Privacy zones blacked out in the frame.
    #[serde(default)]
    pub zones: usize,
    #[serde(default)]
    pub detector: String,
    #[serde(default)]
    pub faces: Vec<FaceSeen>,
    /// Licence plates redacted, the same shape as faces.
    #[serde(default)]
    pub plates: Vec<FaceSeen>,
    #[serde(default)]
    pub models: Vec<receipt::ModelRef>,
    #[serde(default)]
    pub thresholds: Option<receipt::Thresholds>,
    /// The frame's time within its video.
    #[serde(default)]
    pub timestamp_s: Option<f64>,
    #[serde(default)]
    pub audit: Option<receipt::Audit>,
}

/// A face (or plate) the report lists: its box in the frame's pixels.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FaceSeen {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

impl ReportPrivacy {
    /// The report a JPEG carries, if it carries one that reads.
    pub fn of_jpeg(jpeg: &[u8]) -> Option<ReportPrivacy> {
        serde_json::from_slice(&jpeg_note::read(jpeg)?).ok()
    }
}

pub use zones::{CameraZones, Zone, ZoneError};
