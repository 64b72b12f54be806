//! What the anonymiser writes for a frame: its report (models, thresholds, counts) and the files
//! (the frame with its report inside, the sidecar, the ledger's entry).

use std::path::Path;
use std::time::Instant;

use opencv::core::Mat;
use opencv::prelude::*;

use super::{media, Anonymizer, Counts, Found, FrameReport, MaskClassifier, StageMs, Timings, Zone};
use crate::masks::Status;
use crate::{Result, VisionError};

impl Anonymizer {
    pub(super) fn report(&self, source: &str, img: &Mat, found: Found, zones: usize) -> FrameReport {
        let Found {
            faces,
            plates,
            status,
        } = found;
        let counts = Counts {
            plates: plates
                .iter()
                .filter(|p| p.score >= crate::plates::COUNT_THRESHOLD)
                .count(),
            ..super::counts_of(&faces)
        };
        let d = &self.opts.detector;
        let detector = d.kind.model(d.precision);
        // OpenCV runs the fp32 files whatever was asked.
        let detector = if self.detector.backend() == crate::Backend::OpenCv {
            detector.fp32()
        } else {
            detector
        };
        let mut models = vec![detector];
        models.extend(self.classifier.as_ref().map(MaskClassifier::model));
        models.extend(self.plates.as_ref().map(|_| crate::models::Model::PlateDetector));
        FrameReport {
            audit: None,
            zones,
            models: models
                .into_iter()
                .map(|m| fogd_vision_proto::receipt::ModelRef {
                    name: m.file_name().to_string(),
                    sha256: m.sha256().to_string(),
                })
                .collect(),
            thresholds: Some(fogd_vision_proto::receipt::Thresholds {
                redact: self.detector.threshold,
                count: self.detector.count_min(),
                plates: self.plates.as_ref().map(|p| p.threshold),
                scale: (d.kind == crate::DetectorKind::Centerface).then_some(d.input_size),
                fine_scale: (d.kind == crate::DetectorKind::Centerface).then_some(d.fine_size),
                grow: Some(self.opts.redact.grow),
            }),
            source: source.to_string(),
            frame: None,
            timestamp_s: None,
            width: img.cols(),
            height: img.rows(),
            detector: format!("{:?}", self.detector.kind).to_lowercase(),
            backend: self.detector.backend().name().to_string(),
            status: status.to_string(),
            // A frame blurred whole (detection failed) had nothing judged.
            mask_status: self.classifier.as_ref().map(|_| {
                if status == "ok" {
                    Status::of(counts.mask, counts.no_mask)
                } else {
                    Status::NotJudged
                }
            }),
            counts,
            faces,
            plates,
            timings_ms: None,
        }
    }

    pub(super) fn write(
        &self,
        image_path: &Path,
        img: &Mat,
        report: &mut FrameReport,
        (zones, input_sha256): (&[Zone], Option<&str>),
        t: &mut Timings,
    ) -> Result<()> {
        let s = Instant::now();
        let mut bytes = media::encode_image(image_path, img, self.opts.jpeg_quality)?;
        // The frame carries its report (without timings): the next stage gets this file alone.
        let note = serde_json::to_vec(&FrameReport {
            timings_ms: None,
            ..report.clone()
        })
        .map_err(|e| VisionError::Other(e.to_string()))?;
        if let Some(with) = crate::jpeg_note::embed(&bytes, &note) {
            bytes = with;
        }
        media::write_atomic(image_path, &bytes)?;
        let ledger = self.opts.ledger.as_deref().zip(input_sha256);
        if let Some((dir, input)) = ledger.filter(|_| bytes.starts_with(&[0xFF, 0xD8])) {
            // Without its entry the node signs no receipt for the frame, and it is not uploaded.
            let entry = fogd_vision_proto::ledger::Entry {
                input_sha256: input.to_string(),
                report: String::from_utf8_lossy(&note).into_owned(),
                zones: zones.to_vec(),
            };
            if let Err(e) = crate::ledger::record(dir, &bytes, &entry) {
                tracing::warn!(frame = %image_path.display(), "not in the ledger (no receipt): {e}");
            }
        }
        t.encode += s.elapsed();
        report.timings_ms = Some(StageMs::from(&*t));
        let json = serde_json::to_vec_pretty(report).map_err(|e| VisionError::Other(e.to_string()))?;
        media::write_atomic(&image_path.with_extension("json"), &json)?;
        Ok(())
    }
}
