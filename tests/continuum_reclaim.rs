//! Delegation's upper bound: a job a remote still reports running after
//! `delegation.running_limit` is given back and runs here, never sent out again.

use crate::continuum_support;

use continuum_support::*;

/// A remote that keeps a job "running" (a stuck script, or outputs that cannot leave its
/// outbox) holds it only until `delegation.running_limit`: then the job runs here, and it is not
/// sent out again while it waits for a slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_a_remote_holds_too_long_runs_here() {
    let tmp = tempfile::tempdir().expect("tmp");
    let http = reqwest::Client::new();
    let fdl = |script: &str, members: &str| {
        format!(
            "functions:
  oscar:
  - node:
      name: work
      image: x
      script: {script}
      input: [{{storage_provider: minio, path: work/in}}]
      output: [{{storage_provider: minio, path: work/out}}]
{members}"
        )
    };
    let cloud_dir = tmp.path().join("cloud");
    let cloud_wf = workflow(
        &cloud_dir,
        &fdl("stuck.sh", ""),
        &[("stuck.sh", "#!/bin/sh\nsleep 30\n")],
    );
    let mut cloud = FogdNode::start(bin(), &cloud_dir, "cloud", "concurrency: 2\n", Some(&cloud_wf));
    let members = format!(
        "      replicas:\n      - {{type: oscar, cluster_id: cloud, service_name: work, priority: 0}}
clusters:\n  cloud: {{endpoint: '{}', auth_user: oscar, auth_password: '{}', ssl_verify: false}}\n",
        cloud.url, cloud.password
    );
    // `first` keeps the edge's only slot for 4 s, so `second` is delegated, given back after
    // 2 s, and then has to wait here.
    let edge_dir = tmp.path().join("edge");
    let edge_wf = workflow(
        &edge_dir,
        &fdl("work.sh", &members),
        &[(
            "work.sh",
            "#!/bin/sh\nname=$(basename \"$INPUT_FILE_PATH\")\n[ \"$name\" = first ] && sleep 4\necho \"done $name\" > \"$TMP_OUTPUT_DIR/$name.out\"\n",
        )],
    );
    let edge = FogdNode::start(
        bin(),
        &edge_dir,
        "edge",
        "concurrency: 1\ndelegation: {after: 0s, poll: 100ms, running_limit: 2s}\n",
        Some(&edge_wf),
    );
    let ej = edge.journal();
    let find = |name: &str| {
        ej.invocations(Some("work"), 100)
            .expect("list")
            .into_iter()
            .find(|i| i.key.ends_with(&format!("/{name}")))
    };
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let t0 = Instant::now();
        while !ok() {
            assert!(t0.elapsed() < Duration::from_secs(15), "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    edge.submit(&http, "work", "first", b"1").await;
    wait("first never ran", &|| {
        find("first").is_some_and(|i| i.state == State::Running)
    });
    edge.submit(&http, "work", "second", b"2").await;
    wait("second never went to the cloud", &|| {
        find("second").is_some_and(|i| i.ran_on.as_deref() == Some("cloud"))
    });
    wait("second was not given back", &|| {
        find("second").is_some_and(|i| i.state == State::Queued)
    });
    let back = find("second").expect("second");
    let note = back.error.clone().unwrap_or_default();
    assert!(
        note.contains("given back from cloud") && note.contains("still reports it Running"),
        "{note}"
    );
    // While `first` holds the slot, `second` waits here: not delegated again.
    while find("first").is_some_and(|i| !i.state.is_final()) {
        let s = find("second").expect("second");
        assert_ne!(s.state, State::Delegated, "sent out again: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait("second did not run here", &|| {
        find("second").is_some_and(|i| i.state.is_final())
    });
    for name in ["first", "second"] {
        let i = find(name).expect(name);
        assert_eq!(
            (i.state, i.ran_on.as_deref()),
            (State::Succeeded, None),
            "{name}: {i:?}"
        );
    }
    // The cloud still has it running: the limit is the edge's, it cancels nothing there.
    let there = cloud
        .journal()
        .job(&back.uuid)
        .expect("cloud")
        .expect("job there");
    assert_eq!(there.state, State::Running);
    cloud.kill();
}
