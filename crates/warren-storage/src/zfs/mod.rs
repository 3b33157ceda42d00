//! The ZFS dataset driver: every dataset is a ZFS filesystem under one parent dataset,
//! `<pool>/warren`, mounted at the driver root.
//!
//! Layout (dataset → mountpoint, each mountpoint set explicitly so the [`Storage`] path
//! defaults hold whatever the pool's own mountpoints are):
//! ```text
//! <pool>/warren                        <root>
//! <pool>/warren/worlds/<w>             <root>/worlds/<w>             read-only, @base
//! <pool>/warren/workloads/<n>          <root>/workloads/<n>          workload quota lives here
//! <pool>/warren/workloads/<n>/rootfs   <root>/workloads/<n>/rootfs   clone of <w>@base
//! <pool>/warren/workloads/<n>/data     <root>/workloads/<n>/data
//! <pool>/warren/volumes/<v>            <root>/volumes/<v>
//! ```
//!
//! - a world is sealed with `zfs set readonly=on` plus a `@base` snapshot; a world is listed
//!   once `@base` exists, and cannot be deleted while clones depend on it;
//! - a workload rootfs is `zfs clone` of `<world>@base`: constant time, sharing every block
//!   with the world until written;
//! - snapshots, rollback, clones, quotas (`quota`, so snapshots and children count) and
//!   `zfs send`/`zfs receive -s` streams work on every workload dataset and volume;
//! - a staged receive ([`Storage::receive_staged`]) of a full stream goes into a hidden
//!   `<pool>/warren/incoming-<unique>` dataset (unmounted, `canmount=noauto`) renamed into place
//!   on commit; an incremental one is received in place and aborted by rolling back to the
//!   snapshot that preceded it (see [`ZfsStorage::receive_staged_via`]);
//! - a clone of a dataset's current state (`label` None) goes through a snapshot
//!   `@warren-clone-<dst>` of the source, which stays as the clone's origin (`zfs promote` is
//!   not used, so the source keeps owning its blocks); a stale one is replaced next time;
//! - every mutating step that fails after an earlier step succeeded undoes that step (a failed
//!   seal destroys the world, a failed clone destroys the workload dataset it had to create),
//!   so nothing is left half-done; an undo that fails too is reported alongside the error.
//!
//! All commands are pure builders returning [`Cmd`] (`zfs ... -Hp` for machine-readable
//! output) run through the injected [`Executor`]; the two streams are spawned through it too
//! ([`pipe_out`], [`pipe_in`]) and fed or drained as they run. Parsers of `zfs list`,
//! `zfs get` and of error messages are pure functions. Nothing here is OS specific: the same
//! code drives OpenZFS on Linux and FreeBSD.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, Executor, Streams};

use crate::fsutil::{copy_large, remove_file_if_exists};
use crate::{DatasetId, DatasetInfo, Result, SnapshotInfo, Staged, Storage, StorageError};

/// The snapshot of a sealed world that workload root filesystems are cloned from.
pub const BASE_SNAPSHOT: &str = "base";
/// Prefix of the snapshot [`Storage::clone_dataset`] takes when given no label.
pub const CLONE_SNAPSHOT_PREFIX: &str = "warren-clone-";
/// Longest dataset or snapshot name ZFS accepts (`ZFS_MAX_DATASET_NAME_LEN - 1`).
pub const MAX_NAME_LEN: usize = 255;

// The driver is split by what each part knows: OpenZFS's messages (errors), its output
// (parsers), its command lines (commands), and the dataset operations built from them (driver).
mod commands;
mod driver;
mod errors;
mod parsers;
#[cfg(test)]
mod tests;

pub use commands::*;
pub use driver::*;
pub use errors::*;
pub use parsers::*;
