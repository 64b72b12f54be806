//! `podman:` in `fogd.yaml`: the container executor (one container per invocation, on this box);
//! and `isolation:`, how the local scripts are confined.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// Kubernetes' `imagePullPolicy`, spelled as the API spells it (the kube and podman executors').
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PodmanConfig {
    /// The podman command (a name on PATH or a path).
    pub binary: String,
    /// The OCI runtime (`runc`, `crun`); none: podman's default. `runc` where the cgroups are
    /// hybrid, which crun refuses.
    pub runtime: Option<String>,
    /// When a service's image is pulled: `IfNotPresent` (the default) starts from the images
    /// the box has while its uplink is down; `Never` only runs images already here.
    pub image_pull_policy: PullPolicy,
    /// The containers' network: `bridge` (podman's default: the script may reach out), `none`
    /// (nothing leaves the container), or any `--network` value.
    pub network: String,
    /// RLIMIT_NOFILE and RLIMIT_NPROC of the containers (podman's defaults ask for more than
    /// many hosts' hard limits allow, and the container then fails to start).
    pub nofile: u64,
    pub nproc: u64,
    /// The `fogd` binary mounted into every container as its supervisor; default: this fogd.
    /// Images whose C library differs from the host's need a static (musl) build here.
    pub supervisor: Option<PathBuf>,
    /// What fogd's builtin images (`fogd/builtin:anonymize`, `fogd/builtin:detect-masks`) are
    /// on this box: an image with fogd, fogd-vision and the models (`scripts/images`).
    pub builtin_image: String,
    /// Other images renamed before they are run: `{registry.example.org/tools/work:1.0: localhost/work}`.
    pub images: BTreeMap<String, String>,
    /// Where exposed services' ports are published.
    pub expose_address: String,
}

impl Default for PodmanConfig {
    fn default() -> Self {
        PodmanConfig {
            binary: "podman".into(),
            runtime: None,
            image_pull_policy: PullPolicy::IfNotPresent,
            network: "bridge".into(),
            nofile: 1024,
            nproc: 1024,
            supervisor: None,
            builtin_image: "localhost/fogd/fogd:latest".into(),
            images: BTreeMap::new(),
            expose_address: "127.0.0.1".into(),
        }
    }
}

impl PodmanConfig {
    /// The image a service's `image:` names on this box.
    pub fn image_for(&self, image: &str) -> String {
        if let Some(i) = self.images.get(image) {
            return i.clone();
        }
        if fogd_vision_proto::builtin::is_builtin_image(image) {
            return self.builtin_image.clone();
        }
        image.to_string()
    }
}

/// `isolation:` in fogd.yaml: how local scripts are kept from the node's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Isolation {
    /// Namespaces when bwrap works here, else unconfined with a warning.
    #[default]
    Auto,
    /// Namespaces, or the script does not run.
    Namespaces,
    /// No sandbox: scripts can read everything fogd can (a single-user box by choice).
    None,
}
