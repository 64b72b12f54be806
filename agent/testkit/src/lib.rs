//! Real servers for the tests and the benchmarks: SeaweedFS (`weed mini`, from the venv that
//! `scripts/setup` makes), Mosquitto and an RTSP server, each on free loopback ports, killed
//! when dropped. Not used by the daemon itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_KEY: &str = "fogdtestkey";
pub const S3_SECRET: &str = "fogdtestsecret";

/// A block of `n` consecutive free ports (SeaweedFS needs ten).
pub fn free_ports(n: u16) -> u16 {
    for _ in 0..200 {
        let base = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(20000);
        if base > 60000 {
            continue;
        }
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no block of {n} free ports")
}

/// `weed` from PATH, or from the venv that `scripts/setup` makes.
pub fn weed_bin() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    let here = Path::new(".venv/bin/weed");
    if here.exists() {
        return here.to_path_buf();
    }
    PathBuf::from("weed")
}

/// A SeaweedFS `weed mini` (master, volume, filer, S3) on loopback, killed when dropped.
pub struct SeaweedFs {
    child: Option<Child>,
    pub dir: PathBuf,
    pub base: u16,
    pub endpoint: String,
}

impl SeaweedFs {
    pub fn start(dir: &Path) -> SeaweedFs {
        let base = free_ports(10);
        let mut s = SeaweedFs {
            child: None,
            dir: dir.to_path_buf(),
            base,
            endpoint: format!("http://127.0.0.1:{}", base + 6),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).expect("weed dir");
        let cfg = self.dir.join("s3.json");
        let identities = format!(
            r#"{{"identities":[{{"name":"fogd","credentials":[{{"accessKey":"{S3_KEY}","secretKey":"{S3_SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(&cfg, identities).expect("s3 config");
        let p = self.base;
        let log = std::fs::File::create(self.dir.join("weed.log")).expect("log");
        let child = Command::new(weed_bin())
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
            ])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-master.port={p}"))
            .arg(format!("-master.port.grpc={}", p + 1))
            .arg(format!("-volume.port={}", p + 2))
            .arg(format!("-volume.port.grpc={}", p + 3))
            .arg(format!("-filer.port={}", p + 4))
            .arg(format!("-filer.port.grpc={}", p + 5))
            .arg(format!("-s3.port={}", p + 6))
            .arg(format!("-s3.port.grpc={}", p + 7))
            .arg(format!("-admin.port={}", p + 8))
            .arg(format!("-admin.port.grpc={}", p + 9))
            .arg(format!("-s3.config={}", cfg.display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} (run scripts/setup): {e}", weed_bin().display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            // The S3 port opens before the filer behind it is ready: wait for both to answer.
            if http_answers(self.base + 4) && http_answers(self.base + 6) {
                std::thread::sleep(Duration::from_millis(200));
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        panic!("SeaweedFS did not start in 60 s:\n{log}");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// An FDL `storage_providers` block naming this server `minio.<id>`.
    pub fn provider_yaml(&self, id: &str, key: &str, secret: &str) -> String {
        format!(
            "storage_providers:\n  minio:\n    {id}:\n      endpoint: {}\n      access_key: {key}\n      secret_key: {secret}\n      region: us-east-1\n",
            self.endpoint
        )
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Does an HTTP server answer on this loopback port (any status)?
fn http_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

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
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rtsp/serve.py");
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

/// A `fogd run` process with its gateway on a free loopback port and its own data folder,
/// stopped (SIGTERM) when dropped. The two-node delegation test and `fogd bench continuum` use
/// it.
pub struct FogdNode {
    child: Option<Child>,
    pub dir: PathBuf,
    pub url: String,
    pub password: String,
}

impl FogdNode {
    /// `extra_yaml` is added to the node's `fogd.yaml` (concurrency, delegation, ...);
    /// `{gateway}` in it becomes the node's own gateway URL. A `gateway:` block of its own
    /// (for more gateway settings) gives `listen: '{listen}'`, which becomes the node's address.
    /// `fdl`: the workflow `fogd run` runs (none: the API's services only).
    pub fn start(bin: &Path, dir: &Path, name: &str, extra_yaml: &str, fdl: Option<&Path>) -> FogdNode {
        std::fs::create_dir_all(dir).expect("node dir");
        let port = free_ports(1);
        let addr = format!("127.0.0.1:{port}");
        let extra = extra_yaml
            .replace("{gateway}", &format!("http://{addr}"))
            .replace("{listen}", &addr);
        let gateway = if extra.lines().any(|l| l.starts_with("gateway:")) {
            String::new()
        } else {
            format!("gateway:\n  listen: {addr}\n")
        };
        let cfg = dir.join("fogd.yaml");
        std::fs::write(
            &cfg,
            format!("data_dir: data\nnode_name: {name}\n{gateway}{extra}"),
        )
        .expect("fogd.yaml");
        let password = format!("{name}-password");
        let st = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .args(["admin", "reset-password", "--password", &password])
            .output()
            .expect("fogd admin");
        assert!(st.status.success(), "fogd admin: {st:?}");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .args(fdl)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("fogd.log")).expect("log"),
            ))
            .spawn()
            .expect("fogd run");
        let t0 = Instant::now();
        while !http_answers(port) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "{name}: gateway did not answer; see {}",
                dir.join("fogd.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        FogdNode {
            child: Some(child),
            dir: dir.to_path_buf(),
            url: format!("http://127.0.0.1:{port}"),
            password,
        }
    }

    /// `kill -9`: no goodbye, as a power cut or a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The node's journal, opened beside the running process (SQLite WAL allows it).
    pub fn journal(&self) -> fogd::journal::Journal {
        fogd::journal::Journal::open(
            &self.dir.join("data/journal.sqlite"),
            fogd::config::JournalSync::Normal,
        )
        .expect("journal")
    }

    /// `POST /job/<service>` with `content` as the input file named `name`.
    pub async fn submit(&self, http: &reqwest::Client, service: &str, name: &str, content: &[u8]) {
        use base64::Engine;
        let r = http
            .post(format!("{}/job/{service}", self.url))
            .basic_auth("oscar", Some(&self.password))
            .header("X-Fogd-Input-Name", name)
            .body(base64::engine::general_purpose::STANDARD.encode(content))
            .send()
            .await
            .expect("POST /job");
        assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    }
}

impl Drop for FogdNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(10) {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A binary of the workspace (`fogd`, `fogd-vision`, `fogd-bench`) from the target folder the
/// running test was built into: a test of one package can run another package's binary (cargo
/// builds them all before it runs a test of `cargo test --workspace`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join(name))
        .expect("target folder");
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (scripts/test does)",
        bin.display()
    );
    bin
}

/// The repository's root (examples, models and fixtures the tests read live under it).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
