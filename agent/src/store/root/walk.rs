//! The walk behind listings: keys in S3's order, folder by folder, never through a link.

use std::io;

use cap_fs_ext::DirExt;
use cap_std::fs::Dir;

use super::{absent, open_nofollow, segments, Stat};

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
            if name.starts_with(crate::store::TMP_PREFIX) {
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
