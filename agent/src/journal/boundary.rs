//! The journal's async boundary, measured: every use of the SQLite connection from a thread of
//! a tokio runtime that is not inside `blocking` (an async worker, where a disk wait stalls
//! every task on that thread) is counted. The daemon's paths go through `Journal::call`,
//! `offload` or `blocking`; `tests/journal_boundary.rs` drives a node (a chain, `/job`, `/run`,
//! shutdown) and checks that the count stays 0.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    static OFF_WORKER: Cell<bool> = const { Cell::new(false) };
    /// This thread's share of the count (what the unit test reads: tests run side by side).
    static HERE: Cell<u64> = const { Cell::new(0) };
}

static ON_WORKER: AtomicU64 = AtomicU64::new(0);

/// Runs `f` as journal work that may block: call it inside `spawn_blocking` (or on a thread of
/// fogd's own) around code that uses the journal.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    let was = OFF_WORKER.with(|c| c.replace(true));
    let r = f();
    OFF_WORKER.with(|c| c.set(was));
    r
}

/// Runs `f` (sync code that uses the journal) on tokio's blocking pool, inside `blocking`.
/// Panics in `f` propagate; a pool shut down under it (the process stopping) is `None`.
pub async fn offload<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    match tokio::task::spawn_blocking(move || blocking(f)).await {
        Ok(r) => Some(r),
        Err(e) => match e.try_into_panic() {
            Ok(p) => std::panic::resume_unwind(p),
            Err(_) => None,
        },
    }
}

/// Counts a use of the connection from an async worker thread.
pub(super) fn note_use() {
    if !OFF_WORKER.with(Cell::get) && tokio::runtime::Handle::try_current().is_ok() {
        ON_WORKER.fetch_add(1, Ordering::Relaxed);
        HERE.with(|c| c.set(c.get() + 1));
        tracing::trace!("journal used on an async worker thread");
    }
}

/// Journal uses on async worker threads since the process started.
pub fn uses_on_async_workers() -> u64 {
    ON_WORKER.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_on_a_runtime_thread_not_inside_blocking_nor_outside_a_runtime() {
        let here = || HERE.with(Cell::get);
        note_use(); // no runtime here
        assert_eq!(here(), 0);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            blocking(note_use);
            assert_eq!(here(), 0);
            note_use();
        });
        assert_eq!(here(), 1);
        assert!(uses_on_async_workers() >= 1);
    }
}
