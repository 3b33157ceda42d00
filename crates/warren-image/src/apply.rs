//! Applying one layer's tar stream onto a directory.
//!
//! The semantics are those of the OCI image specification's changesets (and of Docker and
//! containerd), with the safety rules of this crate:
//!
//! - **Names.** Entry names and hard-link targets are split into components; an absolute name,
//!   a `..` component, an empty name or one longer than `Limits::max_path_len` is refused. `.`
//!   components and a leading `./` are dropped; `./` itself is the layer root (only a
//!   directory may describe it; its mode, owner and mtime are applied to `dest`).
//! - **Parents.** The parent directory of every entry is resolved inside `dest` without the
//!   kernel ever following a link (see the `fsops` module): symbolic links left by lower layers
//!   or by this one are followed as if `dest` were `/`, so `usr/bin` through a `bin -> usr/bin`
//!   link works and `evil -> /etc` leads to `dest/etc`, never to the host's. Missing parents are
//!   created with mode 0755.
//! - **Replacing.** An entry replaces whatever is at its name (a lower layer's file, link or
//!   directory tree, removed without following links), except that a directory entry over an
//!   existing directory merges into it. Regular files are always created fresh (`O_EXCL`), so a
//!   lower layer's hard link is never written through.
//! - **Duplicates within one layer.** As in tar, a later entry replaces an earlier non-directory
//!   entry of the same name, and a repeated directory entry merges (its metadata wins). A change
//!   between directory and non-directory for a name this layer already wrote is refused
//!   ([`crate::EntryProblem::DuplicateTypeChange`]): it would silently discard this layer's own
//!   content and is a known way to make scanners and extractors disagree.
//! - **Whiteouts.** `.wh.NAME` removes NAME as left by lower layers (a NAME written by this same
//!   layer stays, whatever the order); `.wh..wh..opq` removes everything lower layers left in its
//!   directory and keeps this layer's entries, also when it comes after them (a merged
//!   subdirectory is pruned of its lower content). Other `.wh..wh.*` names (aufs metadata) are
//!   ignored. Whiteout files are never created, and a `.wh.` name used as a directory is refused.
//! - **Hard links** must name a path inside the layer root (absolute or `..` targets are
//!   refused), are resolved inside `dest` like any path, must exist and must not be
//!   directories. A link keeps its target's metadata.
//! - **Symbolic links** may point anywhere: they are stored, never followed by the kernel here.
//! - **Devices.** Character and block devices are refused; FIFOs are created.
//! - **Metadata.** Numeric uid/gid as in the tar (see [`crate::Ownership`]), permission bits
//!   including setuid, setgid and sticky (images legitimately hold `passwd`, `su`, `ping`; the
//!   container runs with `no-new-privileges`, which makes the kernel ignore them), mtimes
//!   (directories' after all their children are written), and a safe subset of xattrs (see
//!   [`crate::ApplyOptions::skip_xattrs`]). A directory whose content the layer changes without
//!   an entry of its own keeps its earlier times (as with umoci), so the result does not depend
//!   on when it was made. Hard links keep their target's metadata.
//!
//! **On error `dest` may be partially written, but nothing outside it is ever created,
//! changed or removed.** Callers apply into a fresh snapshot and discard it on error.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::UtimensatFlags;
use nix::sys::stat::{fchmod, fchmodat, futimens, mkdirat, utimensat, FchmodatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, mkfifoat, symlinkat, Gid, Uid};
use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::digest::{Algorithm, Digest, HashingReader};
use crate::error::{EntryProblem, ImageError, LimitKind};
use crate::fsops::{self, Create, DirId, Kind, Resolved, Root};
use crate::tarstream::{self, EntryMeta, WalkError};
use crate::{ApplyOptions, Limits, Ownership};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar stream.
    #[default]
    None,
    /// gzip (possibly multi-member).
    Gzip,
    /// zstd (possibly multi-frame).
    Zstd,
}

impl Compression {
    /// Detects compression from the first bytes of a blob.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// What applying one layer did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerStats {
    /// Logical tar entries processed (whiteouts included).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// Directory entries (new or merged).
    pub directories: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Hard links created.
    pub hardlinks: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// `.wh.NAME` whiteouts processed.
    pub whiteouts: u64,
    /// `.wh..wh..opq` opaque markers processed.
    pub opaque_dirs: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
    /// Bytes of the blob as read (compressed).
    pub compressed_bytes: u64,
    /// Bytes of the uncompressed tar stream.
    pub uncompressed_bytes: u64,
    /// SHA-256 of the uncompressed tar stream: the layer's diff_id.
    pub diff_id: Digest,
    /// Extended attributes not applied (not in the allowed set, or unsupported here).
    pub xattrs_skipped: u64,
}

/// Applies one layer to `dest` with default options and the given limits. See the
/// [module documentation](crate::apply) for the rules.
pub fn apply_layer(
    dest: &Path,
    layer: impl Read,
    compression: Compression,
    limits: &Limits,
) -> Result<LayerStats, ImageError> {
    apply_layer_with(dest, layer, compression, &ApplyOptions::with_limits(limits))
}

/// Byte counts shared by the readers of the decoding pipeline.
#[derive(Default)]
struct Counters {
    compressed: Cell<u64>,
    uncompressed: Cell<u64>,
    violation: Cell<Option<(LimitKind, u64, u64)>>,
    /// The blob's reader reported its end.
    eof: Cell<bool>,
}

struct CountingReader<R> {
    inner: R,
    counters: Rc<Counters>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let c = &self.counters.compressed;
        c.set(c.get() + n as u64);
        if n == 0 && !buf.is_empty() {
            self.counters.eof.set(true);
        }
        Ok(n)
    }
}

/// Enforces `max_layer_bytes` and `max_ratio` on the decompressed stream.
struct LimitReader<R> {
    inner: R,
    counters: Rc<Counters>,
    max_bytes: u64,
    max_ratio: Option<u64>,
}

impl<R: Read> Read for LimitReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some((kind, _, _)) = self.counters.violation.get() {
            return Err(io::Error::other(format!("limit {kind} exceeded")));
        }
        let n = self.inner.read(buf)?;
        let total = self.counters.uncompressed.get() + n as u64;
        self.counters.uncompressed.set(total);
        let mut violation = None;
        if total > self.max_bytes {
            violation = Some((LimitKind::LayerBytes, total, self.max_bytes));
        } else if let Some(ratio) = self.max_ratio {
            let compressed = self.counters.compressed.get().max(1);
            if total > Limits::RATIO_GRACE && total / compressed > ratio {
                violation = Some((LimitKind::Ratio, total / compressed, ratio));
            }
        }
        if let Some(v) = violation {
            self.counters.violation.set(Some(v));
            return Err(io::Error::other(format!("limit {} exceeded", v.0)));
        }
        Ok(n)
    }
}

/// Applies one layer to `dest`. See the [module documentation](crate::apply) for the rules.
///
/// `layer` is the blob as stored (compressed as `compression` says). The whole stream is read,
/// including anything after the tar end-of-archive blocks, so [`LayerStats::diff_id`] is the
/// digest of the complete uncompressed stream; compare it with the image config's diff_id (the
/// archive's [`crate::ImageArchive::apply_layer`] does).
pub fn apply_layer_with(
    dest: &Path,
    layer: impl Read,
    compression: Compression,
    options: &ApplyOptions,
) -> Result<LayerStats, ImageError> {
    apply_stream(dest, layer, compression, options, false)
}

/// Applies a tar stream to `dest`: as a layer, or with `plain` as a plain tree (see
/// [`crate::unpack_tree`]): no whiteouts, no symbolic link followed or written through, no
/// relative symbolic link leading above the root, and a stream without its end-of-archive
/// marker refused as truncated.
pub(crate) fn apply_stream(
    dest: &Path,
    layer: impl Read,
    compression: Compression,
    options: &ApplyOptions,
    plain: bool,
) -> Result<LayerStats, ImageError> {
    const LAYER: &str = "layer";
    let root = Root::open(dest).map_err(|source| ImageError::Target {
        path: dest.to_path_buf(),
        source,
    })?;
    let counters = Rc::new(Counters::default());
    let counted = CountingReader {
        inner: layer,
        counters: counters.clone(),
    };
    let bad = |source: io::Error| ImageError::BadLayer {
        layer: LAYER.into(),
        source,
    };
    let decoded: Box<dyn Read + '_> = match compression {
        Compression::None => Box::new(counted),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(counted)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(counted).map_err(bad)?),
    };
    let limited = LimitReader {
        inner: decoded,
        counters: counters.clone(),
        max_bytes: options.limits.max_layer_bytes,
        max_ratio: options.limits.max_ratio,
    };
    let hashing = HashingReader::new(limited, Algorithm::Sha256);
    let chown = match options.ownership {
        Ownership::Auto => nix::unistd::geteuid().is_root(),
        Ownership::Preserve => true,
        Ownership::Ignore => false,
    };
    let mut applier = Applier {
        root,
        options,
        plain,
        chown,
        written: HashMap::new(),
        touched: HashMap::new(),
        deferred: Vec::new(),
        cache: None,
        buf: vec![0; 128 * 1024],
        stats: Counts::default(),
    };
    let limit_error = |counters: &Counters| {
        counters
            .violation
            .get()
            .map(|(limit, value, max)| ImageError::LimitExceeded {
                context: LAYER.into(),
                limit,
                value,
                max,
            })
    };
    let walked = tarstream::walk(hashing, &options.limits, |meta, data| {
        applier.entry(meta, data)
    });
    // Plain trees: the tar reader met the stream's end, so the end-of-archive marker is missing
    // (a clean end stops at the marker) or the stream ended inside a header or file data.
    if plain && counters.eof.get() {
        return Err(ImageError::Truncated {
            context: LAYER.into(),
        });
    }
    let hashing = match walked {
        Ok(r) => r,
        Err(e) => {
            if let Some(limit) = limit_error(&counters) {
                return Err(limit);
            }
            return Err(match e {
                WalkError::Tar(source) => bad(source),
                WalkError::Entry { entry, problem } => ImageError::Entry {
                    layer: LAYER.into(),
                    entry,
                    problem,
                },
                WalkError::TooManyEntries(n) => ImageError::LimitExceeded {
                    context: LAYER.into(),
                    limit: LimitKind::Entries,
                    value: n,
                    max: options.limits.max_entries,
                },
                WalkError::Callback(e) => e,
            });
        }
    };
    let (diff_id, uncompressed) = match hashing.drain() {
        Ok(v) => v,
        Err(e) => return Err(limit_error(&counters).unwrap_or_else(|| bad(e))),
    };
    applier.finish()?;
    let s = applier.stats;
    Ok(LayerStats {
        entries: s.entries,
        files: s.files,
        directories: s.directories,
        symlinks: s.symlinks,
        hardlinks: s.hardlinks,
        fifos: s.fifos,
        whiteouts: s.whiteouts,
        opaque_dirs: s.opaque_dirs,
        file_bytes: s.file_bytes,
        compressed_bytes: counters.compressed.get(),
        uncompressed_bytes: uncompressed,
        diff_id,
        xattrs_skipped: s.xattrs_skipped,
    })
}

#[derive(Default)]
struct Counts {
    entries: u64,
    files: u64,
    directories: u64,
    symlinks: u64,
    hardlinks: u64,
    fifos: u64,
    whiteouts: u64,
    opaque_dirs: u64,
    file_bytes: u64,
    xattrs_skipped: u64,
}

/// What this layer wrote at a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A directory this layer created.
    DirCreated,
    /// A directory entry merged into a lower layer's directory.
    DirMerged,
    /// Anything else.
    NonDir,
}

/// Directory metadata applied once the layer is complete.
struct Deferred {
    comps: Vec<OsString>,
    /// The directory the entry described (skipped if the name leads elsewhere by then).
    id: DirId,
    mode: u32,
    mtime: (i64, u32),
}

/// A directory whose content this layer changes, and its times before the change.
struct Touched {
    path: Vec<OsString>,
    atime: TimeSpec,
    mtime: TimeSpec,
}

struct Applier<'a> {
    root: Root,
    options: &'a ApplyOptions,
    /// A plain tree, not a layer (see [`apply_stream`]).
    plain: bool,
    chown: bool,
    written: HashMap<(DirId, OsString), Mark>,
    /// Directories changed by this layer, restored to their earlier times at the end (unless
    /// the layer has an entry for them), so the result does not depend on when it was made.
    touched: HashMap<DirId, Touched>,
    deferred: Vec<Deferred>,
    /// The last resolved parent directory, dropped whenever anything is removed.
    cache: Option<(Vec<OsString>, OwnedFd, DirId, Vec<OsString>)>,
    buf: Vec<u8>,
    stats: Counts,
}

type Outcome = Result<(), Failure>;

/// An entry failed: because of the entry, or because reading the stream failed.
enum Failure {
    Entry(EntryProblem),
    Stream(io::Error),
}

impl From<EntryProblem> for Failure {
    fn from(p: EntryProblem) -> Self {
        Failure::Entry(p)
    }
}

fn io_fail(op: &'static str) -> impl Fn(Errno) -> Failure {
    move |e| Failure::Entry(EntryProblem::io(op, e))
}

/// Splits an entry name (or hard link target) into components.
pub(crate) fn split_path(raw: &[u8], max: usize) -> Result<Vec<OsString>, EntryProblem> {
    if raw.len() > max {
        return Err(EntryProblem::PathTooLong {
            len: raw.len(),
            limit: max,
        });
    }
    if raw.is_empty() || raw.contains(&0) {
        return Err(EntryProblem::InvalidPath);
    }
    if raw[0] == b'/' {
        return Err(EntryProblem::Absolute);
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(EntryProblem::DotDot),
            _ => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Ok(out)
}

fn timespec((secs, nanos): (i64, u32)) -> TimeSpec {
    TimeSpec::new(secs as _, nanos as _)
}

fn ids(uid: u64, gid: u64) -> Result<(Uid, Gid), EntryProblem> {
    let uid = u32::try_from(uid).map_err(|_| EntryProblem::io("chown", Errno::EOVERFLOW))?;
    let gid = u32::try_from(gid).map_err(|_| EntryProblem::io("chown", Errno::EOVERFLOW))?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

/// Records `dir`'s times before this layer first changes it.
fn touch(
    touched: &mut HashMap<DirId, Touched>,
    dir: &OwnedFd,
    path: &[OsString],
) -> Result<DirId, EntryProblem> {
    let (id, atime, mtime) = fsops::dir_times(dir).map_err(|e| EntryProblem::io("stat", e))?;
    touched.entry(id).or_insert_with(|| Touched {
        path: path.to_vec(),
        atime,
        mtime,
    });
    Ok(id)
}

fn xattr_allowed(name: &[u8]) -> bool {
    (name.starts_with(b"user.") && !name.starts_with(b"user.overlay."))
        || name == b"security.capability"
}

impl Applier<'_> {
    fn entry(&mut self, meta: EntryMeta, data: &mut dyn Read) -> Result<(), ImageError> {
        let shown = meta.display_path();
        self.stats.entries += 1;
        match self.process(meta, data) {
            Ok(()) => Ok(()),
            Err(Failure::Entry(problem)) => Err(ImageError::Entry {
                layer: "layer".into(),
                entry: shown,
                problem,
            }),
            Err(Failure::Stream(source)) => Err(ImageError::BadLayer {
                layer: "layer".into(),
                source,
            }),
        }
    }

    /// The directory `comps` (created as needed), about to be changed: its descriptor and
    /// identity, through the cache.
    fn parent(&mut self, comps: &[OsString]) -> Result<(OwnedFd, DirId), EntryProblem> {
        if let Some((cached, fd, id, path)) = &self.cache {
            if cached.as_slice() == comps {
                let fd = fd.try_clone().map_err(|e| EntryProblem::io("dup", e))?;
                if !self.touched.contains_key(id) {
                    touch(&mut self.touched, &fd, path)?;
                }
                return Ok((fd, *id));
            }
        }
        let Applier {
            root,
            written,
            touched,
            ..
        } = self;
        let follow = !self.plain;
        let Resolved { fd, path } = root
            .resolve_dir(comps, true, follow, &mut |event| {
                match event {
                    Create::Before {
                        parent,
                        parent_path,
                    } => {
                        touch(touched, parent, parent_path)?;
                    }
                    Create::Done { parent, name } => {
                        let id = fsops::dir_id(parent).map_err(|e| EntryProblem::io("stat", e))?;
                        written.insert((id, name.to_os_string()), Mark::DirCreated);
                    }
                }
                Ok(())
            })?
            .ok_or_else(|| EntryProblem::io("open directory", Errno::ENOENT))?;
        let id = touch(&mut self.touched, &fd, &path)?;
        let keep = fd.try_clone().map_err(|e| EntryProblem::io("dup", e))?;
        self.cache = Some((comps.to_vec(), keep, id, path));
        Ok((fd, id))
    }

    /// Resolves an existing directory without creating anything.
    fn existing_dir(&self, comps: &[OsString]) -> Result<Option<Resolved>, EntryProblem> {
        self.root
            .resolve_dir(comps, false, !self.plain, &mut |_| Ok(()))
    }

    fn remove(&mut self, dir: &OwnedFd, name: &OsStr) -> Result<(), EntryProblem> {
        self.cache = None;
        fsops::remove_at(dir, name).map_err(|e| EntryProblem::io("remove", e))
    }

    fn process(&mut self, meta: EntryMeta, data: &mut dyn Read) -> Outcome {
        let max = self.options.limits.max_path_len;
        let mut kind = meta.kind;
        // Old (v7) archives mark directories by a trailing slash on a regular entry.
        if matches!(kind, EntryType::Regular | EntryType::Continuous) {
            kind = if meta.path.ends_with(b"/") {
                EntryType::Directory
            } else {
                EntryType::Regular
            };
        }
        match kind {
            EntryType::Char | EntryType::Block => return Err(EntryProblem::Device.into()),
            EntryType::Regular
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Fifo => {}
            other => {
                return Err(
                    EntryProblem::UnsupportedType(format!("{:?}", other.as_byte() as char)).into(),
                )
            }
        }
        let mut comps = split_path(&meta.path, max)?;
        let Some(name) = comps.pop() else {
            if kind != EntryType::Directory {
                return Err(EntryProblem::RootNotDirectory.into());
            }
            self.stats.directories += 1;
            if self.chown {
                let (uid, gid) = ids(meta.uid, meta.gid)?;
                fchown(self.root.fd(), Some(uid), Some(gid)).map_err(io_fail("chown"))?;
            }
            let root = self
                .root
                .fd()
                .try_clone()
                .map_err(|e| EntryProblem::io("dup", e))?;
            let id = fsops::dir_id(&root).map_err(io_fail("stat"))?;
            self.set_xattrs(root, &meta.xattrs)?;
            self.deferred.push(Deferred {
                comps: Vec::new(),
                id,
                mode: meta.mode,
                mtime: meta.mtime,
            });
            return Ok(());
        };
        if !self.plain {
            if comps
                .iter()
                .any(|c| c.as_encoded_bytes().starts_with(b".wh."))
            {
                return Err(EntryProblem::BadWhiteout.into());
            }
            if let Some(target) = name.as_encoded_bytes().strip_prefix(b".wh.") {
                return self.whiteout(&comps, target).map_err(Failure::Entry);
            }
        }

        let (parent, pid) = self.parent(&comps)?;
        let key = (pid, name.clone());
        let existing = fsops::lookup(&parent, &name).map_err(io_fail("stat"))?;
        let earlier = self.written.get(&key).copied();
        let is_dir = kind == EntryType::Directory;
        if let Some(earlier) = earlier {
            let earlier_dir = earlier != Mark::NonDir;
            if earlier_dir != is_dir {
                let word = |d: bool| if d { "directory" } else { "non-directory" };
                return Err(EntryProblem::DuplicateTypeChange {
                    earlier: word(earlier_dir),
                    later: word(is_dir),
                }
                .into());
            }
        }
        let mark = match kind {
            EntryType::Directory => {
                let mark = if existing == Some(Kind::Dir) {
                    earlier.unwrap_or(Mark::DirMerged)
                } else {
                    if existing.is_some() {
                        self.remove(&parent, &name)?;
                    }
                    mkdirat(&parent, name.as_os_str(), fsops::mode(0o755))
                        .map_err(io_fail("mkdir"))?;
                    Mark::DirCreated
                };
                let fd = fsops::open_dir_nofollow(&parent, &name).map_err(io_fail("open"))?;
                if self.chown {
                    let (uid, gid) = ids(meta.uid, meta.gid)?;
                    fchown(&fd, Some(uid), Some(gid)).map_err(io_fail("chown"))?;
                }
                let id = fsops::dir_id(&fd).map_err(io_fail("stat"))?;
                self.set_xattrs(fd, &meta.xattrs)?;
                let mut full = comps.clone();
                full.push(name.clone());
                self.deferred.push(Deferred {
                    comps: full,
                    id,
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
                self.stats.directories += 1;
                mark
            }
            EntryType::Regular => {
                if existing.is_some() {
                    self.remove(&parent, &name)?;
                }
                self.write_file(&parent, &name, &meta, data)?;
                self.stats.files += 1;
                Mark::NonDir
            }
            EntryType::Symlink => {
                let target = meta.link.as_deref().unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(EntryProblem::InvalidPath.into());
                }
                if target.len() > max {
                    return Err(EntryProblem::PathTooLong {
                        len: target.len(),
                        limit: max,
                    }
                    .into());
                }
                if self.plain && crate::unpack::escapes(comps.len(), target) {
                    let shown = String::from_utf8_lossy(target).into_owned();
                    return Err(EntryProblem::SymlinkOutside(shown).into());
                }
                if existing.is_some() {
                    self.remove(&parent, &name)?;
                }
                let target = OsString::from_vec(target.to_vec());
                symlinkat(target.as_os_str(), &parent, name.as_os_str())
                    .map_err(io_fail("symlink"))?;
                self.finish_nonfile(&parent, &name, &meta, false)?;
                self.stats.symlinks += 1;
                Mark::NonDir
            }
            EntryType::Link => {
                if self.hardlink(&parent, pid, &name, existing, &meta)? {
                    self.stats.hardlinks += 1;
                }
                Mark::NonDir
            }
            EntryType::Fifo => {
                if existing.is_some() {
                    self.remove(&parent, &name)?;
                }
                mkfifoat(&parent, name.as_os_str(), fsops::mode(0o600))
                    .map_err(io_fail("mkfifo"))?;
                self.finish_nonfile(&parent, &name, &meta, true)?;
                self.stats.fifos += 1;
                Mark::NonDir
            }
            _ => unreachable!("entry types were filtered above"),
        };
        self.written.insert(key, mark);
        Ok(())
    }

    fn whiteout(&mut self, comps: &[OsString], target: &[u8]) -> Result<(), EntryProblem> {
        if target == b".wh..opq" {
            self.stats.opaque_dirs += 1;
            if let Some(dir) = self.existing_dir(comps)? {
                self.cache = None;
                self.prune_lower(&dir.fd, &dir.path)?;
            }
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            // aufs bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not content.
            return Ok(());
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(EntryProblem::BadWhiteout);
        }
        self.stats.whiteouts += 1;
        let Some(dir) = self.existing_dir(comps)? else {
            return Ok(());
        };
        let id = fsops::dir_id(&dir.fd).map_err(|e| EntryProblem::io("stat", e))?;
        let name = OsString::from_vec(target.to_vec());
        if self.written.contains_key(&(id, name.clone())) {
            // Whiteouts only hide lower layers' content, never this layer's.
            return Ok(());
        }
        if fsops::lookup(&dir.fd, &name)
            .map_err(|e| EntryProblem::io("stat", e))?
            .is_none()
        {
            return Ok(());
        }
        touch(&mut self.touched, &dir.fd, &dir.path)?;
        self.remove(&dir.fd, &name)
    }

    /// Removes what lower layers left in `dir`, keeping this layer's entries (and pruning the
    /// lower content of directories this layer merged into).
    fn prune_lower(&mut self, dir: &OwnedFd, path: &[OsString]) -> Result<(), EntryProblem> {
        let id = touch(&mut self.touched, dir, path)?;
        for name in fsops::list_dir(dir).map_err(|e| EntryProblem::io("readdir", e))? {
            match self.written.get(&(id, name.clone())) {
                None => self.remove(dir, &name)?,
                Some(Mark::DirMerged) => {
                    let sub = fsops::open_dir_nofollow(dir, &name)
                        .map_err(|e| EntryProblem::io("open", e))?;
                    let mut sub_path = path.to_vec();
                    sub_path.push(name);
                    self.prune_lower(&sub, &sub_path)?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn write_file(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &EntryMeta,
        data: &mut dyn Read,
    ) -> Outcome {
        let fd = openat(
            parent,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            fsops::mode(0o600),
        )
        .map_err(io_fail("create"))?;
        let mut file = File::from(fd);
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Stream(e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| EntryProblem::io("write", e))?;
            self.stats.file_bytes += n as u64;
        }
        if self.chown {
            let (uid, gid) = ids(meta.uid, meta.gid)?;
            fchown(&file, Some(uid), Some(gid)).map_err(io_fail("chown"))?;
        }
        // After chown, which clears setuid/setgid.
        fchmod(&file, fsops::mode(meta.mode)).map_err(io_fail("chmod"))?;
        let t = timespec(meta.mtime);
        futimens(&file, &t, &t).map_err(io_fail("utimes"))?;
        self.set_xattrs(file.into(), &meta.xattrs)?;
        Ok(())
    }

    /// Owner, mode (FIFOs) and mtime of a symlink or FIFO just created at `name`.
    fn finish_nonfile(
        &mut self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &EntryMeta,
        chmod: bool,
    ) -> Result<(), EntryProblem> {
        if self.chown {
            let (uid, gid) = ids(meta.uid, meta.gid)?;
            fchownat(
                parent,
                name,
                Some(uid),
                Some(gid),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| EntryProblem::io("chown", e))?;
        }
        if chmod {
            // `name` is the FIFO this thread just made in a directory opened without following
            // links; Linux cannot chmod without following, and there is no link to follow.
            fchmodat(
                parent,
                name,
                fsops::mode(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| EntryProblem::io("chmod", e))?;
        }
        let t = timespec(meta.mtime);
        utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| EntryProblem::io("utimes", e))?;
        self.stats.xattrs_skipped += meta.xattrs.len() as u64;
        Ok(())
    }

    /// Creates a hard link; returns false when the entry links a name to itself (a no-op).
    fn hardlink(
        &mut self,
        parent: &OwnedFd,
        pid: DirId,
        name: &OsStr,
        existing: Option<Kind>,
        meta: &EntryMeta,
    ) -> Result<bool, EntryProblem> {
        let raw = meta.link.as_deref().unwrap_or_default();
        let shown = String::from_utf8_lossy(raw).into_owned();
        let mut comps = match split_path(raw, self.options.limits.max_path_len) {
            Ok(c) => c,
            Err(EntryProblem::Absolute | EntryProblem::DotDot) => {
                return Err(EntryProblem::HardlinkOutside(shown))
            }
            Err(e) => return Err(e),
        };
        let target_err = |why| EntryProblem::HardlinkTarget {
            target: shown.clone(),
            why,
        };
        let tname = comps.pop().ok_or_else(|| target_err("is the layer root"))?;
        let tdir = self
            .existing_dir(&comps)?
            .ok_or_else(|| target_err("does not exist"))?
            .fd;
        match fsops::lookup(&tdir, &tname).map_err(|e| EntryProblem::io("stat", e))? {
            None => return Err(target_err("does not exist")),
            Some(Kind::Dir) => return Err(target_err("is a directory")),
            Some(_) => {}
        }
        let tid = fsops::dir_id(&tdir).map_err(|e| EntryProblem::io("stat", e))?;
        if tid == pid && tname == name {
            return Ok(false);
        }
        if existing.is_some() {
            self.remove(parent, name)?;
        }
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        linkat(&tdir, tname.as_os_str(), parent, name, AtFlags::empty())
            .map_err(|e| EntryProblem::io("link", e))?;
        Ok(true)
    }

    fn set_xattrs(
        &mut self,
        fd: OwnedFd,
        xattrs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), EntryProblem> {
        if xattrs.is_empty() {
            return Ok(());
        }
        if self.options.skip_xattrs || !xattr::SUPPORTED_PLATFORM {
            self.stats.xattrs_skipped += xattrs.len() as u64;
            return Ok(());
        }
        let file = File::from(fd);
        for (name, value) in xattrs {
            if !xattr_allowed(name) {
                self.stats.xattrs_skipped += 1;
                continue;
            }
            let os_name = OsString::from_vec(name.clone());
            if let Err(e) = xattr::FileExt::set_xattr(&file, &os_name, value) {
                match e.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::ENOTSUP | Errno::EPERM) => self.stats.xattrs_skipped += 1,
                    #[allow(unreachable_patterns)]
                    Some(Errno::EOPNOTSUPP) => self.stats.xattrs_skipped += 1,
                    _ => return Err(EntryProblem::io("setxattr", e)),
                }
            }
        }
        Ok(())
    }

    /// Directory modes and mtimes, once all children are written: in reverse order (children
    /// before parents), and for a directory listed twice only its last entry.
    fn finish(&mut self) -> Result<(), ImageError> {
        for (id, t) in std::mem::take(&mut self.touched) {
            let fail = |problem| ImageError::Entry {
                layer: "layer".into(),
                entry: fsops::join(&t.path),
                problem,
            };
            let Some(dir) = self.existing_dir(&t.path).map_err(fail)? else {
                continue;
            };
            // Removed and replaced later in the layer: not the directory we saw.
            if fsops::dir_id(&dir.fd).ok() != Some(id) {
                continue;
            }
            futimens(&dir.fd, &t.atime, &t.mtime)
                .map_err(|e| fail(EntryProblem::io("utimes", e)))?;
        }
        let deferred = std::mem::take(&mut self.deferred);
        let mut done: HashSet<&[OsString]> = HashSet::new();
        for d in deferred.iter().rev() {
            if !done.insert(&d.comps) {
                continue;
            }
            let fail = |problem| ImageError::Entry {
                layer: "layer".into(),
                entry: fsops::join(&d.comps),
                problem,
            };
            let fd = match d.comps.split_last() {
                None => self
                    .root
                    .fd()
                    .try_clone()
                    .map_err(|e| fail(EntryProblem::io("dup", e)))?,
                Some((name, parents)) => {
                    let Some(parent) = self.existing_dir(parents).map_err(fail)? else {
                        continue;
                    };
                    match fsops::open_dir_nofollow(&parent.fd, name) {
                        Ok(fd) => fd,
                        // Replaced or removed later in the layer.
                        Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EMLINK) => {
                            continue
                        }
                        Err(e) => return Err(fail(EntryProblem::io("open", e))),
                    }
                }
            };
            if fsops::dir_id(&fd).ok() != Some(d.id) {
                continue;
            }
            fchmod(&fd, fsops::mode(d.mode)).map_err(|e| fail(EntryProblem::io("chmod", e)))?;
            let t = timespec(d.mtime);
            futimens(&fd, &t, &t).map_err(|e| fail(EntryProblem::io("utimes", e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
