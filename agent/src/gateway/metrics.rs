//! `/metrics` in the Prometheus text format (prometheus-client). Names follow Prometheus'
//! conventions as Frigate's exporter does (`<app>_<what>_<unit>`, `_total` for counters,
//! `_seconds` and `_bytes` units); counts of jobs by state are read from the journal at scrape
//! time, so they are right across restarts and processes.

use std::sync::Mutex;
use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceState {
    service: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    invocations: Family<ServiceState, Gauge>,
    queue_length: Family<ServiceLabel, Gauge>,
    free_bytes: Gauge,
    request_seconds: Family<PathLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("fogd");
        let invocations = Family::<ServiceState, Gauge>::default();
        r.register(
            "invocations",
            "Invocations in the journal, by service and state",
            invocations.clone(),
        );
        let queue_length = Family::<ServiceLabel, Gauge>::default();
        r.register(
            "queue_length",
            "Invocations waiting to run, by service",
            queue_length.clone(),
        );
        let free_bytes = Gauge::default();
        r.register(
            "data_dir_free_bytes",
            "Free space in the data folder",
            free_bytes.clone(),
        );
        let request_seconds = Family::<PathLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        r.register(
            "http_request_duration_seconds",
            "Time to answer /job and /run",
            request_seconds.clone(),
        );
        Metrics {
            registry: Mutex::new(r),
            invocations,
            queue_length,
            free_bytes,
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
}

pub async fn scrape(s: State) -> impl IntoResponse {
    let m = &s.metrics;
    if let Ok(counts) = s.rt.journal.counts() {
        for (service, state, n) in counts {
            m.invocations
                .get_or_create(&ServiceState {
                    service: service.clone(),
                    state: state.as_str().into(),
                })
                .set(n as i64);
            if state == crate::journal::State::Queued {
                m.queue_length
                    .get_or_create(&ServiceLabel { service })
                    .set(n as i64);
            }
        }
    }
    if let Some(free) = crate::runtime::free_bytes(&s.rt.cfg.data_dir) {
        m.free_bytes.set(free as i64);
    }
    let mut text = String::new();
    let registry = m.registry.lock().unwrap_or_else(|p| p.into_inner());
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
