//! The journal's schema, as numbered migrations applied in order (`PRAGMA user_version`).

use std::path::Path;

use rusqlite::Connection;

use super::{JournalError, Result};

/// Each entry moves the schema one version up. Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    // 1: events and invocations (the runtime), workflows (what the daemon runs), and the tables
    //    that ingest and sync fill: ingest rows and the outbox.
    "CREATE TABLE events(
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        key TEXT NOT NULL,
        etag TEXT NOT NULL,
        size INTEGER NOT NULL,
        event_time TEXT NOT NULL,
        source TEXT NOT NULL,
        created_us INTEGER NOT NULL,
        UNIQUE(provider, key, etag)
     );
     CREATE TABLE invocations(
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        event_id INTEGER NOT NULL REFERENCES events(id),
        state TEXT NOT NULL CHECK(state IN ('queued','running','succeeded','failed','timed_out')),
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        error TEXT,
        outputs INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        spawned_us INTEGER,
        finished_ms INTEGER,
        UNIQUE(service, event_id)
     );
     CREATE INDEX invocations_queue ON invocations(state, service, id);
     CREATE TABLE workflows(path TEXT PRIMARY KEY, loaded_ms INTEGER NOT NULL);
     CREATE TABLE ingest(
        id INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        camera TEXT NOT NULL,
        spool_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        state TEXT NOT NULL,
        created_ms INTEGER NOT NULL
     );
     CREATE TABLE outbox(
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        key TEXT NOT NULL,
        local_path TEXT NOT NULL,
        size INTEGER NOT NULL,
        checksum TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try_ms INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        error TEXT,
        created_ms INTEGER NOT NULL,
        UNIQUE(provider, key)
     );",
    // 2: services created through the OSCAR API, and the bearer token of every service.
    "CREATE TABLE api_services(
        name TEXT PRIMARY KEY,
        json TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
     );
     CREATE TABLE service_tokens(name TEXT PRIMARY KEY, token TEXT NOT NULL);",
    // 3: ingest and the outbox in use: the raw item's key and content hash (a redelivered
    //    message is known by it, and no object with a raw item's content may leave), the outbox's
    //    ordering group and completion, and counters that outlive restarts (drops, rejects).
    "ALTER TABLE ingest ADD COLUMN key TEXT NOT NULL DEFAULT '';
     ALTER TABLE ingest ADD COLUMN topic TEXT NOT NULL DEFAULT '';
     ALTER TABLE ingest ADD COLUMN checksum TEXT NOT NULL DEFAULT '';
     ALTER TABLE ingest ADD COLUMN event_id INTEGER;
     ALTER TABLE ingest ADD COLUMN processed_ms INTEGER;
     CREATE UNIQUE INDEX ingest_dedup ON ingest(camera, checksum);
     CREATE INDEX ingest_checksum ON ingest(checksum);
     CREATE INDEX ingest_event ON ingest(event_id);
     CREATE INDEX ingest_state ON ingest(state, processed_ms);
     ALTER TABLE outbox ADD COLUMN grp TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN md5 TEXT NOT NULL DEFAULT '';
     ALTER TABLE outbox ADD COLUMN done_ms INTEGER;
     ALTER TABLE outbox ADD COLUMN done_seq INTEGER;
     CREATE INDEX outbox_due ON outbox(state, next_try_ms);
     CREATE INDEX outbox_group ON outbox(grp, state, id);
     CREATE INDEX invocations_event ON invocations(event_id);
     CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // 4: delegation. A new state (`delegated`: on another tier) needs the CHECK rebuilt, which
    //    SQLite does by copying the table. `ran_on` is NULL for runs here, else the member's name;
    //    `remote_job` is the job's name there when fogd follows it (OSCAR /job calls).
    "CREATE TABLE invocations4(
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        event_id INTEGER NOT NULL REFERENCES events(id),
        state TEXT NOT NULL
          CHECK(state IN ('queued','running','delegated','succeeded','failed','timed_out')),
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        error TEXT,
        outputs INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        spawned_us INTEGER,
        finished_ms INTEGER,
        ran_on TEXT,
        remote_job TEXT,
        contact_ms INTEGER,
        UNIQUE(service, event_id)
     );
     INSERT INTO invocations4(id, uuid, service, event_id, state, attempts, exit_code, error, outputs,
                              created_ms, started_ms, spawned_us, finished_ms)
       SELECT id, uuid, service, event_id, state, attempts, exit_code, error, outputs,
              created_ms, started_ms, spawned_us, finished_ms FROM invocations;
     DROP TABLE invocations;
     ALTER TABLE invocations4 RENAME TO invocations;
     CREATE INDEX invocations_queue ON invocations(state, service, id);
     CREATE INDEX invocations_event ON invocations(event_id);",
    // 5: the invocation whose outputs an outbox row carries. A job is done for the tiers that
    //    asked for it once its outputs are up, not when its script ends.
    "ALTER TABLE outbox ADD COLUMN invocation_id INTEGER;
     CREATE INDEX outbox_invocation ON outbox(invocation_id, state);",
    // 6: a job taken back from a remote (it went silent, or kept it running too long) runs here:
    //    sending it out again could run it a third time.
    "ALTER TABLE invocations ADD COLUMN kept_here INTEGER NOT NULL DEFAULT 0;",
    // 7: `cancelled` (its service was deleted while it waited), a new state: the CHECK rebuilt.
    "CREATE TABLE invocations7(
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        service TEXT NOT NULL,
        event_id INTEGER NOT NULL REFERENCES events(id),
        state TEXT NOT NULL
          CHECK(state IN ('queued','running','delegated','succeeded','failed','timed_out','cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        error TEXT,
        outputs INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        spawned_us INTEGER,
        finished_ms INTEGER,
        ran_on TEXT,
        remote_job TEXT,
        contact_ms INTEGER,
        kept_here INTEGER NOT NULL DEFAULT 0,
        UNIQUE(service, event_id)
     );
     INSERT INTO invocations7 SELECT id, uuid, service, event_id, state, attempts, exit_code, error,
       outputs, created_ms, started_ms, spawned_us, finished_ms, ran_on, remote_job, contact_ms,
       kept_here FROM invocations;
     DROP TABLE invocations;
     ALTER TABLE invocations7 RENAME TO invocations;
     CREATE INDEX invocations_queue ON invocations(state, service, id);
     CREATE INDEX invocations_event ON invocations(event_id);
     CREATE INDEX invocations_service ON invocations(service, id);",
    // 8: what operators watch, kept as counters that only grow (retention deletes rows, a
    //    Prometheus counter must never go down): invocations ended by final state, per camera
    //    frames and verdicts. Triggers keep them in the transaction that changes the rows, so no
    //    code path can forget one. `events.camera`: the camera a chain of outputs started from.
    "ALTER TABLE events ADD COLUMN camera TEXT;
     CREATE TABLE invocation_totals(
        service TEXT NOT NULL,
        state TEXT NOT NULL,
        ran_on TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY(service, state, ran_on)
     );
     INSERT INTO invocation_totals
       SELECT service, state, COALESCE(ran_on, 'local'), COUNT(*) FROM invocations
       WHERE state IN ('succeeded', 'failed', 'timed_out', 'cancelled') GROUP BY 1, 2, 3;
     INSERT INTO invocation_totals
       SELECT service, 'created', 'any', COUNT(*) FROM invocations GROUP BY 1;
     CREATE TRIGGER invocation_created AFTER INSERT ON invocations BEGIN
       INSERT INTO invocation_totals VALUES (NEW.service, 'created', 'any', 1)
         ON CONFLICT(service, state, ran_on) DO UPDATE SET n = n + 1;
     END;
     CREATE TRIGGER invocation_ended AFTER UPDATE OF state ON invocations
       WHEN NEW.state IN ('succeeded', 'failed', 'timed_out', 'cancelled') AND OLD.state IS NOT NEW.state
     BEGIN
       INSERT INTO invocation_totals VALUES (NEW.service, NEW.state, COALESCE(NEW.ran_on, 'local'), 1)
         ON CONFLICT(service, state, ran_on) DO UPDATE SET n = n + 1;
     END;
     INSERT INTO counters(name, value)
       SELECT 'outbox_uploaded', COUNT(*) FROM outbox WHERE state = 'done'
       UNION ALL SELECT 'outbox_uploaded_bytes', COALESCE(SUM(size), 0) FROM outbox WHERE state = 'done';
     CREATE TRIGGER outbox_uploaded AFTER UPDATE OF state ON outbox
       WHEN NEW.state = 'done' AND OLD.state IS NOT 'done'
     BEGIN
       INSERT INTO counters(name, value) VALUES ('outbox_uploaded', 1)
         ON CONFLICT(name) DO UPDATE SET value = value + 1;
       INSERT INTO counters(name, value) VALUES ('outbox_uploaded_bytes', NEW.size)
         ON CONFLICT(name) DO UPDATE SET value = value + excluded.value;
     END;
     CREATE TABLE cameras(
        camera TEXT PRIMARY KEY,
        frames INTEGER NOT NULL DEFAULT 0,
        last_seen_ms INTEGER,
        judged INTEGER NOT NULL DEFAULT 0,
        faces INTEGER NOT NULL DEFAULT 0,
        masked INTEGER NOT NULL DEFAULT 0,
        unmasked INTEGER NOT NULL DEFAULT 0,
        last_result TEXT,
        last_result_ms INTEGER,
        snapshot_key TEXT,
        snapshot_ms INTEGER
     );
     CREATE TABLE camera_results(
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        faces INTEGER NOT NULL,
        masked INTEGER NOT NULL,
        unmasked INTEGER NOT NULL
     );
     CREATE INDEX camera_results_time ON camera_results(camera, time_ms);
     INSERT INTO cameras(camera, frames, last_seen_ms)
       SELECT camera, COUNT(*), MAX(created_ms) FROM ingest GROUP BY camera;
     CREATE TRIGGER ingest_camera AFTER INSERT ON ingest BEGIN
       INSERT INTO cameras(camera, frames, last_seen_ms) VALUES (NEW.camera, 1, NEW.created_ms)
         ON CONFLICT(camera) DO UPDATE SET frames = frames + 1, last_seen_ms = excluded.last_seen_ms;
     END;",
    // 9: the settings of buckets made through /system/buckets (visibility, members, owner,
    // metadata, quota), as their JSON.
    "CREATE TABLE buckets(name TEXT PRIMARY KEY, json TEXT NOT NULL, created_ms INTEGER NOT NULL);",
    // 10: privacy zones set through the API (they replace the camera's zones of fogd.yaml).
    "CREATE TABLE camera_zones(camera TEXT PRIMARY KEY, json TEXT NOT NULL, updated_ms INTEGER NOT NULL);",
    // 11: licence plates blurred in each camera's judged frames, ever.
    "ALTER TABLE cameras ADD COLUMN plates INTEGER NOT NULL DEFAULT 0;",
];

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(JournalError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(err)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalSync;
    use crate::journal::{now_ms, Journal, State};

    /// A journal written by the first release (schema 1) opens with today's code: every
    /// migration runs in order, and its queued work is still there and still runs.
    #[test]
    fn a_journal_of_the_first_schema_is_brought_up_to_date_with_its_rows() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("journal.sqlite");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(MIGRATIONS[0]).expect("schema 1");
            conn.pragma_update(None, "user_version", 1).expect("version");
            conn.execute_batch(
                "INSERT INTO events(id, provider, key, etag, size, event_time, source, created_us)
                   VALUES (1, 'minio.default', 'work/in/a', 'e1', 1, '', 'put', 0);
                 INSERT INTO invocations(id, uuid, service, event_id, state, created_ms)
                   VALUES (1, 'svc-1', 'svc', 1, 'queued', 0);",
            )
            .expect("rows");
        }
        let j = Journal::open(&path, JournalSync::Normal).expect("migrated");
        let version: i64 = Connection::open(&path)
            .expect("open")
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len() as i64);
        let inv = j.job("svc-1").expect("get").expect("kept");
        assert_eq!(
            (inv.state, inv.key.as_str(), inv.ran_on),
            (State::Queued, "work/in/a", None)
        );
        assert_eq!(j.pending("svc").expect("pending"), 1);
        // The columns later migrations added have their defaults: it may be delegated.
        let claimed = j
            .claim_for_delegation("svc", now_ms(), "cameras/incoming/", 1)
            .expect("claim");
        assert_eq!(claimed.len(), 1);
    }
}
