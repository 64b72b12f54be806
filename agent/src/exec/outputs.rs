//! An invocation's outputs: every regular file under TMP_OUTPUT_DIR, stored at each output path
//! whose prefix and suffix match (the local store at once, which chains the next services;
//! remote stores through the outbox). Stored JSON results with mask counts become events.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::contract;
use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("output `{rel}` is {size} bytes, over max_output_bytes ({max}); nothing of this run was stored")]
    TooLarge { rel: String, size: u64, max: u64 },
    #[error("output `{rel}`: a file name that is not UTF-8 or holds a control character (a newline, a TAB) has no object key of its own; rename it in the script. Nothing of this run was stored")]
    BadName { rel: String },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl From<crate::store::StoreError> for OutputError {
    fn from(e: crate::store::StoreError) -> Self {
        OutputError::Runtime(e.into())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Stores every output file at each matching output path and emits the events that chain the
/// next services. Symbolic links in TMP_OUTPUT_DIR are not stored (noted in the log).
pub async fn store(
    rt: &Arc<Runtime>,
    invocation: crate::journal::InvocationId,
    svc: &crate::fdl::Service,
    origin: &super::provenance::Origin,
    out_dir: &Path,
    log_path: &Path,
) -> Result<u32, OutputError> {
    let (out, max) = (out_dir.to_path_buf(), rt.cfg.max_output_bytes);
    let (rt2, svc2, origin2) = (rt.clone(), svc.clone(), origin.clone());
    // Collected, then each anonymised frame stamped with the node's receipt before it is stored.
    let (files, skipped) = tokio::task::spawn_blocking(move || {
        collect(&out, max).map(|(mut files, skipped)| {
            let audits = super::provenance::stamp(&rt2, &svc2, &origin2, &mut files);
            super::provenance::record_audits(&rt2, origin2.camera.as_deref(), &audits);
            (files, skipped)
        })
    })
    .await
    .map_err(|e| OutputError::Io {
        path: out_dir.to_path_buf(),
        source: std::io::Error::other(e),
    })??;
    // The stamped copies go once stored and observed, whatever ends this.
    let _stamped = RemoveOnDrop(
        files
            .iter()
            .filter(|f| f.stamped)
            .map(|f| f.path.clone())
            .collect(),
    );
    if !skipped.is_empty() {
        let note = format!(
            "\n[fogd] not stored (not regular files): {}\n",
            skipped.join(", ")
        );
        let _ = super::scriptlog::append_note(log_path, &note).await;
    }
    let mut stored = 0u32;
    let mut observed = Vec::new();
    for f in &files {
        let before = stored;
        for (provider, key) in contract::output_targets(&svc.outputs, &f.rel) {
            let store = rt.store(&provider)?;
            if store.is_local() {
                let meta = store.put_file(&key, &f.path).await?;
                rt.emit_from(&provider, &meta, "output", Some(invocation)).await?;
            } else {
                // Remote stores are reached through the outbox: retried, paced, in order.
                crate::store::check_key(&key).map_err(RuntimeError::from)?;
                // Copying into the spool and journalling it fsync: off the async workers.
                let (rt2, src, p, k) = (rt.clone(), f.path.clone(), provider.to_string(), key.clone());
                crate::journal::boundary::offload(move || {
                    let dst = crate::outbox::spool(&rt2, &src, "out")?;
                    crate::outbox::enqueue(&rt2, &p, &k, &dst, Some(invocation)).inspect_err(|_| {
                        let _ = std::fs::remove_file(&dst);
                    })
                })
                .await
                .ok_or_else(|| OutputError::Io {
                    path: f.path.clone(),
                    source: std::io::Error::other("fogd is stopping"),
                })??;
            }
            stored += 1;
        }
        if stored > before {
            observed.push(f.clone());
        }
    }
    if !observed.is_empty() {
        // Only fogd's own anonymiser and mask detector write frames that may be a snapshot.
        let fogd_made = svc
            .image
            .as_deref()
            .and_then(fogd_vision_proto::builtin::Builtin::of_image)
            .is_some();
        let (rt2, input) = (rt.clone(), origin.input_sha256.clone());
        crate::journal::boundary::offload(move || {
            // One lookup of the camera for all the invocation's outputs.
            let camera = rt2.journal.camera_of(invocation).ok().flatten();
            for f in &observed {
                observe(&rt2, camera.as_deref(), input.as_deref(), fogd_made, f);
            }
        })
        .await;
    }
    Ok(stored)
}

struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Largest output fogd reads to learn what the operator's tools show (a verdict, a snapshot).
const OBSERVE_MAX_BYTES: u64 = 8 << 20;

/// What the operator's tools learn from one output file, once (not once per store it went to):
/// a mask detector's verdict becomes the frame's one `mask_result` and counts for `camera`, the
/// one its chain started from; an anonymised frame (`fogd_made`) becomes the camera's snapshot.
/// `input_sha256`: the invocation's input as the vision worker's ledger names it.
fn observe(rt: &Runtime, camera: Option<&str>, input_sha256: Option<&str>, fogd_made: bool, f: &OutputFile) {
    if f.size > OBSERVE_MAX_BYTES {
        return;
    }
    let lower = f.rel.to_ascii_lowercase();
    if lower.ends_with(".json") {
        // Not followed if a process the script left swapped it for a link since it was listed.
        let Ok(bytes) = crate::paths::read_no_follow(&f.path, OBSERVE_MAX_BYTES) else {
            return;
        };
        let Some(mut result) = mask_result(&bytes, &f.rel) else {
            return;
        };
        // Counted only if the vision worker judged it from this invocation's input (its ledger
        // entry for exactly these bytes), and once a frame: never a verdict a script wrote,
        // edited, copied or carried over from another picture, nor a second one of that frame.
        let dir = rt.data.vision_ledger();
        let frame = fogd_vision_proto::ledger::find(&dir, &bytes)
            .map(|e| e.input_sha256)
            .filter(|e| Some(e.as_str()) == input_sha256);
        let Some(frame) = frame else {
            tracing::warn!(
                output = %f.rel,
                "a mask verdict not judged by the node's vision worker from this invocation's input: not counted for its camera"
            );
            return;
        };
        if !fogd_vision_proto::ledger::first_verdict(&dir, &frame) {
            tracing::warn!(output = %f.rel, "the frame's verdict was counted already: not counted again");
            return;
        }
        if let Err(e) = fogd_vision_proto::ledger::forget(&dir, &bytes) {
            tracing::warn!(output = %f.rel, "the verdict's ledger entry stays: {e}");
        }
        result.camera = camera.map(str::to_string);
        if let Err(e) = rt.journal.record_mask_result(&result) {
            tracing::warn!("{e}");
        }
        rt.event("mask_result", serde_json::to_value(&result).unwrap_or_default());
    } else if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
        if let Err(e) = snapshot(rt, camera, fogd_made, f) {
            tracing::debug!(file = %f.path.display(), "no snapshot: {e}");
        }
    }
}

/// A frame's verdict from `fogd detect-masks`' result file; `None` for any other JSON (the
/// anonymiser's sidecars too: the verdict of that frame comes from the detector, once).
pub fn mask_result(bytes: &[u8], key: &str) -> Option<crate::journal::MaskResult> {
    let r = fogd_vision_proto::masks::MaskSummary::parse(bytes)?;
    let c = &r.counts;
    let (masked, unmasked) = (c.mask as u64, c.no_mask as u64);
    Some(crate::journal::MaskResult {
        camera: None,
        key: key.to_string(),
        faces: c.faces as u64,
        masked,
        unmasked,
        // Plates blurred in the frame (0 when its camera's plates are not searched).
        plates: c.plates as u64,
        no_mask_share: crate::journal::share(masked, unmasked),
        verdict: r.verdict().to_string(),
        detection_status: r.detection_status.clone(),
        time_ms: crate::journal::now_ms(),
    })
}

/// Keeps an output JPEG as its camera's snapshot when it can only be an anonymised frame: made by
/// fogd's own anonymiser or mask detector (a `fogd/builtin:` image), from a camera's chain, a
/// real JPEG, and not byte for byte a raw item (the outbox's privacy rule).
fn snapshot(rt: &Runtime, camera: Option<&str>, fogd_made: bool, f: &OutputFile) -> Result<(), String> {
    if !fogd_made {
        return Err("not made by a fogd/builtin image".into());
    }
    let camera = camera.ok_or("not from a camera")?;
    let bytes = crate::paths::read_no_follow(&f.path, OBSERVE_MAX_BYTES).map_err(|e| e.to_string())?;
    if imagesize::image_type(&bytes).ok() != Some(imagesize::ImageType::Jpeg) {
        return Err("not a JPEG".into());
    }
    // Only a frame with this node's receipt (signed from the vision worker's own record, with
    // the camera's zones then): never a picture a script made or edited.
    let r = crate::receipts::check_jpeg(&bytes, &rt.receipts.public()).map_err(|e| e.to_string())?;
    if let Some(z) = rt.zones(camera).map_err(|e| e.to_string())? {
        if r.zones != z.zones.len() {
            return Err(format!(
                "camera `{camera}` has {} privacy zone(s); the frame's receipt says {}",
                z.zones.len(),
                r.zones
            ));
        }
    }
    let sum = crate::store::content_hash(&bytes);
    if rt
        .journal
        .raw_with_checksum(&sum)
        .map_err(|e| e.to_string())?
        .is_some()
    {
        return Err("byte for byte a raw item".into());
    }
    let dst = rt.data.snapshot(camera);
    let dir = dst.parent().ok_or("no folder")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".{camera}.jpg.tmp"));
    crate::paths::write_private(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &dst))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            e.to_string()
        })?;
    rt.journal
        .record_snapshot(camera, &f.rel)
        .map_err(|e| e.to_string())?;
    rt.event(
        "snapshot",
        serde_json::json!({"camera": camera, "bytes": bytes.len()}),
    );
    Ok(())
}

/// An output file: its path relative to TMP_OUTPUT_DIR (`/`-separated) and on disk.
#[derive(Debug, Clone)]
pub struct OutputFile {
    pub rel: String,
    pub path: PathBuf,
    pub size: u64,
    /// `path` is the node's stamped copy (`provenance::stamp`), removed once stored.
    pub stamped: bool,
}

/// Every regular file under `out_dir`. Symbolic links are not followed and not stored (a script
/// could point one outside TMP_OUTPUT_DIR); each is named in `skipped`.
pub fn collect(out_dir: &Path, max_bytes: u64) -> Result<(Vec<OutputFile>, Vec<String>), OutputError> {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut stack = vec![out_dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            let path = entry.path();
            let ft = entry.file_type().map_err(io(&path))?;
            let rel_path = path.strip_prefix(out_dir).unwrap_or(&path);
            // A name that is not UTF-8 or holds a control character (a newline, a TAB) has no
            // object key of its own: mapped lossily, two files would share one key and one
            // output overwrite the other. Refused before anything of the run is stored.
            let rel = match rel_path.to_str() {
                Some(r) if !r.chars().any(char::is_control) => r.to_string(),
                _ if ft.is_symlink() => rel_path.to_string_lossy().escape_debug().to_string(),
                _ => {
                    return Err(OutputError::BadName {
                        rel: rel_path.to_string_lossy().escape_debug().to_string(),
                    })
                }
            };
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let size = entry.metadata().map_err(io(&path))?.len();
                if size > max_bytes {
                    return Err(OutputError::TooLarge {
                        rel,
                        size,
                        max: max_bytes,
                    });
                }
                files.push(OutputFile {
                    rel,
                    path,
                    size,
                    stamped: false,
                });
            } else {
                skipped.push(rel);
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    skipped.sort();
    Ok((files, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_without_a_key_of_their_own_are_refused_naming_them() {
        let dir = tempfile::tempdir().expect("tmp");
        let out = dir.path();
        std::fs::write(out.join("ab.txt"), "1").expect("w");
        std::fs::write(out.join("a\nb.txt"), "2").expect("w");
        let err = collect(out, u64::MAX).expect_err("a newline in a name");
        assert!(err.to_string().contains("`a\\nb.txt`"), "{err}");
        std::fs::remove_file(out.join("a\nb.txt")).expect("rm");
        std::fs::write(out.join("tab\there.txt"), "3").expect("w");
        assert!(matches!(collect(out, u64::MAX), Err(OutputError::BadName { .. })));
        std::fs::remove_file(out.join("tab\there.txt")).expect("rm");
        {
            use std::os::unix::ffi::OsStrExt;
            let name = std::ffi::OsStr::from_bytes(b"latin1-\xe9.txt");
            std::fs::write(out.join(name), "4").expect("w");
            assert!(matches!(collect(out, u64::MAX), Err(OutputError::BadName { .. })));
            std::fs::remove_file(out.join(name)).expect("rm");
        }
        // What is left maps 1:1 (UTF-8 names are fine).
        std::fs::create_dir(out.join("caméra 2")).expect("mkdir");
        std::fs::write(out.join("caméra 2/img1.jpg"), "5").expect("w");
        let (files, skipped) = collect(out, u64::MAX).expect("collect");
        let names: Vec<&str> = files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["ab.txt", "caméra 2/img1.jpg"]);
        assert!(skipped.is_empty());
    }
}
