//! `storage_providers:`: MinIO, S3, Onedata, WebDAV and Rucio, typed even where fogd does not use
//! them, so that an OSCAR service round-trips unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::{LegacyStorage, Scalar};

/// `storage_providers:` by type, then by id.
#[derive(Debug, Default, Deserialize)]
pub struct StorageProviders {
    pub minio: Option<ProviderSet<MinioProvider>>,
    pub s3: Option<ProviderSet<S3Provider>>,
    pub onedata: Option<ProviderSet<OnedataProvider>>,
    pub webdav: Option<ProviderSet<WebdavProvider>>,
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

#[derive(Clone, Default, Deserialize)]
pub struct MinioProvider {
    pub endpoint: Option<String>,
    pub verify: Option<bool>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub region: Option<String>,
}
debug_redacted!(MinioProvider { endpoint, verify, access_key, region; secret_key });
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
#[derive(Clone, Default, Deserialize)]
pub struct S3Provider {
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: Option<bool>,
}
debug_redacted!(S3Provider { access_key, region, endpoint, path_style; secret_key });
impl FromLegacyAuth for S3Provider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        S3Provider {
            access_key: auth(a, "user"),
            secret_key: auth(a, "pass"),
            ..Default::default()
        }
    }
}

#[derive(Clone, Default, Deserialize)]
pub struct OnedataProvider {
    pub oneprovider_host: Option<String>,
    pub token: Option<String>,
    pub space: Option<String>,
}
debug_redacted!(OnedataProvider { oneprovider_host, space; token });
impl FromLegacyAuth for OnedataProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        OnedataProvider {
            oneprovider_host: auth(a, "host"),
            token: auth(a, "token"),
            space: auth(a, "space"),
        }
    }
}

#[derive(Clone, Default, Deserialize)]
pub struct WebdavProvider {
    pub hostname: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
}
debug_redacted!(WebdavProvider { hostname, login; password });
impl FromLegacyAuth for WebdavProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        WebdavProvider {
            hostname: auth(a, "host"),
            login: auth(a, "user"),
            password: auth(a, "pass"),
        }
    }
}

#[derive(Clone, Default, Deserialize)]
pub struct RucioProvider {
    pub host: Option<String>,
    pub auth_host: Option<String>,
    pub account: Option<String>,
    pub rse: Option<String>,
    pub refresh_token: Option<String>,
    pub access_token: Option<String>,
    pub oidc_audience: Option<String>,
    pub token_endpoint: Option<String>,
}
debug_redacted!(RucioProvider { host, auth_host, account, rse, oidc_audience, token_endpoint; refresh_token, access_token });
impl FromLegacyAuth for RucioProvider {
    fn from_legacy_auth(a: &BTreeMap<String, Scalar>) -> Self {
        RucioProvider {
            host: auth(a, "host"),
            access_token: auth(a, "token"),
            ..Default::default()
        }
    }
}
