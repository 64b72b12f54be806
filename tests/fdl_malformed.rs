//! Malformed FDL: each case gives its own clear message (naming the field and, where there is one,
//! the line), a non-zero exit from `fogd validate`, and never a panic.

use std::path::Path;
use std::process::Command;

use fogd::fdl::{load_file, load_str, LoadOptions, Report, Severity};

/// A valid one-service file; cases replace one line of it.
const BASE: &str = "functions:
  oscar:
  - edge:
      name: anon
      image: grycap/blurry-faces
      script: blur.sh
      memory: 1Gi
      cpu: '1.0'
      input:
      - storage_provider: minio
        path: mask/input
      output:
      - storage_provider: minio.default
        path: mask/output
";

fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

struct Case {
    id: &'static str,
    text: String,
    /// Expected in the message.
    message: &'static str,
    /// Expected field path ("" = none expected).
    path: &'static str,
    /// Expected line, when the error has one.
    line: Option<u64>,
}

fn case(
    id: &'static str,
    text: impl Into<String>,
    message: &'static str,
    path: &'static str,
    line: Option<u64>,
) -> Case {
    Case {
        id,
        text: text.into(),
        message,
        path,
        line,
    }
}

fn nested(depth: usize) -> String {
    format!("functions: {}1{}\n", "[".repeat(depth), "]".repeat(depth))
}

fn alias_bomb() -> String {
    let mut s =
        String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 1..10u8 {
        let (p, c) = ((b'a' + i - 1) as char, (b'a' + i) as char);
        let refs = vec![format!("*{p}"); 9].join(",");
        s.push_str(&format!("{c}: &{c} [{refs}]\n"));
    }
    s.push_str("functions: *j\n");
    s
}

fn cases() -> Vec<Case> {
    let svc = "functions.oscar[0].edge";
    vec![
        case("empty", "", "file is empty", "", None),
        case("only-comments", "# nothing\n---\n", "file holds only comments", "", None),
        case("top-level-list", "- a\n- b\n", "expected a map", "", Some(1)),
        case("no-functions", "storage_providers: {}\n", "missing field `functions`", "", Some(1)),
        case("functions-int", "functions: 42\n", "invalid type: integer `42`", "functions", Some(1)),
        case("functions-empty", "functions: {}\n", "defines no function", "functions", None),
        case("missing-name", with("      name: anon\n", ""), "missing field `name`", svc, None),
        case("missing-image", with("      image: grycap/blurry-faces\n", ""), "missing field `image`", svc, None),
        case("name-list", with("name: anon", "name: [anon]"), "expected a string", "functions.oscar[0].edge.name", Some(4)),
        case("name-upper", with("name: anon", "name: Anon"), "contains `A`", "functions.oscar[0].edge.name", Some(4)),
        case("name-slash", with("name: anon", "name: a/b"), "contains `/`", "functions.oscar[0].edge.name", Some(4)),
        case("name-300", with("name: anon", &format!("name: {}", "a".repeat(300))), "at most 39", "functions.oscar[0].edge.name", Some(4)),
        case("bool-maybe", with("      cpu: '1.0'\n", "      cpu: '1.0'\n      enable_gpu: maybe\n"), "invalid boolean", "functions.oscar[0].edge.enable_gpu", Some(9)),
        case("memory-2GB", with("memory: 1Gi", "memory: 2GB"), "`2GB` is not a memory size", "functions.oscar[0].edge.memory", Some(7)),
        case("memory-negative", with("memory: 1Gi", "memory: -1Gi"), "not a memory size", "functions.oscar[0].edge.memory", Some(7)),
        case("cpu-placeholder", with("cpu: '1.0'", "cpu: ${CPU}"), "`${CPU}` is a template placeholder", "functions.oscar[0].edge.cpu", Some(8)),
        case("cpu-word", with("cpu: '1.0'", "cpu: two"), "`two` is not a CPU amount", "functions.oscar[0].edge.cpu", Some(8)),
        case("cpu-zero", with("cpu: '1.0'", "cpu: 0"), "not a CPU amount", "functions.oscar[0].edge.cpu", Some(8)),
        case("input-map", with("      input:\n      - storage_provider: minio\n        path: mask/input\n", "      input: {storage_provider: minio, path: mask/input}\n"), "expected a list", "functions.oscar[0].edge.input", Some(9)),
        case("provider-type", with("storage_provider: minio\n", "storage_provider: ftp\n"), "unknown storage provider type `ftp`", "functions.oscar[0].edge.input[0].storage_provider", Some(10)),
        case("provider-dangling", with("storage_provider: minio.default", "storage_provider: s3.nowhere"), "`s3.nowhere` is not declared", "functions.oscar[0].edge.output[0].storage_provider", Some(13)),
        case("io-missing-path", with("        path: mask/input\n", ""), "missing field `path`", "functions.oscar[0].edge.input[0]", None),
        case("path-dotdot", with("path: mask/input", "path: mask/../../etc"), "contains `..`", "functions.oscar[0].edge.input[0].path", Some(11)),
        case("path-absolute", with("path: mask/output", "path: /etc/passwd"), "starts with `/`", "functions.oscar[0].edge.output[0].path", Some(14)),
        case("path-empty", with("path: mask/input", "path: ''"), "is empty", "functions.oscar[0].edge.input[0].path", Some(11)),
        case("path-double-slash", with("path: mask/input", "path: mask//input"), "empty segment", "functions.oscar[0].edge.input[0].path", Some(11)),
        case("suffix-slash", with("        path: mask/output\n", "        path: mask/output\n        suffix: [a/b]\n"), "suffix `a/b`", "functions.oscar[0].edge.output[0].suffix[0]", Some(14)),
        case("duplicate-service", format!("{BASE}  - edge:\n      name: anon\n      image: x\n      script: blur.sh\n"), "service `anon` is defined twice in cluster `edge`", "", Some(16)),
        case("duplicate-yaml-key", with("      image: grycap/blurry-faces\n", "      image: a\n      image: b\n"), "duplicate mapping key: image", svc, Some(6)),
        case("unclosed-flow", "functions:\n  oscar:\n  - c: {name: a, image: x\n", "unclosed bracket", "functions.oscar[0].c", Some(3)),
        case("tab-indent", "functions:\n\toscar: []\n", "tab", "", Some(2)),
        case("two-documents", format!("{BASE}---\nfunctions: {{}}\n"), "one YAML document", "", Some(16)),
        case("alias-bomb", alias_bomb(), "alias bomb", "", None),
        case("nesting-10000", nested(10_000), "nesting is deeper", "", Some(1)),
        case("lambda-memory", "functions:\n  aws:\n  - lambda:\n      name: f\n      memory: 1Gi\n      container: {image: x}\n", "whole number of MB", "functions.aws[0].lambda.memory", Some(5)),
        case("lambda-no-image", "functions:\n  aws:\n  - lambda:\n      name: f\n      init_script: s.sh\n", "has no image", "functions.aws[0].lambda", Some(4)),
        case("lambda-mode", "functions:\n  aws:\n  - lambda:\n      name: f\n      execution_mode: gpu\n      container: {image: x}\n", "execution_mode `gpu`", "functions.aws[0].lambda.execution_mode", Some(5)),
        case("aws-no-lambda", "functions:\n  aws:\n  - iam: {role: r}\n", "missing `lambda:` block", "functions.aws[0]", None),
        case("replica-dangling", with("      memory: 1Gi\n", "      memory: 1Gi\n      replicas:\n      - type: oscar\n        cluster_id: cloud\n"), "replica cluster `cloud` is not declared", "functions.oscar[0].edge.replicas[0].cluster_id", Some(10)),
        case("replica-type", with("      memory: 1Gi\n", "      memory: 1Gi\n      replicas:\n      - type: ftp\n        url: x\n"), "replica type `ftp`", "functions.oscar[0].edge.replicas[0].type", Some(9)),
        case("provider-id-dot", format!("{BASE}storage_providers:\n  s3:\n    a.b: {{}}\n"), "provider id `a.b`", "storage_providers.s3.a.b", None),
        case("storage-provider-number", with("storage_provider: minio\n", "storage_provider: 5\n"), "unknown storage provider type `5`", "functions.oscar[0].edge.input[0].storage_provider", Some(10)),
    ]
}

fn first_error(r: &Report) -> &fogd::fdl::Diagnostic {
    r.diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap_or_else(|| panic!("{}: no error in {:#?}", r.file.display(), r.diagnostics))
}

#[test]
fn each_malformed_case_has_its_own_clear_message() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let opts = LoadOptions {
        schema_only: true,
        ..Default::default()
    };
    let mut messages = std::collections::BTreeSet::new();
    let mut wrong = Vec::new();
    for c in &cases {
        let r = load_str(&c.text, Path::new(&format!("{}.yaml", c.id)), opts);
        assert!(!r.is_valid(), "{}: accepted", c.id);
        let e = first_error(&r);
        let ok = e.message.contains(c.message)
            && e.path.as_deref().unwrap_or("") == c.path
            && (c.line.is_none() || e.line == c.line)
            && e.to_string().starts_with(&format!("error: {}.yaml", c.id));
        if !ok {
            wrong.push(format!(
                "{}: got `{e}`; want {:?} at {:?} line {:?}",
                c.id, c.message, c.path, c.line
            ));
        }
        messages.insert(e.message.clone());
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(messages.len(), cases.len(), "every case has a message of its own");
}

#[test]
fn binary_garbage_is_refused_as_not_text() {
    let mut junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    junk[0] = 0xff;
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("junk.yaml");
    std::fs::write(&f, &junk).expect("write");
    let r = load_file(&f, LoadOptions::default());
    assert!(
        first_error(&r).message.contains("not UTF-8"),
        "{:?}",
        r.diagnostics
    );
}

#[test]
fn a_50_mb_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("huge.yaml");
    let line = format!("# {}\n", "x".repeat(1021));
    let mut text = String::from("functions:\n");
    while text.len() < 50_000_000 {
        text.push_str(&line);
    }
    std::fs::write(&f, text).expect("write");
    let r = load_file(&f, LoadOptions::default());
    assert!(
        first_error(&r)
            .message
            .contains("50.0 MB; an FDL file may be at most 4 MiB"),
        "{:?}",
        r.diagnostics
    );
}

#[test]
fn missing_and_present_scripts_are_resolved_next_to_the_fdl() {
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("wf.yaml");
    std::fs::write(&f, BASE).expect("write");
    let r = load_file(&f, LoadOptions::default());
    let e = first_error(&r);
    assert_eq!(e.path.as_deref(), Some("functions.oscar[0].edge.script"));
    assert!(e.message.contains("blur.sh` not found"), "{e}");
    assert_eq!(e.line, Some(6));
    std::fs::write(dir.path().join("blur.sh"), "echo hi\n").expect("write");
    let r = load_file(&f, LoadOptions::default());
    assert!(r.is_valid(), "{:?}", r.diagnostics);
    // No script at all: an error, or a warning with --schema-only.
    let no_script = BASE.replace("      script: blur.sh\n", "");
    let r = load_str(&no_script, &f, LoadOptions::default());
    assert!(first_error(&r).message.contains("has no `script`"));
    let r = load_str(
        &no_script,
        &f,
        LoadOptions {
            schema_only: true,
            ..Default::default()
        },
    );
    assert!(r.is_valid() && r.warnings().any(|w| w.message.contains("has no `script`")));
}

#[test]
fn warnings_do_not_invalidate() {
    let text = with(
        "      cpu: '1.0'\n",
        "      cpu: '1.0'\n      log_level: chatty\n      colour: blue\n",
    );
    let r = load_str(
        &text,
        Path::new("w.yaml"),
        LoadOptions {
            schema_only: true,
            ..Default::default()
        },
    );
    assert!(r.is_valid(), "{:?}", r.diagnostics);
    let w: Vec<String> = r.warnings().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|w| w.contains("w.yaml:9:18: functions.oscar[0].edge.log_level: log_level `chatty`")),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("w.yaml:10:7: functions.oscar[0].edge.colour: unknown key `colour` ignored")),
        "{w:?}"
    );
}

/// The same cases through the binary: exit status 1, the message on stdout, no panic. The alias
/// bomb and the deep nesting run under a 512 MiB address-space limit, so a blow-up would kill it.
#[test]
fn cli_exits_non_zero_and_never_panics() {
    let dir = tempfile::tempdir().expect("tmp");
    let bin = env!("CARGO_BIN_EXE_fogd");
    for c in cases() {
        let f = dir.path().join(format!("{}.yaml", c.id));
        std::fs::write(&f, &c.text).expect("write");
        let out = Command::new("sh")
            .arg("-c")
            .arg(r#"ulimit -v 524288; exec "$0" validate "$1""#)
            .arg(bin)
            .arg(&f)
            .output()
            .expect("run fogd");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stdout}{stderr}", c.id);
        assert!(!stderr.contains("panicked"), "{}: {stderr}", c.id);
        assert!(
            stdout.contains("INVALID") && stdout.contains(c.message),
            "{}: {stdout}",
            c.id
        );
    }
}
