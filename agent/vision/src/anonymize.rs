//! The anonymiser: per frame, detect faces, classify masks on the raw crops, redact, encode,
//! write the frame and its JSON sidecar. Videos become `<out>/<video name>/img<N>.jpg` (the
//! names of the paper's workflow), images `<out>/<name>.<ext>`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use opencv::core::Mat;

use super::detect::{Detector, DetectorOptions, FaceBox};
use super::masks::MaskClassifier;
use super::media::{self, Sampling, Truncated, VideoReader};
use super::plates::PlateDetector;
use super::redact::{self, RedactOptions};
use super::zones::Zone;
use super::{Result, VisionError};

mod audit;
mod written;
pub use crate::report::{
    counts_of, sidecar_faces, Counts, FaceReport, Found, FrameReport, InputSummary, PlateReport, StageMs,
    Timings,
};

/// What happens to a frame whose detection failed: it is never written as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Write nothing for the frame.
    #[default]
    Drop,
    /// Write the frame redacted whole.
    RedactAll,
}

#[derive(Debug, Clone)]
pub struct AnonymizeOptions {
    pub detector: DetectorOptions,
    pub redact: RedactOptions,
    pub every: Duration,
    pub sampling: Sampling,
    /// Decoders at once for the exact frames of a video file (default: one per core, at most 8).
    pub decoders: usize,
    pub classify_masks: bool,
    /// Also find and redact licence plates, at this threshold (None: the model's default).
    pub plates: Option<Option<f32>>,
    pub on_failure: OnFailure,
    pub jpeg_quality: i32,
    pub models_dir: Option<PathBuf>,
    /// The live privacy check on one frame in this many (0: off).
    pub audit_every: u64,
    /// Where the worker records each frame it writes (`fogd_vision_proto::ledger`).
    pub ledger: Option<PathBuf>,
}

impl Default for AnonymizeOptions {
    fn default() -> Self {
        AnonymizeOptions {
            detector: DetectorOptions::default(),
            redact: RedactOptions::default(),
            every: Duration::from_secs(5),
            sampling: Sampling::Exact,
            decoders: super::default_decoders(),
            classify_masks: false,
            plates: None,
            on_failure: OnFailure::Drop,
            jpeg_quality: 90,
            models_dir: None,
            audit_every: 0,
            ledger: None,
        }
    }
}

pub struct Anonymizer {
    pub opts: AnonymizeOptions,
    detector: Detector,
    classifier: Option<MaskClassifier>,
    plates: Option<PlateDetector>,
    /// The live check (`audit_every`).
    auditor: Option<audit::Auditor>,
}

impl Anonymizer {
    pub fn new(opts: AnonymizeOptions) -> Result<Anonymizer> {
        let detector = Detector::load(&opts.detector, opts.models_dir.as_deref())?;
        let classifier = if opts.classify_masks {
            Some(MaskClassifier::load(
                opts.models_dir.as_deref(),
                opts.detector.backend,
                opts.detector.precision,
                opts.detector.threads,
                // One per frame in flight: shared, the workers queued for it (bench medians in one
                // series: 1.03 s against 0.86 s), for about 12 MB each.
                opts.detector.sessions,
            )?)
        } else {
            None
        };
        let auditor = audit::Auditor::load(&opts)?;
        let d = &opts.detector;
        let plates = opts
            .plates
            .map(|t| PlateDetector::load(t, opts.models_dir.as_deref(), d.backend, d.threads, d.sessions))
            .transpose()?;
        Ok(Anonymizer {
            opts,
            detector,
            classifier,
            plates,
            auditor,
        })
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Blacks out `zones`, then detects, classifies and redacts one frame in place. Err only when
    /// the frame must not be written (a zone could not be drawn, or detection failed and the
    /// policy is to drop it).
    pub fn process(&self, img: &mut Mat, zones: &[Zone], t: &mut Timings) -> Result<Found> {
        let started = Instant::now();
        // Before the detector: a face inside a zone is neither counted nor judged.
        crate::zones::black_out(img, zones)?;
        let found = self.detector.detect(img).and_then(|faces| {
            let plates = self.plates.as_ref().map(|p| p.detect(img)).transpose()?;
            Ok((faces, plates.unwrap_or_default()))
        });
        let (faces, plates) = match found {
            Ok(f) => f,
            Err(e) => {
                t.detect += started.elapsed();
                return match self.opts.on_failure {
                    OnFailure::Drop => Err(e),
                    OnFailure::RedactAll => {
                        tracing::warn!(error = %e, "detection failed: the frame is redacted whole");
                        let r = Instant::now();
                        redact::redact_all(img, self.opts.redact.mode)?;
                        t.redact += r.elapsed();
                        Ok(Found::whole())
                    }
                };
            }
        };
        t.detect += started.elapsed();
        // Every face found is redacted; only the surer ones are judged and counted.
        let min = self.detector.count_min();
        let sure: Vec<FaceBox> = faces.iter().filter(|f| f.score >= min).copied().collect();
        let mut verdicts = vec![None; faces.len()];
        if let (Some(c), false) = (&self.classifier, sure.is_empty()) {
            let s = Instant::now();
            // A classifier failure leaves the faces unjudged; they are still redacted.
            match c.classify(img, &sure) {
                Ok(v) => {
                    let mut it = v.into_iter();
                    for (slot, f) in verdicts.iter_mut().zip(&faces) {
                        if f.score >= min {
                            *slot = it.next().flatten();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "mask classification failed"),
            }
            t.classify += s.elapsed();
        }
        let s = Instant::now();
        let plate_boxes: Vec<FaceBox> = plates.iter().map(|p| p.as_box()).collect();
        let redacted = redact::redact(img, &faces, &self.opts.redact)
            .and_then(|()| redact::redact(img, &plate_boxes, &redact::plate_options(self.opts.redact.mode)));
        if let Err(e) = redacted {
            // Never write a frame whose faces may be left: redact it whole, or drop it.
            redact::redact_all(img, self.opts.redact.mode).map_err(|_| e)?;
            t.redact += s.elapsed();
            return Ok(Found::whole());
        }
        t.redact += s.elapsed();
        let reports = faces
            .iter()
            .zip(verdicts)
            .map(|(f, mask)| FaceReport {
                bbox: f.as_array().map(|v| (v * 10.0).round() / 10.0),
                score: (f.score * 1000.0).round() / 1000.0,
                mask,
            })
            .collect();
        let plates = plates.iter().map(PlateReport::of).collect();
        Ok(Found {
            faces: reports,
            plates,
            status: "ok",
        })
    }

    /// Anonymises one input (an image, a video file or a stream URL) into `out`. `progress` is
    /// called after each frame with (frames done, frames expected if known).
    pub fn run(
        &self,
        input: &str,
        out: &Path,
        zones: &[Zone],
        progress: &mut dyn FnMut(usize, Option<usize>),
    ) -> Result<InputSummary> {
        let path = Path::new(input);
        let image = !media::is_stream_url(input) && media::is_image(path);
        // A picture is read once, then hashed and decoded (a file read twice can be swapped in
        // between, and the frame recorded as made from a raw item it was not made from).
        let bytes = if image {
            Some(std::fs::read(path).map_err(|e| VisionError::Io {
                path: path.to_path_buf(),
                source: e,
            })?)
        } else {
            None
        };
        // What the frames are made from, for the ledger (a stream has no file to name).
        let input_sha = match (&self.opts.ledger, &bytes) {
            (Some(_), Some(b)) => Some(fogd_vision_proto::ledger::input_sha256_of(b)),
            (Some(_), None) if !media::is_stream_url(input) => {
                fogd_vision_proto::ledger::input_sha256(path).ok()
            }
            _ => None,
        };
        let mut sum = InputSummary {
            input: input.to_string(),
            ..Default::default()
        };
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|s| !s.is_empty() && !s.starts_with('.'))
            .unwrap_or("stream")
            .to_string();
        if let Some(bytes) = bytes {
            let s = Instant::now();
            let mut img = media::decode_image(path, &bytes)?;
            sum.timings.decode += s.elapsed();
            let ext = match path
                .extension()
                .and_then(|e| e.to_str())
                .map(|e| e.to_ascii_lowercase())
            {
                Some(e) if e == "png" || e == "jpeg" || e == "jpg" => e,
                _ => "jpg".to_string(),
            };
            let mut t = Timings::default();
            match self.process(&mut img, zones, &mut t) {
                Ok(found) => {
                    let mut report = self.report(input, &img, found, zones.len());
                    report.audit = self.auditor.as_ref().and_then(|a| a.check(&img, &mut t));
                    let dest = out.join(format!("{stem}.{ext}"));
                    self.write(&dest, &img, &mut report, (zones, input_sha.as_deref()), &mut t)?;
                    sum.add_frame(&report, dest);
                }
                Err(e) => {
                    tracing::warn!(input, error = %e, "face detection failed: the image is dropped");
                    sum.frames_dropped += 1;
                }
            }
            sum.timings.add(&t);
            progress(1, Some(1));
            return Ok(sum);
        }
        let mut reader = VideoReader::open(input)?;
        reader.decoders = self.opts.decoders.max(1);
        let expected = reader
            .info
            .duration_s
            .map(|d| (d / self.opts.every.as_secs_f64().max(1e-3)).ceil() as usize);
        let dir = out.join(&stem);
        // Frames go to as many workers as the models have sessions; their results are taken
        // in capture order.
        let workers = self.detector.sessions().max(1);
        let mut done = 0usize;
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<media::SampledFrame>(workers);
        let job_rx = std::sync::Mutex::new(job_rx);
        let truncated = std::thread::scope(|scope| -> Result<Option<Truncated>> {
            let (res_tx, res_rx) = std::sync::mpsc::channel::<FrameDone>();
            for _ in 0..workers {
                let (job_rx, res_tx, dir, pool) = (&job_rx, res_tx.clone(), &dir, reader.pool.clone());
                let input_sha = input_sha.as_deref();
                scope.spawn(move || loop {
                    let next = job_rx.lock().ok().and_then(|rx| rx.recv().ok());
                    let Some(f) = next else { break };
                    if res_tx
                        .send(self.frame(input, dir, (zones, input_sha), f, &pool))
                        .is_err()
                    {
                        break;
                    }
                });
            }
            drop(res_tx);
            let mut pending = std::collections::BTreeMap::new();
            let mut next_index = 1usize;
            // Frames come as decoded, out of order, and are summed in order. One that never comes
            // (its GOP could not be decoded) holds the later ones back until the end (`None`).
            let mut take = |r: Option<FrameDone>, sum: &mut InputSummary, done: &mut usize| -> Result<()> {
                let ended = r.is_none();
                if let Some(r) = r {
                    pending.insert(r.index, r);
                }
                loop {
                    let first = pending.first_key_value().map(|(i, _)| *i);
                    let Some((i, r)) = first
                        .filter(|i| *i == next_index || ended)
                        .and_then(|_| pending.pop_first())
                    else {
                        break;
                    };
                    next_index = i + 1;
                    match r.result? {
                        Some((report, dest)) => sum.add_frame(&report, dest),
                        None => sum.frames_dropped += 1,
                    }
                    sum.timings.add(&r.timings);
                    *done += 1;
                    progress(*done, expected);
                }
                Ok(())
            };
            let truncated = reader.sample(self.opts.every, self.opts.sampling, &mut |f| {
                job_tx
                    .send(f)
                    .map_err(|_| VisionError::Other("the frame workers stopped".into()))?;
                while let Ok(r) = res_rx.try_recv() {
                    take(Some(r), &mut sum, &mut done)?;
                }
                Ok(())
            });
            drop(job_tx);
            let truncated = truncated?;
            for r in res_rx.iter() {
                take(Some(r), &mut sum, &mut done)?;
            }
            take(None, &mut sum, &mut done)?;
            Ok(truncated)
        })?;
        if let Some(tr) = &truncated {
            tracing::warn!(input, at_s = tr.at_s, "{}", tr.reason);
        }
        sum.truncated = truncated;
        Ok(sum)
    }
}

/// One video frame through a worker: its report and file, None when its detection failed (the
/// frame is dropped), Err when it could not be written.
struct FrameDone {
    index: usize,
    timings: Timings,
    result: Result<Option<(FrameReport, PathBuf)>>,
}

impl Anonymizer {
    /// Gives the frame's buffer back to `pool` once written.
    fn frame(
        &self,
        input: &str,
        dir: &Path,
        (zones, input_sha256): (&[Zone], Option<&str>),
        mut f: media::SampledFrame,
        pool: &media::FramePool,
    ) -> FrameDone {
        let mut timings = Timings {
            decode: f.decode,
            ..Default::default()
        };
        let result = match self.process(&mut f.image, zones, &mut timings) {
            Ok(found) => {
                let mut report = self.report(input, &f.image, found, zones.len());
                report.audit = self
                    .auditor
                    .as_ref()
                    .and_then(|a| a.check(&f.image, &mut timings));
                report.frame = Some(f.index);
                report.timestamp_s = Some((f.timestamp_s * 1000.0).round() / 1000.0);
                let dest = dir.join(format!("img{}.jpg", f.index));
                self.write(&dest, &f.image, &mut report, (zones, input_sha256), &mut timings)
                    .map(|()| Some((report, dest)))
            }
            Err(e) => {
                tracing::warn!(input, frame = f.index, error = %e, "face detection failed: frame dropped");
                Ok(None)
            }
        };
        pool.give(f.image);
        FrameDone {
            index: f.index,
            timings,
            result,
        }
    }
}

#[cfg(test)]
mod tests {
    use opencv::core::{Scalar, CV_8UC4};
    use opencv::prelude::*;

    use super::*;

    fn anonymizer(on_failure: OnFailure) -> Anonymizer {
        Anonymizer::new(AnonymizeOptions {
            on_failure,
            ..AnonymizeOptions::default()
        })
        .unwrap()
    }

    /// A 4-channel frame makes the detector fail (it takes 3): the frame must never come out
    /// as it went in.
    fn failing_frame() -> Mat {
        let mut m = Mat::new_rows_cols_with_default(64, 64, CV_8UC4, Scalar::all(0.0)).unwrap();
        for (i, b) in m.data_bytes_mut().unwrap().iter_mut().enumerate() {
            *b = (i * 37 % 251) as u8;
        }
        m
    }

    #[test]
    fn a_frame_whose_detection_failed_is_dropped_by_default() {
        let a = anonymizer(OnFailure::Drop);
        let mut img = failing_frame();
        assert!(a.process(&mut img, &[], &mut Timings::default()).is_err());
    }

    #[test]
    fn a_frame_whose_detection_failed_is_redacted_whole_when_asked() {
        let a = anonymizer(OnFailure::RedactAll);
        let mut img = failing_frame();
        let before = img.data_bytes().unwrap().to_vec();
        let found = a.process(&mut img, &[], &mut Timings::default()).unwrap();
        assert!(found.faces.is_empty());
        assert_eq!(found.status, "redacted-whole");
        let after = img.data_bytes().unwrap();
        let same = before.iter().zip(after).filter(|(a, b)| a == b).count();
        assert!(
            same < before.len() / 10,
            "{same} of {} bytes unchanged",
            before.len()
        );
    }
}
