//! `fogd bench runtime`: the latency from an object landing to its script starting, and the
//! throughput of trivial invocations through the journal, on this machine.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fogd::config::Config;
use fogd::fdl::{ProviderKind, ProviderRef};
use fogd::journal::{InvocationId, State};
use fogd::runtime::{Result, Runtime, RuntimeError};
use fogd::store::ObjectMeta;

#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeBench {
    pub latency_samples: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub throughput_invocations: usize,
    pub throughput_per_s: f64,
    pub concurrency: usize,
}

const WORKFLOW: &str = "functions:
  oscar:
  - bench:
      name: noop
      image: none
      script: noop.sh
      input: [{storage_provider: minio, path: bench/in}]
";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs both measurements in a scratch folder under `dir` (removed afterwards).
pub async fn runtime(
    dir: &Path,
    latency_n: usize,
    throughput_n: usize,
    isolation: fogd::config::Isolation,
) -> anyhow::Result<RuntimeBench> {
    let root = dir.join(format!("fogd-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let result = run_in(&root, latency_n, throughput_n, isolation).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(
    root: &Path,
    latency_n: usize,
    throughput_n: usize,
    isolation: fogd::config::Isolation,
) -> anyhow::Result<RuntimeBench> {
    let wf = root.join("wf.yaml");
    std::fs::write(&wf, WORKFLOW).map_err(io(&wf))?;
    let script = root.join("noop.sh");
    std::fs::write(&script, ":\n").map_err(io(&script))?;
    let input = root.join("frame.jpg");
    std::fs::write(&input, vec![0u8; 1024]).map_err(io(&input))?;
    let mut cfg = Config {
        data_dir: root.join("data"),
        ..Config::default()
    };
    cfg.gateway.enabled = false;
    cfg.isolation = isolation;
    let concurrency = cfg.concurrency();
    // The node as `fogd run` starts it (scheduler, outbox loop), on the embedded default.
    let daemon = fogd::daemon::Daemon::start(cfg, &[wf]).await?;
    let rt = daemon.runtime().clone();
    let minio = ProviderRef::new(ProviderKind::Minio, "default");

    // Latency: one object at a time, from the event's record (the object has landed) to the
    // script's process starting.
    let mut lat = Vec::with_capacity(latency_n);
    eprintln!("bench runtime: latency, {latency_n} objects one at a time ...");
    for i in 0..latency_n {
        let (_, ids) = rt.put(&minio, &format!("bench/in/lat/{i}.jpg"), &input).await?;
        let id = ids.first().copied().unwrap_or_default();
        let inv = wait_final(&rt, id).await?;
        let ev = rt.journal.event(inv.event_id)?;
        if let Some(sp) = inv.spawned_us {
            lat.push((sp - ev.created_us) as f64 / 1000.0);
        }
    }
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0.0)
    };

    // Throughput: the objects are in the store; their events arrive at once and every
    // invocation runs through the journal (queued, claimed, run, finished).
    eprintln!("bench runtime: throughput, {throughput_n} invocations at once ...");
    let store = rt.store(&minio)?;
    let mut metas = Vec::with_capacity(throughput_n);
    for i in 0..throughput_n {
        metas.push(store.put_file(&format!("bench/in/tp/{i}.jpg"), &input).await?);
    }
    let t0 = Instant::now();
    let mut last = InvocationId::default();
    for m in &metas {
        let meta = ObjectMeta {
            etag: format!("{}-{}", m.etag, m.key),
            ..m.clone()
        };
        if let Some((_, ids)) = rt.emit(&minio, &meta, "bench").await? {
            last = ids.last().copied().unwrap_or(last);
        }
    }
    wait_final(&rt, last).await?;
    while rt.journal.pending("noop")? > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    daemon.shutdown(Duration::from_secs(60)).await?;
    Ok(RuntimeBench {
        latency_samples: lat.len(),
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().copied().unwrap_or(0.0),
        throughput_invocations: throughput_n,
        throughput_per_s: throughput_n as f64 / secs,
        concurrency,
    })
}

pub(crate) async fn wait_final(rt: &Runtime, id: InvocationId) -> Result<fogd::journal::Invocation> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(i) = rt.journal.invocation(id)? {
            if i.state.is_final() {
                if i.state != State::Succeeded {
                    tracing::warn!(job = %i.uuid, "bench invocation ended {}", i.state.as_str());
                }
                return Ok(i);
            }
        }
        if Instant::now() > deadline {
            return Err(RuntimeError::UnknownService(format!(
                "bench invocation {id} did not finish in 120 s"
            )));
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Where scratch data goes: the system's temporary folder.
pub fn scratch_dir() -> PathBuf {
    std::env::temp_dir()
}

/// `fogd bench runtime`: runs the bench in a scratch folder and prints its numbers.
pub async fn print(
    latency: usize,
    throughput: usize,
    json: bool,
    unconfined: bool,
) -> anyhow::Result<std::process::ExitCode> {
    let isolation = if unconfined {
        fogd::config::Isolation::None
    } else {
        fogd::config::Isolation::Auto
    };
    let b = runtime(&scratch_dir(), latency, throughput, isolation).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&b)?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "fogd bench runtime ({cores} cores, concurrency {}, scripts {})",
        b.concurrency,
        if unconfined {
            "unconfined"
        } else {
            "as isolation: auto runs them"
        }
    );
    println!(
        "  object landed -> script started: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples; target p50 <= 5 ms, p99 <= 20 ms)",
        b.latency_p50_ms, b.latency_p99_ms, b.latency_max_ms, b.latency_samples
    );
    println!(
        "  trivial invocations through the journal: {:.0} per second ({} invocations; target >= 500/s)",
        b.throughput_per_s, b.throughput_invocations
    );
    Ok(std::process::ExitCode::SUCCESS)
}
