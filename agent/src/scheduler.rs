//! The daemon's loop: per-service queues (in the journal) and concurrency, running each claimed
//! invocation through the local executor, storing its outputs (which chains the next service)
//! and watching S3 inputs for objects written by others.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exec::contract;
use crate::exec::kube;
use crate::exec::local::{self, ScriptSpec, ScriptStatus};
use crate::fdl::ProviderRef;
use crate::journal::{Invocation, Outcome, State};
use crate::runtime::{Result, Runtime, RuntimeError};

/// How often the journal is looked at for work queued by other processes (`fogd put`).
const POLL: Duration = Duration::from_millis(100);

/// Runs until `shutdown` completes, then stops taking work and waits for the running invocations.
pub async fn run(rt: Arc<Runtime>, shutdown: impl Future<Output = ()>) -> Result<()> {
    run_with_heartbeat(rt, shutdown, None).await
}

/// As `run`; `heartbeat` (when given) gets the time (ms) of every turn of the loop, so that a
/// watchdog can tell a live scheduler from a stuck one.
pub async fn run_with_heartbeat(
    rt: Arc<Runtime>,
    shutdown: impl Future<Output = ()>,
    heartbeat: Option<Arc<std::sync::atomic::AtomicI64>>,
) -> Result<()> {
    let (requeued, failed) = rt.journal.recover(rt.cfg.max_attempts)?;
    if let crate::store::AnyStore::Local(local) = rt.local_store() {
        let swept = tokio::task::spawn_blocking(move || local.sweep_temporary(Duration::from_secs(600)))
            .await
            .unwrap_or(0);
        if swept > 0 {
            tracing::info!(swept, "removed temporary files of writes cut short by a crash");
        }
    }
    if requeued + failed > 0 {
        tracing::warn!(
            requeued,
            failed,
            "recovered invocations that were running when fogd stopped"
        );
    }
    // One per service, made when the service first has work (services come and go via the API).
    let mut sems: BTreeMap<String, Arc<Semaphore>> = BTreeMap::new();
    let mut watchers = spawn_watchers(&rt);
    // Always on (one query a poll when idle): services with members may come through the API.
    {
        let rt = rt.clone();
        watchers.spawn(async move { rt.delegator.follow(&rt).await });
    }
    let mut tasks = JoinSet::new();
    let mut warned = BTreeSet::new();
    tokio::pin!(shutdown);
    tracing::info!(
        services = rt.workflow().services.len(),
        node = %rt.node,
        data = %rt.cfg.data_dir.display(),
        "fogd running"
    );
    loop {
        if let Some(h) = &heartbeat {
            h.store(crate::journal::now_ms(), std::sync::atomic::Ordering::Relaxed);
        }
        dispatch(&rt, &mut sems, &mut tasks, &mut warned);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = rt.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done {
                    tracing::error!("invocation task failed: {e}");
                }
            }
        }
    }
    watchers.abort_all();
    rt.stopping.send_replace(true);
    tracing::info!(running = tasks.len(), "stopping: waiting for running invocations");
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn dispatch(
    rt: &Arc<Runtime>,
    sems: &mut BTreeMap<String, Arc<Semaphore>>,
    tasks: &mut JoinSet<()>,
    warned: &mut BTreeSet<String>,
) {
    if let Err(e) = rt.check_disk() {
        if warned.insert("disk".into()) {
            tracing::error!("{e}");
        }
        return;
    }
    warned.remove("disk");
    let services = match rt.journal.queued_services() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    let wf = rt.workflow();
    for svc in services {
        if wf.service(&svc).is_none() {
            if warned.insert(svc.clone()) {
                tracing::warn!(service = %svc, "queued invocations for a service that no loaded workflow defines; left queued");
            }
            continue;
        }
        let sem = sems
            .entry(svc.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(rt.cfg.concurrency())));
        let free = sem.available_permits();
        let claimed = match rt.journal.claim(&svc, free) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}");
                continue;
            }
        };
        let busy = claimed.len() >= free;
        for inv in claimed {
            let Ok(permit) = sem.clone().try_acquire_owned() else {
                break;
            };
            let rt = rt.clone();
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let outcome = match execute(&rt, &inv).await {
                    Ok(o) => o,
                    // Stopping while a Job runs on the cluster: it stays `running` here and the
                    // next start follows the same Job.
                    Err(RuntimeError::Kube(e @ kube::KubeError::Interrupted(_))) => {
                        tracing::info!(service = %inv.service, "{e}");
                        return;
                    }
                    Err(e) => Outcome {
                        state: State::Failed,
                        exit_code: None,
                        error: Some(e.to_string()),
                        outputs: 0,
                        spawned_us: None,
                    },
                };
                match &outcome.error {
                    Some(err) => tracing::warn!(service = %inv.service, job = %inv.uuid, state = outcome.state.as_str(), "{err}"),
                    None => tracing::debug!(service = %inv.service, job = %inv.uuid, outputs = outcome.outputs, "done"),
                }
                rt.metrics.observe_invocation(&inv.service, outcome.state, started.elapsed());
                if let Err(e) = rt.journal.finish(inv.id, &outcome) {
                    tracing::error!("{e}");
                }
                drop(permit);
                rt.event(
                    "invocation_done",
                    serde_json::json!({"service": inv.service, "job": inv.uuid, "key": inv.key,
                        "state": outcome.state.as_str(), "outputs": outcome.outputs,
                        "seconds": started.elapsed().as_secs_f64()}),
                );
                let raw = format!("{}/", rt.cfg.ingest.path.trim_end_matches('/'));
                if inv.key.starts_with(&raw) {
                    settle_raw(&rt, inv.event_id);
                }
            });
        }
        if busy {
            delegate(rt, &svc, tasks);
        }
    }
}

/// No slot is free here: the invocations that waited longer than the threshold go to the
/// service's delegation members, as many as they have room for.
fn delegate(rt: &Arc<Runtime>, svc: &str, tasks: &mut JoinSet<()>) {
    if !rt.cfg.delegation.enabled {
        return;
    }
    let Ok(service) = rt.service(svc) else { return };
    let Some(d) = service.delegation.as_ref() else {
        return;
    };
    let room = rt.delegator.room(rt, d);
    if room == 0 {
        return;
    }
    let after = d
        .rescheduler_threshold_s
        .map_or(rt.cfg.delegation.after, Duration::from_secs);
    let cutoff = crate::journal::now_ms() - after.as_millis() as i64;
    let raw = format!("{}/", rt.cfg.ingest.path.trim_end_matches('/'));
    let claimed = match rt.journal.claim_for_delegation(svc, cutoff, &raw, room) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    for inv in claimed {
        let (rt, service) = (rt.clone(), service.clone());
        tasks.spawn(async move { rt.delegator.send(&rt, inv, service).await });
    }
}

/// Once every invocation on a raw camera item succeeded, the item is processed: deleted now
/// (or after `ingest.raw_retention`).
pub(crate) fn settle_raw(rt: &Runtime, event_id: i64) {
    match rt.journal.ingest_settle(event_id) {
        Ok(Some(row)) => {
            rt.event(
                "frame_anonymised",
                serde_json::json!({"camera": row.camera, "key": row.key}),
            );
            if rt.cfg.ingest.raw_retention.is_zero() {
                rt.delete_raw(&row);
            }
        }
        Ok(None) => {}
        Err(e) => tracing::error!("{e}"),
    }
}

/// One invocation: fetch the input, run the script, store the outputs.
pub async fn execute(rt: &Runtime, inv: &Invocation) -> Result<Outcome> {
    let svc = rt.service(&inv.service)?;
    let ev = rt.journal.event(inv.event_id)?;
    let provider = crate::fdl::ProviderRef::parse(&ev.provider)
        .ok_or_else(|| RuntimeError::UnknownProvider(ev.provider.clone()))?;
    let dir = rt.work_dir(&inv.uuid);
    let (in_dir, out_dir) = (dir.join("input"), dir.join("output"));
    if inv.attempts > 1 {
        let killed = local::kill_leftovers(&dir);
        if killed > 0 {
            tracing::warn!(job = %inv.uuid, killed, "processes of the interrupted run killed before the rerun");
        }
    }
    // A Job adopted after a restart may have sent outputs already: its folder stays.
    let adopting = inv.attempts > 1 && rt.cfg.executor_of(&inv.service) == crate::config::ExecutorKind::Kube;
    if !adopting {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    for d in [&in_dir, &out_dir] {
        tokio::fs::create_dir_all(d)
            .await
            .map_err(|source| RuntimeError::Io {
                path: d.clone(),
                source,
            })?;
    }
    let log_path = rt.log_path(&svc.name, &inv.uuid);
    if let Some(parent) = log_path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| RuntimeError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    let input_file = if svc.file_stage_in {
        None
    } else {
        let f = in_dir.join(contract::input_file_name(&ev.key));
        rt.store(&provider)?.get_file(&ev.key, &f).await?;
        Some(f)
    };
    // The contract's variables, for the folders the script will see.
    let contract_env = |tmp_input_dir: &Path, tmp_output_dir: &Path, input_file: Option<&Path>| {
        contract::environment(&contract::Invocation {
            service: &svc,
            job_uuid: &inv.uuid,
            node: &rt.node,
            provider: &ev.provider,
            key: &ev.key,
            size: ev.size,
            etag: &ev.etag,
            event_time: &ev.event_time,
            tmp_input_dir,
            tmp_output_dir,
            input_file,
        })
    };
    let mut env = contract_env(&in_dir, &out_dir, input_file.as_deref());
    if let Some(sock) = rt.vision_socket.get() {
        env.push(("FOGD_VISION_SOCKET".into(), sock.display().to_string()));
    }
    let timeout = svc.timeout_s.map_or(rt.cfg.timeout, Duration::from_secs);
    let (status, spawned_us) = if rt.cfg.executor_of(&svc.name) == crate::config::ExecutorKind::Kube {
        // The pod sees the contract's folders inside it; its supervisor fetches the input from
        // `in_dir` and sends the outputs into `out_dir` through the gateway.
        let name = input_file
            .as_ref()
            .and_then(|f| f.file_name())
            .map(|n| n.to_owned());
        let pod_input = name.map(|n| Path::new(kube::POD_INPUT_DIR).join(n));
        let mut env = contract_env(
            Path::new(kube::POD_INPUT_DIR),
            Path::new(kube::POD_OUTPUT_DIR),
            pod_input.as_deref(),
        );
        let token = kube::job_token(&rt.cfg.data_dir, &inv.uuid).map_err(|source| RuntimeError::Io {
            path: rt.cfg.data_dir.join("kube-token-key"),
            source,
        })?;
        env.extend([
            ("FOGD_GATEWAY".to_string(), rt.cfg.kube.gateway_url.clone()),
            ("FOGD_JOB".to_string(), inv.uuid.clone()),
            ("FOGD_JOB_TOKEN".to_string(), token),
            (
                "FOGD_SCRIPT".to_string(),
                format!("{}/script.sh", kube::SCRIPT_DIR),
            ),
        ]);
        let run = kube::KubeRun {
            cfg: &rt.cfg.kube,
            svc: &svc,
            job: &inv.uuid,
            node: &rt.node,
            env,
            timeout,
            log_path: &log_path,
        };
        rt.kube.run(run, rt.stopping.subscribe()).await?
    } else {
        local::run_script(ScriptSpec {
            script: svc.script.as_ref(),
            dir: &dir,
            env,
            timeout,
            log_path: &log_path,
            log_cap: rt.cfg.log_cap_bytes,
        })
        .await?
    };
    let (state, exit_code, error) = match status {
        ScriptStatus::Exited(0) => (State::Succeeded, Some(0), None),
        ScriptStatus::Exited(c) => (
            State::Failed,
            Some(c),
            Some(format!("script exited with status {c}")),
        ),
        ScriptStatus::Signalled(s) => (State::Failed, None, Some(format!("script killed by signal {s}"))),
        ScriptStatus::TimedOut => (
            State::TimedOut,
            None,
            Some(format!("script still running after {timeout:?}; killed")),
        ),
    };
    let store_outputs = state == State::Succeeded || (state == State::Failed && rt.cfg.store_failed_outputs);
    let outputs = if store_outputs {
        match store_outputs_of(rt, inv.id, &svc, &out_dir, &log_path).await {
            Ok(n) => n,
            // The run's files stay where they are, for a retry or by hand.
            Err(e) => {
                return Ok(Outcome {
                    state: State::Failed,
                    exit_code,
                    error: Some(format!("{e}; outputs kept in {}", out_dir.display())),
                    outputs: 0,
                    spawned_us: Some(spawned_us),
                })
            }
        }
    } else {
        0
    };
    // A synchronous run (`/run`) answers with the output files: the gateway removes them.
    if ev.source != "run" {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    Ok(Outcome {
        state,
        exit_code,
        error,
        outputs,
        spawned_us: Some(spawned_us),
    })
}

/// Stores every output file at each matching output path and emits the events that chain the
/// next services. Symbolic links in TMP_OUTPUT_DIR are not stored (noted in the log).
async fn store_outputs_of(
    rt: &Runtime,
    invocation: i64,
    svc: &crate::fdl::Service,
    out_dir: &Path,
    log_path: &Path,
) -> Result<u32> {
    let (out, max) = (out_dir.to_path_buf(), rt.cfg.max_output_bytes);
    let (files, skipped) = tokio::task::spawn_blocking(move || local::collect_outputs(&out, max))
        .await
        .map_err(|e| RuntimeError::Io {
            path: out_dir.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
    if !skipped.is_empty() {
        let note = format!(
            "\n[fogd] not stored (not regular files): {}\n",
            skipped.join(", ")
        );
        append(log_path, &note).await;
    }
    let mut stored = 0u32;
    for f in &files {
        for (provider, key) in contract::output_targets(&svc.outputs, &f.rel) {
            let store = rt.store(&provider)?;
            if store.is_local() {
                let meta = store.put_file(&key, &f.path).await?;
                rt.emit(&provider, &meta, "output")?;
            } else {
                // Remote stores are reached through the outbox: retried, paced, in order.
                crate::store::check_key(&key)?;
                let dst = crate::sync::spool(rt, &f.path, "out")?;
                if let Err(e) = crate::sync::enqueue(rt, &provider.to_string(), &key, &dst, Some(invocation))
                {
                    let _ = std::fs::remove_file(&dst);
                    return Err(e);
                }
            }
            if key.ends_with(".json") {
                mask_event(rt, &key, &f.path);
            }
            stored += 1;
        }
    }
    Ok(stored)
}

/// A stored JSON result with mask counts (the anonymiser's sidecar, `fogd detect-masks`'
/// result) becomes a `mask_result` event.
fn mask_event(rt: &Runtime, key: &str, path: &Path) {
    if rt.events.receiver_count() == 0 {
        return;
    }
    let Ok(text) = std::fs::read(path) else { return };
    if text.len() > 1 << 20 {
        return;
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return;
    };
    let counts = &v["counts"];
    if counts["no_mask"].is_u64() {
        rt.event(
            "mask_result",
            serde_json::json!({"key": key, "faces": counts["faces"], "mask": counts["mask"],
                "no_mask": counts["no_mask"], "no_mask_share": counts["no_mask_share"],
                "status": v["status"]}),
        );
    }
}

async fn append(path: &Path, text: &str) {
    use tokio::io::AsyncWriteExt;
    if let Ok(mut f) = tokio::fs::OpenOptions::new().append(true).open(path).await {
        let _ = f.write_all(text.as_bytes()).await;
    }
}

/// One task per S3 input folder: lists it every `s3_poll_interval` and emits what is new. The
/// journal's events are the durable cursor: an object seen before (same key and ETag) makes no
/// second event, and objects written while fogd was down are found at the first listing.
fn spawn_watchers(rt: &Arc<Runtime>) -> JoinSet<()> {
    let mut set = JoinSet::new();
    let mut seen = BTreeSet::new();
    for svc in &rt.workflow().services {
        for b in &svc.inputs {
            let Ok(store) = rt.store(&b.provider) else {
                continue;
            };
            if store.is_local() || !seen.insert((b.provider.clone(), b.path.clone())) {
                continue;
            }
            let (rt, provider, prefix) = (rt.clone(), b.provider.clone(), format!("{}/", b.path));
            set.spawn(async move { watch(rt, provider, prefix).await });
        }
    }
    set
}

async fn watch(rt: Arc<Runtime>, provider: ProviderRef, prefix: String) {
    let mut failing = false;
    loop {
        match poll_once(&rt, &provider, &prefix).await {
            Ok(n) => {
                if failing {
                    tracing::info!(%provider, %prefix, "watch: reachable again");
                    failing = false;
                }
                if n > 0 {
                    tracing::debug!(%provider, %prefix, new = n, "watch: new objects");
                }
            }
            Err(e) if !failing => {
                tracing::warn!(%provider, %prefix, "watch: {e}; retrying every {:?}", rt.cfg.s3_poll_interval);
                failing = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(rt.cfg.s3_poll_interval).await;
    }
}

/// Lists `prefix` once; returns how many new events it made.
pub async fn poll_once(rt: &Runtime, provider: &ProviderRef, prefix: &str) -> Result<usize> {
    let store = rt.store(provider)?;
    let name = provider.to_string();
    let mut new = 0;
    for meta in store.list(prefix).await? {
        if meta.key.ends_with('/') || rt.journal.has_event(&name, &meta.key, &meta.etag)? {
            continue;
        }
        if rt.emit(provider, &meta, "watch")?.is_some() {
            new += 1;
        }
    }
    Ok(new)
}
