//! Camera items in: MQTT topics (`mqtt`), a watched folder (`dir`), camera streams (`stream`). Each item is checked, written
//! to the raw area of the local store (`<ingest.path>/<camera>/<name>`), made durable, and
//! journalled with the invocations it triggers, in batches, before the source is told it is
//! taken (the MQTT acknowledgement). Items that fail a check are counted and skipped.

mod checks;
pub mod dir;
pub mod homeassistant;
pub mod mqtt;
pub mod raw;
pub mod s3watch;
pub mod status;
pub mod stream;

use std::collections::BTreeSet;
use std::sync::Arc;

pub use crate::config::TopicPattern;
use crate::fdl::{ProviderKind, ProviderRef};
use crate::journal::Spooled;
use crate::runtime::{Result, Runtime};
use crate::store::{content_hash, sync_filesystem};
use checks::Cameras;
pub use checks::{check_camera, check_payload, Reject, MAX_FRAME_PIXELS};

/// What a topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frame,
    Clip,
}

/// One item from a source, checked already.
pub struct Item {
    pub source: &'static str,
    pub camera: String,
    pub topic: String,
    pub ext: &'static str,
    /// Shared, not copied: an MQTT payload is held once, however many batches look at it.
    pub payload: bytes::Bytes,
}

/// What a batch came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchReport {
    pub spooled: usize,
    pub duplicates: usize,
    /// New cameras over `ingest.max_cameras` (counted and logged, not stored).
    pub refused: usize,
    pub invocations: usize,
}

/// Writes a batch to the raw area, makes it durable with one filesystem sync, and journals it
/// (items, events, invocations) in one transaction. Only then may the sources be acknowledged.
/// A payload already ingested from the same camera (a redelivery) is a duplicate, not stored again.
pub fn spool_batch(rt: &Runtime, items: &[Item]) -> Result<BatchReport> {
    rt.check_disk()?;
    let t0 = std::time::Instant::now();
    let mut report = BatchReport::default();
    let root = rt.data.store();
    let base = rt.cfg.ingest.raw_prefix();
    let mut seen = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    let mut spooled = Vec::with_capacity(items.len());
    let mut cameras = Cameras::default();
    for it in items {
        if !cameras.admit(rt, &it.camera)? {
            refuse(
                rt,
                it.source,
                &it.camera,
                &Reject::TooManyCameras {
                    max: rt.cfg.ingest.max_cameras,
                },
            );
            report.refused += 1;
            continue;
        }
        let checksum = content_hash(&it.payload);
        if !seen.insert((it.camera.clone(), checksum.clone()))
            || rt.journal.ingest_known(&it.camera, &checksum)?
        {
            report.duplicates += 1;
            continue;
        }
        let dir_key = format!("{base}{}", it.camera);
        let dir = root.join(&dir_key);
        if dirs.insert(dir.clone()) {
            std::fs::create_dir_all(&dir).map_err(|e| crate::store::StoreError::io(&dir, e))?;
        }
        let (key, path) = raw::write_new(&root, &dir_key, it.ext, &it.payload, raw::item_name)
            .map_err(|e| crate::store::StoreError::io(&dir, e))?;
        spooled.push(Spooled {
            source: it.source.to_string(),
            camera: it.camera.clone(),
            topic: it.topic.clone(),
            key,
            path: path.display().to_string(),
            size: it.payload.len() as u64,
            checksum,
        });
    }
    if spooled.is_empty() {
        if report.duplicates > 0 {
            rt.journal.count("ingest_duplicates", report.duplicates as u64)?;
        }
        return Ok(report);
    }
    let t_write = t0.elapsed();
    sync_filesystem(&root)?;
    let t_sync = t0.elapsed();
    let wf = rt.workflow();
    let provider = ProviderRef::new(ProviderKind::Minio, "default");
    let services: Vec<Vec<String>> = spooled
        .iter()
        .map(|s| {
            crate::router::route(&wf.services, &provider, &s.key)
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    let event_time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let results = rt.journal.ingest_batch(&spooled, &event_time, &services)?;
    for (s, r) in spooled.iter().zip(&results) {
        match r {
            Some(ids) => {
                report.spooled += 1;
                report.invocations += ids.len();
            }
            None => {
                report.duplicates += 1;
                let _ = std::fs::remove_file(&s.path);
            }
        }
    }
    if report.duplicates > 0 {
        rt.journal.count("ingest_duplicates", report.duplicates as u64)?;
    }
    if report.invocations > 0 {
        rt.wake.notify_one();
    }
    tracing::debug!(
        items = items.len(),
        write_ms = t_write.as_secs_f64() * 1e3,
        sync_ms = (t_sync - t_write).as_secs_f64() * 1e3,
        journal_ms = (t0.elapsed() - t_sync).as_secs_f64() * 1e3,
        "ingest batch"
    );
    Ok(report)
}

/// Counts and logs a refused item.
pub fn refuse(rt: &Runtime, source: &str, what: &str, why: &Reject) {
    tracing::warn!(source, item = %what, "ingest: refused: {why}");
    if let Err(e) = rt.journal.count(why.counter(), 1) {
        tracing::error!("{e}");
    }
}

/// Starts every source the config and the workflows name (the MQTT broker, each stream, the
/// watched folder, each S3 input folder), each a task that runs until `stop` and logs its own
/// errors. `members` is what the status topic reports of the delegation members.
pub fn start_sources(
    rt: &Arc<Runtime>,
    members: status::Members,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = s3watch::spawn_watchers(rt, stop);
    if rt.cfg.mqtt.is_some() {
        let (rt, stop) = (rt.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = mqtt::run(rt, members, stop).await {
                tracing::error!("{e}");
            }
        }));
    }
    for src in rt.cfg.ingest.streams.clone() {
        tasks.push(tokio::spawn(stream::run(rt.clone(), src, stop.clone())));
    }
    if let Some(dir) = rt.cfg.ingest.watch_dir.clone() {
        tasks.push(tokio::spawn(dir::run(rt.clone(), dir, stop.clone())));
    }
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_headers_are_read_before_anything_decodes_them() {
        let photo = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/camera-ingest/media/grace_hopper.jpg"),
        )
        .expect("photo");
        assert_eq!(check_payload(Kind::Frame, &photo, 1 << 24), Ok("jpg"));
        // 300 bytes that declare 30000x30000 (finding 3: 2.7 GB once decoded).
        let mut bomb = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
        bomb.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        bomb.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x75, 0x30, 0x75, 0x30, 3]);
        bomb.extend_from_slice(&[1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        bomb.resize(298, 0);
        bomb.extend_from_slice(&[0xFF, 0xD9]);
        assert!(matches!(
            check_payload(Kind::Frame, &bomb, 1 << 24),
            Err(Reject::TooManyPixels {
                width: 30000,
                height: 30000,
                ..
            })
        ));
        // Cut off half-way: no end marker.
        let cut = &photo[..photo.len() / 2];
        assert_eq!(check_payload(Kind::Frame, cut, 1 << 24), Err(Reject::Truncated));
        assert_eq!(
            check_payload(Kind::Frame, &[0xFF, 0xD8, 0xFF, 0xE0], 1 << 24),
            Err(Reject::NotJpeg)
        );
    }

    #[test]
    fn topics_and_cameras() {
        let t = TopicPattern::parse("fogd/cameras/{camera}/frame").expect("parse");
        assert_eq!(t.filter(), "fogd/cameras/#");
        assert_eq!(t.camera("fogd/cameras/door/frame"), Some("door"));
        assert_eq!(t.camera("fogd/cameras/a/b/frame"), Some("a/b"));
        assert_eq!(t.camera("fogd/cameras/door/clip"), None);
        assert!(TopicPattern::parse("fogd/+/frame").is_err());
        assert!(TopicPattern::parse("fogd/cam{camera}/x").is_err());
        assert!(check_camera("door-1").is_ok());
        for bad in ["", "..", "a/b", ".hidden", "a b", "x\n"] {
            assert!(check_camera(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn payloads() {
        assert_eq!(check_payload(Kind::Frame, b"", 10), Err(Reject::Empty));
        assert_eq!(check_payload(Kind::Frame, b"GIF89a", 10), Err(Reject::NotJpeg));
        assert!(matches!(
            check_payload(Kind::Frame, &[0xFF; 11], 10),
            Err(Reject::TooLarge { .. })
        ));
        assert_eq!(
            check_payload(Kind::Clip, b"\0\0\0\x20ftypisom\0\0", 100),
            Ok("mp4")
        );
        assert_eq!(
            check_payload(Kind::Clip, b"hello, I am a text file", 100),
            Err(Reject::NotVideo)
        );
    }
}
