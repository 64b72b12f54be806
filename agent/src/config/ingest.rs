//! The ingest part of `fogd.yaml` (`mqtt:`, `ingest:`), and the grammar of what it names: MQTT
//! topic patterns and camera names.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;

/// `mqtt:` in fogd.yaml. Topic patterns name the camera with `{camera}`.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `host:port` or `mqtt://host:port`.
    pub broker: String,
    /// Default `fogd-<node>`. Fixed, so that the broker keeps the session (and queues messages)
    /// while fogd is down.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Topics carrying one JPEG frame each.
    pub frame_topics: Vec<String>,
    /// Topics carrying one video file each.
    pub clip_topics: Vec<String>,
    #[serde(deserialize_with = "crate::config::byte_size::usize::deserialize")]
    pub max_frame_bytes: usize,
    #[serde(deserialize_with = "crate::config::byte_size::usize::deserialize")]
    pub max_clip_bytes: usize,
    /// Payload bytes received and not yet spooled at most; past it, messages are left with the
    /// broker (not acknowledged) and fetched again once the spool caught up. The broker's queue
    /// is the buffer, not fogd's memory.
    #[serde(deserialize_with = "crate::config::byte_size::usize::deserialize")]
    pub max_buffer_bytes: usize,
    /// Status topics: `<prefix>/<node>/available|stats|events`.
    pub status_prefix: String,
    #[serde(with = "humantime_serde_compat")]
    pub stats_interval: Duration,
    #[serde(with = "humantime_serde_compat")]
    pub keep_alive: Duration,
    /// TLS to the broker (also implied by an `mqtts://` broker).
    pub tls: Option<MqttTls>,
    /// Home Assistant MQTT discovery: each camera a device with its sensors and snapshot, under
    /// this prefix (Home Assistant's default); `""` turns discovery off.
    pub discovery_prefix: String,
    /// Publish each camera's latest anonymised frame (retained) on
    /// `<prefix>/<node>/cameras/<camera>/snapshot`.
    pub snapshots: bool,
}
fogd_fdl::debug_redacted!(MqttConfig { broker, client_id, username, frame_topics, clip_topics, max_frame_bytes, max_clip_bytes, max_buffer_bytes, status_prefix, stats_interval, keep_alive, tls, discovery_prefix, snapshots; password });

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: "127.0.0.1:1883".into(),
            client_id: None,
            username: None,
            password: None,
            frame_topics: vec!["fogd/cameras/{camera}/frame".into()],
            clip_topics: vec!["fogd/cameras/{camera}/clip".into()],
            max_frame_bytes: 8 << 20,
            max_clip_bytes: 64 << 20,
            max_buffer_bytes: 32 << 20,
            status_prefix: "fogd".into(),
            stats_interval: Duration::from_secs(30),
            keep_alive: Duration::from_secs(30),
            tls: None,
            discovery_prefix: "homeassistant".into(),
            snapshots: true,
        }
    }
}

impl MqttConfig {
    /// (host, port, TLS) of `broker`: `host:port`, `mqtt://host:port` (plain TCP, default port
    /// 1883) or `mqtts://host:port` (TLS, default port 8883).
    pub fn host_port(&self) -> Result<(String, u16, bool), String> {
        let b = self.broker.trim();
        let (rest, tls) = if let Some(r) = b.strip_prefix("mqtts://").or_else(|| b.strip_prefix("ssl://")) {
            (r, true)
        } else {
            (
                b.strip_prefix("mqtt://")
                    .or_else(|| b.strip_prefix("tcp://"))
                    .unwrap_or(b),
                self.tls.is_some(),
            )
        };
        if rest.contains("://") {
            return Err(format!("mqtt.broker `{b}`: use mqtt:// or mqtts://"));
        }
        let default = if tls { 8883 } else { 1883 };
        match rest.rsplit_once(':') {
            Some((h, p)) => p
                .parse::<u16>()
                .map(|p| (h.to_string(), p, tls))
                .map_err(|_| format!("mqtt.broker `{b}`: `{p}` is not a port")),
            None => Ok((rest.to_string(), default, tls)),
        }
    }
}

/// `mqtt.tls`: the CA that signed the broker's certificate (PEM), and a client certificate and
/// key (PEM) where the broker asks for one (AWS IoT, mosquitto with `require_certificate`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// Default: the system's CA bundle.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `ingest:` in fogd.yaml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// The folder (`bucket/folder`) of the local store where items land, as
    /// `<path>/<camera>/<name>`: the raw area. Workflows take their input from here (an FDL
    /// input path of `<path>` gets every camera, `<path>/<camera>` one); nothing under it can
    /// enter the outbox.
    pub path: String,
    /// Cameras at most (every source together): an item from a camera the node has not seen
    /// once this many are known is refused, so no client of the broker can make state (cameras,
    /// folders, Home Assistant devices) without end.
    pub max_cameras: u64,
    /// Keep a raw item this long after every invocation on it succeeded (default: delete at once).
    #[serde(with = "humantime_serde_compat")]
    pub raw_retention: Duration,
    /// A folder whose new files are ingested (then removed): `<dir>/<camera>/<file>`.
    pub watch_dir: Option<PathBuf>,
    #[serde(with = "humantime_serde_compat")]
    pub watch_interval: Duration,
    /// Camera streams (RTSP, HTTP, files: anything FFmpeg reads), one frame every `every`.
    pub streams: Vec<StreamSource>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSource {
    pub camera: String,
    pub url: String,
    #[serde(with = "humantime_serde_compat", default = "five_seconds")]
    pub every: Duration,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl IngestConfig {
    /// `<path>/`: what every raw key starts with.
    pub fn raw_prefix(&self) -> String {
        format!("{}/", self.path.trim_end_matches('/'))
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            path: "cameras/incoming".into(),
            max_cameras: 256,
            raw_retention: Duration::ZERO,
            watch_dir: None,
            watch_interval: Duration::from_secs(1),
            streams: Vec::new(),
        }
    }
}

/// A topic pattern with one `{camera}` segment, e.g. `fogd/cameras/{camera}/frame`.
#[derive(Debug, Clone)]
pub struct TopicPattern {
    prefix: String,
    suffix: String,
}

impl TopicPattern {
    pub fn parse(p: &str) -> std::result::Result<TopicPattern, String> {
        let Some((prefix, suffix)) = p.split_once("{camera}") else {
            return Err(format!("mqtt topic `{p}` has no `{{camera}}` segment"));
        };
        if suffix.contains("{camera}") || p.contains('+') || p.contains('#') {
            return Err(format!(
                "mqtt topic `{p}`: one `{{camera}}` and no MQTT wildcards"
            ));
        }
        if !(prefix.is_empty() || prefix.ends_with('/')) || !(suffix.is_empty() || suffix.starts_with('/')) {
            return Err(format!("mqtt topic `{p}`: `{{camera}}` must be a whole level"));
        }
        Ok(TopicPattern {
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
        })
    }

    /// The subscription: everything under the prefix, so that a topic whose camera part is
    /// malformed (`a/b`, `..`) arrives, and is counted and refused, rather than never seen.
    pub fn filter(&self) -> String {
        format!("{}#", self.prefix)
    }

    /// The camera part of `topic` when the topic has this pattern's shape.
    pub fn camera<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic.strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)
    }
}

/// What is wrong with a camera name, if anything: it must be one path segment fogd can use as a
/// folder and an object key part.
pub fn camera_problem(name: &str) -> Option<String> {
    let bad = |why: &str| Some(format!("`{}` {why}", name.escape_debug()));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.contains('/') {
        return bad("contains `/`");
    }
    if name == "." || name == ".." || name.starts_with('.') {
        return bad("starts with `.`");
    }
    if name.len() > 128 {
        return bad("is longer than 128 bytes");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
    {
        return bad("has characters other than letters, digits, `-`, `_`, `.`, `@`");
    }
    None
}

pub use fogd_log::redact_credentials;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_password_is_never_in_debug_output() {
        let m = MqttConfig {
            username: Some("cam".into()),
            password: Some("broker-secret".into()),
            ..MqttConfig::default()
        };
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("broker-secret") && shown.contains("cam"),
            "{shown}"
        );
    }

    #[test]
    fn passwords_in_urls_are_masked_and_the_rest_kept() {
        assert_eq!(
            redact_credentials("rtsp://admin:s3cr:et@10.0.0.5:554/live?x=1"),
            "rtsp://admin:***@10.0.0.5:554/live?x=1"
        );
        assert_eq!(
            redact_credentials("rtsp://10.0.0.5/a: Connection refused (http://u:p@h/x and ftp://u@h)"),
            "rtsp://10.0.0.5/a: Connection refused (http://u:***@h/x and ftp://u@h)"
        );
        assert_eq!(redact_credentials("no url here"), "no url here");
        assert_eq!(redact_credentials("rtsp://cam"), "rtsp://cam");
    }
}
