//! The normalised workflow that the rest of fogd uses: one shape for every FDL era.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::model;

/// Which FDL dialect a file was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// `functions.oscar` only.
    Oscar,
    /// `functions.aws` only.
    Scar,
    /// Both: SCAR's hybrid workflows (OSCAR on premises, Lambda in AWS).
    Hybrid,
    /// Pre-2020 SCAR (`functions:` as a list).
    LegacyScar,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub dialect: Dialect,
    pub services: Vec<Service>,
    /// Declared providers plus the implicit `minio.default` / `s3.default` that services use.
    pub providers: Vec<Provider>,
    /// Peer clusters (`clusters:`), by id.
    pub clusters: Vec<String>,
    /// Where the peers under `clusters:` answer (delegation calls them).
    pub peers: BTreeMap<String, Peer>,
}

/// A cluster of `clusters:`: an OSCAR (or fogd) endpoint and its credentials.
#[derive(Clone, Serialize)]
pub struct Peer {
    pub endpoint: Option<String>,
    pub auth_user: Option<String>,
    /// Never serialised.
    #[serde(skip)]
    pub auth_password: Option<String>,
    pub ssl_verify: bool,
}
debug_redacted!(Peer { endpoint, auth_user, ssl_verify; auth_password });

impl From<model::Cluster> for Peer {
    fn from(c: model::Cluster) -> Peer {
        Peer {
            endpoint: c.endpoint.filter(|e| !e.trim().is_empty()),
            auth_user: c.auth_user,
            auth_password: c.auth_password,
            ssl_verify: c.ssl_verify.unwrap_or(true),
        }
    }
}

impl Workflow {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Several FDL files as one workflow (a chain may span files). The first declaration of a
    /// provider wins.
    pub fn merge(wfs: Vec<Workflow>) -> Workflow {
        let mut it = wfs.into_iter();
        let Some(mut acc) = it.next() else {
            return Workflow {
                dialect: Dialect::Oscar,
                services: Vec::new(),
                providers: Vec::new(),
                clusters: Vec::new(),
                peers: BTreeMap::new(),
            };
        };
        for wf in it {
            if wf.dialect != acc.dialect {
                acc.dialect = Dialect::Hybrid;
            }
            acc.services.extend(wf.services);
            for p in wf.providers {
                if !acc.providers.iter().any(|q| q.reference == p.reference) {
                    acc.providers.push(p);
                }
            }
            for c in wf.clusters {
                if !acc.clusters.contains(&c) {
                    acc.clusters.push(c);
                }
            }
            for (id, p) in wf.peers {
                acc.peers.entry(id).or_insert(p);
            }
        }
        acc
    }
}

/// Where a service runs according to its FDL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Platform {
    Oscar { cluster_id: String },
    AwsLambda,
    LegacyScar,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Platform::Oscar { cluster_id } => write!(f, "oscar cluster {cluster_id}"),
            Platform::AwsLambda => f.write_str("aws lambda"),
            Platform::LegacyScar => f.write_str("legacy scar"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "kebab-case")]
pub enum Script {
    /// A file next to the FDL, resolved and found.
    File(PathBuf),
    /// The script's text itself (API-level definitions).
    Inline(String),
    /// A path that was not looked up (`--schema-only`).
    Unchecked(String),
}

#[derive(Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub platform: Platform,
    /// Recorded; the local executor runs the script on the host and does not run the image.
    pub image: Option<String>,
    pub script: Option<Script>,
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub log_level: Option<String>,
    pub timeout_s: Option<u64>,
    pub inputs: Vec<IoBinding>,
    pub outputs: Vec<IoBinding>,
    pub env: BTreeMap<String, String>,
    /// Values are never printed.
    #[serde(serialize_with = "keys_only")]
    pub secrets: BTreeMap<String, String>,
    /// Long-running (`expose`) or KServe services: not triggered by files.
    pub exposed: bool,
    pub file_stage_in: bool,
    pub delegation: Option<Delegation>,
    /// `nvidia.com/gpu: 1` on the kube executor.
    pub enable_gpu: bool,
    pub image_pull_secrets: Vec<String>,
    /// A bucket folder the script sees as files (OSCAR's rclone sidecar at `/mnt/<path>`).
    pub mount: Option<IoBinding>,
    /// `expose`: a long-running server (run by the podman executor).
    pub expose: Option<Exposed>,
    /// `volume`: a named volume kept between invocations (the podman executor's).
    pub volume: Option<VolumeSpec>,
}
debug_redacted!(Service { name, platform, image, script, memory_bytes, cpu_millis, log_level, timeout_s, inputs, outputs, env, exposed, file_stage_in, delegation, enable_gpu, image_pull_secrets, mount, expose, volume; secrets });

/// OSCAR's `expose` as fogd runs it: the server listens on `api_port` in its container, which is
/// published on the box's `host_port` (`nodePort`, or `api_port` when none is given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposed {
    pub api_port: u16,
    pub host_port: u16,
    /// Run the image's own command instead of the script.
    pub default_command: bool,
}

/// OSCAR's `volume`: `name` (default: the service's) mounted at `mount_path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeSpec {
    pub name: String,
    pub mount_path: String,
}

impl Service {
    /// Every storage path the service names: its inputs, its outputs and its mount.
    pub fn storage_paths(&self) -> impl Iterator<Item = &IoBinding> {
        self.inputs.iter().chain(&self.outputs).chain(self.mount.iter())
    }
}

fn keys_only<S: serde::Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.keys())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Minio,
    S3,
    Onedata,
    Webdav,
    Rucio,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::Minio,
        ProviderKind::S3,
        ProviderKind::Onedata,
        ProviderKind::Webdav,
        ProviderKind::Rucio,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Minio => "minio",
            ProviderKind::S3 => "s3",
            ProviderKind::Onedata => "onedata",
            ProviderKind::Webdav => "webdav",
            ProviderKind::Rucio => "rucio",
        }
    }
    pub fn parse(s: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
    /// Buckets and folders: paths get OSCAR's `<service>/<path>` treatment.
    pub fn is_bucket_store(self) -> bool {
        matches!(self, ProviderKind::Minio | ProviderKind::S3)
    }
}

/// `minio.default`, `s3.my_s3`, ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ProviderRef {
    pub kind: ProviderKind,
    pub id: String,
}

impl ProviderRef {
    pub fn new(kind: ProviderKind, id: impl Into<String>) -> Self {
        ProviderRef { kind, id: id.into() }
    }

    /// `minio`, `minio.default`, `s3.my_s3`: a provider as the FDL names it (the id defaults to
    /// `default`). `None` for an unknown kind or an empty id.
    pub fn parse(s: &str) -> Option<ProviderRef> {
        let (kind, id) = s.split_once('.').unwrap_or((s, "default"));
        let kind = ProviderKind::parse(kind)?;
        (!id.is_empty()).then(|| ProviderRef::new(kind, id))
    }
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.id)
    }
}

/// One input or output of a service.
#[derive(Debug, Clone, Serialize)]
pub struct IoBinding {
    pub provider: ProviderRef,
    /// `bucket/folder...`, without leading or trailing `/`.
    pub path: String,
    pub prefix: Vec<String>,
    pub suffix: Vec<String>,
}

impl IoBinding {
    /// The bucket the path is in (its first segment).
    pub fn bucket(&self) -> &str {
        self.path.split('/').next().unwrap_or_default()
    }

    /// Does an object key (relative to the provider, `bucket/...`) match this binding? Prefix and
    /// suffix are matched against the path below the binding's folder, as the FaaS Supervisor
    /// matches output files.
    pub fn matches_key(&self, key: &str) -> bool {
        match key
            .strip_prefix(self.path.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            Some(rel) => !rel.is_empty() && !rel.ends_with('/') && self.matches_relative(rel),
            None => false,
        }
    }

    /// The prefix/suffix filters on a path relative to the binding's folder.
    pub fn matches_relative(&self, rel: &str) -> bool {
        (self.prefix.is_empty() || self.prefix.iter().any(|p| rel.starts_with(p.as_str())))
            && (self.suffix.is_empty() || self.suffix.iter().any(|s| rel.ends_with(s.as_str())))
    }

    /// Where an output file at `rel` (relative to TMP_OUTPUT_DIR) is stored.
    pub fn output_key(&self, rel: &str) -> String {
        format!("{}/{rel}", self.path)
    }
}

impl fmt::Display for IoBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.path)?;
        if !self.prefix.is_empty() {
            write!(f, " prefix={}", self.prefix.join(","))?;
        }
        if !self.suffix.is_empty() {
            write!(f, " suffix={}", self.suffix.join(","))?;
        }
        Ok(())
    }
}

/// A declared (or implicit) storage provider.
#[derive(Debug, Clone, Serialize)]
pub struct Provider {
    #[serde(rename = "ref")]
    pub reference: ProviderRef,
    /// Not declared in the file: the cluster's own MinIO, or AWS S3 with default credentials.
    pub implicit: bool,
    /// Credentials are kept for the stores but never serialised.
    #[serde(skip)]
    pub settings: ProviderSettings,
}

#[derive(Debug, Clone, Default)]
pub enum ProviderSettings {
    #[default]
    Implicit,
    Minio(model::MinioProvider),
    S3(model::S3Provider),
    Onedata(model::OnedataProvider),
    Webdav(model::WebdavProvider),
    Rucio(model::RucioProvider),
}

impl ProviderSettings {
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            ProviderSettings::Minio(m) => m.endpoint.as_deref(),
            ProviderSettings::S3(s) => s.endpoint.as_deref(),
            ProviderSettings::Onedata(o) => o.oneprovider_host.as_deref(),
            ProviderSettings::Webdav(w) => w.hostname.as_deref(),
            ProviderSettings::Rucio(r) => r.host.as_deref(),
            ProviderSettings::Implicit => None,
        }
        .filter(|e| !e.trim().is_empty())
    }
}

/// OSCAR's `replicas` (<= 3.x) or `federation` (4.x): where a service may be delegated.
#[derive(Debug, Clone, Serialize)]
pub struct Delegation {
    /// `static`, `random`, `load-based`, `topsis`; OSCAR's default is `static`.
    pub policy: String,
    pub rescheduler_threshold_s: Option<u64>,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// `oscar` (a cluster of `clusters:`) or `endpoint` (a URL).
    pub kind: String,
    pub cluster_id: Option<String>,
    pub service_name: Option<String>,
    pub url: Option<String>,
    /// 0 is the highest; 101 means "never delegate here" in OSCAR.
    pub priority: u32,
    pub ssl_verify: bool,
    /// Sent with every delegated call (OSCAR's member `headers`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// `push`: where the input goes (`minio.cloud`, `bucket/folder`).
    pub storage_provider: Option<String>,
    pub path: Option<String>,
}

impl Member {
    /// How `fogd jobs` and the metrics name it: the cluster, the URL's host, or the push target.
    pub fn name(&self) -> String {
        match self.kind.as_str() {
            "push" => format!(
                "{}:{}",
                self.storage_provider.as_deref().unwrap_or("?"),
                self.path.as_deref().unwrap_or("")
            ),
            "endpoint" => self.url.clone().unwrap_or_default(),
            _ => self.cluster_id.clone().unwrap_or_default(),
        }
    }
}
