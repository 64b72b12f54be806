//! How files enter the outbox: copied (or hard-linked) into its spool and made durable, then
//! journalled for a remote provider. Never a raw camera item.

use std::path::{Path, PathBuf};

use crate::journal::{Enqueued, JournalError, OutboxItem};
use crate::runtime::{Result, Runtime, RuntimeError};
use crate::store::file_digests;

/// Pictures a format of which starts so (JPEG, PNG, GIF, WebP's RIFF, TIFF both ways, BMP).
const IMAGE_MAGIC: &[&[u8]] = &[
    &[0xFF, 0xD8, 0xFF],
    b"\x89PNG",
    b"GIF8",
    b"RIFF",
    b"II*\0",
    b"MM\0*",
    b"BM",
];

/// A picture from a camera's chain leaves only with a valid receipt of this node: the raw-frame
/// rule made checkable. A workflow that copies or re-encodes raw frames is stopped here, and so is
/// a frame changed after fogd anonymised it.
fn check_receipt(
    rt: &Runtime,
    provider: &str,
    key: &str,
    file: &Path,
    invocation: crate::journal::InvocationId,
) -> Result<()> {
    use std::io::Read;
    let io = |e| RuntimeError::Io {
        path: file.to_path_buf(),
        source: e,
    };
    let mut head = [0u8; 4];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .map_err(io)?;
    if !IMAGE_MAGIC.iter().any(|m| head[..n].starts_with(m)) {
        return Ok(());
    }
    let Some(camera) = rt.journal.camera_of(invocation)? else {
        return Ok(());
    };
    let refused = |reason| RuntimeError::Unsigned {
        provider: provider.to_string(),
        key: key.to_string(),
        camera: camera.clone(),
        reason: Box::new(reason),
    };
    let bytes = crate::paths::read_no_follow(file, crate::receipts::MAX_SIGNED_BYTES).map_err(|e| {
        refused(crate::receipts::ReceiptError::Malformed(format!(
            "unreadable: {e}"
        )))
    })?;
    crate::receipts::check_jpeg(&bytes, &rt.receipts.public()).map_err(refused)?;
    Ok(())
}

/// Queues `file` (already under `data/outbox/`) for `provider`/`key`, as an output of
/// `invocation` when it is one. Refuses a file under the raw area, or with a raw item's exact
/// content.
pub fn enqueue(
    rt: &Runtime,
    provider: &str,
    key: &str,
    file: &Path,
    invocation: Option<crate::journal::InvocationId>,
) -> Result<Enqueued> {
    let raw_area = crate::ingest::raw::area(rt);
    if file.starts_with(&raw_area) {
        return Err(RuntimeError::Journal(JournalError::RawContent {
            provider: provider.to_string(),
            key: key.to_string(),
            raw: file.display().to_string(),
            camera: "?".into(),
        }));
    }
    let (size, checksum, md5) = file_digests(file)?;
    // A raw item's exact bytes are refused next, by the journal, naming the raw item.
    if let Some(inv) = invocation.filter(|_| !matches!(rt.journal.raw_with_checksum(&checksum), Ok(Some(_))))
    {
        check_receipt(rt, provider, key, file, inv)?;
    }
    let item = OutboxItem {
        provider: provider.to_string(),
        key: key.to_string(),
        local_path: file.display().to_string(),
        size,
        checksum,
        md5,
        priority: rt.cfg.sync.priority_of(key),
        invocation,
    };
    let r = rt
        .journal
        .outbox_enqueue(&item, rt.cfg.sync.quota_bytes, rt.cfg.sync.full_policy)?;
    match &r {
        Enqueued::Queued { id, freed } => {
            // Behind a store known to be down: say so on the new object at once.
            let down = rt
                .links
                .with(provider, |l| (!l.online).then(|| l.last_error.clone()).flatten());
            if let Some(msg) = down {
                let _ = rt.journal.outbox_later(*id, 0, &msg, false);
            }
            for p in freed {
                let _ = std::fs::remove_file(p);
            }
            if !freed.is_empty() {
                tracing::warn!(
                    dropped = freed.len(),
                    quota = rt.cfg.sync.quota_bytes,
                    "outbox full: dropped the oldest objects (full_policy: drop_oldest)"
                );
                rt.event(
                    "upload_dropped",
                    serde_json::json!({"reason": "quota", "objects": freed.len()}),
                );
            }
        }
        Enqueued::AlreadyDone => {
            let _ = std::fs::remove_file(file);
        }
        Enqueued::Rejected => {
            let _ = std::fs::remove_file(file);
            tracing::warn!(%provider, %key, quota = rt.cfg.sync.quota_bytes, "outbox full: object dropped (full_policy: reject_new)");
            rt.event(
                "upload_dropped",
                serde_json::json!({"reason": "quota", "provider": provider, "key": key}),
            );
        }
    }
    rt.outbox_wake.notify_one();
    Ok(r)
}

/// Copies an output into the outbox's spool (a hard link when it can: same filesystem) and
/// makes it durable, so that the journal row never points at a missing file.
pub fn spool(rt: &Runtime, src: &Path, tag: &str) -> Result<PathBuf> {
    let dir = rt.data.outbox();
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RuntimeError::Io { path: p, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let dst = dir.join(format!("{tag}-{}", uuid::Uuid::new_v4()));
    if std::fs::hard_link(src, &dst).is_err() {
        std::fs::copy(src, &dst).map_err(io(&dst))?;
    }
    std::fs::File::open(&dst)
        .and_then(|f| f.sync_all())
        .map_err(io(&dst))?;
    std::fs::File::open(&dir)
        .and_then(|f| f.sync_all())
        .map_err(io(&dir))?;
    Ok(dst)
}
