//! Receipts for the frames an invocation writes (`receipts.rs`): where its input came from (the
//! raw camera item and when it arrived, or the receipt of the anonymised frame it was given), and
//! the stamping of each output JPEG the vision worker wrote from that input, from the worker's
//! ledger entry (never from what the file says of itself); the live audits those entries carry.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use fogd_vision_proto::jpeg_note::{strip_tagged, RECEIPT};
use fogd_vision_proto::ledger;
use fogd_vision_proto::receipt::{Receipt, VERSION};
use fogd_vision_proto::ReportPrivacy;
use sha2::{Digest, Sha256};

use super::outputs::OutputFile;
use crate::receipts::MAX_SIGNED_BYTES;
use crate::runtime::Runtime;

/// What an invocation's receipts say of its origin.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub camera: Option<String>,
    pub raw_sha256: Option<String>,
    pub captured: Option<String>,
    /// The input as the vision worker's ledger names it: a frame is signed only if the worker
    /// made it from this.
    pub input_sha256: Option<String>,
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
        o.input_sha256 = ledger::input_sha256(input).ok();
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

/// Stamps a receipt into each output JPEG the vision worker wrote, from the worker's ledger
/// entry for exactly its bytes (not from anything in the file, which the script could have
/// made or edited), when the zones it blacked out are the camera's. The stamped copy is written
/// to the node's own folder and stored from there (`OutputFile::stamped`): the script's folder
/// may still change under a process it left behind. A frame with no entry, other zones, or that
/// cannot be read gets no receipt, and the outbox will not send it. The live audits the entries
/// carry, by file. Blocking.
pub fn stamp(
    rt: &Runtime,
    svc: &crate::fdl::Service,
    origin: &Origin,
    files: &mut [OutputFile],
) -> Vec<(String, fogd_vision_proto::receipt::Audit)> {
    let mut audits = Vec::new();
    let ledger = rt.data.vision_ledger();
    let zones = match origin.camera.as_deref().map(|c| rt.zones(c)).transpose() {
        Ok(z) => z.flatten().map(|z| z.zones),
        Err(e) => {
            tracing::warn!("privacy zones unreadable, no receipts: {e}");
            return audits;
        }
    };
    let plates = rt.cfg.sees_vehicles(origin.camera.as_deref());
    for f in files.iter_mut().filter(|f| f.size <= MAX_SIGNED_BYTES) {
        let lower = f.rel.to_ascii_lowercase();
        if !(lower.ends_with(".jpg") || lower.ends_with(".jpeg")) {
            continue;
        }
        let Some(bytes) = small_jpeg(&f.path) else {
            continue;
        };
        let Some(bare) = strip_tagged(&bytes, RECEIPT) else {
            continue;
        };
        let Some(entry) = ledger::find(&ledger, &bare) else {
            continue;
        };
        if origin.input_sha256.as_deref() != Some(entry.input_sha256.as_str()) {
            tracing::warn!(
                output = %f.rel,
                "no receipt: the frame was not made from this invocation's input (a copy, or another file)"
            );
            continue;
        }
        if zones.as_ref().is_some_and(|z| *z != entry.zones) {
            tracing::warn!(
                output = %f.rel,
                camera = origin.camera.as_deref().unwrap_or("-"),
                "no receipt: the frame's zones are not its camera's (changed since, or left out by the script)"
            );
            continue;
        }
        let Ok(report) = serde_json::from_str::<ReportPrivacy>(&entry.report) else {
            continue;
        };
        let loose = fogd_vision_proto::receipt::policy::problem(
            &report.detector,
            report.thresholds.as_ref(),
            &report.models,
            plates,
        );
        if let Some(why) = loose {
            tracing::warn!(output = %f.rel, "no receipt: the frame was anonymised below the node's policy: {why}");
            continue;
        }
        audits.extend(report.audit.clone().map(|a| (f.rel.clone(), a)));
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
            plates: report.plates.iter().map(|p| p.bbox).collect(),
            zones: report.zones,
            audit: report.audit,
            fogd_version: env!("CARGO_PKG_VERSION").to_string(),
            signed_ms: crate::journal::now_ms(),
        };
        let Some((with, _)) = rt.receipts.stamp(&bare, receipt) else {
            continue;
        };
        let dir = rt.data.stamped();
        let copy = dir.join(format!("{}.jpg", uuid::Uuid::new_v4()));
        let written = crate::paths::make_private_dir(&dir).and_then(|()| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&copy)
                .and_then(|mut t| std::io::Write::write_all(&mut t, &with))
        });
        match written {
            Ok(()) => {
                f.path = copy;
                f.size = with.len() as u64;
                f.stamped = true;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&copy);
                tracing::warn!(file = %f.rel, "no receipt stamped: {e}");
            }
        }
    }
    audits
}

/// Counts the live audits (they outlive restarts: `fogd_privacy_*` metrics) and says loudly when
/// one found a face after redaction. Blocking.
pub fn record_audits(
    rt: &Runtime,
    camera: Option<&str>,
    audits: &[(String, fogd_vision_proto::receipt::Audit)],
) {
    for (rel, a) in audits {
        let left = a.faces_left as u64;
        let counted = rt
            .journal
            .count("privacy_audited_frames", 1)
            .and_then(|()| rt.journal.count("privacy_faces_left", left));
        if let Err(e) = counted {
            tracing::warn!("privacy audit of {rel} not counted: {e}");
        }
        if left > 0 {
            tracing::warn!(
                output = %rel,
                camera = camera.unwrap_or("-"),
                faces = left,
                detector = %a.detector,
                "privacy audit: faces found in an anonymised frame after redaction"
            );
            rt.event(
                "privacy_audit",
                serde_json::json!({"output": rel, "camera": camera, "faces_left": left, "detector": a.detector}),
            );
        }
    }
}
