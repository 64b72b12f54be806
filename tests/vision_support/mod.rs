//! What the vision tests share: running the binaries, the sample media, reading sidecars.
#![allow(dead_code, unused_imports)]

/// The agent's binary, beside this package's `fogd-vision` in the target folder.
pub fn fogd_bin() -> PathBuf {
    crate::common::workspace_bin("fogd")
}

pub use std::path::{Path, PathBuf};
pub use std::process::{Command, Output};

pub use fogd_vision::anonymize::FrameReport;
pub use fogd_vision::bench::score::{self, MaskTally, Recall};
pub use fogd_vision::detect::{Detector, DetectorOptions, FaceBox};
pub use fogd_vision::masks::MaskClass;
pub use fogd_vision::media;
pub use fogd_vision::models::Precision;
pub use fogd_vision::sample::{self, Truth};

pub fn fogd(args: &[&str]) -> Output {
    Command::new(fogd_bin()).args(args).output().expect("run fogd")
}

pub fn fogd_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(fogd_bin())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run fogd")
}

/// `fogd run` of the camera-ingest example's workflow with `<dir>/fogd.yaml` (data in
/// `<dir>/data`, its log in `<dir>/daemon.log`), then `clip` put into its input path. The
/// caller kills the daemon.
pub fn run_example_with(dir: &Path, clip: &Path) -> std::process::Child {
    let example = crate::common::repo().join("examples/camera-ingest/workflow.yaml");
    let cfg = dir.join("fogd.yaml");
    let daemon = Command::new(fogd_bin())
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "run",
            example.to_str().unwrap(),
        ])
        .env("PATH", path_with_fogd())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    crate::common::wait_registered(&dir.join("data"));
    let o = fogd(&[
        "--config",
        cfg.to_str().unwrap(),
        "put",
        "minio/cameras/incoming/",
        clip.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 invocation(s) queued"), "{}", text(&o));
    daemon
}

/// PATH with the binaries built here first: the example workflows' scripts call `fogd`.
pub fn path_with_fogd() -> String {
    let bin_dir = fogd_bin().parent().unwrap().to_path_buf();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `fogd sample` into `out` (`extra`: more of its flags, `--fps 10`).
pub fn sample_clip(out: &Path, seconds: u32, width: u32, height: u32, extra: &[&str]) {
    let (s, w, h) = (seconds.to_string(), width.to_string(), height.to_string());
    let mut args = vec!["sample", "--seconds", &s, "--width", &w, "--height", &h];
    args.extend_from_slice(extra);
    args.extend(["--out", out.to_str().unwrap()]);
    let o = fogd(&args);
    assert!(o.status.success(), "{}", text(&o));
}

/// `fogd detect-masks INPUT... --out OUT --json`, which must succeed: its results.
pub fn detect_masks_json(inputs: &[&str], out: &Path) -> serde_json::Value {
    let mut args = vec!["detect-masks"];
    args.extend_from_slice(inputs);
    args.extend(["--out", out.to_str().unwrap(), "--json"]);
    let o = fogd(&args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub use crate::common::text;

pub fn media_dir() -> PathBuf {
    crate::common::repo().join("examples/camera-ingest/media")
}

pub fn photo(name: &str) -> String {
    media_dir().join(name).to_string_lossy().into_owned()
}

pub fn ffmpeg(args: &[&str]) {
    let o = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "ffmpeg {args:?}: {}", text(&o));
}

/// The frames written for a video, `img1.jpg`, `img2.jpg`, ... in `dir`, up to the first gap.
pub fn written_frames(dir: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|i| dir.join(format!("img{i}.jpg")))
        .take_while(|p| p.is_file())
        .collect()
}

pub fn sidecar(p: &Path) -> FrameReport {
    serde_json::from_slice(&std::fs::read(p.with_extension("json")).unwrap()).unwrap()
}

pub fn boxes(r: &FrameReport) -> Vec<FaceBox> {
    fogd_vision::anonymize::sidecar_faces(r)
        .into_iter()
        .map(|(b, _)| b)
        .collect()
}

/// The labelled box of a photo (faces-xyxy.json); a masked variant has its plain photo's box.
pub fn labelled(name: &str) -> FaceBox {
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
pub fn detector() -> Detector {
    detector_at(None)
}

/// `detector` that reports faces from `threshold` (None: CenterFace's redaction threshold, 0.1,
/// at which blurred blobs of hair and grey still score 0.11-0.29).
pub fn detector_at(threshold: Option<f32>) -> Detector {
    let opts = DetectorOptions {
        precision: Precision::Fp32,
        sessions: 1,
        threshold,
        ..DetectorOptions::default()
    };
    Detector::load(&opts, None).unwrap()
}
