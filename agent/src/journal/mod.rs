//! The journal: one SQLite file (WAL) that holds every event and invocation. It is the only state
//! fogd shares between its parts and between processes (`fogd put` and `fogd run`); every state
//! change is one function here that runs one transaction.

pub mod boundary;
mod cameras;
mod delegation;
mod ingest;
mod invocations;
#[cfg(test)]
mod model;
mod outbox;
mod outbox_ops;
pub mod retention;
mod schema;
mod services;
mod zones;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

pub use cameras::{share, Camera, HistoryPoint, MaskResult};
pub use delegation::Followed;
pub use ingest::{IngestRow, Spooled};
pub use invocations::{Invocation, InvocationId, Outcome, State};
pub use outbox::{Enqueued, OutboxItem, OutboxRow};
pub use services::random_hex;

use crate::config::JournalSync;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("journal {path} was written by a newer fogd (schema {found}, this fogd knows {known})")]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("journal: no invocation {0}")]
    NoInvocation(String),
    #[error("journal: the call was cut short ({0}): fogd is stopping")]
    Stopped(String),
    #[error("journal: {0}")]
    Unreadable(String),
    #[error("{key}: refused for {provider}: it is byte for byte the raw item `{raw}` from camera `{camera}`; raw frames never leave this node")]
    RawContent {
        provider: String,
        key: String,
        raw: String,
        camera: String,
    },
}

pub type Result<T> = std::result::Result<T, JournalError>;

/// An object that landed in a store: the cause of invocations.
#[derive(Debug, Clone, Serialize)]
pub struct NewEvent {
    /// `minio.default`, `s3.my_s3`, ...
    pub provider: String,
    /// `bucket/folder/file`.
    pub key: String,
    /// Content identity: the same object seen twice has the same etag and makes no second event.
    pub etag: String,
    pub size: u64,
    /// RFC 3339.
    pub event_time: String,
    /// `put`, `output`, `watch`, `invoke`, `job`, `delegated`.
    pub source: String,
    /// The name its one invocation takes (a delegated job keeps its origin's `X-Delegated-Job-ID`).
    pub job_id: Option<String>,
    /// The invocation whose output this is: the event inherits the camera its chain started from.
    pub parent: Option<InvocationId>,
}

#[cfg(test)]
impl NewEvent {
    /// A local-store event for `key` (its etag the key itself), as the journal's tests record.
    pub(crate) fn test(key: &str, source: &str) -> NewEvent {
        NewEvent {
            provider: "minio.default".into(),
            key: key.into(),
            etag: key.into(),
            size: 1,
            event_time: String::new(),
            source: source.into(),
            job_id: None,
            parent: None,
        }
    }

    /// Records `test(key, source)` for one service; its invocation's id.
    pub(crate) fn record_for_test(j: &Journal, key: &str, source: &str, service: &str) -> InvocationId {
        j.record_event(&NewEvent::test(key, source), &[service])
            .expect("record")
            .expect("new")
            .1[0]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: i64,
    /// When fogd recorded it (µs since the epoch).
    pub created_us: i64,
    /// `put`, `output`, `watch`, `invoke`, `job`, `run`.
    pub source: String,
    pub provider: String,
    pub key: String,
    pub etag: String,
    pub size: u64,
    pub event_time: String,
}

pub struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
}

pub fn now_ms() -> i64 {
    now_us() / 1000
}

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Journal {
    /// Opens (creating and migrating) the journal at `path`.
    pub fn open(path: &Path, sync: JournalSync) -> Result<Journal> {
        let err = |source| JournalError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        // Several processes share the file: wait for a writer rather than fail.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
        let sync = match sync {
            JournalSync::Full => "FULL",
            JournalSync::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync).map_err(err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(err)?;
        schema::migrate(&mut conn, path)?;
        Ok(Journal {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        boundary::note_use();
        // A panic while holding the lock cannot leave SQLite half-written (the transaction rolls
        // back), so a poisoned lock is still safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on tokio's blocking pool. The journal blocks (on its lock, and on the fsync of
    /// every commit with `synchronous=FULL`): async code calls it through here, so that no
    /// async worker thread waits for a disk.
    pub async fn call<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Journal) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let j = self.clone();
        boundary::offload(move || f(&j))
            .await
            .unwrap_or_else(|| Err(JournalError::Stopped("the blocking pool is shutting down".into())))
    }

    /// Every row of a query, mapped by `f`.
    fn rows<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        f: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut st = conn.prepare_cached(sql).map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params, f)
            .and_then(|r| r.collect::<rusqlite::Result<Vec<T>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Records an event and, in the same transaction, one queued invocation per service it
    /// routes to. Returns `None` when the same event (provider, key, etag) was recorded before:
    /// a second delivery creates nothing.
    pub fn record_event(&self, ev: &NewEvent, services: &[&str]) -> Result<Option<(i64, Vec<InvocationId>)>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let now = now_ms();
        let inserted = tx
            .prepare_cached(&format!(
                "INSERT INTO events(provider, key, etag, size, event_time, source, created_us, camera)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ({}))
                 ON CONFLICT(provider, key, etag) DO NOTHING RETURNING id",
                cameras::camera_of_sql(8)
            ))
            .and_then(|mut st| {
                st.query_row(
                    rusqlite::params![
                        ev.provider,
                        ev.key,
                        ev.etag,
                        ev.size as i64,
                        ev.event_time,
                        ev.source,
                        now_us(),
                        ev.parent.map(|i| i.0)
                    ],
                    |r| r.get::<_, i64>(0),
                )
                .optional()
            })
            .map_err(|e| self.err(e))?;
        let Some(event_id) = inserted else {
            return Ok(None);
        };
        let mut ids = Vec::with_capacity(services.len());
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO invocations(uuid, service, event_id, state, created_ms)
                     VALUES (?1, ?2, ?3, 'queued', ?4) RETURNING id",
                )
                .map_err(|e| self.err(e))?;
            for svc in services {
                let uuid = match &ev.job_id {
                    Some(id) if services.len() == 1 => id.clone(),
                    _ => job_uuid(svc),
                };
                let id = st
                    .query_row(rusqlite::params![uuid, svc, event_id, now], |r| r.get(0))
                    .map_err(|e| self.err(e))?;
                ids.push(id);
            }
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(Some((event_id, ids)))
    }

    pub fn event(&self, id: i64) -> Result<Event> {
        self.conn()
            .prepare_cached(
                "SELECT id, provider, key, etag, size, event_time, created_us, source FROM events WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.query_row([id], |r| {
                    Ok(Event {
                        id: r.get(0)?,
                        provider: r.get(1)?,
                        key: r.get(2)?,
                        etag: r.get(3)?,
                        size: r.get::<_, i64>(4)? as u64,
                        event_time: r.get(5)?,
                        created_us: r.get(6)?,
                        source: r.get(7)?,
                    })
                })
            })
            .map_err(|e| self.err(e))
    }

    /// Remembers which FDL files the daemon runs, so that `fogd put` and `fogd invoke` find the
    /// same providers and services.
    pub fn set_workflows(&self, paths: &[PathBuf]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM workflows", []).map_err(|e| self.err(e))?;
        for p in paths {
            tx.execute(
                "INSERT INTO workflows(path, loaded_ms) VALUES (?1, ?2)",
                rusqlite::params![p.to_string_lossy(), now_ms()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn workflows(&self) -> Result<Vec<PathBuf>> {
        let rows = self.rows("SELECT path FROM workflows ORDER BY path", [], |r| {
            r.get::<_, String>(0)
        })?;
        Ok(rows.into_iter().map(PathBuf::from).collect())
    }

    /// Is (provider, key, etag) already an event? For S3 listings, which see old objects again.
    pub fn has_event(&self, provider: &str, key: &str, etag: &str) -> Result<bool> {
        self.conn()
            .prepare_cached("SELECT 1 FROM events WHERE provider = ?1 AND key = ?2 AND etag = ?3")
            .and_then(|mut st| st.exists(rusqlite::params![provider, key, etag]))
            .map_err(|e| self.err(e))
    }
}

/// OSCAR's JOB_UUID: `<service (cut to 16 characters when it has 25 or more)>-<uuid4>`.
pub fn job_uuid(service: &str) -> String {
    let prefix: String = if service.chars().count() >= 25 {
        service.chars().take(16).collect()
    } else {
        service.to_string()
    };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}
