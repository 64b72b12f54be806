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

    /// The top folder `bucket`, or None.
    pub fn bucket(&self, bucket: &str) -> io::Result<Option<Dir>> {
        self.folder(&segments(bucket)?, false)
    }

    /// The handle of the root itself.
    pub fn dir(&self) -> &Dir {
        &self.dir
    }
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

/// One key the walk found, with its metadata (no link followed).
pub struct Found {
    pub key: String,
    pub stat: Stat,
    /// The folder that holds it and its name there, to open it without a path.
    pub dir: std::sync::Arc<Dir>,
    pub name: String,
}

impl Found {
    pub fn is_folder(&self) -> bool {
        self.stat.folder
    }

    pub fn open(&self) -> io::Result<std::fs::File> {
        open_nofollow(&self.dir, &self.name)
    }
}

/// What the walk yields: a key, or (with `fold_folders`) a folder's whole subtree as one prefix.
pub enum Walked {
    Key(Found),
    Folder(String),
}

struct Level {
    dir: std::sync::Arc<Dir>,
    /// `folder/` (empty at the start folder).
    base: String,
    /// Entries still to visit, sorted in reverse so `pop` gives the next.
    todo: Vec<(String, bool)>,
}

/// Keys under a prefix in S3's order (UTF-8 bytes), read one folder at a time, starting after a
/// marker without visiting what lies before it. Files and empty folders (as `name/`) are keys;
/// links and other files are skipped; temporary files of writes in progress are never listed.
pub struct Walk {
    stack: Vec<Level>,
    prefix: String,
    after: Option<String>,
    /// Yield each folder below the prefix once, as a prefix, without entering it (what a `/`
    /// delimiter asks: a folder holds at least its own `name/` key, so it is never empty).
    fold_folders: bool,
    /// A folder just entered: emit `name/` if it turns out empty.
    pending_empty: Option<String>,
    /// Keys under this prefix are neither listed nor visited.
    skip: Option<String>,
    /// Folders read so far (what a page costs).
    folders_read: usize,
}

impl Walk {
    /// Keys of `bucket` (a folder handle) under `prefix`, after `after`.
    pub fn new(bucket: &Dir, prefix: &str, after: Option<&str>, fold_folders: bool) -> io::Result<Walk> {
        let start = prefix.rsplit_once('/').map_or("", |(d, _)| d);
        let mut w = Walk {
            stack: Vec::new(),
            prefix: prefix.to_string(),
            after: after.map(str::to_string),
            fold_folders,
            pending_empty: None,
            skip: None,
            folders_read: 0,
        };
        let mut d = bucket.try_clone()?;
        for name in segments(start)? {
            d = match d.open_dir_nofollow(name) {
                Ok(next) => next,
                Err(e) if absent(&e) => return Ok(w),
                Err(e) => return Err(e),
            };
        }
        let base = if start.is_empty() {
            String::new()
        } else {
            format!("{start}/")
        };
        w.push(d, base)?;
        Ok(w)
    }

    /// Leaves out every key under `prefix` (never visited).
    pub fn skipping(mut self, prefix: &str) -> Walk {
        self.skip = Some(prefix.to_string());
        // The start folder was read before the skip was known.
        if let Some(level) = self.stack.last_mut() {
            let base = level.base.clone();
            level
                .todo
                .retain(|(n, d)| !format!("{base}{}", keyed(n, *d)).starts_with(prefix));
        }
        self
    }

    /// How many folders the walk has read.
    pub fn folders_read(&self) -> usize {
        self.folders_read
    }

    fn push(&mut self, dir: Dir, base: String) -> io::Result<()> {
        self.folders_read += 1;
        let mut todo = Vec::new();
        let mut any = false;
        for e in dir.entries()? {
            let e = e?;
            any = true;
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with(super::TMP_PREFIX) {
                continue;
            }
            let ft = e.file_type()?;
            // Folders sort as `name/`, so a depth-first walk gives keys in byte order.
            let key = if ft.is_dir() {
                format!("{base}{name}/")
            } else if ft.is_file() {
                format!("{base}{name}")
            } else {
                continue;
            };
            if self.wanted(&key) {
                todo.push((name, ft.is_dir()));
            }
        }
        if !any && !base.is_empty() {
            self.pending_empty = Some(base.clone());
        }
        todo.sort_by_cached_key(|(n, d)| std::cmp::Reverse(keyed(n, *d)));
        self.stack.push(Level {
            dir: std::sync::Arc::new(dir),
            base,
            todo,
        });
        Ok(())
    }

    /// Could a key starting with `key` (a file's key, or a folder's `name/`) be listed?
    fn wanted(&self, key: &str) -> bool {
        let is_folder = key.ends_with('/');
        let under_prefix = key.starts_with(&self.prefix) || (is_folder && self.prefix.starts_with(key));
        let after_marker = match &self.after {
            None => true,
            // A folder's keys all start with `key`: some lie past the marker unless the marker
            // is past all of them.
            Some(a) if is_folder => a.as_str() < key || a.starts_with(key),
            Some(a) => key > a.as_str(),
        };
        let skipped = self.skip.as_deref().is_some_and(|s| key.starts_with(s));
        under_prefix && after_marker && !skipped
    }
}

fn keyed(name: &str, folder: bool) -> String {
    if folder {
        format!("{name}/")
    } else {
        name.to_string()
    }
}

impl Iterator for Walk {
    type Item = io::Result<Walked>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(base) = self.pending_empty.take() {
                if base.starts_with(&self.prefix) && self.after.as_deref().is_none_or(|a| base.as_str() > a) {
                    let Some(level) = self.stack.last() else { continue };
                    let stat = match level.dir.dir_metadata() {
                        Ok(m) => Stat::of(&m),
                        Err(e) => return Some(Err(e)),
                    };
                    let parent = self.stack.len().checked_sub(2).map(|i| self.stack[i].dir.clone());
                    let name = base
                        .trim_end_matches('/')
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    return Some(Ok(Walked::Key(Found {
                        key: base,
                        stat,
                        dir: parent.unwrap_or_else(|| level.dir.clone()),
                        name,
                    })));
                }
            }
            let level = self.stack.last_mut()?;
            let Some((name, is_dir)) = level.todo.pop() else {
                self.stack.pop();
                continue;
            };
            let (dir, base) = (level.dir.clone(), level.base.clone());
            if is_dir {
                let key = format!("{base}{name}/");
                if self.fold_folders && key.len() > self.prefix.len() && key.starts_with(&self.prefix) {
                    if self.after.as_deref().is_none_or(|a| key.as_str() > a) {
                        return Some(Ok(Walked::Folder(key)));
                    }
                    continue;
                }
                match dir.open_dir_nofollow(&name) {
                    Ok(d) => {
                        if let Err(e) = self.push(d, key) {
                            return Some(Err(e));
                        }
                    }
                    Err(e) if absent(&e) => {}
                    Err(e) => return Some(Err(e)),
                }
                continue;
            }
            let key = format!("{base}{name}");
            // lstat through the folder handle: a file swapped for a link since is skipped.
            let meta = match dir.symlink_metadata(&name) {
                Ok(m) if m.is_file() => m,
                Ok(_) => continue,
                Err(e) if absent(&e) => continue,
                Err(e) => return Some(Err(e)),
            };
            return Some(Ok(Walked::Key(Found {
                key,
                stat: Stat::of(&meta),
                dir,
                name,
            })));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(w: Walk) -> Vec<String> {
        w.map(|k| match k.expect("walk") {
            Walked::Key(f) => f.key,
            Walked::Folder(p) => format!("[{p}]"),
        })
        .collect()
    }

    fn tree(paths: &[&str]) -> (tempfile::TempDir, Root) {
        let d = tempfile::tempdir().expect("tmp");
        for p in paths {
            let p = d.path().join(p);
            if p.to_string_lossy().ends_with('/') {
                std::fs::create_dir_all(&p).expect("mkdir");
            } else {
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, b"x").expect("w");
            }
        }
        let r = Root::open(d.path()).expect("root");
        (d, r)
    }

    #[test]
    fn keys_come_in_byte_order_with_folders_as_name_slash() {
        let (_d, r) = tree(&["a-b", "a/x", "a.b", "a0", "a/y/z", "e/", "ü"]);
        let all = keys(Walk::new(r.dir(), "", None, false).expect("walk"));
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(all, sorted);
        assert_eq!(all, ["a-b", "a.b", "a/x", "a/y/z", "a0", "e/", "ü"]);
        assert_eq!(
            keys(Walk::new(r.dir(), "a", Some("a.b"), true).expect("walk")),
            ["[a/]", "a0"]
        );
        assert_eq!(
            keys(Walk::new(r.dir(), "a/", Some("a/x"), false).expect("walk")),
            ["a/y/z"]
        );
        assert_eq!(
            keys(Walk::new(r.dir(), "", None, false).expect("walk").skipping("a/")),
            ["a-b", "a.b", "a0", "e/", "ü"]
        );
    }

    #[test]
    fn links_are_absent_and_never_followed() {
        let (d, r) = tree(&["b/real.txt", "outside/secret.txt"]);
        std::os::unix::fs::symlink(d.path().join("outside"), d.path().join("b/dirlink")).expect("link");
        std::os::unix::fs::symlink(d.path().join("outside/secret.txt"), d.path().join("b/filelink"))
            .expect("link");
        std::os::unix::fs::symlink("/", d.path().join("b/root")).expect("link");
        let b = r.bucket("b").expect("open").expect("bucket");
        assert_eq!(keys(Walk::new(&b, "", None, false).expect("walk")), ["real.txt"]);
        for k in [
            "b/dirlink/secret.txt",
            "b/filelink",
            "b/root/etc/hostname",
            "b/dirlink/",
        ] {
            assert!(r.node(k).expect("node").is_none(), "{k}");
        }
        assert!(r.make_folders("b/dirlink/new.txt").is_err());
        assert!(r.remove("b/filelink").expect("rm"), "the link itself goes");
        assert!(d.path().join("outside/secret.txt").exists());
        for bad in ["b/../outside/secret.txt", "b/./real.txt", "b//real.txt", "../x"] {
            assert!(r.node(bad).is_err(), "{bad}");
        }
        assert!(r.bucket("..").is_err());
    }

    #[test]
    fn a_page_after_a_marker_reads_only_the_folders_it_needs() {
        let d = tempfile::tempdir().expect("tmp");
        for f in 0..50 {
            for k in 0..20 {
                let p = d.path().join(format!("{f:02}/{k:02}"));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(&p, b"x").expect("w");
            }
        }
        let r = Root::open(d.path()).expect("root");
        let mut w = Walk::new(r.dir(), "", Some("48/19"), false).expect("walk");
        let first = w.next().expect("one").expect("walk");
        assert!(matches!(first, Walked::Key(ref f) if f.key == "49/00"));
        // The root, the marker's folder (48) and the next (49): not the 48 folders before it.
        assert_eq!(w.folders_read(), 3);
    }
}
