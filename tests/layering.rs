//! The house rules of the design that a compiler does not check: in no crate do two top-level
//! modules import each other (directly or through a cycle), and no source file grows past 500
//! lines unless it is listed here with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The sources of every crate of the workspace, by crate.
const CRATES: [(&str, &str); 7] = [
    ("fogd", "src"),
    ("fogd-fdl", "fdl/src"),
    ("fogd-vision", "vision/src"),
    ("fogd-vision-proto", "vision-proto/src"),
    ("fogd-testkit", "testkit/src"),
    ("fogd-bench", "bench/src"),
    ("fogd-log", "log/src"),
];

fn crate_src(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module -> the top-level modules its code names (`crate::x`, `use crate::{x, ..}`,
/// and `super::x` in a file at the crate's root), test modules left out (a test may reach
/// across).
fn imports(root: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root).expect("under src");
        let first = rel.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if matches!(module.as_str(), "lib" | "main") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("read");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        // In a file at the root, `super::` is the crate.
        let prefixes: &[&str] = if rel.components().count() == 1 {
            &["crate::", "super::"]
        } else {
            &["crate::"]
        };
        let uses = prefixes
            .iter()
            .flat_map(|p| code.match_indices(p).map(move |(i, _)| i + p.len()));
        for i in uses {
            let rest = &code[i..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                group[..end]
                    .split(',')
                    .map(|s| s.trim().split("::").next().unwrap_or_default())
                    .collect()
            } else {
                vec![rest
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or_default()]
            };
            for n in names {
                let n = n.trim();
                if !n.is_empty() && n != module && n.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
                    deps.insert(n.to_string());
                }
            }
        }
    }
    graph
}

/// Every import cycle between a crate's top-level modules, each named once.
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    // By a depth-first search from each module.
    let mut cycles = BTreeSet::new();
    for start in g.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in g.get(&at).into_iter().flatten() {
                if next == start {
                    let mut c = path.clone();
                    // One name per cycle: rotated to its smallest member.
                    let min = c
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, m)| m.as_str())
                        .map_or(0, |(i, _)| i);
                    c.rotate_left(min);
                    cycles.insert(c.join(" -> "));
                } else if !path.contains(next) && g.contains_key(next) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    cycles
}

#[test]
fn no_two_top_level_modules_import_each_other() {
    let mut found = Vec::new();
    for (name, dir) in CRATES {
        let g = imports(&crate_src(dir));
        if name == "fogd" {
            assert!(g.len() > 10, "modules found: {:?}", g.keys());
        }
        let c = cycles(&g);
        if !c.is_empty() {
            found.push(format!("{name}: {c:#?}\ngraph: {g:#?}"));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between top-level modules:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_cycle_check_sees_a_cycle() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("b")).expect("mkdir");
    std::fs::write(dir.path().join("a.rs"), "use super::b::Thing;\n").expect("a");
    std::fs::write(dir.path().join("b/mod.rs"), "use crate::{a::Other, c};\n").expect("b");
    // Only its tests name `a`: no cycle through `c`.
    std::fs::write(
        dir.path().join("c.rs"),
        "pub fn x() {}\n#[cfg(test)]\nuse crate::a;\n",
    )
    .expect("c");
    let g = imports(dir.path());
    assert_eq!(cycles(&g), BTreeSet::from(["a -> b".to_string()]), "{g:?}");
}

/// Files allowed over the limit, with the reason (keep this list short).
const LONG_FILES: &[(&str, &str)] = &[];

#[test]
fn source_files_stay_under_500_lines() {
    let mut files = Vec::new();
    for dir in CRATES.iter().map(|(_, d)| *d).chain(["../tests"]) {
        rust_files(&crate_src(dir), &mut files);
    }
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).ok()?.lines().count();
            let name = f
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .ok()?
                .to_string_lossy()
                .into_owned();
            (lines > 500 && !LONG_FILES.iter().any(|(n, _)| name.ends_with(n)))
                .then(|| format!("{name}: {lines}"))
        })
        .collect();
    assert!(long.is_empty(), "files over 500 lines: {long:#?}");
}
