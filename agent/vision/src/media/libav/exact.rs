//! Files: exact frames by GOP on several decoders, and keyframes alone.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;

use ffmpeg_next as av;

use super::{decode_alone, Emit, Source, ToBgr};
use crate::image::bad;
use crate::media::{FramePool, SampledFrame, Truncated};
use crate::{Result, VisionError};

/// The targets (k * every) from `first` to `last` inclusive, decoded from one seek.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Group {
    /// Seek here first (ticks); None: read from the start.
    seek: Option<i64>,
    first: usize,
    /// None: on to the end of the video.
    last: Option<usize>,
}

impl Group {
    /// Every target, read from the start: when the video's length or keyframes are unknown.
    const WHOLE: Group = Group {
        seek: None,
        first: 0,
        last: None,
    };
}

/// Targets grouped by the keyframe they decode from.
fn plan(src: &mut Source, every_s: f64) -> Vec<Group> {
    let Some(duration) = src.info.duration_s else {
        return vec![Group::WHOLE];
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
            return vec![Group::WHOLE];
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
    every_s: f64,
    decoders: usize,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let (name, info) = (first.name.clone(), first.info.clone());
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
                let (groups, next, stop, first, name, pool) = (&groups, &next, &stop, &first, &name, pool);
                scope.spawn(move || -> Result<Tally> {
                    let reuse = first.lock().ok().and_then(|mut f| f.take());
                    let mut src = match reuse {
                        Some(s) => s,
                        None => Source::open(name)?,
                    };
                    let mut dec = src.decoder(threads)?;
                    let mut conv = ToBgr::new();
                    let mut out = Emit::new(tx);
                    let mut tally = Tally::default();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(g) = groups.get(i) else { break };
                        let more = decode_group(
                            &mut src, &mut dec, &mut conv, *g, every_s, pool, &mut out, &mut tally,
                        )?;
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
            Path::new(&name),
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
    out: &mut Emit,
    tally: &mut Tally,
) -> Result<bool> {
    let path = src.path().to_path_buf();
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
    let mut frame = av::frame::Video::empty();
    let mut eof = false;
    let mut failure: Option<String> = None;
    while !done(k) {
        if !eof {
            let packet = match src.next_packet() {
                Ok(Some(p)) => Some(p),
                Ok(None) if !synced && seek_back(src, g, &mut back) => continue,
                Ok(None) => None,
                Err(e) => {
                    failure = Some(format!("reading stopped: {e}"));
                    None
                }
            };
            if packet.is_none() {
                eof = true;
                let _ = dec.send_eof();
            }
            if let Some(packet) = packet {
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
            if !out.send(k + 1, t, image) {
                return Ok(false);
            }
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
    every_s: f64,
    pool: &FramePool,
    tx: &SyncSender<SampledFrame>,
) -> Result<Option<Truncated>> {
    let path = src.path().to_path_buf();
    // One picture at a time: frame threads would only add latency, and the detector has the
    // cores.
    let mut dec = src.decoder(1)?;
    let mut conv = ToBgr::new();
    let (mut index_out, mut last_t, mut next_t) = (0usize, 0.0f64, 0.0f64);
    let mut failure: Option<String> = None;
    let mut out = Emit::new(tx);
    loop {
        let packet = match src.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => {
                failure = Some(format!("reading stopped: {e}"));
                break;
            }
        };
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
        if !out.send(index_out, t, image) {
            return Ok(None);
        }
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
