//! The S3 endpoint: the node's local store spoken as S3, for the clients OSCAR users already
//! have (oscar-python's storage client, boto3, the AWS CLI, rclone, MinIO's `mc`). `/system/config`
//! announces it as OSCAR announces its MinIO. It listens on a port of its own: S3 clients put
//! buckets at the root of the URL, where the OSCAR API has its paths.
//!
//! Who may call, checked with SigV4 (headers or presigned URLs) by s3s:
//! - the admin keys (`data_dir/s3-keys`, made at the first start, handed out by
//!   `/system/config` to the admin): everything;
//! - a service's name as access key and its token as secret key (as OSCAR gives each service
//!   its own MinIO credentials): the buckets of that service's `minio` paths only;
//! - anyone else: nothing.

mod errors;
mod guard;
pub(crate) mod listing;
mod multipart;
mod ops;
mod store;

use std::path::Path;
use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::fdl::ProviderKind;
use crate::runtime::Runtime;

pub use store::FogS3;

/// The admin's S3 keys.
#[derive(Clone)]
pub struct Keys {
    pub access: String,
    pub secret: String,
}

impl Keys {
    /// Reads the keys, or makes them on first start (0600).
    pub fn load_or_create(path: &Path) -> std::io::Result<Keys> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut lines = text.lines().map(str::trim);
                match (lines.next(), lines.next()) {
                    (Some(a), Some(s)) if !a.is_empty() && s.len() >= 8 => Ok(Keys {
                        access: a.into(),
                        secret: s.into(),
                    }),
                    _ => Err(std::io::Error::other(format!(
                        "{}: expected the access key and the secret key (8 characters or more) on two lines",
                        path.display()
                    ))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let k = Keys {
                    access: format!("fogd{}", crate::journal::random_hex(8)),
                    secret: crate::journal::random_hex(20),
                };
                crate::paths::write_private(path, format!("{}\n{}\n", k.access, k.secret).as_bytes())?;
                Ok(k)
            }
            Err(e) => Err(e),
        }
    }
}

/// What `/system/config` announces.
#[derive(Clone)]
pub struct Announce {
    pub addr: std::net::SocketAddr,
    pub https: bool,
    pub public_url: Option<String>,
    pub region: String,
    pub keys: Keys,
}

impl Announce {
    /// The endpoint's URL for a client that reached the API at `api_host` (the Host header).
    pub fn endpoint(&self, api_host: Option<&str>) -> String {
        if let Some(u) = &self.public_url {
            return u.trim_end_matches('/').to_string();
        }
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.addr.ip().is_unspecified() {
            // Listening everywhere: the name the client used for the API reaches this too.
            api_host
                .map(strip_port)
                .unwrap_or_else(|| "127.0.0.1".to_string())
        } else {
            match self.addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            }
        };
        format!("{scheme}://{host}:{}", self.addr.port())
    }
}

fn strip_port(host: &str) -> String {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host.to_string(), |(h, _)| format!("{h}]"));
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h).to_string()
}

struct Auth {
    rt: Arc<Runtime>,
    keys: Keys,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.keys.access {
            return Ok(SecretKey::from(self.keys.secret.clone()));
        }
        if self.rt.workflow().services.iter().any(|s| s.name == access_key) {
            let name = access_key.to_string();
            if let Ok(token) = self.rt.journal.call(move |j| j.service_token(&name)).await {
                return Ok(SecretKey::from(token));
            }
        }
        Err(s3_error!(InvalidAccessKeyId, "no such access key"))
    }
}

struct Access {
    rt: Arc<Runtime>,
    admin: String,
}

impl Access {
    /// May these (signature-checked) credentials use `bucket`? The admin: any. A service's:
    /// the buckets of its own `minio` paths, and those made public or restricted to it.
    async fn may(&self, access_key: &str, bucket: Option<&str>) -> S3Result<()> {
        if access_key == self.admin {
            return Ok(());
        }
        let wf = self.rt.workflow();
        let Some(svc) = wf.services.iter().find(|s| s.name == access_key) else {
            return Err(s3_error!(AccessDenied));
        };
        let Some(bucket) = bucket else {
            return Err(s3_error!(
                AccessDenied,
                "a service's keys reach its own buckets only"
            ));
        };
        let own = svc
            .storage_paths()
            .filter(|b| b.provider.kind == ProviderKind::Minio && b.provider.id == "default")
            .any(|b| b.bucket() == bucket);
        // The raw area's bucket is never shared by visibility: only its own services reach it.
        let ingest = super::buckets::is_ingest(&self.rt, bucket);
        if own
            || (!ingest
                && super::buckets::Settings::load(&self.rt, bucket)
                    .await
                    .admits(&svc.name))
        {
            Ok(())
        } else {
            Err(s3_error!(
                AccessDenied,
                "bucket `{bucket}` is not in the paths of service `{}`",
                svc.name
            ))
        }
    }
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(c) = cx.credentials() else {
            return Err(s3_error!(
                AccessDenied,
                "sign requests with the keys that /system/config gives (or a service's name and token)"
            ));
        };
        let key = c.access_key.clone();
        self.may(&key, cx.s3_path().get_bucket_name()).await
    }

    /// A copy reads its source too: the source bucket must be the caller's as well.
    async fn copy_object(&self, req: &mut s3s::S3Request<s3s::dto::CopyObjectInput>) -> S3Result<()> {
        let Some(c) = &req.credentials else {
            return Err(s3_error!(AccessDenied));
        };
        match &req.input.copy_source {
            s3s::dto::CopySource::Bucket { bucket, .. } => {
                self.may(&c.access_key, Some(bucket.as_ref())).await
            }
            _ => Err(s3_error!(NotImplemented, "copies from access points")),
        }
    }
}

/// The S3 service, ready to serve.
pub fn service(rt: Arc<Runtime>, keys: &Keys) -> s3s::service::S3Service {
    let uploads = FogS3::new(rt.clone(), &keys.access);
    let mut b = s3s::service::S3ServiceBuilder::new(uploads);
    b.set_auth(Auth {
        rt: rt.clone(),
        keys: keys.clone(),
    });
    b.set_access(Access {
        rt,
        admin: keys.access.clone(),
    });
    // XML bodies (multi-delete, the parts of a multipart upload) are read into memory: bounded
    // to what 10,000 parts or 1,000 keys need.
    let mut config = s3s::config::S3Config::default();
    config.xml_max_body_size = 2 << 20;
    config.post_object_max_file_size = 0;
    b.set_config(Arc::new(s3s::config::StaticConfigProvider::new(Arc::new(config))));
    b.build()
}

/// The S3 service as an axum app (so it is served, bounded and shut down as the API is). Each
/// request is judged on its head first (`guard::admit`), and its body read under
/// `gateway.body_timeout` and S3's 5 GiB bound for one PUT.
pub fn router(svc: s3s::service::S3Service, rt: Arc<Runtime>, keys: &Keys) -> axum::Router {
    use axum::response::IntoResponse;
    let admin = keys.access.clone();
    let idle = rt.cfg.gateway.body_timeout;
    let handler = move |req: axum::extract::Request| {
        let (svc, rt, admin) = (svc.clone(), rt.clone(), admin.clone());
        async move {
            let known = |k: &str| k == admin || rt.workflow().services.iter().any(|s| s.name == k);
            let query = req.uri().query().unwrap_or_default().to_string();
            if let Err(refused) = guard::admit(req.method(), req.headers(), &query, known) {
                return refused.into_response();
            }
            let with_body = guard::has_body(req.headers());
            let req =
                req.map(|b| s3s::Body::http_body_unsync(guard::Guarded::new(b, idle, guard::MAX_PUT_BYTES)));
            match svc.call(req).await {
                Ok(mut resp) => {
                    // A body refused before it was read to its end must not be taken for the
                    // next request on the connection: close it.
                    if with_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
                        resp.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    resp.map(axum::body::Body::new).into_response()
                }
                Err(e) => {
                    tracing::error!("S3 endpoint: {e:?}");
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
            }
        }
    };
    axum::Router::new().fallback(handler)
}

/// Removes multipart uploads left unfinished: untouched for `STALE_AFTER`, or for
/// `STALE_WHEN_LOW` while the disk is under its reserve. Now, then every ten minutes.
pub fn sweep_uploads(rt: Arc<Runtime>, admin: &str) -> tokio::task::JoinHandle<()> {
    let uploads = multipart::Uploads::new(rt.data.s3_uploads(), admin);
    tokio::spawn(async move {
        loop {
            let low = rt.check_disk().is_err();
            let age = if low {
                multipart::STALE_WHEN_LOW
            } else {
                multipart::STALE_AFTER
            };
            let n = uploads.sweep(age);
            if n > 0 {
                tracing::info!(
                    removed = n,
                    ?age,
                    low_disk = low,
                    "unfinished S3 multipart uploads removed"
                );
            }
            tokio::time::sleep(std::time::Duration::from_secs(600)).await;
        }
    })
}

/// Bytes parked in unfinished multipart uploads into `bucket`.
pub async fn parked_bytes(rt: &Runtime, bucket: &str) -> u64 {
    let uploads = multipart::Uploads::new(rt.data.s3_uploads(), "");
    let b = bucket.to_string();
    tokio::task::spawn_blocking(move || uploads.parked(&b))
        .await
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_announced_by_the_name_the_client_used() {
        let a = Announce {
            addr: "0.0.0.0:9000".parse().expect("addr"),
            https: false,
            public_url: None,
            region: "us-east-1".into(),
            keys: Keys {
                access: "a".into(),
                secret: "s".into(),
            },
        };
        assert_eq!(a.endpoint(Some("edge.local:8080")), "http://edge.local:9000");
        assert_eq!(a.endpoint(Some("[fe80::1]:8080")), "http://[fe80::1]:9000");
        assert_eq!(a.endpoint(None), "http://127.0.0.1:9000");
        let b = Announce {
            addr: "127.0.0.1:9100".parse().expect("addr"),
            public_url: Some("https://s3.example.org/".into()),
            ..a.clone()
        };
        assert_eq!(b.endpoint(Some("x")), "https://s3.example.org");
        let c = Announce {
            addr: "127.0.0.1:9100".parse().expect("addr"),
            https: true,
            ..a
        };
        assert_eq!(c.endpoint(Some("x:1")), "https://127.0.0.1:9100");
    }

    #[test]
    fn keys_are_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("s3-keys");
        let k = Keys::load_or_create(&p).expect("make");
        let again = Keys::load_or_create(&p).expect("read");
        assert_eq!((k.access.clone(), k.secret.clone()), (again.access, again.secret));
        assert_eq!(
            std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&p, "only-one-line\n").expect("w");
        let e = Keys::load_or_create(&p).err().expect("refused").to_string();
        assert!(e.contains("s3-keys"), "{e}");
    }
}
