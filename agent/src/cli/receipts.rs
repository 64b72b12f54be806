//! `fogd key` and `fogd verify`: the node's receipt key, and the check of anonymised frames'
//! receipts that an auditor, the next tier or a data-protection officer runs.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::receipts::{self, NodeKey};

pub fn key(cfg: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let k = NodeKey::load(&cfg.data_dir)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"public_key": k.public_b64(), "key_id": k.key_id(), "algorithm": "ed25519"})
        );
    } else {
        println!("{}", k.public_b64());
        eprintln!(
            "ed25519 public key {} of this node ({}); give it to `fogd verify --key`",
            k.key_id(),
            NodeKey::path(&cfg.data_dir).display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(cfg: &Config, files: &[PathBuf], key: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let public = match key {
        // A key, or a file holding one (what `fogd key > node.pub` wrote).
        Some(k) => match std::fs::read_to_string(k) {
            Ok(text) if std::path::Path::new(k).is_file() => receipts::parse_public(&text)?,
            _ => receipts::parse_public(k)?,
        },
        None => NodeKey::load(&cfg.data_dir)?.public(),
    };
    let mut failed = 0;
    let mut out = Vec::new();
    for f in files {
        let checked = crate::paths::read_no_follow(f, receipts::MAX_SIGNED_BYTES)
            .map_err(|e| e.to_string())
            .and_then(|b| receipts::check_jpeg(&b, &public).map_err(|e| e.to_string()));
        match checked {
            Ok(r) => {
                if !json {
                    println!(
                        "ok    {}: node {}, camera {}, {} face(s), {} plate(s), {} zone(s), {}, raw {}",
                        f.display(),
                        r.node,
                        r.camera.as_deref().unwrap_or("-"),
                        r.faces.len(),
                        r.plates.len(),
                        r.zones,
                        r.status,
                        r.raw_sha256
                            .as_deref()
                            .map_or("unknown".into(), |s| s.chars().take(16).collect::<String>()),
                    );
                }
                out.push(serde_json::json!({"file": f, "ok": true, "receipt": r}));
            }
            Err(e) => {
                failed += 1;
                if !json {
                    println!("FAIL  {}: {e}", f.display());
                }
                out.push(serde_json::json!({"file": f, "ok": false, "error": e}));
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!(
            "{} of {} verified with key {}",
            files.len() - failed,
            files.len(),
            receipts::key_id(&public)
        );
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_NO)
    })
}
