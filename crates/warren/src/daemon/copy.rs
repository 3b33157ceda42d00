//! `warren cp` on the daemon's side: `GET` and `PUT /v1/workloads/{name}/archive?path=P`,
//! after Docker's archive API.
//!
//! A container's or jail's path is mapped onto the host the way its run sees it: the
//! workload's mounts (its data dataset, volumes, the world's host binds, the bridge's
//! hosts and resolv files) by the longest matching mount point, else its root filesystem
//! dataset; the rest of the path is resolved inside that directory by
//! [`warren_image::copy`], so symbolic links and `..` never leave it. The same view serves
//! running and stopped workloads (the datasets are the same), so a copy never enters the
//! workload's namespaces. Kernel file systems (`/proc`, `/sys`, `/dev`) and, with
//! `readonly_rootfs`, the tmpfs mounts have no host directory and are refused; writes to a
//! read-only mount or root are refused. Under `userns` owners are mapped through the
//! workload's id range both ways. A VM's paths go through its guest agent ([`vm_copy_out`], [`vm_copy_in`]).

use super::engine::Engine;
use super::error::{ApiError, ErrorKind};
use super::transfer::{feed_body, refuse_upload, BodyReader, ChannelWriter};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use std::ffi::OsString;
use std::sync::Arc;
use warren_image::copy::{CopyError, CopyPath, IdMap, PutOptions, Shape, Tree};

pub use crate::wire::CopiedIn;

/// The query of both archive routes.
#[derive(Deserialize)]
pub struct ArchiveQuery {
    path: String,
    /// Keep the archive's owners (`cp -a`); otherwise files belong to the workload's root.
    #[serde(default)]
    archive: bool,
    /// The archive holds a directory's contents (`SRC/.`), not one entry.
    #[serde(default)]
    contents: bool,
    /// The destination must be an existing directory (an archive from stdin).
    #[serde(default)]
    directory: bool,
}

/// Why a copy was refused, with the status it answers.
fn refused(kind: ErrorKind, msg: impl Into<String>) -> ApiError {
    ApiError::new(kind, msg)
}

fn copy_error(name: &str, e: CopyError) -> ApiError {
    let kind = match &e {
        CopyError::NotFound(_) => ErrorKind::NotFound,
        CopyError::Relative(_) | CopyError::Invalid(_) => ErrorKind::BadRequest,
        CopyError::NotADirectory(_)
        | CopyError::NoHostDirectory(_)
        | CopyError::ReadOnly(_)
        | CopyError::CrossesMount(_)
        | CopyError::DirOntoFile(_)
        | CopyError::FileOntoDir(_)
        | CopyError::NotOneEntry(_) => ErrorKind::Conflict,
        CopyError::OutsideRange { .. } | CopyError::Path { .. } | CopyError::Archive(_) => {
            ErrorKind::Invalid
        }
        CopyError::Io { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ) =>
        {
            ErrorKind::OutOfSpace
        }
        CopyError::Io { .. } => ErrorKind::Internal,
    };
    refused(kind, format!("{name}: {e}"))
}

/// How a workload's paths map onto the host.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    trees: Vec<Tree>,
    ids: Option<IdMap>,
}

fn comps(path: &str) -> Vec<OsString> {
    CopyPath::parse(path).map(|p| p.comps).unwrap_or_default()
}

impl View {
    /// The view of a run: its root filesystem, binds, and the kernel and tmpfs mounts that
    /// have no directory on the host.
    fn of_run(run: &warren_runtime::WorkloadRun) -> View {
        let mut trees = vec![Tree {
            at: Vec::new(),
            source: Some(run.rootfs.clone()),
            readonly: run.readonly_rootfs,
        }];
        let mut opaque = vec!["/proc", "/sys", "/dev"];
        if run.readonly_rootfs {
            opaque.extend(["/tmp", "/var/tmp", "/run"]);
        }
        trees.extend(opaque.iter().map(|p| Tree {
            at: comps(p),
            source: None,
            readonly: true,
        }));
        // A later bind over the same mount point wins, as when mounting.
        for b in &run.binds {
            let at = comps(&b.dest);
            trees.retain(|t| t.at != at);
            trees.push(Tree {
                at,
                source: Some(b.source.clone()),
                readonly: b.readonly,
            });
        }
        View {
            trees,
            ids: run.userns.as_ref().map(|u| IdMap {
                host_base: u.host_id,
                size: u.size,
            }),
        }
    }
}

/// The view of a container or jail, or why there is none.
fn view(e: &Engine, name: &str) -> Result<View, ApiError> {
    let d = e
        .store
        .get_desired(name)?
        .ok_or_else(|| ApiError::not_found(name))?;
    let run = e.container_spec(&d).map_err(|x| {
        refused(
            ErrorKind::Conflict,
            format!("{name}: cannot tell where its files are: {x:#}"),
        )
    })?;
    if !run.rootfs.exists() {
        return Err(refused(
            ErrorKind::Conflict,
            format!("{name} has no root filesystem yet (it has not been provisioned)"),
        ));
    }
    Ok(View::of_run(&run))
}

fn parse(name: &str, path: &str) -> Result<CopyPath, ApiError> {
    CopyPath::parse(path).map_err(|x| copy_error(name, x))
}

fn is_vm(e: &Engine, name: &str) -> Result<bool, ApiError> {
    Ok(e.store
        .get_desired(name)?
        .is_some_and(|d| d.spec.kind == warren_model::Kind::Vm))
}

/// `GET /v1/workloads/{name}/archive?path=P`: the tar stream of `P` (a `SRC/.` path or `/`
/// gives the directory's contents).
pub async fn get_archive(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<ArchiveQuery>,
) -> Result<Response, ApiError> {
    let path = parse(&name, &q.path)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<(), ApiError>>();
    if is_vm(&e, &name)? {
        let engine = e.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
            let _ = done_tx.send(vm_copy_out(&engine, &n, &path, out));
        });
    } else {
        let view = view(&e, &name)?;
        let n = name.clone();
        tokio::task::spawn_blocking(move || {
            let out = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx));
            let r = warren_image::copy::get(&view.trees, &path, view.ids, out)
                .map(|_| ())
                .map_err(|x| copy_error(&n, x));
            let _ = done_tx.send(r);
        });
    }
    // An error before the first byte is the answer; one after it ends the stream early,
    // which the reader sees as a truncated archive.
    let first = match rx.recv().await {
        Some(b) => b,
        None => {
            return match done_rx.await {
                Ok(Err(err)) => Err(err),
                _ => Err(refused(
                    ErrorKind::Internal,
                    "the archive ended before it began",
                )),
            }
        }
    };
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        match first {
            Some(b) => Some((Ok::<_, std::io::Error>(b), (None, rx))),
            None => rx.recv().await.map(|b| (Ok(b), (None, rx))),
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

/// `PUT /v1/workloads/{name}/archive?path=P`: the request body, a tar stream, placed at `P`
/// (into it when it is a directory, else as it).
pub async fn put_archive(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<ArchiveQuery>,
    body: Body,
) -> Result<Json<CopiedIn>, ApiError> {
    let checked = (|| {
        let path = parse(&name, &q.path)?;
        if is_vm(&e, &name)? {
            return Ok((path, None));
        }
        Ok((path, Some(view(&e, &name)?)))
    })();
    let (path, target) = match checked {
        Ok(c) => c,
        Err(err) => return Err(refuse_upload(body, err).await),
    };
    let opts = PutOptions {
        shape: if q.contents || q.directory {
            Shape::Contents
        } else {
            Shape::Entry
        },
        require_dir: q.directory,
        keep_owners: q.archive,
        ids: None,
        owner: None,
        max_bytes: None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(feed_body(body, tx));
    let engine = e.clone();
    tokio::task::spawn_blocking(move || {
        let mut body = BodyReader::new(rx);
        let r = match target {
            None => vm_copy_in(&engine, &name, &path, &opts, &mut body),
            Some(view) => {
                let opts = PutOptions {
                    ids: view.ids,
                    // Without -a, files belong to the workload's root.
                    owner: Some(
                        view.ids
                            .map(|m| (m.host_base, m.host_base))
                            .unwrap_or((0, 0)),
                    ),
                    ..opts
                };
                warren_image::copy::put(&view.trees, &path, &mut body, &opts)
                    .map(|s| CopiedIn {
                        entries: s.entries,
                        files: s.files,
                    })
                    .map_err(|x| copy_error(&name, x))
            }
        };
        body.drain();
        r.map(Json)
    })
    .await
    .map_err(|x| anyhow::anyhow!(x))?
}

/// A VM's path as a tar stream, from its guest agent (the VM must be running).
fn vm_copy_out(
    e: &Engine,
    name: &str,
    path: &CopyPath,
    mut out: impl std::io::Write,
) -> Result<(), ApiError> {
    let req = warren_runtime::CopyRequest {
        path: path_text(path),
        ..Default::default()
    };
    e.runtime
        .copy_out(&e.container_id(name), &req, &mut out)
        .and_then(|()| {
            out.flush()
                .map_err(|x| warren_runtime::RuntimeError::Other(x.to_string()))
        })
        .map_err(|x| vm_error(name, x))
}

/// A tar stream placed at a VM's path by its guest agent (the VM must be running).
fn vm_copy_in(
    e: &Engine,
    name: &str,
    path: &CopyPath,
    opts: &PutOptions,
    body: &mut (dyn std::io::Read + Send),
) -> Result<CopiedIn, ApiError> {
    let req = warren_runtime::CopyRequest {
        path: path_text(path),
        contents: opts.shape == Shape::Contents,
        directory: opts.require_dir,
        keep_owners: opts.keep_owners,
    };
    e.runtime
        .copy_in(&e.container_id(name), &req, body)
        .map_err(|x| vm_error(name, x))?;
    // The guest does not count what it placed.
    Ok(CopiedIn {
        entries: 0,
        files: 0,
    })
}

/// The path as the guest gets it: cleaned, with `/.` or `/` kept.
fn path_text(p: &CopyPath) -> String {
    let mut s = p.display();
    if p.contents && !p.comps.is_empty() {
        s.push_str("/.");
    } else if p.dir && !p.comps.is_empty() {
        s.push('/');
    }
    s
}

fn vm_error(name: &str, e: warren_runtime::RuntimeError) -> ApiError {
    refused(ErrorKind::Conflict, format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_runtime::{Bind, WorkloadRun};

    fn run() -> WorkloadRun {
        let mut r = WorkloadRun::one_off(
            "id",
            "/cg",
            "h",
            std::path::PathBuf::from("/pool/rootfs/w"),
            Vec::new(),
        );
        r.binds = vec![
            Bind {
                source: "/pool/data/w".into(),
                dest: "/data".into(),
                readonly: false,
            },
            Bind {
                source: "/pool/volumes/v".into(),
                dest: "/data/shared".into(),
                readonly: true,
            },
        ];
        r
    }

    #[test]
    fn a_run_gives_its_trees() {
        let v = View::of_run(&run());
        let at = |t: &Tree| {
            (
                CopyPath {
                    comps: t.at.clone(),
                    contents: false,
                    dir: false,
                }
                .display(),
                t.source.clone(),
                t.readonly,
            )
        };
        let got: Vec<_> = v.trees.iter().map(at).collect();
        assert_eq!(
            got,
            vec![
                ("/".to_string(), Some("/pool/rootfs/w".into()), false),
                ("/proc".to_string(), None, true),
                ("/sys".to_string(), None, true),
                ("/dev".to_string(), None, true),
                ("/data".to_string(), Some("/pool/data/w".into()), false),
                (
                    "/data/shared".to_string(),
                    Some("/pool/volumes/v".into()),
                    true
                ),
            ]
        );
        assert_eq!(v.ids, None);
    }

    #[test]
    fn a_read_only_root_has_no_tmpfs_on_the_host_and_userns_maps_ids() {
        let mut r = run();
        r.readonly_rootfs = true;
        r.userns = Some(warren_runtime::UserNamespace {
            host_id: 300000,
            size: 65536,
            path: None,
        });
        let v = View::of_run(&r);
        assert!(v.trees[0].readonly);
        assert!(v
            .trees
            .iter()
            .any(|t| t.at == comps("/tmp") && t.source.is_none()));
        assert_eq!(
            v.ids,
            Some(IdMap {
                host_base: 300000,
                size: 65536
            })
        );
    }
}
