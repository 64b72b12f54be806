//! Edge vision's results on real pictures (`fogd anonymize`, `fogd detect-masks`): the real
//! photos, a generated video with known faces, the real models on ONNX Runtime and OpenCV DNN.

use crate::common;
use crate::vision_support;

use vision_support::*;

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
    let mut pooled = MaskTally::default();
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
            score::recall(faces, &boxes(&r), 40.0, &mut rec);
            score::recall(
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
        pooled.judged[0][0] += judged[0][0];
        pooled.judged[0][1] += judged[0][1];
        pooled.judged[1][0] += judged[1][0];
        pooled.judged[1][1] += judged[1][1];
    }
    // Over the three runs (a dozen masked faces each: one slip would be 8%).
    let (masked, plain) = (
        pooled.accuracy(true).unwrap_or(0.0),
        pooled.accuracy(false).unwrap_or(0.0),
    );
    assert!(
        masked >= 0.95 && plain >= 0.95,
        "mask accuracy {:?}",
        pooled.judged
    );
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
    let v = detect_masks_json(
        &[&photo("grace_hopper_masked.png"), &photo("astronaut.png")],
        &raw,
    );
    assert_eq!(v[0]["from"], "detection");
    assert_eq!(v[0]["status"], "Safe");
    assert_eq!(v[1]["status"], "Danger");
    assert!(
        raw.join("grace_hopper_masked.masks.jpg").is_file() && raw.join("astronaut.masks.json").is_file()
    );
    // On the blurred outputs: the sidecar's verdicts (judged before blurring) are used.
    let blurred = out.join("astronaut.png");
    let v = detect_masks_json(&[blurred.to_str().unwrap()], &raw);
    assert_eq!(v[0]["from"], "sidecar");
    assert_eq!(v[0]["counts"]["no_mask"], 1);
    // The sidecar alone, as a workflow step gets it: the verdicts, no picture.
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(out.join("grace_hopper_masked.json"), alone.join("f.json")).unwrap();
    let v = detect_masks_json(&[alone.join("f.json").to_str().unwrap()], &alone);
    assert_eq!(
        (v[0]["from"].as_str(), v[0]["status"].as_str()),
        (Some("sidecar"), Some("Safe"))
    );
    assert!(v[0]["annotated"].is_null() && alone.join("f.masks.json").is_file());
}

/// The anonymised JPEG alone, as the workflow's mask detector gets it: the report it carries
/// gives the faces and masks judged before blurring, and the verdict is drawn on that (blurred)
/// picture. Without mask classification the verdict is "not judged", never "Safe".
#[test]
fn an_anonymised_frame_alone_gets_its_verdict_drawn_and_unjudged_masks_are_said_so() {
    use opencv::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    for (classify, verdict, status) in [(true, "danger", "Danger"), (false, "not_judged", "NotJudged")] {
        let out = dir.path().join(format!("out-{classify}"));
        let mut args = vec!["anonymize".to_string(), photo("grace_hopper.jpg"), "--out".into()];
        args.push(out.to_str().unwrap().into());
        if classify {
            args.push("--classify-masks".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = fogd(&refs);
        assert!(o.status.success(), "{}", text(&o));
        let alone = dir.path().join(format!("alone-{classify}"));
        std::fs::create_dir_all(&alone).unwrap();
        let frame = alone.join("f.jpg");
        std::fs::copy(out.join("grace_hopper.jpg"), &frame).unwrap();
        let v = detect_masks_json(&[frame.to_str().unwrap()], &alone);
        assert_eq!(
            (
                v[0]["from"].as_str(),
                v[0]["verdict"].as_str(),
                v[0]["status"].as_str()
            ),
            (Some("report"), Some(verdict), Some(status)),
            "{v}"
        );
        assert_eq!(v[0]["detection_status"], "ok");
        assert_eq!(v[0]["counts"]["faces"], 1, "{v}");
        // The annotated picture is the blurred frame with boxes and the banner drawn on it.
        let annotated = fogd_vision::media::read_image(&alone.join("f.masks.jpg")).unwrap();
        let blurred = fogd_vision::media::read_image(&frame).unwrap();
        assert_eq!(
            (annotated.cols(), annotated.rows()),
            (blurred.cols(), blurred.rows())
        );
        let (a, b) = (annotated.data_bytes().unwrap(), blurred.data_bytes().unwrap());
        let changed = a.iter().zip(b).filter(|(x, y)| x.abs_diff(**y) > 60).count();
        assert!(changed > 3000, "only {changed} bytes differ: nothing drawn");
    }
}

#[test]
fn a_corrupt_or_missing_model_is_a_clear_error_never_garbage_boxes() {
    // The int8 files and the default fp32 detector; the classifier beside a sound detector.
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
            score::recall(truth.at(*t), &det.detect(img).unwrap(), 40.0, &mut r);
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
