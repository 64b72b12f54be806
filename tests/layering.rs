//! The house rules of the design that a compiler does not check: no two top-level modules of the
//! agent import each other (directly or through a cycle), and no source file grows past ~500
//! lines unless it is listed here with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// Top-level module -> the top-level modules its code names (`crate::x`, `use crate::{x, ..}`),
/// test modules left out (a test may reach across).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(&root).expect("under src");
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
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
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

#[test]
fn no_two_top_level_modules_import_each_other() {
    let g = imports();
    assert!(g.len() > 10, "modules found: {:?}", g.keys());
    // Every cycle, by a depth-first search from each module.
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
    assert!(
        cycles.is_empty(),
        "import cycles between top-level modules:\n{cycles:#?}\ngraph: {g:#?}"
    );
}

/// Files allowed over the limit, with the reason (keep this list short).
const LONG_FILES: &[(&str, &str)] = &[];

#[test]
fn source_files_stay_under_about_500_lines() {
    let mut files = Vec::new();
    for dir in [
        "src",
        "fdl/src",
        "vision/src",
        "testkit/src",
        "bench/src",
        "../tests",
    ] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
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
            (lines > 520 && !LONG_FILES.iter().any(|(n, _)| name.ends_with(n)))
                .then(|| format!("{name}: {lines}"))
        })
        .collect();
    assert!(long.is_empty(), "files over ~500 lines: {long:#?}");
}
