//! What the daemon and the one-shot commands share: the node's config, the loaded workflows, the
//! journal and the stores. `emit` is the one way an object that landed becomes invocations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Config;
use crate::exec::local::ExecError;
use crate::fdl::{self, LoadOptions, ProviderRef, Service, Workflow};
use crate::journal::{self, Journal, JournalError, NewEvent};
use crate::store::{AnyStore, ObjectMeta, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{file}: invalid workflow:\n{errors}")]
    Fdl { file: PathBuf, errors: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("no storage provider `{0}` in the loaded workflows")]
    UnknownProvider(String),
    #[error("no service `{0}` in the loaded workflows")]
    UnknownService(String),
    #[error("{path}: only {free} bytes free, under min_free_bytes ({min}): fogd takes no new work until space is freed")]
    LowDisk { path: PathBuf, free: u64, min: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

pub struct Runtime {
    pub cfg: Config,
    pub node: String,
    pub journal: Arc<Journal>,
    pub workflow: Workflow,
    /// A store per provider that the workflows use; a provider fogd cannot reach keeps its error,
    /// reported when something needs it.
    stores: BTreeMap<ProviderRef, std::result::Result<Arc<AnyStore>, String>>,
    /// Wakes the scheduler when this process queued work.
    pub wake: Arc<Notify>,
}

impl Runtime {
    /// Loads and fully validates `fdl_files` (scripts must exist), opens the journal and the
    /// stores. With no files, the workflows the daemon last ran (recorded in the journal).
    pub fn open(mut cfg: Config, fdl_files: &[PathBuf]) -> Result<Runtime> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RuntimeError::Io { path, source }
        };
        std::fs::create_dir_all(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        // Scripts run in their own folders: every path they are given must be absolute.
        cfg.data_dir = std::fs::canonicalize(&cfg.data_dir).map_err(io(&cfg.data_dir))?;
        let data = &cfg.data_dir;
        restrict(data);
        let journal = Arc::new(Journal::open(&data.join("journal.sqlite"), cfg.journal_sync)?);
        let files: Vec<PathBuf> = if fdl_files.is_empty() {
            journal.workflows()?
        } else {
            fdl_files
                .iter()
                .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| f.clone()))
                .collect()
        };
        let mut workflows = Vec::new();
        for f in &files {
            let r = fdl::load_file(f, LoadOptions::default());
            if !r.is_valid() {
                let errors: Vec<String> = r.errors().map(|d| format!("  {d}")).collect();
                return Err(RuntimeError::Fdl {
                    file: f.clone(),
                    errors: errors.join("\n"),
                });
            }
            workflows.extend(r.workflow);
        }
        let workflow = Workflow::merge(workflows);
        let stores = workflow
            .providers
            .iter()
            .map(|p| {
                let s = AnyStore::for_provider(p, data)
                    .map(Arc::new)
                    .map_err(|e| e.to_string());
                (p.reference.clone(), s)
            })
            .collect();
        Ok(Runtime {
            node: cfg.node_name(),
            cfg,
            journal,
            workflow,
            stores,
            wake: Arc::new(Notify::new()),
        })
    }

    pub fn service(&self, name: &str) -> Result<&Service> {
        self.workflow
            .service(name)
            .ok_or_else(|| RuntimeError::UnknownService(name.to_string()))
    }

    pub fn store(&self, p: &ProviderRef) -> Result<Arc<AnyStore>> {
        match self.stores.get(p) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(msg)) => Err(RuntimeError::Store(StoreError::Unsupported {
                provider: p.to_string(),
                message: msg.clone(),
            })),
            None => Err(RuntimeError::UnknownProvider(p.to_string())),
        }
    }

    /// The providers, with their stores where fogd can reach them.
    pub fn stores(&self) -> impl Iterator<Item = (&ProviderRef, Option<&Arc<AnyStore>>)> {
        self.stores.iter().map(|(p, s)| (p, s.as_ref().ok()))
    }

    /// Routes an object that landed in `provider` and journals the event with its invocations
    /// (one transaction). Returns `None` when the same object was already an event.
    pub fn emit(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
    ) -> Result<Option<(i64, Vec<i64>)>> {
        let services = crate::router::route(&self.workflow.services, provider, &meta.key);
        self.record(provider, meta, source, &services)
    }

    fn record(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
        services: &[&str],
    ) -> Result<Option<(i64, Vec<i64>)>> {
        let ev = NewEvent {
            provider: provider.to_string(),
            key: meta.key.clone(),
            etag: meta.etag.clone(),
            size: meta.size,
            event_time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            source: source.to_string(),
        };
        let r = self.journal.record_event(&ev, services)?;
        if r.as_ref().is_some_and(|(_, inv)| !inv.is_empty()) {
            self.wake.notify_one();
        }
        Ok(r)
    }

    /// Puts a file into a store, which triggers the services watching that path.
    pub async fn put(&self, provider: &ProviderRef, key: &str, src: &Path) -> Result<(ObjectMeta, Vec<i64>)> {
        self.check_disk()?;
        let store = self.store(provider)?;
        let meta = store.put_file(key, src).await?;
        let invs = self
            .emit(provider, &meta, "put")?
            .map(|(_, i)| i)
            .unwrap_or_default();
        Ok((meta, invs))
    }

    /// Runs one service on a file (or on nothing), whatever its input paths: the file is kept
    /// under the local store's `fogd-invoke/` bucket and routed to that service alone.
    pub async fn invoke(&self, service: &str, file: Option<&Path>) -> Result<i64> {
        self.service(service)?;
        self.check_disk()?;
        let provider = ProviderRef::new(fdl::ProviderKind::Minio, "default");
        let store = AnyStore::Local(crate::store::LocalStore::new(
            provider.to_string(),
            self.cfg.data_dir.join("store"),
        ));
        let id = uuid::Uuid::new_v4();
        let (key, src, tmp) = match file {
            Some(f) => {
                let name = f
                    .file_name()
                    .map_or("input".into(), |n| n.to_string_lossy().into_owned());
                (format!("fogd-invoke/{id}/{name}"), f.to_path_buf(), None)
            }
            None => {
                let tmp = self.cfg.data_dir.join(format!("invoke-{id}.empty"));
                std::fs::write(&tmp, b"").map_err(|source| RuntimeError::Io {
                    path: tmp.clone(),
                    source,
                })?;
                (format!("fogd-invoke/{id}/event"), tmp.clone(), Some(tmp))
            }
        };
        let meta = store.put_file(&key, &src).await;
        if let Some(t) = tmp {
            let _ = std::fs::remove_file(t);
        }
        let (_, ids) = self
            .record(&provider, &meta?, "invoke", &[service])?
            .ok_or_else(|| RuntimeError::UnknownService(service.to_string()))?;
        Ok(ids.first().copied().unwrap_or_default())
    }

    /// Refuses new work when the data folder is nearly full.
    pub fn check_disk(&self) -> Result<()> {
        match free_bytes(&self.cfg.data_dir) {
            Some(free) if free < self.cfg.min_free_bytes => Err(RuntimeError::LowDisk {
                path: self.cfg.data_dir.clone(),
                free,
                min: self.cfg.min_free_bytes,
            }),
            _ => Ok(()),
        }
    }

    pub fn work_dir(&self, uuid: &str) -> PathBuf {
        self.cfg.data_dir.join("work").join(uuid)
    }

    pub fn log_path(&self, service: &str, uuid: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join("logs")
            .join(service)
            .join(format!("{uuid}.log"))
    }
}

/// The data folder holds credentials (in the journal's workflows) and raw inputs: owner only.
fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// Free bytes for unprivileged users on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a valid NUL-terminated path and `st` is written by statvfs before use.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (32 bits on armhf).
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// For messages: a job's id as the user typed it.
pub fn job_label(inv: &journal::Invocation) -> String {
    format!("{} ({})", inv.uuid, inv.id)
}
