//! The detector's options on the command line, shared by `anonymize`, `detect-masks` and
//! `bench anonymize`.

use std::path::PathBuf;

use crate::detect::{DetectorKind, DetectorOptions};
use crate::models::Precision;
use crate::Backend;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Face detector.
    #[arg(long, value_enum, default_value_t = DetectorKind::Centerface)]
    pub detector: DetectorKind,
    /// Detection score threshold (default: CenterFace 0.1 to redact, 0.2 to count and judge
    /// masks; UltraFace 0.7).
    #[arg(long)]
    pub thresh: Option<f32>,
    /// CenterFace: the longer side of the image the detector sees (larger: smaller faces, slower).
    #[arg(long, default_value_t = fogd_vision_proto::receipt::policy::CENTERFACE_SCALE)]
    pub scale: u32,
    /// CenterFace: on frames over --scale, a second pass at up to this size for small faces (0: off).
    #[arg(long, default_value_t = crate::detect::DEFAULT_FINE_SIZE)]
    pub fine_scale: u32,
    /// Also detect on N x N overlapping tiles (2 or 3): N*N + 1 detector runs a frame.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub tiles: u32,
    /// Inference backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// fp32 (the same faces on every CPU) or int8 (faster, less memory; scores move with the
    /// CPU's int8 kernels). The OpenCV backend always runs fp32.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Video frames in inference at once, each on cores / N threads (default: 2 from 2 cores). 1
    /// saves a copy of the models' working memory (~50 MB) at 20-30% more time on 2 cores.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub in_flight: Option<u32>,
    /// Folder of the model files (default: FOGD_MODELS, the install's share folder, ./models).
    #[arg(long)]
    pub models: Option<PathBuf>,
}

impl DetectArgs {
    /// With `--in-flight` (or its default) sessions.
    pub(crate) fn options(&self) -> DetectorOptions {
        self.options_for(
            self.in_flight
                .map_or_else(crate::default_in_flight, |n| n as usize),
        )
    }

    /// With `sessions` sessions, each on its share of the cores.
    pub(crate) fn options_for(&self, sessions: usize) -> DetectorOptions {
        DetectorOptions {
            kind: self.detector,
            threshold: self.thresh,
            input_size: self.scale,
            fine_size: self.fine_scale,
            backend: self.backend,
            precision: self.precision,
            sessions,
            threads: (crate::cores() / sessions).max(1),
            tiles: self.tiles,
        }
    }
}
