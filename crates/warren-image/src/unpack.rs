//! Unpacking a plain tree: the tar stream of a dataset (a directory as `tar -c` writes it), not
//! an image layer. It shares the layer applier's reader and its safety rules (see
//! [`crate::apply`]), with these differences:
//!
//! - **No whiteouts.** `.wh.NAME` is an ordinary name.
//! - **No symbolic link is followed or written through.** An entry (or a hard link's target)
//!   below a symbolic link is refused ([`EntryProblem::BelowSymlink`]), where a layer would
//!   resolve the link inside the target. A relative symbolic link whose target leads above the
//!   tree's root is refused ([`EntryProblem::SymlinkOutside`]); absolute targets are stored (they
//!   resolve inside whatever root the tree is later used as).
//! - **Size and entry count** are bounded only where the caller says ([`TreeOptions`]), not by
//!   the layer defaults: a dataset may be far larger than an image layer.
//! - **Truncation.** A stream that ends before its end-of-archive marker is refused
//!   ([`ImageError::Truncated`]).
//!
//! As with layers, absolute names, `..` components, hard links leading outside the tree and
//! device nodes are refused, and on error `dest` may be partially written but nothing outside
//! it is touched: unpack into a fresh directory and remove it on error.

use std::io::Read;
use std::path::Path;

use crate::apply::{apply_stream, Compression, LayerStats};
use crate::error::ImageError;
use crate::{ApplyOptions, Limits, Ownership};

#[cfg(doc)]
use crate::EntryProblem;

/// How [`unpack_tree`] unpacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeOptions {
    /// Bytes of the tar stream; `None` (the default): no limit but the destination's space.
    pub max_bytes: Option<u64>,
    /// Tar headers; `None` (the default): no limit.
    pub max_entries: Option<u64>,
    /// Bytes of an entry name, link name or symlink target. Default 4096.
    pub max_path_len: usize,
    /// Ownership handling (numeric ids from the tar when running as root, by default).
    pub ownership: Ownership,
    /// Do not apply extended attributes (see [`ApplyOptions::skip_xattrs`]).
    pub skip_xattrs: bool,
}

impl Default for TreeOptions {
    fn default() -> Self {
        TreeOptions {
            max_bytes: None,
            max_entries: None,
            max_path_len: Limits::default().max_path_len,
            ownership: Ownership::Auto,
            skip_xattrs: false,
        }
    }
}

/// Unpacks the plain tar stream `stream` into the directory `dest`. See the
/// [module documentation](crate::unpack) for the rules. Errors name the stream `archive`.
pub fn unpack_tree(
    dest: &Path,
    stream: impl Read,
    options: &TreeOptions,
) -> Result<LayerStats, ImageError> {
    let apply = ApplyOptions {
        limits: Limits {
            max_layer_bytes: options.max_bytes.unwrap_or(u64::MAX),
            max_entries: options.max_entries.unwrap_or(u64::MAX),
            max_ratio: None,
            max_path_len: options.max_path_len,
            ..Limits::default()
        },
        ownership: options.ownership,
        skip_xattrs: options.skip_xattrs,
    };
    apply_stream(dest, stream, Compression::None, &apply, true).map_err(|e| e.in_layer("archive"))
}

/// True if the relative symbolic link `target`, created `depth` directories below the root,
/// resolves above the root. Absolute targets never do here: they are not resolved against the
/// host.
pub(crate) fn escapes(depth: usize, target: &[u8]) -> bool {
    if target.starts_with(b"/") {
        return false;
    }
    let mut depth = depth as i64;
    for c in target.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::escapes;

    #[test]
    fn relative_symlinks_leading_above_the_root() {
        assert!(!escapes(0, b"/etc"));
        assert!(!escapes(0, b"sh"));
        assert!(!escapes(1, b"../bin/sh"));
        assert!(!escapes(1, b"./../x/../y"));
        assert!(escapes(0, b"../etc"));
        assert!(escapes(1, b"../../etc"));
        assert!(!escapes(2, b"a/../../../x"));
        assert!(escapes(2, b"a/../../../../x"));
    }
}
