//! One invocation from start to end: its work folder, the input fetched, the script run by the
//! service's `Executor` (a local process, a container or a Kubernetes Job), the outputs stored.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::executor::{Overrun, Run, ScriptStatus};
use super::{contract, local, Error, Executors};
use crate::journal::{Invocation, Outcome, State};
use crate::runtime::{Runtime, RuntimeError};

/// The privacy settings of the camera the invocation's chain started from: FOGD_PRIVACY_ZONES
/// when it has zones (fogd's anonymiser blacks them out before anything else),
/// FOGD_PRIVACY_PLATES when it sees vehicles, and the live audit's rate; and what the receipts
/// of its frames will say of their origin (hashing a raw item), in one trip to the blocking pool.
/// Err (the invocation fails, its input stays) when they cannot be read: a frame never runs
/// without the zones its camera has.
async fn privacy_and_origin(
    rt: &Arc<Runtime>,
    id: crate::journal::InvocationId,
    raw: bool,
    event_time: &str,
    input: Option<std::path::PathBuf>,
) -> Result<(Vec<(String, String)>, super::provenance::Origin), Error> {
    let (rt2, time) = (rt.clone(), event_time.to_string());
    let (zones, plates, origin) = crate::journal::boundary::offload(move || -> Result<_, RuntimeError> {
        let camera = rt2.journal.camera_of(id)?;
        let zones = camera.as_deref().map_or(Ok(None), |c| rt2.zones(c))?;
        let plates = rt2.cfg.sees_vehicles(camera.as_deref());
        let origin = super::provenance::Origin::of(&rt2, camera, raw, &time, input.as_deref());
        Ok((zones, plates, origin))
    })
    .await
    .ok_or_else(|| RuntimeError::Journal(crate::journal::JournalError::Stopped("privacy zones".into())))??;
    let mut env: Vec<(String, String)> = zones
        .map(|z| (fogd_vision_proto::zones::ENV_ZONES.to_string(), z.to_json()))
        .into_iter()
        .collect();
    if plates {
        env.push((fogd_vision_proto::receipt::ENV_PLATES.into(), "1".into()));
    }
    if rt.cfg.privacy.audit_every > 0 {
        let every = rt.cfg.privacy.audit_every.to_string();
        env.push((fogd_vision_proto::receipt::ENV_AUDIT_EVERY.into(), every));
    }
    Ok((env, origin))
}

/// One invocation: fetch the input, run the script, store the outputs.
pub async fn execute(rt: &Arc<Runtime>, exec: &Executors, inv: &Invocation) -> Result<Outcome, Error> {
    let svc = rt.service(&inv.service)?;
    let event_id = inv.event_id;
    let ev = rt.journal.call(move |j| j.event(event_id)).await?;
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
    // A Job or container adopted after a restart may have written outputs already: its folder
    // stays.
    let executor = exec.of(rt.cfg.executor_of(&inv.service));
    let adopting = inv.attempts > 1 && executor.adoptable(rt, &inv.uuid).await;
    // The folders in one trip to the blocking pool (a trivial invocation made five): the work
    // folder new (an earlier attempt's removed, unless adopted) and the service's log folder.
    let log_path = rt.log_path(&svc.name, &inv.uuid);
    let folders = [
        Some(in_dir.clone()),
        Some(out_dir.clone()),
        log_path.parent().map(Path::to_path_buf),
    ];
    // A rerun's log starts empty (it is made on the script's first bytes, so an earlier
    // attempt's would stay): an adopted run's is written again whole.
    let old = (!adopting).then(|| (dir.clone(), log_path.clone()));
    on_blocking(&dir, move || {
        if let Some((old, log)) = old {
            let _ = std::fs::remove_dir_all(old);
            let _ = std::fs::remove_file(log);
        }
        for d in folders.into_iter().flatten() {
            std::fs::create_dir_all(&d).map_err(|source| RuntimeError::Io { path: d, source })?;
        }
        Ok::<_, RuntimeError>(())
    })
    .await?;
    let input_file = if svc.file_stage_in {
        None
    } else {
        let f = in_dir.join(contract::input_file_name(&ev.key));
        rt.store(&provider)?.get_file(&ev.key, &f).await?;
        Some(f)
    };
    let raw = provider == crate::fdl::ProviderRef::new(crate::fdl::ProviderKind::Minio, "default")
        && crate::ingest::raw::is_raw(rt, &ev.key);
    let (privacy, origin) = privacy_and_origin(rt, inv.id, raw, &ev.event_time, input_file.clone()).await?;
    // The contract's variables, for the folders the script will see, and the camera's zones.
    let contract_env = |tmp_input_dir: &Path, tmp_output_dir: &Path, input_file: Option<&Path>| {
        let mut env = contract::environment(&contract::Invocation {
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
        });
        env.extend(privacy.clone());
        env
    };
    let mount = mount_folder(rt, &svc).await?;
    let timeout = svc.timeout_s.map_or(rt.cfg.timeout, Duration::from_secs);
    let (status, spawned_us) = executor
        .run(Run {
            rt,
            svc: &svc,
            job: &inv.uuid,
            dir: &dir,
            in_dir: &in_dir,
            out_dir: &out_dir,
            input_file: input_file.as_deref(),
            env: &contract_env,
            mount,
            timeout,
            log_path: &log_path,
            adopt: adopting,
        })
        .await?;
    let overrun = matches!(status, ScriptStatus::OverBudget(_));
    let (state, exit_code, error) = ended(status, svc.memory_bytes, &rt.cfg, timeout);
    let store_outputs =
        state == State::Succeeded || (state == State::Failed && rt.cfg.store_failed_outputs && !overrun);
    let outputs = if store_outputs {
        match crate::exec::outputs::store(rt, inv.id, &svc, &origin, &out_dir, &log_path).await {
            Ok(n) => n,
            // Not kept: outputs left behind fill the disk (a retry makes them again).
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Ok(Outcome {
                    state: State::Failed,
                    exit_code,
                    error: Some(format!("{e}; the run's outputs were discarded")),
                    outputs: 0,
                    spawned_us: Some(spawned_us),
                });
            }
        }
    } else {
        0
    };
    // A synchronous run (`/run`) answers with the output files: the gateway removes them (or
    // the housekeeping sweep, when its caller went away).
    // An empty log is not kept (one file per invocation is an inode per frame). One trip.
    let done = (ev.source != "run").then(|| dir.clone());
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(dir) = done {
            let _ = std::fs::remove_dir_all(dir);
        }
        if std::fs::metadata(&log_path).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(&log_path);
        }
    })
    .await;
    Ok(Outcome {
        state,
        exit_code,
        error,
        outputs,
        spawned_us: Some(spawned_us),
    })
}

/// `mount:` on the local store: its folder, made if missing, and where a pod sees it.
async fn mount_folder(
    rt: &Runtime,
    svc: &crate::fdl::Service,
) -> Result<Option<(std::path::PathBuf, String)>, Error> {
    // `mount`: OSCAR's rclone sidecar shows the bucket folder at /mnt/<path> in the pod; the
    // podman executor binds the store's folder there, and a script on the host gets the
    // store's folder itself. Either way MOUNT_PATH names it.
    let local = crate::fdl::ProviderRef::new(crate::fdl::ProviderKind::Minio, "default");
    let Some(m) = svc.mount.as_ref().filter(|m| m.provider == local) else {
        return Ok(None);
    };
    // Made beneath the store without following links: another service's script could have
    // put a link where the folder should be, and it would be bound into this one's sandbox
    // or container.
    let dir = rt.data.store_object(&m.path);
    let store = crate::store::LocalStore::new("minio.default", rt.data.store());
    let key = format!("{}/", m.path.trim_matches('/'));
    on_blocking(&dir, move || {
        store.open_root().and_then(|r| {
            r.make_folders(&key)
                .map_err(|e| crate::store::StoreError::io(&r.shown(&key), e))
        })
    })
    .await?;
    Ok(Some((dir, format!("/mnt/{}", m.path.trim_matches('/')))))
}

/// `f` on the blocking pool (file work off the async workers); should it panic, that is an I/O
/// error on `path`.
async fn on_blocking<T, E>(path: &Path, f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, Error>
where
    T: Send + 'static,
    E: Send + 'static,
    Error: From<E>,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(RuntimeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        }
        .into()),
    }
}

/// What a run's end makes of the invocation: its state, exit code and error.
fn ended(
    status: ScriptStatus,
    memory_bytes: Option<u64>,
    cfg: &crate::config::Config,
    timeout: Duration,
) -> (State, Option<i32>, Option<String>) {
    match status {
        ScriptStatus::Exited(0) => (State::Succeeded, Some(0), None),
        ScriptStatus::Exited(c) => (
            State::Failed,
            Some(c),
            Some(format!("script exited with status {c}")),
        ),
        ScriptStatus::Signalled(s) => (State::Failed, None, Some(format!("script killed by signal {s}"))),
        ScriptStatus::OutOfMemory => (
            State::Failed,
            None,
            Some(format!(
                "script killed by the kernel: over its memory limit of {} bytes (OOM)",
                memory_bytes.unwrap_or(0)
            )),
        ),
        ScriptStatus::TimedOut => (
            State::TimedOut,
            None,
            Some(format!("script still running after {timeout:?}; killed")),
        ),
        ScriptStatus::OverBudget(Overrun::WorkFolder) => (
            State::Failed,
            None,
            Some(format!(
                "script killed: its work folder went over max_work_bytes ({}); its outputs were discarded",
                cfg.max_work_bytes
            )),
        ),
        ScriptStatus::OverBudget(Overrun::Disk) => (
            State::Failed,
            None,
            Some(format!(
                "script killed: the data folder fell under {} bytes free while it ran; its outputs were discarded",
                cfg.min_free_bytes / 2
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_a_run_ended_becomes_the_invocation_s_state() {
        let svc = Some(1 << 20);
        let cfg = crate::config::Config::default();
        let t = Duration::from_secs(5);
        assert_eq!(
            ended(ScriptStatus::Exited(0), svc, &cfg, t),
            (State::Succeeded, Some(0), None)
        );
        let (state, code, error) = ended(ScriptStatus::Exited(3), svc, &cfg, t);
        assert_eq!((state, code), (State::Failed, Some(3)));
        assert_eq!(error.as_deref(), Some("script exited with status 3"));
        let (state, _, error) = ended(ScriptStatus::TimedOut, svc, &cfg, t);
        assert_eq!(state, State::TimedOut);
        assert!(error.is_some_and(|e| e.contains("5s")));
        let (_, _, error) = ended(ScriptStatus::OutOfMemory, svc, &cfg, t);
        assert!(error.is_some_and(|e| e.contains("1048576 bytes (OOM)")));
        let (_, _, error) = ended(ScriptStatus::OverBudget(Overrun::Disk), svc, &cfg, t);
        assert!(error.is_some_and(|e| e.contains("outputs were discarded")));
    }
}
