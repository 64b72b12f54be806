//! The `fogd` command line. Errors become `anyhow` here, and only here.

use std::process::ExitCode;

fn main() -> ExitCode {
    // Two TLS stacks are linked (the S3 SDK's and the HTTP client's); the gateway uses this one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    fogd::cli::main()
}
