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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;
use std::time::Instant;

use ffmpeg_next as av;
use opencv::core::Mat;
use opencv::prelude::*;

use crate::image::bad;
use crate::media::{FramePool, SampledFrame, Truncated, VideoInfo};
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
        let path = PathBuf::from(source);
        av::init().map_err(av_err(&path, "libav"))?;
        // libav's messages would go to stderr; what matters is said in ours.
        av::util::log::set_level(av::util::log::Level::Fatal);
        let mut opts = av::Dictionary::new();
        if is_stream_url(source) {
            // A camera that stops sending must end the read, not hang it (microseconds).
            opts.set("timeout", "10000000");
            opts.set("rw_timeout", "10000000");
            if source.starts_with("rtsp") {
                // TCP: no frames lost to UDP drops, and it passes NAT and firewalls.
                opts.set("rtsp_transport", "tcp");
            }
        }
        let input = av::format::input_with_dictionary(&path, opts).map_err(|e| {
            bad(
                &path,
                format!(
                    "FFmpeg could not open it ({e}): not a video, an unknown container, or cut off \
                     before its index"
                ),
            )
        })?;
        let (stream, tb, start, params, fps, frames, stream_duration) = {
            let st = input
                .streams()
                .best(av::media::Type::Video)
                .ok_or_else(|| bad(&path, "no video stream"))?;
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
        let duration_s = if is_stream_url(source) {
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
                &path,
                format!("no video stream that FFmpeg can decode (codec '{}')", info.codec),
            ));
        }
        if info.width as i64 * info.height as i64 > crate::image::MAX_PIXELS {
            return Err(bad(
                &path,
                format!("{}x{} frames are over the limit", info.width, info.height),
            ));
        }
        Ok(Source {
            input,
            stream,
            tb,
            start,
            delay,
            info,
        })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(self.input_name())
    }

    fn input_name(&self) -> String {
        // SAFETY: `url` is set by avformat_open_input and lives as long as the context.
        unsafe {
            let p = (*self.input.as_ptr()).url;
            if p.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
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
            .ok_or_else(|| bad(&path, "no video stream"))?;
        let mut ctx = av::codec::context::Context::from_parameters(st.parameters())
            .map_err(av_err(&path, "codec parameters"))?;
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
            &path,
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

    /// Every keyframe's timestamp (ticks), by reading the packets (no decoding), for containers
    /// without an index (MPEG-TS, some MKV); then back to the start.
    fn scan_keyframes(&mut self) -> Vec<i64> {
        let mut keys = Vec::new();
        let mut errors = 0;
        loop {
            let mut packet = av::Packet::empty();
            match packet.read(&mut self.input) {
                Ok(()) => {}
                Err(av::Error::Eof) => break,
                Err(_) => {
                    errors += 1;
                    if errors > 32 {
                        break;
                    }
                    continue;
                }
            }
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

/// The targets (k * every) from `first` to `last` inclusive, decoded from one seek.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    /// Seek here first (ticks); None: read from the start.
    seek: Option<i64>,
    first: usize,
    /// None: on to the end of the video.
    last: Option<usize>,
}

/// Targets grouped by the keyframe they decode from.
fn plan(src: &mut Source, every_s: f64) -> Vec<Group> {
    let Some(duration) = src.info.duration_s else {
        return vec![Group {
            seek: None,
            first: 0,
            last: None,
        }];
    };
    let fps = src.info.fps.max(1.0);
    let count = ((duration - 0.5 / fps) / every_s).ceil().max(1.0) as usize;
    // A keyframe's index time may be its decoding time, ahead of its presentation by the
    // reordering delay: seek that much earlier so the target is never before the keyframe.
    let margin = f64::from(src.delay.max(0)) / fps;
    let ticks: Vec<i64> = (0..count)
        .map(|k| src.ticks((k as f64 * every_s - margin).max(0.0)))
        .collect();
    let mut keys: Vec<Option<i64>> = ticks.iter().map(|&t| src.indexed_keyframe(t)).collect();
    if keys.iter().any(Option::is_none) {
        let scanned = src.scan_keyframes();
        keys = ticks
            .iter()
            .map(|&t| {
                let i = scanned.partition_point(|&k| k <= t);
                (i > 0).then(|| (i - 1) as i64)
            })
            .collect();
        if keys.iter().all(Option::is_none) {
            // No keyframe known at all: one pass from the start.
            return vec![Group {
                seek: None,
                first: 0,
                last: None,
            }];
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    for (k, key) in keys.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if k > 0 && keys[k - 1] == *key => g.last = Some(k),
            _ => groups.push(Group {
                seek: Some(ticks[k]),
                first: k,
                last: Some(k),
            }),
        }
    }
    groups
}

/// What one decoder made of the groups it took.
#[derive(Default)]
struct Tally {
    /// (target number, time) of each frame sent.
    sent: Vec<(usize, f64)>,
    /// Targets no frame was found for, and why.
    missed: Vec<(usize, String)>,
}

/// Decodes the frame at every multiple of `every_s` of the file with `decoders` decoders (each
/// on its own thread, with its own demuxer), sending them to `tx` as they come (out of order).
pub fn sample_file(
    mut first: Source,
    source: &str,
    every_s: f64,
    decoders: usize,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let path = PathBuf::from(source);
    let info = first.info.clone();
    let groups = plan(&mut first, every_s);
    let n = decoders.clamp(1, groups.len().max(1));
    // Fewer groups than cores: each decoder gets frame threads of its own.
    let threads = (crate::cores() / n).max(1);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first = Mutex::new(Some(first));
    let tallies: Vec<Result<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (groups, next, stop, first, tx, pool) = (&groups, &next, &stop, &first, tx.clone(), pool);
                scope.spawn(move || -> Result<Tally> {
                    let reuse = first.lock().ok().and_then(|mut f| f.take());
                    let mut src = match reuse {
                        Some(s) => s,
                        None => Source::open(source)?,
                    };
                    let mut dec = src.decoder(threads)?;
                    let mut conv = ToBgr::new();
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(g) = groups.get(i) else { break };
                        let more =
                            decode_group(&mut src, &mut dec, &mut conv, *g, every_s, pool, &tx, &mut tally)?;
                        if !more {
                            // The consumer hung up.
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(VisionError::Other("a decoder thread panicked".into())))
            })
            .collect()
    });
    let mut sent = Vec::new();
    let mut missed = Vec::new();
    for t in tallies {
        let t = t?;
        sent.extend(t.sent);
        missed.extend(t.missed);
    }
    if stop.load(Ordering::Relaxed) {
        return Ok(None);
    }
    // A target in the last second may fall past the last frame (durations are rounded).
    missed.retain(|(k, _)| info.duration_s.is_none_or(|d| (*k as f64) * every_s < d - 1.0));
    missed.sort_by_key(|(k, _)| *k);
    if sent.is_empty() {
        return Err(bad(
            &path,
            format!(
                "no frame could be decoded (codec '{}'){}",
                info.codec,
                missed
                    .first()
                    .map(|(_, why)| format!(": {why}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let Some((k, why)) = missed.first() else {
        return Ok(None);
    };
    let want = *k as f64 * every_s;
    let at = sent
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| *t < want)
        .fold(0.0f64, f64::max);
    Ok(Some(Truncated {
        at_s: at,
        reason: format!(
            "no frame could be decoded at {want:.1} s{} ({why}): the file is truncated or corrupt after \
             {at:.1} s",
            info.duration_s
                .map(|d| format!(" of a stated {d:.1} s"))
                .unwrap_or_default()
        ),
    }))
}

/// Decodes one group: seek, then forward to each of its targets and no further. Ok(false) when
/// the consumer hung up.
#[allow(clippy::too_many_arguments)]
fn decode_group(
    src: &mut Source,
    dec: &mut av::decoder::Video,
    conv: &mut ToBgr,
    g: Group,
    every_s: f64,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
    tally: &mut Tally,
) -> Result<bool> {
    let path = src.path();
    let half = 0.5 / src.info.fps.max(1.0);
    let mut k = g.first;
    let done = |k: usize| g.last.is_some_and(|l| k > l);
    let miss_rest = |k: usize, why: &str, tally: &mut Tally| {
        if let Some(l) = g.last {
            tally.missed.extend((k..=l).map(|k| (k, why.to_string())));
        } else if k == 0 {
            tally.missed.push((0, why.to_string()));
        }
    };
    // Containers without an index (MPEG-TS) seek by timestamp to any packet, not a keyframe:
    // packets are skipped up to the first keyframe, and a seek that went past the first target
    // is made again from further back.
    let mut synced = g.seek.is_none();
    let mut back = 1.0f64;
    if let Some(ts) = g.seek {
        if let Err(e) = src.seek(ts) {
            miss_rest(k, &format!("seek: {e}"), tally);
            return Ok(true);
        }
    }
    dec.flush();
    let mut started = Instant::now();
    let mut frame = av::frame::Video::empty();
    let mut read_errors = 0;
    let mut eof = false;
    let mut failure: Option<String> = None;
    while !done(k) {
        if !eof {
            let mut packet = av::Packet::empty();
            match packet.read(&mut src.input) {
                Ok(()) => read_errors = 0,
                Err(av::Error::Eof) => {
                    if !synced && seek_back(src, g, &mut back) {
                        continue;
                    }
                    eof = true;
                    let _ = dec.send_eof();
                }
                Err(e) => {
                    // A damaged packet is skipped; a source that keeps failing has ended.
                    read_errors += 1;
                    if read_errors > 32 {
                        failure = Some(format!("reading stopped: {e}"));
                        eof = true;
                        let _ = dec.send_eof();
                    }
                    continue;
                }
            }
            if !eof {
                if packet.stream() != src.stream {
                    continue;
                }
                if !synced {
                    if !packet.is_key() {
                        continue;
                    }
                    let t = packet.pts().or(packet.dts()).map_or(0.0, |ts| src.seconds(ts));
                    if t > g.first as f64 * every_s + half && seek_back(src, g, &mut back) {
                        continue;
                    }
                    synced = true;
                }
                if let Err(e) = dec.send_packet(&packet) {
                    // One bad packet spoils its GOP's frames at most; go on to the next.
                    failure.get_or_insert_with(|| format!("a packet could not be decoded: {e}"));
                    continue;
                }
            }
        }
        let mut got_any = false;
        while !done(k) && dec.receive_frame(&mut frame).is_ok() {
            got_any = true;
            let Some(ts) = frame.timestamp().or(frame.pts()) else {
                continue;
            };
            let t = src.seconds(ts);
            if t + half < k as f64 * every_s {
                continue;
            }
            let image = conv.convert(&path, &frame, pool)?;
            tally.sent.push((k + 1, t));
            let sent = tx.send(SampledFrame {
                index: k + 1,
                timestamp_s: t,
                image,
                decode: started.elapsed(),
            });
            if sent.is_err() {
                return Ok(false);
            }
            started = Instant::now();
            // Every target this frame answers (more than one when `every` is under a frame).
            while !done(k) && t + half >= k as f64 * every_s {
                k += 1;
            }
        }
        if eof && !got_any {
            break;
        }
    }
    if !done(k) {
        miss_rest(k, failure.as_deref().unwrap_or("the video ends before it"), tally);
    }
    Ok(true)
}

/// Seeks again, `back` seconds before the group's point (doubled each time, up to a minute):
/// the last seek went past the group's keyframe. False when there is no further to go.
fn seek_back(src: &mut Source, g: Group, back: &mut f64) -> bool {
    let Some(ts) = g.seek.filter(|_| *back < 64.0) else {
        return false;
    };
    let earlier = (ts - (*back / src.tb) as i64).max(src.start);
    *back *= 2.0;
    src.seek(earlier).is_ok()
}

/// Keyframes only: the first keyframe at or after each multiple of `every` is decoded, as a
/// picture of its own; keyframes in between are never decoded (the `ffmpeg` program's
/// `-skip_frame nokey` decodes every one).
pub fn sample_keyframes(
    mut src: Source,
    source: &str,
    every_s: f64,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let path = PathBuf::from(source);
    // One picture at a time: frame threads would only add latency, and the detector has the
    // cores.
    let mut dec = src.decoder(1)?;
    let mut conv = ToBgr::new();
    let (mut index_out, mut last_t, mut next_t) = (0usize, 0.0f64, 0.0f64);
    let mut failure: Option<String> = None;
    let mut read_errors = 0;
    let mut started = Instant::now();
    loop {
        let mut packet = av::Packet::empty();
        match packet.read(&mut src.input) {
            Ok(()) => read_errors = 0,
            Err(av::Error::Eof) => break,
            Err(e) => {
                read_errors += 1;
                if read_errors > 32 {
                    failure = Some(format!("reading stopped: {e}"));
                    break;
                }
                continue;
            }
        }
        if packet.stream() != src.stream || !packet.is_key() {
            continue;
        }
        let Some(pts) = packet.pts().or(packet.dts()) else {
            continue;
        };
        let t = src.seconds(pts);
        if t + 1e-6 < next_t {
            continue;
        }
        let Some(frame) = decode_alone(&mut dec, &packet, t, &mut failure) else {
            continue;
        };
        let image = conv.convert(&path, &frame, pool)?;
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
        started = Instant::now();
    }
    if index_out == 0 {
        return Err(bad(
            &path,
            format!(
                "no keyframe could be decoded (codec '{}'){}",
                src.info.codec,
                failure.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        ));
    }
    let short = src.info.duration_s.is_some_and(|d| last_t + every_s + 2.0 < d);
    if short || failure.is_some() {
        return Ok(Some(Truncated {
            at_s: last_t,
            reason: format!(
                "decoding stopped after {last_t:.1} s{}{}",
                src.info
                    .duration_s
                    .map(|d| format!(" of a stated {d:.1} s"))
                    .unwrap_or_default(),
                failure.map(|e| format!(": {e}")).unwrap_or_default()
            ),
        }));
    }
    Ok(None)
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

/// A frame taken from a live stream.
pub struct LiveFrame {
    pub image: Mat,
    /// Seconds since the first frame taken, by the stream's own timestamps.
    pub timestamp_s: f64,
    /// When the camera took it (Unix seconds): from the stream (RTCP) when it says, else the
    /// time of its arrival here less its offset from the first frame.
    pub captured_at: f64,
    pub keyframe: bool,
}

/// What a live read came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveStats {
    pub frames: usize,
    pub decoded: usize,
    pub packets: usize,
}

/// Reads a live stream until it ends, `stop` is set, or `f` says no more, calling `f` with one
/// frame every `every_s` (the first at or after each multiple of it, counted from the first
/// keyframe). Only keyframes are decoded while the keyframe interval is no longer than
/// `every_s`.
pub fn sample_live(
    mut src: Source,
    source: &str,
    every_s: f64,
    stop: &AtomicBool,
    pool: &FramePool,
    f: &mut dyn FnMut(LiveFrame) -> bool,
) -> Result<LiveStats> {
    let path = PathBuf::from(source);
    let mut dec = src.decoder(1)?;
    let mut conv = ToBgr::new();
    let mut stats = LiveStats::default();
    // Time 0: the first keyframe; targets are its multiples of `every_s`.
    let mut origin: Option<(f64, f64)> = None; // (stream seconds, local Unix seconds)
    let mut next_target = 0.0f64;
    let mut last_key: Option<f64> = None;
    let mut last_raw_t = 0.0f64;
    let mut gop: Option<f64> = None;
    // Every frame is decoded from this keyframe on (the interval is longer than `every`).
    let mut decoding_all = false;
    let mut read_errors = 0;
    let mut failure = None;
    let half = 0.5 / src.info.fps.max(1.0);
    while !stop.load(Ordering::Relaxed) {
        let mut packet = av::Packet::empty();
        match packet.read(&mut src.input) {
            Ok(()) => read_errors = 0,
            Err(av::Error::Eof) => break,
            Err(e) => {
                read_errors += 1;
                if read_errors > 32 {
                    return Err(bad(&path, format!("reading stopped: {e}")));
                }
                continue;
            }
        }
        if packet.stream() != src.stream {
            continue;
        }
        stats.packets += 1;
        // RTSP's first packet may come before the stream's clock is known (no timestamp): it is
        // taken as the time of the one before it, or the start.
        let raw_t = packet
            .pts()
            .or(packet.dts())
            .map_or(last_raw_t, |ts| src.seconds(ts));
        last_raw_t = raw_t;
        let key = packet.is_key();
        if origin.is_none() {
            if !key {
                continue;
            }
            origin = Some((raw_t, now_unix()));
        }
        let Some((t0, wall0)) = origin else { continue };
        let t = raw_t - t0;
        if key {
            if let Some(prev) = last_key {
                if t > prev {
                    gop = Some(t - prev);
                }
            }
            last_key = Some(t);
            // Decode everything up to the next keyframe only when a target falls before it.
            decoding_all = gop.is_some_and(|g| g > every_s * 1.05 && t + g > next_target + half);
        }
        let frame = if decoding_all {
            if dec.send_packet(&packet).is_err() {
                continue;
            }
            let mut frame = av::frame::Video::empty();
            let mut got = None;
            while dec.receive_frame(&mut frame).is_ok() {
                stats.decoded += 1;
                let ft = frame
                    .timestamp()
                    .or(frame.pts())
                    .map_or(t, |ts| src.seconds(ts) - t0);
                if ft + half >= next_target {
                    got = Some((std::mem::replace(&mut frame, av::frame::Video::empty()), ft));
                    break;
                }
            }
            got
        } else if key && t + half >= next_target {
            dec.flush();
            decode_alone(&mut dec, &packet, t, &mut failure).map(|fr| {
                stats.decoded += 1;
                (fr, t)
            })
        } else {
            None
        };
        let Some((frame, ft)) = frame else { continue };
        let image = conv.convert(&path, &frame, pool)?;
        let captured_at = src
            .realtime_origin()
            .map_or(wall0 + ft, |o| o + (ft + t0).max(0.0));
        stats.frames += 1;
        next_target = ((ft + half) / every_s).floor() * every_s + every_s;
        // The rest of this interval is decoded only if another target falls in it.
        if let (Some(k), Some(g)) = (last_key, gop) {
            decoding_all = decoding_all && k + g > next_target + half;
        }
        if !f(LiveFrame {
            image,
            timestamp_s: ft,
            captured_at,
            keyframe: frame.is_key(),
        }) {
            break;
        }
    }
    if stats.frames == 0 {
        if let Some(e) = failure {
            return Err(bad(&path, e));
        }
    }
    Ok(stats)
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Live frames into the anonymiser's channel (`fogd anonymize rtsp://...`).
pub fn sample_live_into(
    src: Source,
    source: &str,
    every_s: f64,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let stop = AtomicBool::new(false);
    let mut index = 0usize;
    let mut started = Instant::now();
    sample_live(src, source, every_s, &stop, pool, &mut |fr| {
        index += 1;
        let sent = tx.send(SampledFrame {
            index,
            timestamp_s: fr.timestamp_s,
            image: fr.image,
            decode: started.elapsed(),
        });
        started = Instant::now();
        sent.is_ok()
    })?;
    Ok(None)
}
