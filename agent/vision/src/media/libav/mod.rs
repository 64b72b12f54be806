//! Frames out of videos and streams through libav, in this process.
//!
//! Files: the frame at each multiple of `every` is decoded from the keyframe at or before it and
//! nothing past it. The targets are grouped by that keyframe (one group per GOP that holds a
//! target); the groups are shared out to several decoders, each with its own demuxer, which take
//! the next group as they finish one, so a long video uses every core and a slow GOP does not
//! hold up the rest. Frames therefore arrive out of order: each carries its target's number.
//!
//! Streams: read as they come. While the keyframe interval is no longer than `every`, only
//! keyframes are decoded (the first at or after each target time); otherwise every frame is.

use std::path::Path;
use std::sync::mpsc::SyncSender;
use std::time::Instant;

use ffmpeg_next as av;
use opencv::core::Mat;
use opencv::prelude::*;

use crate::image::bad;
use crate::media::{FramePool, SampledFrame, VideoInfo};
use crate::{Result, VisionError};

/// The network sources libav reads (anything else is a file).
pub fn is_stream_url(s: &str) -> bool {
    [
        "rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "srt://",
    ]
    .iter()
    .any(|p| s.starts_with(p))
}

/// An opened source and its video stream.
pub struct Source {
    /// The file or URL, as given (a decoder thread opens it again).
    name: String,
    input: av::format::context::Input,
    stream: usize,
    /// Seconds per tick of the stream's timestamps.
    tb: f64,
    /// The stream's first timestamp, in ticks (time 0 of the sampling).
    start: i64,
    /// Frames a decoder may hold back for reordering (B-frames).
    delay: i32,
    pub info: VideoInfo,
}

fn av_err<'a>(path: &'a Path, what: &str) -> impl Fn(av::Error) -> VisionError + 'a {
    let what = what.to_string();
    move |e| bad(path, format!("{what}: {e}"))
}

impl Source {
    pub fn open(source: &str) -> Result<Source> {
        let path = Path::new(source);
        av::init().map_err(av_err(path, "libav"))?;
        // libav's messages would go to stderr; what matters is said in ours.
        av::util::log::set_level(av::util::log::Level::Fatal);
        let live = is_stream_url(source);
        let mut opts = av::Dictionary::new();
        if live {
            // A camera that stops sending must end the read, not hang it (microseconds).
            opts.set("timeout", "10000000");
            opts.set("rw_timeout", "10000000");
            if source.starts_with("rtsp") {
                // TCP: no frames lost to UDP drops, and it passes NAT and firewalls.
                opts.set("rtsp_transport", "tcp");
            }
        }
        let input = av::format::input_with_dictionary(path, opts).map_err(|e| {
            bad(
                path,
                if live {
                    format!("FFmpeg could not open the stream ({e}): check the address, the camera and the network")
                } else {
                    format!(
                        "FFmpeg could not open it ({e}): not a video, an unknown container, or cut off \
                         before its index"
                    )
                },
            )
        })?;
        let (stream, tb, start, params, fps, frames, stream_duration) = {
            let st = input
                .streams()
                .best(av::media::Type::Video)
                .ok_or_else(|| bad(path, "no video stream"))?;
            let start = match st.start_time() {
                av::ffi::AV_NOPTS_VALUE => 0,
                s => s,
            };
            let rate = st.avg_frame_rate();
            let rate = if rate.numerator() > 0 && rate.denominator() > 0 {
                rate
            } else {
                st.rate()
            };
            let fps = if rate.denominator() > 0 {
                f64::from(rate)
            } else {
                0.0
            };
            let tb = f64::from(st.time_base());
            let dur = match st.duration() {
                d if d > 0 => Some(d as f64 * tb),
                _ => None,
            };
            (st.index(), tb, start, st.parameters(), fps, st.frames(), dur)
        };
        // SAFETY: the parameters belong to the stream, alive as long as `input`.
        let (width, height, delay, codec_id) = unsafe {
            let p = params.as_ptr();
            ((*p).width, (*p).height, (*p).video_delay, params.id())
        };
        let duration_s = if live {
            None
        } else {
            stream_duration
                .or_else(|| (input.duration() > 0).then(|| input.duration() as f64 / 1e6))
                .or_else(|| (frames > 0 && fps > 0.0).then(|| frames as f64 / fps))
        };
        let info = VideoInfo {
            width,
            height,
            fps,
            duration_s,
            codec: codec_id.name().to_string(),
        };
        if info.width <= 0 || info.height <= 0 {
            return Err(bad(
                path,
                format!("no video stream that FFmpeg can decode (codec '{}')", info.codec),
            ));
        }
        if info.width as i64 * info.height as i64 > crate::image::MAX_PIXELS {
            return Err(bad(
                path,
                format!("{}x{} frames are over the limit", info.width, info.height),
            ));
        }
        Ok(Source {
            name: source.to_string(),
            input,
            stream,
            tb,
            start,
            delay,
            info,
        })
    }

    pub fn path(&self) -> &Path {
        Path::new(&self.name)
    }

    fn seconds(&self, ts: i64) -> f64 {
        (ts - self.start) as f64 * self.tb
    }

    fn ticks(&self, s: f64) -> i64 {
        self.start + (s / self.tb).round() as i64
    }

    /// A decoder for the video stream on `threads` threads.
    fn decoder(&self, threads: usize) -> Result<av::decoder::Video> {
        let path = self.path();
        let st = self
            .input
            .stream(self.stream)
            .ok_or_else(|| bad(path, "no video stream"))?;
        let mut ctx = av::codec::context::Context::from_parameters(st.parameters())
            .map_err(av_err(path, "codec parameters"))?;
        ctx.set_threading(av::threading::Config {
            kind: if threads > 1 {
                av::threading::Type::Frame
            } else {
                av::threading::Type::Slice
            },
            count: threads,
            ..Default::default()
        });
        ctx.decoder().video().map_err(av_err(
            path,
            &format!("no decoder for codec '{}'", self.info.codec),
        ))
    }

    /// The keyframe a decoder seeking to `ticks` starts from, by the container's index: its
    /// entry number, or None when the container has no index.
    fn indexed_keyframe(&mut self, ticks: i64) -> Option<i64> {
        // SAFETY: the stream pointer is valid while `input` is; the index is only read.
        unsafe {
            let st = *(*self.input.as_mut_ptr()).streams.add(self.stream);
            if av::ffi::avformat_index_get_entries_count(st) <= 0 {
                return None;
            }
            let i = av::ffi::av_index_search_timestamp(st, ticks, av::ffi::AVSEEK_FLAG_BACKWARD);
            (i >= 0).then_some(i64::from(i))
        }
    }

    /// The next packet of any stream; None at the end. A damaged packet is skipped; 32
    /// failures in a row end the source (the last one is the error).
    fn next_packet(&mut self) -> std::result::Result<Option<av::Packet>, av::Error> {
        let mut errors = 0;
        loop {
            let mut packet = av::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => return Ok(Some(packet)),
                Err(av::Error::Eof) => return Ok(None),
                Err(e) => {
                    errors += 1;
                    if errors > 32 {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Every keyframe's timestamp (ticks), by reading the packets (no decoding), for containers
    /// without an index (MPEG-TS, some MKV); then back to the start.
    fn scan_keyframes(&mut self) -> Vec<i64> {
        let mut keys = Vec::new();
        while let Ok(Some(packet)) = self.next_packet() {
            if packet.stream() == self.stream && packet.is_key() {
                if let Some(ts) = packet.pts().or(packet.dts()) {
                    keys.push(ts);
                }
            }
        }
        keys.sort_unstable();
        let _ = self.seek(self.start);
        keys
    }

    /// To the keyframe at or before `ticks`.
    fn seek(&mut self, ticks: i64) -> std::result::Result<(), av::Error> {
        // SAFETY: a plain call on the context this Source owns.
        let r = unsafe {
            av::ffi::av_seek_frame(
                self.input.as_mut_ptr(),
                self.stream as i32,
                ticks,
                av::ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        if r < 0 {
            Err(av::Error::from(r))
        } else {
            Ok(())
        }
    }

    /// Wall-clock time (Unix seconds) of the stream's time 0, when the source says (RTSP from
    /// the camera's RTCP sender reports).
    fn realtime_origin(&self) -> Option<f64> {
        // SAFETY: a field read on the context this Source owns.
        let us = unsafe { (*self.input.as_ptr()).start_time_realtime };
        (us > 0 && us != av::ffi::AV_NOPTS_VALUE).then(|| us as f64 / 1e6)
    }
}

/// YUV to BGR, into Mats from the pool.
struct ToBgr {
    scaler: Option<av::software::scaling::Context>,
    bgr: av::frame::Video,
}

impl ToBgr {
    fn new() -> ToBgr {
        ToBgr {
            scaler: None,
            bgr: av::frame::Video::empty(),
        }
    }

    fn convert(&mut self, path: &Path, frame: &av::frame::Video, pool: &FramePool) -> Result<Mat> {
        let (w, h) = (frame.width(), frame.height());
        let stale = self.scaler.as_ref().is_some_and(|s| {
            let i = s.input();
            i.width != w || i.height != h || i.format != frame.format()
        });
        if stale {
            self.scaler = None;
        }
        let sc = match self.scaler.as_mut() {
            Some(sc) => sc,
            // Bicubic, as OpenCV's FFmpeg backend: the same pixels as `cv::VideoCapture` gives.
            None => self.scaler.insert(
                av::software::scaling::Context::get(
                    frame.format(),
                    w,
                    h,
                    av::format::Pixel::BGR24,
                    w,
                    h,
                    av::software::scaling::Flags::BICUBIC,
                )
                .map_err(av_err(path, "pixel conversion"))?,
            ),
        };
        sc.run(frame, &mut self.bgr)
            .map_err(av_err(path, "pixel conversion"))?;
        bgr_mat(&self.bgr, w as i32, h as i32, pool.take())
    }
}

/// A libav BGR24 picture as an OpenCV Mat (rows copied: libav pads its lines), into `reuse`
/// when it has the size.
fn bgr_mat(frame: &av::frame::Video, w: i32, h: i32, reuse: Mat) -> Result<Mat> {
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

/// Frames to the anonymiser, each with the time it took to get since the one before.
struct Emit<'a> {
    tx: &'a SyncSender<SampledFrame>,
    since: Instant,
}

impl<'a> Emit<'a> {
    fn new(tx: &'a SyncSender<SampledFrame>) -> Emit<'a> {
        Emit {
            tx,
            since: Instant::now(),
        }
    }

    /// False when the consumer hung up.
    fn send(&mut self, index: usize, timestamp_s: f64, image: Mat) -> bool {
        let sent = self.tx.send(SampledFrame {
            index,
            timestamp_s,
            image,
            decode: self.since.elapsed(),
        });
        self.since = Instant::now();
        sent.is_ok()
    }
}

/// One keyframe decoded as a picture of its own: fed alone, drained, and the decoder reset (it
/// holds pictures back for reordering until told no more packets come).
fn decode_alone(
    dec: &mut av::decoder::Video,
    packet: &av::Packet,
    t: f64,
    failure: &mut Option<String>,
) -> Option<av::frame::Video> {
    let fed = dec.send_packet(packet).and_then(|()| dec.send_eof());
    if let Err(e) = fed {
        *failure = Some(format!("keyframe at {t:.1} s: {e}"));
    }
    let mut frame = av::frame::Video::empty();
    let mut got = None;
    while dec.receive_frame(&mut frame).is_ok() {
        got = Some(std::mem::replace(&mut frame, av::frame::Video::empty()));
    }
    dec.flush();
    if got.is_none() {
        failure.get_or_insert_with(|| format!("keyframe at {t:.1} s could not be decoded"));
    }
    got
}

mod exact;
mod live;

pub use exact::{sample_file, sample_keyframes};
pub use live::{sample_live, sample_live_into, LiveFrame, LiveStats};
