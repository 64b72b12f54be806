//! What a node left alone for months forgets: finished invocations (by age and by count), the
//! events nothing refers to any more, ingest rows whose raw item is gone, and finished outbox
//! rows. In batches, so that no transaction holds the journal for long.

use rusqlite::params;

use super::{Journal, Result};

/// What one batch removed; the invocations by (service, uuid), for their logs.
#[derive(Debug, Default)]
pub struct Pruned {
    pub invocations: Vec<(String, String)>,
    pub events: usize,
    pub ingest: usize,
    pub outbox: usize,
    pub history: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.invocations.len() + self.events + self.ingest + self.outbox + self.history
    }
}

const FINAL: &str = "('succeeded','failed','timed_out','cancelled')";

impl Journal {
    /// One batch (at most `batch` rows of each kind) of what is older than `cutoff_ms` or past
    /// the newest `keep` finished invocations. Call until it returns nothing.
    pub fn prune(&self, cutoff_ms: i64, keep: u64, batch: usize) -> Result<Pruned> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let mut out = Pruned::default();
        {
            // A job whose outputs still wait in the outbox is not done for the tiers that
            // follow it: it stays.
            let mut st = tx
                .prepare_cached(&format!(
                    "SELECT id, service, uuid FROM invocations i
                     WHERE state IN {FINAL}
                       AND (finished_ms < ?1 OR id <= (SELECT id FROM invocations
                              WHERE state IN {FINAL} ORDER BY id DESC LIMIT 1 OFFSET ?2))
                       AND NOT EXISTS (SELECT 1 FROM outbox o
                              WHERE o.invocation_id = i.id AND o.state = 'pending')
                     ORDER BY id LIMIT ?3"
                ))
                .map_err(|e| self.err(e))?;
            let rows = st
                .query_map(params![cutoff_ms, keep as i64, batch as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|e| self.err(e))?;
            let mut del = tx
                .prepare_cached("DELETE FROM invocations WHERE id = ?1")
                .map_err(|e| self.err(e))?;
            for (id, service, uuid) in rows {
                del.execute([id]).map_err(|e| self.err(e))?;
                out.invocations.push((service, uuid));
            }
        }
        // Events older than the oldest invocation kept go with the invocations (pruned by
        // count, they are not old enough for the age rule).
        let oldest_kept: i64 = tx
            .query_row(
                "SELECT COALESCE(MIN(event_id), 9223372036854775807) FROM invocations",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        out.ingest = tx
            .execute(
                "DELETE FROM ingest WHERE id IN (SELECT id FROM ingest
                   WHERE state = 'deleted' AND (created_ms < ?1 OR event_id < ?3) LIMIT ?2)",
                params![cutoff_ms, batch as i64, oldest_kept],
            )
            .map_err(|e| self.err(e))?;
        // Events seen by the S3 watch stay: they are how it knows an object was seen.
        out.events = tx
            .execute(
                "DELETE FROM events WHERE id IN (SELECT e.id FROM events e
                   WHERE (e.created_us < ?1 * 1000 OR e.id < ?3) AND e.source != 'watch'
                     AND NOT EXISTS (SELECT 1 FROM invocations i WHERE i.event_id = e.id)
                     AND NOT EXISTS (SELECT 1 FROM ingest g WHERE g.event_id = e.id)
                   LIMIT ?2)",
                params![cutoff_ms, batch as i64, oldest_kept],
            )
            .map_err(|e| self.err(e))?;
        out.outbox = tx
            .execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox
                   WHERE state IN ('done', 'dropped') AND COALESCE(done_ms, created_ms) < ?1
                   LIMIT ?2)",
                params![cutoff_ms, batch as i64],
            )
            .map_err(|e| self.err(e))?;
        out.history = tx
            .execute(
                "DELETE FROM camera_results WHERE id IN (SELECT id FROM camera_results
                   WHERE time_ms < ?1 ORDER BY id LIMIT ?2)",
                params![cutoff_ms, batch as i64],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, NewEvent, Outcome, State};
    use crate::config::JournalSync;

    #[test]
    fn old_and_surplus_finished_work_goes_and_the_rest_stays() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        for i in 0..30 {
            let ev = NewEvent::test(&format!("in/{i}"), "put");
            j.record_event(&ev, &["svc"]).expect("record").expect("new");
        }
        // 25 finished, 5 still queued.
        let claimed = j.claim("svc", 25).expect("claim");
        assert_eq!(claimed.len(), 25);
        for id in claimed.iter().map(|i| i.id) {
            j.finish(id, &Outcome::test(State::Succeeded)).expect("finish");
        }
        // Nothing is old yet: only the count limit (keep 10 finished) applies.
        let mut removed = Vec::new();
        loop {
            let p = j.prune(0, 10, 4).expect("prune");
            if p.total() == 0 {
                break;
            }
            removed.extend(p.invocations);
        }
        assert_eq!(removed.len(), 15, "{removed:?}");
        let left = j.invocations(Some("svc"), 100).expect("list");
        assert_eq!(left.len(), 15);
        assert_eq!(
            left.iter().filter(|i| i.state == State::Queued).count(),
            5,
            "queued work is never pruned"
        );
        // Everything finished is old now: it all goes, queued work and its events stay.
        while j.prune(i64::MAX / 2000, 1000, 100).expect("prune").total() > 0 {}
        let left = j.invocations(Some("svc"), 100).expect("list");
        assert_eq!(left.len(), 5);
        assert!(left.iter().all(|i| i.state == State::Queued && !i.key.is_empty()));
    }
}
