//! Executors: where an invocation's script runs. `contract` is the FaaS Supervisor contract
//! (pure); `local` runs scripts as processes on this host; `podman` runs them in containers of
//! the services' images on this host; `kube` runs them as Kubernetes Jobs (k3s); `delegate` hands
//! invocations to other tiers (OSCAR `replicas` / `federation`).

pub mod contract;
pub mod delegate;
pub mod grant;
mod invocation;
pub mod kube;
pub mod local;
pub mod outputs;
pub mod podman;
pub mod provenance;
pub mod sandbox;

pub use invocation::execute;

use crate::config::Config;
use crate::journal::JournalError;
use crate::runtime::RuntimeError;
use crate::store::StoreError;

/// Why an invocation could not run to its end (a script that fails is an `Outcome`, not this).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Script(#[from] local::ExecError),
    #[error(transparent)]
    Kube(#[from] kube::KubeError),
    #[error(transparent)]
    Podman(#[from] podman::PodmanError),
    #[error(transparent)]
    Output(#[from] crate::exec::outputs::OutputError),
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Runtime(e.into())
    }
}

impl From<JournalError> for Error {
    fn from(e: JournalError) -> Self {
        Error::Runtime(e.into())
    }
}

/// The executors' long-lived handles: the delegation client (sends and follows jobs on other
/// tiers) and the Kubernetes client (made on first use). The scheduler owns them; the status
/// topic reads the members' health.
pub struct Executors {
    pub delegator: delegate::Delegator,
    pub kube: kube::Kube,
    /// The vision worker's socket, when the daemon started one: scripts get it as
    /// FOGD_VISION_SOCKET, so their `fogd anonymize` runs with the models kept loaded.
    pub vision_socket: Option<std::path::PathBuf>,
    /// True once the scheduler stops: work that would wait for a cluster leaves off instead.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The sandbox local scripts run in (`isolation:`); None: unconfined.
    pub sandbox: Option<sandbox::Sandbox>,
    /// Why scripts cannot run, when `isolation: namespaces` found no sandbox.
    pub sandbox_refused: Option<String>,
}

impl Executors {
    pub fn new(cfg: &Config, vision_socket: Option<std::path::PathBuf>) -> Executors {
        let (sandbox, sandbox_refused) = match sandbox::resolve(cfg.isolation) {
            Ok(s) => (s, None),
            Err(e) => (None, Some(e)),
        };
        let local_used = cfg.uses_executor(crate::config::ExecutorKind::Local);
        match (&sandbox, &sandbox_refused, cfg.isolation) {
            (_, Some(e), _) if local_used => tracing::error!("{e}: local scripts will not run"),
            (None, None, sandbox::Isolation::Auto) if local_used => tracing::warn!(
                "local scripts run unconfined ({}): each can read the journal, every service's secrets and the admin's keys; install bubblewrap",
                sandbox::probe().err().unwrap_or_default()
            ),
            (None, None, sandbox::Isolation::None) if local_used => {
                tracing::warn!("isolation: none: local scripts can read everything fogd can")
            }
            _ => {}
        }
        Executors {
            delegator: delegate::Delegator::new(cfg.delegation.call_timeout),
            kube: kube::Kube::default(),
            vision_socket,
            stopping: tokio::sync::watch::channel(false).0,
            sandbox,
            sandbox_refused,
        }
    }
}
