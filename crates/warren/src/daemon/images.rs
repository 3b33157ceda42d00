//! OCI images: imported into layer-chain worlds, stored by reference, resolved for
//! `image = "REF"` workloads.
//!
//! Every layer of an image becomes one sealed world, `oci-<chain id>` (the first 48 hex digits
//! of the OCI ChainID of the layers up to and including it): a copy-on-write snapshot of the
//! world of the layer below, with the layer applied by `warren-image`. Two images sharing their
//! lower layers share those worlds, and a layer already present is never applied again. A
//! workload's rootfs is a snapshot of its image's top world, like any other world.
//!
//! The `images` table maps each reference (`app:v1`, `HOST:PORT/app:1.2`) to the image id (its
//! config digest), the config (Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Labels)
//! and the chain of worlds. Re-importing a reference moves it; a workload whose reference now
//! names another image id is provisioned again on its next reconcile (the image id is part of
//! its drift hash, see [`image_hash`]).
//!
//! Removal: `image rm` forgets a reference (refused while a declared workload names it);
//! `image gc` deletes every layer world that no stored image uses. A workload's rootfs never
//! depends on a layer world on btrfs and the dir driver (it is a snapshot or a copy); on ZFS a
//! clone keeps its origin, and gc reports such a world as still in use instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use warren_model::event::EventKind;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use warren_image::{ApplyOptions, Digest, ImageArchive, OpenOptions};
use warren_model::Source;
use warren_storage::{Storage, StorageError};
use warren_store::{ImageRecord, Store};

pub use super::sources::{normalize_reference, record_config};

pub use warren_model::names::LAYER_PREFIX;

/// Whether `world` is an image layer (kept out of `world list`, managed by `image gc`).
pub fn is_layer_world(world: &str) -> bool {
    world.starts_with(LAYER_PREFIX)
}

/// The OCI ChainIDs of a layer stack, lowest first: `ChainID(L0) = DiffID(L0)`,
/// `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.to_string(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(sha2::Sha256::digest(format!("{prev} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

/// The world holding the layer stack whose ChainID is `chain` (`sha256:HEX`).
pub fn layer_world(chain: &str) -> String {
    let hex = chain.split_once(':').map_or(chain, |(_, h)| h);
    format!("{LAYER_PREFIX}{}", &hex[..hex.len().min(48)])
}

/// One image an import stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Imported {
    pub reference: String,
    pub id: String,
    pub layers: usize,
    /// Layers applied now (the others were already stored).
    pub new_layers: usize,
    /// The reference named another image before.
    pub replaced: Option<String>,
}

/// Imports every image of an archive read from `input` (spooled under `spool`). `tag`, when
/// given, names the archive's only image. Layers are applied into new worlds one by one; a
/// failure deletes the world being built and leaves what existed unchanged (already
/// completed layer worlds of this import stay for the next attempt and for gc).
pub fn import(
    storage: &dyn Storage,
    store: &Store,
    input: impl Read,
    name: &str,
    spool: &Path,
    tag: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Imported>> {
    std::fs::create_dir_all(spool).with_context(|| format!("creating {}", spool.display()))?;
    let options = OpenOptions {
        spool_dir: Some(spool.to_path_buf()),
        ..OpenOptions::default()
    };
    let archive = ImageArchive::from_reader(input, name, &options)?;
    import_archive(storage, store, &archive, tag, progress)
}

/// [`import`] of an opened archive (also used for pulled OCI layouts).
pub fn import_archive(
    storage: &dyn Storage,
    store: &Store,
    archive: &ImageArchive,
    tag: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Imported>> {
    let manifests = archive.manifests();
    if manifests.is_empty() {
        bail!("the archive holds no image for this host's platform");
    }
    // Work out every reference first, so a naming problem stores nothing.
    let mut plan = Vec::new();
    match tag {
        Some(t) => {
            if manifests.len() > 1 {
                bail!(
                    "the archive holds {} images; --tag names exactly one",
                    manifests.len()
                );
            }
            plan.push((
                normalize_reference(t).map_err(|e| anyhow!(e))?,
                &manifests[0],
            ));
        }
        None => {
            for m in manifests {
                if m.tags.is_empty() {
                    bail!(
                        "image {} in the archive has no name: give one with --tag NAME:TAG",
                        m.config_digest
                    );
                }
                for t in &m.tags {
                    // An OCI layout's ref.name may be a bare tag (`v1`), as umoci writes it.
                    if archive.kind() == warren_image::ArchiveKind::OciLayout
                        && !t.contains([':', '/', '@'])
                    {
                        bail!(
                            "the image's only name is the tag {t:?}: give a name with --tag NAME:{t}"
                        );
                    }
                    plan.push((normalize_reference(t).map_err(|e| anyhow!(e))?, m));
                }
            }
        }
    }
    let apply = ApplyOptions::default();
    let mut out = Vec::new();
    let existing: BTreeSet<String> = storage.list_worlds()?.into_iter().collect();
    let mut made: BTreeMap<String, ()> = BTreeMap::new();
    for (reference, m) in plan {
        let diff_ids: Vec<Digest> = m.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let mut worlds = Vec::new();
        let mut new_layers = 0;
        let mut parent: Option<String> = None;
        for (i, (layer, chain)) in m.layers.iter().zip(&chains).enumerate() {
            let world = layer_world(chain);
            if !existing.contains(&world) && !made.contains_key(&world) {
                progress(&format!(
                    "{reference}: layer {}/{} {} ({} bytes)",
                    i + 1,
                    m.layers.len(),
                    layer.digest,
                    layer.size
                ));
                warren_storage::worlds::derive_world(
                    storage,
                    &world,
                    parent.as_deref(),
                    Vec::new(),
                    |root| {
                        archive
                            .apply_layer(layer, root, &apply)
                            .map(|_| ())
                            .map_err(|e| StorageError::Other(e.to_string()))
                    },
                )
                .with_context(|| format!("{reference}: layer {}", layer.digest))?;
                made.insert(world.clone(), ());
                new_layers += 1;
            }
            worlds.push(world.clone());
            parent = Some(world);
        }
        if worlds.is_empty() {
            // An image without layers still needs a root filesystem: an empty world.
            let world = layer_world(&Digest::sha256(b"").to_string());
            if !existing.contains(&world) && !made.contains_key(&world) {
                warren_storage::worlds::derive_world(
                    storage,
                    &world,
                    None,
                    Vec::new(),
                    |_| Ok(()),
                )?;
                made.insert(world.clone(), ());
            }
            worlds.push(world);
        }
        let id = m.config_digest.to_string();
        let replaced = store
            .image(&reference)?
            .filter(|old| old.id != id)
            .map(|old| old.id);
        store.put_image(&ImageRecord {
            reference: reference.clone(),
            id: id.clone(),
            manifest_digest: m.digest.as_ref().map(|d| d.to_string()),
            config: serde_json::to_value(&m.config)?,
            layers: worlds,
            size: m.layers.iter().map(|l| l.size).sum(),
            created_ms: warren_store::now_ms(),
        })?;
        out.push(Imported {
            reference,
            id,
            layers: m.layers.len(),
            new_layers,
            replaced,
        });
    }
    Ok(out)
}

/// Deletes every layer world no stored image uses. Returns the worlds deleted and, for those
/// that could not be, why.
pub fn gc(storage: &dyn Storage, store: &Store) -> Result<(Vec<String>, Vec<String>)> {
    let used: BTreeSet<String> = store
        .images()?
        .into_values()
        .flat_map(|i| i.layers)
        .collect();
    let mut unused: Vec<String> = storage
        .list_worlds()?
        .into_iter()
        .chain(half_built_layers(storage))
        .filter(|w| is_layer_world(w) && !used.contains(w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Children before parents: on ZFS a parent cannot go while its clone exists. Chain worlds
    // carry no depth, so retry until a pass deletes nothing more.
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    loop {
        let mut progress = false;
        let mut left = Vec::new();
        kept.clear();
        for w in unused {
            match storage.delete_world(&w) {
                Ok(()) => {
                    deleted.push(w);
                    progress = true;
                }
                Err(e) => {
                    kept.push(format!("{w}: {e}"));
                    left.push(w);
                }
            }
        }
        unused = left;
        if !progress || unused.is_empty() {
            break;
        }
    }
    Ok((deleted, kept))
}

/// Layer worlds left unsealed by an interrupted import (not listed by `list_worlds`).
fn half_built_layers(storage: &dyn Storage) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(storage.root().join("worlds")) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_layer_world(n) && !n.ends_with(".json") && !n.ends_with(".sealed"))
        .collect()
}

// ---- API ---------------------------------------------------------------------------------

use super::engine::Engine;
use super::error::{ApiError, ErrorKind, ImageError};
use crate::wire::{ImageGcResponse, ImageImported, ImageInfo};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::Json;
use std::sync::Arc;

/// One import, pull or gc at a time: they create and delete layer worlds.
static LAYERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn layers_lock() -> std::sync::MutexGuard<'static, ()> {
    LAYERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Declared workloads naming `reference` (normalized).
fn users(e: &Engine, reference: &str) -> Result<Vec<String>> {
    Ok(e.store
        .desired()?
        .into_values()
        .filter(|d| match &d.spec.source {
            Source::Image(r) => normalize_reference(r).as_deref() == Ok(reference),
            _ => false,
        })
        .map(|d| d.spec.name)
        .collect())
}

#[derive(Deserialize)]
pub struct ImportQuery {
    pub tag: Option<String>,
}

/// `POST /v1/images/import?tag=REF`: a docker-save or OCI archive as the request body.
pub async fn import_handler(
    State(e): State<Arc<Engine>>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<Vec<ImageImported>>, ApiError> {
    if let Some(Err(m)) = q.tag.as_deref().map(normalize_reference) {
        let err = ApiError::from(ImageError::BadReference(m));
        return Err(super::transfer::refuse_upload(body, err).await);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(super::transfer::feed_body(body, tx));
    let engine = e.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut body = super::transfer::BodyReader::new(rx);
        let _guard = layers_lock();
        let spool = engine.cfg.state_dir.join("tmp");
        let r = import(
            &*engine.storage,
            &engine.store,
            &mut body,
            "the uploaded archive",
            &spool,
            q.tag.as_deref(),
            &mut |line| tracing::info!("image import: {line}"),
        );
        body.drain();
        r
    })
    .await
    .map_err(|x| anyhow!(x))?;
    let imported = result.map_err(|x| {
        let msg = format!("image import refused: {x:#}");
        e.event(None, EventKind::error(&msg));
        match super::error::kind_or(&x, ErrorKind::Invalid) {
            ErrorKind::Invalid => ApiError::from(ImageError::Invalid(msg)),
            kind => ApiError::new(kind, msg),
        }
    })?;
    let mut out = Vec::new();
    for i in imported {
        e.event(
            None,
            EventKind::ImageImported {
                reference: i.reference.clone(),
                id: i.id.clone(),
                layers: i.layers,
                new_layers: i.new_layers,
                replaced: i.replaced.clone(),
            },
        );
        out.push(ImageImported {
            reference: i.reference,
            id: i.id,
            layers: i.layers,
            new_layers: i.new_layers,
            replaced: i.replaced,
        });
    }
    // Workloads whose reference moved are provisioned again.
    e.wake();
    Ok(Json(out))
}

/// How to pull: credentials, plain HTTP off loopback, platform (`os/arch[/variant]`).
#[derive(Deserialize, Default, Clone, schemars::JsonSchema)]
pub struct PullRequest {
    pub reference: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub platform: Option<String>,
}

/// `os/arch[/variant]`.
pub fn parse_platform(s: &str) -> Result<warren_image::Platform, String> {
    let parts: Vec<&str> = s.split('/').collect();
    let ok = |p: &&str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match parts.as_slice() {
        [os, arch] if ok(os) && ok(arch) => Ok(warren_image::Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }),
        [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(warren_image::Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: Some(v.to_string()),
        }),
        _ => Err(format!(
            "platform {s:?} must be OS/ARCH[/VARIANT], e.g. linux/arm64/v8"
        )),
    }
}

/// The registry a reference names, if it names one (`HOST[:PORT]/...`).
pub fn registry_of(reference: &str) -> Option<String> {
    warren_registry::Reference::parse(reference)
        .ok()
        .and_then(|r| r.registry().map(str::to_string))
}

/// Pulls `req.reference` into a scratch OCI layout and imports it; `progress` sees each step.
pub async fn pull(
    engine: &Arc<Engine>,
    req: PullRequest,
    progress: Arc<dyn Fn(String) + Send + Sync>,
) -> Result<Vec<Imported>> {
    let reference =
        warren_registry::Reference::parse(&req.reference).map_err(|e| anyhow!("{e}"))?;
    let platform = match &req.platform {
        Some(p) => parse_platform(p).map_err(|e| anyhow!(e))?,
        None => warren_image::Platform::host(),
    };
    let credentials = match (&req.username, &req.password) {
        (Some(u), Some(p)) => Some(warren_registry::Credentials::new(u, p)),
        (Some(_), None) | (None, Some(_)) => bail!("give both a username and a password"),
        (None, None) => None,
    };
    let seen: Arc<std::sync::Mutex<BTreeMap<String, u64>>> = Arc::default();
    let p2 = progress.clone();
    let report: warren_registry::ProgressFn = Arc::new(move |p: &warren_registry::Progress<'_>| {
        // A line when a blob starts, at every quarter and when it ends.
        let quarter = (p.done * 4).checked_div(p.total).unwrap_or(4);
        let mut seen = seen.lock().unwrap_or_else(|x| x.into_inner());
        let key = p.digest.to_string();
        if seen.get(&key) != Some(&quarter) {
            seen.insert(key.clone(), quarter);
            p2(format!(
                "{} {key}: {}/{} bytes",
                match p.kind {
                    warren_registry::BlobKind::Config => "config",
                    warren_registry::BlobKind::Layer => "layer",
                },
                p.done,
                p.total
            ));
        }
    });
    let options = warren_registry::PullOptions {
        platform: platform.clone(),
        credentials,
        insecure: req.insecure,
        progress: Some(report),
        ..Default::default()
    };
    let dest = engine.cfg.state_dir.join("tmp").join(format!(
        "pull-{}-{}",
        std::process::id(),
        PULLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    progress(format!("pulling {reference}"));
    let pulled = warren_registry::pull(&reference, &dest, &options).await;
    let result = match pulled {
        Err(e) => Err(anyhow!("{e}")),
        Ok(p) => {
            progress(format!(
                "pulled {} ({}, {} layers, {} bytes downloaded)",
                p.name, p.manifest_digest, p.layers, p.downloaded
            ));
            let engine = engine.clone();
            let dir = dest.clone();
            let progress = progress.clone();
            tokio::task::spawn_blocking(move || {
                let _guard = layers_lock();
                let archive = warren_image::open_archive_with(
                    &dir,
                    &OpenOptions {
                        platform,
                        spool_dir: Some(engine.cfg.state_dir.join("tmp")),
                        ..OpenOptions::default()
                    },
                )?;
                import_archive(
                    &*engine.storage,
                    &engine.store,
                    &archive,
                    Some(&p.name),
                    &mut |l| progress(l.to_string()),
                )
            })
            .await
            .map_err(|e| anyhow!(e))?
        }
    };
    let _ = std::fs::remove_dir_all(&dest);
    result
}

static PULLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `POST /v1/images/pull`: NDJSON `{"line": ...}` progress, then `{"pulled": [...]}` or
/// `{"error": ...}`.
pub async fn pull_handler(
    State(e): State<Arc<Engine>>,
    body: bytes::Bytes,
) -> Result<axum::response::Response, ApiError> {
    let req: PullRequest = serde_json::from_slice(&body)
        .map_err(|x| ApiError::from(ImageError::BadReference(format!("bad pull request: {x}"))))?;
    if let Err(err) = warren_registry::Reference::parse(&req.reference) {
        return Err(ApiError::from(ImageError::BadReference(err.to_string())));
    }
    if let Some(Err(m)) = req.platform.as_deref().map(parse_platform) {
        return Err(ApiError::from(ImageError::BadReference(m)));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
    let line = crate::ndjson::line::<crate::wire::PullLine>;
    let engine = e.clone();
    tokio::spawn(async move {
        let t = tx.clone();
        let progress: Arc<dyn Fn(String) + Send + Sync> = Arc::new(move |l: String| {
            let _ = t.send(line(crate::wire::PullLine::Line(l)));
        });
        let reference = req.reference.clone();
        match pull(&engine, req, progress).await {
            Ok(imported) => {
                for i in &imported {
                    engine.event(
                        None,
                        EventKind::ImagePulled {
                            reference: i.reference.clone(),
                            id: Some(i.id.clone()),
                            new_layers: Some(i.new_layers),
                        },
                    );
                }
                engine.wake();
                let out: Vec<ImageImported> = imported
                    .into_iter()
                    .map(|i| ImageImported {
                        reference: i.reference,
                        id: i.id,
                        layers: i.layers,
                        new_layers: i.new_layers,
                        replaced: i.replaced,
                    })
                    .collect();
                let _ = tx.send(line(crate::wire::PullLine::Pulled(out)));
            }
            Err(err) => {
                let msg = format!("pull of {reference} failed: {err:#}");
                engine.event(None, EventKind::error(&msg));
                let _ = tx.send(line(crate::wire::PullLine::Error(msg)));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

/// `GET /v1/images`.
pub async fn list_handler(State(e): State<Arc<Engine>>) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    let mut out = Vec::new();
    for (reference, rec) in e.store.images()? {
        let config = record_config(&rec)?;
        out.push(ImageInfo {
            used_by: users(&e, &reference)?,
            reference,
            id: rec.id,
            manifest_digest: rec.manifest_digest,
            layers: rec.layers.len(),
            size: rec.size,
            created_ms: rec.created_ms,
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            env: config.env,
            working_dir: config.working_dir,
            user: config.user,
            exposed_ports: config.exposed_ports,
            labels: config.labels,
        });
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
pub struct RmQuery {
    pub reference: String,
}

/// `DELETE /v1/images?reference=REF`: forgets the reference (its layers stay until gc).
pub async fn rm_handler(
    State(e): State<Arc<Engine>>,
    Query(q): Query<RmQuery>,
) -> Result<Json<crate::wire::Removed>, ApiError> {
    let reference = normalize_reference(&q.reference)
        .map_err(|m| ApiError::from(ImageError::BadReference(m)))?;
    let users = users(&e, &reference)?;
    if !users.is_empty() {
        return Err(ApiError::from(ImageError::InUse(format!(
            "image {reference} is used by {}: change or remove them first",
            users.join(", ")
        ))));
    }
    if !e.store.remove_image(&reference)? {
        return Err(ApiError::from(ImageError::NotFound(format!(
            "no image {reference} is stored"
        ))));
    }
    e.event(
        None,
        EventKind::ImageRemoved {
            reference: reference.clone(),
        },
    );
    Ok(Json(crate::wire::Removed { removed: reference }))
}

/// `POST /v1/images/gc`: deletes the layers no stored image uses.
pub async fn gc_handler(State(e): State<Arc<Engine>>) -> Result<Json<ImageGcResponse>, ApiError> {
    let engine = e.clone();
    let (deleted, kept) = tokio::task::spawn_blocking(move || {
        let _guard = layers_lock();
        gc(&*engine.storage, &engine.store)
    })
    .await
    .map_err(|x| anyhow!(x))??;
    if !deleted.is_empty() {
        e.event(
            None,
            EventKind::ImageGc {
                deleted: deleted.len(),
            },
        );
    }
    Ok(Json(ImageGcResponse { deleted, kept }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a.to_string());
        let want = format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(format!("{a} {b}").as_bytes()))
        );
        assert_eq!(chains[1], want);
        // The same upper layer on another base is another chain.
        let c = chain_ids(&[b.clone(), b.clone()]);
        assert_ne!(c[1], chains[1]);
        assert_eq!(layer_world(&chains[1]).len(), LAYER_PREFIX.len() + 48);
        assert!(is_layer_world(&layer_world(&chains[0])));
    }
}
