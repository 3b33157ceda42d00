//! Resource limits and layer application options.

/// Limits enforced while reading archives and applying layers, all checked while streaming,
/// so a hostile archive is stopped when it crosses a limit, not after it has been expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one layer's uncompressed tar stream (headers, contents and padding; file
    /// contents cannot exceed it, since sparse entries are refused). Default 8 GiB.
    pub max_layer_bytes: u64,
    /// Tar headers in one layer (including long-name and PAX headers), and members of the outer
    /// archive. Default 1,000,000.
    pub max_entries: u64,
    /// Uncompressed bytes per compressed byte of a layer, checked once a layer has expanded past
    /// [`Limits::RATIO_GRACE`]. `None` disables the check. Default 2048: gzip cannot exceed
    /// about 1032:1, so only zstd streams of long zero runs (or bombs) can trip it.
    pub max_ratio: Option<u64>,
    /// Bytes of an entry name, link name or symlink target. Default 4096.
    pub max_path_len: usize,
    /// Bytes of the outer archive when it has to be spooled (it is compressed, or read from a
    /// stream). Default 64 GiB.
    pub max_archive_bytes: u64,
    /// Bytes of one JSON document (manifest.json, index, manifest, config). Default 8 MiB.
    pub max_json_bytes: u64,
}

impl Limits {
    /// Uncompressed bytes a layer may reach before [`Limits::max_ratio`] is checked.
    pub const RATIO_GRACE: u64 = 16 << 20;

    /// Bytes of one PAX extended header record set (xattrs live there). Fixed: 1 MiB.
    pub const MAX_PAX_BYTES: u64 = 1 << 20;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_bytes: 8 << 30,
            max_entries: 1_000_000,
            max_ratio: Some(2048),
            max_path_len: 4096,
            max_archive_bytes: 64 << 30,
            max_json_bytes: 8 << 20,
        }
    }
}

/// Whose files the applied layer's files become.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// Numeric uid/gid as in the tar when running as root (effective uid 0), else the caller's.
    #[default]
    Auto,
    /// Numeric uid/gid as in the tar; failing to set them is an error.
    Preserve,
    /// Leave files owned by the caller.
    Ignore,
}

/// How [`crate::apply_layer_with`] applies a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyOptions {
    /// Limits enforced while streaming.
    pub limits: Limits,
    /// Ownership handling.
    pub ownership: Ownership,
    /// Do not apply extended attributes. By default the PAX `SCHILY.xattr.*` records of files
    /// and directories are applied, but only `user.*` (except `user.overlay.*`) and
    /// `security.capability`; all others (`trusted.*`, which overlayfs interprets, ACLs,
    /// SELinux labels) and those the filesystem does not support are counted in
    /// [`crate::LayerStats::xattrs_skipped`].
    pub skip_xattrs: bool,
}

impl ApplyOptions {
    /// Default options with the given limits.
    pub fn with_limits(limits: &Limits) -> Self {
        ApplyOptions {
            limits: limits.clone(),
            ..ApplyOptions::default()
        }
    }
}
