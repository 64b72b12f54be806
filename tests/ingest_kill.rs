//! `kill -9` of `fogd run` twice a round, at random moments (while frames arrive, and while they
//! are processed and uploaded), while camera frames arrive over MQTT and are
//! anonymised (the real `fogd anonymize`, models loaded in the vision worker) and uploaded to
//! SeaweedFS through the outbox. Every frame the broker acknowledged must end up anonymised in
//! S3; no raw frame may ever be there. Prints losses and duplicates per round.
//!
//! CI runs one short round; `scripts/soak ingest-kill ROUNDS` runs the full one (500 frames a
//! round; FOGD_KILL_ROUNDS, FOGD_INGEST_FRAMES).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fogd::journal::Journal;
use fogd::store::content_hash;
use rand::{Rng, SeedableRng};

fn fogd_bin() -> std::path::PathBuf {
    workspace_bin("fogd")
}

const ANON: &str = "cam=$(echo \"$STORAGE_OBJECT_KEY\" | cut -d/ -f2)\n\
exec \"$FOGD_BIN\" anonymize \"$INPUT_FILE_PATH\" --out \"$TMP_OUTPUT_DIR/$cam\" --classify-masks\n";

/// `fogd run`, killed when dropped (a failing assertion must not leave it running).
struct Fogd(Child);

impl Drop for Fogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> Fogd {
    Fogd(
        Command::new(fogd_bin())
            .arg("--config")
            .arg(dir.join("fogd.yaml"))
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("fogd.log"))
                    .expect("log"),
            ))
            .spawn()
            .expect("start fogd"),
    )
}

struct Round {
    acked: usize,
    lost: usize,
    redelivered: u64,
    rerun: usize,
    raw_in_s3: usize,
}

async fn round(r: usize, frames: usize, broker: &Mosquitto, sw: &SeaweedFs) -> Round {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let node = format!("kill{r}");
    let fdl = format!(
        "functions:
  oscar:
  - edge:
      name: anon-{r}
      image: fogd/builtin:anonymize
      script: anon.sh
      input: [{{storage_provider: minio, path: cameras/incoming}}]
      output: [{{storage_provider: minio.sw, path: anon/r{r}}}]
      environment: {{variables: {{FOGD_BIN: '{bin}'}}}}
{sw}",
        bin = fogd_bin().display(),
        sw = sw.provider_yaml("sw", S3_KEY, S3_SECRET)
    );
    workflow(dir, &fdl, &[("anon.sh", ANON)]);
    std::fs::write(
        dir.join("fogd.yaml"),
        format!(
            "data_dir: data\nnode_name: {node}\nconcurrency: 2\nworkflows: [workflow.yaml]\ngateway: {{enabled: false}}\n\
             mqtt:\n  broker: {}\n  stats_interval: 1s\nsync:\n  max_backoff: 2s\n",
            broker.url()
        ),
    )
    .expect("cfg");
    let mut fogd = start(dir);
    let mut m = Mqtt::connect(broker.port, &format!("pub-{r}")).await;
    m.subscribe(&format!("fogd/{node}/available")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !m.received.iter().any(|(_, p)| p == b"online") {
        assert!(Instant::now() < deadline, "fogd never came online");
        m.pump(Duration::from_millis(100)).await;
    }

    // Two kill -9 at random moments: one while frames arrive (after a random number of them),
    // one while they are anonymised and uploaded (after a random share is in S3).
    let jpeg = face_jpeg();
    let payloads: Vec<(String, Vec<u8>)> = (0..frames)
        .map(|i| {
            (
                format!("cam{}", i % 2),
                tagged_jpeg(&jpeg, &format!("round {r} frame {i}")),
            )
        })
        .collect();
    let hashes: BTreeSet<String> = payloads.iter().map(|(_, p)| content_hash(p)).collect();
    let mut rng = rand::rngs::StdRng::from_entropy();
    let kill_at_frame = rng.gen_range(1..frames.max(2));
    let kill_at_share: f64 = rng.gen_range(0.1..0.9);
    let journal =
        Journal::open(&dir.join("data/journal.sqlite"), fogd::config::JournalSync::Full).expect("journal");
    let kill = |fogd: &mut Fogd| {
        fogd.0.kill().expect("kill -9");
        fogd.0.wait().expect("reap");
        *fogd = start(dir);
    };
    let mut acked = Vec::new();
    for (i, (cam, p)) in payloads.iter().enumerate() {
        if i == kill_at_frame {
            kill(&mut fogd);
        }
        if m.send(&format!("fogd/cameras/{cam}/frame"), p.clone()).await {
            acked.push((cam.clone(), content_hash(p)));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let target = (kill_at_share * frames as f64) as u64;
    let deadline = Instant::now() + Duration::from_secs(180 + 2 * frames as u64);
    loop {
        let done: u64 = journal
            .outbox_counts()
            .expect("counts")
            .into_iter()
            .filter(|(s, _)| s == "done")
            .map(|(_, n)| n)
            .sum();
        if done >= target {
            break;
        }
        assert!(Instant::now() < deadline, "round {r}: no uploads ({done})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(&mut fogd);
    println!("round {r}: killed after frame {kill_at_frame} arrived and after {target} uploads");

    // Everything acknowledged is ingested, processed, and uploaded.
    let journal =
        Journal::open(&dir.join("data/journal.sqlite"), fogd::config::JournalSync::Full).expect("journal");
    let deadline = Instant::now() + Duration::from_secs(180 + 2 * frames as u64);
    loop {
        let counts: BTreeMap<String, u64> = journal.ingest_counts().expect("c").into_iter().collect();
        let spooled: u64 = counts.values().sum();
        let waiting = counts.get("spooled").copied().unwrap_or(0);
        let (outbox, _) = journal.outbox_totals().expect("o");
        if spooled as usize >= acked.len() && waiting == 0 && outbox == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round {r}: not done: {counts:?}, outbox {outbox}, {} acknowledged; invocations not succeeded: {:#?}; outbox: {:#?}; log:\n{}",
            acked.len(),
            summary(&journal.invocations(None, 100_000).unwrap_or_default()),
            journal.outbox_list(Some("pending"), 5).unwrap_or_default(),
            std::fs::read_to_string(dir.join("fogd.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(fogd.0.id() as i32, libc::SIGINT) };
    let status = fogd.0.wait().expect("wait");
    assert!(status.success(), "fogd exited {status:?}");

    // What is in S3, read back from S3.
    let rt = fogd::runtime::Runtime::open(
        fogd::config::Config {
            data_dir: dir.join("probe"),
            ..Default::default()
        },
        &[dir.join("workflow.yaml")],
    )
    .expect("probe");
    let store = rt
        .store(&fogd::fdl::ProviderRef::parse("minio.sw").expect("p"))
        .expect("s");
    let objects = store.list(&format!("anon/r{r}/")).await.expect("list");
    let keys: BTreeSet<String> = objects.iter().map(|o| o.key.clone()).collect();
    let mut raw_in_s3 = 0;
    let back = dir.join("back");
    for o in &objects {
        store.get_file(&o.key, &back).await.expect("get");
        if hashes.contains(&content_hash(&std::fs::read(&back).expect("read"))) {
            raw_in_s3 += 1;
        }
    }
    // Each acknowledged frame: its raw item (by camera and content) and its anonymised frame.
    let rows: BTreeMap<(String, String), String> = journal
        .ingest_rows()
        .expect("rows")
        .into_iter()
        .map(|row| ((row.camera, row.checksum), row.key))
        .collect();
    let mut lost = 0;
    for (cam, sum) in &acked {
        let ok = rows.get(&(cam.clone(), sum.clone())).is_some_and(|key| {
            let name = key.rsplit('/').next().unwrap_or("");
            keys.contains(&format!("anon/r{r}/{cam}/{name}"))
        });
        lost += usize::from(!ok);
    }
    let counters: BTreeMap<String, u64> = journal.counters().expect("c").into_iter().collect();
    let rerun = journal
        .invocations(None, 100_000)
        .expect("inv")
        .iter()
        .filter(|i| i.attempts > 1)
        .count();
    let res = Round {
        acked: acked.len(),
        lost,
        redelivered: counters.get("ingest_duplicates").copied().unwrap_or(0),
        rerun,
        raw_in_s3,
    };
    println!(
        "round {r}: {frames} published, {} acknowledged by the broker, {} anonymised frames in S3, lost {}, duplicates: {} redelivered by the broker (dropped by content), {} anonymised twice (running at a kill), raw frames in S3 {}",
        res.acked,
        objects.iter().filter(|o| o.key.ends_with(".jpg")).count(),
        res.lost,
        res.redelivered,
        res.rerun,
        res.raw_in_s3
    );
    res
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_with_uploads_loses_nothing() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let rounds = env("FOGD_KILL_ROUNDS", 1);
    let frames = env("FOGD_INGEST_FRAMES", 40);
    let tmp = tempfile::tempdir().expect("tmp");
    let broker = Mosquitto::start(&tmp.path().join("mosquitto"));
    let sw = SeaweedFs::start(&tmp.path().join("weed"));
    let (mut lost, mut raw, mut dup, mut rerun) = (0, 0, 0, 0);
    for r in 0..rounds {
        let res = round(r, frames, &broker, &sw).await;
        assert!(res.acked > 0);
        lost += res.lost;
        raw += res.raw_in_s3;
        dup += res.redelivered;
        rerun += res.rerun;
    }
    println!("{rounds} round(s) of {frames} frames: lost {lost}, raw frames in S3 {raw}, redelivered {dup}, anonymised twice {rerun}");
    assert_eq!(lost, 0, "frames lost");
    assert_eq!(raw, 0, "raw frames in S3");
}
