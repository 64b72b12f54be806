//! `/system/logs/{svc}` (the jobs, paginated) and `/system/logs/{svc}/{job}` (one job's log).

use std::collections::BTreeMap;

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiError, State};
use crate::journal::{Invocation, State as JobState};

const PAGE: usize = 100;

#[derive(Deserialize)]
pub struct Paging {
    #[serde(default)]
    page: String,
    #[serde(default)]
    all: bool,
}

fn rfc3339(ms: Option<i64>) -> Option<Value> {
    let ms = ms.filter(|&ms| ms > 0)?;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    Some(json!(humantime::format_rfc3339_seconds(t).to_string()))
}

/// A job as OSCAR's `JobInfo` shows it: times that are not set yet are left out (`omitempty`),
/// not null (some clients read the body as a Python literal, where `null` is no value).
fn job_info(i: &Invocation) -> Value {
    let mut info = serde_json::Map::new();
    info.insert("status".into(), json!(status(i)));
    for (key, ms) in [
        ("creation_time", Some(i.created_ms)),
        ("start_time", i.started_ms),
        ("finish_time", i.finished_ms),
    ] {
        if let Some(t) = rfc3339(ms) {
            info.insert(key.into(), t);
        }
    }
    info.insert("ran_on".into(), json!(i.ran_on.as_deref().unwrap_or("local")));
    Value::Object(info)
}

/// When a job last did something (finished, else started, else was made), RFC 3339.
pub(super) fn job_time(i: &Invocation) -> Option<String> {
    let ms = i.finished_ms.or(i.started_ms).unwrap_or(i.created_ms);
    rfc3339(Some(ms)).and_then(|v| v.as_str().map(str::to_string))
}

fn status(i: &Invocation) -> &'static str {
    match i.state {
        JobState::Queued => "Pending",
        JobState::Running => "Running",
        // Followed on another tier: running as far as the caller can tell.
        JobState::Delegated if i.remote_job.is_some() => "Running",
        // Handed over (pushed into a remote's input): its outcome is the remote's.
        JobState::Delegated => "Delegated",
        // OSCAR's pods upload before they end; a peer that follows this job (delegation) must
        // not count it done while its outputs wait in the outbox (a crash then would hold them).
        JobState::Succeeded if i.uploading => "Running",
        JobState::Succeeded => "Succeeded",
        JobState::Failed | JobState::TimedOut | JobState::Cancelled => "Failed",
    }
}

pub async fn list(
    s: State,
    Path(svc): Path<String>,
    Query(p): Query<Paging>,
) -> Result<Json<Value>, ApiError> {
    s.rt.service(&svc)?;
    // The page token is the id of the last job of the previous page: each page is read by the
    // index, never the whole table (a busy service has hundreds of thousands of jobs).
    let before = if p.page.is_empty() {
        None
    } else {
        Some(crate::journal::InvocationId(p.page.parse().map_err(|_| {
            ApiError::bad_request(format!("page `{}` is not a page token", p.page))
        })?))
    };
    let name = svc.clone();
    let (rows, remaining) =
        s.rt.journal
            .call(move |j| j.invocations_page(&name, before, PAGE))
            .await?;
    let jobs: BTreeMap<String, Value> = rows.iter().map(|i| (i.uuid.clone(), job_info(i))).collect();
    let next = match rows.last() {
        Some(last) if remaining > 0 => last.id.to_string(),
        _ => String::new(),
    };
    Ok(Json(json!({
        "jobs": jobs,
        "next_page": next,
        "remaining_jobs": remaining,
    })))
}

pub async fn read(s: State, Path((svc, job)): Path<(String, String)>) -> Result<String, ApiError> {
    let inv =
        s.rt.journal
            .job(&job)?
            .filter(|i| i.service == svc)
            .ok_or_else(|| ApiError::not_found(format!("no job `{job}` of service `{svc}`")))?;
    Ok(std::fs::read_to_string(s.rt.log_path(&svc, &inv.uuid)).unwrap_or_default())
}

pub async fn delete(
    s: State,
    Path((svc, job)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let name = job.clone();
    let inv =
        s.rt.journal
            .call(move |j| j.job(&name))
            .await?
            .filter(|i| i.service == svc);
    let deleted = match &inv {
        Some(i) => {
            let (sv, u) = (svc.clone(), i.uuid.clone());
            s.rt.journal.call(move |j| j.delete_invocation(&sv, &u)).await?
        }
        None => false,
    };
    match inv {
        Some(i) if deleted => {
            let _ = std::fs::remove_file(s.rt.log_path(&svc, &i.uuid));
            Ok(StatusCode::NO_CONTENT)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job `{job}` is running"),
        )),
        None => Err(ApiError::not_found(format!("no job `{job}` of service `{svc}`"))),
    }
}

pub async fn delete_all(
    s: State,
    Path(svc): Path<String>,
    Query(p): Query<Paging>,
) -> Result<impl IntoResponse, ApiError> {
    s.rt.service(&svc)?;
    let all = p.all;
    s.rt.journal
        .call(move |j| j.delete_invocations(&svc, all))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_succeeded_job_is_running_for_peers_until_its_outputs_are_up() {
        let mut i = Invocation {
            id: crate::journal::InvocationId(1),
            uuid: "u".into(),
            service: "s".into(),
            event_id: 1,
            state: JobState::Succeeded,
            attempts: 1,
            exit_code: Some(0),
            error: None,
            outputs: 2,
            created_ms: 0,
            started_ms: None,
            spawned_us: None,
            finished_ms: None,
            key: "k".into(),
            ran_on: None,
            remote_job: None,
            uploading: true,
        };
        assert_eq!(status(&i), "Running");
        i.uploading = false;
        assert_eq!(status(&i), "Succeeded");
        i.state = JobState::TimedOut;
        assert_eq!(status(&i), "Failed");
    }
}

#[derive(Deserialize)]
pub struct NodeLogQuery {
    #[serde(default)]
    timestamps: bool,
    #[serde(default)]
    previous: bool,
}

/// `GET /system/logs`: the node's own log, as OSCAR answers with its manager's (text, one line
/// an event; `timestamps=true` keeps each line's RFC 3339 time; `previous=true`, the run before
/// this one).
pub async fn node(s: State, Query(q): Query<NodeLogQuery>) -> Result<impl IntoResponse, ApiError> {
    let lines: Vec<String> = if q.previous {
        let path = s.rt.data.node_log_previous();
        let text = tokio::fs::read_to_string(&path)
            .await
            .map_err(|_| ApiError::not_found("no log of a previous run of this node"))?;
        text.lines().map(str::to_string).collect()
    } else {
        fogd_log::recent()
    };
    let mut out = String::new();
    for l in &lines {
        let l = if q.timestamps {
            l.as_str()
        } else {
            // The first field is the time; the rest is the event.
            l.split_once(' ')
                .map_or(l.as_str(), |(_, rest)| rest.trim_start())
        };
        out.push_str(l);
        out.push('\n');
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        out,
    ))
}
