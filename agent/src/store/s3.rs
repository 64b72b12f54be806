//! S3 and S3-compatible stores (MinIO, SeaweedFS) through aws-sdk-s3.

use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{ObjectMeta, PutOptions, Result, StoreError};
use crate::fdl::model::{MinioProvider, S3Provider};

mod multipart;

pub struct S3Store {
    name: String,
    endpoint: String,
    client: Client,
}

impl S3Store {
    pub fn from_minio(name: String, m: &MinioProvider) -> Result<S3Store> {
        let endpoint = m.endpoint.clone().unwrap_or_default();
        Self::new(
            name,
            Some(endpoint),
            m.region.clone(),
            m.access_key.clone(),
            m.secret_key.clone(),
        )
    }

    pub fn from_s3(name: String, s: &S3Provider) -> Result<S3Store> {
        Self::new(
            name,
            s.endpoint.clone(),
            s.region.clone(),
            s.access_key.clone(),
            s.secret_key.clone(),
        )
    }

    fn new(
        name: String,
        endpoint: Option<String>,
        region: Option<String>,
        access_key: Option<String>,
        secret_key: Option<String>,
    ) -> Result<S3Store> {
        // Without keys in the FDL, the usual AWS variables (as on a Lambda or an EC2 box).
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let access_key = access_key
            .filter(|k| !k.is_empty())
            .or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret_key = secret_key
            .filter(|k| !k.is_empty())
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let (Some(ak), Some(sk)) = (access_key, secret_key) else {
            return Err(StoreError::Unsupported {
                provider: name,
                message: "no credentials: set access_key and secret_key in storage_providers (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
            });
        };
        let region = region
            .filter(|r| !r.is_empty())
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(region))
            .credentials_provider(Credentials::new(ak, sk, None, None, "fogd-fdl"))
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        let shown = match endpoint.filter(|e| !e.trim().is_empty()) {
            Some(e) => {
                let e = if e.contains("://") {
                    e
                } else {
                    format!("https://{e}")
                };
                // MinIO and SeaweedFS serve buckets as paths, not host names.
                b = b.endpoint_url(e.clone()).force_path_style(true);
                e
            }
            None => "AWS S3".to_string(),
        };
        Ok(S3Store {
            name,
            endpoint: shown,
            client: Client::from_conf(b.build()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A presigned URL (SigV4, in the query) to GET (`upload` false) or PUT `key` for
    /// `expires`, with `content_type` signed into an upload when given. Computed here: nothing
    /// is sent.
    pub async fn presign(
        &self,
        key: &str,
        upload: bool,
        expires: Duration,
        content_type: Option<&str>,
    ) -> Result<String> {
        use aws_sdk_s3::presigning::PresigningConfig;
        let (bucket, object) = split(key);
        let cfg = PresigningConfig::expires_in(expires).map_err(|e| StoreError::Unsupported {
            provider: self.name.clone(),
            message: format!("presigning: {e}"),
        })?;
        let failed = |e: &dyn std::error::Error| StoreError::Unsupported {
            provider: self.name.clone(),
            message: format!("presigning `{key}`: {e}"),
        };
        if upload {
            let mut r = self.client.put_object().bucket(bucket).key(object);
            if let Some(ct) = content_type {
                r = r.content_type(ct);
            }
            r.presigned(cfg)
                .await
                .map(|p| p.uri().to_string())
                .map_err(|e| failed(&e))
        } else {
            let r = self.client.get_object().bucket(bucket).key(object);
            r.presigned(cfg)
                .await
                .map(|p| p.uri().to_string())
                .map_err(|e| failed(&e))
        }
    }

    fn remote<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
        &self,
        op: &'static str,
        key: &str,
        e: SdkError<E, R>,
    ) -> StoreError {
        let message = match &e {
            SdkError::ServiceError(se) => {
                let err = se.err();
                let code = err.code().unwrap_or("error");
                let hint = match code {
                    "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "InvalidToken" => {
                        " (check access_key and secret_key of this provider)"
                    }
                    "NoSuchBucket" => " (the bucket does not exist)",
                    _ => "",
                };
                format!("{code}: {}{hint}", err.message().unwrap_or("no message"))
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                return StoreError::Unreachable {
                    provider: self.name.clone(),
                    endpoint: self.endpoint.clone(),
                    op,
                    key: key.to_string(),
                    message: DisplayErrorContext(&e).to_string(),
                }
            }
            _ => DisplayErrorContext(&e).to_string(),
        };
        StoreError::Remote {
            provider: self.name.clone(),
            endpoint: self.endpoint.clone(),
            op,
            key: key.to_string(),
            message,
        }
    }

    pub async fn put_file(&self, key: &str, src: &Path) -> Result<ObjectMeta> {
        let (bucket, object) = split(key);
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| StoreError::io(src, e))?
            .len();
        for attempt in 0..2 {
            let body = ByteStream::from_path(src).await.map_err(|e| StoreError::Io {
                path: src.to_path_buf(),
                source: std::io::Error::other(e),
            })?;
            match self
                .client
                .put_object()
                .bucket(bucket)
                .key(object)
                .body(body)
                .send()
                .await
            {
                Ok(out) => {
                    let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_string();
                    return Ok(ObjectMeta {
                        key: key.to_string(),
                        size,
                        etag,
                    });
                }
                // A fresh MinIO has no buckets: make it once, as OSCAR does for its inputs.
                Err(e) if attempt == 0 && e.code() == Some("NoSuchBucket") => {
                    if let Err(ce) = self.client.create_bucket().bucket(bucket).send().await {
                        if !matches!(ce.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) {
                            return Err(self.remote("create bucket", bucket, ce));
                        }
                    }
                }
                Err(e) => return Err(self.remote("put", key, e)),
            }
        }
        Err(StoreError::Remote {
            provider: self.name.clone(),
            endpoint: self.endpoint.clone(),
            op: "put",
            key: key.to_string(),
            message: "bucket still missing after creating it".into(),
        })
    }

    pub async fn delete(&self, key: &str) -> Result<()> {
        let (bucket, object) = split(key);
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(object)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(self.remote("delete", key, e)),
        }
    }

    /// The outbox's upload: Content-MD5 checked by the store, parts for large files, paced.
    pub async fn put_checked(
        &self,
        key: &str,
        src: &Path,
        md5: &str,
        opts: &PutOptions<'_>,
    ) -> Result<ObjectMeta> {
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| StoreError::io(src, e))?
            .len();
        if size >= opts.multipart_threshold {
            return self.put_multipart(key, src, size, opts).await;
        }
        if let Some(p) = opts.pace {
            p.take(size).await;
        }
        let (bucket, object) = split(key);
        for attempt in 0..2 {
            let body = ByteStream::from_path(src).await.map_err(|e| StoreError::Io {
                path: src.to_path_buf(),
                source: std::io::Error::other(e),
            })?;
            let r = self
                .client
                .put_object()
                .bucket(bucket)
                .key(object)
                .content_md5(md5)
                .set_metadata(Some(object_metadata(opts)))
                .body(body)
                .send()
                .await;
            match r {
                Ok(out) => {
                    return Ok(ObjectMeta {
                        key: key.to_string(),
                        size,
                        etag: out.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    })
                }
                Err(e) if attempt == 0 && e.code() == Some("NoSuchBucket") => {
                    self.create_bucket(bucket).await?
                }
                Err(e) => return Err(self.remote("put", key, e)),
            }
        }
        Err(self.bucket_missing(key))
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        match self.client.create_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(ce) if matches!(ce.code(), Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")) => Ok(()),
            Err(ce) => Err(self.remote("create bucket", bucket, ce)),
        }
    }

    fn bucket_missing(&self, key: &str) -> StoreError {
        StoreError::Remote {
            provider: self.name.clone(),
            endpoint: self.endpoint.clone(),
            op: "put",
            key: key.to_string(),
            message: "bucket still missing after creating it".into(),
        }
    }

    pub async fn get_file(&self, key: &str, dst: &Path) -> Result<ObjectMeta> {
        let (bucket, object) = split(key);
        let out = match self.client.get_object().bucket(bucket).key(object).send().await {
            Ok(o) => o,
            Err(e) if e.code() == Some("NoSuchKey") => {
                return Err(StoreError::NotFound {
                    provider: self.name.clone(),
                    key: key.to_string(),
                })
            }
            Err(e) => return Err(self.remote("get", key, e)),
        };
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_string();
        let mut reader = out.body.into_async_read();
        let mut file = tokio::fs::File::create(dst)
            .await
            .map_err(|e| StoreError::io(dst, e))?;
        let size = tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|e| StoreError::io(dst, e))?;
        Ok(ObjectMeta {
            key: key.to_string(),
            size,
            etag,
        })
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.list_after(prefix, None, None).await
    }

    /// The objects under `prefix` whose keys sort after `after` (a whole key, bucket included):
    /// every page, or with `max` only the first (of at most `max` keys).
    pub async fn list_after(
        &self,
        prefix: &str,
        after: Option<&str>,
        max: Option<usize>,
    ) -> Result<Vec<ObjectMeta>> {
        let (bucket, object_prefix) = split(prefix);
        let start_after = after.map(|a| split(a).1.to_string());
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let resp = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(object_prefix)
                .set_start_after(start_after.clone())
                .set_max_keys(max.map(|n| n.min(1000) as i32))
                .set_continuation_token(token.take())
                .send()
                .await;
            let resp = match resp {
                Ok(r) => r,
                // Nothing was ever written there yet.
                Err(e) if e.code() == Some("NoSuchBucket") => return Ok(out),
                Err(e) => return Err(self.remote("list", prefix, e)),
            };
            for o in resp.contents() {
                let Some(k) = o.key() else { continue };
                out.push(ObjectMeta {
                    key: format!("{bucket}/{k}"),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                });
            }
            match resp.next_continuation_token() {
                Some(t) if resp.is_truncated() == Some(true) && max.is_none() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}

/// `bucket/rest/of/key` -> (`bucket`, `rest/of/key`).
fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

/// `x-amz-meta-fogd-xxh3`, and `x-amz-meta-fogd-receipt` when the object has one that fits.
fn object_metadata(opts: &super::PutOptions<'_>) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::from([("fogd-xxh3".to_string(), opts.checksum.to_string())]);
    if let Some(r) = opts.receipt.filter(|r| r.len() <= super::MAX_RECEIPT_METADATA) {
        m.insert("fogd-receipt".into(), r.to_string());
    }
    m
}
