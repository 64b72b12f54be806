//! The outbox as the operator sees and handles it (`fogd outbox`, the gateway's outbox view):
//! its rows and counts, retrying now, purging by hand. The node's own queue work is `outbox.rs`.

use rusqlite::params;

use super::outbox::{bump, row, OutboxRow, COLUMNS};
use super::{Journal, Result};

impl Journal {
    /// Rows, newest first; `state` filters.
    pub fn outbox_list(&self, state: Option<&str>, limit: usize) -> Result<Vec<OutboxRow>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM outbox WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2"),
            params![state, limit as i64],
            row,
        )
    }

    /// Objects uploaded, in the order they went up.
    pub fn outbox_uploaded(&self) -> Result<Vec<OutboxRow>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM outbox WHERE state = 'done' ORDER BY done_seq"),
            [],
            row,
        )
    }

    /// Makes pending objects due now (`ids` empty: all of them). Returns how many.
    pub fn outbox_retry(&self, ids: &[i64]) -> Result<usize> {
        let conn = self.conn();
        if ids.is_empty() {
            return conn
                .execute("UPDATE outbox SET next_try_ms = 0 WHERE state = 'pending'", [])
                .map_err(|e| self.err(e));
        }
        let mut n = 0;
        for id in ids {
            n += conn
                .execute(
                    "UPDATE outbox SET next_try_ms = 0 WHERE state = 'pending' AND id = ?1",
                    [id],
                )
                .map_err(|e| self.err(e))?;
        }
        Ok(n)
    }

    /// Removes rows (and returns their files' paths): the given ids, or every row in `state`.
    pub fn outbox_purge(&self, ids: &[i64], state: Option<&str>) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut paths = Vec::new();
        {
            let mut by_id = tx
                .prepare_cached("DELETE FROM outbox WHERE id = ?1 RETURNING local_path, state")
                .map_err(|e| self.err(e))?;
            let mut by_state = tx
                .prepare_cached("DELETE FROM outbox WHERE state = ?1 RETURNING local_path, state")
                .map_err(|e| self.err(e))?;
            let mut take = |rows: rusqlite::Result<Vec<(String, String)>>| -> Result<u64> {
                let rows = rows.map_err(|e| self.err(e))?;
                let pending = rows.iter().filter(|(_, s)| s == "pending").count() as u64;
                paths.extend(rows.into_iter().map(|(p, _)| p));
                Ok(pending)
            };
            let mut purged_pending = 0;
            for id in ids {
                purged_pending += take(
                    by_id
                        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|r| r.collect()),
                )?;
            }
            if let Some(s) = state {
                purged_pending += take(
                    by_state
                        .query_map([s], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|r| r.collect()),
                )?;
            }
            bump(&tx, "outbox_purged", purged_pending).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(paths)
    }

    /// Objects and bytes waiting in the outbox.
    pub fn outbox_totals(&self) -> Result<(u64, u64)> {
        self.conn()
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE state = 'pending'",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(|e| self.err(e))
    }

    /// Rows by state.
    pub fn outbox_counts(&self) -> Result<Vec<(String, u64)>> {
        self.rows("SELECT state, COUNT(*) FROM outbox GROUP BY state", [], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
    }
}
