//! Reading images and sampling videos (anything libav opens: files and RTSP/HTTP URLs; the
//! decoding itself is in `libav`). Every failure names the file and what went wrong; a video
//! that breaks off keeps the frames before the break and says where it stopped.

use std::path::PathBuf;
use std::time::Duration;

use opencv::core::Mat;

use super::{io_err, Result, VisionError};

use crate::image::bad;
pub use crate::image::{
    decode_image, encode_image, is_image, read_image, write_atomic, write_image, MAX_PIXELS,
};

pub mod libav;

pub use libav::is_stream_url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// The frame at each timestamp, decoded from the keyframe at or before it.
    #[default]
    Exact,
    /// The first keyframe at or after each timestamp: only those keyframes are decoded.
    Keyframes,
}

pub struct SampledFrame {
    /// 1-based, as ffmpeg's `img%d.jpg`.
    pub index: usize,
    pub timestamp_s: f64,
    pub image: Mat,
    pub decode: Duration,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VideoInfo {
    pub width: i32,
    pub height: i32,
    pub fps: f64,
    /// None for live streams.
    pub duration_s: Option<f64>,
    pub codec: String,
}

/// Where a video broke off, when it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Truncated {
    pub at_s: f64,
    pub reason: String,
}

pub struct VideoReader {
    source: String,
    src: Option<libav::Source>,
    pub info: VideoInfo,
    /// Where the consumer of each frame gives its pixels back.
    pub pool: FramePool,
    /// Decoders at once for exact frames of a file (each takes whole GOPs).
    pub decoders: usize,
}

/// Pixel buffers of frames already handled, for the decoder to fill again: a 1080p frame is
/// 6 MB of fresh pages to fault in otherwise (`vision::tune_allocator` has glibc give large
/// blocks back to the system when freed).
#[derive(Clone, Default)]
pub struct FramePool(std::sync::Arc<std::sync::Mutex<Vec<Mat>>>);

impl FramePool {
    /// Keeps a frame's buffer for a later frame (a few at most: one per frame in flight, one
    /// per decoder). Nothing else may hold a view of it.
    pub fn give(&self, m: Mat) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < 8 {
                v.push(m);
            }
        }
    }

    pub(crate) fn take(&self) -> Mat {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default()
    }
}

impl VideoReader {
    pub fn open(source: &str) -> Result<VideoReader> {
        let path = PathBuf::from(source);
        if !is_stream_url(source) {
            let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
            if meta.len() == 0 {
                return Err(bad(&path, "zero bytes: not a video"));
            }
        }
        let src = libav::Source::open(source)?;
        Ok(VideoReader {
            source: source.to_string(),
            info: src.info.clone(),
            src: Some(src),
            pool: FramePool::default(),
            decoders: crate::default_decoders(),
        })
    }

    /// Calls `f` with one frame every `every`, decoding on other threads (the next frames are
    /// decoded while `f` works on this one). Exact frames of a file may come out of order: each
    /// carries its number. Returns where the video broke off, if it did. A reader samples once.
    pub fn sample(
        &mut self,
        every: Duration,
        sampling: Sampling,
        f: &mut dyn FnMut(SampledFrame) -> Result<()>,
    ) -> Result<Option<Truncated>> {
        let every_s = every.as_secs_f64().max(1e-3);
        let src = self
            .src
            .take()
            .ok_or_else(|| VisionError::Other(format!("{}: already sampled", self.source)))?;
        let live = self.info.duration_s.is_none() && is_stream_url(&self.source);
        let (pool, decoders) = (&self.pool, self.decoders);
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<SampledFrame>(1);
            let decoder = scope.spawn(move || {
                if live {
                    libav::sample_live_into(src, every_s, pool, &tx)
                } else if sampling == Sampling::Keyframes {
                    libav::sample_keyframes(src, every_s, pool, &tx)
                } else {
                    libav::sample_file(src, every_s, decoders, pool, &tx)
                }
            });
            let mut result = Ok(());
            for frame in rx.iter() {
                if let Err(e) = f(frame) {
                    result = Err(e);
                    break;
                }
            }
            drop(rx);
            let decoded = decoder
                .join()
                .map_err(|_| VisionError::Other("the decoder thread panicked".into()))?;
            result?;
            decoded
        })
    }
}
