//! Each kind of FDL service (OSCAR, SCAR Lambda, pre-2020 SCAR) into a normalised [`Service`].

use std::collections::BTreeMap;

use super::fields::*;
use super::{declare_providers, Ctx, Located};
use crate::model;
use crate::workflow::*;
use crate::Severity;

/// OSCAR's limit (the name becomes a Kubernetes label and a bucket name).
const MAX_OSCAR_NAME: usize = 39;
/// AWS Lambda's limit.
const MAX_LAMBDA_NAME: usize = 64;

pub(super) fn oscar_service(cx: &mut Ctx, cluster_id: &str, s: &model::OscarService, path: &str) -> Located {
    check_name(cx, &s.name, path, MAX_OSCAR_NAME, false);
    let name = s.name.value.clone();
    if let Some(sp) = &s.storage_providers {
        declare_providers(cx, sp, &format!("{path}.storage_providers"));
    }
    if let Some(c) = &s.clusters {
        cx.clusters.extend(c.keys().cloned());
        for (id, peer) in c {
            cx.peers.entry(id.clone()).or_insert_with(|| peer.clone());
        }
    }
    if s.image.value.trim().is_empty() {
        cx.error(&s.image, &format!("{path}.image"), "image is empty".into());
    }
    let exposed = s.expose.is_some() || s.kserve.is_some();
    // Only the podman executor runs these; the FDL does not know the node's executor, so it is
    // said here and again, as an error, when another executor is asked to run the service.
    if s.expose.is_some() {
        cx.warn(
            &s.name,
            &format!("{path}.expose"),
            "`expose` (a long-running server on a port) is run by the podman executor only; under the local and kube executors the service is registered, never triggered by files, and nothing listens".into(),
        );
    }
    if s.volume.is_some() {
        cx.warn(
            &s.name,
            &format!("{path}.volume"),
            "`volume` (a named volume kept between invocations) is provided by the podman executor only; under the local and kube executors every invocation starts with empty folders".into(),
        );
    }
    let expose = s
        .expose
        .as_ref()
        .and_then(|e| expose(cx, e, &s.name, &format!("{path}.expose")));
    let volume = s
        .volume
        .as_ref()
        .and_then(|v| volume(cx, v, &name, &s.name, &format!("{path}.volume")));
    let script = match &s.script {
        Some(sc) => resolve_script(cx, sc, &format!("{path}.script")),
        None if exposed => None,
        None => {
            let sev = if cx.opts.schema_only {
                Severity::Warning
            } else {
                Severity::Error
            };
            cx.push(
                sev,
                Some(&s.name.referenced),
                path,
                format!("service `{name}` has no `script` (the FaaS Supervisor runs `/bin/sh script.sh`)"),
            );
            None
        }
    };
    let memory_bytes = s
        .memory
        .as_ref()
        .and_then(|m| memory(cx, m, &format!("{path}.memory")));
    let cpu_millis = s.cpu.as_ref().and_then(|c| cpu(cx, c, &format!("{path}.cpu")));
    for (field, q) in [
        ("total_memory", &s.total_memory),
        ("ephemeral_storage_request", &s.ephemeral_storage_request),
    ] {
        if let Some(q) = q {
            memory(cx, q, &format!("{path}.{field}"));
        }
    }
    if let Some(q) = &s.total_cpu {
        cpu(cx, q, &format!("{path}.total_cpu"));
    }
    if let Some(v) = s.volume.as_ref().and_then(|v| v.size.as_ref()) {
        memory(cx, v, &format!("{path}.volume.size"));
    }
    let log_level = s
        .log_level
        .as_ref()
        .map(|l| log_level(cx, l, &format!("{path}.log_level")));
    let inputs = bindings(cx, &s.input, &name, &format!("{path}.input"));
    let outputs = bindings(cx, &s.output, &name, &format!("{path}.output"));
    let mount = s
        .mount
        .as_ref()
        .and_then(|m| mount(cx, m, &name, &format!("{path}.mount")));
    let (env, secrets) = environment(cx, s.environment.as_ref(), &format!("{path}.environment"));
    let delegation = delegation(cx, s, path);
    let service = Service {
        name,
        platform: Platform::Oscar {
            cluster_id: s.cluster_id.clone().unwrap_or_else(|| cluster_id.to_string()),
        },
        image: Some(s.image.value.clone()),
        script,
        memory_bytes,
        cpu_millis,
        log_level,
        timeout_s: None,
        inputs,
        outputs,
        env,
        secrets,
        exposed,
        file_stage_in: s.file_stage_in.unwrap_or(false),
        delegation,
        enable_gpu: s.enable_gpu.unwrap_or(false),
        image_pull_secrets: s.image_pull_secrets.clone().unwrap_or_default(),
        mount,
        expose,
        volume,
    };
    (service, s.name.referenced)
}

pub(super) fn lambda(cx: &mut Ctx, l: &model::Lambda, path: &str) -> Located {
    check_name(cx, &l.name, path, MAX_LAMBDA_NAME, true);
    let name = l.name.value.clone();
    let container = l.container.as_ref();
    let image = l
        .image
        .as_ref()
        .or_else(|| container.and_then(|c| c.image.as_ref()))
        .or_else(|| container.and_then(|c| c.image_file.as_ref()))
        .map(|i| i.value.clone());
    if image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        cx.error(
            &l.name,
            path,
            format!("function `{name}` has no image: set `container.image` (or `container.image_file`)"),
        );
    }
    // SCAR runs the container's own command when there is no script.
    let script = match l.init_script.as_ref().or(l.run_script.as_ref()) {
        Some(sc) => {
            let field = if l.init_script.is_some() {
                "init_script"
            } else {
                "run_script"
            };
            resolve_script(cx, sc, &format!("{path}.{field}"))
        }
        None => None,
    };
    let memory_bytes = l.memory.as_ref().and_then(|m| {
        let p = format!("{path}.memory");
        match m.value.0.parse::<u64>() {
            Ok(mb) if (128..=10_240).contains(&mb) => Some(mb << 20),
            Ok(mb) => {
                cx.error(m, &p, format!("Lambda memory is in MB, 128 to 10240; got {mb}"));
                None
            }
            Err(_) => {
                cx.error(
                    m,
                    &p,
                    format!(
                        "Lambda memory must be a whole number of MB (e.g. 1024); got `{}`",
                        m.value.0
                    ),
                );
                None
            }
        }
    });
    let timeout_s = l.timeout.as_ref().and_then(|t| {
        let p = format!("{path}.timeout");
        match t.value.0.parse::<u64>() {
            Ok(s) if (1..=900).contains(&s) => Some(s),
            _ => {
                cx.error(
                    t,
                    &p,
                    format!("timeout must be whole seconds, 1 to 900; got `{}`", t.value.0),
                );
                None
            }
        }
    });
    if let Some(m) = &l.execution_mode {
        if !["lambda", "lambda-batch", "batch"].contains(&m.value.as_str()) {
            cx.error(
                m,
                &format!("{path}.execution_mode"),
                format!(
                    "execution_mode `{}` is not one of lambda, lambda-batch, batch",
                    m.value
                ),
            );
        }
    }
    let log_level = l
        .log_level
        .as_ref()
        .map(|lv| log_level(cx, lv, &format!("{path}.log_level")));
    let inputs = bindings(cx, &l.input, &name, &format!("{path}.input"));
    let outputs = bindings(cx, &l.output, &name, &format!("{path}.output"));
    let (mut env, secrets) = environment(cx, l.environment.as_ref(), &format!("{path}.environment"));
    let cpath = format!("{path}.container.environment");
    let (cenv, _) = environment(cx, container.and_then(|c| c.environment.as_ref()), &cpath);
    env.extend(cenv);
    let service = Service {
        name,
        platform: Platform::AwsLambda,
        image,
        script,
        memory_bytes,
        cpu_millis: None,
        log_level,
        timeout_s,
        inputs,
        outputs,
        env,
        secrets,
        exposed: false,
        file_stage_in: false,
        delegation: None,
        enable_gpu: false,
        image_pull_secrets: Vec::new(),
        mount: None,
        expose: None,
        volume: None,
    };
    (service, l.name.referenced)
}

pub(super) fn legacy_function(cx: &mut Ctx, f: &model::LegacyFunction, path: &str) -> Located {
    check_name(cx, &f.name, path, MAX_LAMBDA_NAME, true);
    let mut io = |list: &Option<Vec<model::LegacyIo>>, dir: &str| -> Vec<IoBinding> {
        let mut out = Vec::new();
        for (i, b) in list.iter().flatten().enumerate() {
            let p = format!("{path}.{dir}[{i}]");
            let kind = cx.declared.keys().find(|r| r.id == b.name.value).map(|r| r.kind);
            let Some(kind) = kind else {
                cx.error(
                    &b.name,
                    &format!("{p}.name"),
                    format!(
                        "names storage `{}`, which `storages:` does not declare",
                        b.name.value
                    ),
                );
                continue;
            };
            let Some(bpath) = storage_path(cx, &b.path, &format!("{p}.path")) else {
                continue;
            };
            let files = b.files.as_ref();
            out.push(IoBinding {
                provider: ProviderRef::new(kind, b.name.value.clone()),
                path: bpath,
                prefix: list_of(files.and_then(|f| f.prefix.as_ref())),
                suffix: list_of(files.and_then(|f| f.sufix.as_ref())),
            });
        }
        out
    };
    let inputs = io(&f.input, "input");
    let outputs = io(&f.output, "output");
    let script = f
        .init_script
        .as_ref()
        .and_then(|s| resolve_script(cx, s, &format!("{path}.init_script")));
    let service = Service {
        name: f.name.value.clone(),
        platform: Platform::LegacyScar,
        image: f.image.as_ref().map(|i| i.value.clone()),
        script,
        memory_bytes: None,
        cpu_millis: None,
        log_level: None,
        timeout_s: None,
        inputs,
        outputs,
        env: BTreeMap::new(),
        secrets: BTreeMap::new(),
        exposed: false,
        file_stage_in: false,
        delegation: None,
        enable_gpu: false,
        image_pull_secrets: Vec::new(),
        mount: None,
        expose: None,
        volume: None,
    };
    (service, f.name.referenced)
}

pub(super) fn delegation(cx: &mut Ctx, s: &model::OscarService, path: &str) -> Option<Delegation> {
    let (members, policy, threshold, mpath) = match (&s.federation, &s.replicas) {
        (Some(f), _) => (
            f.members.as_deref().unwrap_or_default(),
            f.delegation.clone(),
            f.rescheduler_threshold.as_ref(),
            format!("{path}.federation.members"),
        ),
        (None, Some(r)) => (
            r.as_slice(),
            s.delegation.clone(),
            s.rescheduler_threshold.as_ref(),
            format!("{path}.replicas"),
        ),
        (None, None) => return None,
    };
    if s.federation.is_some() && s.replicas.is_some() {
        cx.push(
            Severity::Warning,
            Some(&s.name.referenced),
            path,
            "both `replicas` (OSCAR <= 3.x) and `federation` (4.x): `federation` wins".into(),
        );
    }
    let mut out = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let p = format!("{mpath}[{i}]");
        let kind = m
            .kind
            .as_ref()
            .map(|k| k.value.to_ascii_lowercase())
            .unwrap_or_else(|| "oscar".into());
        match kind.as_str() {
            "oscar" => match &m.cluster_id {
                Some(c) if cx.clusters.contains(&c.value) => {}
                Some(c) if cx.function_clusters.contains(&c.value) => cx.warn(
                    c,
                    &format!("{p}.cluster_id"),
                    format!(
                        "replica cluster `{}` is not in `clusters`: its endpoint and credentials must come from the node's configuration",
                        c.value
                    ),
                ),
                Some(c) => cx.error(
                    c,
                    &format!("{p}.cluster_id"),
                    format!("replica cluster `{}` is not declared in `clusters`", c.value),
                ),
                None => cx.push(Severity::Error, Some(&s.name.referenced), &p, "replica of type oscar needs `cluster_id`".into()),
            },
            "endpoint" => {
                if m.url.as_deref().is_none_or(str::is_empty) {
                    cx.push(Severity::Error, Some(&s.name.referenced), &p, "replica of type endpoint needs `url`".into());
                }
            }
            // fogd's own: hand the input to the remote tier's input folder (through NAT).
            "push" => match &m.storage_provider {
                Some(sp) if crate::ProviderRef::parse(&sp.value).is_none() => cx.error(
                    sp,
                    &format!("{p}.storage_provider"),
                    format!("`{}` is not a storage provider (like minio.cloud)", sp.value),
                ),
                Some(_) => {}
                None => cx.push(
                    Severity::Error,
                    Some(&s.name.referenced),
                    &p,
                    "replica of type push needs `storage_provider` and `path`".into(),
                ),
            },
            other => {
                if let Some(k) = &m.kind {
                    cx.error(k, &format!("{p}.type"), format!("replica type `{other}` is not `oscar`, `endpoint` or `push`"));
                }
            }
        }
        out.push(Member {
            kind,
            cluster_id: m.cluster_id.as_ref().map(|c| c.value.clone()),
            service_name: m.service_name.clone(),
            url: m.url.clone(),
            priority: m.priority.unwrap_or(0),
            ssl_verify: m.ssl_verify.unwrap_or(true),
            headers: m
                .headers
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            storage_provider: m.storage_provider.as_ref().map(|p| p.value.clone()),
            path: m.path.as_deref().map(|p| p.trim_matches('/').to_string()),
        });
    }
    let policy = policy.unwrap_or_else(|| "static".into());
    if !["static", "random", "load-based", "topsis"].contains(&policy.as_str()) {
        cx.push(
            Severity::Error,
            Some(&s.name.referenced),
            path,
            format!("delegation `{policy}` is not one of static, random, load-based, topsis"),
        );
    }
    Some(Delegation {
        policy,
        rescheduler_threshold_s: threshold.and_then(|t| t.0.parse().ok()),
        members: out,
    })
}

/// `expose`: the first `api_port` (default 8080) and `nodePort`, each a TCP port.
fn expose(cx: &mut Ctx, e: &model::Expose, at: &model::Sp<String>, path: &str) -> Option<crate::Exposed> {
    let port = |cx: &mut Ctx, v: Option<&model::OneOrMany<i64>>, field: &str| -> Option<Option<u16>> {
        match v.and_then(|p| p.0.first()) {
            None => Some(None),
            Some(&p) => match u16::try_from(p) {
                Ok(p) if p > 0 => Some(Some(p)),
                _ => {
                    cx.error(
                        at,
                        &format!("{path}.{field}"),
                        format!("{p} is not a TCP port (1 to 65535)"),
                    );
                    None
                }
            },
        }
    };
    let api_port = port(cx, e.api_port.as_ref(), "api_port")?.unwrap_or(8080);
    let host_port = port(cx, e.node_port.as_ref(), "nodePort")?.unwrap_or(api_port);
    Some(crate::Exposed {
        api_port,
        host_port,
        default_command: e.default_command.unwrap_or(false),
    })
}

/// `volume`: an absolute `mount_path` without `..`; the name is the service's when not given.
fn volume(
    cx: &mut Ctx,
    v: &model::Volume,
    service: &str,
    at: &model::Sp<String>,
    path: &str,
) -> Option<crate::VolumeSpec> {
    let Some(mount_path) = v.mount_path.clone() else {
        cx.error(
            at,
            &format!("{path}.mount_path"),
            "a volume needs `mount_path` (where the container sees it)".into(),
        );
        return None;
    };
    if !mount_path.starts_with('/') || mount_path.split('/').any(|c| c == "..") || mount_path == "/" {
        cx.error(
            at,
            &format!("{path}.mount_path"),
            format!("`{mount_path}` is not an absolute folder without `..`"),
        );
        return None;
    }
    let name = v.name.clone().unwrap_or_else(|| service.to_string());
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        cx.error(
            at,
            &format!("{path}.name"),
            format!("volume name `{name}`: letters, digits, `-`, `_` and `.` only"),
        );
        return None;
    }
    Some(crate::VolumeSpec { name, mount_path })
}
