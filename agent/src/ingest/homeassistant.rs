//! What Home Assistant and Frigate users read from MQTT: each camera's state (retained JSON on
//! `<base>/cameras/<camera>/state`), its latest anonymised frame (retained JPEG on
//! `<base>/cameras/<camera>/snapshot`), and Home Assistant MQTT discovery documents that make the
//! node and each camera a device with sensors and a camera entity, available while the node's
//! `<base>/available` says `online`.

use serde_json::{json, Value};

use crate::journal::Camera;

/// The topic a camera's retained state is published on.
pub fn state_topic(base: &str, camera: &str) -> String {
    format!("{base}/cameras/{camera}/state")
}

pub fn snapshot_topic(base: &str, camera: &str) -> String {
    format!("{base}/cameras/{camera}/snapshot")
}

/// A camera's state: its latest verdict (and what it was made of), when it was last seen, and
/// its totals.
pub fn state(c: &Camera) -> Value {
    let last = c.last.as_ref();
    let rfc3339 = |ms: Option<i64>| {
        ms.and_then(|ms| u64::try_from(ms).ok()).map(|ms| {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
                .to_string()
        })
    };
    json!({
        "camera": c.camera,
        "verdict": last.map_or("none", |l| l.verdict.as_str()),
        "detection_status": last.map(|l| l.detection_status.as_str()),
        "faces": last.map_or(0, |l| l.faces),
        "masked": last.map_or(0, |l| l.masked),
        "unmasked": last.map_or(0, |l| l.unmasked),
        "plates": last.map_or(0, |l| l.plates),
        "no_mask_share_pct": last.map_or(0.0, |l| (l.no_mask_share * 1000.0).round() / 10.0),
        "last_seen": rfc3339(c.last_seen_ms),
        "last_verdict": rfc3339(last.map(|l| l.time_ms)),
        "frames_total": c.frames,
        "judged_total": c.judged,
        "faces_total": c.faces,
        "unmasked_total": c.unmasked,
        "plates_total": c.plates,
    })
}

/// Home Assistant's object ids allow `[a-zA-Z0-9_-]`; camera names may hold `.` and `@` too.
/// One-to-one: a name of allowed characters without `__` is its own id (ids already in use stay);
/// any other is `x__` and the name with `_`, `.` and `@` spelled `__u`, `__d`, `__a`. Only these
/// hold `__`, so `door.1`, `door@1` and `door_1` are three devices.
pub fn object_id(s: &str) -> String {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.contains("__");
    if plain {
        return s.to_string();
    }
    let mut out = String::from("x__");
    for c in s.chars() {
        match c {
            '_' => out.push_str("__u"),
            '.' => out.push_str("__d"),
            '@' => out.push_str("__a"),
            c if c.is_ascii_alphanumeric() || c == '-' => out.push(c),
            // Not a camera name's character: spelled by its code point, still one-to-one.
            c => out.push_str(&format!("__x{:x}_", c as u32)),
        }
    }
    out
}

fn availability(base: &str) -> Value {
    json!({"availability_topic": format!("{base}/available"),
           "payload_available": "online", "payload_not_available": "offline"})
}

fn with(mut doc: Value, extra: &Value) -> Value {
    if let (Some(m), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    doc
}

/// The node's discovery documents: (topic, payload), all retained.
pub fn node_discovery(prefix: &str, base: &str, node: &str) -> Vec<(String, Value)> {
    let id = object_id(node);
    let device = json!({
        "identifiers": [format!("fogd_{id}")],
        "name": format!("fogd {node}"),
        "manufacturer": "fogd",
        "model": "fogd edge node",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let stats = format!("{base}/stats");
    let sensor = |key: &str, name: &str, template: &str, extra: Value| {
        let doc = json!({
            "name": name,
            "unique_id": format!("fogd_{id}_{key}"),
            "state_topic": stats,
            "value_template": template,
            "device": device,
        });
        (
            format!("{prefix}/sensor/fogd_{id}/{key}/config"),
            with(with(doc, &availability(base)), &extra),
        )
    };
    vec![
        (
            format!("{prefix}/binary_sensor/fogd_{id}/online/config"),
            json!({
                "name": "Online",
                "unique_id": format!("fogd_{id}_online"),
                "state_topic": format!("{base}/available"),
                "payload_on": "online",
                "payload_off": "offline",
                "device_class": "connectivity",
                "device": device,
            }),
        ),
        sensor(
            "outbox_backlog",
            "Outbox backlog",
            "{{ value_json.outbox.backlog }}",
            json!({"state_class": "measurement", "unit_of_measurement": "objects"}),
        ),
        sensor(
            "outbox_bytes",
            "Outbox bytes",
            "{{ value_json.outbox.backlog_bytes }}",
            json!({"state_class": "measurement", "unit_of_measurement": "B", "device_class": "data_size"}),
        ),
    ]
}

/// One camera's discovery documents: sensors for its latest verdict (and its plates, for a camera
/// that sees vehicles) and a camera entity for its snapshot, on a device of its own attached to
/// the node's.
pub fn camera_discovery(
    prefix: &str,
    base: &str,
    node: &str,
    camera: &str,
    (snapshots, plates): (bool, bool),
) -> Vec<(String, Value)> {
    let (nid, cid) = (object_id(node), object_id(camera));
    let device = json!({
        "identifiers": [format!("fogd_{nid}_{cid}")],
        "name": camera,
        "manufacturer": "fogd",
        "model": "camera (anonymised on the node)",
        "via_device": format!("fogd_{nid}"),
    });
    let state = state_topic(base, camera);
    let entity = |component: &str, key: &str, name: &str, extra: Value| {
        let uid = format!("fogd_{nid}_{cid}_{key}");
        let doc = json!({"name": name, "unique_id": uid, "device": device});
        (
            format!("{prefix}/{component}/fogd_{nid}_{cid}/{key}/config"),
            with(with(doc, &availability(base)), &extra),
        )
    };
    let count = |key: &str, name: &str, unit: &str| {
        entity(
            "sensor",
            key,
            name,
            json!({"state_topic": state, "value_template": format!("{{{{ value_json.{key} }}}}"),
                   "state_class": "measurement", "unit_of_measurement": unit}),
        )
    };
    let mut docs = vec![
        count("faces", "Faces", "faces"),
        count("masked", "Faces with a mask", "faces"),
        count("unmasked", "Faces without a mask", "faces"),
        entity(
            "sensor",
            "no_mask_share",
            "Share without a mask",
            json!({"state_topic": state, "value_template": "{{ value_json.no_mask_share_pct }}",
                   "state_class": "measurement", "unit_of_measurement": "%"}),
        ),
        entity(
            "sensor",
            "verdict",
            "Verdict",
            json!({"state_topic": state, "value_template": "{{ value_json.verdict }}",
                   "device_class": "enum", "options": ["safe", "warning", "danger", "not_judged", "none"]}),
        ),
        entity(
            "sensor",
            "last_seen",
            "Last seen",
            json!({"state_topic": state, "value_template": "{{ value_json.last_seen }}",
                   "device_class": "timestamp"}),
        ),
    ];
    if plates {
        docs.push(count("plates", "Licence plates blurred", "plates"));
    }
    if snapshots {
        docs.push(entity(
            "camera",
            "snapshot",
            "Snapshot (anonymised)",
            json!({"topic": snapshot_topic(base, camera)}),
        ));
    }
    docs
}

#[cfg(test)]
mod tests {
    use super::{camera_discovery, object_id};

    /// A camera that sees vehicles gets a plates sensor; the others do not (one document less
    /// each, for nodes with thousands of cameras).
    #[test]
    fn the_plates_sensor_is_for_cameras_that_see_vehicles() {
        let topics = |plates: bool| -> Vec<String> {
            camera_discovery("homeassistant", "fogd/n", "n", "gate", (true, plates))
                .into_iter()
                .map(|(t, _)| t)
                .collect()
        };
        let with = topics(true);
        assert!(
            with.contains(&"homeassistant/sensor/fogd_n_gate/plates/config".to_string()),
            "{with:?}"
        );
        let without = topics(false);
        assert_eq!(without.len() + 1, with.len());
        assert!(without.iter().all(|t| !t.contains("/plates/")), "{without:?}");
    }

    #[test]
    fn object_ids_are_one_to_one_and_plain_names_keep_theirs() {
        assert_eq!(object_id("porch"), "porch");
        assert_eq!(object_id("door_1"), "door_1");
        assert_eq!(object_id("cam-2"), "cam-2");
        let ids: std::collections::BTreeSet<String> =
            ["door.1", "door@1", "door_1", "door__1", "door__d1", "x__door__d1"]
                .iter()
                .map(|n| object_id(n))
                .collect();
        assert_eq!(ids.len(), 6, "{ids:?}");
        assert!(ids.iter().all(|i| i
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));
    }
}
