//! `fogd validate` and `fogd graph` as a user runs them.

use std::path::Path;
use std::process::{Command, Output};

fn fogd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fogd"))
        .args(args)
        .output()
        .expect("run fogd")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn conformance(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/fdl")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

const MASK: &str = "grycap_oscar__examples__mask-detector-workflow__mask-detector-workflow.yaml";

#[test]
fn validate_prints_services_providers_links_and_exits_zero_when_valid() {
    let o = fogd(&["validate", "--schema-only", &conformance(MASK)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(": valid (0 error(s), 0 warning(s))"), "{out}");
    assert!(
        out.contains("anon-and-split [oscar cluster my_oscar] image grycap/blurry-faces"),
        "{out}"
    );
    assert!(out.contains("in  minio.default:mask-detector/input"), "{out}");
    assert!(out.contains("providers: minio.default (implicit)"), "{out}");
    assert!(out.contains("links: anon-and-split -> mask-detector"), "{out}");
    assert!(
        out.contains("runs the script on this host, not the image"),
        "{out}"
    );
}

#[test]
fn validate_without_schema_only_needs_the_scripts() {
    let o = fogd(&["validate", &conformance(MASK)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("functions.oscar[0].my_oscar.script: script"),
        "{out}"
    );
    assert!(out.contains("blurry-faces.sh` not found"), "{out}");
}

#[test]
fn validate_json_is_machine_readable() {
    let o = fogd(&["validate", "--schema-only", "--json", &conformance(MASK)]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let svcs = &v[0]["workflow"]["services"];
    assert_eq!(svcs[0]["name"], "anon-and-split");
    assert_eq!(svcs[0]["memory_bytes"], 2u64 << 30);
    assert_eq!(svcs[1]["inputs"][0]["path"], "mask-detector/intermediate");
}

#[test]
fn several_files_and_a_missing_one() {
    let o = fogd(&[
        "validate",
        "--schema-only",
        &conformance(MASK),
        "/nonexistent/x.yaml",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("error: /nonexistent/x.yaml: cannot open"), "{out}");
    assert!(out.contains("2 file(s): 1 valid, 1 invalid"), "{out}");
}

#[test]
fn graph_formats() {
    let f = conformance(MASK);
    let text = stdout(&fogd(&["graph", "--schema-only", &f]));
    assert!(
        text.contains("anon-and-split -> mask-detector  via minio.default:mask-detector/intermediate"),
        "{text}"
    );
    assert!(
        text.contains("minio.default:mask-detector/input -> anon-and-split"),
        "{text}"
    );
    assert!(
        text.contains("mask-detector -> minio.default:mask-detector/result"),
        "{text}"
    );
    assert!(text.contains("cycles: none"), "{text}");
    let mermaid = stdout(&fogd(&["graph", "--schema-only", "--format", "mermaid", &f]));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("s0 -->|\"minio.default:mask-detector/intermediate\"| s1"),
        "{mermaid}"
    );
    let dot = stdout(&fogd(&["graph", "--schema-only", "--format", "dot", &f]));
    assert!(
        dot.starts_with("digraph workflow {") && dot.trim_end().ends_with('}'),
        "{dot}"
    );
    assert!(
        dot.contains("s0 -> s1 [label=\"minio.default:mask-detector/intermediate\"];"),
        "{dot}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&fogd(&["graph", "--schema-only", "--format", "json", &f]).stdout)
            .expect("json");
    assert_eq!(json["edges"].as_array().map(Vec::len), Some(1));
}

#[test]
fn graph_spans_files_and_reports_cycles() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "functions:\n  oscar:\n  - c:\n      name: split\n      image: x\n      script: s.sh\n      input: [{storage_provider: minio, path: v/in}]\n      output: [{storage_provider: minio, path: v/frames}]\n").expect("w");
    std::fs::write(&b, "functions:\n  oscar:\n  - c:\n      name: detect\n      image: x\n      script: s.sh\n      input: [{storage_provider: minio, path: v/frames}]\n      output: [{storage_provider: minio, path: v/in/again}]\n").expect("w");
    let o = fogd(&[
        "graph",
        "--schema-only",
        a.to_str().unwrap_or(""),
        b.to_str().unwrap_or(""),
    ]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("split -> detect  via minio.default:v/frames"),
        "{text}"
    );
    assert!(
        text.contains("detect -> split  via minio.default:v/in/again"),
        "{text}"
    );
    assert!(
        text.contains("cycles (each output re-triggers the chain forever):\n  split -> detect -> split"),
        "{text}"
    );
    // `validate` shows the same cycle as a note.
    let v = stdout(&fogd(&["validate", "--schema-only", a.to_str().unwrap_or("")]));
    assert!(!v.contains("cycle"), "{v}");
}

#[test]
fn graph_refuses_invalid_files() {
    let dir = tempfile::tempdir().expect("tmp");
    let a = dir.path().join("bad.yaml");
    std::fs::write(&a, "functions: 1\n").expect("w");
    let o = fogd(&["graph", a.to_str().unwrap_or("")]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:1:1: functions: invalid type"), "{err}");
}

#[test]
fn check_reports_each_part_and_fails_on_a_bad_workflow() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "functions:\n  oscar:\n  - c:\n      name: a\n      image: x\n      script: s.sh\n      input: [{storage_provider: minio, path: a/in}]\n").expect("w");
    std::fs::write(dir.path().join("s.sh"), ":\n").expect("w");
    std::fs::write(
        dir.path().join("fogd.yaml"),
        "data_dir: data\nworkflows: [good.yaml]\ngateway: {listen: '127.0.0.1:0'}\n",
    )
    .expect("w");
    let cfg = dir.path().join("fogd.yaml");
    let o = fogd(&["--config", cfg.to_str().unwrap_or(""), "check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for part in [
        "ok    data folder",
        "ok    journal",
        "ok    workflow",
        "ok    store              minio.default: local folder",
        "ok    executor",
        "ok    clock",
    ] {
        assert!(out.contains(part), "{part}: {out}");
    }
    std::fs::write(&good, "functions: 1\n").expect("w");
    let o = fogd(&["--config", cfg.to_str().unwrap_or(""), "check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL  workflow") && out.contains("good.yaml:1:1: functions: invalid type"),
        "{out}"
    );
}

/// The example workflows are valid, with no warnings; the hybrid one delegates its detector.
#[test]
fn example_workflows_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/camera-ingest");
    let files: Vec<String> = [
        "workflow.yaml",
        "workflow-s3.yaml",
        "workflow-hybrid.yaml",
        "cloud-workflow.yaml",
    ]
    .iter()
    .map(|f| dir.join(f).to_string_lossy().into_owned())
    .collect();
    let args: Vec<&str> = std::iter::once("validate")
        .chain(files.iter().map(String::as_str))
        .collect();
    let o = fogd(&args);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        out.matches("valid (0 error(s), 0 warning(s))").count(),
        4,
        "{out}"
    );
    assert!(out.contains("delegates (static) to cloud"), "{out}");
}

/// A push member needs its store; an unknown member type is named with its line.
#[test]
fn bad_delegation_members_are_errors_with_their_field() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("s.sh"), "true\n").expect("script");
    let f = tmp.path().join("bad.yaml");
    std::fs::write(
        &f,
        "functions:
  oscar:
  - edge:
      name: svc
      image: x
      script: s.sh
      input: [{storage_provider: minio, path: in}]
      replicas:
      - {type: push, path: cloud/in}
      - {type: carrier-pigeon}
",
    )
    .expect("fdl");
    let o = fogd(&["validate", &f.to_string_lossy()]);
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("replica of type push needs `storage_provider` and `path`"),
        "{all}"
    );
    assert!(
        all.contains("replica type `carrier-pigeon` is not `oscar`, `endpoint` or `push`"),
        "{all}"
    );
    assert!(all.contains("replicas[1].type"), "{all}");
}

/// The first lines `fogd run` writes on stderr (a fresh data folder: its first start warns that
/// an admin password was generated), in the given log format; stopped once the warning came.
fn first_log_lines(format: Option<&str>) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tmp.path().join("fogd.yaml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir: {}\ngateway: {{listen: '127.0.0.1:0'}}\n",
            tmp.path().join("data").display()
        ),
    )
    .expect("cfg");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fogd"));
    cmd.arg("--config").arg(&cfg).arg("run");
    if let Some(f) = format {
        cmd.args(["--log-format", f]);
    }
    let mut child = cmd
        .env_remove("JOURNAL_STREAM")
        .env_remove("FOGD_LOG_FORMAT")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fogd run");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(30)) {
        let done = line.contains("password was generated");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("password was generated")),
        "{lines:?}"
    );
    lines
}

#[test]
fn log_lines_fit_a_file_the_journal_or_a_log_shipper() {
    // Not a terminal: no colour codes.
    let text = first_log_lines(None);
    assert!(text.iter().all(|l| !l.contains('\u{1b}')), "{text:?}");
    assert!(text.iter().any(|l| l.contains(" WARN ")), "{text:?}");
    // journald: the syslog priority first, so `journalctl -p warning` finds warnings.
    let journal = first_log_lines(Some("journald"));
    let warn = journal
        .iter()
        .find(|l| l.contains("password was generated"))
        .expect("warning");
    assert!(warn.starts_with("<4>"), "{warn}");
    assert!(
        journal
            .iter()
            .any(|l| l.starts_with("<6>") && l.contains("store ready")),
        "{journal:?}"
    );
    assert!(journal.iter().all(|l| !l.contains('\u{1b}')), "{journal:?}");
    // JSON: one object a line, with its level.
    let json = first_log_lines(Some("json"));
    for l in &json {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
        assert!(v["level"].is_string(), "{l}");
    }
    let warn = json
        .iter()
        .find(|l| l.contains("password was generated"))
        .expect("warning");
    assert!(warn.contains("\"level\":\"WARN\""), "{warn}");
}

/// What a script relies on: `--json` documents, FOGD_CONFIG, and exit statuses that tell a wrong
/// command line (2), a negative answer (1), a failure (3) and a wrong configuration (78) apart.
#[test]
fn scripts_get_json_distinct_exit_statuses_and_fogd_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("fogd.yaml");
    std::fs::write(
        &cfg,
        "data_dir: data\ngateway: {listen: '127.0.0.1:0'}\nmin_free_bytes: 1MiB\n",
    )
    .expect("w");
    // FOGD_CONFIG instead of --config, and `check --json`.
    let o = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .args(["check", "--json"])
        .env("FOGD_CONFIG", &cfg)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(v["ok"], true);
    let checks = v["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "config" && c["detail"].as_str() == cfg.to_str()),
        "{v}"
    );
    assert!(
        checks
            .iter()
            .all(|c| c["result"] == "ok" || c["result"] == "warn"),
        "{v}"
    );
    // Usage error.
    let o = fogd(&["check", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let o = fogd(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    // A configuration error: 78, naming the file and the field.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "min_free_bytes: lots\n").expect("w");
    let o = fogd(&["--config", bad.to_str().unwrap_or(""), "jobs"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(78), "{err}");
    assert!(
        err.contains("bad.yaml") && err.contains("min_free_bytes") && err.contains("`lots`"),
        "{err}"
    );
    // A runtime failure: 3.
    let o = fogd(&["--config", cfg.to_str().unwrap_or(""), "logs", "nothing"]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    // Completions and the manual page, generated from the same command line.
    let o = fogd(&["completions", "bash"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("complete -F") && stdout(&o).contains("detect-masks"));
    let o = fogd(&["man"]);
    assert!(
        stdout(&o).starts_with(".ie") || stdout(&o).contains(".TH fogd"),
        "{}",
        stdout(&o)
    );
}
