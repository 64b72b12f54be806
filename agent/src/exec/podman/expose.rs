//! OSCAR's exposed services on the podman executor: one long-lived container per service
//! (`fogd-expose-<service>`), its `api_port` published on the box, started again by podman if it
//! dies. A container made for the same definition is kept across fogd restarts (its label holds
//! a hash of the definition); one made for an older definition is replaced.

use std::path::Path;

use super::run::{ensure_image, failed, podman, supervisor, write_env};
use super::{run_args, ContainerSpec, PodmanError};
use crate::config::PodmanConfig;
use crate::fdl::Service;

/// At the node's start: podman is there if a service runs on it (else the start fails), and the
/// exposed services of the podman executor run (one that cannot is an error in the log).
pub async fn prepare(rt: &crate::runtime::Runtime) -> Result<(), PodmanError> {
    let wf = rt.workflow();
    let on_podman: Vec<&Service> = wf
        .services
        .iter()
        .filter(|s| rt.cfg.executor_of(&s.name) == crate::config::ExecutorKind::Podman)
        .collect();
    if on_podman.is_empty() {
        return Ok(());
    }
    let about = super::check(&rt.cfg.podman).await?;
    tracing::info!("podman executor: {about}");
    for svc in on_podman.into_iter().filter(|s| s.expose.is_some()) {
        let mut env: Vec<(String, String)> = svc.env.clone().into_iter().collect();
        env.extend(svc.secrets.clone());
        env.push(("OSCAR_SERVICE_NAME".into(), svc.name.clone()));
        let dir = rt.cfg.data_dir.join("exposed").join(&svc.name);
        // One exposed service that cannot start (its port taken, its image gone) must not keep
        // the node, its cameras and other services down: said loudly, the rest goes on.
        if let Err(e) = start_exposed(&rt.cfg.podman, svc, &rt.node, &dir, env).await {
            tracing::error!(service = %svc.name, "exposed service not started: {e}");
        }
    }
    Ok(())
}

pub fn expose_name(service: &str) -> String {
    format!("fogd-expose-{service}")
}

/// Starts (or keeps) the container of an exposed service; `dir` holds its script and env file.
pub async fn start_exposed(
    cfg: &PodmanConfig,
    svc: &Service,
    node: &str,
    dir: &Path,
    env: Vec<(String, String)>,
) -> Result<(), PodmanError> {
    let name = expose_name(&svc.name);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PodmanError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let script = dir.join("script.sh");
    let text = match &svc.script {
        Some(crate::fdl::Script::File(p)) => std::fs::read_to_string(p).map_err(io(p))?,
        Some(crate::fdl::Script::Inline(t)) => t.clone(),
        _ => String::new(),
    };
    std::fs::write(&script, &text).map_err(io(&script))?;
    let image = cfg.image_for(svc.image.as_deref().unwrap_or_default());
    let env_path = dir.join("env");
    let mut env = env;
    env.push(("FOGD_SCRIPT".into(), super::SCRIPT.into()));
    let secrets = super::owned::secrets(cfg, svc, &mut env).await?;
    super::owned::ensure_volume(cfg, svc).await?;
    let supervisor = supervisor(cfg)?;
    let spec = ContainerSpec {
        cfg,
        svc,
        name: &name,
        node,
        job: None,
        env_file: &env_path,
        secrets: &secrets,
        supervisor: &supervisor,
        script: Some(&script),
        work: None,
        mount: None,
        timeout: None,
    };
    let mut args = run_args(&spec);
    // The definition's hash: the same one found running is kept, another replaced.
    let hash = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(args.join("\n"));
        h.update(&text);
        for (k, v) in &env {
            h.update(format!("{k}={v}\n"));
        }
        hex::encode(&h.finalize()[..8])
    };
    args.insert(4, format!("--label=fogd.io/spec={hash}"));
    let out = podman(
        cfg,
        &[
            "container",
            "inspect",
            "--format",
            "{{.State.Running}} {{index .Config.Labels \"fogd.io/spec\"}}",
            &name,
        ],
    )
    .await?;
    if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == format!("true {hash}") {
        tracing::info!(service = %svc.name, container = %name, "exposed service running already: kept");
        return Ok(());
    }
    ensure_image(cfg, &image).await?;
    // The container of an older definition, if any (none to remove is not an error).
    let _ = podman(cfg, &["rm", "--force", "--time", "5", &name]).await;
    write_env(&env_path, &env)?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = podman(cfg, &args).await;
    let _ = std::fs::remove_file(&env_path);
    let out = out?;
    if !out.status.success() {
        return Err(failed(
            &format!("run {image} (exposed service {})", svc.name),
            &out,
        ));
    }
    if let Some(e) = &svc.expose {
        tracing::info!(service = %svc.name, container = %name, port = e.host_port, address = %cfg.expose_address, "exposed service started");
    }
    Ok(())
}
