//! Errors. Every error names what it is about: the archive (its path), the blob or member in
//! it, the layer, and for layer contents the tar entry.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why one entry of a layer was refused or could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    /// The entry's name is absolute (`/etc/passwd`).
    #[error("absolute path")]
    Absolute,
    /// The entry's name has a `..` component.
    #[error("path has a `..` component")]
    DotDot,
    /// The entry's name is empty or contains a NUL byte.
    #[error("invalid path")]
    InvalidPath,
    /// The entry's name (or link target) is longer than `Limits::max_path_len`.
    #[error("path is {len} bytes long, the limit is {limit}")]
    PathTooLong {
        /// Length in bytes.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A character or block device node.
    #[error("device nodes are refused")]
    Device,
    /// An entry type this importer does not handle (GNU sparse files, tape volume headers...).
    #[error("unsupported tar entry type {0}")]
    UnsupportedType(String),
    /// A hard link whose target is absolute or has a `..` component.
    #[error("hard link target `{0}` is outside the layer root")]
    HardlinkOutside(String),
    /// A hard link whose target does not exist (inside the target directory) or is a directory.
    #[error("hard link target `{target}` {why}")]
    HardlinkTarget {
        /// The link target as written in the archive.
        target: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The same path appears twice in one layer, once as a directory and once as something else.
    #[error("duplicate entry changes a {earlier} written earlier in this layer into a {later}")]
    DuplicateTypeChange {
        /// What the earlier entry was.
        earlier: &'static str,
        /// What this entry is.
        later: &'static str,
    },
    /// A whiteout whose name is not a valid file name (`.wh.`, `.wh..`), or a whiteout name
    /// used as a directory.
    #[error("malformed whiteout")]
    BadWhiteout,
    /// A non-directory entry for the layer root itself (`./`).
    #[error("the layer root can only be a directory")]
    RootNotDirectory,
    /// A path component that must be a directory is a file (or other non-directory).
    #[error("`{0}` is not a directory")]
    NotADirectory(String),
    /// A plain tree's entry (or hard link target) lies below a symbolic link: writing it would
    /// go through the link. Names the link.
    #[error("lies below the symlink `{0}`; writing through it is refused")]
    BelowSymlink(String),
    /// A plain tree's relative symbolic link whose target leads above the tree's root.
    #[error("symbolic link target `{0}` leads outside the archive root")]
    SymlinkOutside(String),
    /// Too many symbolic links while resolving the entry's parent directory (a loop).
    #[error("too many levels of symbolic links")]
    SymlinkLoop,
    /// A PAX extended header that this importer refuses (a size override, sparse-file keys,
    /// an unparsable record).
    #[error("unsupported or malformed PAX header: {0}")]
    Pax(String),
    /// A metadata record (GNU long name, PAX header) larger than the limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    MetadataTooLarge {
        /// Which record.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation (`create`, `mkdir`, `chown`...).
        op: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl EntryProblem {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        EntryProblem::Io {
            op,
            source: source.into(),
        }
    }
}

/// Which limit of [`crate::Limits`] was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `max_layer_bytes`: uncompressed tar stream or file contents of one layer.
    LayerBytes,
    /// `max_entries`: tar entries of one layer or members of the outer archive.
    Entries,
    /// `max_ratio`: uncompressed bytes per compressed byte.
    Ratio,
    /// `max_archive_bytes`: the (decompressed) outer archive.
    ArchiveBytes,
    /// `max_json_bytes`: a manifest, index or config document.
    JsonBytes,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::LayerBytes => "max_layer_bytes",
            LimitKind::Entries => "max_entries",
            LimitKind::Ratio => "max_ratio",
            LimitKind::ArchiveBytes => "max_archive_bytes",
            LimitKind::JsonBytes => "max_json_bytes",
        })
    }
}

/// Everything that can go wrong importing an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading the archive (or the layout directory) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Neither a docker-save `manifest.json` nor an OCI `oci-layout` file is present.
    #[error("{}: not an image archive (no manifest.json and no oci-layout)", archive.display())]
    NotAnImage {
        /// The archive.
        archive: PathBuf,
    },
    /// The outer tar archive is malformed or truncated.
    #[error("{}: malformed or truncated archive: {message}", archive.display())]
    BadArchive {
        /// The archive.
        archive: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A JSON document (manifest, index, config) is malformed or misses a field.
    #[error("{}: {member}: {message}", archive.display())]
    Format {
        /// The archive.
        archive: PathBuf,
        /// The member or blob (`manifest.json`, `blobs/sha256/...`).
        member: String,
        /// What is wrong.
        message: String,
    },
    /// A digest string is not `sha256:<64 hex>` / `sha512:<128 hex>`.
    #[error("{}: {member}: invalid digest `{value}`", archive.display())]
    InvalidDigest {
        /// The archive.
        archive: PathBuf,
        /// Where the digest was read.
        member: String,
        /// The digest as written.
        value: String,
    },
    /// A member or blob named by a manifest is absent.
    #[error("{}: missing {member}", archive.display())]
    MissingBlob {
        /// The archive.
        archive: PathBuf,
        /// The member or blob path.
        member: String,
    },
    /// A blob's content does not hash to its digest.
    #[error("{}: {member}: digest mismatch: expected {expected}, content is {actual}", archive.display())]
    DigestMismatch {
        /// The archive.
        archive: PathBuf,
        /// The member or blob path.
        member: String,
        /// The digest the manifest (or file name) claims.
        expected: String,
        /// The digest of the content.
        actual: String,
    },
    /// A blob's length differs from its descriptor's size (a truncated or padded blob).
    #[error("{}: {member}: size mismatch: expected {expected} bytes, found {actual}", archive.display())]
    SizeMismatch {
        /// The archive.
        archive: PathBuf,
        /// The member or blob path.
        member: String,
        /// The size the descriptor claims.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// A media type this importer does not handle (encrypted layers, non-image artifacts).
    #[error("{}: {member}: unsupported media type `{media_type}`", archive.display())]
    UnsupportedMediaType {
        /// The archive.
        archive: PathBuf,
        /// The descriptor's blob.
        member: String,
        /// The media type.
        media_type: String,
    },
    /// An image index has no manifest for the wanted platform.
    #[error("{}: no image for platform {wanted} (available: {})", archive.display(), available.join(", "))]
    NoMatchingPlatform {
        /// The archive.
        archive: PathBuf,
        /// The platform asked for.
        wanted: String,
        /// The platforms the index lists.
        available: Vec<String>,
    },
    /// A limit of [`crate::Limits`] was exceeded.
    #[error("{context}: limit {limit} exceeded ({value} > {max})")]
    LimitExceeded {
        /// The archive or layer.
        context: String,
        /// The limit.
        limit: LimitKind,
        /// The value reached.
        value: u64,
        /// The limit's value.
        max: u64,
    },
    /// One entry of a layer was refused or failed.
    #[error("{layer}: entry `{entry}`: {problem}")]
    Entry {
        /// The layer (its digest, or `layer` for a bare stream).
        layer: String,
        /// The entry's name as written in the tar.
        entry: String,
        /// What is wrong.
        #[source]
        problem: EntryProblem,
    },
    /// The layer's tar stream (or its compression) is corrupt or truncated.
    #[error("{layer}: corrupt or truncated layer: {source}")]
    BadLayer {
        /// The layer.
        layer: String,
        /// The decoder's or tar reader's error.
        #[source]
        source: io::Error,
    },
    /// A plain tree's tar stream ended before its end-of-archive marker.
    #[error("{context}: the archive is truncated (it ends before its end-of-archive marker)")]
    Truncated {
        /// The stream (`archive`).
        context: String,
    },
    /// The uncompressed layer does not hash to the diff_id the image config lists.
    #[error("{layer}: uncompressed content is {actual}, the image config says {expected}")]
    DiffIdMismatch {
        /// The layer.
        layer: String,
        /// The config's diff_id.
        expected: String,
        /// The digest of the uncompressed stream.
        actual: String,
    },
    /// `dest` cannot be opened as a directory.
    #[error("{}: cannot open target directory: {source}", path.display())]
    Target {
        /// The target.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The layer is not part of this archive.
    #[error("{}: layer {digest} is not in this archive", archive.display())]
    UnknownLayer {
        /// The archive.
        archive: PathBuf,
        /// The layer digest asked for.
        digest: String,
    },
}

impl ImageError {
    /// Replaces the layer name in layer-level errors (used to name a layer by its digest).
    pub(crate) fn in_layer(self, name: &str) -> Self {
        match self {
            ImageError::Entry { entry, problem, .. } => ImageError::Entry {
                layer: name.to_string(),
                entry,
                problem,
            },
            ImageError::BadLayer { source, .. } => ImageError::BadLayer {
                layer: name.to_string(),
                source,
            },
            ImageError::LimitExceeded {
                limit, value, max, ..
            } => ImageError::LimitExceeded {
                context: name.to_string(),
                limit,
                value,
                max,
            },
            ImageError::Truncated { .. } => ImageError::Truncated {
                context: name.to_string(),
            },
            ImageError::DiffIdMismatch {
                expected, actual, ..
            } => ImageError::DiffIdMismatch {
                layer: name.to_string(),
                expected,
                actual,
            },
            other => other,
        }
    }

    /// The entry problem, when this error is about one layer entry.
    pub fn entry_problem(&self) -> Option<&EntryProblem> {
        match self {
            ImageError::Entry { problem, .. } => Some(problem),
            _ => None,
        }
    }
}
