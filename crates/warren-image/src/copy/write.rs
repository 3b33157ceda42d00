//! Placing a tar stream at a path inside a root ([`put`]).

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, fchmodat, fstat, fstatat, mkdirat, FchmodatFlags, FileStat, Mode};
use nix::unistd::{fchown, fchownat, Gid, Uid};

use super::{locate, open_located_dir, CopyError, CopyPath, IdMap, Shape, Tree, Trees};
use crate::fsops::{list_dir, lookup, open_dir_nofollow, remove_at, Kind};
use crate::{Ownership, TreeOptions};

/// How [`put`] places a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutOptions {
    /// What the stream holds.
    pub shape: Shape,
    /// The destination must be an existing directory (a stream of unknown shape, from stdin).
    pub require_dir: bool,
    /// Keep the archive's owners (through `ids` when given); otherwise files belong to
    /// `owner`, or to the caller when that is `None`.
    pub keep_owners: bool,
    /// The workload's user namespace.
    pub ids: Option<IdMap>,
    /// Owner of everything placed when owners are not kept.
    pub owner: Option<(u32, u32)>,
    /// Bytes of the stream at most.
    pub max_bytes: Option<u64>,
}

/// What [`put`] placed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutStats {
    /// Tar entries.
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
}

/// Unpacks `stream` and places it at `path` in `trees` (see the
/// [module documentation](crate::copy)). On any error nothing is left in the tree.
pub fn put(
    trees: &[Tree],
    path: &CopyPath,
    stream: impl Read,
    opts: &PutOptions,
) -> Result<PutStats, CopyError> {
    let trees = Trees::open(trees);
    let at = locate(&trees, &path.comps, true)?;
    if trees.readonly(at.tree) {
        return Err(CopyError::ReadOnly(path.display()));
    }
    let into = at.kind == Some(Kind::Dir);
    if !into {
        if at.kind.is_some() && (path.dir || opts.require_dir) {
            return Err(CopyError::NotADirectory(path.display()));
        }
        if opts.require_dir {
            return Err(CopyError::NotFound(path.display()));
        }
    }
    // The directory the stream goes into (Into) or beside (As), and its host path.
    let shown_target;
    let (target, target_host, as_name) = if into {
        shown_target = at.shown();
        let host = match &at.name {
            Some(n) => at.host.join(n),
            None => at.host.clone(),
        };
        (open_located_dir(&at)?, host, None)
    } else {
        shown_target = format!("/{}", crate::fsops::join(&at.parent_path));
        let name = at.name.clone().expect("only directories have no name");
        (
            at.parent
                .try_clone()
                .map_err(|e| CopyError::io("dup", at.shown(), e))?,
            at.host.clone(),
            Some(name),
        )
    };
    let tmp_name = OsString::from(format!(
        ".warren-cp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    mkdirat(
        &target,
        tmp_name.as_os_str(),
        Mode::from_bits_truncate(0o700),
    )
    .map_err(|e| CopyError::io("mkdir in", shown_target.clone(), e))?;
    let result = (|| {
        let tmp = open_dir_nofollow(&target, &tmp_name)
            .map_err(|e| CopyError::io("open", shown_target.clone(), e))?;
        fchmod(&tmp, Mode::from_bits_truncate(0o755))
            .map_err(|e| CopyError::io("chmod", shown_target.clone(), e))?;
        let tmp_host = target_host.join(&tmp_name);
        let stats = crate::unpack_tree(
            &fd_path(&tmp, tmp_host),
            stream,
            &TreeOptions {
                max_bytes: opts.max_bytes,
                ownership: if opts.keep_owners {
                    Ownership::Auto
                } else {
                    Ownership::Ignore
                },
                ..TreeOptions::default()
            },
        )?;
        let owners = Owners {
            keep: opts.keep_owners,
            ids: opts.ids,
            owner: opts.owner,
        };
        owners.apply(&tmp, ".")?;
        let mut moves: Vec<(OwnedFd, OsString, OsString)> = Vec::new();
        match (opts.shape, &as_name) {
            (Shape::Entry, _) => {
                let tops = list_dir(&tmp).map_err(|e| CopyError::io("list", "archive", e))?;
                if tops.len() != 1 {
                    return Err(CopyError::NotOneEntry(tops.len()));
                }
                let top = tops[0].clone();
                let dest = as_name.clone().unwrap_or_else(|| top.clone());
                if as_name.is_some()
                    && path.dir
                    && lookup(&tmp, &top).ok().flatten() != Some(Kind::Dir)
                {
                    return Err(CopyError::NotFound(path.display()));
                }
                moves.push((dup(&tmp)?, top, dest));
            }
            (Shape::Contents, None) => {
                for c in list_dir(&tmp).map_err(|e| CopyError::io("list", "archive", e))? {
                    moves.push((dup(&tmp)?, c.clone(), c));
                }
            }
            (Shape::Contents, Some(name)) => {
                moves.push((dup(&target)?, tmp_name.clone(), name.clone()));
            }
        }
        for (src, name, dest) in &moves {
            check(
                &trees,
                src,
                name,
                &target,
                dest,
                &join_shown(&shown_target, dest),
            )?;
        }
        for (src, name, dest) in &moves {
            place(src, name, &target, dest, &join_shown(&shown_target, dest))?;
        }
        Ok(PutStats {
            entries: stats.entries,
            files: stats.files,
        })
    })();
    let _ = remove_at(&target, &tmp_name);
    result
}

fn join_shown(dir: &str, name: &OsStr) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name.to_string_lossy())
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, CopyError> {
    fd.try_clone()
        .map_err(|e| CopyError::io("dup", "directory", e))
}

/// A path the kernel opens to exactly the directory `fd` is (no name looked up again on
/// Linux); elsewhere its path on the host.
fn fd_path(fd: &OwnedFd, host: PathBuf) -> PathBuf {
    let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if cfg!(target_os = "linux") && proc.exists() {
        proc
    } else {
        host
    }
}

/// Refuses a placement that would put a directory over a non-directory or the other way
/// round, anywhere below.
fn check(
    trees: &Trees<'_>,
    src: &OwnedFd,
    name: &OsStr,
    dst: &OwnedFd,
    dest: &OsStr,
    shown: &str,
) -> Result<(), CopyError> {
    // The workload sees another file system there: what this tree holds under it is hidden.
    if CopyPath::parse(shown).is_ok_and(|p| trees.is_mount_point(&p.comps)) {
        return Err(CopyError::CrossesMount(shown.to_string()));
    }
    let sk = lookup(src, name).map_err(|e| CopyError::io("stat", shown, e))?;
    let dk = lookup(dst, dest).map_err(|e| CopyError::io("stat", shown, e))?;
    match (sk == Some(Kind::Dir), dk) {
        (_, None) => Ok(()),
        (true, Some(Kind::Dir)) => {
            let s = open_dir_nofollow(src, name).map_err(|e| CopyError::io("open", shown, e))?;
            let d = open_dir_nofollow(dst, dest).map_err(|e| CopyError::io("open", shown, e))?;
            for c in list_dir(&s).map_err(|e| CopyError::io("list", shown, e))? {
                check(trees, &s, &c, &d, &c, &join_shown(shown, &c))?;
            }
            Ok(())
        }
        (true, Some(_)) => Err(CopyError::DirOntoFile(shown.to_string())),
        (false, Some(Kind::Dir)) => Err(CopyError::FileOntoDir(shown.to_string())),
        (false, Some(_)) => Ok(()),
    }
}

/// Moves `name` from `src` to `dest` in `dst`: a rename, or for a directory over a directory
/// its entries one by one, then its mode, owner and times.
fn place(
    src: &OwnedFd,
    name: &OsStr,
    dst: &OwnedFd,
    dest: &OsStr,
    shown: &str,
) -> Result<(), CopyError> {
    let sk = lookup(src, name).map_err(|e| CopyError::io("stat", shown, e))?;
    let dk = lookup(dst, dest).map_err(|e| CopyError::io("stat", shown, e))?;
    if sk == Some(Kind::Dir) && dk == Some(Kind::Dir) {
        let s = open_dir_nofollow(src, name).map_err(|e| CopyError::io("open", shown, e))?;
        let d = open_dir_nofollow(dst, dest).map_err(|e| CopyError::io("open", shown, e))?;
        for c in list_dir(&s).map_err(|e| CopyError::io("list", shown, e))? {
            place(&s, &c, &d, &c, &join_shown(shown, &c))?;
        }
        let st = fstat(&s).map_err(|e| CopyError::io("stat", shown, e))?;
        copy_dir_meta(&st, &d).map_err(|e| CopyError::io("set metadata of", shown, e))?;
        return Ok(());
    }
    nix::fcntl::renameat(src, name, dst, dest).map_err(|e| CopyError::io("rename to", shown, e))
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn copy_dir_meta(st: &FileStat, d: &OwnedFd) -> Result<(), Errno> {
    fchown(
        d,
        Some(Uid::from_raw(st.st_uid as u32)),
        Some(Gid::from_raw(st.st_gid as u32)),
    )?;
    fchmod(
        d,
        Mode::from_bits_truncate(st.st_mode as libc::mode_t & 0o7777),
    )?;
    let times = [
        nix::sys::time::TimeSpec::new(st.st_atime as _, st.st_atime_nsec as _),
        nix::sys::time::TimeSpec::new(st.st_mtime as _, st.st_mtime_nsec as _),
    ];
    nix::sys::stat::futimens(d, &times[0], &times[1])
}

/// The owner rule applied to an unpacked tree before it is placed.
struct Owners {
    keep: bool,
    ids: Option<IdMap>,
    owner: Option<(u32, u32)>,
}

impl Owners {
    fn wanted(&self, uid: u32, gid: u32, shown: &str) -> Result<Option<(u32, u32)>, CopyError> {
        if !self.keep {
            return Ok(self.owner);
        }
        let Some(m) = self.ids else {
            return Ok(None);
        };
        let map = |id: u32| {
            m.to_host(id).ok_or_else(|| CopyError::OutsideRange {
                id,
                path: shown.to_string(),
                size: m.size,
            })
        };
        Ok(Some((map(uid)?, map(gid)?)))
    }

    /// Re-owns `dir` and everything below it; set-id bits, which `chown` clears, are put
    /// back.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn apply(&self, dir: &OwnedFd, shown: &str) -> Result<(), CopyError> {
        if !self.keep && self.owner.is_none() || self.keep && self.ids.is_none() {
            return Ok(());
        }
        let st = fstat(dir).map_err(|e| CopyError::io("stat", shown, e))?;
        self.set(dir, None, &st, shown)?;
        for c in list_dir(dir).map_err(|e| CopyError::io("list", shown, e))? {
            let child_shown = join_shown(shown, &c);
            let st = fstatat(dir, c.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| CopyError::io("stat", child_shown.clone(), e))?;
            if lookup(dir, &c).ok().flatten() == Some(Kind::Dir) {
                let sub = open_dir_nofollow(dir, &c)
                    .map_err(|e| CopyError::io("open", child_shown.clone(), e))?;
                self.apply(&sub, &child_shown)?;
            } else {
                self.set(dir, Some(&c), &st, &child_shown)?;
            }
        }
        Ok(())
    }

    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn set(
        &self,
        fd: &OwnedFd,
        name: Option<&OsStr>,
        st: &FileStat,
        shown: &str,
    ) -> Result<(), CopyError> {
        let Some((uid, gid)) = self.wanted(st.st_uid as u32, st.st_gid as u32, shown)? else {
            return Ok(());
        };
        let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        let mode = st.st_mode as u32;
        let is_link = mode & libc::S_IFMT as u32 == libc::S_IFLNK as u32;
        let r = match name {
            None => fchown(fd, u, g),
            Some(n) => fchownat(fd, n, u, g, AtFlags::AT_SYMLINK_NOFOLLOW),
        };
        r.map_err(|e| CopyError::io("chown", shown, e))?;
        if !is_link && mode & 0o6000 != 0 {
            let m = Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t);
            match name {
                None => fchmod(fd, m),
                Some(n) => fchmodat(fd, n, m, FchmodatFlags::FollowSymlink),
            }
            .map_err(|e| CopyError::io("chmod", shown, e))?;
        }
        Ok(())
    }
}
