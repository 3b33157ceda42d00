//! Export and import of workloads as archives ([`super::archive`]).
//!
//! Export snapshots the workload (frozen while it is taken) and streams the archive as the
//! response body while the driver's send streams are produced. Import spools the request body
//! to the state dir, verifies the whole archive, and only then creates anything; a failure
//! while receiving removes what was received.

use super::api::ApiError;
use super::archive::{self, ArchiveWriter, Manifest};
use super::datasets::Target;
use super::engine::Engine;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

#[derive(Debug, Serialize, Deserialize)]
pub struct ImportResponse {
    pub name: String,
    pub label: String,
    pub incremental: bool,
}

fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, msg)
}

/// A `Write` that hands chunks to the response body.
struct ChannelWriter(tokio::sync::mpsc::Sender<bytes::Bytes>);

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
    let v =
        e.store.volumes()?.remove(&name).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no volume named {name:?}"))
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
                "export",
                &format!(
                    "exported snapshot {}{}",
                    manifest.label,
                    since
                        .map(|s| format!(" (incremental from {s})"))
                        .unwrap_or_default()
                ),
            ),
            Err(err) => engine.event(
                manifest.spec.as_ref().map(|_| manifest.name.as_str()),
                "error",
                &format!("export of {} failed: {err}", manifest.name),
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

static SPOOL_SEQ: AtomicU64 = AtomicU64::new(0);

/// Reads the request body from a channel and copies every byte read into the spool file.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
    file: std::io::BufWriter<std::fs::File>,
}

impl std::io::Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.file.write_all(&buf[..n])?;
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Removes the spool file when dropped.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `POST /v1/import?name=NEW`: the archive as the request body.
pub async fn import(
    State(e): State<Arc<Engine>>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<ImportResponse>, ApiError> {
    let dir = e.cfg.state_dir.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|x| anyhow::anyhow!("{}: {x}", dir.display()))?;
    let spool = Spool(dir.join(format!(
        "import-{}-{}.warx",
        std::process::id(),
        SPOOL_SEQ.fetch_add(1, Ordering::Relaxed)
    )));
    // One pass: the body is spooled and verified at once (a reader that copies what the
    // verifier reads into the spool file); the datasets are received from the file afterwards.
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let file = std::fs::File::create(&spool.0)
        .map_err(|x| anyhow::anyhow!("{}: {x}", spool.0.display()))?;
    let verifier = tokio::task::spawn_blocking(move || {
        let mut tee = TeeReader {
            rx,
            current: bytes::Bytes::new(),
            file: std::io::BufWriter::with_capacity(1 << 20, file),
        };
        let r = archive::verify(&mut tee);
        let flushed = tee.file.flush();
        // Drain what the client still sends so it sees our answer, not a reset.
        while tee.rx.blocking_recv().is_some() {}
        match (r, flushed) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) => Err(e),
            (_, Err(e)) => Err(archive::ArchiveError::Io(e)),
        }
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|x| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("reading the archive: {x}"))
        })?;
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    drop(tx);
    let (manifest, sections) = verifier
        .await
        .map_err(|x| anyhow::anyhow!(x))?
        .map_err(|x| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("import refused: {x}"),
            )
        })?;
    if manifest.driver != e.storage.driver() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "import refused: the archive holds {} streams and this host uses the {} driver",
                manifest.driver,
                e.storage.driver()
            ),
        ));
    }
    let name = q.name.clone().unwrap_or_else(|| manifest.name.clone());
    warren_model::names::check_dns_label(&name)
        .map_err(|x| ApiError::new(StatusCode::BAD_REQUEST, format!("import name: {x}")))?;
    if let Some(vol) = manifest.volume.clone() {
        return import_volume(e, spool, manifest, sections, name, vol).await;
    }
    let Some(mut spec) = manifest.spec.clone() else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "import refused: the archive holds neither a workload nor a volume",
        ));
    };
    if spec.name != name && spec.hostname.as_deref() == Some(spec.name.as_str()) {
        spec.hostname = None;
    }
    spec.name = name.clone();
    let incremental = manifest.since.is_some();
    let ids = dataset_ids(&name, &manifest.datasets);
    let guard = e.lock(&name).await;
    let mut was_running = false;
    if incremental {
        let since = manifest.since.clone().unwrap_or_default();
        if e.store.get_desired(&name)?.is_none() {
            return Err(conflict(format!(
                "{name} does not exist here: import the full archive it was exported after first"
            )));
        }
        let snaps = e
            .list_snapshots(&Target::Workload(name.clone()))
            .await
            .map_err(|x| conflict(format!("{x:#}")))?;
        if !snaps.iter().any(|s| s.label == since) {
            return Err(conflict(format!(
                "{name} has no snapshot {since:?}, the base of this incremental archive"
            )));
        }
        if e.observed_row(&name).and_then(|r| r.pid).is_some() {
            was_running = true;
            e.stop(&name, "incremental import").await?;
        }
    } else if e.store.get_desired(&name)?.is_some()
        || e.observed_row(&name).is_some()
        || e.storage.data_path(&name).exists()
    {
        return Err(conflict(format!(
            "a workload named {name:?} already exists here (use --name to import under another name)"
        )));
    }
    let received = receive_all(
        &e,
        &spool,
        sections,
        ids.clone(),
        manifest.label.clone(),
        incremental,
    )
    .await;
    if let Err(err) = received {
        e.event(Some(&name), "error", &format!("import failed: {err:#}"));
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{err:#}"),
        ));
    }
    let hash = spec.hash();
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
        "import",
        &format!(
            "imported snapshot {}{}",
            manifest.label,
            manifest
                .since
                .as_ref()
                .map(|s| format!(" on top of {s}"))
                .unwrap_or_default()
        ),
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

/// Receives verified sections into `ids`; on failure of a full import, deletes what was made.
async fn receive_all(
    e: &Arc<Engine>,
    spool: &Spool,
    sections: Vec<archive::Section>,
    ids: Vec<DatasetId>,
    label: String,
    incremental: bool,
) -> anyhow::Result<()> {
    let storage = e.storage.clone();
    let path = spool.0.clone();
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let file = std::fs::File::open(&path)?;
        let mut done: Vec<DatasetId> = Vec::new();
        for (sec, id) in sections.iter().zip(&ids) {
            let mut r = archive::section_reader(&file, sec)?;
            if let Err(err) = storage.receive(id, &label, &mut r) {
                if !incremental {
                    for d in &done {
                        let _ = match d {
                            DatasetId::Rootfs(n) => storage.delete_rootfs(n),
                            DatasetId::Data(n) => storage.delete_data(n),
                            DatasetId::Volume(n) => storage.delete_volume(n),
                        };
                    }
                }
                return Err(anyhow::anyhow!("receiving {}: {err}", id.key()));
            }
            done.push(id.clone());
        }
        Ok(())
    })
    .await?;
    super::release_memory();
    r
}

async fn import_volume(
    e: Arc<Engine>,
    spool: Spool,
    manifest: Manifest,
    sections: Vec<archive::Section>,
    name: String,
    mut vol: warren_model::VolumeSpec,
) -> Result<Json<ImportResponse>, ApiError> {
    vol.name = name.clone();
    let id = DatasetId::Volume(name.clone());
    let exists = e.storage.dataset_path(&id).exists();
    let incremental = manifest.since.is_some();
    let users: Vec<String> = e
        .store
        .desired()?
        .values()
        .filter(|d| d.spec.volumes.iter().any(|m| m.volume == name))
        .filter(|d| e.observed_row(&d.spec.name).and_then(|r| r.pid).is_some())
        .map(|d| d.spec.name.clone())
        .collect();
    if incremental {
        let since = manifest.since.clone().unwrap_or_default();
        let snaps = e
            .list_snapshots(&Target::Volume(name.clone()))
            .await
            .map_err(|x| conflict(format!("{x:#}")))?;
        if !snaps.iter().any(|s| s.label == since) {
            return Err(conflict(format!(
                "volume {name} has no snapshot {since:?}, the base of this incremental archive"
            )));
        }
        if !users.is_empty() {
            return Err(conflict(format!(
                "volume {name} is in use by running workloads: {} (stop them first)",
                users.join(", ")
            )));
        }
    } else if exists || e.store.volumes()?.contains_key(&name) {
        return Err(conflict(format!(
            "a volume named {name:?} already exists here (use --name to import under another name)"
        )));
    }
    if let Err(err) = receive_all(
        &e,
        &spool,
        sections,
        vec![id.clone()],
        manifest.label.clone(),
        incremental,
    )
    .await
    {
        e.event(
            None,
            "error",
            &format!("import of volume {name} failed: {err:#}"),
        );
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{err:#}"),
        ));
    }
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
        "import",
        &format!("imported volume {name} (snapshot {})", manifest.label),
    );
    Ok(Json(ImportResponse {
        name,
        label: manifest.label,
        incremental,
    }))
}
