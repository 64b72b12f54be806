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

mod families;

/// What a scrape reads besides the journal, given by the caller (the gateway): `metrics` then
/// depends on no part of the node that holds it.
pub struct Inputs<'a> {
    pub journal: &'a crate::journal::Journal,
    pub data: &'a crate::paths::DataDir,
    /// Each remote store's link, by provider.
    pub links: std::collections::BTreeMap<String, crate::store::Link>,
    /// (connected, connections made) when MQTT is configured.
    pub mqtt: Option<(bool, u64)>,
}

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

pub(super) type Labels = Vec<(&'static str, String)>;

/// One metric family read at scrape time.
#[derive(Debug)]
pub(super) struct Sampled {
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
    pub fn render(&self, inputs: &Inputs<'_>, openmetrics: bool) -> String {
        let families = families::sample(inputs);
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
