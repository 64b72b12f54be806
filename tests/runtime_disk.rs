//! The data folder's disk full: fogd refuses new work with a clear error, keeps what it has
//! queued, and its journal stays consistent. Uses a small tmpfs (needs root, as CI runs).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::State;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount_with(at: &Path, options: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(st.success(), "mounting a tmpfs needs root (CI runs as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

const FDL: &str = "functions:
  oscar:
  - edge:
      name: grow
      image: x
      script: grow.sh
      input: [{storage_provider: minio, path: d/in}]
      output: [{storage_provider: minio, path: d/out}]
";

/// A node's files on a tmpfs mounted with `options` (removed when the returned Tmpfs drops): the
/// workflow `FDL` with `grow.sh` as given, and a config whose data folder is the tmpfs.
fn on_tmpfs(tmp: &Path, options: &str, grow: &str) -> (PathBuf, Tmpfs, fogd::config::Config, PathBuf) {
    let fdl = workflow(&tmp.join("wf"), FDL, &[("grow.sh", grow)]);
    let data = tmp.join("data");
    let fs = Tmpfs::mount_with(&data, options);
    let mut c = cfg(tmp);
    c.data_dir = data.clone();
    (fdl, fs, c, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_new_work_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fdl, _fs, mut c, data) = on_tmpfs(
        tmp.path(),
        "size=14m",
        "head -c 300000 /dev/zero > \"$TMP_OUTPUT_DIR/o.bin\"\n",
    );
    c.min_free_bytes = 2 << 20;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, vec![7u8; 100_000]).expect("w");

    // 1. Past min_free_bytes, `put` is refused with a message that says why and where.
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    let mut refused = None;
    for i in 0..100 {
        match d.rt.put(&minio, &format!("d/in/{i}.bin"), &src).await {
            Ok(_) => {}
            Err(e) => {
                refused = Some((i, e.to_string()));
                break;
            }
        }
    }
    let (accepted, msg) = refused.expect("a full disk refuses work");
    assert!(
        msg.contains("under min_free_bytes") && msg.contains("takes no new work"),
        "{msg}"
    );
    assert!(msg.contains(&data.display().to_string()), "{msg}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.stop().await;

    // 2. Everything accepted is journalled, and the journal is intact.
    let j = fogd::journal::Journal::open(&data.join("journal.sqlite"), fogd::config::JournalSync::Full)
        .expect("j");
    let all = j.invocations(None, 1000).expect("list");
    assert_eq!(all.len(), accepted, "one invocation per accepted file");
    let conn = rusqlite::Connection::open(data.join("journal.sqlite")).expect("sqlite");
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("check");
    assert_eq!(ok, "ok");

    // 3. Writing past the end of the disk (no reserve) fails cleanly, leaving no partial object.
    let mut c0 = c.clone();
    c0.min_free_bytes = 0;
    let rt = fogd::runtime::Runtime::open(c0, std::slice::from_ref(&fdl)).expect("rt");
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, vec![1u8; 16 << 20]).expect("w");
    let e = rt
        .put(&minio, "d/in/big.bin", &big)
        .await
        .expect_err("no space")
        .to_string();
    assert!(e.contains("no space left on the device"), "{e}");
    assert!(!files_under(&data.join("store"))
        .iter()
        .any(|f| f.contains("big.bin") || f.contains(".fogd-tmp-")));

    // 4. Space freed: the queued work runs to the end.
    let _ = std::fs::remove_dir_all(data.join("store/d/out"));
    let mut c2 = c.clone();
    c2.min_free_bytes = 0;
    let d = Daemon::start(c2, &[fdl]).await;
    let all = d.settle(60).await;
    let states: Vec<State> = all.iter().map(|i| i.state).collect();
    assert!(states.iter().all(|s| s.is_final()), "{states:?}");
    d.stop().await;
}

/// Finding 5 of issue 17: a script that fills the disk. Before, the journal could not commit its
/// end (it stayed `running`), fogd would not start again, and freeing space reran it. Now the
/// script is killed while it runs, its files go, its end is journalled, and the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_fills_the_disk_is_stopped_and_the_node_goes_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Fills its output folder (and so the disk) a MiB at a time, for ever.
    let (fdl, _fs, mut c, data) = on_tmpfs(
        tmp.path(),
        "size=48m",
        "i=0\nwhile :; do head -c 1048576 /dev/zero > \"$TMP_OUTPUT_DIR/f$i\" || sleep 0.1; i=$((i+1)); done\n",
    );
    c.min_free_bytes = 16 << 20;
    c.timeout = Duration::from_secs(120);
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"go").expect("w");
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    d.rt.put(&minio, "d/in/a.bin", &src).await.expect("put");
    let all = d.settle(60).await;
    assert_eq!(all.len(), 1);
    let err = all[0].error.clone().unwrap_or_default();
    assert_eq!(all[0].state, State::Failed, "{err}");
    assert!(err.contains("fell under") && err.contains("bytes free"), "{err}");
    // Its files are gone: there is room for new work, which runs.
    let free = fogd::paths::free_bytes(&data).expect("statvfs");
    assert!(free > c.min_free_bytes, "{free} bytes free");
    assert!(files_under(&data.join("work")).is_empty());
    d.stop().await;
    // And it starts again (nothing is left `running`).
    let d = Daemon::start(c, &[fdl]).await;
    let again = d.rt.journal.invocations(None, 10).expect("list");
    assert!(again.iter().all(|i| i.state.is_final()), "{:?}", summary(&again));
    d.stop().await;
}

/// Finding 12 of issue 17: a data folder out of inodes with space left. Before, only bytes were
/// guarded: ingest and puts failed deep inside with ENOSPC. Now it is refused up front, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_inodes_are_guarded_like_free_bytes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fdl, _fs, mut c, data) = on_tmpfs(tmp.path(), "size=64m,nr_inodes=160", ":\n");
    c.min_free_inodes = 64;
    c.min_free_bytes = 1 << 20;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"x").expect("w");
    let d = Daemon::start(c, std::slice::from_ref(&fdl)).await;
    let mut refused = None;
    for i in 0..200 {
        if let Err(e) = d.rt.put(&minio, &format!("d/in/{i}.bin"), &src).await {
            refused = Some(e.to_string());
            break;
        }
    }
    let msg = refused.expect("refused before the inodes ran out");
    assert!(msg.contains("inodes") && msg.contains("min_free_inodes"), "{msg}");
    assert!(
        fogd::paths::free_bytes(&data).expect("statvfs") > 32 << 20,
        "bytes were not the limit"
    );
    d.stop().await;
}

/// A node whose data folder is full when it starts (finding 5: before, fogd would not start
/// again): it starts, says the disk is full, takes no new work, and runs once space is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_on_a_full_disk_and_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fdl, _fs, mut c, data) = on_tmpfs(tmp.path(), "size=32m", ":\n");
    c.min_free_bytes = 1 << 20;
    // A first start makes the journal; then something else fills the disk to the last byte.
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    d.stop().await;
    fogd::gateway::auth::Admin::store(&data, "oscar", "pw").expect("admin");
    let filler = data.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", "count=64"])
        .arg(format!("of={}", filler.display()))
        .output();
    assert_eq!(fogd::paths::free_bytes(&data), Some(0), "the disk is full");
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    // The API says so too: 507, and no spool file left behind.
    let url = d.gateway_url().expect("gateway");
    let r = reqwest::Client::new()
        .post(format!("{url}/job/grow"))
        .basic_auth("oscar", Some("pw"))
        .body(vec![b'a'; 200_000])
        .send()
        .await
        .expect("job");
    assert_eq!(r.status().as_u16(), 507);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("min_free_bytes"), "{body}");
    let spooled: Vec<_> = std::fs::read_dir(&data)
        .expect("data")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
        .collect();
    assert!(spooled.is_empty(), "{spooled:?}");
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"x").expect("w");
    let e =
        d.rt.put(&minio, "d/in/x.bin", &src)
            .await
            .expect_err("full")
            .to_string();
    assert!(e.contains("min_free_bytes"), "{e}");
    // Space back: work is taken again, without a restart.
    std::fs::remove_file(&filler).expect("rm");
    d.rt.put(&minio, "d/in/y.bin", &src).await.expect("put");
    let all = d.settle(30).await;
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:?}",
        summary(&all)
    );
    d.stop().await;
}

/// Issue 30, finding 12: `dd` into TMP_OUTPUT_DIR fills a 96 MiB data disk faster than a
/// once-a-second watcher looks. Before, the journal could not commit the invocation's end
/// ("database or disk is full"), its files stayed in `data/work`, and after a restart the node
/// took no new work. Now its files go before its end is journalled, the end is final (not rerun
/// after a restart), and the node goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dd_that_fills_the_disk_at_once_is_failed_for_good_and_the_node_goes_on() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fdl, _fs, mut c, data) = on_tmpfs(
        tmp.path(),
        "size=96m",
        "dd if=/dev/zero of=\"$TMP_OUTPUT_DIR/big\" bs=1M\nsleep 1\n",
    );
    c.min_free_bytes = 16 << 20;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"go").expect("w");
    let d = Daemon::start(c.clone(), std::slice::from_ref(&fdl)).await;
    d.rt.put(&minio, "d/in/a.bin", &src).await.expect("put");
    let all = d.settle(60).await;
    assert_eq!(all.len(), 1);
    let err = all[0].error.clone().unwrap_or_default();
    assert_eq!(all[0].state, State::Failed, "{err}");
    assert!(err.contains("bytes free"), "{err}");
    assert!(
        files_under(&data.join("work")).is_empty(),
        "{:?}",
        files_under(&data.join("work"))
    );
    d.stop().await;
    // Started again: the end was journalled, nothing reruns, and new work runs.
    let d = Daemon::start(c, &[fdl]).await;
    let again = d.rt.journal.invocations(None, 10).expect("list");
    assert!(again.iter().all(|i| i.state.is_final()), "{:?}", summary(&again));
    assert_eq!(again.len(), 1, "not rerun: {:?}", summary(&again));
    d.stop().await;
}

/// No file a script writes grows past max_work_bytes, however fast it writes (RLIMIT_FSIZE):
/// the writer is stopped at the limit, not a second later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_stops_growing_at_max_work_bytes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (fdl, _fs, mut c, data) = on_tmpfs(
        tmp.path(),
        "size=256m",
        "dd if=/dev/zero of=\"$TMP_OUTPUT_DIR/big\" bs=1M count=64 2>/dev/null\nwc -c < \"$TMP_OUTPUT_DIR/big\" > \"$TMP_OUTPUT_DIR/size\"\nrm \"$TMP_OUTPUT_DIR/big\"\n",
    );
    c.max_work_bytes = 8 << 20;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let src = tmp.path().join("in.bin");
    std::fs::write(&src, b"go").expect("w");
    let d = Daemon::start(c, std::slice::from_ref(&fdl)).await;
    d.rt.put(&minio, "d/in/a.bin", &src).await.expect("put");
    let all = d.settle(60).await;
    assert_eq!(all[0].state, State::Succeeded, "{:?}", all[0].error);
    let size = std::fs::read_to_string(data.join("store/d/out/size")).expect("size");
    assert_eq!(size.trim(), (8u64 << 20).to_string());
    d.stop().await;
}
