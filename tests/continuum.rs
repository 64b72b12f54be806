//! Delegation between two fogd nodes on loopback (real processes, real SeaweedFS as the shared
//! next tier): an "edge" with 1 slot and a "cloud" with 8, each with its own data folder and
//! journal. A burst of 50 invocations of a ~200 ms service, edge-only and then with delegation
//! (makespans printed); a third burst with the cloud killed (`kill -9`) in the middle, whose rest
//! finishes on the edge; results written by the cloud flow back into the edge's workflow; then
//! the push way (the input handed to the remote's input folder through the outbox).

use crate::common;
use crate::continuum_support;

use continuum_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_delegated_cloud_killed_results_flow_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    // FOGD_KEEP_TMP=1 keeps the nodes' folders (logs, journals) for a look after a failure.
    let tmp_path = if std::env::var_os("FOGD_KEEP_TMP").is_some() {
        let p = tmp.path().to_path_buf();
        std::mem::forget(tmp);
        eprintln!("keeping {}", p.display());
        p
    } else {
        tmp.path().to_path_buf()
    };
    let tmp = TmpPath(tmp_path);
    let sw = SeaweedFs::start(&tmp.path().join("sw"));
    let shared = sw.provider_yaml("shared", S3_KEY, S3_SECRET);
    let http = reqwest::Client::new();

    // The cloud: 8 slots; its outputs go to the shared store.
    let cloud_dir = tmp.path().join("cloud");
    let cloud_wf = workflow(
        &cloud_dir,
        &cloud_fdl(&shared, "minio, path: work/in", "results/work"),
        &[("work.sh", WORK)],
    );
    let mut cloud = FogdNode::start(bin(), &cloud_dir, "cloud", "concurrency: 8\n", Some(&cloud_wf));

    let replicas =
        "      replicas:\n      - {type: oscar, cluster_id: cloud, service_name: work, priority: 0}";
    let clusters = format!(
        "clusters:\n  cloud: {{endpoint: '{}', auth_user: oscar, auth_password: '{}', ssl_verify: false}}\n",
        cloud.url, cloud.password
    );
    let edge_wf_text = edge_fdl(&shared, replicas, "results/work", &clusters);
    let edge_yaml = "concurrency: 1\ns3_poll_interval: 200ms\nsync: {max_backoff: 2s}\n";

    // 1. Edge only (delegation off): the baseline.
    let base_dir = tmp.path().join("edge-only");
    let base_wf = workflow(
        &base_dir,
        &edge_wf_text,
        &[("work.sh", WORK), ("tally.sh", TALLY)],
    );
    let base = FogdNode::start(
        bin(),
        &base_dir,
        "edge-only",
        &format!("{edge_yaml}delegation: {{enabled: false}}\n"),
        Some(&base_wf),
    );
    for i in 0..BURST {
        base.submit(
            &http,
            "work",
            &format!("b-{i:02}"),
            &content(&format!("b-{i:02}")),
        )
        .await;
    }
    let rows = wait_burst(&base, "b-", BURST, 60).await;
    assert!(rows
        .iter()
        .all(|i| i.state == State::Succeeded && i.ran_on.is_none()));
    let edge_only = makespan(&rows);
    drop(base);

    // 2. The same burst with delegation: whatever finds no free slot goes to the cloud.
    let edge_dir = tmp.path().join("edge");
    let edge_wf = workflow(
        &edge_dir,
        &edge_wf_text,
        &[("work.sh", WORK), ("tally.sh", TALLY)],
    );
    let edge = FogdNode::start(
        bin(),
        &edge_dir,
        "edge",
        &format!("{edge_yaml}delegation: {{after: 0s, poll: 100ms, reclaim_after: 2s}}\n"),
        Some(&edge_wf),
    );
    for i in 0..BURST {
        edge.submit(
            &http,
            "work",
            &format!("h-{i:02}"),
            &content(&format!("h-{i:02}")),
        )
        .await;
    }
    let rows = wait_burst(&edge, "h-", BURST, 60).await;
    assert!(
        rows.iter().all(|i| i.state == State::Succeeded),
        "{:?}",
        rows.iter().map(|i| (&i.ran_on, &i.error)).collect::<Vec<_>>()
    );
    let hybrid = makespan(&rows);
    let spread = where_counts(&rows);
    println!(
        "burst of {BURST} x 200 ms: edge only (1 slot) {edge_only:.2} s; with delegation to an 8-slot cloud {hybrid:.2} s ({spread:?})"
    );
    assert!(spread.get("cloud").copied().unwrap_or(0) > 0, "{spread:?}");
    assert!(spread.get("local").copied().unwrap_or(0) > 0, "{spread:?}");
    assert!(
        hybrid < edge_only,
        "delegation did not shorten the burst: {hybrid} >= {edge_only}"
    );
    // The job kept its name on the cloud, and the cloud's log came back into `fogd logs`.
    let delegated = rows
        .iter()
        .find(|i| i.ran_on.as_deref() == Some("cloud"))
        .expect("one delegated");
    let cj = cloud.journal();
    let there = cj
        .job(&delegated.uuid)
        .expect("cloud journal")
        .expect("same job name there");
    assert_eq!(there.state, State::Succeeded);
    let log = std::fs::read_to_string(edge_dir.join(format!("data/logs/work/{}.log", delegated.uuid)))
        .unwrap_or_default();
    assert!(log.contains("ran on cloud"), "log: {log}");

    // A delegating tier that sends the same job twice (its answer was lost) makes one job.
    let again = http
        .post(format!("{}/job/work", cloud.url))
        .basic_auth("oscar", Some(&cloud.password))
        .header("X-Delegated-Job-ID", &delegated.uuid)
        .header("X-Delegated-From", "edge")
        .body("aGVsbG8=")
        .send()
        .await
        .expect("post");
    assert_eq!(again.status().as_u16(), 201);
    let name: serde_json::Value = again.json().await.expect("json");
    assert_eq!(name["jobName"], delegated.uuid.as_str());
    assert_eq!(
        cj.invocations(Some("work"), 100_000).expect("list").len(),
        spread["cloud"],
        "the cloud holds one job per delegation"
    );

    // 3. The cloud killed in the middle of a burst: its jobs come back and the rest finish here.
    for i in 0..BURST {
        edge.submit(
            &http,
            "work",
            &format!("k-{i:02}"),
            &content(&format!("k-{i:02}")),
        )
        .await;
    }
    let ej = edge.journal();
    let t0 = Instant::now();
    loop {
        let done_there = ej
            .invocations(Some("work"), 100_000)
            .expect("list")
            .iter()
            .filter(|i| i.key.contains("/k-") && i.ran_on.as_deref() == Some("cloud"))
            .count();
        if done_there >= 10 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nothing delegated in round k"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cloud.kill();
    let killed_at = Instant::now();
    let rows = wait_burst(&edge, "k-", BURST, 90).await;
    let after_kill = killed_at.elapsed().as_secs_f64();
    assert!(
        rows.iter().all(|i| i.state == State::Succeeded),
        "{:?}",
        rows.iter()
            .filter(|i| i.state != State::Succeeded)
            .map(|i| (&i.ran_on, &i.error))
            .collect::<Vec<_>>()
    );
    let spread_k = where_counts(&rows);
    // Exactly once, or twice with the same output: a job the cloud finished but whose end the
    // edge had not heard of before the kill ran here again.
    let cloud_done: BTreeSet<String> = cj
        .invocations(Some("work"), 100_000)
        .expect("cloud list")
        .into_iter()
        .filter(|i| i.state == State::Succeeded)
        .map(|i| i.uuid)
        .collect();
    let twice = rows
        .iter()
        .filter(|i| i.ran_on.is_none() && cloud_done.contains(&i.uuid))
        .count();
    println!(
        "cloud killed mid-burst: all {BURST} done {after_kill:.1} s after the kill ({spread_k:?}); ran twice (same output): {twice}"
    );
    assert!(spread_k.get("local").copied().unwrap_or(0) > 0, "{spread_k:?}");

    // Every result is in the shared store, with the right content, whichever node made it.
    let observer_dir = tmp.path().join("observer");
    let observer = fogd::runtime::Runtime::open(common::cfg(&observer_dir), std::slice::from_ref(&edge_wf))
        .expect("observer");
    let store = observer
        .store(&fogd::fdl::ProviderRef::parse("minio.shared").expect("p"))
        .expect("store");
    let names: Vec<String> = (0..BURST)
        .flat_map(|i| [format!("h-{i:02}"), format!("k-{i:02}")])
        .collect();
    // With the cloud still down: a job it ran but whose outputs had not left its outbox was
    // reported Running, not Succeeded, so the edge took it back and its result is here too.
    let t0 = Instant::now();
    loop {
        let have: BTreeSet<String> = store
            .list("results/work/")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !have.contains(&format!("results/work/{n}.out")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "results missing: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = tmp.path().join("back");
    for n in &names {
        store
            .get_file(&format!("results/work/{n}.out"), &back)
            .await
            .expect("get");
        assert_eq!(std::fs::read(&back).expect("read"), expected(n), "{n}");
    }

    // Results the cloud wrote flowed back into the edge's workflow: `tally` ran once per result.
    let t0 = Instant::now();
    loop {
        let tallied: BTreeMap<String, usize> = ej
            .invocations(Some("tally"), 100_000)
            .expect("list")
            .into_iter()
            .filter(|i| i.state == State::Succeeded)
            .filter(|i| i.key.contains("/h-") || i.key.contains("/k-"))
            .fold(BTreeMap::new(), |mut m, i| {
                *m.entry(i.key).or_default() += 1;
                m
            });
        if tallied.len() == names.len() {
            assert!(
                tallied.values().all(|&n| n == 1),
                "tally ran twice on a result: {tallied:?}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "tally ran on {} of {} results",
            tallied.len(),
            names.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What ran where: `fogd jobs` and /metrics.
    let jobs = std::process::Command::new(bin())
        .arg("--config")
        .arg(edge_dir.join("fogd.yaml"))
        .args(["jobs", "work", "--limit", "200"])
        .output()
        .expect("fogd jobs");
    let text = String::from_utf8_lossy(&jobs.stdout);
    assert!(
        text.contains("WHERE") && text.contains(" cloud ") && text.contains(" local "),
        "{text}"
    );
    let metrics = http
        .get(format!("{}/metrics", edge.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"fogd_invocations_total{service="work",state="succeeded",ran_on="cloud"}"#),
        "{metrics}"
    );
    drop(edge);

    // 4. Push: the input goes into the remote tier's input folder through the outbox, and the
    // remote's own trigger (an S3 watch) runs it. Nothing is followed: handed over.
    let pcloud_dir = tmp.path().join("push-cloud");
    let pcloud_wf = workflow(
        &pcloud_dir,
        &cloud_fdl(&shared, "minio.shared, path: push/in", "results/push"),
        &[("work.sh", WORK)],
    );
    let _pcloud = FogdNode::start(
        bin(),
        &pcloud_dir,
        "push-cloud",
        "concurrency: 8\ns3_poll_interval: 200ms\n",
        Some(&pcloud_wf),
    );
    let pedge_dir = tmp.path().join("push-edge");
    let push = "      replicas:\n      - {type: push, storage_provider: minio.shared, path: push/in}";
    let pedge_wf = workflow(
        &pedge_dir,
        &edge_fdl(&shared, push, "results/push", ""),
        &[("work.sh", WORK), ("tally.sh", TALLY)],
    );
    let pedge = FogdNode::start(
        bin(),
        &pedge_dir,
        "push-edge",
        &format!("{edge_yaml}delegation: {{after: 0s}}\n"),
        Some(&pedge_wf),
    );
    for i in 0..10 {
        pedge
            .submit(
                &http,
                "work",
                &format!("p-{i:02}"),
                &content(&format!("p-{i:02}")),
            )
            .await;
    }
    let pj = pedge.journal();
    let t0 = Instant::now();
    loop {
        let rows = pj.invocations(Some("work"), 100).expect("list");
        let have: BTreeSet<String> = store
            .list("results/push/")
            .await
            .expect("list")
            .into_iter()
            .map(|o| o.key)
            .collect();
        if rows.len() == 10
            && have.len() == 10
            && rows
                .iter()
                .all(|i| i.state != State::Queued && i.state != State::Running)
        {
            let pushed = rows.iter().filter(|i| i.state == State::Delegated).count();
            assert!(pushed > 0, "nothing pushed");
            assert!(rows
                .iter()
                .filter(|i| i.state == State::Delegated)
                .all(|i| i.ran_on.as_deref() == Some("minio.shared:push/in")));
            println!("push: {pushed} of 10 handed to the remote's input folder");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "push not done: {} results; {:?}",
            have.len(),
            rows.iter()
                .map(|i| (i.state.as_str(), i.error.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..10 {
        let n = format!("p-{i:02}");
        store
            .get_file(&format!("results/push/{n}.out"), &back)
            .await
            .expect("get");
        assert_eq!(std::fs::read(&back).expect("read"), expected(&n), "{n}");
    }
}
