//! `fogd bench retention`: what a node holds after N invocations (journal and log bytes, log
//! files) before and after the housekeeping sweep with the default retention, and what
//! `GET /system/logs/{svc}` (the page oscar-python's `list_jobs` and delegating peers read)
//! costs at those sizes. The invocations are written to the journal as the scheduler writes
//! them (event, queued, claimed, finished, a log file each), without running a process each:
//! what is measured is storage, not scripts.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use fogd::config::{Config, JournalSync};
use fogd::journal::{NewEvent, Outcome, State};

#[derive(Debug, clap::Args)]
pub struct BenchRetentionArgs {
    /// Invocations written.
    #[arg(long, default_value_t = 100_000)]
    pub invocations: u64,
}

const WORKFLOW: &str = "functions:
  oscar:
  - bench:
      name: anon
      image: none
      script: noop.sh
      input: [{storage_provider: minio, path: bench/in}]
";

/// A log as `fogd anonymize` leaves one per frame.
const LOG: &str =
    "anonymize: 1 frame, 3 faces blurred (centerface, 41 ms)\nwrote anon/frames/cam1/frame.jpg\n";

fn bytes_under(p: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0, 0);
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    bytes += m.len();
                    files += 1;
                }
                Err(_) => {}
            }
        }
    }
    (bytes, files)
}

fn journal_bytes(data: &Path) -> u64 {
    ["journal.sqlite", "journal.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Bytes of the journal's pages that hold rows (the rest are free for reuse).
fn journal_used(data: &Path) -> anyhow::Result<u64> {
    let c = rusqlite::Connection::open(data.join("journal.sqlite"))?;
    let q = |p: &str| c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0));
    Ok(((q("page_count")? - q("freelist_count")?) * q("page_size")?) as u64)
}

fn rss_kib() -> u64 {
    fogd_testkit::proc_status_kib(std::process::id(), "VmRSS:")
}

/// Times `GET /system/logs/anon` (first page, and following `next_page` 20 pages deep) against
/// a node started on `cfg`; returns (first page ms, median page ms, RSS growth KiB).
async fn time_logs(cfg: Config, wf: &Path) -> anyhow::Result<(f64, f64, i64)> {
    fogd::gateway::auth::Admin::store(&cfg.data_dir, "oscar", "bench")?;
    let d = fogd::daemon::Daemon::start(cfg, &[wf.to_path_buf()]).await?;
    let url = format!("http://{}/system/logs/anon", d.gateway_addr().context("gateway")?);
    let http = reqwest::Client::new();
    let get = |page: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let t0 = Instant::now();
            let v: serde_json::Value = http
                .get(&url)
                .query(&[("page", page)])
                .basic_auth("oscar", Some("bench"))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            anyhow::Ok((t0.elapsed().as_secs_f64() * 1e3, v))
        }
    };
    let _ = get(String::new()).await?; // the password check, once
    let rss0 = rss_kib() as i64;
    let (first, mut v) = get(String::new()).await?;
    let mut times = vec![first];
    for _ in 0..20 {
        let next = v["next_page"].as_str().unwrap_or_default().to_string();
        if next.is_empty() {
            break;
        }
        let (ms, nv) = get(next).await?;
        times.push(ms);
        v = nv;
    }
    let grown = rss_kib() as i64 - rss0;
    d.shutdown(Duration::from_secs(30)).await?;
    times.sort_by(f64::total_cmp);
    Ok((first, times[times.len() / 2], grown))
}

pub async fn bench(a: BenchRetentionArgs) -> anyhow::Result<std::process::ExitCode> {
    let root = std::env::temp_dir().join(format!("fogd-bench-retention-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let result = run(&root, a.invocations).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run(root: &Path, n: u64) -> anyhow::Result<std::process::ExitCode> {
    let wf = root.join("wf.yaml");
    std::fs::write(&wf, WORKFLOW)?;
    std::fs::write(root.join("noop.sh"), ":\n")?;
    let mut cfg = Config {
        data_dir: root.join("data"),
        ..Config::default()
    };
    cfg.gateway.listen = "127.0.0.1:0".into();
    let defaults = cfg.retention.clone();
    let rt = fogd::runtime::Runtime::open(cfg.clone(), std::slice::from_ref(&wf))?;
    eprintln!("writing {n} invocations ...");
    let t0 = Instant::now();
    {
        let j = fogd::journal::Journal::open(&rt.data.journal(), JournalSync::Normal)?;
        for i in 0..n {
            let ev = NewEvent {
                provider: "minio.default".into(),
                key: format!("bench/in/cam{}/frame-{i:08}.jpg", i % 4),
                etag: format!("{i:016x}"),
                size: 180_000,
                event_time: String::new(),
                source: "put".into(),
                job_id: None,
                parent: None,
            };
            j.record_event(&ev, &["anon"])?;
            if (i + 1) % 1000 == 0 || i + 1 == n {
                for inv in j.claim("anon", 1000)? {
                    let log = rt.log_path("anon", &inv.uuid);
                    if let Some(dir) = log.parent() {
                        std::fs::create_dir_all(dir)?;
                    }
                    std::fs::write(&log, LOG)?;
                    let done = Outcome {
                        state: State::Succeeded,
                        exit_code: Some(0),
                        error: None,
                        outputs: 1,
                        spawned_us: None,
                    };
                    j.finish(inv.id, &done)?;
                }
            }
        }
    }
    let fill_s = t0.elapsed().as_secs_f64();
    let data = cfg.data_dir.clone();
    let (logs_before, files_before) = bytes_under(&rt.data.logs());
    let journal_before = journal_bytes(&data);
    let used_before = journal_used(&data)?;
    drop(rt);
    // GET at the full size: a node whose retention keeps everything (no sweep at its start).
    let mut keep_all = cfg.clone();
    keep_all.retention.max_invocations = u64::MAX / 2;
    keep_all.retention.interval = Duration::from_secs(86_400);
    let (first_full, median_full, rss_full) = time_logs(keep_all, &wf).await?;
    // The default retention: its first sweep runs at start.
    let t1 = Instant::now();
    let rt = fogd::runtime::Runtime::open(cfg.clone(), std::slice::from_ref(&wf))?;
    let swept = fogd::housekeeping::sweep(&rt)?;
    let sweep_s = t1.elapsed().as_secs_f64();
    drop(rt);
    let (first_kept, median_kept, rss_kept) = time_logs(cfg.clone(), &wf).await?;
    let rt = fogd::runtime::Runtime::open(cfg, std::slice::from_ref(&wf))?;
    let kept = rt.journal.invocations(Some("anon"), usize::MAX >> 1)?.len();
    let (logs_after, files_after) = bytes_under(&rt.data.logs());
    let journal_after = journal_bytes(&data);
    let used_after = journal_used(&data)?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("fogd bench retention: {n} invocations written in {fill_s:.1} s (journal rows and a log each, no processes)");
    println!(
        "default retention: max_age {:?}, max_invocations {}, max_log_bytes {} MiB",
        defaults.max_age,
        defaults.max_invocations,
        defaults.max_log_bytes >> 20
    );
    println!("| | invocations | journal file MiB (in use) | logs MiB | log files | GET /system/logs first page ms | median of 20 pages ms | RSS growth over 21 GETs KiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| before the sweep | {n} | {:.1} ({:.1}) | {:.1} | {files_before} | {first_full:.1} | {median_full:.1} | {rss_full} |",
        mib(journal_before),
        mib(used_before),
        mib(logs_before)
    );
    println!(
        "| after the sweep ({:.1} s: {} invocations, {} rows, {} logs removed) | {kept} | {:.1} ({:.1}) | {:.1} | {files_after} | {first_kept:.1} | {median_kept:.1} | {rss_kept} |",
        sweep_s,
        swept.invocations,
        swept.rows,
        swept.logs,
        mib(journal_after),
        mib(used_after),
        mib(logs_after)
    );
    println!(
        "(the journal file keeps its pages for reuse after a prune: it does not shrink, it stops growing)"
    );
    Ok(std::process::ExitCode::SUCCESS)
}
