//! What stands between the network and s3s on the S3 port, as `gateway::guard` and
//! `gateway::body` stand before the API: every request is judged on its head before a byte of
//! its body is read, and every body is read under an idle timeout and a size bound.
//!
//! - A browser form upload (POST object) is refused: s3s reads the whole form into memory to
//!   find its signature, so an anonymous client could fill the node's memory.
//! - A request with a body must name a known access key (the admin's or a service's); s3s then
//!   checks the signature on the head, before the body.
//! - A query-signed (presigned) request may carry no `x-amz-*` header it did not sign, as AWS
//!   refuses them: a presigned upload URL plus an added `x-amz-copy-source` would otherwise
//!   copy any object into the URL's key.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body::{Body, Frame, SizeHint};

/// S3's bound for one PUT (a part or an object).
pub const MAX_PUT_BYTES: u64 = 5 << 30;

/// Why a request is turned away before s3s sees it, answered as S3 answers errors.
#[derive(Debug)]
pub struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: &str) -> Refused {
    Refused {
        status,
        code,
        message: message.to_string(),
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let xml =
            format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message></Error>",
            self.code,
            self.message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
        );
        // The body was not read: the connection is not reused.
        (
            self.status,
            [("content-type", "application/xml"), ("connection", "close")],
            xml,
        )
            .into_response()
    }
}

/// The access key a request names (SigV4 or SigV2, in its headers or its query), if any.
pub fn access_key(h: &HeaderMap, query: &str) -> Option<String> {
    if let Some(auth) = h.get("authorization").and_then(|v| v.to_str().ok()) {
        if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") {
            let cred = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))?;
            return cred.split('/').next().map(str::to_string);
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next().map(str::to_string);
        }
        return None;
    }
    query_param(query, "X-Amz-Credential")
        .and_then(|c| c.split('/').next().map(str::to_string))
        .or_else(|| query_param(query, "AWSAccessKeyId"))
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Does the request carry a body (a declared length above zero, or a chunked one)?
pub fn has_body(h: &HeaderMap) -> bool {
    declared_length(h).is_some_and(|n| n > 0) || h.contains_key("transfer-encoding")
}

/// The body's length the head declares (`Content-Length`), if it declares one.
fn declared_length(h: &HeaderMap) -> Option<u64> {
    h.get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// Judges a request on its head. `known` says whether an access key is the admin's or a
/// service's.
pub fn admit(
    method: &Method,
    h: &HeaderMap,
    query: &str,
    known: impl Fn(&str) -> bool,
) -> Result<(), Refused> {
    let form = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("multipart/form-data"));
    if *method == Method::POST && form {
        return Err(refuse(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "browser form uploads (POST object) are not served: PUT the object with signed requests",
        ));
    }
    if declared_length(h).is_some_and(|n| n > MAX_PUT_BYTES) {
        // As AWS answers it, before a byte of the body is read.
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size (5 GiB for one PUT)",
        ));
    }
    if has_body(h) && !access_key(h, query).is_some_and(|k| known(&k)) {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "a request with a body must be signed with the keys that /system/config gives (or a service's name and token)",
        ));
    }
    if let Some(signed) = query_param(query, "X-Amz-SignedHeaders") {
        let signed: Vec<String> = signed.split(';').map(|s| s.trim().to_ascii_lowercase()).collect();
        let unsigned: Vec<&str> = h
            .keys()
            .map(|k| k.as_str())
            .filter(|k| k.starts_with("x-amz-") && !signed.iter().any(|s| s == k))
            .collect();
        if !unsigned.is_empty() {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                &format!(
                    "There were headers present in the request which were not signed: {}",
                    unsigned.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A request body read under an idle timeout (nothing for `idle`: an error, and the request
/// ends) and a size bound. Its length hint is the inner body's, as s3s reads it.
pub struct Guarded<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    seen: u64,
    max: u64,
}

impl<B> Guarded<B> {
    pub fn new(inner: B, idle: Duration, max: u64) -> Guarded<B> {
        Guarded {
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            seen: 0,
            max,
        }
    }
}

impl<B> Body for Guarded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.seen += d.len() as u64;
                    if this.seen > this.max {
                        return Poll::Ready(Some(Err(std::io::Error::other(format!(
                            "request body over {} bytes",
                            this.max
                        )))));
                    }
                }
                let next = tokio::time::Instant::now() + this.idle;
                this.sleep.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("request body stalled for {:?} (gateway.body_timeout)", this.idle),
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn heads_are_judged_before_any_body() {
        let known = |k: &str| k == "admin" || k == "svc";
        let form = headers(&[
            ("content-type", "multipart/form-data; boundary=x"),
            ("content-length", "100"),
        ]);
        assert!(admit(&Method::POST, &form, "", known).is_err(), "form upload");
        let anon = headers(&[("content-length", "10")]);
        assert!(admit(&Method::PUT, &anon, "", known).is_err(), "anonymous body");
        let stranger = headers(&[
            ("content-length", "10"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=nobody/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"),
        ]);
        assert!(admit(&Method::PUT, &stranger, "", known).is_err(), "unknown key");
        let svc = headers(&[
            ("content-length", "10"),
            ("authorization", "AWS4-HMAC-SHA256 Credential=svc/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x"),
        ]);
        assert!(admit(&Method::PUT, &svc, "", known).is_ok());
        let mut huge = svc.clone();
        huge.insert(
            "content-length",
            (MAX_PUT_BYTES + 1).to_string().parse().expect("header"),
        );
        let e = admit(&Method::PUT, &huge, "", known).expect_err("over 5 GiB");
        assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
        assert!(
            admit(&Method::GET, &headers(&[]), "", known).is_ok(),
            "no body: s3s decides"
        );
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=admin%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-SignedHeaders=host&X-Amz-Signature=x";
        let smuggled = headers(&[("content-length", "0"), ("x-amz-copy-source", "/private/secret")]);
        let e = admit(&Method::PUT, &smuggled, q, known).expect_err("unsigned x-amz header");
        assert_eq!(e.into_response().status(), StatusCode::FORBIDDEN);
        assert!(admit(&Method::PUT, &headers(&[("content-length", "3")]), q, known).is_ok());
        assert_eq!(
            access_key(&headers(&[("authorization", "AWS svc:sig")]), "").as_deref(),
            Some("svc")
        );
        assert_eq!(
            access_key(&headers(&[]), "AWSAccessKeyId=admin&Signature=x").as_deref(),
            Some("admin")
        );
    }

    #[tokio::test]
    async fn a_stalled_body_ends_and_a_large_one_is_cut() {
        use http_body_util::BodyExt;
        let (tx, rx) = futures_channel_like();
        let body = axum::body::Body::from_stream(rx);
        let mut g = Guarded::new(body, Duration::from_millis(50), 8);
        tx.try_send(Ok(Bytes::from_static(b"1234"))).expect("send");
        assert!(g.frame().await.expect("frame").is_ok());
        // Nothing more: the idle timeout ends it.
        let e = g.frame().await.expect("frame").expect_err("stalled");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        let body = axum::body::Body::from(vec![0u8; 16]);
        let mut g = Guarded::new(body, Duration::from_secs(5), 8);
        assert!(g.frame().await.expect("frame").is_err(), "over the bound");
        drop(tx);
    }

    type Item = Result<Bytes, std::io::Error>;
    fn futures_channel_like() -> (
        tokio::sync::mpsc::Sender<Item>,
        impl futures_util::Stream<Item = Item> + Send + 'static,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let s = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) });
        (tx, s)
    }
}
