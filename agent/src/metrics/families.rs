//! The families read at scrape time: from the journal, the links, the MQTT state and
//! `/proc/self`.

use super::{Inputs, Labels, Sampled};

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
pub(super) fn sample(inputs: &Inputs<'_>) -> Vec<Sampled> {
    use crate::journal::State;
    let j = inputs.journal;
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
        "fogd_privacy_audited_frames",
        "Anonymised frames searched again after redaction by the live check's second detector",
        true,
        one(c("privacy_audited_frames")),
    ));
    out.push(family(
        "fogd_privacy_faces_left",
        "Faces the live check still found in anonymised frames after redaction",
        true,
        one(c("privacy_faces_left")),
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
        "fogd_camera_plates",
        "Licence plates blurred in the camera's judged frames",
        true,
        per(&|c| Some(c.plates as f64)),
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
        inputs
            .links
            .iter()
            .map(|(p, l)| (vec![("provider", p.clone())], if l.online { 1.0 } else { 0.0 }))
            .collect(),
    ));
    if let Some((connected, connects)) = inputs.mqtt {
        out.push(family(
            "fogd_mqtt_connected",
            "Whether fogd is connected to its MQTT broker",
            false,
            one(if connected { 1.0 } else { 0.0 }),
        ));
        out.push(family(
            "fogd_mqtt_connects",
            "Connections made to the MQTT broker since fogd started",
            true,
            one(connects as f64),
        ));
    }
    if let Some((free, inodes)) = inputs.data.free_space() {
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
