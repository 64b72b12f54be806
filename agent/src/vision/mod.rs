//! Edge vision: frames out of videos and images, faces found (CenterFace or UltraFace on ONNX
//! Runtime, OpenCV DNN as the fallback), masks judged on the raw face crops, faces blurred before
//! anything is written. Nothing here writes an unblurred frame: a frame whose detection failed is
//! dropped or blurred whole (`OnFailure`).

pub mod anonymize;
pub mod bench;
pub mod detect;
pub mod engine;
pub mod masks;
pub mod media;
pub mod models;
mod onnx;
pub mod redact;
pub mod sample;

use std::path::PathBuf;

pub use anonymize::{AnonymizeOptions, Anonymizer, FrameReport, OnFailure};
pub use detect::{Detector, DetectorKind, FaceBox};
pub use engine::Backend;

#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "model {}: not found; looked in {looked} (set FOGD_MODELS or models_dir)",
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

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> VisionError + '_ {
    move |source| VisionError::Io {
        path: path.to_path_buf(),
        source,
    }
}
