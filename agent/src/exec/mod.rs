//! Executors: where an invocation's script runs. `contract` is the FaaS Supervisor contract
//! (pure); `local` runs scripts as processes on this host; `podman` runs them in containers of
//! the services' images on this host; `kube` runs them as Kubernetes Jobs (k3s); `delegate` hands
//! invocations to other tiers (OSCAR `replicas` / `federation`).

pub mod contract;
pub mod delegate;
pub mod executor;
pub mod grant;
mod invocation;
pub mod kube;
pub mod local;
pub mod outputs;
pub mod podman;
pub mod provenance;
pub mod sandbox;
pub mod scriptlog;

pub use executor::{Executor, Overrun, ScriptStatus};
pub use invocation::execute;

use crate::config::{Config, ExecutorKind};
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

/// The executors, and the delegation client (sends and follows jobs on other tiers). The
/// scheduler owns them; the status topic reads the members' health.
pub struct Executors {
    pub delegator: delegate::Delegator,
    pub local: executor::Local,
    pub podman: executor::Podman,
    pub kube: executor::KubeJobs,
    /// True once the scheduler stops: work that would wait for a cluster leaves off instead.
    pub stopping: tokio::sync::watch::Sender<bool>,
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
        let stopping = tokio::sync::watch::channel(false).0;
        Executors {
            delegator: delegate::Delegator::new(cfg.delegation.call_timeout),
            local: executor::Local {
                sandbox,
                refused: sandbox_refused,
                vision_socket,
            },
            podman: executor::Podman,
            kube: executor::KubeJobs {
                client: kube::Kube::default(),
                stopping: stopping.subscribe(),
            },
            stopping,
        }
    }

    /// The executor that runs a service's scripts (`executor:` in fogd.yaml).
    pub fn of(&self, kind: ExecutorKind) -> &dyn Executor {
        match kind {
            ExecutorKind::Local => &self.local,
            ExecutorKind::Podman => &self.podman,
            ExecutorKind::Kube => &self.kube,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_goes_to_its_executor() {
        let exec = Executors::new(&Config::default(), None);
        for (kind, name) in [
            (ExecutorKind::Local, "local"),
            (ExecutorKind::Podman, "podman"),
            (ExecutorKind::Kube, "kube"),
        ] {
            assert_eq!(exec.of(kind).name(), name);
        }
    }
}
