//! `fogd bench receipts`: what a signed receipt costs per frame, at camera frame sizes: the raw
//! item's SHA-256 (each invocation on a camera item), the stamp (strip, SHA-256, Ed25519 sign,
//! embed) and the check the outbox and `fogd verify` make (SHA-256 and verify).

use std::process::ExitCode;
use std::time::Instant;

use fogd::receipts::{self, NodeKey, Receipt, VERSION};

#[derive(Debug, clap::Args)]
pub struct BenchReceiptsArgs {
    /// Frames per size.
    #[arg(long, default_value_t = 200)]
    frames: usize,
}

fn receipt() -> Receipt {
    Receipt {
        v: VERSION,
        node: "bench".into(),
        key_id: String::new(),
        output_sha256: String::new(),
        raw_sha256: Some("0".repeat(64)),
        camera: Some("door".into()),
        captured: Some("2026-12-07T12:00:00Z".into()),
        frame_s: Some(5.0),
        service: "anon-and-split".into(),
        image: Some("fogd/builtin:anonymize".into()),
        status: "ok".into(),
        detector: "centerface".into(),
        models: Vec::new(),
        thresholds: None,
        // Ten faces: a group scene.
        faces: vec![[100.0, 200.0, 140.0, 250.0]; 10],
        plates: Vec::new(),
        zones: 1,
        audit: None,
        fogd_version: env!("CARGO_PKG_VERSION").into(),
        signed_ms: 0,
    }
}

pub async fn bench(a: BenchReceiptsArgs) -> anyhow::Result<ExitCode> {
    let dir = tempfile::tempdir()?;
    let key = NodeKey::load_or_create(dir.path())?;
    let public = key.public();
    let photo = std::fs::read(fogd_testkit::repo().join("examples/camera-ingest/media/grace_hopper.jpg"))?;
    let n = a.frames.max(1);
    println!("receipts, {n} frames a size (µs per frame, medians)");
    println!(
        "{:>10}  {:>10}  {:>10}  {:>10}",
        "frame", "raw hash", "stamp", "check"
    );
    for size in [100 << 10, 500 << 10, 2 << 20] {
        let frame = fogd_testkit::padded_jpeg(&photo, size);
        let time = |f: &mut dyn FnMut()| {
            let mut t: Vec<f64> = (0..n)
                .map(|_| {
                    let s = Instant::now();
                    f();
                    s.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let hash = time(&mut || {
            std::hint::black_box(receipts::sha256_hex(&frame));
        });
        let mut stamped = Vec::new();
        let stamp = time(&mut || {
            stamped = key.stamp(&frame, receipt()).map(|(b, _)| b).unwrap_or_default();
        });
        let check = time(&mut || {
            std::hint::black_box(receipts::check_jpeg(&stamped, &public).is_ok());
        });
        anyhow::ensure!(
            receipts::check_jpeg(&stamped, &public).is_ok(),
            "a stamped frame did not verify"
        );
        println!("{:>7} KB  {hash:>10.0}  {stamp:>10.0}  {check:>10.0}", size >> 10);
    }
    Ok(ExitCode::SUCCESS)
}
