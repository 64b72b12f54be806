//! Runs an ONNX model: on ONNX Runtime (loaded at run time from the library `scripts/setup`
//! installs, or ORT_DYLIB_PATH) when it can, else on OpenCV's DNN module. Which one, and why,
//! is reported by `fogd check`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use opencv::core::{Mat, Vector};
use opencv::prelude::*;

use super::models::{self, Model};
use super::{Result, VisionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// ONNX Runtime when its library loads, else OpenCV DNN.
    #[default]
    Auto,
    #[value(name = "onnxruntime")]
    #[serde(rename = "onnxruntime")]
    OnnxRuntime,
    #[value(name = "opencv")]
    #[serde(rename = "opencv")]
    OpenCv,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::OnnxRuntime => "onnxruntime",
            Backend::OpenCv => "opencv",
        }
    }
}

/// Where the ONNX Runtime library is: ORT_DYLIB_PATH, else the package's copy beside the binary
/// (`/usr/lib/fogd/`), else where `scripts/setup` installs it.
pub fn onnxruntime_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let setup = PathBuf::from(format!(
        "/usr/local/lib/fogd/onnxruntime/{}/libonnxruntime.so",
        std::env::consts::ARCH
    ));
    crate::models::beside_binary("lib/fogd/libonnxruntime.so")
        .into_iter()
        .chain([setup])
        .find(|p| p.is_file())
}

static ORT_ENV: OnceLock<std::result::Result<(ort::environment::Environment, PathBuf), String>> =
    OnceLock::new();

/// Loads ONNX Runtime once per process. Err: why it cannot be used (the fallback's reason).
pub fn onnxruntime() -> std::result::Result<&'static Path, &'static str> {
    let r = ORT_ENV.get_or_init(|| {
        let path = onnxruntime_path()
            .ok_or_else(|| "no libonnxruntime.so (run scripts/setup, or set ORT_DYLIB_PATH)".to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .with_name("fogd")
            .build()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok((env, path))
    });
    match r {
        Ok((_, p)) => Ok(p.as_path()),
        Err(e) => Err(e.as_str()),
    }
}

/// The backend `Auto` resolves to here, and why.
pub fn resolve(want: Backend) -> (Backend, String) {
    match want {
        Backend::OpenCv => (Backend::OpenCv, "chosen".into()),
        Backend::OnnxRuntime => match onnxruntime() {
            Ok(p) => (Backend::OnnxRuntime, p.display().to_string()),
            Err(e) => (Backend::OnnxRuntime, format!("unusable: {e}")),
        },
        Backend::Auto => match onnxruntime() {
            Ok(p) => (Backend::OnnxRuntime, p.display().to_string()),
            Err(e) => (Backend::OpenCv, format!("fallback, ONNX Runtime unusable: {e}")),
        },
    }
}

fn ort_session(
    env: &ort::environment::Environment,
    bytes: &[u8],
    threads: usize,
) -> std::result::Result<ort::session::Session, String> {
    let s = |e: ort::Error<ort::session::builder::SessionBuilder>| e.to_string();
    let mut b = ort::session::Session::builder(env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads.max(1))
        .map_err(s)?
        .with_inter_threads(1)
        .map_err(s)?
        // Frames vary in size: a memory pattern per shape only costs memory.
        .with_memory_pattern(false)
        .map_err(s)?
        // Spinning threads steal the core the decoder needs.
        .with_config_entry("session.intra_op.allow_spinning", "0")
        .map_err(s)?
        .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level3)
        .map_err(s)?;
    b.commit_from_memory(bytes).map_err(|e| e.to_string())
}

/// A model's input: floats, or 8-bit pixels for a file that takes them (`Net::takes_u8`).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

/// One output of a model run, in the model's output order.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

enum Inner {
    Ort(ort::session::Session),
    Cv(opencv::dnn::Net),
}

/// A loaded model: `sessions` copies, so that as many frames can be in inference at once (a
/// run needs its session to itself). Two frames in flight keep both cores of a small box busy
/// through the stages between inferences (crops, blur, JPEG), which one frame at a time leaves
/// to a single core; each copy costs its working memory.
pub struct Net {
    model: Model,
    pub backend: Backend,
    slots: Vec<Mutex<Inner>>,
}

impl Net {
    /// The file that runs (the fp32 one on OpenCV, whatever was asked).
    pub fn model(&self) -> Model {
        self.model
    }

    pub fn load(
        model: Model,
        dir: Option<&Path>,
        want: Backend,
        threads: usize,
        sessions: usize,
    ) -> Result<Net> {
        let (backend, why) = resolve(want);
        // The int8 file is made for ONNX Runtime's QDQ kernels (and measured only there): OpenCV's
        // DNN gets the fp32 file.
        let model = if backend == Backend::OpenCv {
            model.fp32()
        } else {
            model
        };
        let path = models::locate(model, dir)?;
        // The files are loaded as they are: scripts/fix-models fixed the detectors' shapes and
        // weight inputs once, offline.
        let bytes = models::load_verified(model, &path)?;
        let load_err = |message: String| VisionError::ModelLoad {
            path: path.clone(),
            message,
        };
        let mut slots = Vec::new();
        for _ in 0..sessions.max(1) {
            let inner = match backend {
                Backend::OnnxRuntime => {
                    let env = match ORT_ENV.get() {
                        Some(Ok((env, _))) => env,
                        Some(Err(e)) => return Err(load_err(e.clone())),
                        None => return Err(load_err(why)),
                    };
                    Inner::Ort(ort_session(env, &bytes, threads).map_err(load_err)?)
                }
                _ => {
                    let buf = Vector::<u8>::from_slice(&bytes);
                    let mut net =
                        opencv::dnn::read_net_from_onnx_buffer(&buf).map_err(|e| load_err(e.message))?;
                    net.set_preferable_backend(opencv::dnn::DNN_BACKEND_OPENCV)?;
                    net.set_preferable_target(opencv::dnn::DNN_TARGET_CPU)?;
                    Inner::Cv(net)
                }
            };
            slots.push(Mutex::new(inner));
        }
        tracing::debug!(
            model = model.file_name(),
            backend = backend.name(),
            why = why.as_str(),
            sessions = slots.len(),
            "model loaded"
        );
        Ok(Net {
            model,
            backend,
            slots,
        })
    }

    /// A free session, else (every one busy) the first, waited for.
    fn session(&self) -> std::result::Result<std::sync::MutexGuard<'_, Inner>, ()> {
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(g) => return Ok(g),
                Err(std::sync::TryLockError::WouldBlock) => continue,
                Err(std::sync::TryLockError::Poisoned(_)) => return Err(()),
            }
        }
        self.slots.first().ok_or(())?.lock().map_err(|_| ())
    }

    pub fn sessions(&self) -> usize {
        self.slots.len()
    }

    /// Runs the model on one input blob (a continuous f32 Mat with the model's layout).
    pub fn run(&self, blob: &Mat) -> Result<Vec<Tensor>> {
        let shape: Vec<usize> = blob.mat_size().iter().map(|&d| d as usize).collect();
        self.run_data(&shape, Input::F32(blob.data_typed::<f32>()?), usize::MAX)
    }

    /// Whether the loaded file takes 8-bit pixels (`Input::U8`) rather than floats.
    pub fn takes_u8(&self) -> bool {
        self.model.takes_u8()
    }

    /// Runs the model on `data` laid out as `shape`, and returns its first `keep` outputs (the
    /// others are not copied: CenterFace's landmarks are 1.3 MB a 1080p frame, never used).
    pub fn run_data(&self, shape: &[usize], data: Input<'_>, keep: usize) -> Result<Vec<Tensor>> {
        let err = |message: String| VisionError::Inference {
            model: self.model.file_name().to_string(),
            message,
        };
        let mut inner = self
            .session()
            .map_err(|()| err("a previous run panicked".into()))?;
        match &mut *inner {
            Inner::Ort(session) => {
                let input = match data {
                    Input::F32(d) => {
                        ort::value::TensorRef::from_array_view((shape.to_vec(), d)).map(|t| t.into_dyn())
                    }
                    Input::U8(d) => {
                        ort::value::TensorRef::from_array_view((shape.to_vec(), d)).map(|t| t.into_dyn())
                    }
                }
                .map_err(|e| err(e.to_string()))?;
                let outputs = session.run(ort::inputs![input]).map_err(|e| err(e.to_string()))?;
                let mut out = Vec::with_capacity(outputs.len().min(keep));
                for (_, v) in outputs.iter().take(keep) {
                    let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| err(e.to_string()))?;
                    out.push(Tensor {
                        shape: s.iter().map(|&x| x.max(0) as usize).collect(),
                        data: d.to_vec(),
                    });
                }
                Ok(out)
            }
            Inner::Cv(net) => {
                // OpenCV runs the fp32 files, which take floats.
                let Input::F32(data) = data else {
                    return Err(err("OpenCV's backend takes float input".into()));
                };
                // OpenCV names its outputs in its own order: all are kept.
                let dims: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
                let blob = Mat::from_slice(data)?.reshape_nd(1, &dims)?.try_clone()?;
                net.set_input(&blob, "", 1.0, opencv::core::Scalar::default())?;
                let names = net.get_unconnected_out_layers_names()?;
                let mut outs = Vector::<Mat>::new();
                net.forward(&mut outs, &names)?;
                let mut out = Vec::with_capacity(outs.len());
                for m in outs.iter() {
                    let m = if m.is_continuous() { m } else { m.try_clone()? };
                    out.push(Tensor {
                        shape: m.mat_size().iter().map(|&d| d as usize).collect(),
                        data: m.data_typed::<f32>()?.to_vec(),
                    });
                }
                Ok(out)
            }
        }
    }
}
