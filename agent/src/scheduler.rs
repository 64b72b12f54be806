//! The daemon's loop: per-service queues (in the journal) and concurrency. Each claimed
//! invocation runs through `exec::execute` (which stores its outputs, chaining the next
//! service); with no slot free, invocations that waited long enough go to delegation members.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::exec::{kube, Executors};
use crate::journal::{Outcome, State};
use crate::runtime::{Result, Runtime};

/// How often the journal is looked at for work queued by other processes (`fogd put`).
const POLL: Duration = Duration::from_millis(100);

/// Runs until `shutdown` completes, then stops taking work and waits for the running invocations
/// (the daemon bounds that wait). `heartbeat` gets the time (ms) of every turn of the loop, so
/// that a watchdog can tell a live scheduler from a stuck one.
pub async fn run(
    rt: Arc<Runtime>,
    exec: Arc<Executors>,
    shutdown: impl Future<Output = ()>,
    heartbeat: Arc<std::sync::atomic::AtomicI64>,
) -> Result<()> {
    let max_attempts = rt.cfg.max_attempts;
    let (requeued, failed) = rt.journal.call(move |j| j.recover(max_attempts)).await?;
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
    // Always on (one query a poll when idle): services with members may come through the API.
    let follower = {
        let (rt, exec) = (rt.clone(), exec.clone());
        tokio::spawn(async move { exec.delegator.follow(&rt).await })
    };
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
        heartbeat.store(crate::journal::now_ms(), std::sync::atomic::Ordering::Relaxed);
        dispatch(&rt, &exec, &mut sems, &mut tasks, &mut warned).await;
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
    follower.abort();
    exec.stopping.send_replace(true);
    tracing::info!(running = tasks.len(), "stopping: waiting for running invocations");
    while tasks.join_next().await.is_some() {}
    Ok(())
}

async fn dispatch(
    rt: &Arc<Runtime>,
    exec: &Arc<Executors>,
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
    let services = match rt.journal.call(|j| j.queued_services()).await {
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
        let name = svc.clone();
        let claim = match free {
            0 => Ok(Vec::new()),
            _ => rt.journal.call(move |j| j.claim(&name, free)).await,
        };
        let claimed = match claim {
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
            let (rt, exec) = (rt.clone(), exec.clone());
            tasks.spawn(async move {
                let started = std::time::Instant::now();
                let outcome = match crate::exec::execute(&rt, &exec, &inv).await {
                    Ok(o) => o,
                    // Stopping while a Job runs on the cluster: it stays `running` here and the
                    // next start follows the same Job.
                    Err(crate::exec::Error::Kube(e @ kube::KubeError::Interrupted(_))) => {
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
                let (id, done) = (inv.id, outcome.clone());
                if let Err(e) = rt.journal.call(move |j| j.finish(id, &done)).await {
                    tracing::error!("{e}");
                }
                let _ = rt.finished.send(id);
                drop(permit);
                rt.event(
                    "invocation_done",
                    serde_json::json!({"service": inv.service, "job": inv.uuid, "key": inv.key,
                        "state": outcome.state.as_str(), "outputs": outcome.outputs,
                        "seconds": started.elapsed().as_secs_f64()}),
                );
                if crate::ingest::raw::is_raw(&rt, &inv.key) {
                    let (rt, event) = (rt.clone(), inv.event_id);
                    crate::journal::boundary::offload(move || crate::ingest::raw::settle(&rt, event)).await;
                }
            });
        }
        if busy {
            delegate(rt, exec, &svc, tasks).await;
        }
    }
}

/// No slot is free here: the invocations that waited longer than the threshold go to the
/// service's delegation members, as many as they have room for.
async fn delegate(rt: &Arc<Runtime>, exec: &Arc<Executors>, svc: &str, tasks: &mut JoinSet<()>) {
    if !rt.cfg.delegation.enabled {
        return;
    }
    let Ok(service) = rt.service(svc) else { return };
    let Some(d) = service.delegation.as_ref() else {
        return;
    };
    let after = d
        .rescheduler_threshold_s
        .map_or(rt.cfg.delegation.after, Duration::from_secs);
    let cutoff = crate::journal::now_ms() - after.as_millis() as i64;
    let raw = rt.cfg.ingest.raw_prefix();
    // The members' room and the claim read and write the journal: off the async workers.
    let (rt2, exec2, d, name) = (rt.clone(), exec.clone(), d.clone(), svc.to_string());
    let claimed = crate::journal::boundary::offload(move || {
        let room = exec2.delegator.room(&rt2, &d);
        if room == 0 {
            return Ok(Vec::new());
        }
        rt2.journal.claim_for_delegation(&name, cutoff, &raw, room)
    })
    .await;
    let claimed = match claimed {
        Some(Ok(c)) => c,
        Some(Err(e)) => {
            tracing::error!("{e}");
            return;
        }
        None => return,
    };
    for inv in claimed {
        let (rt, exec, service) = (rt.clone(), exec.clone(), service.clone());
        tasks.spawn(async move { exec.delegator.send(&rt, inv, service).await });
    }
}
