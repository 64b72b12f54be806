//! The outbox: objects bound for remote stores. A row is `pending` until uploaded (`done`), or
//! `dropped` (disk quota, TTL, by hand) or `corrupt` (its spooled file no longer matches its
//! checksum). Objects of one group (the key's folder) go up one after another, in order.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{now_ms, InvocationId, Journal, JournalError, Result};
use crate::config::FullPolicy;

/// An object to queue.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub provider: String,
    pub key: String,
    /// The spooled file (under `data/outbox/`), owned by the outbox from now on.
    pub local_path: String,
    pub size: u64,
    /// xxh3-128 of the content.
    pub checksum: String,
    /// Content-MD5 (base64), checked by the receiving store.
    pub md5: String,
    pub priority: i64,
    /// The invocation that wrote it (None: an ingested frame, a pushed input).
    pub invocation: Option<InvocationId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub provider: String,
    pub key: String,
    pub local_path: String,
    pub size: u64,
    pub checksum: String,
    pub md5: String,
    pub priority: i64,
    pub attempts: u32,
    pub next_try_ms: i64,
    pub state: String,
    pub error: Option<String>,
    pub created_ms: i64,
    pub group: String,
    pub done_ms: Option<i64>,
    /// The invocation whose output it is.
    pub invocation: Option<InvocationId>,
}

/// What `outbox_enqueue` did. The paths are spooled files no longer needed (the caller removes
/// them).
#[derive(Debug)]
pub enum Enqueued {
    Queued {
        id: i64,
        freed: Vec<String>,
    },
    /// The same content was already uploaded under this key.
    AlreadyDone,
    /// The outbox is full and the policy is `reject_new`: this object was dropped.
    Rejected,
}

impl Journal {
    /// Queues an object, applying the quota's policy, in one transaction. Refuses (with an
    /// error naming the raw item) content that is byte for byte a raw camera item.
    pub fn outbox_enqueue(&self, item: &OutboxItem, quota: u64, policy: FullPolicy) -> Result<Enqueued> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let raw: Option<(String, String)> = tx
            .query_row(
                "SELECT key, camera FROM ingest WHERE checksum = ?1 LIMIT 1",
                [&item.checksum],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((raw, camera)) = raw {
            return Err(JournalError::RawContent {
                provider: item.provider.clone(),
                key: item.key.clone(),
                raw,
                camera,
            });
        }
        let existing: Option<(i64, String, String, String)> = tx
            .query_row(
                "SELECT id, state, checksum, local_path FROM outbox WHERE provider = ?1 AND key = ?2",
                params![item.provider, item.key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let mut freed = Vec::new();
        if let Some((_, state, sum, _)) = &existing {
            if state == "done" && *sum == item.checksum {
                tx.commit().map_err(|e| self.err(e))?;
                return Ok(Enqueued::AlreadyDone);
            }
        }
        // The replaced version's bytes no longer count.
        let replaced = existing
            .as_ref()
            .filter(|(_, state, _, _)| state == "pending")
            .map(|(id, ..)| *id);
        let used: i64 = tx
            .query_row(
                "SELECT COALESCE(SUM(size), 0) FROM outbox WHERE state = 'pending' AND id != ?1",
                [replaced.unwrap_or(-1)],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let mut over = (used as u64 + item.size).saturating_sub(quota);
        if over > 0 {
            if policy == FullPolicy::RejectNew || item.size > quota {
                bump(&tx, "outbox_dropped_full", 1).map_err(|e| self.err(e))?;
                tx.commit().map_err(|e| self.err(e))?;
                return Ok(Enqueued::Rejected);
            }
            // Lowest priority first, then oldest.
            let victims: Vec<(i64, i64, String)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT id, size, local_path FROM outbox WHERE state = 'pending' AND id != ?1
                         ORDER BY priority, id",
                    )
                    .map_err(|e| self.err(e))?;
                let rows = st
                    .query_map([replaced.unwrap_or(-1)], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .and_then(|r| r.collect::<rusqlite::Result<Vec<_>>>())
                    .map_err(|e| self.err(e))?;
                let mut chosen = Vec::new();
                for (id, size, path) in rows {
                    if over == 0 {
                        break;
                    }
                    over = over.saturating_sub(size as u64);
                    chosen.push((id, size, path));
                }
                chosen
            };
            for (id, _, path) in &victims {
                tx.execute(
                    "UPDATE outbox SET state = 'dropped', error = 'disk quota reached (drop_oldest)' WHERE id = ?1",
                    [id],
                )
                .map_err(|e| self.err(e))?;
                freed.push(path.clone());
            }
            bump(&tx, "outbox_dropped_full", victims.len() as u64).map_err(|e| self.err(e))?;
        }
        if let Some((_, _, _, old_path)) = &existing {
            if *old_path != item.local_path {
                freed.push(old_path.clone());
            }
        }
        let group = item.key.rsplit_once('/').map_or("", |(g, _)| g);
        let id: i64 = tx
            .query_row(
                "INSERT INTO outbox(provider, key, local_path, size, checksum, md5, priority, state, created_ms, grp,
                                    invocation_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9, ?10)
                 ON CONFLICT(provider, key) DO UPDATE SET local_path = ?3, size = ?4, checksum = ?5,
                    md5 = ?6, priority = ?7, state = 'pending', attempts = 0, next_try_ms = 0,
                    error = NULL, created_ms = ?8, done_ms = NULL, done_seq = NULL, invocation_id = ?10
                 RETURNING id",
                params![
                    item.provider,
                    item.key,
                    item.local_path,
                    item.size as i64,
                    item.checksum,
                    item.md5,
                    item.priority,
                    now_ms(),
                    format!("{}/{group}", item.provider),
                    item.invocation
                ],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Enqueued::Queued { id, freed })
    }

    /// Pending objects that may go now: due, and first of their group. Highest priority first.
    ///
    /// Within a group, the outputs of camera frames go in capture order (the raw item's ingest
    /// id), not in the order their invocations finished (with `concurrency: 2`, frame 8 may end
    /// before frame 7); other objects in the order they were queued. The first of a group waits
    /// while an earlier frame of its camera is still being processed: its output would come
    /// after it otherwise.
    pub fn outbox_due(&self, now: i64, limit: usize) -> Result<Vec<OutboxRow>> {
        self.rows(
            &format!(
                "WITH p AS (
                   SELECT o.id AS oid, g.id AS cap, g.camera AS cam,
                          ROW_NUMBER() OVER (PARTITION BY o.grp ORDER BY COALESCE(g.id, 0), o.id) AS n
                   FROM outbox o
                   LEFT JOIN invocations v ON v.id = o.invocation_id
                   LEFT JOIN ingest g ON g.event_id = v.event_id AND g.event_id IS NOT NULL
                   WHERE o.state = 'pending')
                 SELECT {COLUMNS} FROM outbox JOIN p ON p.oid = outbox.id
                 WHERE p.n = 1 AND next_try_ms <= ?1
                   AND (p.cap IS NULL OR NOT EXISTS (
                         SELECT 1 FROM invocations v2 JOIN ingest g2 ON g2.event_id = v2.event_id
                         WHERE v2.state IN ('queued', 'running', 'delegated')
                           AND g2.camera = p.cam AND g2.id < p.cap))
                 ORDER BY priority DESC, outbox.id LIMIT ?2"
            ),
            params![now, limit as i64],
            row,
        )
    }

    /// When the next pending object is due (to sleep until then).
    pub fn outbox_next_due(&self) -> Result<Option<i64>> {
        self.conn()
            .query_row(
                "SELECT MIN(next_try_ms) FROM outbox WHERE state = 'pending'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Marks uploaded objects done, in the order given, in one transaction.
    pub fn outbox_done_many(&self, ids: &[i64]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'done', error = NULL, done_ms = ?2,
                        done_seq = (SELECT COALESCE(MAX(done_seq), 0) + 1 FROM outbox)
                     WHERE id = ?1",
                )
                .map_err(|e| self.err(e))?;
            let now = now_ms();
            for id in ids {
                st.execute(params![id, now]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn outbox_done(&self, id: i64) -> Result<()> {
        self.outbox_done_many(&[id])
    }

    /// A failed try: the object waits until `next_try_ms`. `attempt` counts it against the
    /// object (false when the whole store was unreachable).
    pub fn outbox_later(&self, id: i64, next_try_ms: i64, error: &str, attempt: bool) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE outbox SET next_try_ms = ?2, error = ?3, attempts = attempts + ?4 WHERE id = ?1",
                params![id, next_try_ms, error, attempt as i64],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Notes on every pending object of `provider` why it waits (the store is unreachable), so
    /// that `fogd queue ls` tells, not only for the object that was tried.
    pub fn outbox_note_provider(&self, provider: &str, error: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE outbox SET error = ?2 WHERE provider = ?1 AND state = 'pending'",
                params![provider, error],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Ends an object without uploading it (`dropped` or `corrupt`), counted under `counter`.
    pub fn outbox_drop(&self, id: i64, state: &str, reason: &str, counter: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE outbox SET state = ?2, error = ?3 WHERE id = ?1 AND state = 'pending'",
            params![id, state, reason],
        )
        .map_err(|e| self.err(e))?;
        bump(&tx, counter, 1).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Pending objects created before `before_ms` (past their TTL).
    pub fn outbox_older_than(&self, before_ms: i64) -> Result<Vec<OutboxRow>> {
        self.rows(
            &format!("SELECT {COLUMNS} FROM outbox WHERE state = 'pending' AND created_ms < ?1 LIMIT 1000"),
            [before_ms],
            row,
        )
    }

    /// Forgets uploaded rows older than `before_ms` (their files are gone already).
    pub fn outbox_forget_done(&self, before_ms: i64) -> Result<usize> {
        self.conn()
            .execute(
                "DELETE FROM outbox WHERE state = 'done' AND done_ms < ?1",
                [before_ms],
            )
            .map_err(|e| self.err(e))
    }
}

/// Adds `n` to a counter, inside the caller's transaction (or on its own connection).
pub(super) fn bump(conn: &rusqlite::Connection, name: &str, n: u64) -> rusqlite::Result<()> {
    if n == 0 {
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT INTO counters(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = value + ?2",
    )?
    .execute(params![name, n as i64])
    .map(|_| ())
}

pub(super) const COLUMNS: &str =
    "id, provider, key, local_path, size, checksum, md5, priority, attempts, next_try_ms, \
                       state, error, created_ms, grp, done_ms, invocation_id";

pub(super) fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        provider: r.get(1)?,
        key: r.get(2)?,
        local_path: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        checksum: r.get(5)?,
        md5: r.get(6)?,
        priority: r.get(7)?,
        attempts: r.get::<_, i64>(8)? as u32,
        next_try_ms: r.get(9)?,
        state: r.get(10)?,
        error: r.get(11)?,
        created_ms: r.get(12)?,
        group: r.get(13)?,
        done_ms: r.get(14)?,
        invocation: r.get::<_, Option<i64>>(15)?.map(InvocationId),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalSync;

    fn item(key: &str, size: u64, sum: &str) -> OutboxItem {
        OutboxItem {
            provider: "minio.sw".into(),
            key: key.into(),
            local_path: format!("/spool/{key}"),
            size,
            checksum: sum.into(),
            md5: String::new(),
            priority: 0,
            invocation: None,
        }
    }

    #[test]
    fn quota_policies_order_and_idempotent_keys() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let q =
            |j: &Journal, k: &str, sum: &str, p| j.outbox_enqueue(&item(k, 10, sum), 30, p).expect("enqueue");
        for k in ["b/cam1/1", "b/cam1/2", "b/cam2/1"] {
            assert!(matches!(
                q(&j, k, k, FullPolicy::RejectNew),
                Enqueued::Queued { .. }
            ));
        }
        // Full: reject_new drops the newcomer, drop_oldest the oldest.
        assert!(matches!(
            q(&j, "b/cam1/3", "x3", FullPolicy::RejectNew),
            Enqueued::Rejected
        ));
        match q(&j, "b/cam1/3", "x3", FullPolicy::DropOldest) {
            Enqueued::Queued { freed, .. } => assert_eq!(freed, ["/spool/b/cam1/1"]),
            other => panic!("{other:?}"),
        }
        // One head per folder, in order; cam1/2 is now cam1's head.
        let due: Vec<String> = j
            .outbox_due(now_ms(), 10)
            .expect("due")
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(due, ["b/cam1/2", "b/cam2/1"]);
        let head = j.outbox_due(now_ms(), 10).expect("due")[0].id;
        j.outbox_done(head).expect("done");
        // The same content under the same key again: nothing to do.
        assert!(matches!(
            q(&j, "b/cam1/2", "b/cam1/2", FullPolicy::DropOldest),
            Enqueued::AlreadyDone
        ));
        // The upload is counted by the journal's trigger, with its bytes.
        let counters = format!("{:?}", j.counters().expect("c"));
        let want = r#"[("outbox_dropped_full", 2), ("outbox_uploaded", 1), ("outbox_uploaded_bytes", 10)]"#;
        assert_eq!(counters, want);
        // A raw item's content never enters.
        j.ingest_batch(
            &[crate::journal::Spooled {
                source: "mqtt".into(),
                camera: "door".into(),
                topic: "t".into(),
                key: "cameras/incoming/door/a.jpg".into(),
                path: "/raw/a.jpg".into(),
                size: 10,
                checksum: "rawsum".into(),
            }],
            "2026-11-26T00:00:00Z",
            &[vec![]],
        )
        .expect("ingest");
        let e = j
            .outbox_enqueue(&item("b/cam1/9", 10, "rawsum"), 1000, FullPolicy::DropOldest)
            .expect_err("raw");
        assert!(e.to_string().contains("raw frames never leave"), "{e}");
    }
}
