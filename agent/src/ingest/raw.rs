//! The raw camera frame, from the moment it lands to the moment it is gone: the one owner of its
//! life. Nothing else writes, settles, deletes, retries or quarantines a raw item.
//!
//! The rules, and the tests that hold them:
//! - **Where:** `<ingest.path>/<camera>/<time>-<n>.<ext>` in the local store (`area`,
//!   `IngestConfig::raw_prefix`), written under a new name, never over one (`write_new`).
//! - **Never uploaded:** the outbox refuses a file under the raw area or with a raw item's bytes
//!   (`outbox::spool::enqueue`; `tests/ingest.rs` `bad_input_is_counted_and_skipped_and_raw_never_leaves`,
//!   `tests/ingest_outbox.rs`).
//! - **Never read out:** the S3 endpoint and `/system/buckets` refuse the raw area
//!   (`gateway::s3::store`, `gateway::buckets`; `tests/s3_endpoint.rs`
//!   `the_s3_endpoint_gives_no_service_or_stranger_what_is_not_theirs`).
//! - **Deleted when settled:** once every invocation on it succeeded (`settle`, called when an
//!   invocation on a raw key finishes and, for those a crash left unsettled, by `upkeep`), at once
//!   or after `ingest.raw_retention` (`upkeep`).
//! - **Failed:** run again up to `max_attempts`, then moved out of the store into the quarantine
//!   and deleted after `retention.max_age` (`retry_or_quarantine`;
//!   `tests/housekeeping.rs` `frames_that_keep_failing_are_retried_then_quarantined`).
//! - **Cut by a crash:** a file with no journal row was never acknowledged; it is swept at start
//!   (`sweep_orphans`; `tests/runtime_crash.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::journal::{now_ms, IngestRow, JournalError};
use crate::runtime::{Result, Runtime};

/// Is this key of the local store a raw item's?
pub fn is_raw(rt: &Runtime, key: &str) -> bool {
    key.starts_with(&rt.cfg.ingest.raw_prefix())
}

/// The raw area's folder.
pub fn area(rt: &Runtime) -> PathBuf {
    rt.data.raw_area(&rt.cfg.ingest.path)
}

static SEQ: AtomicU64 = AtomicU64::new(0);
/// The last time (ms) a name was made from: names never go back while fogd runs, even when the
/// clock does (a box without an RTC setting its time from NTP).
static LAST_MS: AtomicU64 = AtomicU64::new(0);

/// `20261126T205418.123Z-000042`: sorts by arrival. Unique by construction within a run; across
/// runs (the clock set back, the counter restarted) the file is created only if new, so a name
/// taken already is never overwritten: the caller asks again.
pub(super) fn item_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let ms = LAST_MS.fetch_max(now, Ordering::Relaxed).max(now);
    let t = humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string();
    let t: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{t}-{:06}", SEQ.fetch_add(1, Ordering::Relaxed) % 1_000_000)
}

/// Writes `payload` under a new item name in `dir_key` of the store at `root`; returns the key
/// and path. Straight to its name, no temporary and rename: nothing reads it before its batch
/// is journalled, and a file a crash cut short has no row and is swept at start.
pub(super) fn write_new(
    root: &Path,
    dir_key: &str,
    ext: &str,
    payload: &[u8],
    mut name: impl FnMut() -> String,
) -> std::io::Result<(String, PathBuf)> {
    use std::io::Write;
    loop {
        let key = format!("{dir_key}/{}.{ext}", name());
        let path = root.join(&key);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(payload)?;
                return Ok((key, path));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Once every invocation on a raw camera item succeeded, the item is processed: deleted now
/// (or after `ingest.raw_retention`, by `upkeep`).
pub fn settle(rt: &Runtime, event_id: i64) {
    match rt.journal.ingest_settle(event_id) {
        Ok(Some(row)) => {
            rt.event(
                "frame_anonymised",
                serde_json::json!({"camera": row.camera, "key": row.key}),
            );
            if rt.cfg.ingest.raw_retention.is_zero() {
                delete(rt, &row);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("{e}"),
    }
}

/// Deletes a processed raw item (its row stays, to know a redelivery by its content).
fn delete(rt: &Runtime, row: &IngestRow) {
    match std::fs::remove_file(&row.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %row.path, "cannot delete the raw item: {e}");
            return;
        }
    }
    if let Err(e) = rt.journal.ingest_deleted(row.id) {
        tracing::warn!("{e}");
    }
}

/// The outbox loop's pass: items whose last invocation finished just before a crash are settled,
/// and processed items past `ingest.raw_retention` deleted.
pub fn upkeep(rt: &Runtime) {
    for event_id in rt.journal.ingest_unsettled().unwrap_or_default() {
        settle(rt, event_id);
    }
    let keep = rt.cfg.ingest.raw_retention.as_millis() as i64;
    if let Ok(rows) = rt.journal.ingest_expired(now_ms() - keep) {
        for r in rows {
            delete(rt, &r);
        }
    }
}

/// Raw frames whose anonymisation failed: run again while attempts are left, then moved out of
/// the store (never uploaded, counted as `ingest_quarantined`) and deleted after `cutoff` (ms).
/// Returns how many were retried and how many quarantined.
pub fn retry_or_quarantine(rt: &Runtime, cutoff: i64) -> std::result::Result<(usize, usize), JournalError> {
    let retried = rt.journal.ingest_retry_failed(rt.cfg.max_attempts)?;
    if retried > 0 {
        rt.wake.notify_one();
    }
    let mut quarantined = 0;
    for row in rt.journal.ingest_given_up(rt.cfg.max_attempts)? {
        let from = Path::new(&row.path);
        let name = from.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        let to = rt.data.quarantine().join(&row.camera).join(name);
        if let Some(dir) = to.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::rename(from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %from.display(), "cannot quarantine the raw item: {e}");
                continue;
            }
        }
        rt.journal.ingest_quarantined(row.id, &to.display().to_string())?;
        tracing::warn!(camera = %row.camera, key = %row.key, "raw item quarantined: its processing failed {} times", rt.cfg.max_attempts);
        rt.event(
            "frame_quarantined",
            serde_json::json!({"camera": row.camera, "key": row.key}),
        );
        quarantined += 1;
    }
    for row in rt.journal.ingest_quarantine_expired(cutoff)? {
        let _ = std::fs::remove_file(&row.path);
        rt.journal.ingest_deleted(row.id)?;
    }
    Ok((retried, quarantined))
}

/// Removes raw files with no journal row: written by a batch that a crash cut short before its
/// commit. Their sources were not acknowledged and deliver them again. (Temporary files of cut
/// writes are swept with the rest of the store's at start.)
/// Only files older than `before` (the node's start) are looked at: one written since is not
/// an ingest cut short but a `fogd put` or S3 PUT racing the start, journalled in a moment.
pub async fn sweep_orphans(rt: &Runtime, before: std::time::SystemTime) -> Result<usize> {
    let store = rt.local_store();
    let mut removed = 0;
    for meta in store.list(&rt.cfg.ingest.raw_prefix()).await? {
        let old = std::fs::metadata(rt.data.store_object(&meta.key))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t < before);
        if old && !rt.journal.ingest_has_key(&meta.key)? && store.delete(&meta.key).await.is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_taken_already_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("cam")).expect("mk");
        // A raw frame waits under the name a restarted fogd whose clock went back makes again.
        std::fs::write(dir.path().join("cam/t-000001.jpg"), b"waiting raw frame").expect("w");
        let mut names = ["t-000001", "t-000002"].into_iter().map(str::to_string);
        let (key, path) = write_new(dir.path(), "cam", "jpg", b"new", || {
            names.next().unwrap_or_default()
        })
        .expect("write");
        assert_eq!(key, "cam/t-000002.jpg");
        assert_eq!(std::fs::read(path).expect("r"), b"new");
        assert_eq!(
            std::fs::read(dir.path().join("cam/t-000001.jpg")).expect("r"),
            b"waiting raw frame"
        );
        // Names made in a run never go back, whatever the clock does.
        let (a, b) = (item_name(), item_name());
        assert!(a < b, "{a} {b}");
    }
}
