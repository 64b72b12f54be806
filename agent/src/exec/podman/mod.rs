//! The container executor: one podman container per invocation, on this box, as OSCAR runs a
//! service: the service's image, the script as its main process under the FaaS Supervisor
//! contract (fogd's own binary mounted in as `/fogd-bin/fogd supervise`, as the kube pods get
//! it), `memory` and `cpu` as limits, the input and output folders bind-mounted at the places
//! the kube pods use (`/tmp/fogd/{input,output}`), so fogd stores the outputs as it does for
//! local runs. Through the podman CLI: it needs no daemon (each container is kept by its own
//! conmon, so it outlives a killed fogd), and podman 4's REST API has no maintained Rust client.
//!
//! A container is named after its invocation (`fogd-<uuid>`): after a restart fogd finds it by
//! that name and follows it, and a second `podman run` under the same name is refused by
//! podman, so a run is never doubled. `expose` runs a long-lived container per service
//! (`expose`); `volume` is a named podman volume kept between invocations.
//!
//! This module is the pure part (errors, names, the `podman run` arguments); `run` calls podman.

mod expose;
mod owned;
mod run;

pub use expose::{expose_name, prepare, start_exposed};
pub use owned::{forget_service, secret_name, volume_name, SECRETS_DIR};
pub use run::{check, exists, run, PodmanRun};

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::PodmanConfig;
use crate::fdl::Service;

/// Where the supervisor and the script are mounted in the container.
pub const SUPERVISOR: &str = "/fogd-bin/fogd";
pub const SCRIPT: &str = "/fogd-script/script.sh";
/// The contract's folders inside the container (the kube pods' too).
pub use super::kube::{POD_INPUT_DIR as INPUT_DIR, POD_OUTPUT_DIR as OUTPUT_DIR};

#[derive(Debug, thiserror::Error)]
pub enum PodmanError {
    #[error("podman: `{binary}` cannot be run ({source}); install podman (apt install podman runc), set podman.binary in fogd.yaml, or run the service with `executor: local`")]
    Missing { binary: String, source: std::io::Error },
    #[error("podman: image `{image}` is not on this node, and the pull policy is Never: build or load it here (`podman images` lists what is)")]
    ImageAbsent { image: String },
    #[error("podman: image `{image}` is not on this node and could not be pulled: {msg}")]
    PullFailed { image: String, msg: String },
    #[error("podman {what}: {msg}")]
    Command { what: String, msg: String },
    #[error("podman: {0}")]
    Invalid(String),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The container of one invocation.
pub fn container_name(job: &str) -> String {
    format!("fogd-{job}")
}

/// What a container is made of, besides the service.
pub struct ContainerSpec<'a> {
    pub cfg: &'a PodmanConfig,
    pub svc: &'a Service,
    pub name: &'a str,
    pub node: &'a str,
    pub job: Option<&'a str>,
    pub env_file: &'a Path,
    /// `--secret` values: the service's secrets, mounted as files (`owned::secrets`).
    pub secrets: &'a [String],
    pub supervisor: &'a Path,
    pub script: Option<&'a Path>,
    /// The invocation's folders on the host (none for an exposed service).
    pub work: Option<(&'a Path, &'a Path)>,
    /// A mounted bucket folder: (on the host, in the container).
    pub mount: Option<(PathBuf, String)>,
    pub timeout: Option<Duration>,
}

/// `podman run` for a spec, without the binary (pure: the unit test reads it).
pub fn run_args(s: &ContainerSpec<'_>) -> Vec<String> {
    let cfg = s.cfg;
    let mut a: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), s.name.into()];
    // The image was looked for (and pulled) before, under the pull policy.
    a.extend(["--pull".into(), "never".into()]);
    if let Some(r) = &cfg.runtime {
        a.extend(["--runtime".into(), r.clone()]);
    }
    a.push(format!("--ulimit=nofile={0}:{0}", cfg.nofile));
    a.push(format!("--ulimit=nproc={0}:{0}", cfg.nproc));
    for (k, v) in [
        ("app.kubernetes.io/managed-by", "fogd"),
        ("fogd.io/node", s.node),
        ("oscar_service", s.svc.name.as_str()),
    ] {
        a.push(format!("--label={k}={v}"));
    }
    if let Some(j) = s.job {
        a.push(format!("--label=fogd.io/job={j}"));
    }
    a.push(format!("--network={}", cfg.network));
    // As the kube pods: no capability, no privilege gained through setuid binaries.
    a.extend(["--cap-drop=all".into(), "--security-opt=no-new-privileges".into()]);
    a.push(format!("--env-file={}", s.env_file.display()));
    for secret in s.secrets {
        a.push(format!("--secret={secret}"));
    }
    if let Some(m) = s.svc.memory_bytes {
        // No swap beyond the limit: over it, the kernel's OOM killer ends the script (reported).
        a.push(format!("--memory={m}"));
        a.push(format!("--memory-swap={m}"));
    }
    if let Some(c) = s.svc.cpu_millis {
        a.push(format!("--cpus={}.{:03}", c / 1000, c % 1000));
    }
    if s.svc.enable_gpu {
        // CDI, as the NVIDIA container toolkit sets it up for podman.
        a.push("--device=nvidia.com/gpu=all".into());
    }
    if let Some(t) = s.timeout {
        // conmon's own limit: a container fogd no longer follows (fogd killed) still ends.
        a.push(format!("--timeout={}", t.as_secs().max(1)));
    }
    let bind = |host: &Path, inside: &str, ro: bool| {
        format!(
            "--volume={}:{inside}{}",
            host.display(),
            if ro { ":ro" } else { "" }
        )
    };
    a.push(bind(s.supervisor, SUPERVISOR, true));
    if let Some(script) = s.script {
        a.push(bind(script, SCRIPT, true));
    }
    if let Some((input, output)) = s.work {
        a.push(bind(input, INPUT_DIR, false));
        a.push(bind(output, OUTPUT_DIR, false));
        a.push(format!("--workdir={INPUT_DIR}"));
    }
    if let Some((host, inside)) = &s.mount {
        a.push(bind(host, inside, false));
    }
    if let Some(v) = &s.svc.volume {
        a.push(format!(
            "--volume={}:{}",
            volume_name(&s.svc.name, &v.name),
            v.mount_path
        ));
    }
    if let Some(e) = &s.svc.expose {
        a.push(format!(
            "--publish={}:{}:{}",
            cfg.expose_address, e.host_port, e.api_port
        ));
        // A server that dies is started again by podman, as a Deployment's pod would be.
        a.push("--restart=on-failure".into());
    }
    let image = cfg.image_for(s.svc.image.as_deref().unwrap_or_default());
    if s.svc.expose.as_ref().is_some_and(|e| e.default_command) {
        a.push(image);
    } else {
        a.push(format!("--entrypoint={SUPERVISOR}"));
        a.push(image);
        a.push("supervise".into());
    }
    a
}

/// The `--env-file` text: one `NAME=value` a line, which cannot hold a newline.
pub fn env_file(env: &[(String, String)]) -> Result<String, PodmanError> {
    let mut text = String::new();
    for (k, v) in env {
        if k.contains(['=', '\n']) || v.contains('\n') {
            return Err(PodmanError::Invalid(format!(
                "variable `{k}`: podman's --env-file cannot carry a name with `=` or a value with a newline"
            )));
        }
        text.push_str(&format!("{k}={v}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Service {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("s.sh"), "echo\n").expect("script");
        let f = dir.path().join("f.yaml");
        std::fs::write(&f, yaml).expect("fdl");
        let w = crate::fdl::load_file(&f, crate::fdl::LoadOptions::default())
            .workflow
            .expect("fdl");
        w.services.into_iter().next().expect("one service")
    }

    #[test]
    fn the_container_has_the_limits_mounts_and_supervisor() {
        let s = svc("functions:\n  oscar:\n  - c:\n      name: work\n      image: fogd/builtin:anonymize\n      script: s.sh\n      memory: 256Mi\n      cpu: '0.5'\n      enable_gpu: true\n      volume: {name: cache, mount_path: /cache}\n      input: [{storage_provider: minio, path: w/in}]\n");
        let cfg = PodmanConfig {
            runtime: Some("runc".into()),
            ..Default::default()
        };
        let args = run_args(&ContainerSpec {
            cfg: &cfg,
            svc: &s,
            name: "fogd-j1",
            node: "n1",
            job: Some("j1"),
            env_file: Path::new("/w/env"),
            secrets: &["fogd-4-work-3-KEY-abc,type=mount,target=/run/secrets/fogd/KEY".into()],
            supervisor: Path::new("/usr/bin/fogd"),
            script: Some(Path::new("/w/script.sh")),
            work: Some((Path::new("/w/input"), Path::new("/w/output"))),
            mount: None,
            timeout: Some(Duration::from_secs(30)),
        });
        let text = args.join(" ");
        for want in [
            "run -d --name fogd-j1 --pull never --runtime runc",
            "--memory=268435456 --memory-swap=268435456 --cpus=0.500 --device=nvidia.com/gpu=all --timeout=30",
            "--volume=/usr/bin/fogd:/fogd-bin/fogd:ro --volume=/w/script.sh:/fogd-script/script.sh:ro",
            "--volume=/w/input:/tmp/fogd/input --volume=/w/output:/tmp/fogd/output",
            "--volume=fogd-4-work-cache:/cache",
            "--secret=fogd-4-work-3-KEY-abc,type=mount,target=/run/secrets/fogd/KEY",
            "--label=fogd.io/job=j1",
            "--entrypoint=/fogd-bin/fogd localhost/fogd/fogd:latest supervise",
        ] {
            assert!(text.contains(want), "no `{want}` in {text}");
        }
    }

    #[test]
    fn env_files_refuse_what_they_cannot_hold() {
        let ok = env_file(&[("A".into(), "b c=d".into())]).expect("ok");
        assert_eq!(ok, "A=b c=d\n");
        assert!(env_file(&[("A".into(), "two\nlines".into())]).is_err());
    }
}
