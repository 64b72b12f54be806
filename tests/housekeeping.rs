//! A node left alone stays bounded (issue 17, findings 9, 10 and 12): finished invocations,
//! their logs and events are pruned by count and age, empty logs are never written, abandoned
//! work folders and upload spool files are swept, and free inodes are guarded like free bytes.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::*;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::State;

const FDL: &str = "functions:
  oscar:
  - edge:
      name: talk
      image: x
      script: talk.sh
      input: [{storage_provider: minio, path: h/in}]
  - edge:
      name: quiet
      image: x
      script: quiet.sh
      input: [{storage_provider: minio, path: h/in}]
";

fn age(path: &std::path::Path, ago: &str) {
    let st = Command::new("touch")
        .args(["-h", "-d", ago])
        .arg(path)
        .status()
        .expect("touch");
    assert!(st.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_sweeps_keep_a_node_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        &tmp.path().join("wf"),
        FDL,
        &[("talk.sh", "echo said something\n"), ("quiet.sh", ":\n")],
    );
    let mut c = cfg(tmp.path());
    c.retention.max_invocations = 6;
    c.retention.interval = Duration::from_secs(3600);
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.txt");
    for i in 0..10 {
        std::fs::write(&src, format!("frame {i}")).expect("w");
        d.rt.put(&minio, &format!("h/in/{i}.txt"), &src)
            .await
            .expect("put");
    }
    let all = d.settle(60).await;
    assert_eq!(all.len(), 20);
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:?}",
        summary(&all)
    );
    // Only the talking service left logs: an empty log is not kept (an inode per frame).
    let logs = files_under(&d.rt.data.logs());
    assert_eq!(logs.len(), 10, "{logs:?}");
    assert!(logs.iter().all(|l| l.starts_with("talk/")), "{logs:?}");

    // Left by a crash or an abandoned /run: a stale work folder and spool file; and fresh ones.
    let work = d.rt.data.work();
    for name in ["stale-job", "fresh-job"] {
        std::fs::create_dir_all(work.join(name).join("output")).expect("mk");
        std::fs::write(work.join(name).join("output/x"), b"x").expect("w");
    }
    age(&work.join("stale-job"), "2 hours ago");
    let stale_tmp = c.data_dir.join("upload-stale.tmp");
    std::fs::write(&stale_tmp, b"half a body").expect("w");
    age(&stale_tmp, "3 hours ago");
    let fresh_tmp = c.data_dir.join("upload-fresh.tmp");
    std::fs::write(&fresh_tmp, b"being received").expect("w");

    let rt = d.rt.clone();
    let swept = tokio::task::spawn_blocking(move || fogd::housekeeping::sweep(&rt))
        .await
        .expect("join")
        .expect("sweep");
    assert_eq!((swept.work_folders, swept.spool_files), (1, 1), "{swept:?}");
    assert!(!work.join("stale-job").exists() && work.join("fresh-job").exists());
    assert!(!stale_tmp.exists() && fresh_tmp.exists());
    // The newest 6 finished invocations stay, with their logs; the rest and their logs go.
    assert_eq!(swept.invocations, 14, "{swept:?}");
    let left = d.rt.journal.invocations(None, 100).expect("list");
    assert_eq!(left.len(), 6);
    let newest: Vec<i64> = all.iter().map(|i| i.id.0).take(6).collect();
    assert_eq!(left.iter().map(|i| i.id.0).collect::<Vec<_>>(), newest);
    let logs = files_under(&d.rt.data.logs());
    let talk_left = left.iter().filter(|i| i.service == "talk").count();
    assert_eq!(logs.len(), talk_left, "{logs:?}");
    // The gateway's page of jobs and `fogd logs` read what is left.
    assert_eq!(
        d.rt.journal
            .invocations_page("talk", None, 100)
            .expect("page")
            .0
            .len(),
        talk_left
    );
    d.stop().await;
}

/// A frame whose processing keeps failing is run again (up to `max_attempts`), then quarantined:
/// out of the store, counted, never uploaded, and deleted after `retention.max_age`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_that_keep_failing_are_retried_then_quarantined() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        &tmp.path().join("wf"),
        "functions:
  oscar:
  - edge:
      name: broken
      image: x
      script: broken.sh
      input: [{storage_provider: minio, path: cameras/incoming}]
",
        &[("broken.sh", "echo cannot read this frame >&2\nexit 3\n")],
    );
    let mut c = cfg(tmp.path());
    c.retention.interval = Duration::from_secs(3600);
    c.max_attempts = 2;
    let d = Daemon::start(c, std::slice::from_ref(&fdl)).await;
    let item = fogd::ingest::Item {
        source: "test",
        camera: "door".into(),
        topic: "t".into(),
        ext: "jpg",
        payload: face_jpeg().into(),
    };
    let rt = d.rt.clone();
    let report = tokio::task::spawn_blocking(move || fogd::ingest::spool_batch(&rt, &[item]))
        .await
        .expect("join")
        .expect("spool");
    assert_eq!(report.spooled, 1);
    let sweep = |rt: std::sync::Arc<fogd::runtime::Runtime>| async move {
        tokio::task::spawn_blocking(move || fogd::housekeeping::sweep(&rt))
            .await
            .expect("join")
            .expect("sweep")
    };
    let all = d.settle(30).await;
    assert_eq!((all[0].state, all[0].attempts), (State::Failed, 1));
    // The first sweep runs it again; the second gives up on it.
    assert_eq!(sweep(d.rt.clone()).await.retried, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = d.settle(30).await;
    assert_eq!((all[0].state, all[0].attempts), (State::Failed, 2));
    let s = sweep(d.rt.clone()).await;
    assert_eq!((s.retried, s.quarantined), (0, 1), "{s:?}");
    assert!(
        files_under(&fogd::ingest::raw::area(&d.rt)).is_empty(),
        "out of the store"
    );
    let q = files_under(&d.rt.data.quarantine());
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(q[0].starts_with("door/"), "{q:?}");
    let counters = d.rt.journal.counters().expect("counters");
    assert!(
        counters.contains(&("ingest_quarantined".to_string(), 1)),
        "{counters:?}"
    );
    // Swept again later: nothing more happens to it (no more runs).
    let s = sweep(d.rt.clone()).await;
    assert_eq!((s.retried, s.quarantined), (0, 0));
    d.stop().await;
}

/// Finding 14 of issue 17: a watched S3 folder cost more with every object left in it (each
/// poll listed it whole and looked every key up in the journal). Now a poll lists the keys after
/// the greatest one seen and one page of a rolling scan (which finds keys that sort earlier):
/// its cost is bounded by the page, whatever the folder holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watching_an_s3_folder_costs_what_is_new_not_what_is_there() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    let fdl = workflow(
        &tmp.path().join("wf"),
        &format!(
            "functions:
  oscar:
  - edge:
      name: seen
      image: x
      script: seen.sh
      input: [{{storage_provider: minio.sw, path: watch/in}}]
{}",
            sw.provider_yaml("sw", S3_KEY, S3_SECRET)
        ),
        &[("seen.sh", ":\n")],
    );
    let rt = fogd::runtime::Runtime::open(cfg(tmp.path()), &[fdl]).expect("runtime");
    let p = ProviderRef::parse("minio.sw").expect("provider");
    let store = rt.store(&p).expect("store");
    let src = tmp.path().join("o.txt");
    let put = |key: String, body: String| {
        let (store, src) = (store.clone(), src.clone());
        async move {
            std::fs::write(&src, body).expect("w");
            store.put_file(&key, &src).await.expect("put");
        }
    };
    for i in 0..300 {
        put(format!("watch/in/cam1-{i:05}.jpg"), format!("old {i}")).await;
    }
    let mut w = fogd::ingest::s3watch::Watcher::with_scan_page(p.clone(), "watch/in/".into(), 100);
    assert_eq!(
        w.poll(&rt).await.expect("first"),
        300,
        "the first listing finds everything"
    );
    assert_eq!(w.listed, 300);
    for _ in 0..6 {
        let before = w.listed;
        assert_eq!(w.poll(&rt).await.expect("idle"), 0);
        assert!(
            w.listed - before <= 100,
            "an idle poll lists one page at most, not the folder"
        );
    }
    put("watch/in/cam1-99999.jpg".into(), "new".into()).await;
    assert_eq!(
        w.poll(&rt).await.expect("new"),
        1,
        "a new key is found at the next poll"
    );
    // A key that sorts before the cursor (another writer) is found by the scan, once, within
    // one pass over the folder (4 pages of 100 here).
    put("watch/in/a-late.jpg".into(), "late".into()).await;
    let mut found = 0;
    for _ in 0..5 {
        found += w.poll(&rt).await.expect("scan");
    }
    assert_eq!(found, 1);
    let queued = rt.journal.invocations(Some("seen"), 1000).expect("list");
    assert_eq!(queued.len(), 302, "one invocation per object");
}
