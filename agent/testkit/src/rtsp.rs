//! A real RTSP server for the tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::*;

/// A real RTSP server (GStreamer's gst-rtsp-server, `tests/rtsp/serve.py`, installed by
/// `scripts/setup`) serving an H.264 MP4 file in real time at `url`, as a camera would.
pub struct RtspServer {
    child: Child,
    pub url: String,
}

impl RtspServer {
    /// Started and listening (it says `ready`), or a panic naming what is missing.
    pub fn start(clip: &Path) -> RtspServer {
        let port = free_ports(1);
        let script = repo().join("tests/rtsp/serve.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(clip)
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3");
        let mut ready = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut ready);
        }
        let server = RtspServer {
            child,
            url: format!("rtsp://127.0.0.1:{port}/cam"),
        };
        assert_eq!(
            ready.trim(),
            "ready",
            "the RTSP server did not start (scripts/setup installs python3-gi and gir1.2-gst-rtsp-server-1.0)"
        );
        server
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
