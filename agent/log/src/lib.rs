//! Logging of fogd's binaries (`fogd`, `fogd-vision`, `fogd-bench`), one way for all three: to
//! stderr, filtered by `FOGD_LOG`, in the form the reader wants.
//!
//! - `text`: human lines; colour only when stderr is a terminal (never escape codes in a file or
//!   the journal).
//! - `journald`: each line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>`
//!   info, `<7>` debug), which journald reads, so `journalctl -p warning` finds warnings; no time
//!   stamp (the journal has its own). Chosen by itself when stderr is the journal (systemd sets
//!   `JOURNAL_STREAM` to its device and inode).
//! - `json`: one JSON object a line (time, level, target, fields), for log shippers.

use std::io::IsTerminal;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The logging flags every fogd binary takes (`#[command(flatten)]`): the same command line
/// works whichever binary `fogd` hands it to.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// More logging (or set FOGD_LOG, e.g. FOGD_LOG=fogd=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log lines on stderr: `text`, `journald` (syslog priority prefixes) or `json`; `auto`:
    /// `journald` when stderr is the journal, else `text`.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "FOGD_LOG_FORMAT",
        default_value = "auto"
    )]
    pub log_format: LogFormat,
}

/// `--log-format` (or `FOGD_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `journald` when stderr is the journal, else `text`.
    Auto,
    Text,
    Journald,
    Json,
}

/// The filter of fogd's commands without `FOGD_LOG`.
pub fn default_filter(verbose: bool) -> &'static str {
    if verbose {
        "debug,ort=warn"
    } else {
        "info,ort=error"
    }
}

/// Sets up logging for the process: `FOGD_LOG` filters, else `default`. A format asked for
/// (not `auto`) is handed to children (the vision worker, scripts' `fogd` calls) through
/// `FOGD_LOG_FORMAT`.
pub fn init(default: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_env("FOGD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let name = match format {
        LogFormat::Auto => None,
        LogFormat::Text => Some("text"),
        LogFormat::Journald => Some("journald"),
        LogFormat::Json => Some("json"),
    };
    if let Some(n) = name {
        std::env::set_var("FOGD_LOG_FORMAT", n);
    }
    let format = match format {
        LogFormat::Auto if stderr_is_journal() => LogFormat::Journald,
        LogFormat::Auto => LogFormat::Text,
        f => f,
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().finish().with(ring()).init(),
        LogFormat::Journald => {
            let lines = tracing_subscriber::fmt::format().with_ansi(false).without_time();
            builder
                .with_ansi(false)
                .event_format(Priority(lines))
                .finish()
                .with(ring())
                .init()
        }
        _ => builder
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(ring())
            .init(),
    }
}

/// Whatever goes to stderr, the recent lines are also kept, plain, for `GET /system/logs`.
fn ring<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(|| RingWriter(Vec::new()))
}

/// The recent log lines kept in memory: at most this many, and this many bytes.
const RING_LINES: usize = 5000;
const RING_BYTES: usize = 2 << 20;

static RING: std::sync::Mutex<(std::collections::VecDeque<String>, usize)> =
    std::sync::Mutex::new((std::collections::VecDeque::new(), 0));

/// Gathers one formatted event and keeps it as lines when dropped.
struct RingWriter(Vec<u8>);

impl std::io::Write for RingWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RingWriter {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        let Ok(mut ring) = RING.lock() else { return };
        for line in text.lines().filter(|l| !l.is_empty()) {
            ring.1 += line.len();
            ring.0.push_back(line.to_string());
        }
        while ring.0.len() > RING_LINES || ring.1 > RING_BYTES {
            match ring.0.pop_front() {
                Some(old) => ring.1 -= old.len(),
                None => break,
            }
        }
    }
}

/// The process's recent log lines, oldest first, each starting with its RFC 3339 time.
pub fn recent() -> Vec<String> {
    RING.lock()
        .map(|r| r.0.iter().cloned().collect())
        .unwrap_or_default()
}

/// Is stderr the journal's stream (`JOURNAL_STREAM=<device>:<inode>` of it)?
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes the struct for a valid descriptor; it is read only when it succeeded.
    if unsafe { libc::fstat(2, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat returned 0.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32 bits on armhf).
    #[allow(clippy::unnecessary_cast)]
    let (d, i) = (st.st_dev as u64, st.st_ino as u64);
    dev.parse::<u64>().ok() == Some(d) && ino.parse::<u64>().ok() == Some(i)
}

/// The syslog priority prefix before each line.
struct Priority<F>(F);

impl<S, N, F> FormatEvent<S, N> for Priority<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(w, "<{priority}>")?;
        self.0.format_event(ctx, w, event)
    }
}

/// `text` with the password of every `scheme://user:password@host` in it masked
/// (`rtsp://admin:***@cam`): camera URLs go into logs, errors and the journal.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or white space.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                out.push_str(&format!("{user}{masked}@{host}"));
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Each level gets its syslog priority (`journalctl -p warning` shows warnings and errors),
    /// and no colour codes.
    #[test]
    fn journald_lines_carry_their_priority_and_no_escape_codes() {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let writer = move || -> Box<dyn std::io::Write> {
            struct W(Arc<Mutex<Vec<u8>>>);
            impl std::io::Write for W {
                fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                    self.0
                        .lock()
                        .map_err(|_| std::io::Error::other("poisoned"))?
                        .extend_from_slice(b);
                    Ok(b.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            Box::new(W(sink.clone()))
        };
        let lines = tracing_subscriber::fmt::format().with_ansi(false).without_time();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .event_format(Priority(lines))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!("disk gone");
            tracing::warn!("store offline");
            tracing::info!("ready");
        });
        let text = String::from_utf8(buf.lock().expect("lock").clone()).expect("utf-8");
        let got: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), 3, "{text}");
        assert!(
            got[0].starts_with("<3>") && got[0].contains("disk gone"),
            "{text}"
        );
        assert!(
            got[1].starts_with("<4>") && got[1].contains("store offline"),
            "{text}"
        );
        assert!(got[2].starts_with("<6>") && got[2].contains("ready"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }
}
