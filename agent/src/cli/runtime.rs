//! `fogd run`, `put`, `invoke`, `jobs`, `logs`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::Command;
use crate::config::Config;
use crate::daemon::{Daemon, Drained};
use crate::journal::{Invocation, Journal};
use crate::runtime::Runtime;

pub(super) async fn dispatch(cmd: Command, cfg: Config) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Run { files } => run(cfg, files).await,
        Command::Put {
            target,
            file,
            workflows,
            json,
        } => put(cfg, &target, file, &workflows, json).await,
        Command::Invoke {
            service,
            file,
            wait,
            workflows,
            json,
        } => invoke(cfg, &service, file, wait, &workflows, json).await,
        Command::Jobs { service, limit, json } => jobs(&cfg, service.as_deref(), limit, json),
        Command::Logs { service, job, json } => logs(&cfg, &service, job.as_deref(), json),
        Command::Queue { what } => super::queue::queue(&cfg, what),
        Command::Admin {
            what: super::Admin::ResetPassword { password },
        } => reset_password(&cfg, password).await,
        Command::Demo(a) => super::demo::demo(&a, cfg).await,
        // The rest run without a tokio runtime (cli::run handles them).
        _ => bail!("not a runtime command"),
    }
}

/// `fogd run`: the node until SIGTERM or Ctrl-C, then a drain of up to `drain_timeout`.
async fn run(cfg: Config, files: Vec<PathBuf>) -> anyhow::Result<ExitCode> {
    let drain = cfg.drain_timeout;
    let mut daemon = Daemon::start(cfg, &files).await?;
    let stop = daemon.stopper();
    let signal = tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    // systemd (Type=notify): ready once the gateway listens and the scheduler starts.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    daemon.stopped().await;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    signal.abort();
    match daemon.shutdown(drain).await? {
        Drained::Clean => {}
        Drained::DeadlinePassed => tracing::warn!(
            ?drain,
            "stopped with invocations still running after drain_timeout: they run again at the next start"
        ),
    }
    Ok(ExitCode::SUCCESS)
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

async fn put(
    cfg: Config,
    target: &str,
    file: PathBuf,
    workflows: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
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
    if json {
        let mut jobs = Vec::new();
        for id in &invs {
            if let Some(i) = rt.journal.invocation(*id)? {
                jobs.push(serde_json::json!({"job": i.uuid, "service": i.service}));
            }
        }
        println!(
            "{}",
            serde_json::json!({"provider": provider.to_string(), "key": meta.key, "size": meta.size,
                "etag": meta.etag, "jobs": jobs})
        );
        return Ok(ExitCode::SUCCESS);
    }
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
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rt = Runtime::open(cfg, workflows)?;
    let id = rt.invoke(service, file.as_deref()).await?;
    let inv = rt
        .journal
        .invocation(id)?
        .context("the invocation just queued is gone")?;
    let doc = |i: &crate::journal::Invocation, log: Option<String>| {
        serde_json::json!({"job": i.uuid, "service": i.service, "state": i.state.as_str(),
            "exit_code": i.exit_code, "error": i.error, "log": log})
    };
    if !json {
        println!("{}: queued", inv.uuid);
    }
    if !wait {
        if json {
            println!("{}", doc(&inv, None));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let inv = loop {
        match rt.journal.job(&inv.uuid)? {
            Some(i) if i.state.is_final() => break i,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let succeeded = inv.state == crate::journal::State::Succeeded;
    if json {
        println!("{}", doc(&inv, log_text(&rt.log_path(&inv.service, &inv.uuid))));
    } else {
        print_log(&rt.log_path(&inv.service, &inv.uuid));
        println!(
            "{}: {}{}",
            inv.uuid,
            inv.state.as_str(),
            inv.error.map(|e| format!(" ({e})")).unwrap_or_default()
        );
    }
    Ok(if succeeded {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_NO)
    })
}

pub(super) fn open_journal(cfg: &Config) -> anyhow::Result<Journal> {
    let path = crate::paths::DataDir::new(cfg.data_dir.clone()).journal();
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

fn logs(cfg: &Config, service: &str, job: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let j = open_journal(cfg)?;
    let inv = match job {
        Some(job) => j.job(job)?.with_context(|| format!("no job `{job}`"))?,
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
    let path = crate::paths::DataDir::new(cfg.data_dir.clone()).log(service, &inv.uuid);
    if json {
        let log = log_text(&path);
        println!(
            "{}",
            serde_json::json!({"service": inv.service, "job": inv.uuid, "state": inv.state.as_str(),
                "exit_code": inv.exit_code, "error": inv.error, "key": inv.key, "log": log})
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "== {} {} {}",
        inv.uuid,
        inv.state.as_str(),
        inv.error.as_deref().unwrap_or("")
    );
    print_log(&path);
    Ok(ExitCode::SUCCESS)
}

/// A job's log as text for a JSON document (bytes that are not UTF-8 replaced); none yet: None.
fn log_text(path: &std::path::Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn print_log(path: &std::path::Path) {
    match std::fs::read(path) {
        Ok(b) => {
            let _ = std::io::stdout().write_all(&b);
        }
        Err(_) => println!("(no log yet)"),
    }
}
