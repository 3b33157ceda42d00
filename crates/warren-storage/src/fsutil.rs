//! Small filesystem helpers shared by the drivers and the world builders: error context,
//! dataset-name and snapshot-label checks, idempotent removal, a symlink-preserving tree copy,
//! and the snapshot bookkeeping both drivers share (the `<label>.json` metadata beside every
//! snapshot under `snapshots/<dataset key>/`, oldest-first ordering, unique temp names), and
//! the streams (`btrfs send`/`receive`, `tar -c`) run through the executor's streaming API.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use warren_exec::{Cmd, Executor, Pipe, Streams, PIPE_SIZE};

use crate::{DatasetId, Result, SnapshotInfo, StorageError};

/// Maps an `io::Error` to [`StorageError::Io`] naming `path`.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses names that are not a single, ordinary path component.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\0'])
        || name.ends_with(".json")
        || name.ends_with(".sealed");
    if bad {
        return Err(StorageError::Other(format!(
            "invalid {kind} name {name:?}: must be one path component, not starting with '.'"
        )));
    }
    Ok(())
}

/// True if anything (file, dir, dangling symlink) is at `path`.
pub(crate) fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))
}

/// Creates one directory with an explicit mode (not subject to the umask).
pub(crate) fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Writes a small file with an explicit mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    fs::write(path, contents).map_err(io_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

/// Removes a file; absent is fine.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Removes a directory if it is empty; absent or non-empty is fine.
pub(crate) fn remove_dir_if_empty(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Err(e)
            if e.kind() != io::ErrorKind::NotFound
                && e.kind() != io::ErrorKind::DirectoryNotEmpty =>
        {
            Err(io_err(path)(e))
        }
        _ => Ok(()),
    }
}

/// Fails if any filesystem is mounted at or below `path`: removing such a tree would descend
/// into (and delete) whatever is mounted there.
pub(crate) fn refuse_if_mounted(path: &Path) -> Result<()> {
    let mounted = crate::pool::try_mounts_under(path)?;
    if mounted.is_empty() {
        return Ok(());
    }
    Err(StorageError::Other(format!(
        "refusing to remove {}: still mounted at {}",
        path.display(),
        mounted
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )))
}

/// Sub-directories of `dir` (sorted names), skipping files; an absent `dir` yields nothing.
pub(crate) fn subdirs(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let is_dir = entry.file_type().map_err(io_err(&entry.path()))?.is_dir();
        if is_dir {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies a tree: directories and regular files with their mode and owner, symlinks as
/// symlinks (never followed). Entries for which `skip(relative path)` is true are left out.
pub(crate) fn copy_tree(src: &Path, dst: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    copy_tree_at(src, dst, Path::new(""), skip)
}

fn copy_tree_at(src: &Path, dst: &Path, rel: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<()> {
    let meta = src.symlink_metadata().map_err(io_err(src))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(src).map_err(io_err(src))?;
        symlink(&target, dst).map_err(io_err(dst))?;
    } else if kind.is_dir() {
        fs::create_dir(dst).map_err(io_err(dst))?;
        for entry in fs::read_dir(src).map_err(io_err(src))? {
            let name = entry.map_err(io_err(src))?.file_name();
            let child_rel: PathBuf = rel.join(&name);
            if !skip(&child_rel) {
                copy_tree_at(&src.join(&name), &dst.join(&name), &child_rel, skip)?;
            }
        }
        fs::set_permissions(dst, meta.permissions()).map_err(io_err(dst))?;
    } else if kind.is_file() {
        fs::copy(src, dst).map_err(io_err(dst))?;
    } else {
        // Sockets, fifos and devices have no place in a world's /etc.
        return Ok(());
    }
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(io_err(dst))
}

/// Refuses snapshot labels that are not 1–64 characters of `[A-Za-z0-9._-]` starting with
/// something other than `.` (and not ending in `.json`, which would collide with the
/// metadata file of another label).
pub(crate) fn check_label(label: &str) -> Result<()> {
    if warren_model::names::is_snapshot_label(label) {
        return Ok(());
    }
    Err(StorageError::InvalidLabel(label.to_string()))
}

/// Checks the workload or volume name inside a dataset id.
pub(crate) fn check_dataset_id(id: &DatasetId) -> Result<()> {
    match id {
        DatasetId::Rootfs(w) | DatasetId::Data(w) => check_name("workload", w),
        DatasetId::Volume(v) => check_name("volume", v),
    }
}

/// A name suffix no other live temp dir of this host uses: pid, clock and a counter.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{n}", std::process::id(), now_ns())
}

/// Name prefix of a staged receive (btrfs: `snapshots/<key>/.incoming-<unique>`, dir:
/// `snapshots/.incoming-<unique>`).
pub(crate) const STAGED_PREFIX: &str = ".incoming-";

/// Deletes (with `delete`) every staged receive under `root` that no import holds; returns
/// their places.
pub(crate) fn sweep_staged_under(
    root: &Path,
    delete: impl Fn(&Path) -> Result<()>,
) -> Result<Vec<String>> {
    let mut swept = Vec::new();
    for path in staged_entries(root)? {
        let place = path.to_string_lossy().into_owned();
        if crate::staged_is_live(&place) {
            continue;
        }
        delete(&path)?;
        swept.push(place);
    }
    Ok(swept)
}

/// Every staged receive on disk under `root`, live or left over: `.incoming-*` entries of
/// `snapshots/` and of each dataset's snapshot directory. Snapshot trees themselves are not
/// walked.
pub(crate) fn staged_entries(root: &Path) -> Result<Vec<PathBuf>> {
    let snaps = root.join("snapshots");
    let mut dirs = vec![snaps.clone()];
    let workloads = snaps.join("workloads");
    for w in subdirs(&workloads)? {
        for kind in ["rootfs", "data"] {
            dirs.push(workloads.join(&w).join(kind));
        }
    }
    let volumes = snaps.join("volumes");
    for v in subdirs(&volumes)? {
        dirs.push(volumes.join(v));
    }
    let mut out = Vec::new();
    for d in dirs {
        for name in subdirs(&d)? {
            if name.starts_with(STAGED_PREFIX) {
                out.push(d.join(name));
            }
        }
    }
    Ok(out)
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What `snapshots/<key>/<label>.json` records about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct SnapMeta {
    /// Unix seconds.
    pub created_at: u64,
    /// Unix nanoseconds: orders snapshots taken within the same second.
    #[serde(default)]
    pub created_ns: u64,
    /// btrfs: the snapshot's subvolume id, to find its qgroup without running a command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subvol_id: Option<u64>,
}

impl SnapMeta {
    pub fn now(subvol_id: Option<u64>) -> Self {
        let ns = now_ns();
        SnapMeta {
            created_at: ns / 1_000_000_000,
            created_ns: ns,
            subvol_id,
        }
    }
}

/// `<root>/snapshots/<key>`: the directory holding one dataset's snapshots.
pub(crate) fn snapshot_dir(root: &Path, id: &DatasetId) -> PathBuf {
    root.join("snapshots").join(id.key())
}

/// The metadata file beside snapshot `label`.
pub(crate) fn snapshot_meta_path(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("{label}.json"))
}

pub(crate) fn write_snap_meta(dir: &Path, label: &str, meta: &SnapMeta) -> Result<()> {
    let path = snapshot_meta_path(dir, label);
    let json = serde_json::to_vec_pretty(meta).expect("snapshot metadata serializes");
    let tmp = dir.join(format!(".{label}.json.{}", unique_suffix()));
    write_file(&tmp, &json, 0o644)?;
    fs::rename(&tmp, &path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err(&path)(e)
    })
}

/// One snapshot found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapEntry {
    pub label: String,
    pub path: PathBuf,
    pub meta: SnapMeta,
}

impl SnapEntry {
    pub fn info(&self, id: &DatasetId, bytes: Option<u64>) -> SnapshotInfo {
        SnapshotInfo {
            dataset: id.key(),
            label: self.label.clone(),
            created_at: self.meta.created_at,
            bytes,
        }
    }
}

/// The snapshots in `dir`, oldest first (by creation time, then label). Entries starting with
/// `.` are temp names of snapshots being made or received and are skipped. A snapshot whose
/// metadata is missing (a crash between the snapshot and its metadata) sorts by the
/// directory's modification time.
pub(crate) fn list_snap_entries(dir: &Path) -> Result<Vec<SnapEntry>> {
    let mut out = Vec::new();
    for label in subdirs(dir)? {
        if label.starts_with('.') {
            continue;
        }
        let path = dir.join(&label);
        let meta_path = snapshot_meta_path(dir, &label);
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StorageError::Other(format!(
                    "{}: invalid snapshot metadata: {e}",
                    meta_path.display()
                ))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let m = path.symlink_metadata().map_err(io_err(&path))?;
                let secs = m.mtime().max(0) as u64;
                SnapMeta {
                    created_at: secs,
                    created_ns: secs * 1_000_000_000 + m.mtime_nsec().max(0) as u64,
                    subvol_id: None,
                }
            }
            Err(e) => return Err(io_err(&meta_path)(e)),
        };
        out.push(SnapEntry { label, path, meta });
    }
    sort_snapshots(&mut out);
    Ok(out)
}

/// Oldest first: creation time (ns, falling back to seconds), then label.
pub(crate) fn sort_snapshots(entries: &mut [SnapEntry]) {
    entries.sort_by(|a, b| {
        let key = |e: &SnapEntry| e.meta.created_ns.max(e.meta.created_at * 1_000_000_000);
        key(a).cmp(&key(b)).then_with(|| a.label.cmp(&b.label))
    });
}

/// Splits `entries` (oldest first) at `label`: the snapshot itself and the labels newer than
/// it. Fails with [`StorageError::NoSuchSnapshot`] naming the labels that exist.
pub(crate) fn find_with_newer<'a>(
    entries: &'a [SnapEntry],
    id: &DatasetId,
    label: &str,
) -> Result<(&'a SnapEntry, Vec<String>)> {
    let Some(pos) = entries.iter().position(|e| e.label == label) else {
        return Err(StorageError::NoSuchSnapshot {
            dataset: id.key(),
            label: label.to_string(),
            existing: entries.iter().map(|e| e.label.clone()).collect(),
        });
    };
    let newer = entries[pos + 1..].iter().map(|e| e.label.clone()).collect();
    Ok((&entries[pos], newer))
}

/// Removes `dir` and then each empty parent up to (not including) `stop`.
pub(crate) fn remove_empty_dirs_up_to(dir: &Path, stop: &Path) -> Result<()> {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d == stop || !d.starts_with(stop) {
            break;
        }
        if exists(d) {
            match fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(d)(e)),
            }
        }
        cur = d.parent();
    }
    Ok(())
}

/// Renames `from` to `to`, naming both in the error.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|source| StorageError::Io {
        path: to.to_path_buf(),
        source: io::Error::new(
            source.kind(),
            format!("renaming {} here: {source}", from.display()),
        ),
    })
}

/// `.<name>.new` and `.<name>.old` beside a dataset: the temp names of a rollback's swap.
/// They are fixed (not random) so a crash's leftovers are found and repaired by the next
/// operation on that dataset; warren never runs two operations on one dataset at once.
pub(crate) fn swap_names(path: &Path) -> (PathBuf, PathBuf) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (
        path.with_file_name(format!(".{name}.new")),
        path.with_file_name(format!(".{name}.old")),
    )
}

/// Sum of the sizes of the regular files and symlinks under `path` (hard links counted once),
/// without following symlinks or crossing into other filesystems.
pub(crate) fn tree_bytes(path: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let dev = path.symlink_metadata().map_err(io_err(path))?.dev();
    tree_bytes_at(path, dev, &mut seen)
}

fn tree_bytes_at(
    path: &Path,
    dev: u64,
    seen: &mut std::collections::HashSet<(u64, u64)>,
) -> Result<u64> {
    let meta = path.symlink_metadata().map_err(io_err(path))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        if meta.dev() != dev {
            return Ok(0);
        }
        let mut sum = 0;
        for entry in fs::read_dir(path).map_err(io_err(path))? {
            let entry = entry.map_err(io_err(path))?;
            sum += tree_bytes_at(&entry.path(), dev, seen)?;
        }
        Ok(sum)
    } else if kind.is_file() || kind.is_symlink() {
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            return Ok(0);
        }
        Ok(meta.len())
    } else {
        Ok(0)
    }
}

/// Runs `cmd` through `exec` ([`Executor::spawn`]) and copies its stdout into `out` as it
/// comes, [`PIPE_SIZE`] at a time: streams too big to buffer (`btrfs send`, `tar -c`). A
/// failing program is reported with its stderr.
pub(crate) fn stream_out(exec: &dyn Executor, cmd: &Cmd, out: &mut dyn io::Write) -> Result<()> {
    let mut child = exec.spawn(cmd, Streams::reading())?;
    let mut stdout = child.stdout().expect("piped stdout");
    let copied = copy_large(&mut stdout, out);
    drop(stdout);
    if let Err(e) = copied {
        child.kill();
        let _ = child.wait();
        return Err(StorageError::Other(format!(
            "writing the output of `{}`: {e}",
            cmd.argv_string()
        )));
    }
    child.wait()?;
    Ok(())
}

/// `io::copy` with reads of up to [`PIPE_SIZE`] (io::copy's 8 KiB buffer means a read and a
/// write call per 8 KiB).
pub(crate) fn copy_large(from: &mut dyn io::Read, to: &mut dyn io::Write) -> io::Result<u64> {
    let mut buf = vec![0u8; PIPE_SIZE];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Runs `cmd` through `exec` ([`Executor::spawn`]) feeding `head` and then all of `input` to
/// its stdin, [`PIPE_SIZE`] at a time; `watch` sees every byte first and may stop the stream
/// with an error (the child is then killed and that error returned). A failing program is
/// reported with its stderr.
pub(crate) fn stream_in(
    exec: &dyn Executor,
    cmd: &Cmd,
    head: &[u8],
    input: &mut dyn io::Read,
    watch: &mut dyn FnMut(&[u8]) -> std::result::Result<(), String>,
) -> Result<()> {
    let streams = Streams {
        stdin: Pipe::Piped,
        stdout: Pipe::Null,
        stderr: Pipe::Collected,
    };
    let mut child = exec.spawn(cmd, streams)?;
    let mut stdin = child.stdin().expect("piped stdin");
    let mut buf = vec![0u8; PIPE_SIZE];
    let mut feed = |bytes: &[u8]| -> std::result::Result<bool, String> {
        watch(bytes)?;
        // A failed write means the child stopped reading: its exit status and stderr say why.
        Ok(stdin.write_all(bytes).is_ok())
    };
    let head_fed = if head.is_empty() {
        Ok(true)
    } else {
        feed(head)
    };
    let fed: std::result::Result<(), String> = match head_fed {
        Err(e) => Err(e),
        Ok(false) => Ok(()),
        Ok(true) => loop {
            match input.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => match feed(&buf[..n]) {
                    Ok(true) => {}
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                },
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(format!("reading the stream: {e}")),
            }
        },
    };
    drop(stdin);
    if let Err(e) = fed {
        child.kill();
        let _ = child.wait();
        return Err(StorageError::Other(e));
    }
    child.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_plain_component() {
        for ok in ["host", "busybox", "web-1", "a_b"] {
            check_name("world", ok).unwrap();
        }
        for bad in [
            "", ".", "..", ".hidden", "a/b", "x.json", "x.sealed", "a\0b",
        ] {
            assert!(check_name("world", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn labels() {
        for ok in [
            "nightly",
            "2024-01-01T00.00",
            "a",
            "A_b-c.d",
            &"x".repeat(64),
        ] {
            check_label(ok).unwrap();
        }
        for bad in [
            "",
            ".hidden",
            "a/b",
            "a b",
            "x.json",
            "..",
            "ü",
            &"x".repeat(65),
        ] {
            let err = check_label(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn snapshots_sort_oldest_first_and_split_at_label() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path();
        for (label, ns) in [("b", 3_000_000_001u64), ("a", 3_000_000_002), ("c", 1)] {
            fs::create_dir(dir.join(label)).unwrap();
            let meta = SnapMeta {
                created_at: ns / 1_000_000_000,
                created_ns: ns,
                subvol_id: None,
            };
            write_snap_meta(dir, label, &meta).unwrap();
        }
        fs::create_dir(dir.join(".incoming-x")).unwrap();
        let entries = list_snap_entries(dir).unwrap();
        let labels: Vec<&str> = entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["c", "b", "a"]);
        let id = DatasetId::Volume("v".into());
        let (e, newer) = find_with_newer(&entries, &id, "c").unwrap();
        assert_eq!(
            (e.label.as_str(), newer),
            ("c", vec!["b".into(), "a".into()])
        );
        let err = find_with_newer(&entries, &id, "zz")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"zz\"") && err.contains("c, b, a"), "{err}");
    }

    #[test]
    fn tree_bytes_counts_hard_links_once() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("d")).unwrap();
        fs::write(t.path().join("d/a"), vec![0u8; 1000]).unwrap();
        fs::hard_link(t.path().join("d/a"), t.path().join("b")).unwrap();
        fs::write(t.path().join("c"), b"12345").unwrap();
        symlink("xyz", t.path().join("l")).unwrap();
        assert_eq!(tree_bytes(t.path()).unwrap(), 1008);
    }

    #[test]
    fn empty_dirs_are_removed_up_to_stop() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("snapshots/workloads/web/data");
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(t.path().join("snapshots/workloads/db")).unwrap();
        remove_empty_dirs_up_to(&deep, &t.path().join("snapshots")).unwrap();
        assert!(!t.path().join("snapshots/workloads/web").exists());
        assert!(t.path().join("snapshots/workloads/db").exists());
    }

    #[test]
    fn copy_tree_keeps_symlinks_and_modes_and_skips() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("sub/private")).unwrap();
        write_file(&src.join("sub/file"), b"x", 0o640).unwrap();
        write_file(&src.join("sub/private/key"), b"secret", 0o600).unwrap();
        symlink("/nonexistent/target", src.join("link")).unwrap();
        let dst = t.path().join("dst");
        copy_tree(&src, &dst, &|rel| rel == Path::new("sub/private")).unwrap();
        assert_eq!(fs::read(dst.join("sub/file")).unwrap(), b"x");
        let mode = fs::metadata(dst.join("sub/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(
            fs::read_link(dst.join("link")).unwrap(),
            Path::new("/nonexistent/target")
        );
        assert!(!exists(&dst.join("sub/private")));
    }
}

/// The size and used bytes of the filesystem holding `path` (statvfs: blocks less free
/// blocks, in fragment-size units).
pub(crate) fn statvfs_usage(path: &Path) -> Result<crate::PoolUsage> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| StorageError::Io {
        path: path.to_path_buf(),
        source: io::Error::from(e),
    })?;
    let unit = st.fragment_size() as u64;
    let size = st.blocks() as u64 * unit;
    let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * unit;
    Ok(crate::PoolUsage { size, used })
}

#[cfg(test)]
mod pool_tests {
    #[test]
    fn statvfs_usage_matches_df_arithmetic() {
        let t = std::env::temp_dir();
        let u = super::statvfs_usage(&t).unwrap();
        assert!(u.size > 0 && u.used <= u.size, "{u:?}");
        let st = nix::sys::statvfs::statvfs(&t).unwrap();
        assert_eq!(u.size, st.blocks() as u64 * st.fragment_size() as u64);
    }
}
