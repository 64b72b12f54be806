//! Semantic checks on a parsed FDL document, and its normalisation into a [`Workflow`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::model::{self, Document, EnvValue, Functions, OneOrMany, Scalar, Sp, StorageIo};
use super::quantity::{parse_cpu_millis, parse_memory_bytes};
use super::workflow::*;
use super::{Diagnostic, LoadOptions, Severity};

/// OSCAR's limit (the name becomes a Kubernetes label and a bucket name).
const MAX_OSCAR_NAME: usize = 39;
/// AWS Lambda's limit.
const MAX_LAMBDA_NAME: usize = 64;
const LOG_LEVELS: [&str; 6] = ["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

struct Ctx<'a> {
    file: &'a Path,
    base: &'a Path,
    opts: LoadOptions,
    diags: Vec<Diagnostic>,
    /// Providers declared at the top level (and, API-style, inside services).
    declared: BTreeMap<ProviderRef, ProviderSettings>,
    /// Peers declared under `clusters:`.
    clusters: BTreeSet<String>,
    /// Cluster ids that key `functions.oscar` items: their endpoints and credentials live in the
    /// client's own cluster list (oscar-cli, scar.cfg), so references to them are legitimate.
    function_clusters: BTreeSet<String>,
}

impl Ctx<'_> {
    fn push(&mut self, severity: Severity, at: Option<&serde_saphyr::Location>, path: &str, msg: String) {
        let (line, column) = match at {
            Some(l) if l.line() > 0 => (Some(l.line()), Some(l.column()).filter(|&c| c > 0)),
            _ => (None, None),
        };
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            path: (!path.is_empty()).then(|| path.to_string()),
            message: msg,
        });
    }
    fn error<T>(&mut self, at: &Sp<T>, path: &str, msg: String) {
        self.push(Severity::Error, Some(&at.referenced), path, msg);
    }
    fn warn<T>(&mut self, at: &Sp<T>, path: &str, msg: String) {
        self.push(Severity::Warning, Some(&at.referenced), path, msg);
    }
}

pub(super) fn validate(
    doc: Document,
    file: &Path,
    base: &Path,
    opts: LoadOptions,
) -> (Workflow, Vec<Diagnostic>) {
    let mut cx = Ctx {
        file,
        base,
        opts,
        diags: Vec::new(),
        declared: BTreeMap::new(),
        clusters: doc.clusters.iter().flat_map(|c| c.keys().cloned()).collect(),
        function_clusters: match &doc.functions {
            Functions::Current(f) => f.oscar.iter().flatten().flat_map(|m| m.keys().cloned()).collect(),
            Functions::Legacy(_) => BTreeSet::new(),
        },
    };
    if let Some(sp) = &doc.storage_providers {
        declare_providers(&mut cx, sp, "storage_providers");
    }
    if let Some(storages) = &doc.storages {
        declare_legacy_storages(&mut cx, storages);
    }

    let (dialect, services) = match doc.functions {
        Functions::Current(f) => {
            let mut services = Vec::new();
            let has_oscar = f.oscar.as_ref().is_some_and(|v| !v.is_empty());
            let has_aws = f.aws.as_ref().is_some_and(|v| !v.is_empty());
            for (i, item) in f.oscar.iter().flatten().enumerate() {
                if item.is_empty() {
                    cx.push(
                        Severity::Error,
                        None,
                        &format!("functions.oscar[{i}]"),
                        "empty item: expected `<cluster_id>: {name: ..., image: ...}`".into(),
                    );
                }
                for (cluster_id, svc) in item {
                    let path = format!("functions.oscar[{i}].{cluster_id}");
                    services.push(oscar_service(&mut cx, cluster_id, svc, &path));
                }
            }
            for (i, item) in f.aws.iter().flatten().enumerate() {
                let path = format!("functions.aws[{i}]");
                match &item.lambda {
                    Some(l) => services.push(lambda(&mut cx, l, &format!("{path}.lambda"))),
                    None => cx.push(
                        Severity::Error,
                        None,
                        &path,
                        "missing `lambda:` block (SCAR functions are `- lambda: {name: ..., container: {image: ...}}`)"
                            .into(),
                    ),
                }
            }
            if !has_oscar && !has_aws {
                cx.push(
                    Severity::Error,
                    None,
                    "functions",
                    "defines no function: expected a non-empty `oscar:` or `aws:` list".into(),
                );
            }
            let dialect = match (has_oscar, has_aws) {
                (true, true) => Dialect::Hybrid,
                (false, true) => Dialect::Scar,
                _ => Dialect::Oscar,
            };
            (dialect, services)
        }
        Functions::Legacy(fs) => {
            let first = fs.first().map(|f| f.name.referenced);
            cx.push(
                Severity::Warning,
                first.as_ref(),
                "functions",
                "pre-2020 SCAR schema (`functions` as a list, `storages`): read, but current OSCAR and SCAR reject it"
                    .into(),
            );
            let services = fs
                .iter()
                .enumerate()
                .map(|(i, f)| legacy_function(&mut cx, f, &format!("functions[{i}]")))
                .collect();
            (Dialect::LegacyScar, services)
        }
    };

    check_duplicates(&mut cx, &services);
    let providers = used_providers(&cx, &services);
    let workflow = Workflow {
        dialect,
        services: services.into_iter().map(|(s, _)| s).collect(),
        providers,
        clusters: cx.clusters.union(&cx.function_clusters).cloned().collect(),
    };
    (workflow, cx.diags)
}

type Located = (Service, serde_saphyr::Location);

fn declare_providers(cx: &mut Ctx, sp: &model::StorageProviders, path: &str) {
    fn add<T: Clone>(
        cx: &mut Ctx,
        set: &Option<model::ProviderSet<T>>,
        kind: ProviderKind,
        path: &str,
        wrap: fn(T) -> ProviderSettings,
    ) {
        for (id, settings) in set.iter().flat_map(|s| s.0.iter()) {
            let p = format!("{path}.{}.{id}", kind.as_str());
            if id.is_empty() || id.contains(['.', '/']) {
                let msg = format!("provider id `{id}` must be non-empty and contain no `.` or `/`");
                cx.push(Severity::Error, None, &p, msg);
                continue;
            }
            let r = ProviderRef::new(kind, id.clone());
            cx.declared.insert(r, wrap(settings.clone()));
        }
    }
    add(cx, &sp.minio, ProviderKind::Minio, path, ProviderSettings::Minio);
    add(cx, &sp.s3, ProviderKind::S3, path, ProviderSettings::S3);
    add(
        cx,
        &sp.onedata,
        ProviderKind::Onedata,
        path,
        ProviderSettings::Onedata,
    );
    add(
        cx,
        &sp.webdav,
        ProviderKind::Webdav,
        path,
        ProviderSettings::Webdav,
    );
    add(cx, &sp.rucio, ProviderKind::Rucio, path, ProviderSettings::Rucio);
}

fn declare_legacy_storages(cx: &mut Ctx, storages: &[model::LegacyStorage]) {
    for (i, s) in storages.iter().enumerate() {
        let path = format!("storages[{i}]");
        let Some(kind_sp) = &s.kind else {
            cx.error(
                &s.name,
                &path,
                format!("storage `{}` has no `type` (minio, s3, onedata)", s.name.value),
            );
            continue;
        };
        let Some(kind) = ProviderKind::parse(&kind_sp.value) else {
            cx.error(
                kind_sp,
                &format!("{path}.type"),
                format!("unknown storage type `{}`", kind_sp.value),
            );
            continue;
        };
        let auth = s.auth.clone().unwrap_or_default();
        use model::FromLegacyAuth as F;
        let settings = match kind {
            ProviderKind::Minio => ProviderSettings::Minio(F::from_legacy_auth(&auth)),
            ProviderKind::S3 => ProviderSettings::S3(F::from_legacy_auth(&auth)),
            ProviderKind::Onedata => ProviderSettings::Onedata(F::from_legacy_auth(&auth)),
            ProviderKind::Webdav => ProviderSettings::Webdav(F::from_legacy_auth(&auth)),
            ProviderKind::Rucio => ProviderSettings::Rucio(F::from_legacy_auth(&auth)),
        };
        cx.declared
            .insert(ProviderRef::new(kind, s.name.value.clone()), settings);
    }
}

fn check_name(cx: &mut Ctx, name: &Sp<String>, path: &str, max: usize, allow_upper: bool) {
    let n = &name.value;
    let p = format!("{path}.name");
    if n.is_empty() {
        cx.error(name, &p, "service name is empty".into());
        return;
    }
    if n.chars().count() > max {
        cx.error(
            name,
            &p,
            format!(
                "service name `{n}` is {} characters; at most {max} allowed",
                n.chars().count()
            ),
        );
    }
    let ok_char = |c: char| {
        c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || c == '-'
            || (allow_upper && (c.is_ascii_uppercase() || c == '_'))
    };
    if let Some(bad) = n.chars().find(|&c| !ok_char(c)) {
        let rule = if allow_upper {
            "letters, digits, `-` and `_`"
        } else {
            "lower-case letters, digits and `-` (it becomes a Kubernetes name and a bucket name)"
        };
        cx.error(
            name,
            &p,
            format!(
                "service name `{}` contains `{}`; use {rule}",
                n.escape_debug(),
                bad.escape_debug()
            ),
        );
    } else if n.starts_with('-') || n.ends_with('-') {
        cx.error(
            name,
            &p,
            format!("service name `{n}` must start and end with a letter or digit"),
        );
    }
}

fn oscar_service(cx: &mut Ctx, cluster_id: &str, s: &model::OscarService, path: &str) -> Located {
    check_name(cx, &s.name, path, MAX_OSCAR_NAME, false);
    let name = s.name.value.clone();
    if let Some(sp) = &s.storage_providers {
        declare_providers(cx, sp, &format!("{path}.storage_providers"));
    }
    if let Some(c) = &s.clusters {
        cx.clusters.extend(c.keys().cloned());
    }
    if s.image.value.trim().is_empty() {
        cx.error(&s.image, &format!("{path}.image"), "image is empty".into());
    }
    let exposed = s.expose.is_some() || s.kserve.is_some();
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
    if let Some(m) = &s.mount {
        mount(cx, m, &name, &format!("{path}.mount"));
    }
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
    };
    (service, s.name.referenced)
}

fn lambda(cx: &mut Ctx, l: &model::Lambda, path: &str) -> Located {
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
    };
    (service, l.name.referenced)
}

fn legacy_function(cx: &mut Ctx, f: &model::LegacyFunction, path: &str) -> Located {
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
    };
    (service, f.name.referenced)
}

fn list_of(v: Option<&OneOrMany<String>>) -> Vec<String> {
    v.map(|v| v.0.clone()).unwrap_or_default()
}

fn memory(cx: &mut Ctx, q: &Sp<Scalar>, path: &str) -> Option<u64> {
    match parse_memory_bytes(&q.value.0) {
        Some(0) | None => {
            cx.error(
                q,
                path,
                format!(
                    "`{}` is not a memory size: write a Kubernetes quantity such as `512Mi` or `2Gi`",
                    q.value.0
                ),
            );
            None
        }
        Some(b) => Some(b),
    }
}

fn cpu(cx: &mut Ctx, q: &Sp<Scalar>, path: &str) -> Option<u64> {
    match parse_cpu_millis(&q.value.0) {
        Some(0) | None => {
            cx.error(
                q,
                path,
                format!(
                    "`{}` is not a CPU amount: write cores (`1.0`, `0.5`) or millicores (`500m`)",
                    q.value.0
                ),
            );
            None
        }
        Some(m) => Some(m),
    }
}

fn log_level(cx: &mut Ctx, l: &Sp<String>, path: &str) -> String {
    let up = l.value.trim().to_ascii_uppercase();
    if !LOG_LEVELS.contains(&up.as_str()) {
        cx.warn(
            l,
            path,
            format!(
                "log_level `{}` is not one of {}; OSCAR uses INFO",
                l.value,
                LOG_LEVELS.join(", ")
            ),
        );
        return "INFO".into();
    }
    up
}

fn environment(
    cx: &mut Ctx,
    e: Option<&model::Environment>,
    path: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut conv = |m: Option<&BTreeMap<String, EnvValue>>, field: &str| {
        let mut out = BTreeMap::new();
        for (k, v) in m.into_iter().flatten() {
            let text = match v {
                EnvValue::Scalar(s) => s.0.clone(),
                EnvValue::List(items) => {
                    let text = items.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(",");
                    let msg = format!("`{k}` is a list, not a string (a placeholder?); kept as `{text}`");
                    cx.push(Severity::Warning, None, &format!("{path}.{field}.{k}"), msg);
                    text
                }
            };
            out.insert(k.clone(), text);
        }
        out
    };
    match e {
        Some(e) => (
            conv(e.variables.as_ref(), "variables"),
            conv(e.secrets.as_ref(), "secrets"),
        ),
        None => Default::default(),
    }
}

fn resolve_script(cx: &mut Ctx, sc: &Sp<String>, path: &str) -> Option<Script> {
    let v = sc.value.trim();
    if v.is_empty() {
        cx.error(sc, path, "script is empty".into());
        return None;
    }
    // The API-level shape carries the script's text itself.
    if v.contains('\n') {
        return Some(Script::Inline(sc.value.clone()));
    }
    if cx.opts.schema_only {
        return Some(Script::Unchecked(v.to_string()));
    }
    let p = Path::new(v);
    let full: PathBuf = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cx.base.join(p)
    };
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => Some(Script::File(full)),
        Ok(_) => {
            cx.error(sc, path, format!("script `{}` is not a file", full.display()));
            None
        }
        Err(e) => {
            cx.error(
                sc,
                path,
                format!(
                    "script `{}` not found ({e}); paths are relative to the FDL file",
                    full.display()
                ),
            );
            None
        }
    }
}

fn bindings(cx: &mut Ctx, list: &Option<Vec<StorageIo>>, service: &str, path: &str) -> Vec<IoBinding> {
    list.iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, io)| binding(cx, io, service, &format!("{path}[{i}]")))
        .collect()
}

fn binding(cx: &mut Ctx, io: &StorageIo, service: &str, path: &str) -> Option<IoBinding> {
    let provider = provider_ref(cx, &io.storage_provider, &format!("{path}.storage_provider"));
    let mut p = storage_path(cx, &io.path, &format!("{path}.path"))?;
    let provider = provider?;
    // OSCAR's server puts a bare bucket-less path under a bucket named after the service.
    if provider.kind.is_bucket_store() && !p.contains('/') {
        p = format!("{service}/{p}");
    }
    for (field, list) in [("prefix", &io.prefix), ("suffix", &io.suffix)] {
        for (j, item) in list.iter().flat_map(|l| l.0.iter()).enumerate() {
            if item.is_empty() || item.contains('/') {
                cx.push(
                    Severity::Error,
                    Some(&io.path.referenced),
                    &format!("{path}.{field}[{j}]"),
                    format!("{field} `{item}` must be a non-empty file-name part without `/`"),
                );
            }
        }
    }
    Some(IoBinding {
        provider,
        path: p,
        prefix: list_of(io.prefix.as_ref()),
        suffix: list_of(io.suffix.as_ref()),
    })
}

/// A `mount` is an rclone FUSE mount of a bucket folder, not a trigger; OSCAR trims a leading `/`
/// there, so fogd does too (with a warning) instead of refusing real files.
fn mount(cx: &mut Ctx, m: &StorageIo, service: &str, path: &str) {
    if m.path.value.trim_start().starts_with('/') {
        let trimmed = m.path.value.trim().trim_start_matches('/').to_string();
        let msg = format!("path `{}` starts with `/`; read as `{trimmed}`", m.path.value);
        cx.warn(&m.path, &format!("{path}.path"), msg);
        let fixed = StorageIo {
            storage_provider: m.storage_provider.clone(),
            path: Sp::new(trimmed, m.path.referenced, m.path.defined),
            suffix: None,
            prefix: None,
            options: None,
        };
        binding(cx, &fixed, service, path);
    } else {
        binding(cx, m, service, path);
    }
}

fn provider_ref(cx: &mut Ctx, sp: &Sp<String>, path: &str) -> Option<ProviderRef> {
    let raw = sp.value.trim();
    let (kind_s, id) = raw.split_once('.').unwrap_or((raw, "default"));
    let Some(kind) = ProviderKind::parse(kind_s) else {
        cx.error(
            sp,
            path,
            format!("unknown storage provider type `{kind_s}` in `{raw}`: use minio, s3, onedata, webdav or rucio, as `<type>` or `<type>.<id>`"),
        );
        return None;
    };
    let r = ProviderRef::new(kind, id);
    let implicit = id == "default" && matches!(kind, ProviderKind::Minio | ProviderKind::S3);
    // OSCAR names a peer cluster's MinIO after the cluster's id.
    let peer_minio =
        kind == ProviderKind::Minio && (cx.clusters.contains(id) || cx.function_clusters.contains(id));
    if !implicit && !peer_minio && !cx.declared.contains_key(&r) {
        let known: Vec<String> = cx
            .declared
            .keys()
            .filter(|k| k.kind == kind)
            .map(|k| k.to_string())
            .collect();
        let hint = if known.is_empty() {
            format!("add it under `storage_providers.{}.{id}`", kind.as_str())
        } else {
            format!("declared {} providers: {}", kind.as_str(), known.join(", "))
        };
        cx.error(
            sp,
            path,
            format!("storage provider `{r}` is not declared in `storage_providers` ({hint})"),
        );
        return None;
    }
    Some(r)
}

/// Checks and normalises a storage path: relative, no `..` or `.` segments, no control characters.
fn storage_path(cx: &mut Ctx, sp: &Sp<String>, path: &str) -> Option<String> {
    let raw = sp.value.as_str();
    let trimmed = raw.trim().trim_end_matches('/');
    let fail = |cx: &mut Ctx, why: &str| {
        cx.error(sp, path, format!("path `{}` {why}", raw.escape_debug()));
        None
    };
    if trimmed.is_empty() {
        return fail(cx, "is empty: write `bucket/folder`");
    }
    if trimmed.starts_with('/') {
        return fail(cx, "starts with `/`: storage paths are relative, `bucket/folder`");
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return fail(cx, "contains a control character");
    }
    if trimmed.contains('\\') {
        return fail(cx, "contains `\\`: use `/` between folders");
    }
    for seg in trimmed.split('/') {
        match seg {
            ".." => return fail(cx, "contains `..`: a path may not leave its bucket"),
            "." => return fail(cx, "contains a `.` segment"),
            "" => return fail(cx, "contains an empty segment (`//`)"),
            _ => {}
        }
    }
    Some(trimmed.to_string())
}

fn delegation(cx: &mut Ctx, s: &model::OscarService, path: &str) -> Option<Delegation> {
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
            other => {
                if let Some(k) = &m.kind {
                    cx.error(k, &format!("{p}.type"), format!("replica type `{other}` is not `oscar` or `endpoint`"));
                }
            }
        }
        out.push(Member {
            kind,
            cluster_id: m.cluster_id.as_ref().map(|c| c.value.clone()),
            service_name: m.service_name.clone(),
            url: m.url.clone(),
            priority: m.priority.unwrap_or(0),
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

fn check_duplicates(cx: &mut Ctx, services: &[Located]) {
    let mut seen: BTreeMap<(String, String), ()> = BTreeMap::new();
    for (s, loc) in services {
        let scope = match &s.platform {
            Platform::Oscar { cluster_id } => format!("cluster `{cluster_id}`"),
            Platform::AwsLambda => "functions.aws".to_string(),
            Platform::LegacyScar => "functions".to_string(),
        };
        if seen.insert((scope.clone(), s.name.clone()), ()).is_some() {
            cx.push(
                Severity::Error,
                Some(loc),
                "",
                format!("service `{}` is defined twice in {scope}", s.name),
            );
        }
    }
}

/// The declared providers plus the implicit ones that services use, in a stable order.
fn used_providers(cx: &Ctx, services: &[Located]) -> Vec<Provider> {
    let mut out: BTreeMap<ProviderRef, Provider> = cx
        .declared
        .iter()
        .map(|(r, s)| {
            let p = Provider {
                reference: r.clone(),
                implicit: false,
                settings: s.clone(),
            };
            (r.clone(), p)
        })
        .collect();
    for (s, _) in services {
        for b in s.inputs.iter().chain(&s.outputs) {
            out.entry(b.provider.clone()).or_insert_with(|| Provider {
                reference: b.provider.clone(),
                implicit: true,
                settings: ProviderSettings::Implicit,
            });
        }
    }
    out.into_values().collect()
}
