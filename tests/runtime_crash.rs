//! `kill -9` of `fogd run` in the middle of a 200-invocation chain, then a restart: every input
//! reaches its result, and only the invocations that were running at the kill run twice.
//!
//! CI runs one round; `scripts/soak runtime-kill ROUNDS` runs more (FOGD_KILL_ROUNDS).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::{Journal, State};

const INPUTS: usize = 100;

fn fdl(runs: &Path) -> String {
    format!(
        "functions:
  oscar:
  - edge:
      name: stage-a
      image: x
      script: a.sh
      input: [{{storage_provider: minio, path: chain/in}}]
      output: [{{storage_provider: minio, path: chain/mid}}]
      environment: {{variables: {{RUNS: '{r}'}}}}
  - edge:
      name: stage-b
      image: x
      script: b.sh
      input: [{{storage_provider: minio, path: chain/mid}}]
      output: [{{storage_provider: minio, path: chain/out}}]
      environment: {{variables: {{RUNS: '{r}'}}}}
",
        r = runs.display()
    )
}

const A: &str = "echo \"$JOB_UUID\" >> \"$RUNS\"; sleep 0.02; cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\").a\"\n";
const B: &str = "echo \"$JOB_UUID\" >> \"$RUNS\"; sleep 0.02; { cat \"$INPUT_FILE_PATH\"; echo b; } > \"$TMP_OUTPUT_DIR/$(basename \"$INPUT_FILE_PATH\").b\"\n";

fn start(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .arg("run")
        .arg(dir.join("workflow.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("fogd.log")).expect("log"),
        ))
        .spawn()
        .expect("start fogd")
}

/// Results stored; a `.fogd-tmp-` file is a write that the kill cut short, never an object.
fn results(dir: &Path) -> usize {
    files_under(&dir.join("data/store/chain/out"))
        .iter()
        .filter(|f| !f.rsplit('/').next().unwrap_or("").starts_with(".fogd-tmp-"))
        .count()
}

/// One round: returns (runs twice, lost).
fn round(seed: u64) -> (usize, usize) {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let runs = dir.join("runs.log");
    workflow(dir, &fdl(&runs), &[("a.sh", A), ("b.sh", B)]);
    std::fs::write(
        dir.join("fogd.yaml"),
        "data_dir: data\nconcurrency: 2\nnode_name: crash-test\ngateway: {enabled: false}\n",
    )
    .expect("cfg");
    let mut fogd = start(dir);

    // The inputs arrive through the journal while fogd runs, as `fogd put` would send them.
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let cfg = fogd::config::Config::load(&dir.join("fogd.yaml")).expect("cfg");
    let client = fogd::runtime::Runtime::open(cfg, &[dir.join("workflow.yaml")]).expect("client");
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    for i in 0..INPUTS {
        let src = dir.join(format!("in{i}.txt"));
        std::fs::write(&src, format!("input {i}\n")).expect("w");
        rt.block_on(client.put(&minio, &format!("chain/in/in{i}.txt"), &src))
            .expect("put");
    }
    // Kill at a pseudo-random point between 10% and 80% of the results.
    let at = 10
        + (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 33) as usize
            % 70;
    let deadline = Instant::now() + Duration::from_secs(120);
    while results(dir) < at {
        // Said with what fogd said, and whether it still runs (a CI run once stalled here).
        assert!(
            Instant::now() < deadline,
            "no progress before the kill: {} of {at} results; fogd {:?}; its log:\n{}",
            results(dir),
            fogd.try_wait(),
            std::fs::read_to_string(dir.join("fogd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fogd.kill().expect("kill -9");
    fogd.wait().expect("reap");
    let done_at_kill = results(dir);

    let mut fogd = start(dir);
    let journal =
        Journal::open(&dir.join("data/journal.sqlite"), fogd::config::JournalSync::Full).expect("journal");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let pending = journal.pending("stage-a").expect("p") + journal.pending("stage-b").expect("p");
        if results(dir) == INPUTS && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished after restart: {} results, {pending} pending",
            results(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ask it to stop as a user would (Ctrl-C) and check it drains and exits cleanly.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(fogd.id() as i32, libc::SIGINT) };
    let status = fogd.wait().expect("wait");
    assert!(status.success(), "fogd exited {status:?}");

    let all = journal.invocations(None, 10_000).expect("list");
    assert_eq!(all.len(), 2 * INPUTS, "one invocation per input per stage");
    assert!(
        all.iter().all(|i| i.state == State::Succeeded),
        "{:#?}",
        summary(&all)
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for line in std::fs::read_to_string(&runs).expect("runs").lines() {
        *seen.entry(line.to_string()).or_default() += 1;
    }
    let twice: Vec<&String> = seen.iter().filter(|(_, &n)| n > 1).map(|(k, _)| k).collect();
    for uuid in &twice {
        let inv = all.iter().find(|i| &&i.uuid == uuid).expect("known");
        assert!(inv.attempts >= 2, "{uuid} ran twice but was not interrupted");
    }
    // At most the running ones (2 per service) can have been interrupted.
    assert!(twice.len() <= 4, "{} ran twice", twice.len());
    let mut lost = 0;
    for i in 0..INPUTS {
        let out = dir.join(format!("data/store/chain/out/in{i}.txt.a.b"));
        match std::fs::read_to_string(&out) {
            Ok(s) if s == format!("input {i}\nb\n") => {}
            _ => lost += 1,
        }
    }
    println!(
        "kill -9 at {done_at_kill}/{INPUTS} results: {} ran twice, {lost} lost",
        twice.len()
    );
    (twice.len(), lost)
}

#[test]
fn kill_9_mid_chain_loses_nothing() {
    let rounds: u64 = std::env::var("FOGD_KILL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let mut total = (0, 0);
    for r in 0..rounds {
        let (twice, lost) = round(r + 1);
        total.0 += twice;
        total.1 += lost;
    }
    println!("{rounds} round(s): {} ran twice, {} lost", total.0, total.1);
    assert_eq!(total.1, 0);
}
