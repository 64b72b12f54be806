//! What a call to another tier carries: the member's cluster (endpoint and credentials) and the
//! body, OSCAR's delegated event or the input itself.

use base64::Engine;
use serde_json::json;

use super::{member_err, DelegateError};
use crate::fdl::{Member, Peer};
use crate::journal::Invocation;
use crate::runtime::Runtime;

/// Inputs larger than this are not sent in a call's body (push them, or run them here).
const MAX_BODY_INPUT: u64 = 64 << 20;

pub(super) fn peer_of(rt: &Runtime, m: &Member) -> Result<(Peer, String), DelegateError> {
    let id = m.cluster_id.as_deref().unwrap_or("");
    let wf = rt.workflow();
    let peer = wf
        .peers
        .get(id)
        .cloned()
        .ok_or_else(|| member_err(m, format!("cluster `{id}` is not under `clusters:` in the FDL")))?;
    let endpoint = peer
        .endpoint
        .clone()
        .ok_or_else(|| member_err(m, format!("cluster `{id}` has no `endpoint`")))?;
    Ok((peer.clone(), endpoint.trim_end_matches('/').to_string()))
}

pub(super) fn basic(req: reqwest::RequestBuilder, peer: &Peer) -> reqwest::RequestBuilder {
    match &peer.auth_user {
        Some(u) => req.basic_auth(u, peer.auth_password.as_deref()),
        None => req,
    }
}

/// The call's body: OSCAR's delegated event when the input is an object in a store the remote
/// may read (not this node's own store), else the input itself, base64 (what OSCAR's `/job`
/// takes as a file), with its name for fogd remotes.
pub(super) fn body_for(
    rt: &Runtime,
    inv: &Invocation,
    m: &Member,
) -> Result<(Vec<u8>, Option<String>), DelegateError> {
    let ev = rt
        .journal
        .event(inv.event_id)
        .map_err(|e| member_err(m, e.to_string()))?;
    let local = crate::fdl::ProviderRef::parse(&ev.provider)
        .is_some_and(|p| rt.store(&p).is_ok_and(|s| s.is_local()));
    if !local {
        let (bucket, object) = ev.key.split_once('/').unwrap_or((ev.key.as_str(), ""));
        let original = json!({"Key": ev.key, "Records": [{
            "eventSource": "minio:s3", "eventName": "s3:ObjectCreated:Put", "eventTime": ev.event_time,
            "s3": {"bucket": {"name": bucket}, "object": {"key": object, "size": ev.size, "eTag": ev.etag}}}]});
        let body = json!({"storage_provider": ev.provider, "event": original.to_string()});
        return Ok((body.to_string().into_bytes(), None));
    }
    let path = rt.data.store_object(&ev.key);
    let size = std::fs::metadata(&path)
        .map_err(|e| member_err(m, format!("input {}: {e}", path.display())))?
        .len();
    if size > MAX_BODY_INPUT {
        return Err(member_err(
            m,
            format!(
                "input `{}` is {size} bytes, over the {MAX_BODY_INPUT} a call carries (use a push member)",
                ev.key
            ),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| member_err(m, format!("input {}: {e}", path.display())))?;
    let name = ev.key.rsplit('/').next().map(str::to_string);
    Ok((
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes(),
        name,
    ))
}
