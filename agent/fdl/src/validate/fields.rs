//! Checks of single fields: names, quantities, log levels, scripts, storage paths and providers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Ctx;
use crate::model::{self, EnvValue, OneOrMany, Scalar, Sp, StorageIo};
use crate::quantity::{parse_cpu_millis, parse_memory_bytes};
use crate::workflow::*;
use crate::Severity;

const LOG_LEVELS: [&str; 6] = ["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

pub(super) fn check_name(cx: &mut Ctx, name: &Sp<String>, path: &str, max: usize, allow_upper: bool) {
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

pub(super) fn list_of(v: Option<&OneOrMany<String>>) -> Vec<String> {
    v.map(|v| v.0.clone()).unwrap_or_default()
}

pub(super) fn memory(cx: &mut Ctx, q: &Sp<Scalar>, path: &str) -> Option<u64> {
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

pub(super) fn cpu(cx: &mut Ctx, q: &Sp<Scalar>, path: &str) -> Option<u64> {
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

pub(super) fn log_level(cx: &mut Ctx, l: &Sp<String>, path: &str) -> String {
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

pub(super) fn environment(
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

pub(super) fn resolve_script(cx: &mut Ctx, sc: &Sp<String>, path: &str) -> Option<Script> {
    let v = sc.value.trim();
    if v.is_empty() {
        cx.error(sc, path, "script is empty".into());
        return None;
    }
    // The API-level shape carries the script's text itself.
    if cx.opts.inline_scripts || v.contains('\n') {
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

pub(super) fn bindings(
    cx: &mut Ctx,
    list: &Option<Vec<StorageIo>>,
    service: &str,
    path: &str,
) -> Vec<IoBinding> {
    list.iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, io)| binding(cx, io, service, &format!("{path}[{i}]")))
        .collect()
}

pub(super) fn binding(cx: &mut Ctx, io: &StorageIo, service: &str, path: &str) -> Option<IoBinding> {
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
pub(super) fn mount(cx: &mut Ctx, m: &StorageIo, service: &str, path: &str) -> Option<IoBinding> {
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
        binding(cx, &fixed, service, path)
    } else {
        binding(cx, m, service, path)
    }
}

pub(super) fn provider_ref(cx: &mut Ctx, sp: &Sp<String>, path: &str) -> Option<ProviderRef> {
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
pub(super) fn storage_path(cx: &mut Ctx, sp: &Sp<String>, path: &str) -> Option<String> {
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
