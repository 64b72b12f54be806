//! Drains the outbox to remote stores: each pending object is uploaded with Content-MD5, in parts
//! when large, under a bandwidth cap; objects of one folder go up one after another in order.
//! A store that does not answer is marked offline and probed with a capped exponential backoff
//! (with jitter); an object the store refuses backs off on its own. Past their TTL objects are
//! dropped, and counted. `spool::enqueue` is how outputs enter: never a raw camera item.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::journal::{now_ms, OutboxRow};
use crate::runtime::{stopped, Runtime, RuntimeError};
use crate::store::{file_digests, PutOptions, StoreError, TokenBucket};

mod spool;

pub use spool::{enqueue, spool};

/// Runs until `stop` is set.
pub async fn run(rt: Arc<Runtime>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let pace = Arc::new(TokenBucket::new(rt.cfg.sync.bandwidth_bytes));
    let mut tasks: JoinSet<(String, Option<Uploaded>)> = JoinSet::new();
    let mut busy_groups: BTreeSet<String> = BTreeSet::new();
    let mut last_housekeeping = 0i64;
    loop {
        let now = now_ms();
        if now - last_housekeeping > 10_000 {
            last_housekeeping = now;
            let rt = rt.clone();
            crate::journal::boundary::offload(move || housekeeping(&rt)).await;
        }
        let free = rt.cfg.sync.parallel.saturating_sub(tasks.len());
        // Nothing startable (held behind an earlier frame, or nothing due): no tight loop.
        let mut idle = true;
        if free > 0 {
            let n = rt.cfg.sync.parallel * 4;
            match rt.journal.call(move |j| j.outbox_due(now, n)).await {
                Ok(due) => {
                    let mut started = 0;
                    for row in due {
                        if started == free {
                            break;
                        }
                        if busy_groups.contains(&row.group)
                            || !rt
                                .links
                                .with(&row.provider, |l| l.online || l.next_probe_ms <= now)
                        {
                            continue;
                        }
                        // One probe at a time for a store that is offline.
                        rt.links.with(&row.provider, |l| {
                            if !l.online {
                                l.next_probe_ms = i64::MAX;
                            }
                        });
                        busy_groups.insert(row.group.clone());
                        started += 1;
                        idle = false;
                        let (rt, pace) = (rt.clone(), pace.clone());
                        tasks.spawn(async move {
                            let done = upload(&rt, &row, &pace).await;
                            (row.group, done)
                        });
                    }
                }
                Err(e) => tracing::error!("outbox: {e}"),
            }
        }
        let nap = rt
            .journal
            .call(|j| j.outbox_next_due())
            .await
            .ok()
            .flatten()
            .map_or(Duration::from_secs(5), |t| {
                let floor = if idle { 250 } else { 20 };
                Duration::from_millis((t - now).clamp(floor, 5000) as u64)
            });
        let first = tokio::select! {
            _ = stopped(&mut stop) => break,
            _ = rt.outbox_wake.notified() => None,
            _ = tokio::time::sleep(nap) => None,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => done.ok(),
        };
        // Uploads that finished together are marked done in one commit; their spooled files go
        // only after it (a crash before it uploads them again: same key, same bytes).
        let mut finished: Vec<(String, Option<Uploaded>)> = first.into_iter().collect();
        while let Some(Ok(done)) = tasks.try_join_next() {
            finished.push(done);
        }
        let uploaded: Vec<&Uploaded> = finished.iter().filter_map(|(_, u)| u.as_ref()).collect();
        if !uploaded.is_empty() {
            let ids: Vec<i64> = uploaded.iter().map(|u| u.id).collect();
            match rt.journal.call(move |j| j.outbox_done_many(&ids)).await {
                Ok(()) => {
                    for u in &uploaded {
                        let _ = std::fs::remove_file(&u.path);
                    }
                }
                Err(e) => tracing::error!("outbox: {e}"),
            }
        }
        for (g, _) in finished {
            busy_groups.remove(&g);
        }
    }
    // Uploads in flight are cut: they are still pending and go again at the next start.
    tasks.abort_all();
}

/// An object the store took: to be marked done, then its spooled file removed.
struct Uploaded {
    id: i64,
    path: PathBuf,
}

async fn upload(rt: &Runtime, row: &OutboxRow, pace: &TokenBucket) -> Option<Uploaded> {
    let cap = rt.cfg.sync.max_backoff;
    let path = PathBuf::from(&row.local_path);
    // An SD card can rot a spooled file; never send what is not what was queued.
    let check = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || file_digests(&p)).await
    };
    let intact = matches!(&check, Ok(Ok((_, sum, _))) if *sum == row.checksum);
    if !intact {
        let why = match check {
            Ok(Err(e)) => e.to_string(),
            _ => format!("{}: content no longer matches its checksum", path.display()),
        };
        tracing::error!(key = %row.key, "outbox: {why}; not sent");
        let (id, w) = (row.id, why.clone());
        let _ = rt
            .journal
            .call(move |j| j.outbox_drop(id, "corrupt", &w, "outbox_corrupt"))
            .await;
        let _ = std::fs::remove_file(&path);
        return None;
    }
    // An anonymised frame's receipt sits right after the JPEG's start.
    let receipt = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            let mut head = Vec::new();
            std::fs::File::open(&p)
                .and_then(|f| f.take(256 << 10).read_to_end(&mut head))
                .ok()?;
            crate::receipts::token_of(&head)
        })
        .await
        .ok()
        .flatten()
    };
    let result = match crate::fdl::ProviderRef::parse(&row.provider).map(|p| rt.store(&p)) {
        Some(Ok(store)) => {
            let opts = PutOptions {
                multipart_threshold: rt.cfg.sync.multipart_threshold,
                part_bytes: rt.cfg.sync.part_bytes,
                pace: Some(pace),
                checksum: &row.checksum,
                receipt: receipt.as_deref(),
            };
            // A link that hangs (half-open TCP, a store that accepts and never answers) must
            // not hold the folder for the SDK's 5 minutes: give up after a time fit for the size.
            let limit = upload_time_limit(row.size, rt.cfg.sync.bandwidth_bytes);
            match tokio::time::timeout(limit, store.put_checked(&row.key, &path, &row.md5, &opts)).await {
                Ok(r) => r.map_err(RuntimeError::from),
                Err(_) => Err(RuntimeError::Store(StoreError::Unreachable {
                    provider: row.provider.clone(),
                    endpoint: String::new(),
                    op: "put",
                    key: row.key.clone(),
                    message: format!("no answer in {limit:?}"),
                })),
            }
        }
        Some(Err(e)) => Err(e),
        None => Err(RuntimeError::UnknownProvider(row.provider.clone())),
    };
    let now = now_ms();
    match result {
        Ok(meta) => {
            let back = rt.links.with(&row.provider, |l| {
                let was = l.offline_since_ms.take();
                if let Some(s) = was {
                    l.offline_ms_total += now - s;
                }
                l.online = true;
                l.failures = 0;
                l.last_error = None;
                was
            });
            if let Some(since) = back {
                tracing::info!(provider = %row.provider, offline_s = (now - since) / 1000, "store reachable again; draining the outbox");
                rt.event(
                    "store_online",
                    serde_json::json!({"provider": row.provider, "offline_s": (now - since) as f64 / 1000.0}),
                );
            }
            rt.event(
                "upload_done",
                serde_json::json!({"provider": row.provider, "key": row.key, "size": row.size, "attempts": row.attempts + 1}),
            );
            // An object landing in a store: services watching it run (chaining across tiers).
            // Nothing watches most uploads: no event row for those (one journal commit less).
            if let Some(p) = crate::fdl::ProviderRef::parse(&row.provider) {
                let watched = !crate::router::route(&rt.workflow().services, &p, &row.key).is_empty();
                if watched {
                    if let Err(e) = rt.emit_from(&p, &meta, "output", row.invocation).await {
                        tracing::warn!("{e}");
                    }
                }
            }
            Some(Uploaded { id: row.id, path })
        }
        Err(RuntimeError::Store(e @ StoreError::Unreachable { .. })) => {
            let msg = e.to_string();
            let (wait, first) = rt.links.with(&row.provider, |l| {
                l.failures += 1;
                let first = l.online;
                if l.online {
                    l.online = false;
                    l.offline_since_ms = Some(now);
                }
                let wait = crate::backoff::Policy::new(Duration::from_secs(1), cap).delay(l.failures);
                l.next_probe_ms = now + wait.as_millis() as i64;
                l.last_error = Some(msg.clone());
                (wait, first)
            });
            let (p, m) = (row.provider.clone(), msg.clone());
            let _ = rt.journal.call(move |j| j.outbox_note_provider(&p, &m)).await;
            if first {
                tracing::warn!(provider = %row.provider, "{msg}; offline: objects wait in the outbox");
                rt.event(
                    "store_offline",
                    serde_json::json!({"provider": row.provider, "error": msg}),
                );
            }
            let _ = rt
                .journal
                .outbox_later(row.id, now + wait.as_millis() as i64, &msg, false);
            None
        }
        Err(e) => {
            let msg = e.to_string();
            let wait = crate::backoff::Policy::new(Duration::from_secs(1), cap).delay(row.attempts + 1);
            tracing::warn!(key = %row.key, attempts = row.attempts + 1, retry_in = ?wait, "upload failed: {msg}");
            // The store answered: it is up, whatever it thinks of this object.
            rt.links.with(&row.provider, |l| {
                if let Some(s) = l.offline_since_ms.take() {
                    l.offline_ms_total += now - s;
                }
                l.online = true;
                l.failures = 0;
            });
            let _ = rt
                .journal
                .outbox_later(row.id, now + wait.as_millis() as i64, &msg, true);
            None
        }
    }
}

/// How long one upload may take: 30 s, plus the time at 64 KiB/s (or at the cap, when lower).
fn upload_time_limit(size: u64, cap: u64) -> Duration {
    let rate = if cap > 0 { cap.min(64 << 10) } else { 64 << 10 };
    Duration::from_secs(30 + size / rate)
}

/// TTL, forgetting old rows, and raw items past their retention.
fn housekeeping(rt: &Runtime) {
    let now = now_ms();
    let ttl = rt.cfg.sync.ttl.as_millis() as i64;
    if let Ok(old) = rt.journal.outbox_older_than(now - ttl) {
        for row in old {
            let reason = format!(
                "not uploaded within the TTL ({})",
                humantime::format_duration(rt.cfg.sync.ttl)
            );
            tracing::warn!(key = %row.key, "{reason}; dropped");
            if rt
                .journal
                .outbox_drop(row.id, "dropped", &reason, "outbox_dropped_ttl")
                .is_ok()
            {
                let _ = std::fs::remove_file(&row.local_path);
            }
        }
    }
    let _ = rt.journal.outbox_forget_done(now - 24 * 3600 * 1000);
    crate::ingest::raw::upkeep(rt);
}
