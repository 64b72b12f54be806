//! `fogd sample` and `fogd bench plot` at the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::sample::{self, SampleSpec};

#[derive(Debug, clap::Args)]
pub struct SampleArgs {
    /// The clip to write (MP4); the ground truth goes next to it as <name>.truth.json.
    #[arg(long, default_value = "sample.mp4")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub seconds: u32,
    #[arg(long, default_value_t = 1920)]
    pub width: i32,
    #[arg(long, default_value_t = 1080)]
    pub height: i32,
    #[arg(long, default_value_t = 25)]
    pub fps: u32,
    /// Keyframe interval in seconds (cameras: 1-4).
    #[arg(long, default_value_t = 2)]
    pub gop_seconds: u32,
    /// Bitrate in kbit/s, constant as a camera's (0: constant quality instead).
    #[arg(long, default_value_t = 6000)]
    pub bitrate: u32,
    /// Sensor noise, 0-100 (0: a clean picture, cheap to decode).
    #[arg(long, default_value_t = 12)]
    pub noise: u32,
    /// Folder of the sample photos (default: FOGD_MEDIA, the install's share folder, the example's).
    #[arg(long)]
    pub media: Option<PathBuf>,
}

pub fn truth_path(clip: &Path) -> PathBuf {
    clip.with_extension("truth.json")
}

pub fn sample(a: &SampleArgs) -> anyhow::Result<ExitCode> {
    let media = sample::media_dir(a.media.as_deref())?;
    let spec = SampleSpec {
        width: a.width,
        height: a.height,
        fps: a.fps,
        seconds: a.seconds,
        gop: a.gop_seconds.max(1) * a.fps,
        bitrate_kbps: a.bitrate,
        noise: a.noise,
    };
    let started = Instant::now();
    let mut progress = super::progress::Progress::new("sample: frames");
    let truth = sample::make(&spec, &media, &a.out, &truth_path(&a.out), &mut |done, total| {
        progress.set(done, total)
    })
    .with_context(|| format!("making {}", a.out.display()))?;
    progress.finish();
    let faces: usize = truth.frames.iter().map(Vec::len).sum();
    println!(
        "{}: {} s, {}x{} at {} fps, {} faces in {} frames (ground truth: {}) in {:.1} s",
        a.out.display(),
        a.seconds,
        a.width,
        a.height,
        a.fps,
        faces,
        truth.frames.len(),
        truth_path(&a.out).display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// `fogd-vision bench plot`: the PNG of `fogd bench continuum` (drawn with OpenCV, which this
/// binary links anyway: no font files or plotting stack needed on the box).
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// `videos,mode,makespan_s,...` rows, as `fogd bench continuum` writes them.
    #[arg(long)]
    csv: PathBuf,
    #[arg(long)]
    png: PathBuf,
}

pub fn plot(a: &PlotArgs) -> anyhow::Result<ExitCode> {
    use opencv::core::{Mat, Point, Scalar, CV_8UC3};
    use opencv::imgproc;
    let text = std::fs::read_to_string(&a.csv).with_context(|| format!("{}", a.csv.display()))?;
    // mode -> [(videos, seconds)]
    let mut series: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let parse = |i: usize| -> anyhow::Result<f64> {
            f.get(i)
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("{} line {}: not `videos,mode,makespan_s`", a.csv.display(), n + 1))
        };
        let (x, y) = (parse(0)?, parse(2)?);
        series.entry(f[1].to_string()).or_default().push((x, y));
    }
    anyhow::ensure!(!series.is_empty(), "{}: no rows", a.csv.display());
    let (w, h) = (960, 600);
    let (left, right, top, bottom) = (90, 30, 60, 70);
    let mut img = Mat::new_rows_cols_with_default(h, w, CV_8UC3, Scalar::all(255.0))?;
    let xmax = series.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let ymax = series.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let px = |x: f64| left + ((x / xmax) * f64::from(w - left - right)) as i32;
    let py = |y: f64| h - bottom - ((y / ymax) * f64::from(h - top - bottom)) as i32;
    let black = Scalar::all(0.0);
    let grey = Scalar::all(200.0);
    // Axes, grid and ticks.
    for i in 0..=5 {
        let y = ymax * f64::from(i) / 5.0;
        imgproc::line(
            &mut img,
            Point::new(left, py(y)),
            Point::new(w - right, py(y)),
            grey,
            1,
            imgproc::LINE_AA,
            0,
        )?;
        let label = if ymax < 10.0 {
            format!("{y:.1}")
        } else {
            format!("{y:.0}")
        };
        super::masks::text(&mut img, &label, Point::new(20, py(y) + 5), 0.5, black, 1)?;
    }
    let mut xs: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for x in &xs {
        super::masks::text(
            &mut img,
            &format!("{x:.0}"),
            Point::new(px(*x) - 8, h - bottom + 22),
            0.5,
            black,
            1,
        )?;
    }
    imgproc::line(
        &mut img,
        Point::new(left, top),
        Point::new(left, h - bottom),
        black,
        2,
        imgproc::LINE_AA,
        0,
    )?;
    imgproc::line(
        &mut img,
        Point::new(left, h - bottom),
        Point::new(w - right, h - bottom),
        black,
        2,
        imgproc::LINE_AA,
        0,
    )?;
    super::masks::text(&mut img, "videos", Point::new(w / 2 - 30, h - 20), 0.6, black, 1)?;
    super::masks::text(&mut img, "makespan (s)", Point::new(10, top - 15), 0.6, black, 1)?;
    super::masks::text(
        &mut img,
        "fogd: makespan by number of videos (cf. Fig. 9)",
        Point::new(w / 2 - 200, 30),
        0.7,
        black,
        2,
    )?;
    // One line per mode (BGR colours).
    let colours = [
        Scalar::new(40.0, 40.0, 200.0, 0.0),
        Scalar::new(200.0, 120.0, 30.0, 0.0),
        Scalar::new(60.0, 160.0, 60.0, 0.0),
    ];
    for (k, (mode, pts)) in series.iter().enumerate() {
        let c = colours[k % colours.len()];
        let mut pts = pts.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in pts.windows(2) {
            imgproc::line(
                &mut img,
                Point::new(px(pair[0].0), py(pair[0].1)),
                Point::new(px(pair[1].0), py(pair[1].1)),
                c,
                2,
                imgproc::LINE_AA,
                0,
            )?;
        }
        for p in &pts {
            imgproc::circle(
                &mut img,
                Point::new(px(p.0), py(p.1)),
                5,
                c,
                -1,
                imgproc::LINE_AA,
                0,
            )?;
        }
        let ly = top + 10 + 25 * k as i32;
        imgproc::line(
            &mut img,
            Point::new(left + 20, ly),
            Point::new(left + 60, ly),
            c,
            3,
            imgproc::LINE_AA,
            0,
        )?;
        super::masks::text(&mut img, mode, Point::new(left + 70, ly + 5), 0.6, black, 1)?;
    }
    let path = a.png.to_string_lossy().into_owned();
    let ok = opencv::imgcodecs::imwrite(&path, &img, &opencv::core::Vector::new())?;
    anyhow::ensure!(ok, "could not write {path}");
    Ok(ExitCode::SUCCESS)
}
