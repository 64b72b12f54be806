//! The raw FDL document, as written by users of OSCAR (every schema era) and SCAR.
//!
//! These types mirror the YAML one to one; `fdl::validate` turns them into the normalised
//! [`crate::Workflow`]. Fields that fogd does not use are still typed, so that a typo in them
//! is caught and a service round-trips to an OSCAR cluster unchanged.

mod providers;
mod values;

pub use providers::*;
pub use values::*;

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A value with the place it was written, for error messages.
pub type Sp<T> = Spanned<T>;

/// The whole FDL file.
#[derive(Debug, Deserialize)]
pub struct Document {
    pub functions: Functions,
    pub storage_providers: Option<StorageProviders>,
    pub clusters: Option<BTreeMap<String, Cluster>>,
    /// Pre-2020 SCAR: storages as a list of `{name, type, auth}`.
    pub storages: Option<Vec<LegacyStorage>>,
}

/// `functions:` is a map `{oscar: [...], aws: [...]}` in every current schema, and a plain list of
/// functions in the pre-2020 SCAR schema.
#[derive(Debug)]
pub enum Functions {
    Current(CurrentFunctions),
    Legacy(Vec<LegacyFunction>),
}

#[derive(Debug, Default, Deserialize)]
pub struct CurrentFunctions {
    /// Each item is a one-key map `{<cluster_id>: <service>}` (several keys are tolerated).
    pub oscar: Option<Vec<BTreeMap<String, OscarService>>>,
    pub aws: Option<Vec<AwsFunction>>,
}

impl<'de> Deserialize<'de> for Functions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Functions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map with `oscar` and/or `aws` lists (or a legacy SCAR list of functions)")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Functions, A::Error> {
                CurrentFunctions::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(Functions::Current)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Functions, A::Error> {
                Vec::<LegacyFunction>::deserialize(de::value::SeqAccessDeserializer::new(seq))
                    .map(Functions::Legacy)
            }
        }
        d.deserialize_any(V)
    }
}

/// An OSCAR service (OSCAR 2.x to 4.x; `pkg/types/service.go`).
#[derive(Debug, Deserialize)]
pub struct OscarService {
    pub name: Sp<String>,
    pub cluster_id: Option<String>,
    pub image: Sp<String>,
    pub script: Option<Sp<String>>,
    pub memory: Option<Sp<Scalar>>,
    pub cpu: Option<Sp<Scalar>>,
    pub total_memory: Option<Sp<Scalar>>,
    pub total_cpu: Option<Sp<Scalar>>,
    pub ephemeral_storage_request: Option<Sp<Scalar>>,
    pub enable_gpu: Option<bool>,
    pub enable_sgx: Option<bool>,
    pub image_prefetch: Option<bool>,
    pub synchronous: Option<Synchronous>,
    pub log_level: Option<Sp<String>>,
    pub alpine: Option<bool>,
    pub token: Option<String>,
    pub file_stage_in: Option<bool>,
    pub input: Option<Vec<StorageIo>>,
    pub output: Option<Vec<StorageIo>>,
    pub image_pull_secrets: Option<Vec<String>>,
    pub expose: Option<Expose>,
    pub environment: Option<Environment>,
    pub annotations: Option<BTreeMap<String, Scalar>>,
    pub labels: Option<BTreeMap<String, Scalar>>,
    /// A string; one real file writes it as a list.
    pub vo: Option<OneOrMany<String>>,
    pub visibility: Option<String>,
    pub allowed_users: Option<Vec<String>>,
    pub isolation_level: Option<String>,
    pub bucket_list: Option<Vec<String>>,
    pub owner: Option<String>,
    pub interlink_node_name: Option<String>,
    pub mount: Option<StorageIo>,
    pub volume: Option<Volume>,
    /// OSCAR 4.x.
    pub federation: Option<Federation>,
    /// OSCAR up to 3.x.
    pub replicas: Option<Vec<Replica>>,
    pub delegation: Option<String>,
    pub rescheduler_threshold: Option<Scalar>,
    /// The API-level shape folds these into each service.
    pub storage_providers: Option<StorageProviders>,
    pub clusters: Option<BTreeMap<String, Cluster>>,
    /// KServe integration (2026): passed through as written.
    pub kserve: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Synchronous {
    pub min_scale: Option<i64>,
    pub max_scale: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Expose {
    pub min_scale: Option<i64>,
    pub max_scale: Option<i64>,
    pub api_port: Option<OneOrMany<i64>>,
    pub cpu_threshold: Option<i64>,
    pub rewrite_target: Option<bool>,
    #[serde(rename = "nodePort")]
    pub node_port: Option<OneOrMany<i64>>,
    pub default_command: Option<bool>,
    pub set_auth: Option<bool>,
    pub auth_type: Option<String>,
    pub health_path: Option<String>,
    pub probe_mode: Option<String>,
}

/// `environment:`; `Variables` (SCAR, OSCAR <= 3.4) and `variables` (OSCAR >= 3.5) both accepted.
#[derive(Default, Deserialize)]
pub struct Environment {
    #[serde(alias = "Variables")]
    pub variables: Option<BTreeMap<String, EnvValue>>,
    pub secrets: Option<BTreeMap<String, EnvValue>>,
}
debug_redacted!(Environment { variables; secrets });

#[derive(Debug, Deserialize)]
pub struct Volume {
    pub name: Option<String>,
    pub size: Option<Sp<Scalar>>,
    pub mount_path: Option<String>,
    pub lifecycle_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Federation {
    pub group_id: Option<String>,
    pub topology: Option<String>,
    pub delegation: Option<String>,
    pub rescheduler_threshold: Option<Scalar>,
    pub members: Option<Vec<Replica>>,
}

/// A replica (OSCAR <= 3.x `replicas[]`) or a federation member (4.x).
#[derive(Debug, Deserialize)]
pub struct Replica {
    #[serde(rename = "type")]
    pub kind: Option<Sp<String>>,
    pub cluster_id: Option<Sp<String>>,
    pub service_name: Option<String>,
    pub url: Option<String>,
    pub ssl_verify: Option<bool>,
    pub priority: Option<u32>,
    pub headers: Option<BTreeMap<String, Scalar>>,
    /// fogd's `type: push`: the store and folder of the remote tier's input.
    pub storage_provider: Option<Sp<String>>,
    pub path: Option<String>,
}

#[derive(Clone, Default, Deserialize)]
pub struct Cluster {
    pub endpoint: Option<String>,
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub ssl_verify: Option<bool>,
}
debug_redacted!(Cluster { endpoint, auth_user, ssl_verify; auth_password });

/// One `input`, `output` or `mount` entry.
#[derive(Debug, Deserialize)]
pub struct StorageIo {
    pub storage_provider: Sp<String>,
    pub path: Sp<String>,
    pub suffix: Option<OneOrMany<String>>,
    pub prefix: Option<OneOrMany<String>>,
    /// rclone flags (mount only).
    pub options: Option<OneOrMany<String>>,
}

/// One item of SCAR's `functions.aws` list.
#[derive(Debug, Deserialize)]
pub struct AwsFunction {
    pub lambda: Option<Lambda>,
    // Deployment details for AWS that fogd keeps but does not act on.
    pub iam: Option<serde_json::Value>,
    pub api_gateway: Option<serde_json::Value>,
    pub cloudwatch: Option<serde_json::Value>,
    pub batch: Option<serde_json::Value>,
}

/// SCAR's `lambda:` block.
#[derive(Debug, Deserialize)]
pub struct Lambda {
    pub name: Sp<String>,
    pub region: Option<String>,
    pub boto_profile: Option<String>,
    /// Megabytes, an integer.
    pub memory: Option<Sp<Scalar>>,
    /// Seconds.
    pub timeout: Option<Sp<Scalar>>,
    pub execution_mode: Option<Sp<String>>,
    pub log_level: Option<Sp<String>>,
    pub layers: Option<Vec<String>>,
    pub environment: Option<Environment>,
    pub init_script: Option<Sp<String>>,
    pub run_script: Option<Sp<String>>,
    pub image: Option<Sp<String>>,
    pub container: Option<LambdaContainer>,
    pub runtime: Option<String>,
    pub input: Option<Vec<StorageIo>>,
    pub output: Option<Vec<StorageIo>>,
    pub supervisor: Option<serde_json::Value>,
    pub deployment: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct LambdaContainer {
    pub image: Option<Sp<String>>,
    pub image_file: Option<Sp<String>>,
    pub environment: Option<Environment>,
    pub timeout_threshold: Option<Scalar>,
}

/// Pre-2020 SCAR function (`functions:` as a list).
#[derive(Debug, Deserialize)]
pub struct LegacyFunction {
    pub name: Sp<String>,
    pub image: Option<Sp<String>>,
    pub init_script: Option<Sp<String>>,
    pub input: Option<Vec<LegacyIo>>,
    pub output: Option<Vec<LegacyIo>>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyIo {
    /// Names an entry of `storages`.
    pub name: Sp<String>,
    pub path: Sp<String>,
    pub files: Option<LegacyFiles>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LegacyFiles {
    /// Spelt so in SCAR.
    #[serde(alias = "suffix")]
    pub sufix: Option<OneOrMany<String>>,
    pub prefix: Option<OneOrMany<String>>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyStorage {
    pub name: Sp<String>,
    #[serde(rename = "type")]
    pub kind: Option<Sp<String>>,
    pub auth: Option<BTreeMap<String, Scalar>>,
}
