//! Following delegated jobs on their members: each poll asks every member with jobs in flight for
//! their states, ends those that ended (outputs fetched or pushed), and gives back, to run here,
//! the jobs of a member that stays away or holds them too long.

use std::sync::Arc;
use std::time::Duration;

use super::*;

impl Delegator {
    /// Follows delegated jobs (until the task is aborted): their end is journalled, their log
    /// copied here, and jobs of a remote that stays away are given back.
    pub async fn follow(&self, rt: &Arc<Runtime>) {
        loop {
            if let Err(e) = self.follow_once(rt).await {
                tracing::error!("delegation follow-up: {e}");
            }
            tokio::time::sleep(rt.cfg.delegation.poll).await;
        }
    }

    async fn follow_once(&self, rt: &Arc<Runtime>) -> crate::runtime::Result<()> {
        let followed = rt.journal.call(|j| j.followed()).await?;
        if followed.is_empty() {
            return Ok(());
        }
        let wf = rt.workflow();
        // One listing per (member, remote service).
        let mut groups: BTreeMap<(String, String), Vec<crate::journal::Followed>> = BTreeMap::new();
        for f in followed {
            let member = f.inv.ran_on.clone().unwrap_or_default();
            groups.entry((member, f.inv.service.clone())).or_default().push(f);
        }
        for ((member, service), jobs) in groups {
            let m = wf
                .service(&service)
                .and_then(|s| s.delegation.as_ref())
                .and_then(|d| d.members.iter().find(|m| m.name() == member).cloned());
            let Some(m) = m else {
                for f in &jobs {
                    self.give_back(
                        rt,
                        f,
                        &format!("member `{member}` is no longer in the FDL of `{service}`"),
                    )
                    .await;
                }
                continue;
            };
            let remote = m.service_name.clone().unwrap_or_else(|| service.clone());
            match self.remote_jobs(rt, &m, &remote, &jobs).await {
                Ok(states) => {
                    self.succeeded(&member);
                    let mut alive = Vec::new();
                    for f in &jobs {
                        let job = f.inv.remote_job.as_deref().unwrap_or(&f.inv.uuid);
                        match states.get(job).map(String::as_str) {
                            Some("Succeeded") => self.ended(rt, &m, &remote, f, State::Succeeded).await,
                            Some("Failed") => self.ended(rt, &m, &remote, f, State::Failed).await,
                            Some(state) => match held_too_long(rt, f) {
                                Some(held) => {
                                    self.give_back(
                                        rt,
                                        f,
                                        &format!(
                                            "`{member}` still reports it {state} after {}s",
                                            held.as_secs()
                                        ),
                                    )
                                    .await
                                }
                                None => alive.push(f.inv.id),
                            },
                            None => {
                                self.stale(rt, f, &format!("`{member}` does not know job `{job}`"))
                                    .await
                            }
                        }
                    }
                    rt.journal.call(move |j| j.remote_contact(&alive)).await?;
                }
                Err(e) => {
                    self.failed(
                        &member,
                        &e.to_string(),
                        rt.cfg.sync.max_backoff.min(Duration::from_secs(60)),
                    );
                    for f in &jobs {
                        self.stale(rt, f, &format!("`{member}` unreachable ({e})")).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives the job back when the remote has said nothing of it for `reclaim_after`.
    async fn stale(&self, rt: &Runtime, f: &crate::journal::Followed, why: &str) {
        let silent = since(f.contact_ms);
        if silent >= rt.cfg.delegation.reclaim_after {
            self.give_back(rt, f, &format!("{why} for {}s", silent.as_secs()))
                .await;
        }
    }

    async fn give_back(&self, rt: &Runtime, f: &crate::journal::Followed, why: &str) {
        let note = format!(
            "given back from {}: {why}; runs here",
            f.inv.ran_on.as_deref().unwrap_or("?")
        );
        let (id, n) = (f.inv.id, note.clone());
        match rt.journal.call(move |j| j.undelegate(id, &n, true)).await {
            Ok(true) => {
                tracing::warn!(service = %f.inv.service, job = %f.inv.uuid, "{note}");
                rt.event(
                    "invocation_reclaimed",
                    json!({"service": f.inv.service, "job": f.inv.uuid, "from": f.inv.ran_on, "reason": why}),
                );
                rt.wake.notify_one();
            }
            Ok(false) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// The states (OSCAR's `Pending`, `Running`, `Succeeded`, `Failed`) of the remote's jobs,
    /// paging until every followed job is seen or the list ends.
    async fn remote_jobs(
        &self,
        rt: &Runtime,
        m: &Member,
        remote: &str,
        jobs: &[crate::journal::Followed],
    ) -> Result<BTreeMap<String, String>, DelegateError> {
        let (peer, endpoint) = peer_of(rt, m)?;
        let mut want: std::collections::BTreeSet<&str> = jobs
            .iter()
            .map(|f| f.inv.remote_job.as_deref().unwrap_or(&f.inv.uuid))
            .collect();
        let mut out = BTreeMap::new();
        let mut page = String::new();
        loop {
            let url = format!("{endpoint}/system/logs/{remote}?page={page}");
            let resp = basic(self.client(peer.ssl_verify && m.ssl_verify).get(&url), &peer)
                .send()
                .await
                .map_err(|source| DelegateError::Http {
                    member: m.name(),
                    url: url.clone(),
                    source,
                })?;
            if !resp.status().is_success() {
                return Err(member_err(m, format!("{url} answered {}", resp.status())));
            }
            let v: Value = resp.json().await.map_err(|source| DelegateError::Http {
                member: m.name(),
                url: url.clone(),
                source,
            })?;
            if let Some(map) = v["jobs"].as_object() {
                for (name, j) in map {
                    want.remove(name.as_str());
                    out.insert(name.clone(), j["status"].as_str().unwrap_or("").to_string());
                }
            }
            page = v["next_page"].as_str().unwrap_or("").to_string();
            if want.is_empty() || page.is_empty() {
                return Ok(out);
            }
        }
    }

    /// A followed job ended there: its log comes here, then the journal says how it ended.
    async fn ended(
        &self,
        rt: &Runtime,
        m: &Member,
        remote: &str,
        f: &crate::journal::Followed,
        state: State,
    ) {
        let job = f.inv.remote_job.clone().unwrap_or_else(|| f.inv.uuid.clone());
        let member = m.name();
        let mut log = format!("[fogd] ran on {member} as job {job}\n");
        if let Ok((peer, endpoint)) = peer_of(rt, m) {
            let url = format!("{endpoint}/system/logs/{remote}/{job}");
            if let Ok(resp) = basic(self.client(peer.ssl_verify && m.ssl_verify).get(&url), &peer)
                .send()
                .await
            {
                if resp.status().is_success() {
                    log.push_str(&resp.text().await.unwrap_or_default());
                }
            }
        }
        let path = rt.log_path(&f.inv.service, &f.inv.uuid);
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        let _ = tokio::fs::write(&path, log).await;
        let outcome = Outcome {
            state,
            exit_code: None,
            error: (state == State::Failed)
                .then(|| format!("failed on {member} (job {job}); its log is in fogd logs")),
            outputs: 0,
            spawned_us: None,
        };
        let (id, o) = (f.inv.id, outcome.clone());
        match rt.journal.call(move |j| j.finish_remote(id, &o)).await {
            Ok(true) => {
                let _ = rt.finished.send(id);
                let took = since(f.inv.started_ms.unwrap_or(f.inv.created_ms));
                rt.metrics
                    .observe_invocation_at(&f.inv.service, state, &member, took);
                rt.event(
                    "invocation_done",
                    json!({"service": f.inv.service, "job": f.inv.uuid, "key": f.inv.key,
                           "state": state.as_str(), "ran_on": member, "seconds": took.as_secs_f64()}),
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// How long the remote has held a job, once that is over `delegation.running_limit` (a remote
/// whose outbox cannot drain reports its jobs running for ever).
fn held_too_long(rt: &Runtime, f: &crate::journal::Followed) -> Option<Duration> {
    let limit = rt.cfg.delegation.running_limit;
    let held = since(f.inv.started_ms?);
    (!limit.is_zero() && held >= limit).then_some(held)
}

/// Time since a journal timestamp (ms), zero if the clock went back.
fn since(ms: i64) -> Duration {
    Duration::from_millis((now_ms() - ms).max(0) as u64)
}
