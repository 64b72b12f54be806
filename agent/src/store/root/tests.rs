//! The resolver's tests: links absent, S3 order, what a page costs, and the property test.

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

/// Keys, prefixes and markers made of hostile segments, over trees with links planted to
/// outside folders, to `/` and upwards: nothing the resolver opens, lists, makes or removes
/// is outside the root. `PROPTEST_CASES` sets the cases (CI: the default 256;
/// `scripts/fuzz store` runs it for as long as it is given).
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SEGS: &[&str] = &["a", "b", "..", ".", "", "l", "up", "root", "x y", "ü", "a/"];

    fn key() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(SEGS), 0..5).prop_map(|v| v.join("/"))
    }

    #[derive(Debug, Clone)]
    enum Plant {
        File(String),
        Dir(String),
        Link(String, &'static str),
    }

    fn plant() -> impl Strategy<Value = Plant> {
        let name =
            proptest::collection::vec(proptest::sample::select(&["a", "b", "l", "up", "root"][..]), 1..4)
                .prop_map(|v| v.join("/"));
        prop_oneof![
            name.clone().prop_map(Plant::File),
            name.clone().prop_map(Plant::Dir),
            (
                name,
                proptest::sample::select(&["OUT", "/", "..", "../..", "../../..", "a"][..])
            )
                .prop_map(|(n, t)| Plant::Link(n, t)),
        ]
    }

    /// Where an open descriptor really is.
    fn real(f: &impl std::os::fd::AsRawFd) -> PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).expect("fd path")
    }

    proptest! {
        #[test]
        fn nothing_outside_the_root_is_touched(
            plants in proptest::collection::vec(plant(), 0..12),
            keys in proptest::collection::vec(key(), 1..8),
            after in proptest::option::of(key()),
        ) {
            let d = tempfile::tempdir().expect("tmp");
            let root_path = d.path().join("store");
            let outside = d.path().join("outside");
            std::fs::create_dir_all(outside.join("a")).expect("mkdir");
            std::fs::write(outside.join("secret"), b"s").expect("w");
            std::fs::write(outside.join("a/secret"), b"s").expect("w");
            std::fs::create_dir_all(&root_path).expect("mkdir");
            for p in &plants {
                let (rel, what) = match p {
                    Plant::File(n) => (n, 0),
                    Plant::Dir(n) => (n, 1),
                    Plant::Link(n, _) => (n, 2),
                };
                let at = root_path.join(rel);
                if let Some(parent) = at.parent() {
                    if std::fs::create_dir_all(parent).is_err() {
                        continue;
                    }
                }
                let _ = match (what, p) {
                    (0, _) => std::fs::write(&at, b"in"),
                    (1, _) => std::fs::create_dir_all(&at),
                    (_, Plant::Link(_, t)) => {
                        let target = if *t == "OUT" { outside.clone() } else { PathBuf::from(t) };
                        std::os::unix::fs::symlink(target, &at)
                    }
                    _ => Ok(()),
                };
            }
            let before: Vec<_> = walk_all(&outside);
            let r = Root::open(&root_path).expect("root");
            let canon = std::fs::canonicalize(&root_path).expect("canon");
            for k in &keys {
                if let Ok(Some(Node::File(f, _))) = r.node(k) {
                    prop_assert!(real(&f).starts_with(&canon), "{k} opened {:?}", real(&f));
                }
                if let Ok(dir) = r.make_folders(&format!("{k}/n")) {
                    prop_assert!(real(&dir).starts_with(&canon), "{k} made {:?}", real(&dir));
                }
                let _ = r.remove(k);
                if let Ok(w) = Walk::new(r.dir(), k, after.as_deref(), false) {
                    for item in w.take(200) {
                        if let Ok(Walked::Key(f)) = item {
                            prop_assert!(f.key.starts_with(k.as_str()));
                            prop_assert!(after.as_deref().is_none_or(|a| f.key.as_str() > a));
                            if !f.is_folder() {
                                let file = f.open().expect("open listed");
                                prop_assert!(real(&file).starts_with(&canon), "{} is {:?}", f.key, real(&file));
                            }
                        }
                    }
                }
            }
            prop_assert_eq!(before, walk_all(&outside), "the outside folder changed");
        }
    }

    fn walk_all(p: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(p).expect("dir").flatten() {
            let ft = e.file_type().expect("type");
            if ft.is_dir() {
                out.extend(walk_all(&e.path()));
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap_or_default()));
            }
        }
        out.sort();
        out
    }
}
