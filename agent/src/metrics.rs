//! Metrics in the Prometheus text format (prometheus-client), served by the gateway at
//! `/metrics`. Names follow Prometheus' conventions, as Frigate's exporter does
//! (`fogd_<what>_<unit>`, `_total` for counters, `_seconds` and `_bytes` units). Counts kept in
//! the journal (jobs by state, queues, outbox) are read from it at scrape time, so they are right
//! across restarts and processes; times are observed in-process.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceState {
    service: String,
    state: String,
    /// `local`, or the member it was delegated to.
    ran_on: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    invocations: Family<ServiceState, Gauge>,
    queue_length: Family<ServiceLabel, Gauge>,
    queue_age: Family<ServiceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    invocation_seconds: Family<ServiceState, Histogram>,
    outbox_objects: Gauge,
    outbox_bytes: Gauge,
    free_bytes: Gauge,
    request_seconds: Family<PathLabel, Histogram>,
    counters: Family<NameLabel, Gauge>,
    ingest_items: Family<StateLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("fogd");
        let invocations = Family::<ServiceState, Gauge>::default();
        r.register(
            "invocations",
            "Invocations in the journal, by service, state and where they ran (local or the member)",
            invocations.clone(),
        );
        let queue_length = Family::<ServiceLabel, Gauge>::default();
        r.register(
            "queue_length",
            "Invocations waiting to run, by service",
            queue_length.clone(),
        );
        let queue_age = Family::<ServiceLabel, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest waiting invocation, by service",
            queue_age.clone(),
        );
        let invocation_seconds = Family::<ServiceState, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 16))
        });
        r.register(
            "invocation_duration_seconds",
            "Run time of invocations (script and outputs; delegated: sent to done), by service, final state and where they ran",
            invocation_seconds.clone(),
        );
        let outbox_objects = Gauge::default();
        r.register(
            "outbox_objects",
            "Objects waiting in the outbox for the next tier",
            outbox_objects.clone(),
        );
        let outbox_bytes = Gauge::default();
        r.register(
            "outbox_bytes",
            "Bytes waiting in the outbox for the next tier",
            outbox_bytes.clone(),
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
        let counters = Family::<NameLabel, Gauge>::default();
        r.register(
            "events",
            "Counted events that outlive restarts: ingest rejects by reason, duplicates, outbox drops",
            counters.clone(),
        );
        let ingest_items = Family::<StateLabel, Gauge>::default();
        r.register(
            "ingest_items",
            "Camera items ingested, by state (spooled: raw, waiting; processed; deleted)",
            ingest_items.clone(),
        );
        Metrics {
            counters,
            ingest_items,
            registry: Mutex::new(r),
            invocations,
            queue_length,
            queue_age,
            invocation_seconds,
            outbox_objects,
            outbox_bytes,
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

    /// Reads the journal's counts and the data folder's free space, then renders everything.
    pub fn render(&self, journal: &crate::journal::Journal, data_dir: &std::path::Path) -> String {
        // Rebuilt from the journal on each scrape: a service whose queue emptied reads 0 (and has
        // no oldest age), not the last value it had.
        self.invocations.clear();
        self.queue_length.clear();
        self.queue_age.clear();
        if let Ok(counts) = journal.counts_where() {
            for (service, state, ran_on, n) in counts {
                self.invocations
                    .get_or_create(&ServiceState {
                        service: service.clone(),
                        state: state.as_str().into(),
                        ran_on,
                    })
                    .set(n as i64);
                let queued = if state == crate::journal::State::Queued {
                    n as i64
                } else {
                    0
                };
                self.queue_length
                    .get_or_create(&ServiceLabel { service })
                    .inc_by(queued);
            }
        }
        if let Ok(ages) = journal.queue_ages() {
            let now = crate::journal::now_ms();
            for (service, oldest) in ages {
                let age = (now - oldest).max(0) as f64 / 1000.0;
                self.queue_age.get_or_create(&ServiceLabel { service }).set(age);
            }
        }
        if let Ok((n, bytes)) = journal.outbox_totals() {
            self.outbox_objects.set(n as i64);
            self.outbox_bytes.set(bytes as i64);
        }
        for (name, v) in journal.counters().unwrap_or_default() {
            self.counters.get_or_create(&NameLabel { name }).set(v as i64);
        }
        for (state, v) in journal.ingest_counts().unwrap_or_default() {
            self.ingest_items
                .get_or_create(&StateLabel { state })
                .set(v as i64);
        }
        if let Some(free) = crate::paths::free_bytes(data_dir) {
            self.free_bytes.set(free as i64);
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}
