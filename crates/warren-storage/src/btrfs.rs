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
//! the injected [`Executor`], except the two that stream (`btrfs send`, `btrfs receive`), which
//! are spawned with [`warren_exec::std_command`] (same hygiene) so streams never sit in memory.
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

/// Subvolume-backed datasets under `root`.
pub struct BtrfsStorage {
    root: PathBuf,
    exec: Arc<dyn Executor>,
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

    fn btrfs2(&self, args: &[&str], from: &Path, to: &Path) -> Result<()> {
        let cmd = Cmd::new("btrfs").args(args).arg(from).arg(to);
        self.exec.run(&cmd)?;
        Ok(())
    }

    fn create_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "create"], path).map(drop)
    }

    fn delete_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "delete"], path).map(drop)
    }

    fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()> {
        let value = if readonly { "true" } else { "false" };
        let cmd = Cmd::new("btrfs")
            .args(["property", "set", "-ts"])
            .arg(path)
            .args(["ro", value]);
        self.exec.run(&cmd)?;
        Ok(())
    }

    fn is_readonly(&self, path: &Path) -> Result<bool> {
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

    fn info(&self, name: String, path: PathBuf) -> Result<DatasetInfo> {
        let readonly = self.is_readonly(&path)?;
        Ok(DatasetInfo {
            name,
            path,
            readonly,
        })
    }

    fn run(&self, cmd: Cmd) -> Result<warren_exec::Output> {
        Ok(self.exec.run(&cmd)?)
    }

    /// `btrfs <args> ROOT`: the filesystem-wide commands (quota, qgroup create/assign/limit).
    fn on_root(&self, args: &[&str]) -> Result<warren_exec::Output> {
        self.run(Cmd::new("btrfs").args(args).arg(&self.root))
    }

    /// The subvolume id of the subvolume at `path`.
    fn subvol_id(&self, path: &Path) -> Result<u64> {
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
    fn qgroups(&self) -> Result<Option<Vec<Qgroup>>> {
        self.qgroups_with(&[])
    }

    /// [`Self::qgroups`] after committing the running transaction (`--sync`): qgroup numbers
    /// are only updated at commit, so this is what usage reports use.
    fn qgroups_synced(&self) -> Result<Option<Vec<Qgroup>>> {
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
    fn ensure_quotas(&self) -> Result<Vec<Qgroup>> {
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

    fn group_file(&self, workload: &str) -> PathBuf {
        self.root.join("workloads").join(workload).join("qgroup")
    }

    /// The workload's level-1 qgroup (`1/<n>`), if one was made.
    fn workload_group(&self, workload: &str) -> Result<Option<String>> {
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
    fn drop_workload_group_if_unused(&self, workload: &str) -> Result<()> {
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
    fn delete_snapshots_of(&self, id: &DatasetId) -> Result<()> {
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
    fn recover_swap(&self, path: &Path, new: &Path, old: &Path) -> Result<()> {
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
    fn receive_into(
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
        let args = [std::ffi::OsStr::new("receive"), dir.as_os_str()];
        let received = stream_in("btrfs", &args, head, input, &mut watch);
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
fn is_subvolume(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    path.symlink_metadata()
        .map(|m| m.is_dir() && m.ino() == 256)
        .unwrap_or(false)
}

fn quotas_disabled(e: &ExecError) -> bool {
    let err = e.stderr();
    err.contains("not enabled") || err.contains("quotas not enabled")
}

/// One row of `btrfs qgroup show --raw -pcre`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qgroup {
    /// `<level>/<id>`, e.g. `0/256` (a subvolume) or `1/256` (a group).
    pub id: String,
    pub referenced: u64,
    pub exclusive: u64,
    pub max_referenced: Option<u64>,
    pub max_exclusive: Option<u64>,
    pub parents: Vec<String>,
    pub children: Vec<String>,
}

/// Splits `1/256` into (1, 256).
pub fn parse_qgroup_id(s: &str) -> Option<(u64, u64)> {
    let (level, id) = s.split_once('/')?;
    Some((level.parse().ok()?, id.parse().ok()?))
}

/// Parses `btrfs qgroup show --raw -pcre` (columns: qgroupid, referenced, exclusive, max
/// referenced, max exclusive, parents, children, then an optional path that may hold spaces).
/// Header, ruler and warning lines are skipped.
pub fn parse_qgroup_show(out: &str) -> std::result::Result<Vec<Qgroup>, String> {
    let mut groups = Vec::new();
    for line in out.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(first) = fields.first() else {
            continue;
        };
        if parse_qgroup_id(first).is_none() {
            continue; // header, ruler, WARNING
        }
        if fields.len() < 7 {
            return Err(format!(
                "unexpected line in `btrfs qgroup show --raw -pcre` output: {line:?}"
            ));
        }
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("bad number {s:?} in qgroup line {line:?}"))
        };
        let limit = |s: &str| match s {
            "none" | "-" => Ok(None),
            _ => num(s).map(Some),
        };
        let list = |s: &str| -> Vec<String> {
            if s == "-" {
                Vec::new()
            } else {
                s.split(',').map(str::to_string).collect()
            }
        };
        groups.push(Qgroup {
            id: first.to_string(),
            referenced: num(fields[1])?,
            exclusive: num(fields[2])?,
            max_referenced: limit(fields[3])?,
            max_exclusive: limit(fields[4])?,
            parents: list(fields[5]),
            children: list(fields[6]),
        });
    }
    Ok(groups)
}

/// Parses `btrfs filesystem du -s --raw PATH` into (total, exclusive) bytes.
pub fn parse_filesystem_du(out: &str) -> std::result::Result<(u64, u64), String> {
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 {
            if let (Ok(total), Ok(excl)) = (f[0].parse(), f[1].parse()) {
                return Ok((total, excl));
            }
        }
    }
    Err(format!(
        "unexpected output of `btrfs filesystem du -s --raw`: {out:?}"
    ))
}

/// The `path` attribute of send stream commands.
const SEND_ATTR_PATH: u16 = 15;

/// Rewrites the `path` attribute of the first command of a send stream (`head` holds at least
/// the header and that whole command) to `name`, fixing the command's length and crc32c.
pub fn rewrite_first_path(head: &[u8], name: &str) -> std::result::Result<Vec<u8>, String> {
    let short = || "the stream is too short for its first command".to_string();
    let cmd_hdr = head.get(17..27).ok_or_else(short)?;
    let len = u32::from_le_bytes(cmd_hdr[0..4].try_into().unwrap()) as usize;
    let cmd = u16::from_le_bytes(cmd_hdr[4..6].try_into().unwrap());
    let body = head.get(27..27 + len).ok_or_else(short)?;
    let mut new_body = Vec::with_capacity(len + name.len());
    let mut rest = body;
    let mut found = false;
    while !rest.is_empty() {
        let (t, l) = match rest {
            [a, b, c, d, ..] => (u16::from_le_bytes([*a, *b]), u16::from_le_bytes([*c, *d])),
            _ => return Err("corrupt attribute in the first command".into()),
        };
        let value = rest
            .get(4..4 + l as usize)
            .ok_or("corrupt attribute in the first command")?;
        if t == SEND_ATTR_PATH {
            let n = u16::try_from(name.len()).map_err(|_| "name too long".to_string())?;
            new_body.extend_from_slice(&t.to_le_bytes());
            new_body.extend_from_slice(&n.to_le_bytes());
            new_body.extend_from_slice(name.as_bytes());
            found = true;
        } else {
            new_body.extend_from_slice(&rest[..4]);
            new_body.extend_from_slice(value);
        }
        rest = &rest[4 + l as usize..];
    }
    if !found {
        return Err("the first command names no subvolume".into());
    }
    let mut command = Vec::with_capacity(10 + new_body.len());
    command.extend_from_slice(&(new_body.len() as u32).to_le_bytes());
    command.extend_from_slice(&cmd.to_le_bytes());
    command.extend_from_slice(&[0; 4]);
    command.extend_from_slice(&new_body);
    let crc = crc32c(0, &command);
    command[6..10].copy_from_slice(&crc.to_le_bytes());
    let mut out = Vec::with_capacity(head.len() + name.len());
    out.extend_from_slice(&head[..17]);
    out.extend_from_slice(&command);
    out.extend_from_slice(&head[27 + len..]);
    Ok(out)
}

/// CRC-32C (Castagnoli) without the usual pre- and post-inversion, as btrfs send computes it
/// (seed 0).
pub fn crc32c(seed: u32, data: &[u8]) -> u32 {
    let mut crc = seed;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// `btrfs-stream\0`, the first bytes of every send stream.
const SEND_MAGIC: &[u8; 13] = b"btrfs-stream\0";
/// Send stream commands warren looks at.
pub const SEND_CMD_SUBVOL: u16 = 1;
pub const SEND_CMD_SNAPSHOT: u16 = 2;
pub const SEND_CMD_END: u16 = 21;

/// Follows the framing of a btrfs send stream as it passes: a 17-byte header (magic and a
/// version), then commands of a 10-byte header (length, command, crc) and `length` bytes. It
/// tells whether the stream is full or incremental (its first command) and whether it ended
/// properly (an `end` command, then nothing).
#[derive(Debug, Default, Clone)]
pub struct SendStreamCheck {
    head: Vec<u8>,
    cmd: Vec<u8>,
    body_left: u64,
    first: Option<u16>,
    current: Option<u16>,
    commands: u64,
    ended: bool,
}

impl SendStreamCheck {
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream's first command, once its header has passed.
    pub fn first_command(&self) -> Option<u16> {
        self.first
    }

    /// True once the first command has passed entirely.
    pub fn first_command_complete(&self) -> bool {
        self.commands > 0
    }

    pub fn feed(&mut self, mut bytes: &[u8]) -> std::result::Result<(), String> {
        while !bytes.is_empty() {
            if self.head.len() < 17 {
                let n = (17 - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                let have = self.head.len().min(13);
                if self.head[..have] != SEND_MAGIC[..have] {
                    return Err("not a btrfs send stream (bad magic)".into());
                }
                if self.head.len() == 17 {
                    let version = u32::from_le_bytes(self.head[13..17].try_into().unwrap());
                    if !(1..=3).contains(&version) {
                        return Err(format!("unsupported btrfs send stream version {version}"));
                    }
                }
                continue;
            }
            if self.ended {
                return Err("data after the end of the btrfs send stream".into());
            }
            if self.body_left > 0 {
                let n = (self.body_left.min(bytes.len() as u64)) as usize;
                self.body_left -= n as u64;
                bytes = &bytes[n..];
                if self.body_left == 0 {
                    self.command_done();
                }
                continue;
            }
            let n = (10 - self.cmd.len()).min(bytes.len());
            self.cmd.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.cmd.len() == 10 {
                let len = u32::from_le_bytes(self.cmd[0..4].try_into().unwrap());
                let cmd = u16::from_le_bytes(self.cmd[4..6].try_into().unwrap());
                self.cmd.clear();
                self.first.get_or_insert(cmd);
                self.current = Some(cmd);
                self.body_left = len.into();
                if len == 0 {
                    self.command_done();
                }
            }
        }
        Ok(())
    }

    fn command_done(&mut self) {
        self.commands += 1;
        if self.current.take() == Some(SEND_CMD_END) {
            self.ended = true;
        }
    }

    /// Ok when the stream ended with its `end` command and nothing was cut.
    pub fn finish(&self) -> std::result::Result<(), String> {
        if self.head.len() < 17 {
            return Err("the stream ended inside its header (truncated)".into());
        }
        if !self.ended {
            return Err("the stream is truncated: it stopped before its end command".into());
        }
        Ok(())
    }
}

/// Parses the `ro=true` / `ro=false` line that `btrfs property get -ts PATH` prints.
pub fn parse_ro_property(out: &str) -> Option<bool> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("ro="))
        .and_then(|v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
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

impl Storage for BtrfsStorage {
    fn driver(&self) -> &'static str {
        "btrfs"
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
        self.create_subvolume(&path)?;
        Ok(path)
    }

    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        check_name("world", parent)?;
        let from = self.world_path(parent);
        if !exists(&from) || !self.is_readonly(&from)? {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        // A snapshot without -r is writable even though its source is read-only.
        self.btrfs2(&["subvolume", "snapshot"], &from, &path)?;
        Ok(path)
    }

    fn seal_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if !exists(&path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.set_readonly(&path, true)
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            self.set_readonly(&path, false)?;
            self.delete_subvolume(&path)?;
        }
        remove_file_if_exists(&self.world_meta_path(world))
    }

    fn list_worlds(&self) -> Result<Vec<String>> {
        let mut sealed = Vec::new();
        for name in subdirs(&self.root.join("worlds"))? {
            if self.is_readonly(&self.world_path(&name))? {
                sealed.push(name);
            }
        }
        Ok(sealed)
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
        self.btrfs2(&["subvolume", "snapshot"], &world_path, &rootfs)?;
        Ok(rootfs)
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Rootfs(workload.to_string()))?;
        let rootfs = self.rootfs_path(workload);
        if exists(&rootfs) {
            self.delete_subvolume(&rootfs)?;
        }
        self.drop_workload_group_if_unused(workload)
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if !exists(&data) {
            create_dir_all(data.parent().expect("data has a parent"))?;
            self.create_subvolume(&data)?;
        }
        Ok(data)
    }

    fn delete_data(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Data(workload.to_string()))?;
        let data = self.data_path(workload);
        if exists(&data) {
            self.delete_subvolume(&data)?;
        }
        self.drop_workload_group_if_unused(workload)?;
        remove_dir_if_empty(&self.root.join("workloads").join(workload))
    }

    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let mut out = Vec::new();
        for world in subdirs(&self.root.join("worlds"))? {
            out.push(self.info(format!("worlds/{world}"), self.world_path(&world))?);
        }
        for workload in subdirs(&self.root.join("workloads"))? {
            for (kind, path) in [
                ("rootfs", self.rootfs_path(&workload)),
                ("data", self.data_path(&workload)),
            ] {
                if exists(&path) {
                    out.push(self.info(format!("workloads/{workload}/{kind}"), path)?);
                }
            }
        }
        for volume in self.list_volumes()? {
            let id = DatasetId::Volume(volume);
            out.push(self.info(id.key(), self.dataset_path(&id))?);
        }
        Ok(out)
    }

    fn ensure_volume(&self, name: &str) -> Result<PathBuf> {
        check_name("volume", name)?;
        let path = self.dataset_path(&DatasetId::Volume(name.to_string()));
        if !exists(&path) {
            create_dir_all(&self.root.join("volumes"))?;
            self.create_subvolume(&path)?;
        }
        Ok(path)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        check_name("volume", name)?;
        let id = DatasetId::Volume(name.to_string());
        self.delete_snapshots_of(&id)?;
        let path = self.dataset_path(&id);
        let (new, old) = swap_names(&path);
        self.recover_swap(&path, &new, &old)?;
        if exists(&path) {
            self.delete_subvolume(&path)?;
        }
        Ok(())
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        let names = subdirs(&self.root.join("volumes"))?;
        Ok(names.into_iter().filter(|n| !n.starts_with('.')).collect())
    }

    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo> {
        let src = self.existing_dataset(id)?;
        let (dir, dst) = self.new_snapshot(id, label)?;
        create_dir_all(&dir)?;
        let group = match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => self.workload_group(w)?,
            DatasetId::Volume(_) => None,
        };
        let mut cmd = Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]);
        if let Some(g) = &group {
            // Snapshots of a workload stay charged to it (see the module docs).
            cmd = cmd.args(["-i", g.as_str()]);
        }
        // The metadata (creation time) is written before the snapshot appears, so a listing
        // running concurrently never sees a snapshot without its time.
        let provisional = SnapMeta::now(None);
        write_snap_meta(&dir, label, &provisional)?;
        if let Err(e) = self.run(cmd.arg(&src).arg(&dst)) {
            let _ = remove_file_if_exists(&snapshot_meta_path(&dir, label));
            return Err(e);
        }
        let recorded = self.subvol_id(&dst).and_then(|sid| {
            let meta = SnapMeta {
                subvol_id: Some(sid),
                ..provisional
            };
            write_snap_meta(&dir, label, &meta).map(|()| meta)
        });
        match recorded {
            Ok(meta) => Ok(SnapEntry {
                label: label.to_string(),
                path: dst,
                meta,
            }
            .info(id, None)),
            Err(e) => {
                let _ = self.delete_subvolume(&dst);
                let _ = remove_file_if_exists(&snapshot_meta_path(&dir, label));
                Err(e)
            }
        }
    }

    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>> {
        check_dataset_id(id)?;
        let entries = list_snap_entries(&snapshot_dir(&self.root, id))?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.qgroups_synced()?;
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let bytes = match &groups {
                None => None,
                Some(groups) => {
                    let sid = match e.meta.subvol_id {
                        Some(sid) => sid,
                        None => self.subvol_id(&e.path)?,
                    };
                    let qid = format!("0/{sid}");
                    groups.iter().find(|q| q.id == qid).map(|q| q.exclusive)
                }
            };
            out.push(e.info(id, bytes));
        }
        Ok(out)
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
        let path = self.existing_dataset(id)?;
        match bytes {
            Some(bytes) => {
                self.ensure_quotas()?;
                self.btrfs2(&["qgroup", "limit"], Path::new(&bytes.to_string()), &path)
            }
            None if self.qgroups()?.is_some() => {
                self.btrfs2(&["qgroup", "limit"], Path::new("none"), &path)
            }
            None => Ok(()),
        }
    }

    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if !exists(&data) {
            return Err(StorageError::NoSuchDataset(
                DatasetId::Data(workload.to_string()).key(),
            ));
        }
        let Some(bytes) = bytes else {
            if let Some(group) = self.workload_group(workload)? {
                if self.qgroups()?.is_some() {
                    self.on_root(&["qgroup", "limit", "-e", "none", &group])?;
                }
            }
            return Ok(());
        };
        let groups = self.ensure_quotas()?;
        let data_id = self.subvol_id(&data)?;
        let group = match self.workload_group(workload)? {
            Some(g) => g,
            None => format!("1/{data_id}"),
        };
        let mut want = vec![format!("0/{data_id}")];
        let rootfs = self.rootfs_path(workload);
        if exists(&rootfs) {
            want.push(format!("0/{}", self.subvol_id(&rootfs)?));
        }
        for id in [
            DatasetId::Rootfs(workload.to_string()),
            DatasetId::Data(workload.to_string()),
        ] {
            for e in list_snap_entries(&snapshot_dir(&self.root, &id))? {
                let sid = match e.meta.subvol_id {
                    Some(sid) => sid,
                    None => self.subvol_id(&e.path)?,
                };
                want.push(format!("0/{sid}"));
            }
        }
        let have = match groups.iter().find(|q| q.id == group) {
            Some(g) => g.children.clone(),
            None => {
                self.on_root(&["qgroup", "create", &group])?;
                Vec::new()
            }
        };
        write_group_file(&self.group_file(workload), &group)?;
        let mut changed = false;
        for stale in have.iter().filter(|c| !want.contains(c)) {
            self.on_root(&["qgroup", "remove", "--no-rescan", stale, &group])?;
            changed = true;
        }
        for member in want.iter().filter(|c| !have.contains(c)) {
            self.on_root(&["qgroup", "assign", "--no-rescan", member, &group])?;
            changed = true;
        }
        if changed {
            self.on_root(&["quota", "rescan", "-w"])?;
        }
        self.on_root(&["qgroup", "limit", "-e", &bytes.to_string(), &group])
            .map(drop)
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
        let Some(groups) = self.qgroups_synced()? else {
            let mut sum = 0;
            for p in &paths {
                sum += self.filesystem_du(p)?.1;
            }
            return Ok((sum, None));
        };
        if let Some(group) = self.workload_group(workload)? {
            if let Some(g) = groups.iter().find(|q| q.id == group) {
                return Ok((g.exclusive, g.max_exclusive));
            }
        }
        let mut sum = 0;
        for p in &paths {
            let qid = format!("0/{}", self.subvol_id(p)?);
            sum += groups
                .iter()
                .find(|q| q.id == qid)
                .map_or(0, |q| q.exclusive);
        }
        Ok((sum, None))
    }

    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)> {
        let path = self.existing_dataset(id)?;
        let Some(groups) = self.qgroups_synced()? else {
            return Ok((self.filesystem_du(&path)?.0, None));
        };
        let qid = format!("0/{}", self.subvol_id(&path)?);
        match groups.iter().find(|q| q.id == qid) {
            Some(q) => Ok((q.referenced, q.max_referenced)),
            None => Err(StorageError::Other(format!(
                "btrfs has no qgroup {qid} for {}",
                path.display()
            ))),
        }
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
        let parent = since.map(|s| self.existing_snapshot(id, s)).transpose()?;
        let mut args = vec![std::ffi::OsStr::new("send")];
        if let Some(p) = &parent {
            args.push(std::ffi::OsStr::new("-p"));
            args.push(p.as_os_str());
        }
        args.push(snap.as_os_str());
        stream_out("btrfs", &args, out)
    }

    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged> {
        check_dataset_id(id)?;
        let (dir, _) = self.new_snapshot(id, label)?;
        // Read the whole first command: full or incremental decides what must exist, and
        // it names the subvolume btrfs receive will create.
        let mut check = SendStreamCheck::new();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !check.first_command_complete() {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::Other(format!("reading the stream: {e}"))),
            };
            check
                .feed(&buf[..n])
                .map_err(|e| StorageError::Other(format!("refusing the stream: {e}")))?;
            head.extend_from_slice(&buf[..n]);
        }
        let incremental = match check.first_command() {
            _ if !check.first_command_complete() => {
                return Err(StorageError::Other(
                    "refusing the stream: it ended before its first command (truncated)".into(),
                ))
            }
            Some(SEND_CMD_SUBVOL) => false,
            Some(SEND_CMD_SNAPSHOT) => true,
            other => {
                return Err(StorageError::Other(format!(
                    "refusing the stream: it starts with command {other:?}, not a subvolume"
                )))
            }
        };
        stream_fits(id, incremental, exists(&self.dataset_path(id)))?;
        // btrfs receive names the subvolume after the sender's snapshot, and a read-only
        // subvolume cannot be moved to another directory afterwards. So the stream is received
        // into the snapshot directory itself under a hidden temp name (written into its first
        // command), renamed to the label within that directory on commit.
        let incoming_name = format!("{STAGED_PREFIX}{}", unique_suffix());
        let head = rewrite_first_path(&head, &incoming_name)
            .map_err(|e| StorageError::Other(format!("refusing the stream: {e}")))?;
        let incoming = dir.join(&incoming_name);
        let mut staged = Staged::new(id, label, incoming.to_string_lossy().into_owned());
        staged.set_incremental(incremental);
        let received = create_dir_all(&dir)
            .and_then(|()| self.receive_into(&dir, &head, &mut check, input))
            .and_then(|()| {
                if is_subvolume(&incoming) {
                    Ok(())
                } else {
                    Err(StorageError::Other(format!(
                        "btrfs receive did not create {}",
                        incoming.display()
                    )))
                }
            });
        match received {
            Ok(()) => Ok(staged),
            Err(e) => Err(self.discard_staged(staged, e)),
        }
    }

    fn commit_staged(&self, staged: Staged) -> Result<()> {
        let id = staged.id().clone();
        let label = staged.label().to_string();
        let incoming = PathBuf::from(staged.place());
        let dataset = self.dataset_path(&id);
        let (dir, dst) = match self
            .new_snapshot(&id, &label)
            .and_then(|v| stream_fits(&id, staged.incremental(), exists(&dataset)).map(|()| v))
        {
            Ok(v) => v,
            Err(e) => return Err(self.discard_staged(staged, e)),
        };
        if let Err(e) = rename(&incoming, &dst) {
            return Err(self.discard_staged(staged, e));
        }
        let installed = (|| {
            let meta = SnapMeta::now(Some(self.subvol_id(&dst)?));
            write_snap_meta(&dir, &label, &meta)?;
            if staged.incremental() {
                self.replace_dataset(&id, &dst)
            } else {
                create_dir_all(dataset.parent().expect("dataset has a parent"))?;
                self.btrfs2(&["subvolume", "snapshot"], &dst, &dataset)
            }
        })();
        if let Err(e) = installed {
            let _ = self.delete_subvolume(&dst);
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

/// Whether a stream may be received into `id`: a full one needs it absent, an incremental one
/// present (holding the base snapshot, which `btrfs receive` checks).
fn stream_fits(id: &DatasetId, incremental: bool, exists: bool) -> Result<()> {
    if incremental && !exists {
        return Err(StorageError::Other(format!(
            "an incremental stream needs dataset {} holding its base snapshot; it does \
             not exist (receive the full stream first)",
            id.key()
        )));
    }
    if !incremental && exists {
        return Err(StorageError::Other(format!(
            "a full stream needs dataset {} to be absent, and it exists (delete it, or \
             send an incremental stream)",
            id.key()
        )));
    }
    Ok(())
}

impl BtrfsStorage {
    /// Deletes a staged receive (a subvolume, or whatever a crash left under its name) and
    /// the snapshot directories it leaves empty; absent is fine.
    fn delete_staged(&self, path: &Path) -> Result<()> {
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
    fn filesystem_du(&self, path: &Path) -> Result<(u64, u64)> {
        let out = self.btrfs(["filesystem", "du", "-s", "--raw"], path)?;
        parse_filesystem_du(&out).map_err(StorageError::Other)
    }
}

fn write_group_file(path: &Path, group: &str) -> Result<()> {
    crate::fsutil::write_file(path, format!("{group}\n").as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    fn setup() -> (tempfile::TempDir, Arc<RecordingExecutor>, BtrfsStorage) {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        (t, rec, s)
    }

    /// The recording fake plus the filesystem side effects of the subvolume commands, so the
    /// driver's renames and existence checks see what real btrfs would have left.
    struct FakeBtrfs(RecordingExecutor);

    impl Executor for FakeBtrfs {
        fn run(&self, cmd: &Cmd) -> Result<warren_exec::Output, ExecError> {
            let out = self.0.run(cmd)?;
            let args: Vec<String> = cmd
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let last = Path::new(args.last().unwrap());
            match (
                args.first().map(String::as_str),
                args.get(1).map(String::as_str),
            ) {
                (Some("subvolume"), Some("snapshot" | "create")) => {
                    std::fs::create_dir_all(last).unwrap()
                }
                (Some("subvolume"), Some("delete")) => std::fs::remove_dir_all(last).unwrap(),
                _ => {}
            }
            Ok(out)
        }
    }

    fn fake() -> (tempfile::TempDir, Arc<FakeBtrfs>, BtrfsStorage) {
        let t = tempfile::tempdir().unwrap();
        let exec = Arc::new(FakeBtrfs(RecordingExecutor::new()));
        let s = BtrfsStorage::new(t.path().to_path_buf(), exec.clone());
        (t, exec, s)
    }

    const NO_QUOTAS: &str = "ERROR: can't list qgroups: quotas not enabled";

    fn p(path: &Path) -> String {
        path.display().to_string()
    }

    /// Makes snapshot `label` of `id` by hand, `age` seconds after the epoch.
    fn fake_snapshot(s: &BtrfsStorage, id: &DatasetId, label: &str, age: u64, file: &str) {
        let dir = snapshot_dir(s.root(), id);
        std::fs::create_dir_all(dir.join(label)).unwrap();
        std::fs::write(dir.join(label).join("file"), file).unwrap();
        let meta = SnapMeta {
            created_at: age,
            created_ns: age * 1_000_000_000,
            subvol_id: Some(300 + age),
        };
        write_snap_meta(&dir, label, &meta).unwrap();
    }

    #[test]
    fn snapshot_commands_and_metadata() {
        let (t, exec, s) = fake();
        let id = DatasetId::Data("web".into());
        assert!(matches!(
            s.snapshot(&id, "nightly"),
            Err(StorageError::NoSuchDataset(k)) if k == "workloads/web/data"
        ));
        let data = t.path().join("workloads/web/data");
        std::fs::create_dir_all(&data).unwrap();
        assert!(matches!(
            s.snapshot(&id, "../x"),
            Err(StorageError::InvalidLabel(_))
        ));
        let snap = t.path().join("snapshots/workloads/web/data/nightly");
        exec.0
            .expect_ok(
                &format!("btrfs subvolume snapshot -r {} {}", p(&data), p(&snap)),
                "",
            )
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&snap)),
                "258\n",
            );
        let info = s.snapshot(&id, "nightly").unwrap();
        assert_eq!(info.dataset, "workloads/web/data");
        assert_eq!(info.bytes, None);
        let meta: SnapMeta = serde_json::from_slice(
            &std::fs::read(t.path().join("snapshots/workloads/web/data/nightly.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(meta.subvol_id, Some(258));
        assert_eq!(meta.created_at, info.created_at);
        assert!(matches!(
            s.snapshot(&id, "nightly"),
            Err(StorageError::SnapshotExists { .. })
        ));
        // Listing asks qgroups for sizes (none without quotas).
        exec.0.expect_err(
            &format!("btrfs qgroup show --raw -pcre --sync {}", p(t.path())),
            NO_QUOTAS,
        );
        let list = s.snapshots(&id).unwrap();
        assert_eq!(list, vec![info]);
        exec.0.finish();
    }

    #[test]
    fn failed_metadata_step_deletes_the_snapshot() {
        let (t, exec, s) = fake();
        let id = DatasetId::Volume("v".into());
        let vol = t.path().join("volumes/v");
        std::fs::create_dir_all(&vol).unwrap();
        let snap = t.path().join("snapshots/volumes/v/a");
        exec.0
            .expect_ok(
                &format!("btrfs subvolume snapshot -r {} {}", p(&vol), p(&snap)),
                "",
            )
            .expect_err(
                &format!("btrfs inspect-internal rootid {}", p(&snap)),
                "ERROR: not a subvolume",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", p(&snap)), "");
        let err = s.snapshot(&id, "a").unwrap_err().to_string();
        assert!(err.contains("not a subvolume"), "{err}");
        assert!(!snap.exists());
        assert!(!t.path().join("snapshots/volumes/v/a.json").exists());
        exec.0.finish();
    }

    #[test]
    fn rollback_refuses_newer_then_swaps_and_deletes_them() {
        let (t, exec, s) = fake();
        let id = DatasetId::Volume("v".into());
        let vol = t.path().join("volumes/v");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("file"), "current").unwrap();
        fake_snapshot(&s, &id, "old", 1, "old");
        fake_snapshot(&s, &id, "mid", 2, "mid");
        fake_snapshot(&s, &id, "new", 3, "new");

        let err = s.rollback(&id, "old", false).unwrap_err();
        assert!(
            matches!(&err, StorageError::NewerSnapshots { newer, .. } if newer == &["mid", "new"]),
            "{err}"
        );
        assert!(err.to_string().contains("mid, new"), "{err}");
        assert!(exec.0.ran().is_empty(), "a refused rollback ran commands");
        assert!(matches!(
            s.rollback(&id, "gone", true),
            Err(StorageError::NoSuchSnapshot { .. })
        ));

        let dir = t.path().join("snapshots/volumes/v");
        let new = t.path().join("volumes/.v.new");
        let old = t.path().join("volumes/.v.old");
        exec.0
            .expect_err(
                &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
                NO_QUOTAS,
            )
            .expect_ok(
                &format!(
                    "btrfs subvolume snapshot {} {}",
                    p(&dir.join("old")),
                    p(&new)
                ),
                "",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", p(&old)), "")
            .expect_ok(
                &format!("btrfs subvolume delete {}", p(&dir.join("new"))),
                "",
            )
            .expect_ok(
                &format!("btrfs subvolume delete {}", p(&dir.join("mid"))),
                "",
            );
        assert_eq!(s.rollback(&id, "old", true).unwrap(), ["mid", "new"]);
        exec.0.finish();
        assert!(!new.exists() && !old.exists());
        assert!(!dir.join("mid.json").exists() && !dir.join("new.json").exists());
        assert!(dir.join("old.json").exists());
    }

    #[test]
    fn rollback_failure_before_the_swap_keeps_the_dataset() {
        let (t, exec, s) = fake();
        let id = DatasetId::Volume("v".into());
        let vol = t.path().join("volumes/v");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("file"), "current").unwrap();
        fake_snapshot(&s, &id, "old", 1, "old");
        let snap = t.path().join("snapshots/volumes/v/old");
        let new = t.path().join("volumes/.v.new");
        let show = "Qgroupid Referenced Exclusive Max referenced Max exclusive Parent Child Path\n\
                    0/260 16384 16384 8388608 none - - volumes/v\n";
        exec.0
            .expect_ok(
                &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
                show,
            )
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&vol)),
                "260\n",
            )
            .expect_ok(
                &format!("btrfs subvolume snapshot {} {}", p(&snap), p(&new)),
                "",
            )
            .expect_err(
                &format!("btrfs qgroup limit 8388608 {}", p(&new)),
                "ERROR: unable to limit requested quota group: No space left on device",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", p(&new)), "");
        let err = s.rollback(&id, "old", false).unwrap_err().to_string();
        assert!(err.contains("unable to limit"), "{err}");
        exec.0.finish();
        assert_eq!(
            std::fs::read_to_string(vol.join("file")).unwrap(),
            "current"
        );
        assert!(!new.exists());
    }

    #[test]
    fn rollback_repairs_a_crash_between_the_renames() {
        let (t, exec, s) = fake();
        let id = DatasetId::Volume("v".into());
        let old = t.path().join("volumes/.v.old");
        std::fs::create_dir_all(&old).unwrap();
        std::fs::write(old.join("file"), "current").unwrap();
        fake_snapshot(&s, &id, "snap", 1, "snap");
        let vol = t.path().join("volumes/v");
        let new = t.path().join("volumes/.v.new");
        exec.0
            .expect_err(
                &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
                NO_QUOTAS,
            )
            .expect_ok(
                &format!(
                    "btrfs subvolume snapshot {} {}",
                    p(&t.path().join("snapshots/volumes/v/snap")),
                    p(&new)
                ),
                "",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", p(&old)), "");
        s.rollback(&id, "snap", false).unwrap();
        exec.0.finish();
        assert!(vol.exists() && !old.exists() && !new.exists());
    }

    #[test]
    fn clone_commands() {
        let (t, exec, s) = fake();
        let src = DatasetId::Data("web".into());
        let data = t.path().join("workloads/web/data");
        std::fs::create_dir_all(&data).unwrap();
        fake_snapshot(&s, &src, "s", 1, "x");
        let a = t.path().join("volumes/a");
        let b = t.path().join("volumes/b");
        exec.0
            .expect_ok(
                &format!("btrfs subvolume snapshot {} {}", p(&data), p(&a)),
                "",
            )
            .expect_ok(
                &format!(
                    "btrfs subvolume snapshot {} {}",
                    p(&t.path().join("snapshots/workloads/web/data/s")),
                    p(&b)
                ),
                "",
            );
        s.clone_dataset(&src, None, &DatasetId::Volume("a".into()))
            .unwrap();
        s.clone_dataset(&src, Some("s"), &DatasetId::Volume("b".into()))
            .unwrap();
        assert!(matches!(
            s.clone_dataset(&src, None, &DatasetId::Volume("a".into())),
            Err(StorageError::Exists(p)) if p == a
        ));
        assert!(matches!(
            s.clone_dataset(&src, Some("t"), &DatasetId::Volume("c".into())),
            Err(StorageError::NoSuchSnapshot { existing, .. }) if existing == ["s"]
        ));
        exec.0.finish();
    }

    #[test]
    fn quota_setup_commands() {
        let (t, exec, s) = fake();
        let root = p(t.path());
        let data = t.path().join("workloads/web/data");
        let rootfs = t.path().join("workloads/web/rootfs");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&rootfs).unwrap();
        let header = "Qgroupid Referenced Exclusive Max referenced Max exclusive Parent Child Path\n\
                      -------- ---------- --------- -------------- ------------- ------ ----- ----\n";
        let fresh = format!(
            "{header}0/5 16384 16384 none none - - <toplevel>\n\
             0/256 16384 16384 none none - - workloads/web/data\n\
             0/257 16384 16384 none none - - workloads/web/rootfs\n"
        );
        exec.0
            .expect_err(&format!("btrfs qgroup show --raw -pcre {root}"), NO_QUOTAS)
            .expect_ok(&format!("btrfs quota enable {root}"), "")
            .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
            .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &fresh)
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&data)),
                "256",
            )
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&rootfs)),
                "257",
            )
            .expect_ok(&format!("btrfs qgroup create 1/256 {root}"), "")
            .expect_ok(
                &format!("btrfs qgroup assign --no-rescan 0/256 1/256 {root}"),
                "",
            )
            .expect_ok(
                &format!("btrfs qgroup assign --no-rescan 0/257 1/256 {root}"),
                "",
            )
            .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
            .expect_ok(&format!("btrfs qgroup limit -e 8388608 1/256 {root}"), "");
        s.set_workload_quota("web", Some(8 << 20)).unwrap();
        exec.0.finish();
        assert_eq!(
            std::fs::read_to_string(t.path().join("workloads/web/qgroup")).unwrap(),
            "1/256\n"
        );

        // Recreated rootfs (subvolume 300): the stale member is swapped for the new one.
        let grouped = format!(
            "{header}0/256 16384 16384 none none 1/256 - workloads/web/data\n\
             0/257 16384 16384 none none 1/256 - workloads/web/rootfs\n\
             1/256 32768 32768 none 8388608 - 0/256,0/257 <0 member qgroups>\n"
        );
        exec.0
            .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&data)),
                "256",
            )
            .expect_ok(
                &format!("btrfs inspect-internal rootid {}", p(&rootfs)),
                "300",
            )
            .expect_ok(
                &format!("btrfs qgroup remove --no-rescan 0/257 1/256 {root}"),
                "",
            )
            .expect_ok(
                &format!("btrfs qgroup assign --no-rescan 0/300 1/256 {root}"),
                "",
            )
            .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
            .expect_ok(&format!("btrfs qgroup limit -e 4096 1/256 {root}"), "");
        s.set_workload_quota("web", Some(4096)).unwrap();
        exec.0.finish();

        // Usage reads the group; clearing the limit keeps the group.
        exec.0
            .expect_ok(
                &format!("btrfs qgroup show --raw -pcre --sync {root}"),
                &grouped,
            )
            .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
            .expect_ok(&format!("btrfs qgroup limit -e none 1/256 {root}"), "");
        assert_eq!(s.workload_usage("web").unwrap(), (32768, Some(8388608)));
        s.set_workload_quota("web", None).unwrap();
        exec.0.finish();

        // A dataset's own limit is on its referenced bytes.
        exec.0
            .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
            .expect_ok(&format!("btrfs qgroup limit 1048576 {}", p(&data)), "");
        s.set_quota(&DatasetId::Data("web".into()), Some(1 << 20))
            .unwrap();
        exec.0.finish();
    }

    #[test]
    fn quota_on_missing_dataset_runs_nothing() {
        let (_t, exec, s) = fake();
        assert!(matches!(
            s.set_workload_quota("web", Some(1)),
            Err(StorageError::NoSuchDataset(_))
        ));
        assert!(matches!(
            s.set_quota(&DatasetId::Volume("v".into()), Some(1)),
            Err(StorageError::NoSuchDataset(_))
        ));
        assert!(exec.0.ran().is_empty());
    }

    #[test]
    fn qgroup_show_parser() {
        let out = "WARNING: qgroup data inconsistent, rescan recommended\n\
Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive Parent   Child         Path \n\
--------    ----------    ---------  --------------  ------------- ------   -----         ---- \n\
0/5              16384        16384            none           none -        -             <toplevel>\n\
0/256          6307840      6307840            none           none 1/100    -             a dir/with space\n\
1/100         10469376     10469376            none       10485760 -        0/256,0/257   <0 member qgroups>\n";
        let groups = parse_qgroup_show(out).unwrap();
        assert_eq!(groups.len(), 3);
        assert_eq!(
            groups[2],
            Qgroup {
                id: "1/100".into(),
                referenced: 10469376,
                exclusive: 10469376,
                max_referenced: None,
                max_exclusive: Some(10485760),
                parents: vec![],
                children: vec!["0/256".into(), "0/257".into()],
            }
        );
        assert_eq!(groups[1].parents, ["1/100"]);
        assert!(parse_qgroup_show("0/5 12 x none none - -\n").is_err());
        assert!(parse_qgroup_show("0/5 12\n").is_err());
        assert_eq!(parse_qgroup_id("1/256"), Some((1, 256)));
        assert_eq!(parse_qgroup_id("x"), None);
    }

    #[test]
    fn filesystem_du_parser() {
        let out =
            "     Total   Exclusive  Set shared  Filename\n   6291456     4096           0  m/a\n";
        assert_eq!(parse_filesystem_du(out), Ok((6291456, 4096)));
        assert!(parse_filesystem_du("nothing").is_err());
    }

    /// A stream: header, `subvol` command with a path, one `write`-like command, `end`.
    fn stream(name: &str) -> Vec<u8> {
        fn cmd(kind: u16, body: &[u8]) -> Vec<u8> {
            let mut c = (body.len() as u32).to_le_bytes().to_vec();
            c.extend_from_slice(&kind.to_le_bytes());
            c.extend_from_slice(&[0; 4]);
            c.extend_from_slice(body);
            let crc = crc32c(0, &c);
            c[6..10].copy_from_slice(&crc.to_le_bytes());
            c
        }
        let mut body = Vec::new();
        for (t, v) in [(SEND_ATTR_PATH, name.as_bytes()), (1, &[7u8; 16][..])] {
            body.extend_from_slice(&t.to_le_bytes());
            body.extend_from_slice(&(v.len() as u16).to_le_bytes());
            body.extend_from_slice(v);
        }
        let mut s = SEND_MAGIC.to_vec();
        s.extend_from_slice(&1u32.to_le_bytes());
        s.extend(cmd(SEND_CMD_SUBVOL, &body));
        s.extend(cmd(15, &[1, 2, 3, 4, 5]));
        s.extend(cmd(SEND_CMD_END, &[]));
        s
    }

    #[test]
    fn send_stream_check_follows_framing() {
        let full = stream("nightly");
        for chunk in [1, 3, 10, 4096] {
            let mut c = SendStreamCheck::new();
            for part in full.chunks(chunk) {
                c.feed(part).unwrap();
            }
            assert_eq!(c.first_command(), Some(SEND_CMD_SUBVOL));
            assert!(c.first_command_complete());
            c.finish().unwrap();
        }
        // Cut anywhere, even exactly at a command boundary, it is refused.
        for cut in [5, 17, 27, full.len() - 10, full.len() - 1] {
            let mut c = SendStreamCheck::new();
            c.feed(&full[..cut]).unwrap();
            assert!(c.finish().is_err(), "cut at {cut} accepted");
        }
        let mut c = SendStreamCheck::new();
        assert!(c.feed(b"btrfs-strEAm").is_err());
        let mut c = SendStreamCheck::new();
        let mut trailing = full.clone();
        trailing.push(0);
        assert!(c.feed(&trailing).is_err());
    }

    #[test]
    fn first_path_rewrite_fixes_length_and_crc() {
        // Standard CRC-32C check value, with the usual inversions applied around the raw one.
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
        let original = stream("nightly");
        let rewritten = rewrite_first_path(&original, ".incoming-1").unwrap();
        assert_eq!(rewritten, stream(".incoming-1"));
        assert!(rewrite_first_path(&original[..20], "x").is_err());
    }

    #[test]
    fn ro_property_parser() {
        assert_eq!(parse_ro_property("ro=true\n"), Some(true));
        assert_eq!(parse_ro_property("ro=false\n"), Some(false));
        assert_eq!(parse_ro_property("label=x\nro=false\n"), Some(false));
        assert_eq!(parse_ro_property(""), None);
        assert_eq!(parse_ro_property("ro=maybe"), None);
    }

    #[test]
    fn world_create_and_seal_commands() {
        let (t, rec, s) = setup();
        let w = t.path().join("worlds/host");
        rec.expect_ok(&format!("btrfs subvolume create {}", w.display()), "");
        assert_eq!(s.create_world_dataset("host").unwrap(), w);
        std::fs::create_dir(&w).unwrap(); // what the real command would have made
        rec.expect_ok(
            &format!("btrfs property set -ts {} ro true", w.display()),
            "",
        );
        s.seal_world("host").unwrap();
        assert!(matches!(
            s.create_world_dataset("host"),
            Err(StorageError::Exists(p)) if p == w
        ));
        rec.finish();
    }

    #[test]
    fn snapshot_replaces_existing_rootfs() {
        let (t, rec, s) = setup();
        let w = t.path().join("worlds/busybox");
        let r = t.path().join("workloads/web/rootfs");
        std::fs::create_dir_all(&w).unwrap();
        rec.expect_ok(
            &format!("btrfs subvolume snapshot {} {}", w.display(), r.display()),
            "",
        );
        assert_eq!(s.create_rootfs("web", "busybox").unwrap(), r);
        std::fs::create_dir_all(&r).unwrap();
        rec.expect_ok(&format!("btrfs subvolume delete {}", r.display()), "")
            .expect_ok(
                &format!("btrfs subvolume snapshot {} {}", w.display(), r.display()),
                "",
            );
        s.create_rootfs("web", "busybox").unwrap();
        rec.finish();
    }

    #[test]
    fn rootfs_of_missing_world_runs_nothing() {
        let (_t, rec, s) = setup();
        assert!(matches!(
            s.create_rootfs("web", "host"),
            Err(StorageError::NoSuchWorld(w)) if w == "host"
        ));
        assert!(rec.ran().is_empty());
    }

    #[test]
    fn world_delete_clears_ro_first_and_removes_metadata() {
        let (t, rec, s) = setup();
        let w = t.path().join("worlds/host");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
        rec.expect_ok(
            &format!("btrfs property set -ts {} ro false", w.display()),
            "",
        )
        .expect_ok(&format!("btrfs subvolume delete {}", w.display()), "");
        s.delete_world("host").unwrap();
        assert!(!t.path().join("worlds/host.json").exists());
        rec.finish();
    }

    #[test]
    fn failed_subvolume_delete_keeps_metadata() {
        let (t, rec, s) = setup();
        let w = t.path().join("worlds/host");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
        rec.expect_ok(
            &format!("btrfs property set -ts {} ro false", w.display()),
            "",
        )
        .expect_err(
            &format!("btrfs subvolume delete {}", w.display()),
            "Device or resource busy",
        );
        let err = s.delete_world("host").unwrap_err().to_string();
        assert!(err.contains("resource busy"), "{err}");
        assert!(t.path().join("worlds/host.json").exists());
        rec.finish();
    }

    #[test]
    fn deletes_are_idempotent_and_remove_workload_dir() {
        let (t, rec, s) = setup();
        s.delete_rootfs("web").unwrap();
        s.delete_data("web").unwrap();
        s.delete_world("host").unwrap();
        assert!(rec.ran().is_empty());

        let d = t.path().join("workloads/web/data");
        rec.expect_ok(&format!("btrfs subvolume create {}", d.display()), "");
        assert_eq!(s.ensure_data("web").unwrap(), d);
        std::fs::create_dir(&d).unwrap();
        assert_eq!(s.ensure_data("web").unwrap(), d); // exists: no command
        rec.expect_ok(&format!("btrfs subvolume delete {}", d.display()), "");
        s.delete_data("web").unwrap();
        rec.finish();
        // The fake left `d` behind, so the workload dir is not empty and stays.
        assert!(t.path().join("workloads/web").exists());
        std::fs::remove_dir(&d).unwrap();
        s.delete_data("web").unwrap();
        assert!(!t.path().join("workloads/web").exists());
    }

    #[test]
    fn list_reads_ro_flags() {
        let (t, rec, s) = setup();
        let w = t.path().join("worlds/host");
        let r = t.path().join("workloads/web/rootfs");
        std::fs::create_dir_all(&w).unwrap();
        std::fs::create_dir_all(&r).unwrap();
        std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
        rec.expect_ok(
            &format!("btrfs property get -ts {} ro", w.display()),
            "ro=true\n",
        )
        .expect_ok(
            &format!("btrfs property get -ts {} ro", r.display()),
            "ro=false\n",
        );
        let list = s.list_datasets().unwrap();
        rec.finish();
        assert_eq!(
            list,
            vec![
                DatasetInfo {
                    name: "worlds/host".into(),
                    path: w,
                    readonly: true
                },
                DatasetInfo {
                    name: "workloads/web/rootfs".into(),
                    path: r,
                    readonly: false
                },
            ]
        );
    }
}
