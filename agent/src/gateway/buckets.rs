//! `/system/buckets` (OSCAR's bucket API, in its request and response shapes) over the local
//! store that the S3 endpoint serves: create, list, get (objects paged, usage and quota),
//! update visibility, delete; and `/system/buckets/{b}/presign`, presigned URLs of the S3
//! endpoint. A bucket's settings (visibility, members, owner, metadata, quota) are kept in the
//! journal; a bucket without any (made by S3, or for a service's path) is private.
//!
//! Visibility, as OSCAR means it for its users, here for the services' own S3 keys: `private`,
//! the admin only; `public`, every service too; `restricted`, the services named in
//! `allowed_users`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{ApiError, State};
use crate::runtime::Runtime;

pub const PRIVATE: &str = "private";
pub const PUBLIC: &str = "public";
pub const RESTRICTED: &str = "restricted";

/// A bucket's settings as kept.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub visibility: String,
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Reported, not enforced (a size, e.g. `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_quota: Option<String>,
}

impl Settings {
    /// The bucket's settings; a bucket nobody set is private.
    pub async fn load(rt: &Runtime, bucket: &str) -> Settings {
        let b = bucket.to_string();
        rt.journal
            .call(move |j| j.bucket_settings(&b))
            .await
            .ok()
            .flatten()
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default()
    }

    pub fn visibility(&self) -> &str {
        if self.visibility.is_empty() {
            PRIVATE
        } else {
            &self.visibility
        }
    }

    /// May a service (its own S3 keys) use the bucket?
    pub fn admits(&self, service: &str) -> bool {
        match self.visibility() {
            PUBLIC => true,
            RESTRICTED => self.allowed_users.iter().any(|u| u == service),
            _ => false,
        }
    }
}

/// The request body of create and update (OSCAR's `MinIOBucket`; `bucket_path` as older
/// clients send it).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketBody {
    #[serde(default)]
    bucket_name: String,
    #[serde(default)]
    bucket_path: String,
    #[serde(default)]
    visibility: String,
    #[serde(default)]
    allowed_users: Option<Vec<String>>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    storage_quota: Option<Value>,
}

fn parse_body(bytes: &[u8]) -> Result<(String, Option<String>, BucketBody), ApiError> {
    let b: BucketBody = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("The Bucket specification is not valid: {e}")))?;
    let path = if b.bucket_name.trim().is_empty() {
        b.bucket_path.trim()
    } else {
        b.bucket_name.trim()
    }
    .trim_matches(|c| c == '/' || c == ' ')
    .to_string();
    let (bucket, folder) = match path.split_once('/') {
        Some((b, f)) => (b.to_string(), Some(f.to_string())),
        None => (path.clone(), None),
    };
    if !s3s::path::check_bucket_name(&bucket) {
        return Err(ApiError::bad_request(format!(
            "`{bucket}` is not a bucket name (3 to 63 lowercase letters, digits, `-` and `.`)"
        )));
    }
    if let Some(f) = &folder {
        crate::store::check_key(&format!("{bucket}/{f}/"))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if !matches!(
        b.visibility.to_ascii_lowercase().as_str(),
        "" | PRIVATE | PUBLIC | RESTRICTED
    ) {
        return Err(ApiError::bad_request(format!(
            "visibility `{}`: private, public or restricted",
            b.visibility
        )));
    }
    Ok((bucket, folder, b))
}

fn quota(v: &Option<Value>) -> Result<Option<String>, ApiError> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "storage_quota: {other} is not a size"
            )))
        }
    };
    crate::fdl::parse_memory_bytes(&text)
        .map(|_| Some(text.clone()))
        .ok_or_else(|| ApiError::bad_request(format!("storage_quota `{text}` is not a size (e.g. 10Gi)")))
}

fn bucket_dir(s: &State, bucket: &str) -> Result<PathBuf, ApiError> {
    if !s3s::path::check_bucket_name(bucket) {
        return Err(ApiError::not_found(format!(
            "The bucket '{bucket}' does not exist"
        )));
    }
    let dir = s.rt.data.store().join(bucket);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(ApiError::not_found(format!(
            "The bucket '{bucket}' does not exist"
        )))
    }
}

async fn save(s: &State, bucket: &str, st: &Settings) -> Result<(), ApiError> {
    let (b, j) = (bucket.to_string(), serde_json::to_string(st).unwrap_or_default());
    s.rt.journal
        .call(move |jr| jr.put_bucket_settings(&b, &j))
        .await?;
    Ok(())
}

/// Is the bucket one a service's path or the camera ingest needs? (The same rule for the API
/// and the S3 endpoint.)
pub(crate) fn in_use(rt: &Runtime, bucket: &str) -> Option<String> {
    let wf = rt.workflow();
    for svc in &wf.services {
        let used = svc.storage_paths().any(|b| b.bucket() == bucket);
        if used {
            return Some(format!("service `{}`", svc.name));
        }
    }
    is_ingest(rt, bucket).then(|| "the camera ingest (ingest.path)".to_string())
}

/// A bucket's bytes: its objects and the parts of unfinished multipart uploads into it. Walked
/// at most once in `USAGE_TTL` per bucket, not once per page.
pub(crate) async fn storage_usage(rt: &Runtime, bucket: &str) -> u64 {
    use std::sync::{Mutex, OnceLock};
    use std::time::{Duration, Instant};
    const USAGE_TTL: Duration = Duration::from_secs(30);
    type Cache = Mutex<BTreeMap<(PathBuf, String), (Instant, u64)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let at = (rt.data.store(), bucket.to_string());
    if let Some((t, n)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&at) {
        if t.elapsed() < USAGE_TTL {
            return *n;
        }
    }
    let store = crate::store::LocalStore::new("minio.default", rt.data.store());
    let objects = store.usage(&format!("{bucket}/")).await.map_or(0, |u| u.1);
    let parked = super::s3::parked_bytes(rt, bucket).await;
    let n = objects + parked;
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    c.retain(|_, (t, _)| t.elapsed() < USAGE_TTL);
    c.insert(at, (Instant::now(), n));
    n
}

/// Does the bucket hold the raw area (`ingest.path`)?
pub(crate) fn is_ingest(rt: &Runtime, bucket: &str) -> bool {
    rt.cfg.ingest.path.trim_matches('/').split('/').next() == Some(bucket)
}

pub async fn create(s: State, h: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    let bytes = super::body::read(&h, body, s.body_limits()).await?;
    let (bucket, folder, b) = parse_body(&bytes)?;
    let storage_quota = quota(&b.storage_quota)?;
    let dir = s.rt.data.store().join(&bucket);
    if dir.exists() {
        return Err(ApiError::bad_request(format!(
            "Error creating bucket with name '{bucket}': the bucket \"{bucket}\" already exists"
        )));
    }
    let target = folder.as_ref().map_or(dir.clone(), |f| dir.join(f));
    std::fs::create_dir_all(&target).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", target.display()),
        )
    })?;
    let mut metadata = b.metadata.unwrap_or_default();
    metadata.insert("service".into(), "false".into());
    let st = Settings {
        visibility: if b.visibility.is_empty() {
            PRIVATE.into()
        } else {
            b.visibility.to_ascii_lowercase()
        },
        allowed_users: b.allowed_users.unwrap_or_default(),
        owner: s.admin.user.clone(),
        metadata,
        storage_quota,
    };
    save(&s, &bucket, &st).await?;
    tracing::info!(%bucket, visibility = st.visibility(), "bucket created through the API");
    Ok(StatusCode::CREATED)
}

pub async fn update(s: State, h: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    let bytes = super::body::read(&h, body, s.body_limits()).await?;
    let (bucket, _, b) = parse_body(&bytes)?;
    bucket_dir(&s, &bucket)?;
    let mut st = Settings::load(&s.rt, &bucket).await;
    if !b.visibility.is_empty() {
        let v = b.visibility.to_ascii_lowercase();
        // Raw footage is never shared: the ingest bucket stays private, whoever asks.
        if v != PRIVATE && is_ingest(&s.rt, &bucket) {
            return Err(ApiError::bad_request(format!(
                "bucket `{bucket}` holds raw camera footage (ingest.path): it stays private"
            )));
        }
        // A mounted bucket's files are the script's: OSCAR refuses to mount a public one, and
        // so one that is mounted does not become public.
        if v == PUBLIC {
            if let Some(svc) =
                s.rt.workflow()
                    .services
                    .iter()
                    .find(|x| x.mount.as_ref().is_some_and(|m| m.bucket() == bucket))
            {
                return Err(ApiError::bad_request(format!(
                    "bucket `{bucket}` is mounted by service `{}`: it cannot be public",
                    svc.name
                )));
            }
        }
        st.visibility = v;
    }
    if let Some(u) = b.allowed_users {
        st.allowed_users = u;
    }
    if let Some(m) = b.metadata {
        st.metadata.extend(m);
    }
    if b.storage_quota.is_some() {
        st.storage_quota = quota(&b.storage_quota)?;
    }
    if let Some(o) = b.owner.filter(|o| !o.is_empty()) {
        st.owner = o;
    }
    save(&s, &bucket, &st).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn summary(s: &State, bucket: &str) -> Value {
    let st = Settings::load(&s.rt, bucket).await;
    let mut metadata = st.metadata.clone();
    if in_use(&s.rt, bucket).is_some() {
        metadata.insert("service".into(), "true".into());
    }
    json!({
        "bucket_name": bucket,
        "visibility": st.visibility(),
        "allowed_users": st.allowed_users,
        "owner": if st.owner.is_empty() { s.admin.user.clone() } else { st.owner.clone() },
        "metadata": metadata,
    })
}

pub async fn list(s: State) -> Result<Json<Value>, ApiError> {
    let root = s.rt.data.store();
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in &names {
        out.push(summary(&s, n).await);
    }
    Ok(Json(Value::Array(out)))
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    page: String,
}

const PAGE: usize = 1000;

pub async fn read(
    s: State,
    Path(bucket): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<Value>, ApiError> {
    bucket_dir(&s, &bucket)?;
    let root = crate::store::LocalStore::new("minio.default", s.rt.data.store());
    let after = (!p.page.is_empty()).then(|| format!("{bucket}/{}", p.page));
    // One more than a page: the walk stops there, whatever the bucket holds.
    let mut found = root
        .entries(&format!("{bucket}/"), after.as_deref(), Some(PAGE + 1))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let truncated = found.len() > PAGE;
    found.truncate(PAGE);
    let objects: Vec<Value> = found
        .iter()
        .map(|(k, st)| {
            let key = k.strip_prefix(&format!("{bucket}/")).unwrap_or(k);
            let mut o = json!({"object_name": key, "size_bytes": st.size});
            if let Some(t) = st.modified {
                o["last_modified"] = json!(humantime::format_rfc3339_seconds(t).to_string());
            }
            o
        })
        .collect();
    let next = truncated.then(|| {
        objects
            .last()
            .and_then(|o| o["object_name"].as_str())
            .unwrap_or_default()
            .to_string()
    });
    let usage = storage_usage(&s.rt, &bucket).await;
    let mut v = summary(&s, &bucket).await;
    let st = Settings::load(&s.rt, &bucket).await;
    v["returned_items"] = json!(objects.len());
    v["is_truncated"] = json!(next.is_some());
    if let Some(n) = next {
        v["next_page"] = json!(n);
    }
    v["objects"] = Value::Array(objects);
    v["storage_usage"] = json!(usage);
    v["storage_quota"] = json!(st.storage_quota.unwrap_or_default());
    Ok(Json(v))
}

pub async fn delete(s: State, Path(bucket): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let dir = bucket_dir(&s, &bucket)?;
    if let Some(user) = in_use(&s.rt, &bucket) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("bucket `{bucket}` is used by {user}: delete or change that first"),
        ));
    }
    tokio::fs::remove_dir_all(&dir).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", dir.display()),
        )
    })?;
    let b = bucket.clone();
    s.rt.journal.call(move |j| j.delete_bucket_settings(&b)).await?;
    tracing::info!(%bucket, "bucket deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PresignRequest {
    #[serde(default)]
    object_key: String,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    expires_in: i64,
    #[serde(default)]
    content_type: String,
}

/// OSCAR's bounds: 15 minutes unless asked, from 1 s to an hour.
const PRESIGN_DEFAULT_S: i64 = 900;
const PRESIGN_MAX_S: i64 = 3600;

pub async fn presign(
    s: State,
    h: HeaderMap,
    Path(bucket): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = super::body::read(&h, body, s.body_limits()).await?;
    let r: PresignRequest = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid presign request: {e}")))?;
    let key = r.object_key.trim().trim_matches('/').to_string();
    if key.is_empty() {
        return Err(ApiError::bad_request("Object key cannot be empty"));
    }
    let op = r.operation.trim().to_ascii_lowercase();
    if op != "upload" && op != "download" {
        return Err(ApiError::bad_request(format!(
            "Unsupported operation '{}'. Allowed values are 'upload' or 'download'",
            r.operation
        )));
    }
    let expires = if r.expires_in == 0 {
        PRESIGN_DEFAULT_S
    } else {
        r.expires_in
    };
    if !(1..=PRESIGN_MAX_S).contains(&expires) {
        return Err(ApiError::bad_request(format!(
            "Invalid expiration requested: {expires}. Allowed range is 1-{PRESIGN_MAX_S} seconds"
        )));
    }
    bucket_dir(&s, &bucket)?;
    let full = format!("{bucket}/{key}");
    crate::store::check_key(&full).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if op == "download" && full.starts_with(&s.rt.cfg.ingest.raw_prefix()) {
        return Err(ApiError::forbidden(
            "raw camera footage (ingest.path) is never read out",
        ));
    }
    let Some(a) = &s.s3 else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the S3 endpoint is not running (gateway.s3): there is nothing to presign for",
        ));
    };
    let host = h.get(axum::http::header::HOST).and_then(|v| v.to_str().ok());
    let provider = crate::fdl::model::MinioProvider {
        endpoint: Some(a.endpoint(host)),
        access_key: Some(a.keys.access.clone()),
        secret_key: Some(a.keys.secret.clone()),
        region: Some(a.region.clone()),
        verify: None,
    };
    let store = crate::store::S3Store::from_minio("presign".into(), &provider)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let upload = op == "upload";
    let ct = (upload && !r.content_type.is_empty()).then_some(r.content_type.as_str());
    let url = store
        .presign(&full, upload, std::time::Duration::from_secs(expires as u64), ct)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let expires_at = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(expires as u64),
    )
    .to_string();
    let mut v = json!({
        "object_key": key,
        "operation": op,
        "method": if upload { "PUT" } else { "GET" },
        "url": url,
        "expires_at": expires_at,
    });
    if let Some(ct) = ct {
        v["headers"] = json!({"Content-Type": ct});
    }
    Ok(Json(v))
}
