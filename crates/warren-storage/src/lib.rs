//! Datasets: where every workload's bytes live.
//!
//! One trait, [`Storage`], with a btrfs driver ([`btrfs::BtrfsStorage`]) and a plain-directory
//! fallback ([`dir::DirStorage`]). [`pool`] prepares the embedded default (a sparse loop-backed
//! btrfs file in the state dir when the state dir itself is not on btrfs). [`worlds`] builds the
//! base systems (`host`, `busybox`) that workload root filesystems are snapshots of.
//!
//! Layout under the driver's root:
//! ```text
//! worlds/<world>            read-only dataset (btrfs: read-only subvolume)
//! worlds/<world>.json       world metadata (bind mounts from the host, default command)
//! worlds/<world>.sealed     dir driver only: the world is complete and read-only by contract
//! workloads/<name>/rootfs   writable snapshot of the world
//! workloads/<name>/data     persistent data, survives recreate
//! ```
//!
//! Portability: the btrfs driver and the loop-backed pool are Linux-only (statfs magic, loop
//! devices, `mount -o loop`); elsewhere [`pool::open_storage`] refuses them with
//! [`StorageError::Unsupported`] and only the dir driver is available. Parsers stay portable.

pub mod btrfs;
pub mod dir;
pub mod ephemeral;
mod fsutil;
pub mod pool;
pub mod worlds;

use std::path::{Path, PathBuf};

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

/// One dataset as listed by a driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetInfo {
    /// e.g. `worlds/host`, `workloads/web/rootfs`, `workloads/web/data`
    pub name: String,
    pub path: PathBuf,
    pub readonly: bool,
}

/// A dataset driver. Paths returned are on the host and usable directly as bind sources.
pub trait Storage: Send + Sync {
    /// `"btrfs"` or `"dir"`.
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
}
