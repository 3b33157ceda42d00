//! Datasets: where every workload's bytes live.
//!
//! One trait, [`Storage`], with a btrfs driver ([`btrfs::BtrfsStorage`]), a plain-directory
//! fallback ([`dir::DirStorage`]) and a ZFS driver ([`zfs::ZfsStorage`]: datasets under
//! `<pool>/warren`, worlds sealed with a `@base` snapshot, rootfs as `zfs clone`). [`pool`]
//! prepares the embedded default (a sparse loop-backed btrfs file in the state dir when the state
//! dir itself is not on btrfs). [`worlds`] builds the base systems (`host`, `busybox`) that
//! workload root filesystems are snapshots of.
//!
//! Layout under the driver's root:
//! ```text
//! worlds/<world>                     read-only dataset (btrfs: read-only subvolume)
//! worlds/<world>.json                world metadata (bind mounts from the host, default command)
//! worlds/<world>.sealed              dir driver only: the world is complete and read-only by contract
//! workloads/<name>/rootfs            writable snapshot of the world
//! workloads/<name>/data              persistent data, survives recreate
//! workloads/<name>/qgroup            btrfs only: the workload's level-1 quota group (`1/<n>`)
//! volumes/<name>                     a named volume (btrfs subvolume / plain directory)
//! snapshots/<key>/<label>            read-only snapshot of dataset <key>, e.g.
//!                                    snapshots/workloads/web/data/nightly
//! snapshots/<key>/<label>.json       snapshot metadata (creation time, btrfs subvolume id)
//! snapshots/<key>/.incoming-<unique> btrfs: a stream received but not installed (staged)
//! snapshots/.incoming-<unique>/      dir: the same (the checked, extracted tar)
//! ```
//!
//! Snapshots live outside their dataset, so rolling back or deleting a dataset never has to
//! step around them and a dataset's files never show its own history. Temp names (a dataset
//! being swapped in by a rollback, a snapshot being copied) start with `.` and are never listed.
//! Snapshot labels are 1–64 characters of `[A-Za-z0-9._-]`, not starting with `.`.
//! Deleting a dataset (`delete_rootfs`, `delete_data`, `delete_volume`) deletes its snapshots,
//! so a recreated rootfs starts without history. What each operation costs and guarantees per
//! driver (constant-time btrfs snapshots and clones versus copies, quota semantics, stream
//! formats) is described in [`btrfs`] and [`dir`].
//!
//! # Staged receives
//! [`Storage::receive_staged`] reads a stream into a hidden place (a `.incoming-` entry, a
//! hidden ZFS dataset) that no listing shows and that does not count as the dataset existing;
//! [`Storage::commit_staged`] installs it (the snapshot under its label, the dataset created or
//! replaced) and [`Storage::abort_staged`] deletes it. [`Storage::receive`] is the two in one
//! go. A caller that receives several streams that belong together (an archive's rootfs and
//! data) stages them all and commits only once every one arrived intact. A staged receive that
//! is neither committed nor aborted (its [`Staged`] dropped, the process killed) is deleted by
//! the next [`Storage::sweep_staged`]; the sweep never touches a staged receive of this process
//! that is still held.
//!
//! Portability: the btrfs driver and the loop-backed pool are Linux-only (statfs magic, loop
//! devices, `mount -o loop`); elsewhere [`pool::open_storage`] refuses them with
//! [`StorageError::Unsupported`] and only the dir driver is available. Parsers stay portable.

pub mod btrfs;
pub mod debian;
pub mod dir;
pub mod ephemeral;
pub mod freebsd;
mod fsutil;
pub mod pool;
mod snapdir;
pub mod worlds;
pub mod zfs;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Errors from dataset drivers.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Exec(#[from] warren_exec::ExecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("world {0:?} does not exist (create it with `warren world create {0}`)")]
    NoSuchWorld(String),
    #[error("world {0:?} is not one warren can build (known: host, busybox)")]
    UnknownWorld(String),
    #[error("dataset {0} already exists")]
    Exists(PathBuf),
    /// The operation needs something this OS does not have (btrfs and loop devices off Linux).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
    #[error("invalid snapshot label {0:?}: {rule}", rule = warren_model::names::SNAPSHOT_LABEL_RULE)]
    InvalidLabel(String),
    #[error("dataset {0} does not exist")]
    NoSuchDataset(String),
    #[error("dataset {dataset} has no snapshot {label:?} (it has: {})", list_or_none(.existing))]
    NoSuchSnapshot {
        dataset: String,
        label: String,
        existing: Vec<String>,
    },
    #[error("snapshot {label:?} of {dataset} already exists")]
    SnapshotExists { dataset: String, label: String },
    #[error(
        "refusing to roll {dataset} back to {label:?}: newer snapshots exist ({}); \
         destroy them with the rollback or delete them first",
        .newer.join(", ")
    )]
    NewerSnapshots {
        dataset: String,
        label: String,
        newer: Vec<String>,
    },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// A bind mount a world asks for (the `host` world's read-only /usr and friends).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorldBind {
    pub source: PathBuf,
    pub dest: String,
    pub readonly: bool,
}

/// What warren knows about a world besides its files.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorldMeta {
    pub name: String,
    /// Host paths bind-mounted into every workload of this world.
    #[serde(default)]
    pub binds: Vec<WorldBind>,
    /// argv used when a workload gives no command.
    #[serde(default)]
    pub default_command: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
}

/// A pool's size and use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PoolUsage {
    pub size: u64,
    pub used: u64,
}

impl PoolUsage {
    /// Used bytes as a percentage of the size (0 for an empty pool).
    pub fn fill_percent(&self) -> f64 {
        if self.size == 0 {
            0.0
        } else {
            self.used as f64 * 100.0 / self.size as f64
        }
    }
}

/// One dataset as listed by a driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    /// e.g. `worlds/host`, `workloads/web/rootfs`, `workloads/web/data`
    pub name: String,
    pub path: PathBuf,
    pub readonly: bool,
}

/// One of warren's writable datasets, the unit of snapshots, clones, quotas and streams.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum DatasetId {
    /// `workloads/<name>/rootfs`
    Rootfs(String),
    /// `workloads/<name>/data`
    Data(String),
    /// `volumes/<name>`
    Volume(String),
}

impl DatasetId {
    /// The dataset's path relative to the driver root, e.g. `workloads/web/data`.
    pub fn key(&self) -> String {
        match self {
            DatasetId::Rootfs(w) => format!("workloads/{w}/rootfs"),
            DatasetId::Data(w) => format!("workloads/{w}/data"),
            DatasetId::Volume(v) => format!("volumes/{v}"),
        }
    }
}

/// A read-only point-in-time copy of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    /// [`DatasetId::key`] of the dataset it belongs to.
    pub dataset: String,
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Bytes held only by this snapshot, when the driver can tell.
    pub bytes: Option<u64>,
}

/// The places of this process's staged receives that are still held (see [`Staged`]).
static LIVE_STAGED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Whether `place` belongs to a staged receive this process still holds (or is still
/// receiving): [`Storage::sweep_staged`] leaves those alone.
pub(crate) fn staged_is_live(place: &str) -> bool {
    LIVE_STAGED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(place)
}

/// A stream received by [`Storage::receive_staged`] and not yet installed. It sits in a hidden
/// place that no listing shows; the dataset is as it was. Hand it to [`Storage::commit_staged`]
/// or [`Storage::abort_staged`]; dropped without either, its place is left for
/// [`Storage::sweep_staged`] to delete.
#[derive(Debug)]
#[must_use = "a staged receive is committed or aborted; dropped, it is left to the sweep"]
pub struct Staged {
    id: DatasetId,
    label: String,
    /// Where the stream is: a path (btrfs, dir) or a dataset name (zfs).
    place: String,
    incremental: bool,
    /// zfs, incremental: the snapshot the dataset returns to on abort.
    base: Option<String>,
}

impl Staged {
    /// Registers `place` as live before anything is received into it, so a concurrent sweep
    /// never deletes a receive in progress.
    pub(crate) fn new(id: &DatasetId, label: &str, place: String) -> Staged {
        LIVE_STAGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(place.clone());
        Staged {
            id: id.clone(),
            label: label.to_string(),
            place,
            incremental: false,
            base: None,
        }
    }

    /// The dataset the stream is for.
    pub fn id(&self) -> &DatasetId {
        &self.id
    }
    /// The snapshot label the stream becomes.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// Whether the stream is incremental (applies on top of an existing dataset).
    pub fn incremental(&self) -> bool {
        self.incremental
    }
    /// Where the stream was received: a path (btrfs, dir) or a ZFS dataset name.
    pub fn place(&self) -> &str {
        &self.place
    }
    pub(crate) fn set_incremental(&mut self, incremental: bool) {
        self.incremental = incremental;
    }
    pub(crate) fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }
    pub(crate) fn set_base(&mut self, base: Option<String>) {
        self.base = base;
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        LIVE_STAGED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.place);
    }
}

/// A dataset driver. Paths returned are on the host and usable directly as bind sources.
///
/// Every operation is required: a driver that cannot do something (the dir driver's quotas,
/// incremental streams) says so itself with [`StorageError::Unsupported`], so no operation is
/// silently refused by a default nobody chose.
pub trait Storage: Send + Sync {
    /// `"btrfs"`, `"zfs"` or `"dir"`.
    fn driver(&self) -> &'static str;
    /// The directory everything lives under.
    fn root(&self) -> &Path;

    fn world_path(&self, world: &str) -> PathBuf {
        self.root().join("worlds").join(world)
    }
    fn rootfs_path(&self, workload: &str) -> PathBuf {
        self.root().join("workloads").join(workload).join("rootfs")
    }
    fn data_path(&self, workload: &str) -> PathBuf {
        self.root().join("workloads").join(workload).join("data")
    }
    /// The world's metadata file, `worlds/<world>.json`, next to (not inside) its dataset.
    fn world_meta_path(&self, world: &str) -> PathBuf {
        self.root().join("worlds").join(format!("{world}.json"))
    }

    /// Creates an empty writable dataset for a new world; fails if it exists.
    fn create_world_dataset(&self, world: &str) -> Result<PathBuf>;
    /// Creates a writable dataset for a new world as a copy-on-write snapshot of the sealed
    /// world `parent` (dir driver: a reflink copy where the filesystem has them, else a full
    /// copy); fails if `world` exists or `parent` does not.
    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf>;
    /// Makes a populated world read-only (btrfs: read-only property).
    fn seal_world(&self, world: &str) -> Result<()>;
    /// Removes a world dataset and its metadata.
    fn delete_world(&self, world: &str) -> Result<()>;
    /// Worlds that exist and are sealed, by name.
    fn list_worlds(&self) -> Result<Vec<String>>;

    /// Creates the workload's writable rootfs as a snapshot (or copy) of `world`.
    /// Replaces any existing rootfs of that workload.
    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf>;
    /// Deletes the workload's rootfs; no error if absent.
    fn delete_rootfs(&self, workload: &str) -> Result<()>;
    /// Creates the persistent data dataset if missing and returns its path.
    fn ensure_data(&self, workload: &str) -> Result<PathBuf>;
    /// Deletes the data dataset and the workload's directory; no error if absent.
    fn delete_data(&self, workload: &str) -> Result<()>;
    /// Every dataset the driver holds.
    fn list_datasets(&self) -> Result<Vec<DatasetInfo>>;

    /// Host path of a dataset (whether or not it exists).
    fn dataset_path(&self, id: &DatasetId) -> PathBuf {
        self.root().join(id.key())
    }

    /// The ZFS name of a dataset (`tank/warren/workloads/web/data`) when the driver keeps it
    /// as a ZFS filesystem of its own (what a jail can be handed with `zfs jail`); None for
    /// other drivers.
    fn zfs_dataset(&self, id: &DatasetId) -> Option<String> {
        let _ = id;
        None
    }

    /// Creates a volume dataset if missing and returns its path.
    fn ensure_volume(&self, name: &str) -> Result<PathBuf>;
    /// Deletes a volume with all its snapshots; no error if absent.
    fn delete_volume(&self, name: &str) -> Result<()>;
    /// Volumes that exist, by name.
    fn list_volumes(&self) -> Result<Vec<String>>;

    /// Takes a read-only snapshot of a dataset under `label` (unique per dataset).
    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo>;
    /// The dataset's snapshots, oldest first.
    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>>;
    /// Restores the dataset to `label`. Snapshots newer than `label` are refused unless
    /// `destroy_newer`, in which case they are deleted; returns the labels deleted.
    fn rollback(&self, id: &DatasetId, label: &str, destroy_newer: bool) -> Result<Vec<String>>;
    /// Deletes one snapshot.
    fn delete_snapshot(&self, id: &DatasetId, label: &str) -> Result<()>;
    /// Creates `dst` as a copy-on-write clone of `src` (of its snapshot `label`, or of its
    /// current state when None). Fails if `dst` exists.
    fn clone_dataset(&self, src: &DatasetId, label: Option<&str>, dst: &DatasetId) -> Result<()>;
    /// Sets (or with None removes) the dataset's size limit in bytes.
    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> Result<()>;
    /// Limits what a workload may write, its rootfs and data datasets together (bytes written
    /// beyond its world), or with None removes the limit. Called again after every
    /// re-provision, since a recreated rootfs is a new dataset.
    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()>;
    /// Bytes a workload has written (rootfs and data together) and its limit, if any.
    fn workload_usage(&self, workload: &str) -> Result<(u64, Option<u64>)>;
    /// Bytes the dataset uses (referenced) and its limit, if any.
    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)>;
    /// The pool's size and the bytes used in it: btrfs and zfs ask their tools; the default
    /// (the dir driver) is the filesystem holding [`Storage::root`], from statvfs.
    fn pool_usage(&self) -> Result<PoolUsage> {
        fsutil::statvfs_usage(self.root())
    }
    /// Writes a stream of snapshot `label` to `out`: the whole dataset, or the difference
    /// from snapshot `since` when given.
    fn send(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()>;
    /// Reads a stream made by [`Storage::send`] into snapshot `label` of `id` and makes the
    /// dataset's current state equal to it. A full stream needs `id` absent; an incremental one
    /// needs `id` to hold the stream's base snapshot. On failure nothing is left half-received.
    /// [`Storage::receive_staged`] then [`Storage::commit_staged`].
    fn receive(&self, id: &DatasetId, label: &str, input: &mut dyn std::io::Read) -> Result<()> {
        let staged = self.receive_staged(id, label, input)?;
        self.commit_staged(staged)
    }
    /// Reads a stream made by [`Storage::send`] for snapshot `label` of `id` into a hidden
    /// place, checking everything [`Storage::receive`] checks (the label is free; a full stream
    /// needs `id` absent, an incremental one needs `id` holding its base) but installing
    /// nothing: listings do not show it and `id` does not exist because of it. The stream must
    /// end properly (a reader error or a truncated stream fails the receive); on failure
    /// whatever was received is deleted.
    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged>;
    /// Installs a staged receive: the snapshot appears under its label and the dataset is
    /// created (full stream) or replaced by it (incremental), as [`Storage::receive`] does.
    /// Checks again that the label is free and that the dataset is absent (full) or present
    /// (incremental). On failure the staged stream is deleted and the dataset is as it was.
    fn commit_staged(&self, staged: Staged) -> Result<()>;
    /// Deletes a staged receive; the dataset is as it was before it was staged.
    fn abort_staged(&self, staged: Staged) -> Result<()>;
    /// Aborts `staged` after `error` and returns `error`, with a failed cleanup reported
    /// alongside it.
    fn discard_staged(&self, staged: Staged, error: StorageError) -> StorageError {
        let place = staged.place().to_string();
        match self.abort_staged(staged) {
            Ok(()) => error,
            Err(c) => StorageError::Other(format!(
                "{error} (and deleting the partly received {place} failed: {c})"
            )),
        }
    }
    /// Deletes staged receives nobody holds any more (left by a crash, or by a [`Staged`]
    /// dropped without commit or abort); returns what was deleted. Staged receives this process
    /// still holds, or is still receiving, are left alone. Run at start-up and periodically.
    fn sweep_staged(&self) -> Result<Vec<String>>;
}
