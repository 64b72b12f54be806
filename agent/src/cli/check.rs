//! `fogd check`: is this node ready to run? (Like `iotedge check`.) One line per check; exit 1
//! when one fails.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::fdl::{self, LoadOptions};
use crate::journal::Journal;
use crate::paths::free_bytes;
use crate::store::AnyStore;

enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
    /// With `--json`: the lines, printed as one document at the end.
    json: Option<Vec<serde_json::Value>>,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl AsRef<str>) {
        let (mark, name) = match level {
            Level::Ok => ("ok  ", "ok"),
            Level::Warn => ("warn", "warn"),
            Level::Fail => {
                self.failed = true;
                ("FAIL", "fail")
            }
        };
        match &mut self.json {
            Some(lines) => {
                lines.push(serde_json::json!({"check": what, "result": name, "detail": detail.as_ref()}))
            }
            None => println!("{mark}  {what:<18} {}", detail.as_ref()),
        }
    }
}

/// Runs every check; one line each, or with `json` one document `{"ok": bool, "checks": [...]}`.
/// Exit 1 when one failed.
pub async fn check(
    cfg: &Config,
    config_path: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut r = Report {
        failed: false,
        json: json.then(Vec::new),
    };
    match config_path {
        Some(p) => r.line(Level::Ok, "config", p.display().to_string()),
        None => r.line(Level::Ok, "config", "none given: the embedded default"),
    }

    // Data folder: there, writable, with room.
    let data = &cfg.data_dir;
    match std::fs::create_dir_all(data).and_then(|_| std::fs::write(data.join(".fogd-check"), b"ok")) {
        Ok(()) => {
            let _ = std::fs::remove_file(data.join(".fogd-check"));
            let free = free_bytes(data).unwrap_or(0);
            let inodes = crate::paths::free_inodes(data);
            let detail = match inodes {
                Some(n) => format!(
                    "{} ({:.1} GB and {n} inodes free)",
                    data.display(),
                    free as f64 / 1e9
                ),
                None => format!("{} ({:.1} GB free)", data.display(), free as f64 / 1e9),
            };
            if free < cfg.min_free_bytes {
                r.line(
                    Level::Fail,
                    "data folder",
                    format!("{detail}: under min_free_bytes, no new work is taken"),
                );
            } else if inodes.is_some_and(|n| n < cfg.min_free_inodes) {
                r.line(
                    Level::Fail,
                    "data folder",
                    format!("{detail}: under min_free_inodes, no new work is taken"),
                );
            } else {
                r.line(Level::Ok, "data folder", detail);
            }
        }
        Err(e) => r.line(Level::Fail, "data folder", format!("{}: {e}", data.display())),
    }

    // Journal: opens, migrates, and its pages are sound.
    let journal_path = data.join("journal.sqlite");
    match Journal::open(&journal_path, cfg.journal_sync) {
        Ok(j) => {
            let ok = rusqlite::Connection::open(&journal_path)
                .and_then(|c| c.query_row("PRAGMA quick_check", [], |row| row.get::<_, String>(0)));
            match ok {
                Ok(s) if s == "ok" => {
                    r.line(Level::Ok, "journal", journal_path.display().to_string());
                    if let Ok((n, bytes)) = j.outbox_totals() {
                        let level = if bytes > cfg.sync.quota_bytes / 10 * 9 {
                            Level::Warn
                        } else {
                            Level::Ok
                        };
                        r.line(
                            level,
                            "outbox",
                            format!(
                                "{n} objects, {bytes} bytes waiting (quota {})",
                                cfg.sync.quota_bytes
                            ),
                        );
                    }
                }
                Ok(s) => r.line(Level::Fail, "journal", format!("{}: {s}", journal_path.display())),
                Err(e) => r.line(Level::Fail, "journal", format!("{}: {e}", journal_path.display())),
            }
            let files = if cfg.workflows.is_empty() {
                j.workflows().unwrap_or_default()
            } else {
                cfg.workflows.clone()
            };
            check_workflows(&mut r, &files, data).await;
        }
        Err(e) => r.line(Level::Fail, "journal", e.to_string()),
    }

    // Executor.
    match std::fs::metadata("/bin/sh") {
        Ok(_) => r.line(Level::Ok, "executor", "local processes (/bin/sh)"),
        Err(e) => r.line(Level::Fail, "executor", format!("/bin/sh: {e}")),
    }
    if cfg.uses_executor(crate::config::ExecutorKind::Kube) {
        let k = crate::exec::kube::Kube::default();
        match tokio::time::timeout(Duration::from_secs(10), k.server_version(&cfg.kube)).await {
            Ok(Ok(v)) => r.line(
                Level::Ok,
                "executor",
                format!("kube: API server {v}, namespace {}", cfg.kube.namespace),
            ),
            Ok(Err(e)) => r.line(Level::Fail, "executor", e.to_string()),
            Err(_) => r.line(
                Level::Fail,
                "executor",
                "kube: the API server did not answer in 10 s",
            ),
        }
    }
    if cfg.uses_executor(crate::config::ExecutorKind::Podman) {
        match crate::exec::podman::check(&cfg.podman).await {
            Ok(about) => r.line(Level::Ok, "executor", about),
            Err(e) => r.line(Level::Fail, "executor", e.to_string()),
        }
    }
    if cfg.uses_executor(crate::config::ExecutorKind::Local) {
        use crate::exec::sandbox::{probe, resolve, Isolation};
        match (resolve(cfg.isolation), cfg.isolation) {
            (Err(e), _) => r.line(Level::Fail, "script sandbox", e),
            (Ok(Some(_)), _) => r.line(
                Level::Ok,
                "script sandbox",
                "local scripts run in bubblewrap namespaces: the data folder is hidden from them",
            ),
            (Ok(None), Isolation::None) => r.line(
                Level::Warn,
                "script sandbox",
                "isolation: none: every local script can read the journal, other services' secrets and the admin's keys",
            ),
            (Ok(None), _) => r.line(
                Level::Warn,
                "script sandbox",
                format!(
                    "{}: local scripts run unconfined and can read the journal, other services' secrets and the admin's keys (apt install bubblewrap)",
                    probe().err().unwrap_or_default()
                ),
            ),
        }
    }
    inference(&mut r);
    // The MQTT broker: reachable (fogd retries forever, but a typo should show here).
    if let Some(m) = &cfg.mqtt {
        match m.host_port() {
            Ok((host, port, _)) => {
                let addr = format!("{host}:{port}");
                let reach =
                    tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(&addr)).await;
                match reach {
                    Ok(Ok(_)) => r.line(Level::Ok, "mqtt broker", addr),
                    Ok(Err(e)) => r.line(
                        Level::Fail,
                        "mqtt broker",
                        format!("{addr}: {e} (items wait at the cameras until it is up)"),
                    ),
                    Err(_) => r.line(Level::Fail, "mqtt broker", format!("{addr}: no answer in 3 s")),
                }
            }
            Err(e) => r.line(Level::Fail, "mqtt broker", e),
        }
    }

    if cfg.mqtt.is_none() {
        r.line(Level::Ok, "mqtt broker", "none configured");
    }

    // Gateway: the address parses, and either is free or a fogd answers there.
    if cfg.gateway.enabled {
        match std::net::TcpListener::bind(&cfg.gateway.listen) {
            Ok(_) => r.line(Level::Ok, "gateway", format!("{} is free", cfg.gateway.listen)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => r.line(
                Level::Warn,
                "gateway",
                format!("{} is in use (a running fogd?)", cfg.gateway.listen),
            ),
            Err(e) => r.line(Level::Fail, "gateway", format!("{}: {e}", cfg.gateway.listen)),
        }
    }

    // Clock: a Pi without a battery-backed clock starts in 1970 until NTP answers; S3 signatures
    // and TLS fail until then.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    if now < Duration::from_secs(1_704_067_200) {
        r.line(
            Level::Fail,
            "clock",
            "before 2024: not synchronised yet (S3 and TLS will fail)",
        );
    } else {
        r.line(
            Level::Ok,
            "clock",
            humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        );
    }
    if let Some(lines) = r.json.take() {
        println!("{}", serde_json::json!({"ok": !r.failed, "checks": lines}));
    }
    Ok(if r.failed {
        ExitCode::from(super::EXIT_NO)
    } else {
        ExitCode::SUCCESS
    })
}

async fn check_workflows(r: &mut Report, files: &[PathBuf], data: &std::path::Path) {
    if files.is_empty() {
        r.line(
            Level::Warn,
            "workflows",
            "none configured (give FDL files to `fogd run` or list them in `workflows`)",
        );
        return;
    }
    for f in files {
        let report = fdl::load_file(f, LoadOptions::default());
        let Some(wf) = report.workflow.as_ref().filter(|_| report.is_valid()) else {
            let first = report
                .errors()
                .next()
                .map(ToString::to_string)
                .unwrap_or_default();
            r.line(Level::Fail, "workflow", format!("{}: {first}", f.display()));
            continue;
        };
        r.line(
            Level::Ok,
            "workflow",
            format!("{}: {} service(s)", f.display(), wf.services.len()),
        );
        for p in &wf.providers {
            let name = p.reference.to_string();
            match AnyStore::for_provider(p, data) {
                Ok(store) if store.is_local() => r.line(Level::Ok, "store", format!("{name}: local folder")),
                Ok(store) => {
                    let prefix = wf
                        .services
                        .iter()
                        .flat_map(|s| s.inputs.iter().chain(&s.outputs))
                        .find(|b| b.provider == p.reference)
                        .map(|b| format!("{}/", b.path))
                        .unwrap_or_default();
                    match tokio::time::timeout(Duration::from_secs(10), store.list(&prefix)).await {
                        Ok(Ok(objs)) => r.line(
                            Level::Ok,
                            "store",
                            format!("{name}: reachable ({} objects under {prefix})", objs.len()),
                        ),
                        Ok(Err(e)) => r.line(Level::Fail, "store", e.to_string()),
                        Err(_) => r.line(Level::Fail, "store", format!("{name}: no answer in 10 s")),
                    }
                }
                Err(e) => r.line(Level::Warn, "store", e.to_string()),
            }
        }
        check_delegation(r, wf).await;
    }
}

/// Delegation members of type `oscar`: the cluster answers `/system/info` with its credentials.
/// A member down is a warning (invocations then run here), not a failure.
async fn check_delegation(r: &mut Report, wf: &fdl::Workflow) {
    let mut seen = std::collections::BTreeSet::new();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap_or_default();
    for s in &wf.services {
        for m in s.delegation.iter().flat_map(|d| &d.members) {
            if m.kind != "oscar" || !seen.insert(m.name()) {
                continue;
            }
            let id = m.cluster_id.clone().unwrap_or_default();
            let Some(peer) = wf.peers.get(&id) else {
                r.line(
                    Level::Warn,
                    "delegation",
                    format!("{id}: not under `clusters:`; `{}` runs here only", s.name),
                );
                continue;
            };
            let Some(endpoint) = &peer.endpoint else {
                r.line(Level::Warn, "delegation", format!("{id}: no endpoint"));
                continue;
            };
            let url = format!("{}/system/info", endpoint.trim_end_matches('/'));
            let mut req = http.get(&url);
            if let Some(u) = &peer.auth_user {
                req = req.basic_auth(u, peer.auth_password.as_deref());
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => r.line(
                    Level::Ok,
                    "delegation",
                    format!("{id}: {endpoint} answers (`{}` may go there)", s.name),
                ),
                Ok(resp) => r.line(
                    Level::Warn,
                    "delegation",
                    format!(
                        "{id}: {url} answered {} (check auth_user / auth_password)",
                        resp.status()
                    ),
                ),
                Err(e) => r.line(
                    Level::Warn,
                    "delegation",
                    format!("{id}: {url}: {e} (until it answers, `{}` runs here)", s.name),
                ),
            }
        }
    }
}

/// Models present and sound, and which backend runs them (ONNX Runtime, or OpenCV DNN and why):
/// asked of `fogd-vision`, the binary that loads them.
fn inference(r: &mut Report) {
    use fogd_vision_proto::builtin::{self, CheckLevel, CheckLine};
    let vision = crate::paths::vision_binary().unwrap_or_else(|| PathBuf::from(builtin::BINARY));
    let out = match std::process::Command::new(&vision)
        .arg(builtin::CHECK_COMMAND)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            return r.line(
                Level::Warn,
                "inference",
                format!(
                "{}: {e}: fogd-vision is not installed beside fogd, so anonymize and detect-masks are absent",
                vision.display()
            ),
            )
        }
    };
    let lines = CheckLine::parse_all(&String::from_utf8_lossy(&out.stdout));
    for l in &lines {
        let level = match l.level {
            CheckLevel::Ok => Level::Ok,
            CheckLevel::Warn => Level::Warn,
            CheckLevel::Fail => Level::Fail,
        };
        r.line(level, &l.what, &l.detail);
    }
    if lines.is_empty() {
        let said = if out.stdout.is_empty() {
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        } else {
            // TAB lines: a fogd-vision from before the check lines were JSON.
            "no check lines in its output (is fogd-vision older than fogd?)".to_string()
        };
        r.line(
            Level::Fail,
            "inference",
            format!("{} {}: {said}", vision.display(), builtin::CHECK_COMMAND),
        );
    }
}
