//! What an item must be to be taken: a camera name that is one path segment, a camera within
//! `ingest.max_cameras`, a payload of its kind (a whole JPEG of sane size, a video file) under
//! its bound. What fails is a `Reject`, counted by its reason.

use std::collections::BTreeSet;

use super::Kind;
use crate::runtime::{Result, Runtime};

/// Why an item was refused; the names are the counters' (`ingest_rejected_<reason>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    BadCamera(String),
    Empty,
    TooLarge {
        size: usize,
        max: usize,
    },
    NotJpeg,
    /// The JPEG's header says more pixels than a camera frame has (a decompression bomb).
    TooManyPixels {
        width: usize,
        height: usize,
        max: u64,
    },
    /// No end-of-image marker: the frame was cut off.
    Truncated,
    NotVideo,
    UnknownTopic,
    /// A new camera, with `ingest.max_cameras` known already.
    TooManyCameras {
        max: u64,
    },
}

/// A frame's pixels at most (8K UHD is 33 Mpx): what the header declares is checked before
/// anything decodes it.
pub const MAX_FRAME_PIXELS: u64 = 40_000_000;

impl Reject {
    pub fn counter(&self) -> &'static str {
        match self {
            Reject::BadCamera(_) => "ingest_rejected_bad_camera",
            Reject::Empty => "ingest_rejected_empty",
            Reject::TooLarge { .. } => "ingest_rejected_too_large",
            Reject::NotJpeg => "ingest_rejected_not_jpeg",
            Reject::TooManyPixels { .. } => "ingest_rejected_too_many_pixels",
            Reject::Truncated => "ingest_rejected_truncated",
            Reject::NotVideo => "ingest_rejected_not_video",
            Reject::UnknownTopic => "ingest_rejected_unknown_topic",
            Reject::TooManyCameras { .. } => "ingest_rejected_too_many_cameras",
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reject::BadCamera(why) => write!(f, "bad camera name: {why}"),
            Reject::Empty => write!(f, "empty payload"),
            Reject::TooLarge { size, max } => write!(f, "payload of {size} bytes, over the limit of {max}"),
            Reject::NotJpeg => write!(
                f,
                "payload is not a JPEG image (no FF D8 FF start, or no readable header)"
            ),
            Reject::TooManyPixels { width, height, max } => write!(
                f,
                "JPEG header declares {width}x{height} pixels, over the limit of {max}"
            ),
            Reject::Truncated => write!(f, "JPEG is cut off (no end-of-image marker)"),
            Reject::NotVideo => write!(
                f,
                "payload is not a video file (MP4/MOV, Matroska/WebM, MPEG-TS or AVI)"
            ),
            Reject::UnknownTopic => write!(f, "topic matches no configured camera topic"),
            Reject::TooManyCameras { max } => write!(
                f,
                "a new camera, and {max} are known already (ingest.max_cameras)"
            ),
        }
    }
}

/// A camera name is one path segment fogd can use as a folder and an object key part.
pub fn check_camera(name: &str) -> std::result::Result<(), Reject> {
    match crate::config::camera_problem(name) {
        Some(why) => Err(Reject::BadCamera(why)),
        None => Ok(()),
    }
}

/// Checks a payload; returns the file extension it will be stored with.
pub fn check_payload(kind: Kind, bytes: &[u8], max: usize) -> std::result::Result<&'static str, Reject> {
    if bytes.is_empty() {
        return Err(Reject::Empty);
    }
    if bytes.len() > max {
        return Err(Reject::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    match kind {
        Kind::Frame => check_jpeg(bytes).map(|()| "jpg"),
        Kind::Clip => video_extension(bytes).ok_or(Reject::NotVideo),
    }
}

/// A whole JPEG of sane size: its header read (not its pixels), its end marker present.
fn check_jpeg(bytes: &[u8]) -> std::result::Result<(), Reject> {
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(Reject::NotJpeg);
    }
    let size = imagesize::blob_size(bytes).map_err(|_| Reject::NotJpeg)?;
    if (size.width as u64) * (size.height as u64) > MAX_FRAME_PIXELS {
        return Err(Reject::TooManyPixels {
            width: size.width,
            height: size.height,
            max: MAX_FRAME_PIXELS,
        });
    }
    // Some cameras pad after the marker: look for it near the end.
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(Reject::Truncated);
    }
    Ok(())
}

/// The container of a video file by its first bytes.
fn video_extension(b: &[u8]) -> Option<&'static str> {
    if b.len() >= 12 && &b[4..8] == b"ftyp" {
        return Some(if &b[8..10] == b"qt" { "mov" } else { "mp4" });
    }
    if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("mkv");
    }
    if b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"AVI " {
        return Some("avi");
    }
    if b.len() > 376 && b[0] == 0x47 && b[188] == 0x47 && b[376] == 0x47 {
        return Some("ts");
    }
    None
}

/// The cameras a batch may bring: the known ones, and new ones while under the bound.
#[derive(Default)]
pub(super) struct Cameras {
    admitted: BTreeSet<String>,
    /// How many the journal knew, once asked, plus the new ones of this batch.
    count: Option<u64>,
}

impl Cameras {
    pub(super) fn admit(&mut self, rt: &Runtime, camera: &str) -> Result<bool> {
        if self.admitted.contains(camera) || rt.journal.camera_known(camera)? {
            self.admitted.insert(camera.to_string());
            return Ok(true);
        }
        let count = match self.count {
            Some(n) => n,
            None => rt.journal.camera_count()?,
        };
        if count >= rt.cfg.ingest.max_cameras {
            self.count = Some(count);
            return Ok(false);
        }
        self.count = Some(count + 1);
        self.admitted.insert(camera.to_string());
        Ok(true)
    }
}
