//! User namespaces: the host id ranges workloads run under, and the ownership of their files.
//!
//! A workload with `userns = true` runs with container uids and gids `0..65536` mapped to a
//! range of unprivileged host ids of the same size. The ranges come from one [`IdPool`]: the
//! `warren` entries of `/etc/subuid` and `/etc/subgid` when both exist (they must agree), else
//! [`DEFAULT_POOL_START`] with [`DEFAULT_POOL_SLOTS`] ranges — above the ranges `useradd` hands
//! out to users (100000 up to 600100000) and systemd-nspawn's container ranges, below 2^31. A
//! default pool that overlaps another user's subordinate ids is refused with a message naming
//! the entry. Each workload holds one slot of the pool (the daemon keeps the allocation in
//! SQLite), so ranges never overlap and a workload keeps its range across recreation.
//!
//! Files: runc 1.1 (Debian 12) has no idmapped mounts, so the workload's root filesystem (a
//! fresh snapshot of its world) and its data dataset are chowned into the range when they are
//! provisioned, by [`shift_tree`]: a walk of every inode, O(number of files). The walk is
//! idempotent and maps from whatever range a file is in (an unshifted id below 65536, or any
//! slot of the pool), so a cloned or re-enabled dataset lands in the right range, and turning
//! `userns` off shifts the data back. It stays on one file system (nested mounts and
//! subvolumes are skipped); set-user-ID and set-group-ID bits are restored after the chown
//! (the kernel clears them); file capabilities (`security.capability`) and POSIX ACL entries
//! are not translated. A volume belongs to its one writer: a `userns` workload that mounts it
//! writable has it re-owned into its range; read-only mounts keep its owner.
//!
//! A bridge workload's network namespace must belong to its user namespace (otherwise root
//! inside holds no privileges over its own network: it could not bind port 80, and sysfs could
//! not be mounted). [`create_persistent`] makes both namespaces at once and binds them to files
//! (`/run/netns/NAME` and a file under `/run/warren/userns/`), so they outlive container
//! restarts like the plain `ip netns add` namespaces do; the container then joins both.

use crate::{Result, RuntimeError};
use std::path::Path;

/// Ids per workload: container ids `0..65536`.
pub const IDS_PER_WORKLOAD: u32 = 65_536;
/// First host id of the default pool (0x70000000).
pub const DEFAULT_POOL_START: u32 = 0x7000_0000;
/// Workload ranges in the default pool (up to 0x7fffffff).
pub const DEFAULT_POOL_SLOTS: u32 = 4096;
/// The `/etc/subuid` and `/etc/subgid` entry that defines the pool.
pub const SUBID_OWNER: &str = "warren";

/// One line of `/etc/subuid` or `/etc/subgid`: `owner:start:count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubId {
    pub owner: String,
    pub start: u64,
    pub count: u64,
}

/// Parses a subordinate id file (`file` names it in errors). Blank lines and `#` comments are
/// skipped; anything else must be `owner:start:count` with numbers.
pub fn parse_subid(text: &str, file: &str) -> Result<Vec<SubId>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |what: &str| RuntimeError::Spec(format!("{file}:{}: {what}: {line:?}", i + 1));
        let f: Vec<&str> = line.split(':').collect();
        let [owner, start, count] = f.as_slice() else {
            return Err(bad("expected owner:start:count"));
        };
        if owner.is_empty() {
            return Err(bad("empty owner"));
        }
        let start: u64 = start.parse().map_err(|_| bad("start is not a number"))?;
        let count: u64 = count.parse().map_err(|_| bad("count is not a number"))?;
        out.push(SubId {
            owner: owner.to_string(),
            start,
            count,
        });
    }
    Ok(out)
}

/// The host ids workload ranges are taken from: `slots` ranges of [`IDS_PER_WORKLOAD`] ids
/// from `start`, the same for uids and gids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPool {
    pub start: u32,
    pub slots: u32,
}

impl IdPool {
    /// The pool from the contents of `/etc/subuid` and `/etc/subgid` (empty when absent).
    pub fn from_subid(subuid: &str, subgid: &str) -> Result<IdPool> {
        let uids = parse_subid(subuid, "/etc/subuid")?;
        let gids = parse_subid(subgid, "/etc/subgid")?;
        let own = |v: &[SubId]| v.iter().find(|s| s.owner == SUBID_OWNER).cloned();
        match (own(&uids), own(&gids)) {
            (None, None) => {
                let pool = IdPool {
                    start: DEFAULT_POOL_START,
                    slots: DEFAULT_POOL_SLOTS,
                };
                for (file, entries) in [("/etc/subuid", &uids), ("/etc/subgid", &gids)] {
                    if let Some(e) = entries.iter().find(|e| pool.overlaps(e.start, e.count)) {
                        return Err(RuntimeError::Spec(format!(
                            "{file}: the range of {:?} ({}+{}) overlaps warren's default id pool \
                             ({}+{}); add a `{SUBID_OWNER}:START:COUNT` entry to /etc/subuid and \
                             /etc/subgid for warren to use instead",
                            e.owner,
                            e.start,
                            e.count,
                            pool.start,
                            pool.len()
                        )));
                    }
                }
                Ok(pool)
            }
            (Some(u), Some(g)) if u.start == g.start && u.count == g.count => {
                let start = u32::try_from(u.start)
                    .ok()
                    .filter(|s| *s >= IDS_PER_WORKLOAD)
                    .ok_or_else(|| {
                        RuntimeError::Spec(format!(
                            "/etc/subuid: the {SUBID_OWNER} range must start at or above {IDS_PER_WORKLOAD} and below 2^32, found {}",
                            u.start
                        ))
                    })?;
                let end = u.start + u.count;
                if end > u64::from(u32::MAX) {
                    return Err(RuntimeError::Spec(format!(
                        "/etc/subuid: the {SUBID_OWNER} range {}+{} ends beyond the largest id",
                        u.start, u.count
                    )));
                }
                let slots = u32::try_from(u.count / u64::from(IDS_PER_WORKLOAD)).unwrap_or(0);
                if slots == 0 {
                    return Err(RuntimeError::Spec(format!(
                        "/etc/subuid: the {SUBID_OWNER} range holds {} ids; one workload needs {IDS_PER_WORKLOAD}",
                        u.count
                    )));
                }
                Ok(IdPool { start, slots })
            }
            (Some(u), Some(g)) => Err(RuntimeError::Spec(format!(
                "/etc/subuid ({}+{}) and /etc/subgid ({}+{}) give {SUBID_OWNER} different ranges; \
                 they must be the same",
                u.start, u.count, g.start, g.count
            ))),
            (Some(_), None) => Err(RuntimeError::Spec(format!(
                "/etc/subuid has a {SUBID_OWNER} entry but /etc/subgid has none"
            ))),
            (None, Some(_)) => Err(RuntimeError::Spec(format!(
                "/etc/subgid has a {SUBID_OWNER} entry but /etc/subuid has none"
            ))),
        }
    }

    /// The pool from this host's `/etc/subuid` and `/etc/subgid`.
    pub fn from_host() -> Result<IdPool> {
        let read = |p: &str| match std::fs::read_to_string(p) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(source) => Err(RuntimeError::Io {
                path: p.into(),
                source,
            }),
        };
        IdPool::from_subid(&read("/etc/subuid")?, &read("/etc/subgid")?)
    }

    /// Number of host ids in the pool.
    pub fn len(&self) -> u64 {
        u64::from(self.slots) * u64::from(IDS_PER_WORKLOAD)
    }

    /// Whether the pool holds no range.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    fn overlaps(&self, start: u64, count: u64) -> bool {
        let (a, b) = (u64::from(self.start), u64::from(self.start) + self.len());
        start < b && start + count > a
    }

    /// The first host id of `slot`'s range.
    pub fn base(&self, slot: u32) -> Option<u32> {
        (slot < self.slots).then(|| self.start + slot * IDS_PER_WORKLOAD)
    }

    /// The container id a host id stands for: itself below 65536 (an unshifted file), its
    /// offset in its range inside the pool, or None (an id warren did not give out).
    pub fn container_id(&self, host_id: u32) -> Option<u32> {
        if host_id < IDS_PER_WORKLOAD {
            return Some(host_id);
        }
        let offset = u64::from(host_id).checked_sub(u64::from(self.start))?;
        (offset < self.len()).then(|| (offset % u64::from(IDS_PER_WORKLOAD)) as u32)
    }

    /// The host id a file owned by `host_id` gets when shifted to the range starting at
    /// `target` (None: no user namespace, container ids are host ids); ids outside the pool
    /// are kept.
    pub fn shift(&self, host_id: u32, target: Option<u32>) -> u32 {
        match self.container_id(host_id) {
            Some(inner) => target.map_or(inner, |base| base + inner),
            None => host_id,
        }
    }
}

/// What [`shift_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShiftStats {
    /// Inodes visited.
    pub visited: u64,
    /// Inodes whose owner or group changed.
    pub changed: u64,
}

/// Re-owns every inode under `root` (itself included) for the range starting at `target`
/// (None: back to plain container ids), staying on `root`'s file system. See the module docs.
pub fn shift_tree(root: &Path, pool: &IdPool, target: Option<u32>) -> Result<ShiftStats> {
    imp::shift_tree(root, pool, target)
}

/// Creates a user namespace mapping container ids `0..size` to `host_id..host_id+size` and a
/// network namespace it owns, bound to `userns_file` and `netns_file` (created; their parent
/// directories must exist). Nothing is left behind on failure.
pub fn create_persistent(
    userns_file: &Path,
    netns_file: &Path,
    host_id: u32,
    size: u32,
) -> Result<()> {
    imp::create_persistent(userns_file, netns_file, host_id, size)
}

/// Whether the namespace bound at `netns_file` is owned by the user namespace bound at
/// `userns_file` (None: by this process's own user namespace).
pub fn netns_owned_by(netns_file: &Path, userns_file: Option<&Path>) -> Result<bool> {
    imp::netns_owned_by(netns_file, userns_file)
}

/// Unbinds and removes a namespace file made by [`create_persistent`]; no error if absent.
pub fn release_file(file: &Path) -> Result<()> {
    imp::release_file(file)
}

#[cfg(target_os = "linux")]
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{io, IdPool, ShiftStats};
    use crate::{Result, RuntimeError};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    pub fn shift_tree(root: &Path, pool: &IdPool, target: Option<u32>) -> Result<ShiftStats> {
        let dev = std::fs::symlink_metadata(root).map_err(io(root))?.dev();
        let mut stats = ShiftStats::default();
        let mut stack = vec![root.to_path_buf()];
        while let Some(path) = stack.pop() {
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.dev() != dev {
                continue; // a nested mount or subvolume
            }
            stats.visited += 1;
            let (uid, gid) = (
                pool.shift(meta.uid(), target),
                pool.shift(meta.gid(), target),
            );
            if (uid, gid) != (meta.uid(), meta.gid()) {
                std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(io(&path))?;
                stats.changed += 1;
                let special = meta.mode() & 0o6000;
                if special != 0 && !meta.file_type().is_symlink() {
                    // chown cleared the set-user-ID and set-group-ID bits.
                    let perms = std::fs::Permissions::from_mode(meta.mode() & 0o7777);
                    std::fs::set_permissions(&path, perms).map_err(io(&path))?;
                }
            }
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path).map_err(io(&path))? {
                    stack.push(entry.map_err(io(&path))?.path());
                }
            }
        }
        Ok(stats)
    }

    /// ioctl(NS_GET_USERNS): the owning user namespace of a namespace descriptor.
    const NS_GET_USERNS: libc::c_ulong = 0xb701;

    fn ns_inode(path: &Path) -> Result<(u64, u64)> {
        let m = std::fs::metadata(path).map_err(io(path))?;
        Ok((m.dev(), m.ino()))
    }

    pub fn netns_owned_by(netns_file: &Path, userns_file: Option<&Path>) -> Result<bool> {
        let ns = std::fs::File::open(netns_file).map_err(io(netns_file))?;
        // SAFETY: a plain ioctl on an open descriptor; it returns a new descriptor or -1.
        let owner = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_USERNS as _) };
        if owner < 0 {
            return Err(io(netns_file)(std::io::Error::last_os_error()));
        }
        // SAFETY: the ioctl returned a fresh descriptor that nothing else owns.
        let owner = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(owner) };
        let m = owner.metadata().map_err(io(netns_file))?;
        let want = match userns_file {
            Some(p) => ns_inode(p)?,
            None => ns_inode(Path::new("/proc/self/ns/user"))?,
        };
        Ok((m.dev(), m.ino()) == want)
    }

    pub fn release_file(file: &Path) -> Result<()> {
        match nix::mount::umount2(file, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(io(file)(e.into())),
        }
        match std::fs::remove_file(file) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(file)(e)),
        }
    }

    fn bind(src: &Path, dst: &Path) -> Result<()> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dst)
            .map_err(io(dst))?;
        nix::mount::mount(
            Some(src),
            dst,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io(dst)(e.into()))
    }

    pub fn create_persistent(
        userns_file: &Path,
        netns_file: &Path,
        host_id: u32,
        size: u32,
    ) -> Result<()> {
        use nix::sys::wait::waitpid;
        use nix::unistd::{fork, pipe, read, write, ForkResult};
        let (ready_r, ready_w) = pipe().map_err(|e| RuntimeError::Other(format!("pipe: {e}")))?;
        let (done_r, done_w) = pipe().map_err(|e| RuntimeError::Other(format!("pipe: {e}")))?;
        // SAFETY: the child only makes raw system calls (unshare, write, read, _exit), which
        // are async-signal-safe, so forking a multi-threaded process is sound.
        let child = match unsafe { fork() } {
            Err(e) => return Err(RuntimeError::Other(format!("fork: {e}"))),
            Ok(ForkResult::Child) => {
                let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNET;
                // SAFETY: raw system calls on descriptors this process owns.
                unsafe {
                    let status: u8 = if libc::unshare(flags) == 0 { 0 } else { 1 };
                    libc::write(ready_w.as_raw_fd(), [status].as_ptr().cast(), 1);
                    let mut b = [0u8; 1];
                    libc::read(done_r.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                    libc::_exit(0);
                }
            }
            Ok(ForkResult::Parent { child }) => child,
        };
        drop(ready_w);
        drop(done_r);
        let result = (|| -> Result<()> {
            let mut status = [1u8; 1];
            let n = read(&ready_r, &mut status).map_err(|e| {
                RuntimeError::Other(format!("reading from the namespace holder: {e}"))
            })?;
            if n != 1 || status[0] != 0 {
                return Err(RuntimeError::Other(
                    "creating a user and network namespace failed (unshare)".into(),
                ));
            }
            let proc = Path::new("/proc").join(child.as_raw().to_string());
            let map = format!("0 {host_id} {size}\n");
            for file in ["uid_map", "gid_map"] {
                let p = proc.join(file);
                std::fs::write(&p, &map).map_err(io(&p))?;
            }
            bind(&proc.join("ns/user"), userns_file)?;
            if let Err(e) = bind(&proc.join("ns/net"), netns_file) {
                let _ = release_file(userns_file);
                return Err(e);
            }
            Ok(())
        })();
        let _ = write(&done_w, &[0]);
        drop(done_w);
        let _ = waitpid(child, None);
        if result.is_err() {
            let _ = std::fs::remove_file(netns_file);
            let _ = release_file(userns_file);
        }
        result
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{IdPool, ShiftStats};
    use crate::{Result, RuntimeError};
    use std::path::Path;

    fn unsupported<T>() -> Result<T> {
        Err(RuntimeError::Unsupported(
            "user namespaces are a Linux feature".into(),
        ))
    }

    pub fn shift_tree(_: &Path, _: &IdPool, _: Option<u32>) -> Result<ShiftStats> {
        unsupported()
    }

    pub fn netns_owned_by(_: &Path, _: Option<&Path>) -> Result<bool> {
        unsupported()
    }

    pub fn release_file(_: &Path) -> Result<()> {
        unsupported()
    }

    pub fn create_persistent(_: &Path, _: &Path, _: u32, _: u32) -> Result<()> {
        unsupported()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: IdPool = IdPool {
        start: DEFAULT_POOL_START,
        slots: DEFAULT_POOL_SLOTS,
    };

    #[test]
    fn subid_files_parse_and_name_bad_lines() {
        let text = "# comment\nalice:100000:65536\n\n1000:165536:65536\n";
        let v = parse_subid(text, "/etc/subuid").unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].owner, "1000");
        assert_eq!(v[0].start, 100000);
        for (bad, want) in [
            (
                "alice:100000\n",
                "/etc/subuid:1: expected owner:start:count",
            ),
            (
                "ok:1:1\nbob:x:65536\n",
                "/etc/subuid:2: start is not a number",
            ),
            ("bob:1:-5\n", "/etc/subuid:1: count is not a number"),
            (":1:1\n", "/etc/subuid:1: empty owner"),
            ("a:1:1:1\n", "/etc/subuid:1: expected owner:start:count"),
        ] {
            let e = parse_subid(bad, "/etc/subuid").unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }

    #[test]
    fn pool_comes_from_the_warren_entries_or_the_default() {
        let users = "alice:100000:65536\nbob:165536:65536\n";
        assert_eq!(IdPool::from_subid(users, users).unwrap(), POOL);
        assert_eq!(IdPool::from_subid("", "").unwrap(), POOL);
        let own = "alice:100000:65536\nwarren:1000000:655360\n";
        assert_eq!(
            IdPool::from_subid(own, own).unwrap(),
            IdPool {
                start: 1_000_000,
                slots: 10
            }
        );
        let err = |u: &str, g: &str| IdPool::from_subid(u, g).unwrap_err().to_string();
        assert!(err(own, users).contains("/etc/subgid has none"));
        assert!(err(users, own).contains("/etc/subuid has none"));
        assert!(err(own, "warren:1000000:65536\n").contains("different ranges"));
        assert!(err("warren:0:65536\n", "warren:0:65536\n").contains("at or above 65536"));
        assert!(err("warren:100000:1000\n", "warren:100000:1000\n").contains("holds 1000 ids"));
        let huge = "warren:4294900000:655360\n";
        assert!(err(huge, huge).contains("beyond the largest id"));
        // A default pool another user's range overlaps is refused, naming the entry.
        let clash = "carol:1879100000:65536\n";
        let e = err(clash, "");
        assert!(e.contains("\"carol\"") && e.contains("/etc/subuid"), "{e}");
    }

    #[test]
    fn ranges_do_not_overlap_and_ids_map_back() {
        assert_eq!(POOL.base(0), Some(DEFAULT_POOL_START));
        assert_eq!(POOL.base(1), Some(DEFAULT_POOL_START + 65536));
        assert_eq!(POOL.base(DEFAULT_POOL_SLOTS - 1), Some(0x7fff_0000));
        assert_eq!(POOL.base(DEFAULT_POOL_SLOTS), None);
        let b3 = POOL.base(3).unwrap();
        assert_eq!(POOL.container_id(0), Some(0));
        assert_eq!(POOL.container_id(65534), Some(65534));
        assert_eq!(POOL.container_id(b3 + 33), Some(33));
        assert_eq!(POOL.container_id(100_000), None);
        assert_eq!(POOL.container_id(u32::MAX), None);
        // Shifting is idempotent and moves ids between ranges.
        assert_eq!(POOL.shift(33, Some(b3)), b3 + 33);
        assert_eq!(POOL.shift(b3 + 33, Some(b3)), b3 + 33);
        let b7 = POOL.base(7).unwrap();
        assert_eq!(POOL.shift(b3 + 33, Some(b7)), b7 + 33);
        assert_eq!(POOL.shift(b7 + 33, None), 33);
        assert_eq!(POOL.shift(100_000, Some(b7)), 100_000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn shift_tree_reowns_every_inode_and_keeps_special_bits() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test chowns files: run it as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/passwd"), "x").unwrap();
        std::fs::write(root.join("suid"), "x").unwrap();
        std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::symlink("etc/passwd", root.join("link")).unwrap();
        std::fs::hard_link(root.join("etc/passwd"), root.join("hard")).unwrap();
        std::os::unix::fs::lchown(root.join("etc/sub"), Some(33), Some(50)).unwrap();
        let base = POOL.base(2).unwrap();
        let stats = shift_tree(&root, &POOL, Some(base)).unwrap();
        assert_eq!(stats.visited, 7);
        let owner = |p: &str| {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        for p in ["", "etc", "etc/passwd", "hard", "link", "suid"] {
            assert_eq!(owner(p), (base, base), "{p}");
        }
        assert_eq!(owner("etc/sub"), (base + 33, base + 50));
        let mode = std::fs::metadata(root.join("suid")).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o4755);
        // Again: nothing to do.
        assert_eq!(shift_tree(&root, &POOL, Some(base)).unwrap().changed, 0);
        // Back to plain ids.
        shift_tree(&root, &POOL, None).unwrap();
        assert_eq!(owner("etc/sub"), (33, 50));
        assert_eq!(owner("link"), (0, 0));
        assert!(shift_tree(&dir.path().join("missing"), &POOL, None).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn persistent_namespaces_are_owned_and_released() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test creates namespaces and bind mounts: run it as root");
        }
        let dir = tempfile::tempdir().unwrap();
        let (user, net) = (dir.path().join("user"), dir.path().join("net"));
        let base = POOL.base(4095).unwrap();
        create_persistent(&user, &net, base, IDS_PER_WORKLOAD).unwrap();
        let cleanup = || {
            release_file(&net).unwrap();
            release_file(&user).unwrap();
        };
        let owned = netns_owned_by(&net, Some(&user));
        let by_host = netns_owned_by(&net, None);
        let mapped = warren_exec::Executor::run(
            &warren_exec::HostExecutor,
            &warren_exec::Cmd::new("nsenter")
                .arg(format!("--user={}", user.display()))
                .args(["cat", "/proc/self/uid_map"]),
        );
        cleanup();
        assert!(
            owned.unwrap(),
            "the network namespace belongs to the user namespace"
        );
        assert!(!by_host.unwrap());
        let mapped = mapped.expect("nsenter (util-linux) is needed for this test");
        let fields: Vec<String> = mapped
            .stdout_str()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(fields, ["0", &base.to_string(), "65536"]);
        // Released: nothing mounted, the files are gone; releasing again is no error.
        assert!(!user.exists() && !net.exists());
        release_file(&user).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&dir.path().display().to_string()));
        // A missing directory is an error, and nothing is left behind.
        let missing = dir.path().join("no/such");
        assert!(create_persistent(&missing.join("u"), &missing.join("n"), base, 65536).is_err());
    }
}
