//! Edge vision: frames out of videos and images, faces found (CenterFace or UltraFace on ONNX
//! Runtime, OpenCV DNN as the fallback), masks judged on the raw face crops, faces blurred before
//! anything is written. Nothing here writes an unblurred frame: a frame whose detection failed is
//! dropped or blurred whole (`OnFailure`).

pub mod anonymize;
pub mod bench;
pub mod boxes;
pub mod cli;
pub mod detect;
pub mod engine;
pub mod image;
pub mod ledger;
pub use fogd_vision_proto::jpeg_note;
pub mod masks;
pub mod media;
pub mod models;
pub mod plates;
pub mod redact;
pub mod report;
pub mod sample;
pub mod zones;

use std::path::PathBuf;

pub use anonymize::{AnonymizeOptions, Anonymizer, FrameReport, OnFailure};
pub use detect::{Detector, DetectorKind, FaceBox};
pub use engine::Backend;

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "model {}: not found; looked in {looked} (give --models, set FOGD_MODELS, or models_dir in fogd.yaml)",
        name
    )]
    ModelMissing { name: String, looked: String },
    #[error(
        "model {}: SHA-256 {found} is not the expected {expected}: the file is corrupt or not the model \
         fogd was built for; copy it again from fogd's models/",
        path.display()
    )]
    ModelChecksum {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("model {}: {message}", path.display())]
    ModelLoad { path: PathBuf, message: String },
    #[error("inference ({model}): {message}")]
    Inference { model: String, message: String },
    #[error("{}: {reason}", path.display())]
    BadInput { path: PathBuf, reason: String },
    #[error("opencv: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = VisionError> = std::result::Result<T, E>;

/// The CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Decoders for a video's exact frames unless told: one per core, at most 8 (each holds a
/// decoder's reference pictures: 10-20 MB at 1080p; on the 2-core bench box 1, 2, 4 and 8 of
/// them peaked at 235, 256, 298 and 324 MB).
pub fn default_decoders() -> usize {
    cores().min(8)
}

/// Video frames in inference at once unless told: two where there are two cores or more, each
/// worker then running its models on `cores / 2` threads. On the 2-core bench box (medians of
/// interleaved invocations): 0.98-1.23 s against 1.11-1.53 s for one frame on both cores, whose
/// short runs (the classifier's above all) leave a core waiting at every operator.
pub fn default_in_flight() -> usize {
    cores().min(2)
}

/// Large buffers (1080p frames and their copies, several MB each) are given back to the system
/// when freed, instead of glibc raising its mmap threshold and keeping them in its heaps: peak
/// RSS of the bench 269 MB against 300 MB, at the same speed. Call before threads start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a glibc parameter; called at start, before any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> VisionError + '_ {
    move |source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}
