//! What stands between the network and the handlers: who may call which path (checked before a
//! byte of the body is read), how many connections are open (in all and per address), and the
//! open-files limit those connections draw on.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::auth::{self, Credentials};
use super::{ApiError, State};

/// Who a path needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    Nobody,
    Admin,
    /// The service's bearer token (or the admin).
    Service(String),
    /// The kube Job's own token (its supervisor).
    Job(String),
}

fn need(path: &str) -> Need {
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    match segs.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["health"] | ["health", "live"] | ["metrics"] => Need::Nobody,
        ["job" | "run", svc] => Need::Service(svc.to_string()),
        ["fogd", "jobs", job, ..] => Need::Job(job.to_string()),
        _ => Need::Admin,
    }
}

/// The route layer: answers 401/403/404/429 before any handler (and so any body read) runs.
pub async fn gate(s: State, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let checked = match need(req.uri().path()) {
        Need::Nobody => Ok(()),
        Need::Admin => auth::require_admin(&s.admin, peer, req.headers()).await,
        Need::Service(svc) => service(&s, peer, &svc, req.headers()).await,
        Need::Job(job) => job_token(&s, &job, req.headers()),
    };
    match checked {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let retry = e.status == StatusCode::TOO_MANY_REQUESTS;
            let mut r = e.into_response();
            if retry {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            r
        }
    }
}

async fn service(
    s: &State,
    peer: Option<IpAddr>,
    svc: &str,
    h: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    s.rt.service(svc)?;
    let name = svc.to_string();
    let token = s.rt.journal.call(move |j| j.service_token(&name)).await?;
    auth::require_service(&s.admin, peer, &token, h).await
}

fn job_token(s: &State, job: &str, h: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Credentials::Bearer(given) = auth::credentials(h) else {
        return Err(ApiError::unauthorized());
    };
    let want = crate::exec::kube::job_token(&s.rt.cfg.data_dir, job)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if bool::from(given.as_bytes().ct_eq(want.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::forbidden("wrong token for this job"))
    }
}

/// Raises the soft open-files limit to the hard one (systemd starts services at 1024) and
/// returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// Counts open connections, in all and per address.
#[derive(Clone)]
pub struct Limits {
    inner: Arc<LimitsInner>,
}

struct LimitsInner {
    max: usize,
    per_ip: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Limits {
    pub fn new(max: usize, per_ip: usize) -> Limits {
        Limits {
            inner: Arc::new(LimitsInner {
                max: max.max(1),
                per_ip: per_ip.max(1),
                open: Mutex::new((0, HashMap::new())),
            }),
        }
    }

    /// A slot for a connection from `ip`, held until the returned value is dropped.
    fn admit(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        let from_ip = open.1.get(&ip).copied().unwrap_or(0);
        if open.0 >= self.inner.max || from_ip >= self.inner.per_ip {
            return None;
        }
        open.0 += 1;
        *open.1.entry(ip).or_insert(0) += 1;
        Some(Slot {
            limits: self.clone(),
            ip,
        })
    }
}

struct Slot {
    limits: Limits,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.limits.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.ip);
            }
        }
    }
}

/// The acceptor that closes a connection over the limits at once (before TLS, before HTTP).
#[derive(Clone)]
pub struct LimitAcceptor<A> {
    pub limits: Limits,
    pub inner: A,
}

impl<A, S> axum_server::accept::Accept<tokio::net::TcpStream, S> for LimitAcceptor<A>
where
    A: axum_server::accept::Accept<Counted, S> + Clone + Send + 'static,
    A::Future: Send,
    S: Send + 'static,
{
    type Stream = A::Stream;
    type Service = A::Service;
    type Future = Pin<Box<dyn std::future::Future<Output = std::io::Result<(A::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let ip = stream
            .peer_addr()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let slot = self.limits.admit(ip);
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(slot) = slot else {
                tracing::debug!(%ip, "connection over the gateway's limits closed");
                return Err(std::io::Error::other("over the connection limits"));
            };
            inner.accept(Counted { stream, _slot: slot }, service).await
        })
    }
}

/// A TCP stream that holds its connection slot while open.
pub struct Counted {
    stream: tokio::net::TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_who_may_call_them() {
        assert_eq!(need("/health"), Need::Nobody);
        assert_eq!(need("/health/live"), Need::Nobody);
        assert_eq!(need("/metrics"), Need::Nobody);
        assert_eq!(need("/job/cowsay"), Need::Service("cowsay".into()));
        assert_eq!(need("/run/a%20b"), Need::Service("a b".into()));
        assert_eq!(need("/fogd/jobs/j1/outputs/x/y"), Need::Job("j1".into()));
        for p in [
            "/system/services",
            "/system/logs/x",
            "/job",
            "/job/a/b",
            "/health/x",
            "/",
        ] {
            assert_eq!(need(p), Need::Admin, "{p}");
        }
    }

    #[test]
    fn slots_are_bounded_in_all_and_per_address_and_given_back() {
        let l = Limits::new(3, 2);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = l.admit(a).expect("a1");
        let _a2 = l.admit(a).expect("a2");
        assert!(l.admit(a).is_none(), "per address");
        let _b1 = l.admit(b).expect("b1");
        assert!(l.admit(b).is_none(), "in all");
        drop(a1);
        assert!(l.admit(b).is_some(), "a closed connection gives its slot back");
    }
}
