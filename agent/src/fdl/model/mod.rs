//! The raw FDL document, as written by users of OSCAR (every schema era) and SCAR.
//!
//! These types mirror the YAML one to one; `fdl::validate` turns them into the normalised
//! [`crate::fdl::Workflow`]. Fields that fogd does not use are still typed, so that a typo in them
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
    #[serde(default)]
    pub storage_providers: Option<StorageProviders>,
    #[serde(default)]
    pub clusters: Option<BTreeMap<String, Cluster>>,
    /// Pre-2020 SCAR: storages as a list of `{name, type, auth}`.
    #[serde(default)]
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
    #[serde(default)]
    pub oscar: Option<Vec<BTreeMap<String, OscarService>>>,
    #[serde(default)]
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
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub image: Sp<String>,
    #[serde(default)]
    pub script: Option<Sp<String>>,
    #[serde(default)]
    pub memory: Option<Sp<Scalar>>,
    #[serde(default)]
    pub cpu: Option<Sp<Scalar>>,
    #[serde(default)]
    pub total_memory: Option<Sp<Scalar>>,
    #[serde(default)]
    pub total_cpu: Option<Sp<Scalar>>,
    #[serde(default)]
    pub ephemeral_storage_request: Option<Sp<Scalar>>,
    #[serde(default)]
    pub enable_gpu: Option<bool>,
    #[serde(default)]
    pub enable_sgx: Option<bool>,
    #[serde(default)]
    pub image_prefetch: Option<bool>,
    #[serde(default)]
    pub synchronous: Option<Synchronous>,
    #[serde(default)]
    pub log_level: Option<Sp<String>>,
    #[serde(default)]
    pub alpine: Option<bool>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub file_stage_in: Option<bool>,
    #[serde(default)]
    pub input: Option<Vec<StorageIo>>,
    #[serde(default)]
    pub output: Option<Vec<StorageIo>>,
    #[serde(default)]
    pub image_pull_secrets: Option<Vec<String>>,
    #[serde(default)]
    pub expose: Option<Expose>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Scalar>>,
    /// A string; one real file writes it as a list.
    #[serde(default)]
    pub vo: Option<OneOrMany<String>>,
    #[serde(default)]
    pub visibility: Option<String>,
    #[serde(default)]
    pub allowed_users: Option<Vec<String>>,
    #[serde(default)]
    pub isolation_level: Option<String>,
    #[serde(default)]
    pub bucket_list: Option<Vec<String>>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub interlink_node_name: Option<String>,
    #[serde(default)]
    pub mount: Option<StorageIo>,
    #[serde(default)]
    pub volume: Option<Volume>,
    /// OSCAR 4.x.
    #[serde(default)]
    pub federation: Option<Federation>,
    /// OSCAR up to 3.x.
    #[serde(default)]
    pub replicas: Option<Vec<Replica>>,
    #[serde(default)]
    pub delegation: Option<String>,
    #[serde(default)]
    pub rescheduler_threshold: Option<Scalar>,
    /// The API-level shape folds these into each service.
    #[serde(default)]
    pub storage_providers: Option<StorageProviders>,
    #[serde(default)]
    pub clusters: Option<BTreeMap<String, Cluster>>,
    /// KServe integration (2026): passed through as written.
    #[serde(default)]
    pub kserve: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Synchronous {
    #[serde(default)]
    pub min_scale: Option<i64>,
    #[serde(default)]
    pub max_scale: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Expose {
    #[serde(default)]
    pub min_scale: Option<i64>,
    #[serde(default)]
    pub max_scale: Option<i64>,
    #[serde(default)]
    pub api_port: Option<OneOrMany<i64>>,
    #[serde(default)]
    pub cpu_threshold: Option<i64>,
    #[serde(default)]
    pub rewrite_target: Option<bool>,
    #[serde(default, rename = "nodePort")]
    pub node_port: Option<OneOrMany<i64>>,
    #[serde(default)]
    pub default_command: Option<bool>,
    #[serde(default)]
    pub set_auth: Option<bool>,
    #[serde(default)]
    pub auth_type: Option<String>,
    #[serde(default)]
    pub health_path: Option<String>,
    #[serde(default)]
    pub probe_mode: Option<String>,
}

/// `environment:`; `Variables` (SCAR, OSCAR <= 3.4) and `variables` (OSCAR >= 3.5) both accepted.
#[derive(Debug, Default, Deserialize)]
pub struct Environment {
    #[serde(default, alias = "Variables")]
    pub variables: Option<BTreeMap<String, EnvValue>>,
    #[serde(default)]
    pub secrets: Option<BTreeMap<String, EnvValue>>,
}

#[derive(Debug, Deserialize)]
pub struct Volume {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub size: Option<Sp<Scalar>>,
    #[serde(default)]
    pub mount_path: Option<String>,
    #[serde(default)]
    pub lifecycle_policy: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Federation {
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub topology: Option<String>,
    #[serde(default)]
    pub delegation: Option<String>,
    #[serde(default)]
    pub rescheduler_threshold: Option<Scalar>,
    #[serde(default)]
    pub members: Option<Vec<Replica>>,
}

/// A replica (OSCAR <= 3.x `replicas[]`) or a federation member (4.x).
#[derive(Debug, Deserialize)]
pub struct Replica {
    #[serde(default, rename = "type")]
    pub kind: Option<Sp<String>>,
    #[serde(default)]
    pub cluster_id: Option<Sp<String>>,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub ssl_verify: Option<bool>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, Scalar>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Cluster {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub auth_user: Option<String>,
    #[serde(default)]
    pub auth_password: Option<String>,
    #[serde(default)]
    pub ssl_verify: Option<bool>,
}

/// One `input`, `output` or `mount` entry.
#[derive(Debug, Deserialize)]
pub struct StorageIo {
    pub storage_provider: Sp<String>,
    pub path: Sp<String>,
    #[serde(default)]
    pub suffix: Option<OneOrMany<String>>,
    #[serde(default)]
    pub prefix: Option<OneOrMany<String>>,
    /// rclone flags (mount only).
    #[serde(default)]
    pub options: Option<OneOrMany<String>>,
}

/// One item of SCAR's `functions.aws` list.
#[derive(Debug, Deserialize)]
pub struct AwsFunction {
    #[serde(default)]
    pub lambda: Option<Lambda>,
    // Deployment details for AWS that fogd keeps but does not act on.
    #[serde(default)]
    pub iam: Option<serde_json::Value>,
    #[serde(default)]
    pub api_gateway: Option<serde_json::Value>,
    #[serde(default)]
    pub cloudwatch: Option<serde_json::Value>,
    #[serde(default)]
    pub batch: Option<serde_json::Value>,
}

/// SCAR's `lambda:` block.
#[derive(Debug, Deserialize)]
pub struct Lambda {
    pub name: Sp<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub boto_profile: Option<String>,
    /// Megabytes, an integer.
    #[serde(default)]
    pub memory: Option<Sp<Scalar>>,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<Sp<Scalar>>,
    #[serde(default)]
    pub execution_mode: Option<Sp<String>>,
    #[serde(default)]
    pub log_level: Option<Sp<String>>,
    #[serde(default)]
    pub layers: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub init_script: Option<Sp<String>>,
    #[serde(default)]
    pub run_script: Option<Sp<String>>,
    #[serde(default)]
    pub image: Option<Sp<String>>,
    #[serde(default)]
    pub container: Option<LambdaContainer>,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub input: Option<Vec<StorageIo>>,
    #[serde(default)]
    pub output: Option<Vec<StorageIo>>,
    #[serde(default)]
    pub supervisor: Option<serde_json::Value>,
    #[serde(default)]
    pub deployment: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct LambdaContainer {
    #[serde(default)]
    pub image: Option<Sp<String>>,
    #[serde(default)]
    pub image_file: Option<Sp<String>>,
    #[serde(default)]
    pub environment: Option<Environment>,
    #[serde(default)]
    pub timeout_threshold: Option<Scalar>,
}

/// Pre-2020 SCAR function (`functions:` as a list).
#[derive(Debug, Deserialize)]
pub struct LegacyFunction {
    pub name: Sp<String>,
    #[serde(default)]
    pub image: Option<Sp<String>>,
    #[serde(default)]
    pub init_script: Option<Sp<String>>,
    #[serde(default)]
    pub input: Option<Vec<LegacyIo>>,
    #[serde(default)]
    pub output: Option<Vec<LegacyIo>>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyIo {
    /// Names an entry of `storages`.
    pub name: Sp<String>,
    pub path: Sp<String>,
    #[serde(default)]
    pub files: Option<LegacyFiles>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LegacyFiles {
    /// Spelt so in SCAR.
    #[serde(default, alias = "suffix")]
    pub sufix: Option<OneOrMany<String>>,
    #[serde(default)]
    pub prefix: Option<OneOrMany<String>>,
}

#[derive(Debug, Deserialize)]
pub struct LegacyStorage {
    pub name: Sp<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<Sp<String>>,
    #[serde(default)]
    pub auth: Option<BTreeMap<String, Scalar>>,
}
