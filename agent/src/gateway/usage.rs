//! OSCAR 4's read endpoints over what fogd already knows: `/system/metrics[/{svc}]` (usage from
//! the journal's invocations), `/system/services/{svc}/deployment[/logs]` (a service's runtime:
//! here its jobs, since fogd runs no long-lived deployments), in OSCAR's JSON shapes.

use axum::extract::{Path, Query};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{ApiError, State};

#[derive(Deserialize)]
pub struct Range {
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
    #[serde(default)]
    metric: String,
}

/// OSCAR's range: `end` defaults to now, `start` to a day before `end`; 400 on a time that is not
/// RFC 3339 or an end before the start.
fn range(r: &Range) -> Result<(OffsetDateTime, OffsetDateTime), ApiError> {
    let parse = |s: &str, what: &str| {
        OffsetDateTime::parse(s.trim(), &Rfc3339)
            .map_err(|_| ApiError::bad_request(format!("invalid {what} timestamp")))
    };
    let end = if r.end.trim().is_empty() {
        OffsetDateTime::now_utc()
    } else {
        parse(&r.end, "end")?
    };
    let start = if r.start.trim().is_empty() {
        end - time::Duration::hours(24)
    } else {
        parse(&r.start, "start")?
    };
    if end < start {
        return Err(ApiError::bad_request("end must be after start"));
    }
    Ok((start, end))
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Where the numbers come from, as OSCAR lists its sources.
fn sources() -> Value {
    json!([{"name": "fogd-journal", "status": "ok",
            "notes": "invocations the journal keeps (retention removes old ones)"}])
}

/// The per-service metrics OSCAR lists, from one service's usage row.
fn service_metrics(
    cpu_cores: f64,
    gpu: bool,
    sync: u64,
    asynch: u64,
    run_ms: i64,
) -> Vec<(&'static str, f64, &'static str)> {
    let hours = run_ms as f64 / 3_600_000.0;
    vec![
        ("cpu-hours", hours * cpu_cores, "hours"),
        ("gpu-hours", if gpu { hours } else { 0.0 }, "hours"),
        ("requests-sync-per-service", sync as f64, "requests"),
        ("requests-async-per-service", asynch as f64, "requests"),
        ("requests-exposed-per-service", 0.0, "requests"),
        (
            "users-per-service",
            if sync + asynch > 0 { 1.0 } else { 0.0 },
            "users",
        ),
    ]
}

async fn usage(
    s: &State,
    start: OffsetDateTime,
    end: OffsetDateTime,
    svc: Option<String>,
) -> Result<Vec<(String, u64, u64, i64)>, ApiError> {
    let (a, b) = (ms(start), ms(end));
    Ok(s.rt.journal.call(move |j| j.usage(a, b, svc.as_deref())).await?)
}

/// `GET /system/metrics/{svc}`: every metric of the service, or one (`metric=`).
pub async fn service(
    s: State,
    Path(name): Path<String>,
    Query(r): Query<Range>,
) -> Result<Json<Value>, ApiError> {
    let svc = s.rt.service(&name)?;
    let (start, end) = range(&r)?;
    let row = usage(&s, start, end, Some(name.clone()))
        .await?
        .into_iter()
        .next();
    let (sync, asynch, run_ms) = row.map_or((0, 0, 0), |(_, a, b, c)| (a, b, c));
    let cores = svc.cpu_millis.map_or(1.0, |m| m as f64 / 1000.0);
    let metrics = service_metrics(cores, svc.enable_gpu, sync, asynch, run_ms);
    let metric = r.metric.trim();
    if !metric.is_empty() {
        let Some((key, value, unit)) = metrics.iter().find(|(k, ..)| *k == metric) else {
            return Err(ApiError::bad_request("invalid metric key"));
        };
        return Ok(Json(json!({
            "service_id": name, "metric": key, "start": rfc3339(start), "end": rfc3339(end),
            "value": value, "unit": unit, "sources": sources(),
        })));
    }
    let list: Vec<Value> = metrics
        .iter()
        .map(|(k, v, u)| json!({"metric": k, "value": v, "unit": u, "sources": sources()}))
        .collect();
    Ok(Json(json!({
        "service_name": name, "start": rfc3339(start), "end": rfc3339(end), "metrics": list,
    })))
}

/// `GET /system/metrics`: the totals over every service.
pub async fn summary(s: State, Query(r): Query<Range>) -> Result<Json<Value>, ApiError> {
    let (start, end) = range(&r)?;
    let rows = usage(&s, start, end, None).await?;
    let wf = s.rt.workflow();
    let (mut cpu, mut gpu, mut sync, mut asynch) = (0.0, 0.0, 0u64, 0u64);
    for (name, a, b, run_ms) in &rows {
        let svc = wf.service(name);
        let cores = svc.and_then(|x| x.cpu_millis).map_or(1.0, |m| m as f64 / 1000.0);
        let hours = *run_ms as f64 / 3_600_000.0;
        cpu += hours * cores;
        if svc.is_some_and(|x| x.enable_gpu) {
            gpu += hours;
        }
        sync += a;
        asynch += b;
    }
    let users: Vec<&str> = if sync + asynch > 0 {
        vec![s.admin.user.as_str()]
    } else {
        vec![]
    };
    Ok(Json(json!({
        "start": rfc3339(start),
        "end": rfc3339(end),
        "totals": {
            "services_count_active": rows.len(),
            "services_count_total": wf.services.len(),
            "cpu_hours_total": cpu,
            "gpu_hours_total": gpu,
            "requests_count_total": sync + asynch,
            "requests_count_sync": sync,
            "requests_count_async": asynch,
            "requests_count_exposed": 0,
            "countries_count": 0,
            "countries": [],
            "users_count": users.len(),
            "users": users,
        },
        "sources": sources(),
    })))
}

/// `GET /system/services/{svc}/deployment`: fogd runs a service's jobs, never a long-lived
/// deployment, so OSCAR's "unavailable" state, with the reason and the jobs running now.
pub async fn deployment(s: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let svc = s.rt.service(&name)?;
    let n = name.clone();
    let running =
        s.rt.journal
            .call(move |j| j.counts())
            .await?
            .iter()
            .filter(|(sv, st, _)| *sv == n && *st == crate::journal::State::Running)
            .map(|(_, _, c)| *c)
            .sum::<u64>();
    let reason = if svc.exposed {
        "fogd's executors do not run exposed services (expose): nothing is deployed"
    } else {
        "Current deployment visibility is unavailable for this service runtime: fogd runs a process per job"
    };
    Ok(Json(json!({
        "service_name": name,
        "state": "unavailable",
        "reason": reason,
        "active_instances": running,
        "affected_instances": 0,
        "resource_kind": "unavailable",
    })))
}

#[derive(Deserialize)]
pub struct Tail {
    #[serde(default)]
    timestamps: bool,
    #[serde(rename = "tailLines")]
    tail_lines: Option<usize>,
}

/// `GET /system/services/{svc}/deployment/logs`: the log of the service's last job (OSCAR gives
/// its last runtime attempt's), `tailLines` (200) lines at most.
pub async fn deployment_logs(
    s: State,
    Path(name): Path<String>,
    Query(t): Query<Tail>,
) -> Result<Json<Value>, ApiError> {
    s.rt.service(&name)?;
    let n = name.clone();
    let (rows, _) =
        s.rt.journal
            .call(move |j| j.invocations_page(&n, None, 1))
            .await?;
    let Some(last) = rows.first() else {
        return Ok(Json(json!({
            "service_name": name, "available": false,
            "message": "Deployment logs are unavailable for this service.", "entries": [],
        })));
    };
    let text = tokio::fs::read_to_string(s.rt.log_path(&name, &last.uuid))
        .await
        .unwrap_or_default();
    let tail = t.tail_lines.unwrap_or(200).clamp(1, 10_000);
    let lines: Vec<&str> = text.lines().collect();
    let stamp = super::logs::job_time(last);
    let entries: Vec<Value> = lines[lines.len().saturating_sub(tail)..]
        .iter()
        .map(|l| match (&stamp, t.timestamps) {
            (Some(ts), true) => json!({"timestamp": ts, "message": l}),
            _ => json!({"message": l}),
        })
        .collect();
    Ok(Json(json!({
        "service_name": name,
        "available": !entries.is_empty(),
        "message": format!("Returning the log of the last job, {}.", last.uuid),
        "entries": entries,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_default_to_the_last_day_and_refuse_what_oscar_refuses() {
        let r = |start: &str, end: &str| Range {
            start: start.into(),
            end: end.into(),
            metric: String::new(),
        };
        let (a, b) = range(&r("", "2026-01-02T00:00:00Z")).expect("range");
        assert_eq!(
            (rfc3339(a).as_str(), rfc3339(b).as_str()),
            ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        );
        // Offsets, as Go's time.Parse(RFC3339) takes them.
        assert!(range(&r("2026-01-01T01:00:00+01:00", "2026-01-01T00:30:00Z")).is_ok());
        assert!(range(&r("yesterday", "")).is_err());
        assert!(range(&r("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")).is_err());
    }
}
