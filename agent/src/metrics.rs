//! Metrics for Prometheus, served by the gateway at `/metrics`. Names follow Prometheus'
//! conventions (`fogd_<what>_<unit>`, counters end in `_total`, `_seconds` and `_bytes` units):
//! - counters are counts that only grow, across restarts and retention (the journal keeps them
//!   with triggers, `journal/cameras.rs`), so `rate()` and `increase()` work;
//! - gauges are what is true now (queues, outbox, stores up, MQTT connected, the latest verdict
//!   per camera), read from the journal at scrape time;
//! - `process_*` as every Prometheus client library exports them, and `fogd_build_info`.
//!
//! Served as OpenMetrics to a scraper that asks for it, otherwise as the Prometheus text format
//! 0.0.4 (what `promtool check metrics` and older scrapers read).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::runtime::Runtime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceState {
    service: String,
    state: String,
    /// `local`, or the member it was delegated to.
    ran_on: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

type Labels = Vec<(&'static str, String)>;

/// One metric family read at scrape time.
#[derive(Debug)]
struct Sampled {
    name: &'static str,
    help: &'static str,
    counter: bool,
    samples: Vec<(Labels, f64)>,
}

/// What the journal and the process said at the last scrape, encoded by the collector.
#[derive(Debug, Default)]
struct Scrape(Mutex<Vec<Sampled>>);

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for f in families.iter() {
            let kind = if f.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(f.name, f.help, None, kind)?;
            // One sample without labels: `name value`, not `name{} value`.
            if let [(labels, v)] = f.samples.as_slice() {
                if labels.is_empty() {
                    if f.counter {
                        ConstCounter::new(*v).encode(family)?;
                    } else {
                        ConstGauge::new(*v).encode(family)?;
                    }
                    continue;
                }
            }
            for (labels, v) in &f.samples {
                let m = family.encode_family(labels)?;
                if f.counter {
                    ConstCounter::new(*v).encode(m)?;
                } else {
                    ConstGauge::new(*v).encode(m)?;
                }
            }
        }
        Ok(())
    }
}

pub struct Metrics {
    registry: Registry,
    scrape: Arc<Scrape>,
    invocation_seconds: Family<ServiceState, Histogram>,
    request_seconds: Family<PathLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::default();
        let scrape = Arc::new(Scrape::default());
        r.register_collector(Box::new(scrape.clone()));
        let invocation_seconds = Family::<ServiceState, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        let request_seconds = Family::<PathLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let fogd = r.sub_registry_with_prefix("fogd");
        fogd.register(
            "invocation_duration_seconds",
            "Run time of invocations (script and outputs; delegated: sent to done), by service, final state and where they ran",
            invocation_seconds.clone(),
        );
        fogd.register(
            "http_request_duration_seconds",
            "Time to answer /job and /run",
            request_seconds.clone(),
        );
        Metrics {
            registry: r,
            scrape,
            invocation_seconds,
            request_seconds,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, path: &str, d: Duration) {
        self.request_seconds
            .get_or_create(&PathLabel {
                path: path.to_string(),
            })
            .observe(d.as_secs_f64());
    }

    pub fn observe_invocation(&self, service: &str, state: crate::journal::State, d: Duration) {
        self.observe_invocation_at(service, state, "local", d);
    }

    /// As `observe_invocation`, for a run on `ran_on` (a delegation member).
    pub fn observe_invocation_at(
        &self,
        service: &str,
        state: crate::journal::State,
        ran_on: &str,
        d: Duration,
    ) {
        self.invocation_seconds
            .get_or_create(&ServiceState {
                service: service.to_string(),
                state: state.as_str().into(),
                ran_on: ran_on.to_string(),
            })
            .observe(d.as_secs_f64());
    }

    /// Reads the journal, the stores' links and the process, then renders everything:
    /// OpenMetrics when `openmetrics`, else the Prometheus text format. Blocks (the journal).
    pub fn render(&self, rt: &Runtime, openmetrics: bool) -> String {
        let families = sample(rt);
        *self.scrape.0.lock().unwrap_or_else(|p| p.into_inner()) = families;
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        if openmetrics {
            text
        } else {
            to_prometheus_text(&text)
        }
    }
}

/// OpenMetrics to the Prometheus text format 0.0.4: a counter's HELP and TYPE name its samples'
/// `_total` name, and the `# EOF` and `# UNIT` lines go.
pub fn to_prometheus_text(open: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in open.lines() {
        if let Some(name) = l.strip_prefix("# TYPE ").and_then(|r| r.strip_suffix(" counter")) {
            counters.insert(name.to_string());
        }
    }
    let mut out = String::with_capacity(open.len());
    for l in open.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((tag, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str(&format!("{tag}{name}_total {tail}\n"));
                } else {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            None => {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn family(name: &'static str, help: &'static str, counter: bool, samples: Vec<(Labels, f64)>) -> Sampled {
    Sampled {
        name,
        help,
        counter,
        samples,
    }
}

fn one(v: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), v)]
}

/// Every family read at scrape time.
fn sample(rt: &Runtime) -> Vec<Sampled> {
    use crate::journal::State;
    let j = &rt.journal;
    let mut out = Vec::new();

    // Invocations: ended (a counter) and in flight (a gauge).
    let totals = j.invocation_totals().unwrap_or_default();
    let (created, ended): (Vec<_>, Vec<_>) = totals.into_iter().partition(|t| t.1 == "created");
    out.push(family(
        "fogd_invocations_created",
        "Invocations created (queued), by service",
        true,
        created
            .into_iter()
            .map(|(service, _, _, n)| (vec![("service", service)], n as f64))
            .collect(),
    ));
    out.push(family(
        "fogd_invocations",
        "Invocations ended, by service, final state (succeeded, failed, timed_out, cancelled) and where they ran",
        true,
        ended
            .into_iter()
            .map(|(service, state, ran_on, n)| {
                (vec![("service", service), ("state", state), ("ran_on", ran_on)], n as f64)
            })
            .collect(),
    ));
    let counts = j.counts_where().unwrap_or_default();
    let mut active = Vec::new();
    let mut queued: std::collections::BTreeMap<String, f64> = Default::default();
    for (service, state, ran_on, n) in counts {
        let in_flight = matches!(state, State::Queued | State::Running | State::Delegated);
        if state == State::Queued {
            *queued.entry(service.clone()).or_default() += n as f64;
        } else {
            queued.entry(service.clone()).or_default();
        }
        if in_flight {
            active.push((
                vec![
                    ("service", service),
                    ("state", state.as_str().to_string()),
                    ("ran_on", ran_on),
                ],
                n as f64,
            ));
        }
    }
    out.push(family(
        "fogd_invocations_active",
        "Invocations queued, running or delegated now, by service, state and where they run",
        false,
        active,
    ));
    out.push(family(
        "fogd_queue_length",
        "Invocations waiting to run, by service",
        false,
        queued
            .into_iter()
            .map(|(s, n)| (vec![("service", s)], n))
            .collect(),
    ));
    let now = crate::journal::now_ms();
    out.push(family(
        "fogd_queue_oldest_age_seconds",
        "Age of the oldest waiting invocation, by service",
        false,
        j.queue_ages()
            .unwrap_or_default()
            .into_iter()
            .map(|(s, oldest)| (vec![("service", s)], (now - oldest).max(0) as f64 / 1000.0))
            .collect(),
    ));

    // Counters kept in the journal: ingest refusals, duplicates, the outbox's fate.
    let counters: std::collections::BTreeMap<String, u64> =
        j.counters().unwrap_or_default().into_iter().collect();
    let c = |k: &str| counters.get(k).copied().unwrap_or(0) as f64;
    out.push(family(
        "fogd_ingest_rejected",
        "Camera items refused at ingest, by reason",
        true,
        counters
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("ingest_rejected_")
                    .map(|r| (vec![("reason", r.to_string())], *v as f64))
            })
            .collect(),
    ));
    out.push(family(
        "fogd_ingest_duplicates",
        "Camera items received again (same camera, same content) and not stored twice",
        true,
        one(c("ingest_duplicates")),
    ));
    out.push(family(
        "fogd_outbox_uploaded",
        "Objects uploaded to the next tier",
        true,
        one(c("outbox_uploaded")),
    ));
    out.push(family(
        "fogd_outbox_uploaded_bytes",
        "Bytes uploaded to the next tier",
        true,
        one(c("outbox_uploaded_bytes")),
    ));
    out.push(family(
        "fogd_outbox_dropped",
        "Objects dropped from the outbox, by reason (full: quota, ttl: too old, corrupt, purged)",
        true,
        ["full", "ttl", "corrupt", "purged"]
            .iter()
            .map(|r| {
                let key = match *r {
                    "full" => "outbox_dropped_full",
                    "ttl" => "outbox_dropped_ttl",
                    "corrupt" => "outbox_corrupt",
                    _ => "outbox_purged",
                };
                (vec![("reason", r.to_string())], c(key))
            })
            .collect(),
    ));
    let (backlog, bytes) = j.outbox_totals().unwrap_or_default();
    out.push(family(
        "fogd_outbox_objects",
        "Objects waiting in the outbox for the next tier",
        false,
        one(backlog as f64),
    ));
    out.push(family(
        "fogd_outbox_bytes",
        "Bytes waiting in the outbox for the next tier",
        false,
        one(bytes as f64),
    ));
    out.push(family(
        "fogd_ingest_raw_items",
        "Raw camera items in the journal now, by state (spooled: waiting; processed; deleted)",
        false,
        j.ingest_counts()
            .unwrap_or_default()
            .into_iter()
            .map(|(state, n)| (vec![("state", state)], n as f64))
            .collect(),
    ));

    // Per camera.
    let cameras = j.cameras().unwrap_or_default();
    let per = |f: &dyn Fn(&crate::journal::Camera) -> Option<f64>| -> Vec<(Labels, f64)> {
        cameras
            .iter()
            .filter_map(|cam| f(cam).map(|v| (vec![("camera", cam.camera.clone())], v)))
            .collect()
    };
    out.push(family(
        "fogd_camera_frames",
        "Items ingested from the camera",
        true,
        per(&|c| Some(c.frames as f64)),
    ));
    out.push(family(
        "fogd_camera_judged_frames",
        "Frames of the camera given a mask verdict",
        true,
        per(&|c| Some(c.judged as f64)),
    ));
    out.push(family(
        "fogd_camera_faces",
        "Faces counted in the camera's judged frames",
        true,
        per(&|c| Some(c.faces as f64)),
    ));
    out.push(family(
        "fogd_camera_unmasked_faces",
        "Faces without a mask in the camera's judged frames",
        true,
        per(&|c| Some(c.unmasked as f64)),
    ));
    out.push(family(
        "fogd_camera_last_seen_timestamp_seconds",
        "When the camera's latest item arrived (Unix time)",
        false,
        per(&|c| c.last_seen_ms.map(|ms| ms as f64 / 1000.0)),
    ));
    out.push(family(
        "fogd_camera_latest_faces",
        "Faces in the camera's latest judged frame",
        false,
        per(&|c| c.last.as_ref().map(|l| l.faces as f64)),
    ));
    out.push(family(
        "fogd_camera_latest_no_mask_ratio",
        "Share of faces without a mask in the camera's latest judged frame (0 to 1)",
        false,
        per(&|c| c.last.as_ref().map(|l| l.no_mask_share)),
    ));
    out.push(family(
        "fogd_camera_latest_verdict",
        "The camera's latest verdict: 1 for the verdict it is, 0 for the others",
        false,
        cameras
            .iter()
            .filter_map(|cam| cam.last.as_ref().map(|l| (cam, l)))
            .flat_map(|(cam, l)| {
                ["safe", "warning", "danger", "not_judged"]
                    .into_iter()
                    .map(move |v| {
                        (
                            vec![("camera", cam.camera.clone()), ("verdict", v.to_string())],
                            if l.verdict == v { 1.0 } else { 0.0 },
                        )
                    })
            })
            .collect(),
    ));

    // Links and disk.
    out.push(family(
        "fogd_store_up",
        "Whether the remote store answered its latest probe (1) or not (0), by provider",
        false,
        rt.links
            .snapshot()
            .into_iter()
            .map(|(p, l)| (vec![("provider", p)], if l.online { 1.0 } else { 0.0 }))
            .collect(),
    ));
    if rt.cfg.mqtt.is_some() {
        out.push(family(
            "fogd_mqtt_connected",
            "Whether fogd is connected to its MQTT broker",
            false,
            one(if crate::ingest::status::connected() {
                1.0
            } else {
                0.0
            }),
        ));
        out.push(family(
            "fogd_mqtt_connects",
            "Connections made to the MQTT broker since fogd started",
            true,
            one(crate::ingest::status::connects() as f64),
        ));
    }
    if let Some((free, inodes)) = rt.data.free_space() {
        out.push(family(
            "fogd_data_dir_free_bytes",
            "Free space in the data folder",
            false,
            one(free as f64),
        ));
        if let Some(i) = inodes {
            out.push(family(
                "fogd_data_dir_free_inodes",
                "Free inodes in the data folder",
                false,
                one(i as f64),
            ));
        }
    }
    out.push(family(
        "fogd_build_info",
        "fogd's version (the value is always 1)",
        false,
        vec![(
            vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                (
                    "target",
                    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
                ),
            ],
            1.0,
        )],
    ));
    out.extend(process());
    out
}

/// `process_*` as Prometheus' client libraries export them, from `/proc/self`.
fn process() -> Vec<Sampled> {
    let mut out = Vec::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // The command name (field 2) may hold spaces: fields are counted after its `)`.
    let Some(after) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return out;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): field N is f[N - 3].
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf only reads a system constant.
    let (tick, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (tick, page) = (tick.max(1) as f64, page.max(1) as f64);
    out.push(family(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds",
        true,
        one((field(14) + field(15)) / tick),
    ));
    out.push(family(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        false,
        one(field(24) * page),
    ));
    out.push(family(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes",
        false,
        one(field(23)),
    ));
    out.push(family(
        "process_threads",
        "Number of OS threads in the process",
        false,
        one(field(20)),
    ));
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    if let Some(boot) = boot {
        out.push(family(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            false,
            one(boot + field(22) / tick),
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(family(
            "process_open_fds",
            "Number of open file descriptors",
            false,
            one(dir.count() as f64),
        ));
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        out.push(family(
            "process_max_fds",
            "Maximum number of open file descriptors",
            false,
            one(lim.rlim_cur as f64),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_counters_become_prometheus_text_counters() {
        let open = "# HELP fogd_x Things.\n# TYPE fogd_x counter\nfogd_x_total{a=\"b\"} 3\n# HELP g G.\n# TYPE g gauge\n# UNIT g seconds\ng 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(open),
            "# HELP fogd_x_total Things.\n# TYPE fogd_x_total counter\nfogd_x_total{a=\"b\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
