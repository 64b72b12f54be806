//! `fogd supervise`: the FaaS Supervisor inside a kube executor's pod or a podman executor's
//! container. It runs the script (`/bin/sh $FOGD_SCRIPT`, the contract's variables already in
//! the environment); its exit status is the script's, so the Job's or container's status says
//! how the run ended. In a pod (FOGD_GATEWAY set) it first fetches the input from the fogd that
//! made the Job and afterwards sends every output file back; in a container the folders are
//! bind-mounted from the invocation's, so there is nothing to carry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

fn var(k: &str) -> anyhow::Result<String> {
    std::env::var(k).with_context(|| {
        format!("{k} is not set: `fogd supervise` runs in a pod made by fogd's kube executor")
    })
}

pub fn supervise() -> anyhow::Result<ExitCode> {
    let script = PathBuf::from(var("FOGD_SCRIPT")?);
    let Ok(gateway) = std::env::var("FOGD_GATEWAY") else {
        // A podman executor's container (or an exposed service's): the script, nothing else,
        // and nothing said (the log is the script's: `/run` answers with it, as OSCAR does).
        let code = run_script(&script, std::env::var_os("TMP_INPUT_DIR").map(PathBuf::from))?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    };
    let gateway = gateway.trim_end_matches('/').to_string();
    let job = var("FOGD_JOB")?;
    let token = var("FOGD_JOB_TOKEN")?;
    let out_dir = PathBuf::from(var("TMP_OUTPUT_DIR")?);
    let in_dir = PathBuf::from(var("TMP_INPUT_DIR")?);
    for d in [&in_dir, &out_dir] {
        std::fs::create_dir_all(d).with_context(|| d.display().to_string())?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let base = format!("{gateway}/fogd/jobs/{job}");
    if let Ok(input) = std::env::var("INPUT_FILE_PATH") {
        rt.block_on(fetch(&http, &base, &token, Path::new(&input)))?;
    }
    eprintln!("[fogd supervise] job {job}: running {}", script.display());
    let code = run_script(&script, Some(in_dir))?;
    let (files, skipped) = crate::exec::outputs::collect(&out_dir, u64::MAX)?;
    for s in skipped {
        eprintln!("[fogd supervise] not sent: {s}");
    }
    let sent = rt.block_on(async {
        for f in &files {
            send(&http, &base, &token, &f.rel, &f.path).await?;
        }
        anyhow::Ok(files.len())
    })?;
    eprintln!("[fogd supervise] job {job}: script exited {code}, {sent} output(s) sent");
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// The OOM kills of this container's memory cgroup (v2, then v1), when it can be read.
fn oom_kills() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.events",
        "/sys/fs/cgroup/memory/memory.oom_control",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
    })
}

/// `/bin/sh script` (the shebang ignored, as OSCAR's supervisor does), in `cwd` when given.
fn run_script(script: &Path, cwd: Option<PathBuf>) -> anyhow::Result<i32> {
    let before = oom_kills();
    let code = run_shell(script, cwd)?;
    if oom_kills() > before {
        eprintln!("{}", crate::exec::contract::OOM_NOTE);
    }
    Ok(code)
}

fn run_shell(script: &Path, cwd: Option<PathBuf>) -> anyhow::Result<i32> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg(script);
    // The podman executor's secrets arrive as files (never in the container's inspectable
    // environment); the script gets them as variables, as the contract says.
    if let Some(dir) = std::env::var_os("FOGD_SECRETS") {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let (Ok(name), Ok(value)) = (e.file_name().into_string(), std::fs::read_to_string(e.path())) {
                cmd.env(name, value);
            }
        }
        cmd.env_remove("FOGD_SECRETS");
    }
    if let Some(d) = cwd.filter(|d| d.is_dir()) {
        cmd.current_dir(d);
    }
    let status = cmd
        .status()
        .with_context(|| format!("/bin/sh {}", script.display()))?;
    use std::os::unix::process::ExitStatusExt;
    // Killed by a signal: 128 + its number, as a shell reports it.
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

async fn fetch(http: &reqwest::Client, base: &str, token: &str, to: &Path) -> anyhow::Result<()> {
    let url = format!("{base}/input");
    let resp = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| url.clone())?;
    match resp.status().as_u16() {
        200 => {
            let bytes = resp.bytes().await?;
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(to, &bytes).with_context(|| to.display().to_string())?;
            Ok(())
        }
        404 => Ok(()),
        s => bail!("{url} answered {s}: {}", resp.text().await.unwrap_or_default()),
    }
}

async fn send(http: &reqwest::Client, base: &str, token: &str, rel: &str, path: &Path) -> anyhow::Result<()> {
    let enc: Vec<String> = rel
        .split('/')
        .map(|c| percent_encoding::utf8_percent_encode(c, percent_encoding::NON_ALPHANUMERIC).to_string())
        .collect();
    let url = format!("{base}/outputs/{}", enc.join("/"));
    let body = tokio::fs::read(path)
        .await
        .with_context(|| path.display().to_string())?;
    let resp = http
        .put(&url)
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .with_context(|| url.clone())?;
    if !resp.status().is_success() {
        bail!(
            "{url} answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// `fogd install-supervisor DIR`: the init container's copy of this binary into the pod.
pub fn install(dir: &Path) -> anyhow::Result<ExitCode> {
    let me = std::env::current_exe()?;
    std::fs::create_dir_all(dir)?;
    let to = dir.join("fogd");
    std::fs::copy(&me, &to).with_context(|| format!("{} -> {}", me.display(), to.display()))?;
    Ok(ExitCode::SUCCESS)
}
