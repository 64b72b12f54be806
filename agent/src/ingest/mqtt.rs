//! The MQTT connection (rumqttc): camera topics in (QoS 1, a persistent session, manual
//! acknowledgements sent only once an item is spooled and journalled), node status out
//! (`<prefix>/<node>/available` with a last will, `stats`, `events`). Reconnects with backoff; the
//! broker keeps what arrives meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{mpsc, watch};

use super::{check_camera, check_payload, refuse, spool_batch, Item, Kind, Reject, TopicPattern};
use crate::config::MqttConfig;
use crate::runtime::Runtime;

/// Largest batch spooled at once.
const BATCH_ITEMS: usize = 512;
const BATCH_BYTES: usize = 64 << 20;
/// MQTT's largest packet: the client reads any message the broker sends, so that one over
/// `max_clip_bytes` is refused and acknowledged instead of failing the connection (and coming
/// back at every reconnect). The broker's `message_size_limit` bounds it lower.
const MQTT_MAX_PACKET: usize = 268_435_455;

/// Payload bytes received and not yet acknowledged, against `max_buffer_bytes`.
struct Budget {
    held: AtomicUsize,
    max: usize,
    drained: tokio::sync::Notify,
}

impl Budget {
    /// Takes `n` bytes when they fit (or when nothing is held: one message always passes).
    fn take(&self, n: usize) -> bool {
        let mut cur = self.held.load(Ordering::Acquire);
        loop {
            if cur != 0 && cur + n > self.max {
                return false;
            }
            match self
                .held
                .compare_exchange(cur, cur + n, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Waits until `n` bytes fit.
    async fn take_when_room(&self, n: usize) {
        loop {
            let room = self.drained.notified();
            if self.take(n) {
                return;
            }
            room.await;
        }
    }

    fn is_empty(&self) -> bool {
        self.held.load(Ordering::Acquire) == 0
    }
}

pub struct Topics {
    pub patterns: Vec<(TopicPattern, Kind)>,
}

impl Topics {
    pub fn new(m: &MqttConfig) -> std::result::Result<Topics, String> {
        let mut patterns = Vec::new();
        for t in &m.frame_topics {
            patterns.push((TopicPattern::parse(t)?, Kind::Frame));
        }
        for t in &m.clip_topics {
            patterns.push((TopicPattern::parse(t)?, Kind::Clip));
        }
        Ok(Topics { patterns })
    }

    /// (camera, kind) of a topic, or why it is refused.
    pub fn classify<'t>(&self, topic: &'t str) -> std::result::Result<(&'t str, Kind), Reject> {
        for (p, kind) in &self.patterns {
            if let Some(cam) = p.camera(topic) {
                check_camera(cam)?;
                return Ok((cam, *kind));
            }
        }
        Err(Reject::UnknownTopic)
    }

    fn filters(&self) -> Vec<String> {
        let mut f: Vec<String> = self.patterns.iter().map(|(p, _)| p.filter()).collect();
        f.sort();
        f.dedup();
        f
    }
}

/// The status topics' prefix for this node: `<prefix>/<node>`.
pub fn status_base(m: &MqttConfig, node: &str) -> String {
    format!("{}/{node}", m.status_prefix.trim_end_matches('/'))
}

/// Connects and runs until `stop`: ingest, acknowledgements, status. Returns when stopped.
pub async fn run(
    rt: Arc<Runtime>,
    members: super::status::Members,
    stop: watch::Receiver<bool>,
) -> Result<(), MqttError> {
    let Some(m) = rt.cfg.mqtt.clone() else {
        return Ok(());
    };
    let topics = Arc::new(Topics::new(&m).map_err(MqttError)?);
    let (host, port, tls) = m.host_port().map_err(MqttError)?;
    let client_id = m.client_id.clone().unwrap_or_else(|| format!("fogd-{}", rt.node));
    let base = status_base(&m, &rt.node);
    // A broker URL may carry a user and password: never in a log line.
    let shown = crate::config::redact_credentials(&m.broker);
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(m.keep_alive)
        .set_max_packet_size(MQTT_MAX_PACKET, 1 << 20)
        .set_inflight(100)
        .set_request_channel_capacity(16_384)
        .set_last_will(LastWill::new(
            format!("{base}/available"),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    if tls {
        opts.set_transport(rumqttc::Transport::Tls(tls_config(&m)?));
    }
    if let (Some(u), Some(p)) = (&m.username, &m.password) {
        opts.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 16_384);
    let (tx, rx) = mpsc::channel::<Publish>(16_384);
    let budget = Arc::new(Budget {
        held: AtomicUsize::new(0),
        max: m.max_buffer_bytes.max(1),
        drained: tokio::sync::Notify::new(),
    });
    let worker = tokio::spawn(process(
        rt.clone(),
        topics.clone(),
        client.clone(),
        rx,
        budget.clone(),
        m.clone(),
        stop.clone(),
    ));
    let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let status = tokio::spawn(super::status::publish(
        rt.clone(),
        members,
        super::status::Outbound {
            client: client.clone(),
            queued: queued.clone(),
        },
        super::status::Publishing {
            base: base.clone(),
            every: m.stats_interval,
            discovery_prefix: m.discovery_prefix.trim_end_matches('/').to_string(),
            snapshots: m.snapshots,
        },
        stop.clone(),
    ));
    let mut stop2 = stop.clone();
    let mut backoff =
        crate::backoff::Policy::new(Duration::from_millis(500), Duration::from_secs(30)).start();
    let mut connected = false;
    let mut warned = false;
    // Messages left unacknowledged at the broker because the budget stayed full; once the
    // spool has caught up, a reconnect makes the broker send them again (MQTT 3.1.1 redelivers
    // unacknowledged messages on a resumed session, not before).
    let mut deferred = 0u64;
    let mut cycling = false;
    loop {
        // The spool may have emptied while the loop was not waiting on `drained` (a
        // notification with no waiter is lost): checked at every turn, not only when woken.
        if deferred > 0 && !cycling && budget.is_empty() {
            tracing::debug!(
                deferred,
                "mqtt: spool caught up; reconnecting for the messages left at the broker"
            );
            cycling = true;
            let _ = client.try_disconnect();
        }
        let ev = tokio::select! {
            _ = crate::runtime::stopped(&mut stop2) => break,
            _ = budget.drained.notified(), if deferred > 0 && !cycling => {
                if budget.is_empty() {
                    tracing::debug!(deferred, "mqtt: spool caught up; reconnecting for the messages left at the broker");
                    cycling = true;
                    let _ = client.try_disconnect();
                }
                continue;
            }
            ev = eventloop.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let n = p.payload.len();
                // Not reading meanwhile leaves the messages in the broker's queue (TCP pushes
                // back). Half the keep-alive at most: the broker drops a client silent for 1.5x.
                let room = !cycling
                    && tokio::select! {
                        _ = crate::runtime::stopped(&mut stop2) => break,
                        r = tokio::time::timeout(m.keep_alive / 2, budget.take_when_room(n)) => r.is_ok(),
                    };
                if !room {
                    // The spool is stuck (a full disk): the message stays with the broker.
                    deferred += 1;
                    if !cycling && budget.is_empty() {
                        cycling = true;
                        let _ = client.try_disconnect();
                    }
                    continue;
                }
                if tx.send(p).await.is_err() {
                    break;
                }
            }
            Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => super::status::Outbound::taken(&queued),
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                // What a lost connection left counted is forgotten (a count too low only lets
                // more documents queue; too high would hold them for good).
                queued.store(0, std::sync::atomic::Ordering::Relaxed);
                backoff.reset();
                connected = true;
                warned = false;
                super::status::set_connected(true);
                tracing::info!(broker = %shown, session_present = ack.session_present, "mqtt: connected");
                for f in topics.filters() {
                    if let Err(e) = client.try_subscribe(f.clone(), QoS::AtLeastOnce) {
                        tracing::error!(filter = %f, "mqtt: subscribe: {e}");
                    }
                }
                let _ = client.try_publish(format!("{base}/available"), QoS::AtLeastOnce, true, "online");
            }
            Ok(_) => {}
            Err(_) if cycling => {
                // The broker closed the session we left on purpose: polling again resumes it
                // at once, and it sends the deferred messages again.
                deferred = 0;
                cycling = false;
                connected = false;
                super::status::set_connected(false);
            }
            Err(e) => {
                let wait = backoff.next_wait();
                let refused = matches!(e, rumqttc::ConnectionError::ConnectionRefused(_));
                if connected {
                    tracing::warn!(broker = %shown, "mqtt: connection lost: {e}; reconnecting");
                    connected = false;
                    super::status::set_connected(false);
                } else if refused {
                    // Not a network hiccup: say so every time, with what to check.
                    tracing::error!(broker = %shown, "mqtt: the broker refused the connection ({e}): check mqtt.username and mqtt.password, and the broker's ACL; retrying in {wait:?}");
                } else if !warned {
                    tracing::warn!(broker = %shown, "mqtt: cannot connect: {e}; retrying with backoff (items wait at the broker or the cameras)");
                } else {
                    tracing::debug!(broker = %shown, "mqtt: {e}; retrying in {wait:?}");
                }
                warned = true;
                tokio::select! {
                    _ = crate::runtime::stopped(&mut stop2) => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    // A clean goodbye: say offline (the last will is for unclean ends), then disconnect.
    let _ = client.try_publish(format!("{base}/available"), QoS::AtLeastOnce, true, "offline");
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
    drop(tx);
    let _ = worker.await;
    status.abort();
    Ok(())
}

/// The TLS settings: the CA (default: the system's bundle), and the client's certificate.
fn tls_config(m: &MqttConfig) -> Result<rumqttc::TlsConfiguration, MqttError> {
    // The daemon installs it at start; in-process users (tests, benches) may not have.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| MqttError(format!("mqtt.tls.{what} {}: {e}", p.display())))
    };
    let t = m.tls.clone().unwrap_or(crate::config::MqttTls {
        ca: None,
        cert: None,
        key: None,
    });
    let ca_path =
        t.ca.clone()
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let ca = read(&ca_path, "ca")?;
    let client_auth = match (&t.cert, &t.key) {
        (Some(c), Some(k)) => Some((read(c, "cert")?, read(k, "key")?)),
        _ => None,
    };
    Ok(rumqttc::TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}

/// Takes publishes in batches: check, spool, journal, then acknowledge each.
async fn process(
    rt: Arc<Runtime>,
    topics: Arc<Topics>,
    client: AsyncClient,
    mut rx: mpsc::Receiver<Publish>,
    budget: Arc<Budget>,
    m: MqttConfig,
    mut stop: watch::Receiver<bool>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut bytes = batch[0].payload.len();
        while batch.len() < BATCH_ITEMS && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += p.payload.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(batch.len());
        let mut refused = Vec::new();
        for p in &batch {
            let checked = topics.classify(&p.topic).and_then(|(camera, kind)| {
                let max = match kind {
                    Kind::Frame => m.max_frame_bytes,
                    Kind::Clip => m.max_clip_bytes,
                };
                check_payload(kind, &p.payload, max).map(|ext| (camera.to_string(), ext))
            });
            match checked {
                Ok((camera, ext)) => items.push(Item {
                    source: "mqtt",
                    camera,
                    topic: p.topic.clone(),
                    ext,
                    payload: p.payload.clone(),
                }),
                Err(why) => refused.push((p.topic.clone(), why)),
            }
        }
        if !refused.is_empty() {
            // Counted in the journal: off the async workers.
            let rt2 = rt.clone();
            crate::journal::boundary::offload(move || {
                for (topic, why) in &refused {
                    refuse(&rt2, "mqtt", topic, why);
                }
            })
            .await;
        }
        // Until this succeeds nothing is acknowledged: the broker keeps (and redelivers) it.
        loop {
            let rt2 = rt.clone();
            let r = tokio::task::spawn_blocking(move || {
                crate::journal::boundary::blocking(|| {
                    let r = spool_batch(&rt2, &items);
                    (r, items)
                })
            })
            .await;
            let Ok((r, back)) = r else { return };
            items = back;
            match r {
                Ok(rep) => {
                    tracing::debug!(
                        spooled = rep.spooled,
                        duplicates = rep.duplicates,
                        "mqtt: batch spooled"
                    );
                    break;
                }
                Err(e) => {
                    tracing::error!(
                        "ingest: cannot spool {} items (not acknowledged; retrying): {e}",
                        items.len()
                    );
                    tokio::select! {
                        // Stopping: the broker keeps them and delivers them at the next start.
                        _ = crate::runtime::stopped(&mut stop) => return,
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
            }
        }
        for p in &batch {
            if let Err(e) = client.ack(p).await {
                tracing::warn!("mqtt: ack: {e}");
            }
        }
        budget.give_back(batch.iter().map(|p| p.payload.len()).sum());
    }
}

/// A config the connection cannot start with.
#[derive(Debug, thiserror::Error)]
#[error("mqtt: {0}")]
pub struct MqttError(pub String);
