//! `POST /job/{svc}` (asynchronous) and `POST /run/{svc}` (synchronous), with the bodies the
//! FaaS Supervisor understands: a MinIO/S3 bucket event, OSCAR's delegated-event wrapper, or any
//! other body, which becomes the input file (base64-decoded when it is not JSON).

use std::io::{Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde_json::{json, Value};

use super::body::TempFile;
use super::{ApiError, State};
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
    /// The body (base64-decoded when it was base64) is the input, in this file.
    File(TempFile),
}

/// Bodies up to this size are looked at as a whole (events are small); larger ones are inputs.
const EVENT_MAX: u64 = 1 << 20;

/// What the spooled body is: an event, or the input (base64-decoded into `decoded` when it is
/// base64), without holding a large body in memory.
fn classify(spooled: TempFile, decoded: PathBuf) -> Result<Input, ApiError> {
    let io = |p: &FsPath, e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", p.display()))
    };
    let size = std::fs::metadata(&spooled.0)
        .map_err(|e| io(&spooled.0, e))?
        .len();
    if size <= EVENT_MAX {
        let bytes = std::fs::read(&spooled.0).map_err(|e| io(&spooled.0, e))?;
        return parse(&bytes);
    }
    let decoded = TempFile(decoded);
    let ok = (|| -> std::io::Result<bool> {
        let src = std::fs::File::open(&spooled.0)?;
        let mut head = [0u8; 4096];
        let n = (&src).take(4096).read(&mut head)?;
        let looks_base64 = head[..n]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b) || b.is_ascii_whitespace());
        if !looks_base64 {
            return Ok(false);
        }
        let src = std::fs::File::open(&spooled.0)?;
        let engine = base64::engine::general_purpose::STANDARD;
        let mut reader =
            base64::read::DecoderReader::new(NoWhitespace(std::io::BufReader::new(src)), &engine);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&decoded.0)?);
        match std::io::copy(&mut reader, &mut out) {
            Ok(_) => {
                out.flush()?;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(false),
            Err(e) => Err(e),
        }
    })()
    .map_err(|e| {
        let status = if crate::paths::is_disk_full(&e) {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, format!("{}: {e}", decoded.0.display()))
    })?;
    Ok(Input::File(if ok { decoded } else { spooled }))
}

/// Base64 as clients send it, wrapped in lines: the whitespace is not data.
struct NoWhitespace<R>(R);

impl<R: Read> Read for NoWhitespace<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut w = 0;
            for i in 0..n {
                if !buf[i].is_ascii_whitespace() {
                    buf[w] = buf[i];
                    w += 1;
                }
            }
            if w > 0 {
                return Ok(w);
            }
        }
    }
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
            other => Ok(other),
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

/// Queues the service on the request's input (the caller was checked by the gate). Returns the
/// invocation id.
async fn enqueue(
    s: &State,
    h: &HeaderMap,
    svc: &str,
    body: Body,
    source: &str,
) -> Result<crate::journal::InvocationId, ApiError> {
    s.rt.service(svc)?;
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
    s.rt.check_disk()?;
    let tag = uuid::Uuid::new_v4().to_string();
    let spooled = super::body::spool(h, body, &s.rt.data.upload_tmp(&tag), s.body_limits()).await?;
    let decoded = s.rt.data.upload_tmp(&format!("{tag}.decoded"));
    let input = tokio::task::spawn_blocking(move || classify(spooled, decoded))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let name = d.input_name.as_deref().unwrap_or("event-file");
    match input {
        Input::Body(bytes) => Ok(s.rt.submit_bytes(svc, name, &bytes, source, job_id).await?),
        Input::File(file) => Ok(s.rt.submit(svc, name, &file.0, source, job_id).await?),
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
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let id = enqueue(&s, &h, &svc, body, "job").await?;
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
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let started = Instant::now();
    let id = enqueue(&s, &h, &svc, body, "run").await?;
    // Until the answer is handed over, a caller that goes away (the future is dropped) leaves
    // the invocation's folder to this guard: removed once the invocation ends, not kept for the
    // housekeeping's ten minutes.
    let mut abandoned = Abandoned {
        rt: Some(s.rt.clone()),
        id,
    };
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
    let log = s.rt.log_path(&svc, &inv.uuid);
    // The answer takes the folder over (and removes it once sent).
    abandoned.rt = None;
    s.rt.metrics.observe_request("/run", started.elapsed());
    let status = if inv.state == JobState::Succeeded {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Ok((status, response_body(dir, log)))
}

/// The folder of a `/run` whose caller went away before its answer.
struct Abandoned {
    rt: Option<std::sync::Arc<crate::runtime::Runtime>>,
    id: crate::journal::InvocationId,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let (Some(rt), id) = (self.rt.take(), self.id) else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(async move {
            // Polled, not followed: a caller gone is rare, and the invocation is bounded by its
            // timeout (the housekeeping sweep remains the backstop).
            for _ in 0..24 * 3600 {
                match rt.journal.call(move |j| j.invocation(id)).await {
                    Ok(Some(inv)) if inv.state.is_final() => {
                        let dir = rt.work_dir(&inv.uuid);
                        if tokio::fs::remove_dir_all(&dir).await.is_ok() {
                            tracing::info!(job = %inv.uuid, "the /run caller went away: its folder removed");
                        }
                        return;
                    }
                    Ok(Some(_)) => tokio::time::sleep(Duration::from_secs(1)).await,
                    _ => return,
                }
            }
        });
    }
}

/// Base64 is written in chunks of this many input bytes (a multiple of 3: no padding between).
const ENCODE_CHUNK: usize = 3 << 18;

/// The FaaS Supervisor's sync answer, streamed: one output file as base64; several as a base64
/// zip; none: the log. The work folder is removed once it is sent (or the client is gone).
fn response_body(dir: PathBuf, log: PathBuf) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = send_response(&dir, &log, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

fn send_response(
    dir: &FsPath,
    log: &FsPath,
    tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
) -> std::io::Result<()> {
    let files = crate::exec::outputs::collect(&dir.join("output"), u64::MAX)
        .map(|(f, _)| f)
        .unwrap_or_default();
    let send = |b: Bytes| {
        tx.blocking_send(Ok(b))
            .map_err(|_| std::io::Error::other("client gone"))
    };
    match files.as_slice() {
        [] => send(Bytes::from(std::fs::read(log).unwrap_or_default())),
        [one] => send_base64(&one.path, send),
        many => {
            let zip_path = dir.join("response.zip");
            let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_path)?);
            let opts = zip::write::SimpleFileOptions::default().large_file(true);
            for f in many {
                zip.start_file(f.rel.as_str(), opts)
                    .map_err(std::io::Error::other)?;
                std::io::copy(&mut std::fs::File::open(&f.path)?, &mut zip)?;
            }
            zip.finish().map_err(std::io::Error::other)?;
            send_base64(&zip_path, send)
        }
    }
}

fn send_base64(path: &FsPath, send: impl Fn(Bytes) -> std::io::Result<()>) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; ENCODE_CHUNK];
    loop {
        // Fill the chunk whole, so that only the last one is padded.
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            return Ok(());
        }
        send(Bytes::from(
            base64::engine::general_purpose::STANDARD.encode(&buf[..n]),
        ))?;
        if n < buf.len() {
            return Ok(());
        }
    }
}
