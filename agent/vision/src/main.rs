//! `fogd-vision`: the vision commands (`anonymize`, `detect-masks`, `sample`, `bench
//! anonymize`), in the binary that links OpenCV. `fogd` hands these commands to it.

fn main() -> std::process::ExitCode {
    fogd_vision::cli::main()
}
