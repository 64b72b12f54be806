//! Listings: a bucket folder's keys in S3's order, grouped by a delimiter and paged.

use std::path::{Path, PathBuf};

use s3s::dto::{ETag, Object, ObjectStorageClass, Timestamp};
use s3s::S3Result;

use super::errors::{io_err, store_err};
use super::store::EMPTY_MD5;
use crate::store::etag_of;

pub(super) fn timestamp(t: Option<std::time::SystemTime>) -> Option<Timestamp> {
    t.map(Timestamp::from)
}

/// One entry of a listing, in key order.
enum Entry {
    Object { key: String, path: PathBuf },
    Prefix(String),
}

impl Entry {
    fn name(&self) -> &str {
        match self {
            Entry::Object { key, .. } => key,
            Entry::Prefix(p) => p,
        }
    }
}

/// What S3 leaves unencoded under `encoding-type=url` (clients decode the rest).
const URL_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A name as the listing says it: URL-encoded when the client asked (`encoding-type=url`, what
/// boto3 always asks, so that any key survives XML).
pub(super) fn say(name: Option<String>, url: bool) -> Option<String> {
    match name {
        Some(n) if url => Some(percent_encoding::utf8_percent_encode(&n, URL_KEEP).to_string()),
        other => other,
    }
}

pub(super) struct Page {
    pub(super) objects: Vec<Object>,
    pub(super) prefixes: Vec<String>,
    pub(super) truncated: bool,
    pub(super) last: Option<String>,
}

impl Page {
    /// Keys and prefixes URL-encoded (see `say`).
    pub(super) fn encode(mut self, url: bool) -> Page {
        if url {
            for o in &mut self.objects {
                o.key = say(o.key.take(), true);
            }
            self.prefixes = self
                .prefixes
                .into_iter()
                .filter_map(|p| say(Some(p), true))
                .collect();
        }
        self
    }
}

/// Every key under `prefix` in the bucket folder `dir` (files, and empty folders as `name/`
/// markers, as OSCAR makes for its input paths), sorted as S3 sorts (by UTF-8 bytes).
pub(crate) fn keys_under(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let start = prefix.rsplit_once('/').map_or("", |(d, _)| d);
    let mut out = Vec::new();
    let mut stack = vec![dir.join(start)];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(e),
        };
        let mut empty = true;
        for e in rd {
            let e = e?;
            empty = false;
            let name = e.file_name();
            if name.to_string_lossy().starts_with(crate::store::TMP_PREFIX) {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(rel) = e.path().strip_prefix(dir) {
                    out.push((rel.to_string_lossy().into_owned(), e.path()));
                }
            }
        }
        if empty && d != dir {
            if let Ok(rel) = d.strip_prefix(dir) {
                out.push((format!("{}/", rel.to_string_lossy()), d.clone()));
            }
        }
    }
    out.retain(|(k, _)| k.starts_with(prefix));
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// A page of the listing: objects and common prefixes (with a delimiter) after `after`, at
/// most `max` of them together.
pub(super) fn list_page(
    dir: &Path,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> S3Result<Page> {
    let keys = keys_under(dir, prefix).map_err(|e| io_err(dir, e))?;
    let mut entries: Vec<Entry> = Vec::new();
    for (key, path) in keys {
        let grouped = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        match grouped {
            Some(p) => {
                if !matches!(entries.last(), Some(Entry::Prefix(last)) if *last == p) {
                    entries.push(Entry::Prefix(p));
                }
            }
            None => entries.push(Entry::Object { key, path }),
        }
    }
    let mut rest = entries
        .into_iter()
        .filter(|e| after.is_none_or(|a| e.name() > a))
        .peekable();
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    let mut n = 0;
    while n < max {
        let Some(e) = rest.next() else { break };
        page.last = Some(e.name().to_string());
        match e {
            Entry::Prefix(p) => page.prefixes.push(p),
            Entry::Object { key, path } => {
                let meta = std::fs::metadata(&path).map_err(|e| io_err(&path, e))?;
                let etag = if meta.is_dir() {
                    Some(EMPTY_MD5.to_string())
                } else {
                    etag_of(&path).map_err(store_err)?
                };
                page.objects.push(Object {
                    key: Some(key),
                    size: Some(if meta.is_dir() { 0 } else { meta.len() as i64 }),
                    last_modified: timestamp(meta.modified().ok()),
                    e_tag: etag.map(ETag::Strong),
                    storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
                    ..Default::default()
                });
            }
        }
        n += 1;
    }
    page.truncated = rest.peek().is_some();
    Ok(page)
}

const MAX_KEYS: i32 = 1000;

pub(super) fn max_keys(asked: Option<i32>) -> usize {
    asked.unwrap_or(MAX_KEYS).clamp(0, MAX_KEYS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &Page) -> (Vec<String>, Vec<String>) {
        (
            p.objects.iter().filter_map(|o| o.key.clone()).collect(),
            p.prefixes.clone(),
        )
    }

    #[test]
    fn listings_group_by_delimiter_and_page_in_key_order() {
        let d = tempfile::tempdir().expect("tmp");
        for k in ["a/1", "a/2", "b", "c/x/y", "ü"] {
            let p = d.path().join(k);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, k).expect("w");
        }
        std::fs::create_dir_all(d.path().join("in")).expect("mkdir");
        std::fs::write(d.path().join("a/.fogd-tmp-x"), b"partial").expect("w");
        let all = list_page(d.path(), "", None, None, 1000).expect("list");
        assert_eq!(names(&all).0, ["a/1", "a/2", "b", "c/x/y", "in/", "ü"]);
        let top = list_page(d.path(), "", Some("/"), None, 1000).expect("list");
        assert_eq!(
            names(&top),
            (
                vec!["b".into(), "ü".into()],
                vec!["a/".into(), "c/".into(), "in/".into()]
            )
        );
        // Pages of two: each resumes after the last name of the one before.
        let p1 = list_page(d.path(), "", Some("/"), None, 2).expect("list");
        assert_eq!(
            (names(&p1).1, p1.truncated, p1.last.as_deref()),
            (vec!["a/".to_string()], true, Some("b"))
        );
        let p2 = list_page(d.path(), "", Some("/"), Some("b"), 2).expect("list");
        assert_eq!(names(&p2).1, ["c/", "in/"]);
        let p3 = list_page(d.path(), "", Some("/"), Some("in/"), 2).expect("list");
        assert_eq!((names(&p3).0, p3.truncated), (vec!["ü".to_string()], false));
        let sub = list_page(d.path(), "a/", Some("/"), None, 1000).expect("list");
        assert_eq!(names(&sub).0, ["a/1", "a/2"]);
        assert_eq!(
            all.objects[0].e_tag,
            Some(ETag::Strong(format!("{:x}", md5_of(b"a/1"))))
        );
    }

    fn md5_of(b: &[u8]) -> md5::digest::Output<md5::Md5> {
        use md5::Digest;
        md5::Md5::digest(b)
    }
}
