//! Edge vision as a user runs it (`fogd anonymize`, `fogd detect-masks`, `fogd sample`), on the
//! real photos, a generated video with known faces, the real models and ONNX Runtime.

mod common;

/// The agent's binary, beside this package's `fogd-vision` in the target folder.
fn fogd_bin() -> PathBuf {
    common::workspace_bin("fogd")
}

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fogd_vision::anonymize::FrameReport;
use fogd_vision::detect::{Detector, DetectorOptions, FaceBox};
use fogd_vision::masks::MaskClass;
use fogd_vision::media;
use fogd_vision::models::Precision;
use fogd_vision::sample::{self, MaskTally, Recall, Truth};

fn fogd(args: &[&str]) -> Output {
    Command::new(fogd_bin()).args(args).output().expect("run fogd")
}

fn fogd_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(fogd_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run fogd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn media_dir() -> PathBuf {
    common::repo().join("examples/camera-ingest/media")
}

fn photo(name: &str) -> String {
    media_dir().join(name).to_string_lossy().into_owned()
}

fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg {args:?}: {}", text(&o));
}

/// The frames written for a video, `img1.jpg`, `img2.jpg`, ... in `dir`, up to the first gap.
fn written_frames(dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|i| dir.join(format!("img{i}.jpg")))
        .take_while(|p| p.is_file())
        .collect()
}

fn sidecar(p: &Path) -> FrameReport {
    serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap()).unwrap()
}

fn boxes(r: &FrameReport) -> Vec<FaceBox> {
    fogd_vision::anonymize::sidecar_faces(r)
        .into_iter()
        .map(|(b, _)| b)
        .collect()
}

/// The labelled box of a photo (faces-xyxy.json); a masked variant has its plain photo's box.
fn labelled(name: &str) -> FaceBox {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(media_dir().join("faces-xyxy.json")).unwrap()).unwrap();
    let plain = if name.starts_with("astronaut") {
        "astronaut.png"
    } else {
        "grace_hopper.jpg"
    };
    let v: Vec<f32> = all[plain][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    FaceBox {
        x1: v[0],
        y1: v[1],
        x2: v[2],
        y2: v[3],
        score: 1.0,
    }
}

/// The reference detector that checks outputs: the original fp32 CenterFace (the int8 file
/// scores blurred heads a little higher, 0.12-0.16, just over the 0.1 threshold).
fn detector() -> Detector {
    let opts = DetectorOptions {
        precision: Precision::Fp32,
        sessions: 1,
        ..DetectorOptions::default()
    };
    Detector::load(&opts, None).unwrap()
}

#[test]
fn photos_faces_found_masks_judged_and_nothing_left_after_blurring() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let names = [
        "astronaut.png",
        "grace_hopper.jpg",
        "astronaut_masked.png",
        "grace_hopper_masked.png",
    ];
    let mut args = vec!["anonymize".to_string()];
    args.extend(names.iter().map(|n| photo(n)));
    args.extend([
        "--out".into(),
        out.to_string_lossy().into_owned(),
        "--classify-masks".into(),
    ]);
    let o = fogd(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 frame(s) written"), "{}", text(&o));
    let det = detector();
    for n in names {
        let img = out.join(n);
        let r = sidecar(&img);
        let truth = labelled(n);
        let hit = r.faces.iter().find(|f| f.face_box().iou(&truth) >= 0.5);
        let hit = hit.unwrap_or_else(|| panic!("{n}: labelled face not found: {:?}", r.faces));
        let want = if n.contains("masked") {
            MaskClass::Mask
        } else {
            MaskClass::NoMask
        };
        assert_eq!(hit.mask.map(|m| m.class), Some(want), "{n}");
        // The written image: the face is gone for the detector.
        let left = det.detect(&media::read_image(&img).unwrap()).unwrap();
        assert!(
            left.iter().all(|b| b.iou(&truth) < 0.5),
            "{n}: face still found after blurring: {left:?}"
        );
    }
}

#[test]
fn generated_video_recall_residual_and_mask_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let o = fogd(&["sample", "--seconds", "12", "--out", clip.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let truth = Truth::load(&clip.with_extension("truth.json")).unwrap();
    assert_eq!(truth.frames.len(), 12 * 25);
    let det = detector();
    // The third: keyframes through the fp32 models, two frames in flight (results must still
    // come out complete and in capture order).
    for mode in ["exact", "keyframes", "fp32-in-flight-2"] {
        let out = dir.path().join(mode);
        let mut args = vec![
            "anonymize",
            clip.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(["--every", "1s", "--classify-masks"]);
        if mode != "exact" {
            args.push("--keyframes");
        }
        if mode == "fp32-in-flight-2" {
            args.extend(["--precision", "fp32", "--in-flight", "2"]);
        }
        let o = fogd(&args);
        assert!(o.status.success(), "{}", text(&o));
        let frames = written_frames(&out.join("clip"));
        // Exact: 0..11 s. Keyframes (2 s GOP): the first keyframe in each second: 0, 2, 4, ...
        assert!(
            frames.len() >= if mode == "exact" { 12 } else { 6 },
            "{mode}: {} frames",
            frames.len()
        );
        let (mut rec, mut left) = (Recall::default(), Recall::default());
        let mut masks = MaskTally::default();
        for (i, f) in frames.iter().enumerate() {
            let r = sidecar(f);
            assert_eq!(r.frame, Some(i + 1), "{mode}: {}", f.display());
            let t = r.timestamp_s.unwrap();
            let faces = truth.at(t);
            sample::recall(faces, &boxes(&r), 40.0, &mut rec);
            sample::recall(
                faces,
                &det.detect(&media::read_image(f).unwrap()).unwrap(),
                40.0,
                &mut left,
            );
            masks.add(faces, &r.faces);
        }
        let acc = |m: usize| masks.accuracy(m == 1).unwrap_or(0.0);
        let judged = masks.judged;
        println!(
            "{mode}: {} frames; recall >= 40 px {:.3} ({}/{}); still detected after redaction {}/{}; \
             mask accuracy: masked {:.3} ({:?}), unmasked {:.3} ({:?})",
            frames.len(),
            rec.recall,
            rec.found,
            rec.faces,
            left.found,
            left.faces,
            acc(1),
            judged[1],
            acc(0),
            judged[0]
        );
        assert!(rec.recall >= 0.95, "{mode}: recall {:.3}", rec.recall);
        assert!(
            left.found as f64 <= 0.02 * left.faces as f64,
            "{mode}: {} faces left",
            left.found
        );
        assert!(
            acc(0) >= 0.95 && acc(1) >= 0.95,
            "{mode}: mask accuracy {judged:?}"
        );
    }
}

#[test]
fn detect_masks_annotates_and_prefers_the_anonymisers_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = fogd(&[
        "anonymize",
        &photo("grace_hopper_masked.png"),
        &photo("astronaut.png"),
        "--out",
        out.to_str().unwrap(),
        "--classify-masks",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    // On the raw photos: detection + classification.
    let raw = dir.path().join("raw");
    let o = fogd(&[
        "detect-masks",
        &photo("grace_hopper_masked.png"),
        &photo("astronaut.png"),
        "--out",
        raw.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["from"], "detection");
    assert_eq!(v[0]["status"], "Safe");
    assert_eq!(v[1]["status"], "Danger");
    assert!(
        raw.join("grace_hopper_masked.masks.jpg").is_file() && raw.join("astronaut.masks.json").is_file()
    );
    // On the blurred outputs: the sidecar's verdicts (judged before blurring) are used.
    let blurred = out.join("astronaut.png");
    let o = fogd(&[
        "detect-masks",
        blurred.to_str().unwrap(),
        "--out",
        raw.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["from"], "sidecar");
    assert_eq!(v[0]["counts"]["no_mask"], 1);
    // The sidecar alone, as a workflow step gets it: the verdicts, no picture.
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(out.join("grace_hopper_masked.json"), alone.join("f.json")).unwrap();
    let o = fogd(&[
        "detect-masks",
        alone.join("f.json").to_str().unwrap(),
        "--out",
        alone.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v[0]["from"].as_str(), v[0]["status"].as_str()),
        (Some("sidecar"), Some("Safe"))
    );
    assert!(v[0]["annotated"].is_null() && alone.join("f.masks.json").is_file());
}

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

#[test]
fn a_corrupt_or_missing_model_is_a_clear_error_never_garbage_boxes() {
    // The default int8 files and the fp32 detector; the classifier beside a sound detector.
    for (file, precision) in [
        ("centerface-int8.onnx", "int8"),
        ("centerface.onnx", "fp32"),
        ("mask-classifier-int8.onnx", "int8"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(&models).unwrap();
        let shipped = common::repo().join("models");
        let classifier = file.starts_with("mask");
        if classifier {
            std::fs::copy(
                shipped.join("centerface-int8.onnx"),
                models.join("centerface-int8.onnx"),
            )
            .unwrap();
        }
        let mut bytes = std::fs::read(shipped.join(file)).unwrap();
        bytes[1000] ^= 0xff;
        std::fs::write(models.join(file), &bytes).unwrap();
        let out = dir.path().join("out");
        let mut args = vec![
            "anonymize".to_string(),
            photo("astronaut.png"),
            "--out".into(),
            out.to_str().unwrap().into(),
            "--precision".into(),
            precision.into(),
        ];
        if classifier {
            args.push("--classify-masks".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = fogd_env(&args, &[("FOGD_MODELS", models.to_str().unwrap())]);
        assert!(!o.status.success());
        assert!(
            text(&o).contains(file) && text(&o).contains("SHA-256"),
            "{file}: {}",
            text(&o)
        );
        assert!(!out.exists(), "nothing written with a corrupt model");
        std::fs::remove_file(models.join(file)).unwrap();
        let o = fogd_env(&args, &[("FOGD_MODELS", models.to_str().unwrap())]);
        assert!(!o.status.success());
        assert!(
            text(&o).contains("not found") && text(&o).contains(file),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn the_opencv_backend_is_the_fallback_and_finds_the_same_faces() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = fogd_env(
        &[
            "anonymize",
            &photo("grace_hopper.jpg"),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(opencv)"), "{}", text(&o));
    let r = sidecar(&out.join("grace_hopper.jpg"));
    assert_eq!(r.backend, "opencv");
    assert!(r
        .faces
        .iter()
        .any(|f| { FaceBox::from_array(f.bbox, 1.0).iou(&labelled("grace_hopper.jpg")) >= 0.5 }));
    let data = dir.path().join("data");
    let check = fogd_env(
        &["--data-dir", data.to_str().unwrap(), "check"],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(text(&check).contains("OpenCV DNN"), "{}", text(&check));
}

/// The example workflow (examples/camera-ingest) under `fogd run`: a video lands in
/// cameras/incoming, anon-and-split writes blurred frames and sidecars, mask-detector judges each
/// frame from its sidecar. Nothing raw reaches the output paths.
#[test]
fn the_camera_ingest_example_runs_end_to_end_under_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin_dir = fogd_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let example = common::repo().join("examples/camera-ingest/workflow.yaml");
    std::fs::write(d.join("fogd.yaml"), "data_dir: data\ngateway: {enabled: false}\n").unwrap();
    let clip = d.join("cam1.mp4");
    let o = fogd(&[
        "sample",
        "--seconds",
        "11",
        "--width",
        "1280",
        "--height",
        "720",
        "--out",
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let cfg = d.join("fogd.yaml");
    let log = std::fs::File::create(d.join("daemon.log")).unwrap();
    let mut daemon = Command::new(fogd_bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            example.to_str().unwrap(),
        ])
        .env("PATH", &path)
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    common::wait_registered(&d.join("data"));
    let o = fogd(&[
        "--config",
        cfg.to_str().unwrap(),
        "put",
        "minio/cameras/incoming/",
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 invocation(s) queued"), "{}", text(&o));
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
        assert_eq!(v["from"], "sidecar");
        assert!(
            v["counts"]["mask"].as_u64().unwrap() + v["counts"]["no_mask"].as_u64().unwrap() >= 4,
            "{v}"
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
    let o = fogd(&[
        "sample",
        "--seconds",
        "6",
        "--width",
        "640",
        "--height",
        "360",
        "--fps",
        "10",
        "--out",
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
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

#[test]
fn every_redaction_mode_and_shape_leaves_no_face_to_find() {
    let dir = tempfile::tempdir().unwrap();
    let det = detector();
    let truth = labelled("grace_hopper.jpg");
    let original = media::read_image(Path::new(&photo("grace_hopper.jpg"))).unwrap();
    for (mode, shape) in [
        ("blur", "box"),
        ("mosaic", "ellipse"),
        ("mosaic", "box"),
        ("solid", "ellipse"),
    ] {
        let out = dir.path().join(format!("{mode}-{shape}"));
        let o = fogd(&[
            "anonymize",
            &photo("grace_hopper.jpg"),
            "--out",
            out.to_str().unwrap(),
            "--mode",
            mode,
            "--shape",
            shape,
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let img = media::read_image(&out.join("grace_hopper.jpg")).unwrap();
        let left = det.detect(&img).unwrap();
        assert!(
            left.iter().all(|b| b.iou(&truth) < 0.5),
            "{mode}/{shape}: face still found: {left:?}"
        );
        // Outside the grown face box the picture is the original (up to JPEG noise).
        let corner = opencv::core::Rect::new(0, 0, 100, 100);
        let (a, b) = (
            opencv::core::Mat::roi(&original, corner).unwrap(),
            opencv::core::Mat::roi(&img, corner).unwrap(),
        );
        let mut diff = opencv::core::Mat::default();
        opencv::core::absdiff(&a, &b, &mut diff).unwrap();
        let m = opencv::core::mean_def(&diff).unwrap();
        assert!(
            m[0] + m[1] + m[2] < 15.0,
            "{mode}/{shape}: the background changed: {m:?}"
        );
    }
}

/// Tiling finds the small faces a small detector input misses.
#[test]
fn tiles_find_the_small_faces_a_small_input_misses() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    let o = fogd(&["sample", "--seconds", "3", "--out", clip.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let truth = Truth::load(&clip.with_extension("truth.json")).unwrap();
    let mut frames = Vec::new();
    let mut reader = media::VideoReader::open(clip.to_str().unwrap()).unwrap();
    reader
        .sample(
            std::time::Duration::from_secs(1),
            media::Sampling::Exact,
            &mut |f| {
                frames.push((f.timestamp_s, f.image));
                Ok(())
            },
        )
        .unwrap();
    let recall_with = |tiles: u32| {
        let opts = DetectorOptions {
            input_size: 480,
            tiles,
            ..DetectorOptions::default()
        };
        let det = Detector::load(&opts, None).unwrap();
        let mut r = Recall::default();
        for (t, img) in &frames {
            sample::recall(truth.at(*t), &det.detect(img).unwrap(), 40.0, &mut r);
        }
        r
    };
    let (one, two) = (recall_with(1), recall_with(2));
    println!(
        "input 480: recall {:.3} whole frame, {:.3} with 2x2 tiles",
        one.recall, two.recall
    );
    assert!(two.recall >= 0.95 && two.recall > one.recall, "{one:?} {two:?}");
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
    // A second run starts from clean data and reuses the video.
    let o = fogd(&["demo", "--seconds", "11", "--dir", demo.to_str().unwrap()]);
    assert!(
        o.status.success() && !text(&o).contains("making a"),
        "{}",
        text(&o)
    );
}
