//! S3 input folders as a source: each is listed every `s3_poll_interval` and what is new becomes
//! an event. The journal's events are the durable cursor.
//!
//! What a poll costs does not grow with what already sits in the folder. The first poll lists it
//! whole (what was written while fogd was down). Then each poll lists the keys after the
//! greatest one seen (S3's `start-after`: camera and time-stamped names only grow), plus one page
//! of a rolling scan through the folder, which finds what a cursor cannot (a key that sorts
//! earlier, written by another node; an object overwritten): a folder of N keys is scanned
//! whole every N / `SCAN_PAGE` polls, whatever N, at one page a poll.

use std::sync::Arc;

/// Keys of the rolling scan a poll (one ListObjectsV2 page).
pub const SCAN_PAGE: usize = 1000;

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
    /// The greatest key seen (None: not listed yet).
    cursor: Option<String>,
    /// Where the rolling scan goes on from (None: the start of the folder).
    scan_after: Option<String>,
    scan_page: usize,
    /// Keys the store returned over all polls (what the polls cost).
    pub listed: u64,
}

impl Watcher {
    pub fn new(provider: ProviderRef, prefix: String) -> Watcher {
        Watcher::with_scan_page(provider, prefix, SCAN_PAGE)
    }

    /// As `new`, scanning `page` keys a poll.
    pub fn with_scan_page(provider: ProviderRef, prefix: String, page: usize) -> Watcher {
        Watcher {
            provider,
            prefix,
            cursor: None,
            scan_after: None,
            scan_page: page.max(1),
            listed: 0,
        }
    }

    /// Lists once (what is new after the cursor, and a page of the scan); returns how many new
    /// events it made.
    pub async fn poll(&mut self, rt: &Runtime) -> Result<usize> {
        let store = rt.store(&self.provider)?;
        let first = self.cursor.is_none();
        let fresh = store
            .list_after(&self.prefix, self.cursor.as_deref(), None)
            .await?;
        self.listed += fresh.len() as u64;
        let mut new = self.emit_new(rt, fresh).await?;
        if !first {
            let page = store
                .list_after(&self.prefix, self.scan_after.as_deref(), Some(self.scan_page))
                .await?;
            self.listed += page.len() as u64;
            self.scan_after = if page.len() < self.scan_page {
                None
            } else {
                page.last().map(|m| m.key.clone())
            };
            new += self.emit_new(rt, page).await?;
        }
        Ok(new)
    }

    async fn emit_new(&mut self, rt: &Runtime, listing: Vec<crate::store::ObjectMeta>) -> Result<usize> {
        let name = self.provider.to_string();
        let mut new = 0;
        for meta in listing {
            if self.cursor.as_deref().is_none_or(|c| meta.key.as_str() > c) {
                self.cursor = Some(meta.key.clone());
            }
            if meta.key.ends_with('/') || rt.journal.has_event(&name, &meta.key, &meta.etag)? {
                continue;
            }
            if rt.emit(&self.provider, &meta, "watch").await?.is_some() {
                new += 1;
            }
        }
        Ok(new)
    }
}
