//! Receipts for the frames an invocation writes (`receipts.rs`): where its input came from (the
//! raw camera item and when it arrived, or the receipt of the anonymised frame it was given), and
//! the stamping of each output JPEG that carries the anonymiser's report. What a receipt states
//! comes from that report; the node vouches for the output's bytes, the raw item they came from,
//! and the service and image that wrote them.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use fogd_vision_proto::receipt::{Receipt, VERSION};
use fogd_vision_proto::ReportPrivacy;
use sha2::{Digest, Sha256};

use super::outputs::OutputFile;
use crate::runtime::Runtime;

use crate::receipts::MAX_SIGNED_BYTES;

/// What an invocation's receipts say of its origin.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub camera: Option<String>,
    pub raw_sha256: Option<String>,
    pub captured: Option<String>,
}

/// The file's bytes if it is a JPEG small enough to carry a receipt (a large input is never read
/// whole for it).
fn small_jpeg(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_SIGNED_BYTES {
        return None;
    }
    let mut head = [0u8; 3];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .ok()?;
    if head != [0xFF, 0xD8, 0xFF] {
        return None;
    }
    crate::paths::read_no_follow(path, MAX_SIGNED_BYTES).ok()
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hex::encode(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

impl Origin {
    /// The origin of an invocation on `key` (its input file at `input`): a raw camera item is
    /// hashed; an anonymised frame with a receipt of this node passes its origin on. Blocking.
    pub fn of(
        rt: &Runtime,
        camera: Option<String>,
        raw: bool,
        event_time: &str,
        input: Option<&Path>,
    ) -> Origin {
        let mut o = Origin {
            camera,
            ..Default::default()
        };
        let Some(input) = input else { return o };
        if raw {
            o.raw_sha256 = sha256_file(input).ok();
            o.captured = Some(event_time.to_string());
        } else if let Some(bytes) = small_jpeg(input) {
            if let Ok(r) = crate::receipts::check_jpeg(&bytes, &rt.receipts.public()) {
                o.raw_sha256 = r.raw_sha256;
                o.captured = r.captured;
                o.camera = o.camera.or(r.camera);
            }
        }
        o
    }
}

/// Stamps a receipt into each output JPEG that carries the anonymiser's report (the file is
/// replaced, its size updated). A file that cannot be read or written is left as it is: without
/// a receipt the outbox will not send it. Blocking.
pub fn stamp(rt: &Runtime, svc: &crate::fdl::Service, origin: &Origin, files: &mut [OutputFile]) -> usize {
    let mut stamped = 0;
    for f in files.iter_mut().filter(|f| f.size <= MAX_SIGNED_BYTES) {
        let lower = f.rel.to_ascii_lowercase();
        if !(lower.ends_with(".jpg") || lower.ends_with(".jpeg")) {
            continue;
        }
        let Ok(bytes) = crate::paths::read_no_follow(&f.path, MAX_SIGNED_BYTES) else {
            continue;
        };
        let Some(report) = ReportPrivacy::of_jpeg(&bytes) else {
            continue;
        };
        let receipt = Receipt {
            v: VERSION,
            node: rt.node.clone(),
            key_id: String::new(),
            output_sha256: String::new(),
            raw_sha256: origin.raw_sha256.clone(),
            camera: origin.camera.clone(),
            captured: origin.captured.clone(),
            frame_s: report.timestamp_s,
            service: svc.name.clone(),
            image: svc.image.clone(),
            status: report.status,
            detector: report.detector,
            models: report.models,
            thresholds: report.thresholds,
            faces: report.faces.iter().map(|f| f.bbox).collect(),
            plates: Vec::new(),
            zones: report.zones,
            fogd_version: env!("CARGO_PKG_VERSION").to_string(),
            signed_ms: crate::journal::now_ms(),
        };
        let Some((with, _)) = rt.receipts.stamp(&bytes, receipt) else {
            continue;
        };
        let Some(dir) = f.path.parent() else { continue };
        let tmp = dir.join(format!(".fogd-receipt-{}", uuid::Uuid::new_v4()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut t| std::io::Write::write_all(&mut t, &with))
            .and_then(|()| std::fs::rename(&tmp, &f.path));
        match written {
            Ok(()) => {
                f.size = with.len() as u64;
                stamped += 1;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!(file = %f.path.display(), "no receipt stamped: {e}");
            }
        }
    }
    stamped
}
