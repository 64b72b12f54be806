//! S3 input folders as a source: each is listed every `s3_poll_interval` and what is new becomes
//! an event. The journal's events are the durable cursor.

use std::sync::Arc;

use crate::fdl::ProviderRef;
use crate::runtime::{Result, Runtime};

/// One task per S3 input folder: lists it every `s3_poll_interval` and emits what is new. The
/// journal's events are the durable cursor: an object seen before (same key and ETag) makes no
/// second event, and objects written while fogd was down are found at the first listing.
pub(super) fn spawn_watchers(
    rt: &Arc<Runtime>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for svc in &rt.workflow().services {
        for b in &svc.inputs {
            let Ok(store) = rt.store(&b.provider) else {
                continue;
            };
            if store.is_local() || !seen.insert((b.provider.clone(), b.path.clone())) {
                continue;
            }
            let (rt, provider, prefix) = (rt.clone(), b.provider.clone(), format!("{}/", b.path));
            tasks.push(tokio::spawn(watch(rt, provider, prefix, stop.clone())));
        }
    }
    tasks
}

async fn watch(
    rt: Arc<Runtime>,
    provider: ProviderRef,
    prefix: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut failing = false;
    loop {
        match poll_once(&rt, &provider, &prefix).await {
            Ok(n) => {
                if failing {
                    tracing::info!(%provider, %prefix, "watch: reachable again");
                    failing = false;
                }
                if n > 0 {
                    tracing::debug!(%provider, %prefix, new = n, "watch: new objects");
                }
            }
            Err(e) if !failing => {
                tracing::warn!(%provider, %prefix, "watch: {e}; retrying every {:?}", rt.cfg.s3_poll_interval);
                failing = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(rt.cfg.s3_poll_interval) => {}
            _ = crate::runtime::stopped(&mut stop) => return,
        }
    }
}

/// Lists `prefix` once; returns how many new events it made.
pub async fn poll_once(rt: &Runtime, provider: &ProviderRef, prefix: &str) -> Result<usize> {
    let store = rt.store(provider)?;
    let name = provider.to_string();
    let mut new = 0;
    for meta in store.list(prefix).await? {
        if meta.key.ends_with('/') || rt.journal.has_event(&name, &meta.key, &meta.etag)? {
            continue;
        }
        if rt.emit(provider, &meta, "watch").await?.is_some() {
            new += 1;
        }
    }
    Ok(new)
}
