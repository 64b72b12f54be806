//! The node's upkeep, once at start and then every `retention.interval`: work folders that no
//! running invocation needs, upload spool files left by a crash, raw frames whose anonymisation
//! failed (run again up to `max_attempts`, then quarantined), and retention (finished
//! invocations, events, ingest and outbox rows by age and count; logs by age, count and bytes;
//! the quarantine by age).
//! A box left alone for months stays within its disk and inodes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::runtime::Runtime;

/// A final invocation's folder stays this long (a `/run` caller reads its outputs meanwhile).
const WORK_GRACE: Duration = Duration::from_secs(600);
/// A spool file of an upload this old belonged to a request that is long gone.
const SPOOL_GRACE: Duration = Duration::from_secs(3600);
const BATCH: usize = 2000;

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub work_folders: usize,
    pub spool_files: usize,
    pub retried: usize,
    pub quarantined: usize,
    pub invocations: usize,
    pub rows: usize,
    pub logs: usize,
}

/// Sweeps at start and every `retention.interval` until `stop`.
pub async fn run(rt: Arc<Runtime>, mut stop: watch::Receiver<bool>) {
    loop {
        let rt2 = rt.clone();
        match crate::journal::boundary::offload(move || sweep(&rt2)).await {
            Some(Ok(s)) if s != Swept::default() => tracing::info!(?s, "housekeeping"),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => tracing::warn!("housekeeping: {e}"),
        }
        tokio::select! {
            _ = crate::runtime::stopped(&mut stop) => return,
            _ = tokio::time::sleep(rt.cfg.retention.interval) => {}
        }
    }
}

fn older_than(p: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|a| a > age)
}

/// One sweep (blocking: files and the journal).
pub fn sweep(rt: &Runtime) -> Result<Swept, crate::journal::JournalError> {
    let mut s = Swept::default();
    let now = crate::journal::now_ms();
    let started_ms = now - rt.started.elapsed().as_millis() as i64;
    // Work folders: kept while their invocation may still run or be read. One that ended before
    // this node started has no `/run` caller waiting for it any more.
    for e in std::fs::read_dir(rt.data.work()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let keep = match rt.journal.job(&name)? {
            Some(inv) if !inv.state.is_final() => true,
            Some(inv) => inv
                .finished_ms
                .is_some_and(|f| f >= started_ms && now - f < WORK_GRACE.as_millis() as i64),
            // No invocation (pruned, or never recorded): unless it was made a moment ago.
            None => !older_than(&e.path(), WORK_GRACE),
        };
        if !keep && std::fs::remove_dir_all(e.path()).is_ok() {
            s.work_folders += 1;
        }
    }
    for e in std::fs::read_dir(&rt.cfg.data_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("upload-")
            && name.ends_with(".tmp")
            && older_than(&e.path(), SPOOL_GRACE)
            && std::fs::remove_file(e.path()).is_ok()
        {
            s.spool_files += 1;
        }
    }
    // The vision worker's ledger entries are looked up as soon as their frames are stored (an
    // hour is plenty: a script cannot fill the disk with them for a day); stamped copies outlive
    // their invocation only after a crash.
    for (dir, grace) in [
        (rt.data.vision_ledger(), fogd_vision_proto::ledger::GRACE),
        (rt.data.stamped(), SPOOL_GRACE),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if older_than(&e.path(), grace) && std::fs::remove_file(e.path()).is_ok() {
                s.spool_files += 1;
            }
        }
    }
    let r = &rt.cfg.retention;
    let cutoff = now - r.max_age.as_millis() as i64;
    (s.retried, s.quarantined) = crate::ingest::raw::retry_or_quarantine(rt, cutoff)?;
    loop {
        let p = rt.journal.prune(cutoff, r.max_invocations, BATCH)?;
        if p.total() == 0 {
            break;
        }
        for (service, uuid) in &p.invocations {
            if std::fs::remove_file(rt.log_path(service, uuid)).is_ok() {
                s.logs += 1;
            }
        }
        s.invocations += p.invocations.len();
        s.rows += p.events + p.ingest + p.outbox;
    }
    s.logs += trim_logs(&rt.data.logs(), r.max_log_bytes);
    if rt.data.make_reserve(rt.cfg.min_free_bytes) {
        tracing::info!("space is back: the journal's reserve is made again");
    }
    Ok(s)
}

/// Removes the oldest logs until those left take at most `max` bytes. Returns how many went.
fn trim_logs(root: &Path, max: u64) -> usize {
    let mut logs = Vec::new();
    for svc in std::fs::read_dir(root).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(svc.path()).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata() {
                let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                logs.push((t, m.len(), e.path()));
            }
        }
    }
    let mut total: u64 = logs.iter().map(|(_, n, _)| n).sum();
    if total <= max {
        return 0;
    }
    logs.sort();
    let mut removed = 0;
    for (_, n, p) in logs {
        if total <= max {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            total -= n;
            removed += 1;
        }
    }
    removed
}

/// The node's recent log lines (`GET /system/logs`) kept in `data_dir/node.log`, written every
/// 30 s and at the stop, so that the run before this one (`?previous=true`) is there after a
/// restart, and after a crash up to its last 30 s. Bounded by fogd-log's ring (2 MiB).
pub fn keep_node_log(
    data: crate::paths::DataDir,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (now, before) = (data.node_log(), data.node_log_previous());
    if now.exists() {
        let _ = std::fs::rename(&now, &before);
    }
    tokio::spawn(async move {
        let save = |path: std::path::PathBuf| async move {
            let text = fogd_log::recent().join("\n") + "\n";
            let tmp = path.with_extension("log.tmp");
            if tokio::fs::write(&tmp, text).await.is_ok() {
                let _ = tokio::fs::rename(&tmp, &path).await;
            }
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => save(now.clone()).await,
                _ = crate::runtime::stopped(&mut stop) => break,
            }
        }
        save(now).await;
    })
}
