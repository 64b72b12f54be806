//! `fogd supervise`: the FaaS Supervisor inside a kube executor's pod. It fetches the input from
//! the fogd that made the Job, runs the script (`/bin/sh $FOGD_SCRIPT`, the contract's variables
//! already in the environment), and sends every output file back; its exit status is the
//! script's, so the Job's status says how the run ended.

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
    let gateway = var("FOGD_GATEWAY")?.trim_end_matches('/').to_string();
    let job = var("FOGD_JOB")?;
    let token = var("FOGD_JOB_TOKEN")?;
    let script = PathBuf::from(var("FOGD_SCRIPT")?);
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
    let status = std::process::Command::new("/bin/sh")
        .arg(&script)
        .current_dir(&in_dir)
        .status()
        .with_context(|| format!("/bin/sh {}", script.display()))?;
    let code = status.code().unwrap_or(1);
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
