//! The journal is behind an async boundary: a node that runs a two-stage chain, takes `/job`
//! and `/run` requests and settles, never uses its SQLite connection on an async worker thread
//! (where a commit's fsync would stall every task on that thread). The count is per process
//! and the other tests of this binary touch journals too, so the test runs alone, in a child
//! process of this binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fogd::config::Config;
use fogd::daemon::{Daemon, Drained};
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::{boundary, Invocation, Journal};

const FDL: &str = "functions:
  oscar:
  - edge:
      name: split
      image: x
      script: split.sh
      input: [{storage_provider: minio, path: b/in}]
      output: [{storage_provider: minio, path: b/mid}]
  - edge:
      name: count
      image: x
      script: count.sh
      input: [{storage_provider: minio, path: b/mid}]
      output: [{storage_provider: minio, path: b/out}]
";

async fn all(j: &Arc<Journal>) -> Vec<Invocation> {
    j.call(|j| j.invocations(None, 10_000)).await.expect("list")
}

#[test]
fn a_busy_node_keeps_the_journal_off_its_async_workers() {
    let alone = "journal_boundary::the_node_alone";
    let o = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            alone,
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("run the test alone");
    let out = crate::common::text(&o);
    assert!(o.status.success() && out.contains("1 passed"), "{out}");
}

/// Run by `a_busy_node_keeps_the_journal_off_its_async_workers`, alone in its process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run alone in a child process by a_busy_node_keeps_the_journal_off_its_async_workers"]
async fn the_node_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    std::fs::write(
        dir.join("split.sh"),
        "mkdir \"$TMP_OUTPUT_DIR/$JOB_UUID\"\nfor i in 1 2 3; do echo $i > \"$TMP_OUTPUT_DIR/$JOB_UUID/f$i.txt\"; done\n",
    )
    .expect("w");
    std::fs::write(
        dir.join("count.sh"),
        "wc -c < \"$INPUT_FILE_PATH\" > \"$TMP_OUTPUT_DIR/n.txt\"\n",
    )
    .expect("w");
    let fdl: PathBuf = dir.join("wf.yaml");
    std::fs::write(&fdl, FDL).expect("w");
    let mut cfg = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    cfg.gateway.listen = "127.0.0.1:0".into();
    let before = boundary::uses_on_async_workers();
    let d = Daemon::start(cfg, &[fdl]).await.expect("start");
    let rt = d.runtime().clone();
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let input = dir.join("in.txt");
    std::fs::write(&input, "x").expect("w");
    for i in 0..20 {
        rt.put(&minio, &format!("b/in/{i}.txt"), &input)
            .await
            .expect("put");
    }
    // /job and /run through the gateway, as a client would.
    let addr = d.gateway_addr().expect("gateway");
    let token = rt
        .journal
        .call(|j| j.service_token("split"))
        .await
        .expect("token");
    let http = reqwest::Client::new();
    for path in ["job", "run"] {
        let r = http
            .post(format!("http://{addr}/{path}/split"))
            .bearer_auth(&token)
            .body("aGVsbG8=")
            .send()
            .await
            .expect("post");
        assert!(r.status().is_success(), "/{path}: {}", r.status());
    }
    // 20 puts and 2 requests, 3 frames each: 22 splits and 66 counts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inv = all(&rt.journal).await;
        if inv.len() == 88 && inv.iter().all(|i| i.state.is_final()) {
            assert!(inv.iter().all(|i| i.error.is_none()), "{inv:#?}");
            break;
        }
        assert!(Instant::now() < deadline, "{} of 88 invocations", inv.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        d.shutdown(Duration::from_secs(30)).await.expect("stop"),
        Drained::Clean
    );
    assert_eq!(
        boundary::uses_on_async_workers() - before,
        0,
        "journal uses on async worker threads (run with FOGD_LOG=fogd::journal=trace to see where)"
    );
}
