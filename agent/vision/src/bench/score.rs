//! Scoring against the sample's ground truth: recall of face detections, mask verdicts right.

use crate::anonymize::FaceReport;
use crate::detect::FaceBox;
use crate::masks::MaskClass;
use crate::sample::TruthFace;

/// Mask verdicts against the truth, for the faces a report matched at IoU 0.5:
/// `judged[truth masked][verdict masked]`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MaskTally {
    pub judged: [[usize; 2]; 2],
}

impl MaskTally {
    pub fn add(&mut self, truth: &[TruthFace], faces: &[FaceReport]) {
        for tf in truth {
            let verdict = faces.iter().find_map(|f| {
                (f.face_box().iou(&tf.face_box()) >= 0.5)
                    .then_some(f.mask)
                    .flatten()
            });
            if let Some(v) = verdict {
                self.judged[tf.masked as usize][(v.class == MaskClass::Mask) as usize] += 1;
            }
        }
    }
    /// Share judged right among the faces that are (`masked`) or are not masked; None if none.
    pub fn accuracy(&self, masked: bool) -> Option<f64> {
        let row = self.judged[masked as usize];
        let n = row[0] + row[1];
        (n > 0).then(|| row[masked as usize] as f64 / n as f64)
    }
}

/// Recall of detections against the truth: faces of at least `min_size` px (the smaller side)
/// matched at IoU >= 0.5, one detection per face.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Recall {
    pub faces: usize,
    pub found: usize,
    pub recall: f64,
}

pub fn recall(truth: &[TruthFace], found: &[FaceBox], min_size: f32, acc: &mut Recall) {
    recall_at(truth, found, min_size, 0.5, acc)
}

/// `recall` at an IoU of `iou` (a detector whose boxes are drawn differently from the truth's,
/// RetinaFace's tighter ones, is matched at 0.3).
pub fn recall_at(truth: &[TruthFace], found: &[FaceBox], min_size: f32, iou_min: f32, acc: &mut Recall) {
    let mut used = vec![false; found.len()];
    for tf in truth {
        let b = tf.face_box();
        if b.shorter_side() < min_size {
            continue;
        }
        acc.faces += 1;
        let best = found
            .iter()
            .enumerate()
            .filter(|(i, _)| !used[*i])
            .map(|(i, f)| (i, f.iou(&b)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((i, iou)) = best {
            if iou >= iou_min {
                used[i] = true;
                acc.found += 1;
            }
        }
    }
    acc.recall = if acc.faces == 0 {
        1.0
    } else {
        acc.found as f64 / acc.faces as f64
    };
}
