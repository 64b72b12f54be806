//! Edge vision as a user runs it: bad inputs, the example workflow under `fogd run`, a live
//! stream, `fogd demo`.

use crate::common;
use crate::vision_support;

use vision_support::*;

#[test]
fn bad_inputs_each_get_a_clear_message_and_the_rest_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    std::fs::write(d.join("empty.mp4"), b"").unwrap();
    std::fs::write(
        d.join("notes.mp4"),
        b"this is a text file, not a video\n".repeat(50),
    )
    .unwrap();
    std::fs::write(
        d.join("noise.jpg"),
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    // A clip with its index first, cut in half: the frames before the cut can be read.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=12",
        "-c:v",
        "libx264",
        "-g",
        "25",
        "-movflags",
        "+faststart",
        &p("full.mp4"),
    ]);
    let full = std::fs::read(d.join("full.mp4")).unwrap();
    std::fs::write(d.join("cut.mp4"), &full[..full.len() / 2]).unwrap();
    // A codec nobody decodes: an AVI whose FourCC names no codec.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=5:duration=2",
        "-c:v",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        &p("raw.avi"),
    ]);
    let mut avi = std::fs::read(d.join("raw.avi")).unwrap();
    for i in 0..avi.len().saturating_sub(4) {
        if &avi[i..i + 4] == b"vids" {
            // strh's fccHandler follows fccType.
            avi[i + 4..i + 8].copy_from_slice(b"QQQQ");
        }
        if i + 4 <= avi.len() && &avi[i..i + 4] == b"strf" {
            // BITMAPINFOHEADER.biCompression at offset 16 of the chunk data (8-byte header).
            avi[i + 8 + 16..i + 8 + 20].copy_from_slice(b"QQQQ");
        }
    }
    std::fs::write(d.join("unknown.avi"), &avi).unwrap();
    // Odd but valid images: 8K, RGBA with transparency, grayscale.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=7680x4320",
        "-i",
        &photo("grace_hopper.jpg"),
        "-filter_complex",
        "[0][1]overlay=3000:2000",
        "-frames:v",
        "1",
        &p("8k.jpg"),
    ]);
    ffmpeg(&[
        "-i",
        &photo("astronaut.png"),
        "-vf",
        "format=rgba,geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':a='if(lt(X,40),0,255)'",
        &p("alpha.png"),
    ]);
    ffmpeg(&[
        "-i",
        &photo("grace_hopper.jpg"),
        "-vf",
        "format=gray",
        &p("gray.png"),
    ]);

    let cases: &[(&str, bool, &str)] = &[
        ("empty.mp4", false, "zero bytes"),
        ("notes.mp4", false, "could not open"),
        ("noise.jpg", false, "not an image"),
        ("unknown.avi", false, "unknown.avi"),
        ("missing.jpg", false, "No such file"),
        ("cut.mp4", true, "truncated"),
        ("8k.jpg", true, ""),
        ("alpha.png", true, ""),
        ("gray.png", true, ""),
    ];
    for (name, ok, needle) in cases {
        let o = fogd(&[
            "anonymize",
            &p(name),
            "--out",
            out.to_str().unwrap(),
            "--every",
            "1s",
        ]);
        let t = text(&o);
        assert!(!t.contains("panicked"), "{name}: {t}");
        assert_eq!(o.status.success(), *ok, "{name}: {t}");
        if !ok {
            assert!(t.contains(name), "{name}: the message names the file: {t}");
        }
        assert!(t.contains(needle), "{name}: wanted '{needle}' in: {t}");
    }
    // The cut clip kept the frames before the cut, and said where it stopped.
    let kept = written_frames(&out.join("cut")).len();
    assert!((2..12).contains(&kept), "cut.mp4: {kept} frames kept");
    // The same through keyframe sampling (libav in-process): the keyframes before the cut are
    // kept, and the message says where decoding stopped.
    let kout = d.join("out-keyframes");
    let o = fogd(&[
        "anonymize",
        &p("cut.mp4"),
        "--out",
        kout.to_str().unwrap(),
        "--every",
        "1s",
        "--keyframes",
    ]);
    let t = text(&o);
    assert!(o.status.success() && t.contains("stopped after"), "{t}");
    let kept = written_frames(&kout.join("cut")).len();
    assert!(
        (2..12).contains(&kept),
        "cut.mp4 --keyframes: {kept} frames kept: {t}"
    );
    for n in ["8k.jpg", "alpha.png", "gray.png"] {
        let r = sidecar(&out.join(n));
        assert!(!r.faces.is_empty(), "{n}: the face was not found");
    }
    // Several inputs, one bad: the good one is done, the exit status says one failed.
    let o = fogd(&[
        "anonymize",
        &p("empty.mp4"),
        &photo("astronaut.png"),
        "--out",
        d.join("mixed").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(d.join("mixed/astronaut.png").is_file(), "{}", text(&o));
}

/// The example workflow (examples/camera-ingest) under `fogd run`: a video lands in
/// cameras/incoming, anon-and-split writes blurred frames and sidecars, mask-detector judges each
/// blurred frame from the report it carries and draws the verdict on it. Nothing raw reaches the
/// output paths.
#[test]
fn the_camera_ingest_example_runs_end_to_end_under_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("fogd.yaml"), "data_dir: data\ngateway: {enabled: false}\n").unwrap();
    let clip = d.join("cam1.mp4");
    // 1080p: five or six people have faces of 64 px and more in each sampled frame (the size
    // masks are judged from), so three verdicts are asked for with a margin. At 720p only three
    // or four did, and one verdict just under 0.7 on another CPU failed the test (issue 32).
    sample_clip(&clip, 11, 1920, 1080, &[]);
    let cfg = d.join("fogd.yaml");
    let mut daemon = run_example_with(d, &clip);
    let results = d.join("data/store/cameras/results/cam1");
    let anonymised = d.join("data/store/cameras/anonymised/cam1");
    // 11 s, one frame every 5 s: frames at 0, 5 and 10 s.
    let t0 = std::time::Instant::now();
    while t0.elapsed().as_secs() < 90
        && (1..=3).any(|i| !results.join(format!("img{i}.masks.json")).is_file())
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let jobs = fogd(&["--config", cfg.to_str().unwrap(), "jobs"]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    let log = std::fs::read_to_string(d.join("daemon.log")).unwrap();
    for i in 1..=3 {
        let r = results.join(format!("img{i}.masks.json"));
        assert!(r.is_file(), "no {}: {}\n{log}", r.display(), text(&jobs));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&r).unwrap()).unwrap();
        assert_eq!(v["from"], "report");
        assert!(
            v["counts"]["mask"].as_u64().unwrap() + v["counts"]["no_mask"].as_u64().unwrap() >= 3,
            "{v}"
        );
        assert!(
            results.join(format!("img{i}.masks.jpg")).is_file(),
            "no verdict picture"
        );
        assert!(anonymised.join(format!("img{i}.jpg")).is_file());
    }
    assert!(!text(&jobs).contains("failed"), "{}", text(&jobs));
    // The scripts' `fogd anonymize` / `fogd detect-masks` ran in the daemon's warm worker.
    assert!(log.contains("vision worker started"), "{log}");
    assert_eq!(log.matches("vision request served").count(), 4, "{log}");
}

/// Live streams (no duration, no seeking), read as they come: an MPEG-TS served over HTTP by
/// ffmpeg, and a camera-like RTSP server.
#[test]
fn a_live_stream_url_is_sampled_as_it_comes() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("cam.mp4");
    sample_clip(&clip, 6, 640, 360, &["--fps", "10"]);
    // An HTTP MPEG-TS stream both ways of sampling, and a real RTSP server (GStreamer's
    // gst-rtsp-server, as cameras and NVRs serve) read over RTP/TCP.
    for (scheme, keyframes) in [("http", false), ("http", true), ("rtsp", false)] {
        // The HTTP server is an ffmpeg child; the RTSP one stops when dropped.
        let (url, stem, http, rtsp) = if scheme == "http" {
            let url = format!("http://127.0.0.1:{}/live.ts", common::free_ports(1));
            let server = Command::new("ffmpeg")
                .args(["-loglevel", "error", "-re", "-i", clip.to_str().unwrap()])
                .args(["-c", "copy", "-f", "mpegts", "-listen", "1", &url])
                .spawn()
                .unwrap();
            std::thread::sleep(std::time::Duration::from_millis(500));
            (url, "live", Some(server), None)
        } else {
            let server = common::RtspServer::start(&clip);
            (server.url.clone(), "cam", None, Some(server))
        };
        let out = dir.path().join(format!("out-{scheme}-{keyframes}"));
        let mut args = vec![
            "anonymize",
            url.as_str(),
            "--out",
            out.to_str().unwrap(),
            "--every",
            "1s",
        ];
        if keyframes {
            args.push("--keyframes");
        }
        let o = fogd(&args);
        if let Some(mut server) = http {
            let _ = server.kill();
            let _ = server.wait();
        }
        drop(rtsp);
        assert!(o.status.success(), "{url}: {}", text(&o));
        let frames = written_frames(&out.join(stem)).len();
        // 6 s, one a second (--keyframes does not apply to a live source: read as it comes).
        assert!(
            frames >= 5,
            "{url} keyframes={keyframes}: {frames} frames; {}",
            text(&o)
        );
        let r = sidecar(&out.join(stem).join("img2.jpg"));
        assert!(
            r.timestamp_s.unwrap() > 0.5 && !r.faces.is_empty(),
            "{url}: {r:?}"
        );
    }
}

/// `fogd demo` (the README's main job): a generated video through the paper's two functions on
/// the embedded default, and the summary table.
#[test]
fn demo_runs_the_use_case_and_prints_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let o = fogd(&["demo", "--seconds", "11", "--dir", demo.to_str().unwrap()]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    for want in [
        "img1",
        "img2",
        "img3",
        "total",
        "time per frame",
        "anon-and-split: 1 run(s), 1 succeeded",
    ] {
        assert!(t.contains(want), "no '{want}' in:\n{t}");
    }
    assert!(t.contains("mask-detector: 3 run(s), 3 succeeded"), "{t}");
    assert!(
        !t.contains(" INFO "),
        "the demo's output is the summary, not logs:\n{t}"
    );
    assert!(demo
        .join("data/store/cameras/results/cam1-11s/img3.masks.json")
        .is_file());
    // Issue 32: no face is left in any frame. Every face of the sample's ground truth, of any
    // size (24 px and up), is under a redaction box, and the reference detector finds none of
    // them in the blurred frames, counting a face where the bench's judge does (0.5: below it,
    // blurred heads score up to 0.29, the eyes and mouth gone).
    let truth = Truth::load(&demo.join("cam1-11s.truth.json")).unwrap();
    let frames = written_frames(&demo.join("data/store/cameras/anonymised/cam1-11s"));
    assert_eq!(frames.len(), 3, "{frames:?}");
    let det = detector_at(Some(0.5));
    for f in &frames {
        let r = sidecar(f);
        let faces = truth.at(r.timestamp_s.unwrap());
        let (mut covered, mut left) = (Recall::default(), Recall::default());
        score::recall_at(faces, &boxes(&r), 0.0, 0.3, &mut covered);
        let seen = det.detect(&media::read_image(f).unwrap()).unwrap();
        score::recall_at(faces, &seen, 0.0, 0.3, &mut left);
        assert_eq!(
            (covered.found, left.found),
            (covered.faces, 0),
            "{}: {} of {} faces redacted, {} still found",
            f.display(),
            covered.found,
            covered.faces,
            left.found
        );
    }
    // A second run starts from clean data and reuses the video.
    let o = fogd(&["demo", "--seconds", "11", "--dir", demo.to_str().unwrap()]);
    assert!(
        o.status.success() && !text(&o).contains("making a"),
        "{}",
        text(&o)
    );
}

/// A 4 KB JPEG whose header declares 30000x30000 is refused from its header, before any pixel is
/// allocated: under a 2.5 GB address-space limit (decoding it takes 2.7 GB) the message is the
/// size refusal, not an allocation failure.
#[test]
fn a_jpeg_bomb_is_refused_from_its_header() {
    let dir = tempfile::tempdir().unwrap();
    let mut jpeg = std::fs::read(media_dir().join("grace_hopper.jpg")).unwrap();
    // Walk the markers to the frame header (SOF0..SOF2) and make it declare 30000x30000.
    let mut i = 2;
    while !(0xC0..=0xC2).contains(&jpeg[i + 1]) {
        i += 2 + (usize::from(jpeg[i + 2]) << 8 | usize::from(jpeg[i + 3]));
    }
    jpeg[i + 5..i + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]);
    jpeg.truncate(4000);
    let bomb = dir.path().join("bomb.jpg");
    std::fs::write(&bomb, &jpeg).unwrap();
    let o = Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"ulimit -v 2500000; exec "$0" anonymize "$1" --out "$2""#)
        .arg(env!("CARGO_BIN_EXE_fogd-vision"))
        .arg(&bomb)
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("bomb.jpg: 30000x30000 (from its header) is over the limit"),
        "{t}"
    );
}
