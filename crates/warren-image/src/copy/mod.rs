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

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;

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

/// One name resolved inside a root: its parent directory (links followed inside the root)
/// and what the name is, not followed unless asked.
pub(crate) struct Located {
    /// The parent directory, or the root itself when the path is `/`.
    pub parent: OwnedFd,
    /// The parent's symlink-free path below the root.
    pub parent_path: Vec<OsString>,
    /// `None` for the root itself.
    pub name: Option<OsString>,
    /// `None` when the name does not exist.
    pub kind: Option<Kind>,
}

impl Located {
    pub(crate) fn shown(&self) -> String {
        let mut p = self.parent_path.clone();
        p.extend(self.name.clone());
        format!("/{}", crate::fsops::join(&p))
    }
}

/// Maximum symbolic links followed at the last component, as the kernel's `MAXSYMLINKS`.
const MAX_HOPS: u32 = 40;

/// Resolves `comps` inside `root`: the parent with links followed inside the root; the last
/// component too when `follow_last` (a link to a missing name gives that name, missing).
pub(crate) fn locate(
    root: &Root,
    comps: &[OsString],
    follow_last: bool,
) -> Result<Located, CopyError> {
    let shown = || format!("/{}", crate::fsops::join(comps));
    let mut comps = comps.to_vec();
    let mut hops = 0;
    loop {
        let Some(name) = comps.pop() else {
            return Ok(Located {
                parent: root
                    .fd()
                    .try_clone()
                    .map_err(|e| CopyError::io("dup", "/", e))?,
                parent_path: Vec::new(),
                name: None,
                kind: Some(Kind::Dir),
            });
        };
        let parent = root
            .resolve_dir(&comps, false, true, &mut |_| Ok(()))
            .map_err(|problem| CopyError::Path {
                path: shown(),
                problem,
            })?
            .ok_or_else(|| CopyError::NotFound(shown()))?;
        let kind = lookup(&parent.fd, &name).map_err(|e| CopyError::io("stat", shown(), e))?;
        if follow_last && kind == Some(Kind::Symlink) {
            hops += 1;
            if hops > MAX_HOPS {
                return Err(CopyError::Path {
                    path: shown(),
                    problem: EntryProblem::SymlinkLoop,
                });
            }
            let target = nix::fcntl::readlinkat(&parent.fd, name.as_os_str())
                .map_err(|e| CopyError::io("readlink", shown(), e))?;
            let bytes = target.into_vec();
            comps = if bytes.starts_with(b"/") {
                Vec::new()
            } else {
                parent.path.clone()
            };
            for part in bytes.split(|b| *b == b'/') {
                match part {
                    b"" | b"." => {}
                    b".." => {
                        comps.pop();
                    }
                    p => comps.push(OsString::from_vec(p.to_vec())),
                }
            }
            continue;
        }
        return Ok(Located {
            parent: parent.fd,
            parent_path: parent.path,
            name: Some(name),
            kind,
        });
    }
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
