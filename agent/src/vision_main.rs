//! `fogd-vision`: the vision commands (`anonymize`, `detect-masks`, `sample`, `bench
//! anonymize`), in the binary that links OpenCV. `fogd` hands these commands to it.

use std::process::ExitCode;

fn main() -> ExitCode {
    fogd::cli::main_with(fogd::cli::run_vision)
}
