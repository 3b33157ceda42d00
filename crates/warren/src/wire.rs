//! Wire types of the HTTP/JSON API (version 1), shared by the daemon and the CLI, and the
//! framing used on upgraded streams (`exec`, `run`).
//!
//! Streams: after `101 Switching Protocols` (upgrade token [`STREAM_PROTOCOL`]) both sides
//! exchange frames `[kind: u8][len: u32 BE][payload]` (see [`FrameKind`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use warren_model::plan::Step;
use warren_model::WorkloadSpec;

pub const STREAM_PROTOCOL: &str = "warren-stream";
/// Header carrying the JSON arguments of an upgraded request.
pub const ARGS_HEADER: &str = "x-warren-args";

/// `POST /v1/apply` and `/v1/plan`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApplyRequest {
    /// File name used in diagnostics.
    pub file: String,
    /// The whole warren.toml text.
    pub text: String,
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub dry_run: bool,
}

/// A workload-level change in a plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Change {
    pub workload: String,
    /// `create`, `update`, `unchanged`, `remove` (pruned) or `orphan` (in the store, not in the
    /// file, kept because `--prune` was not given).
    pub change: String,
    /// Changed fields for updates.
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApplyResponse {
    pub changes: Vec<Change>,
    pub steps: Vec<Step>,
    /// Desired workloads this host cannot run (no steps), each with the reason.
    #[serde(default)]
    pub refused: Vec<warren_model::plan::Refusal>,
    /// Desired workloads whose start waits for their start order (`after`), with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<warren_model::plan::Waiting>,
    pub generation: u64,
    pub applied: bool,
    /// What the file may do that is allowed but worth knowing (CPUs over the host's budget).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Diagnostics for an invalid file (HTTP 422).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub diagnostics: Vec<warren_model::Diagnostic>,
}

/// A workload's live status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Status {
    pub name: String,
    pub kind: String,
    /// `running`, `stopped`, `exited`, `restarting`, `starting`, `pending`, `waiting`,
    /// `refused`
    pub state: String,
    pub desired: String,
    pub pid: Option<i32>,
    pub restarts: u32,
    pub source: String,
    pub generation: u64,
    pub last_exit: Option<ExitSummary>,
    pub started_ms: Option<u64>,
    /// Why this host cannot run the workload (state `refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// What its start waits for (state `waiting`): `waiting for db (healthy)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// The workload's bridge address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// `starting`, `healthy` or `unhealthy`, for workloads with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// A VM's accelerator (`kvm` or `tcg`), once it has started on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct ExitSummary {
    pub code: i32,
    /// The signal that ended the run, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub at_ms: u64,
}

/// One event (`GET /v1/events`, the NDJSON and WebSocket streams, `warren events -o json`):
/// the typed `event` with its fields, plus its kind word and message rendered from it for
/// people (never parse them: match on `event.type`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Event {
    pub id: i64,
    /// Unix milliseconds.
    pub ts_ms: u64,
    pub workload: Option<String>,
    /// The short kind word (`exited`, `world`, `auth`); several event types share one.
    pub kind: String,
    /// The human message, rendered from `event`.
    pub message: String,
    /// What happened, tagged by `type` (`exited` with `code`, `signal`, `oom_killed`, ...).
    pub event: warren_model::event::EventKind,
}

impl From<&warren_store::Event> for Event {
    fn from(e: &warren_store::Event) -> Self {
        Event {
            id: e.id,
            ts_ms: e.ts_ms,
            workload: e.workload.clone(),
            kind: e.kind.category().to_string(),
            message: e.kind.to_string(),
            event: e.kind.clone(),
        }
    }
}

/// `GET /v1/workloads/{name}`: the spec plus its status.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkloadDetail {
    pub spec: WorkloadSpec,
    #[serde(flatten)]
    pub status: Status,
    pub hash: String,
}

/// Arguments of `exec` (upgraded stream).
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct ExecArgs {
    pub argv: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
}

/// Arguments of `run --rm` (upgraded stream).
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct RunArgs {
    pub world: String,
    pub argv: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
}

/// One log line as streamed by `GET /v1/workloads/{name}/logs` (NDJSON).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogEntry {
    pub ts: String,
    pub stream: String,
    pub text: String,
    #[serde(default)]
    pub partial: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorldInfo {
    pub name: String,
    pub binds: Vec<String>,
    pub created_at: u64,
    pub used_by: Vec<String>,
}

/// One stored image (`GET /v1/images`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageInfo {
    pub reference: String,
    pub id: String,
    #[serde(default)]
    pub manifest_digest: Option<String>,
    pub layers: usize,
    /// Bytes of the layers as stored in the source (compressed).
    pub size: u64,
    pub created_ms: u64,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    pub exposed_ports: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Declared workloads that name it.
    pub used_by: Vec<String>,
}

/// One image an import or pull stored.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageImported {
    pub reference: String,
    pub id: String,
    pub layers: usize,
    pub new_layers: usize,
    /// The image id the reference named before, when it moved.
    #[serde(default)]
    pub replaced: Option<String>,
}

/// `POST /v1/images/gc`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct ImageGcResponse {
    pub deleted: Vec<String>,
    /// Layer worlds that could not be deleted, with the reason.
    pub kept: Vec<String>,
}

/// `POST .../snapshots`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct SnapshotRequest {
    #[serde(default)]
    pub label: Option<String>,
}

/// `POST .../rollback`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RollbackRequest {
    pub label: String,
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/workloads/{name}/clone`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CloneRequest {
    pub name: String,
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// `GET /v1/volumes`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VolumeInfo {
    pub name: String,
    /// Declared by the applied spec (an undeclared one holds data left behind).
    pub declared: bool,
    pub size: Option<u64>,
    pub used: Option<u64>,
    /// `workload:/path[:ro]`
    pub mounts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeleteResponse {
    pub deleted: bool,
    pub data_kept: Option<String>,
}

/// Frame kinds on an upgraded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Stdin = 0,
    Stdout = 1,
    Stderr = 2,
    /// Payload: exit code as i32 BE.
    Exit = 3,
    StdinEof = 4,
    /// Payload: rows u16 BE, cols u16 BE.
    Resize = 5,
    /// Payload: UTF-8 message; the stream ends after it.
    Error = 6,
}

impl FrameKind {
    pub fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            0 => FrameKind::Stdin,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Exit,
            4 => FrameKind::StdinEof,
            5 => FrameKind::Resize,
            6 => FrameKind::Error,
            _ => return None,
        })
    }
}

/// Largest payload accepted in one frame.
pub const MAX_FRAME: usize = 1 << 20;

/// Encodes one frame.
pub fn encode_frame(kind: FrameKind, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind as u8);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(FrameKind, Vec<u8>)>> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let kind = FrameKind::from_u8(head[0]).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "unknown frame kind")
    })?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_reject_garbage() {
        let mut buf = encode_frame(FrameKind::Stdout, b"hello");
        buf.extend(encode_frame(FrameKind::Exit, &7i32.to_be_bytes()));
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((FrameKind::Stdout, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r).await.unwrap(),
            Some((FrameKind::Exit, 7i32.to_be_bytes().to_vec()))
        );
        assert_eq!(read_frame(&mut r).await.unwrap(), None);
        let mut bad = &[9u8, 0, 0, 0, 0][..];
        assert!(read_frame(&mut bad).await.is_err());
        let mut huge = &[1u8, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut huge).await.is_err());
        let mut truncated = &[1u8, 0, 0, 0, 9, b'x'][..];
        assert!(read_frame(&mut truncated).await.is_err());
    }
}

/// `POST /v1/repl`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplRequest {
    /// One or more Scheme forms.
    pub expr: String,
}

/// The printed value of the last form, or the error.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReplResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/info`: what this host is, what runs here and how full it is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct Info {
    pub host: HostInfo,
    pub daemon: DaemonInfo,
    pub storage: StorageInfo,
    /// The runtimes warren has on this OS, each with whether it works here.
    pub runtimes: Vec<RuntimeInfo>,
    pub ingress: IngressInfo,
    pub workloads: WorkloadCounts,
    /// The remote API, when the daemon listens for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<RemoteInfo>,
    /// Where plain-HTTP metrics are served (`--metrics-listen`), if anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// The host resource budget: memory and CPUs, reserved by `[host]`, allocated to the
    /// workloads set to run, and left.
    #[serde(default)]
    pub budget: warren_model::budget::Budget,
}

/// The machine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct HostInfo {
    pub name: String,
    /// The host id of the remote API's identity (what `warren adopt` records), else the
    /// machine id (`/etc/machine-id`), else empty.
    pub id: String,
    /// `linux`, `freebsd`, ...
    pub os: String,
    /// The distribution's name and version (`PRETTY_NAME` of os-release), when known.
    pub os_release: String,
    /// The kernel's name and release (`uname -sr`).
    pub kernel: String,
    pub arch: String,
    /// Online CPUs.
    pub cpus: u32,
    /// Total and available memory in bytes (MemTotal, MemAvailable on Linux).
    pub memory_bytes: u64,
    pub memory_available_bytes: u64,
    /// Seconds since the host booted.
    pub uptime_s: u64,
}

/// The daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct DaemonInfo {
    pub version: String,
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_s: u64,
    pub started_ms: u64,
    pub state_dir: String,
}

/// The dataset pool.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct StorageInfo {
    /// `btrfs`, `zfs` or `dir`.
    pub driver: String,
    pub root: String,
    /// Pool size and used bytes, and used as a percentage of the size (absent when the
    /// driver could not tell; `error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One runtime warren has on this OS.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RuntimeInfo {
    /// `runc`, `qemu`, `jail`, `bhyve`.
    pub name: String,
    /// The workload kind it runs.
    pub kind: String,
    /// Whether it works here (its program is installed).
    pub available: bool,
    /// Its program's path, version or accelerator, or why it is unavailable.
    pub detail: String,
    /// A VM runtime's accelerator (`kvm` or `tcg`) once known here; `None` until the first VM
    /// has started (the probe boots a guest, so it is not run just to answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
}

/// The ingress (the routing workload's nginx).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct IngressInfo {
    /// `off` (no workload declares domains), `pending` (domains declared, the routing
    /// workload not there yet), or the routing workload's state.
    pub state: String,
    /// Domains routed.
    pub domains: Vec<String>,
    pub http_port: u16,
    pub https_port: u16,
}

/// Workload counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct WorkloadCounts {
    pub total: u32,
    /// Counts by kind, then by state (`running`, `stopped`, ...).
    pub by_kind: BTreeMap<String, BTreeMap<String, u32>>,
}

/// The remote API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct RemoteInfo {
    /// ADDR:PORT it listens on.
    pub address: String,
    pub host_id: String,
    /// SHA-256 fingerprint of its certificate.
    pub fingerprint: String,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthResponse {
    pub ok: bool,
    /// The daemon's version.
    pub version: String,
}

/// One NDJSON line of a world build: output lines, then `created` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorldBuildLine {
    Line(String),
    /// The world built.
    Created(String),
    Error(String),
}

/// One NDJSON line of an image pull: progress lines, then `pulled` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PullLine {
    Line(String),
    Pulled(Vec<ImageImported>),
    Error(String),
}

/// One NDJSON line of a recipe build: the script's output, then `built` or `error`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildLine {
    Line(String),
    Built(RecipeBuilt),
    Error(String),
}

/// What a recipe build produced.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecipeBuilt {
    pub name: String,
    pub version: String,
    /// The build's cache key.
    pub key: String,
    /// The world holding the build's root filesystem.
    pub world: String,
    pub parent: String,
    /// Whether an earlier build with the same key was reused.
    pub cached: bool,
}

/// `POST /v1/worlds/{name}/import`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorldImported {
    pub created: String,
    /// Entries unpacked from the tarball.
    pub entries: u64,
}

/// A world or image reference removed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Removed {
    pub removed: String,
}

/// A snapshot label or a volume deleted.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

/// `POST .../snapshots`: the label taken.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SnapshotTaken {
    pub label: String,
}

/// `POST .../rollback`: the label rolled back to and the newer snapshots destroyed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RolledBack {
    pub label: String,
    pub destroyed: Vec<String>,
}

/// `POST /v1/workloads/{name}/clone`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Cloned {
    pub created: String,
}

/// `PUT /v1/workloads/{name}/archive`: what was placed.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CopiedIn {
    /// Tar entries.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
}

/// `POST /v1/import`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImportResponse {
    pub name: String,
    pub label: String,
    pub incremental: bool,
}

/// `DELETE /v1/auth/keys/{fingerprint}`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Revoked {
    pub revoked: String,
}

/// `POST /v1/auth/enroll`: whom the key is now enrolled with.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Enrolled {
    pub host_id: String,
    pub fingerprint: String,
}

/// The open claim window: its code, when it closes (Unix seconds) and the host certificate's
/// fingerprint.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClaimWindow {
    pub code: String,
    pub until: u64,
    pub fingerprint: Option<String>,
}

/// `GET /v1/openapi.json`: an OpenAPI 3.1 document.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct OpenApiDocument(pub serde_json::Map<String, serde_json::Value>);
