//! What the daemon and the one-shot commands share: the node's config, the loaded workflows, the
//! journal and the stores. `emit` is the one way an object that landed becomes invocations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::config::Config;
use crate::fdl::{self, LoadOptions, ProviderRef, Service, Workflow};
use crate::journal::{InvocationId, Journal, JournalError, NewEvent};
use crate::paths::{DataDir, RESERVE_BYTES};
use crate::store::{AnyStore, ObjectMeta, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{file}: invalid workflow:\n{errors}")]
    Fdl { file: PathBuf, errors: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no storage provider `{0}` in the loaded workflows")]
    UnknownProvider(String),
    #[error("no service `{0}` in the loaded workflows")]
    UnknownService(String),
    #[error("{path}: only {free} bytes free, under min_free_bytes ({min}): fogd takes no new work until space is freed")]
    LowDisk { path: PathBuf, free: u64, min: u64 },
    #[error("{path}: only {free} inodes (files) free, under min_free_inodes ({min}): fogd takes no new work until files are removed")]
    LowInodes { path: PathBuf, free: u64, min: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Receipt(Box<crate::receipts::ReceiptError>),
    #[error("{key}: refused for {provider}: a picture from camera `{camera}` leaves this node only with a valid fogd receipt, and {reason}; anonymise it with `fogd anonymize`")]
    Unsigned {
        provider: String,
        key: String,
        camera: String,
        reason: Box<crate::receipts::ReceiptError>,
    },
}

impl From<crate::receipts::ReceiptError> for RuntimeError {
    fn from(e: crate::receipts::ReceiptError) -> Self {
        RuntimeError::Receipt(Box::new(e))
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

type Stores = BTreeMap<ProviderRef, std::result::Result<Arc<AnyStore>, String>>;

pub struct Runtime {
    pub cfg: Config,
    /// The data folder's layout (absolute).
    pub data: DataDir,
    pub node: String,
    pub journal: Arc<Journal>,
    /// The workflows of the FDL files.
    fdl: Workflow,
    /// Those plus the services created through the API; replaced whole on every change.
    workflow: RwLock<Arc<Workflow>>,
    /// A store per provider that the workflows use; a provider fogd cannot reach keeps its error,
    /// reported when something needs it.
    stores: RwLock<Stores>,
    /// Wakes the scheduler when this process queued work.
    pub wake: Arc<Notify>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Each invocation that ends here, by id (`/run` waits on it).
    pub finished: tokio::sync::broadcast::Sender<InvocationId>,
    /// Wakes the sync loop when an object entered the outbox.
    pub outbox_wake: Arc<Notify>,
    /// The remote stores' links, as the sync loop sees them.
    pub links: crate::store::Links,
    /// Node events (`invocation_done`, `upload_done`, `mask_result`, ...) for the MQTT
    /// status topic; dropped when nobody listens.
    pub events: tokio::sync::broadcast::Sender<serde_json::Value>,
    pub started: std::time::Instant,
    /// The key that signs the receipts of anonymised frames.
    pub receipts: Arc<crate::receipts::NodeKey>,
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
        let data = DataDir::new(cfg.data_dir.clone());
        restrict(data.root());
        // A full disk must not keep the node down: the journal opens in the reserve's room.
        let released = data.release_reserve_if_full(cfg.min_free_bytes.max(RESERVE_BYTES));
        if released > 0 {
            tracing::warn!(
                path = %data.root().display(),
                "disk full: released the {} MiB reserve so that the journal can open; fogd takes no new work until space is freed",
                released >> 20
            );
        }
        let journal = Arc::new(Journal::open(&data.journal(), cfg.journal_sync)?);
        let receipts = Arc::new(crate::receipts::NodeKey::load_or_create(data.root())?);
        data.make_reserve(cfg.min_free_bytes);
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
            // What the file asks and fogd does not do (expose, volume, ...) is said at every start.
            for d in r.warnings() {
                tracing::warn!("{}: {d}", f.display());
            }
            if !r.is_valid() {
                let errors: Vec<String> = r.errors().map(|d| format!("  {d}")).collect();
                return Err(RuntimeError::Fdl {
                    file: f.clone(),
                    errors: errors.join("\n"),
                });
            }
            workflows.extend(r.workflow);
        }
        let fdl = Workflow::merge(workflows);
        let rt = Runtime {
            node: cfg.node_name(),
            data,
            cfg,
            journal,
            workflow: RwLock::new(Arc::new(Workflow::merge(Vec::new()))),
            fdl,
            stores: RwLock::new(BTreeMap::new()),
            wake: Arc::new(Notify::new()),
            metrics: Arc::new(crate::metrics::Metrics::default()),
            outbox_wake: Arc::new(Notify::new()),
            links: Default::default(),
            events: tokio::sync::broadcast::channel(4096).0,
            finished: tokio::sync::broadcast::channel(1024).0,
            started: std::time::Instant::now(),
            receipts,
        };
        for problem in rt.reload()? {
            tracing::warn!("{problem}");
        }
        Ok(rt)
    }

    /// The services now defined (FDL files and API).
    pub fn workflow(&self) -> Arc<Workflow> {
        self.workflow.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The FDL files' services alone.
    pub fn fdl_workflow(&self) -> &Workflow {
        &self.fdl
    }

    /// Rebuilds the workflow from the FDL files and the API services in the journal, and opens
    /// stores for providers not seen before. Returns the API services that no longer load.
    pub fn reload(&self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        let mut all = vec![self.fdl.clone()];
        for (name, json) in self.journal.api_services()? {
            let r = fdl::load_api_service(json.as_bytes(), Path::new(&format!("api:{name}")));
            match r.workflow {
                Some(wf) if r.errors().next().is_none() => all.push(wf),
                _ => problems.push(format!("API service `{name}` no longer loads; skipped")),
            }
        }
        let merged = Workflow::merge(all);
        {
            let mut stores = self.stores.write().unwrap_or_else(|p| p.into_inner());
            // The embedded store is always there, used by a workflow or not (`fogd put`, `/job`).
            stores
                .entry(ProviderRef::new(fdl::ProviderKind::Minio, "default"))
                .or_insert_with(|| Ok(Arc::new(self.local_store())));
            for p in &merged.providers {
                stores.entry(p.reference.clone()).or_insert_with(|| {
                    AnyStore::for_provider(p, &self.cfg.data_dir)
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                });
            }
        }
        self.make_local_paths(&merged);
        *self.workflow.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(merged);
        Ok(problems)
    }

    /// Makes the folders of the services' paths in the local store, as OSCAR makes its buckets
    /// and folders when a service is created: S3 clients can list them and put into them.
    fn make_local_paths(&self, wf: &Workflow) {
        let local = ProviderRef::new(fdl::ProviderKind::Minio, "default");
        for b in wf.services.iter().flat_map(|s| s.inputs.iter().chain(&s.outputs)) {
            if b.provider != local || b.path.is_empty() {
                continue;
            }
            let dir = self.data.store_object(&b.path);
            if crate::store::check_key(&format!("{}/", b.path)).is_ok() {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!(path = %dir.display(), "cannot make the folder of a service's path: {e}");
                }
            }
        }
    }

    pub fn service(&self, name: &str) -> Result<Service> {
        self.workflow()
            .service(name)
            .cloned()
            .ok_or_else(|| RuntimeError::UnknownService(name.to_string()))
    }

    pub fn store(&self, p: &ProviderRef) -> Result<Arc<AnyStore>> {
        let stores = self.stores.read().unwrap_or_else(|p| p.into_inner());
        match stores.get(p) {
            Some(Ok(s)) => Ok(s.clone()),
            Some(Err(msg)) => Err(RuntimeError::Store(StoreError::Unsupported {
                provider: p.to_string(),
                message: msg.clone(),
            })),
            None => Err(RuntimeError::UnknownProvider(p.to_string())),
        }
    }

    /// The providers, with their stores where fogd can reach them.
    pub fn stores(&self) -> Vec<(ProviderRef, Option<Arc<AnyStore>>)> {
        let stores = self.stores.read().unwrap_or_else(|p| p.into_inner());
        stores
            .iter()
            .map(|(p, s)| (p.clone(), s.as_ref().ok().cloned()))
            .collect()
    }

    /// Routes an object that landed in `provider` and journals the event with its invocations
    /// (one transaction). Returns `None` when the same object was already an event.
    pub async fn emit(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
    ) -> Result<Option<(i64, Vec<InvocationId>)>> {
        self.emit_from(provider, meta, source, None).await
    }

    /// As `emit`, for an output of `parent`: the event keeps the camera its chain started from.
    pub async fn emit_from(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
        parent: Option<InvocationId>,
    ) -> Result<Option<(i64, Vec<InvocationId>)>> {
        let wf = self.workflow();
        let services: Vec<String> = crate::router::route(&wf.services, provider, &meta.key)
            .into_iter()
            .map(str::to_string)
            .collect();
        self.record(provider, meta, source, services, None, parent).await
    }

    /// Queues `service` alone on an object (an event POSTed to `/job`), named `job_id` when
    /// given. `None` when the same event was delivered before.
    pub async fn enqueue(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
        service: &str,
        job_id: Option<&str>,
    ) -> Result<Option<InvocationId>> {
        self.service(service)?;
        self.check_disk()?;
        Ok(self
            .record(provider, meta, source, vec![service.to_string()], job_id, None)
            .await?
            .and_then(|(_, ids)| ids.first().copied()))
    }

    /// The event and its invocations, one transaction (on the blocking pool: it fsyncs).
    async fn record(
        &self,
        provider: &ProviderRef,
        meta: &ObjectMeta,
        source: &str,
        services: Vec<String>,
        job_id: Option<&str>,
        parent: Option<InvocationId>,
    ) -> Result<Option<(i64, Vec<InvocationId>)>> {
        let ev = NewEvent {
            provider: provider.to_string(),
            key: meta.key.clone(),
            etag: meta.etag.clone(),
            size: meta.size,
            event_time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            source: source.to_string(),
            job_id: job_id.map(str::to_string),
            parent,
        };
        let r = self
            .journal
            .call(move |j| {
                let names: Vec<&str> = services.iter().map(String::as_str).collect();
                j.record_event(&ev, &names)
            })
            .await?;
        if r.as_ref().is_some_and(|(_, inv)| !inv.is_empty()) {
            self.wake.notify_one();
        }
        Ok(r)
    }

    /// Puts a file into a store, which triggers the services watching that path.
    pub async fn put(
        &self,
        provider: &ProviderRef,
        key: &str,
        src: &Path,
    ) -> Result<(ObjectMeta, Vec<InvocationId>)> {
        self.check_disk()?;
        let store = self.store(provider)?;
        let meta = store.put_file(key, src).await?;
        let invs = self
            .emit(provider, &meta, "put")
            .await?
            .map(|(_, i)| i)
            .unwrap_or_default();
        Ok((meta, invs))
    }

    /// Runs one service on a file (or on nothing), whatever its input paths: the file is kept
    /// under the local store's `fogd-invoke/` bucket and routed to that service alone.
    pub async fn invoke(&self, service: &str, file: Option<&Path>) -> Result<InvocationId> {
        let name = file
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        match file {
            Some(f) => {
                self.submit(service, name.as_deref().unwrap_or("input"), f, "invoke", None)
                    .await
            }
            None => self.submit_bytes(service, "event", b"", "invoke", None).await,
        }
    }

    /// Queues `service` on the file `src`, stored as `fogd-invoke/<job id or uuid>/<name>`;
    /// `source` says who asked (`invoke`, `job`, `run`, `delegated`). Returns the invocation's
    /// id. With `job_id` (a delegated job), the same job sent twice is queued once: the second
    /// returns the first's id.
    pub async fn submit(
        &self,
        service: &str,
        name: &str,
        src: &Path,
        source: &str,
        job_id: Option<&str>,
    ) -> Result<InvocationId> {
        self.service(service)?;
        self.check_disk()?;
        let provider = ProviderRef::new(fdl::ProviderKind::Minio, "default");
        let store = self.local_store();
        let folder = job_id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string);
        let key = format!("fogd-invoke/{folder}/{name}");
        let meta = store.put_file(&key, src).await?;
        match self
            .record(&provider, &meta, source, vec![service.to_string()], job_id, None)
            .await?
        {
            Some((_, ids)) => Ok(ids.first().copied().unwrap_or_default()),
            None => job_id
                .and_then(|j| self.journal.job(j).ok().flatten())
                .map(|i| i.id)
                .ok_or_else(|| RuntimeError::UnknownService(service.to_string())),
        }
    }

    /// As `submit`, for bytes in memory (an HTTP body).
    pub async fn submit_bytes(
        &self,
        service: &str,
        name: &str,
        bytes: &[u8],
        source: &str,
        job_id: Option<&str>,
    ) -> Result<InvocationId> {
        let tmp = self.data.upload_tmp(&uuid::Uuid::new_v4().to_string());
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|source| RuntimeError::Io {
                path: tmp.clone(),
                source,
            })?;
        let r = self.submit(service, name, &tmp, source, job_id).await;
        let _ = tokio::fs::remove_file(&tmp).await;
        r
    }

    /// The embedded local store (`minio.default` without an endpoint).
    pub fn local_store(&self) -> AnyStore {
        AnyStore::Local(crate::store::LocalStore::new("minio.default", self.data.store()))
    }

    /// Refuses new work when the data folder is nearly full.
    pub fn check_disk(&self) -> Result<()> {
        // Space of a released reserve is the journal's, not new work's.
        let held = if self.data.reserve_released() {
            RESERVE_BYTES
        } else {
            0
        };
        // One statvfs for both: this runs at every dispatch and ingest batch.
        let space = self.data.free_space();
        let free = space.map(|(bytes, _)| bytes.saturating_sub(held));
        if let Some(free) = free.filter(|f| *f < self.cfg.min_free_bytes) {
            // What runs must still be able to record its end.
            self.data.release_reserve_if_full(self.cfg.min_free_bytes);
            return Err(RuntimeError::LowDisk {
                path: self.cfg.data_dir.clone(),
                free,
                min: self.cfg.min_free_bytes,
            });
        }
        match space.and_then(|(_, inodes)| inodes) {
            Some(free) if free < self.cfg.min_free_inodes => Err(RuntimeError::LowInodes {
                path: self.cfg.data_dir.clone(),
                free,
                min: self.cfg.min_free_inodes,
            }),
            _ => Ok(()),
        }
    }

    /// Publishes a node event (`kind` plus fields) to whoever listens (the MQTT status topic).
    pub fn event(&self, kind: &str, mut fields: serde_json::Value) {
        if self.events.receiver_count() == 0 {
            return;
        }
        if let Some(m) = fields.as_object_mut() {
            m.insert("type".into(), kind.into());
            m.insert("node".into(), self.node.clone().into());
            m.insert("time_ms".into(), crate::journal::now_ms().into());
        }
        let _ = self.events.send(fields);
    }

    /// The raw area: the local store's folder where camera items land. Nothing under it may
    /// leave the node.
    /// The privacy zones of `camera`: those set through the API, else fogd.yaml's; `None` when it
    /// has none. Blocking (the journal): call it off the async workers.
    pub fn zones(&self, camera: &str) -> Result<Option<fogd_vision_proto::CameraZones>> {
        let zones = match self.journal.zones(camera)? {
            Some(z) => z,
            None => self
                .cfg
                .cameras
                .get(camera)
                .map(|c| c.zones.clone())
                .unwrap_or_default(),
        };
        Ok((!zones.is_empty()).then(|| fogd_vision_proto::CameraZones {
            camera: camera.to_string(),
            zones,
        }))
    }

    pub fn work_dir(&self, uuid: &str) -> PathBuf {
        self.data.work_of(uuid)
    }

    pub fn log_path(&self, service: &str, uuid: &str) -> PathBuf {
        self.data.log(service, uuid)
    }
}

/// The data folder holds credentials (in the journal's workflows) and raw inputs: owner only.
fn restrict(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// Waits until `stop` is set (the guard of the value is not held across awaits).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
