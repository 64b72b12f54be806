//! `POST /job/{svc}` (asynchronous) and `POST /run/{svc}` (synchronous), with the bodies the
//! FaaS Supervisor understands: a MinIO/S3 bucket event, OSCAR's delegated-event wrapper, or any
//! other body, which becomes the input file (base64-decoded when it is not JSON).

use std::io::Write;
use std::path::Path as FsPath;
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::{auth, ApiError, State};
use crate::fdl::{ProviderKind, ProviderRef};
use crate::journal::State as JobState;
use crate::store::{check_key, ObjectMeta};

enum Input {
    /// An object in a store.
    Object {
        provider: ProviderRef,
        key: String,
        etag: String,
        size: u64,
    },
    /// The body is the input.
    Body(Vec<u8>),
}

fn parse(body: &[u8]) -> Result<Input, ApiError> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: base64 (what OSCAR's clients send), else the bytes as they are.
        let text = String::from_utf8_lossy(body);
        let compact: String = text.split_whitespace().collect();
        return Ok(Input::Body(
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .unwrap_or_else(|_| body.to_vec()),
        ));
    };
    // OSCAR's delegation wrapper: {"storage_provider": "<id>", "event": "<original JSON>"}.
    if let (Some(p), Some(ev)) = (
        v.get("storage_provider").and_then(Value::as_str),
        v.get("event").and_then(Value::as_str),
    ) {
        let provider = crate::fdl::ProviderRef::parse(p)
            .ok_or_else(|| ApiError::bad_request(format!("storage_provider `{p}` is not a provider")))?;
        return match parse(ev.as_bytes())? {
            Input::Object { key, etag, size, .. } => Ok(Input::Object {
                provider,
                key,
                etag,
                size,
            }),
            body => Ok(body),
        };
    }
    let rec = &v["Records"][0];
    let source = rec["eventSource"].as_str().unwrap_or("");
    if matches!(source, "minio:s3" | "aws:s3") {
        let bucket = rec["s3"]["bucket"]["name"].as_str().unwrap_or("");
        let raw = rec["s3"]["object"]["key"].as_str().unwrap_or("");
        // The supervisor applies `unquote_plus` to the key.
        let object = percent_encoding::percent_decode_str(&raw.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let key = format!("{bucket}/{object}");
        check_key(&key).map_err(|e| ApiError::bad_request(e.to_string()))?;
        return Ok(Input::Object {
            provider: ProviderRef::new(ProviderKind::Minio, "default"),
            key,
            etag: rec["s3"]["object"]["eTag"].as_str().unwrap_or("").to_string(),
            size: rec["s3"]["object"]["size"].as_u64().unwrap_or(0),
        });
    }
    // Any other JSON is the input file itself.
    Ok(Input::Body(body.to_vec()))
}

/// What a delegating tier sends along (OSCAR's `X-Delegated-Job-ID` / `X-Delegated-From`, and
/// fogd's `X-Fogd-Input-Name` for an input sent in the body).
struct Delegated {
    job_id: Option<String>,
    from: Option<String>,
    input_name: Option<String>,
}

fn delegated(h: &HeaderMap) -> Result<Delegated, ApiError> {
    let get = |name: &str| -> Result<Option<String>, ApiError> {
        match h.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| ApiError::bad_request(format!("header {name} is not text"))),
        }
    };
    let job_id = get("x-delegated-job-id")?;
    if let Some(j) = &job_id {
        let ok = !j.is_empty()
            && j.len() <= 128
            && j.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && !j.starts_with('.');
        if !ok {
            return Err(ApiError::bad_request(format!(
                "X-Delegated-Job-ID `{j}` is not a job name (letters, digits, - _ . ; at most 128)"
            )));
        }
    }
    let input_name = get("x-fogd-input-name")?;
    if let Some(n) = &input_name {
        if n.contains('/') || n.contains('\\') || n == "." || n == ".." || n.len() > 255 {
            return Err(ApiError::bad_request(format!(
                "X-Fogd-Input-Name `{n}` is not a file name"
            )));
        }
    }
    Ok(Delegated {
        job_id,
        from: get("x-delegated-from")?,
        input_name,
    })
}

/// Checks the caller and queues the service on the request's input. Returns the invocation id.
async fn enqueue(
    s: &State,
    h: &HeaderMap,
    svc: &str,
    body: &[u8],
    source: &str,
) -> Result<crate::journal::InvocationId, ApiError> {
    s.rt.service(svc)?;
    let name = svc.to_string();
    let token = s.rt.journal.call(move |j| j.service_token(&name)).await?;
    auth::require_service(&s.admin, &token, h)?;
    let d = delegated(h)?;
    // The same delegated job sent again (the origin retried after a lost answer): one job.
    if let Some(j) = &d.job_id {
        let name = j.clone();
        if let Some(inv) = s.rt.journal.call(move |jl| jl.job(&name)).await? {
            if inv.service != svc {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("job `{j}` exists for service `{}`", inv.service),
                ));
            }
            return Ok(inv.id);
        }
    }
    let source = match &d.from {
        Some(from) => {
            tracing::debug!(service = svc, from = %from, job = d.job_id.as_deref().unwrap_or(""), "delegated job");
            "delegated"
        }
        None => source,
    };
    let job_id = d.job_id.as_deref();
    match parse(body)? {
        Input::Body(bytes) => {
            let name = d.input_name.as_deref().unwrap_or("event-file");
            Ok(s.rt.submit_bytes(svc, name, &bytes, source, job_id).await?)
        }
        Input::Object {
            provider,
            key,
            etag,
            size,
        } => {
            if provider == ProviderRef::new(ProviderKind::Minio, "default") {
                let path = s.rt.data.store_object(&key);
                if !path.is_file() {
                    return Err(ApiError::not_found(format!("no object `{key}` in minio.default")));
                }
            }
            // A redelivered event (same object and ETag) is the same invocation.
            let etag = if etag.is_empty() {
                crate::journal::random_hex(8)
            } else {
                etag
            };
            let meta = ObjectMeta {
                key,
                size,
                etag: format!("{source}:{svc}:{etag}"),
            };
            match s.rt.enqueue(&provider, &meta, source, svc, job_id).await? {
                Some(id) => Ok(id),
                None => {
                    let Some(name) = job_id.map(str::to_string) else {
                        return Ok(Default::default());
                    };
                    let inv = s.rt.journal.call(move |j| j.job(&name)).await.ok().flatten();
                    Ok(inv.map(|i| i.id).unwrap_or_default())
                }
            }
        }
    }
}

pub async fn job(
    s: State,
    h: HeaderMap,
    Path(svc): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let id = enqueue(&s, &h, &svc, &body, "job").await?;
    let uuid =
        s.rt.journal
            .call(move |j| j.invocation(id))
            .await?
            .map(|i| i.uuid)
            .unwrap_or_default();
    s.rt.metrics.observe_request("/job", started.elapsed());
    Ok((StatusCode::CREATED, Json(json!({ "jobName": uuid }))))
}

pub async fn run(
    s: State,
    h: HeaderMap,
    Path(svc): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let id = enqueue(&s, &h, &svc, &body, "run").await?;
    let service = s.rt.service(&svc)?;
    let limit = service.timeout_s.map_or(s.rt.cfg.timeout, Duration::from_secs) + Duration::from_secs(30);
    // Woken when an invocation of this node finishes (its id on `finished`); the journal is
    // read only then, or once a second (a job finished by another process, a lagging channel).
    let mut finished = s.rt.finished.subscribe();
    let inv = loop {
        match s.rt.journal.call(move |j| j.invocation(id)).await? {
            Some(i) if i.state.is_final() => break i,
            Some(_) if started.elapsed() > limit => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!("job {id} still running after {limit:?}"),
                ))
            }
            Some(_) => {
                let wait = async {
                    loop {
                        match finished.recv().await {
                            Ok(done) if done != id => continue,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                std::future::pending::<()>().await
                            }
                            _ => return,
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
            }
            None => return Err(ApiError::new(StatusCode::GONE, format!("job {id} was deleted"))),
        }
    };
    let dir = s.rt.work_dir(&inv.uuid);
    let out = dir.join("output");
    let body = tokio::task::spawn_blocking({
        let (out, log) = (out.clone(), s.rt.log_path(&svc, &inv.uuid));
        move || response_body(&out, &log)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    s.rt.metrics.observe_request("/run", started.elapsed());
    let status = if inv.state == JobState::Succeeded {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok((status, body))
}

/// The FaaS Supervisor's sync answer: one output file as base64; several as a base64 zip; none:
/// the log.
fn response_body(out: &FsPath, log: &FsPath) -> std::io::Result<String> {
    let files = crate::exec::outputs::collect(out, u64::MAX)
        .map(|(f, _)| f)
        .unwrap_or_default();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match files.as_slice() {
        [] => Ok(std::fs::read_to_string(log).unwrap_or_default()),
        [one] => Ok(b64(&std::fs::read(&one.path)?)),
        many => {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default();
            for f in many {
                zip.start_file(f.rel.as_str(), opts)
                    .map_err(std::io::Error::other)?;
                zip.write_all(&std::fs::read(&f.path)?)?;
            }
            let cursor = zip.finish().map_err(std::io::Error::other)?;
            Ok(b64(&cursor.into_inner()))
        }
    }
}
