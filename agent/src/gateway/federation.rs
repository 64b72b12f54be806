//! `/system/federation/{svc}` (OSCAR 4): a service's federation members, read (any service) and
//! changed (POST adds, PUT replaces, DELETE removes; services of the API only, as the others
//! come from FDL files). The change is the service's own: fogd's delegation follows it at once.
//! OSCAR also propagates it to the other members' clusters; fogd does not (yet).

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{ApiError, State};
use crate::fdl::Service;

/// OSCAR's answer: the topology (`none` unless set) and the members.
fn answer(fed: Option<&Value>) -> Value {
    let topology = fed
        .and_then(|f| f.get("topology"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .unwrap_or("none");
    let members = fed.and_then(|f| f.get("members")).cloned().unwrap_or(Value::Null);
    json!({"topology": topology, "members": members})
}

/// An FDL service's delegation members in OSCAR's replica shape.
fn from_fdl(svc: &Service) -> Value {
    let members: Vec<Value> = svc
        .delegation
        .iter()
        .flat_map(|d| &d.members)
        .map(|m| {
            json!({"type": m.kind, "cluster_id": m.cluster_id, "service_name": m.service_name,
                   "url": m.url, "ssl_verify": m.ssl_verify, "priority": m.priority, "headers": m.headers})
        })
        .collect();
    let policy = svc
        .delegation
        .as_ref()
        .map(|d| d.policy.clone())
        .unwrap_or_default();
    json!({"topology": "none", "delegation": policy, "members": if members.is_empty() { Value::Null } else { Value::Array(members) }})
}

pub async fn read(s: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let svc = s.rt.service(&name)?;
    let n = name.clone();
    let stored = s.rt.journal.call(move |j| j.api_service(&n)).await?;
    let fed = match stored.and_then(|j| serde_json::from_str::<Value>(&j).ok()) {
        // OSCAR <= 3 wrote the members as `replicas`.
        Some(v) => v
            .get("federation")
            .cloned()
            .or_else(|| v.get("replicas").map(|r| json!({"members": r}))),
        None => Some(from_fdl(&svc)),
    };
    Ok(Json(answer(fed.as_ref())))
}

#[derive(Deserialize)]
pub struct Request {
    #[serde(default)]
    members: Vec<Value>,
    #[serde(default)]
    update: Vec<Value>,
    clusters: Option<Map<String, Value>>,
    storage_providers: Option<Value>,
}

/// OSCAR's replica identity: type (any case), cluster and service.
fn same(a: &Value, b: &Value) -> bool {
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    f(a, "type").eq_ignore_ascii_case(&f(b, "type"))
        && f(a, "cluster_id") == f(b, "cluster_id")
        && f(a, "service_name") == f(b, "service_name")
}

/// POST, PUT and DELETE: the members changed in the service's JSON, checked as a new
/// definition, stored, and the workflow reloaded.
pub async fn change(
    s: State,
    method: Method,
    h: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = super::body::read(&h, body, s.body_limits()).await?;
    let req: Request =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("Invalid payload: {e}")))?;
    s.rt.service(&name)?;
    if s.rt.fdl_workflow().service(&name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "service `{name}` comes from an FDL file given to `fogd run`; change its federation there"
            ),
        ));
    }
    let n = name.clone();
    let stored = s.rt.journal.call(move |j| j.api_service(&n)).await?;
    let mut v: Value = stored
        .and_then(|j| serde_json::from_str(&j).ok())
        .ok_or_else(|| ApiError::not_found(format!("no service `{name}`")))?;
    let o = v
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("stored service is not an object"))?;
    if let Some(c) = req.clusters {
        let clusters = o.entry("clusters").or_insert(json!({}));
        if let Some(m) = clusters.as_object_mut() {
            m.extend(c);
        }
    }
    if let Some(p) = req.storage_providers {
        o.insert("storage_providers".into(), p);
    }
    // Members kept as `replicas` (OSCAR <= 3) move to `federation.members`.
    let legacy = o.remove("replicas");
    let fed = o.entry("federation").or_insert(json!({}));
    let fed = fed
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("`federation` is not an object"))?;
    let mut members: Vec<Value> = fed
        .get("members")
        .or(legacy.as_ref())
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match method {
        Method::POST => members.extend(req.members),
        Method::PUT => {
            if let Some(new) = req.update.first() {
                for m in members.iter_mut() {
                    if req.members.iter().any(|t| same(m, t)) {
                        *m = new.clone();
                    }
                }
            }
        }
        _ => members.retain(|m| !req.members.iter().any(|t| same(m, t))),
    }
    fed.insert("members".into(), Value::Array(members));
    let body = serde_json::to_vec(&v).unwrap_or_default();
    let (svc, value) = super::services::check(&body)?;
    let (n, j) = (svc.name.clone(), value.to_string());
    s.rt.journal
        .call(move |jr| jr.put_api_service(&n, &j, false))
        .await?;
    s.rt.reload()?;
    tracing::info!(service = %name, %method, "federation changed through the API");
    Ok(Json(answer(value.get("federation"))))
}
