//! The CLI edge: argument parsing and printing. Library modules return typed errors; this module
//! turns them into messages and exit codes.

mod check;
mod demo;
mod fdl;
mod queue;
mod receipts;
mod remote;
mod runtime;
mod supervise;

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
    #[command(flatten)]
    pub log: fogd_log::LogArgs,
    /// The node's settings (fogd.yaml). Without it: the embedded default, data in ./fogd-data.
    #[arg(long, global = true, env = "FOGD_CONFIG")]
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
        /// One JSON document: the object and the jobs it queued.
        #[arg(long)]
        json: bool,
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
        /// One JSON document: the job (with --wait: how it ended, and its log).
        #[arg(long)]
        json: bool,
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
    Logs {
        service: String,
        job: Option<String>,
        /// One JSON document: the job, its state and its log.
        #[arg(long)]
        json: bool,
    },
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
        /// The services as the API gives them (a JSON array).
        #[arg(long)]
        json: bool,
    },
    /// Is this node ready? Config, data folder and free disk, journal, workflows and their stores,
    /// executor, inference library, gateway address, clock. Exit 1 when a check fails.
    Check {
        /// One JSON document: `{"ok": bool, "checks": [{"check", "result", "detail"}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Shell completions (`fogd completions bash > /etc/bash_completion.d/fogd`).
    Completions { shell: clap_complete::Shell },
    /// The manual page, in roff (`fogd man > fogd.1; man ./fogd.1`).
    Man,
    /// This node's receipt key (made at the first start): the Ed25519 public key that
    /// `fogd verify --key` checks its anonymised frames with.
    Key {
        #[arg(long)]
        json: bool,
    },
    /// Check anonymised frames' signed receipts: signed by this node (or --key), and the picture
    /// the one signed (not a pixel changed). Exit 1 when one fails.
    Verify {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The signing node's public key (`fogd key` there), or a file holding it.
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Gateway administration.
    Admin {
        #[command(subcommand)]
        what: Admin,
    },
    /// Redact the faces in images and videos (one frame every --every), writing the frames and
    /// a JSON sidecar each (faces, and masks with --classify-masks). Run by `fogd-vision`
    /// (`fogd anonymize --help` shows its options).
    #[command(disable_help_flag = true)]
    Anonymize(Handed),
    /// Find faces and judge masks in images; write an annotated image and a JSON result each
    /// (by `fogd-vision`).
    #[command(disable_help_flag = true)]
    DetectMasks(Handed),
    /// Make a test video with known face positions and its ground truth (by `fogd-vision`).
    #[command(disable_help_flag = true)]
    Sample(Handed),
    /// The paper's use case here, on the embedded default (no broker, no S3): a sample video (or
    /// yours) is split into frames with faces blurred and masks judged, then a summary.
    Demo(demo::DemoArgs),
    /// Inside a kube executor's pod or a podman executor's container: run the script (in a pod,
    /// fetching the input first and sending the outputs back).
    #[command(hide = true)]
    Supervise,
    /// The init container's copy of this binary into a pod (`DIR/fogd`).
    #[command(hide = true)]
    InstallSupervisor { dir: PathBuf },
    /// Measure fogd on this machine and print the numbers: `runtime`, `ingest`, `continuum`,
    /// `retention`, `s3`, `containers` (by `fogd-bench`), `anonymize` (by `fogd-vision`).
    #[command(disable_help_flag = true)]
    Bench(Handed),
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

/// A command line handed whole to a sibling binary (`fogd-vision`, `fogd-bench`), which parses
/// it and prints its own help.
#[derive(Debug, clap::Args)]
pub struct Handed {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<std::ffi::OsString>,
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
/// crash in native vision code cannot take the agent down. The benches live in `fogd-bench`,
/// which links the test servers. Both are installed beside `fogd`.
fn exec_sibling(name: &str) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe()?;
    let sibling = me.with_file_name(name);
    // argv[0] stays `fogd`: the sibling's usage and errors then name the command the user typed.
    let err = std::process::Command::new(&sibling)
        .arg0(std::env::args_os().next().unwrap_or_else(|| "fogd".into()))
        .args(std::env::args_os().skip(1))
        .exec();
    anyhow::bail!(
        "{}: {err} ({name} is installed next to fogd; build it with `cargo build --release --workspace`)",
        sibling.display()
    )
}

/// Sends this command line to the vision worker and prints its reply. Err (before anything was
/// printed) when the worker cannot be reached, so the caller runs the command itself. The wire
/// format (one JSON line each way) is `fogd_vision::cli::worker`'s.
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
    let req = fogd_vision_proto::worker::Request {
        argv,
        cwd: std::env::current_dir()?,
        // The camera's privacy zones and the object's key travel with the command line.
        env: fogd_vision_proto::worker::Request::env_from(|k| std::env::var(k).ok()),
    };
    conn.write_all(format!("{}\n", serde_json::to_string(&req)?).as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    let r: fogd_vision_proto::worker::Reply = serde_json::from_str(&reply)?;
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    Ok(ExitCode::from(r.code))
}

/// Exit statuses, for scripts and systemd (README, "Exit status"): 0 done; 1 the answer is no
/// (`check` or `validate` found a problem); 2 the command line is wrong (clap's); 3 something
/// failed while running; 78 the configuration (fogd.yaml, or a workflow `run` was given) is
/// wrong: EX_CONFIG of sysexits.h, which the systemd unit does not restart on.
pub const EXIT_NO: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_RUNTIME: u8 = 3;
pub const EXIT_CONFIG: u8 = 78;

/// The exit status of an error: a configuration error, or any other failure.
fn exit_status(e: &anyhow::Error) -> u8 {
    let config = e.chain().any(|c| {
        c.is::<crate::config::ConfigError>()
            || matches!(
                c.downcast_ref::<crate::runtime::RuntimeError>(),
                Some(crate::runtime::RuntimeError::Fdl { .. })
            )
    });
    if config {
        EXIT_CONFIG
    } else {
        EXIT_RUNTIME
    }
}

/// `main`: logging to stderr (FOGD_LOG), errors as `fogd: ...`.
pub fn main() -> ExitCode {
    let args = match Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not errors.
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { 0 });
        }
    };
    if matches!(args.command, Command::Demo(_)) && !args.log.verbose && std::env::var_os("FOGD_LOG").is_none()
    {
        // The demo prints its own summary; its worker (a child) inherits the quiet too.
        std::env::set_var("FOGD_LOG", "warn,ort=error");
    }
    fogd_log::init(fogd_log::default_filter(args.log.verbose), args.log.log_format);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fogd: {e:#}");
            ExitCode::from(exit_status(&e))
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
        Command::Services { remote, json } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(remote::services(&remote.remote(), *json))
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "fogd",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Anonymize(_) | Command::DetectMasks(_) => {
            // Inside a script of `fogd run`: the daemon's warm worker does it.
            if let Some(sock) = std::env::var_os(fogd_vision_proto::builtin::ENV_SOCKET) {
                match forward_to_worker(std::path::Path::new(&sock)) {
                    Ok(code) => return Ok(code),
                    Err(e) => tracing::debug!(error = %e, "vision worker unavailable; running fogd-vision"),
                }
            }
            exec_sibling(fogd_vision_proto::builtin::BINARY)
        }
        Command::Sample(_) => exec_sibling(fogd_vision_proto::builtin::BINARY),
        Command::Bench(h) => match h.args.first().and_then(|a| a.to_str()) {
            Some("anonymize" | "streams" | "plot") => exec_sibling(fogd_vision_proto::builtin::BINARY),
            _ => exec_sibling("fogd-bench"),
        },
        Command::Supervise => supervise::supervise(),
        Command::InstallSupervisor { dir } => supervise::install(dir),
        Command::Key { json } => receipts::key(&config(&cli)?, *json),
        Command::Verify { files, key, json } => {
            receipts::verify(&config(&cli)?, files, key.as_deref(), *json)
        }
        Command::Check { json } => {
            let cfg = config(&cli)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(check::check(&cfg, cli.config.as_deref(), *json))
        }
        _ => {
            let cfg = config(&cli)?;
            if let Some(d) = &cfg.models_dir {
                // The vision worker and the scripts' `fogd anonymize` read it from there. Set
                // before any thread starts.
                std::env::set_var("FOGD_MODELS", d);
            }
            bound_allocator_arenas();
            // Journal calls take a blocking thread each and then queue on its one connection:
            // more threads than this only add stacks and allocator arenas under load.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .max_blocking_threads(64)
                .enable_all()
                .build()?;
            rt.block_on(runtime::dispatch(cli.command, cfg))
        }
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), each kept at its
/// high-water mark: under a burst of requests that, not the data, is most of the RSS. Two
/// arenas hold a node's allocations with no measurable cost in speed.
fn bound_allocator_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
