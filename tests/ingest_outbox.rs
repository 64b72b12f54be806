//! The outbox's limits and the other sources: the disk quota (oldest dropped, counted), large
//! objects in parts under the bandwidth cap, a watched folder and streams (a file and a real RTSP
//! server).

use crate::ingest_support;

use ingest_support::*;

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
    assert!(files_under(&fogd::ingest::raw::area(&d.rt)).is_empty());
    d.stop().await;
}

/// Issue 17: with `concurrency: 2` a later frame's anonymisation may end first; its upload still
/// waits for the earlier frame's: each camera's frames reach the store in capture order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_follow_capture_order_whatever_finishes_first() {
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    // The stand-in anonymiser, taking 0 to 0.9 s at random.
    let slow = format!("sleep 0.$(od -An -N1 -tu1 /dev/urandom | tr -d ' ' | cut -c1)\n{ANON}");
    let wf = workflow(
        tmp.path(),
        &fdl(&sw.provider_yaml("sw", S3_KEY, S3_SECRET), false),
        &[("anon.sh", slow.as_str())],
    );
    let mut c = node_cfg(tmp.path(), &broker, "order");
    c.concurrency = Some(3);
    let node = Node::start(c, &wf).await;
    let mut m = Mqtt::connect(broker.port, "test-order").await;
    wait_online(&mut m, "order").await;
    let jpeg = face_jpeg();
    for i in 0..24 {
        let cam = i % 2;
        assert!(
            m.send(
                &format!("fogd/cameras/cam{cam}/frame"),
                tagged_jpeg(&jpeg, &format!("o-{i}"))
            )
            .await
        );
    }
    node.wait_ingested(24, 30).await;
    node.d.settle(90).await;
    // Invocations did end out of capture order (else this shows nothing)...
    let all = node.d.rt.journal.invocations(Some("anon"), 100).expect("list");
    let mut by_end = all.clone();
    by_end.sort_by_key(|i| i.finished_ms);
    let ended: Vec<&str> = by_end.iter().map(|i| i.key.as_str()).collect();
    let mut captured = ended.clone();
    captured.sort();
    assert_ne!(ended, captured, "the random sleeps should reorder some ends");
    // ... and each camera's uploads went up in capture order (raw names sort by capture).
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in node.d.rt.journal.outbox_uploaded().expect("uploaded") {
        by_group.entry(r.group.clone()).or_default().push(r.key.clone());
    }
    assert_eq!(by_group.len(), 2, "{by_group:?}");
    for (g, keys) in &by_group {
        assert_eq!(keys.len(), 12, "{g}");
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, &sorted, "{g}: uploaded out of capture order");
    }
    node.stop().await;
}
