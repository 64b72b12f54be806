//! What each camera is doing, for the operator's tools (MQTT state topics, Home Assistant,
//! Prometheus, the status page): frames ingested (kept by a trigger on `ingest`), the frames
//! judged and their totals, the latest verdict, the latest anonymised snapshot, and a history of
//! verdicts for charts (pruned with the rest of the journal).

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::{now_ms, InvocationId, Journal, Result};

/// One frame's verdict, as the mask detector wrote it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaskResult {
    pub camera: Option<String>,
    /// The stored result's key.
    pub key: String,
    pub faces: u64,
    pub masked: u64,
    pub unmasked: u64,
    /// Licence plates blurred in the frame.
    #[serde(default)]
    pub plates: u64,
    /// Unmasked over judged faces (0 when none was judged).
    pub no_mask_share: f64,
    /// `safe`, `warning`, `danger`, or `not_judged` when masks were not classified.
    pub verdict: String,
    /// How the faces were found: `ok`, or `redacted-whole` when detection failed and the frame
    /// was blurred whole.
    pub detection_status: String,
    pub time_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Camera {
    pub camera: String,
    /// Items ingested from it, ever.
    pub frames: u64,
    pub last_seen_ms: Option<i64>,
    /// Frames judged, ever, and their face totals.
    pub judged: u64,
    pub faces: u64,
    pub masked: u64,
    pub unmasked: u64,
    pub plates: u64,
    pub last: Option<MaskResult>,
    /// The latest anonymised frame's key in the local store.
    pub snapshot_key: Option<String>,
    pub snapshot_ms: Option<i64>,
}

/// One point of a camera's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    pub time_ms: i64,
    pub faces: u64,
    pub unmasked: u64,
    pub no_mask_share: f64,
}

/// The camera the chain of the invocation whose id is the parameter `?N` started from: its
/// event's (inherited by outputs) or its raw item's. `record_event` gives it to outputs' events.
pub(super) fn camera_of_sql(n: u8) -> String {
    format!(
        "SELECT COALESCE(e.camera, g.camera) FROM invocations v
         JOIN events e ON e.id = v.event_id
         LEFT JOIN ingest g ON g.event_id = e.id WHERE v.id = ?{n}"
    )
}

impl Journal {
    /// The camera the chain of `invocation` started from, if it started from a camera item.
    pub fn camera_of(&self, invocation: InvocationId) -> Result<Option<String>> {
        self.conn()
            .prepare_cached(&camera_of_sql(1))
            .and_then(|mut st| {
                st.query_row([invocation.0], |r| r.get::<_, Option<String>>(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(|e| self.err(e))
    }

    /// Adds a verdict to its camera's totals, latest result and history.
    pub fn record_mask_result(&self, r: &MaskResult) -> Result<()> {
        let Some(camera) = &r.camera else { return Ok(()) };
        let json = serde_json::to_string(r).unwrap_or_default();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO cameras(camera, judged, faces, masked, unmasked, last_result, last_result_ms, plates)
             VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(camera) DO UPDATE SET judged = judged + 1, faces = faces + ?2,
               masked = masked + ?3, unmasked = unmasked + ?4, last_result = ?5, last_result_ms = ?6,
               plates = plates + ?7",
            params![camera, r.faces as i64, r.masked as i64, r.unmasked as i64, json, r.time_ms, r.plates as i64],
        )
        .and_then(|_| {
            tx.execute(
                "INSERT INTO camera_results(camera, time_ms, faces, masked, unmasked) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![camera, r.time_ms, r.faces as i64, r.masked as i64, r.unmasked as i64],
            )
        })
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// The latest anonymised frame of `camera` is now `key`.
    pub fn record_snapshot(&self, camera: &str, key: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO cameras(camera, snapshot_key, snapshot_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(camera) DO UPDATE SET snapshot_key = ?2, snapshot_ms = ?3",
                params![camera, key, now_ms()],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }

    /// Has the journal seen this camera?
    pub fn camera_known(&self, camera: &str) -> Result<bool> {
        self.conn()
            .prepare_cached("SELECT 1 FROM cameras WHERE camera = ?1")
            .and_then(|mut st| st.exists([camera]))
            .map_err(|e| self.err(e))
    }

    /// How many cameras the journal knows.
    pub fn camera_count(&self) -> Result<u64> {
        self.conn()
            .query_row("SELECT count(*) FROM cameras", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub fn cameras(&self) -> Result<Vec<Camera>> {
        self.rows(
            "SELECT camera, frames, last_seen_ms, judged, faces, masked, unmasked, last_result,
                    snapshot_key, snapshot_ms, plates FROM cameras ORDER BY camera",
            [],
            |r| {
                let last: Option<String> = r.get(7)?;
                Ok(Camera {
                    camera: r.get(0)?,
                    frames: r.get::<_, i64>(1)? as u64,
                    last_seen_ms: r.get(2)?,
                    judged: r.get::<_, i64>(3)? as u64,
                    faces: r.get::<_, i64>(4)? as u64,
                    masked: r.get::<_, i64>(5)? as u64,
                    unmasked: r.get::<_, i64>(6)? as u64,
                    plates: r.get::<_, i64>(10)? as u64,
                    last: last.and_then(|s| serde_json::from_str(&s).ok()),
                    snapshot_key: r.get(8)?,
                    snapshot_ms: r.get(9)?,
                })
            },
        )
    }

    /// `camera`'s verdicts since `since_ms`, at most `max` points (the newest).
    pub fn camera_history(&self, camera: &str, since_ms: i64, max: usize) -> Result<Vec<HistoryPoint>> {
        let mut points = self.rows(
            "SELECT time_ms, faces, masked, unmasked FROM camera_results
             WHERE camera = ?1 AND time_ms >= ?2 ORDER BY time_ms DESC LIMIT ?3",
            params![camera, since_ms, max as i64],
            |r| {
                let (masked, unmasked) = (r.get::<_, i64>(2)? as u64, r.get::<_, i64>(3)? as u64);
                Ok(HistoryPoint {
                    time_ms: r.get(0)?,
                    faces: r.get::<_, i64>(1)? as u64,
                    unmasked,
                    no_mask_share: share(masked, unmasked),
                })
            },
        )?;
        points.reverse();
        Ok(points)
    }

    /// Invocations created (`state` = `created`, `ran_on` = `any`) and ended, by service, final
    /// state and where they ran: counts that only grow.
    pub fn invocation_totals(&self) -> Result<Vec<(String, String, String, u64)>> {
        self.rows(
            "SELECT service, state, ran_on, n FROM invocation_totals ORDER BY 1, 2, 3",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64)),
        )
    }
}

pub fn share(masked: u64, unmasked: u64) -> f64 {
    if masked + unmasked == 0 {
        0.0
    } else {
        unmasked as f64 / (masked + unmasked) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalSync;
    use crate::journal::{NewEvent, Outcome, Spooled, State};

    fn result(camera: &str, faces: u64, unmasked: u64) -> MaskResult {
        MaskResult {
            camera: Some(camera.into()),
            key: format!("cameras/results/{camera}/a.masks.json"),
            faces,
            masked: faces - unmasked,
            unmasked,
            plates: 1,
            no_mask_share: share(faces - unmasked, unmasked),
            verdict: "warning".into(),
            detection_status: "ok".into(),
            time_ms: now_ms(),
        }
    }

    /// An output's event inherits the camera of the ingest item its chain started from, two
    /// hops down; the counters only grow when retention deletes the rows they counted.
    #[test]
    fn outputs_keep_their_camera_and_totals_outlive_retention() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        let item = Spooled {
            source: "mqtt".into(),
            camera: "door".into(),
            topic: "t".into(),
            key: "cameras/incoming/door/1.jpg".into(),
            path: "/x".into(),
            size: 1,
            checksum: "c1".into(),
        };
        let ids = j
            .ingest_batch(&[item], "", &[vec!["anon".into()]])
            .expect("ingest");
        let first = ids[0].as_ref().expect("new")[0];
        assert_eq!(j.camera_of(first).expect("q").as_deref(), Some("door"));
        let mut ev = NewEvent::test("cameras/anonymised/door/1.json", "output");
        ev.parent = Some(first);
        let second = j.record_event(&ev, &["masks"]).expect("rec").expect("new").1[0];
        assert_eq!(j.camera_of(second).expect("q").as_deref(), Some("door"));
        let unrelated = NewEvent::record_for_test(&j, "work/in/x", "put", "masks");
        assert_eq!(j.camera_of(unrelated).expect("q"), None);

        j.record_mask_result(&result("door", 4, 1)).expect("r");
        j.record_mask_result(&result("door", 2, 2)).expect("r");
        let cams = j.cameras().expect("cams");
        assert_eq!(cams.len(), 1);
        let c = &cams[0];
        assert_eq!(
            (c.frames, c.judged, c.faces, c.masked, c.unmasked, c.plates),
            (1, 2, 6, 3, 3, 2)
        );
        assert_eq!(c.last.as_ref().map(|l| l.unmasked), Some(2));
        assert_eq!(j.camera_history("door", 0, 10).expect("h").len(), 2);

        let done = Outcome::test(State::Succeeded);
        for svc in ["anon", "masks"] {
            for inv in j.claim(svc, 10).expect("claim") {
                j.finish(inv.id, &done).expect("finish");
            }
        }
        let totals = j.invocation_totals().expect("totals");
        let ended = |svc: &str| {
            totals
                .iter()
                .filter(|t| t.0 == svc && t.1 == State::Succeeded.as_str())
                .map(|t| t.3)
                .sum::<u64>()
        };
        assert_eq!((ended("anon"), ended("masks")), (1, 2));
        assert!(totals
            .iter()
            .any(|t| t == &("masks".to_string(), "created".to_string(), "any".to_string(), 2)));
        // Retention removes every row; what was counted stays counted.
        while j.prune(now_ms() + 1000, 0, 100).expect("prune").total() > 0 {}
        assert!(j.invocations_page("masks", None, 10).expect("page").0.is_empty());
        assert_eq!(j.invocation_totals().expect("totals"), totals);
        assert_eq!(j.cameras().expect("cams")[0].frames, 1);
        assert!(j.camera_history("door", 0, 10).expect("h").is_empty());
    }
}
