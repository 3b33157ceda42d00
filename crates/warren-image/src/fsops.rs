//! File-system operations confined to one directory tree.
//!
//! Every operation takes a directory file descriptor and a single path component, and every
//! directory is opened with `O_NOFOLLOW | O_DIRECTORY`, so the kernel never follows a symbolic
//! link on our behalf. Symbolic links met in the middle of a path are resolved here, inside the
//! root, the way the kernel's `openat2(RESOLVE_IN_ROOT)` (and a `chroot`) would: an absolute
//! target restarts at the root and `..` never climbs above it. Nothing can therefore be created,
//! written or removed outside the root, whatever links the tree holds. This works on Linux and
//! FreeBSD alike and needs no `unsafe`.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::EntryProblem;

/// Symbolic links followed while resolving one path, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINK_HOPS: u32 = 40;

/// (device, inode) of a directory: the identity of "where" an entry lives.
pub(crate) type DirId = (u64, u64);

/// What a name is, seen without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    Symlink,
    Other,
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn kind_of(st: &FileStat) -> Kind {
    let fmt = SFlag::from_bits_truncate(st.st_mode as libc::mode_t & SFlag::S_IFMT.bits());
    if fmt == SFlag::S_IFDIR {
        Kind::Dir
    } else if fmt == SFlag::S_IFLNK {
        Kind::Symlink
    } else {
        Kind::Other
    }
}

/// A `Mode` from the permission bits of a tar header (`0o7777`).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(crate) fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate((bits & 0o7777) as libc::mode_t)
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(crate) fn dir_id(fd: &OwnedFd) -> Result<DirId, Errno> {
    let st = fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

/// Identity, access time and modification time of an open directory.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(crate) fn dir_times(
    fd: &OwnedFd,
) -> Result<(DirId, nix::sys::time::TimeSpec, nix::sys::time::TimeSpec), Errno> {
    use nix::sys::time::TimeSpec;
    let st = fstat(fd)?;
    Ok((
        (st.st_dev as u64, st.st_ino as u64),
        TimeSpec::new(st.st_atime as _, st.st_atime_nsec as _),
        TimeSpec::new(st.st_mtime as _, st.st_mtime_nsec as _),
    ))
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens the directory `name` in `dir` without following a symbolic link.
pub(crate) fn open_dir_nofollow(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(dir, name, dir_flags(), Mode::empty())
}

/// What `name` in `dir` is, without following it; `None` when it does not exist.
pub(crate) fn lookup(dir: &OwnedFd, name: &OsStr) -> Result<Option<Kind>, Errno> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(kind_of(&st))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The root of a confined tree.
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `path` (which must be a directory; a symlink given by the caller is followed).
    pub(crate) fn open(path: &Path) -> std::io::Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn dup(&self) -> Result<OwnedFd, EntryProblem> {
        self.fd.try_clone().map_err(|e| EntryProblem::io("dup", e))
    }

    /// Reopens the symlink-free path `names` from the root.
    fn walk_plain(&self, names: &[OsString]) -> Result<OwnedFd, EntryProblem> {
        let mut cur = self.dup()?;
        for n in names {
            cur = open_dir_nofollow(&cur, n).map_err(|e| EntryProblem::io("open directory", e))?;
        }
        Ok(cur)
    }

    /// Resolves the directory `comps` inside the root. With `follow`, symbolic links are followed
    /// inside the root (absolute targets start at the root, `..` stops at it); without it, a
    /// symbolic link on the way is refused ([`EntryProblem::BelowSymlink`]). With `create`, missing
    /// directories are made (mode 0755) and `on_create` is told about each, before
    /// ([`Create::Before`]) and after ([`Create::Done`]); without it a missing component gives
    /// `Ok(None)`.
    pub(crate) fn resolve_dir(
        &self,
        comps: &[OsString],
        create: bool,
        follow: bool,
        on_create: &mut dyn FnMut(Create<'_>) -> Result<(), EntryProblem>,
    ) -> Result<Option<Resolved>, EntryProblem> {
        let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
        // The real (symlink-free) path of `cur` below the root.
        let mut names: Vec<OsString> = Vec::new();
        let mut cur = self.dup()?;
        let mut hops = 0;
        let mut retries = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                if names.pop().is_some() {
                    cur = self.walk_plain(&names)?;
                }
                continue;
            }
            match open_dir_nofollow(&cur, &c) {
                Ok(fd) => {
                    names.push(c);
                    cur = fd;
                    retries = 0;
                }
                Err(Errno::ENOENT) => {
                    if !create {
                        return Ok(None);
                    }
                    // A dangling symlink is handled by the branch below: ENOENT here means
                    // the name itself is missing.
                    retries += 1;
                    if retries > 2 {
                        return Err(EntryProblem::io("open directory", Errno::ENOENT));
                    }
                    on_create(Create::Before {
                        parent: &cur,
                        parent_path: &names,
                    })?;
                    match mkdirat(&cur, c.as_os_str(), mode(0o755)) {
                        Ok(()) => on_create(Create::Done {
                            parent: &cur,
                            name: &c,
                        })?,
                        Err(Errno::EEXIST) => {}
                        Err(e) => return Err(EntryProblem::io("mkdir", e)),
                    }
                    queue.push_front(c);
                }
                Err(Errno::ELOOP | Errno::EMLINK | Errno::ENOTDIR) => {
                    let kind = lookup(&cur, &c)
                        .map_err(|e| EntryProblem::io("stat", e))?
                        .unwrap_or(Kind::Other);
                    let mut shown = names.clone();
                    shown.push(c.clone());
                    if kind != Kind::Symlink {
                        return Err(EntryProblem::NotADirectory(join(&shown)));
                    }
                    if !follow {
                        return Err(EntryProblem::BelowSymlink(join(&shown)));
                    }
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(EntryProblem::SymlinkLoop);
                    }
                    let target = readlinkat(&cur, c.as_os_str())
                        .map_err(|e| EntryProblem::io("readlink", e))?;
                    let bytes = target.as_bytes();
                    if bytes.starts_with(b"/") {
                        names.clear();
                        cur = self.dup()?;
                    }
                    for part in bytes.split(|b| *b == b'/').rev() {
                        if !part.is_empty() {
                            queue.push_front(OsString::from_vec(part.to_vec()));
                        }
                    }
                }
                Err(e) => return Err(EntryProblem::io("open directory", e)),
            }
        }
        Ok(Some(Resolved {
            fd: cur,
            path: names,
        }))
    }
}

/// A resolved directory.
pub(crate) struct Resolved {
    pub fd: OwnedFd,
    /// Its path below the root without symbolic links.
    pub path: Vec<OsString>,
}

/// What [`Root::resolve_dir`] tells its caller about directories it creates.
pub(crate) enum Create<'a> {
    /// A directory is about to be made in `parent`, whose real path is `parent_path`.
    Before {
        parent: &'a OwnedFd,
        parent_path: &'a [OsString],
    },
    /// `name` was made in `parent`.
    Done {
        parent: &'a OwnedFd,
        name: &'a OsStr,
    },
}

/// `a/b/c` for messages.
pub(crate) fn join(comps: &[OsString]) -> String {
    comps
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list_dir(dir: &OwnedFd) -> Result<Vec<OsString>, Errno> {
    // `Dir` takes ownership of its descriptor and moves its offset: give it a fresh one.
    let fd = openat(dir, ".", dir_flags(), Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e?;
        let name = e.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(out)
}

/// Removes `name` from `dir`, recursively when it is a directory. Links are removed, never
/// followed. A missing name is not an error.
pub(crate) fn remove_at(dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    match lookup(dir, name)? {
        None => Ok(()),
        Some(Kind::Dir) => {
            let sub = open_dir_nofollow(dir, name)?;
            for child in list_dir(&sub)? {
                remove_at(&sub, &child)?;
            }
            drop(sub);
            unlinkat(dir, name, UnlinkatFlags::RemoveDir)
        }
        Some(_) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Err(Errno::ENOENT) => Ok(()),
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn no_create(_: Create<'_>) -> Result<(), EntryProblem> {
        Ok(())
    }

    fn comps(s: &str) -> Vec<OsString> {
        s.split('/').map(OsString::from).collect()
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("real/sub")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        symlink("/real", root_path.join("abs")).unwrap();
        symlink("../../../../real", root_path.join("climb")).unwrap();
        symlink(tmp.path().join("outside"), root_path.join("escape")).unwrap();
        symlink("loop2", root_path.join("loop1")).unwrap();
        symlink("loop1", root_path.join("loop2")).unwrap();
        let root = Root::open(&root_path).unwrap();
        let real = dir_id(&open_dir_nofollow(root.fd(), OsStr::new("real")).unwrap()).unwrap();

        for p in ["abs", "climb", "real/sub/../../abs"] {
            let r = root
                .resolve_dir(&comps(p), false, true, &mut no_create)
                .unwrap()
                .unwrap();
            assert_eq!(dir_id(&r.fd).unwrap(), real, "{p}");
            assert_eq!(r.path, comps("real"));
        }
        // An absolute link to a host directory is read as a path inside the root.
        assert!(root
            .resolve_dir(&comps("escape"), false, true, &mut no_create)
            .unwrap()
            .is_none());
        let mut made = Vec::new();
        let r = root
            .resolve_dir(&comps("escape/x"), true, true, &mut |ev| {
                if let Create::Done { name, .. } = ev {
                    made.push(name.to_os_string());
                }
                Ok(())
            })
            .unwrap()
            .unwrap();
        assert_eq!(made.len(), tmp.path().components().count() + 1);
        assert!(root_path
            .join(tmp.path().strip_prefix("/").unwrap())
            .join("outside/x")
            .is_dir());
        assert!(!tmp.path().join("outside/x").exists());
        drop(r);
        assert!(matches!(
            root.resolve_dir(&comps("loop1/x"), true, true, &mut no_create),
            Err(EntryProblem::SymlinkLoop)
        ));
    }

    #[test]
    fn remove_at_does_not_follow_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("d/e")).unwrap();
        std::fs::create_dir_all(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/keep"), "x").unwrap();
        symlink(tmp.path().join("outside"), root_path.join("d/e/link")).unwrap();
        let root = Root::open(&root_path).unwrap();
        remove_at(root.fd(), OsStr::new("d")).unwrap();
        assert!(!root_path.join("d").exists());
        assert!(tmp.path().join("outside/keep").exists());
        remove_at(root.fd(), OsStr::new("missing")).unwrap();
    }
}
