//! Node status over MQTT, as Frigate users know it: `<base>/available` (`online`/`offline`,
//! retained, the last will says `offline`), `<base>/stats` (JSON every `stats_interval`),
//! `<base>/events` (one JSON per node event). Counts come from the journal, so they are right
//! across restarts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, QoS};
use serde_json::{json, Value};

use crate::runtime::Runtime;

static CONNECTED: AtomicBool = AtomicBool::new(false);
static CONNECTS: AtomicU64 = AtomicU64::new(0);

pub fn set_connected(up: bool) {
    CONNECTED.store(up, Ordering::Relaxed);
    if up {
        CONNECTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the stats report of the delegation members (their health, as JSON): given by whoever
/// runs the delegator, so that ingest needs no handle on the executors.
pub type Members = Arc<dyn Fn() -> Value + Send + Sync>;

/// No delegation members to report (a node without the scheduler, a bench).
pub fn no_members() -> Members {
    Arc::new(|| json!([]))
}

/// The stats document.
pub fn stats(rt: &Runtime, members: &Members) -> Value {
    stats_from(rt, members, &rt.journal.counts_where().unwrap_or_default())
}

/// The stats document, from the invocations counted by (service, state, where they ran), which
/// the caller may use for more (the status page counts by service from the same rows).
pub fn stats_from(
    rt: &Runtime,
    members: &Members,
    counts: &[(String, crate::journal::State, String, u64)],
) -> Value {
    let j = &rt.journal;
    let map = |v: Vec<(String, u64)>| -> BTreeMap<String, u64> { v.into_iter().collect() };
    let counters = map(j.counters().unwrap_or_default());
    let rejected: BTreeMap<String, u64> = counters
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("ingest_rejected_").map(|r| (r.to_string(), *v)))
        .collect();
    let raw = map(j.ingest_counts().unwrap_or_default());
    let (mut inv, mut ran_on) = (BTreeMap::<String, u64>::new(), BTreeMap::<String, u64>::new());
    for (_, state, at, n) in counts {
        *inv.entry(state.as_str().to_string()).or_default() += n;
        *ran_on.entry(at.clone()).or_default() += n;
    }
    let (backlog, backlog_bytes) = j.outbox_totals().unwrap_or_default();
    let outbox = map(j.outbox_counts().unwrap_or_default());
    let c = |k: &str| counters.get(k).copied().unwrap_or(0);
    let links = rt.links.snapshot();
    json!({
        "node": rt.node,
        "time_ms": crate::journal::now_ms(),
        "uptime_s": rt.started.elapsed().as_secs(),
        "rss_bytes": rss_bytes(),
        "mqtt": {"connected": CONNECTED.load(Ordering::Relaxed), "connects": CONNECTS.load(Ordering::Relaxed)},
        "ingest": {
            "spooled": raw.values().sum::<u64>(),
            "raw_waiting": raw.get("spooled").copied().unwrap_or(0),
            "raw_processed": raw.get("processed").copied().unwrap_or(0) + raw.get("deleted").copied().unwrap_or(0),
            "duplicates": c("ingest_duplicates"),
            "rejected": rejected,
        },
        "invocations": inv,
        "outbox": {
            "backlog": backlog,
            "backlog_bytes": backlog_bytes,
            "uploaded": outbox.get("done").copied().unwrap_or(0),
            "dropped_full": c("outbox_dropped_full"),
            "dropped_ttl": c("outbox_dropped_ttl"),
            "corrupt": c("outbox_corrupt"),
            "purged": c("outbox_purged"),
        },
        "stores": links.iter().map(|(p, l)| (p.clone(), json!({
            "online": l.online,
            "offline_since_ms": l.offline_since_ms,
            "offline_s_total": l.offline_ms_total as f64 / 1000.0,
            "last_error": l.last_error,
        }))).collect::<serde_json::Map<String, Value>>(),
        "delegation": {
            "ran_on": ran_on,
            "members": members(),
        },
    })
}

/// This process's resident memory (VmRSS), in bytes.
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self").unwrap_or(0)
}

/// A process's resident memory (VmRSS of `/proc/<pid>/status`), in bytes.
pub fn rss_bytes_of(pid: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// What the status publisher sends besides stats and events.
#[derive(Clone)]
pub struct Publishing {
    pub base: String,
    pub every: Duration,
    /// Home Assistant's discovery prefix; empty: no discovery.
    pub discovery_prefix: String,
    pub snapshots: bool,
}

/// The client, and how many retained documents were handed to it that its event loop has not
/// taken yet. The client's queue is shared with the ingest's acknowledgements: thousands of
/// cameras' discovery documents queued at once left no room for them, the ingest stalled behind
/// the documents and the event loop behind the ingest, each waiting on the other's timeout.
pub struct Outbound {
    pub client: AsyncClient,
    pub queued: Arc<AtomicUsize>,
}

/// Retained documents in the client's queue at most (of its 16,384 places).
const MAX_QUEUED: usize = 256;

impl Outbound {
    /// The event loop took a publish from the queue (any: a few are stats, not documents).
    pub fn taken(queued: &AtomicUsize) {
        let _ = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            Some(n.saturating_sub(1))
        });
    }
}

/// Publishes stats every `every`, each node event as it happens, and per camera its retained
/// state, snapshot and Home Assistant discovery, until `stop`. Retained documents are sent again
/// after each reconnect (a broker restarted without persistence has lost them).
pub async fn publish(
    rt: Arc<Runtime>,
    members: Members,
    out: Outbound,
    p: Publishing,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut events = rt.events.subscribe();
    let mut tick = tokio::time::interval(p.every);
    // Cameras announced on the current connection (and the state each was last sent with).
    let mut announced = Announced::default();
    let mut session = u64::MAX;
    // Notices a new connection within a second, to send the retained documents again.
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = crate::runtime::stopped(&mut stop) => return,
            _ = watch.tick() => {
                let now = CONNECTS.load(Ordering::Relaxed);
                if now != session && connected() {
                    session = now;
                    announced = Announced::default();
                    if !p.discovery_prefix.is_empty() {
                        for (topic, doc) in super::homeassistant::node_discovery(&p.discovery_prefix, &p.base, &rt.node) {
                            retained(&out, topic, doc.to_string()).await;
                        }
                    }
                    cameras(&rt, &out, &p, &mut announced, None).await;
                }
            }
            _ = tick.tick() => {
                let doc = {
                    let (rt, members) = (rt.clone(), members.clone());
                    tokio::task::spawn_blocking(move || crate::journal::boundary::blocking(|| stats(&rt, &members))).await
                };
                if let Ok(doc) = doc {
                    let _ = out.client.try_publish(format!("{}/stats", p.base), QoS::AtMostOnce, false, doc.to_string());
                }
                cameras(&rt, &out, &p, &mut announced, None).await;
            }
            ev = events.recv() => match ev {
                Ok(v) => {
                    // Events are best effort: a full queue drops one rather than stall the node.
                    let _ = out.client.try_publish(format!("{}/events", p.base), QoS::AtMostOnce, false, v.to_string());
                    let camera = v.get("camera").and_then(Value::as_str).map(str::to_string);
                    match (v.get("type").and_then(Value::as_str), camera) {
                        (Some("mask_result"), Some(c)) => cameras(&rt, &out, &p, &mut announced, Some(&c)).await,
                        (Some("snapshot"), Some(c)) if p.snapshots => snapshot(&rt, &out, &p.base, &c).await,
                        _ => {}
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(dropped = n, "mqtt: events dropped (publisher behind)");
                }
                Err(_) => return,
            },
        }
    }
}

/// Publishes the retained state of every camera (or of `only`), and the discovery documents of
/// those not announced on this connection yet (with their snapshot, if any).
async fn cameras(
    rt: &Arc<Runtime>,
    client: &Outbound,
    p: &Publishing,
    announced: &mut Announced,
    only: Option<&str>,
) {
    // Offline, nothing is queued: the client's queue would fill with states that are stale by
    // the time it reconnects, and everything is sent again on reconnecting anyway.
    if !connected() {
        return;
    }
    let Ok(Ok(list)) = rt.journal.call(|j| Ok(j.cameras())).await else {
        return;
    };
    for c in list.iter().filter(|c| only.is_none_or(|o| o == c.camera)) {
        if !announced.devices.contains(&c.camera) {
            let mut sent = true;
            if !p.discovery_prefix.is_empty() {
                let docs = super::homeassistant::camera_discovery(
                    &p.discovery_prefix,
                    &p.base,
                    &rt.node,
                    &c.camera,
                    (p.snapshots, rt.cfg.sees_vehicles(Some(&c.camera))),
                );
                for (topic, doc) in docs {
                    sent &= retained(client, topic, doc.to_string()).await;
                }
            }
            // Announced only once every document went: one that did not is sent again next round.
            if sent {
                announced.devices.insert(c.camera.clone());
            }
            if p.snapshots && c.snapshot_key.is_some() {
                snapshot(rt, client, &p.base, &c.camera).await;
            }
        }
        // Sent when it changed: thousands of cameras' unchanged states every tick would crowd
        // out the frames' acknowledgements on the same connection.
        let state = super::homeassistant::state(c).to_string();
        if announced.states.get(&c.camera) != Some(&state)
            && retained(
                client,
                super::homeassistant::state_topic(&p.base, &c.camera),
                state.clone(),
            )
            .await
        {
            announced.states.insert(c.camera.clone(), state);
        }
    }
}

/// The camera's latest anonymised frame, retained (a new subscriber sees it at once).
async fn snapshot(rt: &Runtime, client: &Outbound, base: &str, camera: &str) {
    if !connected() {
        return;
    }
    match tokio::fs::read(rt.data.snapshot(camera)).await {
        Ok(jpeg) => {
            retained(client, super::homeassistant::snapshot_topic(base, camera), jpeg).await;
        }
        Err(e) => tracing::debug!(camera, "mqtt: no snapshot to publish: {e}"),
    }
}

/// What this connection was sent: the cameras whose discovery documents all went, and the
/// last state sent of each (bounded by `ingest.max_cameras`).
#[derive(Default)]
struct Announced {
    devices: std::collections::HashSet<String>,
    states: std::collections::HashMap<String, String>,
}

/// Queues a retained document with back-pressure: it waits while the client's queue is full
/// (thousands of cameras' discovery documents at a reconnect), at most 10 s, and one that does
/// not go is logged, never dropped in silence. Whether it was queued.
async fn retained(out: &Outbound, topic: String, payload: impl Into<Vec<u8>>) -> bool {
    let sent = tokio::time::timeout(Duration::from_secs(10), async {
        while out.queued.load(Ordering::Relaxed) >= MAX_QUEUED {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        out.queued.fetch_add(1, Ordering::Relaxed);
        let r = out
            .client
            .publish(topic.clone(), QoS::AtLeastOnce, true, payload)
            .await;
        if r.is_err() {
            Outbound::taken(&out.queued);
        }
        r
    })
    .await;
    match sent {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(%topic, "mqtt: retained document not sent: {e}");
            false
        }
        Err(_) => {
            tracing::warn!(%topic, "mqtt: retained document not queued within 10 s (the broker is slow or gone); sent again later");
            false
        }
    }
}

/// Connections made to the broker since fogd started.
pub fn connects() -> u64 {
    CONNECTS.load(Ordering::Relaxed)
}

/// Is the MQTT connection up (for tests and benchmarks)?
pub fn connected() -> bool {
    CONNECTED.load(Ordering::Relaxed)
}
