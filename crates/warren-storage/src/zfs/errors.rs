//! Why a `zfs` command failed: the classification of OpenZFS's messages ([`ZfsErrorKind`],
//! [`classify`]), parse errors, and the driver's error type [`ZfsError`] with its mapping into
//! [`StorageError`].

use super::*;

/// Why a `zfs` command failed, as far as its message tells.
///
/// The phrases are those OpenZFS 2.1–2.3 prints (Linux and FreeBSD alike: `cmd/zfs/zfs_main.c`,
/// `lib/libzfs/libzfs_util.c`, `libzfs_dataset.c`, `libzfs_mount.c`, `libzfs_sendrecv.c`); the
/// golden files in `tests/golden/zfs` (see its README) pin each one to its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZfsErrorKind {
    /// `dataset does not exist` (and `parent does not exist`, `no such pool 'p'`, `no such
    /// parent`, `incremental source (s) does not exist`, `... no longer exists`), `could not find
    /// any snapshots to destroy`, `does not have any resumable receive state to abort`.
    NotFound,
    /// `dataset already exists`, `destination already exists`, and a full receive's
    /// `destination 'ds' exists` / `must specify -F to overwrite it`.
    Exists,
    /// `filesystem has children` (snapshots or child datasets).
    HasChildren,
    /// `snapshot has dependent clones`, `filesystem has dependent clones` (destroy -r),
    /// `clones of previous snapshots exist` (rollback -r), `snapshot is cloned`.
    HasClones,
    /// `more recent snapshots or bookmarks exist` (rollback without `-r`), `there is a snapshot
    /// or bookmark more recent than ...` (one taken while rolling back).
    NewerSnapshots,
    /// `out of space` (libzfs prints it for ENOSPC and for EDQUOT alike).
    OutOfSpace,
    /// `destination ds space quota exceeded.` (a receive beyond a quota).
    QuotaExceeded,
    /// `pool or dataset is busy` (an unmount that something holds open), `dataset is busy`,
    /// `mountpoint or dataset is busy`, a snapshot that `it's being held`, a destination that
    /// `contains partially-complete state from "zfs receive -s"`.
    Busy,
    /// `destination ds has been modified since most recent snapshot` (an incremental receive
    /// into a changed dataset).
    Modified,
    /// `permission denied`, `Insufficient privileges` (mount), `Operation not permitted`.
    PermissionDenied,
    /// Anything else, or a command that did not run at all.
    Other,
}

impl std::fmt::Display for ZfsErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ZfsErrorKind::NotFound => "does not exist",
            ZfsErrorKind::Exists => "already exists",
            ZfsErrorKind::HasChildren => "has children",
            ZfsErrorKind::HasClones => "has dependent clones",
            ZfsErrorKind::NewerSnapshots => "has newer snapshots",
            ZfsErrorKind::OutOfSpace => "out of space",
            ZfsErrorKind::QuotaExceeded => "quota exceeded",
            ZfsErrorKind::Busy => "busy",
            ZfsErrorKind::Modified => "modified since its last snapshot",
            ZfsErrorKind::PermissionDenied => "permission denied",
            ZfsErrorKind::Other => "failed",
        })
    }
}

/// A classified `zfs` error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsFailure {
    pub kind: ZfsErrorKind,
    /// The dataset or snapshot the message names (`cannot open 'tank/x': ...`), if any.
    pub dataset: Option<String>,
    /// The message's first non-empty line.
    pub message: String,
}

/// Phrases of a `zfs` error line and what they mean, first match wins.
const PHRASES: &[(&str, ZfsErrorKind)] = &[
    ("does not exist", ZfsErrorKind::NotFound),
    ("no longer exists", ZfsErrorKind::NotFound),
    (
        "could not find any snapshots to destroy",
        ZfsErrorKind::NotFound,
    ),
    ("no such pool", ZfsErrorKind::NotFound),
    ("no such parent", ZfsErrorKind::NotFound),
    (
        "does not have any resumable receive state",
        ZfsErrorKind::NotFound,
    ),
    ("is not found among snapshots", ZfsErrorKind::NotFound),
    ("already exists", ZfsErrorKind::Exists),
    ("destination '' exists", ZfsErrorKind::Exists),
    ("dependent clones", ZfsErrorKind::HasClones),
    (
        "clones of previous snapshots exist",
        ZfsErrorKind::HasClones,
    ),
    ("snapshot is cloned", ZfsErrorKind::HasClones),
    ("has children", ZfsErrorKind::HasChildren),
    ("more recent snapshots", ZfsErrorKind::NewerSnapshots),
    ("more recent than", ZfsErrorKind::NewerSnapshots),
    ("quota exceeded", ZfsErrorKind::QuotaExceeded),
    ("out of space", ZfsErrorKind::OutOfSpace),
    ("is busy", ZfsErrorKind::Busy),
    ("being held", ZfsErrorKind::Busy),
    ("partially-complete state", ZfsErrorKind::Busy),
    ("has been modified", ZfsErrorKind::Modified),
    ("permission denied", ZfsErrorKind::PermissionDenied),
    ("insufficient privileges", ZfsErrorKind::PermissionDenied),
    ("operation not permitted", ZfsErrorKind::PermissionDenied),
];

/// The byte ranges of the single-quoted parts of `line` (`cannot open 'tank/x': ...`), without
/// their quotes. A quote between two letters or digits is an apostrophe (`it's being held`), not
/// a delimiter; an opening quote without a closing one quotes nothing.
fn quoted_spans(line: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = line.as_bytes();
    let delimiters: Vec<usize> = line
        .match_indices('\'')
        .map(|(i, _)| i)
        .filter(|&i| {
            let before = i.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(i + 1).copied();
            !(before.is_some_and(|b| b.is_ascii_alphanumeric())
                && after.is_some_and(|b| b.is_ascii_alphanumeric()))
        })
        .collect();
    delimiters
        .chunks_exact(2)
        .map(|pair| pair[0] + 1..pair[1])
        .collect()
}

/// `line` with its quoted parts emptied (`cannot open '': ...`), so that a dataset or path
/// named like a phrase cannot change the classification.
fn blank_quoted(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut at = 0;
    for span in quoted_spans(line) {
        out.push_str(&line[at..span.start]);
        at = span.end;
    }
    out.push_str(&line[at..]);
    out
}

/// Classifies what `zfs` printed on stderr.
///
/// Only the first non-empty line counts: libzfs prints `cannot <verb> '<name>': <reason>` (or,
/// for a few commands, a sentence of its own) there, and what follows is detail (the datasets
/// in the way, `use '-r' to ...`, a usage text) that lists names which must not be read as
/// reasons. The messages are the untranslated ones: the executor runs `zfs` with `LC_ALL=C`.
pub fn classify(stderr: &str) -> ZfsFailure {
    let message = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string();
    let reason = blank_quoted(&message).to_ascii_lowercase();
    let kind = PHRASES
        .iter()
        .find(|(phrase, _)| reason.contains(phrase))
        .map_or(ZfsErrorKind::Other, |&(_, kind)| kind);
    // The first quoted name; a quoted command (`run 'zfs holds -r ...'`) is not one.
    let dataset = quoted_spans(&message)
        .into_iter()
        .map(|span| &message[span])
        .find(|q| !q.is_empty() && !q.starts_with('-') && !q.starts_with("zfs "))
        .map(str::to_string);
    ZfsFailure {
        kind,
        dataset,
        message,
    }
}

/// Output that does not have the shape the command promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("line {line}: expected {expected} tab-separated columns, found {found}: {text:?}")]
    Columns {
        line: usize,
        expected: usize,
        found: usize,
        text: String,
    },
    #[error("{what} {value:?} is not a byte count or `-`")]
    Number { what: String, value: String },
    #[error("line {line}: {name:?} is not a snapshot name (dataset@label)")]
    SnapshotName { line: usize, name: String },
    #[error("property {0} missing")]
    MissingProperty(String),
    #[error("no rows")]
    Empty,
}

/// Errors of the ZFS driver. Converted into [`StorageError`] at the [`Storage`] boundary:
/// `already exists` becomes [`StorageError::Exists`], other command failures keep their
/// [`ExecError`] (argv, status, stdout, stderr), the rest become [`StorageError::Other`].
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// A `zfs` command failed.
    #[error("{error}")]
    Command {
        kind: ZfsErrorKind,
        dataset: Option<String>,
        error: Box<ExecError>,
    },
    #[error("unexpected output of `{argv}`: {error}")]
    Parse { argv: String, error: ParseError },
    #[error("zfs pool or dataset {0:?} does not exist (create the pool first: `zpool create {0} <device>`)")]
    NoPool(String),
    #[error("invalid {kind} name {name:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        name: String,
        reason: &'static str,
    },
    #[error(
        "zfs dataset {dataset} is mounted at {actual}, not at {}: run `zfs set mountpoint={} {dataset}` or use {actual} as warren's storage root",
        .expected.display(), .expected.display()
    )]
    Mountpoint {
        dataset: String,
        actual: String,
        expected: PathBuf,
    },
    #[error("world {world:?} is the origin of {}: delete those datasets first", .clones.join(", "))]
    WorldInUse { world: String, clones: Vec<String> },
    /// A dataset that must not exist does (its host path).
    #[error("dataset {} already exists", .0.display())]
    Exists(PathBuf),
    #[error("{dataset} has no snapshot {label:?}")]
    NoSnapshot { dataset: String, label: String },
    #[error(
        "{dataset} has snapshots newer than {label:?} ({}): roll back with destroy_newer to delete them",
        .newer.join(", ")
    )]
    NewerSnapshots {
        dataset: String,
        label: String,
        newer: Vec<String>,
    },
    #[error("a quota of 0 bytes on {0} would mean no limit to zfs: remove the limit instead")]
    ZeroQuota(String),
    #[error("streaming `{argv}`: {error}")]
    Stream { argv: String, error: std::io::Error },
    #[error("receiving into {dataset}: {error}{}", resume_hint(.dataset, .token.as_deref()))]
    Receive {
        dataset: String,
        /// The `receive_resume_token` of the interrupted receive, when it can be resumed.
        token: Option<String>,
        error: Box<ZfsError>,
    },
    #[error("{error}; undoing it also failed: {cleanup}")]
    Cleanup {
        error: Box<ZfsError>,
        cleanup: Box<ZfsError>,
    },
}

fn resume_hint(dataset: &str, token: Option<&str>) -> String {
    match token {
        Some(t) => format!(
            " (partial state kept: resume with the stream of `zfs send -t {t}`, or discard it with `zfs receive -A {dataset}`)"
        ),
        None => String::new(),
    }
}

impl ZfsError {
    /// The classification of a failed command (None for other errors).
    pub fn kind(&self) -> Option<ZfsErrorKind> {
        match self {
            ZfsError::Command { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(super) fn is(&self, kind: ZfsErrorKind) -> bool {
        self.kind() == Some(kind)
    }
}

/// Wraps an executor error with its classification.
pub fn command_error(error: ExecError) -> ZfsError {
    let failure = classify(error.stderr());
    ZfsError::Command {
        kind: failure.kind,
        dataset: failure.dataset,
        error: Box::new(error),
    }
}

impl From<ZfsError> for StorageError {
    fn from(e: ZfsError) -> Self {
        match e {
            ZfsError::Command {
                kind: ZfsErrorKind::Exists,
                dataset: Some(dataset),
                ..
            } => StorageError::Exists(PathBuf::from(dataset)),
            ZfsError::Command { error, .. } => StorageError::Exec(*error),
            ZfsError::Exists(path) => StorageError::Exists(path),
            other => StorageError::Other(other.to_string()),
        }
    }
}
