//! Warrenfile recipe builds: `warren build DIR` and `recipe = "ns/name [PREFIX]"` workloads.
//!
//! The CLI sends the recipe directory as a tar stream; it is unpacked (with `warren-image`'s
//! safe layer application, so a hostile upload writes nothing outside the scratch directory)
//! and its `Warrenfile` parsed ([`warren_model::recipe`]). The parent is resolved: a world
//! (`world W`, default `host`, built-in worlds built on first use), the newest build of another
//! recipe matching a version prefix (`from ns/name 2.1`), or an imported image
//! (`from image app:v1`). The build cache key covers the recipe's meaning, the parent's identity
//! and the content of the directory; the result is the sealed world `rcp-<key>`, a
//! copy-on-write snapshot of the parent with the directory copied to `copy DEST` and the
//! script run as root (`/bin/sh -e`) in an ephemeral container on the host's network, its
//! output streamed back. An unchanged recipe on an unchanged parent is a cache hit; a parent
//! rebuilt with different content gives a different key, so the child is rebuilt. A failing
//! script leaves no world behind.
//!
//! Every build is recorded as (name, version) → key and world; a workload names a recipe and
//! an optional version prefix and gets the newest matching build; the build key is part of
//! its drift hash, so a newer matching build reprovisions it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use warren_model::event::EventKind;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use sha2::Digest as _;
use warren_model::recipe::{self, Parent};

use warren_storage::StorageError;
use warren_store::RecipeBuild;

use super::engine::Engine;
use super::error::{ApiError, ErrorKind};
pub use super::sources::{resolve, resolve_ref};

pub use warren_model::names::RECIPE_PREFIX;

/// The file a recipe directory must hold.
pub const WARRENFILE: &str = "Warrenfile";

static SEQ: AtomicU64 = AtomicU64::new(0);

/// Whether `world` is a recipe build (kept out of `world list`).
pub fn is_recipe_world(world: &str) -> bool {
    world.starts_with(RECIPE_PREFIX)
}

/// sha256 (hex) of a directory tree: every entry's path, type, mode and content (or link
/// target), in name order; the Warrenfile at the top is left out (the recipe's own content
/// is covered by its cache key).
pub fn dir_digest(root: &Path) -> std::io::Result<String> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(root: &Path, rel: &Path, h: &mut sha2::Sha256) -> std::io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            let path = rel.join(&n);
            if path == Path::new(WARRENFILE) {
                continue;
            }
            let full = root.join(&path);
            let m = full.symlink_metadata()?;
            let mut record = format!(
                "{}\0{:o}\0",
                path.display(),
                m.permissions().mode() & 0o7777
            );
            if m.file_type().is_symlink() {
                record.push_str(&format!("l{}", std::fs::read_link(&full)?.display()));
                h.update(record.as_bytes());
            } else if m.is_dir() {
                record.push('d');
                h.update(record.as_bytes());
                walk(root, &path, h)?;
            } else if m.is_file() {
                record.push_str(&format!("f{}\0", m.len()));
                h.update(record.as_bytes());
                let mut f = std::fs::File::open(&full)?;
                std::io::copy(&mut f, h)?;
            } else {
                record.push('o');
                h.update(record.as_bytes());
            }
        }
        Ok(())
    }
    let mut h = sha2::Sha256::new();
    walk(root, Path::new(""), &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// What a build produced.
pub use crate::wire::RecipeBuilt as Built;

/// Builds the recipe unpacked in `dir`. Blocking.
pub fn build(
    engine: &Arc<Engine>,
    dir: &Path,
    version: Option<String>,
    progress: &mut dyn FnMut(&str),
) -> Result<Built> {
    let path = dir.join(WARRENFILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("the recipe directory has no readable {WARRENFILE}: {e}"))?;
    let r = recipe::parse(&text, WARRENFILE).map_err(|e| anyhow!("{e}"))?;
    if let Some(v) = &version {
        recipe::check_version(v).map_err(|e| anyhow!(e))?;
    }
    let version = version.or(r.version.clone()).unwrap_or_else(random_version);
    let storage = engine.storage.clone();
    // The parent world and its identity.
    let (parent_world, parent_id, parent_desc) = match &r.from {
        Some(Parent::Recipe { name, prefix }) => {
            let b = resolve(&engine.store, name, prefix.as_deref())?;
            let desc = format!("recipe {name} {}", b.version);
            (b.world, b.key, desc)
        }
        Some(Parent::Image(reference)) => {
            let rec = engine.image_record(reference)?;
            let top = rec
                .top()
                .ok_or_else(|| anyhow!("image {reference} has no layers"))?
                .to_string();
            (top, rec.id.clone(), format!("image {}", rec.reference))
        }
        None => {
            let w = r.world.clone().unwrap_or_else(|| "host".into());
            if !storage.list_worlds()?.contains(&w) {
                if warren_storage::worlds::KNOWN_WORLDS.contains(&w.as_str()) {
                    progress(&format!("building world {w}"));
                    warren_storage::worlds::create_world(&*storage, &w, engine.exec.as_ref())?;
                } else {
                    bail!("world {w} does not exist (build or import it first)");
                }
            }
            let meta = warren_storage::worlds::world_meta(&*storage, &w)?;
            let id = format!("{w}@{}", meta.created_at);
            (w.clone(), id, format!("world {w}"))
        }
    };
    let digest = dir_digest(dir).context("reading the recipe directory")?;
    let key = r.cache_key(&parent_id, &digest);
    let world = format!("{RECIPE_PREFIX}{}", &key[..40]);
    let cached = storage.list_worlds()?.contains(&world);
    if cached {
        progress(&format!(
            "{} {version}: unchanged recipe on an unchanged parent ({parent_desc}): cached",
            r.name
        ));
    } else {
        progress(&format!("{} {version}: building on {parent_desc}", r.name));
        let meta = warren_storage::worlds::world_meta(&*storage, &parent_world)?;
        warren_storage::worlds::derive_world(
            &*storage,
            &world,
            Some(&parent_world),
            Vec::new(),
            |root| {
                if let Some(dest) = &r.copy {
                    progress(&format!("copying the recipe directory to {dest}"));
                    copy_dir(dir, root, dest)?;
                }
                run_script(engine, root, &meta, &r.script, progress)
            },
        )?;
    }
    let b = RecipeBuild {
        name: r.name.clone(),
        version: version.clone(),
        key: key.clone(),
        world: world.clone(),
        parent: parent_desc.clone(),
        created_ms: warren_store::now_ms(),
    };
    engine.store.put_recipe_build(&b)?;
    Ok(Built {
        name: r.name,
        version,
        key,
        world,
        parent: parent_desc,
        cached,
    })
}

fn random_version() -> String {
    let mut h = sha2::Sha256::new();
    h.update(warren_store::now_ms().to_be_bytes());
    h.update(std::process::id().to_be_bytes());
    h.update(SEQ.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    format!("0-{}", &hex::encode(h.finalize())[..8])
}

/// Copies `dir` (without its Warrenfile) to `dest` inside `root`, through the safe layer
/// application: nothing is resolved outside `root`, whatever links the parent holds.
fn copy_dir(dir: &Path, root: &Path, dest: &str) -> Result<(), StorageError> {
    let other = |e: std::io::Error| StorageError::Other(format!("copying the recipe: {e}"));
    let prefix = dest.trim_start_matches('/');
    let (r, w) = std::io::pipe().map_err(other)?;
    let src = dir.to_path_buf();
    let prefix_owned = prefix.to_string();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        let base = Path::new(if prefix_owned.is_empty() {
            "."
        } else {
            &prefix_owned
        });
        b.append_dir(base, &src)?;
        let mut names: Vec<_> = std::fs::read_dir(&src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for n in names {
            if n == WARRENFILE {
                continue;
            }
            let full = src.join(&n);
            if full.symlink_metadata()?.is_dir() {
                b.append_dir_all(base.join(&n), &full)?;
            } else {
                b.append_path_with_name(&full, base.join(&n))?;
            }
        }
        b.finish()
    });
    let mut reader = BufReader::new(r);
    let applied = warren_image::apply_layer_with(
        root,
        &mut reader,
        warren_image::Compression::None,
        &warren_image::ApplyOptions {
            ownership: warren_image::Ownership::Ignore,
            ..Default::default()
        },
    );
    drop(reader);
    let written = writer.join().map_err(|_| {
        StorageError::Other("copying the recipe: the reader thread panicked".into())
    })?;
    applied.map_err(|e| StorageError::Other(format!("copying the recipe: {e}")))?;
    written.map_err(other)
}

/// Runs `script` as root with `/bin/sh -e` in an ephemeral container whose root is the new
/// world's dataset, streaming its output. The script file is removed afterwards.
fn run_script(
    engine: &Arc<Engine>,
    root: &Path,
    parent: &warren_storage::WorldMeta,
    script: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    let other = |m: String| StorageError::Other(m);
    let script_path = root.join(".warren-build");
    std::fs::write(&script_path, script).map_err(|e| other(format!("writing the script: {e}")))?;
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| other(format!("writing the script: {e}")))?;
    let name = format!(
        "build-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let args = vec!["/bin/sh".into(), "-e".into(), "/.warren-build".into()];
    let spec = warren_runtime::WorkloadRun {
        binds: super::engine::world_binds(parent),
        env: vec!["WARREN_BUILD=1".into()],
        hostname: "build".into(),
        network: warren_runtime::NetNamespace::Host,
        ..super::oneoff::spec(engine, &name, root.to_path_buf(), args)
    };
    let run_dir = engine.run_dir(&name);
    let result = (|| -> Result<(), StorageError> {
        let mut cmd = engine
            .runtime
            .run_foreground(&spec, &run_dir)
            .map_err(|e| other(format!("preparing the build container: {e}")))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| other(format!("starting the build container: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                    let _ = tx.send(line);
                }
            }));
        }
        drop(tx);
        for line in rx {
            progress(&line);
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child
            .wait()
            .map_err(|e| other(format!("waiting for the build container: {e}")))?;
        if !status.success() {
            let _ = engine.runtime.delete(&spec.id);
            return Err(other(format!(
                "the recipe's script failed ({status}); the build is discarded"
            )));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&script_path);
    let _ = std::fs::remove_dir_all(&run_dir);
    result
}

// ---- API ---------------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct BuildQuery {
    pub version: Option<String>,
}

/// `POST /v1/build?version=V`: the recipe directory as a tar stream in the body. The answer
/// is NDJSON: `{"line": ...}` per line of progress and script output, then `{"built": ...}` or
/// `{"error": ...}`.
pub async fn build_handler(
    State(e): State<Arc<Engine>>,
    Query(q): Query<BuildQuery>,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(Err(m)) = q.version.as_deref().map(recipe::check_version) {
        let err = ApiError::new(ErrorKind::BadRequest, m);
        return Err(super::transfer::refuse_upload(body, err).await);
    }
    // Unpack the upload first (it is read to its end either way).
    let scratch = e.cfg.state_dir.join("tmp").join(format!(
        "build-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(super::transfer::feed_body(body, tx));
    let dir = scratch.clone();
    let unpacked = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut body = super::transfer::BodyReader::new(rx);
        let r = (|| {
            std::fs::create_dir_all(&dir)?;
            let mut input = BufReader::with_capacity(1 << 20, &mut body);
            let head = input.fill_buf()?;
            let compression = warren_image::Compression::detect(head);
            warren_image::apply_layer_with(
                &dir,
                &mut input,
                compression,
                &warren_image::ApplyOptions {
                    ownership: warren_image::Ownership::Ignore,
                    ..Default::default()
                },
            )
            .map_err(|e| {
                anyhow::Error::new(e).context("the uploaded recipe directory was refused")
            })?;
            Ok(())
        })();
        body.drain();
        r
    })
    .await
    .map_err(|x| anyhow!(x))?;
    if let Err(err) = unpacked {
        let _ = std::fs::remove_dir_all(&scratch);
        // A full disk is 507; anything else about the upload is the upload's fault.
        let kind = super::error::kind_or(&err, ErrorKind::Invalid);
        return Err(ApiError::new(kind, format!("{err:#}")));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    let engine = e.clone();
    tokio::task::spawn_blocking(move || {
        let send = |v: crate::wire::BuildLine| {
            let _ = tx.blocking_send(crate::ndjson::line(v));
        };
        let result = {
            let _guard = super::worlds::builds_lock();
            build(&engine, &scratch, q.version, &mut |l| {
                send(crate::wire::BuildLine::Line(l.to_string()))
            })
        };
        let _ = std::fs::remove_dir_all(&scratch);
        match result {
            Ok(b) => {
                engine.event(
                    None,
                    EventKind::RecipeBuilt {
                        name: b.name.clone(),
                        version: b.version.to_string(),
                        cached: b.cached,
                        parent: b.parent.to_string(),
                    },
                );
                send(crate::wire::BuildLine::Built(b));
                // Workloads naming the recipe may now resolve to this build.
                engine.wake();
            }
            Err(err) => {
                let msg = format!("{err:#}");
                engine.event(None, EventKind::error(format!("build failed: {msg}")));
                send(crate::wire::BuildLine::Error(msg));
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

/// `GET /v1/recipes`: every build.
pub async fn list_handler(
    State(e): State<Arc<Engine>>,
) -> Result<Json<Vec<RecipeBuild>>, ApiError> {
    Ok(Json(e.store.recipe_builds()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_digest_follows_content_not_the_warrenfile() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join(WARRENFILE), "name a/b\n---\ntrue\n").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), "one").unwrap();
        let a = dir_digest(d).unwrap();
        std::fs::write(d.join(WARRENFILE), "# comment\nname a/b\n---\ntrue\n").unwrap();
        assert_eq!(dir_digest(d).unwrap(), a);
        std::fs::write(d.join("sub/f"), "two").unwrap();
        let b = dir_digest(d).unwrap();
        assert_ne!(b, a);
        std::os::unix::fs::symlink("f", d.join("sub/link")).unwrap();
        assert_ne!(dir_digest(d).unwrap(), b);
    }
}
