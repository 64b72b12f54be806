//! Ingested camera items: one row per item in the raw area, with its content hash (a message
//! the broker delivers again after a crash is known by it) and its state (`spooled`, then
//! `processed` when every invocation on it succeeded, then `deleted`).

use rusqlite::{params, OptionalExtension};

use super::{job_uuid, now_ms, now_us, InvocationId, Journal, Result};

/// An item written to the raw area, about to be journalled.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// `mqtt`, `dir`.
    pub source: String,
    pub camera: String,
    /// The MQTT topic or the file it came from.
    pub topic: String,
    /// Its key in the local store (`cameras/<camera>/<name>`).
    pub key: String,
    pub path: String,
    pub size: u64,
    /// xxh3-128 of the content (the local store's etag).
    pub checksum: String,
}

#[derive(Debug, Clone)]
pub struct IngestRow {
    pub id: i64,
    pub camera: String,
    pub key: String,
    pub path: String,
    pub checksum: String,
    pub state: String,
}

impl Journal {
    /// Was this content already ingested from this camera?
    pub fn ingest_known(&self, camera: &str, checksum: &str) -> Result<bool> {
        self.conn()
            .prepare_cached("SELECT 1 FROM ingest WHERE camera = ?1 AND checksum = ?2")
            .and_then(|mut st| st.exists(params![camera, checksum]))
            .map_err(|e| self.err(e))
    }

    /// Journals a batch of spooled items, each with its event and the invocations it routes to
    /// (`services[i]` for `items[i]`), in one transaction. Returns per item the invocations made,
    /// or `None` for a duplicate (same camera and content).
    pub fn ingest_batch(
        &self,
        items: &[Spooled],
        event_time: &str,
        services: &[Vec<String>],
    ) -> Result<Vec<Option<Vec<InvocationId>>>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = now_ms();
        let mut out = Vec::with_capacity(items.len());
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO ingest(source, camera, topic, key, spool_path, size, checksum, state, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'spooled', ?8)
                     ON CONFLICT(camera, checksum) DO NOTHING RETURNING id",
                )
                .map_err(|e| self.err(e))?;
            let mut ev = tx
                .prepare_cached(
                    "INSERT INTO events(provider, key, etag, size, event_time, source, created_us)
                     VALUES ('minio.default', ?1, ?2, ?3, ?4, 'ingest', ?5)
                     ON CONFLICT(provider, key, etag) DO NOTHING RETURNING id",
                )
                .map_err(|e| self.err(e))?;
            let mut link = tx
                .prepare_cached("UPDATE ingest SET event_id = ?2 WHERE id = ?1")
                .map_err(|e| self.err(e))?;
            let mut inv = tx
                .prepare_cached(
                    "INSERT INTO invocations(uuid, service, event_id, state, created_ms)
                     VALUES (?1, ?2, ?3, 'queued', ?4) RETURNING id",
                )
                .map_err(|e| self.err(e))?;
            for (item, svcs) in items.iter().zip(services) {
                let id: Option<i64> = ins
                    .query_row(
                        params![
                            item.source,
                            item.camera,
                            item.topic,
                            item.key,
                            item.path,
                            item.size as i64,
                            item.checksum,
                            now
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?;
                let Some(id) = id else {
                    out.push(None);
                    continue;
                };
                let event_id: Option<i64> = ev
                    .query_row(
                        params![item.key, item.checksum, item.size as i64, event_time, now_us()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(e))?;
                let mut ids = Vec::new();
                if let Some(event_id) = event_id {
                    link.execute(params![id, event_id]).map_err(|e| self.err(e))?;
                    for svc in svcs {
                        let i = inv
                            .query_row(params![job_uuid(svc), svc, event_id, now], |r| r.get(0))
                            .map_err(|e| self.err(e))?;
                        ids.push(i);
                    }
                }
                out.push(Some(ids));
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The raw item behind an event, when the event is an ingested item.
    pub fn ingest_of_event(&self, event_id: i64) -> Result<Option<IngestRow>> {
        self.conn()
            .prepare_cached(&format!("SELECT {ROW} FROM ingest WHERE event_id = ?1"))
            .and_then(|mut st| st.query_row([event_id], row).optional())
            .map_err(|e| self.err(e))
    }

    /// Marks the raw item of `event_id` processed when every invocation on it succeeded (none
    /// queued, running or failed). Returns it then.
    pub fn ingest_settle(&self, event_id: i64) -> Result<Option<IngestRow>> {
        let conn = self.conn();
        let unsettled: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM invocations WHERE event_id = ?1 AND state != 'succeeded'",
                [event_id],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        if unsettled > 0 {
            return Ok(None);
        }
        conn.prepare_cached(&format!(
            "UPDATE ingest SET state = 'processed', processed_ms = ?2
             WHERE event_id = ?1 AND state = 'spooled' RETURNING {ROW}"
        ))
        .and_then(|mut st| st.query_row(params![event_id, now_ms()], row).optional())
        .map_err(|e| self.err(e))
    }

    /// Events of raw items still `spooled` although every invocation on them succeeded: fogd
    /// stopped between finishing the last one and settling the item.
    pub fn ingest_unsettled(&self) -> Result<Vec<i64>> {
        self.rows(
            "SELECT i.event_id FROM ingest i WHERE i.state = 'spooled' AND i.event_id IS NOT NULL
               AND EXISTS (SELECT 1 FROM invocations v WHERE v.event_id = i.event_id)
               AND NOT EXISTS (SELECT 1 FROM invocations v
                               WHERE v.event_id = i.event_id AND v.state != 'succeeded')
             LIMIT 1000",
            [],
            |r| r.get(0),
        )
    }

    /// A raw item's failed runs (a script that failed or timed out) with attempts left are
    /// queued again; the others stay as they are. Returns how many were queued.
    pub fn ingest_retry_failed(&self, max_attempts: u32) -> Result<usize> {
        self.conn()
            .execute(
                "UPDATE invocations SET state = 'queued', error = NULL, exit_code = NULL,
                   finished_ms = NULL
                 WHERE state IN ('failed', 'timed_out') AND attempts < ?1
                   AND event_id IN (SELECT event_id FROM ingest
                                    WHERE state = 'spooled' AND event_id IS NOT NULL)",
                [max_attempts],
            )
            .map_err(|e| self.err(e))
    }

    /// Raw items given up on: every invocation on them ended, and one failed with no attempts
    /// left (to quarantine: never uploaded, never kept for ever).
    pub fn ingest_given_up(&self, max_attempts: u32) -> Result<Vec<IngestRow>> {
        self.rows(
            &format!(
                "SELECT {ROW} FROM ingest g WHERE g.state = 'spooled' AND g.event_id IS NOT NULL
                   AND EXISTS (SELECT 1 FROM invocations v WHERE v.event_id = g.event_id
                               AND v.state IN ('failed', 'timed_out', 'cancelled'))
                   AND NOT EXISTS (SELECT 1 FROM invocations v WHERE v.event_id = g.event_id
                               AND (v.state IN ('queued', 'running', 'delegated')
                                    OR (v.state IN ('failed', 'timed_out') AND v.attempts < ?1)))
                 LIMIT 1000"
            ),
            [max_attempts],
            row,
        )
    }

    /// The raw item now lies at `path` (the quarantine), out of every workflow's reach.
    pub fn ingest_quarantined(&self, id: i64, path: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE ingest SET state = 'quarantined', spool_path = ?2, processed_ms = ?3 WHERE id = ?1",
                params![id, path, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        self.count("ingest_quarantined", 1)
    }

    /// Quarantined items older than `before_ms` (to delete).
    pub fn ingest_quarantine_expired(&self, before_ms: i64) -> Result<Vec<IngestRow>> {
        self.rows(
            &format!(
                "SELECT {ROW} FROM ingest WHERE state = 'quarantined' AND processed_ms <= ?1 LIMIT 1000"
            ),
            [before_ms],
            row,
        )
    }

    /// Processed raw items older than `before_ms` (to delete).
    pub fn ingest_expired(&self, before_ms: i64) -> Result<Vec<IngestRow>> {
        self.rows(
            &format!("SELECT {ROW} FROM ingest WHERE state = 'processed' AND processed_ms <= ?1 LIMIT 1000"),
            [before_ms],
            row,
        )
    }

    pub fn ingest_deleted(&self, id: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE ingest SET state = 'deleted' WHERE id = ?1", [id])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Is `path` (a file under the raw area) journalled? Files that are not were written by an
    /// ingest that a crash cut short before its commit (the message was not acknowledged, and
    /// comes again): they are removed at start.
    pub fn ingest_has_key(&self, key: &str) -> Result<bool> {
        self.conn()
            .prepare_cached("SELECT 1 FROM ingest WHERE key = ?1")
            .and_then(|mut st| st.exists([key]))
            .map_err(|e| self.err(e))
    }

    /// Every ingested item (for tests and audits).
    pub fn ingest_rows(&self) -> Result<Vec<IngestRow>> {
        self.rows(&format!("SELECT {ROW} FROM ingest ORDER BY id"), [], row)
    }

    /// Items by state (`spooled`, `processed`, `deleted`).
    pub fn ingest_counts(&self) -> Result<Vec<(String, u64)>> {
        self.rows("SELECT state, COUNT(*) FROM ingest GROUP BY state", [], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
    }

    /// The raw item with this content, if any (the privacy check of the outbox).
    pub fn raw_with_checksum(&self, checksum: &str) -> Result<Option<IngestRow>> {
        self.conn()
            .prepare_cached(&format!("SELECT {ROW} FROM ingest WHERE checksum = ?1 LIMIT 1"))
            .and_then(|mut st| st.query_row([checksum], row).optional())
            .map_err(|e| self.err(e))
    }

    /// Adds `n` to a counter that outlives restarts (drops, rejects).
    pub fn count(&self, name: &str, n: u64) -> Result<()> {
        super::outbox::bump(&self.conn(), name, n).map_err(|e| self.err(e))
    }

    pub fn counters(&self) -> Result<Vec<(String, u64)>> {
        self.rows("SELECT name, value FROM counters ORDER BY name", [], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
    }
}

const ROW: &str = "id, camera, key, spool_path, checksum, state";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IngestRow> {
    Ok(IngestRow {
        id: r.get(0)?,
        camera: r.get(1)?,
        key: r.get(2)?,
        path: r.get(3)?,
        checksum: r.get(4)?,
        state: r.get(5)?,
    })
}
