//! The worker's ledger (`fogd_vision_proto::ledger`) as fogd-vision writes it. A fenced request
//! may read the ledger but not write it (a script could aim the request's own writes there, and
//! overwrite an entry): while it runs its entries are held here, and the worker writes them from
//! its own thread once the request is over, before it replies.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use fogd_vision_proto::ledger::{self, Entry};

/// Entries held for the request running now (requests run one at a time): the ledger's folder,
/// the SHA-256 of the bytes written, the entry.
static HELD: Mutex<Option<Vec<(PathBuf, String, Entry)>>> = Mutex::new(None);

/// Records `entry` for `written`: at once, or held while a fenced request runs.
pub fn record(dir: &Path, written: &[u8], entry: &Entry) -> std::io::Result<()> {
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    match held.as_mut() {
        Some(list) => {
            list.push((dir.to_path_buf(), ledger::sha256_hex(written), entry.clone()));
            Ok(())
        }
        None => ledger::record(dir, written, entry),
    }
}

/// From now on entries are held (a fenced request is about to run).
pub fn hold() {
    *HELD.lock().unwrap_or_else(PoisonError::into_inner) = Some(Vec::new());
}

/// Writes the entries held, and records at once again. Called from the worker's own thread.
pub fn release() {
    let held = HELD.lock().unwrap_or_else(PoisonError::into_inner).take();
    for (dir, sha, entry) in held.unwrap_or_default() {
        if let Err(e) = ledger::record_named(&dir, &sha, &entry) {
            tracing::warn!(entry = %sha, "not in the ledger (no receipt, no verdict counted): {e}");
        }
    }
}
