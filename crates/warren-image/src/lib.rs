//! OCI image import: turns an image archive into verified layer blobs, layer directories and
//! an image config, refusing hostile input with nothing written outside the target.
//!
//! Two steps, kept apart so the daemon can store every layer once, by digest, as a
//! copy-on-write snapshot of its parent:
//!
//! 1. [`open_archive`] reads a docker-save tarball, an oci-archive tarball (either may be gzip
//!    or zstd compressed as a whole) or an OCI layout directory. It indexes the outer tar
//!    without extracting it, resolves image indexes to the host's platform, parses the image
//!    configs ([`ImageConfig`]: Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts, Labels...)
//!    and **verifies every blob against its digest and size before returning**. Each
//!    [`Manifest`] carries the image's tags (`app:v1`) and its [`Layer`]s, lowest first.
//! 2. [`apply_layer`] (or [`ImageArchive::apply_layer`], which also checks the diff_id) applies
//!    one layer's tar stream onto a directory that already holds the merged content of the
//!    layers below: regular files, directories, symlinks, hard links, FIFOs, permissions
//!    (setuid kept), numeric ownership, mtimes, a safe subset of xattrs, and OCI whiteouts and
//!    opaque directories. See the [`apply`] module for the exact rules.
//!
//! [`unpack_tree`] unpacks a plain tree (a dataset's tar stream, not a layer) with the same
//! reader and rules, except that it processes no whiteouts, refuses writes through symbolic
//! links instead of resolving them inside the target, is bounded only by the limits its caller
//! sets, and refuses a stream without its end-of-archive marker. See the [`unpack`] module.
//!
//! # Safety against hostile archives
//!
//! - Entry names that are absolute or contain `..` are refused, naming the entry.
//! - No path is ever resolved by the kernel through a symbolic link: directories are opened
//!   one component at a time with `O_NOFOLLOW`, and links met on the way are resolved inside
//!   the target as if it were `/` (like `openat2(RESOLVE_IN_ROOT)`, but portable to FreeBSD).
//!   A link to `/etc` or `../../..` left by a lower layer or by the same layer leads back into
//!   the target.
//! - Hard links must name a path inside the layer root; they are resolved the same way.
//! - Character and block devices are refused; FIFOs are created.
//! - Decompression bombs are stopped while streaming ([`Limits`]: uncompressed bytes, entries,
//!   compression ratio, path length; metadata records are capped before they are buffered).
//! - Digest and size mismatches of any blob are refused when the archive is opened; the layer
//!   blob is hashed again, and its uncompressed stream checked against the diff_id, while it is
//!   applied.
//! - A layer that changes a name between directory and non-directory within itself is refused.
//!
//! On error, [`apply_layer`] may leave the target partially written but never touches anything
//! outside it: **apply into a fresh snapshot and discard it on error.**

pub mod apply;
mod archive;
mod config;
pub mod copy;
mod digest;
mod error;
mod fsops;
mod limits;
mod tarstream;
pub mod unpack;

pub use apply::{apply_layer, apply_layer_with, Compression, LayerStats};
pub use archive::{
    familiar_name, open_archive, open_archive_with, ArchiveKind, BlobReader, ImageArchive, Layer,
    Manifest, OpenOptions, Platform, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION,
};
pub use config::ImageConfig;
pub use digest::{Algorithm, Digest, DigestParseError};
pub use error::{EntryProblem, ImageError, LimitKind};
pub use limits::{ApplyOptions, Limits, Ownership};
pub use unpack::{unpack_tree, TreeOptions};
