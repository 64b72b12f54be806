//! Delegation: running a service's invocation on another tier when this node is saturated, as
//! OSCAR does with `replicas` (<= 3.x) and `federation` (4.x).
//!
//! Three ways out, by member `type`:
//! - `oscar` (**call**): `POST <cluster endpoint>/job/<service>` with OSCAR's delegated-event body
//!   (an object in a store the remote can read) or the input itself, base64 (an input only this
//!   node holds), with `X-Delegated-Job-ID` (the job keeps its name there, and a retried call
//!   makes no second job) and `X-Delegated-From`. fogd then follows the job through the remote's
//!   `/system/logs/<service>`, copies its log into `fogd logs`, and gives the job back (it runs
//!   here) when the remote stays unreachable for `delegation.reclaim_after`.
//! - `endpoint`: the same body POSTed to a URL; handed over, not followed (as OSCAR).
//! - `push` (fogd's own): the input object goes into the remote tier's input folder through the
//!   outbox, whose own trigger runs it. Works through NAT, to fogd, OSCAR, or an S3 bucket that
//!   triggers a Lambda function; handed over, not followed.
//!
//! A camera's raw item is never delegated (the journal's claim leaves it out).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use serde_json::{json, Value};

use crate::fdl::{Delegation, Member, Peer, Service};
use crate::journal::{now_ms, Enqueued, Invocation, Outcome, State};
use crate::runtime::Runtime;

mod call;
mod follow;

use call::{basic, body_for, peer_of};

#[derive(Debug, thiserror::Error)]
pub enum DelegateError {
    #[error("member {member}: {msg}")]
    Member { member: String, msg: String },
    #[error("member {member}: {url}: {source}")]
    Http {
        member: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

fn member_err(m: &Member, msg: impl Into<String>) -> DelegateError {
    DelegateError::Member {
        member: m.name(),
        msg: msg.into(),
    }
}

#[derive(Default)]
struct MemberState {
    /// Not tried again before this (it failed; the wait doubles, capped).
    down_until: Option<Instant>,
    failures: u32,
    last_error: Option<String>,
    /// The remote service's token (fetched with the cluster's credentials, as OSCAR does).
    token: Option<String>,
}

/// A member's health, for `fogd check`, the metrics and the status topic.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MemberHealth {
    pub member: String,
    pub up: bool,
    pub failures: u32,
    pub last_error: Option<String>,
}

/// Shared by the scheduler (sends) and the follower (polls).
pub struct Delegator {
    http: reqwest::Client,
    /// For members with `ssl_verify: false`.
    http_insecure: reqwest::Client,
    members: Mutex<BTreeMap<String, MemberState>>,
}

impl Delegator {
    pub fn new(timeout: Duration) -> Delegator {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .danger_accept_invalid_certs(insecure)
                .build()
                .unwrap_or_default()
        };
        Delegator {
            http: build(false),
            http_insecure: build(true),
            members: Mutex::new(BTreeMap::new()),
        }
    }

    fn client(&self, verify: bool) -> &reqwest::Client {
        if verify {
            &self.http
        } else {
            &self.http_insecure
        }
    }

    fn with<T>(&self, member: &str, f: impl FnOnce(&mut MemberState) -> T) -> T {
        let mut m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        f(m.entry(member.to_string()).or_default())
    }

    fn is_up(&self, member: &str) -> bool {
        self.with(member, |s| s.down_until.is_none_or(|t| Instant::now() >= t))
    }

    fn failed(&self, member: &str, err: &str, cap: Duration) {
        let now = Instant::now();
        let counted = self.with(member, |s| {
            s.last_error = Some(err.to_string());
            s.token = None;
            // Calls that were in flight together fail together: one failure per down spell.
            if s.down_until.is_some_and(|t| now < t) {
                return None;
            }
            s.failures += 1;
            let wait = crate::backoff::Policy::new(Duration::from_secs(1), cap).delay(s.failures);
            s.down_until = Some(now + wait);
            Some((s.failures, wait))
        });
        if let Some((n, wait)) = counted {
            tracing::warn!(%member, failures = n, retry_in = ?wait, "delegation: {err}");
        }
    }

    fn succeeded(&self, member: &str) {
        let was_down = self.with(member, |s| {
            let was = s.failures > 0;
            s.failures = 0;
            s.down_until = None;
            s.last_error = None;
            was
        });
        if was_down {
            tracing::info!(%member, "delegation: reachable again");
        }
    }

    pub fn health(&self) -> Vec<MemberHealth> {
        let now = Instant::now();
        let m = self.members.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(k, s)| MemberHealth {
                member: k.clone(),
                up: s.down_until.is_none_or(|t| now >= t),
                failures: s.failures,
                last_error: s.last_error.clone(),
            })
            .collect()
    }

    /// How many more invocations of this service may go out now: room on the members that are
    /// up (jobs in flight on each stay under `max_in_flight`).
    pub fn room(&self, rt: &Runtime, d: &Delegation) -> usize {
        let mut room = 0;
        for m in d.members.iter().filter(|m| m.priority < 101) {
            let name = m.name();
            if !self.is_up(&name) || (m.kind == "push" && !push_link_up(rt, m)) {
                continue;
            }
            let busy = rt.journal.in_flight(&name).unwrap_or(usize::MAX);
            room += rt.cfg.delegation.max_in_flight.saturating_sub(busy);
        }
        room
    }

    /// Members in the order the policy tries them.
    async fn order(&self, rt: &Runtime, d: &Delegation) -> Vec<Member> {
        let mut ms: Vec<Member> = d
            .members
            .iter()
            .filter(|m| m.priority < 101 && self.is_up(&m.name()))
            .cloned()
            .collect();
        match d.policy.as_str() {
            "random" => ms.shuffle(&mut rand::thread_rng()),
            "load-based" | "topsis" => {
                // Most free CPU first (OSCAR's load-based; topsis is approximated by it).
                let mut scored = Vec::with_capacity(ms.len());
                for m in ms {
                    let free = self.free_cpu(rt, &m).await;
                    scored.push((free, m));
                }
                scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.priority.cmp(&b.1.priority)));
                ms = scored.into_iter().map(|(_, m)| m).collect();
            }
            _ => ms.sort_by_key(|m| m.priority),
        }
        ms
    }

    /// Free CPU (millicores) of an `oscar` member from its `/system/status`; -1 when unknown.
    async fn free_cpu(&self, rt: &Runtime, m: &Member) -> i64 {
        let Ok((peer, endpoint)) = peer_of(rt, m) else {
            return -1;
        };
        let url = format!("{endpoint}/system/status");
        let req = basic(self.client(peer.ssl_verify && m.ssl_verify).get(&url), &peer);
        let Ok(resp) = req.send().await else { return -1 };
        let Ok(v) = resp.json::<Value>().await else {
            return -1;
        };
        let cluster = &v["cluster"];
        cluster["metrics"]["cpu"]["total_free_cores"]
            .as_f64()
            .map(|c| (c * 1000.0) as i64)
            .unwrap_or(-1)
    }

    /// Sends one claimed invocation out; when no member takes it, it goes back to the queue
    /// (and runs here).
    pub async fn send(&self, rt: &Arc<Runtime>, inv: Invocation, svc: Service) {
        let Some(d) = svc.delegation.as_ref() else {
            let _ = rt
                .journal
                .undelegate(inv.id, "service has no delegation members", false);
            return;
        };
        let mut errors = Vec::new();
        for m in self.order(rt, d).await {
            let name = m.name();
            let r = match m.kind.as_str() {
                "push" => self.push(rt, &inv, &m).await.map(|()| None),
                "endpoint" => self.call(rt, &inv, &svc, &m).await.map(|_| None),
                _ => self.call(rt, &inv, &svc, &m).await.map(Some),
            };
            match r {
                Ok(remote_job) => {
                    self.succeeded(&name);
                    let (id, n, r) = (inv.id, name.clone(), remote_job.clone());
                    if let Err(e) = rt
                        .journal
                        .call(move |j| j.delegated_to(id, &n, r.as_deref()))
                        .await
                    {
                        tracing::error!("{e}");
                    }
                    tracing::debug!(service = %svc.name, job = %inv.uuid, member = %name, "delegated");
                    rt.event(
                        "invocation_delegated",
                        json!({"service": svc.name, "job": inv.uuid, "key": inv.key, "to": name,
                               "followed": remote_job.is_some()}),
                    );
                    if remote_job.is_none() {
                        rt.metrics
                            .observe_invocation_at(&svc.name, State::Delegated, &name, Duration::ZERO);
                    }
                    return;
                }
                Err(e) => {
                    self.failed(
                        &name,
                        &e.to_string(),
                        rt.cfg.sync.max_backoff.min(Duration::from_secs(60)),
                    );
                    errors.push(e.to_string());
                }
            }
        }
        let note = if errors.is_empty() {
            "not delegated: no member is up; runs here".to_string()
        } else {
            format!("not delegated ({}); runs here", errors.join("; "))
        };
        // A later claim may still send it out, once a member is back.
        let id = inv.id;
        match rt.journal.call(move |j| j.undelegate(id, &note, false)).await {
            Ok(_) => rt.wake.notify_one(),
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// `oscar` and `endpoint` members: POST the job. Returns the job's name there.
    async fn call(
        &self,
        rt: &Runtime,
        inv: &Invocation,
        svc: &Service,
        m: &Member,
    ) -> Result<String, DelegateError> {
        let (url, peer) = if m.kind == "endpoint" {
            (m.url.clone().unwrap_or_default(), None)
        } else {
            let (peer, endpoint) = peer_of(rt, m)?;
            let remote = m.service_name.as_deref().unwrap_or(&svc.name);
            (format!("{endpoint}/job/{remote}"), Some(peer))
        };
        let verify = m.ssl_verify && peer.as_ref().is_none_or(|p| p.ssl_verify);
        let (body, input_name) = body_for(rt, inv, m)?;
        let mut retried = false;
        loop {
            let mut req = self
                .client(verify)
                .post(&url)
                .header("X-Delegated-Job-ID", &inv.uuid)
                .header("X-Delegated-From", &rt.node)
                .body(body.clone());
            if let Some(n) = &input_name {
                req = req.header("X-Fogd-Input-Name", n);
            }
            for (k, v) in &m.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some(peer) = &peer {
                req = match self.token(rt, m, svc, peer).await {
                    Some(t) => req.bearer_auth(t),
                    None => basic(req, peer),
                };
            }
            let resp = req.send().await.map_err(|source| DelegateError::Http {
                member: m.name(),
                url: url.clone(),
                source,
            })?;
            let status = resp.status();
            if status == reqwest::StatusCode::UNAUTHORIZED && !retried && peer.is_some() {
                // A rotated token: fetch it again once.
                self.with(&m.name(), |s| s.token = None);
                retried = true;
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                return Err(member_err(
                    m,
                    format!(
                        "{url} answered {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ),
                ));
            }
            let job = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["jobName"].as_str().map(str::to_string))
                .filter(|j| !j.is_empty())
                .unwrap_or_else(|| inv.uuid.clone());
            return Ok(job);
        }
    }

    /// The remote service's token, fetched with the cluster's credentials and cached.
    async fn token(&self, rt: &Runtime, m: &Member, svc: &Service, peer: &Peer) -> Option<String> {
        if let Some(t) = self.with(&m.name(), |s| s.token.clone()) {
            return Some(t);
        }
        peer.auth_user.as_ref()?;
        let (_, endpoint) = peer_of(rt, m).ok()?;
        let remote = m.service_name.as_deref().unwrap_or(&svc.name);
        let url = format!("{endpoint}/system/services/{remote}");
        let resp = basic(self.client(peer.ssl_verify && m.ssl_verify).get(&url), peer)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let t = resp.json::<Value>().await.ok()?["token"]
            .as_str()
            .filter(|t| !t.is_empty())?
            .to_string();
        self.with(&m.name(), |s| s.token = Some(t.clone()));
        Some(t)
    }

    /// `push` members: the input goes into the remote's input folder through the outbox.
    async fn push(&self, rt: &Arc<Runtime>, inv: &Invocation, m: &Member) -> Result<(), DelegateError> {
        let target = m.storage_provider.clone().unwrap_or_default();
        if crate::fdl::ProviderRef::parse(&target).is_none_or(|p| rt.store(&p).is_err()) {
            return Err(member_err(
                m,
                format!("storage provider `{target}` is not configured here"),
            ));
        }
        let ev = rt
            .journal
            .event(inv.event_id)
            .map_err(|e| member_err(m, e.to_string()))?;
        let name = ev.key.rsplit('/').next().unwrap_or("input").to_string();
        let key = match m.path.as_deref() {
            Some(p) if !p.is_empty() => format!("{p}/{name}"),
            _ => name,
        };
        let src = local_copy(rt, &ev.provider, &ev.key, &inv.uuid)
            .await
            .map_err(|e| member_err(m, e))?;
        // The spool copy and the journal commit fsync: off the async workers.
        let (rt2, id) = (rt.clone(), inv.id);
        let queued = crate::journal::boundary::offload(move || {
            let spooled = crate::outbox::spool(&rt2, &src.0, "push");
            if src.1 {
                let _ = std::fs::remove_file(&src.0);
            }
            let spooled = spooled?;
            // As the invocation's: a camera's picture leaves only with its receipt.
            crate::outbox::enqueue(&rt2, &target, &key, &spooled, Some(id)).inspect_err(|_| {
                let _ = std::fs::remove_file(&spooled);
            })
        })
        .await;
        match queued {
            Some(Ok(Enqueued::Queued { .. } | Enqueued::AlreadyDone)) => Ok(()),
            Some(Ok(Enqueued::Rejected)) => Err(member_err(m, "the outbox is full")),
            Some(Err(e)) => Err(member_err(m, e.to_string())),
            None => Err(member_err(m, "fogd is stopping")),
        }
    }
}

/// A `push` member's store link is not known to be down.
fn push_link_up(rt: &Runtime, m: &Member) -> bool {
    m.storage_provider
        .as_deref()
        .is_none_or(|p| rt.links.is_online(p))
}

/// The input as a file here: the local store's own file, or a download (true: remove it after).
async fn local_copy(
    rt: &Runtime,
    provider: &str,
    key: &str,
    tag: &str,
) -> Result<(std::path::PathBuf, bool), String> {
    let p =
        crate::fdl::ProviderRef::parse(provider).ok_or_else(|| format!("`{provider}` is not a provider"))?;
    let store = rt.store(&p).map_err(|e| e.to_string())?;
    if store.is_local() {
        return Ok((rt.data.store_object(key), false));
    }
    let tmp = rt.cfg.data_dir.join(format!("push-{tag}.tmp"));
    store.get_file(key, &tmp).await.map_err(|e| e.to_string())?;
    Ok((tmp, true))
}
