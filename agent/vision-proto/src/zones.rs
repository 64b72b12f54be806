//! Privacy zones: polygons of a camera's picture (a neighbour's window, a street, a till) that are
//! blacked out in every frame before detection and before anything is written. Coordinates are
//! normalised (0..1 of the width and height), so a zone holds when the camera's resolution changes.
//!
//! A zone that cannot be applied must stop the frame, never let it through: everything here
//! checks strictly, and an error names the camera and the zone.

use serde::{Deserialize, Serialize};

/// The variable that carries a camera's zones (a `CameraZones` as JSON) into a function's
/// environment, and from a script's `fogd anonymize` to the vision worker.
pub const ENV_ZONES: &str = "FOGD_PRIVACY_ZONES";
/// Zones of one camera at most.
pub const MAX_ZONES: usize = 32;
/// Corners of one zone at most.
pub const MAX_POINTS: usize = 64;
/// Longest zone name, in bytes.
pub const MAX_NAME: usize = 64;
/// A zone smaller than this share of the picture is a mistake (three points on a line, a click
/// twice in one place), not a zone.
const MIN_AREA: f64 = 1e-6;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Corners, `[x, y]`, each 0..1 of the picture's width and height.
    pub points: Vec<[f64; 2]>,
}

/// A camera's zones, as they travel to the anonymiser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraZones {
    pub camera: String,
    pub zones: Vec<Zone>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ZoneError {
    #[error("privacy zone {zone}: {reason}")]
    Bad { zone: String, reason: String },
    #[error("privacy zones: {0}")]
    Invalid(String),
    #[error(
        "privacy zones are camera `{camera}`'s, but the object `{key}` is not from that camera: \
         nothing is written (fogd gives each invocation its own camera's zones)"
    )]
    WrongCamera { camera: String, key: String },
}

impl Zone {
    /// How the zone is named in errors: its index, and its name where it has one.
    pub fn label(&self, index: usize) -> String {
        match &self.name {
            Some(n) => format!("{index} (`{n}`)"),
            None => index.to_string(),
        }
    }

    /// Checks one zone: 3 to `MAX_POINTS` corners inside the picture, an area, no crossing edges
    /// (a crossed polygon is filled as two pieces with a hole between them, not as drawn).
    pub fn check(&self, index: usize) -> Result<(), ZoneError> {
        let bad = |reason: String| ZoneError::Bad {
            zone: self.label(index),
            reason,
        };
        if let Some(n) = &self.name {
            if n.len() > MAX_NAME || n.chars().any(char::is_control) {
                return Err(bad(format!(
                    "the name must be at most {MAX_NAME} bytes, without control characters"
                )));
            }
        }
        let p = &self.points;
        if p.len() < 3 || p.len() > MAX_POINTS {
            return Err(bad(format!(
                "{} corner(s); a zone has 3 to {MAX_POINTS}",
                p.len()
            )));
        }
        if let Some((i, c)) = p
            .iter()
            .enumerate()
            .find(|(_, c)| !c.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)))
        {
            return Err(bad(format!(
                "corner {i} {c:?} is outside the picture (coordinates are 0 to 1 of its width and height)"
            )));
        }
        let n = p.len();
        for i in 0..n {
            for j in i + 1..n {
                // Neighbouring edges share a corner; any other two must not touch.
                if j == i + 1 || (i == 0 && j == n - 1) {
                    continue;
                }
                if segments_touch(p[i], p[(i + 1) % n], p[j], p[(j + 1) % n]) {
                    return Err(bad(format!(
                        "its edges {i} and {j} cross or touch (a corner given twice?): draw the outline in order"
                    )));
                }
            }
        }
        if area(p) < MIN_AREA {
            return Err(bad("it has no area (its corners are on one line)".into()));
        }
        Ok(())
    }
}

/// Checks a list of zones (at most `MAX_ZONES`, each valid).
pub fn check_all(zones: &[Zone]) -> Result<(), ZoneError> {
    if zones.len() > MAX_ZONES {
        return Err(ZoneError::Invalid(format!(
            "{} zones; a camera has {MAX_ZONES} at most",
            zones.len()
        )));
    }
    zones.iter().enumerate().try_for_each(|(i, z)| z.check(i))
}

impl CameraZones {
    /// Parses and checks what `ENV_ZONES` or `--zones` carries.
    pub fn parse(json: &str) -> Result<CameraZones, ZoneError> {
        // Thousands of corners fit in this; more is not a zone list.
        if json.len() > 256 << 10 {
            return Err(ZoneError::Invalid(format!(
                "{} bytes of JSON; 256 KiB at most",
                json.len()
            )));
        }
        let z: CameraZones = serde_json::from_str(json).map_err(|e| ZoneError::Invalid(e.to_string()))?;
        check_all(&z.zones).map_err(|e| ZoneError::Invalid(format!("camera `{}`: {e}", z.camera)))?;
        Ok(z)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The zones must be those of the camera the object came from: a key with the camera as one
    /// of its folders (`cameras/incoming/<camera>/...`), as fogd's ingest names items.
    pub fn check_key(&self, key: &str) -> Result<(), ZoneError> {
        let mut folders = key.split('/').rev().skip(1);
        if folders.any(|f| f == self.camera) {
            Ok(())
        } else {
            Err(ZoneError::WrongCamera {
                camera: self.camera.clone(),
                key: key.to_string(),
            })
        }
    }
}

/// Shoelace area, as a share of the picture.
fn area(p: &[[f64; 2]]) -> f64 {
    let n = p.len();
    let twice: f64 = (0..n)
        .map(|i| {
            let (a, b) = (p[i], p[(i + 1) % n]);
            a[0] * b[1] - b[0] * a[1]
        })
        .sum();
    twice.abs() / 2.0
}

fn orient(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn on_segment(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> bool {
    c[0] >= a[0].min(b[0]) && c[0] <= a[0].max(b[0]) && c[1] >= a[1].min(b[1]) && c[1] <= a[1].max(b[1])
}

/// Do segments ab and cd meet (crossing, or touching, or overlapping)?
fn segments_touch(a: [f64; 2], b: [f64; 2], c: [f64; 2], d: [f64; 2]) -> bool {
    let (o1, o2, o3, o4) = (orient(a, b, c), orient(a, b, d), orient(c, d, a), orient(c, d, b));
    if ((o1 > 0.0 && o2 < 0.0) || (o1 < 0.0 && o2 > 0.0))
        && ((o3 > 0.0 && o4 < 0.0) || (o3 < 0.0 && o4 > 0.0))
    {
        return true;
    }
    (o1 == 0.0 && on_segment(a, b, c))
        || (o2 == 0.0 && on_segment(a, b, d))
        || (o3 == 0.0 && on_segment(c, d, a))
        || (o4 == 0.0 && on_segment(c, d, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(points: &[[f64; 2]]) -> Zone {
        Zone {
            name: Some("window".into()),
            points: points.to_vec(),
        }
    }

    #[test]
    fn a_plain_polygon_is_a_zone() {
        zone(&[[0.1, 0.1], [0.5, 0.1], [0.5, 0.4], [0.1, 0.4]])
            .check(0)
            .expect("square");
        zone(&[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
            .check(0)
            .expect("corners of the picture");
        // Concave (an L) is fine.
        zone(&[
            [0.1, 0.1],
            [0.3, 0.1],
            [0.3, 0.2],
            [0.2, 0.2],
            [0.2, 0.4],
            [0.1, 0.4],
        ])
        .check(0)
        .expect("L");
    }

    #[test]
    fn broken_polygons_are_refused_with_their_name() {
        let cases: &[(&[[f64; 2]], &str)] = &[
            (&[[0.1, 0.1], [0.5, 0.1]], "2 corner(s)"),
            (&[[0.1, 0.1], [1.5, 0.1], [0.5, 0.5]], "outside the picture"),
            (&[[0.1, 0.1], [f64::NAN, 0.1], [0.5, 0.5]], "outside the picture"),
            (&[[-0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], "outside the picture"),
            (&[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]], "no area"),
            // A bow tie: its edges cross.
            (&[[0.1, 0.1], [0.5, 0.5], [0.5, 0.1], [0.1, 0.5]], "cross"),
        ];
        for (points, why) in cases {
            let e = zone(points).check(3).expect_err(why).to_string();
            assert!(e.contains("zone 3 (`window`)") && e.contains(why), "{e}");
        }
        let many = vec![[0.5, 0.5]; MAX_POINTS + 1];
        assert!(zone(&many).check(0).is_err());
    }

    #[test]
    fn camera_zones_parse_strictly_and_belong_to_one_camera() {
        let ok = r#"{"camera":"door","zones":[{"points":[[0,0],[0.5,0],[0.5,0.5]]}]}"#;
        let z = CameraZones::parse(ok).expect("parse");
        assert_eq!(CameraZones::parse(&z.to_json()).expect("again"), z);
        z.check_key("incoming/door/1.jpg").expect("its camera");
        z.check_key("cameras/incoming/door/clip.mp4").expect("its camera");
        let e = z
            .check_key("incoming/gate/door")
            .expect_err("another camera")
            .to_string();
        assert!(
            e.contains("camera `door`") && e.contains("incoming/gate/door"),
            "{e}"
        );
        for bad in [
            "",
            "{}",
            r#"{"camera":"door","zones":[{"points":[[0,0],[0.5,0]]}]}"#,
            r#"{"camera":"door","zones":[],"extra":1}"#,
            r#"{"camera":"door","zones":[{"points":[[0,0],[1,0],[1,1]],"colour":"red"}]}"#,
        ] {
            let e = CameraZones::parse(bad).expect_err(bad).to_string();
            assert!(e.starts_with("privacy zones"), "{e}");
        }
        let too_many = CameraZones {
            camera: "door".into(),
            zones: vec![z.zones[0].clone(); MAX_ZONES + 1],
        };
        assert!(CameraZones::parse(&too_many.to_json()).is_err());
    }
}
