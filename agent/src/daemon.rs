//! Starts and stops the node: the scheduler, the outbox loop, every source (MQTT, the watched
//! folder, streams; the S3 watch runs under the scheduler), the gateway and the vision worker.
//! `fogd run`, `fogd demo`, the benches and the tests all start a node through `Daemon::start`
//! and stop it through `shutdown`: one stop signal, one deadline.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::exec::Executors;
use crate::runtime::{stopped, Runtime, RuntimeError};

mod vision;
use vision::vision_worker;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(
        "nothing to run: give FDL files (fogd run FILE...) or list them under `workflows` in fogd.yaml, or enable the gateway or a source (mqtt, ingest.watch_dir, ingest.streams)"
    )]
    NothingToRun,
    #[error("gateway: cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("gateway TLS: {} / {}: {source}", cert.display(), key.display())]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: the data folder is in use by another fogd (pid {pid}); stop it first, or give this one another data_dir", path.display())]
    Locked { path: PathBuf, pid: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Podman(#[from] crate::exec::podman::PodmanError),
    #[error("the scheduler task ended abnormally: {0}")]
    Join(String),
}

pub type Result<T> = std::result::Result<T, DaemonError>;

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every running invocation finished before the deadline.
    Clean,
    /// The deadline passed: the scripts still running were killed (their process groups) and
    /// their invocations left `running`, which the next start queues again (as after a crash,
    /// one attempt counted).
    DeadlinePassed,
}

/// A running node.
pub struct Daemon {
    rt: Arc<Runtime>,
    stop: watch::Sender<bool>,
    scheduler: Option<JoinHandle<crate::runtime::Result<()>>>,
    /// The scheduler's result when it ended by itself (seen by `stopped`), for `shutdown`.
    ended: Option<Result<()>>,
    /// Everything else the node runs (sources, outbox loop, gateway, vision worker); they all
    /// end on the stop signal.
    tasks: Vec<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
    heartbeat: Arc<AtomicI64>,
    gateway_addr: Option<std::net::SocketAddr>,
    /// Held while the node runs: a second daemon on the same data folder refuses to start.
    _lock: std::fs::File,
}

impl Daemon {
    /// Opens the journal, the workflows (`workflows`, else the config's, else those the daemon
    /// last ran) and the stores, then starts every part the config asks for.
    pub async fn start(cfg: Config, workflows: &[PathBuf]) -> Result<Daemon> {
        let started = std::time::SystemTime::now();
        let files = if workflows.is_empty() {
            cfg.workflows.clone()
        } else {
            workflows.to_vec()
        };
        let lock = lock_data_dir(&cfg.data_dir)?;
        // Opening migrates the journal and reads the workflows: blocking work, off the workers.
        let opened = {
            let files = files.clone();
            crate::journal::boundary::offload(move || Runtime::open(cfg, &files)).await
        };
        let rt = Arc::new(opened.ok_or(DaemonError::Join("the runtime is shutting down".into()))??);
        // A node with only sources (an ingest-only box that spools camera frames) is fine.
        let c = &rt.cfg;
        let sources = c.mqtt.is_some() || c.ingest.watch_dir.is_some() || !c.ingest.streams.is_empty();
        if rt.workflow().services.is_empty() && !c.gateway.enabled && !sources {
            return Err(DaemonError::NothingToRun);
        }
        let recorded: Vec<PathBuf> = files
            .iter()
            .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
            .collect();
        if !recorded.is_empty() {
            rt.journal
                .call(move |j| j.set_workflows(&recorded))
                .await
                .map_err(RuntimeError::from)?;
        }
        for (p, store) in rt.stores() {
            match store {
                Some(s) => {
                    tracing::info!(provider = %p, store = s.name(), local = s.is_local(), "store ready")
                }
                None => {
                    tracing::warn!(provider = %p, "{}", rt.store(&p).err().map(|e| e.to_string()).unwrap_or_default())
                }
            }
        }
        // Podman missing fails here, not at the first invocation; exposed services start.
        crate::exec::podman::prepare(&rt).await?;
        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let vision = vision_worker(&rt, stop_rx.clone());
        let vision_socket = vision.as_ref().map(|(_, socket)| socket.clone());
        // A script started before the worker listens would load the models itself: wait a little.
        let t0 = std::time::Instant::now();
        while vision_socket.as_ref().is_some_and(|s| !s.exists()) && t0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tasks.extend(vision.map(|(task, _)| task));
        let exec = Arc::new(Executors::new(&rt.cfg, vision_socket));
        let members: crate::ingest::status::Members = {
            let exec = exec.clone();
            Arc::new(move || serde_json::to_value(exec.delegator.health()).unwrap_or_default())
        };
        let heartbeat = Arc::new(AtomicI64::new(crate::journal::now_ms()));
        let mut gateway_addr = None;
        if rt.cfg.gateway.enabled {
            let (task, addr) =
                start_gateway(rt.clone(), members.clone(), heartbeat.clone(), stop_rx.clone()).await?;
            tasks.push(task);
            gateway_addr = Some(addr);
        }
        match crate::ingest::raw::sweep_orphans(&rt, started).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                removed = n,
                "raw items of an ingest cut short by a crash removed (their sources deliver them again)"
            ),
            Err(e) => tracing::warn!("{e}"),
        }
        tasks.push(crate::housekeeping::keep_node_log(
            rt.data.clone(),
            stop_rx.clone(),
        ));
        tasks.push(tokio::spawn(crate::outbox::run(rt.clone(), stop_rx.clone())));
        tasks.push(tokio::spawn(crate::housekeeping::run(
            rt.clone(),
            stop_rx.clone(),
        )));
        tasks.extend(crate::ingest::start_sources(&rt, members, &stop_rx));
        let watchdog = systemd_watchdog(heartbeat.clone());
        let scheduler = {
            let (rt, hb, mut stop) = (rt.clone(), heartbeat.clone(), stop_rx);
            tokio::spawn(async move {
                let until_stop = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                crate::scheduler::run(rt, exec, until_stop, hb).await
            })
        };
        Ok(Daemon {
            rt,
            stop,
            scheduler: Some(scheduler),
            ended: None,
            tasks,
            watchdog,
            heartbeat,
            gateway_addr,
            _lock: lock,
        })
    }

    /// The node's shared state (journal, stores, workflows).
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    /// Where the gateway listens, when it runs.
    pub fn gateway_addr(&self) -> Option<std::net::SocketAddr> {
        self.gateway_addr
    }

    /// The time (ms since the epoch) of the scheduler loop's last turn.
    pub fn heartbeat_ms(&self) -> i64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// A handle that stops the node when sent `true` (a signal handler holds one).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Returns once a stop was asked for, or the scheduler ended by itself (an error).
    pub async fn stopped(&mut self) {
        let mut rx = self.stop.subscribe();
        match self.scheduler.as_mut() {
            Some(s) if !s.is_finished() => {
                tokio::select! {
                    _ = stopped(&mut rx) => {}
                    r = s => {
                        // The handle is spent: `shutdown` reports this result.
                        self.ended = Some(joined(r));
                        self.scheduler = None;
                    }
                }
            }
            _ => {}
        }
    }

    /// Stops taking work, lets the running invocations finish for up to `deadline`, then stops
    /// every part. See `Drained` for what happens to invocations still running at the deadline.
    pub async fn shutdown(mut self, deadline: Duration) -> Result<Drained> {
        let _ = self.stop.send(true);
        let mut drained = Drained::Clean;
        let mut result = self.ended.take().unwrap_or(Ok(()));
        if let Some(mut s) = self.scheduler.take() {
            match tokio::time::timeout(deadline, &mut s).await {
                Ok(r) => result = joined(r),
                Err(_) => {
                    tracing::warn!(
                        ?deadline,
                        "drain deadline passed: killing the scripts still running; their invocations run again at the next start"
                    );
                    // Dropping the invocation tasks kills their process groups (exec::local).
                    s.abort();
                    let _ = s.await;
                    drained = Drained::DeadlinePassed;
                }
            }
        }
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        for t in self.tasks.drain(..) {
            // Every part watches the stop signal; a part that does not end in time is cut.
            if tokio::time::timeout(Duration::from_secs(10), t).await.is_err() {
                tracing::warn!("a part of the node did not stop within 10 s; abandoned");
            }
        }
        result.map(|()| drained)
    }
}

/// The scheduler task's end as the daemon's result.
fn joined(r: std::result::Result<crate::runtime::Result<()>, tokio::task::JoinError>) -> Result<()> {
    match r {
        Ok(r) => r.map_err(DaemonError::from),
        Err(e) => Err(DaemonError::Join(e.to_string())),
    }
}

/// Takes `<data_dir>/fogd.pid` with an exclusive `flock` (released by the kernel when the process
/// ends, even on `kill -9`) and writes this process's pid into it. A second daemon on the same
/// folder would delete the first one's vision socket and "recover" its running invocations.
fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::io::AsRawFd;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { path, source }
    };
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join("fogd.pid");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    // SAFETY: flock on a descriptor this function owns; no memory is touched.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut pid = String::new();
        let _ = f.read_to_string(&mut pid);
        return Err(DaemonError::Locked {
            path: data_dir.to_path_buf(),
            pid: pid.trim().to_string(),
        });
    }
    f.set_len(0).map_err(io(&path))?;
    f.rewind().map_err(io(&path))?;
    writeln!(f, "{}", std::process::id()).map_err(io(&path))?;
    Ok(f)
}

/// Binds the OSCAR API; on first start makes the admin password and shows it once.
async fn start_gateway(
    rt: Arc<Runtime>,
    members: crate::ingest::status::Members,
    heartbeat: Arc<AtomicI64>,
    mut stop: watch::Receiver<bool>,
) -> Result<(JoinHandle<()>, std::net::SocketAddr)> {
    use crate::gateway::{auth::Admin, AppState};
    let g = &rt.cfg.gateway;
    let (admin, fresh) = Admin::load_or_create(&rt.cfg.data_dir, &g.admin_user)
        .map_err(|e| DaemonError::Gateway(e.to_string()))?;
    if let Some(handed) = fresh {
        // The path only: logs (journald) are read by more people than the data folder.
        tracing::warn!(
            "gateway admin `{}`: a password was generated and written to {} (readable by this user only; note it, then delete the file; `fogd admin reset-password` makes a new one)",
            admin.user,
            handed.display()
        );
    }
    let listen = |source| DaemonError::Listen {
        addr: g.listen.clone(),
        source,
    };
    let listener = std::net::TcpListener::bind(&g.listen).map_err(listen)?;
    let addr = listener.local_addr().map_err(listen)?;
    let tls = match &g.tls {
        Some(t) => Some(
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&t.cert, &t.key)
                .await
                .map_err(|source| DaemonError::Tls {
                    cert: t.cert.clone(),
                    key: t.key.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(listen = %addr, scheme, "OSCAR API ready");
    let s3 = start_s3(&rt, tls.clone(), stop.clone())?;
    let admin = admin.with_max_failures(g.max_auth_failures_per_minute);
    let state = Arc::new(AppState {
        rt,
        admin,
        members,
        heartbeat,
        s3,
    });
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::gateway::serve(state, listener, tls, shutdown).await {
            tracing::error!("gateway: {e}");
        }
    });
    Ok((task, addr))
}

/// Binds the S3 endpoint over the local store (same TLS as the API). Its default port being
/// taken (a MinIO on the box) is a warning, since nobody asked for that port; a port set in
/// `gateway.s3.listen` must be free.
fn start_s3(
    rt: &Arc<Runtime>,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    mut stop: watch::Receiver<bool>,
) -> Result<Option<crate::gateway::s3::Announce>> {
    use crate::config::S3EndpointConfig;
    use crate::gateway::s3;
    let c = &rt.cfg.gateway.s3;
    if !c.enabled {
        return Ok(None);
    }
    let listener = match std::net::TcpListener::bind(&c.listen) {
        Ok(l) => l,
        Err(e) if c.listen == S3EndpointConfig::DEFAULT_LISTEN => {
            tracing::warn!(
                "S3 endpoint not started: {} is taken ({e}); set gateway.s3.listen to a free address, or gateway.s3.enabled: false",
                c.listen
            );
            return Ok(None);
        }
        Err(source) => {
            return Err(DaemonError::Listen {
                addr: c.listen.clone(),
                source,
            })
        }
    };
    let addr = listener.local_addr().map_err(|source| DaemonError::Listen {
        addr: c.listen.clone(),
        source,
    })?;
    let keys_path = rt.data.s3_keys();
    let keys = s3::Keys::load_or_create(&keys_path).map_err(|source| DaemonError::Io {
        path: keys_path,
        source,
    })?;
    let announce = s3::Announce {
        addr,
        https: tls.is_some(),
        public_url: c.public_url.clone(),
        region: c.region.clone(),
        keys: keys.clone(),
    };
    let app = s3::router(s3::service(rt.clone(), &keys), rt.clone(), &keys);
    let g = rt.cfg.gateway.clone();
    let sweeper = s3::sweep_uploads(rt.clone(), &keys.access);
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = crate::gateway::serve_app(app, &g, listener, tls, shutdown).await {
            tracing::error!("S3 endpoint: {e}");
        }
        sweeper.abort();
    });
    tracing::info!(listen = %addr, endpoint = %announce.endpoint(None), "S3 endpoint ready (keys in {})", rt.data.s3_keys().display());
    Ok(Some(announce))
}

/// When systemd asks for watchdog pings (WatchdogSec=), pings at half its interval, and only
/// while the scheduler's loop is turning: a stuck fogd is restarted by systemd.
fn systemd_watchdog(heartbeat: Arc<AtomicI64>) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled().filter(|p| !p.is_zero())?;
    tracing::info!(?period, "systemd watchdog on");
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(period / 2).await;
            let age = crate::journal::now_ms() - heartbeat.load(Ordering::Relaxed);
            if age < period.as_millis() as i64 {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::error!(age_ms = age, "scheduler loop stalled: no watchdog ping");
            }
        }
    }))
}
