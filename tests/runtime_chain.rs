//! The runtime end to end: files land, scripts run under the FaaS Supervisor contract, outputs
//! chain the next service; against the local store and a real SeaweedFS.

use crate::common;

use std::time::Duration;

use common::*;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::State;
use fogd::store::{AnyStore, LocalStore};

/// The process has exited (it may linger as a zombie until its new parent reaps it).
fn gone(pid: i32) -> bool {
    for _ in 0..40 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z')) =>
            {
                return true
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    false
}

fn minio() -> ProviderRef {
    ProviderRef::new(ProviderKind::Minio, "default")
}

const MASK_FDL: &str = "functions:
  oscar:
  - edge:
      name: anon-and-split
      image: grycap/blurry-faces
      script: split.sh
      input: [{storage_provider: minio, path: mask/input}]
      output: [{storage_provider: minio, path: mask/intermediate}]
  - edge:
      name: mask-detector
      image: grycap/mask-detector-yolo
      script: detect.sh
      input: [{storage_provider: minio, path: mask/intermediate}]
      output: [{storage_provider: minio, path: mask/result}]
";

/// Stage 1 turns one video into 4 frames under a folder named after it (as the paper's
/// anon-and-split does); stage 2 runs once per frame.
const SPLIT: &str = r#"set -e
name=$(basename "$INPUT_FILE_PATH")
mkdir -p "$TMP_OUTPUT_DIR/$name"
for i in 1 2 3 4; do
  printf 'frame %s of %s\n' "$i" "$STORAGE_OBJECT_KEY" > "$TMP_OUTPUT_DIR/$name/img$i.jpg"
done
case "$EVENT" in *'"eventSource":"minio:s3"'*) ;; *) echo "bad EVENT: $EVENT"; exit 9;; esac
echo "split $STORAGE_OBJECT_KEY as $JOB_UUID on $RESOURCE_ID at $EVENT_TIME"
"#;
const DETECT: &str = r#"set -e
rel=${STORAGE_OBJECT_KEY#intermediate/}
mkdir -p "$TMP_OUTPUT_DIR/$(dirname "$rel")"
{ echo "detected in $rel"; cat "$INPUT_FILE_PATH"; } > "$TMP_OUTPUT_DIR/$rel.txt"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stage_chain_fans_out_and_keeps_relative_paths() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        tmp.path(),
        MASK_FDL,
        &[("split.sh", SPLIT), ("detect.sh", DETECT)],
    );
    let d = Daemon::start(cfg(tmp.path()), &[fdl]).await;
    let videos = ["cam1.mp4", "cam 2 ü.mp4"];
    for v in videos {
        let src = tmp.path().join(v);
        std::fs::write(&src, b"video").expect("w");
        let (_, invs) =
            d.rt.put(&minio(), &format!("mask/input/{v}"), &src)
                .await
                .expect("put");
        assert_eq!(invs.len(), 1);
    }
    let all = d.settle(60).await;
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:#?}",
        summary(&all)
    );
    let count = |s: &str| all.iter().filter(|i| i.service == s).count();
    assert_eq!((count("anon-and-split"), count("mask-detector")), (2, 8));
    let store = d.rt.cfg.data_dir.join("store/mask/result");
    let mut want: Vec<String> = videos
        .iter()
        .flat_map(|v| (1..=4).map(move |i| format!("{v}/img{i}.jpg.txt")))
        .collect();
    want.sort();
    assert_eq!(files_under(&store), want);
    let one = std::fs::read_to_string(store.join("cam 2 ü.mp4/img3.jpg.txt")).expect("result");
    assert_eq!(
        one,
        "detected in cam 2 ü.mp4/img3.jpg\nframe 3 of input/cam 2 ü.mp4\n"
    );
    // The log holds the script's output and the contract's variables.
    let split = all
        .iter()
        .find(|i| i.service == "anon-and-split" && i.key.contains("cam1"))
        .expect("split");
    let log = std::fs::read_to_string(d.rt.log_path("anon-and-split", &split.uuid)).expect("log");
    assert!(
        log.starts_with(&format!(
            "split input/cam1.mp4 as {} on test-node at 20",
            split.uuid
        )),
        "{log}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_are_routed_by_prefix_and_suffix() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = "functions:
  oscar:
  - edge:
      name: sorter
      image: x
      script: sort.sh
      input: [{storage_provider: minio, path: in/box}]
      output:
      - {storage_provider: minio, path: sorted/images, suffix: [.jpg, .png]}
      - {storage_provider: minio, path: sorted/meta, prefix: [meta_], suffix: [.json]}
  - edge:
      name: pngs
      image: x
      script: touch.sh
      input: [{storage_provider: minio, path: sorted/images, suffix: [.png]}]
";
    let sort = "cd \"$TMP_OUTPUT_DIR\"; echo 1 > a.jpg; echo 2 > b.png; echo 3 > meta_a.json; echo 4 > other.json; echo 5 > c.txt; mkdir -p sub; echo 6 > sub/d.jpg\n";
    let fdl = workflow(tmp.path(), fdl, &[("sort.sh", sort), ("touch.sh", ":\n")]);
    let d = Daemon::start(cfg(tmp.path()), &[fdl]).await;
    let src = tmp.path().join("x.bin");
    std::fs::write(&src, b"x").expect("w");
    d.rt.put(&minio(), "in/box/x.bin", &src).await.expect("put");
    let all = d.settle(30).await;
    let store = d.rt.cfg.data_dir.join("store/sorted");
    assert_eq!(
        files_under(&store),
        [
            "images/a.jpg",
            "images/b.png",
            "images/sub/d.jpg",
            "meta/meta_a.json"
        ]
    );
    let sorter = all.iter().find(|i| i.service == "sorter").expect("sorter");
    assert_eq!(sorter.outputs, 4);
    let pngs: Vec<_> = all.iter().filter(|i| i.service == "pngs").collect();
    assert_eq!(pngs.len(), 1, "only the .png triggers `pngs`");
    assert_eq!(pngs[0].key, "sorted/images/b.png");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_escaping_scripts_timeouts_big_outputs_and_failures() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pidfile = tmp.path().join("child.pid");
    let fdl = format!(
        "functions:
  oscar:
  - edge:
      name: escape
      image: x
      script: escape.sh
      input: [{{storage_provider: minio, path: t/escape}}]
      output: [{{storage_provider: minio, path: t/out}}]
  - edge:
      name: forever
      image: x
      script: forever.sh
      input: [{{storage_provider: minio, path: t/forever}}]
      output: [{{storage_provider: minio, path: t/out}}]
      environment: {{variables: {{PIDFILE: '{}'}}}}
  - edge:
      name: huge
      image: x
      script: huge.sh
      input: [{{storage_provider: minio, path: t/huge}}]
      output: [{{storage_provider: minio, path: t/out}}]
  - edge:
      name: fails
      image: x
      script: fails.sh
      input: [{{storage_provider: minio, path: t/fails}}]
      output: [{{storage_provider: minio, path: t/out}}]
  - edge:
      name: chatty
      image: x
      script: chatty.sh
      input: [{{storage_provider: minio, path: t/chatty}}]
",
        pidfile.display()
    );
    let escape = "echo secret > \"$TMP_OUTPUT_DIR/../escape.txt\"; echo nope > /tmp/fogd-escape-$$.txt; rm -f /tmp/fogd-escape-$$.txt\nln -s /etc/passwd \"$TMP_OUTPUT_DIR/passwd\"; ln -s .. \"$TMP_OUTPUT_DIR/up\"; echo ok > \"$TMP_OUTPUT_DIR/ok.txt\"\n";
    let forever = "sleep 300 & echo $! > \"$PIDFILE\"; echo started; sleep 300\n";
    let huge = "truncate -s 2G \"$TMP_OUTPUT_DIR/big.bin\"; echo small > \"$TMP_OUTPUT_DIR/small.txt\"\n";
    let fails = "echo partial > \"$TMP_OUTPUT_DIR/partial.txt\"; echo 'something broke' >&2; exit 3\n";
    let fdl = workflow(
        tmp.path(),
        &fdl,
        &[
            ("escape.sh", escape),
            ("forever.sh", forever),
            ("huge.sh", huge),
            ("fails.sh", fails),
            (
                "chatty.sh",
                "head -c 3000 /dev/zero | tr '\\0' x; head -c 3000 /dev/zero | tr '\\0' y >&2\n",
            ),
        ],
    );
    let mut c = cfg(tmp.path());
    c.timeout = Duration::from_secs(2);
    c.log_cap_bytes = 1000;
    // The background child's pid is read from the host: unconfined, so that it is the host's
    // (in the sandbox it would be its PID namespace's; the sandbox's own ending of what a script
    // leaves is exec::local's `what_a_script_leaves_running_ends_with_it`).
    c.isolation = fogd::config::Isolation::None;
    let d = Daemon::start(c, &[fdl]).await;
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"in").expect("w");

    // Keys that would leave the store, or are not keys at all, are refused with the reason.
    for (key, why) in [
        ("t/escape/../../x", "`..`"),
        ("/etc/passwd", "absolute"),
        ("t//x", "empty segment"),
    ] {
        let e = d.rt.put(&minio(), key, &src).await.expect_err(key).to_string();
        assert!(e.contains(why), "{key}: {e}");
    }
    for svc in ["escape", "forever", "huge", "fails", "chatty"] {
        d.rt.put(&minio(), &format!("t/{svc}/in ü.bin"), &src)
            .await
            .expect("put");
    }
    let all = d.settle(60).await;
    let by = |s: &str| all.iter().find(|i| i.service == s).cloned().expect(s);
    let out = d.rt.cfg.data_dir.join("store/t/out");

    let esc = by("escape");
    assert_eq!(esc.state, State::Succeeded);
    assert_eq!(esc.outputs, 1, "only ok.txt is stored");
    let log = std::fs::read_to_string(d.rt.log_path("escape", &esc.uuid)).expect("log");
    assert!(
        log.contains("[fogd] not stored (not regular files): passwd, up"),
        "{log}"
    );

    let fe = by("forever");
    assert_eq!(fe.state, State::TimedOut);
    assert!(
        fe.error.as_deref().unwrap_or("").contains("killed"),
        "{:?}",
        fe.error
    );
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid");
    assert!(gone(pid), "the script's background child was killed too");

    let hu = by("huge");
    assert_eq!(hu.state, State::Failed);
    let err = hu.error.clone().unwrap_or_default();
    assert!(
        err.contains("output `big.bin` is 2147483648 bytes, over max_output_bytes"),
        "{err}"
    );

    let fa = by("fails");
    assert_eq!((fa.state, fa.exit_code), (State::Failed, Some(3)));
    assert_eq!(fa.error.as_deref(), Some("script exited with status 3"));
    let log = std::fs::read_to_string(d.rt.log_path("fails", &fa.uuid)).expect("log");
    assert_eq!(log, "something broke\n");

    // stdout and stderr are kept up to the cap, and the cut is said.
    let ch = by("chatty");
    let log = std::fs::read_to_string(d.rt.log_path("chatty", &ch.uuid)).expect("log");
    assert!(
        log.len() < 1200 && log.ends_with("[fogd] log cut at 1000 bytes; 5000 more bytes dropped\n"),
        "{log}"
    );

    // What was stored: ok.txt of `escape` and the failed script's partial output; nothing of
    // `huge`, nothing from outside TMP_OUTPUT_DIR.
    assert_eq!(files_under(&out), ["ok.txt", "partial.txt"]);
    assert!(files_under(&d.rt.cfg.data_dir.join("store"))
        .iter()
        .all(|f| !f.contains("escape.txt")));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_twice_makes_one_invocation_and_folders_trigger_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        tmp.path(),
        MASK_FDL,
        &[("split.sh", SPLIT), ("detect.sh", DETECT)],
    );
    let rt = fogd::runtime::Runtime::open(cfg(tmp.path()), &[fdl]).expect("rt");
    let meta = fogd::store::ObjectMeta {
        key: "mask/input/a.mp4".into(),
        size: 1,
        etag: "e1".into(),
    };
    assert_eq!(
        rt.emit(&minio(), &meta, "watch")
            .await
            .expect("emit")
            .map(|(_, i)| i.len()),
        Some(1)
    );
    assert_eq!(
        rt.emit(&minio(), &meta, "watch").await.expect("emit"),
        None,
        "second delivery"
    );
    let changed = fogd::store::ObjectMeta {
        etag: "e2".into(),
        ..meta.clone()
    };
    assert!(
        rt.emit(&minio(), &changed, "watch")
            .await
            .expect("emit")
            .is_some(),
        "a new version is a new event"
    );
    let folder = fogd::store::ObjectMeta {
        key: "mask/input/sub/".into(),
        ..meta
    };
    assert_eq!(
        rt.emit(&minio(), &folder, "watch")
            .await
            .expect("emit")
            .map(|(_, i)| i.len()),
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seaweedfs_chain_watch_folder_markers_and_bad_credentials() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    // local -> SeaweedFS -> local, and a service on SeaweedFS with wrong credentials.
    let fdl = format!(
        "functions:
  oscar:
  - edge:
      name: to-cloud
      image: x
      script: up.sh
      input: [{{storage_provider: minio, path: local/in}}]
      output: [{{storage_provider: minio.sw, path: chain/mid}}]
  - edge:
      name: from-cloud
      image: x
      script: down.sh
      input: [{{storage_provider: minio.sw, path: chain/mid}}]
      output: [{{storage_provider: minio, path: local/out}}]
  - edge:
      name: wrong-keys
      image: x
      script: up.sh
      input: [{{storage_provider: minio, path: local/bad}}]
      output: [{{storage_provider: minio.badkeys, path: chain/bad}}]
{}{}",
        sw.provider_yaml("sw", S3_KEY, S3_SECRET),
        sw.provider_yaml("badkeys", S3_KEY, "not-the-secret")
            .replace("storage_providers:\n  minio:\n", "")
    );
    let up = "cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\").up\"\n";
    let down = "{ echo down; cat \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\").down\"\n";
    let fdl = workflow(tmp.path(), &fdl, &[("up.sh", up), ("down.sh", down)]);
    let d = Daemon::start(cfg(tmp.path()), &[fdl]).await;
    let src = tmp.path().join("frame 1.jpg");
    std::fs::write(&src, b"pixels").expect("w");
    d.rt.put(&minio(), "local/in/frame 1.jpg", &src)
        .await
        .expect("put");
    let all = d.settle(60).await;
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:#?}",
        summary(&all)
    );
    assert_eq!(
        all.len(),
        2,
        "to-cloud then from-cloud, once each (the watcher does not repeat it)"
    );
    let out = d.rt.cfg.data_dir.join("store/local/out/frame 1.jpg.up.down");
    assert_eq!(std::fs::read_to_string(out).expect("result"), "down\npixels");

    // An object written to SeaweedFS by someone else is found by the watcher; a folder marker
    // is not an event.
    let sw_store =
        d.rt.store(&ProviderRef::new(ProviderKind::Minio, "sw"))
            .expect("store");
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, b"").expect("w");
    sw_store
        .put_file("chain/mid/folder/", &empty)
        .await
        .expect("marker");
    sw_store
        .put_file("chain/mid/folder/external.jpg", &src)
        .await
        .expect("external");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let all = d.settle(60).await;
    let from: Vec<_> = all
        .iter()
        .filter(|i| i.service == "from-cloud")
        .map(|i| i.key.clone())
        .collect();
    assert_eq!(from.len(), 2, "{from:?}");
    assert!(
        from.contains(&"chain/mid/folder/external.jpg".to_string()),
        "{from:?}"
    );
    let local_out = d.rt.cfg.data_dir.join("store/local/out");
    assert_eq!(
        files_under(&local_out),
        ["external.jpg.down", "frame 1.jpg.up.down"]
    );

    // Wrong credentials: the output waits in the outbox, its error saying which provider and
    // what to check; nothing is lost.
    d.rt.put(&minio(), "local/bad/x.jpg", &src).await.expect("put");
    let all = d.settle(60).await;
    let bad = all.iter().find(|i| i.service == "wrong-keys").expect("bad");
    assert_eq!(bad.state, State::Succeeded);
    let waiting = d.rt.journal.outbox_list(Some("pending"), 10).expect("outbox");
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    let err = waiting[0].error.clone().unwrap_or_default();
    assert!(
        err.contains("minio.badkeys") && err.contains("check access_key and secret_key"),
        "{err}"
    );
    assert!(waiting[0].attempts >= 1 && std::path::Path::new(&waiting[0].local_path).is_file());
    d.stop().await;

    // The input that triggered it is still in the local store: nothing lost.
    let local = AnyStore::Local(LocalStore::new("minio.default", tmp.path().join("data/store")));
    let back = tmp.path().join("back");
    local
        .get_file("local/bad/x.jpg", &back)
        .await
        .expect("input kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_data_folder_refuses_naming_the_first() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        tmp.path(),
        MASK_FDL,
        &[("split.sh", SPLIT), ("detect.sh", DETECT)],
    );
    let first = Daemon::start(cfg(tmp.path()), std::slice::from_ref(&fdl)).await;
    let second = fogd::daemon::Daemon::start(cfg(tmp.path()), std::slice::from_ref(&fdl)).await;
    let msg = second.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("in use by another fogd") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    first.stop().await;
    // Stopped, the folder is free again.
    let again = Daemon::start(cfg(tmp.path()), &[fdl]).await;
    again.stop().await;
}
