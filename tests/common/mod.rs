//! Helpers shared by the integration tests: a real SeaweedFS server on free loopback ports, and
//! waiting for the runtime.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fogd::config::Config;
use fogd::journal::{Invocation, State};
use fogd::runtime::Runtime;

#[allow(unused_imports)]
pub use fogd_testkit::*;

/// A node on `fdl` with its data under `dir`, started through the library's `Daemon` (the same
/// wiring as `fogd run`: scheduler, outbox loop, and the sources and gateway its config names).
pub struct Daemon {
    pub rt: Arc<Runtime>,
    inner: fogd::daemon::Daemon,
}

impl Daemon {
    pub async fn start(cfg: Config, fdl: &[PathBuf]) -> Daemon {
        let inner = fogd::daemon::Daemon::start(cfg, fdl).await.expect("daemon");
        Daemon {
            rt: inner.runtime().clone(),
            inner,
        }
    }

    /// Where its gateway listens (when the config enables it).
    pub fn gateway_url(&self) -> Option<String> {
        self.inner.gateway_addr().map(|a| format!("http://{a}"))
    }

    pub async fn stop(self) {
        let drained = self
            .inner
            .shutdown(Duration::from_secs(60))
            .await
            .expect("scheduler");
        assert_eq!(drained, fogd::daemon::Drained::Clean);
    }

    /// Is the outbox drained (or is every object left in it failing, with its error)?
    fn outbox_settled(&self) -> bool {
        let pending = self
            .rt
            .journal
            .outbox_list(Some("pending"), 100_000)
            .expect("outbox");
        pending.iter().all(|r| r.error.is_some())
    }

    /// Waits until no invocation is queued or running (or panics after `secs`).
    pub async fn settle(&self, secs: u64) -> Vec<Invocation> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let all = self.rt.journal.invocations(None, 100_000).expect("list");
            if !all.is_empty() && all.iter().all(|i| i.state.is_final()) && self.outbox_settled() {
                // Outputs of the last ones may still be chaining: look twice.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let again = self.rt.journal.invocations(None, 100_000).expect("list");
                if again.len() == all.len()
                    && again.iter().all(|i| i.state.is_final())
                    && self.outbox_settled()
                {
                    return again;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "not settled in {secs} s: {:#?}",
                summary(&all)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn summary(all: &[Invocation]) -> Vec<String> {
    all.iter()
        .filter(|i| i.state != State::Succeeded)
        .map(|i| format!("{} {} {} {:?}", i.service, i.key, i.state.as_str(), i.error))
        .take(20)
        .collect()
}

pub fn cfg(dir: &Path) -> Config {
    let mut c = Config {
        data_dir: dir.join("data"),
        node_name: Some("test-node".into()),
        s3_poll_interval: Duration::from_millis(200),
        ..Config::default()
    };
    // The daemon starts the gateway too: on a port of its own, as tests run side by side.
    c.gateway.listen = "127.0.0.1:0".into();
    c
}

/// Writes an FDL file and its scripts into `dir`; returns the FDL's path.
pub fn workflow(dir: &Path, fdl: &str, scripts: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    for (name, body) in scripts {
        std::fs::write(dir.join(name), body).expect("script");
    }
    let p = dir.join("workflow.yaml");
    std::fs::write(&p, fdl).expect("fdl");
    p
}

/// Every file under `root`, as `/`-separated paths relative to it, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            // A link (a hostile script plants them) is listed, never followed.
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if let Ok(r) = p.strip_prefix(root) {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// An MQTT client for the tests: publishes one message at a time and waits for the broker's
/// PUBACK (so the test knows exactly which messages the broker took), and keeps what arrives on
/// its subscriptions.
pub struct Mqtt {
    pub client: rumqttc::AsyncClient,
    el: rumqttc::EventLoop,
    pub received: Vec<(String, Vec<u8>)>,
    /// Subscribed to: asked again after a reconnection (a clean session forgets them; a test
    /// that waits long without pumping misses its keepalive and is dropped by the broker).
    filters: Vec<String>,
}

impl Mqtt {
    pub async fn connect(port: u16, id: &str) -> Mqtt {
        let mut o = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        o.set_max_packet_size(1 << 26, 1 << 26)
            .set_keep_alive(Duration::from_secs(5));
        let (client, el) = rumqttc::AsyncClient::new(o, 100);
        let mut m = Mqtt {
            client,
            el,
            received: Vec::new(),
            filters: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match m.el.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot connect to the broker: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        m
    }

    /// Publishes with QoS 1; true once the broker acknowledged it, false when the connection
    /// failed first (the message may or may not have been taken).
    pub async fn send(&mut self, topic: &str, payload: Vec<u8>) -> bool {
        if self
            .client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .is_err()
        {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), self.el.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => return true,
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                    self.received.push((p.topic.clone(), p.payload.to_vec()))
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return false,
            }
        }
        false
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtMostOnce)
            .await
            .expect("subscribe");
        self.filters.push(filter.to_string());
        self.pump(Duration::from_millis(200)).await;
    }

    /// Processes the connection for `d`, keeping what arrives.
    pub async fn pump(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, self.el.poll()).await {
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                    self.received.push((p.topic.clone(), p.payload.to_vec()))
                }
                Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))) => {
                    for f in &self.filters {
                        let _ = self.client.try_subscribe(f, rumqttc::QoS::AtMostOnce);
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => break,
            }
        }
    }

    /// The last message received on `topic`, as JSON.
    pub fn last_json(&self, topic: &str) -> Option<serde_json::Value> {
        self.received
            .iter()
            .rev()
            .find(|(t, _)| t == topic)
            .and_then(|(_, p)| serde_json::from_slice(p).ok())
    }
}

/// Waits until the node's `available` topic says online (it subscribed by then).
pub async fn wait_online(m: &mut Mqtt, node: &str) {
    m.subscribe(&format!("fogd/{node}/#")).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if m.received
            .iter()
            .any(|(t, p)| t == &format!("fogd/{node}/available") && p == b"online")
        {
            return;
        }
        assert!(Instant::now() < deadline, "fogd never said online");
        m.pump(Duration::from_millis(100)).await;
    }
}

/// A JPEG made unique by a comment segment (COM) carrying `tag`, right after the SOI marker:
/// still a valid JPEG, decoded the same.
pub fn tagged_jpeg(jpeg: &[u8], tag: &str) -> Vec<u8> {
    let body = tag.as_bytes();
    let len = (body.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + body.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// The shared test photo with a face.
pub fn face_jpeg() -> Vec<u8> {
    let p = repo().join("examples/camera-ingest/media/grace_hopper.jpg");
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Waits (up to 60 s) until the `fogd run` just spawned on `data` has registered its workflow:
/// its journal appears before that, and a `fogd put` in between would trigger nothing.
pub fn wait_registered(data: &Path) {
    let t0 = Instant::now();
    let journal = data.join("journal.sqlite");
    loop {
        let registered = journal.exists()
            && fogd::journal::Journal::open(&journal, fogd::config::JournalSync::Normal)
                .and_then(|j| j.workflows())
                .is_ok_and(|w| !w.is_empty());
        if registered {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{}: no workflow registered after 60 s",
            journal.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a child printed: stdout, then stderr.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a Python script of the tests with the venv's interpreter (the real clients from PyPI):
/// whether it exited 0, and what it printed (stdout then stderr), which is also echoed.
pub fn run_python(script: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let venv = repo().join(".venv/bin/python");
    assert!(venv.exists(), "{} missing: run scripts/setup", venv.display());
    let out = std::process::Command::new(venv)
        .arg(script)
        .args(args)
        .output()
        .expect("python");
    let text = text(&out);
    println!("{text}");
    (out.status.success(), text)
}
