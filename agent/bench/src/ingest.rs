//! `fogd bench ingest`: (1) MQTT frames into the durable spool and journal, through a Mosquitto
//! started for the run; (2) small objects from the outbox to a SeaweedFS started for the run;
//! (3) the idle memory of `fogd run` with MQTT on. Prints the numbers with their targets.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use fogd::config::{Config, MqttConfig};
use fogd::daemon::Daemon;
use fogd::runtime::Runtime;
use fogd_testkit::{Mosquitto, SeaweedFs, S3_KEY, S3_SECRET};

#[derive(Debug, clap::Args)]
pub struct BenchIngestArgs {
    /// Frames published.
    #[arg(long, default_value_t = 5000)]
    frames: usize,
    #[arg(long, default_value_t = 50_000)]
    frame_bytes: usize,
    /// Objects uploaded (0: skip), spread over --cameras folders.
    #[arg(long, default_value_t = 2000)]
    uploads: usize,
    #[arg(long, default_value_t = 4096)]
    upload_bytes: usize,
    #[arg(long, default_value_t = 16)]
    cameras: usize,
    #[arg(long)]
    json: bool,
}

pub async fn bench(a: BenchIngestArgs) -> anyhow::Result<ExitCode> {
    let root = crate::runtime::scratch_dir().join(format!("fogd-bench-ingest-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let r = run(&a, &root).await;
    let _ = std::fs::remove_dir_all(&root);
    let r = r?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "fogd bench ingest ({} cores)",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        println!(
            "  MQTT -> spool + journal: {:.0} frames/s, {:.1} MB/s ({} frames of {} bytes, QoS 1, acknowledged after fsync; target >= 2000/s)",
            r.ingest_per_s, r.ingest_mb_per_s, a.frames, a.frame_bytes
        );
        if let Some(u) = r.upload_per_s {
            println!(
                "  outbox -> SeaweedFS: {u:.0} objects/s ({} objects of {} bytes over {} folders; target >= 500/s)",
                a.uploads, a.upload_bytes, a.cameras
            );
        }
        println!(
            "  idle RSS of `fogd run` with MQTT on: {:.1} MB (target <= 20 MB)",
            r.idle_rss_bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Result {
    ingest_per_s: f64,
    ingest_mb_per_s: f64,
    upload_per_s: Option<f64>,
    idle_rss_bytes: u64,
}

async fn run(a: &BenchIngestArgs, root: &std::path::Path) -> anyhow::Result<Result> {
    // The servers are started by the test kit, which panics when it cannot: check first.
    if !["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .iter()
        .any(|p| std::path::Path::new(p).exists())
    {
        bail!("mosquitto is not installed (scripts/setup installs it)");
    }
    let weed = fogd_testkit::weed_bin();
    if a.uploads > 0 && !weed.exists() && std::process::Command::new(&weed).arg("version").output().is_err() {
        bail!(
            "SeaweedFS (`weed`) is not in .venv or on PATH (scripts/setup installs it); or pass --uploads 0"
        );
    }
    // The broker's own disk work is not fogd's: it keeps nothing on disk here.
    let broker = Mosquitto::start_volatile(&root.join("mosquitto"));
    let mut cfg = Config {
        data_dir: root.join("data"),
        node_name: Some("bench".into()),
        ..Config::default()
    };
    cfg.gateway.enabled = false;
    cfg.mqtt = Some(MqttConfig {
        broker: broker.url(),
        ..MqttConfig::default()
    });
    // The node as `fogd run` starts it: the MQTT source, the outbox loop, the scheduler.
    let daemon = Daemon::start(cfg.clone(), &[]).await?;
    let rt = daemon.runtime().clone();
    // Connected and subscribed before the first publish.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fogd::ingest::status::connected() {
        if Instant::now() > deadline {
            bail!("fogd did not connect to the bench's Mosquitto");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut opts = MqttOptions::new("bench-publisher", "127.0.0.1", broker.port);
    opts.set_max_packet_size(1 << 24, 1 << 24).set_inflight(1000);
    let (client, mut el) = AsyncClient::new(opts, 10_000);
    let poller = tokio::spawn(async move {
        loop {
            match el.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    });
    // A real JPEG (ingest reads its header), padded with comment segments to the frame size.
    let photo_path = fogd_testkit::repo().join("examples/camera-ingest/media/grace_hopper.jpg");
    let photo = std::fs::read(&photo_path).with_context(|| photo_path.display().to_string())?;
    let mut frame = fogd_testkit::padded_jpeg(&photo, a.frame_bytes);
    eprintln!(
        "bench ingest: {} frames of {} bytes over MQTT ...",
        a.frames, a.frame_bytes
    );
    let t0 = Instant::now();
    for i in 0..a.frames {
        // Unique content per frame (identical frames are deduplicated): in the first comment.
        frame[6..14].copy_from_slice(&(i as u64).to_le_bytes());
        let cam = i % a.cameras.max(1);
        client
            .publish(
                format!("fogd/cameras/cam{cam}/frame"),
                QoS::AtLeastOnce,
                false,
                frame.clone(),
            )
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n: u64 = rt.journal.ingest_counts()?.iter().map(|(_, n)| n).sum();
        if n as usize >= a.frames {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} frames ingested in 300 s", a.frames);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = client.disconnect().await;
    poller.abort();
    daemon.shutdown(Duration::from_secs(30)).await?;

    let upload_per_s = if a.uploads > 0 {
        Some(uploads(a, root).await?)
    } else {
        None
    };
    let idle_rss_bytes = idle_rss(root, &broker).await?;
    Ok(Result {
        ingest_per_s: a.frames as f64 / secs,
        ingest_mb_per_s: (a.frames * a.frame_bytes) as f64 / secs / 1e6,
        upload_per_s,
        idle_rss_bytes,
    })
}

async fn uploads(a: &BenchIngestArgs, root: &std::path::Path) -> anyhow::Result<f64> {
    eprintln!(
        "bench ingest: {} uploads to a SeaweedFS started for it ...",
        a.uploads
    );
    let sw = SeaweedFs::start(&root.join("weed"));
    let dir = root.join("up");
    std::fs::create_dir_all(&dir)?;
    let fdl = format!(
        "functions:\n  oscar:\n  - bench:\n      name: sink\n      image: none\n      script: sink.sh\n      \
         input: [{{storage_provider: minio, path: bench/in}}]\n      output: [{{storage_provider: minio.sw, path: bench/out}}]\n{}",
        sw.provider_yaml("sw", S3_KEY, S3_SECRET)
    );
    std::fs::write(dir.join("wf.yaml"), fdl)?;
    std::fs::write(dir.join("sink.sh"), ":\n")?;
    let mut cfg = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    cfg.gateway.enabled = false;
    let rt = Arc::new(Runtime::open(cfg.clone(), &[dir.join("wf.yaml")])?);
    let src = dir.join("object");
    // Enqueued first, then timed: the drain alone.
    for i in 0..a.uploads {
        // A new file each time: the spool hard-links it.
        let _ = std::fs::remove_file(&src);
        std::fs::write(&src, format!("{i:08}").repeat(a.upload_bytes / 8))?;
        let spooled = fogd::outbox::spool(&rt, &src, "bench")?;
        let key = format!("bench/out/cam{}/{i:08}.jpg", i % a.cameras.max(1));
        fogd::outbox::enqueue(&rt, "minio.sw", &key, &spooled, None).context("enqueue")?;
    }
    drop(rt);
    // A node started on that data folder drains what its outbox holds.
    let t0 = Instant::now();
    let daemon = Daemon::start(cfg, &[dir.join("wf.yaml")]).await?;
    let rt = daemon.runtime().clone();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (n, _) = rt.journal.outbox_totals()?;
        if n == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{n} objects still in the outbox after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    daemon.shutdown(Duration::from_secs(30)).await?;
    let failed = rt.journal.outbox_list(Some("corrupt"), 10)?.len();
    if failed > 0 {
        bail!("{failed} objects corrupt");
    }
    Ok(a.uploads as f64 / secs)
}

/// `fogd run` (this binary) with MQTT on and nothing to do: its VmRSS after it settled.
async fn idle_rss(root: &std::path::Path, broker: &Mosquitto) -> anyhow::Result<u64> {
    eprintln!("bench ingest: the idle node's memory ...");
    let dir = root.join("idle");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("fogd.yaml"),
        format!(
            "data_dir: data\nnode_name: idle\nmqtt:\n  broker: {}\ngateway:\n  listen: 127.0.0.1:0\n",
            broker.url()
        ),
    )?;
    let exe = std::env::current_exe()?.with_file_name("fogd");
    let mut child = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .arg("run")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = child.id().context("fogd run exited")?;
    let rss = fogd::ingest::status::rss_bytes_of(&pid.to_string()).context("no VmRSS")?;
    let _ = child.kill().await;
    Ok(rss)
}
