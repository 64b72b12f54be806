//! `cameras:` in fogd.yaml: what the node knows of each camera before its first frame: its
//! privacy zones, and whether it sees vehicles (plates).

use std::collections::BTreeMap;

use fogd_vision_proto::zones::{self, Zone};
use serde::Deserialize;

/// `cameras.<id>`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CameraConfig {
    /// Polygons blacked out in every frame before detection and before anything is written
    /// (anonymised frames, snapshots, Home Assistant images): `[{name, points: [[x, y], ...]}]`,
    /// x and y from 0 to 1 of the picture's width and height.
    pub zones: Vec<Zone>,
    /// The camera sees vehicles: its frames' licence plates are blurred too, and a frame whose
    /// plates were not searched gets no receipt (so never leaves the node).
    pub plates: bool,
}

/// `privacy:` in fogd.yaml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The live check: one anonymised frame in N is searched again after redaction by a second,
    /// independent detector; what it finds is counted (`fogd_privacy_faces_left_total`), logged
    /// and shown on the status page. 0 (default): off.
    pub audit_every: u64,
}

impl super::Config {
    /// Does `camera` see vehicles (`cameras.<id>.plates`), so that its plates must be blurred?
    pub fn sees_vehicles(&self, camera: Option<&str>) -> bool {
        camera.and_then(|c| self.cameras.get(c)).is_some_and(|c| c.plates)
    }
}

/// Checks every camera's name and zones; the message names the camera and the zone.
pub fn check(cameras: &BTreeMap<String, CameraConfig>) -> Result<(), String> {
    for (id, c) in cameras {
        if let Some(why) = super::camera_problem(id) {
            return Err(format!("cameras.{id}: bad camera name: {why}"));
        }
        zones::check_all(&c.zones).map_err(|e| format!("cameras.{id}.zones: {e}"))?;
    }
    Ok(())
}
