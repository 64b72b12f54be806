//! How store and runtime errors are said in S3's terms.

use std::path::Path;

use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::runtime::RuntimeError;
use crate::store::StoreError;

pub(super) fn store_err(e: StoreError) -> S3Error {
    match e {
        StoreError::InvalidKey { .. } => S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string()),
        StoreError::NotFound { .. } => S3Error::with_message(S3ErrorCode::NoSuchKey, e.to_string()),
        StoreError::DiskFull { .. } => storage_full(e.to_string()),
        StoreError::Io { ref source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOTDIR) | Some(libc::EISDIR)) =>
        {
            // `a/b` is an object and `a/b/c` was asked for, or the other way round.
            let mut err = S3Error::with_message(
                S3ErrorCode::Custom("XMinioParentIsObject".into()),
                format!("{e} (an object and a folder cannot share a name)"),
            );
            err.set_status_code(axum::http::StatusCode::BAD_REQUEST);
            err
        }
        // A link or a file where the key needs a folder (store::root): the caller's doing.
        StoreError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::InvalidInput => {
            tracing::warn!("S3 endpoint: {e}");
            S3Error::with_message(S3ErrorCode::InvalidArgument, e.to_string())
        }
        _ => {
            tracing::error!("S3 endpoint: {e}");
            S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
        }
    }
}

/// MinIO's answer for a full disk (507), which its clients know.
fn storage_full(message: String) -> S3Error {
    let mut err = S3Error::with_message(S3ErrorCode::Custom("XMinioStorageFull".into()), message);
    err.set_status_code(axum::http::StatusCode::INSUFFICIENT_STORAGE);
    err
}

pub(super) fn runtime_err(e: RuntimeError) -> S3Error {
    match e {
        RuntimeError::LowDisk { .. } | RuntimeError::LowInodes { .. } => storage_full(e.to_string()),
        RuntimeError::Store(s) => store_err(s),
        other => {
            tracing::error!("S3 endpoint: {other}");
            S3Error::with_message(S3ErrorCode::InternalError, other.to_string())
        }
    }
}

pub(super) fn io_err(path: &Path, e: std::io::Error) -> S3Error {
    store_err(StoreError::io(path, e))
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> S3Result<T> + Send + 'static,
) -> S3Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(S3Error::with_message(S3ErrorCode::InternalError, e.to_string())))
}
