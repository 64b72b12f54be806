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
    /// The plate detector's, where plates were searched.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plates: Option<f32>,
    /// CenterFace's input sizes: the first pass's longer side and the fine pass's (0: none).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scale: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fine_scale: Option<u32>,
    /// How much each face's box was grown before it was redacted.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grow: Option<f32>,
}

/// The loosest settings a node signs a receipt for: the anonymiser's defaults. A script may run
/// the anonymiser with other flags, but a frame made with a raised threshold (`--thresh 0.9`) or
/// a shrunk input (`--scale 32`), which blind the detector, gets no receipt and never leaves.
pub mod policy {
    use super::{ModelRef, Thresholds};

    /// Redaction thresholds by detector (`fogd-vision`'s defaults use these).
    pub const CENTERFACE_REDACT: f32 = 0.1;
    pub const ULTRAFACE_REDACT: f32 = 0.7;
    pub const PLATE_REDACT: f32 = 0.3;
    /// CenterFace's smallest input sizes (its defaults).
    pub const CENTERFACE_SCALE: u32 = 960;
    pub const CENTERFACE_FINE_SCALE: u32 = 1920;
    /// The redacted area around a face, at least (its box grown by this).
    pub const GROW: f32 = 1.3;
    pub const PLATE_MODEL: &str = "clp_det.onnx";

    /// Why a frame made with these settings is not signed, None when it is within the policy.
    /// `plates`: the camera sees vehicles, so its plates must have been searched.
    pub fn problem(
        detector: &str,
        t: Option<&Thresholds>,
        models: &[ModelRef],
        plates: bool,
    ) -> Option<String> {
        let Some(t) = t else {
            return Some("the report states no thresholds".into());
        };
        // UltraFace sees every frame at 640x480 and misses small faces; int8 models score faces
        // differently from one CPU to the next. Only CenterFace in fp32 is signed.
        if detector != "centerface" {
            return Some(format!(
                "detector `{detector}`: only centerface's frames are signed"
            ));
        }
        if let Some(m) = models.iter().find(|m| m.name.contains("int8")) {
            return Some(format!("{}: int8 models are not signed (fp32 only)", m.name));
        }
        // NaN is over any bound.
        if t.redact.is_nan() || t.redact > CENTERFACE_REDACT {
            return Some(format!("face threshold {} is over {CENTERFACE_REDACT}", t.redact));
        }
        let scale = t.scale.unwrap_or(0);
        let fine = t.fine_scale.unwrap_or(0);
        if scale < CENTERFACE_SCALE || fine < CENTERFACE_FINE_SCALE {
            return Some(format!(
                "detector input {scale}/{fine} is under {CENTERFACE_SCALE}/{CENTERFACE_FINE_SCALE}"
            ));
        }
        match t.grow {
            Some(g) if g >= GROW => {}
            g => return Some(format!("faces grown by {g:?}, under {GROW}")),
        }
        if plates {
            if !models.iter().any(|m| m.name == PLATE_MODEL) {
                return Some("the camera sees vehicles and its plates were not searched".into());
            }
            match t.plates {
                Some(p) if p <= PLATE_REDACT => {}
                p => return Some(format!("plate threshold {p:?} is over {PLATE_REDACT}")),
            }
        }
        None
    }
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

/// Set to `1` by fogd for an invocation from a camera that sees vehicles (`cameras.<id>.plates`):
/// the anonymiser then redacts licence plates too.
pub const ENV_PLATES: &str = "FOGD_PRIVACY_PLATES";

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

#[cfg(test)]
mod tests {
    use super::policy::problem;
    use super::*;

    fn t(redact: f32, scale: u32, fine: u32, plates: Option<f32>) -> Thresholds {
        Thresholds {
            redact,
            count: 0.2,
            plates,
            scale: Some(scale),
            fine_scale: Some(fine),
            grow: Some(1.3),
        }
    }

    #[test]
    fn the_defaults_are_signed_and_anything_that_blinds_the_detector_is_not() {
        let plate = [ModelRef {
            name: policy::PLATE_MODEL.into(),
            sha256: "1bb0".into(),
        }];
        assert_eq!(
            problem("centerface", Some(&t(0.1, 960, 1920, None)), &[], false),
            None
        );
        assert_eq!(
            problem("centerface", Some(&t(0.05, 1280, 2560, Some(0.3))), &plate, true),
            None
        );
        let ultra = Thresholds {
            scale: None,
            fine_scale: None,
            ..t(0.7, 0, 0, None)
        };
        let int8 = [ModelRef {
            name: "centerface-int8.onnx".into(),
            sha256: "0dea".into(),
        }];
        let narrow = Thresholds {
            grow: Some(1.0),
            ..t(0.1, 960, 1920, None)
        };
        for (d, th, models, plates, why) in [
            ("ultraface", Some(ultra), &[][..], false, "only centerface"),
            (
                "centerface",
                Some(t(0.1, 960, 1920, None)),
                &int8[..],
                false,
                "int8",
            ),
            ("centerface", Some(narrow), &[], false, "grown by Some(1.0)"),
            (
                "centerface",
                Some(t(0.9, 960, 1920, None)),
                &[],
                false,
                "face threshold",
            ),
            (
                "centerface",
                Some(t(f32::NAN, 960, 1920, None)),
                &[],
                false,
                "face threshold",
            ),
            (
                "centerface",
                Some(t(0.1, 32, 1920, None)),
                &[],
                false,
                "input 32/1920",
            ),
            (
                "centerface",
                Some(t(0.1, 960, 0, None)),
                &[],
                false,
                "input 960/0",
            ),
            (
                "centerface",
                Some(t(0.1, 960, 1920, None)),
                &[],
                true,
                "not searched",
            ),
            (
                "centerface",
                Some(t(0.1, 960, 1920, Some(0.99))),
                &plate,
                true,
                "plate threshold",
            ),
            (
                "centerface",
                Some(t(0.1, 960, 1920, None)),
                &plate,
                true,
                "plate threshold",
            ),
            (
                "yolo",
                Some(t(0.1, 960, 1920, None)),
                &[],
                false,
                "only centerface",
            ),
            ("centerface", None, &[], false, "no thresholds"),
        ] {
            let p = problem(d, th.as_ref(), models, plates).unwrap_or_default();
            assert!(p.contains(why), "{d} {th:?} {plates}: {p:?}");
        }
    }
}
