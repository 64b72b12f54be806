//! A whole `fogd run` process as a test node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

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
            // The S3 endpoint on a port of its own choosing: nodes run side by side.
            format!("gateway:\n  listen: {addr}\n  s3: {{listen: '127.0.0.1:0'}}\n")
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
        // Workflow scripts call `fogd` (`fogd anonymize`): the one beside `bin` comes first.
        let bin_dir = bin.parent().unwrap_or(Path::new("."));
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .arg("run")
            .args(fdl)
            .env("PATH", path)
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

    /// The process id of `fogd run` (for its RSS and descriptors in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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
