//! Copying files in and out of a root filesystem as tar streams (`warren cp`).
//!
//! A path is given as the workload sees it (`/etc/app.conf`) and resolved inside a root
//! directory on the host the way [`crate::fsops`] resolves layer entries: one component at a
//! time with `O_NOFOLLOW`, symbolic links followed inside the root (an absolute target starts
//! again at the root, `..` stops at it). Nothing outside the root is ever read or written,
//! whatever links the tree holds, on Linux and FreeBSD alike.
//!
//! - [`get`] writes a tar stream of one path: a file, link or directory under its own name
//!   ([`Shape::Entry`]), or a directory's contents (`DIR/.`, `/`: [`Shape::Contents`]).
//!   Owners are mapped back into the workload's ids ([`IdMap`]); device nodes and FIFOs are
//!   described, sockets left out, hard links kept as links.
//! - [`put`] places a tar stream at a path with Docker's `cp` rules: into an existing
//!   directory, or as the path itself when it does not exist (or is a file, which a file
//!   replaces). The stream is unpacked by [`crate::unpack_tree`] (absolute names, `..`, links
//!   leading outside, device nodes refused) into a hidden directory beside the destination,
//!   checked against the destination (a directory never replaces a non-directory or the
//!   other way round), and only then moved into place with `renameat`; a refused stream
//!   leaves nothing behind.

mod read;
mod write;

pub use read::get;

pub use write::{put, PutOptions, PutStats};

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::{EntryProblem, ImageError};
use crate::fsops::{lookup, Kind, Root};
use nix::errno::Errno;

/// A workload's user namespace: its id `n` is the host's `host_base + n`, for `n < size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub host_base: u32,
    pub size: u32,
}

/// The id a host id shows as inside a namespace without it.
pub const OVERFLOW_ID: u32 = 65534;

impl IdMap {
    /// The host id of the workload's id `id`, or `None` outside its range.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        (id < self.size).then(|| self.host_base + id)
    }

    /// The workload's id of the host id `id` ([`OVERFLOW_ID`] outside its range).
    pub fn to_workload(&self, id: u32) -> u32 {
        if id >= self.host_base && id - self.host_base < self.size {
            id - self.host_base
        } else {
            OVERFLOW_ID
        }
    }
}

/// What a copy's tar stream holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One file, link or directory under its own name (and what is below it).
    Entry,
    /// The contents of a directory (`./NAME`, or `NAME`), the directory itself as `./`.
    Contents,
}

/// A path inside a workload, as an operator writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPath {
    /// Components after lexical cleaning (`.` dropped, `..` applied, never above `/`).
    pub comps: Vec<OsString>,
    /// It ended in `/.` or is `/`: a directory's contents.
    pub contents: bool,
    /// It ended in `/` (or `/.`): it must be a directory.
    pub dir: bool,
}

impl CopyPath {
    /// Parses an absolute path; a relative one is refused (a workload has no working
    /// directory to copy against).
    pub fn parse(path: &str) -> Result<CopyPath, CopyError> {
        if !path.starts_with('/') {
            return Err(CopyError::Relative(path.to_string()));
        }
        if path.as_bytes().contains(&0) {
            return Err(CopyError::Invalid(path.to_string()));
        }
        let mut comps: Vec<OsString> = Vec::new();
        for c in path.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    comps.pop();
                }
                c => comps.push(OsString::from(c)),
            }
        }
        let contents = comps.is_empty() || path.ends_with("/.");
        let dir = contents || path.ends_with('/');
        Ok(CopyPath {
            comps,
            contents,
            dir,
        })
    }

    /// The path below `prefix` (components), if it lies there.
    pub fn strip(&self, prefix: &[OsString]) -> Option<CopyPath> {
        self.comps.starts_with(prefix).then(|| CopyPath {
            comps: self.comps[prefix.len()..].to_vec(),
            contents: self.contents,
            dir: self.dir,
        })
    }

    /// The path as text, `/` joined.
    pub fn display(&self) -> String {
        format!("/{}", crate::fsops::join(&self.comps))
    }

    /// The last component's name (the tar's top-level name of an [`Shape::Entry`] stream).
    pub fn name(&self) -> Option<&OsString> {
        self.comps.last()
    }
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("`{0}` is not an absolute path")]
    Relative(String),
    #[error("`{0}` is not a valid path")]
    Invalid(String),
    #[error("`{0}` does not exist")]
    NotFound(String),
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    #[error("cannot copy a directory onto the non-directory `{0}`")]
    DirOntoFile(String),
    #[error("cannot copy a non-directory onto the directory `{0}`")]
    FileOntoDir(String),
    #[error("the archive holds {0} top-level entries: several entries can only be copied into an existing directory")]
    NotOneEntry(usize),
    #[error("owner id {id} of `{path}` lies outside the workload's user namespace (0..{size})")]
    OutsideRange { id: u32, path: String, size: u32 },
    #[error(
        "{0} is a file system of the workload with no directory on the host; it cannot be copied"
    )]
    NoHostDirectory(String),
    #[error("`{0}` is a mount point inside what is copied: copy into it separately")]
    CrossesMount(String),
    #[error("`{0}` is read-only in the workload")]
    ReadOnly(String),
    #[error("`{path}`: {problem}")]
    Path { path: String, problem: EntryProblem },
    #[error("{0}")]
    Archive(#[from] ImageError),
    #[error("{op} `{path}`: {source}")]
    Io {
        op: &'static str,
        path: String,
        source: std::io::Error,
    },
}

impl CopyError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<String>,
        e: impl Into<std::io::Error>,
    ) -> Self {
        CopyError::Io {
            op,
            path: path.into(),
            source: e.into(),
        }
    }
}

/// A directory tree a workload's paths lead into: its root filesystem (at `/`) or a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Where the workload sees it (components of a cleaned absolute path; empty for `/`).
    pub at: Vec<OsString>,
    /// Its directory on the host (or the file, for a file bound over a file: read, never
    /// written); `None` for a file system with none (`/proc`, a tmpfs), which is refused
    /// when a path leads into it.
    pub source: Option<PathBuf>,
    /// Writing into it is refused.
    pub readonly: bool,
}

impl Tree {
    /// One writable tree at `/`.
    pub fn root(source: impl Into<PathBuf>) -> Vec<Tree> {
        vec![Tree {
            at: Vec::new(),
            source: Some(source.into()),
            readonly: false,
        }]
    }
}

/// The trees of a copy, opened.
pub(crate) struct Trees<'a> {
    trees: &'a [Tree],
    roots: Vec<Option<std::io::Result<Root>>>,
    /// For a tree that is a file: its host directory and name.
    files: Vec<Option<(Root, OsString)>>,
}

/// What is at a mount point, for a walk that reaches it.
pub(crate) enum Mounted {
    Dir(OwnedFd),
    /// A file bound there: its host directory and its name in it.
    File(OwnedFd, OsString),
    /// A file system with no host directory: left out.
    Opaque,
}

fn shown_of(comps: &[OsString]) -> String {
    format!("/{}", crate::fsops::join(comps))
}

impl<'a> Trees<'a> {
    pub(crate) fn open(trees: &'a [Tree]) -> Trees<'a> {
        let file_of = |s: &PathBuf| -> Option<(Root, OsString)> {
            if !std::fs::metadata(s).ok()?.is_file() {
                return None;
            }
            Some((Root::open(s.parent()?).ok()?, s.file_name()?.to_os_string()))
        };
        let files: Vec<_> = trees
            .iter()
            .map(|t| t.source.as_ref().and_then(file_of))
            .collect();
        Trees {
            trees,
            roots: trees
                .iter()
                .zip(&files)
                .map(|(t, f)| match f {
                    Some(_) => None,
                    None => t.source.as_ref().map(|s| Root::open(s)),
                })
                .collect(),
            files,
        }
    }

    /// Writing into tree `i` is refused (a read-only mount, or a file bound from the host).
    pub(crate) fn readonly(&self, i: usize) -> bool {
        self.trees[i].readonly || self.files[i].is_some()
    }

    pub(crate) fn is_mount_point(&self, path: &[OsString]) -> bool {
        self.trees.iter().any(|t| t.at == path)
    }

    /// The file bound at `path`, if one is: its host directory, name, tree and host path.
    fn file_at(&self, path: &[OsString]) -> Option<(&Root, &OsString, usize, PathBuf)> {
        let i = self.trees.iter().rposition(|t| t.at == path)?;
        let (root, name) = self.files[i].as_ref()?;
        let host = self.trees[i].source.as_ref()?.parent()?.to_path_buf();
        Some((root, name, i, host))
    }

    /// What a walk finds at the mount point `path`.
    pub(crate) fn mounted(&self, path: &[OsString]) -> Result<Mounted, CopyError> {
        if let Some((root, name, _, _)) = self.file_at(path) {
            let fd = root
                .fd()
                .try_clone()
                .map_err(|e| CopyError::io("dup", shown_of(path), e))?;
            return Ok(Mounted::File(fd, name.clone()));
        }
        match self.enter(path) {
            Ok((fd, _, _)) => Ok(Mounted::Dir(fd)),
            Err(CopyError::NoHostDirectory(_)) => Ok(Mounted::Opaque),
            Err(e) => Err(e),
        }
    }

    /// The directory at the symlink-free `path`: the tree with the longest mount point
    /// holding it, walked without following anything. Returns its descriptor, the tree's
    /// index and its host path.
    fn enter(&self, path: &[OsString]) -> Result<(OwnedFd, usize, PathBuf), CopyError> {
        let (i, t) = self
            .trees
            .iter()
            .enumerate()
            .filter(|(_, t)| path.starts_with(&t.at))
            .max_by_key(|(_, t)| t.at.len())
            .ok_or_else(|| CopyError::NotFound(shown_of(path)))?;
        let (Some(source), Some(root)) = (&t.source, &self.roots[i]) else {
            return Err(CopyError::NoHostDirectory(shown_of(&t.at)));
        };
        let root = root.as_ref().map_err(|e| {
            CopyError::io(
                "open",
                source.display().to_string(),
                std::io::Error::from(e.kind()),
            )
        })?;
        let mut fd = root
            .fd()
            .try_clone()
            .map_err(|e| CopyError::io("dup", shown_of(path), e))?;
        let mut host = source.clone();
        for c in &path[t.at.len()..] {
            fd = crate::fsops::open_dir_nofollow(&fd, c)
                .map_err(|e| CopyError::io("open", shown_of(path), e))?;
            host.push(c);
        }
        Ok((fd, i, host))
    }
}

/// One name resolved in a workload's trees: its parent directory (links followed inside
/// the trees) and what the name is, not followed unless asked. A mount point, `/` or a
/// path ending in `..` is a directory of its own (`name` is `None`).
pub(crate) struct Located {
    /// The parent directory, or the directory itself when `name` is `None`.
    pub parent: OwnedFd,
    /// That directory's symlink-free path as the workload sees it.
    pub parent_path: Vec<OsString>,
    pub name: Option<OsString>,
    /// `None` when the name does not exist.
    pub kind: Option<Kind>,
    /// The tree holding `parent`.
    pub tree: usize,
    /// `parent` on the host.
    pub host: PathBuf,
}

impl Located {
    pub(crate) fn shown(&self) -> String {
        let mut p = self.parent_path.clone();
        p.extend(self.name.clone());
        shown_of(&p)
    }
}

/// Maximum symbolic links followed for one path, as the kernel's `MAXSYMLINKS`.
const MAX_HOPS: u32 = 40;

/// Resolves `comps` in `trees` as the workload would: symbolic links followed (an absolute
/// target from the workload's `/`, `..` never above it), across mount points, never out of
/// a tree's directory on the host; the last component too when `follow_last`.
pub(crate) fn locate(
    trees: &Trees<'_>,
    comps: &[OsString],
    follow_last: bool,
) -> Result<Located, CopyError> {
    let shown = || shown_of(comps);
    let mut queue: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut cur_path: Vec<OsString> = Vec::new();
    let (mut cur, mut tree, mut host) = trees.enter(&cur_path)?;
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c.is_empty() || c == "." {
            continue;
        }
        if c == ".." {
            cur_path.pop();
            (cur, tree, host) = trees.enter(&cur_path)?;
            continue;
        }
        let last = queue.iter().all(|q| q.is_empty() || q == ".");
        let mut next = cur_path.clone();
        next.push(c.clone());
        if let Some((root, name, i, host)) = trees.file_at(&next) {
            if !last {
                return Err(CopyError::NotADirectory(shown_of(&next)));
            }
            let kind = lookup(root.fd(), name).map_err(|e| CopyError::io("stat", shown(), e))?;
            return Ok(Located {
                parent: root
                    .fd()
                    .try_clone()
                    .map_err(|e| CopyError::io("dup", shown(), e))?,
                parent_path: cur_path,
                name: Some(name.clone()),
                kind,
                tree: i,
                host,
            });
        }
        if trees.is_mount_point(&next) {
            (cur, tree, host) = trees.enter(&next)?;
            cur_path = next;
            continue;
        }
        let kind = lookup(&cur, &c).map_err(|e| CopyError::io("stat", shown(), e))?;
        let follow = kind == Some(Kind::Symlink) && (!last || follow_last);
        if !follow {
            if last {
                return Ok(Located {
                    parent: cur,
                    parent_path: cur_path,
                    name: Some(c),
                    kind,
                    tree,
                    host,
                });
            }
            match kind {
                None => return Err(CopyError::NotFound(shown())),
                Some(Kind::Dir) => {
                    cur = crate::fsops::open_dir_nofollow(&cur, &c)
                        .map_err(|e| CopyError::io("open", shown_of(&next), e))?;
                    host.push(&c);
                    cur_path = next;
                }
                Some(_) => return Err(CopyError::NotADirectory(shown_of(&next))),
            }
            continue;
        }
        hops += 1;
        if hops > MAX_HOPS {
            return Err(CopyError::Path {
                path: shown(),
                problem: EntryProblem::SymlinkLoop,
            });
        }
        let target = nix::fcntl::readlinkat(&cur, c.as_os_str())
            .map_err(|e| CopyError::io("readlink", shown(), e))?
            .into_vec();
        if target.starts_with(b"/") {
            cur_path.clear();
            (cur, tree, host) = trees.enter(&cur_path)?;
        }
        for part in target.split(|b| *b == b'/').rev() {
            queue.push_front(OsString::from_vec(part.to_vec()));
        }
    }
    Ok(Located {
        parent: cur,
        parent_path: cur_path,
        name: None,
        kind: Some(Kind::Dir),
        tree,
        host,
    })
}

/// Opens the directory a [`Located`] names (following nothing more).
pub(crate) fn open_located_dir(l: &Located) -> Result<OwnedFd, CopyError> {
    match &l.name {
        None => l
            .parent
            .try_clone()
            .map_err(|e| CopyError::io("dup", l.shown(), e)),
        Some(n) => crate::fsops::open_dir_nofollow(&l.parent, n).map_err(|e| match e {
            Errno::ENOTDIR | Errno::ELOOP => CopyError::NotADirectory(l.shown()),
            e => CopyError::io("open", l.shown(), e),
        }),
    }
}

#[cfg(test)]
mod tests;
