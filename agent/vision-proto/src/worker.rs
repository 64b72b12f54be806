//! The vision worker's wire format (`fogd-vision vision-serve`): one JSON line each way over a
//! Unix socket. A script's `fogd anonymize` sends its command line and the few variables of its
//! environment that change what is written; the worker, a long-lived process, has its own.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The variables a request carries from the script's environment: the privacy zones of the
/// camera and the object the input is (checked against each other), and the live audit's rate.
pub const FORWARDED_ENV: &[&str] = &[
    crate::zones::ENV_ZONES,
    crate::receipt::ENV_AUDIT_EVERY,
    crate::receipt::ENV_PLATES,
    crate::grant::ENV_TOKEN,
    "STORAGE_OBJECT_KEY",
];

/// A request: the command line a script ran, where it ran it, and `FORWARDED_ENV` as it had them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl Request {
    /// `FORWARDED_ENV` out of an environment lookup (the process's own, or a test's).
    pub fn env_from(get: impl Fn(&str) -> Option<String>) -> BTreeMap<String, String> {
        FORWARDED_ENV
            .iter()
            .filter_map(|k| get(k).map(|v| (k.to_string(), v)))
            .collect()
    }
}

/// The reply: the exit status and what the command printed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}
