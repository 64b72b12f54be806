//! A camera's privacy zones through the API (admin only, like all of `/fogd/`):
//! `GET|PUT|DELETE /fogd/cameras/<camera>/zones`. Zones put here replace the camera's zones of
//! fogd.yaml (kept in the journal across restarts) until they are deleted. A zone list that does
//! not check is refused whole, with the zone and the reason: nothing is half applied.

use axum::body::Body;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::Json;
use fogd_vision_proto::zones::{self, Zone};
use serde_json::{json, Value};

use super::ui::checked_camera as checked;
use super::{ApiError, State};

/// A zone list is small: 32 zones of 64 corners fit in a tenth of this.
const MAX_ZONES_BODY: u64 = 256 << 10;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Put {
    /// Optional; when given it must be the camera of the path.
    camera: Option<String>,
    zones: Vec<Zone>,
}

/// The zones in force, and where they come from: `api`, `config` or `none`.
async fn current(s: &State, camera: &str) -> Result<Value, ApiError> {
    let (rt, cam) = (s.rt.clone(), camera.to_string());
    let api = rt.journal.call(move |j| j.zones(&cam)).await?;
    let (source, zones) = match api {
        Some(z) => ("api", z),
        None => match s.rt.cfg.cameras.get(camera) {
            Some(c) if !c.zones.is_empty() => ("config", c.zones.clone()),
            _ => ("none", Vec::new()),
        },
    };
    Ok(json!({ "camera": camera, "source": source, "zones": zones }))
}

pub async fn read(s: State, Path(camera): Path<String>) -> Result<Json<Value>, ApiError> {
    checked(&camera)?;
    Ok(Json(current(&s, &camera).await?))
}

pub async fn put(
    s: State,
    Path(camera): Path<String>,
    h: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    checked(&camera)?;
    let mut limits = s.body_limits();
    limits.max = limits.max.min(MAX_ZONES_BODY);
    let bytes = super::body::read(&h, body, limits).await?;
    let p: Put = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("privacy zones of camera `{camera}`: {e}")))?;
    if p.camera.as_ref().is_some_and(|c| *c != camera) {
        return Err(ApiError::bad_request(format!(
            "the body's camera `{}` is not the path's `{camera}`",
            p.camera.unwrap_or_default()
        )));
    }
    if p.zones.is_empty() {
        // An empty list would switch fogd.yaml's zones off from the API without a trace.
        return Err(ApiError::bad_request(format!(
            "camera `{camera}`: no zones given; DELETE goes back to fogd.yaml's, and a zone of \
             fogd.yaml is removed there"
        )));
    }
    zones::check_all(&p.zones).map_err(|e| ApiError::bad_request(format!("camera `{camera}`: {e}")))?;
    let (rt, cam, max) = (s.rt.clone(), camera.clone(), s.rt.cfg.ingest.max_cameras);
    rt.journal
        .call(move |j| {
            // As many cameras with zones as the node takes cameras: no caller makes rows without end.
            if j.zones(&cam)?.is_none() && j.zoned_cameras()? >= max {
                return Ok(false);
            }
            j.set_zones(&cam, Some(&p.zones)).map(|()| true)
        })
        .await?
        .then_some(())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "zones are set for {max} cameras already (ingest.max_cameras)"
            ))
        })?;
    tracing::info!(camera, "privacy zones set through the API");
    let now = current(&s, &camera).await?;
    s.rt.event("zones", now.clone());
    Ok(Json(now))
}

pub async fn delete(s: State, Path(camera): Path<String>) -> Result<Json<Value>, ApiError> {
    checked(&camera)?;
    let (rt, cam) = (s.rt.clone(), camera.clone());
    rt.journal.call(move |j| j.set_zones(&cam, None)).await?;
    tracing::info!(camera, "privacy zones of the API removed; fogd.yaml's apply");
    let now = current(&s, &camera).await?;
    s.rt.event("zones", now.clone());
    Ok(Json(now))
}
