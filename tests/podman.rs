//! The podman executor with real containers (podman + runc) of images made here by
//! `scripts/images` from a locally bootstrapped Debian: OSCAR's cowsay service unchanged, the
//! paper's workflow byte for byte as under the local executor, the faults, a volume, an exposed
//! service, and a restart while a container runs.

use crate::common;
mod planted;
use crate::vision_support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fogd::journal::{Invocation, State};
use fogd_testkit::FogdNode;
use vision_support::*;

/// The images, built once per test run from the binaries under test.
fn images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let bin_dir = fogd_bin().parent().expect("bin dir").to_path_buf();
        let o = Command::new(common::repo().join("scripts/images"))
            .arg("--bin-dir")
            .arg(&bin_dir)
            .output()
            .expect("scripts/images");
        assert!(o.status.success(), "scripts/images: {}", text(&o));
    });
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().expect("podman")
}

const PODMAN_CFG: &str = "executor: podman\npodman: {runtime: runc}\n";

fn wait_for(node: &FogdNode, svc: &str, n: usize, secs: u64) -> Vec<Invocation> {
    let j = node.journal();
    let t0 = Instant::now();
    loop {
        let all = j.invocations(Some(svc), 100).expect("journal");
        let done: Vec<Invocation> = all.into_iter().filter(|i| i.state.is_final()).collect();
        if done.len() >= n {
            return done;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "{svc}: {} of {n} ended; {}",
            done.len(),
            std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio")
}

/// OSCAR's cowsay example, FDL and script as OSCAR ships them, run through `/run` in an image
/// that has cowsay and jq: the host has neither, and the local executor fails on it.
#[test]
fn the_oscar_cowsay_service_runs_unchanged_in_its_image() {
    images();
    assert!(
        !Path::new("/usr/games/cowsay").exists() && !Path::new("/usr/bin/cowsay").exists(),
        "this test shows cowsay coming from the image: the host must not have it"
    );
    // The FDL's image name, given to the image made here (no registry is reachable).
    assert!(podman(&[
        "tag",
        "localhost/fogd/cowsay:latest",
        "ghcr.io/grycap/cowsay:latest"
    ])
    .status
    .success());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fdl = d.join("cowsay.yaml");
    std::fs::copy(
        common::repo().join("tests/fixtures/fdl/grycap_oscar__examples__cowsay__cowsay.yaml"),
        &fdl,
    )
    .unwrap();
    std::fs::copy(
        common::repo().join("tests/podman/cowsay/script.sh"),
        d.join("script.sh"),
    )
    .unwrap();
    let http = reqwest::Client::new();
    for (executor, want_ok) in [("podman", true), ("local", false)] {
        let node = FogdNode::start(
            &fogd_bin(),
            &d.join(executor),
            executor,
            &format!("executor: {executor}\npodman: {{runtime: runc}}\n"),
            Some(&fdl),
        );
        let r = rt().block_on(async {
            let r = http
                .post(format!("{}/run/cowsay", node.url))
                .basic_auth("oscar", Some(&node.password))
                .body(r#"{"message": "Hello from fogd"}"#)
                .send()
                .await
                .expect("POST /run");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        });
        if want_ok {
            assert_eq!(r.0, 200, "{}", r.1);
            assert!(
                r.1.contains("< Hello from fogd >") && r.1.contains("(oo)"),
                "{}",
                r.1
            );
        } else {
            assert_ne!(r.0, 200, "the host has no cowsay: {}", r.1);
            let inv = wait_for(&node, "cowsay", 1, 30);
            assert_eq!(inv[0].state, State::Failed, "{inv:?}");
        }
    }
}

/// The paper's workflow (anon-and-split, then mask-detector), both functions in containers of
/// the fogd image: the same files as under the local executor, byte for byte but for what
/// differs between any two runs (the work folder's path and the stage timings in the reports,
/// which the anonymised JPEGs also carry in a COM note).
#[test]
fn the_paper_workflow_in_containers_gives_the_local_executors_outputs() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clip = d.join("cam1.mp4");
    sample_clip(&clip, 11, 1280, 720, &[]);
    let mut trees = Vec::new();
    for executor in ["local", "podman"] {
        let node_dir = d.join(executor);
        std::fs::create_dir_all(&node_dir).unwrap();
        let cfg = node_dir.join("fogd.yaml");
        std::fs::write(
            &cfg,
            format!("data_dir: data\ngateway: {{enabled: false}}\nexecutor: {executor}\npodman: {{runtime: runc}}\n"),
        )
        .unwrap();
        let mut daemon = run_example_with(&node_dir, &clip);
        let results = node_dir.join("data/store/cameras/results/cam1");
        let t0 = Instant::now();
        while t0.elapsed().as_secs() < 180
            && (1..=3).any(|i| !results.join(format!("img{i}.masks.json")).is_file())
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        // Give the last outputs of the run a moment to be stored.
        std::thread::sleep(Duration::from_secs(2));
        let jobs = fogd(&["--config", cfg.to_str().unwrap(), "jobs"]);
        let _ = daemon.kill();
        let _ = daemon.wait();
        let log = std::fs::read_to_string(node_dir.join("daemon.log")).unwrap_or_default();
        assert!(
            !text(&jobs).contains("failed"),
            "{executor}: {}\n{log}",
            text(&jobs)
        );
        let store = node_dir.join("data/store/cameras");
        let mut files = std::collections::BTreeMap::new();
        for sub in ["anonymised", "results"] {
            for rel in common::files_under(&store.join(sub)) {
                let bytes = std::fs::read(store.join(sub).join(&rel)).unwrap();
                files.insert(format!("{sub}/{rel}"), per_run_removed(&rel, bytes));
            }
        }
        assert!(
            files.len() >= 9,
            "{executor}: {:?}\n{log}",
            files.keys().collect::<Vec<_>>()
        );
        if executor == "podman" {
            assert!(log.contains("podman executor: podman"), "{log}");
            // The scripts' vision ran in the containers, not in the daemon's worker.
            assert!(!log.contains("vision request served"), "{log}");
        }
        trees.push(files);
    }
    let (local, contained) = (&trees[0], &trees[1]);
    assert_eq!(
        local.keys().collect::<Vec<_>>(),
        contained.keys().collect::<Vec<_>>(),
        "the same files"
    );
    for (k, v) in local {
        assert!(
            contained[k] == *v,
            "{k} differs between the local and the podman executor"
        );
    }
}

/// An output without what differs between two runs of the same work: JPEG COM segments (the
/// report note), and the reports' paths and timings.
fn per_run_removed(name: &str, bytes: Vec<u8>) -> Vec<u8> {
    if name.ends_with(".json") {
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).expect("json output");
        for k in ["source", "image", "annotated", "timings_ms"] {
            v.as_object_mut().map(|o| o.remove(k));
        }
        return v.to_string().into_bytes();
    }
    if !name.ends_with(".jpg") {
        return bytes;
    }
    let mut out = bytes[..2].to_vec();
    let mut i = 2;
    while i + 4 <= bytes.len() && bytes[i] == 0xFF && bytes[i + 1] != 0xDA {
        let len = usize::from(bytes[i + 2]) << 8 | usize::from(bytes[i + 3]);
        if bytes[i + 1] != 0xFE {
            out.extend_from_slice(&bytes[i..i + 2 + len]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&bytes[i..]);
    out
}

/// Faults, limits, secrets, a volume and an exposed service on one node.
#[test]
fn container_faults_limits_volume_and_exposed_service() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let web_port = fogd_testkit::free_ports(1);
    let here = common::repo().join("tests/podman/faults");
    let read = |n: &str| std::fs::read_to_string(here.join(n)).unwrap();
    let names = [
        "ok.sh",
        "fails.sh",
        "slow.sh",
        "hog.sh",
        "counter.sh",
        "web.sh",
        "keep.sh",
        "plant.sh",
    ];
    let scripts: Vec<(&str, String)> = names.iter().map(|n| (*n, read(n))).collect();
    let scripts: Vec<(&str, &str)> = scripts.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let fdl = common::workflow(
        d,
        &read("faults.yaml").replace("WEB_PORT", &web_port.to_string()),
        &scripts,
    );
    let volumes = ["fogd-7-counter-state", "fogd-3-cam-a-cache", "fogd-5-cam-a-cache"];
    for v in volumes {
        let _ = podman(&["volume", "rm", "--force", v]);
    }
    let node = FogdNode::start(
        &fogd_bin(),
        &d.join("node"),
        "faults",
        &format!("{PODMAN_CFG}timeout: 4s\nmax_attempts: 1\n"),
        Some(&fdl),
    );
    let http = reqwest::Client::new();
    rt().block_on(async {
        for svc in ["absent", "fails", "slow", "hog", "counter", "cam", "planter"] {
            node.submit(&http, svc, "a.txt", b"a\n").await;
        }
    });
    let one = |svc: &str| wait_for(&node, svc, 1, 60).remove(0);
    let absent = one("absent");
    assert_eq!(absent.state, State::Failed);
    let e = absent.error.unwrap_or_default();
    assert!(
        e.contains("image `localhost/fogd/absent:1` is not on this node and could not be pulled"),
        "{e}"
    );
    let fails = one("fails");
    assert_eq!(
        (fails.state, fails.exit_code),
        (State::Failed, Some(3)),
        "{fails:?}"
    );
    let logs = fogd(&[
        "--config",
        node.dir.join("fogd.yaml").to_str().unwrap(),
        "logs",
        "fails",
        &fails.uuid,
    ]);
    assert!(text(&logs).contains("about to fail"), "{}", text(&logs));
    let slow = one("slow");
    assert_eq!(slow.state, State::TimedOut, "{slow:?}");
    let hog = one("hog");
    assert_eq!(hog.state, State::Failed, "{hog:?}");
    assert!(
        hog.error
            .as_deref()
            .unwrap_or("")
            .contains("over its memory limit of 67108864 bytes (OOM)"),
        "{hog:?}"
    );
    // Every container of a finished invocation is gone (the timed-out one killed and removed).
    for inv in [&fails, &slow, &hog] {
        let name = format!("fogd-{}", inv.uuid);
        assert!(
            !podman(&["container", "exists", &name]).status.success(),
            "{name} left behind"
        );
    }
    // The volume keeps its file between invocations; variables and secrets reach the script;
    // `cpu: 0.5` is a limit, not a CPU set (nproc sees the box's CPUs).
    let first = one("counter");
    assert_eq!(first.state, State::Succeeded, "{first:?}");
    rt().block_on(node.submit(&http, "counter", "b.txt", b"b\n"));
    wait_for(&node, "counter", 2, 60);
    let out = node.dir.join("data/store/counter/out");
    let a = std::fs::read_to_string(out.join("a.txt.out")).unwrap();
    let b = std::fs::read_to_string(out.join("b.txt.out")).unwrap();
    assert!(a.starts_with("1 hello s3cr3t"), "{a}");
    assert!(b.starts_with("2 hello s3cr3t"), "{b}");
    // The env file with the secret is gone from the work folders.
    assert!(!common::files_under(&node.dir.join("data"))
        .iter()
        .any(|f| f.ends_with("/env")));
    // The exposed service answers through its port.
    let t0 = Instant::now();
    let body = loop {
        let r = rt().block_on(async {
            http.get(format!("http://127.0.0.1:{web_port}/index.html"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()
        });
        if let Some(b) = r.filter(|b| b.contains("served")) {
            break b;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the exposed service did not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(body, "served by web\n");
    // Its secret reached the script, and is nowhere in what `podman inspect` shows.
    let token = rt().block_on(async {
        http.get(format!("http://127.0.0.1:{web_port}/token.txt"))
            .send()
            .await
            .expect("token")
            .text()
            .await
            .expect("text")
    });
    assert_eq!(token, "w3b-s3cr3t\n");
    let inspected = podman(&["container", "inspect", "fogd-expose-web"]);
    assert!(inspected.status.success(), "{}", text(&inspected));
    assert!(
        !text(&inspected).contains("w3b-s3cr3t"),
        "the secret shows in podman inspect"
    );
    // `cam` (volume `a-cache`) and `cam-a` (volume `cache`) share no volume: cam-a, run after
    // cam, finds its own volume empty.
    assert_eq!(one("cam").state, State::Succeeded);
    rt().block_on(node.submit(&http, "cam-a", "a.txt", b"a\n"));
    assert_eq!(one("cam-a").state, State::Succeeded);
    let seen = std::fs::read_to_string(node.dir.join("data/store/cama/out/seen.txt")).unwrap();
    assert_eq!(seen, "", "cam-a saw cam's volume");
    let labelled = podman(&[
        "volume",
        "inspect",
        "--format",
        "{{index .Labels \"fogd.io/service\"}}",
        "fogd-3-cam-a-cache",
    ]);
    assert_eq!(text(&labelled).trim(), "cam");
    planted::links_planted_by_a_container_lead_nowhere(&node, one("planter"));
    drop(node);
    let _ = podman(&["rm", "--force", "fogd-expose-web"]);
    for v in volumes {
        let _ = podman(&["volume", "rm", "--force", v]);
    }
    // The FDL's services are never deleted through the API: their podman secrets go here.
    let secrets = text(&podman(&["secret", "ls", "--format", "{{.Name}}"]));
    for s in secrets
        .lines()
        .filter(|s| s.starts_with("fogd-3-web-") || s.starts_with("fogd-7-counter-"))
    {
        let _ = podman(&["secret", "rm", s]);
    }
}

/// fogd killed while a container runs: the next start finds the container by its name and
/// follows it to its end; the script ran once. Then podman missing: a clear error at the start
/// and in `fogd check`.
#[test]
fn a_restart_follows_the_running_container_and_podman_missing_is_said() {
    images();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fdl = common::workflow(
        d,
        "functions:
  oscar:
  - c:
      name: long
      image: localhost/fogd/debian:bookworm
      script: long.sh
      volume: {name: runs, mount_path: /runs}
      input: [{storage_provider: minio, path: long/in}]
      output: [{storage_provider: minio, path: long/out}]
",
        &[(
            "long.sh",
            "echo run >> /runs/log\nsleep 5\nwc -l < /runs/log > \"$TMP_OUTPUT_DIR/runs.txt\"\n",
        )],
    );
    let _ = podman(&["volume", "rm", "--force", "fogd-4-long-runs"]);
    let node_dir = d.join("node");
    let mut node = FogdNode::start(&fogd_bin(), &node_dir, "restart", PODMAN_CFG, Some(&fdl));
    rt().block_on(node.submit(&reqwest::Client::new(), "long", "a.txt", b"a\n"));
    let j = node.journal();
    let t0 = Instant::now();
    let running = loop {
        let inv = j
            .invocations(Some("long"), 10)
            .expect("journal")
            .into_iter()
            .next();
        if let Some(i) = inv.filter(|i| {
            podman(&["container", "exists", &format!("fogd-{}", i.uuid)])
                .status
                .success()
        }) {
            break i;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "no container started");
        std::thread::sleep(Duration::from_millis(100));
    };
    node.kill();
    let node = FogdNode::start(&fogd_bin(), &node_dir, "restart", PODMAN_CFG, Some(&fdl));
    let done = wait_for(&node, "long", 1, 60);
    assert_eq!(done[0].uuid, running.uuid);
    assert_eq!(done[0].state, State::Succeeded, "{:?}", done[0]);
    let log = std::fs::read_to_string(node.dir.join("fogd.log")).unwrap_or_default();
    assert!(log.contains("followed, not started again"), "{log}");
    let runs = std::fs::read_to_string(node_dir.join("data/store/long/out/a.txt/runs.txt"))
        .or_else(|_| std::fs::read_to_string(node_dir.join("data/store/long/out/runs.txt")))
        .unwrap();
    assert_eq!(runs.trim(), "1", "the script ran more than once");
    drop(node);
    let _ = podman(&["volume", "rm", "--force", "fogd-4-long-runs"]);

    // Podman missing.
    let cfg = d.join("missing.yaml");
    std::fs::write(&cfg, "data_dir: missing-data\nexecutor: podman\npodman: {binary: /nonexistent/podman}\ngateway: {enabled: false}\n").unwrap();
    let o = Command::new(fogd_bin())
        .args(["--config", cfg.to_str().unwrap(), "run", fdl.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("podman: `/nonexistent/podman` cannot be run"),
        "{}",
        text(&o)
    );
    let o = fogd(&["--config", cfg.to_str().unwrap(), "check"]);
    assert!(
        text(&o).contains("`/nonexistent/podman` cannot be run"),
        "{}",
        text(&o)
    );
}
