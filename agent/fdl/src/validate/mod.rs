//! Semantic checks on a parsed FDL document, and its normalisation into a [`Workflow`].
//!
//! `mod.rs` walks the document; `services` turns each service into its normalised form;
//! `fields` checks single fields (names, quantities, paths, provider references).

mod fields;
mod services;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::model::{self, Document, Functions, Sp};
use super::workflow::*;
use super::{Diagnostic, LoadOptions, Severity};
use services::{lambda, legacy_function, oscar_service};

pub(super) struct Ctx<'a> {
    pub(super) file: &'a Path,
    pub(super) base: &'a Path,
    pub(super) opts: LoadOptions,
    pub(super) diags: Vec<Diagnostic>,
    /// Providers declared at the top level (and, API-style, inside services).
    pub(super) declared: BTreeMap<ProviderRef, ProviderSettings>,
    /// Peers declared under `clusters:`.
    pub(super) clusters: BTreeSet<String>,
    /// Cluster ids that key `functions.oscar` items: their endpoints and credentials live in the
    /// client's own cluster list (oscar-cli, scar.cfg), so references to them are legitimate.
    pub(super) function_clusters: BTreeSet<String>,
    /// Endpoints and credentials of the peers under `clusters:` (delegation calls them).
    pub(super) peers: BTreeMap<String, model::Cluster>,
}

impl Ctx<'_> {
    pub(super) fn push(
        &mut self,
        severity: Severity,
        at: Option<&serde_saphyr::Location>,
        path: &str,
        msg: String,
    ) {
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
    pub(super) fn error<T>(&mut self, at: &Sp<T>, path: &str, msg: String) {
        self.push(Severity::Error, Some(&at.referenced), path, msg);
    }
    pub(super) fn warn<T>(&mut self, at: &Sp<T>, path: &str, msg: String) {
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
        peers: doc.clusters.clone().unwrap_or_default(),
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
        peers: cx.peers.into_iter().map(|(id, c)| (id, Peer::from(c))).collect(),
    };
    (workflow, cx.diags)
}

pub(super) type Located = (Service, serde_saphyr::Location);

pub(super) fn declare_providers(cx: &mut Ctx, sp: &model::StorageProviders, path: &str) {
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
