//! How `fogd` finds and calls `fogd-vision`: the binary's name, the variables that point at it
//! and at the warm worker, the built-in images and commands a workflow uses vision through, and
//! the lines `fogd-vision vision-check` answers `fogd check` with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The binary's name, installed beside `fogd`.
pub const BINARY: &str = "fogd-vision";
/// Where the binary is when it is not beside `fogd` (tests, unusual installs).
pub const ENV_BIN: &str = "FOGD_VISION_BIN";
/// The warm worker's socket, given to scripts: their `fogd anonymize` goes there.
pub const ENV_SOCKET: &str = "FOGD_VISION_SOCKET";
/// The subcommand that checks the models and the inference backend.
pub const CHECK_COMMAND: &str = "vision-check";
/// Images named so run fogd's own anonymiser and mask detector.
pub const IMAGE_PREFIX: &str = "fogd/builtin:";

/// The binary beside `exe`, or beside the folder above it when `exe` is in a Cargo `deps`
/// folder (a test binary).
pub fn binary_beside(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?;
    [Some(dir), dir.parent().filter(|_| dir.ends_with("deps"))]
        .into_iter()
        .flatten()
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
}

/// The vision built-ins a workflow calls, by image (`fogd/builtin:anonymize`) or by command in
/// a script (`fogd anonymize ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    Anonymize,
    DetectMasks,
}

impl Builtin {
    pub const ALL: [Builtin; 2] = [Builtin::Anonymize, Builtin::DetectMasks];

    /// The subcommand, of `fogd` and of `fogd-vision` alike.
    pub fn command(self) -> &'static str {
        match self {
            Builtin::Anonymize => "anonymize",
            Builtin::DetectMasks => "detect-masks",
        }
    }

    /// The image of a service that runs it: `fogd/builtin:<command>`.
    pub fn image(self) -> String {
        format!("{IMAGE_PREFIX}{}", self.command())
    }

    /// The built-in an image names (`fogd/builtin:anonymize`, with or without a tag suffix).
    pub fn of_image(image: &str) -> Option<Builtin> {
        let rest = image.strip_prefix(IMAGE_PREFIX)?;
        Builtin::ALL.into_iter().find(|b| rest.starts_with(b.command()))
    }

    /// Does a script call a built-in (`fogd anonymize`, `fogd detect-masks`)?
    pub fn called_by(script: &str) -> bool {
        Builtin::ALL
            .iter()
            .any(|b| script.contains(&format!("fogd {}", b.command())))
    }
}

/// Is this image one of fogd's own (`fogd/builtin:...`), whatever it runs?
pub fn is_builtin_image(image: &str) -> bool {
    image.starts_with(IMAGE_PREFIX)
}

/// How sure a check line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckLevel {
    Ok,
    Warn,
    Fail,
}

/// One line of `fogd-vision vision-check`'s output: a JSON object a line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckLine {
    pub level: CheckLevel,
    /// What was checked: `model`, `inference`, `fence` (Landlock).
    pub what: String,
    pub detail: String,
}

impl CheckLine {
    pub fn new(level: CheckLevel, what: &str, detail: String) -> CheckLine {
        CheckLine {
            level,
            what: what.into(),
            detail,
        }
    }

    /// The line as printed (never fails: strings and an enum).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The check lines in an output; other lines (a library's warning) are skipped.
    pub fn parse_all(out: &str) -> Vec<CheckLine> {
        out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_and_scripts_name_the_builtins() {
        assert_eq!(
            Builtin::of_image("fogd/builtin:anonymize"),
            Some(Builtin::Anonymize)
        );
        assert_eq!(
            Builtin::of_image("fogd/builtin:detect-masks"),
            Some(Builtin::DetectMasks)
        );
        assert_eq!(Builtin::of_image("fogd/builtin:other"), None);
        assert_eq!(Builtin::of_image("docker.io/fogd/builtin:anonymize"), None);
        assert!(is_builtin_image("fogd/builtin:other"));
        assert!(Builtin::called_by(
            "#!/bin/sh\nfogd anonymize \"$INPUT_FILE_PATH\" -o x\n"
        ));
        assert!(!Builtin::called_by("#!/bin/sh\ncp \"$INPUT_FILE_PATH\" x\n"));
    }

    #[test]
    fn check_lines_read_back_and_noise_is_skipped() {
        let l = CheckLine::new(
            CheckLevel::Warn,
            "inference",
            "OpenCV DNN (no libonnxruntime)".into(),
        );
        let out = format!("a library's warning\n{}\n", l.to_line());
        assert_eq!(CheckLine::parse_all(&out), vec![l]);
    }
}
