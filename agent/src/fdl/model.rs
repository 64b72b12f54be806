//! The raw FDL document, as written by users of OSCAR (every schema era) and SCAR.
//!
//! These types mirror the YAML one to one; `fdl::validate` turns them into the normalised
//! [`crate::fdl::Workflow`]. Fields that fogd does not use are still typed, so that a typo in them
//! is caught and a service round-trips to an OSCAR cluster unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
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

/// `storage_providers:` by type, then by id.
#[derive(Debug, Default, Deserialize)]
pub struct StorageProviders {
    #[serde(default)]
    pub minio: Option<ProviderSet<MinioProvider>>,
    #[serde(default)]
    pub s3: Option<ProviderSet<S3Provider>>,
    #[serde(default)]
    pub onedata: Option<ProviderSet<OnedataProvider>>,
    #[serde(default)]
    pub webdav: Option<ProviderSet<WebdavProvider>>,
    #[serde(default)]
    pub rucio: Option<ProviderSet<RucioProvider>>,
}

/// Providers of one type, in file order. A map `{id: provider}`; old SCAR files write a list of
/// `{name, auth: {user, pass}}`, which is read into the same shape.
#[derive(Debug)]
pub struct ProviderSet<T>(pub Vec<(String, T)>);

impl<'de, T: DeserializeOwned + FromLegacyAuth> Deserialize<'de> for ProviderSet<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: DeserializeOwned + FromLegacyAuth> Visitor<'de> for V<T> {
            type Value = ProviderSet<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of provider ids to provider settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(id) = map.next_key::<String>()? {
                    // `id:` with nothing under it is a provider with every setting left out.
                    let value: Option<T> = map.next_value()?;
                    let value = match value {
                        Some(v) => v,
                        None => T::from_legacy_auth(&BTreeMap::new()),
                    };
                    out.push((id, value));
                }
                Ok(ProviderSet(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<LegacyStorage>()? {
                    let auth = item.auth.unwrap_or_default();
                    out.push((item.name.value, T::from_legacy_auth(&auth)));
                }
                Ok(ProviderSet(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Builds a provider from a legacy SCAR `auth:` block.
pub trait FromLegacyAuth {
    fn from_legacy_auth(auth: &BTreeMap<String, Scalar>) -> Self;
}

fn auth(a: &BTreeMap<String, Scalar>, k: &str) -> Option<String> {
    a.get(k).map(|s| s.0.clone())
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MinioProvider {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub verify: Option<bool>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}
impl FromLegacyAuth for MinioProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        MinioProvider {
            access_key: auth(a, "user"),
            secret_key: auth(a, "pass"),
            ..Default::default()
        }
    }
}

/// S3. `endpoint` and `path_style` are fogd extensions for S3-compatible servers (SeaweedFS, Ceph);
/// OSCAR's S3 provider is AWS only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct S3Provider {
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path_style: Option<bool>,
}
impl FromLegacyAuth for S3Provider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        S3Provider {
            access_key: auth(a, "user"),
            secret_key: auth(a, "pass"),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OnedataProvider {
    #[serde(default)]
    pub oneprovider_host: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub space: Option<String>,
}
impl FromLegacyAuth for OnedataProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        OnedataProvider {
            oneprovider_host: auth(a, "host"),
            token: auth(a, "token"),
            space: auth(a, "space"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct WebdavProvider {
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
}
impl FromLegacyAuth for WebdavProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        WebdavProvider {
            hostname: auth(a, "host"),
            login: auth(a, "user"),
            password: auth(a, "pass"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RucioProvider {
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub auth_host: Option<String>,
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub rse: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub oidc_audience: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
}
impl FromLegacyAuth for RucioProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        RucioProvider {
            host: auth(a, "host"),
            access_token: auth(a, "token"),
            ..Default::default()
        }
    }
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

/// A scalar kept as its text, whatever YAML type it was written as: `cpu: 1.0` and `cpu: '1.0'`
/// are the same to OSCAR, and so are `KEY: 1` and `KEY: "1"` in environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                // `1.0` must stay "1.0", not "1".
                let mut s = v.to_string();
                if v.is_finite() && !s.contains(['.', 'e', 'E']) {
                    s.push_str(".0");
                }
                Ok(Scalar(s))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(|x| OneOrMany(vec![x]))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// An environment value. Real files write placeholders as flow lists (`KEY: [your_key]`), which
/// OSCAR would refuse; fogd reads them and warns.
#[derive(Debug, Clone)]
pub enum EnvValue {
    Scalar(Scalar),
    List(Vec<Scalar>),
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<EnvValue, A::Error> {
                Vec::<Scalar>::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(EnvValue::List)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvValue, E> {
                Ok(EnvValue::Scalar(Scalar(v.to_owned())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<EnvValue, E> {
                Ok(EnvValue::Scalar(Scalar(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<EnvValue, E> {
                Ok(EnvValue::Scalar(Scalar(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<EnvValue, E> {
                Scalar::deserialize(v.into_deserializer()).map(EnvValue::Scalar)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<EnvValue, E> {
                Ok(EnvValue::Scalar(Scalar(v.to_string())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<EnvValue, E> {
                Ok(EnvValue::Scalar(Scalar(String::new())))
            }
        }
        d.deserialize_any(V)
    }
}
