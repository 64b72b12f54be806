//! `fogd run`, `put`, `invoke`, `jobs` and `logs` as a user types them, in separate processes that
//! share one data folder.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{text, workflow};

/// Every command with the same config: data in `dir/data`, no gateway (tests run side by side).
fn fogd(dir: &Path, args: &[&str]) -> Output {
    let cfg = dir.join("fogd.yaml");
    if !cfg.exists() {
        std::fs::write(&cfg, "data_dir: data\ngateway: {enabled: false}\n").expect("cfg");
    }
    Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .output()
        .expect("fogd")
}

const FDL: &str = "functions:
  oscar:
  - edge:
      name: shout
      image: x
      script: shout.sh
      input: [{storage_provider: minio, path: words/in}]
      output: [{storage_provider: minio, path: words/out}]
";
const SHOUT: &str =
    "tr a-z A-Z < \"$INPUT_FILE_PATH\" | tee \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\")\"\n";

#[test]
fn run_put_invoke_jobs_logs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let fdl = workflow(dir, FDL, &[("shout.sh", SHOUT)]);
    std::fs::write(dir.join("hello.txt"), "hello fog\n").expect("w");

    // Before the daemon ever ran, the commands that read the journal say so.
    let o = fogd(dir, &["jobs"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        text(&o).contains("no journal (has `fogd run` used this data folder?)"),
        "{}",
        text(&o)
    );

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .arg("run")
        .arg(&fdl)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let hello = dir.join("hello.txt");
    common::wait_registered(&dir.join("data"));
    let o = fogd(dir, &["put", "minio/words/in/", hello.to_str().unwrap_or("")]);
    assert!(
        text(&o).contains("minio.default/words/in/hello.txt (10 bytes): 1 invocation(s) queued"),
        "{}",
        text(&o)
    );

    let o = fogd(dir, &["invoke", "shout", hello.to_str().unwrap_or(""), "--wait"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains("HELLO FOG\n") && out.contains(": succeeded"),
        "{out}"
    );

    // The same for scripts: one JSON document each.
    let o = fogd(
        dir,
        &["put", "minio/words/in/", hello.to_str().unwrap_or(""), "--json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("put --json");
    assert_eq!(
        (v["provider"].as_str(), v["key"].as_str()),
        (Some("minio.default"), Some("words/in/hello.txt"))
    );
    let o = fogd(
        dir,
        &[
            "invoke",
            "shout",
            hello.to_str().unwrap_or(""),
            "--wait",
            "--json",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("invoke --json");
    assert_eq!(
        (v["state"].as_str(), v["log"].as_str()),
        (Some("succeeded"), Some("HELLO FOG\n")),
        "{v}"
    );

    let o = fogd(dir, &["invoke", "nobody"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).contains("no service `nobody`"), "{}", text(&o));

    let o = fogd(dir, &["put", "ftp/x/", hello.to_str().unwrap_or("")]);
    assert!(text(&o).contains("`ftp`: not a provider"), "{}", text(&o));

    let t0 = Instant::now();
    let jobs = loop {
        let o = fogd(dir, &["jobs", "shout"]);
        let t = text(&o);
        if t.matches("succeeded").count() == 2 || t0.elapsed() > Duration::from_secs(20) {
            break t;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(jobs.starts_with("JOB"), "{jobs}");
    assert!(
        jobs.contains("words/in/hello.txt") && jobs.contains("fogd-invoke/"),
        "{jobs}"
    );

    let logs = text(&fogd(dir, &["logs", "shout"]));
    assert!(logs.contains("HELLO FOG"), "{logs}");
    assert_eq!(
        std::fs::read_to_string(dir.join("data/store/words/out/hello.txt")).expect("out"),
        "HELLO FOG\n"
    );

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    assert!(daemon.wait().expect("wait").success());
}
