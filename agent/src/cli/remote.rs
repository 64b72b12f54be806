//! `fogd apply` and `fogd services`: one fogd (or an OSCAR cluster) driven through its API, as
//! oscar-cli does it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::Value;

use crate::fdl::{self, LoadOptions};

pub struct Remote {
    pub endpoint: String,
    pub user: String,
    pub password: String,
}

impl Remote {
    fn client() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint.trim_end_matches('/'))
    }
}

/// The services of `fdl_file` in the API's shape: the script's text inline, the file's
/// `storage_providers` and `clusters` folded into each service, `cpu` as a string.
pub fn api_services(fdl_file: &Path) -> anyhow::Result<Vec<Value>> {
    let report = fdl::load_file(fdl_file, LoadOptions::default());
    if !report.is_valid() {
        let errors: Vec<String> = report.errors().map(|d| format!("  {d}")).collect();
        bail!("{} is not valid:\n{}", fdl_file.display(), errors.join("\n"));
    }
    let text = std::fs::read_to_string(fdl_file)?;
    let doc: Value = serde_saphyr::from_str(&text).with_context(|| format!("{}", fdl_file.display()))?;
    let base = fdl_file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for item in doc["functions"]["oscar"].as_array().into_iter().flatten() {
        for (cluster, svc) in item.as_object().into_iter().flatten() {
            let mut svc = svc.clone();
            let Some(o) = svc.as_object_mut() else { continue };
            if let Some(script) = o.get("script").and_then(Value::as_str) {
                let p = Path::new(script);
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                };
                let content =
                    std::fs::read_to_string(&p).with_context(|| format!("script {}", p.display()))?;
                o.insert("script".into(), Value::String(content));
            }
            if let Some(cpu) = o.get("cpu").filter(|c| c.is_number()).map(ToString::to_string) {
                o.insert("cpu".into(), Value::String(cpu));
            }
            o.entry("cluster_id")
                .or_insert_with(|| Value::String(cluster.clone()));
            for k in ["storage_providers", "clusters"] {
                if !doc[k].is_null() {
                    o.entry(k).or_insert_with(|| doc[k].clone());
                }
            }
            out.push(svc);
        }
    }
    if out.is_empty() {
        bail!("{}: no `functions.oscar` service to apply", fdl_file.display());
    }
    Ok(out)
}

pub async fn apply(remote: &Remote, fdl_file: &Path) -> anyhow::Result<ExitCode> {
    let http = Remote::client()?;
    for svc in api_services(fdl_file)? {
        let name = svc["name"].as_str().unwrap_or_default().to_string();
        let exists = http
            .get(remote.url(&format!("/system/services/{name}")))
            .basic_auth(&remote.user, Some(&remote.password))
            .send()
            .await
            .with_context(|| format!("cannot reach {}", remote.endpoint))?
            .status();
        let req = if exists.is_success() {
            http.put(remote.url("/system/services"))
        } else {
            http.post(remote.url("/system/services"))
        };
        let r = req
            .basic_auth(&remote.user, Some(&remote.password))
            .json(&svc)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", remote.endpoint))?;
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{}: {name}: {status} {body}", remote.endpoint);
        }
        println!(
            "{name}: {}",
            if exists.is_success() { "updated" } else { "created" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn services(remote: &Remote, json: bool) -> anyhow::Result<ExitCode> {
    let r = Remote::client()?
        .get(remote.url("/system/services"))
        .basic_auth(&remote.user, Some(&remote.password))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", remote.endpoint))?;
    let status = r.status();
    if !status.is_success() {
        bail!(
            "{}: {status} {}",
            remote.endpoint,
            r.text().await.unwrap_or_default()
        );
    }
    let list: Vec<Value> = r.json().await?;
    if json {
        // As the API gave them.
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<30} {:<40} {:<8} INPUTS", "NAME", "IMAGE", "MEMORY");
    for s in list {
        let inputs: Vec<String> = s["input"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                format!(
                    "{}:{}",
                    i["storage_provider"].as_str().unwrap_or(""),
                    i["path"].as_str().unwrap_or("")
                )
            })
            .collect();
        println!(
            "{:<30} {:<40} {:<8} {}",
            s["name"].as_str().unwrap_or(""),
            s["image"].as_str().unwrap_or(""),
            s["memory"].as_str().unwrap_or("-"),
            inputs.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
