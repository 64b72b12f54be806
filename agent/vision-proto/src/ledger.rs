//! The vision worker's ledger: for each frame the worker wrote, its report and the zones it
//! blacked out, in a folder of the node's data that scripts never see, named by the SHA-256 of
//! the bytes written. The node signs a receipt for an output only from its entry here: a report a
//! script wrote or edited, bytes added to a frame after the worker wrote it, or zones a script
//! left out of its request never get one. A mask verdict the worker judged itself is recorded the
//! same way (its `report` the verdict), and is all the node counts for a camera.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::zones::Zone;

/// Entries older than this are of frames long stored (the node reads them at once).
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// An entry this large is not one the worker wrote.
const MAX_ENTRY: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// What the worker made the frame from: `input_sha256` of the file it was given. The node
    /// signs only a frame made from its invocation's own input (not a copy a script transformed,
    /// nor another camera's frame).
    pub input_sha256: String,
    /// The frame's report, as JSON (fogd-vision's `FrameReport`; fogd reads `ReportPrivacy`).
    pub report: String,
    /// The zones blacked out in the frame, as given.
    pub zones: Vec<Zone>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `s` is 64 hex digits (a SHA-256, a token): safe to put in a file name.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `input_sha256` of bytes already read (a picture read once, then hashed and decoded: a file
/// read twice could be swapped in between).
pub fn input_sha256_of(bytes: &[u8]) -> String {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) && bytes.len() <= 16 << 20 {
        if let Some(bare) = crate::jpeg_note::strip_tagged(bytes, crate::jpeg_note::RECEIPT) {
            return sha256_hex(&bare);
        }
    }
    sha256_hex(bytes)
}

/// A file's SHA-256 as the ledger names inputs: a JPEG without its receipt segments (a frame
/// the node stamped is the frame the worker wrote), anything else as it is, read in pieces.
pub fn input_sha256(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut head = [0u8; 3];
    let n = f.read(&mut head)?;
    if head[..n] == [0xFF, 0xD8, 0xFF] && len <= 16 << 20 {
        let mut bytes = head[..n].to_vec();
        f.read_to_end(&mut bytes)?;
        return Ok(input_sha256_of(&bytes));
    }
    let mut h = Sha256::new();
    h.update(&head[..n]);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok(hex(&h.finalize()));
        }
        h.update(&buf[..k]);
    }
}

fn entry_path(dir: &Path, written: &[u8]) -> PathBuf {
    dir.join(format!("{}.json", sha256_hex(written)))
}

/// Records `entry` for the bytes `written` (0600, written whole then renamed).
pub fn record(dir: &Path, written: &[u8], entry: &Entry) -> std::io::Result<()> {
    record_named(dir, &sha256_hex(written), entry)
}

/// As `record`, for bytes known by their SHA-256 (`sha256_hex`): an entry held while a request
/// ran, written after it.
pub fn record_named(dir: &Path, written_sha256: &str, entry: &Entry) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !is_hex64(written_sha256) {
        return Err(std::io::Error::other("not a SHA-256"));
    }
    let path = dir.join(format!("{written_sha256}.json"));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let json = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Removes the entry for the bytes `written` (a verdict, once counted, is not counted again).
pub fn forget(dir: &Path, written: &[u8]) -> std::io::Result<()> {
    std::fs::remove_file(entry_path(dir, written))
}

/// Whether this is the first verdict counted for the frame `input_sha256` (as the ledger
/// names inputs): a mark is left for it, which ages out with the entries (`GRACE`). A mark that
/// cannot be made counts as first: a verdict is not lost to a full disk.
pub fn first_verdict(dir: &Path, input_sha256: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    if !is_hex64(input_sha256) {
        return false;
    }
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(format!("counted-{input_sha256}")));
    !matches!(made, Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists)
}

/// The entry for the bytes `written`, if the worker wrote exactly these.
pub fn find(dir: &Path, written: &[u8]) -> Option<Entry> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(entry_path(dir, written))
        .ok()?;
    let mut json = Vec::new();
    f.take(MAX_ENTRY).read_to_end(&mut json).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_found_only_for_the_exact_bytes() {
        let dir = std::env::temp_dir().join(format!("fogd-ledger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let e = Entry {
            input_sha256: "ab".into(),
            report: "{\"status\":\"ok\"}".into(),
            zones: Vec::new(),
        };
        record(&dir, b"frame", &e).expect("record");
        assert_eq!(find(&dir, b"frame"), Some(e));
        assert_eq!(find(&dir, b"frame plus"), None);
        // A frame's verdict counts once; an entry can be forgotten.
        let frame = sha256_hex(b"frame");
        assert!(first_verdict(&dir, &frame));
        assert!(!first_verdict(&dir, &frame));
        assert!(!first_verdict(&dir, "../x"));
        forget(&dir, b"frame").expect("forget");
        assert_eq!(find(&dir, b"frame"), None);
        // A JPEG input is named without its receipt; anything else as it is.
        let jpeg = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02, 0xFF, 0xD9];
        let stamped =
            crate::jpeg_note::embed_tagged(&jpeg, crate::jpeg_note::RECEIPT, b"token").expect("jpeg");
        std::fs::write(dir.join("a.jpg"), jpeg).expect("write");
        std::fs::write(dir.join("b.jpg"), &stamped).expect("write");
        std::fs::write(dir.join("c.bin"), b"frame").expect("write");
        let h = |n: &str| input_sha256(&dir.join(n)).expect("hash");
        assert_eq!(h("a.jpg"), h("b.jpg"));
        assert_eq!(h("c.bin"), sha256_hex(b"frame"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
