//! The status page (`/ui/`, behind the admin's credentials like the rest of the API): one HTML
//! page, its script and style served from the binary (no CDN: edge boxes are often offline), and
//! the JSON it reads: `/fogd/status`, a camera's history and latest anonymised snapshot, a job's
//! log tail, and `/fogd/events` (server-sent events) for live updates. Only anonymised frames are
//! ever served: a snapshot is a file fogd kept from the anonymiser's outputs
//! (`exec/outputs.rs`), never a path into the store.

use std::sync::Arc;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{ApiError, AppState, State};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// The page may load nothing from elsewhere, and no other site may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { page("text/html; charset=utf-8", INDEX) }))
        .route(
            "/ui/app.js",
            get(|| async { page("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route("/fogd/status", get(status))
        .route("/fogd/events", get(events))
        .route("/fogd/cameras/{camera}/snapshot.jpg", get(snapshot))
        .route("/fogd/cameras/{camera}/history", get(history))
        .route("/fogd/logs/{svc}/{job}", get(log_tail))
}

fn page(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

fn no_store(v: Value) -> Response {
    (
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(v),
    )
        .into_response()
}

/// Everything the page shows, in one document.
async fn status(s: State) -> Result<Response, ApiError> {
    let (rt, members) = (s.rt.clone(), s.members.clone());
    let doc = crate::journal::boundary::offload(move || status_doc(&rt, &members))
        .await
        .ok_or_else(|| ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "fogd is stopping"))??;
    Ok(no_store(doc))
}

fn status_doc(
    rt: &crate::runtime::Runtime,
    members: &crate::ingest::status::Members,
) -> Result<Value, ApiError> {
    let j = &rt.journal;
    // One count of the invocations serves the stats and the services' table.
    let counts = j.counts_where()?;
    let mut doc = crate::ingest::status::stats_from(rt, members, &counts);
    let mut problems = Vec::new();
    if let Err(e) = rt.check_disk() {
        problems.push(e.to_string());
    }
    if rt.cfg.mqtt.is_some() && !crate::ingest::status::connected() {
        problems.push("not connected to the MQTT broker".to_string());
    }
    let counters: std::collections::HashMap<String, u64> = j.counters()?.into_iter().collect();
    if let Some(&left) = counters.get("privacy_faces_left").filter(|n| **n > 0) {
        let audited = counters.get("privacy_audited_frames").copied().unwrap_or(0);
        problems.push(format!(
            "privacy audit: {left} face(s) found after redaction in {audited} audited frame(s); see the log (`privacy audit`)"
        ));
    }
    let links = rt.links.snapshot();
    for (p, l) in &links {
        if !l.online {
            problems.push(format!(
                "store {p} offline: {}",
                l.last_error.as_deref().unwrap_or_default()
            ));
        }
    }
    let mut services: std::collections::BTreeMap<String, serde_json::Map<String, Value>> = Default::default();
    for svc in rt.workflow().services.iter() {
        services.entry(svc.name.clone()).or_default();
    }
    for (svc, state, _, n) in counts {
        let by_state = services.entry(svc).or_default();
        let sum = by_state.get(state.as_str()).and_then(Value::as_u64).unwrap_or(0) + n;
        by_state.insert(state.as_str().into(), sum.into());
    }
    let jobs: Vec<Value> = j
        .invocations(None, 50)?
        .into_iter()
        .map(|i| {
            json!({"service": i.service, "job": i.uuid, "state": i.state.as_str(), "key": i.key,
                   "created_ms": i.created_ms, "finished_ms": i.finished_ms, "exit_code": i.exit_code,
                   "error": i.error, "ran_on": i.ran_on.unwrap_or_else(|| "local".into())})
        })
        .collect();
    let cameras = serde_json::to_value(j.cameras()?).unwrap_or_default();
    // What waits in the outbox (the newest), with why it has not gone yet: the store's own error
    // is given once, with the store, not again with each of its objects.
    let waiting: Vec<Value> = j
        .outbox_list(Some("pending"), 20)?
        .into_iter()
        .map(|o| {
            let store_offline = links
                .get(&o.provider)
                .is_some_and(|l| !l.online && l.last_error.is_some() && l.last_error == o.error);
            let error = if store_offline { None } else { o.error };
            json!({"provider": o.provider, "key": o.key, "size": o.size, "attempts": o.attempts,
                   "error": error, "store_offline": store_offline, "next_try_ms": o.next_try_ms})
        })
        .collect();
    if let Some(m) = doc.as_object_mut() {
        m.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        m.insert(
            "health".into(),
            json!({"ok": problems.is_empty(), "problems": problems}),
        );
        m.insert(
            "services".into(),
            Value::Array(
                services
                    .into_iter()
                    .map(|(name, states)| json!({"service": name, "states": states}))
                    .collect(),
            ),
        );
        m.insert("jobs".into(), Value::Array(jobs));
        m.insert("cameras".into(), cameras);
        m.insert("outbox_waiting".into(), Value::Array(waiting));
    }
    Ok(doc)
}

pub(super) fn checked_camera(camera: &str) -> Result<(), ApiError> {
    match crate::config::camera_problem(camera) {
        Some(why) => Err(ApiError::bad_request(format!("bad camera name: {why}"))),
        None => Ok(()),
    }
}

/// The camera's latest anonymised frame (kept by fogd from the anonymiser's outputs).
async fn snapshot(s: State, Path(camera): Path<String>) -> Result<Response, ApiError> {
    checked_camera(&camera)?;
    let path = s.rt.data.snapshot(&camera);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found(format!("no snapshot of camera `{camera}` yet")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response())
}

#[derive(serde::Deserialize)]
struct HistoryQuery {
    hours: Option<f64>,
}

/// The camera's verdicts over the last `hours` (default 6, at most 7 days), at most 2,000 points.
async fn history(
    s: State,
    Path(camera): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Response, ApiError> {
    checked_camera(&camera)?;
    let hours = q.hours.unwrap_or(6.0);
    if !(hours > 0.0 && hours <= 168.0) {
        return Err(ApiError::bad_request(
            "hours: a number of hours above 0, at most 168",
        ));
    }
    let since = crate::journal::now_ms() - (hours * 3_600_000.0) as i64;
    let points =
        s.rt.journal
            .call(move |j| j.camera_history(&camera, since, 2000))
            .await?;
    Ok(no_store(json!({"hours": hours, "points": points})))
}

#[derive(serde::Deserialize)]
struct TailQuery {
    bytes: Option<u64>,
}

/// The end of a job's log (default 64 KiB, at most 1 MiB): a long log is not sent whole.
async fn log_tail(
    s: State,
    Path((svc, job)): Path<(String, String)>,
    Query(q): Query<TailQuery>,
) -> Result<Response, ApiError> {
    use std::io::{Read, Seek, SeekFrom};
    let inv =
        s.rt.journal
            .call(move |j| j.job(&job))
            .await?
            .filter(|i| i.service == svc)
            .ok_or_else(|| ApiError::not_found("no such job of this service"))?;
    let path = s.rt.log_path(&svc, &inv.uuid);
    let max = q.bytes.unwrap_or(64 << 10).min(1 << 20);
    let text = tokio::task::spawn_blocking(move || -> std::io::Result<(String, bool)> {
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((String::new(), false)),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let cut = len > max;
        f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf)?;
        Ok((String::from_utf8_lossy(&buf).into_owned(), cut))
    })
    .await
    .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(no_store(
        json!({"log": text.0, "truncated": text.1, "state": inv.state.as_str()}),
    ))
}

/// Node events as server-sent events (`event: <type>`), a keep-alive comment every 15 s.
async fn events(s: State) -> impl IntoResponse {
    let rx = s.rt.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(v) => {
                    let kind = v
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("event")
                        .to_string();
                    let ev = Event::default().event(kind).data(v.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(ev), rx));
                }
                // A slow page missed some: it refetches the status anyway.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}
