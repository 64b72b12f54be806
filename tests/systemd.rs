//! The systemd unit passes `systemd-analyze verify`, and `fogd run` speaks the notify protocol:
//! READY=1, watchdog pings at half of WatchdogSec, STOPPING=1.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn unit_file_verifies() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/arm64/fogd.service");
    let text = std::fs::read_to_string(&unit).expect("unit");
    let tmp = tempfile::tempdir().expect("tmp");
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let copy = tmp.path().join("fogd.service");
    std::fs::write(
        &copy,
        text.replace("/usr/local/bin/fogd", env!("CARGO_BIN_EXE_fogd")),
    )
    .expect("w");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

/// The sandbox holds: `systemd-analyze security` rates the unit at most 2.0 (it was 8.5 before
/// the sandbox directives). Offline: the unit is read, not loaded.
#[test]
fn unit_file_is_sandboxed() {
    let unit = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/arm64/fogd.service");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("exposure level for fogd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert!(level <= 2.0, "exposure {level}:\n{text}");
    // What fogd and its scripts need stays open.
    let unit = std::fs::read_to_string(&unit).expect("unit");
    for needed in [
        "ReadWritePaths=/var/lib/fogd",
        "AF_INET6",
        "AF_UNIX",
        "LimitNOFILE=65536",
    ] {
        assert!(unit.contains(needed), "{needed}");
    }
}

#[test]
fn ready_watchdog_and_stopping() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let port = common::free_ports(1);
    std::fs::write(
        tmp.path().join("fogd.yaml"),
        format!("data_dir: data\ngateway:\n  listen: 127.0.0.1:{port}\n"),
    )
    .expect("cfg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(tmp.path().join("fogd.yaml"))
        .arg("run")
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let mut got: Vec<String> = Vec::new();
    let mut buf = [0u8; 512];
    // Pings keep coming (WATCHDOG_USEC 300 ms: one every 150 ms); wait for a few, however
    // loaded the machine is.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20)
        && got.iter().filter(|m| m.contains("WATCHDOG=1")).count() < 5
    {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) && !got.iter().any(|m| m.contains("STOPPING=1")) {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    assert!(child.wait().expect("wait").success());
    assert!(got.first().is_some_and(|m| m.contains("READY=1")), "{got:?}");
    let pings = got.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(pings >= 5, "{pings} watchdog pings: {got:?}");
    assert!(got.last().is_some_and(|m| m.contains("STOPPING=1")), "{got:?}");
}
