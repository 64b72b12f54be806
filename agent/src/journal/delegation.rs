//! Delegation in the journal: invocations handed to another tier (`state = 'delegated'`), where
//! they went (`ran_on`), the job's name there (`remote_job`) and when the remote last answered
//! about it (`contact_ms`, for giving a job back when the remote stays away).

use rusqlite::params;

use super::invocations::{row, COLUMNS};
use super::{now_ms, Invocation, InvocationId, Journal, JournalError, Outcome, Result};

/// A job followed on a remote.
#[derive(Debug, Clone)]
pub struct Followed {
    pub inv: Invocation,
    /// When the remote last answered about this job (or took it).
    pub contact_ms: i64,
}

impl Journal {
    /// Moves up to `limit` queued invocations of `service` created at or before `cutoff_ms` to
    /// `delegated` (no member yet), oldest first. Never a camera's raw item (keys under
    /// `raw_prefix`: raw frames stay on this node), a synchronous `/run` (its caller waits
    /// here), nor a job that another tier delegated to this one (no ping-pong).
    pub fn claim_for_delegation(
        &self,
        service: &str,
        cutoff_ms: i64,
        raw_prefix: &str,
        limit: usize,
    ) -> Result<Vec<Invocation>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let ids: Vec<i64> = tx
            .prepare_cached(
                "UPDATE invocations SET state = 'delegated', started_ms = ?5, ran_on = NULL,
                   remote_job = NULL, contact_ms = ?5, finished_ms = NULL
                 WHERE id IN (SELECT i.id FROM invocations i JOIN events e ON e.id = i.event_id
                              WHERE i.state = 'queued' AND i.service = ?1 AND i.created_ms <= ?2
                                AND i.kept_here = 0
                                AND e.source NOT IN ('run', 'delegated')
                                AND substr(e.key, 1, length(?3)) != ?3
                              ORDER BY i.id LIMIT ?4)
                 RETURNING id",
            )
            .and_then(|mut st| {
                st.query_map(
                    params![service, cutoff_ms, raw_prefix, limit as i64, now_ms()],
                    |r| r.get(0),
                )?
                .collect::<rusqlite::Result<Vec<i64>>>()
            })
            .map_err(|e| self.err(e))?;
        let out = self.rows_by_id(&tx, ids)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The remote took it. With `remote_job`, fogd follows the job there; without (a push into
    /// the remote's input folder, or a plain endpoint), it is handed over and ends here.
    pub fn delegated_to(&self, id: InvocationId, member: &str, remote_job: Option<&str>) -> Result<()> {
        let now = now_ms();
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE invocations SET ran_on = ?2, remote_job = ?3, contact_ms = ?4,
                   finished_ms = CASE WHEN ?3 IS NULL THEN ?4 END
                 WHERE id = ?1 AND state = 'delegated'",
            )
            .and_then(|mut st| st.execute(params![id, member, remote_job, now]))
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(JournalError::NoInvocation(format!("{id} (delegated)")));
        }
        Ok(())
    }

    /// Back to the queue. `note` is kept as the invocation's error until it finishes. With
    /// `keep_here` (a remote went silent on it, or held it too long) it is never delegated
    /// again; without (no member would take it now), a later claim may send it out.
    pub fn undelegate(&self, id: InvocationId, note: &str, keep_here: bool) -> Result<bool> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE invocations SET state = 'queued', ran_on = NULL, remote_job = NULL,
                   contact_ms = NULL, finished_ms = NULL, error = ?2,
                   kept_here = MAX(kept_here, ?3)
                 WHERE id = ?1 AND state = 'delegated'",
            )
            .and_then(|mut st| st.execute(params![id, note, keep_here]))
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Jobs followed on remotes, oldest first.
    pub fn followed(&self) -> Result<Vec<Followed>> {
        let sql = format!(
            "SELECT {COLUMNS}, i.contact_ms FROM invocations i JOIN events e ON e.id = i.event_id
             WHERE i.state = 'delegated' AND i.remote_job IS NOT NULL ORDER BY i.id"
        );
        self.rows(&sql, [], |r| {
            Ok(Followed {
                inv: row(r)?,
                contact_ms: r.get::<_, Option<i64>>(17)?.unwrap_or(0),
            })
        })
    }

    /// The remote answered about these jobs (still running there).
    pub fn remote_contact(&self, ids: &[InvocationId]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut st = tx
                .prepare_cached("UPDATE invocations SET contact_ms = ?2 WHERE id = ?1")
                .map_err(|e| self.err(e))?;
            let now = now_ms();
            for id in ids {
                st.execute(params![id, now]).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The remote says how the job ended. False when it is no longer followed (given back).
    pub fn finish_remote(&self, id: InvocationId, o: &Outcome) -> Result<bool> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE invocations SET state = ?2, exit_code = ?3, error = ?4, outputs = ?5,
                   finished_ms = ?6, contact_ms = ?6
                 WHERE id = ?1 AND state = 'delegated' AND remote_job IS NOT NULL",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id,
                    o.state.as_str(),
                    o.exit_code,
                    o.error,
                    o.outputs,
                    now_ms()
                ])
            })
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// Jobs in flight on `member` (followed there, not finished).
    pub fn in_flight(&self, member: &str) -> Result<usize> {
        self.conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM invocations
                 WHERE state = 'delegated' AND ran_on = ?1 AND finished_ms IS NULL",
            )
            .and_then(|mut st| st.query_row([member], |r| r.get::<_, i64>(0)))
            .map(|n| n as usize)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalSync;
    use crate::journal::{NewEvent, State};

    fn event(j: &Journal, key: &str, source: &str) -> InvocationId {
        NewEvent::record_for_test(j, key, source, "svc")
    }

    #[test]
    fn claims_leave_raw_sync_and_delegated_jobs_here() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let raw = event(&j, "cameras/incoming/door/1.jpg", "mqtt");
        let sync = event(&j, "fogd-invoke/a/x", "run");
        let from_peer = event(&j, "fogd-invoke/b/x", "delegated");
        let ok = event(&j, "work/in/1", "put");
        let later = now_ms() + 60_000;
        let got = j
            .claim_for_delegation("svc", later, "cameras/incoming/", 10)
            .expect("claim");
        assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), vec![ok]);
        for id in [raw, sync, from_peer] {
            assert_eq!(j.invocation(id).expect("get").expect("row").state, State::Queued);
        }
        // Too young for the threshold: stays.
        let young = event(&j, "work/in/2", "put");
        assert!(j
            .claim_for_delegation("svc", now_ms() - 60_000, "cameras/incoming/", 10)
            .expect("claim")
            .is_empty());

        // Taken and followed; the count per member; given back; ended there.
        j.delegated_to(ok, "cloud", Some("job-1")).expect("to");
        assert_eq!(j.in_flight("cloud").expect("n"), 1);
        assert_eq!(j.followed().expect("followed").len(), 1);
        assert!(j.undelegate(ok, "no member free", false).expect("back"));
        let back = j.invocation(ok).expect("get").expect("row");
        assert_eq!((back.state, back.ran_on), (State::Queued, None));
        let again = j
            .claim_for_delegation("svc", later, "cameras/incoming/", 1)
            .expect("claim");
        assert_eq!(again[0].id, ok);
        j.delegated_to(ok, "cloud", Some("job-1")).expect("to");
        let done = Outcome::test(State::Succeeded);
        assert!(j.finish_remote(ok, &done).expect("finish"));
        assert!(!j.finish_remote(ok, &done).expect("twice"), "ends once");
        let row = j.invocation(ok).expect("get").expect("row");
        assert_eq!(
            (row.state, row.ran_on.as_deref()),
            (State::Succeeded, Some("cloud"))
        );

        // A call cut short by a crash (no member yet) is queued again; a followed one stays.
        let cut = j
            .claim_for_delegation("svc", later, "cameras/incoming/", 1)
            .expect("claim")[0]
            .id;
        assert_eq!(cut, young);
        let pushed = event(&j, "work/in/3", "put");
        j.claim_for_delegation("svc", later, "cameras/incoming/", 1)
            .expect("claim");
        j.delegated_to(pushed, "minio.cloud:in", None).expect("pushed");
        j.recover(3).expect("recover");
        assert_eq!(j.invocation(cut).expect("g").expect("r").state, State::Queued);
        let p = j.invocation(pushed).expect("g").expect("r");
        assert_eq!((p.state, p.finished_ms.is_some()), (State::Delegated, true));
        assert_eq!(
            j.pending("svc").expect("pending"),
            4,
            "raw, sync, from_peer and the cut one"
        );
    }

    #[test]
    fn a_job_taken_back_from_a_remote_is_never_sent_out_again() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let id = event(&j, "work/in/1", "put");
        let later = now_ms() + 60_000;
        assert_eq!(
            j.claim_for_delegation("svc", later, "raw/", 1).expect("claim")[0].id,
            id
        );
        j.delegated_to(id, "cloud", Some("job-1")).expect("to");
        assert!(j
            .undelegate(
                id,
                "given back from cloud: still Running after 3600s; runs here",
                true
            )
            .expect("back"));
        assert!(j
            .claim_for_delegation("svc", later, "raw/", 10)
            .expect("claim")
            .is_empty());
        let row = j.invocation(id).expect("get").expect("row");
        assert_eq!(row.state, State::Queued);
        assert_eq!(j.pending("svc").expect("pending"), 1, "it runs here");
    }

    #[test]
    fn a_job_is_uploading_while_its_outputs_wait_in_the_outbox() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let id = event(&j, "work/in/1", "delegated");
        let other = event(&j, "work/in/2", "delegated");
        let out = |key: &str, inv| crate::journal::OutboxItem {
            provider: "minio.shared".into(),
            key: key.into(),
            local_path: format!("/spool/{key}"),
            size: 1,
            checksum: key.into(),
            md5: String::new(),
            priority: 0,
            invocation: inv,
        };
        let q = |item| match j
            .outbox_enqueue(&item, 1 << 20, crate::config::FullPolicy::RejectNew)
            .expect("enqueue")
        {
            crate::journal::Enqueued::Queued { id, .. } => id,
            e => panic!("{e:?}"),
        };
        let a = q(out("results/1.a", Some(id)));
        let b = q(out("results/1.b", Some(id)));
        q(out("frames/x.jpg", None));
        let uploading = |inv: InvocationId| j.invocation(inv).expect("g").expect("r").uploading;
        assert!(uploading(id));
        assert!(!uploading(other), "an object of no invocation counts for none");
        j.outbox_done(a).expect("done");
        assert!(uploading(id), "one output still waits");
        j.outbox_drop(b, "dropped", "by hand", "outbox_dropped_manual")
            .expect("drop");
        assert!(!uploading(id), "a dropped output no longer holds the job");
    }
}
