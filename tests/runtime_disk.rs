//! The data folder's disk full: fogd refuses new work with a clear error, keeps what it has
//! queued, and its journal stays consistent. Uses a small tmpfs (needs root, as CI runs).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::State;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("dir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_refuses_new_work_and_loses_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fdl = workflow(
        &tmp.path().join("wf"),
        FDL,
        &[(
            "grow.sh",
            "head -c 300000 /dev/zero > \"$TMP_OUTPUT_DIR/o.bin\"\n",
        )],
    );
    let data = tmp.path().join("data");
    let _fs = Tmpfs::mount(&data, "6m");
    let mut c = cfg(tmp.path());
    c.data_dir = data.clone();
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
    std::fs::write(&big, vec![1u8; 8 << 20]).expect("w");
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
