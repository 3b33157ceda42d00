//! HTTP/JSON API handlers (version 1).
//!
//! Handlers parse requests into engine calls; all validation of spec files happens here, before
//! anything is stored, so an invalid file changes nothing. Streaming endpoints (logs, exec, run)
//! live in [`super::stream`].

use super::datasets::{SnapshotView, Target};
use super::engine::Engine;
pub use super::error::ApiError;
use super::stream;
use crate::wire::*;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_model::plan::{self, Desired};
use warren_model::{Diagnostic, Kind, Source, SpecFile};

pub fn router(engine: Arc<Engine>) -> Router {
    routes().with_state(engine)
}

type Value = serde_json::Value;

crate::api! { routes, ops, Arc<Engine>;
    get "/v1/health" => health, Token, "Whether the daemon answers", [],
        None, crate::json_of!(Value);
    post "/v1/repl" => repl_eval, Token, "Evaluate Scheme forms in the live REPL (the value of the last one, or the error)", [],
        crate::json_of!(ReplRequest), crate::json_of!(ReplResponse);
    get "/v1/spec/export" => spec_export, Token, "The live desired state as a warren.toml that applies again as a no-op", [],
        None, Binary("application/toml");
    post "/v1/plan" => plan_handler, Token, "Validate a spec file and show what applying it would change", [],
        crate::json_of!(ApplyRequest), crate::json_of!(ApplyResponse);
    post "/v1/apply" => apply_handler, Token, "Validate a spec file and apply it (builds missing built-in worlds, pulls missing registry images)", [],
        crate::json_of!(ApplyRequest), crate::json_of!(ApplyResponse);
    get "/v1/workloads" => list, Token, "Every workload with its status", [],
        None, crate::json_of!(Vec<Status>);
    get "/v1/workloads/{name}" => get_one, Token, "A workload's spec and status", [],
        None, crate::json_of!(WorkloadDetail);
    delete "/v1/workloads/{name}" => delete, Token, "Delete a workload (its data dataset is kept unless purge)", ["purge": "true to delete the data dataset too"],
        None, crate::json_of!(DeleteResponse);
    post "/v1/workloads/{name}/start" => start, Token, "Start a workload and keep it running", [],
        None, crate::json_of!(Status);
    post "/v1/workloads/{name}/stop" => stop, Token, "Stop a workload and keep it stopped", [],
        None, crate::json_of!(Status);
    post "/v1/workloads/{name}/restart" => restart, Token, "Stop and start a workload", [],
        None, crate::json_of!(Status);
    get "/v1/workloads/{name}/logs" => stream::logs, Token, "A workload's log lines, as NDJSON; with follow, new lines as they come", ["tail": "only the last N lines", "follow": "true to keep streaming"],
        None, crate::ndjson_of!(LogEntry);
    get "/v1/workloads/{name}/exec" => stream::exec, Token, "Run a command inside a running workload over an upgraded connection (arguments in the x-warren-args header)", [],
        None, Upgrade;
    get "/v1/run" => stream::run, Token, "Run a one-off container from a world over an upgraded connection, removed when it exits", [],
        None, Upgrade;
    get "/v1/worlds" => worlds, Token, "Worlds and the workloads using them", [],
        None, crate::json_of!(Vec<WorldInfo>);
    post "/v1/worlds/{name}" => super::worlds::create_handler, Token, "Build a world (host, busybox, debian, debian-SUITE); its output as NDJSON lines", ["mirror": "Debian mirror URL"],
        None, crate::ndjson_of!(Value);
    delete "/v1/worlds/{name}" => super::worlds::rm_handler, Token, "Delete a world no workload names", [],
        None, crate::json_of!(Value);
    post "/v1/worlds/{name}/import" => super::worlds::import_handler, Token, "Make a world from a root filesystem tarball (plain, gzip or zstd)", ["command": "default command as a JSON array"],
        Binary("application/octet-stream"), crate::json_of!(Value);
    get "/v1/worlds/{name}/export" => super::worlds::export_handler, Token, "A world as a zstd-compressed tarball", [],
        None, Binary("application/zstd");
    get "/v1/images" => super::images::list_handler, Token, "Stored images with their config and users", [],
        None, crate::json_of!(Vec<ImageInfo>);
    delete "/v1/images" => super::images::rm_handler, Token, "Forget an image reference (refused while a workload names it)", ["reference": "the reference to forget"],
        None, crate::json_of!(Value);
    post "/v1/images/import" => super::images::import_handler, Token, "Import a docker-save or OCI archive", ["tag": "store the only image under this reference"],
        Binary("application/x-tar"), crate::json_of!(Vec<ImageImported>);
    post "/v1/images/gc" => super::images::gc_handler, Token, "Delete the layers no stored image uses", [],
        None, crate::json_of!(ImageGcResponse);
    post "/v1/images/pull" => super::images::pull_handler, Token, "Pull an image from a registry; progress as NDJSON lines", [],
        crate::json_of!(super::images::PullRequest), crate::ndjson_of!(Value);
    post "/v1/build" => super::recipes::build_handler, Token, "Build the Warrenfile recipe in the uploaded directory (a tar stream); progress and the script's output as NDJSON lines", ["version": "the version to record"],
        Binary("application/x-tar"), crate::ndjson_of!(Value);
    get "/v1/recipes" => super::recipes::list_handler, Token, "Every built recipe version", [],
        None, crate::json_of!(Vec<warren_store::RecipeBuild>);
    get "/v1/events" => events, Token, "The event log", ["after": "only events after this id", "workload": "only this workload's", "limit": "at most this many (default 100)"],
        None, crate::json_of!(Vec<crate::wire::Event>);
    get "/v1/events/stream" => events_stream, Token, "Events after `after`, then every new one as it happens, as NDJSON", ["after": "start after this event id (default: only new ones)", "workload": "only this workload's"],
        None, crate::ndjson_of!(crate::wire::Event);
    get "/v1/events/ws" => events_ws, Token, "The same stream over a WebSocket: one JSON text message per event", ["after": "start after this event id", "workload": "only this workload's"],
        None, Upgrade;
    get "/v1/ca" => ca_cert, Token, "The local CA certificate (PEM) behind tls = \"local\"", [],
        None, Binary("application/x-pem-file");
    get "/v1/workloads/{name}/snapshots" => workload_snapshots, Token, "A workload's snapshots", [],
        None, crate::json_of!(Vec<SnapshotView>);
    post "/v1/workloads/{name}/snapshots" => workload_snapshot, Token, "Snapshot every dataset of a workload", [],
        crate::json_of!(SnapshotRequest), crate::json_of!(Value);
    delete "/v1/workloads/{name}/snapshots/{label}" => workload_snapshot_rm, Token, "Delete a workload snapshot", [],
        None, crate::json_of!(Value);
    post "/v1/workloads/{name}/rollback" => workload_rollback, Token, "Roll a workload back to a snapshot", [],
        crate::json_of!(RollbackRequest), crate::json_of!(Value);
    post "/v1/workloads/{name}/clone" => clone, Token, "Clone a workload (copy-on-write)", [],
        crate::json_of!(CloneRequest), crate::json_of!(Value);
    get "/v1/workloads/{name}/export" => super::transfer::export, Token, "Export a workload as a self-checking archive", ["since": "incremental from this snapshot"],
        None, Binary("application/octet-stream");
    post "/v1/import" => super::transfer::import, Token, "Import a workload or volume archive", ["name": "import under this name"],
        Binary("application/octet-stream"), crate::json_of!(Value);
    get "/v1/volumes" => volumes, Token, "Volumes and who mounts them", [],
        None, crate::json_of!(Vec<VolumeInfo>);
    delete "/v1/volumes/{name}" => volume_rm, Token, "Delete a volume no workload mounts", [],
        None, crate::json_of!(Value);
    get "/v1/volumes/{name}/snapshots" => volume_snapshots, Token, "A volume's snapshots", [],
        None, crate::json_of!(Vec<SnapshotView>);
    post "/v1/volumes/{name}/snapshots" => volume_snapshot, Token, "Snapshot a volume", [],
        crate::json_of!(SnapshotRequest), crate::json_of!(Value);
    delete "/v1/volumes/{name}/snapshots/{label}" => volume_snapshot_rm, Token, "Delete a volume snapshot", [],
        None, crate::json_of!(Value);
    post "/v1/volumes/{name}/rollback" => volume_rollback, Token, "Roll a volume back to a snapshot", [],
        crate::json_of!(RollbackRequest), crate::json_of!(Value);
    get "/v1/volumes/{name}/export" => super::transfer::export_volume, Token, "Export a volume as a self-checking archive", ["since": "incremental from this snapshot"],
        None, Binary("application/octet-stream");
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn repl_eval(
    State(e): State<Arc<Engine>>,
    Json(req): Json<ReplRequest>,
) -> ApiResult<ReplResponse> {
    let repl = e
        .evaluator()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the REPL is not running"))?;
    Ok(Json(match repl.eval(req.expr).await {
        Ok(v) => ReplResponse {
            value: Some(v),
            error: None,
        },
        Err(m) => ReplResponse {
            value: None,
            error: Some(m),
        },
    }))
}

async fn spec_export(State(e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let text = super::specfile::export(&e)?;
    Ok(Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/toml")
        .body(axum::body::Body::from(text))
        .expect("response builds"))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"ok": true, "version": env!("CARGO_PKG_VERSION")}))
}

/// What this host cannot run, located in the file: a kind the host's capabilities refuse
/// (jails off FreeBSD, vms anywhere yet; the planner refuses the same kinds in stored state
/// with the same reason), jail options off FreeBSD (on FreeBSD every container is a jail), a
/// jailed dataset without the ZFS storage driver. Pure, so both kinds of host are tested on
/// either.
pub(crate) fn host_support(
    parsed: &warren_model::Parsed,
    os: &str,
    storage_driver: &str,
) -> Vec<Diagnostic> {
    let freebsd = os == "freebsd";
    let caps = warren_model::HostCapabilities::for_os(os);
    let mut diags = Vec::new();
    for (name, w) in &parsed.spec.workloads {
        let at = |field: &str| format!("workload.{name}.{field}");
        if let Some(reason) = caps.refusal(w.kind) {
            diags.push(parsed.diagnostic(&at("kind"), format!("workload.{name}.kind: {reason}")));
        }
        if w.jail.is_default() || w.kind == Kind::Vm {
            continue;
        }
        if !freebsd {
            if w.kind != Kind::Jail {
                diags.push(parsed.diagnostic(
                    &at("jail"),
                    format!(
                        "workload.{name}.jail: jail options need a FreeBSD host (this is {os}), where the workload runs as a jail"
                    ),
                ));
            }
        } else if w.jail.jailed_dataset && storage_driver != "zfs" {
            diags.push(parsed.diagnostic(
                &at("jail.jailed_dataset"),
                format!(
                    "workload.{name}.jail.jailed_dataset: a jailed dataset needs the zfs storage driver (this daemon uses {storage_driver}; start it with --storage zfs)"
                ),
            ));
        }
    }
    diags.sort_by_key(|d| (d.line, d.column));
    diags
}

/// The worlds warren can build on demand.
pub(crate) use warren_model::names::BUILTIN_WORLDS;

/// Parses and validates a file against this host. Builds missing built-in worlds and pulls
/// missing registry images unless `dry_run`; returns what was missing, for the plan (which
/// shows those builds and pulls as steps).
async fn validate(
    engine: &Arc<Engine>,
    req: &ApplyRequest,
) -> Result<(SpecFile, plan::Missing), ApiError> {
    let parsed = warren_model::parse_spec(&req.text, &req.file)
        .map_err(|e| ApiError::invalid(e.diagnostics))?;
    let storage = engine.storage.clone();
    let existing = tokio::task::spawn_blocking(move || storage.list_worlds())
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut diags = host_support(&parsed, std::env::consts::OS, engine.storage.driver());
    let mut to_build = Vec::new();
    let mut to_pull: Vec<String> = Vec::new();
    let mut missing = plan::Missing::default();
    for (name, w) in &parsed.spec.workloads {
        let at = |field: &str| format!("workload.{name}.{field}");
        match &w.source {
            Source::World(world) => {
                if !existing.iter().any(|e| e == world) {
                    if BUILTIN_WORLDS.contains(&world.as_str()) {
                        missing.worlds.insert(world.clone());
                        if !to_build.contains(world) {
                            to_build.push(world.clone());
                        }
                    } else if super::worlds::buildable(world) {
                        diags.push(parsed.diagnostic(
                            &at("world"),
                            format!(
                                "workload.{name}.world: world {world:?} is not built yet: build it with `warren world create {world}` (it downloads a system and takes minutes)"
                            ),
                        ));
                    } else {
                        diags.push(parsed.diagnostic(
                            &at("world"),
                            format!(
                                "workload.{name}.world: world {world:?} does not exist (existing: {}; built in: {})",
                                if existing.is_empty() { "none".to_string() } else { existing.join(", ") },
                                BUILTIN_WORLDS.join(", ")
                            ),
                        ));
                    }
                }
            }
            Source::Recipe(r) => {
                if let Err(m) = super::recipes::resolve_ref(&engine.store, r) {
                    diags.push(
                        parsed.diagnostic(&at("recipe"), format!("workload.{name}.recipe: {m:#}")),
                    );
                }
            }
            Source::Image(r) => {
                let stored = super::images::normalize_reference(r)
                    .map_err(|m| m.to_string())
                    .and_then(|n| match engine.store.image(&n) {
                        Ok(Some(_)) => Ok(()),
                        // A reference naming a registry is pulled (below) when applying.
                        Ok(None) if super::images::registry_of(&n).is_some() => {
                            missing.images.insert(r.clone());
                            if !to_pull.contains(&n) {
                                to_pull.push(n.clone());
                            }
                            Ok(())
                        }
                        Ok(None) => Err(format!(
                            "image {n:?} is not stored: import it with `warren image import FILE` or pull it with `warren image pull HOST/{n}`"
                        )),
                        Err(e) => Err(e.to_string()),
                    });
                if let Err(m) = stored {
                    diags.push(
                        parsed.diagnostic(&at("image"), format!("workload.{name}.image: {m}")),
                    );
                }
            }
        }
    }
    diags.extend(network_conflicts(engine, &parsed, req.prune)?);
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line, d.column));
        return Err(ApiError::invalid(diags));
    }
    if !req.dry_run {
        for world in to_build {
            create_world_now(engine, &world).await?;
        }
        for reference in to_pull {
            let progress: Arc<dyn Fn(String) + Send + Sync> =
                Arc::new(|l: String| tracing::info!("apply: {l}"));
            let req = super::images::PullRequest {
                reference: reference.clone(),
                ..Default::default()
            };
            if let Err(e) = super::images::pull(engine, req, progress).await {
                let field = parsed
                    .spec
                    .workloads
                    .iter()
                    .find(|(_, w)| {
                        matches!(&w.source, Source::Image(r)
                            if super::images::normalize_reference(r).as_deref() == Ok(reference.as_str()))
                    })
                    .map(|(n, _)| format!("workload.{n}.image"))
                    .unwrap_or_default();
                return Err(ApiError::invalid(vec![
                    parsed.diagnostic(&field, format!("{field}: {e:#}"))
                ]));
            }
            engine.event(
                None,
                warren_model::event::EventKind::ImagePulled {
                    reference: reference.to_string(),
                    id: None,
                    new_layers: None,
                },
            );
        }
    }
    Ok((parsed.spec, missing))
}

/// The checks that need what is already stored or running on the host: a published port or a
/// routed domain already claimed by a workload outside this file (or by the ingress), and a
/// newly published port the host itself already listens on.
fn network_conflicts(
    engine: &Arc<Engine>,
    parsed: &warren_model::Parsed,
    prune: bool,
) -> Result<Vec<Diagnostic>, ApiError> {
    let file = &parsed.spec;
    let current = engine.store.desired()?;
    let mut diags = Vec::new();
    // Workloads that stay as they are: stored, not in this file, not pruned.
    let others: Vec<&warren_model::WorkloadSpec> = if prune {
        Vec::new()
    } else {
        current
            .values()
            .map(|d| &d.spec)
            .filter(|s| !file.workloads.contains_key(&s.name))
            .collect()
    };
    let ingress = &engine.cfg.ingress;
    let routed = file
        .workloads
        .values()
        .chain(others.iter().copied())
        .any(|w| !w.route.domains.is_empty())
        || file.volumes.values().any(|v| v.site.is_some());
    let mut claimed: Vec<(String, warren_model::PortMapping)> = Vec::new();
    for o in &others {
        claimed.extend(
            o.ports
                .iter()
                .map(|m| (format!("workload {:?}", o.name), *m)),
        );
    }
    if routed {
        for port in [ingress.http_port, ingress.https_port] {
            claimed.push((
                "the ingress".to_string(),
                warren_model::PortMapping {
                    host_ip: ingress.listen.map(std::net::IpAddr::V4),
                    host_port: port,
                    container_port: port,
                    proto: warren_model::ports::Proto::Tcp,
                },
            ));
        }
    }
    #[cfg(target_os = "linux")]
    let listeners = warren_net::ports::host_listeners().unwrap_or_default();
    #[cfg(not(target_os = "linux"))]
    let listeners: Vec<warren_net::ports::Listener> = Vec::new();
    for (name, w) in &file.workloads {
        let at = format!("workload.{name}.ports");
        for m in &w.ports {
            if let Some((by, theirs)) = claimed.iter().find(|(_, c)| c.overlaps(m)) {
                diags.push(parsed.diagnostic(
                    &at,
                    format!(
                        "workload.{name}.ports: host port {}/{} is already published by {by} ({theirs})",
                        m.host_port, m.proto
                    ),
                ));
                continue;
            }
            let already_ours = current.get(name).is_some_and(|d| d.spec.ports.contains(m));
            if already_ours {
                continue;
            }
            let hits = warren_net::ports::host_conflicts(&[(name.as_str(), *m)], &listeners);
            if let Some(h) = hits.first() {
                diags.push(parsed.diagnostic(
                    &at,
                    format!(
                        "workload.{name}.ports: host port {}/{} is already in use on this host (a socket listens on {})",
                        m.host_port, m.proto, h.listener
                    ),
                ));
            }
        }
        for domain in &w.route.domains {
            let taken = others
                .iter()
                .find(|o| o.route.domains.contains(domain) && o.route.path == w.route.path);
            if let Some(o) = taken {
                diags.push(parsed.diagnostic(
                    &format!("workload.{name}.domains"),
                    format!(
                        "workload.{name}.domains: domain {domain:?} (path {:?}) is already routed to workload {:?}",
                        w.route.path, o.name
                    ),
                ));
            }
        }
    }
    Ok(diags)
}

async fn create_world_now(engine: &Arc<Engine>, world: &str) -> Result<(), ApiError> {
    let storage = engine.storage.clone();
    let exec = engine.exec.clone();
    let w = world.to_string();
    tokio::task::spawn_blocking(move || {
        warren_storage::worlds::create_world(&*storage, &w, exec.as_ref())
    })
    .await
    .map_err(|e| anyhow::anyhow!(e))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("world {world}: {e}"),
        )
    })?;
    engine.event(
        None,
        warren_model::event::EventKind::WorldCreated {
            name: world.to_string(),
        },
    );
    Ok(())
}

/// Compares a file with the stored desired state.
fn changes(
    spec: &SpecFile,
    current: &BTreeMap<String, Desired>,
    volumes: &BTreeMap<String, warren_model::VolumeSpec>,
    prune: bool,
) -> Vec<Change> {
    let mut out = Vec::new();
    for (name, v) in &spec.volumes {
        let change = match volumes.get(name) {
            None => "create",
            Some(old) if old != v => "update",
            Some(_) => continue,
        };
        out.push(Change {
            workload: format!("volume/{name}"),
            change: change.into(),
            fields: vec![],
        });
    }
    if prune {
        for name in volumes.keys().filter(|v| !spec.volumes.contains_key(*v)) {
            out.push(Change {
                workload: format!("volume/{name}"),
                change: "remove".into(),
                fields: vec![],
            });
        }
    }
    for (name, w) in &spec.workloads {
        out.push(match current.get(name) {
            None => Change {
                workload: name.clone(),
                change: "create".into(),
                fields: vec![],
            },
            Some(d) => {
                let fields = plan::spec_diff(&d.spec, w);
                Change {
                    workload: name.clone(),
                    change: if fields.is_empty() {
                        "unchanged"
                    } else {
                        "update"
                    }
                    .into(),
                    fields,
                }
            }
        });
    }
    for name in current.keys() {
        if !spec.workloads.contains_key(name) {
            out.push(Change {
                workload: name.clone(),
                change: if prune { "remove" } else { "orphan" }.into(),
                fields: vec![],
            });
        }
    }
    out
}

pub(super) async fn plan_or_apply(
    engine: Arc<Engine>,
    req: ApplyRequest,
    apply: bool,
) -> ApiResult<ApplyResponse> {
    let (spec, missing) = validate(&engine, &req).await?;
    let current = engine.store.desired()?;
    let changes = changes(&spec, &current, &engine.store.volumes()?, req.prune);
    let removed: Vec<String> = changes
        .iter()
        .filter(|c| c.change == "remove" && !c.workload.starts_with("volume/"))
        .map(|c| c.workload.clone())
        .collect();
    // The desired state this file would produce.
    let mut next: BTreeMap<String, Desired> = current.clone();
    for name in &removed {
        next.remove(name);
    }
    let generation = engine.store.generation()? + 1;
    for (name, w) in &spec.workloads {
        let unchanged = current.get(name).map(|d| d.spec == *w).unwrap_or(false);
        if !unchanged {
            next.insert(name.clone(), Desired::new(w.clone(), generation));
        }
    }
    let mut next_volumes = engine.store.volumes()?;
    if req.prune {
        next_volumes.retain(|v, _| spec.volumes.contains_key(v));
    }
    next_volumes.extend(spec.volumes.clone());
    engine.desired_for_plan(&mut next, &next_volumes);
    let observed = engine
        .observed_all()
        .into_iter()
        .map(|(k, v)| (k, v.to_observed()))
        .collect();
    let planned = plan::plan(
        &next,
        &observed,
        &engine.caps,
        &missing,
        warren_store::now_ms(),
        &engine.cfg.backoff,
    );
    let (steps, refused) = (planned.steps, planned.refused);
    if !apply || req.dry_run {
        return Ok(Json(ApplyResponse {
            changes,
            steps,
            refused,
            generation: engine.store.generation()?,
            applied: false,
        }));
    }
    let specs: Vec<_> = spec.workloads.values().cloned().collect();
    let vols: Vec<_> = spec.volumes.values().cloned().collect();
    let created_vols = engine.ensure_volumes(&vols).await?;
    let forget_vols: Vec<String> = if req.prune {
        engine
            .store
            .volumes()?
            .into_keys()
            .filter(|v| !spec.volumes.contains_key(v))
            .collect()
    } else {
        Vec::new()
    };
    let stored = engine
        .store
        .apply(&specs, &removed)
        .and_then(|o| engine.store.put_volumes(&vols, &forget_vols).map(|_| o));
    let outcome = match stored {
        Ok(o) => o,
        Err(err) => {
            for v in &created_vols {
                let _ = engine.storage.delete_volume(v);
            }
            return Err(err.into());
        }
    };
    engine.event(
        None,
        warren_model::event::EventKind::Applied {
            file: req.file.clone(),
            generation: outcome.generation,
            created: outcome.created.len(),
            updated: outcome.updated.len(),
            removed: outcome.removed.len(),
        },
    );
    engine.wake();
    Ok(Json(ApplyResponse {
        changes,
        steps,
        refused,
        generation: outcome.generation,
        applied: true,
    }))
}

async fn plan_handler(
    State(e): State<Arc<Engine>>,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<ApplyResponse> {
    plan_or_apply(e, req, false).await
}

async fn apply_handler(
    State(e): State<Arc<Engine>>,
    Json(req): Json<ApplyRequest>,
) -> ApiResult<ApplyResponse> {
    plan_or_apply(e, req, true).await
}

async fn list(State(e): State<Arc<Engine>>) -> ApiResult<Vec<Status>> {
    let d = e.desired_all()?;
    Ok(Json(d.values().map(|d| e.status(d)).collect()))
}

fn desired_or_404(e: &Engine, name: &str) -> Result<Desired, ApiError> {
    if name == super::ingress::ROUTER {
        return e
            .desired_all()?
            .remove(name)
            .ok_or_else(|| ApiError::not_found(name));
    }
    e.store
        .get_desired(name)?
        .ok_or_else(|| ApiError::not_found(name))
}

/// Refuses operations that would fight the reconciler over the routing workload.
fn not_router(name: &str, verb: &str) -> Result<(), ApiError> {
    if name == super::ingress::ROUTER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "{name} is warren's routing workload: it runs while any workload declares \
                 `domains`, so it cannot be {verb} by hand (use `restart` to restart it)"
            ),
        ));
    }
    Ok(())
}

/// `GET /v1/ca`: the local CA's certificate (PEM), created if it does not exist yet.
async fn ca_cert(State(e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let ingress = e.ingress.clone();
    let pem =
        tokio::task::spawn_blocking(move || ingress.with_ca(|ca| Ok(ca.cert_pem().to_string())))
            .await
            .map_err(|x| anyhow::anyhow!(x))??;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-pem-file")],
        pem,
    )
        .into_response())
}

async fn get_one(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<WorkloadDetail> {
    let d = desired_or_404(&e, &name)?;
    Ok(Json(WorkloadDetail {
        status: e.status(&d),
        hash: d.hash.clone(),
        spec: d.spec,
    }))
}

async fn start(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Status> {
    not_router(&name, "started")?;
    desired_or_404(&e, &name)?;
    e.start_now(&name).await?;
    wait_for_state(&e, &name, "running").await
}

async fn stop(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Status> {
    not_router(&name, "stopped")?;
    desired_or_404(&e, &name)?;
    e.stop_now(&name).await?;
    wait_for_state(&e, &name, "stopped").await
}

async fn restart(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Status> {
    desired_or_404(&e, &name)?;
    let generation = e.restart_now(&name).await?;
    // Running is not enough: the run must be the one started for this request.
    let mut events = e.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let restarted = e
            .observed_row(&name)
            .is_some_and(|r| r.pid.is_some() && r.restart_generation >= generation);
        if restarted {
            return Ok(Json(e.status(&desired_or_404(&e, &name)?)));
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Ok(Json(e.status(&desired_or_404(&e, &name)?))),
            Ok(Ok(ev)) if ev.workload.as_deref() == Some(name.as_str()) && ev.kind.is_error() => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ev.kind.to_string(),
                ));
            }
            Ok(_) => {}
        }
    }
}

/// Waits briefly for the reconciler to bring a workload to `state` and returns its status.
async fn wait_for_state(e: &Arc<Engine>, name: &str, state: &str) -> ApiResult<Status> {
    let mut events = e.subscribe();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let s = e.status(&desired_or_404(e, name)?);
        if s.state == state {
            return Ok(Json(s));
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Ok(Json(s)),
            Ok(Ok(ev)) if ev.workload.as_deref() == Some(name) && ev.kind.is_error() => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ev.kind.to_string(),
                ));
            }
            Ok(_) => {}
        }
    }
}

#[derive(Deserialize)]
struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

async fn delete(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<DeleteResponse> {
    if warren_model::names::check_dns_label(&name).is_err() {
        return Err(ApiError::not_found(&name));
    }
    not_router(&name, "deleted")?;
    let existed = e.delete_now(&name, q.purge).await?;
    if !existed && !q.purge {
        return Err(ApiError::not_found(&name));
    }
    let data = e.storage.data_path(&name);
    Ok(Json(DeleteResponse {
        deleted: existed,
        data_kept: (!q.purge && data.exists()).then(|| data.display().to_string()),
    }))
}

async fn worlds(State(e): State<Arc<Engine>>) -> ApiResult<Vec<WorldInfo>> {
    let storage = e.storage.clone();
    let names = tokio::task::spawn_blocking(move || storage.list_worlds())
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map_err(|e| anyhow::anyhow!(e))?;
    let desired = e.store.desired()?;
    let mut out = Vec::new();
    for name in names
        .into_iter()
        .filter(|n| !super::images::is_layer_world(n) && !super::recipes::is_recipe_world(n))
    {
        let meta = warren_storage::worlds::world_meta(&*e.storage, &name)
            .map_err(|e| anyhow::anyhow!(e))?;
        out.push(WorldInfo {
            binds: meta
                .binds
                .iter()
                .map(|b| {
                    format!(
                        "{}:{}{}",
                        b.source.display(),
                        b.dest,
                        if b.readonly { ":ro" } else { "" }
                    )
                })
                .collect(),
            created_at: meta.created_at,
            used_by: desired
                .values()
                .filter(|d| d.spec.source == Source::World(name.clone()))
                .map(|d| d.spec.name.clone())
                .collect(),
            name,
        });
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    workload: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    100
}

#[derive(Deserialize)]
struct StreamQuery {
    after: Option<i64>,
    workload: Option<String>,
}

/// The stored events after `after` (oldest first), then live ones, never one twice or out of
/// order: the subscription is taken before the backlog is read, and live events already in
/// the backlog are skipped by id.
fn event_feed(
    e: Arc<Engine>,
    q: StreamQuery,
) -> impl futures_util::Stream<Item = crate::wire::Event> + Send {
    let rx = e.subscribe();
    let workload = q.workload.clone();
    let wanted = move |ev: &warren_store::Event| {
        workload.is_none() || ev.workload.as_deref() == workload.as_deref()
    };
    let backlog: Vec<warren_store::Event> = match q.after {
        Some(after) => e
            .store
            .events(after, q.workload.as_deref(), 10_000)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let mut last = backlog.last().map(|ev| ev.id).or(q.after).unwrap_or(0);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => return Some((ev, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures_util::StreamExt;
    futures_util::stream::iter(backlog)
        .chain(live.filter_map(move |ev| {
            let keep = ev.id > last && wanted(&ev);
            if keep {
                last = ev.id;
            }
            futures_util::future::ready(keep.then_some(ev))
        }))
        .map(|ev| crate::wire::Event::from(&ev))
}

async fn events_stream(State(e): State<Arc<Engine>>, Query(q): Query<StreamQuery>) -> Response {
    use futures_util::StreamExt;
    let body = event_feed(e, q).map(|ev| {
        let mut line = serde_json::to_vec(&ev).expect("event serializes");
        line.push(b'\n');
        Ok::<_, std::io::Error>(bytes::Bytes::from(line))
    });
    Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(axum::body::Body::from_stream(body))
        .expect("response builds")
}

async fn events_ws(
    State(e): State<Arc<Engine>>,
    Query(q): Query<StreamQuery>,
    ws: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |mut socket| async move {
        use axum::extract::ws::Message;
        use futures_util::StreamExt;
        let feed = event_feed(e, q);
        futures_util::pin_mut!(feed);
        loop {
            tokio::select! {
                ev = feed.next() => {
                    let Some(ev) = ev else { break };
                    let text = serde_json::to_string(&ev).expect("event serializes");
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                msg = socket.recv() => match msg {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    _ => {}
                },
            }
        }
    })
}

async fn events(
    State(e): State<Arc<Engine>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Vec<crate::wire::Event>> {
    let events = e
        .store
        .events(q.after, q.workload.as_deref(), q.limit.min(10_000))?;
    Ok(Json(events.iter().map(crate::wire::Event::from).collect()))
}

fn bad_request(e: anyhow::Error) -> ApiError {
    let msg = format!("{e:#}");
    let status = if msg.starts_with("no workload named") || msg.starts_with("no volume named") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::CONFLICT
    };
    ApiError::new(status, msg)
}

async fn list_snaps(e: &Arc<Engine>, t: Target) -> ApiResult<Vec<SnapshotView>> {
    Ok(Json(e.list_snapshots(&t).await.map_err(bad_request)?))
}

async fn take_snap(
    e: &Arc<Engine>,
    t: Target,
    req: SnapshotRequest,
) -> ApiResult<serde_json::Value> {
    let label = e.take_snapshot(&t, req.label).await.map_err(bad_request)?;
    Ok(Json(serde_json::json!({ "label": label })))
}

async fn rollback_to(
    e: &Arc<Engine>,
    t: Target,
    req: RollbackRequest,
) -> ApiResult<serde_json::Value> {
    let destroyed = e
        .rollback(&t, &req.label, req.force)
        .await
        .map_err(bad_request)?;
    Ok(Json(
        serde_json::json!({ "label": req.label, "destroyed": destroyed }),
    ))
}

async fn workload_snapshots(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<Vec<SnapshotView>> {
    list_snaps(&e, Target::Workload(name)).await
}

async fn volume_snapshots(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<Vec<SnapshotView>> {
    list_snaps(&e, Target::Volume(name)).await
}

async fn workload_snapshot(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Json(req): Json<SnapshotRequest>,
) -> ApiResult<serde_json::Value> {
    take_snap(&e, Target::Workload(name), req).await
}

async fn volume_snapshot(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Json(req): Json<SnapshotRequest>,
) -> ApiResult<serde_json::Value> {
    take_snap(&e, Target::Volume(name), req).await
}

async fn workload_snapshot_rm(
    State(e): State<Arc<Engine>>,
    Path((name, label)): Path<(String, String)>,
) -> ApiResult<serde_json::Value> {
    e.delete_snapshot(&Target::Workload(name), &label)
        .await
        .map_err(bad_request)?;
    Ok(Json(serde_json::json!({ "deleted": label })))
}

async fn volume_snapshot_rm(
    State(e): State<Arc<Engine>>,
    Path((name, label)): Path<(String, String)>,
) -> ApiResult<serde_json::Value> {
    e.delete_snapshot(&Target::Volume(name), &label)
        .await
        .map_err(bad_request)?;
    Ok(Json(serde_json::json!({ "deleted": label })))
}

async fn workload_rollback(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<serde_json::Value> {
    rollback_to(&e, Target::Workload(name), req).await
}

async fn volume_rollback(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Json(req): Json<RollbackRequest>,
) -> ApiResult<serde_json::Value> {
    rollback_to(&e, Target::Volume(name), req).await
}

async fn clone(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Json(req): Json<CloneRequest>,
) -> ApiResult<serde_json::Value> {
    e.clone_workload(&name, &req.name, req.snapshot.as_deref())
        .await
        .map_err(bad_request)?;
    Ok(Json(serde_json::json!({ "created": req.name })))
}

async fn volumes(State(e): State<Arc<Engine>>) -> ApiResult<Vec<VolumeInfo>> {
    let declared = e.store.volumes()?;
    let storage = e.storage.clone();
    let existing = tokio::task::spawn_blocking(move || storage.list_volumes())
        .await
        .map_err(|e| anyhow::anyhow!(e))?
        .map_err(|e| anyhow::anyhow!(e))?;
    let desired = e.store.desired()?;
    let mut names: Vec<String> = declared
        .keys()
        .cloned()
        .chain(existing.iter().cloned())
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let storage = e.storage.clone();
        let n = name.clone();
        let usage = tokio::task::spawn_blocking(move || {
            storage.usage(&warren_storage::DatasetId::Volume(n)).ok()
        })
        .await
        .ok()
        .flatten();
        out.push(VolumeInfo {
            declared: declared.contains_key(&name),
            size: declared.get(&name).and_then(|v| v.size),
            used: usage.map(|u| u.0),
            mounts: desired
                .values()
                .flat_map(|d| {
                    d.spec
                        .volumes
                        .iter()
                        .filter(|m| m.volume == name)
                        .map(|m| {
                            format!(
                                "{}:{}{}",
                                d.spec.name,
                                m.path,
                                if m.readonly { ":ro" } else { "" }
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
            name,
        });
    }
    Ok(Json(out))
}

async fn volume_rm(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    e.delete_volume(&name).await.map_err(bad_request)?;
    Ok(Json(serde_json::json!({ "deleted": name })))
}

#[cfg(test)]
mod tests {
    use super::host_support;

    const FILE: &str = r#"[workload.cell]
kind = "jail"
world = "freebsd-14"

[workload.cell.jail]
allow = ["raw_sockets"]
jailed_dataset = true

[workload.web]
world = "freebsd-14"
jail = { vnet = false }

[workload.guest]
kind = "vm"
image = "alpine:3.20"
"#;

    fn messages(os: &str, driver: &str) -> Vec<String> {
        let parsed = warren_model::parse_spec(FILE, "w.toml").unwrap();
        host_support(&parsed, os, driver)
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn jails_and_their_options_are_refused_off_freebsd() {
        assert_eq!(
            messages("linux", "btrfs"),
            [
                "w.toml:2:8: workload.cell.kind: kind \"jail\" is not supported on this host (linux): jails need a FreeBSD host",
                "w.toml:11:1: workload.web.jail: jail options need a FreeBSD host (this is linux), where the workload runs as a jail",
                "w.toml:14:8: workload.guest.kind: kind \"vm\" is not supported on this host yet: use kind = \"container\"",
            ]
        );
    }

    #[test]
    fn freebsd_runs_jails_and_wants_zfs_for_a_jailed_dataset() {
        assert_eq!(
            messages("freebsd", "zfs"),
            ["w.toml:14:8: workload.guest.kind: kind \"vm\" is not supported on this host yet: use kind = \"container\""]
        );
        assert_eq!(
            messages("freebsd", "dir"),
            [
                "w.toml:7:18: workload.cell.jail.jailed_dataset: a jailed dataset needs the zfs storage driver (this daemon uses dir; start it with --storage zfs)",
                "w.toml:14:8: workload.guest.kind: kind \"vm\" is not supported on this host yet: use kind = \"container\"",
            ]
        );
    }
}
