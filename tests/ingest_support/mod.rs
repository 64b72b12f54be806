//! What these tests share.
#![allow(dead_code, unused_imports)]

pub use std::collections::{BTreeMap, BTreeSet};
pub use std::path::Path;
pub use std::time::{Duration, Instant};

pub use crate::common::*;
pub use fogd::config::{Config, FullPolicy, MqttConfig};
pub use fogd::journal::State;

/// A stand-in for the anonymiser that changes every byte it passes on (so its output is not
/// raw content), keeping the camera folder.
pub const ANON: &str = "cam=$(echo \"$STORAGE_OBJECT_KEY\" | cut -d/ -f2)\nmkdir -p \"$TMP_OUTPUT_DIR/$cam\"\n\
{ printf 'anonymised:'; cat \"$INPUT_FILE_PATH\"; } > \"$TMP_OUTPUT_DIR/$cam/$(basename \"$INPUT_FILE_PATH\")\"\n";
/// The stand-in anonymiser with its results in the local store.
pub const LOCAL_FDL: &str = "functions:
  oscar:
  - edge:
      name: anon
      image: x
      script: anon.sh
      input: [{storage_provider: minio, path: cameras/incoming}]
      output: [{storage_provider: minio, path: anon/frames}]
";
/// A service that would leak the raw frame as it is.
pub const LEAK: &str = "cp \"$INPUT_FILE_PATH\" \"$TMP_OUTPUT_DIR/\"\n";

pub fn fdl(sw_yaml: &str, leak: bool) -> String {
    let leak_svc = if leak {
        "  - edge:
      name: leaky
      image: x
      script: leak.sh
      input: [{storage_provider: minio, path: cameras/incoming/door}]
      output: [{storage_provider: minio.sw, path: anon/leak}]
"
    } else {
        ""
    };
    format!(
        "functions:
  oscar:
  - edge:
      name: anon
      image: x
      script: anon.sh
      input: [{{storage_provider: minio, path: cameras/incoming}}]
      output: [{{storage_provider: minio.sw, path: anon/frames}}]
{leak_svc}{sw_yaml}"
    )
}

pub fn node_cfg(dir: &Path, broker: &Mosquitto, id: &str) -> Config {
    let mut c = cfg(dir);
    c.node_name = Some(id.into());
    c.gateway.enabled = false;
    c.concurrency = Some(1);
    c.mqtt = Some(MqttConfig {
        broker: broker.url(),
        client_id: Some(format!("fogd-{id}")),
        stats_interval: Duration::from_millis(300),
        max_frame_bytes: 200_000,
        max_clip_bytes: 100_000,
        ..MqttConfig::default()
    });
    c.sync.max_backoff = Duration::from_secs(2);
    c
}

pub struct Node {
    pub d: Daemon,
}

impl Node {
    pub async fn start(cfg: Config, fdl: &Path) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("FOGD_LOG").unwrap_or_else(|_| "fogd=warn".into()))
            .try_init();
        // The daemon starts the MQTT source that the config names.
        let d = Daemon::start(cfg, &[fdl.to_path_buf()]).await;
        Node { d }
    }

    pub async fn stop(self) {
        self.d.stop().await;
    }

    pub fn ingested(&self) -> u64 {
        self.d
            .rt
            .journal
            .ingest_counts()
            .expect("counts")
            .iter()
            .map(|(_, n)| n)
            .sum()
    }

    pub async fn wait_ingested(&self, n: u64, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.ingested() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} items ingested in {secs} s",
                self.ingested()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn counter(node: &Node, name: &str) -> u64 {
    node.d
        .rt
        .journal
        .counters()
        .expect("counters")
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}
