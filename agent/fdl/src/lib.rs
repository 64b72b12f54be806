//! The Functions Definition Language of OSCAR and SCAR: loading, validation and the workflow graph.
//!
//! Pure: no I/O beyond reading the FDL file and checking that scripts exist (`load_file`).
//! `load_str` does none at all.

/// `Debug` for a struct holding credentials: the secret fields print as `"***"` (or `None`), so a
/// `{:?}` in a log line or a panic message never shows them.
#[macro_export]
macro_rules! debug_redacted {
    ($t:ident { $($plain:ident),* ; $($secret:ident),* }) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    $(.field(stringify!($plain), &self.$plain))*
                    $(.field(stringify!($secret), &$crate::Redacted(&self.$secret)))*
                    .finish()
            }
        }
    };
}

/// A secret as `Debug` shows it.
#[doc(hidden)]
pub struct Redacted<'a, T>(pub &'a T);

impl<T: RedactedShape> std::fmt::Debug for Redacted<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.shape(f)
    }
}

/// What a redacted value still shows: whether it is set, and map keys.
#[doc(hidden)]
pub trait RedactedShape {
    fn shape(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result;
}

impl RedactedShape for Option<String> {
    fn shape(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Some(_) => write!(f, "Some(\"***\")"),
            None => write!(f, "None"),
        }
    }
}

impl<V> RedactedShape for std::collections::BTreeMap<String, V> {
    fn shape(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.keys().map(|k| (k, "***"))).finish()
    }
}

impl<V> RedactedShape for Option<std::collections::BTreeMap<String, V>> {
    fn shape(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Some(m) => m.shape(f),
            None => write!(f, "None"),
        }
    }
}

mod bare;
pub mod graph;
mod load;
pub mod model;
mod quantity;
mod validate;
mod workflow;

pub use load::{load_api_service, load_bytes, load_file, load_str, LoadOptions, MAX_FDL_BYTES};
pub use quantity::{parse_cpu_millis, parse_memory_bytes};
pub use workflow::*;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding about an FDL file, with the place it refers to.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; absent when the finding is about the whole file.
    pub line: Option<u64>,
    pub column: Option<u64>,
    /// The field's path, e.g. `functions.oscar[0].my_oscar.input[0].storage_provider`.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if let Some(p) = &self.path {
            write!(f, ": {p}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What loading one FDL file gave: the workflow (when the file could be read at all) and every
/// warning and error found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub file: PathBuf,
    pub workflow: Option<Workflow>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }
    pub fn is_valid(&self) -> bool {
        self.workflow.is_some() && self.errors().next().is_none()
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_never_shows_credentials() {
        let text = "functions:
  oscar:
  - c:
      name: s
      image: x
      script: ':'
      environment:
        variables: {PLAIN: visible}
        secrets: {DB_PASSWORD: hunter2}
      input: [{storage_provider: minio.m, path: a/in}]
storage_providers:
  minio:
    m: {endpoint: 'http://m:9000', access_key: AKID, secret_key: s3cr3t-minio}
  s3:
    a: {access_key: AKID2, secret_key: s3cr3t-aws, region: eu-west-1}
  webdav:
    w: {hostname: h, login: u, password: dav-pass}
clusters:
  peer: {endpoint: 'https://peer', auth_user: oscar, auth_password: peer-pass, ssl_verify: true}
";
        let r = load_str(text, std::path::Path::new("t.yaml"), LoadOptions::default());
        let wf = r.workflow.as_ref().expect("loaded");
        let shown = format!("{wf:?}");
        for secret in ["hunter2", "s3cr3t-minio", "s3cr3t-aws", "dav-pass", "peer-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in ["DB_PASSWORD", "visible", "AKID", "http://m:9000", "***"] {
            assert!(shown.contains(kept), "{kept} not in {shown}");
        }
    }
}
