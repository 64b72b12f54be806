//! The node's own settings (`fogd.yaml`). Pure: parsing and defaults, no I/O beyond reading the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `fogd.yaml`. Every field has a default, so an empty file (or none) is the embedded default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's name (`RESOURCE_ID` in scripts). Default: the host name.
    pub node_name: Option<String>,
    /// Journal, local store and invocation folders.
    pub data_dir: PathBuf,
    /// FDL files to run, relative to this config file.
    pub workflows: Vec<PathBuf>,
    /// Concurrent invocations per service. Default: the number of cores.
    pub concurrency: Option<usize>,
    /// Wall-clock limit of one script run, e.g. `10m`.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
    /// stdout+stderr kept per invocation; the rest is cut (and the cut is noted).
    pub log_cap_bytes: u64,
    /// Largest single output file stored; larger ones fail the invocation with a clear error.
    pub max_output_bytes: u64,
    /// Keep the outputs of a script that exited non-zero (OSCAR always does).
    pub store_failed_outputs: bool,
    /// Runs of one invocation interrupted by a crash before it is marked failed.
    pub max_attempts: u32,
    /// How often S3 inputs are listed for new objects.
    #[serde(with = "humantime_serde_compat")]
    pub s3_poll_interval: Duration,
    /// Below this much free space in `data_dir`, fogd takes no new work.
    pub min_free_bytes: u64,
    /// `full` (default: fsync every commit, nothing lost on power loss) or `normal` (WAL without
    /// fsync per commit: safe against crashes of fogd, may lose the last commits on power loss).
    pub journal_sync: JournalSync,
    /// The OSCAR-compatible HTTP API.
    pub gateway: GatewayConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    pub enabled: bool,
    /// Loopback unless said otherwise: exposing the admin API is a choice.
    pub listen: String,
    /// Largest request body (`/job`, `/run` inputs); larger ones get 413.
    pub max_body_bytes: usize,
    /// The admin user for HTTP Basic (OSCAR's default is `oscar`).
    pub admin_user: String,
    /// Serve HTTPS with this certificate and key (PEM files).
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            enabled: true,
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 64 << 20,
            admin_user: "oscar".into(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournalSync {
    Full,
    Normal,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: None,
            data_dir: PathBuf::from("fogd-data"),
            workflows: Vec::new(),
            concurrency: None,
            timeout: Duration::from_secs(600),
            log_cap_bytes: 1 << 20,
            max_output_bytes: 1 << 30,
            store_failed_outputs: true,
            max_attempts: 3,
            s3_poll_interval: Duration::from_secs(2),
            min_free_bytes: 64 << 20,
            journal_sync: JournalSync::Full,
            gateway: GatewayConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`; relative `data_dir` and `workflows` are taken from the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.data_dir.is_relative() {
            cfg.data_dir = base.join(&cfg.data_dir);
        }
        for w in &mut cfg.workflows {
            if w.is_relative() {
                *w = base.join(&*w);
            }
        }
        if let Some(t) = &mut cfg.gateway.tls {
            for p in [&mut t.cert, &mut t.key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let cfg: Config = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if cfg.concurrency == Some(0) {
            return Err("concurrency must be at least 1".into());
        }
        if cfg.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        Ok(cfg)
    }

    pub fn node_name(&self) -> String {
        self.node_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "fogd".into())
        })
    }

    pub fn concurrency(&self) -> usize {
        self.concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

/// Durations written as `10m`, `2s`, `500ms`.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("`{s}` is not a duration like `30s` or `10m`: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::parse("").expect("empty");
        assert_eq!(c.timeout, Duration::from_secs(600));
        let c = Config::parse("timeout: 30s\nconcurrency: 2\njournal_sync: normal\n").expect("parse");
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.concurrency(), 2);
        assert_eq!(c.journal_sync, JournalSync::Normal);
        assert!(Config::parse("timeout: soon\n")
            .unwrap_err()
            .contains("not a duration"));
        assert!(Config::parse("colour: blue\n").unwrap_err().contains("colour"));
        assert!(Config::parse("concurrency: 0\n").is_err());
    }
}
