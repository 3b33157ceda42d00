//! The snapshot logic the btrfs and dir drivers share, over [`SnapDriver`]: the few primitives
//! in which they differ (deleting one snapshot, swapping a dataset's state for a snapshot's,
//! creating a dataset from a snapshot or another dataset). Both keep snapshots in
//! `snapshots/<dataset key>/<label>` with `<label>.json` beside (see [`crate::fsutil`]), so
//! looking a snapshot up, checking a new label, rollback, snapshot deletion and clones are the
//! same code for both.

use std::path::{Path, PathBuf};

use crate::fsutil::{
    check_dataset_id, check_label, exists, find_with_newer, list_snap_entries, snapshot_dir,
    snapshot_meta_path,
};
use crate::{DatasetId, Result, Storage, StorageError};

/// What a driver that keeps its snapshots in `snapshots/<key>/<label>` provides.
pub(crate) trait SnapDriver: Storage {
    /// Deletes one snapshot and its metadata (either may already be gone).
    fn delete_snapshot_at(&self, id: &DatasetId, label: &str) -> Result<()>;

    /// Makes the dataset's current state a writable copy of `src`, never losing the current
    /// state on failure. The dataset may be absent.
    fn replace_dataset(&self, id: &DatasetId, src: &Path) -> Result<()>;

    /// Creates the absent dataset at `to` (whose parent may be missing) from `from`.
    fn create_from(&self, from: &Path, to: &Path) -> Result<()>;

    /// The path of dataset `id`, which must exist.
    fn existing_dataset(&self, id: &DatasetId) -> Result<PathBuf> {
        check_dataset_id(id)?;
        let path = self.dataset_path(id);
        if !exists(&path) {
            return Err(StorageError::NoSuchDataset(id.key()));
        }
        Ok(path)
    }

    /// The snapshot `label` of `id`, which must exist.
    fn existing_snapshot(&self, id: &DatasetId, label: &str) -> Result<PathBuf> {
        check_label(label)?;
        let dir = snapshot_dir(self.root(), id);
        let path = dir.join(label);
        if exists(&path) {
            return Ok(path);
        }
        Err(StorageError::NoSuchSnapshot {
            dataset: id.key(),
            label: label.to_string(),
            existing: list_snap_entries(&dir)?
                .into_iter()
                .map(|e| e.label)
                .collect(),
        })
    }

    /// Checks that `label` is valid and not taken by a snapshot of `id` (or its metadata);
    /// returns the snapshot directory and the new snapshot's path in it.
    fn new_snapshot(&self, id: &DatasetId, label: &str) -> Result<(PathBuf, PathBuf)> {
        check_label(label)?;
        let dir = snapshot_dir(self.root(), id);
        let dst = dir.join(label);
        if exists(&dst) || exists(&snapshot_meta_path(&dir, label)) {
            return Err(StorageError::SnapshotExists {
                dataset: id.key(),
                label: label.to_string(),
            });
        }
        Ok((dir, dst))
    }
}

/// [`Storage::rollback`]: newer snapshots are refused unless `destroy_newer`, then deleted
/// (newest first) once the dataset holds the snapshot's state.
pub(crate) fn rollback<D: SnapDriver>(
    d: &D,
    id: &DatasetId,
    label: &str,
    destroy_newer: bool,
) -> Result<Vec<String>> {
    check_dataset_id(id)?;
    check_label(label)?;
    let entries = list_snap_entries(&snapshot_dir(d.root(), id))?;
    let (snap, newer) = find_with_newer(&entries, id, label)?;
    if !newer.is_empty() && !destroy_newer {
        return Err(StorageError::NewerSnapshots {
            dataset: id.key(),
            label: label.to_string(),
            newer,
        });
    }
    d.replace_dataset(id, &snap.path)?;
    for l in newer.iter().rev() {
        d.delete_snapshot_at(id, l)?;
    }
    Ok(newer)
}

/// [`Storage::delete_snapshot`]: the snapshot must exist.
pub(crate) fn delete_snapshot<D: SnapDriver>(d: &D, id: &DatasetId, label: &str) -> Result<()> {
    check_dataset_id(id)?;
    d.existing_snapshot(id, label)?;
    d.delete_snapshot_at(id, label)
}

/// [`Storage::clone_dataset`]: from snapshot `label` of `src`, or from `src` itself; `dst`
/// must be absent.
pub(crate) fn clone_dataset<D: SnapDriver>(
    d: &D,
    src: &DatasetId,
    label: Option<&str>,
    dst: &DatasetId,
) -> Result<()> {
    let from = match label {
        Some(l) => {
            check_dataset_id(src)?;
            d.existing_snapshot(src, l)?
        }
        None => d.existing_dataset(src)?,
    };
    check_dataset_id(dst)?;
    let to = d.dataset_path(dst);
    if exists(&to) {
        return Err(StorageError::Exists(to));
    }
    d.create_from(&from, &to)
}
