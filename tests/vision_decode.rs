//! Issue 22: exact frames through libav, decoded by GOP on several decoders. The change is in
//! decoding, not detection: the frames must be the very pixels OpenCV's decoder gives for the
//! same frame numbers (so the faces found are the same), whatever the number of decoders, the
//! container (MP4 with its index, MPEG-TS without one, AVI) or B-frames. And live streams: a
//! frame every N s from a real RTSP server with only keyframes decoded, on time.

use crate::common;
use crate::vision_support;

use std::collections::BTreeMap;
use std::time::Duration;

use fogd_vision::media::{Sampling, VideoReader};
use opencv::core::Mat;
use opencv::prelude::*;
use opencv::videoio;
use sha2::{Digest, Sha256};
use vision_support::*;

fn digest(m: &Mat) -> String {
    let mut h = Sha256::new();
    h.update(m.data_bytes().unwrap());
    format!("{:x}", h.finalize())
}

/// (index, timestamp, pixels' SHA-256) of every frame sampled, by index.
fn sampled(
    path: &Path,
    every: Duration,
    sampling: Sampling,
    decoders: usize,
) -> BTreeMap<usize, (f64, String)> {
    let mut r = VideoReader::open(path.to_str().unwrap()).unwrap();
    r.decoders = decoders;
    let mut got = BTreeMap::new();
    let cut = r
        .sample(every, sampling, &mut |f| {
            let old = got.insert(f.index, (f.timestamp_s, digest(&f.image)));
            assert!(old.is_none(), "frame {} sent twice", f.index);
            Ok(())
        })
        .unwrap();
    assert!(cut.is_none(), "{}: {cut:?}", path.display());
    got
}

/// Every frame of the video through OpenCV's own reader, read on from the start: the old way.
fn opencv_frames(path: &Path) -> (f64, Vec<String>) {
    let mut cap = videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    let fps = cap.get(videoio::CAP_PROP_FPS).unwrap();
    let mut all = Vec::new();
    let mut m = Mat::default();
    while cap.read(&mut m).unwrap() && !m.empty() {
        all.push(digest(&m));
    }
    (fps, all)
}

#[test]
fn exact_frames_are_opencvs_frames_with_any_number_of_decoders_in_any_container() {
    let dir = tempfile::tempdir().unwrap();
    let mp4 = dir.path().join("cam.mp4");
    // Noisy and at a camera's bitrate: every frame costs its decoding.
    sample_clip(&mp4, 10, 640, 360, &["--bitrate", "1500", "--noise", "10"]);
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    // The same pictures with B-frames (decoding order differs from display order) ...
    ffmpeg(&[
        "-i",
        &p("cam.mp4"),
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-bf",
        "3",
        "-g",
        "40",
        &p("bframes.mp4"),
    ]);
    // ... and in MPEG-TS, which has no index: the keyframes are found by reading the packets.
    ffmpeg(&["-i", &p("cam.mp4"), "-c", "copy", "-f", "mpegts", &p("cam.ts")]);
    let clips = [
        dir.path().join("cam.mp4"),
        dir.path().join("bframes.mp4"),
        dir.path().join("cam.ts"),
        media_dir().join("vtest.avi"),
    ];
    // 0.7 s: targets fall mid-GOP, several in one GOP (decoded from one seek) and at keyframes.
    let every = Duration::from_millis(700);
    for clip in &clips {
        let one = sampled(clip, every, Sampling::Exact, 1);
        let three = sampled(clip, every, Sampling::Exact, 3);
        assert_eq!(one, three, "{}: 1 and 3 decoders differ", clip.display());
        let (fps, reference) = opencv_frames(clip);
        let expected = ((reference.len() as f64 / fps - 0.5 / fps) / 0.7).ceil() as usize;
        assert!(
            one.len() + 1 >= expected && one.len() <= expected,
            "{}: {} frames, {expected} expected",
            clip.display(),
            one.len()
        );
        for (index, (t, pixels)) in &one {
            let target = (*index - 1) as f64 * 0.7;
            // The first frame at or after the target (half a frame's leeway, as rounding).
            let n = (target * fps - 0.5).ceil().max(0.0) as usize;
            assert!(
                (t - n as f64 / fps).abs() < 1e-3,
                "{} frame {index}: at {t} s, not frame {n}",
                clip.display()
            );
            assert_eq!(
                Some(pixels),
                reference.get(n),
                "{} frame {index} (frame number {n}): not the pixels OpenCV decodes",
                clip.display()
            );
        }
    }
}

#[test]
fn the_same_faces_are_found_in_the_frames_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("cam.mp4");
    sample_clip(&clip, 12, 1280, 720, &[]);
    let det = Detector::load(&DetectorOptions::default(), None).unwrap();
    // The old decoder's frames (OpenCV, read on) and their faces.
    let mut cap = videoio::VideoCapture::from_file(clip.to_str().unwrap(), videoio::CAP_FFMPEG).unwrap();
    let mut before = Vec::new();
    let mut m = Mat::default();
    let mut n = 0;
    while cap.read(&mut m).unwrap() && !m.empty() {
        if n % 75 == 0 {
            before.push(det.detect(&m).unwrap());
        }
        n += 1;
    }
    let mut r = VideoReader::open(clip.to_str().unwrap()).unwrap();
    r.decoders = 2;
    let mut after = BTreeMap::new();
    r.sample(Duration::from_secs(3), Sampling::Exact, &mut |f| {
        after.insert(f.index, det.detect(&f.image).unwrap());
        Ok(())
    })
    .unwrap();
    let after: Vec<_> = after.into_values().collect();
    assert_eq!(before.len(), after.len());
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(!b.is_empty(), "frame {i}: no face at all");
        assert_eq!(b.len(), a.len(), "frame {i}: {b:?} against {a:?}");
        for (x, y) in b.iter().zip(a) {
            assert_eq!(x.as_array(), y.as_array(), "frame {i}");
        }
    }
}

/// `fogd-vision grab` on a real RTSP server: a frame every 2 s of a clip with a keyframe every
/// 2 s, only keyframes decoded, each frame within one keyframe interval of the time it stands
/// for, its stream time in its note.
#[test]
fn a_live_stream_is_sampled_from_keyframes_alone_and_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("cam.mp4");
    sample_clip(&clip, 12, 640, 360, &["--fps", "10"]);
    let server = common::RtspServer::start(&clip);
    let vision = fogd_bin().with_file_name("fogd-vision");
    let o = Command::new(&vision)
        .args(["grab", "--every", "2s", &server.url])
        .output()
        .unwrap();
    drop(server);
    let log = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{log}");
    let out = &o.stdout;
    let frames = out.windows(3).filter(|w| *w == [0xFF, 0xD8, 0xFF]).count();
    // Served in real time for 12 s: frames at 0, 2, ... 10 s (the first keyframe is time 0).
    assert!((5..=7).contains(&frames), "{frames} frames: {log}");
    let text = String::from_utf8_lossy(out);
    let times: Vec<f64> = text
        .match_indices("\"stream_time_s\":")
        .map(|(i, k)| {
            let rest = &text[i + k.len()..];
            let end = rest.find([',', '}']).unwrap();
            rest[..end].parse().unwrap()
        })
        .collect();
    assert_eq!(times.len(), frames, "every frame carries its note");
    for (i, t) in times.iter().enumerate() {
        let late = t - 2.0 * i as f64;
        assert!((-0.06..=2.0).contains(&late), "frame {i} at {t} s: {times:?}");
    }
    // Keyframes only: as many decoded as taken.
    let decoded: usize = log
        .split("decoded=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no count in: {log}"));
    assert_eq!(decoded, frames, "{log}");
    // Every frame is a picture of the clip's size.
    let first = &out[..out.windows(2).position(|w| w == [0xFF, 0xD9]).unwrap() + 2];
    let img = media::decode_image(Path::new("frame.jpg"), first).unwrap();
    assert_eq!((img.cols(), img.rows()), (640, 360));
}
