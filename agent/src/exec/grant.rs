//! The vision worker's grant for one local invocation (`fogd_vision_proto::grant`): its token goes
//! to the script, the folders it may use into a file under the data folder, removed when the
//! invocation ends.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fogd_vision_proto::grant;

pub struct VisionGrant {
    path: PathBuf,
    pub token: String,
}

impl VisionGrant {
    /// A new token allowed `roots` (absolute folders), with the node's privacy variables of `env`.
    pub fn create(
        data_dir: &Path,
        roots: &[&Path],
        env: &[(String, String)],
    ) -> std::io::Result<VisionGrant> {
        // As they really are now: the worker refuses a folder that later leads elsewhere (one
        // not made yet is named as given, and refused if it is ever a link).
        let real: Vec<PathBuf> = roots
            .iter()
            .map(|r| std::fs::canonicalize(r).unwrap_or_else(|_| r.to_path_buf()))
            .collect();
        let roots: Vec<&Path> = real.iter().map(PathBuf::as_path).collect();
        let token = grant::new_token()?;
        let path = grant::path(data_dir, &token).map_err(std::io::Error::other)?;
        crate::paths::make_private_dir(&data_dir.join(grant::DIR))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let json = serde_json::to_vec(&grant::Grant::new(&roots, env)).map_err(std::io::Error::other)?;
        let written = f.write_all(&json);
        let g = VisionGrant { path, token };
        written.map(|()| g)
    }
}

impl Drop for VisionGrant {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Grants of an earlier process (killed before its invocations ended): none is valid now.
pub fn clear(data_dir: &Path) {
    let _ = std::fs::remove_dir_all(data_dir.join(grant::DIR));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_lasts_as_long_as_its_invocation() {
        let dir = tempfile::tempdir().expect("tmp");
        let work = dir.path().join("work/x");
        std::fs::create_dir_all(&work).expect("work");
        // A link to the folder is granted as the folder it leads to.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&work, &link).expect("link");
        let g = VisionGrant::create(dir.path(), &[&link], &[]).expect("grant");
        let read = grant::read(dir.path(), Some(&g.token)).expect("read");
        assert_eq!(read.roots, vec![std::fs::canonicalize(&work).expect("real")]);
        let token = g.token.clone();
        drop(g);
        assert!(matches!(
            grant::read(dir.path(), Some(&token)),
            Err(grant::GrantError::Unknown)
        ));
    }
}
