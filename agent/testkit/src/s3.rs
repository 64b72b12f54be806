//! S3 clients of a running node's endpoint, as a service or the admin signs with them.

use crate::FogdNode;

/// An aws-sdk-s3 client of `endpoint` (path-style, as fogd and MinIO serve).
pub fn s3_client(endpoint: &str, region: &str, access: &str, secret: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new(access, secret, None, None, "fogd-testkit");
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(endpoint)
            .region(aws_sdk_s3::config::Region::new(region.to_string()))
            .credentials_provider(creds)
            .force_path_style(true)
            .build(),
    )
}

/// The keys under `prefix` in `bucket` (none when the store does not answer).
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    s3.list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .map(|o| {
            o.contents()
                .iter()
                .filter_map(|c| c.key().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Where a node's S3 endpoint is and what a service signs with: its name and its token.
pub struct ServiceKeys {
    pub endpoint: String,
    pub region: String,
    pub access: String,
    pub secret: String,
}

impl ServiceKeys {
    pub fn client(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint, &self.region, &self.access, &self.secret)
    }
}

impl FogdNode {
    /// `GET` of an API path as the admin, as JSON.
    pub async fn api_json(&self, http: &reqwest::Client, path: &str) -> serde_json::Value {
        http.get(format!("{}{path}", self.url))
            .basic_auth("oscar", Some(&self.password))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The S3 endpoint (`/system/config`) and `service`'s keys (`/system/services/{service}`).
    pub async fn service_keys(&self, http: &reqwest::Client, service: &str) -> ServiceKeys {
        let cfg = self.api_json(http, "/system/config").await;
        let svc = self.api_json(http, &format!("/system/services/{service}")).await;
        let s = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
        ServiceKeys {
            endpoint: s(&cfg["minio_provider"]["endpoint"]),
            region: s(&cfg["minio_provider"]["region"]),
            access: service.to_string(),
            secret: s(&svc["token"]),
        }
    }
}
