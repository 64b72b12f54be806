//! Privacy zones (issue 32): a camera's polygons are blacked out before detection and before
//! anything is written. A node runs the example workflow (the real anonymiser and mask detector)
//! fed over a real Mosquitto; a zone covers the only face of the camera's frame. The face is in
//! no anonymised frame, no verdict, no snapshot (file and HTTP) and no Home Assistant image. The
//! zones change through the API; a broken zone stops the frame with a message naming it.

use crate::common;
use crate::vision_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use opencv::core::{Mat, Rect};
use opencv::prelude::*;
use vision_support::{detector_at, fogd_bin, fogd_env, labelled, media, photo, sidecar, text, FaceBox};

const NODE: &str = "edge-z";

/// A script that tries to run the anonymiser without its camera's zones: the variable unset, and
/// a zone of its own (a speck in a corner) on the command line.
const UNZONED: &str = "rel=$(dirname \"${STORAGE_OBJECT_KEY#incoming/}\")\nunset FOGD_PRIVACY_ZONES\n\
                       exec fogd anonymize \"$INPUT_FILE_PATH\" --out \"$TMP_OUTPUT_DIR/$rel\" --zones \
                       '{\"camera\":\"door\",\"zones\":[{\"points\":[[0,0],[0.01,0],[0.01,0.01]]}]}'\n";
const UNZONED_SVC: &str = "  - edge:\n      name: unzoned\n      image: fogd/builtin:anonymize\n      \
                           script: unzoned.sh\n      input:\n      - storage_provider: minio.default\n        \
                           path: cameras/incoming\n      output:\n      - storage_provider: minio.default\n        \
                           path: cameras/unzoned\n";
const CAMERA: &str = "door";

/// The photo's face box grown by 15% a side, as a zone in normalised coordinates.
fn face_zone() -> (FaceBox, [[f64; 2]; 4]) {
    let f = labelled("grace_hopper.jpg");
    let img = media::read_image(Path::new(&photo("grace_hopper.jpg"))).expect("photo");
    let (w, h) = (img.cols() as f64, img.rows() as f64);
    let (gx, gy) = (0.15 * f.width() as f64, 0.15 * f.height() as f64);
    let x1 = ((f.x1 as f64 - gx) / w).max(0.0);
    let y1 = ((f.y1 as f64 - gy) / h).max(0.0);
    let x2 = ((f.x2 as f64 + gx) / w).min(1.0);
    let y2 = ((f.y2 as f64 + gy) / h).min(1.0);
    (f, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
}

fn zone_yaml(points: &[[f64; 2]; 4]) -> String {
    let pts: Vec<String> = points.iter().map(|[x, y]| format!("[{x:.4}, {y:.4}]")).collect();
    format!(
        "cameras:\n  {CAMERA}:\n    zones:\n    - name: doorway\n      points: [{}]\n",
        pts.join(", ")
    )
}

/// The face's box (in the photo's pixels) is black in `jpeg`, and the reference detector finds
/// no face on it, even at a low threshold.
fn assert_face_hidden(what: &str, jpeg: &[u8], face: &FaceBox) {
    let img = opencv::imgcodecs::imdecode(
        &opencv::core::Vector::<u8>::from_slice(jpeg),
        opencv::imgcodecs::IMREAD_COLOR,
    )
    .unwrap_or_else(|e| panic!("{what}: not a picture: {e}"));
    assert!(img.cols() > 0, "{what}: empty picture");
    let r = Rect::new(
        face.x1 as i32 + 2,
        face.y1 as i32 + 2,
        face.width() as i32 - 4,
        face.height() as i32 - 4,
    );
    let roi = Mat::roi(&img, r).expect("roi").try_clone().expect("clone");
    let (mut min, mut max) = (0.0, 0.0);
    opencv::core::min_max_loc(
        &roi.reshape(1, 0).expect("one channel"),
        Some(&mut min),
        Some(&mut max),
        None,
        None,
        &opencv::core::no_array(),
    )
    .expect("min max");
    // Black, give or take JPEG's ringing at the zone's edge.
    assert!(
        max <= 24.0,
        "{what}: the zone over the face is not black (max {max})"
    );
    let found = detector_at(Some(0.3)).detect(&img).expect("detect");
    assert!(
        found.iter().all(|b| b.iou(face) < 0.1),
        "{what}: a detector still finds the face: {found:?}"
    );
}

fn anonymised_frames(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "jpg"));
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_hides_a_face_from_every_output_snapshot_and_home_assistant_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = Mosquitto::start(d);
    let (face, points) = face_zone();
    // The example workflow, and a service that strips the zones from its own request.
    let example = repo().join("examples/camera-ingest");
    for script in ["anon-and-split.sh", "mask-detector.sh"] {
        std::fs::copy(example.join(script), d.join(script)).unwrap();
    }
    std::fs::write(d.join("unzoned.sh"), UNZONED).unwrap();
    let workflow = d.join("workflow.yaml");
    let fdl = std::fs::read_to_string(example.join("workflow.yaml")).unwrap();
    std::fs::write(&workflow, format!("{fdl}{UNZONED_SVC}")).unwrap();
    let extra = format!(
        "mqtt:\n  broker: {}\n  stats_interval: 1s\ningest:\n  path: cameras/incoming\n{}",
        broker.url(),
        zone_yaml(&points)
    );
    let node = FogdNode::start(&fogd_bin(), &d.join("node"), NODE, &extra, Some(&workflow));
    let data = node.dir.join("data");
    let anonymised = data.join(format!("store/cameras/anonymised/{CAMERA}"));
    let http = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| r.basic_auth("oscar", Some(node.password.clone()));
    let zones_url = format!("{}/fogd/cameras/{CAMERA}/zones", node.url);
    let mut watch = Mqtt::connect(broker.port, "watcher").await;
    wait_online(&mut watch, NODE).await;
    let mut cam = Mqtt::connect(broker.port, "camera").await;
    let log = || std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default();

    // 1. One frame, the zone from fogd.yaml over its only face.
    let wait_frames = |n: usize| {
        let t0 = Instant::now();
        while anonymised_frames(&anonymised).len() < n
            || !data.join(format!("snapshots/{CAMERA}.jpg")).is_file()
        {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no anonymised frame {n}: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    assert!(
        cam.send(
            &format!("fogd/cameras/{CAMERA}/frame"),
            tagged_jpeg(&face_jpeg(), "frame 1")
        )
        .await
    );
    wait_frames(1);
    let frame = &anonymised_frames(&anonymised)[0];
    assert_face_hidden("anonymised frame", &std::fs::read(frame).unwrap(), &face);
    let report = sidecar(frame);
    assert_eq!(report.zones, 1, "{report:?}");
    // The detector ran on the blacked-out frame: nothing it reports is the face (boxes under the
    // counting threshold elsewhere are blurred anyway).
    assert!(
        report.faces.iter().all(|f| f.face_box().iou(&face) < 0.1),
        "{report:?}"
    );
    // The verdict judged no face either (it would be judged on the raw crop).
    let results = data.join(format!("store/cameras/results/{CAMERA}"));
    let t0 = Instant::now();
    let verdict = loop {
        let json = std::fs::read_dir(&results).ok().and_then(|r| {
            r.flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".masks.json"))
        });
        if let Some(p) = json {
            break serde_json::from_slice::<serde_json::Value>(&std::fs::read(p).unwrap()).unwrap();
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no verdict: {}", log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        (
            verdict["counts"]["mask"].as_u64(),
            verdict["counts"]["no_mask"].as_u64()
        ),
        (Some(0), Some(0)),
        "{verdict}"
    );

    // The snapshot: as a file, through the API, and as Home Assistant's retained image.
    let snap = std::fs::read(data.join(format!("snapshots/{CAMERA}.jpg"))).unwrap();
    assert_face_hidden("snapshot file", &snap, &face);
    let r = admin(http.get(format!("{}/fogd/cameras/{CAMERA}/snapshot.jpg", node.url)))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{r:?}");
    assert_face_hidden("snapshot over HTTP", &r.bytes().await.unwrap(), &face);
    let topic = format!("fogd/{NODE}/cameras/{CAMERA}/snapshot");
    let mut ha = Mqtt::connect(broker.port, "home-assistant").await;
    let t0 = Instant::now();
    let ha_image = loop {
        ha.subscribe(&topic).await;
        ha.pump(Duration::from_secs(1)).await;
        if let Some((_, p)) = ha.received.iter().rev().find(|(t, _)| *t == topic) {
            break p.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no snapshot on {topic}: {}",
            log()
        );
    };
    assert_face_hidden("Home Assistant image", &ha_image, &face);

    // 2. The API: the zones in force and where they come from.
    let get = |http: &reqwest::Client| admin(http.get(&zones_url)).send();
    let v: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(
        (v["source"].as_str(), v["zones"].as_array().map(Vec::len)),
        (Some("config"), Some(1)),
        "{v}"
    );
    let r = http.get(&zones_url).send().await.unwrap();
    assert_eq!(r.status(), 401, "zones without credentials");
    // A broken polygon (a bow tie) is refused whole, naming the zone; the old zones stay.
    let bow_tie = serde_json::json!({"zones": [
        {"name": "till", "points": [[0.1, 0.1], [0.3, 0.3], [0.3, 0.1], [0.1, 0.3]]},
    ]});
    let r = admin(http.put(&zones_url)).json(&bow_tie).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e = r.text().await.unwrap();
    assert!(e.contains("zone 0 (`till`)") && e.contains("cross"), "{e}");
    for bad in [
        serde_json::json!({"zones": [{"points": [[0.1, 0.1], [2.0, 0.1], [0.5, 0.5]]}]}),
        serde_json::json!({"camera": "gate", "zones": []}),
        serde_json::json!({"zones": [], "color": "red"}),
    ] {
        let r = admin(http.put(&zones_url)).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    let v: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(v["source"], "config", "{v}");
    // Two zones set through the API replace fogd.yaml's for the next frames.
    let two = serde_json::json!({"zones": [
        {"name": "doorway", "points": points},
        {"name": "till", "points": [[0.0, 0.9], [0.2, 0.9], [0.2, 1.0], [0.0, 1.0]]},
    ]});
    let r = admin(http.put(&zones_url)).json(&two).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let v: serde_json::Value = get(&http).await.unwrap().json().await.unwrap();
    assert_eq!(
        (v["source"].as_str(), v["zones"].as_array().map(Vec::len)),
        (Some("api"), Some(2)),
        "{v}"
    );
    assert!(
        cam.send(
            &format!("fogd/cameras/{CAMERA}/frame"),
            tagged_jpeg(&face_jpeg(), "frame 2")
        )
        .await
    );
    wait_frames(2);
    let second = anonymised_frames(&anonymised)
        .into_iter()
        .find(|p| p != frame)
        .expect("a second frame");
    assert_face_hidden("second frame", &std::fs::read(&second).unwrap(), &face);
    assert_eq!(sidecar(&second).zones, 2);
    // Deleted: fogd.yaml's zone again.
    let r = admin(http.delete(&zones_url)).send().await.unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (v["source"].as_str(), v["zones"].as_array().map(Vec::len)),
        (Some("config"), Some(1)),
        "{v}"
    );
    // The frame of the service that left the zones out of its request: the worker applied the
    // camera's zones all the same (the node's, from the invocation's grant), so it verifies.
    let unzoned = data.join(format!("store/cameras/unzoned/{CAMERA}"));
    let t0 = Instant::now();
    while anonymised_frames(&unzoned).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no unzoned frame: {}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let f = &anonymised_frames(&unzoned)[0];
    let o = fogd_env(
        &[
            "--config",
            node.dir.join("fogd.yaml").to_str().unwrap(),
            "verify",
            f.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        o.status.success() && text(&o).contains("1 zone(s)"),
        "{}",
        text(&o)
    );
    assert_eq!(sidecar(f).zones, 1);
    assert!(!log().contains("panicked"), "{}", log());
}

/// Zones given to the anonymiser directly, and every way of getting them wrong: nothing is
/// written, and the message says which zone, field or camera.
#[test]
fn a_broken_zone_stops_the_frame_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (face, points) = face_zone();
    let input = photo("grace_hopper.jpg");
    let good = serde_json::json!({"camera": CAMERA, "zones": [{"points": points}]}).to_string();
    // (what, environment, more arguments, what the error says)
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            vec![("FOGD_PRIVACY_ZONES", "{not json".into())],
            vec![],
            "FOGD_PRIVACY_ZONES",
        ),
        (
            "another camera",
            vec![
                ("FOGD_PRIVACY_ZONES", good.clone()),
                ("STORAGE_OBJECT_KEY", "incoming/gate/1.jpg".into()),
            ],
            vec![],
            "camera `door`",
        ),
        (
            "a bow tie",
            vec![],
            vec![
                "--zones",
                r#"{"camera":"door","zones":[{"points":[[0.1,0.1],[0.3,0.3],[0.3,0.1],[0.1,0.3]]}]}"#,
            ],
            "zone 0: its edges 0 and 2 cross",
        ),
        (
            "a missing file",
            vec![],
            vec!["--zones", "/nonexistent/zones.json"],
            "--zones /nonexistent/zones.json",
        ),
    ];
    for (what, env, extra, says) in cases {
        let out = d.join(what.replace(' ', "-"));
        let mut args = vec!["anonymize", input.as_str(), "--out", out.to_str().unwrap()];
        args.extend(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let o = fogd_env(&args, &env);
        assert!(!o.status.success(), "{what}: {}", text(&o));
        assert!(text(&o).contains(says), "{what}: wanted `{says}` in {}", text(&o));
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "{what}: something was written"
        );
    }
    // The same zones, right, from a file and for the object's own camera.
    let file = d.join("zones.json");
    std::fs::write(&file, &good).unwrap();
    let out = d.join("ok");
    let o = fogd_env(
        &[
            "anonymize",
            &input,
            "--out",
            out.to_str().unwrap(),
            "--zones",
            file.to_str().unwrap(),
        ],
        &[("STORAGE_OBJECT_KEY", "incoming/door/1.jpg")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let written = out.join("grace_hopper.jpg");
    assert_face_hidden("--zones FILE", &std::fs::read(&written).unwrap(), &face);
    assert_eq!(sidecar(&written).zones, 1);

    // The live audit finds what a too-high threshold left: the face, in the report.
    let out = d.join("audit");
    let o = fogd_env(
        &[
            "anonymize",
            &input,
            "--out",
            out.to_str().unwrap(),
            "--thresh",
            "0.99",
            "--audit-every",
            "1",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = sidecar(&out.join("grace_hopper.jpg"));
    let audit = r.audit.clone().expect("audited");
    assert_eq!(
        (audit.detector.as_str(), r.faces.len()),
        ("ultraface", 0),
        "{r:?}"
    );
    assert!(audit.faces_left >= 1, "{r:?}");
    // A broken zone in fogd.yaml: fogd does not start, and says where.
    let cfg = d.join("fogd.yaml");
    std::fs::write(
        &cfg,
        "data_dir: data\ncameras:\n  door:\n    zones:\n    - name: window\n      points: [[0.1, 0.1], [1.2, 0.1], [0.5, 0.5]]\n",
    )
    .unwrap();
    let o = fogd_env(&["--config", cfg.to_str().unwrap(), "jobs"], &[]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("cameras.door.zones: privacy zone 0 (`window`): corner 1")
            && t.contains("outside the picture"),
        "{t}"
    );
}

/// The operator test's status page (tests/ui/drive.py) drew a zone with the mouse over the
/// snapshot (0.1-0.4 of its width, 0.1-0.3 of its height): saved through the API in the
/// snapshot's coordinates, and shown.
pub fn check_drawn_zone(ui: &serde_json::Value) {
    let zones = &ui["zones"];
    let near = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap_or(-1.0) - want).abs() < 0.02;
    let p = &zones["zones"][0]["points"];
    let drawn = [(0, 0, 0.1), (0, 1, 0.1), (2, 0, 0.4), (2, 1, 0.3)]
        .iter()
        .all(|&(i, j, w)| near(&p[i][j], w));
    assert!(
        zones["source"] == "api" && p.as_array().map(Vec::len) == Some(4) && drawn,
        "{zones}"
    );
    assert_eq!(ui["zones_shown"], 1, "{ui}");
}
