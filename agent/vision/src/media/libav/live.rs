//! Live streams: read as they come, keyframes alone while the keyframe interval allows.

use std::sync::mpsc::SyncSender;

use ffmpeg_next as av;
use opencv::core::Mat;

use super::{decode_alone, Emit, Source, ToBgr};
use crate::image::bad;
use crate::media::{FramePool, SampledFrame, Truncated};
use crate::Result;

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

/// Reads a live stream until it ends or `f` says no more, calling `f` with one
/// frame every `every_s` (the first at or after each multiple of it, counted from the first
/// keyframe). Only keyframes are decoded while the keyframe interval is no longer than
/// `every_s`.
pub fn sample_live(
    mut src: Source,
    every_s: f64,
    pool: &FramePool,
    f: &mut dyn FnMut(LiveFrame) -> bool,
) -> Result<LiveStats> {
    let path = src.path().to_path_buf();
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
    let mut failure = None;
    let half = 0.5 / src.info.fps.max(1.0);
    loop {
        let packet = match src.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Err(bad(&path, format!("reading stopped: {e}"))),
        };
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
    every_s: f64,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let mut index = 0usize;
    let mut out = Emit::new(tx);
    sample_live(src, every_s, pool, &mut |fr| {
        index += 1;
        out.send(index, fr.timestamp_s, fr.image)
    })?;
    Ok(None)
}
