//! The gateway: an OSCAR-compatible REST API (same paths, methods, JSON shapes and status codes),
//! and `/metrics` for Prometheus. It only reads and writes through the runtime and the journal.

pub mod auth;
mod body;
mod buckets;
mod federation;
pub mod guard;
mod invoke;
mod logs;
pub mod s3;
mod services;
mod supervisor;
mod system;
mod ui;
mod usage;
mod zones;

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::runtime::{Runtime, RuntimeError};

pub struct AppState {
    pub rt: Arc<Runtime>,
    pub admin: auth::Admin,
    /// The delegation members' health, for the status page.
    pub members: crate::ingest::status::Members,
    /// When the scheduler's loop last turned (ms since the epoch), for `/health/live`.
    pub heartbeat: Arc<std::sync::atomic::AtomicI64>,
    /// The S3 endpoint, when it runs (announced by `/system/config`).
    pub s3: Option<s3::Announce>,
}

pub type State = axum::extract::State<Arc<AppState>>;

impl AppState {
    fn body_limits(&self) -> body::Limits {
        let g = &self.rt.cfg.gateway;
        body::Limits {
            max: g.max_body_bytes as u64,
            idle: g.body_timeout,
        }
    }
}

/// An error answered as `{"error": "..."}` with its status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn unauthorized() -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "credentials required")
    }
    pub fn forbidden(m: &str) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(serde_json::json!({ "error": self.message }));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"fogd\""),
            );
        }
        r
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> ApiError {
        let status = match &e {
            RuntimeError::UnknownService(_) => StatusCode::NOT_FOUND,
            RuntimeError::LowDisk { .. } | RuntimeError::LowInodes { .. } => StatusCode::INSUFFICIENT_STORAGE,
            RuntimeError::Store(crate::store::StoreError::InvalidKey { .. }) => StatusCode::BAD_REQUEST,
            RuntimeError::Store(crate::store::StoreError::DiskFull { .. }) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<crate::journal::JournalError> for ApiError {
    fn from(e: crate::journal::JournalError) -> ApiError {
        RuntimeError::from(e).into()
    }
}

/// A loop stalled this long means a stuck node (it turns every second or on every event).
const STALLED_MS: i64 = 60_000;

/// Liveness for Kubernetes: 200 while the scheduler's loop turns, 503 once it has stalled (the
/// API answering alone says nothing of the work being done).
async fn live(s: State) -> (StatusCode, String) {
    let age = crate::journal::now_ms() - s.heartbeat.load(std::sync::atomic::Ordering::Relaxed);
    if age < STALLED_MS {
        (StatusCode::OK, "Ok".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the scheduler's loop has not turned for {} s", age / 1000),
        )
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "Ok" }))
        .route("/health/live", get(live))
        .route("/system/info", get(system::info))
        .route("/system/config", get(system::config))
        .route("/system/status", get(system::status))
        .route(
            "/system/services",
            get(services::list).post(services::create).put(services::update),
        )
        .route(
            "/system/services/{svc}",
            get(services::read).delete(services::delete),
        )
        .route(
            "/system/buckets",
            get(buckets::list).post(buckets::create).put(buckets::update),
        )
        .route(
            "/system/buckets/{bucket}",
            get(buckets::read).delete(buckets::delete),
        )
        .route("/system/buckets/{bucket}/presign", post(buckets::presign))
        .route("/system/logs", get(logs::node))
        .route(
            "/system/federation/{svc}",
            get(federation::read)
                .post(federation::change)
                .put(federation::change)
                .delete(federation::change),
        )
        .route("/system/metrics", get(usage::summary))
        .route("/system/metrics/{svc}", get(usage::service))
        .route("/system/services/{svc}/deployment", get(usage::deployment))
        .route(
            "/system/services/{svc}/deployment/logs",
            get(usage::deployment_logs),
        )
        .route("/system/logs/{svc}", get(logs::list).delete(logs::delete_all))
        .route("/system/logs/{svc}/{job}", get(logs::read).delete(logs::delete))
        .route("/job/{svc}", post(invoke::job))
        .route("/run/{svc}", post(invoke::run))
        .route("/metrics", get(metrics))
        .merge(ui::routes())
        .route(
            "/fogd/cameras/{camera}/zones",
            get(zones::read).put(zones::put).delete(zones::delete),
        )
        .route("/fogd/jobs/{job}/input", get(supervisor::input))
        .route(
            "/fogd/jobs/{job}/outputs/{*rel}",
            axum::routing::put(supervisor::output),
        )
        // Routes only: an unknown path is 404 for anyone, as in OSCAR.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard::gate))
        .fallback(trailing_slash)
        .with_state(state)
}

/// An unknown path: 404, but for a known one with a `/` added (oscar-python asks for
/// `/system/config/`), sent to the path without it as OSCAR's router does (301 for GET and HEAD,
/// 307 otherwise, which keeps the method and body).
async fn trailing_slash(uri: axum::http::Uri, method: axum::http::Method) -> Response {
    let path = uri.path();
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() < path.len() && !trimmed.is_empty() {
        let to = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let status = if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        if let Ok(loc) = header::HeaderValue::from_str(&to) {
            return (status, [(header::LOCATION, loc)]).into_response();
        }
    }
    ApiError::not_found("no such path in the OSCAR API").into_response()
}

/// Prometheus' scrape: not authenticated (the gateway listens on loopback unless told otherwise).
/// OpenMetrics to a scraper that asks for it (Prometheus does), the text format 0.0.4 otherwise.
async fn metrics(s: State, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let rt = s.rt.clone();
    // The scrape reads the journal: off the async workers.
    let text = crate::journal::boundary::offload(move || {
        let inputs = crate::metrics::Inputs {
            journal: &rt.journal,
            data: &rt.data,
            links: rt.links.snapshot(),
            mqtt: rt.cfg.mqtt.as_ref().map(|_| {
                (
                    crate::ingest::status::connected(),
                    crate::ingest::status::connects(),
                )
            }),
        };
        rt.metrics.render(&inputs, openmetrics)
    })
    .await
    .unwrap_or_default();
    let kind = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, kind)], text)
}

/// Serves (HTTPS when `tls` is given) until `shutdown` completes; running requests finish.
pub async fn serve(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let g = state.rt.cfg.gateway.clone();
    serve_app(router(state), &g, listener, tls, shutdown).await
}

/// Serves `app` as the gateway serves everything (the API, the S3 endpoint). HTTP/1.1 only
/// (what OSCAR's and S3's clients speak), with every connection bounded: a slot among
/// `max_connections` (at most half the open-files limit) and `max_connections_per_ip`, and
/// `header_timeout` for each request head, the first and every keep-alive one.
pub async fn serve_app(
    app: Router,
    g: &crate::config::GatewayConfig,
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let nofile = guard::raise_nofile_limit();
    let max = g.max_connections.min((nofile / 2) as usize);
    if max < g.max_connections {
        tracing::warn!(
            nofile,
            max,
            "gateway.max_connections held to half the open-files limit (raise LimitNOFILE)"
        );
    }
    let limits = guard::Limits::new(max, g.max_connections_per_ip);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    listener.set_nonblocking(true)?;
    let mut server = axum_server::from_tcp(listener)?
        .handle(handle)
        .http1_only()
        .first_request_timeout(g.header_timeout);
    server
        .http_builder()
        .http1()
        .header_read_timeout(g.header_timeout);
    match tls {
        Some(cfg) => {
            let tls = axum_server::tls_rustls::RustlsAcceptor::new(cfg)
                .acceptor(axum_server::accept::DefaultAcceptor::new())
                .handshake_timeout(g.header_timeout);
            server
                .acceptor(guard::LimitAcceptor { limits, inner: tls })
                .serve(app)
                .await
        }
        None => {
            server
                .acceptor(guard::LimitAcceptor {
                    limits,
                    inner: axum_server::accept::DefaultAcceptor::new(),
                })
                .serve(app)
                .await
        }
    }
}
