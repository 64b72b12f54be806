//! `gateway:` in `fogd.yaml`: where the OSCAR API listens, and the limits that keep it up.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub enabled: bool,
    /// Loopback unless said otherwise: exposing the admin API is a choice.
    pub listen: String,
    /// Largest request body (`/job`, `/run` inputs); larger ones get 413.
    #[serde(deserialize_with = "crate::config::byte_size::usize::deserialize")]
    pub max_body_bytes: usize,
    /// The admin user for HTTP Basic (OSCAR's default is `oscar`).
    pub admin_user: String,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
    /// Open connections at most (also held under half the open-files limit, so that ingest and
    /// the journal always have descriptors); more are closed at once.
    pub max_connections: usize,
    /// Open connections from one address at most, so one host cannot take every slot.
    pub max_connections_per_ip: usize,
    /// A connection that sends no complete request head for this long (a new one, or an idle
    /// keep-alive one) is closed.
    #[serde(with = "humantime_serde_compat")]
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long is answered 408 and dropped.
    #[serde(with = "humantime_serde_compat")]
    pub body_timeout: Duration,
    /// Wrong passwords from one address within a minute before it is answered 429 (without
    /// hashing) until the minute is over.
    pub max_auth_failures_per_minute: u32,
    /// The S3 endpoint over the local store (what OSCAR announces as its MinIO).
    pub s3: S3EndpointConfig,
}

/// `gateway.s3`: an S3-compatible endpoint over `data_dir/store`, on a port of its own (S3
/// clients address buckets at the root of the URL, where the OSCAR API has its paths).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3EndpointConfig {
    pub enabled: bool,
    /// Loopback unless said otherwise, as the API. When this default port is taken (a MinIO on
    /// the box) fogd warns and runs without the endpoint; a port set here must be free.
    pub listen: String,
    /// The URL `/system/config` announces, when clients reach the endpoint by another name
    /// (behind NAT, a proxy, or listening on 0.0.0.0). Default: the address it listens on,
    /// with the host the client used for the API when that address is unspecified.
    pub public_url: Option<String>,
    /// The region clients sign for.
    pub region: String,
}

impl S3EndpointConfig {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:9000";
}

impl Default for S3EndpointConfig {
    fn default() -> Self {
        S3EndpointConfig {
            enabled: true,
            listen: Self::DEFAULT_LISTEN.into(),
            public_url: None,
            region: "us-east-1".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 << 20,
            admin_user: "oscar".into(),
            tls: None,
            max_connections: 1024,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_auth_failures_per_minute: 10,
            s3: S3EndpointConfig::default(),
        }
    }
}
