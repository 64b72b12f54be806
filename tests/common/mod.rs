//! Helpers shared by the integration tests: a real SeaweedFS server on free loopback ports, and
//! waiting for the runtime.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fogd::config::Config;
use fogd::journal::{Invocation, State};
use fogd::runtime::Runtime;

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
    panic!("no block of {n} free ports");
}

/// `weed` from PATH, or from the venv that `scripts/setup` makes.
pub fn weed_bin() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/weed");
    if venv.exists() {
        return venv;
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
            if std::net::TcpStream::connect(("127.0.0.1", self.base + 6)).is_ok() {
                // The S3 port opens before the filer behind it is ready; give it a moment.
                std::thread::sleep(Duration::from_millis(700));
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

/// A runtime on `fdl` with its data under `dir`, and its scheduler running until dropped.
pub struct Daemon {
    pub rt: Arc<Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<fogd::runtime::Result<()>>>,
}

impl Daemon {
    pub fn start(cfg: Config, fdl: &[PathBuf]) -> Daemon {
        let rt = Arc::new(Runtime::open(cfg, fdl).expect("runtime"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(fogd::scheduler::run(rt.clone(), async {
            let _ = rx.await;
        }));
        Daemon {
            rt,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("join").expect("scheduler");
        }
    }

    /// Waits until no invocation is queued or running (or panics after `secs`).
    pub async fn settle(&self, secs: u64) -> Vec<Invocation> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let all = self.rt.journal.invocations(None, 100_000).expect("list");
            if !all.is_empty() && all.iter().all(|i| i.state.is_final()) {
                // Outputs of the last ones may still be chaining: look twice.
                tokio::time::sleep(Duration::from_millis(150)).await;
                let again = self.rt.journal.invocations(None, 100_000).expect("list");
                if again.len() == all.len() && again.iter().all(|i| i.state.is_final()) {
                    return again;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "not settled in {secs} s: {:#?}",
                summary(&all)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn summary(all: &[Invocation]) -> Vec<String> {
    all.iter()
        .filter(|i| i.state != State::Succeeded)
        .map(|i| format!("{} {} {} {:?}", i.service, i.key, i.state.as_str(), i.error))
        .take(20)
        .collect()
}

pub fn cfg(dir: &Path) -> Config {
    Config {
        data_dir: dir.join("data"),
        node_name: Some("test-node".into()),
        s3_poll_interval: Duration::from_millis(200),
        ..Config::default()
    }
}

/// Writes an FDL file and its scripts into `dir`; returns the FDL's path.
pub fn workflow(dir: &Path, fdl: &str, scripts: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("dir");
    for (name, body) in scripts {
        std::fs::write(dir.join(name), body).expect("script");
    }
    let p = dir.join("workflow.yaml");
    std::fs::write(&p, fdl).expect("fdl");
    p
}

/// Every file under `root`, as `/`-separated paths relative to it, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(r) = p.strip_prefix(root) {
                out.push(r.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}
