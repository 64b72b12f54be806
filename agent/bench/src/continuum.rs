//! `fogd bench continuum`: the shape of the paper's Fig. 9 (makespan against the number of
//! videos, on premises only versus hybrid) with two fogd nodes on loopback. The workflow has the
//! example's two stages: `anon-and-split` turns a video into frames on the edge, and
//! `mask-detector` judges each frame, delegated to the cloud node (`replicas`) when the edge has
//! no free slot. Both nodes share this machine's cores, so the stages' work is a fixed sleep per
//! item (`--split-ms`, `--detect-ms`): what is measured is fogd's scheduling, delegation and
//! follow-up, not the CPU of one box twice. Writes a table, a CSV and (with `fogd-vision`
//! installed) a PNG plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use fogd::journal::{Invocation, State};
use fogd_testkit::FogdNode;

#[derive(Debug, clap::Args)]
pub struct BenchContinuumArgs {
    /// Numbers of videos, one run each (edge only, then hybrid).
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,20")]
    videos: Vec<usize>,
    /// Frames a video yields (a minute, one frame every 5 s: 12).
    #[arg(long, default_value_t = 12)]
    frames: usize,
    /// Time to split one video.
    #[arg(long, default_value_t = 1000)]
    split_ms: u64,
    /// Time to judge one frame.
    #[arg(long, default_value_t = 200)]
    detect_ms: u64,
    /// Slots of each service on the edge (the paper's on-premises tier had 3).
    #[arg(long, default_value_t = 1)]
    edge_slots: usize,
    #[arg(long, default_value_t = 8)]
    cloud_slots: usize,
    /// Where the table, CSV and PNG go.
    #[arg(long, default_value = "bench-continuum")]
    out: PathBuf,
}

const SPLIT: &str = "#!/bin/sh
sleep \"$SPLIT_S\"
name=$(basename \"$INPUT_FILE_PATH\")
i=1
while [ \"$i\" -le \"$FRAMES\" ]; do
  echo \"$name frame $i\" > \"$TMP_OUTPUT_DIR/$name-img$i.jpg\"
  i=$((i + 1))
done
";

const DETECT: &str = "#!/bin/sh
sleep \"$DETECT_S\"
name=$(basename \"$INPUT_FILE_PATH\")
echo '{\"faces\": 0}' > \"$TMP_OUTPUT_DIR/$name.json\"
";

/// The `mask-detector` service, the same on both tiers (the edge's carries its `replicas`).
fn detector(a: &BenchContinuumArgs, cluster: &str) -> String {
    format!(
        "  - {cluster}:
      name: mask-detector
      image: x
      script: detect.sh
      environment: {{variables: {{DETECT_S: '{detect}'}}}}
      input: [{{storage_provider: minio, path: frames/in}}]
      output: [{{storage_provider: minio, path: results/out}}]
",
        detect = a.detect_ms as f64 / 1000.0,
    )
}

fn edge_fdl(a: &BenchContinuumArgs, cloud_url: &str, cloud_password: &str) -> String {
    format!(
        "functions:
  oscar:
  - edge:
      name: anon-and-split
      image: x
      script: split.sh
      environment: {{variables: {{SPLIT_S: '{split}', FRAMES: '{frames}'}}}}
      input: [{{storage_provider: minio, path: videos/in}}]
      output: [{{storage_provider: minio, path: frames/in}}]
{detector}      replicas:
      - {{type: oscar, cluster_id: cloud, service_name: mask-detector, priority: 0}}
clusters:
  cloud: {{endpoint: '{cloud_url}', auth_user: oscar, auth_password: '{cloud_password}', ssl_verify: false}}
",
        split = a.split_ms as f64 / 1000.0,
        frames = a.frames,
        detector = detector(a, "edge"),
    )
}

fn cloud_fdl(a: &BenchContinuumArgs) -> String {
    format!("functions:\n  oscar:\n{}", detector(a, "cloud"))
}

struct Run {
    videos: usize,
    mode: &'static str,
    makespan_s: f64,
    local: usize,
    delegated: usize,
}

/// Submits `videos` videos to the edge and waits for every invocation they cause.
async fn one_run(
    a: &BenchContinuumArgs,
    bin: &Path,
    dir: &Path,
    videos: usize,
    hybrid: bool,
) -> anyhow::Result<Run> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for (name, body) in [("split.sh", SPLIT), ("detect.sh", DETECT)] {
        std::fs::write(dir.join(name), body)?;
    }
    let cloud_dir = dir.join("cloud");
    std::fs::create_dir_all(&cloud_dir)?;
    std::fs::write(cloud_dir.join("detect.sh"), DETECT)?;
    std::fs::write(cloud_dir.join("workflow.yaml"), cloud_fdl(a))?;
    let cloud = hybrid.then(|| {
        FogdNode::start(
            bin,
            &cloud_dir,
            "cloud",
            &format!("concurrency: {}\n", a.cloud_slots),
            Some(&cloud_dir.join("workflow.yaml")),
        )
    });
    let (url, pw) = cloud
        .as_ref()
        .map_or((String::from("http://127.0.0.1:9"), String::new()), |c| {
            (c.url.clone(), c.password.clone())
        });
    std::fs::write(dir.join("workflow.yaml"), edge_fdl(a, &url, &pw))?;
    let delegation = if hybrid {
        "delegation: {after: 0s, poll: 100ms}\n"
    } else {
        "delegation: {enabled: false}\n"
    };
    let edge = FogdNode::start(
        bin,
        &dir.join("edge"),
        "edge",
        &format!("concurrency: {}\n{delegation}", a.edge_slots),
        Some(&dir.join("workflow.yaml")),
    );
    let http = reqwest::Client::new();
    for v in 0..videos {
        edge.submit(&http, "anon-and-split", &format!("video{v:02}.mp4"), b"video")
            .await;
    }
    let want = videos * (1 + a.frames);
    let journal = edge.journal();
    let deadline = Instant::now() + Duration::from_secs(600);
    let rows: Vec<Invocation> = loop {
        let rows = journal.invocations(None, 1_000_000)?;
        if rows.len() >= want && rows.iter().all(|i| i.state.is_final()) {
            break rows;
        }
        if Instant::now() > deadline {
            bail!(
                "{} of {want} invocations done after 600 s",
                rows.iter().filter(|i| i.state.is_final()).count()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if let Some(bad) = rows.iter().find(|i| i.state != State::Succeeded) {
        bail!("job {} {}: {:?}", bad.uuid, bad.state.as_str(), bad.error);
    }
    let start = rows.iter().map(|i| i.created_ms).min().unwrap_or(0);
    let end = rows.iter().filter_map(|i| i.finished_ms).max().unwrap_or(0);
    let delegated = rows.iter().filter(|i| i.ran_on.is_some()).count();
    drop(edge);
    drop(cloud);
    Ok(Run {
        videos,
        mode: if hybrid { "hybrid" } else { "edge-only" },
        makespan_s: (end - start) as f64 / 1000.0,
        local: rows.len() - delegated,
        delegated,
    })
}

pub async fn bench(a: &BenchContinuumArgs) -> anyhow::Result<ExitCode> {
    let bin = std::env::current_exe()
        .context("where is fogd-bench?")?
        .with_file_name("fogd");
    std::fs::create_dir_all(&a.out).with_context(|| format!("{}", a.out.display()))?;
    let work = a.out.join("work");
    eprintln!(
        "bench continuum: {} frames a video, split {} ms, detect {} ms; edge {} slot(s) per service, cloud {}",
        a.frames, a.split_ms, a.detect_ms, a.edge_slots, a.cloud_slots
    );
    let mut runs = Vec::new();
    for &n in &a.videos {
        for hybrid in [false, true] {
            let r = one_run(a, &bin, &work, n, hybrid).await?;
            eprintln!(
                "  {:>3} videos {:<9}: {:>7.2} s ({} here, {} delegated)",
                r.videos, r.mode, r.makespan_s, r.local, r.delegated
            );
            runs.push(r);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let mut csv = String::from("videos,mode,makespan_s,local,delegated\n");
    for r in &runs {
        let _ = writeln!(
            csv,
            "{},{},{:.3},{},{}",
            r.videos, r.mode, r.makespan_s, r.local, r.delegated
        );
    }
    let csv_path = a.out.join("continuum.csv");
    std::fs::write(&csv_path, &csv)?;
    let mut table = String::from(
        "| videos | edge only (s) | hybrid (s) | speed-up | delegated |\n|---:|---:|---:|---:|---:|\n",
    );
    for &n in &a.videos {
        let get = |m: &str| runs.iter().find(|r| r.videos == n && r.mode == m);
        if let (Some(e), Some(h)) = (get("edge-only"), get("hybrid")) {
            let _ = writeln!(
                table,
                "| {n} | {:.2} | {:.2} | {:.1}x | {} of {} |",
                e.makespan_s,
                h.makespan_s,
                e.makespan_s / h.makespan_s.max(0.001),
                h.delegated,
                h.local + h.delegated
            );
        }
    }
    print!("{table}");
    std::fs::write(a.out.join("continuum.md"), &table)?;
    let png = a.out.join("continuum.png");
    let vision = bin.with_file_name("fogd-vision");
    let plotted = std::process::Command::new(&vision)
        .args(["bench", "plot", "--csv"])
        .arg(&csv_path)
        .arg("--png")
        .arg(&png)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if plotted {
        println!(
            "wrote {}, {} and {}",
            csv_path.display(),
            a.out.join("continuum.md").display(),
            png.display()
        );
    } else {
        println!(
            "wrote {} and {}; no PNG ({} did not run: build it with the vision feature)",
            csv_path.display(),
            a.out.join("continuum.md").display(),
            vision.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
