//! Camera ingest over a real Mosquitto and store-and-forward to a real SeaweedFS: bad input
//! counted and skipped, the store down for a while (backlog and offline time in the MQTT stats,
//! then everything synced in order per camera), the outbox's disk quota, the broker restarted
//! mid-ingest, and the privacy rule (no raw item ever enters the outbox).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use fogd::config::{Config, FullPolicy, MqttConfig};
use fogd::journal::State;

/// A stand-in for the anonymiser that changes every byte it passes on (so its output is not
/// raw content), keeping the camera folder.
const ANON: &str = "cam=$(echo \"$STORAGE_OBJECT_KEY\" | cut -d/ -f2)\nmkdir -p \"$TMP_OUTPUT_DIR/$cam\"\n\
{ printf 'anonymised:'; cat \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/$cam/$(basename \"$INPUT_FILE_PATH\")\"\n";
/// The stand-in anonymiser with its results in the local store.
const LOCAL_FDL: &str = "functions:
  oscar:
  - edge:
      name: anon
      image: x
      script: anon.sh
      input: [{storage_provider: minio, path: cameras/incoming}]
      output: [{storage_provider: minio, path: anon/frames}]
";
/// A service that would leak the raw frame as it is.
const LEAK: &str = "cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/\"\n";

fn fdl(sw_yaml: &str, leak: bool) -> String {
    let leak_svc = if leak {
        "  - edge:
      name: leaky
      image: x
      script: leak.sh
      input: [{storage_provider: minio, path: cameras/incoming/door}]
      output: [{storage_provider: minio.sw, path: anon/leak}]
"
    } else {
        ""
    };
    format!(
        "functions:
  oscar:
  - edge:
      name: anon
      image: x
      script: anon.sh
      input: [{{storage_provider: minio, path: cameras/incoming}}]
      output: [{{storage_provider: minio.sw, path: anon/frames}}]
{leak_svc}{sw_yaml}"
    )
}

fn node_cfg(dir: &Path, broker: &Mosquitto, id: &str) -> Config {
    let mut c = cfg(dir);
    c.node_name = Some(id.into());
    c.gateway.enabled = false;
    c.concurrency = Some(1);
    c.mqtt = Some(MqttConfig {
        broker: broker.url(),
        client_id: Some(format!("fogd-{id}")),
        stats_interval: Duration::from_millis(300),
        max_frame_bytes: 200_000,
        max_clip_bytes: 100_000,
        ..MqttConfig::default()
    });
    c.sync.max_backoff = Duration::from_secs(2);
    c
}

struct Node {
    d: Daemon,
}

impl Node {
    async fn start(cfg: Config, fdl: &Path) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("FOGD_LOG").unwrap_or_else(|_| "fogd=warn".into()))
            .try_init();
        // The daemon starts the MQTT source that the config names.
        let d = Daemon::start(cfg, &[fdl.to_path_buf()]).await;
        Node { d }
    }

    async fn stop(self) {
        self.d.stop().await;
    }

    fn ingested(&self) -> u64 {
        self.d
            .rt
            .journal
            .ingest_counts()
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    async fn wait_ingested(&self, n: u64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.ingested() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} items ingested in {secs} s",
                self.ingested()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until the node's `available` topic says online (it subscribed by then).
async fn wait_online(m: &mut Mqtt, node: &str) {
    m.subscribe(&format!("fogd/{node}/#")).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if m.received
            .iter()
            .any(|(t, p)| t == &format!("fogd/{node}/available") && p == b"online")
        {
            return;
        }
        assert!(Instant::now() < deadline, "fogd never said online");
        m.pump(Duration::from_millis(100)).await;
    }
}

fn counter(node: &Node, name: &str) -> u64 {
    node.d
        .rt
        .journal
        .counters()
        .expect("counters")
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_counted_and_skipped_and_raw_never_leaves() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    let wf = workflow(
        tmp.path(),
        &fdl(&sw.provider_yaml("sw", S3_KEY, S3_SECRET), true),
        &[("anon.sh", ANON), ("leak.sh", LEAK)],
    );
    let node = Node::start(node_cfg(tmp.path(), &broker, "bad"), &wf).await;
    let mut m = Mqtt::connect(broker.port, "test-bad").await;
    wait_online(&mut m, "bad").await;
    let jpeg = face_jpeg();
    for (topic, payload) in [
        ("fogd/cameras/door/frame", b"GIF89a not a jpeg".to_vec()),
        ("fogd/cameras/door/frame", Vec::new()),
        ("fogd/cameras/../frame", jpeg.clone()),
        ("fogd/cameras/a/b/frame", jpeg.clone()),
        (
            "fogd/cameras/door/frame",
            tagged_jpeg(&jpeg, &"x".repeat(200_000)),
        ),
        (
            "fogd/cameras/door/clip",
            b"hello, I am a text file, not a video".to_vec(),
        ),
        ("fogd/cameras/door/snapshot", jpeg.clone()),
    ] {
        assert!(m.send(topic, payload).await, "broker took {topic}");
    }
    // Ingest goes on: a good frame after the bad ones, and the same frame again (a duplicate).
    let good = tagged_jpeg(&jpeg, "good-1");
    assert!(m.send("fogd/cameras/door/frame", good.clone()).await);
    assert!(m.send("fogd/cameras/door/frame", good.clone()).await);
    node.wait_ingested(1, 20).await;
    let all = node.d.settle(60).await;
    for (name, want) in [
        ("ingest_rejected_not_jpeg", 1),
        ("ingest_rejected_empty", 1),
        ("ingest_rejected_bad_camera", 2),
        ("ingest_rejected_too_large", 1),
        ("ingest_rejected_not_video", 1),
        ("ingest_rejected_unknown_topic", 1),
        ("ingest_duplicates", 1),
    ] {
        assert_eq!(counter(&node, name), want, "{name}");
    }
    assert_eq!(node.ingested(), 1);
    // The leaky service copied the raw frame to an S3 output: refused, with a message that
    // names the raw item; the anonymiser's output went up.
    let leak = all.iter().find(|i| i.service == "leaky").expect("leaky ran");
    assert_eq!(leak.state, State::Failed);
    let err = leak.error.clone().unwrap_or_default();
    assert!(
        err.contains("raw frames never leave this node") && err.contains("cameras/incoming/door/"),
        "{err}"
    );
    let anon = all
        .iter()
        .find(|i| i.service == "anon")
        .unwrap_or_else(|| panic!("anon ran: {all:#?}"));
    assert_eq!(anon.state, State::Succeeded, "{:?}", anon.error);
    let sw_store = node
        .d
        .rt
        .store(&fogd::fdl::ProviderRef::parse("minio.sw").expect("p"))
        .expect("store");
    let objects = sw_store.list("anon/").await.expect("list");
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].key.starts_with("anon/frames/door/"), "{objects:?}");
    // Nothing in S3 is raw content: fetch and compare.
    let back = tmp.path().join("back");
    sw_store.get_file(&objects[0].key, &back).await.expect("get");
    assert_ne!(std::fs::read(&back).expect("read"), good);
    // Only the leaky service's failure keeps the raw item: it is not deleted while an
    // invocation on it failed.
    let raw_left = files_under(&node.d.rt.raw_area());
    assert_eq!(raw_left.len(), 1, "{raw_left:?}");
    // The stats say it, on MQTT.
    m.pump(Duration::from_millis(800)).await;
    let stats = m.last_json("fogd/bad/stats").expect("stats published");
    assert_eq!(stats["ingest"]["rejected"]["bad_camera"], 2, "{stats}");
    assert_eq!(stats["ingest"]["duplicates"], 1, "{stats}");
    assert!(m.received.iter().any(|(t, p)| t == "fogd/bad/events"
        && serde_json::from_slice::<serde_json::Value>(p).is_ok_and(|v| v["type"] == "upload_done")));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_then_up_everything_syncs_in_order_and_stats_show_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let mut sw = SeaweedFs::start(&tmp.path().join("weed"));
    let wf = workflow(
        tmp.path(),
        &fdl(&sw.provider_yaml("sw", S3_KEY, S3_SECRET), false),
        &[("anon.sh", ANON)],
    );
    let node = Node::start(node_cfg(tmp.path(), &broker, "outage"), &wf).await;
    let mut m = Mqtt::connect(broker.port, "test-outage").await;
    wait_online(&mut m, "outage").await;
    let jpeg = face_jpeg();
    let mut acked = 0;
    let send = |i: usize| tagged_jpeg(&jpeg, &format!("frame-{i}"));
    for i in 0..10 {
        acked += m.send(&format!("fogd/cameras/cam{}/frame", i % 2), send(i)).await as u64;
    }
    node.wait_ingested(10, 30).await;
    node.d.settle(60).await;
    // The store goes away; frames keep coming.
    sw.stop();
    for i in 10..30 {
        acked += m.send(&format!("fogd/cameras/cam{}/frame", i % 2), send(i)).await as u64;
    }
    // The broker restarts in the middle as well (graceful: it keeps the session).
    broker.restart();
    let mut m = Mqtt::connect(broker.port, "test-outage").await;
    m.subscribe("fogd/outage/#").await;
    for i in 30..40 {
        acked += m.send(&format!("fogd/cameras/cam{}/frame", i % 2), send(i)).await as u64;
    }
    assert_eq!(acked, 40);
    node.wait_ingested(40, 60).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        m.pump(Duration::from_millis(400)).await;
        let s = m.last_json("fogd/outage/stats");
        let ok = s.as_ref().is_some_and(|s| {
            s["outbox"]["backlog"].as_u64().unwrap_or(0) >= 25 && s["stores"]["minio.sw"]["online"] == false
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stats never showed the backlog and the store offline: {s:?}"
        );
    }
    sw.restart();
    let deadline = Instant::now() + Duration::from_secs(90);
    while node.d.rt.journal.outbox_totals().expect("totals").0 > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox not drained: {:?}",
            node.d.rt.journal.outbox_list(Some("pending"), 5)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every frame is in the store, once.
    let sw_store = node
        .d
        .rt
        .store(&fogd::fdl::ProviderRef::parse("minio.sw").expect("p"))
        .expect("store");
    let keys: BTreeSet<String> = sw_store
        .list("anon/frames/")
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys.len(), 40, "{keys:?}");
    // In order per camera: uploads of one folder went up in the order they were queued.
    let mut by_group: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in node.d.rt.journal.outbox_uploaded().expect("uploaded") {
        by_group.entry(r.group.clone()).or_default().push(r.id);
    }
    assert_eq!(by_group.len(), 2);
    for (g, ids) in &by_group {
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, &sorted, "{g}: uploaded out of order");
    }
    m.pump(Duration::from_millis(800)).await;
    let s = m.last_json("fogd/outage/stats").expect("stats");
    assert_eq!(s["outbox"]["backlog"], 0, "{s}");
    assert_eq!(s["stores"]["minio.sw"]["online"], true, "{s}");
    let offline = s["stores"]["minio.sw"]["offline_s_total"].as_f64().unwrap_or(0.0);
    assert!(offline >= 1.0, "offline time shown: {s}");
    assert!(
        s["mqtt"]["connects"].as_u64().unwrap_or(0) >= 2,
        "reconnected after the broker restart: {s}"
    );
    println!("store outage: 40 frames, all synced; offline {offline:.1} s; stats {s}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_quota_drops_oldest_counts_and_keeps_running() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    // A store that never answers: everything stays in the outbox.
    let dead = format!(
        "storage_providers:\n  minio:\n    sw:\n      endpoint: http://127.0.0.1:{}\n      access_key: k\n      secret_key: s\n",
        free_ports(1)
    );
    let wf = workflow(tmp.path(), &fdl(&dead, false), &[("anon.sh", ANON)]);
    let mut c = node_cfg(tmp.path(), &broker, "quota");
    let frame = tagged_jpeg(&face_jpeg(), "frame-00");
    let one = frame.len() as u64 + "anonymised:".len() as u64;
    c.sync.quota_bytes = one * 5;
    c.sync.full_policy = FullPolicy::DropOldest;
    let node = Node::start(c, &wf).await;
    let mut m = Mqtt::connect(broker.port, "test-quota").await;
    wait_online(&mut m, "quota").await;
    for i in 0..12 {
        let f = tagged_jpeg(&face_jpeg(), &format!("frame-{i:02}"));
        assert!(m.send("fogd/cameras/door/frame", f).await);
    }
    node.wait_ingested(12, 30).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = node.d.rt.journal.invocations(None, 100).expect("list");
        if all.len() == 12 && all.iter().all(|i| i.state.is_final()) {
            break all;
        }
        assert!(Instant::now() < deadline, "not done: {:?}", summary(&all));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:?}",
        summary(&all)
    );
    let (n, bytes) = node.d.rt.journal.outbox_totals().expect("totals");
    assert_eq!(n, 5, "the newest five are kept");
    assert!(bytes <= one * 5);
    assert_eq!(counter(&node, "outbox_dropped_full"), 7);
    let kept: Vec<String> = node
        .d
        .rt
        .journal
        .outbox_list(Some("pending"), 10)
        .expect("ls")
        .into_iter()
        .map(|r| r.key)
        .collect();
    let dropped: Vec<String> = node
        .d
        .rt
        .journal
        .outbox_list(Some("dropped"), 10)
        .expect("ls")
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert!(
        kept.iter().min() > dropped.iter().max(),
        "oldest dropped: kept {kept:?}, dropped {dropped:?}"
    );
    // Dropped objects' spooled files are gone; kept ones are there.
    let spool = files_under(&node.d.rt.cfg.data_dir.join("outbox"));
    assert_eq!(spool.len(), 5, "{spool:?}");
    // Still running: one more frame goes through.
    assert!(
        m.send("fogd/cameras/door/frame", tagged_jpeg(&face_jpeg(), "late"))
            .await
    );
    node.wait_ingested(13, 30).await;
    m.pump(Duration::from_millis(800)).await;
    let s = m.last_json("fogd/quota/stats").expect("stats");
    assert!(s["outbox"]["dropped_full"].as_u64().unwrap_or(0) >= 7, "{s}");
    // Once the store's first try failed, every waiting object carries the reason.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node
        .d
        .rt
        .journal
        .outbox_list(Some("pending"), 10)
        .expect("ls")
        .iter()
        .all(|r| r.error.is_some())
    {
        assert!(
            Instant::now() < deadline,
            "no reason noted on the waiting objects"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.stop().await;

    // `fogd queue` shows and steers it.
    let queue = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fogd"))
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .arg("queue")
            .args(args)
            .output()
            .expect("fogd queue");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ls = queue(&["ls"]);
    assert!(
        ls.contains("outbox: 5 waiting") && ls.contains("dropped 8"),
        "{ls}"
    );
    assert!(
        ls.contains("cannot reach the endpoint"),
        "the error is shown: {ls}"
    );
    assert!(queue(&["retry"]).contains("5 pending objects will be tried now"));
    assert!(queue(&["purge", "--state", "dropped"]).contains("8 objects removed"));
    assert!(!queue(&["ls"]).contains("dropped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_go_up_in_parts_under_the_bandwidth_cap() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(std::env::var("FOGD_LOG").unwrap_or_else(|_| "fogd=warn".into()))
        .try_init();
    let tmp = tempfile::tempdir().expect("tmp");
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    let wf = workflow(
        tmp.path(),
        &fdl(&sw.provider_yaml("sw", S3_KEY, S3_SECRET), false),
        &[("anon.sh", ANON)],
    );
    let mut c = cfg(tmp.path());
    c.sync.multipart_threshold = 6 << 20;
    c.sync.part_bytes = 5 << 20;
    c.sync.bandwidth_bytes = 6_000_000;
    let d = Daemon::start(c, &[wf]).await;
    let big = tmp.path().join("big.bin");
    let bytes: Vec<u8> = (0..12_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&big, &bytes).expect("w");
    let spooled = fogd::outbox::spool(&d.rt, &big, "test").expect("spool");
    let t0 = Instant::now();
    fogd::outbox::enqueue(&d.rt, "minio.sw", "anon/big/big.bin", &spooled, None).expect("enqueue");
    while d.rt.journal.outbox_totals().expect("t").0 > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{:?}",
            d.rt.journal.outbox_list(None, 5)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 12 MB at 6 MB/s with a one-second burst: at least a second.
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "cap not applied: {:?}",
        t0.elapsed()
    );
    let store =
        d.rt.store(&fogd::fdl::ProviderRef::parse("minio.sw").expect("p"))
            .expect("s");
    let back = tmp.path().join("back");
    let meta = store.get_file("anon/big/big.bin", &back).await.expect("get");
    assert!(meta.etag.ends_with("-3"), "three parts: {}", meta.etag);
    assert_eq!(std::fs::read(&back).expect("r"), bytes);
    assert!(!spooled.exists(), "spooled file removed once uploaded");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_and_a_stream_are_sources_too() {
    let tmp = tempfile::tempdir().expect("tmp");
    let clip = tmp.path().join("cam.mp4");
    let ok = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=10",
            "-t",
            "3",
        ])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(ok.success());
    let wf = workflow(tmp.path(), LOCAL_FDL, &[("anon.sh", ANON)]);
    let drop = tmp.path().join("drop");
    std::fs::create_dir_all(drop.join("porch")).expect("mkdir");
    let mut c = cfg(tmp.path());
    // The sources are started by hand below (not from the config), to stop them before settling.
    c.ingest.watch_interval = Duration::from_millis(200);
    let d = Daemon::start(c, &[wf]).await;
    // The same clip from a real RTSP server (GStreamer's gst-rtsp-server), as a camera serves.
    let rtsp = RtspServer::start(&clip);
    let (stop, rx) = tokio::sync::watch::channel(false);
    let mut streams = Vec::new();
    for (camera, url) in [("street", clip.display().to_string()), ("door", rtsp.url.clone())] {
        let src = fogd::config::StreamSource {
            camera: camera.into(),
            url,
            every: Duration::from_secs(1),
        };
        streams.push(tokio::spawn(fogd::ingest::stream::run(
            d.rt.clone(),
            src,
            rx.clone(),
        )));
    }
    let dir = tokio::spawn(fogd::ingest::dir::run(d.rt.clone(), drop.clone(), rx));
    std::fs::write(drop.join("porch/visitor.jpg"), tagged_jpeg(&face_jpeg(), "porch")).expect("w");
    std::fs::write(drop.join("porch/notes.jpg"), b"not a picture").expect("w");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let rows = d.rt.journal.ingest_rows().expect("rows");
        let count = |camera: &str| rows.iter().filter(|r| r.camera == camera).count();
        // Both files of the folder handled (a scan may take them one interval apart).
        let rejected = drop.join("porch/.rejected-notes.jpg").exists();
        if count("street") >= 3 && count("door") >= 2 && count("porch") >= 1 && rejected {
            break rows;
        }
        assert!(Instant::now() < deadline, "{rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop.send(true);
    for s in streams {
        let _ = s.await;
    }
    let _ = dir.await;
    std::mem::drop(rtsp);
    d.settle(30).await;
    // The folder's good file was taken (and removed), the bad one set aside and counted.
    assert!(!drop.join("porch/visitor.jpg").exists());
    assert!(drop.join("porch/.rejected-notes.jpg").exists());
    let counters: BTreeMap<String, u64> = d.rt.journal.counters().expect("c").into_iter().collect();
    assert_eq!(counters.get("ingest_rejected_not_jpeg"), Some(&1), "{counters:?}");
    // Every item went through the workflow into its camera's folder, and its raw copy is gone.
    let out = files_under(&d.rt.cfg.data_dir.join("store/anon/frames"));
    for r in &rows {
        let name = r.key.rsplit('/').next().expect("name");
        assert!(out.contains(&format!("{}/{name}", r.camera)), "{name} in {out:?}");
    }
    assert!(files_under(&d.rt.raw_area()).is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_tls_with_the_brokers_ca() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start_tls(&tmp.path().join("mosquitto"));
    let wf = workflow(tmp.path(), LOCAL_FDL, &[("anon.sh", ANON)]);
    let mut c = node_cfg(tmp.path(), &broker, "tls");
    if let Some(m) = c.mqtt.as_mut() {
        m.broker = format!("mqtts://127.0.0.1:{}", broker.port);
        m.tls = Some(fogd::config::MqttTls {
            ca: broker.ca.clone(),
            cert: None,
            key: None,
        });
    }
    let node = Node::start(c, &wf).await;
    // Subscribed once the broker has its session: a second connection with its client id would
    // kick it, so look at the broker's log instead.
    let log = tmp.path().join("mosquitto/mosquitto.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("fogd-tls")
    {
        assert!(Instant::now() < deadline, "fogd never connected over TLS");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A test client over TLS too (rumqttc with the same CA).
    let mut o = rumqttc::MqttOptions::new("test-tls", "127.0.0.1", broker.port);
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: std::fs::read(broker.ca.as_ref().expect("ca")).expect("ca"),
        alpn: None,
        client_auth: None,
    }));
    let (client, mut el) = rumqttc::AsyncClient::new(o, 10);
    client
        .publish(
            "fogd/cameras/door/frame",
            rumqttc::QoS::AtLeastOnce,
            false,
            tagged_jpeg(&face_jpeg(), "tls"),
        )
        .await
        .expect("publish");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node.ingested() < 1 {
        assert!(Instant::now() < deadline, "nothing ingested over TLS");
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(100), el.poll()).await {
            eprintln!("test client: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    node.d.settle(30).await;
    assert_eq!(
        files_under(&node.d.rt.cfg.data_dir.join("store/anon/frames/door")).len(),
        1
    );
    node.stop().await;
}
