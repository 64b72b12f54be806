//! Real servers for the tests and the benchmarks: SeaweedFS (`weed mini`, from the venv that
//! `scripts/setup` makes), Mosquitto and an RTSP server, each on free loopback ports, killed
//! when dropped. Not used by the daemon itself.

mod media;
mod mosquitto;
mod node;
mod rtsp;
mod s3;

pub use media::{jpeg_bomb, padded_jpeg, proc_status_kib};
pub use mosquitto::{openssl, self_signed, Mosquitto};
pub use node::FogdNode;
pub use rtsp::RtspServer;
pub use s3::{list_keys, s3_client, ServiceKeys};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const S3_KEY: &str = "fogdtestkey";
pub const S3_SECRET: &str = "fogdtestsecret";

/// A block of `n` consecutive free ports (SeaweedFS needs ten), below the kernel's ephemeral
/// range (32768 and up): a port found free there could be taken by any outgoing connection
/// before the server binds it.
pub fn free_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0);
    let mut x = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        ^ u64::from(std::process::id()) << 32
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 10_000 + (x % 22_000) as u16;
        if (0..n).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no block of {n} free ports")
}

/// `weed` from PATH, or from the venv that `scripts/setup` makes.
pub fn weed_bin() -> PathBuf {
    let venv = repo().join(".venv/bin/weed");
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
