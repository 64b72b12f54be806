//! The vision worker's ledger: for each frame the worker wrote, its report and the zones it
//! blacked out, in a folder of the node's data that scripts never see, named by the SHA-256 of
//! the bytes written. The node signs a receipt for an output only from its entry here: a report a
//! script wrote or edited, bytes added to a frame after the worker wrote it, or zones a script
//! left out of its request never get one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::zones::Zone;

/// An entry this large is not one the worker wrote.
const MAX_ENTRY: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The frame's report, as JSON (fogd-vision's `FrameReport`; fogd reads `ReportPrivacy`).
    pub report: String,
    /// The zones blacked out in the frame, as given.
    pub zones: Vec<Zone>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn entry_path(dir: &Path, written: &[u8]) -> PathBuf {
    dir.join(format!("{}.json", sha256_hex(written)))
}

/// Records `entry` for the bytes `written` (0600, written whole then renamed).
pub fn record(dir: &Path, written: &[u8], entry: &Entry) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = entry_path(dir, written);
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
            report: "{\"status\":\"ok\"}".into(),
            zones: Vec::new(),
        };
        record(&dir, b"frame", &e).expect("record");
        assert_eq!(find(&dir, b"frame"), Some(e));
        assert_eq!(find(&dir, b"frame plus"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
