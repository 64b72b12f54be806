//! Signed receipts for anonymised frames: the node's Ed25519 key (made at the first start, 0600,
//! beside the journal where no script can read it), the token (`<payload>.<signature>`, both
//! base64url, the payload the receipt's JSON), the JPEG it is stamped into, and the checks
//! `fogd verify` and the outbox make. The receipt's fields are `fogd_vision_proto::receipt`'s.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use fogd_vision_proto::jpeg_note::{self, RECEIPT};
pub use fogd_vision_proto::receipt::{Receipt, VERSION};
use sha2::{Digest, Sha256};

/// Pictures up to this size are signed and checked (read whole to hash them); a camera frame,
/// 8K included, is a few MB.
pub const MAX_SIGNED_BYTES: u64 = 16 << 20;

/// A token is a few hundred bytes; one this long is not a receipt.
const MAX_TOKEN: usize = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("{}: {source}", path.display())]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error("{}: not an Ed25519 key (32 bytes in hex)", path.display())]
    BadKeyFile { path: PathBuf },
    #[error("public key `{0}`: not an Ed25519 public key (32 bytes, base64 or hex)")]
    BadPublicKey(String),
    #[error("no fogd receipt (not a frame fogd anonymised, or its receipt was removed)")]
    Missing,
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
    #[error(
        "the receipt's signature does not verify with key {key_id} (signed by key {signer} of node `{node}`)"
    )]
    BadSignature {
        key_id: String,
        signer: String,
        node: String,
    },
    #[error("the picture changed after it was signed: SHA-256 {found}, the receipt says {expected}")]
    Changed { expected: String, found: String },
}

pub type Result<T, E = ReceiptError> = std::result::Result<T, E>;

/// The first 16 hex digits of the public key's SHA-256: how a receipt names its key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The node's signing key.
pub struct NodeKey {
    key: SigningKey,
}

impl NodeKey {
    /// Where the key lives: in the data folder, which scripts never see (isolation).
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("receipt-key")
    }

    /// Reads the node's key; never makes one (`fogd key` run as another user must not leave a
    /// key the daemon cannot read).
    pub fn load(data_dir: &Path) -> Result<NodeKey> {
        let path = Self::path(data_dir);
        if !path.is_file() {
            return Err(ReceiptError::KeyFile {
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no receipt key yet: `fogd run` makes it at its first start (or give --key)",
                ),
                path,
            });
        }
        Self::load_or_create(data_dir)
    }

    /// Reads the node's key, making it (0600, never replaced) at the first start.
    pub fn load_or_create(data_dir: &Path) -> Result<NodeKey> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path(data_dir);
        let err = |source| ReceiptError::KeyFile {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ReceiptError::BadKeyFile { path: path.clone() })?;
                Ok(NodeKey {
                    key: SigningKey::from_bytes(&bytes),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
                std::fs::create_dir_all(data_dir).map_err(err)?;
                // Written whole under a name of this process's, then linked into place: two
                // processes opening one folder at once (the daemon and `fogd put`) never see a
                // half-written key, nor overwrite each other's; the second reads the first's.
                let tmp = data_dir.join(format!(
                    ".receipt-key.{}.{:016x}.tmp",
                    std::process::id(),
                    rand::RngCore::next_u64(&mut rand::rngs::OsRng)
                ));
                let written = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut f| {
                        f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
                            .and_then(|()| f.sync_all())
                    })
                    .and_then(|()| std::fs::hard_link(&tmp, &path));
                let _ = std::fs::remove_file(&tmp);
                match written {
                    Ok(()) => {
                        tracing::info!(key = %path.display(), "made the node's receipt key");
                        Ok(NodeKey {
                            key: SigningKey::from_bytes(&seed),
                        })
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(data_dir),
                    Err(e) => Err(err(e)),
                }
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The public key as `fogd verify --key` and `/system/info` give it: base64, standard.
    pub fn public_b64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.public().as_bytes())
    }

    pub fn key_id(&self) -> String {
        key_id(&self.public())
    }

    /// The token of `r`: its JSON and the signature of that JSON.
    pub fn sign(&self, r: &Receipt) -> String {
        let json = serde_json::to_vec(r).unwrap_or_default();
        let sig = self.key.sign(&json);
        format!("{}.{}", B64.encode(&json), B64.encode(sig.to_bytes()))
    }

    /// `jpeg` with `r` (its `output_sha256` set here) stamped in; `None` if it is not a JPEG.
    pub fn stamp(&self, jpeg: &[u8], mut r: Receipt) -> Option<(Vec<u8>, String)> {
        let bare = jpeg_note::strip_tagged(jpeg, RECEIPT)?;
        r.output_sha256 = sha256_hex(&bare);
        r.key_id = self.key_id();
        let token = self.sign(&r);
        let stamped = jpeg_note::embed_tagged(&bare, RECEIPT, token.as_bytes())?;
        Some((stamped, token))
    }
}

/// A public key given as base64 (standard or url-safe) or hex.
pub fn parse_public(text: &str) -> Result<VerifyingKey> {
    let t = text.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(t)
        .or_else(|_| B64.decode(t))
        .ok()
        .filter(|b| b.len() == 32)
        .or_else(|| hex::decode(t).ok());
    bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| ReceiptError::BadPublicKey(t.chars().take(80).collect()))
}

/// The receipt in `token`, if `key` signed it.
pub fn verify_token(token: &str, key: &VerifyingKey) -> Result<Receipt> {
    if token.len() > MAX_TOKEN {
        return Err(ReceiptError::Malformed(format!("{} bytes", token.len())));
    }
    let (payload, sig) = token
        .trim()
        .split_once('.')
        .ok_or_else(|| ReceiptError::Malformed("not `<payload>.<signature>`".into()))?;
    let json = B64
        .decode(payload)
        .map_err(|e| ReceiptError::Malformed(format!("payload: {e}")))?;
    let sig: [u8; 64] = B64
        .decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ReceiptError::Malformed("signature: not 64 bytes of base64url".into()))?;
    let r: Receipt = serde_json::from_slice(&json).map_err(|e| ReceiptError::Malformed(e.to_string()))?;
    if r.v != VERSION {
        return Err(ReceiptError::Malformed(format!(
            "version {} (this fogd reads {VERSION})",
            r.v
        )));
    }
    key.verify(&json, &Signature::from_bytes(&sig))
        .map_err(|_| ReceiptError::BadSignature {
            key_id: key_id(key),
            signer: r.key_id.clone(),
            node: r.node.clone(),
        })?;
    Ok(r)
}

/// The receipt a JPEG carries, checked: signed by `key`, and the picture the one it signed.
pub fn check_jpeg(jpeg: &[u8], key: &VerifyingKey) -> Result<Receipt> {
    let token = jpeg_note::read_tagged(jpeg, RECEIPT).ok_or(ReceiptError::Missing)?;
    let token = String::from_utf8(token).map_err(|_| ReceiptError::Malformed("not UTF-8".into()))?;
    let r = verify_token(&token, key)?;
    let bare = jpeg_note::strip_tagged(jpeg, RECEIPT).ok_or(ReceiptError::Missing)?;
    let found = sha256_hex(&bare);
    if found != r.output_sha256 {
        return Err(ReceiptError::Changed {
            expected: r.output_sha256,
            found,
        });
    }
    Ok(r)
}

/// The token a JPEG carries, unchecked (for the object's metadata).
pub fn token_of(jpeg: &[u8]) -> Option<String> {
    String::from_utf8(jpeg_note::read_tagged(jpeg, RECEIPT)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            v: VERSION,
            node: "edge-1".into(),
            key_id: String::new(),
            output_sha256: String::new(),
            raw_sha256: Some("ab".repeat(32)),
            camera: Some("door".into()),
            captured: Some("2026-12-07T12:00:00Z".into()),
            frame_s: None,
            service: "anon".into(),
            image: Some("fogd/builtin:anonymize".into()),
            status: "ok".into(),
            detector: "centerface".into(),
            models: Vec::new(),
            thresholds: None,
            faces: vec![[1.0, 2.0, 30.0, 40.0]],
            plates: Vec::new(),
            zones: 1,
            audit: None,
            fogd_version: "0.1.0".into(),
            signed_ms: 1,
        }
    }

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0x11, 0x22, 0x33, 0xFF, 0xD9];

    #[test]
    fn a_stamped_frame_verifies_and_any_change_does_not() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = NodeKey::load_or_create(dir.path()).expect("key");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(NodeKey::path(dir.path()))
                .expect("meta")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        // The same key at the next start.
        let again = NodeKey::load_or_create(dir.path()).expect("again");
        assert_eq!(again.public_b64(), key.public_b64());
        let pub_key = parse_public(&key.public_b64()).expect("public");

        let (stamped, token) = key.stamp(JPEG, receipt()).expect("jpeg");
        let r = check_jpeg(&stamped, &pub_key).expect("verifies");
        assert_eq!(
            (r.camera.as_deref(), r.zones, r.key_id.as_str()),
            (Some("door"), 1, key.key_id().as_str())
        );
        assert_eq!(token_of(&stamped).as_deref(), Some(token.as_str()));
        // Stamped again (a second store): one receipt, still valid.
        let (twice, _) = key.stamp(&stamped, receipt()).expect("jpeg");
        check_jpeg(&twice, &pub_key).expect("restamped");
        assert_eq!(twice.len(), stamped.len());

        // One byte of the picture changed.
        let mut changed = stamped.clone();
        let n = changed.len();
        changed[n - 3] ^= 1;
        assert!(matches!(
            check_jpeg(&changed, &pub_key),
            Err(ReceiptError::Changed { .. })
        ));
        // Another node's key.
        let other = tempfile::tempdir().expect("tmp");
        let other = NodeKey::load_or_create(other.path()).expect("other");
        let e = check_jpeg(&stamped, &other.public()).expect_err("other key");
        assert!(matches!(e, ReceiptError::BadSignature { .. }), "{e}");
        // A receipt cut from another frame and pasted on this one.
        let (_, foreign) = other.stamp(JPEG, receipt()).expect("jpeg");
        let pasted = jpeg_note::embed_tagged(JPEG, RECEIPT, foreign.as_bytes()).expect("jpeg");
        assert!(check_jpeg(&pasted, &pub_key).is_err());
        // No receipt; a receipt with a payload edited.
        assert!(matches!(check_jpeg(JPEG, &pub_key), Err(ReceiptError::Missing)));
        let (p, s) = token.split_once('.').expect("token");
        let mut json = B64.decode(p).expect("b64");
        let at = json.len() / 2;
        json[at] = b' ';
        let forged = format!("{}.{s}", B64.encode(&json));
        assert!(verify_token(&forged, &pub_key).is_err());
        // Keys as people paste them.
        assert!(parse_public(&hex::encode(key.public().as_bytes())).is_ok());
        assert!(parse_public("not a key").is_err());
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(NodeKey::path(dir.path()), "short\n").expect("write");
        let e = NodeKey::load_or_create(dir.path()).err().expect("refused");
        assert!(e.to_string().contains("receipt-key"), "{e}");
        assert_eq!(
            std::fs::read_to_string(NodeKey::path(dir.path())).expect("kept"),
            "short\n"
        );
    }

    /// The daemon and `fogd put` opening a new data folder at once: one key, read by all.
    #[test]
    fn processes_making_the_key_at_once_share_one() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tmp");
            let start = std::sync::Barrier::new(4);
            let keys: Vec<String> = std::thread::scope(|s| {
                let made: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            NodeKey::load_or_create(dir.path()).map(|k| k.public_b64())
                        })
                    })
                    .collect();
                made.into_iter()
                    .map(|t| t.join().expect("thread").expect("key"))
                    .collect()
            });
            assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        }
    }
}
