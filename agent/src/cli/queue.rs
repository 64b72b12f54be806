//! `fogd queue ls | retry | purge`: the outbox, read and steered through the journal (works
//! while `fogd run` is running: it sees the changes at its next look).

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Objects in the outbox, newest first, and a summary.
    Ls {
        /// pending, done, dropped, corrupt (default: all).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Try pending objects now instead of after their backoff (all, or the given ids).
    Retry { ids: Vec<i64> },
    /// Remove objects from the outbox, and their spooled files: the given ids, or every object
    /// in --state (dropped, corrupt, done; pending only when named).
    Purge {
        ids: Vec<i64>,
        #[arg(long)]
        state: Option<String>,
    },
}

const STATES: [&str; 4] = ["pending", "done", "dropped", "corrupt"];

pub(super) fn queue(cfg: &Config, what: QueueCmd) -> anyhow::Result<ExitCode> {
    let j = super::runtime::open_journal(cfg)?;
    let check = |s: &Option<String>| -> anyhow::Result<()> {
        match s {
            Some(s) if !STATES.contains(&s.as_str()) => {
                anyhow::bail!("--state `{s}`: one of {}", STATES.join(", "))
            }
            _ => Ok(()),
        }
    };
    let mut out = std::io::stdout().lock();
    match what {
        QueueCmd::Ls { state, limit, json } => {
            check(&state)?;
            let rows = j.outbox_list(state.as_deref(), limit)?;
            if json {
                serde_json::to_writer_pretty(&mut out, &rows)?;
                writeln!(out)?;
                return Ok(ExitCode::SUCCESS);
            }
            let (n, bytes) = j.outbox_totals()?;
            let counts: Vec<String> = j
                .outbox_counts()?
                .into_iter()
                .map(|(s, c)| format!("{s} {c}"))
                .collect();
            writeln!(out, "outbox: {n} waiting ({bytes} bytes); {}", counts.join(", "))?;
            writeln!(
                out,
                "{:>6} {:<8} {:>3} {:>10} {:<20} {:<9} KEY",
                "ID", "STATE", "PRI", "SIZE", "PROVIDER", "TRIES"
            )?;
            let now = crate::journal::now_ms();
            for r in &rows {
                let wait = if r.state == "pending" && r.next_try_ms > now {
                    format!(" (next try in {}s)", (r.next_try_ms - now + 999) / 1000)
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{:>6} {:<8} {:>3} {:>10} {:<20} {:<9} {}{wait}{}",
                    r.id,
                    r.state,
                    r.priority,
                    r.size,
                    r.provider,
                    r.attempts,
                    r.key,
                    r.error
                        .as_deref()
                        .map(|e| format!("\n       {e}"))
                        .unwrap_or_default()
                )?;
            }
        }
        QueueCmd::Retry { ids } => {
            let n = j.outbox_retry(&ids)?;
            writeln!(out, "{n} pending objects will be tried now")?;
        }
        QueueCmd::Purge { ids, state } => {
            check(&state)?;
            if ids.is_empty() && state.is_none() {
                anyhow::bail!("name the objects to purge: ids, or --state dropped|corrupt|done|pending");
            }
            let paths = j.outbox_purge(&ids, state.as_deref())?;
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
            writeln!(out, "{} objects removed from the outbox", paths.len())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
