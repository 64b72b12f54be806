//! What a script may have the node's vision worker touch. The worker runs outside the scripts'
//! sandbox with the node's rights, so each request must show that it comes from an invocation
//! and is confined to that invocation's folders. fogd gives each local invocation a random token
//! (`FOGD_VISION_TOKEN`) and writes a grant under the data folder, named by the token's SHA-256:
//! the folders it may use (its work folder, its mount) and the node's privacy settings for it
//! (`NODE_SET`: zones, plates, the live audit's rate), which replace whatever the request says.
//! The worker reads the grant of the token a request carries. Scripts never see the data folder,
//! so they can neither read another invocation's token nor write a grant.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ledger::{hex, is_hex64, sha256_hex};

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
    if !is_hex64(token) {
        return Err(GrantError::Malformed);
    }
    Ok(data_dir.join(DIR).join(sha256_hex(token.as_bytes())))
}

/// The variables the node sets for an invocation and a request cannot change.
pub const NODE_SET: [&str; 3] = [
    crate::zones::ENV_ZONES,
    crate::receipt::ENV_PLATES,
    crate::receipt::ENV_AUDIT_EVERY,
];

/// One invocation's grant.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Absolute folders the requests may read and write in.
    pub roots: Vec<PathBuf>,
    /// `NODE_SET` as the node set them for the invocation (absent: unset).
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl Grant {
    /// A grant of `roots`, with the `NODE_SET` variables of `env`.
    pub fn new(roots: &[&Path], env: &[(String, String)]) -> Grant {
        Grant {
            roots: roots.iter().map(|r| r.to_path_buf()).collect(),
            env: env
                .iter()
                .filter(|(k, _)| NODE_SET.contains(&k.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// A request's variables with the node's in place of its own.
    pub fn apply(&self, request: &mut std::collections::BTreeMap<String, String>) {
        request.retain(|k, _| !NODE_SET.contains(&k.as_str()));
        request.extend(self.env.clone());
    }
}

/// The grant of `token`, as fogd wrote it.
pub fn read(data_dir: &Path, token: Option<&str>) -> Result<Grant, GrantError> {
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
    let g: Grant = serde_json::from_str(&text).map_err(|e| GrantError::Unreadable(e.to_string()))?;
    if g.roots.is_empty() || g.roots.iter().any(|r| !r.is_absolute()) {
        return Err(GrantError::Unreadable(
            "its folders are not absolute paths".into(),
        ));
    }
    Ok(g)
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
        let env = [
            ("FOGD_PRIVACY_AUDIT_EVERY".to_string(), "5".to_string()),
            ("STORAGE_OBJECT_KEY".to_string(), "x".to_string()),
        ];
        let g = Grant::new(&roots, &env);
        let json = serde_json::to_string(&g).expect("json");
        std::fs::write(path(&dir, &token).expect("path"), json).expect("write");
        let read_back = read(&dir, Some(&token)).expect("read");
        assert_eq!(read_back, g);
        assert_eq!(read_back.roots, roots.map(Path::to_path_buf));
        // The node's variables replace the request's; the others stay.
        let mut request = std::collections::BTreeMap::from([
            ("FOGD_PRIVACY_AUDIT_EVERY".to_string(), "0".to_string()),
            ("FOGD_PRIVACY_ZONES".to_string(), "{}".to_string()),
            ("STORAGE_OBJECT_KEY".to_string(), "y".to_string()),
        ]);
        g.apply(&mut request);
        let get = |k: &str| request.get(k).map(String::as_str);
        assert_eq!(get("FOGD_PRIVACY_AUDIT_EVERY"), Some("5"));
        assert_eq!(get("FOGD_PRIVACY_ZONES"), None);
        assert_eq!(get("STORAGE_OBJECT_KEY"), Some("y"));
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
