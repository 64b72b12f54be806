//! `fogd bench containers`: what running a function in a container costs beside running it as a
//! local process, for a trivial script (`date` into its output): from the object landing to the
//! script starting (for podman: the image looked up, the container made and started, the
//! supervisor run), and the whole invocation (until its output is stored and the container
//! removed). The same node, one invocation at a time, the executors alternating.

use std::path::Path;
use std::time::Duration;

use fogd::config::{Config, ExecutorKind};
use fogd::fdl::{ProviderKind, ProviderRef};

#[derive(Debug, clap::Args)]
pub struct BenchContainersArgs {
    /// Invocations per executor.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The image the podman executor runs (`scripts/images base` makes this one).
    #[arg(long, default_value = "localhost/fogd/debian:bookworm")]
    image: String,
    /// The OCI runtime podman uses (`runc` where the cgroups are hybrid).
    #[arg(long)]
    runtime: Option<String>,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(((v.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

pub async fn bench(a: BenchContainersArgs) -> anyhow::Result<std::process::ExitCode> {
    let root = crate::runtime::scratch_dir().join(format!("fogd-bench-containers-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&root)?;
    let result = run_in(&root, &a).await;
    let _ = std::fs::remove_dir_all(&root);
    result
}

async fn run_in(root: &Path, a: &BenchContainersArgs) -> anyhow::Result<std::process::ExitCode> {
    let wf = root.join("wf.yaml");
    std::fs::write(
        &wf,
        format!(
            "functions:\n  oscar:\n  - b:\n      name: trivial\n      image: {}\n      script: t.sh\n      input: [{{storage_provider: minio, path: bench/in}}]\n      output: [{{storage_provider: minio, path: bench/out}}]\n",
            a.image
        ),
    )?;
    std::fs::write(
        root.join("t.sh"),
        "date +%s%N > \"$TMP_OUTPUT_DIR/t-$(basename \"$INPUT_FILE_PATH\")\"\n",
    )?;
    let input = root.join("in.txt");
    std::fs::write(&input, b"x\n")?;
    let minio = ProviderRef::new(ProviderKind::Minio, "default");
    let mut rows = Vec::new();
    for executor in [ExecutorKind::Local, ExecutorKind::Podman] {
        let mut cfg = Config {
            data_dir: root.join(format!("{executor:?}")),
            executor,
            ..Config::default()
        };
        cfg.gateway.enabled = false;
        cfg.podman.runtime = a.runtime.clone();
        let daemon = fogd::daemon::Daemon::start(cfg, std::slice::from_ref(&wf)).await?;
        let rt = daemon.runtime().clone();
        let (mut to_start, mut whole) = (Vec::new(), Vec::new());
        eprintln!("bench containers: {executor:?}, {} invocations ...", a.runs);
        // One not counted: the first container start warms podman's storage and the page cache.
        for i in 0..=a.runs {
            let name = format!("{i}.txt");
            let (_, ids) = rt.put(&minio, &format!("bench/in/{name}"), &input).await?;
            let id = ids.first().copied().unwrap_or_default();
            let inv = crate::runtime::wait_final(&rt, id).await?;
            anyhow::ensure!(
                inv.state == fogd::journal::State::Succeeded,
                "{executor:?}: invocation {} {}: {}",
                inv.uuid,
                inv.state.as_str(),
                inv.error.unwrap_or_default()
            );
            let ev = rt.journal.event(inv.event_id)?;
            let out = rt.data.store_object(&format!("bench/out/t-{name}"));
            let ns: i64 = std::fs::read_to_string(&out)?.trim().parse()?;
            if i > 0 {
                to_start.push((ns / 1000 - ev.created_us) as f64 / 1000.0);
                whole.push((inv.finished_ms.unwrap_or_default() - ev.created_us / 1000) as f64);
            }
        }
        daemon.shutdown(Duration::from_secs(10)).await?;
        rows.push((executor, to_start, whole));
    }
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10}",
        "executor", "start p50", "start p90", "whole p50", "whole p90"
    );
    for (e, mut s, mut w) in rows {
        println!(
            "{:<8} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            format!("{e:?}").to_lowercase(),
            quantile(&mut s, 0.5),
            quantile(&mut s, 0.9),
            quantile(&mut w, 0.5),
            quantile(&mut w, 0.9)
        );
    }
    println!("start: the object landed -> the script's first command; whole: -> its output stored (and the container removed).");
    Ok(std::process::ExitCode::SUCCESS)
}
