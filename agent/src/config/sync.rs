//! `sync:`: how the outbox drains to remote stores (pace, quota, TTL, backoff, parts, order).

use std::time::Duration;

use serde::Deserialize;

use super::humantime_serde_compat;

/// `sync:` in fogd.yaml: how the outbox drains to remote stores.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Upload rate cap in bytes a second (0: none).
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub bandwidth_bytes: u64,
    /// Bytes the outbox may hold; beyond it `full_policy` applies.
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub quota_bytes: u64,
    pub full_policy: FullPolicy,
    /// Objects not uploaded after this long are dropped (and counted).
    #[serde(with = "humantime_serde_compat")]
    pub ttl: Duration,
    /// Longest wait between two tries (the backoff doubles up to it, with jitter).
    #[serde(with = "humantime_serde_compat")]
    pub max_backoff: Duration,
    /// Objects at least this large go up in parts.
    pub multipart_threshold: u64,
    #[serde(deserialize_with = "crate::config::byte_size::deserialize")]
    pub part_bytes: u64,
    /// Uploads at once (objects of one folder always go one after another, in order).
    pub parallel: usize,
    /// Higher first: `[{prefix: results/, priority: 10}]`, matched on the object key.
    pub priorities: Vec<PriorityRule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityRule {
    pub prefix: String,
    pub priority: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// New objects are dropped while the outbox is full.
    RejectNew,
    /// The oldest objects of the lowest priority are dropped to make room.
    DropOldest,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            bandwidth_bytes: 0,
            quota_bytes: 4 << 30,
            full_policy: FullPolicy::DropOldest,
            ttl: Duration::from_secs(7 * 24 * 3600),
            max_backoff: Duration::from_secs(300),
            multipart_threshold: 16 << 20,
            part_bytes: 8 << 20,
            parallel: 16,
            priorities: Vec::new(),
        }
    }
}

impl SyncConfig {
    pub fn priority_of(&self, key: &str) -> i64 {
        self.priorities
            .iter()
            .filter(|r| {
                key.starts_with(&r.prefix)
                    || key.split_once('/').is_some_and(|(_, k)| k.starts_with(&r.prefix))
            })
            .map(|r| r.priority)
            .max()
            .unwrap_or(0)
    }
}
