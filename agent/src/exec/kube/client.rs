//! The API server side of the kube executor: creates the script's ConfigMap and the Job,
//! follows it, reads its pod's exit code and log, deletes it (feature `kube`).

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{job_spec, script_map_name, KubeError, KubeRun};
use crate::config::KubeConfig;
use crate::exec::ScriptStatus;
use crate::fdl::Service;

/// The cluster client, made on first use (a node without kube services never reads a kubeconfig).
#[derive(Default)]
pub struct Kube {
    client: tokio::sync::OnceCell<kube::Client>,
}

impl Kube {
    async fn client(&self, cfg: &KubeConfig) -> Result<kube::Client, KubeError> {
        self.client
            .get_or_try_init(|| async {
                let mut config = match &cfg.kubeconfig {
                    Some(p) => {
                        let kc = kube::config::Kubeconfig::read_from(p).map_err(|e| KubeError::Config {
                            what: p.display().to_string(),
                            msg: e.to_string(),
                        })?;
                        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                            .await
                            .map_err(|e| KubeError::Config {
                                what: p.display().to_string(),
                                msg: e.to_string(),
                            })?
                    }
                    None => kube::Config::infer().await.map_err(|e| KubeError::Config {
                        what: "KUBECONFIG, ~/.kube/config or the pod's service account".into(),
                        msg: e.to_string(),
                    })?,
                };
                config.connect_timeout = Some(Duration::from_secs(5));
                config.read_timeout = Some(Duration::from_secs(30));
                kube::Client::try_from(config).map_err(|e| KubeError::Config {
                    what: "client".into(),
                    msg: e.to_string(),
                })
            })
            .await
            .cloned()
    }

    /// The API server's version (`fogd check`).
    pub async fn server_version(&self, cfg: &KubeConfig) -> Result<String, KubeError> {
        let client = self.client(cfg).await?;
        client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| api_err("version", e))
    }

    pub async fn run(
        &self,
        r: KubeRun<'_>,
        mut stopping: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(ScriptStatus, i64), KubeError> {
        let spec = job_spec(r.cfg, r.svc, r.job, r.node, &r.env, r.timeout);
        let job: Job = serde_json::from_value(spec).map_err(|e| KubeError::Api {
            what: format!("job {}", r.job),
            msg: e.to_string(),
        })?;
        let script = script_text(r.svc)?;
        let mut backoff =
            crate::backoff::Policy::new(Duration::from_secs(1), Duration::from_secs(30)).start();
        let started = Instant::now();
        // Until the Job exists (created now, or found from a run before a restart).
        loop {
            let wait = match self.submit(r.cfg, r.svc, &job, &script).await {
                Ok(adopted) => {
                    if adopted {
                        tracing::info!(
                            job = r.job,
                            "kube: the job exists already (a run before a restart): following it"
                        );
                    }
                    break;
                }
                Err(KubeError::Unreachable(e)) => {
                    let wait = backoff.next_wait();
                    tracing::warn!(job = r.job, retry_in = ?wait, "kube: API server unreachable ({e}); the invocation waits");
                    wait
                }
                Err(e) => return Err(e),
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = crate::runtime::stopped(&mut stopping) => return Err(KubeError::Interrupted(r.job.to_string())),
            }
        }
        let spawned_us = crate::journal::now_us();
        let client = self.client(r.cfg).await?;
        let jobs: Api<Job> = Api::namespaced(client.clone(), &r.cfg.namespace);
        // Follow it. A Job that stays away past its deadline (plus a margin) was lost with its
        // cluster: the invocation times out.
        let status = loop {
            match jobs.get_opt(r.job).await {
                Ok(Some(j)) => {
                    if let Some(s) = ended(&j) {
                        break s;
                    }
                }
                Ok(None) => {
                    return Err(KubeError::Api {
                        what: format!("job {}", r.job),
                        msg: "deleted from the cluster before it ended".into(),
                    })
                }
                Err(e) => tracing::warn!(job = r.job, "kube: cannot read the job ({e}); waiting"),
            }
            if started.elapsed() > r.timeout + Duration::from_secs(300) {
                break ScriptStatus::TimedOut;
            }
            tokio::select! {
                _ = tokio::time::sleep(r.cfg.poll) => {}
                _ = crate::runtime::stopped(&mut stopping) => return Err(KubeError::Interrupted(r.job.to_string())),
            }
        };
        let status = match status {
            // The pod's exit code, when the cluster says it.
            ScriptStatus::Exited(1) => self
                .exit_code(&client, r.cfg, r.job)
                .await
                .map_or(status, ScriptStatus::Exited),
            s => s,
        };
        self.copy_log(&client, r.cfg, r.job, r.log_path).await;
        if !r.cfg.keep_jobs {
            if let Err(e) = jobs.delete(r.job, &DeleteParams::background()).await {
                tracing::warn!(
                    job = r.job,
                    "kube: job not deleted ({e}); ttlSecondsAfterFinished removes it"
                );
            }
        }
        Ok((status, spawned_us))
    }

    /// Puts the script's ConfigMap and creates the Job. True when the Job was there already.
    async fn submit(
        &self,
        cfg: &KubeConfig,
        svc: &Service,
        job: &Job,
        script: &str,
    ) -> Result<bool, KubeError> {
        let client = self.client(cfg).await?;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &cfg.namespace);
        let name = script_map_name(&svc.name);
        let map: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": cfg.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "fogd", "oscar_service": svc.name}},
            "data": {"script.sh": script},
        }))
        .map_err(|e| KubeError::Api {
            what: format!("configmap {name}"),
            msg: e.to_string(),
        })?;
        match maps.create(&PostParams::default(), &map).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {
                // The script may have changed since: the map follows the FDL.
                let patch = json!({"data": {"script.sh": script}});
                maps.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map_err(|e| api_err(&format!("configmap {name}"), e))?;
            }
            Err(e) => return Err(api_err(&format!("configmap {name}"), e)),
        }
        let jobs: Api<Job> = Api::namespaced(client, &cfg.namespace);
        let job_name = job.metadata.name.clone().unwrap_or_default();
        match jobs.create(&PostParams::default(), job).await {
            Ok(_) => Ok(false),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(true),
            Err(e) => Err(api_err(&format!("job {job_name}"), e)),
        }
    }

    async fn pods_of(&self, client: &kube::Client, cfg: &KubeConfig, job: &str) -> Vec<Pod> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        pods.list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
    }

    async fn exit_code(&self, client: &kube::Client, cfg: &KubeConfig, job: &str) -> Option<i32> {
        self.pods_of(client, cfg, job).await.iter().find_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .iter()
                .find_map(|c| c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code))
        })
    }

    /// The pod's log goes where `fogd logs` reads (after what the supervisor said, if anything).
    async fn copy_log(&self, client: &kube::Client, cfg: &KubeConfig, job: &str, log_path: &Path) {
        let pods = self.pods_of(client, cfg, job).await;
        let api: Api<Pod> = Api::namespaced(client.clone(), &cfg.namespace);
        let mut text = format!("[fogd] job {job} in namespace {}\n", cfg.namespace);
        match pods.first().and_then(|p| p.metadata.name.clone()) {
            Some(name) => match api.logs(&name, &LogParams::default()).await {
                Ok(log) => text.push_str(&log),
                Err(e) => text.push_str(&format!("[fogd] the log of pod {name} could not be read: {e}\n")),
            },
            None => text.push_str("[fogd] no pod of this job was found (removed, or never scheduled)\n"),
        }
        if let Some(dir) = log_path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let _ = tokio::fs::write(log_path, text).await;
    }
}

/// How a Job ended, if it has.
fn ended(j: &Job) -> Option<ScriptStatus> {
    let st = j.status.as_ref()?;
    let failed_reason = st.conditions.iter().flatten().find_map(|c| {
        (c.type_ == "Failed" && c.status == "True").then(|| c.reason.clone().unwrap_or_default())
    });
    if st.succeeded.unwrap_or(0) > 0 {
        Some(ScriptStatus::Exited(0))
    } else if failed_reason.as_deref() == Some("DeadlineExceeded") {
        Some(ScriptStatus::TimedOut)
    } else if st.failed.unwrap_or(0) > 0 || failed_reason.is_some() {
        Some(ScriptStatus::Exited(1))
    } else {
        None
    }
}

fn api_err(what: &str, e: kube::Error) -> KubeError {
    match e {
        kube::Error::Api(s) => KubeError::Api {
            what: what.to_string(),
            msg: format!("{} ({})", s.message, s.code),
        },
        // Not an answer of the API server: connection refused, timeout, TLS.
        other => KubeError::Unreachable(other.to_string()),
    }
}

fn script_text(svc: &Service) -> Result<String, KubeError> {
    match &svc.script {
        Some(crate::fdl::Script::File(p)) => std::fs::read_to_string(p).map_err(|e| KubeError::Config {
            what: p.display().to_string(),
            msg: e.to_string(),
        }),
        Some(crate::fdl::Script::Inline(s)) => Ok(s.clone()),
        Some(crate::fdl::Script::Unchecked(p)) => Err(KubeError::Config {
            what: p.clone(),
            msg: "the script was not resolved".into(),
        }),
        None => Err(KubeError::Config {
            what: svc.name.clone(),
            msg: "the service has no script".into(),
        }),
    }
}
