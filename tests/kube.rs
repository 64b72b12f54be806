//! The kube executor against `kmock` (PyPI), a Kubernetes API emulator, driven over HTTP through
//! a kubeconfig exactly as against k3s. No real API server (nor kubelet) can run on these
//! machines: kmock keeps objects and answers the API (409 on a duplicate), but runs no
//! controller, so this test plays the kubelet (it runs the Job's pod spec in a real container
//! with podman: image, command, env, the script's ConfigMap and the supervisor's hostPath) and
//! the Job controller (it patches the Job's status).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_ports, workflow, FogdNode};
use fogd::journal::State;
use serde_json::{json, Value};

const WORK: &str = "#!/bin/sh\nname=$(basename \"$INPUT_FILE_PATH\")\n{ echo \"ran in the pod\"; cat \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/$name.out\"\nmkdir -p \"$TMP_OUTPUT_DIR/sub dir\"\necho nested > \"$TMP_OUTPUT_DIR/sub dir/n.txt\"\n";

fn venv(bin: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.venv/bin")
        .join(bin);
    assert!(p.exists(), "{} missing: run scripts/setup", p.display());
    p
}

/// kmock's Kubernetes emulator on a loopback port (`tests/kmock/serve.py`).
struct KMock {
    child: Child,
    port: u16,
}

impl KMock {
    fn start(port: u16) -> KMock {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kmock/serve.py");
        let child = Command::new(venv("python"))
            .arg(script)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kmock");
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(20), "kmock did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        KMock { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for KMock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kubeconfig(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kmock\n  cluster: {{server: 'http://127.0.0.1:{port}'}}\nusers:\n- name: fogd\n  user: {{}}\ncontexts:\n- name: kmock\n  context: {{cluster: kmock, user: fogd, namespace: fogd}}\ncurrent-context: kmock\n"
        ),
    )
    .expect("kubeconfig");
    p
}

const JOBS: &str = "/apis/batch/v1/namespaces/fogd/jobs";

async fn get(http: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = http.get(url).send().await.expect("get");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn wait_job(http: &reqwest::Client, k: &KMock, name_part: &str) -> Value {
    let t0 = Instant::now();
    loop {
        let (_, v) = get(http, &k.url(JOBS)).await;
        if let Some(j) = v["items"].as_array().into_iter().flatten().find(|j| {
            j["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.contains(name_part))
        }) {
            return j.clone();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no job `{name_part}` in kmock: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_status(http: &reqwest::Client, k: &KMock, job: &str, status: Value) {
    let r = http
        .patch(k.url(&format!("{JOBS}/{job}/status")))
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "status": status }).to_string())
        .send()
        .await
        .expect("patch");
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

async fn wait_state(node: &FogdNode, job: &str, want: State) -> fogd::journal::Invocation {
    let j = node.journal();
    let t0 = Instant::now();
    loop {
        if let Some(i) = j.job(job).expect("journal") {
            if i.state == want {
                return i;
            }
            assert!(
                !i.state.is_final() && t0.elapsed() < Duration::from_secs(30),
                "job {job}: {} ({:?}), wanted {}",
                i.state.as_str(),
                i.error,
                want.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The Job with what changes from run to run replaced, for the golden comparison.
fn normalised(job: &Value) -> Value {
    let mut j = job.clone();
    let name = j["metadata"]["name"].as_str().unwrap_or("").to_string();
    j["metadata"]["name"] = json!("<job>");
    for (k, v) in [("resourceVersion", 0), ("uid", 0), ("creationTimestamp", 0)] {
        let _ = v;
        if let Some(m) = j["metadata"].as_object_mut() {
            m.remove(k);
        }
    }
    if let Some(env) = j["spec"]["template"]["spec"]["containers"][0]["env"].as_array_mut() {
        for e in env {
            let varies = [
                "EVENT",
                "EVENT_TIME",
                "STORAGE_OBJECT_KEY",
                "JOB_UUID",
                "FOGD_JOB",
                "FOGD_JOB_TOKEN",
                "FOGD_GATEWAY",
            ];
            if varies.contains(&e["name"].as_str().unwrap_or("")) {
                e["value"] = json!("<varies>");
            }
        }
    }
    let text = j.to_string().replace(&name, "<job>");
    serde_json::from_str(&text).expect("json")
}

/// Runs a Job's pod as a kubelet would, in podman: the container's image, command, env,
/// resource limits and security context, its volume mounts (the ConfigMap `map` as files, the
/// hostPath of the supervisor, which stands in for the node's `/opt/fogd/fogd`: this fogd).
/// The host's network: the pod reaches the gateway on loopback. A GPU limit is not asked of
/// podman (this machine has none).
fn run_pod(job: &Value, map: &Value, dir: &Path) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let made = Command::new(repo.join("scripts/images"))
        .arg("base")
        .output()
        .expect("scripts/images");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let image = c["image"].as_str().expect("image");
    let tag = Command::new("podman")
        .args(["tag", "localhost/fogd/debian:bookworm", image])
        .status()
        .expect("podman tag");
    assert!(tag.success());
    let mut args: Vec<String> = ["run", "--rm", "--runtime=runc", "--pull=never", "--network=host"]
        .map(String::from)
        .into();
    args.extend([
        "--ulimit=nofile=1024:1024".into(),
        "--ulimit=nproc=1024:1024".into(),
    ]);
    let env: String = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            format!(
                "{}={}\n",
                e["name"].as_str().unwrap_or(""),
                e["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    std::fs::write(dir.join("pod.env"), env).expect("env file");
    args.push(format!("--env-file={}", dir.join("pod.env").display()));
    let limits = &c["resources"]["limits"];
    if let Some(m) = limits["memory"].as_str() {
        args.push(format!("--memory={m}"));
    }
    if let Some(cpu) = limits["cpu"].as_str().and_then(|c| c.strip_suffix('m')) {
        let m: u64 = cpu.parse().expect("millicores");
        args.push(format!("--cpus={}.{:03}", m / 1000, m % 1000));
    }
    let sc = &c["securityContext"];
    if sc["capabilities"]["drop"][0] == "ALL" {
        args.push("--cap-drop=all".into());
    }
    if sc["allowPrivilegeEscalation"] == false {
        args.push("--security-opt=no-new-privileges".into());
    }
    for m in c["volumeMounts"].as_array().expect("mounts") {
        let name = m["name"].as_str().expect("name");
        let v = pod["volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["name"] == name))
            .expect("volume");
        let host = if v["configMap"].is_object() {
            let d = dir.join(format!("cm-{name}"));
            std::fs::create_dir_all(&d).expect("configmap dir");
            for (k, text) in map["data"].as_object().expect("data") {
                std::fs::write(d.join(k), text.as_str().unwrap_or("")).expect("configmap file");
            }
            d
        } else if v["hostPath"]["path"] == "/opt/fogd/fogd" {
            PathBuf::from(env!("CARGO_BIN_EXE_fogd"))
        } else {
            panic!("volume {v} is not played by this test");
        };
        let ro = if m["readOnly"] == true { ":ro" } else { "" };
        args.push(format!(
            "--volume={}:{}{ro}",
            host.display(),
            m["mountPath"].as_str().expect("path")
        ));
    }
    let cmd: Vec<&str> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    args.push(format!("--entrypoint={}", cmd[0]));
    args.push(image.into());
    args.extend(cmd[1..].iter().map(|s| s.to_string()));
    Command::new("podman").args(&args).output().expect("podman run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_on_kmock_golden_spec_states_409_and_api_down() {
    let tmp = tempfile::tempdir().expect("tmp");
    let port = free_ports(1);
    let mut kmock = KMock::start(port);
    let http = reqwest::Client::new();
    let dir = tmp.path().join("node");
    let fdl = workflow(
        &dir,
        "functions:
  oscar:
  - k3s:
      name: work
      image: registry.example.org/tools/work:1.0
      script: work.sh
      memory: 256Mi
      cpu: '0.5'
      enable_gpu: true
      image_pull_secrets: [regcred]
      environment:
        variables: {GREETING: hello}
      input: [{storage_provider: minio, path: work/in}]
      output: [{storage_provider: minio, path: work/out}]
",
        &[("work.sh", WORK)],
    );
    let kc = kubeconfig(tmp.path(), port);
    let node = FogdNode::start(
        Path::new(env!("CARGO_BIN_EXE_fogd")),
        &dir,
        "kube-node",
        &format!(
            "concurrency: 4\nexecutor: kube\nkube:\n  kubeconfig: {}\n  namespace: fogd\n  gateway_url: '{{gateway}}'\n  supervisor_host_path: /opt/fogd/fogd\n  poll: 100ms\n  ttl_seconds_after_finished: 600\n",
            kc.display()
        ),
        Some(&fdl),
    );

    // 1. One invocation, one Job, with the expected spec.
    node.submit(&http, "work", "a.txt", b"payload a\n").await;
    let job = wait_job(&http, &kmock, "work-").await;
    let name = job["metadata"]["name"].as_str().expect("name").to_string();
    let golden_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kube-job.json");
    let got = normalised(&job);
    if std::env::var_os("FOGD_UPDATE_GOLDEN").is_some() {
        std::fs::write(
            &golden_path,
            serde_json::to_string_pretty(&got).expect("json") + "\n",
        )
        .expect("write golden");
    }
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).expect("golden")).expect("golden json");
    assert_eq!(
        got,
        golden,
        "the Job differs from tests/fixtures/kube-job.json:\n{}",
        serde_json::to_string_pretty(&got).unwrap_or_default()
    );
    // And it is a valid batch/v1 Job for the Kubernetes schemas.
    let job_file = tmp.path().join("job.json");
    std::fs::write(&job_file, job.to_string()).expect("job file");
    let v = Command::new(venv("kubernetes-validate"))
        .arg("--strict")
        .arg(&job_file)
        .output()
        .expect("validate");
    assert!(v.status.success(), "{}", common::text(&v));
    // The script is in its ConfigMap.
    let (code, map) = get(
        &http,
        &kmock.url("/api/v1/namespaces/fogd/configmaps/fogd-script-work"),
    )
    .await;
    assert_eq!(code, 200, "{map}");
    assert_eq!(map["data"]["script.sh"], WORK);

    // 2. The pod, in a container of an image made here (`scripts/images base`, under the Job's
    // image name): `fogd supervise` with the Job's environment fetches the input through the
    // gateway, runs the script and sends the outputs back. A wrong token gets nothing.
    let pod = tmp.path().join("pod");
    let script = pod.join("script.sh");
    std::fs::create_dir_all(&pod).expect("pod dir");
    std::fs::write(&script, map["data"]["script.sh"].as_str().unwrap_or("")).expect("script");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fogd"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
    {
        cmd.env(
            e["name"].as_str().unwrap_or(""),
            e["value"].as_str().unwrap_or(""),
        );
    }
    // The pod's folders live under /tmp/fogd in the container; here, under the test's folder.
    let input = pod.join("in/a.txt");
    cmd.env("TMP_INPUT_DIR", pod.join("in"))
        .env("TMP_OUTPUT_DIR", pod.join("out"))
        .env("INPUT_FILE_PATH", &input)
        .env("FOGD_SCRIPT", &script)
        .arg("supervise");
    let bad = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .envs(
            cmd.get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .env("FOGD_JOB_TOKEN", "0000")
        .arg("supervise")
        .output()
        .expect("supervise");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let ran = run_pod(&job, &map, &pod);
    assert!(ran.status.success(), "{}", String::from_utf8_lossy(&ran.stderr));
    let said = String::from_utf8_lossy(&ran.stderr);
    assert!(said.contains("script exited 0, 2 output(s) sent"), "{said}");

    // 3. The Job succeeds: fogd stores the outputs, copies the log, deletes the Job.
    set_status(
        &http,
        &kmock,
        &name,
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
    )
    .await;
    let inv = wait_state(&node, &name, State::Succeeded).await;
    assert_eq!(inv.outputs, 2);
    let out = dir.join("data/store/work/out");
    assert_eq!(
        std::fs::read_to_string(out.join("a.txt.out")).expect("output"),
        "ran in the pod\npayload a\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sub dir/n.txt")).expect("nested output"),
        "nested\n"
    );
    let t0 = Instant::now();
    while get(&http, &kmock.url(&format!("{JOBS}/{name}"))).await.0 != 404 {
        assert!(t0.elapsed() < Duration::from_secs(10), "job {name} not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .args(["logs", "work", &name])
        .output()
        .expect("logs");
    let text = String::from_utf8_lossy(&logs.stdout);
    assert!(
        text.contains(&format!("[fogd] job {name} in namespace fogd")),
        "{text}"
    );

    // 4. The Job exists already (fogd restarted while it ran): 409, followed, not doubled; its
    // failure and a deadline map to the invocation.
    for (job, status, want) in [
        (
            "work-adopted-0001",
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
            State::Failed,
        ),
        (
            "work-late-0001",
            json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]}),
            State::TimedOut,
        ),
    ] {
        let pre = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "namespace": "fogd"}, "spec": {"template": {"spec": {"containers": []}}},
            "status": status});
        let r = http
            .post(kmock.url(JOBS))
            .header("content-type", "application/json")
            .body(pre.to_string())
            .send()
            .await
            .expect("pre");
        assert!(r.status().is_success());
        let r = http
            .post(format!("{}/job/work", node.url))
            .basic_auth("oscar", Some(&node.password))
            .header("X-Delegated-Job-ID", job)
            .header("X-Fogd-Input-Name", "b.txt")
            .body("YgpiCg==")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 201);
        let inv = wait_state(&node, job, want).await;
        assert!(inv.error.is_some(), "{inv:?}");
        let (_, all) = get(&http, &kmock.url(JOBS)).await;
        let same = all["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["metadata"]["name"] == job)
            .count();
        assert!(same <= 1, "job {job} doubled");
    }
    let log = std::fs::read_to_string(dir.join("fogd.log")).unwrap_or_default();
    assert!(log.contains("the job exists already"), "{log}");

    // 5. The API server down: the invocation waits (running, not failed); back, it goes on.
    drop(kmock);
    node.submit(&http, "work", "c.txt", b"payload c\n").await;
    let j = node.journal();
    let t0 = Instant::now();
    let waiting = loop {
        let c = j
            .invocations(Some("work"), 100)
            .expect("list")
            .into_iter()
            .find(|i| i.key.ends_with("/c.txt"));
        if let Some(c) = c.filter(|c| c.state == State::Running) {
            break c;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "c.txt never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = j.job(&waiting.uuid).expect("journal").expect("row");
    assert_eq!(still.state, State::Running, "{:?}", still.error);
    let log = std::fs::read_to_string(dir.join("fogd.log")).unwrap_or_default();
    assert!(log.contains("API server unreachable"), "{log}");
    kmock = KMock::start(port);
    let job = wait_job(&http, &kmock, &waiting.uuid).await;
    assert_eq!(job["metadata"]["name"], waiting.uuid.as_str());
    set_status(&http, &kmock, &waiting.uuid, json!({"succeeded": 1})).await;
    wait_state(&node, &waiting.uuid, State::Succeeded).await;
    drop(node);
    drop(kmock);
}
