//! `fogd run`, `put`, `invoke`, `jobs`, `logs`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Command;
use crate::config::Config;
use crate::journal::{Invocation, Journal};
use crate::runtime::{stopped, Runtime};

pub(super) async fn dispatch(cmd: Command, cfg: Config) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run { files } => run(cfg, files).await,
        Command::Put {
            target,
            file,
            workflows,
        } => put(cfg, &target, file, &workflows).await,
        Command::Invoke {
            service,
            file,
            wait,
            workflows,
        } => invoke(cfg, &service, file, wait, &workflows).await,
        Command::Jobs { service, limit, json } => jobs(&cfg, service.as_deref(), limit, json),
        Command::Logs { service, job } => logs(&cfg, &service, job.as_deref()),
        Command::Queue { what } => super::queue::queue(&cfg, what),
        Command::Admin {
            what: super::Admin::ResetPassword { password },
        } => reset_password(&cfg, password).await,
        Command::Demo(a) => super::demo::demo(&a, cfg).await,
        // The rest run without a tokio runtime (cli::run handles them).
        _ => bail!("not a runtime command"),
    }
}

async fn run(cfg: Config, files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let files = if files.is_empty() {
        cfg.workflows.clone()
    } else {
        files
    };
    let rt = Arc::new(Runtime::open(cfg, &files)?);
    if rt.workflow().services.is_empty() && !rt.cfg.gateway.enabled {
        bail!("no workflow to run: give FDL files (fogd run FILE...) or list them under `workflows` in fogd.yaml");
    }
    let recorded: Vec<PathBuf> = files
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
        .collect();
    if !recorded.is_empty() {
        rt.journal.set_workflows(&recorded)?;
    }
    for (p, store) in rt.stores() {
        match store {
            Some(s) => tracing::info!(provider = %p, store = s.name(), local = s.is_local(), "store ready"),
            None => {
                tracing::warn!(provider = %p, "{}", rt.store(&p).err().map(|e| e.to_string()).unwrap_or_default())
            }
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let vision = vision_worker(&rt, stop_rx.clone());
    let gateway = if rt.cfg.gateway.enabled {
        Some(start_gateway(rt.clone(), stop_rx.clone()).await?)
    } else {
        None
    };
    match crate::ingest::sweep_orphans(&rt).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            "raw items of an ingest cut short by a crash removed (their sources deliver them again)"
        ),
        Err(e) => tracing::warn!("{e}"),
    }
    let mut side = Vec::new();
    side.push(tokio::spawn(crate::sync::run(rt.clone(), stop_rx.clone())));
    if rt.cfg.mqtt.is_some() {
        let (rt, stop) = (rt.clone(), stop_rx.clone());
        side.push(tokio::spawn(async move {
            if let Err(e) = crate::ingest::mqtt::run(rt, stop).await {
                tracing::error!("{e}");
            }
        }));
    }
    for src in rt.cfg.ingest.streams.clone() {
        side.push(tokio::spawn(crate::ingest::stream::run(
            rt.clone(),
            src,
            stop_rx.clone(),
        )));
    }
    if let Some(dir) = rt.cfg.ingest.watch_dir.clone() {
        side.push(tokio::spawn(crate::ingest::dir::run(
            rt.clone(),
            dir,
            stop_rx.clone(),
        )));
    }
    let mut stop = stop_rx.clone();
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let heartbeat = Arc::new(std::sync::atomic::AtomicI64::new(crate::journal::now_ms()));
    let watchdog = systemd_watchdog(heartbeat.clone());
    // systemd (Type=notify): ready once the gateway listens and the scheduler starts.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    crate::scheduler::run_with_heartbeat(
        rt,
        async move {
            let _ = stop.wait_for(|s| *s).await;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        },
        Some(heartbeat),
    )
    .await?;
    signal.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(g) = gateway {
        let _ = g.await;
    }
    if let Some(v) = vision {
        let _ = v.await;
    }
    for t in side {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Does a service call the vision built-ins (a script running `fogd anonymize` or
/// `fogd detect-masks`, or a `fogd/builtin:` image)?
fn uses_vision(svc: &crate::fdl::Service) -> bool {
    let script = match &svc.script {
        Some(crate::fdl::Script::File(p)) => std::fs::read_to_string(p).unwrap_or_default(),
        Some(crate::fdl::Script::Inline(s)) => s.clone(),
        _ => String::new(),
    };
    svc.image
        .as_deref()
        .is_some_and(|i| i.starts_with("fogd/builtin:"))
        || script.contains("fogd anonymize")
        || script.contains("fogd detect-masks")
}

/// Starts `fogd-vision vision-serve` when a workflow uses the vision built-ins and the binary is
/// next to this one, and keeps it running (restarted after a crash, stopped with the daemon).
/// Scripts reach it through FOGD_VISION_SOCKET; when it is down they run `fogd-vision` themselves.
pub(super) fn vision_worker(
    rt: &Arc<Runtime>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let bin = std::env::current_exe().ok()?.with_file_name("fogd-vision");
    if !bin.is_file() || !rt.workflow().services.iter().any(uses_vision) {
        return None;
    }
    let socket = rt.cfg.data_dir.join("vision.sock");
    let _ = rt.vision_socket.set(socket.clone());
    Some(tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let mut cmd = tokio::process::Command::new(&bin);
            // SAFETY: prctl is async-signal-safe. The worker dies with fogd even on kill -9,
            // instead of living on with its models loaded.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd
                .arg("vision-serve")
                .arg("--socket")
                .arg(&socket)
                .kill_on_drop(true)
                .spawn();
            let mut child = match child {
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
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(60));
        }
    }))
}

/// Binds the OSCAR API; on first start makes the admin password and shows it once.
async fn start_gateway(
    rt: Arc<Runtime>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use crate::gateway::{auth::Admin, AppState};
    let g = &rt.cfg.gateway;
    let (admin, fresh) = Admin::load_or_create(&rt.cfg.data_dir, &g.admin_user)?;
    if let Some(pw) = fresh {
        eprintln!(
            "fogd: gateway admin `{}`, password `{pw}` (shown once; stored hashed in {}; `fogd admin reset-password` makes a new one)",
            admin.user,
            crate::gateway::auth::password_file(&rt.cfg.data_dir).display()
        );
    }
    let listener = std::net::TcpListener::bind(&g.listen)
        .with_context(|| format!("gateway: cannot listen on {}", g.listen))?;
    let tls = match &g.tls {
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .with_context(|| format!("gateway TLS: {} / {}", t.cert.display(), t.key.display()))?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %listener.local_addr()?, scheme, "OSCAR API ready");
    let state = Arc::new(AppState { rt, admin });
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::gateway::serve(state, listener, tls, shutdown).await {
            tracing::error!("gateway: {e}");
        }
    }))
}

async fn reset_password(cfg: &Config, password: Option<String>) -> anyhow::Result<ExitCode> {
    let pw = password.unwrap_or_else(|| crate::journal::random_hex(16));
    if pw.len() < 8 {
        bail!("a password needs at least 8 characters");
    }
    std::fs::create_dir_all(&cfg.data_dir)?;
    let admin = crate::gateway::auth::Admin::store(&cfg.data_dir, &cfg.gateway.admin_user, &pw)?;
    println!(
        "gateway admin `{}`, new password `{pw}` (takes effect at the next `fogd run`)",
        admin.user
    );
    Ok(ExitCode::SUCCESS)
}

/// When systemd asks for watchdog pings (WatchdogSec=), pings at half its interval, and only
/// while the scheduler's loop is turning: a stuck fogd is restarted by systemd.
fn systemd_watchdog(heartbeat: Arc<std::sync::atomic::AtomicI64>) -> Option<tokio::task::JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled().filter(|p| !p.is_zero())?;
    tracing::info!(?period, "systemd watchdog on");
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(period / 2).await;
            let age = crate::journal::now_ms() - heartbeat.load(std::sync::atomic::Ordering::Relaxed);
            if age < period.as_millis() as i64 {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!(age_ms = age, "scheduler loop stalled: no watchdog ping");
            }
        }
    }))
}

/// Ctrl-C or SIGTERM (systemd, Kubernetes).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn put(cfg: Config, target: &str, file: PathBuf, workflows: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let (prov, path) = target
        .split_once('/')
        .with_context(|| format!("`{target}`: write PROVIDER/PATH, e.g. minio/cameras/incoming/"))?;
    let provider = crate::fdl::ProviderRef::parse(prov).with_context(|| {
        format!("`{prov}`: not a provider (minio, s3, onedata, webdav, rucio, as TYPE or TYPE.ID)")
    })?;
    let key = if path.ends_with('/') || path.is_empty() {
        let name = file
            .file_name()
            .with_context(|| format!("{}: no file name", file.display()))?;
        format!("{path}{}", name.to_string_lossy())
    } else {
        path.to_string()
    };
    if !file.is_file() {
        bail!("{}: not a file", file.display());
    }
    let rt = Runtime::open(cfg, workflows)?;
    let (meta, invs) = rt.put(&provider, &key, &file).await?;
    // A store is also plain storage (the OSCAR API reads it), so an object that triggers
    // nothing is fine; say why, for the user who expected a run.
    let why = if !invs.is_empty() {
        String::new()
    } else if rt.workflow().services.is_empty() {
        format!(
            " (no workflow is registered in {} yet: `fogd run FDL...` registers one)",
            rt.cfg.data_dir.display()
        )
    } else {
        " (no service watches this path)".to_string()
    };
    println!(
        "{provider}/{} ({} bytes): {} invocation(s) queued{why}",
        meta.key,
        meta.size,
        invs.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn invoke(
    cfg: Config,
    service: &str,
    file: Option<PathBuf>,
    wait: bool,
    workflows: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let rt = Runtime::open(cfg, workflows)?;
    let id = rt.invoke(service, file.as_deref()).await?;
    let inv = rt
        .journal
        .invocation(&id.to_string())?
        .context("the invocation just queued is gone")?;
    println!("{}: queued", inv.uuid);
    if !wait {
        return Ok(ExitCode::SUCCESS);
    }
    let inv = loop {
        match rt.journal.invocation(&inv.uuid)? {
            Some(i) if i.state.is_final() => break i,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    print_log(&rt.log_path(&inv.service, &inv.uuid));
    println!(
        "{}: {}{}",
        inv.uuid,
        inv.state.as_str(),
        inv.error.map(|e| format!(" ({e})")).unwrap_or_default()
    );
    Ok(if inv.state == crate::journal::State::Succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub(super) fn open_journal(cfg: &Config) -> anyhow::Result<Journal> {
    let path = cfg.data_dir.join("journal.sqlite");
    if !path.exists() {
        bail!(
            "{}: no journal (has `fogd run` used this data folder?)",
            path.display()
        );
    }
    Ok(Journal::open(&path, cfg.journal_sync)?)
}

fn jobs(cfg: &Config, service: Option<&str>, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let j = open_journal(cfg)?;
    let rows = j.invocations(service, limit)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<44} {:<20} {:<10} {:<12} {:>4} {:>3} {:>9}  INPUT",
        "JOB", "SERVICE", "STATE", "WHERE", "EXIT", "OUT", "TIME"
    )?;
    for i in &rows {
        writeln!(
            out,
            "{:<44} {:<20} {:<10} {:<12} {:>4} {:>3} {:>9}  {}{}",
            i.uuid,
            i.service,
            i.state.as_str(),
            i.ran_on.as_deref().unwrap_or("local"),
            i.exit_code.map_or("-".into(), |c| c.to_string()),
            i.outputs,
            duration(i),
            i.key,
            match (&i.error, i.uploading) {
                (Some(e), _) => format!("  ({e})"),
                (None, true) => "  (outputs waiting in the outbox)".into(),
                (None, false) => String::new(),
            }
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn duration(i: &Invocation) -> String {
    match (i.started_ms, i.finished_ms) {
        (Some(s), Some(f)) => format!("{:.3}s", (f - s) as f64 / 1000.0),
        (Some(_), None) => "running".into(),
        _ => "-".into(),
    }
}

fn logs(cfg: &Config, service: &str, job: Option<&str>) -> anyhow::Result<ExitCode> {
    let j = open_journal(cfg)?;
    let inv = match job {
        Some(job) => j.invocation(job)?.with_context(|| format!("no job `{job}`"))?,
        None => j
            .invocations(Some(service), 1)?
            .into_iter()
            .next()
            .with_context(|| format!("service `{service}` has no invocations"))?,
    };
    if inv.service != service {
        bail!(
            "job {} belongs to service `{}`, not `{service}`",
            inv.uuid,
            inv.service
        );
    }
    println!(
        "== {} {} {}",
        inv.uuid,
        inv.state.as_str(),
        inv.error.as_deref().unwrap_or("")
    );
    print_log(
        &cfg.data_dir
            .join("logs")
            .join(service)
            .join(format!("{}.log", inv.uuid)),
    );
    Ok(ExitCode::SUCCESS)
}

fn print_log(path: &std::path::Path) {
    match std::fs::read(path) {
        Ok(b) => {
            let _ = std::io::stdout().write_all(&b);
        }
        Err(_) => println!("(no log yet)"),
    }
}
