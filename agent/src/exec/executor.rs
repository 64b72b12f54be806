//! The executor seam: where an invocation's script runs. `invocation.rs` prepares the work
//! folder and the input and stores the outputs; an `Executor` runs the script in between: a
//! local process (`Local`), a container (`Podman`) or a Kubernetes Job (`KubeJobs`).
//! Delegation to another tier is decided before an invocation runs here (`scheduler`,
//! `delegate/`), so it is not one of them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::local::{self, ScriptSpec};
use super::{kube, podman, sandbox, Error};
use crate::fdl::Service;
use crate::runtime::Runtime;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a script's run ended, wherever it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptStatus {
    Exited(i32),
    /// Killed by a signal (its number).
    Signalled(i32),
    TimedOut,
    /// Killed by the kernel: over its memory limit (a container's).
    OutOfMemory,
    /// Killed while running: it went over its disk budget.
    OverBudget(Overrun),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overrun {
    /// Its work folder grew over `max_work_bytes`.
    WorkFolder,
    /// The data folder's free space fell under `min_free_bytes` while it ran.
    Disk,
}

/// The FaaS Supervisor contract's variables for the folders the script sees (the input folder,
/// the output folder, the input file), the camera's privacy settings included.
pub type ContractEnv<'a> = dyn Fn(&Path, &Path, Option<&Path>) -> Vec<(String, String)> + Send + Sync + 'a;

/// One run, as every executor is given it.
pub struct Run<'a> {
    pub rt: &'a Arc<Runtime>,
    pub svc: &'a Service,
    pub job: &'a str,
    /// The invocation's work folder, with `input/` and `output/` in it.
    pub dir: &'a Path,
    pub in_dir: &'a Path,
    pub out_dir: &'a Path,
    /// The input fetched into `in_dir` (None with `file_stage_in`).
    pub input_file: Option<&'a Path>,
    pub env: &'a ContractEnv<'a>,
    /// `mount:` on the local store: its folder here, and where OSCAR's pods see it.
    pub mount: Option<(PathBuf, String)>,
    pub timeout: Duration,
    pub log_path: &'a Path,
    /// An interrupted attempt's run is taken over rather than started again.
    pub adopt: bool,
}

impl Run<'_> {
    /// The input's path as a pod or container sees it.
    fn input_inside(&self) -> Option<PathBuf> {
        self.input_file
            .and_then(|f| f.file_name())
            .map(|n| Path::new(kube::POD_INPUT_DIR).join(n))
    }
}

pub trait Executor: Send + Sync {
    /// Its name in `executor:` and in logs.
    fn name(&self) -> &'static str;

    /// Whether a run of `job` that an interrupted attempt left is still there to take over (the
    /// work folder then stays: it may hold outputs already).
    fn adoptable<'a>(&'a self, rt: &'a Runtime, job: &'a str) -> BoxFuture<'a, bool>;

    /// Runs the script; how it ended and when it started (µs since the epoch).
    fn run<'a>(&'a self, run: Run<'a>) -> BoxFuture<'a, Result<(ScriptStatus, i64), Error>>;
}

/// Scripts as processes on this host, in the namespace sandbox when there is one, with the warm
/// vision worker's socket.
pub struct Local {
    pub sandbox: Option<sandbox::Sandbox>,
    /// Why scripts cannot run, when `isolation: namespaces` found no sandbox.
    pub refused: Option<String>,
    pub vision_socket: Option<PathBuf>,
}

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn adoptable<'a>(&'a self, _rt: &'a Runtime, _job: &'a str) -> BoxFuture<'a, bool> {
        // A process does not outlive the fogd that waited on it: its leftovers are killed.
        Box::pin(async { false })
    }

    fn run<'a>(&'a self, r: Run<'a>) -> BoxFuture<'a, Result<(ScriptStatus, i64), Error>> {
        Box::pin(async move {
            if let Some(why) = &self.refused {
                return Err(local::ExecError::Sandbox(why.clone()).into());
            }
            let (rt, cfg) = (r.rt, &r.rt.cfg);
            let mut env = (r.env)(r.in_dir, r.out_dir, r.input_file);
            if let Some((dir, _)) = &r.mount {
                env.push(("MOUNT_PATH".into(), dir.display().to_string()));
            }
            // The worker takes this script's requests for its own folders only (`grant`).
            let roots: Vec<&Path> = std::iter::once(r.dir)
                .chain(r.mount.iter().map(|(d, _)| d.as_path()))
                .collect();
            let _grant = match &self.vision_socket {
                Some(sock) => {
                    let grants = rt.data.root().join(fogd_vision_proto::grant::DIR);
                    let g = super::grant::VisionGrant::create(rt.data.root(), &roots, &env)
                        .map_err(|source| local::ExecError::Io { path: grants, source })?;
                    env.push((
                        fogd_vision_proto::builtin::ENV_SOCKET.into(),
                        sock.display().to_string(),
                    ));
                    env.push((fogd_vision_proto::grant::ENV_TOKEN.into(), g.token.clone()));
                    Some(g)
                }
                None => None,
            };
            Ok(local::run_script(ScriptSpec {
                script: r.svc.script.as_ref(),
                dir: r.dir,
                env,
                timeout: r.timeout,
                log_path: r.log_path,
                log_cap: cfg.log_cap_bytes,
                budget: local::DiskBudget {
                    max_work_bytes: cfg.max_work_bytes,
                    data_dir: cfg.data_dir.clone(),
                    // Under the line where new work stops: what runs may finish, not fill the disk.
                    min_free_bytes: cfg.min_free_bytes / 2,
                },
                sandbox: self.sandbox.as_ref(),
                shared: r
                    .mount
                    .iter()
                    .map(|(d, _)| d.clone())
                    .chain(self.vision_socket.clone())
                    .collect(),
            })
            .await?)
        })
    }
}

/// Scripts in a container of the service's image on this host: the folders bind-mounted where
/// OSCAR's pods have them, fogd as the supervisor inside.
pub struct Podman;

impl Executor for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn adoptable<'a>(&'a self, rt: &'a Runtime, job: &'a str) -> BoxFuture<'a, bool> {
        // A container is found by its name.
        Box::pin(podman::exists(&rt.cfg.podman, job))
    }

    fn run<'a>(&'a self, r: Run<'a>) -> BoxFuture<'a, Result<(ScriptStatus, i64), Error>> {
        Box::pin(async move {
            let inside = r.input_inside();
            let mut env = (r.env)(
                Path::new(podman::INPUT_DIR),
                Path::new(podman::OUTPUT_DIR),
                inside.as_deref(),
            );
            env.extend([
                ("FOGD_JOB".to_string(), r.job.to_string()),
                ("FOGD_SCRIPT".to_string(), podman::SCRIPT.to_string()),
            ]);
            if let Some((_, inside)) = &r.mount {
                env.push(("MOUNT_PATH".into(), inside.clone()));
            }
            let script = local::script_file(r.svc.script.as_ref(), r.dir).await?;
            let cfg = &r.rt.cfg;
            Ok(podman::run(podman::PodmanRun {
                cfg: &cfg.podman,
                svc: r.svc,
                job: r.job,
                node: &r.rt.node,
                dir: r.dir,
                script: &script,
                env,
                mount: r.mount,
                timeout: r.timeout,
                log_path: r.log_path,
                log_cap: cfg.log_cap_bytes,
                adopt: r.adopt,
            })
            .await?)
        })
    }
}

/// Scripts as Kubernetes Jobs (k3s): the pod's supervisor fetches the input from the work
/// folder and sends the outputs back into it through the gateway.
pub struct KubeJobs {
    pub client: kube::Kube,
    /// True once the scheduler stops: a Job that would keep fogd waiting is left to run.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

impl Executor for KubeJobs {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn adoptable<'a>(&'a self, _rt: &'a Runtime, _job: &'a str) -> BoxFuture<'a, bool> {
        // A Job is found by creating it again: always worth trying.
        Box::pin(async { true })
    }

    fn run<'a>(&'a self, r: Run<'a>) -> BoxFuture<'a, Result<(ScriptStatus, i64), Error>> {
        Box::pin(async move {
            let inside = r.input_inside();
            let contract = (r.env)(
                Path::new(kube::POD_INPUT_DIR),
                Path::new(kube::POD_OUTPUT_DIR),
                inside.as_deref(),
            );
            let env = kube::pod_environment(r.rt, r.job, contract)?;
            let run = kube::KubeRun {
                cfg: &r.rt.cfg.kube,
                svc: r.svc,
                job: r.job,
                node: &r.rt.node,
                env,
                timeout: r.timeout,
                log_path: r.log_path,
            };
            Ok(self.client.run(run, self.stopping.clone()).await?)
        })
    }
}
