//! Request bodies, read only after the caller is known: small ones (service definitions) into
//! memory, inputs straight to a file, both under `max_body_bytes` and with a timeout on a body
//! that stops sending. A half-written file is removed whatever ends the request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::ApiError;

/// The limits a body is read under.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max: u64,
    pub idle: Duration,
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body over gateway.max_body_bytes ({max} bytes)"),
    )
}

/// 413 at once when the declared length is over the limit.
fn check_declared(h: &HeaderMap, l: Limits) -> Result<(), ApiError> {
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > l.max => Err(too_large(l.max)),
        _ => Ok(()),
    }
}

/// The next chunk, or `None` at the end; 408 when the client sends nothing for `idle`.
async fn next_chunk(body: &mut Body, l: Limits) -> Result<Option<Bytes>, ApiError> {
    loop {
        let frame = tokio::time::timeout(l.idle, body.frame()).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body stalled for {:?} (gateway.body_timeout)", l.idle),
            )
        })?;
        match frame {
            None => return Ok(None),
            Some(Err(e)) => return Err(ApiError::bad_request(format!("reading the request body: {e}"))),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// The whole body in memory (for small documents).
pub async fn read(h: &HeaderMap, mut body: Body, l: Limits) -> Result<Vec<u8>, ApiError> {
    check_declared(h, l)?;
    let mut out = Vec::new();
    while let Some(chunk) = next_chunk(&mut body, l).await? {
        if (out.len() + chunk.len()) as u64 > l.max {
            return Err(too_large(l.max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A file that is removed when dropped, unless kept.
pub struct TempFile(pub PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams the body into `path` (created, fsync not needed: it is copied into the store).
/// Disk full answers 507 with nothing left behind.
pub async fn spool(h: &HeaderMap, mut body: Body, path: &Path, l: Limits) -> Result<TempFile, ApiError> {
    check_declared(h, l)?;
    let guard = TempFile(path.to_path_buf());
    let io = |e: std::io::Error| {
        let status = if crate::paths::is_disk_full(&e) {
            StatusCode::INSUFFICIENT_STORAGE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, format!("{}: {e}", path.display()))
    };
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut total = 0u64;
    while let Some(chunk) = next_chunk(&mut body, l).await? {
        total += chunk.len() as u64;
        if total > l.max {
            return Err(too_large(l.max));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    Ok(guard)
}

/// A file sent as the response body, a chunk at a time.
pub fn file_stream(file: tokio::fs::File) -> Body {
    use tokio::io::AsyncReadExt;
    Body::from_stream(futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    }))
}
