//! Listings: a bucket folder's keys in S3's order, grouped by a delimiter and paged.

use cap_std::fs::Dir;
use s3s::dto::{ETag, Object, ObjectStorageClass, Timestamp};

use super::store::EMPTY_MD5;
use crate::store::etag_of;
use crate::store::root::{Walk, Walked};

pub(super) fn timestamp(t: Option<std::time::SystemTime>) -> Option<Timestamp> {
    t.map(Timestamp::from)
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

/// A page of the listing of the bucket folder `bucket`: objects and common prefixes (with a
/// delimiter) after `after`, at most `max` of them together. Folders are read from the marker
/// on and the walk stops one entry past the page, so a page costs its size, not the bucket's.
/// Keys under `skip` (the raw area) are never visited.
pub(super) fn list_page(
    bucket: &Dir,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
    skip: Option<&str>,
) -> std::io::Result<Page> {
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut walk = Walk::new(bucket, prefix, after, delimiter == Some("/"))?;
    if let Some(s) = skip {
        walk = walk.skipping(s);
    }
    let mut page = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        truncated: false,
        last: None,
    };
    for w in walk {
        let (name, found) = match w? {
            Walked::Folder(p) => (p, None),
            Walked::Key(f) => {
                let grouped = delimiter.and_then(|d| {
                    f.key[prefix.len()..]
                        .find(d)
                        .map(|i| f.key[..prefix.len() + i + d.len()].to_string())
                });
                match grouped {
                    Some(p) => (p, None),
                    None => (f.key.clone(), Some(f)),
                }
            }
        };
        if after.is_some_and(|a| name.as_str() <= a) || page.last.as_deref() == Some(name.as_str()) {
            continue;
        }
        if page.objects.len() + page.prefixes.len() >= max {
            page.truncated = true;
            break;
        }
        page.last = Some(name.clone());
        let Some(f) = found else {
            page.prefixes.push(name);
            continue;
        };
        let (size, etag) = if f.is_folder() {
            (0, EMPTY_MD5.to_string())
        } else {
            match f.open() {
                Ok(file) => (f.stat.size, etag_of(&file)?),
                // Gone or swapped for a link since the folder was read: not an object.
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        };
        page.objects.push(Object {
            key: Some(name),
            size: Some(size as i64),
            last_modified: timestamp(f.stat.modified),
            e_tag: Some(ETag::Strong(etag)),
            storage_class: Some(ObjectStorageClass::from_static(ObjectStorageClass::STANDARD)),
            ..Default::default()
        });
    }
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
        let dir = Dir::open_ambient_dir(d.path(), cap_std::ambient_authority()).expect("open");
        let list_page =
            |p: &str, dl: Option<&str>, a: Option<&str>, m: usize| list_page(&dir, p, dl, a, m, None);
        let all = list_page("", None, None, 1000).expect("list");
        assert_eq!(names(&all).0, ["a/1", "a/2", "b", "c/x/y", "in/", "ü"]);
        let top = list_page("", Some("/"), None, 1000).expect("list");
        assert_eq!(
            names(&top),
            (
                vec!["b".into(), "ü".into()],
                vec!["a/".into(), "c/".into(), "in/".into()]
            )
        );
        // Pages of two: each resumes after the last name of the one before.
        let p1 = list_page("", Some("/"), None, 2).expect("list");
        assert_eq!(
            (names(&p1).1, p1.truncated, p1.last.as_deref()),
            (vec!["a/".to_string()], true, Some("b"))
        );
        let p2 = list_page("", Some("/"), Some("b"), 2).expect("list");
        assert_eq!(names(&p2).1, ["c/", "in/"]);
        let p3 = list_page("", Some("/"), Some("in/"), 2).expect("list");
        assert_eq!((names(&p3).0, p3.truncated), (vec!["ü".to_string()], false));
        let sub = list_page("a/", Some("/"), None, 1000).expect("list");
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
