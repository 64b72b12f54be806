//! The test-video maker (`fogd sample`): the photos of the sample media (plain and masked faces),
//! at twelve sizes from 24 to 160 px, moving over a textured background, with sensor noise,
//! encoded by FFmpeg as a camera would (H.264 at a fixed bitrate, a 2 s GOP, no B-frames).
//! Where each face is in every frame is known exactly: that is the ground truth the accuracy
//! tests and `fogd bench anonymize` measure against.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use opencv::core::{Mat, Rect, Scalar, Size, CV_8UC3};
use opencv::imgproc;
use opencv::prelude::*;

use super::detect::FaceBox;
use super::{io_err, media, Result, VisionError};

/// Where the sample photos are: the given folder, FOGD_MEDIA, the share folders of the package and
/// of `deploy/arm64/install.sh`, the
/// example's folder, and the source tree this binary was built from.
pub fn media_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = explicit {
        dirs.push(d.to_path_buf());
    } else if let Some(d) = std::env::var_os("FOGD_MEDIA") {
        dirs.push(PathBuf::from(d));
    } else {
        dirs.extend(super::models::beside_binary("share/fogd/media"));
        dirs.push(PathBuf::from("/usr/local/share/fogd/media"));
        dirs.push(PathBuf::from("examples/camera-ingest/media"));
        dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/camera-ingest/media"));
    }
    dirs.iter()
        .find(|d| d.join("faces-xyxy.json").is_file())
        .cloned()
        .ok_or_else(|| {
            VisionError::Other(format!(
                "no sample media (faces-xyxy.json and the photos) in {}; set FOGD_MEDIA",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SampleSpec {
    pub width: i32,
    pub height: i32,
    pub fps: u32,
    pub seconds: u32,
    /// Keyframe interval, in frames.
    pub gop: u32,
    /// Target bitrate (kbit/s, as a camera's CBR); 0: constant quality (CRF 23).
    #[serde(default)]
    pub bitrate_kbps: u32,
    /// Temporal sensor noise (FFmpeg's `noise` filter strength, 0-100; 0: none).
    #[serde(default)]
    pub noise: u32,
}

impl Default for SampleSpec {
    fn default() -> Self {
        SampleSpec {
            width: 1920,
            height: 1080,
            fps: 25,
            seconds: 60,
            gop: 50,
            bitrate_kbps: 6000,
            noise: 12,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TruthFace {
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub masked: bool,
}

impl TruthFace {
    pub fn face_box(&self) -> FaceBox {
        FaceBox::from_array(self.bbox, 1.0)
    }
}

/// The ground truth: every face in every frame.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Truth {
    pub spec: SampleSpec,
    pub frames: Vec<Vec<TruthFace>>,
}

impl Truth {
    pub fn load(path: &Path) -> Result<Truth> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        serde_json::from_slice(&bytes).map_err(|e| VisionError::BadInput {
            path: path.to_path_buf(),
            reason: format!("not a ground-truth file: {e}"),
        })
    }
    /// The faces at a timestamp (the nearest frame).
    pub fn at(&self, t: f64) -> &[TruthFace] {
        self.frame(self.frame_index(t))
    }
    /// The faces in frame `i` (none past the end).
    pub fn frame(&self, i: usize) -> &[TruthFace] {
        self.frames.get(i).map(Vec::as_slice).unwrap_or(&[])
    }
    /// The frame nearest to a timestamp.
    pub fn frame_index(&self, t: f64) -> usize {
        let i = (t * self.spec.fps as f64).round().max(0.0) as usize;
        i.min(self.frames.len().saturating_sub(1))
    }
}

/// One person: a photo, its face box, the face's width in a 1920-wide frame; each moves in a
/// cell of a 4x3 grid of its own (so people never overlap).
struct Person {
    photo: &'static str,
    masked: bool,
    face_w: f32,
}

/// Twelve people, small (far from the camera) to large, half of them masked.
const PEOPLE: [Person; 12] = [
    Person {
        photo: "grace_hopper.jpg",
        masked: false,
        face_w: 24.0,
    },
    Person {
        photo: "astronaut_masked.png",
        masked: true,
        face_w: 30.0,
    },
    Person {
        photo: "astronaut.png",
        masked: false,
        face_w: 36.0,
    },
    Person {
        photo: "grace_hopper_masked.png",
        masked: true,
        face_w: 40.0,
    },
    Person {
        photo: "grace_hopper.jpg",
        masked: false,
        face_w: 46.0,
    },
    Person {
        photo: "astronaut_masked.png",
        masked: true,
        face_w: 54.0,
    },
    Person {
        photo: "astronaut.png",
        masked: false,
        face_w: 64.0,
    },
    Person {
        photo: "grace_hopper_masked.png",
        masked: true,
        face_w: 76.0,
    },
    Person {
        photo: "grace_hopper.jpg",
        masked: false,
        face_w: 90.0,
    },
    Person {
        photo: "astronaut_masked.png",
        masked: true,
        face_w: 108.0,
    },
    Person {
        photo: "astronaut.png",
        masked: false,
        face_w: 130.0,
    },
    Person {
        photo: "grace_hopper_masked.png",
        masked: true,
        face_w: 160.0,
    },
];

fn triangle(t: f64, period: f64) -> f64 {
    let p = (t / period).fract();
    if p < 0.5 {
        p * 2.0
    } else {
        2.0 - p * 2.0
    }
}

struct Sprite {
    image: Mat,
    /// The face box inside `image`.
    face: [f32; 4],
    masked: bool,
}

fn sprites(media: &Path, scale: f32) -> Result<Vec<Sprite>> {
    let boxes_path = media.join("faces-xyxy.json");
    let bytes = std::fs::read(&boxes_path).map_err(io_err(&boxes_path))?;
    let boxes: HashMap<String, Vec<[f32; 4]>> =
        serde_json::from_slice(&bytes).map_err(|e| VisionError::BadInput {
            path: boxes_path.clone(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    for p in &PEOPLE {
        let base = p
            .photo
            .replace("_masked", "")
            .replace(".png", "")
            .replace(".jpg", "");
        let fb = boxes
            .iter()
            .find(|(k, _)| k.starts_with(&base))
            .and_then(|(_, v)| v.first().copied())
            .ok_or_else(|| {
                VisionError::Other(format!("{}: no face box for {}", boxes_path.display(), p.photo))
            })?;
        let photo = media::read_image(&media.join(p.photo))?;
        // Head and shoulders: the face box grown 1.6x, clipped to the photo.
        let face = FaceBox::from_array(fb, 1.0);
        let r = face
            .grown_rect(1.6, photo.cols(), photo.rows())
            .ok_or_else(|| VisionError::Other(format!("{}: face box outside the photo", p.photo)))?;
        let k = p.face_w * scale / face.width();
        let crop = Mat::roi(&photo, r)?;
        let size = Size::new(
            ((r.width as f32 * k).round() as i32).max(1),
            ((r.height as f32 * k).round() as i32).max(1),
        );
        let mut image = Mat::default();
        imgproc::resize(&crop, &mut image, size, 0.0, 0.0, imgproc::INTER_AREA)?;
        let (kx, ky) = (
            size.width as f32 / r.width as f32,
            size.height as f32 / r.height as f32,
        );
        out.push(Sprite {
            image,
            face: [
                (fb[0] - r.x as f32) * kx,
                (fb[1] - r.y as f32) * ky,
                (fb[2] - r.x as f32) * kx,
                (fb[3] - r.y as f32) * ky,
            ],
            masked: p.masked,
        });
    }
    Ok(out)
}

fn background(w: i32, h: i32) -> Result<Mat> {
    // Smooth random blotches over a vertical gradient: texture without faces.
    opencv::core::set_rng_seed(7)?;
    let mut small = Mat::new_rows_cols_with_default(h / 40 + 1, w / 40 + 1, CV_8UC3, Scalar::all(0.0))?;
    opencv::core::randu(&mut small, &Scalar::all(40.0), &Scalar::all(200.0))?;
    let mut bg = Mat::default();
    imgproc::resize(&small, &mut bg, Size::new(w, h), 0.0, 0.0, imgproc::INTER_CUBIC)?;
    Ok(bg)
}

/// The encoder's rate control and filters: a camera's constant bitrate and its sensor's noise.
fn rate_args(spec: &SampleSpec) -> Vec<String> {
    let mut a = Vec::new();
    if spec.noise > 0 {
        a.extend(["-vf".into(), format!("noise=alls={}:allf=t", spec.noise.min(100))]);
    }
    if spec.bitrate_kbps > 0 {
        let b = format!("{}k", spec.bitrate_kbps);
        let buf = format!("{}k", spec.bitrate_kbps * 2);
        // x264's rate control under frame or slice threads differs run to run; one thread
        // (~40% slower) makes the same clip every time, so tests and bench rounds see the same
        // pixels.
        a.extend([
            "-threads".into(),
            "1".into(),
            "-b:v".into(),
            b.clone(),
            "-maxrate".into(),
            b,
            "-bufsize".into(),
            buf,
        ]);
    } else {
        a.extend(["-crf".into(), "23".into()]);
    }
    a
}

/// Writes the clip (H.264 MP4 through the `ffmpeg` program) and its ground truth (JSON).
/// `progress` is called after each frame with (frames written, frames in all).
pub fn make(
    spec: &SampleSpec,
    media: &Path,
    clip: &Path,
    truth_path: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Truth> {
    if spec.width < 320 || spec.height < 240 || spec.fps == 0 || spec.seconds == 0 {
        return Err(VisionError::Other(
            "sample: at least 320x240, 1 fps and 1 s".into(),
        ));
    }
    let scale = spec.width as f32 / 1920.0;
    let sprites = sprites(media, scale)?;
    let bg = background(spec.width, spec.height)?;
    if let Some(dir) = clip.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = clip.with_extension("part.mp4");
    let mut child = Command::new("ffmpeg")
        .args([
            "-y",
            "-loglevel",
            "error",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "bgr24",
            "-s",
        ])
        .arg(format!("{}x{}", spec.width, spec.height))
        .args([
            "-r",
            &spec.fps.to_string(),
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
        ])
        .args(rate_args(spec))
        .args([
            // A camera's GOP: fixed, no scene-cut keyframes, no B-frames.
            "-g",
            &spec.gop.to_string(),
            "-keyint_min",
            &spec.gop.to_string(),
            "-sc_threshold",
            "0",
            "-bf",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| {
            VisionError::Other(format!(
                "ffmpeg, which encodes the sample (apt install ffmpeg): {e}"
            ))
        })?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| VisionError::Other("ffmpeg: no stdin".into()))?;
    let (cw, ch) = (spec.width / 4, spec.height / 3);
    let n = spec.fps * spec.seconds;
    let mut frames = Vec::with_capacity(n as usize);
    let mut frame = Mat::default();
    for i in 0..n {
        let t = i as f64 / spec.fps as f64;
        bg.copy_to(&mut frame)?;
        let mut faces = Vec::new();
        for (k, s) in sprites.iter().enumerate() {
            let (sw, sh) = (s.image.cols(), s.image.rows());
            let (cell_x, cell_y) = ((k as i32 % 4) * cw, (k as i32 / 4) * ch);
            // Each person moves on its own periods, within its cell.
            let fx = triangle(t + k as f64, 7.0 + k as f64);
            let fy = triangle(t + 2.0 * k as f64, 5.0 + 0.5 * k as f64);
            let x = cell_x + ((cw - sw).max(0) as f64 * fx) as i32;
            let y = cell_y + ((ch - sh).max(0) as f64 * fy) as i32;
            let r = Rect::new(x, y, sw.min(spec.width - x), sh.min(spec.height - y));
            let src = Mat::roi(&s.image, Rect::new(0, 0, r.width, r.height))?;
            let mut dst = Mat::roi_mut(&mut frame, r)?;
            src.copy_to(&mut dst)?;
            faces.push(TruthFace {
                bbox: [
                    x as f32 + s.face[0],
                    y as f32 + s.face[1],
                    (x as f32 + s.face[2]).min(spec.width as f32),
                    (y as f32 + s.face[3]).min(spec.height as f32),
                ],
                masked: s.masked,
            });
        }
        frames.push(faces);
        let bytes = frame.data_bytes()?;
        if let Err(e) = stdin.write_all(bytes) {
            let _ = child.wait();
            return Err(VisionError::Other(format!("ffmpeg stopped taking frames: {e}")));
        }
        progress(u64::from(i) + 1, u64::from(n));
    }
    drop(stdin);
    let status = child
        .wait()
        .map_err(|e| VisionError::Other(format!("ffmpeg: {e}")))?;
    if !status.success() {
        return Err(VisionError::Other(format!(
            "ffmpeg failed ({status}) writing {}",
            clip.display()
        )));
    }
    std::fs::rename(&tmp, clip).map_err(io_err(clip))?;
    let truth = Truth {
        spec: spec.clone(),
        frames,
    };
    let json = serde_json::to_vec(&truth).map_err(|e| VisionError::Other(e.to_string()))?;
    media::write_atomic(truth_path, &json)?;
    Ok(truth)
}
