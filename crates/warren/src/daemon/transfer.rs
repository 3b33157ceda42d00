//! Export and import of workloads as archives ([`super::archive`]).
//!
//! Export snapshots the workload (frozen while it is taken) and streams the archive as the
//! response body while the driver's send streams are produced. Import reads the request body
//! once, as it arrives: the manifest first (every check that needs no data happens before
//! anything is received), then each section straight into the driver's staged receive
//! ([`warren_storage::Storage::receive_staged`]), then the trailer. Only when every digest
//! matched are the staged datasets committed; any failure before aborts all of them, so a
//! damaged archive creates nothing and changes nothing. Nothing is spooled.

use super::archive::{self, ArchiveReader, ArchiveWriter, Manifest};
use super::datasets::Target;
use super::engine::Engine;
use super::error::{ApiError, ErrorKind, TransferError};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use serde::Deserialize;
use std::io::Write;
use std::sync::Arc;
use warren_model::event::EventKind;
use warren_model::plan::LastExit;
use warren_storage::DatasetId;
use warren_store::now_ms;

#[derive(Deserialize)]
pub struct ExportQuery {
    since: Option<String>,
}

#[derive(Deserialize)]
pub struct ImportQuery {
    name: Option<String>,
}

pub use crate::wire::ImportResponse;

fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::from(TransferError::Conflict(msg.into()))
}

/// A `Write` that hands chunks to the response body.
pub(super) struct ChannelWriter(pub(super) tokio::sync::mpsc::Sender<bytes::Bytes>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(bytes::Bytes::copy_from_slice(buf))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn dataset_ids(name: &str, kinds: &[String]) -> Vec<DatasetId> {
    kinds
        .iter()
        .map(|k| match k.as_str() {
            "rootfs" => DatasetId::Rootfs(name.to_string()),
            "volume" => DatasetId::Volume(name.to_string()),
            _ => DatasetId::Data(name.to_string()),
        })
        .collect()
}

/// `GET /v1/workloads/{name}/export?since=LABEL`: the archive as the response body.
pub async fn export(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let d = e
        .store
        .get_desired(&name)?
        .ok_or_else(|| ApiError::not_found(&name))?;
    let mut kinds = Vec::new();
    if e.storage.rootfs_path(&name).exists() {
        kinds.push("rootfs".to_string());
    }
    kinds.push("data".to_string());
    export_target(e, Target::Workload(name), kinds, Some(d.spec), None, q).await
}

/// `GET /v1/volumes/{name}/export?since=LABEL`: a volume's archive.
pub async fn export_volume(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let v = e.store.volumes()?.remove(&name).ok_or_else(|| {
        ApiError::from(TransferError::NotFound(format!("no volume named {name:?}")))
    })?;
    export_target(
        e,
        Target::Volume(name),
        vec!["volume".into()],
        None,
        Some(v),
        q,
    )
    .await
}

async fn export_target(
    e: Arc<Engine>,
    target: Target,
    kinds: Vec<String>,
    spec: Option<warren_model::WorkloadSpec>,
    volume: Option<warren_model::VolumeSpec>,
    q: ExportQuery,
) -> Result<Response, ApiError> {
    let name = target.name().to_string();
    if let Some(since) = &q.since {
        let snaps = e
            .list_snapshots(&target)
            .await
            .map_err(|x| conflict(format!("{x:#}")))?;
        let Some(s) = snaps.iter().find(|s| &s.label == since) else {
            return Err(conflict(format!(
                "{name} has no snapshot {since:?} to export from"
            )));
        };
        for id in dataset_ids(&name, &kinds) {
            let (key, k) = (id.key(), id.key());
            if !s.datasets.contains(&key) {
                return Err(conflict(format!(
                    "snapshot {since} has no {k} dataset (taken before the workload was recreated?); export without --since"
                )));
            }
        }
    }
    let mut label = format!("export-{}", now_ms() / 1000);
    let existing = e
        .list_snapshots(&target)
        .await
        .map_err(|x| conflict(format!("{x:#}")))?;
    let mut n = 1;
    while existing.iter().any(|s| s.label == label) {
        n += 1;
        label = format!("export-{}-{n}", now_ms() / 1000);
    }
    e.take_snapshot(&target, Some(label.clone()))
        .await
        .map_err(|x| conflict(format!("{x:#}")))?;
    let manifest = Manifest {
        version: 1,
        name: name.clone(),
        spec,
        volume,
        label: label.clone(),
        since: q.since.clone(),
        datasets: kinds.clone(),
        created_at: now_ms() / 1000,
        driver: e.storage.driver().to_string(),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let storage = e.storage.clone();
    let engine = e.clone();
    let since = q.since.clone();
    let ids = dataset_ids(&name, &kinds);
    tokio::task::spawn_blocking(move || {
        let run = || -> std::io::Result<()> {
            let mut w = ArchiveWriter::new(
                std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx)),
                &manifest,
            )?;
            for (i, id) in ids.iter().enumerate() {
                w.section(i as u8, |out| {
                    storage
                        .send(id, &manifest.label, since.as_deref(), out)
                        .map_err(std::io::Error::other)
                })?;
            }
            w.finish()?.flush()
        };
        match run() {
            Ok(()) => engine.event(
                manifest.spec.as_ref().map(|_| manifest.name.as_str()),
                EventKind::Exported {
                    label: manifest.label.clone(),
                    since: since.map(|s| s.to_string()),
                },
            ),
            Err(err) => engine.event(
                manifest.spec.as_ref().map(|_| manifest.name.as_str()),
                EventKind::error(format!("export of {} failed: {err}", manifest.name)),
            ),
        }
        super::release_memory();
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("x-warren-snapshot", label)
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

/// The request body as a blocking `Read`, fed by [`feed_body`] through a channel.
pub(super) struct BodyReader {
    rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>,
    current: bytes::Bytes,
}

impl BodyReader {
    pub(super) fn new(rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, String>>) -> Self {
        BodyReader {
            rx,
            current: bytes::Bytes::new(),
        }
    }

    /// Reads and drops what the client still sends, so it sees our answer, not a reset.
    pub(super) fn drain(&mut self) {
        self.current.clear();
        while self.rx.blocking_recv().is_some() {}
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Reads and drops the rest of a request body, then gives `err`: a client still sending its
/// upload then sees the refusal instead of a broken connection.
pub(super) async fn refuse_upload(body: Body, err: ApiError) -> ApiError {
    let mut stream = body.into_data_stream();
    while let Some(Ok(_)) = stream.next().await {}
    err
}

/// Hands the request body's chunks to the [`BodyReader`] as they arrive.
pub(super) async fn feed_body(
    body: Body,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, String>>,
) {
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|x| format!("reading the request body: {x}"));
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
}

/// What the import handler decided once it saw the manifest: the datasets the archive's
/// sections go into (in section order) and the snapshot label they become.
struct Plan {
    ids: Vec<DatasetId>,
    label: String,
}

/// Why the datasets of an archive were not installed.
enum ReceiveError {
    /// The archive is damaged (truncated, corrupt, digest mismatch).
    Refused(String),
    /// The storage driver failed.
    Failed(String),
    /// The handler refused the archive after its manifest; nothing was received.
    Cancelled,
}

/// The blocking half of an import: reads the manifest and hands it to the handler, waits for
/// its [`Plan`], receives every section straight from the body into a staged receive (the
/// section read and decompressed on a thread of its own, a few blocks ahead), checks the
/// trailer, and only then commits every staged dataset. Any
/// failure before the commit aborts every staged dataset, so nothing is created and nothing
/// that existed changes. The body is always read to its end.
fn receive_archive(
    storage: Arc<dyn warren_storage::Storage>,
    mut body: BodyReader,
    manifest_tx: tokio::sync::oneshot::Sender<Result<Manifest, archive::ArchiveError>>,
    plan_rx: tokio::sync::oneshot::Receiver<Plan>,
) -> Result<(), ReceiveError> {
    let mut staged: Vec<warren_storage::Staged> = Vec::new();
    let received = receive_sections(&storage, &mut body, manifest_tx, plan_rx, &mut staged);
    body.drain();
    if let Err(err) = received {
        return Err(abort_all(&storage, staged, err));
    }
    // Everything arrived intact: install. A failure here (a rename or snapshot failing after
    // every byte was verified) removes what a full import installed.
    let mut committed: Vec<(DatasetId, bool)> = Vec::new();
    let mut rest = staged.into_iter();
    while let Some(s) = rest.next() {
        let (id, incremental) = (s.id().clone(), s.incremental());
        if let Err(err) = storage.commit_staged(s) {
            let mut msg = format!("installing {}: {err}", id.key());
            for (done, incremental) in &committed {
                if *incremental {
                    msg.push_str(&format!(
                        "; {} was already updated to the archive's snapshot",
                        done.key()
                    ));
                    continue;
                }
                let removed = match done {
                    DatasetId::Rootfs(n) => storage.delete_rootfs(n),
                    DatasetId::Data(n) => storage.delete_data(n),
                    DatasetId::Volume(n) => storage.delete_volume(n),
                };
                if let Err(e) = removed {
                    msg.push_str(&format!("; removing {} failed: {e}", done.key()));
                }
            }
            return Err(abort_all(
                &storage,
                rest.collect(),
                ReceiveError::Failed(msg),
            ));
        }
        committed.push((id, incremental));
    }
    Ok(())
}

/// [`receive_archive`] up to (not including) the commit; staged receives go to `staged`.
fn receive_sections(
    storage: &Arc<dyn warren_storage::Storage>,
    body: &mut BodyReader,
    manifest_tx: tokio::sync::oneshot::Sender<Result<Manifest, archive::ArchiveError>>,
    plan_rx: tokio::sync::oneshot::Receiver<Plan>,
    staged: &mut Vec<warren_storage::Staged>,
) -> Result<(), ReceiveError> {
    let mut a = match ArchiveReader::new(body) {
        Ok(a) => a,
        Err(e) => {
            let _ = manifest_tx.send(Err(e));
            return Err(ReceiveError::Cancelled);
        }
    };
    let _ = manifest_tx.send(Ok(a.manifest().clone()));
    let Ok(plan) = plan_rx.blocking_recv() else {
        return Err(ReceiveError::Cancelled);
    };
    let refused = |e: archive::ArchiveError| ReceiveError::Refused(e.to_string());
    for id in &plan.ids {
        let Some((_, section)) = a.next_section().map_err(refused)? else {
            return Err(ReceiveError::Refused(format!(
                "the archive holds no section for {}",
                id.key()
            )));
        };
        // The section is read, checked and decompressed on a thread of its own, a few blocks
        // ahead of the driver's receive, so neither waits for the other.
        let received = std::thread::scope(|scope| {
            let (blocks_tx, blocks_rx) = std::sync::mpsc::sync_channel(AHEAD);
            let (free_tx, free_rx) = std::sync::mpsc::channel();
            scope.spawn(move || read_ahead(section, blocks_tx, free_rx));
            let mut input = Blocks {
                rx: blocks_rx,
                free: free_tx,
                current: Block::default(),
                pos: 0,
            };
            storage.receive_staged(id, &plan.label, &mut input)
            // Dropping `input` stops the reader thread if the receive ended early.
        });
        match received {
            Ok(s) => staged.push(s),
            Err(err) => {
                if let Some(f) = a.failure() {
                    return Err(ReceiveError::Refused(f.to_string()));
                }
                // Blame the archive rather than the driver when the rest of it is damaged.
                let failed = ReceiveError::Failed(format!("receiving {}: {err}", id.key()));
                return match a.finish() {
                    Ok(_) => Err(failed),
                    Err(e) => Err(refused(e)),
                };
            }
        }
    }
    a.finish().map(drop).map_err(refused)
}

/// Decompressed blocks the reader thread may hold ready for the receive.
const AHEAD: usize = 8;
/// Size of one decompressed block.
const BLOCK: usize = 1 << 20;

/// A block of a section's decompressed stream: `buf[..len]`.
#[derive(Default)]
struct Block {
    buf: Vec<u8>,
    len: usize,
}

/// Reads `section` into blocks (reusing those the consumer hands back) and sends them; a read
/// error is sent in place of the rest, so the consumer never sees the end of a damaged
/// section. Stops when the consumer is gone.
fn read_ahead(
    mut section: impl std::io::Read,
    blocks: std::sync::mpsc::SyncSender<std::io::Result<Block>>,
    free: std::sync::mpsc::Receiver<Block>,
) {
    loop {
        let mut block = free.try_recv().unwrap_or_else(|_| Block {
            buf: vec![0; BLOCK],
            len: 0,
        });
        block.len = 0;
        while block.len < block.buf.len() {
            match section.read(&mut block.buf[block.len..]) {
                Ok(0) => break,
                Ok(n) => block.len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = blocks.send(Err(e));
                    return;
                }
            }
        }
        let end = block.len < block.buf.len();
        if block.len > 0 && blocks.send(Ok(block)).is_err() {
            return;
        }
        if end {
            return;
        }
    }
}

/// The consumer side of [`read_ahead`]: a `Read` over the blocks, ending when the reader
/// thread finished the section.
struct Blocks {
    rx: std::sync::mpsc::Receiver<std::io::Result<Block>>,
    free: std::sync::mpsc::Sender<Block>,
    current: Block,
    pos: usize,
}

impl std::io::Read for Blocks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.current.len {
            match self.rx.recv() {
                Ok(Ok(next)) => {
                    let done = std::mem::replace(&mut self.current, next);
                    if !done.buf.is_empty() {
                        let _ = self.free.send(done);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len - self.pos);
        buf[..n].copy_from_slice(&self.current.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Aborts every staged receive after `err`, adding failed aborts to its message.
fn abort_all(
    storage: &Arc<dyn warren_storage::Storage>,
    staged: Vec<warren_storage::Staged>,
    err: ReceiveError,
) -> ReceiveError {
    let mut problems = String::new();
    for s in staged {
        let place = s.place().to_string();
        if let Err(e) = storage.abort_staged(s) {
            problems.push_str(&format!("; deleting the staged {place} failed: {e}"));
        }
    }
    match err {
        ReceiveError::Refused(m) => ReceiveError::Refused(m + &problems),
        ReceiveError::Failed(m) => ReceiveError::Failed(m + &problems),
        ReceiveError::Cancelled if problems.is_empty() => ReceiveError::Cancelled,
        ReceiveError::Cancelled => ReceiveError::Failed(problems),
    }
}

/// The running blocking half of an import.
struct Receiver {
    worker: tokio::task::JoinHandle<Result<(), ReceiveError>>,
    plan: tokio::sync::oneshot::Sender<Plan>,
}

impl Receiver {
    /// Refuses the archive: nothing is received, the body is drained.
    async fn cancel(self, err: ApiError) -> ApiError {
        drop(self.plan);
        let _ = self.worker.await;
        err
    }

    /// Receives, verifies and installs the archive's sections into `ids`.
    async fn run(self, ids: Vec<DatasetId>, label: String) -> Result<(), ApiError> {
        let _ = self.plan.send(Plan { ids, label });
        let r = self.worker.await.map_err(|x| anyhow::anyhow!(x))?;
        super::release_memory();
        match r {
            Ok(()) => Ok(()),
            Err(ReceiveError::Refused(m)) => Err(ApiError::from(TransferError::Invalid(format!(
                "import refused: {m}"
            )))),
            // The storage driver failed: a full disk is the operator's to fix (507); any
            // other driver failure is the host's.
            Err(ReceiveError::Failed(m)) if super::error::text_out_of_space(&m) => {
                Err(ApiError::from(TransferError::OutOfSpace(m)))
            }
            Err(ReceiveError::Failed(m)) => Err(ApiError::new(ErrorKind::Internal, m)),
            Err(ReceiveError::Cancelled) => {
                Err(ApiError::new(ErrorKind::Internal, "import cancelled"))
            }
        }
    }
}

/// `POST /v1/import?name=NEW`: the archive as the request body, read once as it arrives.
pub async fn import(
    State(e): State<Arc<Engine>>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImportResponse>, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(feed_body(body, tx));
    let (manifest_tx, manifest_rx) = tokio::sync::oneshot::channel();
    let (plan_tx, plan_rx) = tokio::sync::oneshot::channel();
    let storage = e.storage.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let body = BodyReader {
            rx,
            current: bytes::Bytes::new(),
        };
        receive_archive(storage, body, manifest_tx, plan_rx)
    });
    let receiver = Receiver {
        worker,
        plan: plan_tx,
    };
    let manifest = match manifest_rx.await {
        Ok(Ok(m)) => m,
        Ok(Err(x)) => {
            let err = ApiError::from(TransferError::Invalid(format!("import refused: {x}")));
            return Err(receiver.cancel(err).await);
        }
        Err(_) => {
            let err = ApiError::new(
                ErrorKind::Internal,
                "import failed before its manifest was read",
            );
            return Err(receiver.cancel(err).await);
        }
    };
    // Every check that needs no data, before anything is received.
    if manifest.driver != e.storage.driver() {
        let err = ApiError::from(TransferError::Invalid(format!(
            "import refused: the archive holds {} streams and this host uses the {} driver",
            manifest.driver,
            e.storage.driver()
        )));
        return Err(receiver.cancel(err).await);
    }
    let name = q.name.clone().unwrap_or_else(|| manifest.name.clone());
    if let Err(x) = warren_model::names::check_dns_label(&name) {
        let err = ApiError::from(TransferError::BadRequest(format!("import name: {x}")));
        return Err(receiver.cancel(err).await);
    }
    let kinds: Vec<&str> = manifest.datasets.iter().map(String::as_str).collect();
    let fits = match manifest.volume {
        Some(_) => kinds == ["volume"],
        None => kinds == ["data"] || kinds == ["rootfs", "data"],
    };
    if !fits {
        let err = ApiError::from(TransferError::Invalid(format!(
            "import refused: the archive lists unexpected datasets {kinds:?}"
        )));
        return Err(receiver.cancel(err).await);
    }
    if let Some(vol) = manifest.volume.clone() {
        return import_volume(e, receiver, manifest, name, vol).await;
    }
    let Some(mut spec) = manifest.spec.clone() else {
        let err = ApiError::from(TransferError::Invalid(
            "import refused: the archive holds neither a workload nor a volume".into(),
        ));
        return Err(receiver.cancel(err).await);
    };
    if spec.name != name && spec.hostname.as_deref() == Some(spec.name.as_str()) {
        spec.hostname = None;
    }
    spec.name = name.clone();
    let incremental = manifest.since.is_some();
    let ids = dataset_ids(&name, &manifest.datasets);
    let guard = e.lock(&name).await;
    let was_running = match check_workload_import(&e, &name, &manifest).await {
        Ok(r) => r,
        Err(err) => return Err(receiver.cancel(err).await),
    };
    if let Err(err) = receiver.run(ids, manifest.label.clone()).await {
        e.event(
            Some(&name),
            EventKind::error(format!("import failed: {}", err.body.error)),
        );
        if was_running {
            if let Ok(Some(d)) = e.store.get_desired(&name) {
                let _ = e.start_desired(&d, "after a failed import").await;
            }
        }
        return Err(err);
    }
    let hash = e.drift_hash(&spec)?;
    e.store.apply(std::slice::from_ref(&spec), &[])?;
    let has_rootfs = manifest.datasets.iter().any(|k| k == "rootfs");
    e.update(&name, |r| {
        r.provisioned = has_rootfs.then(|| hash.clone());
        r.last_exit = Some(LastExit::Deliberate);
    });
    if let Some(disk) = spec.resources.disk {
        e.apply_quota(&name, Some(disk)).await?;
    }
    e.event(
        Some(&name),
        EventKind::Imported {
            label: manifest.label.clone(),
            since: manifest.since.clone(),
        },
    );
    if was_running {
        if let Some(d) = e.store.get_desired(&name)? {
            e.start_desired(&d, "after import").await?;
        }
    }
    drop(guard);
    e.wake();
    Ok(Json(ImportResponse {
        name,
        label: manifest.label,
        incremental,
    }))
}

/// The checks of a workload import (with the workload locked): a full archive needs the
/// name free, an incremental one the workload holding the base snapshot, and stops it if it
/// runs (returns whether it did).
async fn check_workload_import(
    e: &Arc<Engine>,
    name: &str,
    manifest: &Manifest,
) -> Result<bool, ApiError> {
    let Some(since) = &manifest.since else {
        if e.store.get_desired(name)?.is_some() || e.observed_row(name).is_some() {
            return Err(conflict(format!(
                "a workload named {name:?} already exists here (use --name to import under another name)"
            )));
        }
        if e.storage.data_path(name).exists() {
            return Err(conflict(format!(
                "the kept data of a deleted workload {name:?} exists here: delete it with \
                 `warren delete --purge {name}`, or import under another name with --name"
            )));
        }
        return Ok(false);
    };
    if e.store.get_desired(name)?.is_none() {
        return Err(conflict(format!(
            "{name} does not exist here: import the full archive it was exported after first"
        )));
    }
    let snaps = e
        .list_snapshots(&Target::Workload(name.to_string()))
        .await
        .map_err(|x| conflict(format!("{x:#}")))?;
    if !snaps.iter().any(|s| &s.label == since) {
        return Err(conflict(format!(
            "{name} has no snapshot {since:?}, the base of this incremental archive"
        )));
    }
    if e.observed_row(name).and_then(|r| r.pid).is_some() {
        e.stop(name, "incremental import").await?;
        return Ok(true);
    }
    Ok(false)
}

async fn import_volume(
    e: Arc<Engine>,
    receiver: Receiver,
    manifest: Manifest,
    name: String,
    vol: warren_model::VolumeSpec,
) -> Result<Json<ImportResponse>, ApiError> {
    let incremental = manifest.since.is_some();
    if let Err(err) = check_volume_import(&e, &name, &manifest).await {
        return Err(receiver.cancel(err).await);
    }
    let id = DatasetId::Volume(name.clone());
    if let Err(err) = receiver.run(vec![id.clone()], manifest.label.clone()).await {
        e.event(
            None,
            EventKind::error(format!(
                "import of volume {name} failed: {}",
                err.body.error
            )),
        );
        return Err(err);
    }
    let mut vol = vol;
    vol.name = name.clone();
    e.store.put_volumes(std::slice::from_ref(&vol), &[])?;
    if let Some(size) = vol.size {
        let storage = e.storage.clone();
        tokio::task::spawn_blocking(move || storage.set_quota(&id, Some(size)))
            .await
            .map_err(|x| anyhow::anyhow!(x))?
            .map_err(|x| anyhow::anyhow!(x))?;
    }
    e.event(
        None,
        EventKind::VolumeImported {
            name: name.clone(),
            label: manifest.label.clone(),
        },
    );
    Ok(Json(ImportResponse {
        name,
        label: manifest.label,
        incremental,
    }))
}

/// The checks of a volume import: a full archive needs the name free, an incremental one the
/// volume holding the base snapshot and no running writer.
async fn check_volume_import(
    e: &Arc<Engine>,
    name: &str,
    manifest: &Manifest,
) -> Result<(), ApiError> {
    let Some(since) = &manifest.since else {
        let exists = e
            .storage
            .dataset_path(&DatasetId::Volume(name.to_string()))
            .exists();
        if exists || e.store.volumes()?.contains_key(name) {
            return Err(conflict(format!(
                "a volume named {name:?} already exists here (use --name to import under another name)"
            )));
        }
        return Ok(());
    };
    let snaps = e
        .list_snapshots(&Target::Volume(name.to_string()))
        .await
        .map_err(|x| conflict(format!("{x:#}")))?;
    if !snaps.iter().any(|s| &s.label == since) {
        return Err(conflict(format!(
            "volume {name} has no snapshot {since:?}, the base of this incremental archive"
        )));
    }
    let users: Vec<String> = e
        .store
        .desired()?
        .values()
        .filter(|d| d.spec.volumes.iter().any(|m| m.volume == name))
        .filter(|d| e.observed_row(&d.spec.name).and_then(|r| r.pid).is_some())
        .map(|d| d.spec.name.clone())
        .collect();
    if !users.is_empty() {
        return Err(conflict(format!(
            "volume {name} is in use by running workloads: {} (stop them first)",
            users.join(", ")
        )));
    }
    Ok(())
}
