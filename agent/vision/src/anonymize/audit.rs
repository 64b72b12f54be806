//! The live privacy check (`privacy.audit_every`): one redacted frame in N is searched again by
//! the other detector than the one that found the faces to redact, and what it still finds goes
//! into the frame's report (and so its receipt, the node's counters and the status page).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use fogd_vision_proto::receipt::Audit;
use opencv::core::Mat;

use crate::anonymize::{AnonymizeOptions, Timings};
use crate::detect::{Detector, DetectorKind, DetectorOptions};
use crate::Result;

/// Frames this process redacted with an auditor: one in `every` is audited. Kept across
/// requests, so the warm worker audits one frame in N of the whole stream.
static TURN: AtomicU64 = AtomicU64::new(0);

pub struct Auditor {
    detector: Detector,
    every: u64,
}

impl Auditor {
    /// The other model than the anonymiser's, fp32; none when `audit_every` is 0.
    pub fn load(opts: &AnonymizeOptions) -> Result<Option<Auditor>> {
        if opts.audit_every == 0 {
            return Ok(None);
        }
        let kind = match opts.detector.kind {
            DetectorKind::Centerface => DetectorKind::Ultraface,
            DetectorKind::Ultraface => DetectorKind::Centerface,
        };
        // Its own settings, the model's defaults: not the ones the anonymiser was given (a
        // request that blinds the anonymiser, `--scale 32`, must not blind its check).
        let o = DetectorOptions {
            kind,
            backend: opts.detector.backend,
            threads: opts.detector.threads,
            sessions: opts.detector.sessions,
            ..DetectorOptions::default()
        };
        Ok(Some(Auditor {
            detector: Detector::load(&o, opts.models_dir.as_deref())?,
            every: opts.audit_every,
        }))
    }

    /// The check of a redacted frame, when it is its turn. A failure of the check leaves the
    /// frame as it is, unaudited (the log says so).
    pub fn check(&self, img: &Mat, t: &mut Timings) -> Option<Audit> {
        if !TURN.fetch_add(1, Ordering::Relaxed).is_multiple_of(self.every) {
            return None;
        }
        let s = Instant::now();
        let found = self.detector.detect(img);
        t.detect += s.elapsed();
        match found {
            Ok(faces) => {
                if !faces.is_empty() {
                    tracing::warn!(faces = faces.len(), "privacy audit: faces found after redaction");
                }
                Some(Audit {
                    detector: format!("{:?}", self.detector.kind).to_lowercase(),
                    faces_left: faces.len(),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "privacy audit failed: the frame is not audited");
                None
            }
        }
    }
}
