//! The OSCAR-compatible API of a running `fogd run`: driven by the real oscar-python client, then
//! with bad requests, then under load (200 concurrent clients posting `/job`).
//!
//! The load phase runs FOGD_LOAD_SECS seconds (5 in CI; `scripts/soak gateway-load` runs 30).

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::FogdNode;

const PASSWORD: &str = "gateway-test-password";

/// `fogd run` with no workflow (services come through the API), bodies capped at 8 MiB; the
/// admin password is `PASSWORD` (`FogdNode` makes `<name>-password`).
fn start(dir: &Path) -> FogdNode {
    FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        dir,
        "gateway-test",
        "gateway: {listen: '{listen}', max_body_bytes: 8388608, s3: {listen: '127.0.0.1:0'}}\n",
        None,
    )
}

fn fogd(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .args(args)
        .output()
        .expect("fogd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oscar_python_bad_requests_and_load() {
    let tmp = tempfile::tempdir().expect("tmp");
    let g = start(tmp.path());
    assert_eq!(g.password, PASSWORD);
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/oscar");

    // 1. The real OSCAR client, step by step.
    let photo = tmp.path().join("photo.txt");
    std::fs::write(&photo, "photo\n").expect("w");
    let put = fogd(
        &g.dir,
        &["put", "minio/uploads/photo.txt", photo.to_str().unwrap_or("")],
    );
    assert!(put.status.success(), "{put:?}");
    let shout = here.join("shout.yaml");
    let (ok, text) = common::run_python(
        &here.join("client_session.py"),
        &[
            g.url.as_ref(),
            PASSWORD.as_ref(),
            shout.as_os_str(),
            tmp.path().as_os_str(),
        ],
    );
    assert!(ok && text.contains("all steps passed"), "{text}");

    // 2. Bad requests: the right status, a JSON error, nothing written.
    let http = reqwest::Client::new();
    let admin = |r: reqwest::RequestBuilder| r.basic_auth("oscar", Some(PASSWORD));
    let count = || async {
        admin(http.get(format!("{}/system/services", g.url)))
            .send()
            .await
            .expect("list")
            .json::<serde_json::Value>()
            .await
            .expect("json")
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = count().await;
    let svc = |name: &str| {
        serde_json::json!({"name": name, "image": "x", "script": ":", "input": [{"storage_provider": "minio", "path": "n/in"}]})
            .to_string()
    };
    let long = "a".repeat(300);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "malformed JSON",
            admin(http.post(format!("{}/system/services", g.url))).body("{\"name\": "),
            400,
            "not JSON",
        ),
        (
            "name with /",
            admin(http.post(format!("{}/system/services", g.url))).body(svc("a/b")),
            400,
            "contains `/`",
        ),
        (
            "name with ..",
            admin(http.post(format!("{}/system/services", g.url))).body(svc("..")),
            400,
            "contains `.`",
        ),
        (
            "300-char name",
            admin(http.post(format!("{}/system/services", g.url))).body(svc(&long)),
            400,
            "at most 39",
        ),
        (
            "no credentials",
            http.get(format!("{}/system/services", g.url)),
            401,
            "credentials required",
        ),
        (
            "wrong password",
            http.get(format!("{}/system/services", g.url))
                .basic_auth("oscar", Some("nope")),
            403,
            "wrong credentials",
        ),
        (
            "unknown service",
            admin(http.get(format!("{}/system/services/nope", g.url))),
            404,
            "no service `nope`",
        ),
        (
            "job for unknown service",
            http.post(format!("{}/job/nope", g.url)).bearer_auth("x"),
            404,
            "no service `nope`",
        ),
        (
            "unknown path",
            admin(http.get(format!("{}/system/nothing", g.url))),
            404,
            "no such path",
        ),
    ];
    for (what, req, status, msg) in cases {
        let r = req.send().await.expect(what);
        assert_eq!(r.status().as_u16(), status, "{what}");
        let body = r.text().await.unwrap_or_default();
        assert!(body.contains("\"error\"") && body.contains(msg), "{what}: {body}");
    }
    assert_eq!(count().await, before, "nothing was created by refused requests");

    // A trivial service for tokens, the size limit and the load.
    let noop =
        serde_json::json!({"name": "noop", "image": "x", "script": ":\n", "cpu": "0.1", "memory": "64Mi"});
    let r = admin(http.post(format!("{}/system/services", g.url)))
        .body(noop.to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let dup = admin(http.post(format!("{}/system/services", g.url)))
        .body(noop.to_string())
        .send()
        .await
        .expect("dup");
    assert_eq!(dup.status().as_u16(), 409);
    let svc: serde_json::Value = get_json(&http, &format!("{}/system/services/noop", g.url)).await;
    let token = svc["token"].as_str().unwrap_or("").to_string();
    let job = |t: &str| {
        http.post(format!("{}/job/noop", g.url))
            .bearer_auth(t.to_string())
    };
    assert_eq!(
        http.post(format!("{}/job/noop", g.url))
            .send()
            .await
            .expect("r")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        job("wrong").body("x").send().await.expect("r").status().as_u16(),
        403
    );
    let big = vec![b'a'; 100 << 20];
    let r = job(&token).body(big).send().await;
    // The server answers 413 before reading 100 MB; the client may see the close instead.
    if let Ok(r) = r {
        assert_eq!(r.status().as_u16(), 413);
    }
    let jobs_before = journal_jobs(&g.dir, "noop");
    assert_eq!(jobs_before, 0, "refused /job requests queued nothing");

    // /run answers with the outputs: several files as a base64 zip, none as the log.
    let multi = serde_json::json!({"name": "multi", "image": "x",
        "script": "echo one > \"$TMP_OUTPUT_DIR/a.txt\"; mkdir \"$TMP_OUTPUT_DIR/d\"; echo two > \"$TMP_OUTPUT_DIR/d/b.txt\"\n"});
    let quiet = serde_json::json!({"name": "quiet", "image": "x", "script": "echo only a log line\n"});
    for svc in [&multi, &quiet] {
        let r = admin(http.post(format!("{}/system/services", g.url)))
            .body(svc.to_string())
            .send()
            .await
            .expect("create");
        assert_eq!(r.status().as_u16(), 201);
    }
    let run = |name: &str| admin(http.post(format!("{}/run/{name}", g.url))).body("input");
    let zipped = body_text(run("multi")).await;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, zipped.trim()).expect("base64");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let mut names: Vec<String> = (0..zip.len())
        .map(|i| zip.by_index(i).expect("entry").name().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt", "d/b.txt"]);
    let log = body_text(run("quiet")).await;
    assert_eq!(log, "only a log line\n");
    // Issue 30, finding 13: a /run whose caller gives up leaves no folder behind once the
    // invocation ends (before: kept ten minutes, across restarts too).
    let slow = serde_json::json!({"name": "slowrun", "image": "x",
        "script": "sleep 2\necho late > \"$TMP_OUTPUT_DIR/o.txt\"\n"});
    let r = admin(http.post(format!("{}/system/services", g.url)))
        .body(slow.to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let gave_up = run("slowrun").timeout(Duration::from_millis(500)).send().await;
    assert!(gave_up.is_err(), "the caller gives up before the answer");
    let work = g.dir.join("data/work");
    let slowrun_folders = || {
        std::fs::read_dir(&work)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("slowrun-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = std::time::Instant::now();
    while journal_state(&g.dir, "slowrun").0 == 0 || slowrun_folders() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the abandoned /run's folder is still there"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // OSCAR's delegated event (what a cluster that bursts to this node sends).
    let minio_event = serde_json::json!({"Records": [{"eventSource": "minio:s3",
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": "photo.txt", "eTag": "d1"}}}]});
    let delegated =
        serde_json::json!({"storage_provider": "minio.default", "event": minio_event.to_string()});
    let r = job(&token)
        .body(delegated.to_string())
        .send()
        .await
        .expect("delegated");
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    let missing = serde_json::json!({"Records": [{"eventSource": "minio:s3",
        "s3": {"bucket": {"name": "uploads"}, "object": {"key": "nothing.txt"}}}]});
    let r = job(&token)
        .body(missing.to_string())
        .send()
        .await
        .expect("missing");
    assert_eq!(r.status().as_u16(), 404);
    let t0 = Instant::now();
    while journal_state(&g.dir, "noop").1 > 0 && t0.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(journal_state(&g.dir, "noop").0, 1, "the delegated event ran once");

    // 3. Load: 200 concurrent clients posting /job; every 201 becomes a finished invocation.
    let secs: u64 = std::env::var("FOGD_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (http, url, token, ok, bad) = (
            http.clone(),
            g.url.clone(),
            token.clone(),
            ok.clone(),
            bad.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let r = http
                    .post(format!("{url}/job/noop"))
                    .bearer_auth(&token)
                    .body("x")
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client"));
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let accepted = ok.load(Ordering::Relaxed);
    println!(
        "load: 200 clients for {secs} s: {accepted} accepted ({:.0}/s), {} errors, p50 {:.1} ms, p99 {:.1} ms",
        accepted as f64 / secs as f64,
        bad.load(Ordering::Relaxed),
        pct(0.5),
        pct(0.99)
    );
    assert_eq!(bad.load(Ordering::Relaxed), 0, "no errors under load");
    let t0 = Instant::now();
    loop {
        let (done, pending) = journal_state(&g.dir, "noop");
        if pending == 0 {
            // On a mismatch, say which ones did not succeed and why.
            let others: Vec<String> = journal(&g.dir)
                .invocations(Some("noop"), 1_000_000)
                .expect("list")
                .into_iter()
                .filter(|i| i.state != fogd::journal::State::Succeeded)
                .take(5)
                .map(|i| format!("{} {} {:?}", i.uuid, i.state.as_str(), i.error))
                .collect();
            assert_eq!(
                done,
                accepted + 1,
                "every 201 became a finished invocation; not succeeded: {others:?}"
            );
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "{pending} still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Liveness (Kubernetes' probe): no credentials, 200 while the scheduler's loop turns.
    let live = reqwest::Client::new()
        .get(format!("{}/health/live", g.url))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status().as_u16(), 200);

    // 4. Prometheus sees the same numbers.
    let m = http
        .get(format!("{}/metrics", g.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        m.contains(&format!(
            "fogd_invocations_total{{service=\"noop\",state=\"succeeded\",ran_on=\"local\"}} {}",
            accepted + 1
        )),
        "{m}"
    );
    assert!(
        m.contains(
            "fogd_invocation_duration_seconds_count{service=\"noop\",state=\"succeeded\",ran_on=\"local\"}"
        ),
        "{m}"
    );
    assert!(m.contains("fogd_data_dir_free_bytes "), "{m}");

    // 5. A service created through the API survives a restart, with its token.
    let dir = g.dir.clone();
    drop(g);
    let g = start(&dir);
    let again: serde_json::Value = get_json(&http, &format!("{}/system/services/noop", g.url)).await;
    assert_eq!(again["token"].as_str(), Some(token.as_str()));

    // 6. One fogd deploys to another: `fogd apply` creates, then updates; `fogd services` lists.
    let fdl = here.join("shout.yaml");
    let apply = |expect: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_fogd"))
            .args(["apply", fdl.to_str().unwrap_or(""), "--endpoint", &g.url])
            .env("FOGD_PASSWORD", PASSWORD)
            .output()
            .expect("apply");
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success() && t.contains(&format!("shout: {expect}")),
            "{o:?}"
        );
    };
    apply("created");
    apply("updated");
    let o = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .args(["services", "--endpoint", &g.url, "--password", PASSWORD])
        .output()
        .expect("services");
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(
        t.contains("shout") && t.contains("minio:shout/in") && t.contains("noop"),
        "{t}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .args(["services", "--endpoint", &g.url, "--password", "wrong-password"])
        .output()
        .expect("services");
    assert!(String::from_utf8_lossy(&o.stderr).contains("403"), "{o:?}");
}

/// Sends and returns the answer's text.
async fn body_text(req: reqwest::RequestBuilder) -> String {
    req.send().await.expect("send").text().await.expect("text")
}

/// GET as the admin, as JSON.
async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = http
        .get(url)
        .basic_auth("oscar", Some(PASSWORD))
        .send()
        .await
        .expect("get");
    r.json().await.expect("json")
}

fn journal(dir: &Path) -> fogd::journal::Journal {
    fogd::journal::Journal::open(&dir.join("data/journal.sqlite"), fogd::config::JournalSync::Full)
        .expect("journal")
}

fn journal_jobs(dir: &Path, svc: &str) -> usize {
    journal(dir)
        .invocations(Some(svc), 1_000_000)
        .expect("list")
        .len()
}

/// (finished successfully, queued or running) invocations of `svc`.
fn journal_state(dir: &Path, svc: &str) -> (u64, u64) {
    let j = journal(dir);
    let counts = j.counts().expect("counts");
    let done = counts
        .iter()
        .filter(|(s, st, _)| s == svc && *st == fogd::journal::State::Succeeded)
        .map(|(_, _, n)| n)
        .sum();
    (done, j.pending(svc).expect("pending"))
}
