//! A real Mosquitto broker for the tests, plain or TLS.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A Mosquitto broker on a free loopback port. `persistent` keeps its sessions and queued
/// messages on disk across `restart` (a graceful stop saves them).
pub struct Mosquitto {
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
    /// The CA that signed the broker's certificate, when it listens with TLS.
    pub ca: Option<PathBuf>,
    /// Keeps sessions and messages on disk (the tests' default).
    pub persistent: bool,
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            dir: dir.to_path_buf(),
            port: free_ports(1),
            ca: None,
            persistent: true,
        };
        m.spawn();
        m
    }

    /// A broker that keeps nothing on disk: for benchmarks of fogd's own disk work.
    pub fn start_volatile(dir: &Path) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            dir: dir.to_path_buf(),
            port: free_ports(1),
            ca: None,
            persistent: false,
        };
        m.spawn();
        m
    }

    /// A broker that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA made for
    /// it (openssl), at `ca`.
    pub fn start_tls(dir: &Path) -> Mosquitto {
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        let run = |args: &[&str]| openssl(dir, args);
        self_signed(dir, "/CN=fogd test CA", "ca.key", "ca.pem");
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let mut m = Mosquitto {
            child: None,
            dir: dir.to_path_buf(),
            port: free_ports(1),
            ca: Some(dir.join("ca.pem")),
            persistent: true,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("mosquitto dir");
        let conf = self.dir.join("mosquitto.conf");
        // Large inflight and queue limits: fogd acknowledges in batches, and a persistent
        // session must keep every message that arrives while fogd is down.
        // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot write here.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root\n"
        } else {
            ""
        };
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence {}\npersistence_location {}/\n\
             max_inflight_messages 1000\nmax_queued_messages 0\nmax_queued_bytes 0\n\
             autosave_interval 1\nlog_dest file {}/mosquitto.log\n{user}{tls}",
            self.port,
            self.persistent,
            self.dir.display(),
            self.dir.display(),
            tls = if self.ca.is_some() {
                format!(
                    "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n",
                    d = self.dir.display()
                )
            } else {
                String::new()
            }
        );
        std::fs::write(&conf, text).expect("mosquitto.conf");
        let bin = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto (run scripts/setup): {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {} in 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops it gracefully (SIGTERM: it saves its sessions), then starts it on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `openssl ARGS` in `dir` (a test's certificates); panics when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let ok = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "openssl {args:?} failed");
}

/// A self-signed certificate (`cert`) and its key (`key`) in `dir`, valid two days.
pub fn self_signed(dir: &Path, subject: &str, key: &str, cert: &str) {
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject, "-keyout", key,
            "-out", cert,
        ],
    );
}
