//! The local store's one way to touch its files: every key resolved beneath the store's root
//! (a `cap-std` directory handle), one component at a time, each opened without following a
//! link (`O_NOFOLLOW`). Buckets are mounted into containers and written by scripts, so anything
//! in the tree may be a link someone planted: a link is treated as absent when read or listed,
//! is never written through, and nothing outside the root is ever opened, hashed or given an
//! xattr. Keys are checked (`check_key`) before they get here; the walk refuses `.`, `..` and
//! empty segments again, so no caller can get past it by forgetting.

use std::io;
use std::path::{Path, PathBuf};

use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, OpenOptions};

/// The root of a local store, opened once per operation.
pub struct Root {
    dir: Dir,
    path: PathBuf,
}

/// What a key names: a file (opened, no link followed) or a folder.
pub enum Node {
    File(std::fs::File, std::fs::Metadata),
    Folder(Stat),
}

/// Size and modification time of a file or folder.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
    pub folder: bool,
}

impl Stat {
    fn of(m: &cap_std::fs::Metadata) -> Stat {
        Stat {
            size: if m.is_dir() { 0 } else { m.len() },
            modified: m.modified().ok().map(|t| t.into_std()),
            folder: m.is_dir(),
        }
    }

    pub fn of_std(m: &std::fs::Metadata) -> Stat {
        Stat {
            size: if m.is_dir() { 0 } else { m.len() },
            modified: m.modified().ok(),
            folder: m.is_dir(),
        }
    }
}

/// A link or a file where the walk needed a folder, or a link where it needed a file.
fn is_link_or_not_dir(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR))
}

fn absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || is_link_or_not_dir(e)
}

/// The segments of `key` (a trailing `/` names a folder and adds no segment).
pub fn segments(key: &str) -> io::Result<Vec<&str>> {
    let body = key.strip_suffix('/').unwrap_or(key);
    let segs: Vec<&str> = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/').collect()
    };
    if segs
        .iter()
        .any(|s| matches!(*s, "" | "." | "..") || s.contains('\0'))
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a key beneath the store", key.escape_debug()),
        ));
    }
    Ok(segs)
}

impl Root {
    /// Opens (and on first use makes) the store's root folder. The root itself is the operator's
    /// (`data_dir/store`) and trusted; nothing below it is.
    pub fn open(path: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Root {
            dir,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `key` would be, for messages only (never opened by this name).
    pub fn shown(&self, key: &str) -> PathBuf {
        self.path.join(key)
    }

    /// The folder reached through `folders`, each opened without following a link. None when
    /// one is missing, a link or a file. With `create`, missing folders are made, and a link or
    /// a file in the way is an error naming it.
    pub fn folder(&self, folders: &[&str], create: bool) -> io::Result<Option<Dir>> {
        let mut d = self.dir.try_clone()?;
        for (i, name) in folders.iter().enumerate() {
            d = match d.open_dir_nofollow(name) {
                Ok(next) => next,
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    match d.create_dir(name) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(e),
                    }
                    d.open_dir_nofollow(name)?
                }
                Err(e) if create && is_link_or_not_dir(&e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{}: a link or a file stands where a folder is needed; the store never writes through links",
                            self.shown(&folders[..=i].join("/")).display()
                        ),
                    ));
                }
                Err(e) if absent(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
        }
        Ok(Some(d))
    }

    /// The folder that holds `key`'s last segment, and that segment.
    pub fn parent<'k>(&self, key: &'k str, create: bool) -> io::Result<Option<(Dir, &'k str)>> {
        let segs = segments(key)?;
        let Some((last, folders)) = segs.split_last() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an empty key names no object",
            ));
        };
        Ok(self.folder(folders, create)?.map(|d| (d, *last)))
    }

    /// What `key` names, or None (missing, or a link anywhere on its way).
    pub fn node(&self, key: &str) -> io::Result<Option<Node>> {
        let Some((dir, name)) = self.parent(key, false)? else {
            return Ok(None);
        };
        if key.ends_with('/') {
            return match dir.open_dir_nofollow(name) {
                Ok(d) => Ok(Some(Node::Folder(Stat::of(&d.dir_metadata()?)))),
                Err(e) if absent(&e) => Ok(None),
                Err(e) => Err(e),
            };
        }
        match open_nofollow(&dir, name) {
            Ok(f) => {
                let meta = f.metadata()?;
                Ok(meta.is_file().then_some(Node::File(f, meta)))
            }
            Err(e) if absent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file `key` names, opened for reading, or None.
    pub fn open_file(&self, key: &str) -> io::Result<Option<(std::fs::File, std::fs::Metadata)>> {
        Ok(match self.node(key)? {
            Some(Node::File(f, m)) => Some((f, m)),
            _ => None,
        })
    }

    /// Removes the file (or, for `name/`, the empty folder) `key` names. A link there is removed
    /// as a link, never followed. False when there was nothing.
    pub fn remove(&self, key: &str) -> io::Result<bool> {
        let Some((dir, name)) = self.parent(key, false)? else {
            return Ok(false);
        };
        let r = if key.ends_with('/') {
            dir.remove_dir(name)
        } else {
            dir.remove_file_or_symlink(name)
        };
        match r {
            Ok(()) => Ok(true),
            Err(e) if absent(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes the folders of `key` (a `name/` key: the folder itself).
    pub fn make_folders(&self, key: &str) -> io::Result<Dir> {
        let segs = segments(key)?;
        let n = if key.ends_with('/') {
            segs.len()
        } else {
            segs.len().saturating_sub(1)
        };
        self.folder(&segs[..n], true)?
            .ok_or_else(|| io::Error::other("the folder could not be made"))
    }

    /// Where a new object of `key` is written: its folder (made beneath the root, no link
    /// followed), its name there, and a new temporary file beside it (renamed over the name once
    /// complete).
    pub fn new_object(&self, key: &str) -> io::Result<NewObject> {
        let dir = self.make_folders(key)?;
        let name = segments(key)?.last().map(|n| n.to_string()).unwrap_or_default();
        let tmp = format!("{}{}", crate::store::TMP_PREFIX, uuid::Uuid::new_v4());
        let file = create_new(&dir, &tmp)?;
        Ok(NewObject { dir, name, tmp, file })
    }

    /// The top folder `bucket`, or None.
    pub fn bucket(&self, bucket: &str) -> io::Result<Option<Dir>> {
        self.folder(&segments(bucket)?, false)
    }

    /// The handle of the root itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }
}

/// A new object's place: see `Root::new_object`.
pub struct NewObject {
    pub dir: Dir,
    pub name: String,
    pub tmp: String,
    pub file: std::fs::File,
}

/// Opens the store's root (made on first use), as a store error naming it.
pub fn open_store(path: &Path) -> crate::store::Result<Root> {
    Root::open(path).map_err(|e| crate::store::StoreError::io(path, e))
}

/// Opens `name` in `dir` for reading, refusing a link (ELOOP).
pub fn open_nofollow(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
    let mut o = OpenOptions::new();
    o.read(true).follow(FollowSymlinks::No);
    dir.open_with(name, &o).map(|f| f.into_std())
}

/// Creates `name` in `dir` (it must not exist; a link there is refused).
pub fn create_new(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
    let mut o = OpenOptions::new();
    o.write(true).create_new(true).follow(FollowSymlinks::No);
    dir.open_with(name, &o).map(|f| f.into_std())
}

/// Makes renames and new names in `dir` durable. (cap-std holds folders as `O_PATH`
/// descriptors, which fsync refuses: the folder is opened for reading through its handle.)
pub fn sync_dir(dir: &Dir) -> io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    std::fs::File::from(fd).sync_all()
}

mod walk;
pub use walk::{Found, Walk, Walked};

#[cfg(test)]
mod tests;
