//! From bytes to a typed [`model::Document`], with every problem turned into a [`Diagnostic`].

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{bare, validate, Diagnostic, Report, Severity};

/// Real FDL files are a few kilobytes; anything this large is a mistake (or an attack), and is
/// refused before it is read.
pub const MAX_FDL_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Do not look for the `script:` files (the conformance files come without them), and report
    /// a missing `script` as a warning.
    pub schema_only: bool,
    /// `script` holds the script's text, not a path (the OSCAR API's shape).
    pub inline_scripts: bool,
}

/// Loads and validates one FDL file. Never panics; every failure is a diagnostic in the report.
pub fn load_file(path: &Path, opts: LoadOptions) -> Report {
    match read_bounded(path) {
        Ok(bytes) => load_bytes(&bytes, path, opts),
        Err(message) => Report {
            file: path.to_path_buf(),
            workflow: None,
            diagnostics: vec![file_error(path, message)],
        },
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot stat: {e}"))?;
    if meta.is_dir() {
        return Err("is a directory, not an FDL file".into());
    }
    if meta.len() > MAX_FDL_BYTES {
        return Err(too_large(meta.len()));
    }
    // The size can change between stat and read (a pipe, a growing file): read one byte past
    // the limit to notice.
    let mut buf = Vec::new();
    file.take(MAX_FDL_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FDL_BYTES {
        return Err(too_large(buf.len() as u64));
    }
    Ok(buf)
}

fn too_large(len: u64) -> String {
    format!(
        "file is {:.1} MB; an FDL file may be at most {} MiB",
        len as f64 / 1e6,
        MAX_FDL_BYTES >> 20
    )
}

fn file_error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: path.to_path_buf(),
        line: None,
        column: None,
        path: None,
        message,
    }
}

/// Loads from bytes already read; `origin` names the file in messages and anchors relative
/// script paths.
pub fn load_bytes(bytes: &[u8], origin: &Path, opts: LoadOptions) -> Report {
    let mut report = Report {
        file: origin.to_path_buf(),
        workflow: None,
        diagnostics: Vec::new(),
    };
    if bytes.len() as u64 > MAX_FDL_BYTES {
        report
            .diagnostics
            .push(file_error(origin, too_large(bytes.len() as u64)));
        return report;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let at = e.valid_up_to();
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let mut d = file_error(
                origin,
                format!("not UTF-8 text (invalid byte at offset {at}): is this really an FDL file?"),
            );
            d.line = Some(line);
            report.diagnostics.push(d);
            return report;
        }
    };
    load_text(text, origin, opts, report)
}

/// Loads from a string. `origin` names the file in messages and anchors relative script paths.
pub fn load_str(text: &str, origin: &Path, opts: LoadOptions) -> Report {
    load_bytes(text.as_bytes(), origin, opts)
}

fn load_text(text: &str, origin: &Path, opts: LoadOptions, mut report: Report) -> Report {
    let blank = text.trim_start_matches('\u{feff}').trim().is_empty();
    if blank
        || text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
        })
    {
        let what = if blank {
            "file is empty"
        } else {
            "file holds only comments"
        };
        report.diagnostics.push(file_error(
            origin,
            format!("{what}: an FDL file needs a top-level `functions:` map"),
        ));
        return report;
    }
    // Read as plain data first: a template's unfilled `${VAR}` would otherwise surface as a
    // type error somewhere, and a bare service definition as a missing `functions`.
    let plain: Option<serde_json::Value> = serde_saphyr::from_str_with_options(text, options()).ok();
    if let Some(holes) = plain.as_ref().map(bare::placeholders).filter(|h| !h.is_empty()) {
        for (path, hole) in holes {
            // The field's own line (the same text may stand in a script above it).
            let (line, column) = find_path_line(text, &path).unzip();
            report.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: origin.to_path_buf(),
                line,
                column,
                message: format!(
                    "`{hole}` is a template placeholder: fill it in (e.g. with envsubst) before fogd reads the file"
                ),
                path: Some(path).filter(|p| !p.is_empty()),
            });
        }
        return report;
    }
    let bare = plain.as_ref().is_some_and(bare::is_bare_service);
    // OSCAR's examples carry trailing TABs that strict YAML parsers reject; granit-parser (under
    // serde-saphyr) accepts them, as Go's parser does, so they need no special case here.
    let mut ignored = Vec::new();
    // A bare service definition is the API body's form: its `script` is the script's text.
    let parsed = if bare {
        parse(text, &mut ignored).map(bare::document_of)
    } else {
        parse(text, &mut ignored)
    };
    let opts = LoadOptions {
        inline_scripts: opts.inline_scripts || bare,
        ..opts
    };
    let doc = match parsed {
        Ok(doc) => doc,
        Err(e) => {
            report.diagnostics.push(e.into_diagnostic(origin));
            return report;
        }
    };
    for path in ignored {
        let key = path.rsplit('.').next().unwrap_or(&path).to_string();
        let (line, column) = find_path_line(text, &path).unzip();
        report.diagnostics.push(Diagnostic {
            severity: Severity::Warning,
            file: origin.to_path_buf(),
            line,
            column,
            message: format!("unknown key `{key}` ignored"),
            path: Some(path),
        });
    }
    let base = origin.parent().map(Path::to_path_buf).unwrap_or_default();
    let (workflow, diags) = validate::validate(doc, origin, &base, opts);
    report.diagnostics.extend(diags);
    report.workflow = Some(workflow);
    report
}

struct ParseError {
    message: String,
    line: Option<u64>,
    column: Option<u64>,
    path: Option<String>,
}

impl ParseError {
    fn into_diagnostic(self, origin: &Path) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: PathBuf::from(origin),
            line: self.line,
            column: self.column,
            path: self.path,
            message: self.message,
        }
    }
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            // FDL files are small and shallow; these bound time and memory on hostile input
            // (alias bombs, 10,000-deep nesting) while leaving real files far inside.
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: 48,
            max_nodes: 100_000,
            max_recorded_anchor_events: 100_000,
            max_total_scalar_bytes: MAX_FDL_BYTES as usize,
        },
        with_snippet: false,
    }
}

/// Parses with two wrappers: `serde_ignored` reports unknown keys (warnings, not errors), and
/// `serde_path_to_error` names the field an error is about.
fn parse<T: serde::de::DeserializeOwned>(text: &str, ignored: &mut Vec<String>) -> Result<T, ParseError> {
    let mut error_path = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        let mut on_unknown = |p: serde_ignored::Path| {
            let p = fmt_ignored(&p);
            // serde-saphyr's `Spanned` reads its location through a private key.
            if !p.contains("__serde_saphyr_private") {
                ignored.push(p);
            }
        };
        let unknown = serde_ignored::Deserializer::new(de, &mut on_unknown);
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(unknown, &mut track);
        <T as serde::Deserialize>::deserialize(tracked).inspect_err(|_| {
            error_path = Some(track.path().to_string());
        })
    });
    result.map_err(|e| saphyr_error(&e, error_path))
}

fn saphyr_error(e: &serde_saphyr::Error, path: Option<String>) -> ParseError {
    let loc = e.location();
    let (message, keep_path) = friendly(&e.to_string());
    ParseError {
        message,
        line: loc.map(|l| l.line()).filter(|&l| l > 0),
        column: loc.map(|l| l.column()).filter(|&c| c > 0),
        path: path
            .filter(|_| keep_path)
            .map(|p| clean_path(&p))
            .filter(|p| !p.is_empty()),
    }
}

/// Turns the parser's wording into a user's; returns whether the field path is worth showing
/// (inside an alias bomb it is not).
fn friendly(raw: &str) -> (String, bool) {
    // serde-saphyr appends " at line L, column C" and more; the diagnostic carries the place.
    let first = raw.lines().next().unwrap_or(raw).trim();
    let msg = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    if let Some(what) = msg.strip_prefix("budget breached: ") {
        let text = if what.starts_with("Depth") {
            "nesting is deeper than fogd accepts (48 levels); FDL files are shallow".to_string()
        } else if ["Anchor", "Alias", "Replay"].iter().any(|k| what.contains(k)) {
            format!("YAML aliases expand beyond fogd's limit ({what}): an alias bomb? Refused")
        } else {
            format!("document is larger than fogd accepts for an FDL file ({what})")
        };
        return (text, false);
    }
    if msg.starts_with("multiple YAML documents") {
        let text = "the file holds more than one YAML document (`---`); an FDL file is one YAML document";
        return (text.into(), false);
    }
    if msg.contains("recursion limit exceeded") {
        return (
            "nesting is deeper than fogd accepts; FDL files are shallow".into(),
            false,
        );
    }
    let msg = msg
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(msg)
        .replace("expected sequence start", "expected a list (`- item` lines)")
        .replace("expected mapping start", "expected a map (`key: value` lines)")
        .replace("expected string scalar", "expected a string");
    (msg, true)
}

/// `...name.value` (inside serde-saphyr's `Spanned`) and a trailing `.?` (a key not yet read)
/// say nothing to a user.
fn clean_path(p: &str) -> String {
    let mut p = p.trim_end_matches(".?");
    if let Some(stripped) = p.strip_suffix(".value") {
        p = stripped;
    }
    if p == "." || p == "?" { "" } else { p }.to_string()
}

/// `functions.oscar.0.my_oscar.foo` -> `functions.oscar[0].my_oscar.foo`.
fn fmt_ignored(p: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    let mut parts = Vec::new();
    let mut cur = p;
    loop {
        match cur {
            P::Root => break,
            P::Seq { parent, index } => {
                parts.push(format!("[{index}]"));
                cur = parent;
            }
            P::Map { parent, key } => {
                parts.push(format!(".{key}"));
                cur = parent;
            }
            P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => cur = parent,
        }
    }
    parts.reverse();
    parts.concat().trim_start_matches('.').to_string()
}

/// Where the key at the end of `path` is written: each segment is looked for below the line of
/// the one before it. (The unknown-key callback knows the path, not the place.)
fn find_path_line(text: &str, path: &str) -> Option<(u64, u64)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for seg in path.split('.') {
        let key = seg.split('[').next().unwrap_or(seg);
        if key.is_empty() {
            continue;
        }
        let (i, col) = lines.iter().enumerate().skip(from).find_map(|(i, line)| {
            let body = line.trim_start();
            let body = body.strip_prefix("- ").map(str::trim_start).unwrap_or(body);
            let unquoted = body.trim_start_matches(['"', '\'']);
            let rest = unquoted.strip_prefix(key)?;
            rest.trim_start_matches(['"', '\''])
                .trim_start()
                .starts_with(':')
                .then(|| (i, line.len() - unquoted.len() + 1))
        })?;
        from = i + 1;
        found = Some((i as u64 + 1, col as u64));
    }
    found
}

/// Loads one service in the OSCAR API's shape (JSON: an FDL service with `storage_providers` and
/// `clusters` folded in and the script's text inline), as `POST /system/services` receives it.
pub fn load_api_service(json: &[u8], origin: &Path) -> Report {
    use super::model::OscarService;
    let mut report = Report {
        file: origin.to_path_buf(),
        workflow: None,
        diagnostics: Vec::new(),
    };
    let de = &mut serde_json::Deserializer::from_slice(json);
    let svc: OscarService = match serde_path_to_error::deserialize(de) {
        Ok(s) => s,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            report.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: origin.to_path_buf(),
                line: Some(inner.line() as u64).filter(|&l| l > 0),
                column: Some(inner.column() as u64).filter(|&c| c > 0),
                path: (!path.is_empty() && path != ".").then_some(path),
                message: inner
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            });
            return report;
        }
    };
    let doc = super::bare::document_of(svc);
    let opts = LoadOptions {
        schema_only: false,
        inline_scripts: true,
    };
    let (workflow, diags) = validate::validate(doc, origin, Path::new("."), opts);
    report.diagnostics.extend(diags);
    report.workflow = Some(workflow);
    report
}
