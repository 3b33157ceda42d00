//! HTTP/JSON API handlers (version 1).
//!
//! Handlers parse requests into service and engine calls; validating and applying spec files
//! is the [`super::apply`] service's (an invalid file changes nothing). Streaming endpoints
//! (logs, exec, console, run) live in [`super::stream`].

use super::datasets::{SnapshotView, Target};
use super::engine::Engine;
use super::error::ApiJson;
use super::error::WorkloadError;
pub use super::error::{ApiError, ErrorKind};
use super::stream;
use crate::wire::*;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::Arc;
use warren_model::plan::Desired;
use warren_model::Source;

pub fn router(engine: Arc<Engine>) -> Router {
    let telemetry = engine.telemetry.clone();
    routes()
        .route_layer(axum::middleware::from_fn_with_state(
            telemetry,
            count_request,
        ))
        .with_state(engine)
}

/// Only the metrics, at `/metrics` and `/v1/metrics` (the `--metrics-listen` listener).
pub fn metrics_router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/v1/metrics", axum::routing::get(metrics))
        .with_state(engine)
}

/// Counts every answered request by route template, method and status, with its latency.
async fn count_request(
    State(t): State<Arc<super::telemetry::Telemetry>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let method = req.method().to_string();
    let began = std::time::Instant::now();
    let resp = next.run(req).await;
    t.request(&method, &route, resp.status().as_u16(), began.elapsed());
    resp
}

/// `GET /v1/info`.
async fn info(State(e): State<Arc<Engine>>) -> ApiResult<Info> {
    let info = tokio::task::spawn_blocking(move || super::info::gather(&e))
        .await
        .map_err(|x| anyhow::anyhow!(x))??;
    Ok(Json(info))
}

/// `GET /v1/metrics`: Prometheus metrics in the text exposition format.
async fn metrics(State(e): State<Arc<Engine>>) -> Result<Response, ApiError> {
    let text = tokio::task::spawn_blocking(move || super::metrics::render(&e))
        .await
        .map_err(|x| anyhow::anyhow!(x))??;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            super::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

crate::api! { routes, ops, Arc<Engine>;
    get "/v1/health" => health, Token, "Whether the daemon answers", [],
        None, crate::json_of!(HealthResponse);
    get "/v1/info" => info, Token, "What this host is and runs: host, OS, CPUs and memory, the storage pool's size and fill, runtimes, ingress, workload counts, the remote API", [],
        None, crate::json_of!(Info);
    get "/v1/metrics" => metrics, Token, "Prometheus metrics (text exposition format): workloads, datasets, the pool, the daemon", [],
        None, Binary("text/plain");
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
    get "/v1/workloads/{name}/archive" => super::copy::get_archive, Token, "A path inside a workload as a tar stream (one entry under its name; a directory's contents for DIR/. or /); owners as the workload sees them", ["path": "the absolute path inside the workload"],
        None, Binary("application/x-tar");
    put "/v1/workloads/{name}/archive" => super::copy::put_archive, Token, "Place a tar stream at a path inside a workload: into it when it is a directory, else as it; traversal, links leading outside and device nodes refused with nothing written", ["path": "the absolute path inside the workload", "archive": "true to keep the archive's owners (mapped under userns); otherwise files belong to the workload's root", "contents": "true when the stream holds a directory's contents rather than one entry", "directory": "true when the path must be an existing directory (a stream of any shape)"],
        Binary("application/x-tar"), crate::json_of!(CopiedIn);
    get "/v1/workloads/{name}/console" => stream::console, Token, "Attach to a running VM's serial console over an upgraded connection (stdin frames in, its output as stdout frames, an exit frame when the VM ends)", [],
        None, Upgrade;
    get "/v1/run" => stream::run, Token, "Run a one-off container from a world over an upgraded connection, removed when it exits", [],
        None, Upgrade;
    get "/v1/worlds" => worlds, Token, "Worlds and the workloads using them", [],
        None, crate::json_of!(Vec<WorldInfo>);
    post "/v1/worlds/{name}" => super::worlds::create_handler, Token, "Build a world (host, busybox, debian, debian-SUITE); its output as NDJSON lines", ["mirror": "Debian mirror URL"],
        None, crate::ndjson_of!(WorldBuildLine);
    delete "/v1/worlds/{name}" => super::worlds::rm_handler, Token, "Delete a world no workload names", [],
        None, crate::json_of!(Removed);
    post "/v1/worlds/{name}/import" => super::worlds::import_handler, Token, "Make a world from a root filesystem tarball (plain, gzip or zstd)", ["command": "default command as a JSON array"],
        Binary("application/octet-stream"), crate::json_of!(WorldImported);
    get "/v1/worlds/{name}/export" => super::worlds::export_handler, Token, "A world as a zstd-compressed tarball", [],
        None, Binary("application/zstd");
    get "/v1/images" => super::images::list_handler, Token, "Stored images with their config and users", [],
        None, crate::json_of!(Vec<ImageInfo>);
    delete "/v1/images" => super::images::rm_handler, Token, "Forget an image reference (refused while a workload names it)", ["reference": "the reference to forget"],
        None, crate::json_of!(Removed);
    post "/v1/images/import" => super::images::import_handler, Token, "Import a docker-save or OCI archive", ["tag": "store the only image under this reference"],
        Binary("application/x-tar"), crate::json_of!(Vec<ImageImported>);
    post "/v1/images/gc" => super::images::gc_handler, Token, "Delete the layers no stored image uses", [],
        None, crate::json_of!(ImageGcResponse);
    post "/v1/images/pull" => super::images::pull_handler, Token, "Pull an image from a registry; progress as NDJSON lines", [],
        crate::json_of!(super::images::PullRequest), crate::ndjson_of!(PullLine);
    post "/v1/build" => super::recipes::build_handler, Token, "Build the Warrenfile recipe in the uploaded directory (a tar stream); progress and the script's output as NDJSON lines", ["version": "the version to record"],
        Binary("application/x-tar"), crate::ndjson_of!(BuildLine);
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
        crate::json_of!(SnapshotRequest), crate::json_of!(SnapshotTaken);
    delete "/v1/workloads/{name}/snapshots/{label}" => workload_snapshot_rm, Token, "Delete a workload snapshot", [],
        None, crate::json_of!(Deleted);
    post "/v1/workloads/{name}/rollback" => workload_rollback, Token, "Roll a workload back to a snapshot", [],
        crate::json_of!(RollbackRequest), crate::json_of!(RolledBack);
    post "/v1/workloads/{name}/clone" => clone, Token, "Clone a workload (copy-on-write)", [],
        crate::json_of!(CloneRequest), crate::json_of!(Cloned);
    get "/v1/workloads/{name}/export" => super::transfer::export, Token, "Export a workload as a self-checking archive", ["since": "incremental from this snapshot"],
        None, Binary("application/octet-stream");
    post "/v1/import" => super::transfer::import, Token, "Import a workload or volume archive", ["name": "import under this name"],
        Binary("application/octet-stream"), crate::json_of!(ImportResponse);
    get "/v1/volumes" => volumes, Token, "Volumes and who mounts them", [],
        None, crate::json_of!(Vec<VolumeInfo>);
    delete "/v1/volumes/{name}" => volume_rm, Token, "Delete a volume no workload mounts", [],
        None, crate::json_of!(Deleted);
    get "/v1/volumes/{name}/snapshots" => volume_snapshots, Token, "A volume's snapshots", [],
        None, crate::json_of!(Vec<SnapshotView>);
    post "/v1/volumes/{name}/snapshots" => volume_snapshot, Token, "Snapshot a volume", [],
        crate::json_of!(SnapshotRequest), crate::json_of!(SnapshotTaken);
    delete "/v1/volumes/{name}/snapshots/{label}" => volume_snapshot_rm, Token, "Delete a volume snapshot", [],
        None, crate::json_of!(Deleted);
    post "/v1/volumes/{name}/rollback" => volume_rollback, Token, "Roll a volume back to a snapshot", [],
        crate::json_of!(RollbackRequest), crate::json_of!(RolledBack);
    get "/v1/volumes/{name}/export" => super::transfer::export_volume, Token, "Export a volume as a self-checking archive", ["since": "incremental from this snapshot"],
        None, Binary("application/octet-stream");
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn repl_eval(
    State(e): State<Arc<Engine>>,
    ApiJson(req): ApiJson<ReplRequest>,
) -> ApiResult<ReplResponse> {
    let repl = e
        .evaluator()
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, "the REPL is not running"))?;
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

async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        ok: true,
        version: env!("CARGO_PKG_VERSION").to_string(),
    })
}

async fn plan_handler(
    State(e): State<Arc<Engine>>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<ApplyResponse> {
    super::apply::plan_or_apply(e, req, false).await.map(Json)
}

async fn apply_handler(
    State(e): State<Arc<Engine>>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<ApplyResponse> {
    super::apply::plan_or_apply(e, req, true).await.map(Json)
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
        return Err(WorkloadError::Refused(format!(
            "{name} is warren's routing workload: it runs while any workload declares \
             `domains`, so it cannot be {verb} by hand (use `restart` to restart it)"
        ))
        .into());
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
    // A start held back by the start order is carried out as far as it can be.
    settled(
        e.settle(&name, SETTLE, |s, _| {
            matches!(s.state.as_str(), "running" | "waiting")
        })
        .await?,
    )
}

async fn stop(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Status> {
    not_router(&name, "stopped")?;
    desired_or_404(&e, &name)?;
    e.stop_now(&name).await?;
    settled(e.settle(&name, SETTLE, |s, _| s.state == "stopped").await?)
}

async fn restart(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Status> {
    desired_or_404(&e, &name)?;
    let generation = e.restart_now(&name).await?;
    // Running is not enough: the run must be the one started for this request.
    settled(
        e.settle(&name, SETTLE, |s, r| {
            s.state == "waiting"
                || r.is_some_and(|r| r.pid.is_some() && r.restart_generation >= generation)
        })
        .await?,
    )
}

/// How long an operator request waits for the reconciler before answering with the status
/// as it is.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The answer to an operator request once the engine settled it.
fn settled(r: Result<Status, String>) -> ApiResult<Status> {
    r.map(Json)
        .map_err(|message| WorkloadError::Failed(message).into())
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
    let data = e.storage.data_path(&name);
    // `--purge` also deletes the data a deleted workload kept.
    let had_data = data.exists();
    let existed = e.delete_now(&name, q.purge).await?;
    if !(existed || q.purge && had_data) {
        return Err(ApiError::not_found(&name));
    }
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
    let body = event_feed(e, q).map(|ev| Ok::<_, std::io::Error>(crate::ndjson::line(ev)));
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

async fn list_snaps(e: &Arc<Engine>, t: Target) -> ApiResult<Vec<SnapshotView>> {
    Ok(Json(e.list_snapshots(&t).await?))
}

async fn take_snap(e: &Arc<Engine>, t: Target, req: SnapshotRequest) -> ApiResult<SnapshotTaken> {
    let label = e.take_snapshot(&t, req.label).await?;
    Ok(Json(SnapshotTaken { label }))
}

async fn rollback_to(e: &Arc<Engine>, t: Target, req: RollbackRequest) -> ApiResult<RolledBack> {
    let destroyed = e.rollback(&t, &req.label, req.force).await?;
    Ok(Json(RolledBack {
        label: req.label,
        destroyed,
    }))
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
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> ApiResult<SnapshotTaken> {
    take_snap(&e, Target::Workload(name), req).await
}

async fn volume_snapshot(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SnapshotRequest>,
) -> ApiResult<SnapshotTaken> {
    take_snap(&e, Target::Volume(name), req).await
}

async fn workload_snapshot_rm(
    State(e): State<Arc<Engine>>,
    Path((name, label)): Path<(String, String)>,
) -> ApiResult<Deleted> {
    e.delete_snapshot(&Target::Workload(name), &label).await?;
    Ok(Json(Deleted { deleted: label }))
}

async fn volume_snapshot_rm(
    State(e): State<Arc<Engine>>,
    Path((name, label)): Path<(String, String)>,
) -> ApiResult<Deleted> {
    e.delete_snapshot(&Target::Volume(name), &label).await?;
    Ok(Json(Deleted { deleted: label }))
}

async fn workload_rollback(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<RolledBack> {
    rollback_to(&e, Target::Workload(name), req).await
}

async fn volume_rollback(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> ApiResult<RolledBack> {
    rollback_to(&e, Target::Volume(name), req).await
}

async fn clone(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<CloneRequest>,
) -> ApiResult<Cloned> {
    e.clone_workload(&name, &req.name, req.snapshot.as_deref())
        .await?;
    Ok(Json(Cloned { created: req.name }))
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

async fn volume_rm(State(e): State<Arc<Engine>>, Path(name): Path<String>) -> ApiResult<Deleted> {
    e.delete_volume(&name).await?;
    Ok(Json(Deleted { deleted: name }))
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
