//! A watched folder as a source: `<watch_dir>/<camera>/<file>`. A file is taken once it has not
//! changed for one interval (a writer may still be copying it), checked like an MQTT payload,
//! spooled and journalled, and only then removed from the folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{check_camera, check_payload, refuse, spool_batch, Item, Kind, Reject};
use crate::runtime::Runtime;

/// Polls `dir` every `ingest.watch_interval` until `stop`.
pub async fn run(rt: Arc<Runtime>, dir: PathBuf, mut stop: tokio::sync::watch::Receiver<bool>) {
    // (size, mtime) seen at the last look: a file is taken when it is unchanged since.
    let mut last: BTreeMap<PathBuf, (u64, std::time::SystemTime)> = BTreeMap::new();
    loop {
        let rt2 = rt.clone();
        let d = dir.clone();
        let prev = std::mem::take(&mut last);
        last =
            tokio::task::spawn_blocking(move || crate::journal::boundary::blocking(|| scan(&rt2, &d, prev)))
                .await
                .unwrap_or_default();
        tokio::select! {
            _ = crate::runtime::stopped(&mut stop) => return,
            _ = tokio::time::sleep(rt.cfg.ingest.watch_interval) => {}
        }
    }
}

fn scan(
    rt: &Runtime,
    dir: &Path,
    prev: BTreeMap<PathBuf, (u64, std::time::SystemTime)>,
) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    let mut now = BTreeMap::new();
    let mut ready = Vec::new();
    let Ok(cams) = std::fs::read_dir(dir) else {
        return now;
    };
    for cam in cams.flatten() {
        if !cam.path().is_dir() {
            continue;
        }
        let camera = cam.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(cam.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            let Ok(meta) = f.metadata() else { continue };
            if !meta.is_file() || f.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let stamp = (meta.len(), meta.modified().unwrap_or(std::time::UNIX_EPOCH));
            if prev.get(&p) == Some(&stamp) {
                ready.push((camera.clone(), p));
            } else {
                now.insert(p, stamp);
            }
        }
    }
    let max_clip = rt.cfg.mqtt.as_ref().map_or(64 << 20, |m| m.max_clip_bytes);
    let mut items = Vec::new();
    let mut taken = Vec::new();
    for (camera, p) in ready {
        let what = p.display().to_string();
        let kind = if p
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        {
            Kind::Frame
        } else {
            Kind::Clip
        };
        let checked = check_camera(&camera).and_then(|_| {
            let bytes = std::fs::read(&p).map_err(|_| Reject::Empty)?;
            check_payload(kind, &bytes, max_clip).map(|ext| (ext, bytes))
        });
        match checked {
            Ok((ext, payload)) => {
                items.push(Item {
                    source: "dir",
                    camera,
                    topic: what,
                    ext,
                    payload: payload.into(),
                });
                taken.push(p);
            }
            Err(why) => {
                // Moved aside, so it is reported once and not read again.
                refuse(rt, "dir", &what, &why);
                let aside = p.with_file_name(format!(
                    ".rejected-{}",
                    p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                ));
                let _ = std::fs::rename(&p, aside);
            }
        }
    }
    if items.is_empty() {
        return now;
    }
    match spool_batch(rt, &items) {
        Ok(_) => {
            for p in taken {
                let _ = std::fs::remove_file(p);
            }
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), "ingest: cannot spool (files left in place; retrying): {e}")
        }
    }
    now
}
