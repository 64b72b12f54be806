//! The gateway over HTTPS, with a certificate and key from the config.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_ports;

/// HTTPS with a certificate and key from the config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_when_configured() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    common::self_signed(dir, "/CN=localhost", "key.pem", "cert.pem");
    let port = free_ports(1);
    std::fs::write(
        dir.join("fogd.yaml"),
        format!(
            "data_dir: data\ngateway:\n  listen: 127.0.0.1:{port}\n  tls: {{cert: cert.pem, key: key.pem}}\n"
        ),
    )
    .expect("cfg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fogd"))
        .arg("--config")
        .arg(dir.join("fogd.yaml"))
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run");
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let t0 = Instant::now();
    let body = loop {
        match http.get(format!("https://127.0.0.1:{port}/health")).send().await {
            Ok(r) => break r.text().await.expect("text"),
            Err(e) => {
                assert!(t0.elapsed() < Duration::from_secs(20), "no HTTPS: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(body, "Ok");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().expect("wait").success());
}
