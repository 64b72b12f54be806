//! What a service owns in podman besides its containers: its named volume and its secrets.
//!
//! Names are injective: the service's name goes in with its length (`fogd-<len>-<service>-...`),
//! so service `cam` with volume `a-cache` and service `cam-a` with volume `cache` get two
//! volumes, not one. Volumes are made by fogd with the service's label (not made on the fly by
//! `podman run`), and a service deleted through the API takes its volumes and secrets with it.
//!
//! Secrets never go into the container's environment, where `podman inspect` shows them
//! (`Config.Env`): each is a podman secret (root-only store), mounted as a file under
//! `/run/secrets/fogd/`, and the supervisor reads them into the script's environment, so the
//! FaaS Supervisor contract holds. A secret's name carries a hash of its value: a changed value
//! is a new secret, and the old one is removed.

use std::collections::HashSet;
use std::sync::Mutex;

use super::run::{failed, podman, podman_with_input};
use super::PodmanError;
use crate::config::PodmanConfig;
use crate::fdl::Service;

/// Where the secrets are in the container; the supervisor exports each file as a variable.
pub const SECRETS_DIR: &str = "/run/secrets/fogd";

fn owner_prefix(service: &str) -> String {
    format!("fogd-{}-{service}-", service.len())
}

/// The named volume of a service's `volume` block.
pub fn volume_name(service: &str, name: &str) -> String {
    format!("{}{name}", owner_prefix(service))
}

/// The podman secret holding `value` for the service's variable `var`.
pub fn secret_name(service: &str, var: &str, value: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(value.as_bytes())[..6]);
    format!("{}{}-{var}-{h}", owner_prefix(service), var.len())
}

/// Volumes and secrets known to exist, so that each costs a podman call once per process.
fn made() -> &'static Mutex<HashSet<String>> {
    static MADE: std::sync::OnceLock<Mutex<HashSet<String>>> = std::sync::OnceLock::new();
    MADE.get_or_init(Default::default)
}

fn known(name: &str) -> bool {
    made().lock().unwrap_or_else(|p| p.into_inner()).contains(name)
}

fn remember(name: &str) {
    made()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string());
}

/// The service's volume, made with its labels if it is not there.
pub async fn ensure_volume(cfg: &PodmanConfig, svc: &Service) -> Result<(), PodmanError> {
    let Some(v) = &svc.volume else { return Ok(()) };
    let name = volume_name(&svc.name, &v.name);
    if known(&name) || podman(cfg, &["volume", "exists", &name]).await?.status.success() {
        remember(&name);
        return Ok(());
    }
    let out = podman(
        cfg,
        &[
            "volume",
            "create",
            "--label=app.kubernetes.io/managed-by=fogd",
            &format!("--label=fogd.io/service={}", svc.name),
            &name,
        ],
    )
    .await?;
    if !out.status.success() && !podman(cfg, &["volume", "exists", &name]).await?.status.success() {
        return Err(failed(&format!("volume create {name}"), &out));
    }
    remember(&name);
    Ok(())
}

/// Takes the service's secrets out of `env` and makes each a podman secret; returns the
/// `--secret` values for `podman run`.
pub async fn secrets(
    cfg: &PodmanConfig,
    svc: &Service,
    env: &mut Vec<(String, String)>,
) -> Result<Vec<String>, PodmanError> {
    let mut mounts = Vec::new();
    let (secret, plain): (Vec<_>, Vec<_>) = std::mem::take(env)
        .into_iter()
        .partition(|(k, _)| svc.secrets.contains_key(k));
    *env = plain;
    for (var, value) in secret {
        if var.contains(['/', ',', '=']) || var.starts_with('.') {
            return Err(PodmanError::Invalid(format!(
                "secret `{var}` of service `{}`: not a variable name",
                svc.name
            )));
        }
        let name = secret_name(&svc.name, &var, &value);
        if !known(&name) {
            if !podman(cfg, &["secret", "inspect", &name]).await?.status.success() {
                let out = podman_with_input(cfg, &["secret", "create", &name, "-"], value.as_bytes()).await?;
                if !out.status.success() {
                    return Err(failed(&format!("secret create {name}"), &out));
                }
                // The secret of an older value of the same variable goes.
                let stale = format!("{}{}-{var}-", owner_prefix(&svc.name), var.len());
                remove_secrets(cfg, &stale, Some(&name)).await;
            }
            remember(&name);
        }
        mounts.push(format!("{name},type=mount,target={SECRETS_DIR}/{var}"));
    }
    if !mounts.is_empty() {
        env.push(("FOGD_SECRETS".into(), SECRETS_DIR.into()));
    }
    Ok(mounts)
}

async fn remove_secrets(cfg: &PodmanConfig, prefix: &str, keep: Option<&str>) {
    let Ok(out) = podman(cfg, &["secret", "ls", "--format", "{{.Name}}"]).await else {
        return;
    };
    for name in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
        if name.starts_with(prefix) && Some(name) != keep {
            let _ = podman(cfg, &["secret", "rm", name]).await;
            made().lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        }
    }
}

/// A service is gone: its volumes and secrets go with it (its data is not left for the next
/// service of the same name, which may have another owner).
pub async fn forget_service(cfg: &PodmanConfig, service: &str) {
    let label = format!("label=fogd.io/service={service}");
    if let Ok(out) = podman(cfg, &["volume", "ls", "--quiet", "--filter", &label]).await {
        for v in String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            let r = podman(cfg, &["volume", "rm", "--force", v]).await;
            made().lock().unwrap_or_else(|p| p.into_inner()).remove(v);
            match r {
                Ok(o) if o.status.success() => {
                    tracing::info!(service, volume = v, "volume of a deleted service removed")
                }
                _ => tracing::warn!(
                    service,
                    volume = v,
                    "volume of a deleted service could not be removed"
                ),
            }
        }
    }
    remove_secrets(cfg, &owner_prefix(service), None).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_to_one() {
        assert_ne!(volume_name("cam", "a-cache"), volume_name("cam-a", "cache"));
        assert_eq!(volume_name("counter", "state"), "fogd-7-counter-state");
        assert_ne!(secret_name("cam", "A_B", "v"), secret_name("cam-A", "B", "v"));
        assert_ne!(secret_name("s", "K", "one"), secret_name("s", "K", "two"));
        assert!(secret_name("s", "K", "x").starts_with("fogd-1-s-1-K-"));
    }
}
