//! The btrfs dataset driver: every dataset is a subvolume under a root directory that lives on
//! a btrfs filesystem.
//!
//! - a world is a subvolume sealed with `btrfs property set -ts PATH ro true`;
//! - a workload rootfs is `btrfs subvolume snapshot WORLD ROOTFS`: writable, constant time,
//!   sharing every extent with the world until written;
//! - a workload's data is a plain subvolume (`btrfs subvolume create`), so it can be snapshotted
//!   and sent independently of the rootfs;
//! - deletes use `btrfs subvolume delete` (a world's read-only property is cleared first) and
//!   are idempotent.
//!
//! - a volume is a plain subvolume at `volumes/<name>`.
//!
//! Read-only state is read back with `btrfs property get -ts PATH ro`. All commands go through
//! the injected [`Executor`]; the two that stream (`btrfs send`, `btrfs receive`) are spawned
//! through it ([`Executor::spawn`]) and fed or drained as they run, so streams never sit in
//! memory.
//!
//! # Snapshots, rollback, clones
//! A snapshot is `btrfs subvolume snapshot -r DATASET snapshots/<key>/<label>` (constant time,
//! shares every extent) with `<label>.json` beside it recording the creation time and the
//! snapshot's subvolume id. A clone is a writable `btrfs subvolume snapshot` of a dataset or of
//! one of its snapshots, also constant time.
//!
//! A rollback never deletes the current state before the new one is in place: it makes a
//! writable snapshot of the label at `.<name>.new` beside the dataset, renames the dataset to
//! `.<name>.old`, renames `.<name>.new` into place, then deletes `.<name>.old`; only then are
//! newer snapshots deleted (when asked to). A failure before the swap deletes `.<name>.new` and
//! leaves everything as it was; a crash between the two renames is repaired by the next
//! rollback or receive of that dataset (the `.old` state is moved back first). The dataset's own
//! referenced limit and its workload quota group are carried over to the new subvolume.
//!
//! # Quotas
//! Quotas are btrfs qgroups, enabled on the filesystem (`btrfs quota enable`, then
//! `btrfs quota rescan -w` so the numbers are right) the first time a limit is set.
//! - [`Storage::set_quota`] limits the dataset's *referenced* bytes (`btrfs qgroup limit SIZE
//!   PATH`): its apparent size, the same number [`Storage::usage`] reports, unaffected by
//!   snapshots (like ZFS `refquota`).
//! - [`Storage::set_workload_quota`] makes a level-1 qgroup `1/<n>` per workload, `n` being the
//!   subvolume id of its data dataset when the group is first made (recorded in
//!   `workloads/<name>/qgroup`), assigns the rootfs and data subvolumes' qgroups to it and
//!   limits its *exclusive* bytes (`btrfs qgroup limit -e`). The snapshots of the rootfs and
//!   data join the group too (`btrfs subvolume snapshot -r -i 1/<n>`, and existing ones when
//!   the quota is set). Exclusive bytes of the group are those referenced by the workload's
//!   datasets and their snapshots and nothing else: what the workload wrote beyond its world,
//!   whose shared extents are not charged, including history its snapshots keep (like ZFS
//!   `quota`; leaving snapshots out would let every snapshot reset the count). Re-calling it
//!   after the rootfs was recreated swaps the stale member for the new one. Assigning a
//!   subvolume that shares extents with one outside the group (a rootfs shares its world) makes
//!   btrfs mark the accounting inconsistent, so membership changes are followed by
//!   `btrfs quota rescan -w` (a metadata walk); `qgroup show` output flagged inconsistent also
//!   triggers one, nothing else does.
//! - usage comes from `btrfs qgroup show --raw -pcre` ([`parse_qgroup_show`]); without quotas
//!   it falls back to `btrfs filesystem du -s --raw` ([`parse_filesystem_du`]), which walks the
//!   dataset.
//!
//! # Streams
//! [`Storage::send`] is `btrfs send [-p SINCE] SNAPSHOT`. [`Storage::receive_staged`] first
//! reads the stream header to learn whether it is full (`subvol` command: the dataset must be
//! absent) or incremental (`snapshot` command: the dataset must exist and hold the base
//! snapshot, which `btrfs receive` finds by its received UUID), then runs `btrfs receive` into
//! the dataset's snapshot directory under the hidden name `snapshots/<key>/.incoming-<unique>`
//! (written into the stream's first command), checking the stream's framing as it passes
//! ([`SendStreamCheck`]: `btrfs receive` accepts a stream cut at a command boundary as
//! complete, warren does not). Snapshot listings skip `.` names, so the staged subvolume is
//! invisible. While the stream is received, what it wrote is written back to disk every 64 MiB
//! (`syncfs` on a thread of its own), since the snapshot the commit takes would otherwise wait
//! for all of it at once. [`Storage::commit_staged`] renames it to `snapshots/<key>/<label>`
//! and makes the dataset a writable snapshot of it (replacing the current state as a rollback
//! does);
//! [`Storage::abort_staged`] deletes it, and [`Storage::sweep_staged`] deletes the ones nobody
//! holds. On any failure whatever was received is deleted and the dataset is untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, Executor};

use crate::fsutil::{
    check_dataset_id, check_name, create_dir_all, exists, io_err, list_snap_entries,
    remove_dir_if_empty, remove_empty_dirs_up_to, remove_file_if_exists, rename, snapshot_dir,
    snapshot_meta_path, stream_in, stream_out, subdirs, swap_names, unique_suffix, write_snap_meta,
    SnapEntry, SnapMeta, STAGED_PREFIX,
};
use crate::snapdir::{self, SnapDriver};
use crate::{DatasetId, DatasetInfo, Result, SnapshotInfo, Staged, Storage, StorageError};

mod driver;
mod parsers;
mod sendstream;
mod subvolumes;
#[cfg(test)]
mod tests;

pub use parsers::*;
pub use sendstream::*;
pub use subvolumes::*;
