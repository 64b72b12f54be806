//! `fogd demo`: the paper's use case on this machine, on the embedded default (local store,
//! local executor; no broker, no S3): a camera video lands in `cameras/incoming`, is split into
//! frames with every face blurred on the device (masks judged before blurring), each frame's
//! verdict is made by the mask detector, and a summary is printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::Config;
use crate::daemon::Daemon;
use crate::fdl::{ProviderKind, ProviderRef};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A video of your own (default: a generated one with known faces, plain and masked).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Length of the generated video.
    #[arg(long, default_value_t = 30)]
    pub seconds: u32,
    /// One frame every this long.
    #[arg(long, default_value = "5s")]
    pub every: String,
    /// Where the demo keeps its video, workflow and data (cleared of a previous demo's data).
    #[arg(long, default_value = "fogd-demo")]
    pub dir: PathBuf,
    /// The camera sees vehicles: blur licence plates too, and count them in the table.
    #[arg(long)]
    pub plates: bool,
}

const WORKFLOW: &str = "functions:
  oscar:
  - edge:
      name: anon-and-split
      image: fogd/builtin:anonymize
      script: anon-and-split.sh
      input: [{storage_provider: minio, path: cameras/incoming}]
      output: [{storage_provider: minio, path: cameras/anonymised}]
  - edge:
      name: mask-detector
      image: fogd/builtin:detect-masks
      script: mask-detector.sh
      input: [{storage_provider: minio, path: cameras/anonymised, suffix: [.jpg]}]
      output: [{storage_provider: minio, path: cameras/results}]
";

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| path.display().to_string())
}

pub async fn demo(a: &DemoArgs, mut cfg: Config) -> anyhow::Result<ExitCode> {
    humantime::parse_duration(&a.every).with_context(|| format!("--every {}", a.every))?;
    let me = std::env::current_exe()?;
    std::fs::create_dir_all(&a.dir).with_context(|| a.dir.display().to_string())?;
    let dir = std::fs::canonicalize(&a.dir)?;
    let video = match &a.video {
        Some(v) => std::fs::canonicalize(v).with_context(|| v.display().to_string())?,
        None => {
            let v = dir.join(format!("cam1-{}s.mp4", a.seconds));
            if !v.is_file() {
                println!("making a {} s 1080p sample video with known faces ...", a.seconds);
                let status = std::process::Command::new(&me)
                    .args(["sample", "--seconds", &a.seconds.to_string(), "--out"])
                    .arg(&v)
                    .stdout(std::process::Stdio::null())
                    .status()?;
                if !status.success() {
                    bail!("fogd sample failed ({status})");
                }
            }
            v
        }
    };
    // The example's workflow, with this binary's path in the scripts.
    let wf = dir.join("workflow.yaml");
    write(&wf, WORKFLOW)?;
    let fogd = me.display().to_string();
    write(
        &dir.join("anon-and-split.sh"),
        &format!(
            "exec '{fogd}' anonymize \"$INPUT_FILE_PATH\" --out \"$TMP_OUTPUT_DIR\" --every '{}' --classify-masks{}\n",
            a.every,
            if a.plates { " --plates" } else { "" }
        ),
    )?;
    write(
        &dir.join("mask-detector.sh"),
        &format!(
            "rel=$(dirname \"${{STORAGE_OBJECT_KEY#anonymised/}}\")\nexec '{fogd}' detect-masks \"$INPUT_FILE_PATH\" --out \"$TMP_OUTPUT_DIR/$rel\"\n"
        ),
    )?;
    let data = dir.join("data");
    if data.join("journal.sqlite").is_file() {
        std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
    }
    cfg.data_dir = data.clone();
    cfg.gateway.enabled = false;
    let drain = cfg.drain_timeout;
    let daemon = Daemon::start(cfg, &[wf]).await?;
    let rt = daemon.runtime().clone();

    let started = Instant::now();
    let name = video
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("video.mp4")
        .to_string();
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    rt.put(&minio, &format!("cameras/incoming/{name}"), &video)
        .await?;
    println!("{name} -> cameras/incoming: anonymising ...");
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut judged_shown = 0;
    let invocations = loop {
        let all = rt.journal.invocations(None, 100_000)?;
        let anon_done = all
            .iter()
            .any(|i| i.service == "anon-and-split" && i.state.is_final());
        // Progress: each frame the mask detector judged, as it happens.
        let judged = all
            .iter()
            .filter(|i| i.service == "mask-detector" && i.state.is_final())
            .count();
        if judged > judged_shown {
            judged_shown = judged;
            let (anon, masks) = if anon_done {
                ("done", "")
            } else {
                ("running", ", more coming")
            };
            println!(
                "  {:>5.1} s  anonymiser {anon}; {judged} frame(s) judged{masks}",
                started.elapsed().as_secs_f64()
            );
        }
        if anon_done && all.iter().all(|i| i.state.is_final()) {
            break all;
        }
        if Instant::now() > deadline {
            bail!(
                "the demo did not finish in 15 minutes (see `fogd --data-dir {} jobs`)",
                data.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let wall = started.elapsed();
    daemon.shutdown(drain).await?;
    summary(&data, &name, &invocations, wall, a.plates)
}

fn num(v: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(0.0)
}

fn summary(
    data: &Path,
    name: &str,
    invocations: &[crate::journal::Invocation],
    wall: Duration,
    plates: bool,
) -> anyhow::Result<ExitCode> {
    let stem = Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("video");
    let frames_dir = data.join("store/cameras/anonymised").join(stem);
    let results_dir = data.join("store/cameras/results").join(stem);
    let mut frames: Vec<(u64, serde_json::Value, Option<serde_json::Value>)> = Vec::new();
    for e in std::fs::read_dir(&frames_dir).with_context(|| frames_dir.display().to_string())? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "json") {
            let side: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)?;
            let file_stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            let verdict = std::fs::read(results_dir.join(format!("{file_stem}.masks.json")))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            frames.push((side["frame"].as_u64().unwrap_or(0), side, verdict));
        }
    }
    frames.sort_by_key(|f| f.0);
    println!();
    // The plates column only where plates were searched.
    let col = |v: f64| if plates { format!(" {v:>6}") } else { String::new() };
    println!(
        "{:<7} {:>8} {:>6} {:>7} {:>9} {:>8}{}  status",
        "frame",
        "time",
        "faces",
        "masked",
        "unmasked",
        "no mask",
        if plates { " plates" } else { "" }
    );
    let (mut faces, mut masked, mut unmasked, mut plate_total) = (0.0, 0.0, 0.0, 0.0);
    let mut stages = [0.0f64; 5];
    for (n, side, verdict) in &frames {
        let (f, m, u) = (
            num(side, &["counts", "faces"]),
            num(side, &["counts", "mask"]),
            num(side, &["counts", "no_mask"]),
        );
        let p = num(side, &["counts", "plates"]);
        faces += f;
        masked += m;
        unmasked += u;
        plate_total += p;
        for (i, k) in ["decode", "detect", "classify", "redact", "encode"]
            .iter()
            .enumerate()
        {
            stages[i] += num(side, &["timings_ms", k]);
        }
        let status = verdict
            .as_ref()
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_else(|| "-".into());
        println!(
            "img{n:<4} {:>6.1} s {f:>6} {m:>7} {u:>9} {:>7.0}%{}  {status}",
            num(side, &["timestamp_s"]),
            100.0 * u / (m + u).max(1.0),
            col(p)
        );
    }
    println!(
        "{:<7} {:>8} {faces:>6} {masked:>7} {unmasked:>9} {:>7.0}%{}",
        "total",
        "",
        100.0 * unmasked / (masked + unmasked).max(1.0),
        col(plate_total)
    );
    let n = frames.len().max(1) as f64;
    println!(
        "\ntime per frame (ms): decode {:.0}, detect {:.0}, classify masks {:.0}, blur {:.1}, encode {:.0}",
        stages[0] / n,
        stages[1] / n,
        stages[2] / n,
        stages[3] / n,
        stages[4] / n
    );
    for svc in ["anon-and-split", "mask-detector"] {
        let runs: Vec<_> = invocations.iter().filter(|i| i.service == svc).collect();
        let ok = runs
            .iter()
            .filter(|i| i.state == crate::journal::State::Succeeded)
            .count();
        let secs: Vec<f64> = runs
            .iter()
            .filter_map(|i| Some((i.finished_ms? - i.started_ms?) as f64 / 1000.0))
            .collect();
        println!(
            "{svc}: {} run(s), {ok} succeeded, {:.2} s each on average",
            runs.len(),
            secs.iter().sum::<f64>() / secs.len().max(1) as f64
        );
    }
    println!("whole workflow: {:.1} s", wall.as_secs_f64());
    println!("\nblurred frames and their sidecars: {}", frames_dir.display());
    println!("mask verdicts and their pictures:  {}", results_dir.display());
    println!(
        "the raw video stayed in {} (nothing left this machine)",
        data.join("store/cameras/incoming").display()
    );
    let failed = invocations
        .iter()
        .any(|i| i.state != crate::journal::State::Succeeded);
    if frames.is_empty() || failed {
        eprintln!("demo: some steps failed: fogd --data-dir {} jobs", data.display());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
