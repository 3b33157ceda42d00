//! World management over the API: build (`host`, `busybox`, `debian[-SUITE]`,
//! `freebsd-M-m[-thin]`, with the build's output streamed as NDJSON lines), import from a root filesystem tarball, export as a
//! zstd-compressed tarball that imports elsewhere, and removal.
//!
//! Import applies the tarball with `warren-image`'s layer application, so a hostile tarball
//! (`..` or absolute names, links leading out, device nodes, bombs) is refused with nothing
//! written outside the new world, and a refused import leaves no world behind. An export holds
//! `.warren-world.json` (the world's default command) as its first entry and skips device
//! nodes and sockets (the runtime provides `/dev`). Worlds that bind host directories (`host`)
//! are not exportable: they are thin views of this host.

use std::io::{BufRead, Write};
use std::sync::Arc;
use warren_model::event::EventKind;

use anyhow::anyhow;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use warren_model::Source;
use warren_storage::{Storage, StorageError};

use super::engine::Engine;
use super::error::{ApiError, ErrorKind, WorldError};

/// The metadata entry at the head of an exported world.
pub const META_ENTRY: &str = ".warren-world.json";

/// One world build or import at a time.
static BUILDS: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn builds_lock() -> std::sync::MutexGuard<'static, ()> {
    BUILDS.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Serialize, Deserialize, Default)]
struct ExportedMeta {
    #[serde(default)]
    default_command: Vec<String>,
}

/// Whether warren can build `name` itself.
pub fn buildable(name: &str) -> bool {
    warren_storage::worlds::KNOWN_WORLDS.contains(&name)
        || warren_storage::debian::suite_of(name).is_some()
        || warren_storage::freebsd::release_of(name).is_some()
}

/// Builds FreeBSD release world `name` (a thin one on its thick world, which is built first
/// when missing) from the distribution site `mirror`, else the environment's, else the local
/// distribution sets.
fn create_freebsd(
    engine: &Engine,
    name: &str,
    release: &warren_storage::freebsd::ReleaseWorld,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(&str),
) -> Result<warren_storage::WorldMeta, StorageError> {
    use warren_storage::freebsd;
    let storage: &dyn Storage = &*engine.storage;
    let base_world = release.base_world();
    let have_base = storage.list_worlds()?.contains(&base_world);
    if !have_base {
        let source = freebsd::dist_source(
            release,
            mirror,
            std::env::var(freebsd::DIST_ENV).ok().as_deref(),
            std::path::Path::new(freebsd::LOCAL_DIST),
        )?;
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let scratch = engine.cfg.state_dir.join("tmp").join(format!(
            "freebsd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let built = (|| {
            let base = freebsd::fetch_verified(&source, &scratch, engine.exec.as_ref(), progress)?;
            progress(&format!(
                "unpacking {} into world {base_world}",
                base.display()
            ));
            freebsd::create_thick(storage, &base_world, &base, unpack_txz)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        let meta = built?;
        if !release.thin {
            return Ok(meta);
        }
        engine.event(
            None,
            EventKind::WorldCreated {
                name: base_world.to_string(),
            },
        );
    } else if !release.thin {
        return Err(StorageError::Exists(storage.world_meta_path(name)));
    }
    progress(&format!("sharing the base of {base_world} read-only"));
    freebsd::create_thin(storage, name, &base_world)
}

/// Unpacks an xz-compressed tarball into `root` with the safe layer application (`xz -dc`
/// decompresses; the tar stream is checked entry by entry as it arrives).
fn unpack_txz(archive: &std::path::Path, root: &std::path::Path) -> Result<(), StorageError> {
    let mut cmd = warren_exec::std_command("xz").map_err(|_| {
        StorageError::Other("xz is not installed (apt-get install xz-utils)".into())
    })?;
    cmd.arg("-dc")
        .arg(archive)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| StorageError::Other(format!("running xz: {e}")))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let applied = warren_image::apply_layer_with(
        root,
        std::io::BufReader::with_capacity(1 << 20, stdout),
        warren_image::Compression::None,
        &warren_image::ApplyOptions::default(),
    );
    if applied.is_err() {
        let _ = child.kill();
    }
    let out = child
        .wait_with_output()
        .map_err(|e| StorageError::Other(format!("waiting for xz: {e}")))?;
    applied.map_err(|e| StorageError::Other(format!("{}: {e}", archive.display())))?;
    if !out.status.success() {
        return Err(StorageError::Other(format!(
            "xz -dc {}: {} {}",
            archive.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

async fn existing(e: &Arc<Engine>) -> Result<Vec<String>, ApiError> {
    let storage = e.storage.clone();
    Ok(tokio::task::spawn_blocking(move || storage.list_worlds())
        .await
        .map_err(|x| anyhow!(x))?
        .map_err(|x| anyhow!(x))?)
}

fn check_new_name(name: &str) -> Result<(), ApiError> {
    if let Err(r) = warren_model::names::check_dns_label(name) {
        return Err(ApiError::from(WorldError::BadRequest(format!(
            "invalid world name {name:?}: {r}"
        ))));
    }
    if super::images::is_layer_world(name) {
        return Err(ApiError::from(WorldError::BadRequest(format!(
            "world names starting with {:?} are image layers",
            super::images::LAYER_PREFIX
        ))));
    }
    if super::recipes::is_recipe_world(name) {
        return Err(ApiError::from(WorldError::BadRequest(format!(
            "world names starting with {:?} are recipe builds",
            super::recipes::RECIPE_PREFIX
        ))));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct CreateQuery {
    pub mirror: Option<String>,
}

/// `POST /v1/worlds/{name}?mirror=URL`: builds a world warren knows how to build. The answer
/// is NDJSON: `{"line": ...}` for each line of the build's output, then `{"created": NAME}`
/// or `{"error": ...}`.
pub async fn create_handler(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<CreateQuery>,
) -> Result<Response, ApiError> {
    check_new_name(&name)?;
    if existing(&e).await?.contains(&name) {
        return Err(ApiError::from(WorldError::Conflict(format!(
            "world {name:?} already exists"
        ))));
    }
    if !buildable(&name) {
        return Err(ApiError::from(WorldError::BadRequest(
            format!(
                "world {name:?} is not one warren can build (known: {}, debian, debian-SUITE, freebsd-M-m, freebsd-M-m-thin); import a root filesystem with `warren world import {name} FILE`",
                warren_storage::worlds::KNOWN_WORLDS.join(", ")
            ),
        )));
    }
    if let Some(m) = &q.mirror {
        if !(m.starts_with("http://") || m.starts_with("https://") || m.starts_with("file:/")) {
            return Err(ApiError::from(WorldError::BadRequest(format!(
                "mirror {m:?} must be an http://, https:// or file:/ URL"
            ))));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let engine = e.clone();
    tokio::task::spawn_blocking(move || {
        let send = |v: crate::wire::WorldBuildLine| {
            let _ = tx.blocking_send(crate::ndjson::line(v));
        };
        let _guard = builds_lock();
        let storage = &*engine.storage;
        let result = if let Some(rel) = warren_storage::freebsd::release_of(&name) {
            create_freebsd(&engine, &name, &rel, q.mirror.as_deref(), &mut |l| {
                send(crate::wire::WorldBuildLine::Line(l.to_string()))
            })
        } else if warren_storage::debian::suite_of(&name).is_some() {
            warren_storage::debian::create_debian(
                storage,
                engine.exec.as_ref(),
                &name,
                q.mirror.as_deref(),
                &mut |l| send(crate::wire::WorldBuildLine::Line(l.to_string())),
            )
        } else {
            send(crate::wire::WorldBuildLine::Line(format!(
                "building world {name}"
            )));
            warren_storage::worlds::create_world(storage, &name, engine.exec.as_ref())
        };
        match result {
            Ok(_) => {
                engine.event(
                    None,
                    EventKind::WorldCreated {
                        name: name.to_string(),
                    },
                );
                send(crate::wire::WorldBuildLine::Created(name.to_string()));
            }
            Err(err) => {
                engine.event(
                    None,
                    EventKind::error(format!("world {name} failed: {err}")),
                );
                send(crate::wire::WorldBuildLine::Error(format!(
                    "world {name}: {err}"
                )));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

#[derive(Deserialize)]
pub struct ImportQuery {
    /// The default command, as JSON (`["/bin/sh"]`); else the archive's, else `/bin/sh`.
    pub command: Option<String>,
}

/// `POST /v1/worlds/{name}/import`: a root filesystem tarball (plain, gzip or zstd) as the
/// body becomes world `name`.
pub async fn import_handler(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<ImportQuery>,
    body: Body,
) -> Result<Json<crate::wire::WorldImported>, ApiError> {
    let checked = async {
        check_new_name(&name)?;
        let command: Option<Vec<String>> = match &q.command {
            Some(c) => Some(serde_json::from_str(c).map_err(|x| {
                ApiError::from(WorldError::BadRequest(format!(
                    "command must be a JSON array of strings: {x}"
                )))
            })?),
            None => None,
        };
        if existing(&e).await?.contains(&name) {
            return Err(ApiError::from(WorldError::Conflict(format!(
                "world {name:?} already exists"
            ))));
        }
        Ok(command)
    }
    .await;
    let command = match checked {
        Ok(c) => c,
        Err(err) => return Err(super::transfer::refuse_upload(body, err).await),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(super::transfer::feed_body(body, tx));
    let engine = e.clone();
    let n = name.clone();
    let stats = tokio::task::spawn_blocking(move || {
        let mut body = super::transfer::BodyReader::new(rx);
        let _guard = builds_lock();
        let storage: &dyn Storage = &*engine.storage;
        let mut entries = 0;
        let mut archive_meta: Option<ExportedMeta> = None;
        let r = warren_storage::worlds::derive_world(storage, &n, None, Vec::new(), |root| {
            let mut input = std::io::BufReader::with_capacity(1 << 20, &mut body);
            let head = input
                .fill_buf()
                .map_err(|x| StorageError::Other(format!("reading the upload: {x}")))?;
            let compression = warren_image::Compression::detect(head);
            let stats = warren_image::apply_layer_with(
                root,
                &mut input,
                compression,
                &warren_image::ApplyOptions::default(),
            )
            .map_err(|x| StorageError::Other(x.to_string()))?;
            entries = stats.entries;
            let meta_path = root.join(META_ENTRY);
            if let Ok(bytes) = std::fs::read(&meta_path) {
                archive_meta = Some(serde_json::from_slice(&bytes).map_err(|x| {
                    StorageError::Other(format!("{META_ENTRY} in the archive is invalid: {x}"))
                })?);
                std::fs::remove_file(&meta_path)
                    .map_err(|x| StorageError::Other(format!("{META_ENTRY}: {x}")))?;
            }
            // An archive with no entries (zero bytes are a valid empty tar) is no world.
            let empty = std::fs::read_dir(root)
                .map_err(|x| StorageError::Other(format!("{}: {x}", root.display())))?
                .next()
                .is_none();
            if empty {
                return Err(StorageError::Other(
                    "the archive holds no files (an empty tar); give the tarball of a root \
                     filesystem"
                        .into(),
                ));
            }
            Ok(())
        });
        body.drain();
        let meta = r?;
        // The command: the operator's, else the archive's, else the shell.
        let wanted = command
            .or(archive_meta.map(|m| m.default_command))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into()]);
        if meta.default_command != wanted {
            let mut meta = meta;
            meta.default_command = wanted;
            let path = storage.world_meta_path(&n);
            let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
            std::fs::write(&path, json)
                .map_err(|x| StorageError::Other(format!("{}: {x}", path.display())))?;
        }
        Ok::<_, StorageError>(entries)
    })
    .await
    .map_err(|x| anyhow!(x))?
    .map_err(|x| {
        let msg = format!("world import refused: {x}");
        e.event(None, EventKind::error(&msg));
        match super::error::storage_kind(&x) {
            ErrorKind::OutOfSpace => ApiError::new(ErrorKind::OutOfSpace, msg),
            _ => ApiError::from(WorldError::Invalid(msg)),
        }
    })?;
    e.event(
        None,
        EventKind::WorldImported {
            name: name.to_string(),
            entries: stats,
        },
    );
    Ok(Json(crate::wire::WorldImported {
        created: name,
        entries: stats as u64,
    }))
}

/// `GET /v1/worlds/{name}/export`: the world as a zstd-compressed tarball.
pub async fn export_handler(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if !existing(&e).await?.contains(&name)
        || super::images::is_layer_world(&name)
        || super::recipes::is_recipe_world(&name)
    {
        return Err(ApiError::from(WorldError::NotFound(format!(
            "no world named {name:?}"
        ))));
    }
    let meta = warren_storage::worlds::world_meta(&*e.storage, &name).map_err(|x| anyhow!(x))?;
    if !meta.binds.is_empty() {
        return Err(ApiError::from(WorldError::Conflict(
            format!(
                "world {name} binds host directories ({}): it is a view of this host, build it on the other host instead",
                meta.binds
                    .iter()
                    .map(|b| b.source.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )));
    }
    let root = e.storage.world_path(&name);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    let engine = e.clone();
    tokio::task::spawn_blocking(move || {
        let run = || -> std::io::Result<()> {
            let out =
                std::io::BufWriter::with_capacity(1 << 20, super::transfer::ChannelWriter(tx));
            let mut enc = zstd::Encoder::new(out, 3)?;
            {
                let mut b = tar::Builder::new(&mut enc);
                b.follow_symlinks(false);
                let json = serde_json::to_vec(&ExportedMeta {
                    default_command: meta.default_command.clone(),
                })
                .expect("meta serializes");
                let mut h = tar::Header::new_gnu();
                h.set_size(json.len() as u64);
                h.set_mode(0o644);
                h.set_mtime(meta.created_at);
                h.set_cksum();
                b.append_data(&mut h, META_ENTRY, &json[..])?;
                append_tree(&mut b, &root, std::path::Path::new(""))?;
                b.finish()?;
            }
            enc.finish()?.flush()
        };
        let r = run();
        match &r {
            Ok(()) => engine.event(
                None,
                EventKind::WorldExported {
                    name: name.to_string(),
                },
            ),
            Err(err) => engine.event(
                None,
                EventKind::error(format!("export of world {name} failed: {err}")),
            ),
        }
        let _ = done_tx.send(r.map_err(|x| x.to_string()));
    });
    // A failed export ends the body with an error, so the client never takes a cut archive
    // for a whole one.
    let stream = futures_util::stream::unfold((rx, Some(done_rx)), |(mut rx, done)| async move {
        match rx.recv().await {
            Some(b) => Some((Ok::<_, std::io::Error>(b), (rx, done))),
            None => match done?.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some((Err(std::io::Error::other(e)), (rx, None))),
                Err(_) => Some((
                    Err(std::io::Error::other("the export ended early")),
                    (rx, None),
                )),
            },
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/zstd")
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

/// Appends `root/rel` recursively, in name order, without following links and without device
/// nodes or sockets.
fn append_tree<W: Write>(
    b: &mut tar::Builder<W>,
    root: &std::path::Path,
    rel: &std::path::Path,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for n in names {
        let path = rel.join(&n);
        let full = root.join(&path);
        let t = full.symlink_metadata()?.file_type();
        if t.is_char_device() || t.is_block_device() || t.is_socket() {
            continue;
        }
        b.append_path_with_name(&full, &path)?;
        if t.is_dir() {
            append_tree(b, root, &path)?;
        }
    }
    Ok(())
}

/// `DELETE /v1/worlds/{name}`: refused while a declared workload names it.
pub async fn rm_handler(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<crate::wire::Removed>, ApiError> {
    if super::images::is_layer_world(&name) {
        return Err(ApiError::from(WorldError::Conflict(format!(
            "{name} is an image layer: `warren image rm` and `warren image gc` remove it"
        ))));
    }
    if super::recipes::is_recipe_world(&name) {
        return Err(ApiError::from(WorldError::Conflict(format!(
            "{name} is a recipe build"
        ))));
    }
    if !existing(&e).await?.contains(&name) {
        return Err(ApiError::from(WorldError::NotFound(format!(
            "no world named {name:?}"
        ))));
    }
    let users: Vec<String> = e
        .store
        .desired()?
        .into_values()
        .filter(|d| d.spec.source == Source::World(name.clone()))
        .map(|d| d.spec.name)
        .collect();
    if !users.is_empty() {
        return Err(ApiError::from(WorldError::Conflict(format!(
            "world {name} is used by {}",
            users.join(", ")
        ))));
    }
    let storage = e.storage.clone();
    let n = name.clone();
    tokio::task::spawn_blocking(move || {
        let _guard = builds_lock();
        storage.delete_world(&n)
    })
    .await
    .map_err(|x| anyhow!(x))?
    .map_err(|x| ApiError::from(WorldError::Conflict(format!("world {name}: {x}"))))?;
    e.event(
        None,
        EventKind::WorldRemoved {
            name: name.to_string(),
        },
    );
    Ok(Json(crate::wire::Removed { removed: name }))
}
