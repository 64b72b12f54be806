//! The operator's view of a node at work: `fogd run` on the example workflow (the real
//! anonymiser and mask detector), fed by the sample video and a photo over a real Mosquitto, as a
//! camera would. Then, as an operator's tools see it:
//! - MQTT: one `mask_result` per judged frame with `detection_status` and `verdict`; Home
//!   Assistant discovery documents (retained) checked against what HA requires of each
//!   component; each camera's retained state and anonymised snapshot read back from the broker;
//! - Prometheus: `promtool check metrics` clean on a live scrape; every counter only grows
//!   between two scrapes while retention deletes rows (`max_invocations: 4`);
//! - the status page in headless Chromium (`tests/ui/drive.py`): the numbers the journal holds
//!   in the DOM, a screenshot of each view, a live update after a new frame, and no image served
//!   that is a raw frame.

use crate::common;
use crate::vision_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::operator_ha::check_discovery;
use common::*;
use vision_support::{fogd_bin, text};

pub const NODE: &str = "edge-1";
const CAMERA: &str = "door";

fn sha256(b: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(b))
}

/// Samples of the counters in a Prometheus text scrape: `name{labels}` -> value.
fn counters(scrape: &str) -> BTreeMap<String, f64> {
    let names: HashSet<&str> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, v) = l.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            if !names.contains(name) {
                return None;
            }
            Some((series.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let r = http.get(format!("{url}/metrics")).send().await.expect("metrics");
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    r.text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_view_of_a_node_fed_by_a_camera() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let broker = Mosquitto::start(d);
    let clip = d.join("clip.mp4");
    vision_support::sample_clip(&clip, 11, 640, 360, &[]);

    let mut watch = Mqtt::connect(broker.port, "watcher").await;
    // The example workflow, its verdicts also bound for an S3 store that never answers (nothing
    // listens on port 9): the outbox has objects waiting, with the store's error.
    let example = repo().join("examples/camera-ingest");
    let workflow = d.join("workflow.yaml");
    for script in ["anon-and-split.sh", "mask-detector.sh"] {
        std::fs::copy(example.join(script), d.join(script)).unwrap();
    }
    let fdl = std::fs::read_to_string(example.join("workflow.yaml")).unwrap();
    let results = "      - storage_provider: minio.default\n        path: cameras/results\n";
    assert!(fdl.contains(results));
    let fdl = fdl.replace(
        results,
        &format!("{results}      - storage_provider: minio.offsite\n        path: fogd-edge/results\n"),
    ) + "storage_providers:\n  minio:\n    offsite:\n      endpoint: http://127.0.0.1:9\n      \
         access_key: fogd\n      secret_key: fogd-secret\n      region: us-east-1\n";
    std::fs::write(&workflow, fdl).unwrap();
    let extra = format!(
        "mqtt:\n  broker: {}\n  stats_interval: 1s\ningest:\n  path: cameras/incoming\nretention:\n  max_invocations: 4\n  interval: 1s\n",
        broker.url()
    );
    let node = FogdNode::start(&fogd_bin(), &d.join("node"), NODE, &extra, Some(&workflow));
    let http = reqwest::Client::new();
    // Subscribed before the camera sends: a message to a topic nobody subscribed is dropped.
    wait_online(&mut watch, NODE).await;

    // A camera sends a clip (3 frames at one every 5 s) and a photo, over MQTT.
    let mut cam = Mqtt::connect(broker.port, "camera").await;
    let raw1 = tagged_jpeg(&face_jpeg(), "raw frame 1");
    let raw2 = tagged_jpeg(&face_jpeg(), "raw frame 2");
    std::fs::write(d.join("raw2.jpg"), &raw2).unwrap();
    assert!(
        cam.send(
            &format!("fogd/cameras/{CAMERA}/clip"),
            std::fs::read(&clip).unwrap()
        )
        .await
    );
    let mut first: Option<String> = None;
    let judged = |node: &FogdNode| {
        node.journal()
            .cameras()
            .unwrap()
            .into_iter()
            .find(|c| c.camera == CAMERA)
            .map_or(0, |c| c.judged)
    };
    let t0 = Instant::now();
    while judged(&node) < 3 {
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the clip's 3 frames were not judged: {}",
            std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default()
        );
        if first.is_none() && judged(&node) >= 1 {
            first = Some(scrape(&http, &node.url).await);
        }
        watch.pump(Duration::from_millis(300)).await;
    }
    let first = match first {
        Some(f) => f,
        None => scrape(&http, &node.url).await,
    };
    assert!(
        cam.send(&format!("fogd/cameras/{CAMERA}/frame"), raw1.clone())
            .await
    );
    while judged(&node) < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "the photo was not judged"
        );
        watch.pump(Duration::from_millis(300)).await;
    }
    watch.pump(Duration::from_secs(3)).await;

    // 1. One mask_result per judged frame, detection status and verdict apart.
    let results: Vec<serde_json::Value> = watch
        .received
        .iter()
        .filter_map(|(_, p)| serde_json::from_slice::<serde_json::Value>(p).ok())
        .filter(|v| v["type"] == "mask_result")
        .collect();
    assert_eq!(results.len(), 4, "{results:#?}");
    for r in &results {
        assert_eq!(r["camera"], CAMERA, "{r}");
        assert_eq!(r["detection_status"], "ok", "{r}");
        assert!(
            ["safe", "warning", "danger"].contains(&r["verdict"].as_str().unwrap()),
            "{r}"
        );
        assert!(r["faces"].as_u64().unwrap() >= 1, "{r}");
    }

    // 2. Home Assistant: discovery and the camera's state and snapshot, retained.
    let mut ha = Mqtt::connect(broker.port, "home-assistant").await;
    ha.subscribe("homeassistant/#").await;
    ha.subscribe(&format!("fogd/{NODE}/#")).await;
    ha.pump(Duration::from_secs(2)).await;
    let retained: HashMap<String, Vec<u8>> = ha.received.iter().cloned().collect();
    let discovery: Vec<(&String, serde_json::Value)> = retained
        .iter()
        .filter(|(t, _)| t.starts_with("homeassistant/"))
        .map(|(t, p)| (t, serde_json::from_slice(p).expect("discovery JSON")))
        .collect();
    let mut unique = HashSet::new();
    for (topic, doc) in &discovery {
        check_discovery(topic, doc, &retained);
        assert!(
            unique.insert(doc["unique_id"].as_str().unwrap().to_string()),
            "unique_id twice: {doc}"
        );
    }
    let components: HashSet<&str> = discovery
        .iter()
        .map(|(t, _)| t.split('/').nth(1).unwrap())
        .collect();
    assert_eq!(components, HashSet::from(["sensor", "binary_sensor", "camera"]));
    assert!(discovery.len() >= 10, "{}", discovery.len());
    let journal_cam = node
        .journal()
        .cameras()
        .unwrap()
        .into_iter()
        .find(|c| c.camera == CAMERA)
        .unwrap();
    let state: serde_json::Value =
        serde_json::from_slice(&retained[&format!("fogd/{NODE}/cameras/{CAMERA}/state")]).unwrap();
    assert_eq!(state["frames_total"], journal_cam.frames);
    assert_eq!(state["judged_total"], journal_cam.judged);
    assert_eq!(state["verdict"], journal_cam.last.as_ref().unwrap().verdict);
    assert_eq!(state["faces"], journal_cam.last.as_ref().unwrap().faces);
    let snap = &retained[&format!("fogd/{NODE}/cameras/{CAMERA}/snapshot")];
    assert!(snap.starts_with(&[0xFF, 0xD8]), "the snapshot is not a JPEG");
    assert_ne!(sha256(snap), sha256(&raw1), "a raw frame was published");
    assert_eq!(
        retained.get(&format!("fogd/{NODE}/available")).map(Vec::as_slice),
        Some(&b"online"[..])
    );

    // 3. Prometheus: clean for promtool, counters only grow, the journal's numbers.
    let second = scrape(&http, &node.url).await;
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup puts it in .venv/bin)");
    {
        use std::io::Write;
        let mut child = promtool;
        child.stdin.take().unwrap().write_all(second.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
            "promtool: {}{}\n{second}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let (c1, c2) = (counters(&first), counters(&second));
    assert!(c1.len() >= 10, "{first}");
    for (series, v) in &c1 {
        let now = c2
            .get(series)
            .unwrap_or_else(|| panic!("{series} vanished:\n{second}"));
        assert!(now >= v, "{series} went down: {v} -> {now}");
    }
    let frames = value(
        &second,
        &format!("fogd_camera_frames_total{{camera=\"{CAMERA}\"}}"),
    );
    assert_eq!(frames, Some(journal_cam.frames as f64), "{second}");
    assert_eq!(
        value(
            &second,
            &format!("fogd_camera_judged_frames_total{{camera=\"{CAMERA}\"}}")
        ),
        Some(4.0)
    );
    assert_eq!(value(&second, "fogd_mqtt_connected"), Some(1.0));
    assert_eq!(
        value(&second, "fogd_store_up{provider=\"minio.offsite\"}"),
        Some(0.0),
        "{second}"
    );
    assert!(value(&second, "fogd_outbox_objects").unwrap() >= 4.0, "{second}");
    assert!(value(&second, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(&second, "process_open_fds").unwrap() > 3.0);
    assert!(second.contains("fogd_build_info{version=\""), "{second}");
    // Every metric the Grafana dashboard plots is one fogd exports.
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo().join("deploy/grafana/fogd.json")).unwrap()).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(exprs.len() >= 15);
    for e in &exprs {
        for word in e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("fogd_") || word.starts_with("process_") {
                let family = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(
                    second.contains(&format!("# TYPE {family} ")),
                    "the dashboard plots {word}, not exported:\n{second}"
                );
            }
        }
    }
    // Retention keeps 4 finished jobs; the counters still count all 6 (the clip's and the
    // photo's anonymiser, 4 mask detectors).
    let ended: f64 = c2
        .iter()
        .filter(|(s, _)| s.starts_with("fogd_invocations_total{") && s.contains("state=\"succeeded\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(ended, 6.0, "{second}");

    // 4. The status page in Chromium. The journal's numbers before the page's new frame.
    let counts = node.journal().counts().unwrap();
    let shots = repo().join("target/ui-screenshots");
    let trigger = format!(
        "mosquitto_pub -h 127.0.0.1 -p {} -q 1 -t fogd/cameras/{CAMERA}/frame -f {}",
        broker.port,
        d.join("raw2.jpg").display()
    );
    let o = std::process::Command::new("python3")
        .arg(repo().join("tests/ui/drive.py"))
        .args([
            "--url",
            &node.url,
            "--password",
            &node.password,
            "--camera",
            CAMERA,
            "--trigger",
            &trigger,
        ])
        .arg("--out")
        .arg(&shots)
        .output()
        .expect("python3 tests/ui/drive.py");
    assert!(o.status.success(), "drive.py: {}", text(&o));
    let ui: serde_json::Value = serde_json::from_slice(&o.stdout).expect("drive.py JSON");
    eprintln!(
        "status page: first render {} ms, live update {} s, transfers {}",
        ui["first_render_ms"], ui["live"]["seconds"], ui["transfers"]
    );
    assert_eq!(
        ui["script_errors"],
        serde_json::json!([]),
        "the page's script failed"
    );
    crate::vision_zones::check_drawn_zone(&ui);
    let dom = &ui["dom"];
    let card = dom["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["camera"] == CAMERA)
        .expect("camera card");
    let last = journal_cam.last.as_ref().unwrap();
    assert_eq!(card["frames"], journal_cam.frames, "{card}");
    assert_eq!(card["faces"], last.faces.to_string(), "{card}");
    assert_eq!(card["unmasked"], last.unmasked.to_string(), "{card}");
    assert_eq!(card["verdict"], last.verdict, "{card}");
    assert_eq!(card["img_loaded"], true, "{card}");
    assert!(card["chart_lines"].as_u64().unwrap() == 2, "{card}");
    for (svc, st, n) in &counts {
        assert_eq!(dom["services"][svc][st.as_str()], *n, "{svc} {st:?}: {dom}");
    }
    assert!(!ui["log_shown"].as_str().unwrap().is_empty());
    // The outbox: the verdicts wait for the store that never answers, with its error; the
    // node says it needs attention, and why.
    let outbox = &dom["outbox"];
    assert!(outbox["backlog"].as_u64().unwrap() >= 4, "{outbox}");
    let waiting = outbox["waiting"].as_array().unwrap();
    assert!(
        !waiting.is_empty() && waiting.iter().all(|w| w[0] == "minio.offsite"),
        "{outbox}"
    );
    // Each says why it waits: its store is offline (whose error is said once, with the store).
    let why = |w: &serde_json::Value| w[4].as_str().unwrap().starts_with("its store is offline");
    assert!(waiting.iter().all(why), "{outbox}");
    let store_error = outbox["stores"][0][3].as_str().unwrap();
    assert!(store_error.contains("127.0.0.1:9"), "{outbox}");
    assert_eq!(outbox["stores"][0][0], "minio.offsite", "{outbox}");
    assert_eq!(outbox["stores"][0][1], "offline", "{outbox}");
    assert_eq!(dom["health"], "needs attention");
    assert!(
        dom["problems"]
            .as_str()
            .unwrap()
            .contains("store minio.offsite offline"),
        "{dom}"
    );
    for view in ["cameras", "jobs", "outbox", "delegation"] {
        let p = ui["screenshots"][view].as_str().unwrap();
        assert!(std::fs::metadata(p).unwrap().len() > 10_000, "{p}");
    }
    // Live: the new frame showed without a reload, within 5 s.
    assert_eq!(ui["live"]["reloaded"], false);
    assert!(ui["live"]["frames_after"].as_u64() > ui["live"]["frames_before"].as_u64());
    assert!(ui["live"]["seconds"].as_f64().unwrap() < 5.0, "{}", ui["live"]);
    // No image the browser got is a raw frame, and each is a snapshot.
    let raw: HashSet<String> = [
        sha256(&raw1),
        sha256(&raw2),
        sha256(&std::fs::read(&clip).unwrap()),
    ]
    .into();
    let images = ui["images"].as_array().unwrap();
    assert!(!images.is_empty());
    for i in images {
        assert!(
            i["url"]
                .as_str()
                .unwrap()
                .contains("/fogd/cameras/door/snapshot.jpg"),
            "{i}"
        );
        assert!(
            !raw.contains(i["sha256"].as_str().unwrap()),
            "a raw frame was served: {i}"
        );
    }
    // What the page costs the node (printed for the closing note, not asserted: a test is no
    // benchmark): CPU of `fogd run` per status document and per scrape.
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
    };
    let pid = node.pid().unwrap();
    for (path, n) in [("/fogd/status", 50), ("/metrics", 50)] {
        let before = cpu(pid);
        let t0 = Instant::now();
        for _ in 0..n {
            let r = http
                .get(format!("{}{path}", node.url))
                .basic_auth("oscar", Some(&node.password))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            r.bytes().await.unwrap();
        }
        eprintln!(
            "{path}: {:.1} ms CPU and {:.1} ms wall per request (50 requests)",
            (cpu(pid) - before) * 1000.0 / n as f64,
            t0.elapsed().as_secs_f64() * 1000.0 / n as f64
        );
    }
    drop(node);
}
