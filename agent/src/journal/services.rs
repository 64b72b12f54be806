//! Services created through the OSCAR API (kept as their JSON) and per-service bearer tokens.

use rusqlite::{params, OptionalExtension};

use super::{now_ms, Journal, Result};

impl Journal {
    /// Creates (`create`) or replaces an API service. Returns false when creating a service that
    /// exists, or replacing one that does not.
    pub fn put_api_service(&self, name: &str, json: &str, create: bool) -> Result<bool> {
        let now = now_ms();
        let conn = self.conn();
        let n = if create {
            conn.execute(
                "INSERT INTO api_services(name, json, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(name) DO NOTHING",
                params![name, json, now],
            )
        } else {
            conn.execute(
                "UPDATE api_services SET json = ?2, updated_ms = ?3 WHERE name = ?1",
                params![name, json, now],
            )
        }
        .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    pub fn api_services(&self) -> Result<Vec<(String, String)>> {
        self.rows("SELECT name, json FROM api_services ORDER BY name", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    /// One API service's JSON.
    pub fn api_service(&self, name: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT json FROM api_services WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn delete_api_service(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let n = tx
            .execute("DELETE FROM api_services WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM service_tokens WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        if n == 1 {
            // Its waiting jobs never run: not now, and not under a later service of that name.
            tx.execute(
                "UPDATE invocations SET state = 'cancelled', finished_ms = ?2,
                   error = 'cancelled: its service was deleted'
                 WHERE service = ?1 AND state = 'queued'",
                rusqlite::params![name, super::now_ms()],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Invocations created in [start_ms, end_ms], per service (or of one): (service, synchronous
    /// (`/run`), asynchronous, milliseconds run: started to finished, or to `now_ms` for one
    /// still running). For `/system/metrics`; the rows retention keeps are what is counted.
    pub fn usage(
        &self,
        start_ms: i64,
        end_ms: i64,
        service: Option<&str>,
    ) -> Result<Vec<(String, u64, u64, i64)>> {
        self.rows(
            "SELECT i.service,
                    SUM(CASE WHEN e.source = 'run' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN e.source <> 'run' THEN 1 ELSE 0 END),
                    SUM(CASE WHEN i.started_ms IS NULL THEN 0
                             ELSE MAX(0, COALESCE(i.finished_ms, ?4) - i.started_ms) END)
             FROM invocations i JOIN events e ON e.id = i.event_id
             WHERE i.created_ms >= ?1 AND i.created_ms <= ?2 AND (?3 IS NULL OR i.service = ?3)
             GROUP BY i.service ORDER BY i.service",
            params![start_ms, end_ms, service, now_ms()],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                    r.get(3)?,
                ))
            },
        )
    }

    /// A bucket's settings (its JSON), if it has any.
    pub fn bucket_settings(&self, name: &str) -> Result<Option<String>> {
        self.conn()
            .query_row("SELECT json FROM buckets WHERE name = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every bucket's settings, by name.
    pub fn all_bucket_settings(&self) -> Result<Vec<(String, String)>> {
        self.rows("SELECT name, json FROM buckets ORDER BY name", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
    }

    pub fn put_bucket_settings(&self, name: &str, json: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO buckets(name, json, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET json = excluded.json",
                params![name, json, now_ms()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    pub fn delete_bucket_settings(&self, name: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM buckets WHERE name = ?1", [name])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The service's bearer token, made (64 hex characters, like OSCAR's) on first use.
    pub fn service_token(&self, name: &str) -> Result<String> {
        let conn = self.conn();
        let existing: Option<String> = conn
            .query_row("SELECT token FROM service_tokens WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some(t) = existing {
            return Ok(t);
        }
        let token = random_hex(32);
        conn.execute(
            "INSERT INTO service_tokens(name, token) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, token],
        )
        .map_err(|e| self.err(e))?;
        conn.query_row("SELECT token FROM service_tokens WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(|e| self.err(e))
    }

    /// A new token (OSCAR makes one on every create and update).
    pub fn rotate_service_token(&self, name: &str) -> Result<String> {
        let token = random_hex(32);
        self.conn()
            .execute(
                "INSERT INTO service_tokens(name, token) VALUES (?1, ?2)
                 ON CONFLICT(name) DO UPDATE SET token = excluded.token",
                params![name, token],
            )
            .map_err(|e| self.err(e))?;
        Ok(token)
    }

    /// Deletes one finished (or queued) invocation; a running one stays. Returns whether it was
    /// deleted.
    pub fn delete_invocation(&self, service: &str, job: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM invocations WHERE service = ?1 AND (uuid = ?2 OR CAST(id AS TEXT) = ?2)
                 AND state != 'running'",
                params![service, job],
            )
            .map_err(|e| self.err(e))?;
        Ok(n == 1)
    }

    /// Deletes a service's finished invocations (`all`: queued ones too). Returns how many.
    pub fn delete_invocations(&self, service: &str, all: bool) -> Result<usize> {
        let sql = if all {
            "DELETE FROM invocations WHERE service = ?1 AND state != 'running'"
        } else {
            "DELETE FROM invocations WHERE service = ?1 AND state IN ('succeeded', 'failed', 'timed_out', 'cancelled')"
        };
        self.conn().execute(sql, [service]).map_err(|e| self.err(e))
    }
}

/// `n` random bytes from the OS, as hex.
pub fn random_hex(n: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::super::{Journal, NewEvent, State};
    use crate::config::JournalSync;

    fn event(j: &Journal, key: &str, service: &str) -> super::super::InvocationId {
        NewEvent::record_for_test(j, key, "job", service)
    }

    #[test]
    fn deleting_a_service_cancels_its_waiting_jobs_and_pages_are_read_by_index() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        assert!(j.put_api_service("svc", "{}", true).expect("put"));
        let ids: Vec<_> = (0..250).map(|i| event(&j, &format!("in/{i}"), "svc")).collect();
        let other = event(&j, "in/other", "keep");
        // Pages of 100, newest first, each continuing after the last id of the one before.
        let (p1, left1) = j.invocations_page("svc", None, 100).expect("page 1");
        assert_eq!((p1.len(), left1, p1[0].id), (100, 150, ids[249]));
        let (p3, left3) = j.invocations_page("svc", Some(ids[50]), 100).expect("page 3");
        assert_eq!((p3.len(), left3, p3[49].id), (50, 0, ids[0]));

        assert!(j.delete_api_service("svc").expect("delete"));
        let all = j.invocations(Some("svc"), 1000).expect("list");
        assert_eq!(all.len(), 250);
        assert!(all
            .iter()
            .all(|i| i.state == State::Cancelled && i.finished_ms.is_some()));
        assert_eq!(
            j.pending("svc").expect("pending"),
            0,
            "nothing left to run or count"
        );
        let kept = j.invocation(other).expect("get").expect("there");
        assert_eq!(kept.state, State::Queued, "another service's jobs are untouched");
    }
}
