//! What fogd knows of each remote store's link (up, down since when, the last error): the outbox
//! loop writes it, the status topic and the metrics read it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What fogd knows of a remote store's link, for the stats.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Link {
    pub online: bool,
    /// Since when it has not answered (ms since the epoch).
    pub offline_since_ms: Option<i64>,
    /// Time spent offline since fogd started, closed spells and the current one.
    pub offline_ms_total: i64,
    /// Failed probes in a row.
    #[serde(skip)]
    pub(crate) failures: u32,
    #[serde(skip)]
    pub(crate) next_probe_ms: i64,
    pub last_error: Option<String>,
}

/// The links of every remote store, shared with the status publisher.
#[derive(Default)]
pub struct Links(Mutex<BTreeMap<String, Link>>);

impl Links {
    pub fn snapshot(&self) -> BTreeMap<String, Link> {
        let now = now_ms();
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for l in m.values_mut() {
            if let Some(s) = l.offline_since_ms {
                l.offline_ms_total += now - s;
            }
        }
        m
    }

    /// Not known to be down (a store never tried counts as up).
    pub fn is_online(&self, provider: &str) -> bool {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(provider).is_none_or(|l| l.online)
    }

    pub(crate) fn with<T>(&self, provider: &str, f: impl FnOnce(&mut Link) -> T) -> T {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let l = m.entry(provider.to_string()).or_insert_with(|| Link {
            online: true,
            ..Link::default()
        });
        f(l)
    }
}
