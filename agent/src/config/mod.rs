//! The node's own settings (`fogd.yaml`). Pure: parsing and defaults, no I/O beyond reading the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod cameras;
mod gateway;
mod ingest;
mod podman;
mod sync;
mod units;

pub(crate) use units::{byte_size, humantime_serde_compat};

pub use cameras::{CameraConfig, PrivacyConfig};
pub use gateway::{GatewayConfig, S3EndpointConfig, TlsConfig};
pub use ingest::{
    camera_problem, redact_credentials, IngestConfig, MqttConfig, MqttTls, StreamSource, TopicPattern,
};
pub use podman::{Isolation, PodmanConfig, PullPolicy};
pub use sync::{FullPolicy, PriorityRule, SyncConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `fogd.yaml`. Every field has a default, so an empty file (or none) is the embedded default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's name (`RESOURCE_ID` in scripts). Default: the host name.
    pub node_name: Option<String>,
    /// Journal, local store and invocation folders.
    pub data_dir: PathBuf,
    /// FDL files to run, relative to this config file.
    pub workflows: Vec<PathBuf>,
    /// Concurrent invocations per service. Default: the number of cores.
    pub concurrency: Option<usize>,
    /// Wall-clock limit of one script run, e.g. `10m`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// stdout+stderr kept per invocation; the rest is cut (and the cut is noted).
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub log_cap_bytes: u64,
    /// Largest single output file stored; larger ones fail the invocation with a clear error.
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub max_output_bytes: u64,
    /// A running script's work folder (input, outputs, its scratch files) at most; past it the
    /// script is killed at once, as it is when the data folder falls under `min_free_bytes`
    /// while it runs.
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub max_work_bytes: u64,
    /// Keep the outputs of a script that exited non-zero (OSCAR always does).
    pub store_failed_outputs: bool,
    /// Runs of one invocation interrupted by a crash before it is marked failed.
    pub max_attempts: u32,
    /// How often S3 inputs are listed for new objects.
    #[serde(with = "humantime_serde_compat")]
    pub s3_poll_interval: Duration,
    /// On stop (SIGTERM, Ctrl-C), how long running invocations may take to finish. Past it their
    /// scripts are killed and the invocations are queued again at the next start (default 60s:
    /// under systemd's 90 s stop timeout).
    #[serde(with = "humantime_serde_compat")]
    pub drain_timeout: Duration,
    /// Below this much free space in `data_dir`, fogd takes no new work.
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub min_free_bytes: u64,
    /// Below this many free inodes (files) in `data_dir`, fogd takes no new work either.
    pub min_free_inodes: u64,
    /// What the journal, logs and work folders keep, so that a box left alone stays bounded.
    pub retention: RetentionConfig,
    /// `full` (default: fsync every commit, nothing lost on power loss) or `normal` (WAL without
    /// fsync per commit: safe against crashes of fogd, may lose the last commits on power loss).
    pub journal_sync: JournalSync,
    /// The OSCAR-compatible HTTP API.
    pub gateway: GatewayConfig,
    /// The MQTT broker: camera feeds in, node status out. Off when absent.
    pub mqtt: Option<MqttConfig>,
    /// Where camera items land, and the watched directory.
    pub ingest: IngestConfig,
    /// Per camera: its privacy zones.
    pub cameras: std::collections::BTreeMap<String, CameraConfig>,
    pub privacy: PrivacyConfig,
    /// The outbox that carries objects to remote stores.
    pub sync: SyncConfig,
    /// When services with `replicas` / `federation` go to other tiers.
    pub delegation: DelegationConfig,
    /// Where scripts run: `local` (processes on this host, the default), `podman` (a container
    /// of the service's image per invocation) or `kube` (a Job per invocation on `kube:`'s cluster).
    pub executor: ExecutorKind,
    /// Services that run elsewhere than `executor` says: `{service: kube}`.
    pub service_executors: std::collections::BTreeMap<String, ExecutorKind>,
    /// The k3s / Kubernetes executor.
    pub kube: KubeConfig,
    pub podman: PodmanConfig,
    /// The vision models' folder (relative to this file); default: FOGD_MODELS, then the
    /// install's share folder. Given to the vision worker and the scripts as FOGD_MODELS.
    pub models_dir: Option<PathBuf>,
    /// How local scripts are kept from the node's data (journal, keys, other invocations):
    /// `auto` (namespaces where bubblewrap works, else unconfined with a warning),
    /// `namespaces` (or they do not run), `none`.
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    #[default]
    Local,
    Kube,
    Podman,
}

/// `kube:` in fogd.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubeConfig {
    /// A kubeconfig file; default: KUBECONFIG, ~/.kube/config, or the pod's service account.
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    /// How the pods reach this fogd's gateway (the supervisor fetches inputs there).
    pub gateway_url: String,
    /// Where the static `fogd` binary for the pods lies on every node (mounted read-only).
    pub supervisor_host_path: String,
    /// Or an image holding `/fogd` that an init container copies into the pod.
    pub supervisor_image: Option<String>,
    /// Finished Jobs are removed by fogd; this is the cluster's own clean-up if fogd is gone.
    pub ttl_seconds_after_finished: i32,
    /// How often a running Job is looked at.
    #[serde(with = "humantime_serde_compat")]
    pub poll: Duration,
    /// Keep finished Jobs (and their pods) for inspection.
    pub keep_jobs: bool,
    /// When the nodes pull the services' images (and the supervisor's). `IfNotPresent` by
    /// default: an edge cluster whose uplink is down still starts Jobs from the images it has.
    pub image_pull_policy: PullPolicy,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            kubeconfig: None,
            namespace: "fogd".into(),
            gateway_url: "http://fogd.fogd.svc:8080".into(),
            supervisor_host_path: "/usr/local/lib/fogd/fogd".into(),
            supervisor_image: None,
            ttl_seconds_after_finished: 600,
            poll: Duration::from_secs(1),
            keep_jobs: false,
            image_pull_policy: PullPolicy::IfNotPresent,
        }
    }
}

/// `delegation:` in fogd.yaml. A service delegates only when its FDL names members
/// (`replicas` up to OSCAR 3.x, `federation.members` in 4.x).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelegationConfig {
    /// Off: every invocation runs here, whatever the FDL says.
    pub enabled: bool,
    /// An invocation that found no free slot is delegated once it has waited this long (the
    /// FDL's `rescheduler_threshold` wins for its service). `0s`: as soon as no slot is free.
    #[serde(with = "humantime_serde_compat")]
    pub after: Duration,
    /// How often delegated jobs are asked for their state.
    #[serde(with = "humantime_serde_compat")]
    pub poll: Duration,
    /// A remote that cannot be reached for this long gives its jobs back: they run here.
    #[serde(with = "humantime_serde_compat")]
    pub reclaim_after: Duration,
    /// A job the remote still reports running (or still uploading its outputs) this long after
    /// it took it is given back and runs here; the remote's run may still end, writing the same
    /// keys. `0s`: no limit.
    #[serde(with = "humantime_serde_compat")]
    pub running_limit: Duration,
    /// Jobs in flight on one remote at most.
    pub max_in_flight: usize,
    /// Limit of one delegation call (OSCAR uses 20 s).
    #[serde(with = "humantime_serde_compat")]
    pub call_timeout: Duration,
}

impl Default for DelegationConfig {
    fn default() -> Self {
        DelegationConfig {
            enabled: true,
            // OSCAR's RESCHEDULER_THRESHOLD default.
            after: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            reclaim_after: Duration::from_secs(60),
            // Six times the default script timeout: room for a slow upload, not for a stuck one.
            running_limit: Duration::from_secs(3600),
            max_in_flight: 64,
            call_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Finished invocations, their events and logs, processed ingest rows and uploaded outbox
    /// rows older than this are removed.
    #[serde(with = "humantime_serde_compat")]
    pub max_age: Duration,
    /// Finished invocations kept at most (the oldest go first, with their logs).
    pub max_invocations: u64,
    /// Invocation logs kept at most, in bytes (the oldest logs go first; the rows stay).
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub max_log_bytes: u64,
    /// How often the sweep runs (also once at start).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_invocations: 50_000,
            max_log_bytes: 512 << 20,
            interval: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalSync {
    Full,
    Normal,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: None,
            data_dir: PathBuf::from("fogd-data"),
            workflows: Vec::new(),
            concurrency: None,
            timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(60),
            log_cap_bytes: 1 << 20,
            max_output_bytes: 1 << 30,
            max_work_bytes: 4 << 30,
            store_failed_outputs: true,
            max_attempts: 3,
            s3_poll_interval: Duration::from_secs(2),
            min_free_bytes: 64 << 20,
            min_free_inodes: 4096,
            retention: RetentionConfig::default(),
            journal_sync: JournalSync::Full,
            gateway: GatewayConfig::default(),
            mqtt: None,
            ingest: IngestConfig::default(),
            cameras: Default::default(),
            privacy: Default::default(),
            sync: SyncConfig::default(),
            delegation: DelegationConfig::default(),
            executor: ExecutorKind::Local,
            service_executors: Default::default(),
            kube: KubeConfig::default(),
            podman: PodmanConfig::default(),
            models_dir: None,
            isolation: Default::default(),
        }
    }
}

impl Config {
    /// Reads `path`; relative `data_dir` and `workflows` are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mqtt_tls = cfg.mqtt.as_mut().and_then(|m| m.tls.as_mut());
        let mqtt_tls = mqtt_tls.map(|t| [t.ca.as_mut(), t.cert.as_mut(), t.key.as_mut()]);
        let gateway_tls = cfg
            .gateway
            .tls
            .as_mut()
            .map(|t| [Some(&mut t.cert), Some(&mut t.key)]);
        let paths = [
            Some(&mut cfg.data_dir),
            cfg.ingest.watch_dir.as_mut(),
            cfg.models_dir.as_mut(),
            cfg.podman.supervisor.as_mut(),
            cfg.kube.kubeconfig.as_mut(),
        ];
        let all = paths
            .into_iter()
            .chain(mqtt_tls.into_iter().flatten())
            .chain(gateway_tls.into_iter().flatten());
        for p in all.flatten().chain(cfg.workflows.iter_mut()) {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if cfg.concurrency == Some(0) {
            return Err("concurrency must be at least 1".into());
        }
        if cfg.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if let Some(m) = &cfg.mqtt {
            m.host_port()?;
            if let Some(t) = &m.tls {
                if t.cert.is_some() != t.key.is_some() {
                    return Err("mqtt.tls: give both cert and key, or neither".into());
                }
            }
            for t in m.frame_topics.iter().chain(&m.clip_topics) {
                TopicPattern::parse(t)?;
            }
        }
        let p = cfg.ingest.path.trim_end_matches('/');
        if !p.contains('/') || crate::store::check_key(&format!("{p}/x")).is_err() {
            return Err(format!(
                "ingest.path `{p}` must be `bucket/folder` (no `..`, no empty parts)"
            ));
        }
        for st in &cfg.ingest.streams {
            if let Some(why) = camera_problem(&st.camera) {
                return Err(format!("ingest.streams: bad camera name: {why}"));
            }
            if st.every.is_zero() {
                return Err(format!(
                    "ingest.streams `{}`: every must be more than 0",
                    st.camera
                ));
            }
        }
        if cfg.sync.part_bytes < 5 << 20 {
            return Err("sync.part_bytes must be at least 5 MiB (S3's smallest part)".into());
        }
        if cfg.sync.parallel == 0 {
            return Err("sync.parallel must be at least 1".into());
        }
        cameras::check(&cfg.cameras)?;
        Ok(cfg)
    }

    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "fogd".into())
        })
    }

    /// Where `service`'s scripts run.
    pub fn executor_of(&self, service: &str) -> ExecutorKind {
        self.service_executors
            .get(service)
            .copied()
            .unwrap_or(self.executor)
    }

    /// Whether a service may run on `kind` (the default, or one named in `service_executors`).
    pub fn uses_executor(&self, kind: ExecutorKind) -> bool {
        self.executor == kind || self.service_executors.values().any(|e| *e == kind)
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// Durations written as `10m`, `2s`, `500ms`.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_per_node_and_per_service() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.executor_of("any"), ExecutorKind::Local);
        let c = Config::parse(
            "executor: kube\nservice_executors: {anon: local}\nkube: {namespace: edge, poll: 250ms}\n",
        )
        .expect("parse");
        assert_eq!(c.executor_of("detect"), ExecutorKind::Kube);
        assert_eq!(c.executor_of("anon"), ExecutorKind::Local);
        assert_eq!(c.kube.namespace, "edge");
        assert_eq!(c.kube.poll, Duration::from_millis(250));
        assert_eq!(c.kube.image_pull_policy, PullPolicy::IfNotPresent);
        let c = Config::parse("kube: {image_pull_policy: Always}\n").expect("parse");
        assert_eq!(c.kube.image_pull_policy, PullPolicy::Always);
        let bad = Config::parse("kube: {image_pull_policy: Sometimes}\n").expect_err("bad policy");
        assert!(bad.contains("Sometimes") && bad.contains("IfNotPresent"), "{bad}");
        let bad = Config::parse("executor: docker\n").expect_err("unknown executor");
        assert!(bad.contains("docker"), "{bad}");
        let d = Config::parse("delegation: {after: 0s, reclaim_after: 5s}\n").expect("delegation");
        assert_eq!(
            (d.delegation.after, d.delegation.reclaim_after),
            (Duration::ZERO, Duration::from_secs(5))
        );
        assert!(d.delegation.enabled);
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.timeout, Duration::from_secs(600));
        let c = Config::parse("timeout: 30s\nconcurrency: 2\njournal_sync: normal\n").expect("parse");
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.concurrency(), 2);
        assert_eq!(c.journal_sync, JournalSync::Normal);
        assert!(Config::parse("timeout: soon\n")
            .unwrap_err()
            .contains("not a duration"));
        assert!(Config::parse("colour: blue\n").unwrap_err().contains("colour"));
        assert!(Config::parse("concurrency: 0\n").is_err());
    }
}
