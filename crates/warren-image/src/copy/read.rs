//! The tar stream of a path inside a root ([`get`]).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};

use super::{locate, open_located_dir, CopyError, CopyPath, IdMap, Mounted, Shape, Tree, Trees};
use crate::fsops::{list_dir, Kind};

/// Writes the tar stream of `path` in `trees` to `out` and says which [`Shape`] it has:
/// [`Shape::Entry`] under the path's last name (a final symbolic link is sent as a link),
/// or, for `DIR/.` and `/`, [`Shape::Contents`] (the final link followed). Owners are shown
/// through `ids` when given.
pub fn get(
    trees: &[Tree],
    path: &CopyPath,
    ids: Option<IdMap>,
    out: impl Write,
) -> Result<Shape, CopyError> {
    let trees = Trees::open(trees);
    let at = locate(&trees, &path.comps, path.dir)?;
    if at.kind.is_none() {
        return Err(CopyError::NotFound(path.display()));
    }
    let mut w = Walker {
        b: tar::Builder::new(out),
        ids,
        links: HashMap::new(),
        trees: &trees,
        cur: at.parent_path.clone(),
    };
    let shape = if path.contents || path.comps.is_empty() {
        let dir = open_located_dir(&at)?;
        w.cur.extend(at.name.clone());
        w.dir(&dir, Path::new("."), &at.shown())?;
        Shape::Contents
    } else {
        if path.dir && at.kind != Some(Kind::Dir) {
            return Err(CopyError::NotADirectory(path.display()));
        }
        let top = path.name().cloned().unwrap_or_else(|| ".".into());
        match &at.name {
            Some(name) => w.entry(&at.parent, name, Path::new(&top), &at.shown())?,
            None => w.dir(&at.parent, Path::new(&top), &at.shown())?,
        }
        Shape::Entry
    };
    w.b.into_inner()
        .and_then(|mut o| o.flush())
        .map_err(|e| CopyError::io("write", "archive", e))?;
    Ok(shape)
}

struct Walker<'t, W: Write> {
    b: tar::Builder<W>,
    ids: Option<IdMap>,
    /// (device, inode) of files with several links → the name first sent.
    links: HashMap<(u64, u64), PathBuf>,
    trees: &'t Trees<'t>,
    /// The workload's path of the directory being walked (or of an entry's parent).
    cur: Vec<OsString>,
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn fmt_of(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode as libc::mode_t & SFlag::S_IFMT.bits())
}

impl<W: Write> Walker<'_, W> {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn header(&self, st: &FileStat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode as u32 & 0o7777);
        let (uid, gid) = match self.ids {
            Some(m) => (
                m.to_workload(st.st_uid as u32),
                m.to_workload(st.st_gid as u32),
            ),
            None => (st.st_uid as u32, st.st_gid as u32),
        };
        h.set_uid(uid as u64);
        h.set_gid(gid as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn put_err(shown: &str) -> impl Fn(std::io::Error) -> CopyError + '_ {
        move |e| CopyError::io("archive", shown.to_string(), e)
    }

    /// The directory `dir` (already open) as `name`, then everything below it.
    fn dir(&mut self, dir: &OwnedFd, name: &Path, shown: &str) -> Result<(), CopyError> {
        let st = fstat(dir).map_err(|e| CopyError::io("stat", shown, e))?;
        let mut h = self.header(&st, tar::EntryType::Directory);
        self.b
            .append_data(&mut h, name, std::io::empty())
            .map_err(Self::put_err(shown))?;
        let mut children = list_dir(dir).map_err(|e| CopyError::io("list", shown, e))?;
        children.sort();
        for c in children {
            let child_shown = format!("{}/{}", shown.trim_end_matches('/'), c.to_string_lossy());
            self.cur.push(c.clone());
            let r = if self.trees.is_mount_point(&self.cur) {
                // What the workload sees there is another tree (or nothing the host has).
                match self.trees.mounted(&self.cur)? {
                    Mounted::Dir(fd) => self.dir(&fd, &name.join(&c), &child_shown),
                    Mounted::File(parent, host_name) => {
                        self.cur.pop();
                        let r = self.entry(&parent, &host_name, &name.join(&c), &child_shown);
                        self.cur.push(c.clone());
                        r
                    }
                    Mounted::Opaque => Ok(()),
                }
            } else {
                self.cur.pop();
                let r = self.entry(dir, &c, &name.join(&c), &child_shown);
                self.cur.push(c.clone());
                r
            };
            self.cur.pop();
            r?;
        }
        Ok(())
    }

    /// The name `name` in `parent`, not followed, as `tar_name`.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    fn entry(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        tar_name: &Path,
        shown: &str,
    ) -> Result<(), CopyError> {
        let st = match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone while walking (a running workload changes its files): left out.
            Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(CopyError::io("stat", shown, e)),
        };
        let fmt = fmt_of(&st);
        if fmt == SFlag::S_IFDIR {
            let sub = crate::fsops::open_dir_nofollow(parent, name)
                .map_err(|e| CopyError::io("open", shown, e))?;
            self.cur.push(name.to_os_string());
            let r = self.dir(&sub, tar_name, shown);
            self.cur.pop();
            return r;
        }
        if fmt == SFlag::S_IFLNK {
            let target: OsString =
                readlinkat(parent, name).map_err(|e| CopyError::io("readlink", shown, e))?;
            let mut h = self.header(&st, tar::EntryType::Symlink);
            return self
                .b
                .append_link(&mut h, tar_name, Path::new(&target))
                .map_err(Self::put_err(shown));
        }
        if fmt == SFlag::S_IFREG {
            let key = (st.st_dev as u64, st.st_ino as u64);
            if st.st_nlink > 1 {
                if let Some(first) = self.links.get(&key).cloned() {
                    let mut h = self.header(&st, tar::EntryType::Link);
                    return self
                        .b
                        .append_link(&mut h, tar_name, &first)
                        .map_err(Self::put_err(shown));
                }
                self.links.insert(key, tar_name.to_path_buf());
            }
            let fd = openat(
                parent,
                name,
                OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
                Mode::empty(),
            )
            .map_err(|e| CopyError::io("open", shown, e))?;
            let file = File::from(fd);
            let st = fstat(&file).map_err(|e| CopyError::io("stat", shown, e))?;
            if fmt_of(&st) != SFlag::S_IFREG {
                return Ok(());
            }
            let size = st.st_size.max(0) as u64;
            let mut h = self.header(&st, tar::EntryType::Regular);
            h.set_size(size);
            // A file that shrinks while it is read is padded, so the stream stays well formed.
            let body = file.take(size).chain(std::io::repeat(0)).take(size);
            return self
                .b
                .append_data(&mut h, tar_name, body)
                .map_err(Self::put_err(shown));
        }
        let kind = if fmt == SFlag::S_IFCHR {
            tar::EntryType::Char
        } else if fmt == SFlag::S_IFBLK {
            tar::EntryType::Block
        } else if fmt == SFlag::S_IFIFO {
            tar::EntryType::Fifo
        } else {
            // Sockets have no tar form.
            return Ok(());
        };
        let mut h = self.header(&st, kind);
        if kind != tar::EntryType::Fifo {
            let dev = st.st_rdev as u64;
            let _ = h.set_device_major(nix_major(dev));
            let _ = h.set_device_minor(nix_minor(dev));
        }
        self.b
            .append_data(&mut h, tar_name, std::io::empty())
            .map_err(Self::put_err(shown))
    }
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn nix_major(dev: u64) -> u32 {
    libc::major(dev as libc::dev_t) as u32
}

#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn nix_minor(dev: u64) -> u32 {
    libc::minor(dev as libc::dev_t) as u32
}
