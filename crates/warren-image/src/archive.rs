//! Reading image archives: docker-save tarballs, oci-archive tarballs and OCI layout
//! directories.
//!
//! [`open_archive`] indexes the outer tar (without extracting anything), reads the manifests and
//! configs, and hashes **every** blob it will ever hand out (index, manifests, configs, layers)
//! against its digest and descriptor size, so a tampered or truncated archive is refused before
//! a single layer is applied. Layer blobs are later read straight from the archive file (by
//! offset) and hashed once more while they are applied; the uncompressed stream is checked
//! against the config's diff_id as it is applied.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tar::EntryType;

use crate::apply::{apply_layer_with, Compression, LayerStats};
use crate::config::{
    layer_compression, media, ImageConfig, RawConfig, RawDescriptor, RawDockerEntry, RawIndex,
    RawManifest, RawOciLayout,
};
use crate::digest::{Algorithm, Digest, HashingReader};
use crate::error::{ImageError, LimitKind};
use crate::tarstream::{self, WalkError};
use crate::{ApplyOptions, Limits};

/// The annotation OCI layouts use for an image's reference (often just a tag, `v1`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The annotation Docker (25+) and containerd put on an image's full name.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// Nested image indexes followed at most.
mod loader;

const MAX_INDEX_DEPTH: u32 = 4;
/// Links between outer-archive members followed at most.
const MAX_MEMBER_LINKS: u32 = 16;

/// The format of an image archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArchiveKind {
    /// `docker save` (and `skopeo copy docker-archive:`, `podman save`): a tar with
    /// `manifest.json` (Config, RepoTags, Layers).
    DockerSave,
    /// An OCI image layout: a directory or an oci-archive tar with `oci-layout`, `index.json`
    /// and `blobs/<alg>/<hex>`.
    OciLayout,
}

/// An operating system and CPU architecture, as image indexes name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`...
    pub architecture: String,
    /// `v7`, `v8`... when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform images for this host are built for: always `linux` (warren runs Linux
    /// images, on FreeBSD inside a Linux VM) and this machine's architecture in Go's
    /// spelling.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    /// Whether an image for `os`/`architecture`/`variant` runs here. Empty fields (configs
    /// that do not say) match; a variant only has to match when both sides name one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        (os.is_empty() || os == self.os)
            && (architecture.is_empty() || architecture == self.architecture)
            && match (self.variant.as_deref(), variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The short form of an image name that Docker prints: `docker.io/library/app:v1` is
/// `app:v1`, `docker.io/team/app:v1` is `team/app:v1` (also for `index.docker.io`); any other
/// name is returned unchanged.
pub fn familiar_name(reference: &str) -> String {
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = reference.strip_prefix(prefix) {
            return rest.strip_prefix("library/").unwrap_or(rest).to_string();
        }
    }
    reference.to_string()
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed), verified when the archive was opened.
    pub digest: Digest,
    /// Digest of the uncompressed tar stream, from the config's `rootfs.diff_ids`; verified as
    /// the layer is applied. Layers are shared between images by this digest.
    pub diff_id: Digest,
    /// The layer's media type (for docker-save layers, the OCI type matching its compression).
    pub media_type: String,
    /// The blob's compression.
    pub compression: Compression,
    /// Bytes of the blob as stored.
    pub size: u64,
}

/// One image of an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The names the archive gives the image, in [`familiar_name`] form: docker-save
    /// `RepoTags` (`app:v1`), or for OCI layouts the `io.containerd.image.name` annotation
    /// then `org.opencontainers.image.ref.name` (`app:v1`, or only a tag such as `v1`, as
    /// umoci writes it). May be empty.
    pub tags: Vec<String>,
    /// Digest of the image manifest (OCI layouts only; docker-save archives have none).
    pub digest: Option<Digest>,
    /// The run-time defaults and platform.
    pub config: ImageConfig,
    /// Digest of the config blob (Docker's image ID).
    pub config_digest: Digest,
    /// Layers, lowest first.
    pub layers: Vec<Layer>,
}

impl Manifest {
    /// The first name the archive gives the image.
    pub fn reference(&self) -> Option<&str> {
        self.tags.first().map(String::as_str)
    }
}

/// Options for [`open_archive_with`].
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Limits for the outer archive and its JSON documents.
    pub limits: Limits,
    /// Images for other platforms are left out (and an index is resolved to this platform).
    pub platform: Platform,
    /// Where a compressed outer archive (or one read from a stream) is decompressed to; an
    /// unnamed temporary file there, removed when the archive is dropped. Default: the
    /// system's temporary directory.
    pub spool_dir: Option<PathBuf>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            limits: Limits::default(),
            platform: Platform::host(),
            spool_dir: None,
        }
    }
}

/// An opened, verified image archive.
pub struct ImageArchive {
    path: PathBuf,
    kind: ArchiveKind,
    source: Source,
    manifests: Vec<Manifest>,
    /// Where each layer blob lives in the source.
    blobs: HashMap<Digest, String>,
}

impl fmt::Debug for ImageArchive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageArchive")
            .field("path", &self.path)
            .field("kind", &self.kind)
            .field("manifests", &self.manifests)
            .finish_non_exhaustive()
    }
}

/// Opens an image archive for this host's platform: a docker-save or oci-archive tar file
/// (plain, gzip or zstd) or an OCI layout directory. Every blob is verified against its digest.
pub fn open_archive(path: &Path, limits: &Limits) -> Result<ImageArchive, ImageError> {
    open_archive_with(
        path,
        &OpenOptions {
            limits: limits.clone(),
            ..OpenOptions::default()
        },
    )
}

/// [`open_archive`] with options.
pub fn open_archive_with(path: &Path, options: &OpenOptions) -> Result<ImageArchive, ImageError> {
    let io_err = |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let source = if meta.is_dir() {
        Source::Dir {
            root: path.to_path_buf(),
        }
    } else if !meta.is_file() {
        // A FIFO or device would block or never end: streams go through `from_reader`.
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file or directory (use ImageArchive::from_reader for streams)",
        )));
    } else {
        let mut file = File::open(path).map_err(io_err)?;
        let mut head = [0u8; 4];
        let n = read_head(&mut file, &mut head).map_err(io_err)?;
        file.rewind().map_err(io_err)?;
        match Compression::detect(&head[..n]) {
            Compression::None => Source::tar(file, path, &options.limits)?,
            compression => {
                let spooled = spool(file, compression, path, options)?;
                Source::tar(spooled, path, &options.limits)?
            }
        }
    };
    ImageArchive::load(path.to_path_buf(), source, options)
}

fn read_head(r: &mut impl Read, head: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Copies `input` (decompressing it) into an unnamed temporary file, within
/// `max_archive_bytes`.
fn spool(
    input: impl Read,
    compression: Compression,
    path: &Path,
    options: &OpenOptions,
) -> Result<File, ImageError> {
    let dir = options.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let io_err = |source| ImageError::Io {
        path: dir.clone(),
        source,
    };
    let mut out = tempfile::tempfile_in(&dir).map_err(io_err)?;
    let decoded: Box<dyn Read> = match compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input).map_err(io_err)?),
    };
    let max = options.limits.max_archive_bytes;
    let copied = io::copy(&mut decoded.take(max + 1), &mut out).map_err(|source| {
        ImageError::BadArchive {
            archive: path.to_path_buf(),
            message: format!("cannot decompress: {source}"),
        }
    })?;
    if copied > max {
        return Err(ImageError::LimitExceeded {
            context: path.display().to_string(),
            limit: LimitKind::ArchiveBytes,
            value: copied,
            max,
        });
    }
    out.flush().map_err(io_err)?;
    Ok(out)
}

/// Where the archive's members are.
enum Source {
    Tar {
        file: File,
        members: HashMap<String, Member>,
    },
    Dir {
        root: PathBuf,
    },
}

#[derive(Debug, Clone, Copy)]
struct Member {
    offset: u64,
    size: u64,
}

/// An outer-archive member before links are resolved.
enum RawMember {
    File(Member),
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
}

/// Normalizes a member name: `./a//b` is `a/b`; `None` if it climbs out (`..` past the top).
fn normalize_member(name: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(name).ok()?;
    let mut out: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop()?;
            }
            _ => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Source {
    /// Indexes a tar file: where each regular member's data is.
    fn tar(file: File, path: &Path, limits: &Limits) -> Result<Source, ImageError> {
        let bad = |message: String| ImageError::BadArchive {
            archive: path.to_path_buf(),
            message,
        };
        let len = file
            .metadata()
            .map_err(|source| ImageError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let mut clone = file.try_clone().map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        clone.rewind().map_err(|source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = BufReader::with_capacity(64 * 1024, clone);
        let mut raw: HashMap<String, RawMember> = HashMap::new();
        let walked = tarstream::walk(reader, limits, |meta, _data| {
            let Some(name) = normalize_member(&meta.path) else {
                // Never extracted, so harmless; but nothing may refer to it either.
                return Ok(());
            };
            let member = match meta.kind {
                EntryType::Regular | EntryType::Continuous => {
                    if meta.data_offset.saturating_add(meta.size) > len {
                        return Err(format!("member {name} is truncated"));
                    }
                    RawMember::File(Member {
                        offset: meta.data_offset,
                        size: meta.size,
                    })
                }
                EntryType::Symlink => RawMember::Symlink(meta.link.unwrap_or_default()),
                EntryType::Link => RawMember::Hardlink(meta.link.unwrap_or_default()),
                _ => return Ok(()),
            };
            if raw.insert(name.clone(), member).is_some() {
                return Err(format!("duplicate member {name}"));
            }
            Ok(())
        });
        match walked {
            Ok(_) => {}
            Err(WalkError::Tar(e)) => return Err(bad(e.to_string())),
            Err(WalkError::Entry { entry, problem }) => {
                return Err(bad(format!("member {entry}: {problem}")))
            }
            Err(WalkError::TooManyEntries(n)) => {
                return Err(ImageError::LimitExceeded {
                    context: path.display().to_string(),
                    limit: LimitKind::Entries,
                    value: n,
                    max: limits.max_entries,
                })
            }
            Err(WalkError::Callback(message)) => return Err(bad(message)),
        }
        let mut members = HashMap::new();
        for name in raw.keys() {
            if let Some(m) = resolve_member(&raw, name) {
                members.insert(name.clone(), m);
            }
        }
        Ok(Source::Tar { file, members })
    }

    /// Opens a member; `None` if it does not exist.
    fn open(&self, name: &str) -> io::Result<Option<(Box<dyn Read + Send + '_>, u64)>> {
        match self {
            Source::Tar { file, members } => Ok(members.get(name).map(|m| {
                let r: Box<dyn Read + Send + '_> = Box::new(SliceReader {
                    file,
                    pos: m.offset,
                    end: m.offset + m.size,
                });
                (r, m.size)
            })),
            Source::Dir { root } => {
                let path = root.join(name);
                let meta = match std::fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e),
                };
                if !meta.is_file() {
                    return Ok(None);
                }
                let f = File::open(&path)?;
                let size = f.metadata()?.len();
                Ok(Some((Box::new(f), size)))
            }
        }
    }
}

/// Follows symlinks and hard links between members (Docker writes `layer.tar` of a layer
/// shared by two images as a symlink to the first copy).
fn resolve_member(raw: &HashMap<String, RawMember>, name: &str) -> Option<Member> {
    let mut current = name.to_string();
    for _ in 0..MAX_MEMBER_LINKS {
        match raw.get(&current)? {
            RawMember::File(m) => return Some(*m),
            RawMember::Hardlink(target) => current = normalize_member(target)?,
            RawMember::Symlink(target) => {
                let joined = if target.starts_with(b"/") {
                    target.clone()
                } else {
                    let dir = match current.rfind('/') {
                        Some(i) => &current[..i],
                        None => "",
                    };
                    let mut j = dir.as_bytes().to_vec();
                    j.push(b'/');
                    j.extend_from_slice(target);
                    j
                };
                current = normalize_member(&joined)?;
            }
        }
    }
    None
}

/// Reads `file[pos..end]` with positioned reads, so many readers can share one file.
struct SliceReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for SliceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive file is shorter than its index says",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// A reader over a blob that fails at its end if the content does not match its digest.
pub struct BlobReader<'a> {
    inner: Option<HashingReader<Box<dyn Read + Send + 'a>>>,
    expected: Digest,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let n = inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let (actual, _) = self.inner.take().expect("checked above").finish();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob digest mismatch: expected {}, content is {actual}",
                        self.expected
                    ),
                ));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
use loader::digest_from_name;
use loader::Loader;

impl ImageArchive {
    fn load(
        path: PathBuf,
        source: Source,
        options: &OpenOptions,
    ) -> Result<ImageArchive, ImageError> {
        let has = |name: &str| -> Result<bool, ImageError> {
            Ok(source
                .open(name)
                .map_err(|source| ImageError::Io {
                    path: path.clone(),
                    source,
                })?
                .is_some())
        };
        let kind = if has("manifest.json")? {
            ArchiveKind::DockerSave
        } else if has("oci-layout")? {
            ArchiveKind::OciLayout
        } else {
            return Err(ImageError::NotAnImage { archive: path });
        };
        let mut loader = Loader {
            path: &path,
            source: &source,
            options,
            hashed: HashMap::new(),
            blobs: HashMap::new(),
            skipped: BTreeSet::new(),
        };
        let manifests = match kind {
            ArchiveKind::DockerSave => loader.load_docker()?,
            ArchiveKind::OciLayout => loader.load_oci()?,
        };
        if manifests.is_empty() {
            if !loader.skipped.is_empty() {
                return Err(ImageError::NoMatchingPlatform {
                    archive: path.clone(),
                    wanted: options.platform.to_string(),
                    available: loader.skipped.into_iter().collect(),
                });
            }
            return Err(ImageError::Format {
                archive: path.clone(),
                member: match kind {
                    ArchiveKind::DockerSave => "manifest.json".into(),
                    ArchiveKind::OciLayout => "index.json".into(),
                },
                message: "lists no images".into(),
            });
        }
        let blobs = loader.blobs;
        Ok(ImageArchive {
            path,
            kind,
            source,
            manifests,
            blobs,
        })
    }

    /// Reads an archive from a stream (stdin, an upload): it is spooled, decompressed if it is
    /// gzip or zstd, to an unnamed temporary file within `max_archive_bytes`. `name` is used
    /// in messages.
    pub fn from_reader(
        reader: impl Read,
        name: &str,
        options: &OpenOptions,
    ) -> Result<ImageArchive, ImageError> {
        let path = PathBuf::from(name);
        let mut reader = BufReader::new(reader);
        let head = reader.fill_buf().map_err(|source| ImageError::Io {
            path: path.clone(),
            source,
        })?;
        let compression = Compression::detect(head);
        let file = spool(reader, compression, &path, options)?;
        let source = Source::tar(file, &path, &options.limits)?;
        ImageArchive::load(path, source, options)
    }

    /// The archive's path (or the name given to [`ImageArchive::from_reader`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The archive's format.
    pub fn kind(&self) -> ArchiveKind {
        self.kind
    }

    /// The images for the wanted platform, in archive order.
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }

    /// The image with this name among its tags (compared in [`familiar_name`] form).
    pub fn find(&self, reference: &str) -> Option<&Manifest> {
        let wanted = familiar_name(reference);
        self.manifests.iter().find(|m| m.tags.contains(&wanted))
    }

    /// The layer blob as stored (compressed as [`Layer::compression`] says). Reading it to the
    /// end fails with `InvalidData` if its content does not match [`Layer::digest`].
    pub fn layer_reader(&self, layer: &Layer) -> Result<BlobReader<'_>, ImageError> {
        let name = self
            .blobs
            .get(&layer.digest)
            .ok_or_else(|| ImageError::UnknownLayer {
                archive: self.path.clone(),
                digest: layer.digest.to_string(),
            })?;
        let (r, _) = self
            .source
            .open(name)
            .map_err(|source| ImageError::Io {
                path: self.path.clone(),
                source,
            })?
            .ok_or_else(|| ImageError::MissingBlob {
                archive: self.path.clone(),
                member: name.clone(),
            })?;
        Ok(BlobReader {
            inner: Some(HashingReader::new(r, layer.digest.algorithm())),
            expected: layer.digest.clone(),
        })
    }

    /// Applies one layer onto `dest` (see [`crate::apply`]), verifying the blob's digest once
    /// more and the uncompressed stream against [`Layer::diff_id`]. Errors name the layer by
    /// its digest. On error, discard `dest`.
    pub fn apply_layer(
        &self,
        layer: &Layer,
        dest: &Path,
        options: &ApplyOptions,
    ) -> Result<LayerStats, ImageError> {
        let name = layer.digest.to_string();
        let mut blob = self.layer_reader(layer)?;
        let stats = apply_layer_with(dest, &mut blob, layer.compression, options)
            .map_err(|e| e.in_layer(&name))?;
        // Decoders may stop at the end of their last frame: hash whatever follows too.
        io::copy(&mut blob, &mut io::sink()).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                ImageError::DigestMismatch {
                    archive: self.path.clone(),
                    member: self.blobs.get(&layer.digest).cloned().unwrap_or_default(),
                    expected: layer.digest.to_string(),
                    actual: e.to_string(),
                }
            } else {
                ImageError::Io {
                    path: self.path.clone(),
                    source: e,
                }
            }
        })?;
        if stats.diff_id != layer.diff_id {
            return Err(ImageError::DiffIdMismatch {
                layer: name,
                expected: layer.diff_id.to_string(),
                actual: stats.diff_id.to_string(),
            });
        }
        Ok(stats)
    }

    /// Applies all layers of `manifest`, lowest first, into one directory (for storage without
    /// per-layer snapshots, and tests). On error, discard `dest`.
    pub fn unpack(
        &self,
        manifest: &Manifest,
        dest: &Path,
        options: &ApplyOptions,
    ) -> Result<Vec<LayerStats>, ImageError> {
        manifest
            .layers
            .iter()
            .map(|l| self.apply_layer(l, dest, options))
            .collect()
    }
}

#[cfg(test)]
mod tests;
