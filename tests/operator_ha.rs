//! What Home Assistant reads of a node: each MQTT discovery document fogd retains, checked
//! against what HA's MQTT integration requires and against the topics the broker retained.

use std::collections::HashMap;

use crate::operator::NODE;

/// What Home Assistant's MQTT integration requires of each component it is given (its
/// DISCOVERY_SCHEMA: `vol.Required` keys), and what every fogd entity must carry.
pub fn check_discovery(topic: &str, doc: &serde_json::Value, retained: &HashMap<String, Vec<u8>>) {
    let parts: Vec<&str> = topic.split('/').collect();
    assert_eq!(
        (parts.len(), parts[0], parts[4]),
        (5, "homeassistant", "config"),
        "{topic}"
    );
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    assert!(id_ok(parts[2]) && id_ok(parts[3]), "node_id/object_id: {topic}");
    let required: &[&str] = match parts[1] {
        "sensor" | "binary_sensor" => &["state_topic"],
        "camera" => &["topic"],
        other => panic!("{topic}: a component fogd does not announce: {other}"),
    };
    for key in required.iter().chain(&["unique_id", "name"]) {
        assert!(doc[key].is_string(), "{topic}: no `{key}`: {doc}");
    }
    let ids = doc["device"]["identifiers"]
        .as_array()
        .expect("device.identifiers");
    assert!(
        !ids.is_empty() && doc["device"]["name"].is_string(),
        "{topic}: {doc}"
    );
    if let Some(a) = doc.get("availability_topic") {
        assert_eq!(a, &format!("fogd/{NODE}/available"));
        assert_eq!(
            (
                doc["payload_available"].as_str(),
                doc["payload_not_available"].as_str()
            ),
            (Some("online"), Some("offline"))
        );
    }
    if let Some(sc) = doc.get("state_class") {
        assert!(
            ["measurement", "total", "total_increasing"].contains(&sc.as_str().unwrap_or("")),
            "{topic}"
        );
    }
    match doc["device_class"].as_str() {
        // An enum sensor lists its states and has no unit; a timestamp has no unit either.
        Some("enum") => assert!(
            doc["options"].is_array() && doc.get("unit_of_measurement").is_none(),
            "{topic}"
        ),
        Some("timestamp") => assert!(doc.get("unit_of_measurement").is_none(), "{topic}"),
        _ => {}
    }
    // The topic it reads has a retained message, and its template names a field of it.
    let read = doc["state_topic"]
        .as_str()
        .or(doc["topic"].as_str())
        .unwrap_or_default();
    let payload = retained
        .get(read)
        .unwrap_or_else(|| panic!("{topic}: nothing retained on {read}"));
    if let Some(t) = doc["value_template"].as_str() {
        let state: serde_json::Value = serde_json::from_slice(payload).expect("state JSON");
        let path = t
            .trim_matches(|c| c == '{' || c == '}' || c == ' ')
            .strip_prefix("value_json.")
            .expect("template");
        let field = path.split('.').fold(&state, |v, k| &v[k]);
        assert!(!field.is_null(), "{topic}: {t} is null in {state}");
    }
}
