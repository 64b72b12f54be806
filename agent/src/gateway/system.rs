//! `/system/info`, `/system/config`, `/system/status`.

use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, State};

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn info(s: State) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("FOGD_GIT_COMMIT").unwrap_or(""),
        "architecture": arch(),
        "kubernetes_version": "",
        "serverless_backend": {"name": "fogd", "version": env!("CARGO_PKG_VERSION")},
        // fogd's own: the key its anonymised frames' receipts are signed with (`fogd verify`).
        "fogd_receipt_key": {"ed25519": s.rt.receipts.public_b64(), "key_id": s.rt.receipts.key_id()},
    })))
}

/// OSCAR's `/system/config`: the cluster's settings, and the MinIO provider its clients upload
/// through, which here is fogd's own S3 endpoint over the local store, with the admin's keys
/// (the caller is the admin: the gate let it through). Without the endpoint (disabled, or its
/// port taken) the provider is there with an empty endpoint, as OSCAR's shape wants.
pub async fn config(s: State, headers: axum::http::HeaderMap) -> Result<Json<Value>, ApiError> {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok());
    let minio = match &s.s3 {
        Some(a) => json!({
            "endpoint": a.endpoint(host),
            "verify": a.https,
            "access_key": a.keys.access,
            "secret_key": a.keys.secret,
            "region": a.region,
        }),
        None => {
            json!({"endpoint": "", "verify": false, "access_key": "", "secret_key": "", "region": "us-east-1"})
        }
    };
    Ok(Json(json!({
        "config": {
            // OSCAR's deployment name; the node's own name is fogd's addition.
            "name": "oscar",
            "fogd_node": s.rt.node,
            "namespace": "",
            "services_namespace": "",
            "gpu_available": false,
            "interLink_available": false,
            "yunikorn_enable": false,
            "oidc_groups": "",
        },
        "minio_provider": minio,
        "allowed_image_repositories": [],
    })))
}

/// Memory and CPU of this node, in OSCAR's StatusInfo shape (used by load-based delegation).
pub async fn status(s: State) -> Result<Json<Value>, ApiError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let (total, avail) = meminfo();
    let running: u64 =
        s.rt.journal
            .counts()?
            .iter()
            .filter(|(_, st, _)| *st == crate::journal::State::Running)
            .map(|(_, _, n)| n)
            .sum();
    let free_cores = cores.saturating_sub(running);
    Ok(Json(json!({
        "cluster": {
            "nodes_count": 1,
            "metrics": {
                "cpu": {"total_free_cores": free_cores, "max_free_on_node_cores": free_cores},
                "memory": {"total_free_bytes": avail, "max_free_on_node_bytes": avail},
                "gpu": {"total_gpu": 0},
            },
            "nodes": [{
                "name": s.rt.node,
                "cpu": {"capacity_cores": cores, "usage_cores": running},
                "memory": {"capacity_bytes": total, "usage_bytes": total.saturating_sub(avail)},
                "is_interlink": false,
            }],
        },
        "oscar": {"deployment_name": "fogd", "ready": true},
        "minio": {"buckets_count": 0, "total_objects": 0},
    })))
}

/// (MemTotal, MemAvailable) in bytes.
fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}
