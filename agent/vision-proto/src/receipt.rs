//! What a node's signed receipt says about one anonymised frame (`fogd verify` checks it). The
//! node signs the JSON of a `Receipt` with its Ed25519 key; the token travels in the JPEG (a COM
//! segment, `jpeg_note::RECEIPT`) and in the uploaded object's metadata (`x-amz-meta-fogd-receipt`).
//! `output_sha256` covers the JPEG without its receipt segments: the pixels and the report.

use serde::{Deserialize, Serialize};

/// The receipt's format; a verifier refuses another.
pub const VERSION: u32 = 1;

/// A model that ran on the frame: its file and the SHA-256 it was checked against when loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    pub sha256: String,
}

/// The scores from which a face is redacted, and from which it is counted and judged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    pub redact: f32,
    pub count: f32,
}

/// The live privacy check (`privacy.audit_every`): a second, independent detector run on the
/// frame after redaction, and the faces it still found there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub detector: String,
    pub faces_left: usize,
}

/// The variable that asks the anonymiser for the audit on one frame in N.
pub const ENV_AUDIT_EVERY: &str = "FOGD_PRIVACY_AUDIT_EVERY";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub v: u32,
    /// The signing node and the first 16 hex digits of its public key's SHA-256.
    pub node: String,
    pub key_id: String,
    /// SHA-256 of the JPEG without its receipt segments.
    pub output_sha256: String,
    /// SHA-256 of the raw camera item the frame came from (unknown for inputs not from a camera).
    pub raw_sha256: Option<String>,
    pub camera: Option<String>,
    /// When the raw item arrived (RFC 3339), and the frame's time within it (videos).
    pub captured: Option<String>,
    pub frame_s: Option<f64>,
    /// The service that wrote the frame, and its image.
    pub service: String,
    pub image: Option<String>,
    /// `ok`, or `redacted-whole` (detection failed: the frame was blurred whole).
    pub status: String,
    pub detector: String,
    pub models: Vec<ModelRef>,
    pub thresholds: Option<Thresholds>,
    /// Boxes redacted, `[x1, y1, x2, y2]` in the frame's pixels.
    pub faces: Vec<[f32; 4]>,
    pub plates: Vec<[f32; 4]>,
    /// Privacy zones blacked out.
    pub zones: usize,
    /// When this frame was one the live check audited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Audit>,
    pub fogd_version: String,
    pub signed_ms: i64,
}
