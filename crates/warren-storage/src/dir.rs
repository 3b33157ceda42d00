//! The plain-directory dataset driver, for hosts without btrfs (or when asked for explicitly).
//!
//! Same layout as the btrfs driver, with ordinary directories:
//!
//! - a workload rootfs is a full copy of its world, `cp -a --reflink=auto WORLD ROOTFS`. That is
//!   O(size of the world) in time and (unless the filesystem supports reflinks) in space; the
//!   `host` and `busybox` worlds are a few MiB, so this stays cheap for them (`--reflink` is
//!   GNU cp's; elsewhere the copy is a plain `cp -a`);
//! - sealing a world writes a marker file `worlds/<world>.sealed` next to (outside) the world
//!   directory. This is bookkeeping, not enforcement: a plain directory cannot be made
//!   read-only against root, and warren itself never writes into a sealed world. The marker is
//!   what makes [`Storage::list_worlds`] report the world as complete and
//!   [`DatasetInfo::readonly`] true;
//! - deletes are recursive removals that refuse to run while anything is mounted at or below
//!   the dataset (they would otherwise descend into, and delete, the mounted filesystem);
//! - a volume is a directory at `volumes/<name>`.
//!
//! # Snapshots, rollback, clones
//! Everything is a copy, O(size of the dataset) in time and, without reflinks, in space:
//! - a snapshot is `cp -a --reflink=auto DATASET snapshots/<key>/.<label>.partial`, renamed to
//!   `<label>` once complete, with `<label>.json` (creation time) beside it. It is read-only by
//!   contract only, like a sealed world;
//! - a rollback copies the snapshot to `.<name>.new` beside the dataset, renames the dataset to
//!   `.<name>.old`, renames the copy into place and removes the old tree; a failed copy leaves
//!   the dataset as it was. Newer snapshots are refused or, when asked, deleted afterwards;
//! - a clone copies into `.<name>.new` beside the destination and renames it into place.
//!
//! # Quotas and usage
//! Plain directories cannot enforce a size limit, so [`Storage::set_quota`] and
//! [`Storage::set_workload_quota`] return [`StorageError::Unsupported`]. Usage is the sum of the
//! file sizes in the tree (hard links once); for a workload that includes its full copy of the
//! world, since a copy cannot tell world bytes from written ones.
//!
//! # Streams
//! [`Storage::send`] writes a tar of the snapshot (`tar --numeric-owner -C SNAPSHOT -cf - .`).
//! Incremental streams are refused with [`StorageError::Unsupported`]: a copy has no record of
//! what changed, and guessing from modification times would miss deletions and same-second
//! edits. [`Storage::receive_staged`] unpacks the stream as it arrives into
//! `snapshots/.incoming-<unique>/tree` with warren-image's plain-tree unpacker
//! ([`warren_image::unpack_tree`]: no absolute paths, no `..`, nothing written below a symlink,
//! no hard link or relative symlink leading outside the tree, no device nodes, no whiteout
//! processing, a truncated archive refused; nothing outside the tree is ever touched), and
//! removes the partial tree when the stream is refused.
//! [`Storage::commit_staged`] moves the tree to `snapshots/<key>/<label>` and copies it to the
//! dataset, which must be absent; [`Storage::abort_staged`] and [`Storage::sweep_staged`]
//! remove the `.incoming-` directory. On failure nothing received is left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, Executor};

use crate::fsutil::{
    check_dataset_id, check_name, create_dir_all, exists, io_err, list_snap_entries,
    refuse_if_mounted, remove_dir_if_empty, remove_empty_dirs_up_to, remove_file_if_exists, rename,
    snapshot_dir, snapshot_meta_path, stream_out, subdirs, swap_names, tree_bytes, unique_suffix,
    write_file, write_snap_meta, SnapMeta, STAGED_PREFIX,
};
use crate::snapdir::{self, SnapDriver};
use crate::{DatasetId, DatasetInfo, Result, SnapshotInfo, Staged, Storage, StorageError};

/// Options of the `cp` that copies a world into a rootfs.
#[cfg(target_os = "linux")]
const CP_OPTIONS: &[&str] = &["-a", "--reflink=auto"];
#[cfg(not(target_os = "linux"))]
const CP_OPTIONS: &[&str] = &["-a"];

/// Directory-backed datasets under `root`.
pub struct DirStorage {
    root: PathBuf,
    exec: Arc<dyn Executor>,
}

impl DirStorage {
    /// `worlds/` and `workloads/` are created under `root` on demand.
    pub fn new(root: PathBuf, exec: Arc<dyn Executor>) -> Self {
        DirStorage { root, exec }
    }

    fn seal_marker(&self, world: &str) -> PathBuf {
        self.root.join("worlds").join(format!("{world}.sealed"))
    }

    fn is_sealed(&self, world: &str) -> bool {
        exists(&self.seal_marker(world))
    }

    fn remove_tree(&self, path: &Path) -> Result<()> {
        if !exists(path) {
            return Ok(());
        }
        refuse_if_mounted(path)?;
        std::fs::remove_dir_all(path).map_err(io_err(path))
    }

    /// `cp -a [--reflink=auto] FROM TO`; a partial copy is removed on failure.
    fn copy(&self, from: &Path, to: &Path) -> Result<()> {
        let cp = Cmd::new("cp").args(CP_OPTIONS).arg(from).arg(to);
        if let Err(e) = self.exec.run(&cp) {
            let _ = self.remove_tree(to);
            return Err(e.into());
        }
        Ok(())
    }

    /// Copies `from` to a temp name beside `to`, then renames it into place: `to` never holds
    /// a partial copy. `to` must not exist.
    fn copy_into_place(&self, from: &Path, to: &Path) -> Result<()> {
        let (new, _) = swap_names(to);
        self.remove_tree(&new)?;
        create_dir_all(to.parent().expect("dataset has a parent"))?;
        self.copy(from, &new)?;
        rename(&new, to).inspect_err(|_| {
            let _ = self.remove_tree(&new);
        })
    }

    /// Deletes a dataset's snapshots, metadata and leftover temp copies.
    fn delete_snapshots_of(&self, id: &DatasetId) -> Result<()> {
        let dir = snapshot_dir(&self.root, id);
        if !exists(&dir) {
            return Ok(());
        }
        for name in subdirs(&dir)? {
            self.remove_tree(&dir.join(name))?;
        }
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            remove_file_if_exists(&entry.map_err(io_err(&dir))?.path())?;
        }
        remove_empty_dirs_up_to(&dir, &self.root)
    }

    /// Repairs a crash between the renames of a swap (see [`Self::replace_dataset`]).
    fn recover_swap(&self, path: &Path) -> Result<()> {
        let (new, old) = swap_names(path);
        self.remove_tree(&new)?;
        if exists(&old) {
            if exists(path) {
                self.remove_tree(&old)?;
            } else {
                rename(&old, path)?;
            }
        }
        Ok(())
    }

    /// Unpacks a tar stream into `incoming/tree` as it arrives (the caller removes `incoming`
    /// on error).
    fn extract_into(&self, incoming: &Path, input: &mut dyn std::io::Read) -> Result<PathBuf> {
        let tree = incoming.join("tree");
        std::fs::create_dir(&tree).map_err(io_err(&tree))?;
        let input = std::io::BufReader::with_capacity(1 << 20, input);
        warren_image::unpack_tree(&tree, input, &warren_image::TreeOptions::default())
            .map_err(|e| unpack_error(&tree, e))?;
        Ok(tree)
    }
}

impl SnapDriver for DirStorage {
    fn delete_snapshot_at(&self, id: &DatasetId, label: &str) -> Result<()> {
        let dir = snapshot_dir(&self.root, id);
        self.remove_tree(&dir.join(label))?;
        remove_file_if_exists(&snapshot_meta_path(&dir, label))?;
        remove_empty_dirs_up_to(&dir, &self.root)
    }

    /// Makes the dataset a copy of `src`, never losing the current state on failure.
    fn replace_dataset(&self, id: &DatasetId, src: &Path) -> Result<()> {
        let path = self.dataset_path(id);
        self.recover_swap(&path)?;
        if !exists(&path) {
            return self.copy_into_place(src, &path);
        }
        refuse_if_mounted(&path)?;
        let (new, old) = swap_names(&path);
        self.copy(src, &new)?;
        if let Err(e) = rename(&path, &old) {
            let _ = self.remove_tree(&new);
            return Err(e);
        }
        if let Err(e) = rename(&new, &path) {
            let _ = rename(&old, &path);
            let _ = self.remove_tree(&new);
            return Err(e);
        }
        self.remove_tree(&old)
    }

    fn create_from(&self, from: &Path, to: &Path) -> Result<()> {
        self.copy_into_place(from, to)
    }
}

impl Storage for DirStorage {
    fn driver(&self) -> &'static str {
        "dir"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create_world_dataset(&self, world: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        create_dir_all(&self.root.join("worlds"))?;
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(path)
    }

    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        check_name("world", parent)?;
        let from = self.world_path(parent);
        if !exists(&from) || !self.is_sealed(parent) {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        let cp = Cmd::new("cp").args(CP_OPTIONS).arg(&from).arg(&path);
        if let Err(e) = self.exec.run(&cp) {
            let _ = self.remove_tree(&path);
            return Err(e.into());
        }
        Ok(path)
    }

    fn seal_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        if !exists(&self.world_path(world)) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        write_file(&self.seal_marker(world), b"", 0o444)
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        // Unseal first so a half-removed world is never listed as complete.
        remove_file_if_exists(&self.seal_marker(world))?;
        self.remove_tree(&self.world_path(world))?;
        remove_file_if_exists(&self.world_meta_path(world))
    }

    fn list_worlds(&self) -> Result<Vec<String>> {
        let worlds = subdirs(&self.root.join("worlds"))?;
        Ok(worlds.into_iter().filter(|w| self.is_sealed(w)).collect())
    }

    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        check_name("world", world)?;
        let world_path = self.world_path(world);
        if !exists(&world_path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.delete_rootfs(workload)?;
        let rootfs = self.rootfs_path(workload);
        create_dir_all(rootfs.parent().expect("rootfs has a parent"))?;
        let cp = Cmd::new("cp")
            .args(CP_OPTIONS)
            .arg(&world_path)
            .arg(&rootfs);
        if let Err(e) = self.exec.run(&cp) {
            // Never leave a partial copy behind; the copy error is the one worth reporting.
            let _ = self.remove_tree(&rootfs);
            return Err(e.into());
        }
        Ok(rootfs)
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Rootfs(workload.to_string()))?;
        self.remove_tree(&self.rootfs_path(workload))
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        create_dir_all(&data)?;
        Ok(data)
    }

    fn delete_data(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Data(workload.to_string()))?;
        self.remove_tree(&self.data_path(workload))?;
        remove_dir_if_empty(&self.root.join("workloads").join(workload))
    }

    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let mut out = Vec::new();
        for world in subdirs(&self.root.join("worlds"))? {
            out.push(DatasetInfo {
                name: format!("worlds/{world}"),
                path: self.world_path(&world),
                readonly: self.is_sealed(&world),
            });
        }
        for workload in subdirs(&self.root.join("workloads"))? {
            for (kind, path) in [
                ("rootfs", self.rootfs_path(&workload)),
                ("data", self.data_path(&workload)),
            ] {
                if exists(&path) {
                    out.push(DatasetInfo {
                        name: format!("workloads/{workload}/{kind}"),
                        path,
                        readonly: false,
                    });
                }
            }
        }
        for volume in self.list_volumes()? {
            let id = DatasetId::Volume(volume);
            out.push(DatasetInfo {
                name: id.key(),
                path: self.dataset_path(&id),
                readonly: false,
            });
        }
        Ok(out)
    }

    fn ensure_volume(&self, name: &str) -> Result<PathBuf> {
        check_name("volume", name)?;
        let path = self.dataset_path(&DatasetId::Volume(name.to_string()));
        create_dir_all(&path)?;
        Ok(path)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        check_name("volume", name)?;
        let id = DatasetId::Volume(name.to_string());
        self.delete_snapshots_of(&id)?;
        let path = self.dataset_path(&id);
        self.recover_swap(&path)?;
        self.remove_tree(&path)
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        let names = subdirs(&self.root.join("volumes"))?;
        Ok(names.into_iter().filter(|n| !n.starts_with('.')).collect())
    }

    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo> {
        let src = self.existing_dataset(id)?;
        let (dir, dst) = self.new_snapshot(id, label)?;
        let partial = dir.join(format!(".{label}.partial"));
        self.remove_tree(&partial)?;
        create_dir_all(&dir)?;
        self.copy(&src, &partial)?;
        let meta = SnapMeta::now(None);
        let done = rename(&partial, &dst).and_then(|()| write_snap_meta(&dir, label, &meta));
        if let Err(e) = done {
            let _ = self.remove_tree(&partial);
            let _ = self.remove_tree(&dst);
            return Err(e);
        }
        Ok(SnapshotInfo {
            dataset: id.key(),
            label: label.to_string(),
            created_at: meta.created_at,
            bytes: None,
        })
    }

    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>> {
        check_dataset_id(id)?;
        let entries = list_snap_entries(&snapshot_dir(&self.root, id))?;
        Ok(entries.iter().map(|e| e.info(id, None)).collect())
    }

    fn rollback(&self, id: &DatasetId, label: &str, destroy_newer: bool) -> Result<Vec<String>> {
        snapdir::rollback(self, id, label, destroy_newer)
    }

    fn delete_snapshot(&self, id: &DatasetId, label: &str) -> Result<()> {
        snapdir::delete_snapshot(self, id, label)
    }

    fn clone_dataset(&self, src: &DatasetId, label: Option<&str>, dst: &DatasetId) -> Result<()> {
        snapdir::clone_dataset(self, src, label, dst)
    }

    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> Result<()> {
        check_dataset_id(id)?;
        let _ = bytes;
        Err(no_quotas())
    }

    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()> {
        check_name("workload", workload)?;
        let _ = bytes;
        Err(no_quotas())
    }

    fn workload_usage(&self, workload: &str) -> Result<(u64, Option<u64>)> {
        check_name("workload", workload)?;
        let paths: Vec<PathBuf> = [self.rootfs_path(workload), self.data_path(workload)]
            .into_iter()
            .filter(|p| exists(p))
            .collect();
        if paths.is_empty() {
            return Err(StorageError::NoSuchDataset(format!("workloads/{workload}")));
        }
        let mut sum = 0;
        for p in &paths {
            sum += tree_bytes(p)?;
        }
        Ok((sum, None))
    }

    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)> {
        let path = self.existing_dataset(id)?;
        Ok((tree_bytes(&path)?, None))
    }

    fn send(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        check_dataset_id(id)?;
        let snap = self.existing_snapshot(id, label)?;
        if let Some(since) = since {
            self.existing_snapshot(id, since)?;
            return Err(StorageError::Unsupported(format!(
                "the dir driver cannot send incremental streams (from {since:?} to {label:?}): \
                 plain directories keep no record of what changed; send the full snapshot \
                 or use the btrfs driver"
            )));
        }
        let cmd = Cmd::new("tar")
            .args(["--numeric-owner", "-C"])
            .arg(&snap)
            .args(["-cf", "-", "."]);
        stream_out(&*self.exec, &cmd, out)
    }

    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged> {
        check_dataset_id(id)?;
        self.new_snapshot(id, label)?;
        full_only(id, exists(&self.dataset_path(id)))?;
        let incoming = self
            .root
            .join("snapshots")
            .join(format!("{STAGED_PREFIX}{}", unique_suffix()));
        let staged = Staged::new(id, label, incoming.to_string_lossy().into_owned());
        match create_dir_all(&incoming).and_then(|()| self.extract_into(&incoming, input)) {
            Ok(_) => Ok(staged),
            Err(e) => Err(self.discard_staged(staged, e)),
        }
    }

    fn commit_staged(&self, staged: Staged) -> Result<()> {
        let id = staged.id().clone();
        let label = staged.label().to_string();
        let incoming = PathBuf::from(staged.place());
        let dataset = self.dataset_path(&id);
        let moved = self
            .new_snapshot(&id, &label)
            .and_then(|v| full_only(&id, exists(&dataset)).map(|()| v))
            .and_then(|(dir, dst)| {
                create_dir_all(&dir)?;
                rename(&incoming.join("tree"), &dst)?;
                Ok((dir, dst))
            });
        let (dir, dst) = match moved {
            Ok(v) => v,
            Err(e) => return Err(self.discard_staged(staged, e)),
        };
        let installed = self
            .delete_staged(&incoming)
            .and_then(|()| write_snap_meta(&dir, &label, &SnapMeta::now(None)))
            .and_then(|()| self.copy_into_place(&dst, &dataset));
        if let Err(e) = installed {
            let _ = self.remove_tree(&dst);
            let _ = remove_file_if_exists(&snapshot_meta_path(&dir, &label));
            let _ = remove_empty_dirs_up_to(&dir, &self.root);
            return Err(e);
        }
        Ok(())
    }

    fn abort_staged(&self, staged: Staged) -> Result<()> {
        self.delete_staged(Path::new(staged.place()))
    }

    fn sweep_staged(&self) -> Result<Vec<String>> {
        crate::fsutil::sweep_staged_under(&self.root, |p| self.delete_staged(p))
    }
}

/// The dir driver receives full streams only, into an absent dataset.
fn full_only(id: &DatasetId, exists: bool) -> Result<()> {
    if exists {
        return Err(StorageError::Other(format!(
            "the dir driver receives full streams only, which need dataset {} to be \
             absent, and it exists (delete it first)",
            id.key()
        )));
    }
    Ok(())
}

impl DirStorage {
    /// Deletes a staged receive and the snapshot directories it leaves empty.
    fn delete_staged(&self, path: &Path) -> Result<()> {
        self.remove_tree(path)?;
        remove_empty_dirs_up_to(path.parent().expect("staged has a parent"), &self.root)
    }
}

fn no_quotas() -> StorageError {
    StorageError::Unsupported(
        "the dir driver cannot enforce quotas: plain directories have no size limit \
         (use the btrfs driver for quotas)"
            .into(),
    )
}

/// A refused or failed unpack as a storage error: a write that failed (a full disk) keeps its
/// I/O error; anything the stream itself is to blame for is a refusal naming the entry.
fn unpack_error(tree: &Path, e: warren_image::ImageError) -> StorageError {
    use warren_image::{EntryProblem, ImageError};
    match e {
        ImageError::Entry {
            entry,
            problem: EntryProblem::Io { source, .. },
            ..
        } => StorageError::Io {
            path: tree.join(entry),
            source,
        },
        ImageError::Target { path, source } => StorageError::Io { path, source },
        ImageError::BadLayer { source, .. } => {
            StorageError::Other(format!("refusing the stream: {source}"))
        }
        other => StorageError::Other(format!("refusing the stream: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    /// A `cp` that copies part of the tree, then fails like a full disk.
    struct HalfCopy(std::sync::Mutex<Vec<String>>);

    impl Executor for HalfCopy {
        fn run(&self, cmd: &Cmd) -> Result<warren_exec::Output, warren_exec::ExecError> {
            self.0.lock().unwrap().push(cmd.argv_string());
            let dst = Path::new(cmd.args.last().unwrap());
            std::fs::create_dir_all(dst.join("bin")).unwrap();
            std::fs::write(dst.join("bin/partial"), "x").unwrap();
            Err(warren_exec::ExecError::Failed {
                argv: cmd.argv_string(),
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: "No space left on device".into(),
            })
        }

        fn spawn(
            &self,
            cmd: &Cmd,
            _: warren_exec::Streams,
        ) -> Result<Box<dyn warren_exec::Process>, warren_exec::ExecError> {
            panic!("unexpected spawn: {}", cmd.argv_string())
        }
    }

    #[test]
    fn failed_copy_leaves_no_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let exec = Arc::new(HalfCopy(Default::default()));
        let s = DirStorage::new(t.path().to_path_buf(), exec.clone());
        let w = s.create_world_dataset("busybox").unwrap();
        let r = s.rootfs_path("web");
        let err = s.create_rootfs("web", "busybox").unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert!(!r.exists());
        assert_eq!(
            *exec.0.lock().unwrap(),
            vec![format!(
                "cp {} {} {}",
                CP_OPTIONS.join(" "),
                w.display(),
                r.display()
            )]
        );
    }

    fn header(name: &str, kind: u8, link: &str, size: usize) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        h
    }

    fn member(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
        let mut m = header(name, kind, link, data.len());
        m.extend_from_slice(data);
        m.resize(m.len().div_ceil(512) * 512, 0);
        m
    }

    fn archive(members: &[Vec<u8>]) -> Vec<u8> {
        let mut a: Vec<u8> = members.concat();
        a.extend_from_slice(&[0u8; 1024]);
        a
    }

    /// Receives `a` as a staged full stream; the staged tree, or the error as text. Nothing of
    /// a refused stream is left behind.
    fn check(a: &[u8]) -> std::result::Result<PathBuf, String> {
        let t = tempfile::tempdir().unwrap();
        let s = DirStorage::new(t.path().to_path_buf(), Arc::new(RecordingExecutor::new()));
        let id = DatasetId::Volume("site".into());
        match s.receive_staged(&id, "s1", &mut &a[..]) {
            Ok(staged) => {
                let tree = Path::new(staged.place()).join("tree");
                let keep = t.keep().join("kept");
                std::fs::rename(&tree, &keep).unwrap();
                Ok(keep)
            }
            Err(e) => {
                let snaps = t.path().join("snapshots");
                let left: Vec<_> = std::fs::read_dir(&snaps)
                    .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
                    .unwrap_or_default();
                assert!(left.is_empty(), "left behind: {left:?}");
                Err(e.to_string())
            }
        }
    }

    #[test]
    fn tar_check_accepts_ordinary_trees() {
        let a = archive(&[
            member("./", b'5', "", b""),
            member("./etc/", b'5', "", b""),
            member("./etc/passwd", b'0', "", b"root:x:0:0"),
            member("./bin/sh", b'2', "/bin/busybox", b""),
            member("./bin/ash", b'2', "sh", b""),
            member("./etc/up", b'2', "../bin/sh", b""),
            member("./etc/hard", b'1', "./etc/passwd", b""),
            member("./etc/.wh.passwd", b'0', "", b"not a whiteout"),
        ]);
        let tree = check(&a).unwrap();
        assert_eq!(std::fs::read(tree.join("etc/hard")).unwrap(), b"root:x:0:0");
        assert_eq!(
            std::fs::read(tree.join("etc/.wh.passwd")).unwrap(),
            b"not a whiteout"
        );
        assert!(tree.join("etc/passwd").exists());
        assert_eq!(
            std::fs::read_link(tree.join("bin/ash")).unwrap(),
            Path::new("sh")
        );
        std::fs::remove_dir_all(tree.parent().unwrap()).unwrap();
    }

    #[test]
    fn tar_check_refuses_escapes_and_truncation() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                archive(&[member("/etc/passwd", b'0', "", b"x")]),
                "absolute",
            ),
            (archive(&[member("a/../../x", b'0', "", b"x")]), ".."),
            (
                archive(&[member("up", b'2', "../../etc", b"")]),
                "outside the archive",
            ),
            (
                archive(&[
                    member("link", b'2', "/etc", b""),
                    member("link/passwd", b'0', "", b"x"),
                ]),
                "below the symlink",
            ),
            (archive(&[member("h", b'1', "/etc/shadow", b"")]), "outside"),
            (archive(&[member("h", b'1', "../x", b"")]), ".."),
            (archive(&[member("dev/sda", b'4', "", b"")]), "device"),
            (
                archive(&[
                    member("././@LongLink", b'L', "", b"../../long\0"),
                    member("short", b'0', "", b"x"),
                ]),
                "..",
            ),
            (
                archive(&[
                    member("pax", b'x', "", b"21 path=/etc/shadowx\n"),
                    member("short", b'0', "", b"x"),
                ]),
                "absolute",
            ),
        ];
        for (a, want) in cases {
            let err = check(&a).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want:?})");
        }
        let good = archive(&[member("f", b'0', "", &[1u8; 2000])]);
        for cut in [100, 512, 1024, 2048] {
            let err = check(&good[..cut]).unwrap_err();
            assert!(err.contains("truncated"), "cut {cut}: {err}");
        }
        let mut bad = good.clone();
        bad[0] = b'g';
        assert!(check(&bad).unwrap_err().contains("checksum"));
    }

    #[test]
    fn seal_is_a_marker_outside_the_world() {
        let t = tempfile::tempdir().unwrap();
        let s = DirStorage::new(t.path().to_path_buf(), Arc::new(RecordingExecutor::new()));
        s.create_world_dataset("host").unwrap();
        assert!(s.list_worlds().unwrap().is_empty());
        s.seal_world("host").unwrap();
        assert_eq!(s.list_worlds().unwrap(), vec!["host".to_string()]);
        assert!(t.path().join("worlds/host.sealed").exists());
        assert!(std::fs::read_dir(s.world_path("host"))
            .unwrap()
            .next()
            .is_none());
        s.delete_world("host").unwrap();
        s.delete_world("host").unwrap();
        assert!(std::fs::read_dir(t.path().join("worlds"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn send_spawns_tar_through_the_executor() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = DirStorage::new(t.path().to_path_buf(), rec.clone());
        let id = DatasetId::Volume("site".into());
        let dir = snapshot_dir(s.root(), &id);
        std::fs::create_dir_all(dir.join("nightly")).unwrap();
        write_snap_meta(&dir, "nightly", &SnapMeta::now(None)).unwrap();
        rec.expect_spawn(
            &format!(
                "tar --numeric-owner -C {} -cf - .",
                dir.join("nightly").display()
            ),
            b"TAR STREAM",
            Ok(()),
        );
        let mut out = Vec::new();
        s.send(&id, "nightly", None, &mut out).unwrap();
        assert_eq!(out, b"TAR STREAM");
        rec.finish();
    }
}
