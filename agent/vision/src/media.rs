//! Reading images and sampling videos (anything OpenCV's FFmpeg backend opens: files and RTSP
//! URLs). Every failure names the file and what went wrong; a video that breaks off keeps the
//! frames before the break and says where it stopped.

use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;

use super::{io_err, Result, VisionError};

use crate::image::bad;
pub use crate::image::{
    decode_image, encode_image, is_image, read_image, write_atomic, write_image, MAX_PIXELS,
};

pub fn is_stream_url(s: &str) -> bool {
    [
        "rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://",
    ]
    .iter()
    .any(|p| s.starts_with(p))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sampling {
    /// The frame at each timestamp (read on, or seek and decode from the keyframe before it).
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
    cap: videoio::VideoCapture,
    pub info: VideoInfo,
    /// Where the consumer of each frame gives its pixels back.
    pub pool: FramePool,
}

/// Pixel buffers of frames already handled, for the decoder to fill again: a 1080p frame is
/// 6 MB of fresh pages to fault in otherwise (`vision::tune_allocator` has glibc give large
/// blocks back to the system when freed).
#[derive(Clone, Default)]
pub struct FramePool(std::sync::Arc<std::sync::Mutex<Vec<Mat>>>);

impl FramePool {
    /// Keeps a frame's buffer for a later frame (a few at most: one per frame in flight, one
    /// being decoded). Nothing else may hold a view of it.
    pub fn give(&self, m: Mat) {
        if let Ok(mut v) = self.0.lock() {
            if v.len() < 4 {
                v.push(m);
            }
        }
    }

    fn take(&self) -> Mat {
        self.0.lock().ok().and_then(|mut v| v.pop()).unwrap_or_default()
    }
}

fn fourcc_name(v: f64) -> String {
    let c = v as u32;
    let s: String = (0..4)
        .map(|i| char::from(((c >> (8 * i)) & 0xff) as u8))
        .collect();
    s.trim_matches(char::from(0)).to_string()
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
        let cap = videoio::VideoCapture::from_file(source, videoio::CAP_FFMPEG)
            .map_err(|e| bad(&path, format!("FFmpeg could not open it: {}", e.message)))?;
        if !cap.is_opened()? {
            return Err(bad(
                &path,
                "FFmpeg could not open it as a video (not a video, an unknown container, or cut off \
                 before its index)",
            ));
        }
        let fps = cap.get(videoio::CAP_PROP_FPS)?;
        let frames = cap.get(videoio::CAP_PROP_FRAME_COUNT)?;
        let info = VideoInfo {
            width: cap.get(videoio::CAP_PROP_FRAME_WIDTH)? as i32,
            height: cap.get(videoio::CAP_PROP_FRAME_HEIGHT)? as i32,
            fps,
            duration_s: (frames > 0.0 && fps > 0.0).then(|| frames / fps),
            codec: fourcc_name(cap.get(videoio::CAP_PROP_FOURCC)?),
        };
        if info.width <= 0 || info.height <= 0 {
            return Err(bad(
                &path,
                format!("no video stream that FFmpeg can decode (codec '{}')", info.codec),
            ));
        }
        if info.width as i64 * info.height as i64 > MAX_PIXELS {
            return Err(bad(
                &path,
                format!("{}x{} frames are over the limit", info.width, info.height),
            ));
        }
        Ok(VideoReader {
            source: source.to_string(),
            cap,
            info,
            pool: FramePool::default(),
        })
    }

    fn pos_s(&self) -> f64 {
        self.cap.get(videoio::CAP_PROP_POS_MSEC).unwrap_or(0.0) / 1000.0
    }

    /// Calls `f` with one frame every `every`, decoding on another thread (the next frame is
    /// decoded while `f` works on this one). Returns where the video broke off, if it did.
    pub fn sample(
        &mut self,
        every: Duration,
        sampling: Sampling,
        f: &mut dyn FnMut(SampledFrame) -> Result<()>,
    ) -> Result<Option<Truncated>> {
        let every_s = every.as_secs_f64().max(1e-3);
        let sampling = if sampling == Sampling::Keyframes && self.info.duration_s.is_none() {
            // A live source is read as it comes; a second connection for ffmpeg may be refused
            // (cameras limit their clients).
            tracing::info!(source = %self.source, "live stream: --keyframes ignored, frames are read as they come");
            Sampling::Exact
        } else {
            sampling
        };
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<SampledFrame>(1);
            let decoder = scope.spawn(move || match sampling {
                Sampling::Exact => self.decode_exact(every_s, &tx),
                Sampling::Keyframes => self.decode_keyframes(every_s, &tx),
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

    /// Exact frames through OpenCV: read on for short gaps, seek (by frame number, which OpenCV's
    /// FFmpeg backend makes exact) for long ones.
    fn decode_exact(&mut self, every_s: f64, tx: &SyncSender<SampledFrame>) -> Result<Option<Truncated>> {
        let path = PathBuf::from(&self.source);
        let fps = self.info.fps.max(1.0);
        let mut index = 0usize;
        let mut next_t = 0.0f64;
        let mut last_t = -1.0f64;
        let mut frame = self.pool.take();
        loop {
            if let Some(d) = self.info.duration_s {
                if next_t >= d - 0.5 / fps {
                    return Ok(None);
                }
            }
            let started = std::time::Instant::now();
            // Seeking decodes from the keyframe before the target; reading on decodes every
            // frame. Seek when the gap is longer than a typical camera GOP (2 s).
            let got = if self.info.duration_s.is_some() && index > 0 && next_t - last_t > 2.0 {
                self.cap
                    .set(videoio::CAP_PROP_POS_FRAMES, (next_t * fps).round())?;
                self.cap.read(&mut frame)? && !frame.empty()
            } else {
                let mut got = false;
                while self.cap.grab()? {
                    if self.pos_s() + 0.5 / fps >= next_t {
                        got = self.cap.retrieve(&mut frame, 0)? && !frame.empty();
                        break;
                    }
                }
                got
            };
            if !got {
                let at = last_t.max(0.0);
                return match self.info.duration_s {
                    _ if index == 0 => Err(bad(
                        &path,
                        format!("no frame could be decoded (codec '{}')", self.info.codec),
                    )),
                    Some(d) if next_t < d - 1.0 => Ok(Some(Truncated {
                        at_s: at,
                        reason: format!(
                            "no frame could be decoded at {next_t:.1} s of a stated {d:.1} s: the file is \
                             truncated or corrupt after {at:.1} s"
                        ),
                    })),
                    _ => Ok(None),
                };
            }
            let t = self.pos_s();
            index += 1;
            last_t = t;
            let sent = tx.send(SampledFrame {
                index,
                timestamp_s: t,
                image: std::mem::replace(&mut frame, self.pool.take()),
                decode: started.elapsed(),
            });
            if sent.is_err() {
                return Ok(None);
            }
            next_t = ((t / every_s).floor() + 1.0) * every_s;
        }
    }

    /// Keyframes only, read in this process through libav: packets are demuxed and only the
    /// keyframe chosen for each multiple of `every` (the first at or after it) is decoded, as a
    /// picture of its own. Keyframes in between are never decoded (the `ffmpeg` program's
    /// `-skip_frame nokey` decodes every one: 30 for the 12 wanted of a clip with a 2 s GOP,
    /// 1.1 s against 0.4 s here).
    fn decode_keyframes(&mut self, every_s: f64, tx: &SyncSender<SampledFrame>) -> Result<Option<Truncated>> {
        let path = PathBuf::from(&self.source);
        let av = |what: &str, e: ffmpeg_next::Error| bad(&path, format!("{what}: {e}"));
        // libav is opened on its own; OpenCV's handle is not needed any more.
        self.cap.release()?;
        ffmpeg_next::init().map_err(|e| av("libav", e))?;
        // Its messages would go to stderr; what matters is said in ours.
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
        let mut input = ffmpeg_next::format::input(&path).map_err(|e| av("libav could not open it", e))?;
        let (index, tb, start, params) = {
            let st = input
                .streams()
                .best(ffmpeg_next::media::Type::Video)
                .ok_or_else(|| bad(&path, "no video stream"))?;
            let start = match st.start_time() {
                ffmpeg_next::ffi::AV_NOPTS_VALUE => 0,
                s => s,
            };
            (st.index(), f64::from(st.time_base()), start, st.parameters())
        };
        let mut ctx = ffmpeg_next::codec::context::Context::from_parameters(params)
            .map_err(|e| av("codec parameters", e))?;
        // One picture at a time: frame threads would only add latency, and the detector has the
        // cores.
        ctx.set_threading(ffmpeg_next::threading::Config {
            kind: ffmpeg_next::threading::Type::Slice,
            count: 1,
            ..Default::default()
        });
        let mut decoder = ctx
            .decoder()
            .video()
            .map_err(|e| av(&format!("no decoder for codec '{}'", self.info.codec), e))?;
        let (w, h) = (decoder.width(), decoder.height());
        let mut scaler: Option<ffmpeg_next::software::scaling::Context> = None;
        // The converted picture, reused: it is copied into each frame's own Mat.
        let mut bgr = ffmpeg_next::frame::Video::empty();
        let (mut index_out, mut last_t, mut next_t) = (0usize, 0.0f64, 0.0f64);
        let mut failure: Option<String> = None;
        let mut read_errors = 0;
        let mut started = std::time::Instant::now();
        loop {
            let mut packet = ffmpeg_next::Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => read_errors = 0,
                Err(ffmpeg_next::Error::Eof) => break,
                Err(e) => {
                    // A damaged packet is skipped; a source that keeps failing has ended.
                    read_errors += 1;
                    if read_errors > 32 {
                        failure = Some(format!("reading stopped: {e}"));
                        break;
                    }
                    continue;
                }
            }
            if packet.stream() != index || !packet.is_key() {
                continue;
            }
            let Some(pts) = packet.pts().or(packet.dts()) else {
                continue;
            };
            let t = (pts - start) as f64 * tb;
            if t + 1e-6 < next_t {
                continue;
            }
            // The keyframe alone, then drained and reset: a decoder holds pictures back for
            // reordering until it is told no more packets come.
            let fed = decoder.send_packet(&packet).and_then(|()| decoder.send_eof());
            let mut frame = ffmpeg_next::frame::Video::empty();
            let mut got = None;
            if let Err(e) = fed {
                failure = Some(format!("keyframe at {t:.1} s: {e}"));
            }
            while decoder.receive_frame(&mut frame).is_ok() {
                got = Some(std::mem::replace(&mut frame, ffmpeg_next::frame::Video::empty()));
            }
            decoder.flush();
            let Some(frame) = got else {
                failure.get_or_insert_with(|| format!("keyframe at {t:.1} s could not be decoded"));
                continue;
            };
            let sc = match scaler.as_mut() {
                Some(sc) => sc,
                None => scaler.insert(
                    ffmpeg_next::software::scaling::Context::get(
                        frame.format(),
                        w,
                        h,
                        ffmpeg_next::format::Pixel::BGR24,
                        w,
                        h,
                        ffmpeg_next::software::scaling::Flags::BILINEAR,
                    )
                    .map_err(|e| av("pixel conversion", e))?,
                ),
            };
            sc.run(&frame, &mut bgr).map_err(|e| av("pixel conversion", e))?;
            let image = bgr_mat(&bgr, w as i32, h as i32, self.pool.take())?;
            index_out += 1;
            last_t = t;
            next_t = ((t / every_s).floor() + 1.0) * every_s;
            let sent = tx.send(SampledFrame {
                index: index_out,
                timestamp_s: t,
                image,
                decode: started.elapsed(),
            });
            if sent.is_err() {
                return Ok(None);
            }
            started = std::time::Instant::now();
        }
        if index_out == 0 {
            return Err(bad(
                &path,
                format!(
                    "no keyframe could be decoded (codec '{}'){}",
                    self.info.codec,
                    failure.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            ));
        }
        let short = self.info.duration_s.is_some_and(|d| last_t + every_s + 2.0 < d);
        if short || failure.is_some() {
            return Ok(Some(Truncated {
                at_s: last_t,
                reason: format!(
                    "decoding stopped after {last_t:.1} s{}{}",
                    self.info
                        .duration_s
                        .map(|d| format!(" of a stated {d:.1} s"))
                        .unwrap_or_default(),
                    failure.map(|e| format!(": {e}")).unwrap_or_default()
                ),
            }));
        }
        Ok(None)
    }
}

/// A libav BGR24 picture as an OpenCV Mat (rows copied: libav pads its lines), into `reuse`
/// when it has the size.
fn bgr_mat(frame: &ffmpeg_next::frame::Video, w: i32, h: i32, reuse: Mat) -> Result<Mat> {
    let fits = reuse.rows() == h
        && reuse.cols() == w
        && reuse.typ() == opencv::core::CV_8UC3
        && reuse.is_continuous();
    let mut image = if fits {
        reuse
    } else {
        Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC3, opencv::core::Scalar::all(0.0))?
    };
    let stride = frame.stride(0);
    let src = frame.data(0);
    let row = w as usize * 3;
    let dst = image.data_bytes_mut()?;
    for (y, line) in dst.chunks_exact_mut(row).enumerate() {
        let from = y * stride;
        let Some(s) = src.get(from..from + row) else {
            return Err(VisionError::Other(
                "a decoded picture is smaller than its size".into(),
            ));
        };
        line.copy_from_slice(s);
    }
    Ok(image)
}
