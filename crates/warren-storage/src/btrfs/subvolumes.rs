//! [`BtrfsStorage`] and its subvolume operations: creating, snapshotting, deleting and
//! sealing subvolumes, qgroups, the staged receive's framing checks and write-back
//! (`Flusher`), and the snapshot directory bookkeeping ([`SnapDriver`]).

use super::*;

/// Subvolume-backed datasets under `root`.
pub struct BtrfsStorage {
    pub(super) root: PathBuf,
    pub(super) exec: Arc<dyn Executor>,
}

impl BtrfsStorage {
    /// `root` must be a directory on a btrfs filesystem; `worlds/` and `workloads/` are created
    /// under it on demand.
    pub fn new(root: PathBuf, exec: Arc<dyn Executor>) -> Self {
        BtrfsStorage { root, exec }
    }

    fn btrfs<const N: usize>(&self, args: [&str; N], path: &Path) -> Result<String> {
        let cmd = Cmd::new("btrfs").args(args).arg(path);
        Ok(self.exec.run(&cmd)?.stdout_str())
    }

    pub(super) fn btrfs2(&self, args: &[&str], from: &Path, to: &Path) -> Result<()> {
        let cmd = Cmd::new("btrfs").args(args).arg(from).arg(to);
        self.exec.run(&cmd)?;
        Ok(())
    }

    pub(super) fn create_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "create"], path).map(drop)
    }

    pub(super) fn delete_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "delete"], path).map(drop)
    }

    pub(super) fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()> {
        let value = if readonly { "true" } else { "false" };
        let cmd = Cmd::new("btrfs")
            .args(["property", "set", "-ts"])
            .arg(path)
            .args(["ro", value]);
        self.exec.run(&cmd)?;
        Ok(())
    }

    pub(super) fn is_readonly(&self, path: &Path) -> Result<bool> {
        let cmd = Cmd::new("btrfs")
            .args(["property", "get", "-ts"])
            .arg(path)
            .arg("ro");
        let out = self.exec.run(&cmd)?.stdout_str();
        parse_ro_property(&out).ok_or_else(|| {
            StorageError::Other(format!(
                "unexpected output of `btrfs property get -ts {} ro`: {out:?}",
                path.display()
            ))
        })
    }

    pub(super) fn info(&self, name: String, path: PathBuf) -> Result<DatasetInfo> {
        let readonly = self.is_readonly(&path)?;
        Ok(DatasetInfo {
            name,
            path,
            readonly,
        })
    }

    pub(super) fn run(&self, cmd: Cmd) -> Result<warren_exec::Output> {
        Ok(self.exec.run(&cmd)?)
    }

    /// `btrfs <args> ROOT`: the filesystem-wide commands (quota, qgroup create/assign/limit).
    pub(super) fn on_root(&self, args: &[&str]) -> Result<warren_exec::Output> {
        self.run(Cmd::new("btrfs").args(args).arg(&self.root))
    }

    /// The subvolume id of the subvolume at `path`.
    pub(super) fn subvol_id(&self, path: &Path) -> Result<u64> {
        let out = self.btrfs(["inspect-internal", "rootid"], path)?;
        out.trim().parse().map_err(|_| {
            StorageError::Other(format!(
                "unexpected output of `btrfs inspect-internal rootid {}`: {out:?}",
                path.display()
            ))
        })
    }

    /// Every qgroup of the filesystem, or None when quotas are not enabled. Inconsistent
    /// numbers (btrfs warns on stderr) are rescanned once before being returned.
    pub(super) fn qgroups(&self) -> Result<Option<Vec<Qgroup>>> {
        self.qgroups_with(&[])
    }

    /// [`Self::qgroups`] after committing the running transaction (`--sync`): qgroup numbers
    /// are only updated at commit, so this is what usage reports use.
    pub(super) fn qgroups_synced(&self) -> Result<Option<Vec<Qgroup>>> {
        self.qgroups_with(&["--sync"])
    }

    fn qgroups_with(&self, extra: &[&str]) -> Result<Option<Vec<Qgroup>>> {
        let mut args = vec!["qgroup", "show", "--raw", "-pcre"];
        args.extend_from_slice(extra);
        let show = || self.on_root(&args);
        let out = match show() {
            Ok(out) => out,
            Err(StorageError::Exec(e)) if quotas_disabled(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let out = if String::from_utf8_lossy(&out.stderr).contains("inconsistent") {
            self.on_root(&["quota", "rescan", "-w"])?;
            show()?
        } else {
            out
        };
        parse_qgroup_show(&out.stdout_str())
            .map(Some)
            .map_err(StorageError::Other)
    }

    /// Enables quotas (once; later calls find them enabled) and returns the qgroups.
    pub(super) fn ensure_quotas(&self) -> Result<Vec<Qgroup>> {
        if let Some(groups) = self.qgroups()? {
            return Ok(groups);
        }
        self.on_root(&["quota", "enable"])?;
        self.on_root(&["quota", "rescan", "-w"])?;
        self.qgroups()?.ok_or_else(|| {
            StorageError::Other(format!(
                "quotas on {} are still disabled after `btrfs quota enable`",
                self.root.display()
            ))
        })
    }

    pub(super) fn group_file(&self, workload: &str) -> PathBuf {
        self.root.join("workloads").join(workload).join("qgroup")
    }

    /// The workload's level-1 qgroup (`1/<n>`), if one was made.
    pub(super) fn workload_group(&self, workload: &str) -> Result<Option<String>> {
        let path = self.group_file(workload);
        match std::fs::read_to_string(&path) {
            Ok(s) => {
                let g = s.trim().to_string();
                if parse_qgroup_id(&g).is_none_or(|(level, _)| level != 1) {
                    return Err(StorageError::Other(format!(
                        "{}: expected a level-1 qgroup id like 1/256, found {g:?}",
                        path.display()
                    )));
                }
                Ok(Some(g))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Destroys the workload's quota group once neither its rootfs nor its data exists.
    pub(super) fn drop_workload_group_if_unused(&self, workload: &str) -> Result<()> {
        let Some(group) = self.workload_group(workload)? else {
            return Ok(());
        };
        if exists(&self.rootfs_path(workload)) || exists(&self.data_path(workload)) {
            return Ok(());
        }
        if let Some(groups) = self.qgroups()? {
            if let Some(g) = groups.iter().find(|q| q.id == group) {
                // Deleted subvolumes keep their qgroup (and its relations) until the cleaner
                // has dropped them; a group with members cannot be destroyed.
                for child in &g.children {
                    self.on_root(&["qgroup", "remove", "--no-rescan", child, &group])?;
                }
                self.on_root(&["qgroup", "destroy", &group])?;
            }
        }
        remove_file_if_exists(&self.group_file(workload))
    }

    /// The referenced limit of the subvolume at `path`, when quotas are enabled and one is set.
    fn referenced_limit(&self, path: &Path) -> Result<Option<u64>> {
        let Some(groups) = self.qgroups()? else {
            return Ok(None);
        };
        let id = format!("0/{}", self.subvol_id(path)?);
        Ok(groups
            .iter()
            .find(|q| q.id == id)
            .and_then(|q| q.max_referenced))
    }

    /// Deletes every snapshot of a dataset (and any leftover temp entry), newest first.
    pub(super) fn delete_snapshots_of(&self, id: &DatasetId) -> Result<()> {
        let dir = snapshot_dir(&self.root, id);
        let entries = list_snap_entries(&dir)?;
        for e in entries.iter().rev() {
            self.delete_snapshot_at(id, &e.label)?;
        }
        for leftover in subdirs(&dir)? {
            self.delete_subvolume(&dir.join(leftover))?;
        }
        if exists(&dir) {
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let path = entry.map_err(io_err(&dir))?.path();
                remove_file_if_exists(&path)?;
            }
        }
        remove_empty_dirs_up_to(&dir, &self.root)
    }

    /// Repairs what a crash in the middle of [`Self::replace_dataset`] can leave beside `path`:
    /// `.new` is deleted; `.old` is moved back if the dataset is missing, else deleted.
    pub(super) fn recover_swap(&self, path: &Path, new: &Path, old: &Path) -> Result<()> {
        if exists(new) {
            self.delete_subvolume(new)?;
        }
        if exists(old) {
            if exists(path) {
                self.delete_subvolume(old)?;
            } else {
                rename(old, path)?;
            }
        }
        Ok(())
    }

    /// `btrfs receive DIR` with framing checks: the stream's subvolume appears as
    /// `DIR/<name>` (its first command was rewritten to that name).
    pub(super) fn receive_into(
        &self,
        dir: &Path,
        head: &[u8],
        check: &mut SendStreamCheck,
        input: &mut dyn std::io::Read,
    ) -> Result<()> {
        // The head was already fed to the checker while looking for the first command.
        let mut first = true;
        let flusher = Flusher::start(dir);
        let mut watch = |bytes: &[u8]| {
            flusher.passed(bytes.len());
            if std::mem::take(&mut first) {
                return Ok(());
            }
            check.feed(bytes)
        };
        let cmd = Cmd::new("btrfs").arg("receive").arg(dir);
        let received = stream_in(&*self.exec, &cmd, head, input, &mut watch);
        drop(flusher);
        received?;
        check
            .finish()
            .map_err(|e| StorageError::Other(format!("refusing the received stream: {e}")))
    }
}

/// Writes back what a receive wrote while it runs (`syncfs` every [`Flusher::EVERY`] bytes of
/// stream, on a thread of its own), instead of all of it at once when the received subvolume
/// is snapshotted: a snapshot waits for every dirty page of its source, and the receive
/// leaves gigabytes of them for a big stream, so the disk would otherwise idle during the
/// receive and the commit would wait for it afterwards.
struct Flusher {
    wake: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    passed: std::cell::Cell<usize>,
}

impl Flusher {
    const EVERY: usize = 64 << 20;

    fn start(dir: &Path) -> Flusher {
        let (wake, woken) = std::sync::mpsc::sync_channel::<()>(1);
        let fd = std::fs::File::open(dir).ok();
        let thread = std::thread::Builder::new()
            .name("btrfs-flush".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    if let Some(fd) = &fd {
                        syncfs(fd);
                    }
                }
            })
            .ok();
        Flusher {
            wake: Some(wake),
            thread,
            passed: std::cell::Cell::new(0),
        }
    }

    /// Counts stream bytes; wakes the thread (unless it is still busy) every [`Self::EVERY`].
    fn passed(&self, n: usize) {
        let total = self.passed.get() + n;
        self.passed.set(total);
        if total / Self::EVERY != (total - n) / Self::EVERY {
            if let Some(w) = &self.wake {
                let _ = w.try_send(());
            }
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `syncfs(2)`: starts writeback of the filesystem holding `fd` and waits for it (Linux; a
/// no-op elsewhere, where the btrfs driver does not run).
fn syncfs(fd: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own; its result only tells whether writeback
        // failed, which the snapshot's own flush reports.
        unsafe {
            libc::syncfs(fd.as_raw_fd());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// The root directory of every btrfs subvolume has inode number 256.
pub(super) fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.symlink_metadata()
        .map(|m| m.is_dir() && m.ino() == 256)
        .unwrap_or(false)
}

fn quotas_disabled(e: &ExecError) -> bool {
    let err = e.stderr();
    err.contains("not enabled") || err.contains("quotas not enabled")
}
impl SnapDriver for BtrfsStorage {
    /// Deletes one snapshot subvolume and its metadata.
    fn delete_snapshot_at(&self, id: &DatasetId, label: &str) -> Result<()> {
        let dir = snapshot_dir(&self.root, id);
        let path = dir.join(label);
        if exists(&path) {
            self.delete_subvolume(&path)?;
        }
        remove_file_if_exists(&snapshot_meta_path(&dir, label))?;
        remove_empty_dirs_up_to(&dir, &self.root)
    }

    /// Makes the dataset a writable snapshot of `src` without ever losing the current state
    /// on failure (see the module docs). The dataset may be absent.
    fn replace_dataset(&self, id: &DatasetId, src: &Path) -> Result<()> {
        let path = self.dataset_path(id);
        let (new, old) = swap_names(&path);
        self.recover_swap(&path, &new, &old)?;
        create_dir_all(path.parent().expect("dataset has a parent"))?;
        let group = match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => self.workload_group(w)?,
            DatasetId::Volume(_) => None,
        };
        let limit = if exists(&path) {
            self.referenced_limit(&path)?
        } else {
            None
        };
        let mut snap = Cmd::new("btrfs").args(["subvolume", "snapshot"]);
        if let Some(g) = &group {
            snap = snap.args(["-i", g.as_str()]);
        }
        self.run(snap.arg(src).arg(&new))?;
        let prepared = (|| {
            if let Some(bytes) = limit {
                self.btrfs2(&["qgroup", "limit"], Path::new(&bytes.to_string()), &new)?;
            }
            if group.is_some() {
                // Rescans when the new member made the accounting inconsistent.
                self.qgroups()?;
            }
            Ok(())
        })();
        if let Err(e) = prepared {
            let _ = self.delete_subvolume(&new);
            return Err(e);
        }
        if !exists(&path) {
            return rename(&new, &path).inspect_err(|_| {
                let _ = self.delete_subvolume(&new);
            });
        }
        if let Err(e) = rename(&path, &old) {
            let _ = self.delete_subvolume(&new);
            return Err(e);
        }
        if let Err(e) = rename(&new, &path) {
            let _ = rename(&old, &path);
            let _ = self.delete_subvolume(&new);
            return Err(e);
        }
        self.delete_subvolume(&old).map_err(|e| {
            StorageError::Other(format!(
                "{} now holds the new state, but its previous state at {} could not be \
                 deleted (the next rollback of it retries): {e}",
                path.display(),
                old.display()
            ))
        })
    }

    fn create_from(&self, from: &Path, to: &Path) -> Result<()> {
        create_dir_all(to.parent().expect("dataset has a parent"))?;
        self.btrfs2(&["subvolume", "snapshot"], from, to)
    }
}
impl BtrfsStorage {
    /// Deletes a staged receive (a subvolume, or whatever a crash left under its name) and
    /// the snapshot directories it leaves empty; absent is fine.
    pub(super) fn delete_staged(&self, path: &Path) -> Result<()> {
        if is_subvolume(path) {
            self.delete_subvolume(path)?;
        } else if exists(path) {
            std::fs::remove_dir_all(path).map_err(io_err(path))?;
        }
        remove_empty_dirs_up_to(path.parent().expect("staged has a parent"), &self.root)
    }
}

impl BtrfsStorage {
    /// `btrfs filesystem du -s --raw PATH`: (total, exclusive) bytes, walking the tree.
    pub(super) fn filesystem_du(&self, path: &Path) -> Result<(u64, u64)> {
        let out = self.btrfs(["filesystem", "du", "-s", "--raw"], path)?;
        parse_filesystem_du(&out).map_err(StorageError::Other)
    }
}

pub(super) fn write_group_file(path: &Path, group: &str) -> Result<()> {
    crate::fsutil::write_file(path, format!("{group}\n").as_bytes(), 0o644)
}
