//! The Functions Definition Language of OSCAR and SCAR: loading, validation and the workflow graph.
//!
//! Pure: no I/O beyond reading the FDL file and checking that scripts exist (`load_file`).
//! `load_str` does none at all.

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
