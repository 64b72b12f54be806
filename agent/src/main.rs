//! The `fogd` command line. Errors become `anyhow` here, and only here.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Two TLS stacks are linked (the S3 SDK's and the HTTP client's); the gateway uses this one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = fogd::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOGD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if args.verbose { "debug" } else { "info" }));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match fogd::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fogd: {e:#}");
            ExitCode::from(2)
        }
    }
}
