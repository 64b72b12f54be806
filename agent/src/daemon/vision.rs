//! The warm vision worker (`fogd-vision vision-serve`): started when a workflow uses the vision
//! built-ins, restarted after a crash, stopped with the daemon.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::runtime::{stopped, Runtime};

/// Does a service call the vision built-ins (a script running `fogd anonymize` or
/// `fogd detect-masks`, or a `fogd/builtin:` image)?
fn uses_vision(svc: &crate::fdl::Service) -> bool {
    use fogd_vision_proto::builtin::{is_builtin_image, Builtin};
    let script = match &svc.script {
        Some(crate::fdl::Script::File(p)) => std::fs::read_to_string(p).unwrap_or_default(),
        Some(crate::fdl::Script::Inline(s)) => s.clone(),
        _ => String::new(),
    };
    svc.image.as_deref().is_some_and(is_builtin_image) || Builtin::called_by(&script)
}

/// Starts `fogd-vision vision-serve` when a workflow uses the vision built-ins and the binary is
/// next to this one, and keeps it running (restarted after a crash, stopped with the daemon).
/// Scripts reach it through FOGD_VISION_SOCKET; when it is down they run `fogd-vision` themselves.
pub(super) fn vision_worker(
    rt: &Arc<Runtime>,
    mut stop: watch::Receiver<bool>,
) -> Option<(JoinHandle<()>, PathBuf)> {
    let bin = std::env::current_exe()
        .ok()?
        .with_file_name(fogd_vision_proto::builtin::BINARY);
    if !bin.is_file() || !rt.workflow().services.iter().any(uses_vision) {
        return None;
    }
    let socket = rt.data.vision_socket();
    let _ = std::fs::remove_file(&socket); // a killed run's: not a sign that the new one listens
    crate::exec::grant::clear(rt.data.root());
    let path = socket.clone();
    let ledger = rt.data.vision_ledger();
    if let Err(e) = crate::paths::make_private_dir(&ledger) {
        tracing::warn!(dir = %ledger.display(), "vision ledger: {e}; anonymised frames get no receipt");
    }
    let task = tokio::spawn(async move {
        let mut backoff =
            crate::backoff::Policy::new(Duration::from_secs(1), Duration::from_secs(60)).start();
        loop {
            let mut child = match spawn_worker(&bin, &socket, &ledger) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(bin = %bin.display(), error = %e, "vision worker did not start");
                    return;
                }
            };
            tracing::info!(pid = child.id(), "vision worker started");
            let started = std::time::Instant::now();
            tokio::select! {
                status = child.wait() => {
                    tracing::warn!(?status, "vision worker exited; scripts run fogd-vision themselves meanwhile");
                }
                _ = stopped(&mut stop) => {
                    let _ = child.kill().await;
                    let _ = std::fs::remove_file(&socket);
                    return;
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff.reset();
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_wait()) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    });
    Some((task, path))
}

fn spawn_worker(bin: &Path, socket: &Path, ledger: &Path) -> std::io::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(bin);
    // SAFETY: prctl is async-signal-safe. The worker dies with fogd even on kill -9, instead of
    // living on with its models loaded.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.arg("vision-serve")
        .arg("--socket")
        .arg(socket)
        .arg("--ledger")
        .arg(ledger)
        .kill_on_drop(true)
        .spawn()
}
