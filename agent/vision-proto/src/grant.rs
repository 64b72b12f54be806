//! What a script may have the node's vision worker touch. The worker runs outside the scripts'
//! sandbox with the node's rights, so each request must show that it comes from an invocation
//! and is confined to that invocation's folders. fogd gives each local invocation a random token
//! (`FOGD_VISION_TOKEN`) and writes a grant under the data folder, named by the token's SHA-256,
//! listing the folders it may use (its work folder, its mount); the worker reads the grant of the
//! token a request carries. Scripts never see the data folder, so they can neither read another
//! invocation's token nor write a grant.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ledger::{hex, sha256_hex};

/// The variable that carries an invocation's token to its script (and on, in a request).
pub const ENV_TOKEN: &str = "FOGD_VISION_TOKEN";

/// The folder of grants, in the data folder.
pub const DIR: &str = "vision-grants";

/// A grant is a few paths: anything larger is not one fogd wrote.
const MAX_GRANT_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("no {ENV_TOKEN}: the node's vision worker takes requests from an invocation's script only")]
    Missing,
    #[error("{ENV_TOKEN} is not a token fogd gave (64 hex digits)")]
    Malformed,
    #[error("{ENV_TOKEN}: no such grant (the invocation has ended, or the token is not one fogd gave)")]
    Unknown,
    #[error("the grant of {ENV_TOKEN} does not read: {0}")]
    Unreadable(String),
}

/// A new random token: 32 bytes from the kernel, as hex.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(hex(&bytes))
}

/// Where the grant of `token` lives: named by its hash, so a listing of the folder gives no token.
pub fn path(data_dir: &Path, token: &str) -> Result<PathBuf, GrantError> {
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GrantError::Malformed);
    }
    Ok(data_dir.join(DIR).join(sha256_hex(token.as_bytes())))
}

/// The folders `token` may use, as fogd wrote them (absolute, one a line).
pub fn read(data_dir: &Path, token: Option<&str>) -> Result<Vec<PathBuf>, GrantError> {
    let p = path(data_dir, token.ok_or(GrantError::Missing)?)?;
    let f = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(GrantError::Unknown),
        Err(e) => return Err(GrantError::Unreadable(e.to_string())),
    };
    let mut text = String::new();
    f.take(MAX_GRANT_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| GrantError::Unreadable(e.to_string()))?;
    let roots: Vec<PathBuf> = text
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    if roots.is_empty() || roots.iter().any(|r| !r.is_absolute()) {
        return Err(GrantError::Unreadable("not a list of absolute paths".into()));
    }
    Ok(roots)
}

/// The text of a grant for `roots`.
pub fn text(roots: &[&Path]) -> String {
    roots.iter().map(|r| format!("{}\n", r.display())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_is_found_by_its_token_only() {
        let dir = std::env::temp_dir().join(format!("grant-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(DIR)).expect("dir");
        let token = new_token().expect("token");
        assert_eq!(token.len(), 64);
        let roots = [Path::new("/data/work/a"), Path::new("/data/store/mnt")];
        std::fs::write(path(&dir, &token).expect("path"), text(&roots)).expect("write");
        assert_eq!(
            read(&dir, Some(&token)).expect("read"),
            roots.map(Path::to_path_buf)
        );
        assert!(matches!(read(&dir, None), Err(GrantError::Missing)));
        assert!(matches!(
            read(&dir, Some("../../etc/passwd")),
            Err(GrantError::Malformed)
        ));
        let other = new_token().expect("token");
        assert!(matches!(read(&dir, Some(&other)), Err(GrantError::Unknown)));
        // The file's name is the token's hash, never the token.
        let names: Vec<String> = std::fs::read_dir(dir.join(DIR))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.contains(&token), "{names:?}");
        std::fs::remove_dir_all(&dir).expect("clean");
    }
}
