//! Invocation state transitions: queued -> running | delegated -> succeeded | failed | timed_out,
//! queued -> cancelled (its service deleted), and the recovery of runs that a crash interrupted.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use super::{now_ms, Journal, JournalError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Running,
    /// Handed to another tier (`ran_on`): followed there when `remote_job` is set.
    Delegated,
    Succeeded,
    Failed,
    TimedOut,
    /// Never ran: its service was deleted while it waited.
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Running => "running",
            State::Delegated => "delegated",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::TimedOut => "timed_out",
            State::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> State {
        match s {
            "queued" => State::Queued,
            "running" => State::Running,
            "delegated" => State::Delegated,
            "succeeded" => State::Succeeded,
            "timed_out" => State::TimedOut,
            "cancelled" => State::Cancelled,
            _ => State::Failed,
        }
    }
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Succeeded | State::Failed | State::TimedOut | State::Cancelled
        )
    }
}

/// An invocation's number in the journal (its row id). A job's name (`uuid`, or the name a
/// delegating peer gave it) is a string and is looked up with `Journal::job`, never confused
/// with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
#[serde(transparent)]
pub struct InvocationId(pub i64);

impl std::fmt::Display for InvocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl rusqlite::ToSql for InvocationId {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        self.0.to_sql()
    }
}

impl rusqlite::types::FromSql for InvocationId {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        i64::column_result(v).map(InvocationId)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    pub id: InvocationId,
    /// The job's name (a UUID, or the name its delegating peer gave it).
    pub uuid: String,
    pub service: String,
    pub event_id: i64,
    pub state: State,
    pub attempts: u32,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: u32,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    /// When the script's process started (µs since the epoch).
    pub spawned_us: Option<i64>,
    pub finished_ms: Option<i64>,
    /// From the event, for listings.
    pub key: String,
    /// None: here; else the member it was delegated to.
    pub ran_on: Option<String>,
    /// The job's name on `ran_on` while fogd follows it there.
    pub remote_job: Option<String>,
    /// Some of its outputs wait in the outbox for their store.
    pub uploading: bool,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub state: State,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub outputs: u32,
    pub spawned_us: Option<i64>,
}

/// `remaining_jobs` is counted up to this many.
pub const REMAINING_CAP: u64 = 10_000;

#[cfg(test)]
impl Outcome {
    /// How the journal's tests end a run: exit 0 if it succeeded, else 1.
    pub(crate) fn test(state: State) -> Outcome {
        Outcome {
            state,
            exit_code: Some(i32::from(state != State::Succeeded)),
            error: None,
            outputs: 0,
            spawned_us: None,
        }
    }
}

pub(super) const COLUMNS: &str =
    "i.id, i.uuid, i.service, i.event_id, i.state, i.attempts, i.exit_code, i.error,
    i.outputs, i.created_ms, i.started_ms, i.spawned_us, i.finished_ms, e.key, i.ran_on, i.remote_job,
    EXISTS(SELECT 1 FROM outbox o WHERE o.invocation_id = i.id AND o.state = 'pending')";

pub(super) fn row(r: &Row) -> rusqlite::Result<Invocation> {
    Ok(Invocation {
        id: r.get(0)?,
        uuid: r.get(1)?,
        service: r.get(2)?,
        event_id: r.get(3)?,
        state: State::parse(&r.get::<_, String>(4)?),
        attempts: r.get(5)?,
        exit_code: r.get(6)?,
        error: r.get(7)?,
        outputs: r.get(8)?,
        created_ms: r.get(9)?,
        started_ms: r.get(10)?,
        spawned_us: r.get(11)?,
        finished_ms: r.get(12)?,
        key: r.get(13)?,
        ran_on: r.get(14)?,
        remote_job: r.get(15)?,
        uploading: r.get(16)?,
    })
}

impl Journal {
    /// Moves up to `limit` queued invocations of `service` to running (oldest first) and returns
    /// them. One transaction: two schedulers never claim the same invocation.
    pub fn claim(&self, service: &str, limit: usize) -> Result<Vec<Invocation>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let ids: Vec<i64> = tx
            .prepare_cached(
                "UPDATE invocations SET state = 'running', attempts = attempts + 1, started_ms = ?3
                 WHERE id IN (SELECT id FROM invocations WHERE state = 'queued' AND service = ?1
                              ORDER BY id LIMIT ?2)
                 RETURNING id",
            )
            .and_then(|mut st| {
                st.query_map(params![service, limit as i64, now_ms()], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<i64>>>()
            })
            .map_err(|e| self.err(e))?;
        let out = self.rows_by_id(&tx, ids)?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// The invocations with these ids, in id order, read in the claiming transaction.
    pub(super) fn rows_by_id(&self, tx: &rusqlite::Transaction, ids: Vec<i64>) -> Result<Vec<Invocation>> {
        let mut out = Vec::with_capacity(ids.len());
        let mut st = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM invocations i JOIN events e ON e.id = i.event_id WHERE i.id = ?1"
            ))
            .map_err(|e| self.err(e))?;
        for id in ids {
            out.push(st.query_row([id], row).map_err(|e| self.err(e))?);
        }
        out.sort_by_key(|i| i.id);
        Ok(out)
    }

    pub fn finish(&self, id: InvocationId, o: &Outcome) -> Result<()> {
        let n = self
            .conn()
            .prepare_cached(
                "UPDATE invocations SET state = ?2, exit_code = ?3, error = ?4, outputs = ?5, finished_ms = ?6,
                   spawned_us = ?7
                 WHERE id = ?1 AND state = 'running'",
            )
            .and_then(|mut st| {
                st.execute(params![id, o.state.as_str(), o.exit_code, o.error, o.outputs, now_ms(), o.spawned_us])
            })
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(JournalError::NoInvocation(format!("{id} (running)")));
        }
        Ok(())
    }

    /// After a crash: runs that were in flight go back to the queue, unless they have been tried
    /// `max_attempts` times already (then they fail, with the reason). Returns (requeued, failed).
    pub fn recover(&self, max_attempts: u32) -> Result<(usize, usize)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let failed = tx
            .execute(
                "UPDATE invocations SET state = 'failed', finished_ms = ?2,
                   error = 'interrupted ' || attempts || ' times (fogd stopped while it ran); not retried'
                 WHERE state = 'running' AND attempts >= ?1",
                params![max_attempts, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        // A delegation call cut short (no remote job on record) is queued again too: sending it
        // again carries the same job id, which a fogd or OSCAR remote takes only once.
        let requeued = tx
            .execute(
                "UPDATE invocations SET state = 'queued', ran_on = NULL
                 WHERE state = 'running' OR (state = 'delegated' AND ran_on IS NULL)",
                [],
            )
            .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok((requeued, failed))
    }

    /// Services that have queued invocations.
    pub fn queued_services(&self) -> Result<Vec<String>> {
        self.rows(
            "SELECT DISTINCT service FROM invocations WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )
    }

    /// Newest first; `service` filters; at most `limit` rows.
    pub fn invocations(&self, service: Option<&str>, limit: usize) -> Result<Vec<Invocation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations i JOIN events e ON e.id = i.event_id
             WHERE (?1 IS NULL OR i.service = ?1) ORDER BY i.id DESC LIMIT ?2"
        );
        self.rows(&sql, params![service, limit as i64], row)
    }

    /// One page of `service`'s invocations, newest first, those older than `before` (an id; none:
    /// from the newest), and how many older ones remain. Reads the page only, never the table.
    /// An async jobs page of `service` before `before` (newest first), and how many older jobs
    /// remain (at most `REMAINING_CAP`).
    pub fn invocations_page(
        &self,
        service: &str,
        before: Option<InvocationId>,
        limit: usize,
    ) -> Result<(Vec<Invocation>, u64)> {
        let before = before.map_or(i64::MAX, |b| b.0);
        // OSCAR lists asynchronous jobs only: a synchronous call (`/run`) answered its caller.
        let sql = format!(
            "SELECT {COLUMNS} FROM invocations i JOIN events e ON e.id = i.event_id
             WHERE i.service = ?1 AND i.id < ?2 AND e.source <> 'run' ORDER BY i.id DESC LIMIT ?3"
        );
        let page = self.rows(&sql, params![service, before, limit as i64], row)?;
        // Counted up to a bound, not over the whole table: a page costs its page however many
        // jobs a service has (a million rows took 1.2 s a page). `remaining_jobs` then says
        // "at least REMAINING_CAP", which is what a client paging on needs.
        let older: i64 = self
            .conn()
            .query_row(
                "SELECT COUNT(*) FROM (SELECT 1 FROM invocations i JOIN events e ON e.id = i.event_id
                 WHERE i.service = ?1 AND i.id < ?2 AND e.source <> 'run' LIMIT ?3)",
                params![service, before, (REMAINING_CAP + limit as u64) as i64],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))?;
        let remaining = (older as u64).saturating_sub(page.len() as u64);
        Ok((page, remaining))
    }

    /// By uuid (JOB_UUID) or by numeric id.
    pub fn invocation(&self, id: InvocationId) -> Result<Option<Invocation>> {
        self.invocation_where("i.id = ?1", id.0.into())
    }

    /// The invocation named `job` (its uuid, or a delegated job's name).
    pub fn job(&self, job: &str) -> Result<Option<Invocation>> {
        self.invocation_where("i.uuid = ?1", job.to_string().into())
    }

    fn invocation_where(&self, cond: &str, arg: rusqlite::types::Value) -> Result<Option<Invocation>> {
        let conn = self.conn();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM invocations i JOIN events e ON e.id = i.event_id WHERE {cond}"
            ))
            .map_err(|e| self.err(e))?;
        st.query_row([arg], row).optional().map_err(|e| self.err(e))
    }

    /// Invocations of `service` not finished yet (queued, running, or followed on a remote).
    pub fn pending(&self, service: &str) -> Result<u64> {
        self.conn()
            .prepare_cached(
                "SELECT COUNT(*) FROM invocations WHERE service = ?1 AND (state IN ('queued', 'running')
                   OR (state = 'delegated' AND finished_ms IS NULL))",
            )
            .and_then(|mut st| st.query_row([service], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// The creation time of the oldest queued invocation, by service.
    pub fn queue_ages(&self) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT service, MIN(created_ms) FROM invocations WHERE state = 'queued' GROUP BY service";
        self.rows(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
    }

    /// Counts by state, for summaries and tests.
    pub fn counts(&self) -> Result<Vec<(String, State, u64)>> {
        let mut out: Vec<(String, State, u64)> = Vec::new();
        for (svc, state, _, n) in self.counts_where()? {
            match out.last_mut() {
                Some((s, st, m)) if *s == svc && *st == state => *m += n,
                _ => out.push((svc, state, n)),
            }
        }
        Ok(out)
    }

    /// Counts by service, state and where they ran (`local` or the member).
    pub fn counts_where(&self) -> Result<Vec<(String, State, String, u64)>> {
        let sql = "SELECT service, state, COALESCE(ran_on, 'local'), COUNT(*) FROM invocations
                   GROUP BY service, state, ran_on ORDER BY service, state";
        self.rows(sql, [], |r| {
            Ok((
                r.get(0)?,
                State::parse(&r.get::<_, String>(1)?),
                r.get(2)?,
                r.get::<_, i64>(3)? as u64,
            ))
        })
    }
}
