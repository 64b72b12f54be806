//! The models fogd ships (see models/README.md), found on disk and checked against the SHA-256
//! they were released with, so a truncated or swapped file is an error, never garbage boxes.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{io_err, Result, VisionError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    CenterFace,
    UltraFace,
    MaskClassifier,
    /// Made from `centerface.onnx` by `scripts/quantize-models`.
    CenterFaceInt8,
    /// Made from `mask-classifier-mobilenetv2.onnx` by `scripts/quantize-models`.
    MaskClassifierInt8,
    /// Licence plates (`plates.rs`), fp32 only.
    PlateDetector,
}

/// Which numbers CenterFace and the mask classifier compute with (UltraFace has only fp32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The original 32-bit float files: the default, because they find the same faces on every
    /// CPU. Issue 32: the int8 CenterFace scored one face 0.532 on an AVX2 EPYC (no VNNI, where
    /// ONNX Runtime's u8s8 kernels can saturate) against 0.776 in fp32, and the privacy tests
    /// failed there; a privacy claim must not depend on the CPU that ran it.
    #[default]
    Fp32,
    /// 8-bit integer weights and activations (ONNX Runtime only; OpenCV gets the fp32 files):
    /// detection 1.5x faster and classification on 1.9x less CPU with int8 dot products (x86
    /// VNNI, Arm dotprod), 80 MB less memory. Opt-in: its boxes and scores move with the CPU's
    /// int8 kernels (see `Fp32`).
    Int8,
}

impl Model {
    pub const ALL: [Model; 6] = [
        Model::CenterFace,
        Model::UltraFace,
        Model::MaskClassifier,
        Model::CenterFaceInt8,
        Model::MaskClassifierInt8,
        Model::PlateDetector,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Model::CenterFace => "centerface.onnx",
            Model::UltraFace => "ultraface-rfb-640.onnx",
            Model::MaskClassifier => "mask-classifier-mobilenetv2.onnx",
            Model::CenterFaceInt8 => "centerface-int8.onnx",
            Model::MaskClassifierInt8 => "mask-classifier-int8.onnx",
            Model::PlateDetector => "clp_det.onnx",
        }
    }

    pub fn sha256(self) -> &'static str {
        match self {
            Model::CenterFace => "26b11dbb101d3f62fa29fabf5cb67534daa681d0069f3d3f987ff95a2f587e0e",
            Model::UltraFace => "ff49ab970840e5466f322a04f053a12fda65c9fd7929084c6db6219ae26b2366",
            Model::MaskClassifier => "a47c3d8ee4d9debd333e892dc11cda15637bb547afdad9f7f198cb0ef0d00f7f",
            Model::CenterFaceInt8 => "0deaf61bb8c4c71e76b4e2fefe95c789fd6d582cae67a2441ac97ad30254d043",
            Model::MaskClassifierInt8 => "6bf0142d9c25eb971b5ecaea95ecbad543ff1e361911e1bd7b3bb8965a5252db",
            Model::PlateDetector => "1bb07d364ba3b1cca8c27176d3ea6b5997b6264dea8c9304e092c618b112d5f0",
        }
    }

    /// The file to run at `precision` (UltraFace has no int8 file).
    pub fn at(self, precision: Precision) -> Model {
        match (self.fp32(), precision) {
            (Model::CenterFace, Precision::Int8) => Model::CenterFaceInt8,
            (Model::MaskClassifier, Precision::Int8) => Model::MaskClassifierInt8,
            (m, _) => m,
        }
    }

    /// Whether the file takes 8-bit pixels (0..255) rather than floats.
    pub fn takes_u8(self) -> bool {
        self == Model::CenterFaceInt8
    }

    /// The fp32 file this one was made from (itself when it is one).
    pub fn fp32(self) -> Model {
        match self {
            Model::CenterFaceInt8 => Model::CenterFace,
            Model::MaskClassifierInt8 => Model::MaskClassifier,
            m => m,
        }
    }
}

/// Where models are looked for, first match wins: the given folder, `FOGD_MODELS`, next to the
/// binary (`../share/fogd/models`), the system folders the installers use, `./models`, and the
/// source tree this binary was built from.
pub fn search_path(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = explicit {
        dirs.push(d.to_path_buf());
        return dirs;
    }
    if let Some(d) = std::env::var_os("FOGD_MODELS") {
        dirs.push(PathBuf::from(d));
        return dirs;
    }
    dirs.extend(beside_binary("share/fogd/models"));
    dirs.push(PathBuf::from("/usr/local/share/fogd/models"));
    dirs.push(PathBuf::from("/usr/share/fogd/models"));
    dirs.push(PathBuf::from("models"));
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    dirs
}

/// `rel` under the prefix this binary is installed in (`/usr/bin/fogd-vision` gives
/// `/usr/<rel>`): a package's files are found where it put them, with no environment variable.
pub fn beside_binary(rel: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.join(rel))
}

pub fn locate(model: Model, explicit: Option<&Path>) -> Result<PathBuf> {
    let dirs = search_path(explicit);
    dirs.iter()
        .map(|d| d.join(model.file_name()))
        .find(|p| p.is_file())
        .ok_or_else(|| VisionError::ModelMissing {
            name: model.file_name().to_string(),
            looked: dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Reads a model and checks its SHA-256.
pub fn load_verified(model: Model, path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let found = hex(&Sha256::digest(&bytes));
    if found != model.sha256() {
        return Err(VisionError::ModelChecksum {
            path: path.to_path_buf(),
            found,
            expected: model.sha256().to_string(),
        });
    }
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_models_match_their_checksums() {
        for m in Model::ALL {
            let p = locate(m, None).unwrap();
            load_verified(m, &p).unwrap();
        }
    }

    #[test]
    fn a_corrupt_model_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("centerface.onnx");
        let mut bytes = std::fs::read(locate(Model::CenterFace, None).unwrap()).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&p, &bytes).unwrap();
        let e = load_verified(Model::CenterFace, &p).unwrap_err().to_string();
        assert!(e.contains("centerface.onnx") && e.contains("corrupt"), "{e}");
    }
}
