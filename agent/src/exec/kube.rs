//! The k3s / Kubernetes executor: one Job per invocation, shaped as OSCAR shapes them (name
//! `<service>-<uuid>`, `backoffLimit: 0`, `restartPolicy: Never`, limits from the FDL), with the
//! script from a ConfigMap and fogd's supervisor (`fogd supervise`, a static build mounted from
//! the node or copied in by an init container) as the container's command. The supervisor
//! fetches the input from this fogd's gateway with a per-invocation token, runs the script under
//! the FaaS Supervisor contract, and sends the outputs back; fogd then stores them as it does for
//! local runs. fogd follows the Job, maps its end to the invocation, copies the pod's log into
//! `fogd logs`, and deletes the Job.
//!
//! The API server unreachable: the invocation waits (nothing fails, nothing is lost) and is
//! tried again; fogd stopping leaves it running in the journal, and the next start adopts the
//! Job (creating it again answers 409: it is followed, not doubled).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::config::KubeConfig;
use crate::exec::local::ScriptStatus;
use crate::fdl::Service;

/// Where the script's ConfigMap and the supervisor are mounted in the pod.
pub const SCRIPT_DIR: &str = "/fogd-script";
pub const SUPERVISOR_DIR: &str = "/fogd-bin";
/// The contract's folders inside the pod.
pub const POD_INPUT_DIR: &str = "/tmp/fogd/input";
pub const POD_OUTPUT_DIR: &str = "/tmp/fogd/output";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kube: cannot read the cluster's configuration ({what}): {msg}")]
    Config { what: String, msg: String },
    #[error("kube: the API server did not answer: {0}")]
    Unreachable(String),
    #[error("kube: {what}: {msg}")]
    Api { what: String, msg: String },
    #[error("kube: fogd is stopping; job {0} stays on the cluster and is followed at the next start")]
    Interrupted(String),
}

/// The cluster client, made on first use (a node without kube services never reads a kubeconfig).
#[derive(Default)]
pub struct Kube {
    client: tokio::sync::OnceCell<kube::Client>,
}

impl Kube {
    async fn client(&self, cfg: &KubeConfig) -> Result<kube::Client, KubeError> {
        self.client
            .get_or_try_init(|| async {
                let mut config = match &cfg.kubeconfig {
                    Some(p) => {
                        let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| KubeError::Config {
                            what: p.display().to_string(),
                            msg: e.to_string(),
                        })?;
                        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                            .await
                            .map_err(|e| KubeError::Config {
                                what: p.display().to_string(),
                                msg: e.to_string(),
                            })?
                    }
                    None => kube::Config::infer().await.map_err(|e| KubeError::Config {
                        what: "KUBECONFIG, ~/.kube/config or the pod's service account".into(),
                        msg: e.to_string(),
                    })?,
                };
                config.connect_timeout = Some(Duration::from_secs(5));
                config.read_timeout = Some(Duration::from_secs(30));
                kube::Client::try_from(config).map_err(|e| KubeError::Config {
                    what: "client".into(),
                    msg: e.to_string(),
                })
            })
            .await
            .cloned()
    }
}

/// The token a Job's supervisor shows the gateway: an HMAC of the job's name under a key kept in
/// the data folder, so that it is checked without storing it, and one job cannot read another's
/// input.
pub fn job_token(data_dir: &Path, job: &str) -> std::io::Result<String> {
    use hmac::Mac;
    let path = data_dir.join("kube-token-key");
    if !path.exists() {
        let key: [u8; 32] = rand::random();
        let tmp = data_dir.join(format!("kube-token-key.{}.tmp", std::process::id()));
        crate::paths::write_private(&tmp, &key)?;
        // A link never replaces: when two processes make one at once, both use the first.
        let _ = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
    }
    let key = std::fs::read(&path)?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(std::io::Error::other)?;
    mac.update(job.as_bytes());
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// The name of the ConfigMap that holds a service's script.
pub fn script_map_name(service: &str) -> String {
    format!("fogd-script-{service}")
}

/// The Job of one invocation, as fogd creates it (pure: the golden test compares it).
pub fn job_spec(
    cfg: &KubeConfig,
    svc: &Service,
    job: &str,
    node: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> serde_json::Value {
    let mut limits = serde_json::Map::new();
    if let Some(m) = svc.memory_bytes {
        limits.insert("memory".into(), json!(m.to_string()));
    }
    if let Some(c) = svc.cpu_millis {
        limits.insert("cpu".into(), json!(format!("{c}m")));
    }
    if svc.enable_gpu {
        limits.insert("nvidia.com/gpu".into(), json!("1"));
    }
    let env: Vec<serde_json::Value> = env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let supervisor_volume = match &cfg.supervisor_image {
        Some(_) => json!({"name": "fogd-bin", "emptyDir": {}}),
        None => json!({"name": "fogd-bin", "hostPath": {"path": cfg.supervisor_host_path, "type": "File"}}),
    };
    let supervisor_mount = match &cfg.supervisor_image {
        Some(_) => json!({"name": "fogd-bin", "mountPath": SUPERVISOR_DIR, "readOnly": true}),
        None => json!({"name": "fogd-bin", "mountPath": format!("{SUPERVISOR_DIR}/fogd"), "readOnly": true}),
    };
    // Hardened as far as OSCAR images allow: they may expect to run as root (so no runAsNonRoot)
    // and write where they like (so no read-only root), but need no capability, no privilege
    // escalation, no API token and no syscalls outside the runtime's default profile.
    let hardened = json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
    });
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": svc.name,
            "image": svc.image.as_deref().unwrap_or(""),
            "imagePullPolicy": "Always",
            "command": [format!("{SUPERVISOR_DIR}/fogd"), "supervise"],
            "env": env,
            "securityContext": hardened,
            "resources": {"limits": limits},
            "volumeMounts": [
                {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": true},
                supervisor_mount,
            ],
        }],
        "volumes": [
            {"name": "script", "configMap": {"name": script_map_name(&svc.name), "defaultMode": 0o755}},
            supervisor_volume,
        ],
    });
    if let Some(image) = &cfg.supervisor_image {
        pod["initContainers"] = json!([{
            "name": "fogd-supervisor",
            "image": image,
            "command": ["/fogd", "install-supervisor", SUPERVISOR_DIR],
            "securityContext": hardened,
            "volumeMounts": [{"name": "fogd-bin", "mountPath": SUPERVISOR_DIR}],
        }]);
    }
    if !svc.image_pull_secrets.is_empty() {
        pod["imagePullSecrets"] = svc
            .image_pull_secrets
            .iter()
            .map(|s| json!({"name": s}))
            .collect();
    }
    let labels = json!({
        "app.kubernetes.io/managed-by": "fogd",
        "fogd.io/node": node,
        "oscar_service": svc.name,
    });
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job, "namespace": cfg.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": cfg.ttl_seconds_after_finished,
            "activeDeadlineSeconds": timeout.as_secs().max(1),
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    })
}

/// A Job pod's environment: the contract's variables (`contract`, for the folders the pod sees)
/// and what its supervisor needs to reach the gateway: the URL, the job, its token, the script.
pub fn pod_environment(
    rt: &crate::runtime::Runtime,
    job: &str,
    mut contract: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, crate::runtime::RuntimeError> {
    let token = job_token(rt.data.root(), job).map_err(|source| crate::runtime::RuntimeError::Io {
        path: rt.data.kube_token_key(),
        source,
    })?;
    contract.extend([
        ("FOGD_GATEWAY".to_string(), rt.cfg.kube.gateway_url.clone()),
        ("FOGD_JOB".to_string(), job.to_string()),
        ("FOGD_JOB_TOKEN".to_string(), token),
        ("FOGD_SCRIPT".to_string(), format!("{SCRIPT_DIR}/script.sh")),
    ]);
    Ok(contract)
}

/// One invocation on the cluster. `stopping` resolves when fogd stops: the Job is left to run
/// and the invocation stays `running` (followed again at the next start).
pub struct KubeRun<'a> {
    pub cfg: &'a KubeConfig,
    pub svc: &'a Service,
    pub job: &'a str,
    pub node: &'a str,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub log_path: &'a Path,
}

impl Kube {
    /// The API server's version (`fogd check`).
    pub async fn server_version(&self, cfg: &KubeConfig) -> Result<String, KubeError> {
        let client = self.client(cfg).await?;
        client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| api_err("version", e))
    }

    pub async fn run(
        &self,
        r: KubeRun<'_>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(ScriptStatus, i64), KubeError> {
        let spec = job_spec(r.cfg, r.svc, r.job, r.node, &r.env, r.timeout);
        let job: Job = serde_json::from_value(spec).map_err(|e| KubeError::Api {
            what: format!("job {}", r.job),
            msg: e.to_string(),
        })?;
        let script = script_text(r.svc)?;
        let mut backoff =
            crate::backoff::Policy::new(Duration::from_secs(1), Duration::from_secs(30)).start();
        let started = Instant::now();
        // Until the Job exists (created now, or found from a run before a restart).
        loop {
            let wait = match self.submit(r.cfg, r.svc, &job, &script).await {
                Ok(adopted) => {
                    if adopted {
                        tracing::info!(
                            job = r.job,
                            "kube: the job exists already (a run before a restart): following it"
                        );
                    }
                    break;
                }
                Err(KubeError::Unreachable(e)) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(job = r.job, retry_in = ?wait, "kube: API server unreachable ({e}); the invocation waits");
                    wait
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = crate::runtime::stopped(&mut stopping) => return Err(KubeError::Interrupted(r.job.to_string())),
            }
        }
        let spawned_us = crate::journal::now_us();
        let client = self.client(r.cfg).await?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), &r.cfg.namespace);
        // Follow it. A Job that stays away past its deadline (plus a margin) was lost with its
        // cluster: the invocation times out.
        let status = loop {
            match jobs.get_opt(r.job).await {
                Ok(Some(j)) => {
                    if let Some(s) = ended(&j) {
                        break s;
                    }
                }
                Ok(None) => {
                    return Err(KubeError::Api {
                        what: format!("job {}", r.job),
                        msg: "deleted from the cluster before it ended".into(),
                    })
                }
                Err(e) => tracing::warn!(job = r.job, "kube: cannot read the job ({e}); waiting"),
            }
            if started.elapsed() > r.timeout + Duration::from_secs(300) {
                break ScriptStatus::TimedOut;
            }
            tokio::select! {
                _ = tokio::time::sleep(r.cfg.poll) => {}
                _ = crate::runtime::stopped(&mut stopping) => return Err(KubeError::Interrupted(r.job.to_string())),
            }
        };
        let status = match status {
            // The pod's exit code, when the cluster says it.
            ScriptStatus::Exited(1) => self
                .exit_code(&client, r.cfg, r.job)
                .await
                .map_or(status, ScriptStatus::Exited),
            s => s,
        };
        self.copy_log(&client, r.cfg, r.job, r.log_path).await;
        if !r.cfg.keep_jobs {
            if let Err(e) = jobs.delete(r.job, &DeleteParams::background()).await {
                tracing::warn!(
                    job = r.job,
                    "kube: job not deleted ({e}); ttlSecondsAfterFinished removes it"
                );
            }
        }
        Ok((status, spawned_us))
    }

    /// Puts the script's ConfigMap and creates the Job. True when the Job was there already.
    async fn submit(
        &self,
        cfg: &KubeConfig,
        svc: &Service,
        job: &Job,
        script: &str,
    ) -> Result<bool, KubeError> {
        let client = self.client(cfg).await?;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &cfg.namespace);
        let name = script_map_name(&svc.name);
        let map: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": cfg.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "fogd", "oscar_service": svc.name}},
            "data": {"script.sh": script},
        }))
        .map_err(|e| KubeError::Api {
            what: format!("configmap {name}"),
            msg: e.to_string(),
        })?;
        match maps.create(&PostParams::default(), &map).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // The script may have changed since: the map follows the FDL.
                let patch = json!({"data": {"script.sh": script}});
                maps.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_err(&format!("configmap {name}"), e))?;
            }
            Err(e) => return Err(api_err(&format!("configmap {name}"), e)),
        }
        let jobs: Api<Job> = Api::namespaced(client, &cfg.namespace);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => Ok(false),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
            Err(e) => Err(api_err(&format!("job {job_name}"), e)),
        }
    }

    async fn pods_of(&self, client: &kube::Client, cfg: &KubeConfig, job: &str) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        pods.list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    async fn exit_code(&self, client: &kube::Client, cfg: &KubeConfig, job: &str) -> Option<i32> {
        self.pods_of(client, cfg, job).await.iter().find_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
        })
    }

    /// The pod's log goes where `fogd logs` reads (after what the supervisor said, if anything).
    async fn copy_log(&self, client: &kube::Client, cfg: &KubeConfig, job: &str, log_path: &Path) {
        let pods = self.pods_of(client, cfg, job).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        let mut text = format!("[fogd] job {job} in namespace {}\n", cfg.namespace);
        match pods.first().and_then(|p| p.metadata.name.clone()) {
            Some(name) => match api.logs(&name, &LogParams::default()).await {
                Ok(log) => text.push_str(&log),
                Err(e) => text.push_str(&format!("[fogd] the log of pod {name} could not be read: {e}\n")),
            },
            None => text.push_str("[fogd] no pod of this job was found (removed, or never scheduled)\n"),
        }
        if let Some(dir) = log_path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let _ = tokio::fs::write(log_path, text).await;
    }
}

/// How a Job ended, if it has.
fn ended(j: &Job) -> Option<ScriptStatus> {
    let st = j.status.as_ref()?;
    let failed_reason = st.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "Failed" && c.status == "True").then(|| c.reason.clone().unwrap_or_default())
    });
    if st.succeeded.unwrap_or(0) > 0 {
        Some(ScriptStatus::Exited(0))
    } else if failed_reason.as_deref() == Some("DeadlineExceeded") {
        Some(ScriptStatus::TimedOut)
    } else if st.failed.unwrap_or(0) > 0 || failed_reason.is_some() {
        Some(ScriptStatus::Exited(1))
    } else {
        None
    }
}

fn api_err(what: &str, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) => KubeError::Api {
            what: what.to_string(),
            msg: format!("{} ({})", s.message, s.code),
        },
        // Not an answer of the API server: connection refused, timeout, TLS.
        other => KubeError::Unreachable(other.to_string()),
    }
}

fn script_text(svc: &Service) -> Result<String, KubeError> {
    match &svc.script {
        Some(crate::fdl::Script::File(p)) => std::fs::read_to_string(p).map_err(|e| KubeError::Config {
            what: p.display().to_string(),
            msg: e.to_string(),
        }),
        Some(crate::fdl::Script::Inline(s)) => Ok(s.clone()),
        Some(crate::fdl::Script::Unchecked(p)) => Err(KubeError::Config {
            what: p.clone(),
            msg: "the script was not resolved".into(),
        }),
        None => Err(KubeError::Config {
            what: svc.name.clone(),
            msg: "the service has no script".into(),
        }),
    }
}
