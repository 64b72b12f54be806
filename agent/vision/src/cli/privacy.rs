//! What the anonymiser takes from the node for privacy: the camera's zones and the live audit's
//! rate, from the command line or from the variables fogd sets for an invocation.

use std::path::Path;

use super::commands::AnonymizeArgs;
use crate::anonymize::FrameReport;
use crate::zones::{CameraZones, Zone, ENV_ZONES};
use fogd_vision_proto::jpeg_note::{strip_tagged, RECEIPT};
use fogd_vision_proto::ledger;
use fogd_vision_proto::receipt::{ENV_AUDIT_EVERY, ENV_PLATES};

/// The variables of the caller's environment a command reads (`worker::FORWARDED_ENV`): the
/// process's own, or those a request to the worker carried.
pub type Env = std::collections::BTreeMap<String, String>;

/// The zones to black out: `--zones`, else FOGD_PRIVACY_ZONES; checked, and checked against the
/// object being anonymised (STORAGE_OBJECT_KEY). Err stops the command before anything is written.
pub(super) fn zones_of(a: &AnonymizeArgs, env: &Env) -> anyhow::Result<Vec<Zone>> {
    let text = match &a.zones {
        Some(z) if z.trim_start().starts_with('{') => z.clone(),
        Some(file) => {
            let mut text = String::new();
            std::fs::File::open(file)
                .and_then(|f| std::io::Read::read_to_string(&mut std::io::Read::take(f, 1 << 20), &mut text))
                .map_err(|e| anyhow::anyhow!("--zones {file}: {e}"))?;
            text
        }
        None => match env.get(ENV_ZONES) {
            Some(t) => t.clone(),
            None => return Ok(Vec::new()),
        },
    };
    let from = if a.zones.is_some() { "--zones" } else { ENV_ZONES };
    let cz = CameraZones::parse(&text).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
    if let Some(key) = env.get("STORAGE_OBJECT_KEY") {
        cz.check_key(key)?;
    }
    Ok(cz.zones)
}

/// One frame in how many is audited: `--audit-every`, else FOGD_PRIVACY_AUDIT_EVERY, else 0 (off).
pub(super) fn audit_every(a: &AnonymizeArgs, env: &Env) -> anyhow::Result<u64> {
    match (a.audit_every, env.get(ENV_AUDIT_EVERY)) {
        (Some(n), _) => Ok(n),
        (None, Some(v)) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{ENV_AUDIT_EVERY}=`{v}`: not a number of frames")),
        (None, None) => Ok(0),
    }
}

/// Whether plates are redacted, and at which threshold: `--plates`, or FOGD_PRIVACY_PLATES=1.
pub(super) fn plates(a: &AnonymizeArgs, env: &Env) -> anyhow::Result<Option<Option<f32>>> {
    let on = a.plates
        || match env.get(ENV_PLATES).map(|v| v.trim()) {
            None | Some("" | "0") => false,
            Some("1") => true,
            Some(v) => anyhow::bail!("{ENV_PLATES}=`{v}`: must be 1 or 0"),
        };
    if a.plate_thresh.is_some() && !on {
        anyhow::bail!("--plate-thresh: give --plates too");
    }
    Ok(on.then_some(a.plate_thresh))
}

/// A picture the worker wrote, as the ledger names it, and the zones it was made with.
pub(super) type Vouched = (String, Vec<Zone>);

/// The report `detect-masks`' annotated copy of `picture` carries, and the zones to record the
/// copy with: from the worker's own ledger entry when the worker wrote the picture (never a
/// report or sidecar a script could have edited), else the report given, which no receipt will
/// vouch for. The live audit stays with the frame it was made on.
pub(super) fn carried_report(
    ledger_dir: Option<&Path>,
    picture: Option<&[u8]>,
    given: Option<&FrameReport>,
) -> (Option<Vec<u8>>, Option<Vouched>) {
    let Some(given) = given else { return (None, None) };
    let bare = picture.and_then(|b| strip_tagged(b, RECEIPT));
    let entry = ledger_dir
        .zip(bare.as_deref())
        .and_then(|(dir, bare)| ledger::find(dir, bare).map(|e| (ledger::sha256_hex(bare), e)));
    let report = match &entry {
        Some((_, e)) => serde_json::from_str::<FrameReport>(&e.report).ok(),
        None => Some(given.clone()),
    };
    let note = report.and_then(|r| {
        serde_json::to_vec(&FrameReport {
            timings_ms: None,
            audit: None,
            ..r
        })
        .ok()
    });
    // The copy is made from the picture: that is its input.
    (note, entry.map(|(picture, e)| (picture, e.zones)))
}

/// Records an annotated copy in the ledger when its picture was the worker's own.
pub(super) fn record(
    ledger_dir: Option<&Path>,
    written: &[u8],
    note: Option<&[u8]>,
    vouched: Option<Vouched>,
) {
    if let (Some(dir), Some(note), Some((input_sha256, zones))) = (ledger_dir, note, vouched) {
        let entry = ledger::Entry {
            input_sha256,
            report: String::from_utf8_lossy(note).into_owned(),
            zones,
        };
        if let Err(e) = crate::ledger::record(dir, written, &entry) {
            tracing::warn!("an annotated frame is not in the ledger (no receipt): {e}");
        }
    }
}

/// Records a verdict the worker judged itself in the ledger, under the input it was judged from:
/// the node counts a camera's verdicts only from these (a script can write any `*.masks.json`).
pub(super) fn record_verdict(ledger_dir: Option<&Path>, written: &[u8], input_sha256: Option<String>) {
    if let (Some(dir), Some(input_sha256)) = (ledger_dir, input_sha256) {
        let entry = ledger::Entry {
            input_sha256,
            report: String::from_utf8_lossy(written).into_owned(),
            zones: Vec::new(),
        };
        if let Err(e) = crate::ledger::record(dir, written, &entry) {
            tracing::warn!("a verdict is not in the ledger (its camera will not count it): {e}");
        }
    }
}

/// Whether a frame's report (as the ledger holds it) was made within the node's policy, plates
/// searched where the invocation's camera sees vehicles: the same test the node's receipts pass.
pub(super) fn within_policy(report: Option<&[u8]>, env: &Env) -> bool {
    let Some(r) = report.and_then(|b| serde_json::from_slice::<fogd_vision_proto::ReportPrivacy>(b).ok())
    else {
        return false;
    };
    let plates = env.get(ENV_PLATES).is_some_and(|v| v.trim() == "1");
    fogd_vision_proto::receipt::policy::problem(&r.detector, r.thresholds.as_ref(), &r.models, plates)
        .is_none()
}
