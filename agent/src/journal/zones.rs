//! Privacy zones set through the API, kept across restarts. A camera's zones here replace its
//! zones in fogd.yaml until they are deleted (`DELETE /fogd/cameras/<camera>/zones`).

use fogd_vision_proto::zones::Zone;
use rusqlite::{params, OptionalExtension};

use super::{now_ms, Journal, JournalError, Result};

impl Journal {
    /// The zones set for `camera` through the API, if any. A row that no longer parses is an
    /// error, never "no zones": its frames then stop instead of going out unmasked.
    pub fn zones(&self, camera: &str) -> Result<Option<Vec<Zone>>> {
        let json: Option<String> = self
            .conn()
            .prepare_cached("SELECT json FROM camera_zones WHERE camera = ?1")
            .and_then(|mut st| st.query_row([camera], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))?;
        json.map(|j| {
            serde_json::from_str(&j).map_err(|e| {
                JournalError::Unreadable(format!(
                    "the privacy zones of camera `{camera}` in the journal: {e}"
                ))
            })
        })
        .transpose()
    }

    /// Cameras with zones set through the API.
    pub fn zoned_cameras(&self) -> Result<u64> {
        self.conn()
            .query_row("SELECT count(*) FROM camera_zones", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Sets (`Some`) or removes (`None`) the zones of `camera`; the caller checked them.
    pub fn set_zones(&self, camera: &str, zones: Option<&[Zone]>) -> Result<()> {
        let conn = self.conn();
        match zones {
            Some(z) => conn.execute(
                "INSERT INTO camera_zones(camera, json, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT(camera) DO UPDATE SET json = ?2, updated_ms = ?3",
                params![camera, serde_json::to_string(z).unwrap_or_default(), now_ms()],
            ),
            None => conn.execute("DELETE FROM camera_zones WHERE camera = ?1", [camera]),
        }
        .map(drop)
        .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JournalSync;

    #[test]
    fn zones_are_kept_replaced_and_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let j = Journal::open(&dir.path().join("j.sqlite"), JournalSync::Normal).expect("open");
        assert_eq!(j.zones("door").expect("none"), None);
        let z = vec![Zone {
            name: Some("window".into()),
            points: vec![[0.1, 0.1], [0.4, 0.1], [0.4, 0.3]],
        }];
        j.set_zones("door", Some(&z)).expect("set");
        assert_eq!(j.zones("door").expect("some"), Some(z.clone()));
        j.set_zones("door", Some(&[])).expect("set empty");
        assert_eq!(j.zones("door").expect("empty"), Some(vec![]));
        j.set_zones("door", None).expect("remove");
        assert_eq!(j.zones("door").expect("gone"), None);
        // A row that does not parse stops the camera instead of counting as no zones.
        j.conn()
            .execute("INSERT INTO camera_zones VALUES ('gate', 'not json', 0)", [])
            .expect("insert");
        assert!(j.zones("gate").is_err());
    }
}
