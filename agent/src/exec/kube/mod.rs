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
//!
//! This module is the part without a cluster client (the Job's shape, its token, the pod's
//! environment); `client` talks to the API server and is built with the `kube` feature (on by
//! default: kube and k8s-openapi are the largest dependencies, which a box that runs its
//! functions locally can leave out with `--no-default-features`).

#[cfg(feature = "kube")]
mod client;
#[cfg(feature = "kube")]
pub use client::Kube;

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::config::KubeConfig;
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
    #[error("kube: this fogd was built without the kube executor (cargo feature `kube`, on by default); build it with default features, or run the service with `executor: local`")]
    NotBuilt,
}

/// Built without the `kube` feature: every use says so (`fogd check`, and each invocation of a
/// kube service fails with that message).
#[cfg(not(feature = "kube"))]
#[derive(Default)]
pub struct Kube {
    _not_built: (),
}

#[cfg(not(feature = "kube"))]
impl Kube {
    pub async fn server_version(&self, _cfg: &KubeConfig) -> Result<String, KubeError> {
        Err(KubeError::NotBuilt)
    }

    pub async fn run(
        &self,
        _r: KubeRun<'_>,
        _stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(crate::exec::ScriptStatus, i64), KubeError> {
        Err(KubeError::NotBuilt)
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
            "imagePullPolicy": cfg.image_pull_policy,
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
            "imagePullPolicy": cfg.image_pull_policy,
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
