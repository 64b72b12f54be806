//! What `fogd-vision detect-masks` writes in a `*.masks.json` and fogd reads back (the frame's
//! verdict for its camera): the counts, the verdict, where the faces came from. fogd-vision's
//! result holds a `MaskSummary` (flattened), so both sides read and write the same fields.

use serde::{Deserialize, Serialize};

/// Safe: everyone masked; Warning: some without; Danger: half or more without (of the faces
/// judged). NotJudged: masks were not classified at all (never called Safe: nothing was judged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Safe,
    Warning,
    Danger,
    NotJudged,
}

impl Status {
    /// `safe`, `warning`, `danger`, `not_judged`: the name in results and events.
    pub fn name(self) -> &'static str {
        match self {
            Status::Safe => "safe",
            Status::Warning => "warning",
            Status::Danger => "danger",
            Status::NotJudged => "not_judged",
        }
    }

    pub fn of(mask: usize, no_mask: usize) -> Status {
        let total = mask + no_mask;
        if no_mask == 0 {
            Status::Safe
        } else if (no_mask as f32) < 0.5 * total as f32 {
            Status::Warning
        } else {
            Status::Danger
        }
    }
}

/// A frame's counts, in its report, its sidecar and its mask result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Faces redacted.
    pub faces: usize,
    /// Licence plates redacted and sure (fogd-vision's `plates::COUNT_THRESHOLD`); 0 where plates
    /// were not searched (see the report's models).
    #[serde(default)]
    pub plates: usize,
    /// Faces judged (the surer detections), by class.
    pub mask: usize,
    pub no_mask: usize,
    /// no_mask / (mask + no_mask); 0 without classified faces.
    pub no_mask_share: f32,
}

impl Counts {
    /// The counts of `faces` faces of which `mask` and `no_mask` were judged (no plates).
    pub fn judged(faces: usize, mask: usize, no_mask: usize) -> Counts {
        Counts {
            faces,
            plates: 0,
            mask,
            no_mask,
            no_mask_share: if mask + no_mask == 0 {
                0.0
            } else {
                no_mask as f32 / (mask + no_mask) as f32
            },
        }
    }
}

/// Where `detect-masks` found a frame's faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FacesFrom {
    /// The report the anonymised frame carries.
    Report,
    /// The anonymiser's sidecar (judged before blurring).
    Sidecar,
    /// Detection run on the picture given.
    Detection,
}

/// The part of a mask result that is about the frame as a whole. Its `from` is what tells a
/// mask result from the anonymiser's sidecars (which have none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskSummary {
    pub from: FacesFrom,
    pub counts: Counts,
    pub status: Status,
    /// `status.name()`; absent from results written before verdicts were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// How the faces were found: `ok`, or the anonymiser's `redacted-whole`.
    #[serde(default = "ok")]
    pub detection_status: String,
}

fn ok() -> String {
    "ok".into()
}

impl MaskSummary {
    pub fn new(from: FacesFrom, counts: Counts, status: Status, detection_status: String) -> MaskSummary {
        MaskSummary {
            from,
            counts,
            status,
            verdict: Some(status.name().into()),
            detection_status,
        }
    }

    /// A mask result's summary; None for any other JSON (a sidecar, a user's file).
    pub fn parse(json: &[u8]) -> Option<MaskSummary> {
        serde_json::from_slice(json).ok()
    }

    /// The verdict's name (`safe`, `warning`, `danger`, `not_judged`).
    pub fn verdict(&self) -> &str {
        self.verdict.as_deref().unwrap_or(self.status.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_reads_back_and_a_sidecar_does_not() {
        let s = MaskSummary::new(
            FacesFrom::Sidecar,
            Counts::judged(3, 1, 2),
            Status::of(1, 2),
            "ok".into(),
        );
        let json = serde_json::to_vec(&s).expect("json");
        assert_eq!(MaskSummary::parse(&json), Some(s));
        let sidecar = br#"{"source":"a.jpg","counts":{"faces":1,"mask":0,"no_mask":1,"no_mask_share":1.0},"status":"ok"}"#;
        assert_eq!(MaskSummary::parse(sidecar), None);
    }

    #[test]
    fn an_older_result_without_verdict_or_plates_reads() {
        let old = br#"{"from":"report","counts":{"faces":2,"mask":2,"no_mask":0,"no_mask_share":0.0},"status":"Safe"}"#;
        let s = MaskSummary::parse(old).expect("old result");
        assert_eq!(
            (s.verdict(), s.counts.plates, s.detection_status.as_str()),
            ("safe", 0, "ok")
        );
    }

    #[test]
    fn statuses_by_share() {
        assert_eq!(Status::of(3, 0), Status::Safe);
        assert_eq!(Status::of(0, 0), Status::Safe);
        assert_eq!(Status::of(3, 1), Status::Warning);
        assert_eq!(Status::of(1, 1), Status::Danger);
    }
}
