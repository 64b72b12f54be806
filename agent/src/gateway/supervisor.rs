//! The data path of the kube executor's pods: `fogd supervise` inside a Job fetches its input
//! (`GET /fogd/jobs/{job}/input`) and sends each output file back (`PUT
//! /fogd/jobs/{job}/outputs/{rel}`), with the job's own token. fogd then stores the outputs as
//! it does for a local run. Only a running invocation answers.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::{ApiError, State};
use crate::journal::State as JobState;

/// The job's invocation, when it is running (the gate checked the job's token).
fn running_job(s: &State, job: &str) -> Result<crate::journal::Invocation, ApiError> {
    let inv =
        s.rt.journal
            .job(job)?
            .ok_or_else(|| ApiError::not_found(format!("no job `{job}`")))?;
    if inv.state != JobState::Running {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job `{job}` is {}, not running", inv.state.as_str()),
        ));
    }
    Ok(inv)
}

pub async fn input(s: State, Path(job): Path<String>) -> Result<impl IntoResponse, ApiError> {
    let inv = running_job(&s, &job)?;
    let dir = s.rt.work_dir(&inv.uuid).join("input");
    // The one file fogd fetched for this run (none with `file_stage_in`).
    let file = std::fs::read_dir(&dir)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .ok_or_else(|| ApiError::not_found(format!("job `{job}` has no input file")))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let f = tokio::fs::File::open(&file).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", file.display()),
        )
    })?;
    Ok(([("x-fogd-input-name", name)], super::body::file_stream(f)))
}

pub async fn output(
    s: State,
    h: HeaderMap,
    Path((job, rel)): Path<(String, String)>,
    body: Body,
) -> Result<impl IntoResponse, ApiError> {
    let inv = running_job(&s, &job)?;
    // A relative path below the output folder, never out of it.
    let bad = rel.is_empty()
        || rel.starts_with('/')
        || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(ApiError::bad_request(format!(
            "output path `{rel}` is not a relative path below TMP_OUTPUT_DIR"
        )));
    }
    let path = s.rt.work_dir(&inv.uuid).join("output").join(&rel);
    let io = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", path.display()),
        )
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(io)?;
    }
    let limits = super::body::Limits {
        max: s.rt.cfg.max_output_bytes,
        idle: s.rt.cfg.gateway.body_timeout,
    };
    let tmp = path.with_file_name(format!(".fogd-upload-{}", uuid::Uuid::new_v4()));
    let spooled = super::body::spool(&h, body, &tmp, limits)
        .await
        .map_err(|e| match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                e.status,
                format!("output `{rel}` is over max_output_bytes ({})", limits.max),
            ),
            _ => e,
        })?;
    tokio::fs::rename(&spooled.0, &path).await.map_err(io)?;
    Ok(StatusCode::NO_CONTENT)
}
