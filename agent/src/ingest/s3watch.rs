//! S3 input folders as a source: each is listed every `s3_poll_interval` and what is new becomes
//! an event. The journal's events are the durable cursor.
//!
//! What a poll costs does not grow with what already sits in the folder: polls list only the keys
//! after the greatest one seen (S3's `start-after`: camera and time-stamped names only grow), and
//! a whole listing, every `s3_relist_interval` and at start, finds what a cursor cannot (a key
//! that sorts earlier, an object overwritten). Keys the last whole listing saw with the same ETag
//! are not looked up in the journal again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

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
            let w = Watcher::new(b.provider.clone(), format!("{}/", b.path));
            tasks.push(tokio::spawn(watch(rt.clone(), w, stop.clone())));
        }
    }
    tasks
}

async fn watch(rt: Arc<Runtime>, mut w: Watcher, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut failing = false;
    loop {
        match w.poll(&rt).await {
            Ok(n) => {
                if failing {
                    tracing::info!(provider = %w.provider, prefix = %w.prefix, "watch: reachable again");
                    failing = false;
                }
                if n > 0 {
                    tracing::debug!(provider = %w.provider, prefix = %w.prefix, new = n, "watch: new objects");
                }
            }
            Err(e) if !failing => {
                tracing::warn!(provider = %w.provider, prefix = %w.prefix, "watch: {e}; retrying every {:?}", rt.cfg.s3_poll_interval);
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

/// The state of one watched folder between polls.
pub struct Watcher {
    pub provider: ProviderRef,
    pub prefix: String,
    /// The greatest key seen.
    cursor: Option<String>,
    /// Key -> ETag, as the last whole listing (and the polls since) saw them.
    known: HashMap<String, String>,
    last_whole: Option<Instant>,
    /// Keys the store returned over all polls (what the polls cost).
    pub listed: u64,
}

impl Watcher {
    pub fn new(provider: ProviderRef, prefix: String) -> Watcher {
        Watcher {
            provider,
            prefix,
            cursor: None,
            known: HashMap::new(),
            last_whole: None,
            listed: 0,
        }
    }

    /// The next poll lists the whole folder.
    pub fn relist_now(&mut self) {
        self.last_whole = None;
    }

    /// Lists once (after the cursor, or the whole folder when it is time); returns how many new
    /// events it made.
    pub async fn poll(&mut self, rt: &Runtime) -> Result<usize> {
        let store = rt.store(&self.provider)?;
        let whole = self
            .last_whole
            .is_none_or(|t| t.elapsed() >= rt.cfg.s3_relist_interval);
        let after = if whole { None } else { self.cursor.clone() };
        let listing = store.list_after(&self.prefix, after.as_deref()).await?;
        self.listed += listing.len() as u64;
        if whole {
            self.last_whole = Some(Instant::now());
            let now: HashMap<String, String> =
                listing.iter().map(|m| (m.key.clone(), m.etag.clone())).collect();
            // What the last listing saw unchanged needs no journal lookup.
            let old = std::mem::replace(&mut self.known, now);
            return self
                .emit_new(rt, listing, |m| old.get(&m.key) == Some(&m.etag))
                .await;
        }
        for m in &listing {
            self.known.insert(m.key.clone(), m.etag.clone());
        }
        self.emit_new(rt, listing, |_| false).await
    }

    async fn emit_new(
        &mut self,
        rt: &Runtime,
        listing: Vec<crate::store::ObjectMeta>,
        unchanged: impl Fn(&crate::store::ObjectMeta) -> bool,
    ) -> Result<usize> {
        let name = self.provider.to_string();
        let mut new = 0;
        for meta in listing {
            if self.cursor.as_deref().is_none_or(|c| meta.key.as_str() > c) {
                self.cursor = Some(meta.key.clone());
            }
            if meta.key.ends_with('/')
                || unchanged(&meta)
                || rt.journal.has_event(&name, &meta.key, &meta.etag)?
            {
                continue;
            }
            if rt.emit(&self.provider, &meta, "watch").await?.is_some() {
                new += 1;
            }
        }
        Ok(new)
    }
}
