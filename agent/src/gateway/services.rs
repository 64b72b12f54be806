//! `/system/services`: create, list, read, update, delete. A service created here is stored in
//! the journal as its JSON and survives restarts; services of FDL files are listed but not changed.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, State};
use crate::fdl::{self, Script, Service};

/// Checks a service definition and returns it, with its JSON.
pub(super) fn check(body: &[u8]) -> Result<(Service, Value), ApiError> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    // `minio.default` is the cluster's own store, set by the cluster (OSCAR overrides whatever
    // a body says of it): a service read back and sent again must not point it elsewhere.
    if let Some(m) = value
        .pointer_mut("/storage_providers/minio")
        .and_then(Value::as_object_mut)
    {
        m.remove("default");
    }
    // OSCAR's defaults, stored with the service as OSCAR stores them (checkValues).
    if let Some(o) = value.as_object_mut() {
        for (k, v) in [("memory", "256Mi"), ("cpu", "0.2"), ("log_level", "INFO")] {
            let unset = o.get(k).is_none_or(|x| x.is_null() || x.as_str() == Some(""));
            if unset {
                o.insert(k.into(), json!(v));
            }
        }
    }
    let body = serde_json::to_vec(&value).unwrap_or_default();
    let r = fdl::load_api_service(&body, std::path::Path::new("request"));
    let errors: Vec<String> = r
        .errors()
        .map(|d| {
            format!(
                "{}{}",
                d.path.as_deref().map(|p| format!("{p}: ")).unwrap_or_default(),
                d.message
            )
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::bad_request(errors.join("; ")));
    }
    for d in r.warnings() {
        tracing::warn!("service from the API: {d}");
    }
    let svc = r
        .workflow
        .and_then(|w| w.services.into_iter().next())
        .ok_or_else(|| ApiError::bad_request("no service in the body"))?;
    Ok((svc, value))
}

/// OSCAR refuses to mount a public bucket (500): its files would be every user's, and the
/// script's.
async fn check_mount(s: &State, svc: &Service) -> Result<(), ApiError> {
    let Some(m) = &svc.mount else { return Ok(()) };
    let bucket = m.bucket();
    if super::buckets::Settings::load(&s.rt, bucket).await.visibility() == super::buckets::PUBLIC {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "service `{}`: mount: bucket `{bucket}` is public and cannot be mounted",
                svc.name
            ),
        ));
    }
    Ok(())
}

/// The JSON of a service as OSCAR returns it, with its token.
fn service_json(s: &State, svc: &Service) -> Result<Value, ApiError> {
    let token = s.rt.journal.service_token(&svc.name)?;
    let mut v = match s.rt.journal.api_service(&svc.name)? {
        Some(json) => serde_json::from_str(&json).unwrap_or_else(|_| json!({})),
        None => from_fdl(svc),
    };
    redact_secrets(&mut v);
    if let Some(o) = v.as_object_mut() {
        o.insert("token".into(), json!(token));
        o.entry("cluster_id").or_insert(json!(s.rt.node));
        // As OSCAR: the service's label, and `minio.default` among its providers (the node's
        // S3 endpoint; clients take the keys from /system/config, as oscar-python does).
        let labels = o.entry("labels").or_insert(json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert("oscar_service".into(), json!(svc.name));
        }
        let providers = o.entry("storage_providers").or_insert(json!({}));
        if let Some(p) = providers.as_object_mut() {
            let minio = p.entry("minio").or_insert(json!({}));
            if let Some(m) = minio.as_object_mut() {
                let endpoint = s.s3.as_ref().map(|a| a.endpoint(None)).unwrap_or_default();
                m.entry("default").or_insert(json!({
                    "endpoint": endpoint, "verify": s.s3.as_ref().is_some_and(|a| a.https),
                    "access_key": "", "secret_key": "", "region": s.rt.cfg.gateway.s3.region,
                }));
            }
        }
    }
    Ok(v)
}

/// Secret values never leave through the API: the service's `environment.secrets` keep their
/// keys with empty values (as OSCAR returns them), and so do the storage providers' secret keys,
/// passwords and tokens.
fn redact_secrets(v: &mut Value) {
    let blank = |m: &mut serde_json::Map<String, Value>, only: Option<&[&str]>| {
        for (k, val) in m.iter_mut() {
            if only.is_none_or(|keys| keys.contains(&k.to_ascii_lowercase().as_str())) && !val.is_null() {
                *val = json!("");
            }
        }
    };
    if let Some(m) = v
        .pointer_mut("/environment/secrets")
        .and_then(Value::as_object_mut)
    {
        blank(m, None);
    }
    // storage_providers.<type>.<id>.{secret_key, password, token}
    if let Some(types) = v.get_mut("storage_providers").and_then(Value::as_object_mut) {
        for ids in types.values_mut().filter_map(Value::as_object_mut) {
            for p in ids.values_mut().filter_map(Value::as_object_mut) {
                blank(p, Some(&["secret_key", "password", "token"]));
            }
        }
    }
}

/// An FDL service in the API's shape (the script's text inline, as OSCAR stores it).
fn from_fdl(svc: &Service) -> Value {
    let script = match &svc.script {
        Some(Script::File(p)) => std::fs::read_to_string(p).unwrap_or_default(),
        Some(Script::Inline(t)) => t.clone(),
        _ => String::new(),
    };
    let io = |b: &Vec<fdl::IoBinding>| -> Vec<Value> {
        b.iter()
            .map(|b| json!({"storage_provider": b.provider.to_string(), "path": b.path, "prefix": b.prefix, "suffix": b.suffix}))
            .collect()
    };
    json!({
        "name": svc.name,
        "image": svc.image,
        "script": script,
        "memory": svc.memory_bytes.map(|b| format!("{}Mi", b >> 20)),
        "cpu": svc.cpu_millis.map(|m| format!("{}", m as f64 / 1000.0)),
        "log_level": svc.log_level,
        "input": io(&svc.inputs),
        "output": io(&svc.outputs),
        "environment": {"variables": svc.env},
    })
}

pub async fn list(s: State) -> Result<Json<Value>, ApiError> {
    let wf = s.rt.workflow();
    let all: Result<Vec<Value>, ApiError> = wf.services.iter().map(|svc| service_json(&s, svc)).collect();
    Ok(Json(Value::Array(all?)))
}

pub async fn read(s: State, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let svc = s.rt.service(&name)?;
    Ok(Json(service_json(&s, &svc)?))
}

pub async fn create(s: State, h: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    let body = super::body::read(&h, body, s.body_limits()).await?;
    let (svc, value) = check(&body)?;
    check_mount(&s, &svc).await?;
    let name = svc.name;
    if s.rt.workflow().service(&name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("service `{name}` already exists"),
        ));
    }
    let (n, v) = (name.clone(), value.to_string());
    if !s
        .rt
        .journal
        .call(move |j| j.put_api_service(&n, &v, true))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("service `{name}` already exists"),
        ));
    }
    let n = name.clone();
    s.rt.journal.call(move |j| j.rotate_service_token(&n)).await?;
    s.rt.reload()?;
    tracing::info!(service = %name, "service created through the API");
    Ok(StatusCode::CREATED)
}

pub async fn update(s: State, h: HeaderMap, body: Body) -> Result<impl IntoResponse, ApiError> {
    let body = super::body::read(&h, body, s.body_limits()).await?;
    let (svc, value) = check(&body)?;
    check_mount(&s, &svc).await?;
    let name = svc.name;
    if s.rt.fdl_workflow().service(&name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("service `{name}` comes from an FDL file given to `fogd run`; change the file"),
        ));
    }
    let (n, v) = (name.clone(), value.to_string());
    if !s
        .rt
        .journal
        .call(move |j| j.put_api_service(&n, &v, false))
        .await?
    {
        return Err(ApiError::not_found(format!("no service `{name}`")));
    }
    let n = name.clone();
    s.rt.journal.call(move |j| j.rotate_service_token(&n)).await?;
    s.rt.reload()?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(s: State, Path(name): Path<String>) -> Result<impl IntoResponse, ApiError> {
    if s.rt.fdl_workflow().service(&name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("service `{name}` comes from an FDL file given to `fogd run`; remove it there"),
        ));
    }
    let n = name.clone();
    if !s.rt.journal.call(move |j| j.delete_api_service(&n)).await? {
        return Err(ApiError::not_found(format!("no service `{name}`")));
    }
    s.rt.reload()?;
    // Its podman volume and secrets go with it: a later service of the same name (another
    // owner, perhaps) starts empty.
    if s.rt.cfg.executor_of(&name) == crate::config::ExecutorKind::Podman {
        crate::exec::podman::forget_service(&s.rt.cfg.podman, &name).await;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn secret_values_are_blanked_keys_and_the_rest_kept() {
        let mut v = json!({
            "name": "s",
            "environment": {"variables": {"A": "1"}, "secrets": {"DB_PASSWORD": "hunter2", "KEY": "k"}},
            "storage_providers": {"s3": {"aws": {"access_key": "AK", "secret_key": "SK", "region": "r"}},
                                  "webdav": {"dcache": {"login": "u", "password": "pw"}}}
        });
        redact_secrets(&mut v);
        assert_eq!(v["environment"]["secrets"], json!({"DB_PASSWORD": "", "KEY": ""}));
        assert_eq!(v["environment"]["variables"], json!({"A": "1"}));
        assert_eq!(
            v["storage_providers"]["s3"]["aws"],
            json!({"access_key": "AK", "secret_key": "", "region": "r"})
        );
        assert_eq!(
            v["storage_providers"]["webdav"]["dcache"],
            json!({"login": "u", "password": ""})
        );
        assert!(!v.to_string().contains("hunter2") && !v.to_string().contains("SK\""));
    }
}
