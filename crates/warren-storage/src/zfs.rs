//! The ZFS dataset driver: every dataset is a ZFS filesystem under one parent dataset,
//! `<pool>/warren`, mounted at the driver root.
//!
//! Layout (dataset → mountpoint, each mountpoint set explicitly so the [`Storage`] path
//! defaults hold whatever the pool's own mountpoints are):
//! ```text
//! <pool>/warren                        <root>
//! <pool>/warren/worlds/<w>             <root>/worlds/<w>             read-only, @base
//! <pool>/warren/workloads/<n>          <root>/workloads/<n>          workload quota lives here
//! <pool>/warren/workloads/<n>/rootfs   <root>/workloads/<n>/rootfs   clone of <w>@base
//! <pool>/warren/workloads/<n>/data     <root>/workloads/<n>/data
//! <pool>/warren/volumes/<v>            <root>/volumes/<v>
//! ```
//!
//! - a world is sealed with `zfs set readonly=on` plus a `@base` snapshot; a world is listed
//!   once `@base` exists, and cannot be deleted while clones depend on it;
//! - a workload rootfs is `zfs clone` of `<world>@base`: constant time, sharing every block
//!   with the world until written;
//! - snapshots, rollback, clones, quotas (`quota`, so snapshots and children count) and
//!   `zfs send`/`zfs receive -s` streams work on every workload dataset and volume;
//! - a staged receive ([`Storage::receive_staged`]) of a full stream goes into a hidden
//!   `<pool>/warren/incoming-<unique>` dataset (unmounted, `canmount=noauto`) renamed into place
//!   on commit; an incremental one is received in place and aborted by rolling back to the
//!   snapshot that preceded it (see [`ZfsStorage::receive_staged_via`]);
//! - a clone of a dataset's current state (`label` None) goes through a snapshot
//!   `@warren-clone-<dst>` of the source, which stays as the clone's origin (`zfs promote` is
//!   not used, so the source keeps owning its blocks); a stale one is replaced next time;
//! - every mutating step that fails after an earlier step succeeded undoes that step (a failed
//!   seal destroys the world, a failed clone destroys the workload dataset it had to create),
//!   so nothing is left half-done; an undo that fails too is reported alongside the error.
//!
//! All commands are pure builders returning [`Cmd`] (`zfs ... -Hp` for machine-readable
//! output) run through the injected [`Executor`]; only the two streams spawn `zfs` directly
//! ([`pipe_out`], [`pipe_in`]) with the executor's environment hygiene. Parsers of `zfs list`,
//! `zfs get` and of error messages are pure functions. Nothing here is OS specific: the same
//! code drives OpenZFS on Linux and FreeBSD.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, Executor};

use crate::fsutil::remove_file_if_exists;
use crate::{DatasetId, DatasetInfo, Result, SnapshotInfo, Staged, Storage, StorageError};

/// The snapshot of a sealed world that workload root filesystems are cloned from.
pub const BASE_SNAPSHOT: &str = "base";
/// Prefix of the snapshot [`Storage::clone_dataset`] takes when given no label.
pub const CLONE_SNAPSHOT_PREFIX: &str = "warren-clone-";
/// Longest dataset or snapshot name ZFS accepts (`ZFS_MAX_DATASET_NAME_LEN - 1`).
pub const MAX_NAME_LEN: usize = 255;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

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

    fn is(&self, kind: ZfsErrorKind) -> bool {
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

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

/// Splits `zfs list -H` / `zfs get -H` output into rows of exactly `columns` tab-separated
/// fields. Fields are not trimmed (mountpoints may contain spaces); `\r\n` endings are accepted.
pub fn parse_list(text: &str, columns: usize) -> Result<Vec<Vec<String>>, ParseError> {
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let fields: Vec<String> = line.split('\t').map(str::to_string).collect();
            if fields.len() == columns {
                Ok(fields)
            } else {
                Err(ParseError::Columns {
                    line: i + 1,
                    expected: columns,
                    found: fields.len(),
                    text: line.to_string(),
                })
            }
        })
        .collect()
}

/// One row of `zfs get -Hp -o name,property,value,source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyRow {
    pub name: String,
    pub property: String,
    /// `-` when the property does not apply.
    pub value: String,
    /// `local`, `default`, `inherited from <dataset>`, `received`, `temporary` or `-`.
    pub source: String,
}

/// Parses `zfs get -Hp -o name,property,value,source` output.
pub fn parse_get(text: &str) -> Result<Vec<PropertyRow>, ParseError> {
    Ok(parse_list(text, 4)?
        .into_iter()
        .map(|mut r| {
            let source = r.pop().unwrap_or_default();
            let value = r.pop().unwrap_or_default();
            let property = r.pop().unwrap_or_default();
            let name = r.pop().unwrap_or_default();
            PropertyRow {
                name,
                property,
                value,
                source,
            }
        })
        .collect())
}

/// Parses `zfs get -Hp -o property,value` output of one dataset into property → value.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    Ok(parse_list(text, 2)?
        .into_iter()
        .map(|mut r| {
            let value = r.pop().unwrap_or_default();
            (r.pop().unwrap_or_default(), value)
        })
        .collect())
}

/// The value `zfs get -Hp -o value PROP DS` printed: its one line, `None` for `-` or nothing.
pub fn parse_value(text: &str) -> Option<String> {
    let v = text.strip_suffix('\n').unwrap_or(text);
    let v = v.strip_suffix('\r').unwrap_or(v);
    (!v.is_empty() && v != "-").then(|| v.to_string())
}

/// A `-p` byte count; `-` (not applicable) and `none` are `None`.
pub fn parse_size(what: &str, value: &str) -> Result<Option<u64>, ParseError> {
    match value.trim() {
        "-" | "none" => Ok(None),
        v => v.parse().map(Some).map_err(|_| ParseError::Number {
            what: what.to_string(),
            value: value.to_string(),
        }),
    }
}

/// A quota as `zfs get -p` prints it: `0` (and `none`, `-`) mean no limit.
pub fn parse_quota(value: &str) -> Result<Option<u64>, ParseError> {
    Ok(parse_size("quota", value)?.filter(|&q| q != 0))
}

/// The `clones` property of a snapshot: comma-separated dataset names, empty or `-` for none.
pub fn parse_clones(value: &str) -> Vec<String> {
    parse_value(value)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `on`/`off` properties (`readonly`, `canmount`...).
pub fn parse_on_off(value: &str) -> bool {
    value.trim() == "on"
}

/// One row of `zfs list -Hp -t snapshot -o name,used,creation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZfsSnapshot {
    /// The dataset the snapshot belongs to (the part before `@`).
    pub dataset: String,
    pub label: String,
    /// Bytes held only by this snapshot.
    pub used: u64,
    /// Unix seconds.
    pub creation: u64,
}

/// Parses `zfs list -Hp -t snapshot -o name,used,creation` output, keeping its order.
pub fn parse_snapshot_list(text: &str) -> Result<Vec<ZfsSnapshot>, ParseError> {
    parse_list(text, 3)?
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let (dataset, label) =
                row[0]
                    .split_once('@')
                    .ok_or_else(|| ParseError::SnapshotName {
                        line: i + 1,
                        name: row[0].clone(),
                    })?;
            let number = |what: &str, v: &str| {
                parse_size(what, v)?.ok_or_else(|| ParseError::Number {
                    what: what.to_string(),
                    value: v.to_string(),
                })
            };
            Ok(ZfsSnapshot {
                dataset: dataset.to_string(),
                label: label.to_string(),
                used: number("used", &row[1])?,
                creation: number("creation", &row[2])?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// The characters OpenZFS accepts in a dataset or snapshot component.
fn zfs_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | ' ')
}

/// Refuses world, workload and volume names that are not one ZFS name component (or would
/// collide with the world metadata files next to the worlds).
pub fn check_component(kind: &'static str, name: &str) -> Result<(), ZfsError> {
    let bad = |reason| {
        Err(ZfsError::InvalidName {
            kind,
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if name.ends_with(".json") || name.ends_with(".sealed") {
        return bad("must not end with .json or .sealed");
    }
    if !name.chars().all(zfs_char) {
        return bad("zfs allows only letters, digits, space and - _ . :");
    }
    if name.len() > 200 {
        return bad("longer than 200 bytes");
    }
    Ok(())
}

/// Refuses labels that break the snapshot label rule
/// ([`warren_model::names::is_snapshot_label`]), which also keeps out what ZFS would reject or
/// read as a list (`,`) or range (`%`).
pub fn check_label(label: &str) -> Result<(), ZfsError> {
    if warren_model::names::is_snapshot_label(label) {
        return Ok(());
    }
    Err(ZfsError::InvalidName {
        kind: "snapshot",
        name: label.to_string(),
        reason: warren_model::names::SNAPSHOT_LABEL_RULE,
    })
}

fn check_pool(pool: &str) -> Result<(), ZfsError> {
    let ok = !pool.is_empty()
        && pool.len() <= 200
        && pool
            .split('/')
            .all(|c| !c.is_empty() && !c.starts_with('.') && c.chars().all(zfs_char));
    if ok {
        Ok(())
    } else {
        Err(ZfsError::InvalidName {
            kind: "pool",
            name: pool.to_string(),
            reason: "expected a pool or dataset name like tank or tank/sub",
        })
    }
}

/// The snapshot label [`Storage::clone_dataset`] uses for `dst` when given none.
pub fn clone_snapshot_label(dst: &DatasetId) -> String {
    format!("{CLONE_SNAPSHOT_PREFIX}{}", dst.key().replace('/', "-"))
}

// ---------------------------------------------------------------------------------------------
// Command builders
// ---------------------------------------------------------------------------------------------

fn zfs() -> Cmd {
    Cmd::new("zfs")
}

fn mountpoint_opt(mountpoint: &Path) -> OsString {
    let mut o = OsString::from("mountpoint=");
    o.push(mountpoint);
    o
}

/// `zfs list -Hp -o name DS`: succeeds iff `DS` (a dataset or snapshot) exists.
pub fn exists_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-o", "name", ds])
}

/// `zfs list -Hp -o name -d 1 DS`: `DS` and its direct children.
pub fn children_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-o", "name", "-d", "1", ds])
}

/// `zfs list -Hp -t filesystem -o name,readonly -r DS`.
pub fn list_filesystems_cmd(ds: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "filesystem",
        "-o",
        "name,readonly",
        "-r",
        ds,
    ])
}

/// `zfs list -Hp -t snapshot -o name -d 2 DS`: the snapshots of `DS`'s children.
pub fn child_snapshots_cmd(ds: &str) -> Cmd {
    zfs().args(["list", "-Hp", "-t", "snapshot", "-o", "name", "-d", "2", ds])
}

/// `zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 DS`: oldest first.
/// Sorted by creation txg rather than `creation`, whose one-second resolution ties.
pub fn snapshot_list_cmd(ds: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        "name,used,creation",
        "-s",
        "createtxg",
        "-d",
        "1",
        ds,
    ])
}

/// `zfs list -Hp -t snapshot -o name,used,creation DS@LABEL`.
pub fn snapshot_info_cmd(snapshot: &str) -> Cmd {
    zfs().args([
        "list",
        "-Hp",
        "-t",
        "snapshot",
        "-o",
        "name,used,creation",
        snapshot,
    ])
}

/// `zfs get -Hp -t filesystem -o name,property,value,source PROPS -d DEPTH DS`.
pub fn get_cmd(ds: &str, props: &[&str], depth: u32) -> Cmd {
    zfs()
        .args([
            "get",
            "-Hp",
            "-t",
            "filesystem",
            "-o",
            "name,property,value,source",
        ])
        .arg(props.join(","))
        .args(["-d", &depth.to_string(), ds])
}

/// `zfs get -Hp -o value PROP DS`.
pub fn get_value_cmd(ds: &str, prop: &str) -> Cmd {
    zfs().args(["get", "-Hp", "-o", "value", prop, ds])
}

/// `zfs get -Hp -o property,value used,quota DS`.
pub fn usage_cmd(ds: &str) -> Cmd {
    zfs().args(["get", "-Hp", "-o", "property,value", "used,quota", ds])
}

/// `zfs create [-p] -o mountpoint=M DS`.
pub fn create_cmd(ds: &str, mountpoint: &Path, parents: bool) -> Cmd {
    let mut c = zfs().arg("create");
    if parents {
        c = c.arg("-p");
    }
    c.arg("-o").arg(mountpoint_opt(mountpoint)).arg(ds)
}

/// `zfs destroy [-r] TARGET` (a dataset, or one snapshot `DS@LABEL`).
pub fn destroy_cmd(target: &str, recursive: bool) -> Cmd {
    let c = zfs().arg("destroy");
    if recursive { c.arg("-r") } else { c }.arg(target)
}

/// `zfs snapshot DS@LABEL`.
pub fn snapshot_cmd(ds: &str, label: &str) -> Cmd {
    zfs().arg("snapshot").arg(format!("{ds}@{label}"))
}

/// `zfs clone -o mountpoint=M SNAPSHOT DST`.
pub fn clone_cmd(snapshot: &str, dst: &str, mountpoint: &Path) -> Cmd {
    zfs()
        .args(["clone", "-o"])
        .arg(mountpoint_opt(mountpoint))
        .args([snapshot, dst])
}

/// `zfs set PROP=VALUE DS`.
pub fn set_cmd(ds: &str, prop: &str, value: &str) -> Cmd {
    zfs().arg("set").arg(format!("{prop}={value}")).arg(ds)
}

/// `zfs rollback [-r] DS@LABEL`.
pub fn rollback_cmd(ds: &str, label: &str, destroy_newer: bool) -> Cmd {
    let c = zfs().arg("rollback");
    if destroy_newer { c.arg("-r") } else { c }.arg(format!("{ds}@{label}"))
}

/// `zfs send [-i @SINCE] DS@LABEL`.
pub fn send_cmd(ds: &str, label: &str, since: Option<&str>) -> Cmd {
    let mut c = zfs().arg("send");
    if let Some(s) = since {
        c = c.arg("-i").arg(format!("@{s}"));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs send -t TOKEN`: the rest of an interrupted stream, from the receiver's
/// `receive_resume_token`.
pub fn resume_send_cmd(token: &str) -> Cmd {
    zfs().args(["send", "-t", token])
}

/// `zfs receive -s -u [-o mountpoint=M] DS@LABEL`: resumable, not mounted (the caller mounts);
/// the mountpoint is given for a new dataset.
pub fn receive_cmd(ds: &str, label: &str, mountpoint: Option<&Path>) -> Cmd {
    let mut c = zfs().args(["receive", "-s", "-u"]);
    if let Some(m) = mountpoint {
        c = c.arg("-o").arg(mountpoint_opt(m));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs receive -A DS`: discards the partial state of an interrupted resumable receive.
pub fn receive_abort_cmd(ds: &str) -> Cmd {
    zfs().args(["receive", "-A", ds])
}

/// Name prefix of the hidden dataset a staged full receive goes into,
/// `<pool>/warren/incoming-<unique>`.
pub const STAGED_PREFIX: &str = "incoming-";

/// `zfs receive -u [-o canmount=noauto -o mountpoint=M] DS@LABEL`: the receive of a staged
/// import. A full stream (`mountpoint` given) goes into a new hidden dataset that is neither
/// mounted now nor at boot (`canmount=noauto`) but already carries its final mountpoint. Not
/// resumable: an interrupted receive leaves no partial state behind.
pub fn receive_staged_cmd(ds: &str, label: &str, mountpoint: Option<&Path>) -> Cmd {
    let mut c = zfs().args(["receive", "-u"]);
    if let Some(m) = mountpoint {
        c = c
            .args(["-o", "canmount=noauto", "-o"])
            .arg(mountpoint_opt(m));
    }
    c.arg(format!("{ds}@{label}"))
}

/// `zfs rename FROM TO`.
pub fn rename_cmd(from: &str, to: &str) -> Cmd {
    zfs().args(["rename", from, to])
}

/// `zfs mount DS`.
pub fn mount_cmd(ds: &str) -> Cmd {
    zfs().args(["mount", ds])
}

/// The `quota=` value for `bytes` (`none` removes the limit).
pub fn quota_value(ds: &str, bytes: Option<u64>) -> Result<String, ZfsError> {
    match bytes {
        None => Ok("none".to_string()),
        Some(0) => Err(ZfsError::ZeroQuota(ds.to_string())),
        Some(n) => Ok(n.to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

fn spawn_error(cmd: &Cmd, source: std::io::Error) -> ZfsError {
    command_error(ExecError::Spawn {
        argv: cmd.argv_string(),
        source,
    })
}

fn failed(cmd: &Cmd, status: std::process::ExitStatus, stdout: String, stderr: String) -> ZfsError {
    command_error(ExecError::Failed {
        argv: cmd.argv_string(),
        status: status.to_string(),
        stdout,
        stderr,
    })
}

fn read_in_thread<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` (spawned like the host executor does: absolute path, clean environment) and
/// copies its stdout into `out`; stderr is kept for the error.
pub fn pipe_out(cmd: &Cmd, out: &mut dyn Write) -> Result<(), ZfsError> {
    let mut c = warren_exec::std_command(&cmd.program).map_err(command_error)?;
    c.args(&cmd.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
    let stderr = read_in_thread(child.stderr.take());
    let mut stdout = child.stdout.take().expect("piped stdout");
    let copied = std::io::copy(&mut stdout, out).and_then(|_| out.flush());
    drop(stdout);
    if copied.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| spawn_error(cmd, e))?;
    let stderr = stderr.join().unwrap_or_default();
    if let Err(error) = copied {
        return Err(ZfsError::Stream {
            argv: cmd.argv_string(),
            error,
        });
    }
    if !status.success() {
        return Err(failed(cmd, status, String::new(), stderr));
    }
    Ok(())
}

/// Runs `cmd` and copies `input` into its stdin. A reader error kills the command; the
/// command's own failure (which closes the pipe early) is reported with its stderr.
pub fn pipe_in(cmd: &Cmd, input: &mut dyn Read) -> Result<(), ZfsError> {
    let mut c = warren_exec::std_command(&cmd.program).map_err(command_error)?;
    c.args(&cmd.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
    let stdout = read_in_thread(child.stdout.take());
    let stderr = read_in_thread(child.stderr.take());
    let mut stdin = child.stdin.take().expect("piped stdin");
    let copied = std::io::copy(input, &mut stdin).and_then(|_| stdin.flush());
    drop(stdin);
    let copy_error = match copied {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            let _ = child.kill();
            Some(e)
        }
        _ => None,
    };
    let status = child.wait().map_err(|e| spawn_error(cmd, e))?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if let Some(error) = copy_error {
        return Err(ZfsError::Stream {
            argv: cmd.argv_string(),
            error,
        });
    }
    if !status.success() {
        return Err(failed(cmd, status, stdout, stderr));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

/// ZFS-backed datasets under `<pool>/warren`, mounted under `mountpoint_root`.
pub struct ZfsStorage {
    /// e.g. `tank/warren`.
    pool_dataset: String,
    mountpoint_root: PathBuf,
    exec: Arc<dyn Executor>,
}

impl ZfsStorage {
    /// Attaches to `<pool>/warren`, creating it and its `worlds`, `workloads` and `volumes`
    /// children (mounted under `root`) when missing. Fails clearly when `pool` does not exist
    /// or when an existing dataset is mounted elsewhere; whatever this call created is
    /// destroyed again on failure.
    pub fn open(pool: &str, root: PathBuf, exec: Arc<dyn Executor>) -> Result<Self> {
        check_pool(pool)?;
        let s = ZfsStorage {
            pool_dataset: format!("{pool}/warren"),
            mountpoint_root: root,
            exec,
        };
        s.prepare(pool)?;
        Ok(s)
    }

    /// The parent dataset, e.g. `tank/warren`.
    pub fn pool_dataset(&self) -> &str {
        &self.pool_dataset
    }

    /// The ZFS name of a dataset (`tank/warren/workloads/web/data`), checking its name.
    pub fn dataset_name(&self, id: &DatasetId) -> Result<String, ZfsError> {
        let (kind, name) = match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => ("workload", w),
            DatasetId::Volume(v) => ("volume", v),
        };
        check_component(kind, name)?;
        Ok(self.ds(&id.key()))
    }

    fn ds(&self, rel: &str) -> String {
        format!("{}/{rel}", self.pool_dataset)
    }

    fn mnt(&self, rel: &str) -> PathBuf {
        self.mountpoint_root.join(rel)
    }

    fn rel<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.pool_dataset.as_str())?
            .strip_prefix('/')
    }

    fn run(&self, cmd: &Cmd) -> Result<String, ZfsError> {
        self.exec
            .run(cmd)
            .map(|o| o.stdout_str())
            .map_err(command_error)
    }

    /// Runs `cmd`; a failure of kind `ok_kinds` counts as done. Returns whether it succeeded.
    fn run_unless(&self, cmd: &Cmd, ok_kinds: &[ZfsErrorKind]) -> Result<bool, ZfsError> {
        match self.run(cmd) {
            Ok(_) => Ok(true),
            Err(e) if e.kind().is_some_and(|k| ok_kinds.contains(&k)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn parsed<T>(cmd: &Cmd, r: Result<T, ParseError>) -> Result<T, ZfsError> {
        r.map_err(|error| ZfsError::Parse {
            argv: cmd.argv_string(),
            error,
        })
    }

    /// Runs the compensating commands (latest first) for `error`; an absent target is fine.
    fn undo(&self, error: ZfsError, mut undo: Vec<Cmd>) -> ZfsError {
        while let Some(cmd) = undo.pop() {
            if let Err(e) = self.run_unless(&cmd, &[ZfsErrorKind::NotFound]) {
                return ZfsError::Cleanup {
                    error: Box::new(error),
                    cleanup: Box::new(e),
                };
            }
        }
        error
    }

    fn prepare(&self, pool: &str) -> Result<(), ZfsError> {
        if let Err(e) = self.run(&exists_cmd(pool)) {
            return Err(if e.is(ZfsErrorKind::NotFound) {
                ZfsError::NoPool(pool.to_string())
            } else {
                e
            });
        }
        let get = get_cmd(&self.pool_dataset, &["mountpoint"], 1);
        let rows = match self.run(&get) {
            Ok(out) => Self::parsed(&get, parse_get(&out))?,
            Err(e) if e.is(ZfsErrorKind::NotFound) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut created = Vec::new();
        for rel in ["", "worlds", "workloads", "volumes"] {
            let (name, want) = if rel.is_empty() {
                (self.pool_dataset.clone(), self.mountpoint_root.clone())
            } else {
                (self.ds(rel), self.mnt(rel))
            };
            let step = match rows.iter().find(|r| r.name == name) {
                Some(r) if Path::new(&r.value) != want => Err(ZfsError::Mountpoint {
                    dataset: name.clone(),
                    actual: r.value.clone(),
                    expected: want,
                }),
                Some(_) => Ok(()),
                None => self.run(&create_cmd(&name, &want, true)).map(|_| {
                    created.push(destroy_cmd(&name, false));
                }),
            };
            if let Err(e) = step {
                return Err(self.undo(e, created));
            }
        }
        Ok(())
    }

    fn workload_ds(&self, workload: &str) -> String {
        self.ds(&format!("workloads/{workload}"))
    }

    /// The children (`rootfs`, `data`) of the workload's dataset, or None if it is absent.
    fn workload_children(&self, workload: &str) -> Result<Option<BTreeSet<String>>, ZfsError> {
        let parent = self.workload_ds(workload);
        let cmd = children_cmd(&parent);
        let out = match self.run(&cmd) {
            Ok(out) => out,
            Err(e) if e.is(ZfsErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        Ok(Some(
            rows.iter()
                .filter_map(|r| r[0].strip_prefix(parent.as_str())?.strip_prefix('/'))
                .map(str::to_string)
                .collect(),
        ))
    }

    /// Makes sure `id`'s parent exists (creating the workload dataset if needed) and tells
    /// whether `id` itself exists; returns the commands that undo what was created.
    fn prepare_parent(&self, id: &DatasetId) -> Result<(bool, Vec<Cmd>), ZfsError> {
        let ds = self.dataset_name(id)?;
        match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => {
                let child = if matches!(id, DatasetId::Rootfs(_)) {
                    "rootfs"
                } else {
                    "data"
                };
                match self.workload_children(w)? {
                    Some(children) => Ok((children.contains(child), Vec::new())),
                    None => {
                        let parent = self.workload_ds(w);
                        let m = self.mnt(&format!("workloads/{w}"));
                        self.run(&create_cmd(&parent, &m, false))?;
                        Ok((false, vec![destroy_cmd(&parent, false)]))
                    }
                }
            }
            DatasetId::Volume(_) => {
                let exists = self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound])?;
                Ok((exists, Vec::new()))
            }
        }
    }

    fn list_snapshots(&self, ds: &str) -> Result<Vec<ZfsSnapshot>, ZfsError> {
        let cmd = snapshot_list_cmd(ds);
        let out = self.run(&cmd)?;
        let snaps = Self::parsed(&cmd, parse_snapshot_list(&out))?;
        Ok(snaps.into_iter().filter(|s| s.dataset == ds).collect())
    }

    fn usage_of(&self, ds: &str) -> Result<(u64, Option<u64>), ZfsError> {
        let cmd = usage_cmd(ds);
        let out = self.run(&cmd)?;
        let props = Self::parsed(&cmd, parse_properties(&out))?;
        let prop = |p: &str| {
            props
                .get(p)
                .ok_or_else(|| ParseError::MissingProperty(p.to_string()))
        };
        let used =
            Self::parsed(&cmd, prop("used").and_then(|v| parse_size("used", v)))?.unwrap_or(0);
        let quota = Self::parsed(&cmd, prop("quota").and_then(|v| parse_quota(v)))?;
        Ok((used, quota))
    }

    fn take_snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        self.run(&snapshot_cmd(&ds, label))?;
        let name = format!("{ds}@{label}");
        let cmd = snapshot_info_cmd(&name);
        let info = self.run(&cmd).and_then(|out| {
            Self::parsed(
                &cmd,
                parse_snapshot_list(&out)
                    .and_then(|v| v.into_iter().next().ok_or(ParseError::Empty)),
            )
        });
        match info {
            Ok(s) => Ok(SnapshotInfo {
                dataset: id.key(),
                label: s.label,
                created_at: s.creation,
                bytes: Some(s.used),
            }),
            Err(e) => Err(self.undo(e, vec![destroy_cmd(&name, false)])),
        }
    }

    fn do_rollback(
        &self,
        id: &DatasetId,
        label: &str,
        destroy_newer: bool,
    ) -> Result<Vec<String>, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let snaps = self.list_snapshots(&ds)?;
        let pos =
            snaps
                .iter()
                .position(|s| s.label == label)
                .ok_or_else(|| ZfsError::NoSnapshot {
                    dataset: id.key(),
                    label: label.to_string(),
                })?;
        let newer: Vec<String> = snaps[pos + 1..].iter().map(|s| s.label.clone()).collect();
        if !newer.is_empty() && !destroy_newer {
            return Err(ZfsError::NewerSnapshots {
                dataset: id.key(),
                label: label.to_string(),
                newer,
            });
        }
        self.run(&rollback_cmd(&ds, label, !newer.is_empty()))?;
        Ok(newer)
    }

    fn do_clone(
        &self,
        src: &DatasetId,
        label: Option<&str>,
        dst: &DatasetId,
    ) -> Result<(), ZfsError> {
        let src_ds = self.dataset_name(src)?;
        let dst_ds = self.dataset_name(dst)?;
        if let Some(l) = label {
            check_label(l)?;
        }
        let (exists, mut undo) = self.prepare_parent(dst)?;
        if exists {
            return Err(ZfsError::Exists(self.dataset_path(dst)));
        }
        let snap_label = match label {
            Some(l) => l.to_string(),
            None => {
                let temp = clone_snapshot_label(dst);
                let take = match self.run(&snapshot_cmd(&src_ds, &temp)) {
                    // Left by an earlier clone to `dst` that has since been deleted: replace
                    // it (zfs refuses if anything still depends on it).
                    Err(e) if e.is(ZfsErrorKind::Exists) => self
                        .run(&destroy_cmd(&format!("{src_ds}@{temp}"), false))
                        .and_then(|_| self.run(&snapshot_cmd(&src_ds, &temp))),
                    other => other,
                };
                if let Err(e) = take {
                    return Err(self.undo(e, undo));
                }
                undo.push(destroy_cmd(&format!("{src_ds}@{temp}"), false));
                temp
            }
        };
        let snapshot = format!("{src_ds}@{snap_label}");
        match self.run(&clone_cmd(&snapshot, &dst_ds, &self.dataset_path(dst))) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.undo(e, undo)),
        }
    }

    /// [`Storage::send`] with the streaming step supplied by the caller: `stream` gets the
    /// `zfs send` command to run (the trait method pipes it with [`pipe_out`]).
    pub fn send_via(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<(), ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        if let Some(s) = since {
            check_label(s)?;
        }
        stream(&send_cmd(&ds, label, since))
    }

    /// [`Storage::receive`] with the streaming step supplied by the caller: `stream` gets the
    /// `zfs receive` command to feed (the trait method pipes it with [`pipe_in`]).
    ///
    /// A full stream (into an absent dataset) is received unmounted with its mountpoint, then
    /// mounted; if anything fails its partial state is aborted (`zfs receive -A`) and whatever
    /// is left is destroyed, along with a workload dataset created for it. An incremental
    /// stream that fails leaves the dataset as it was, with the resumable partial state kept
    /// aside by ZFS: the error carries its `receive_resume_token` (see [`resume_send_cmd`] and
    /// [`ZfsStorage::abort_receive`]).
    pub fn receive_via(
        &self,
        id: &DatasetId,
        label: &str,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<(), ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let (exists, mut undo) = self.prepare_parent(id)?;
        let mountpoint = self.dataset_path(id);
        let cmd = receive_cmd(&ds, label, (!exists).then_some(mountpoint.as_path()));
        let received = stream(&cmd);
        if exists {
            return received.map_err(|error| {
                let token = self
                    .run(&get_value_cmd(&ds, "receive_resume_token"))
                    .ok()
                    .and_then(|out| parse_value(&out));
                ZfsError::Receive {
                    dataset: ds.clone(),
                    token,
                    error: Box::new(error),
                }
            });
        }
        let result = received.and_then(|_| self.run(&mount_cmd(&ds)).map(drop));
        let Err(error) = result else {
            return Ok(());
        };
        let error = ZfsError::Receive {
            dataset: ds.clone(),
            token: None,
            error: Box::new(error),
        };
        // Discard the partial state, then make sure no dataset is left behind.
        let cleanup = self
            .run_unless(&receive_abort_cmd(&ds), &[ZfsErrorKind::NotFound])
            .and_then(|_| self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound]));
        match cleanup {
            Ok(true) => undo.push(destroy_cmd(&ds, true)),
            Ok(false) => {}
            Err(e) => {
                return Err(ZfsError::Cleanup {
                    error: Box::new(error),
                    cleanup: Box::new(e),
                })
            }
        }
        Err(self.undo(error, undo))
    }

    /// Discards the partial state an interrupted incremental receive into `id` left aside.
    pub fn abort_receive(&self, id: &DatasetId) -> Result<()> {
        let ds = self.dataset_name(id)?;
        self.run_unless(&receive_abort_cmd(&ds), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    /// [`Storage::receive_staged`] with the streaming step supplied by the caller (the trait
    /// method pipes it with [`pipe_in`]).
    ///
    /// A full stream (into an absent dataset) goes into a new hidden dataset
    /// `<pool>/warren/incoming-<unique>` ([`receive_staged_cmd`]: unmounted, `canmount=noauto`,
    /// its final mountpoint set); no listing shows it and the dataset does not exist. A failed
    /// receive destroys whatever it left.
    ///
    /// ZFS applies an incremental stream to the dataset holding its base; it cannot be
    /// received beside it. So an incremental stream is received in place, and staging it
    /// means remembering the dataset's newest snapshot: `zfs receive` refuses a dataset
    /// modified since that snapshot, so rolling back to it (`zfs rollback -r`, which also
    /// destroys the received snapshot) restores exactly the state before. A failed receive
    /// changes nothing (ZFS discards a non-resumable partial receive).
    pub fn receive_staged_via(
        &self,
        id: &DatasetId,
        label: &str,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<Staged, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let exists = self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound])?;
        if !exists {
            let place = self.ds(&format!(
                "{STAGED_PREFIX}{}",
                crate::fsutil::unique_suffix()
            ));
            let staged = Staged::new(id, label, place.clone());
            let mountpoint = self.dataset_path(id);
            let cmd = receive_staged_cmd(&place, label, Some(&mountpoint));
            return match stream(&cmd) {
                Ok(()) => Ok(staged),
                Err(error) => {
                    let error = ZfsError::Receive {
                        dataset: place.clone(),
                        token: None,
                        error: Box::new(error),
                    };
                    Err(self.undo(error, vec![destroy_cmd(&place, true)]))
                }
            };
        }
        let Some(base) = self.list_snapshots(&ds)?.pop() else {
            return Err(ZfsError::NoSnapshot {
                dataset: id.key(),
                label: "(the base of the incremental stream)".into(),
            });
        };
        let mut staged = Staged::new(id, label, ds.clone());
        staged.set_incremental(true);
        staged.set_base(Some(base.label));
        match stream(&receive_staged_cmd(&ds, label, None)) {
            Ok(()) => Ok(staged),
            Err(error) => {
                let error = ZfsError::Receive {
                    dataset: ds.clone(),
                    token: None,
                    error: Box::new(error),
                };
                Err(match self.ensure_mounted(&ds) {
                    Ok(()) => error,
                    Err(e) => ZfsError::Cleanup {
                        error: Box::new(error),
                        cleanup: Box::new(e),
                    },
                })
            }
        }
    }

    /// Mounts `ds` unless its `mounted` property says it is (an incremental receive with `-u`
    /// leaves the dataset unmounted).
    fn ensure_mounted(&self, ds: &str) -> Result<(), ZfsError> {
        let cmd = get_value_cmd(ds, "mounted");
        let out = self.run(&cmd)?;
        if parse_value(&out).as_deref() == Some("yes") {
            return Ok(());
        }
        self.run(&mount_cmd(ds)).map(drop)
    }

    /// [`Storage::commit_staged`]: a full stream's hidden dataset is renamed into place
    /// (creating the workload dataset if needed), gets `canmount=on` (not inheritable) and is
    /// mounted; if any
    /// of that fails, it and whatever was created for it are destroyed. An incremental stream
    /// is already in place: its dataset is mounted.
    pub fn commit_staged_zfs(&self, staged: Staged) -> Result<(), ZfsError> {
        let id = staged.id().clone();
        let ds = self.dataset_name(&id)?;
        if staged.incremental() {
            return self
                .ensure_mounted(&ds)
                .map_err(|e| self.discard(staged, e));
        }
        let (exists, mut undo) = match self.prepare_parent(&id) {
            Ok(v) => v,
            Err(e) => return Err(self.discard(staged, e)),
        };
        if exists {
            let e = self.undo(ZfsError::Exists(self.dataset_path(&id)), undo);
            return Err(self.discard(staged, e));
        }
        if let Err(e) = self.run(&rename_cmd(staged.place(), &ds)) {
            let e = self.undo(e, undo);
            return Err(self.discard(staged, e));
        }
        undo.push(destroy_cmd(&ds, true));
        let mounted = self
            .run(&set_cmd(&ds, "canmount", "on"))
            .and_then(|_| self.run(&mount_cmd(&ds)));
        match mounted {
            Ok(_) => Ok(()),
            Err(e) => Err(self.undo(e, undo)),
        }
    }

    /// [`Storage::abort_staged`]: a full stream's hidden dataset is destroyed; an incremental
    /// one's dataset is rolled back to the snapshot it had before (destroying the received one)
    /// and mounted.
    pub fn abort_staged_zfs(&self, staged: Staged) -> Result<(), ZfsError> {
        if !staged.incremental() {
            self.run_unless(
                &destroy_cmd(staged.place(), true),
                &[ZfsErrorKind::NotFound],
            )?;
            return Ok(());
        }
        let ds = staged.place();
        let base = staged
            .base()
            .expect("an incremental staged receive has a base");
        self.run(&rollback_cmd(ds, base, true))?;
        self.ensure_mounted(ds)
    }

    /// Aborts `staged` after `error`, reporting a failed cleanup alongside.
    fn discard(&self, staged: Staged, error: ZfsError) -> ZfsError {
        match self.abort_staged_zfs(staged) {
            Ok(()) => error,
            Err(e) => ZfsError::Cleanup {
                error: Box::new(error),
                cleanup: Box::new(e),
            },
        }
    }

    /// [`Storage::sweep_staged`]: destroys the `<pool>/warren/incoming-*` datasets no staged
    /// receive of this process holds.
    pub fn sweep_staged_zfs(&self) -> Result<Vec<String>, ZfsError> {
        let cmd = children_cmd(&self.pool_dataset);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut swept = Vec::new();
        for row in rows {
            let name = &row[0];
            let staged = self
                .rel(name)
                .is_some_and(|rel| rel.starts_with(STAGED_PREFIX) && !rel.contains('/'));
            if !staged || crate::staged_is_live(name) {
                continue;
            }
            self.run_unless(&destroy_cmd(name, true), &[ZfsErrorKind::NotFound])?;
            swept.push(name.clone());
        }
        Ok(swept)
    }
}

impl Storage for ZfsStorage {
    fn driver(&self) -> &'static str {
        "zfs"
    }

    fn zfs_dataset(&self, id: &DatasetId) -> Option<String> {
        self.dataset_name(id).ok()
    }

    fn root(&self) -> &Path {
        &self.mountpoint_root
    }

    fn create_world_dataset(&self, world: &str) -> Result<PathBuf> {
        check_component("world", world)?;
        let rel = format!("worlds/{world}");
        let path = self.mnt(&rel);
        match self.run(&create_cmd(&self.ds(&rel), &path, false)) {
            Err(e) if e.is(ZfsErrorKind::Exists) => Err(StorageError::Exists(path)),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(path),
        }
    }

    /// A clone of `worlds/<parent>@base`. Clones take their properties from their place in
    /// the hierarchy, not from the origin, so the new world is writable until sealed; the
    /// parent cannot be destroyed while it has this clone.
    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf> {
        check_component("world", world)?;
        check_component("world", parent)?;
        let base = format!("{}@{BASE_SNAPSHOT}", self.ds(&format!("worlds/{parent}")));
        if !self.run_unless(&exists_cmd(&base), &[ZfsErrorKind::NotFound])? {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        let rel = format!("worlds/{world}");
        let path = self.mnt(&rel);
        match self.run(&clone_cmd(&base, &self.ds(&rel), &path)) {
            Err(e) if e.is(ZfsErrorKind::Exists) => Err(StorageError::Exists(path)),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(path),
        }
    }

    /// `readonly=on`, then `@base`. A world that cannot be sealed is destroyed, so a retry
    /// starts clean; sealing a sealed world is a no-op.
    fn seal_world(&self, world: &str) -> Result<()> {
        check_component("world", world)?;
        let ds = self.ds(&format!("worlds/{world}"));
        let sealed = self.run(&set_cmd(&ds, "readonly", "on")).and_then(|_| {
            self.run_unless(&snapshot_cmd(&ds, BASE_SNAPSHOT), &[ZfsErrorKind::Exists])
        });
        match sealed {
            Ok(_) => Ok(()),
            Err(e) if e.is(ZfsErrorKind::NotFound) => {
                Err(StorageError::NoSuchWorld(world.to_string()))
            }
            Err(e) => Err(self.undo(e, vec![destroy_cmd(&ds, true)]).into()),
        }
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_component("world", world)?;
        let ds = self.ds(&format!("worlds/{world}"));
        let base = format!("{ds}@{BASE_SNAPSHOT}");
        match self.run(&get_value_cmd(&base, "clones")) {
            Ok(out) => {
                let clones = parse_clones(&out);
                if !clones.is_empty() {
                    return Err(ZfsError::WorldInUse {
                        world: world.to_string(),
                        clones: clones
                            .iter()
                            .map(|c| self.rel(c).unwrap_or(c).to_string())
                            .collect(),
                    }
                    .into());
                }
            }
            Err(e) if e.is(ZfsErrorKind::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        remove_file_if_exists(&self.world_meta_path(world))
    }

    /// Worlds with a `@base` snapshot, sorted.
    fn list_worlds(&self) -> Result<Vec<String>> {
        let parent = self.ds("worlds");
        let cmd = child_snapshots_cmd(&parent);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut worlds: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let (ds, label) = r[0].split_once('@')?;
                let world = ds.strip_prefix(parent.as_str())?.strip_prefix('/')?;
                (label == BASE_SNAPSHOT && !world.contains('/')).then(|| world.to_string())
            })
            .collect();
        worlds.sort();
        worlds.dedup();
        Ok(worlds)
    }

    /// Checks `<world>@base`, creates the workload dataset if needed, destroys an existing
    /// rootfs and clones the world; a failed clone destroys the workload dataset it created.
    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf> {
        check_component("workload", workload)?;
        check_component("world", world)?;
        let base = format!("{}@{BASE_SNAPSHOT}", self.ds(&format!("worlds/{world}")));
        if !self.run_unless(&exists_cmd(&base), &[ZfsErrorKind::NotFound])? {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        let id = DatasetId::Rootfs(workload.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        let (exists, undo) = self.prepare_parent(&id)?;
        let result = if exists {
            self.run(&destroy_cmd(&ds, true))
        } else {
            Ok(String::new())
        }
        .and_then(|_| self.run(&clone_cmd(&base, &ds, &path)));
        match result {
            Ok(_) => Ok(path),
            Err(e) => Err(self.undo(e, undo).into()),
        }
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Rootfs(workload.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        let id = DatasetId::Data(workload.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        let (exists, undo) = self.prepare_parent(&id)?;
        if !exists {
            if let Err(e) = self.run(&create_cmd(&ds, &path, false)) {
                return Err(self.undo(e, undo).into());
            }
        }
        Ok(path)
    }

    /// Destroys the data dataset, then the workload dataset if nothing else is in it.
    fn delete_data(&self, workload: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Data(workload.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        self.run_unless(
            &destroy_cmd(&self.workload_ds(workload), false),
            &[ZfsErrorKind::NotFound, ZfsErrorKind::HasChildren],
        )?;
        Ok(())
    }

    /// Worlds, then workloads (rootfs before data), then volumes.
    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let cmd = list_filesystems_cmd(&self.pool_dataset);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 2))?;
        let mut found: Vec<((u8, String, u8), DatasetInfo)> = Vec::new();
        for row in &rows {
            let Some(rel) = self.rel(&row[0]) else {
                continue;
            };
            let parts: Vec<&str> = rel.split('/').collect();
            let key = match parts.as_slice() {
                ["worlds", w] => (0, w.to_string(), 0),
                ["workloads", w, "rootfs"] => (1, w.to_string(), 0),
                ["workloads", w, "data"] => (1, w.to_string(), 1),
                ["volumes", v] => (2, v.to_string(), 0),
                _ => continue,
            };
            found.push((
                key,
                DatasetInfo {
                    name: rel.to_string(),
                    path: self.mnt(rel),
                    readonly: parse_on_off(&row[1]),
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().map(|(_, info)| info).collect())
    }

    fn ensure_volume(&self, name: &str) -> Result<PathBuf> {
        let id = DatasetId::Volume(name.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        self.run_unless(&create_cmd(&ds, &path, false), &[ZfsErrorKind::Exists])?;
        Ok(path)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Volume(name.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        let parent = self.ds("volumes");
        let cmd = children_cmd(&parent);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut volumes: Vec<String> = rows
            .iter()
            .filter_map(|r| r[0].strip_prefix(parent.as_str())?.strip_prefix('/'))
            .map(str::to_string)
            .collect();
        volumes.sort();
        Ok(volumes)
    }

    /// `zfs snapshot`, then reads back its size and creation time (destroying the snapshot
    /// again if that fails).
    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo> {
        Ok(self.take_snapshot(id, label)?)
    }

    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>> {
        let ds = self.dataset_name(id)?;
        Ok(self
            .list_snapshots(&ds)?
            .into_iter()
            .map(|s| SnapshotInfo {
                dataset: id.key(),
                label: s.label,
                created_at: s.creation,
                bytes: Some(s.used),
            })
            .collect())
    }

    /// Lists the snapshots first: newer ones are refused by name unless `destroy_newer`, in
    /// which case `zfs rollback -r` destroys them.
    fn rollback(&self, id: &DatasetId, label: &str, destroy_newer: bool) -> Result<Vec<String>> {
        Ok(self.do_rollback(id, label, destroy_newer)?)
    }

    fn delete_snapshot(&self, id: &DatasetId, label: &str) -> Result<()> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        match self.run(&destroy_cmd(&format!("{ds}@{label}"), false)) {
            Ok(_) => Ok(()),
            Err(e) if e.is(ZfsErrorKind::NotFound) => Err(ZfsError::NoSnapshot {
                dataset: id.key(),
                label: label.to_string(),
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// `zfs clone` of `src@label`, or of a new `src@warren-clone-<dst>` when `label` is None
    /// (it stays as the clone's origin). Fails with [`StorageError::Exists`] if `dst` exists.
    fn clone_dataset(&self, src: &DatasetId, label: Option<&str>, dst: &DatasetId) -> Result<()> {
        Ok(self.do_clone(src, label, dst)?)
    }

    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> Result<()> {
        let ds = self.dataset_name(id)?;
        self.run(&set_cmd(&ds, "quota", &quota_value(&ds, bytes)?))?;
        Ok(())
    }

    /// The quota sits on `workloads/<name>`, so it covers rootfs, data and their snapshots,
    /// and survives a recreated rootfs.
    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()> {
        check_component("workload", workload)?;
        let ds = self.workload_ds(workload);
        self.run(&set_cmd(&ds, "quota", &quota_value(&ds, bytes)?))?;
        Ok(())
    }

    fn workload_usage(&self, workload: &str) -> Result<(u64, Option<u64>)> {
        check_component("workload", workload)?;
        Ok(self.usage_of(&self.workload_ds(workload))?)
    }

    /// `used` (including snapshots), which is what `quota` limits.
    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)> {
        let ds = self.dataset_name(id)?;
        Ok(self.usage_of(&ds)?)
    }

    fn send(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        Ok(self.send_via(id, label, since, |cmd| pipe_out(cmd, out))?)
    }

    /// See [`ZfsStorage::receive_via`].
    fn receive(&self, id: &DatasetId, label: &str, input: &mut dyn std::io::Read) -> Result<()> {
        Ok(self.receive_via(id, label, |cmd| pipe_in(cmd, input))?)
    }

    /// See [`ZfsStorage::receive_staged_via`].
    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged> {
        Ok(self.receive_staged_via(id, label, |cmd| pipe_in(cmd, input))?)
    }

    /// See [`ZfsStorage::commit_staged_zfs`].
    fn commit_staged(&self, staged: Staged) -> Result<()> {
        Ok(self.commit_staged_zfs(staged)?)
    }

    /// See [`ZfsStorage::abort_staged_zfs`].
    fn abort_staged(&self, staged: Staged) -> Result<()> {
        Ok(self.abort_staged_zfs(staged)?)
    }

    /// See [`ZfsStorage::sweep_staged_zfs`].
    fn sweep_staged(&self) -> Result<Vec<String>> {
        Ok(self.sweep_staged_zfs()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    macro_rules! golden {
        ($name:literal) => {
            include_str!(concat!("../tests/golden/zfs/", $name))
        };
    }

    fn storage() -> (Arc<RecordingExecutor>, ZfsStorage) {
        let rec = Arc::new(RecordingExecutor::new());
        let s = ZfsStorage {
            pool_dataset: "tank/warren".into(),
            mountpoint_root: PathBuf::from("/srv/warren-zfs"),
            exec: rec.clone(),
        };
        (rec, s)
    }

    #[test]
    fn list_splits_tabs_and_keeps_spaces_and_dashes() {
        let rows = parse_list(golden!("list_mountpoints.txt"), 5).unwrap();
        assert_eq!(rows.len(), 7);
        assert_eq!(
            rows[0],
            ["tank", "6316326912", "30124621824", "98304", "/tank"]
        );
        assert_eq!(rows[2][4], "legacy");
        assert_eq!(rows[3][0], "tank/media files");
        assert_eq!(rows[3][4], "/srv/media files/My Photos");
        assert_eq!(rows[4][4], "none");
        // A volume has no mountpoint: `-`.
        assert_eq!(rows[5][0], "tank/swap");
        assert_eq!(rows[5][4], "-");
        // Sorted by name, as `zfs list` does without -s.
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn list_rejects_wrong_column_counts() {
        let err = parse_list(golden!("list_mountpoints.txt"), 4).unwrap_err();
        assert_eq!(
            err,
            ParseError::Columns {
                line: 1,
                expected: 4,
                found: 5,
                text: "tank\t6316326912\t30124621824\t98304\t/tank".into()
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("expected 4 tab-separated columns, found 5"),
            "{msg}"
        );
        // A space-aligned (non -H) listing is one column per line, never silently accepted.
        assert!(parse_list("NAME   USED  AVAIL\ntank   1.2G  28G\n", 3).is_err());
        assert!(parse_list("", 3).unwrap().is_empty());
    }

    #[test]
    fn names_and_filesystems() {
        let rows = parse_list(golden!("list_children.txt"), 1).unwrap();
        assert_eq!(
            rows.concat(),
            [
                "tank/warren/workloads/web",
                "tank/warren/workloads/web/data",
                "tank/warren/workloads/web/rootfs"
            ]
        );
        let rows = parse_list(golden!("list_filesystems.txt"), 2).unwrap();
        assert_eq!(rows[0], ["tank/warren", "off"]);
        assert!(rows
            .iter()
            .any(|r| r[0] == "tank/warren/worlds/busybox" && r[1] == "on"));
    }

    #[test]
    fn get_rows_with_sources() {
        let rows = parse_get(golden!("get_mountpoint.txt")).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[0],
            PropertyRow {
                name: "tank/warren".into(),
                property: "mountpoint".into(),
                value: "/var/lib/warren".into(),
                source: "local".into()
            }
        );
        assert_eq!(rows[1].source, "inherited from tank/warren");
        assert_eq!(rows[1].value, "/var/lib/warren/volumes");

        let rows = parse_get(golden!("get_properties.txt")).unwrap();
        let by: BTreeMap<_, _> = rows
            .iter()
            .map(|r| (r.property.as_str(), (r.value.as_str(), r.source.as_str())))
            .collect();
        assert_eq!(by["used"], ("3276800", "-"));
        assert_eq!(by["quota"], ("0", "default"));
        assert_eq!(by["refquota"], ("1073741824", "local"));
        assert_eq!(by["origin"], ("-", "-"));
        assert_eq!(by["receive_resume_token"], ("-", "-"));
        assert_eq!(by["compression"].1, "inherited from tank");
        assert_eq!(parse_quota(by["quota"].0).unwrap(), None);
        assert_eq!(parse_quota(by["refquota"].0).unwrap(), Some(1 << 30));
        assert_eq!(parse_size("origin", by["origin"].0).unwrap(), None);
        assert!(parse_get("tank\tused\t1\n").is_err());
    }

    #[test]
    fn properties_and_sizes() {
        let p = parse_properties(golden!("get_usage.txt")).unwrap();
        assert_eq!(parse_size("used", &p["used"]).unwrap(), Some(22052864));
        assert_eq!(parse_quota(&p["quota"]).unwrap(), Some(10737418240));
        let p = parse_properties(golden!("get_usage_none.txt")).unwrap();
        assert_eq!(parse_quota(&p["quota"]).unwrap(), None);
        assert_eq!(parse_size("x", "-").unwrap(), None);
        assert_eq!(parse_size("x", "none").unwrap(), None);
        assert_eq!(parse_quota("none").unwrap(), None);
        let err = parse_size("used", "1.2G").unwrap_err().to_string();
        assert_eq!(err, "used \"1.2G\" is not a byte count or `-`");
    }

    #[test]
    fn snapshot_list() {
        let snaps = parse_snapshot_list(golden!("snapshot_list.txt")).unwrap();
        assert_eq!(snaps.len(), 4);
        assert_eq!(
            snaps[0],
            ZfsSnapshot {
                dataset: "tank/warren/workloads/web/data".into(),
                label: "daily-2026-01-14".into(),
                used: 139264,
                creation: 1768348800
            }
        );
        assert_eq!(snaps[2].label, "before upgrade");
        assert_eq!(snaps[3].used, 0);
        assert!(parse_snapshot_list(golden!("empty.txt"))
            .unwrap()
            .is_empty());
        assert!(matches!(
            parse_snapshot_list("tank/x\t0\t1\n"),
            Err(ParseError::SnapshotName { line: 1, .. })
        ));
        assert!(matches!(
            parse_snapshot_list("tank/x@a\t-\t1\n"),
            Err(ParseError::Number { .. })
        ));
    }

    #[test]
    fn values_clones_and_tokens() {
        assert_eq!(
            parse_clones(golden!("clones.txt")),
            [
                "tank/warren/workloads/api/rootfs",
                "tank/warren/workloads/web/rootfs"
            ]
        );
        assert!(parse_clones(golden!("clones_none.txt")).is_empty());
        assert!(parse_clones("-\n").is_empty());
        let token = parse_value(golden!("resume_token.txt")).unwrap();
        assert!(!token.contains('\n'));
        // `<version>-<fletcher4 word 0 of the payload>-<packed nvlist size>-<zlib payload in hex>`
        // (`get_receive_resume_token_impl` in module/zfs/dsl_dataset.c).
        let parts: Vec<&str> = token.splitn(4, '-').collect();
        assert_eq!(parts.len(), 4, "{token}");
        assert_eq!(parts[0], "1");
        let cksum = u64::from_str_radix(parts[1], 16).unwrap();
        assert!(u64::from_str_radix(parts[2], 16).unwrap() > 0);
        assert!(parts[3].starts_with("789c"), "{token}");
        let hex = parts[3].as_bytes().chunks_exact(2);
        assert!(hex.remainder().is_empty(), "{token}");
        let payload: Vec<u8> = hex
            .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
            .collect();
        let fletcher4_a = payload
            .chunks_exact(4)
            .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
            .fold(0u64, u64::wrapping_add);
        assert_eq!(fletcher4_a, cksum, "{token}");
        assert_eq!(
            resume_send_cmd(&token).argv_string(),
            format!("zfs send -t {token}")
        );
        assert_eq!(parse_value(golden!("resume_token_none.txt")), None);
    }

    #[test]
    fn error_classification() {
        use ZfsErrorKind::*;
        let cases = [
            (golden!("err_does_not_exist.txt"), NotFound, Some("tank/x")),
            (
                golden!("err_already_exists.txt"),
                Exists,
                Some("tank/warren/worlds/host"),
            ),
            (
                golden!("err_snapshot_exists.txt"),
                Exists,
                Some("tank/warren/workloads/web/data@nightly"),
            ),
            (
                golden!("err_has_children.txt"),
                HasChildren,
                Some("tank/warren/workloads/web"),
            ),
            (
                golden!("err_dependent_clones.txt"),
                HasClones,
                Some("tank/warren/worlds/busybox@base"),
            ),
            (
                golden!("err_out_of_space.txt"),
                OutOfSpace,
                Some("tank/warren/volumes/big"),
            ),
            (golden!("err_quota_exceeded.txt"), QuotaExceeded, None),
            (
                golden!("err_busy.txt"),
                Busy,
                Some("/var/lib/warren/workloads/web/rootfs"),
            ),
            (
                golden!("err_newer_snapshots.txt"),
                NewerSnapshots,
                Some("tank/warren/workloads/web/data@a"),
            ),
            (golden!("err_no_snapshots.txt"), NotFound, None),
            (golden!("err_no_pool.txt"), NotFound, Some("nosuchpool")),
            (golden!("err_modified.txt"), Modified, None),
            (
                golden!("err_no_resume_state.txt"),
                NotFound,
                Some("tank/warren/volumes/site"),
            ),
            (
                golden!("err_permission.txt"),
                PermissionDenied,
                Some("tank/warren"),
            ),
            (
                golden!("err_dependent_clones_recursive.txt"),
                HasClones,
                Some("tank/warren/worlds/busybox"),
            ),
            (
                golden!("err_rollback_clones.txt"),
                HasClones,
                Some("tank/warren/workloads/web/data@before upgrade"),
            ),
            (golden!("err_snapshot_cloned.txt"), HasClones, None),
            (
                golden!("err_rollback_race.txt"),
                NewerSnapshots,
                Some("tank/warren/workloads/web/data"),
            ),
            (golden!("err_snapshot_busy.txt"), Busy, None),
            (golden!("err_snapshot_held.txt"), Busy, None),
            (
                golden!("err_mount_busy.txt"),
                Busy,
                Some("tank/warren/volumes/site"),
            ),
            (golden!("err_recv_partial_state.txt"), Busy, None),
            (
                golden!("err_recv_exists.txt"),
                Exists,
                Some("tank/warren/volumes/site"),
            ),
            (golden!("err_recv_no_match.txt"), Other, None),
            (
                golden!("err_recv_no_parent.txt"),
                NotFound,
                Some("tank/warren/workloads/moved"),
            ),
            (
                golden!("err_parent_missing.txt"),
                NotFound,
                Some("tank/warren/workloads/web/data"),
            ),
            (
                golden!("err_create_no_pool.txt"),
                NotFound,
                Some("nosuchpool/warren"),
            ),
            (golden!("err_snapshot_out_of_space.txt"), OutOfSpace, None),
            (
                golden!("err_snapshot_no_dataset.txt"),
                NotFound,
                Some("tank/warren/worlds/nope"),
            ),
            (
                golden!("err_abort_no_dataset.txt"),
                NotFound,
                Some("tank/warren/workloads/moved/data"),
            ),
            (
                golden!("err_mount_privileges.txt"),
                PermissionDenied,
                Some("tank/warren/volumes/site"),
            ),
            (golden!("err_no_module_freebsd.txt"), PermissionDenied, None),
            // Not errors warren can act on by kind; "already mounted" must not read as Exists.
            (
                golden!("err_already_mounted.txt"),
                Other,
                Some("tank/warren/volumes/site"),
            ),
            (
                golden!("err_created_not_mounted.txt"),
                Other,
                Some("/srv/warren/volumes/site"),
            ),
            (
                golden!("err_quota_below_used.txt"),
                Other,
                Some("tank/warren/workloads/web"),
            ),
            (golden!("err_no_module.txt"), Other, None),
            // The reason is read outside quoted names, and only on the first line.
            (
                "cannot open 'tank/warren/volumes/out of space': dataset does not exist\n",
                NotFound,
                Some("tank/warren/volumes/out of space"),
            ),
            (
                "cannot destroy 'tank/warren/workloads/web': filesystem has children\n\
                 use '-r' to destroy the following datasets:\n\
                 tank/warren/workloads/web/is busy\n",
                HasChildren,
                Some("tank/warren/workloads/web"),
            ),
            ("something else entirely", Other, None),
            ("", Other, None),
        ];
        for (text, kind, dataset) in cases {
            let f = classify(text);
            assert_eq!(f.kind, kind, "{text}");
            assert_eq!(f.dataset.as_deref(), dataset, "{text}");
            assert_eq!(
                f.message,
                text.lines().next().unwrap_or("").trim(),
                "{text}"
            );
        }
    }

    #[test]
    fn command_errors_convert_to_storage_errors() {
        let failed = |stderr: &str| {
            command_error(ExecError::Failed {
                argv: "zfs create tank/warren/worlds/host".into(),
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: stderr.into(),
            })
        };
        let e: StorageError = failed(golden!("err_already_exists.txt")).into();
        assert!(matches!(&e, StorageError::Exists(p) if p == Path::new("tank/warren/worlds/host")));
        let e: StorageError = failed(golden!("err_out_of_space.txt")).into();
        let msg = e.to_string();
        assert!(matches!(e, StorageError::Exec(_)));
        assert!(
            msg.contains("out of space") && msg.contains("zfs create"),
            "{msg}"
        );
        let e: StorageError = ZfsError::ZeroQuota("tank/x".into()).into();
        assert!(e.to_string().contains("remove the limit"), "{e}");
    }

    #[test]
    fn builders() {
        let m = Path::new("/srv/my root/volumes/v");
        let cases = [
            (exists_cmd("tank"), "zfs list -Hp -o name tank"),
            (children_cmd("tank/a"), "zfs list -Hp -o name -d 1 tank/a"),
            (
                list_filesystems_cmd("tank/warren"),
                "zfs list -Hp -t filesystem -o name,readonly -r tank/warren",
            ),
            (
                child_snapshots_cmd("tank/warren/worlds"),
                "zfs list -Hp -t snapshot -o name -d 2 tank/warren/worlds",
            ),
            (
                snapshot_list_cmd("tank/a"),
                "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/a",
            ),
            (
                snapshot_info_cmd("tank/a@s"),
                "zfs list -Hp -t snapshot -o name,used,creation tank/a@s",
            ),
            (
                get_cmd("tank/warren", &["mountpoint", "quota"], 1),
                "zfs get -Hp -t filesystem -o name,property,value,source mountpoint,quota -d 1 tank/warren",
            ),
            (get_value_cmd("tank/a@base", "clones"), "zfs get -Hp -o value clones tank/a@base"),
            (usage_cmd("tank/a"), "zfs get -Hp -o property,value used,quota tank/a"),
            (create_cmd("tank/v", m, false), "zfs create -o mountpoint=/srv/my root/volumes/v tank/v"),
            (create_cmd("tank/v", m, true), "zfs create -p -o mountpoint=/srv/my root/volumes/v tank/v"),
            (destroy_cmd("tank/a", true), "zfs destroy -r tank/a"),
            (destroy_cmd("tank/a@s", false), "zfs destroy tank/a@s"),
            (snapshot_cmd("tank/a", "s 1"), "zfs snapshot tank/a@s 1"),
            (clone_cmd("tank/a@s", "tank/b", m), "zfs clone -o mountpoint=/srv/my root/volumes/v tank/a@s tank/b"),
            (set_cmd("tank/a", "quota", "none"), "zfs set quota=none tank/a"),
            (rollback_cmd("tank/a", "s", false), "zfs rollback tank/a@s"),
            (rollback_cmd("tank/a", "s", true), "zfs rollback -r tank/a@s"),
            (send_cmd("tank/a", "b", None), "zfs send tank/a@b"),
            (send_cmd("tank/a", "b", Some("a")), "zfs send -i @a tank/a@b"),
            (receive_cmd("tank/a", "b", None), "zfs receive -s -u tank/a@b"),
            (receive_cmd("tank/a", "b", Some(m)), "zfs receive -s -u -o mountpoint=/srv/my root/volumes/v tank/a@b"),
            (receive_abort_cmd("tank/a"), "zfs receive -A tank/a"),
            (mount_cmd("tank/a"), "zfs mount tank/a"),
        ];
        for (cmd, want) in cases {
            assert_eq!(cmd.argv_string(), want);
            assert!(cmd.stdin.is_none());
        }
        // A mountpoint with spaces stays one argument.
        assert_eq!(
            create_cmd("tank/v", m, false).args[2],
            OsString::from("mountpoint=/srv/my root/volumes/v")
        );
        assert_eq!(quota_value("t", Some(5)).unwrap(), "5");
        assert_eq!(quota_value("t", None).unwrap(), "none");
        assert!(matches!(
            quota_value("t", Some(0)),
            Err(ZfsError::ZeroQuota(_))
        ));
        assert_eq!(
            clone_snapshot_label(&DatasetId::Data("web".into())),
            "warren-clone-workloads-web-data"
        );
    }

    #[test]
    fn names_are_checked_before_anything_runs() {
        let (rec, s) = storage();
        for bad in [
            "", ".hidden", "a/b", "a@b", "a%b", "a,b", "x.json", "t\tab", "é",
        ] {
            assert!(s.create_world_dataset(bad).is_err(), "{bad:?}");
            assert!(s.ensure_data(bad).is_err(), "{bad:?}");
            assert!(s.ensure_volume(bad).is_err(), "{bad:?}");
        }
        let web = DatasetId::Data("web".into());
        for bad in ["", "a@b", "a%b", "a,b", "a/b", "a#b"] {
            assert!(s.snapshot(&web, bad).is_err(), "{bad:?}");
            assert!(s.delete_snapshot(&web, bad).is_err(), "{bad:?}");
        }
        assert!(check_component("world", "debian-12.5:base two").is_ok());
        assert!(matches!(
            ZfsStorage::open("tank/", "/x".into(), rec.clone()),
            Err(StorageError::Other(m)) if m.contains("invalid pool name")
        ));
        assert!(rec.ran().is_empty());
    }

    #[test]
    fn list_worlds_needs_base() {
        let (rec, s) = storage();
        rec.expect_ok(
            "zfs list -Hp -t snapshot -o name -d 2 tank/warren/worlds",
            golden!("list_world_snapshots.txt"),
        );
        assert_eq!(s.list_worlds().unwrap(), ["busybox", "debian 12", "host"]);
        rec.finish();
    }

    #[test]
    fn list_datasets_and_volumes() {
        let (rec, s) = storage();
        rec.expect_ok(
            "zfs list -Hp -t filesystem -o name,readonly -r tank/warren",
            golden!("list_filesystems.txt"),
        )
        // A pool with `listsnapshots=on` lists snapshots without `-t`: they are not volumes.
        .expect_ok(
            "zfs list -Hp -o name -d 1 tank/warren/volumes",
            golden!("list_children_listsnapshots.txt"),
        );
        let list = s.list_datasets().unwrap();
        let names: Vec<(&str, bool)> = list.iter().map(|d| (d.name.as_str(), d.readonly)).collect();
        assert_eq!(
            names,
            [
                ("worlds/busybox", true),
                ("worlds/host", true),
                ("workloads/api/data", false),
                ("workloads/web/rootfs", false),
                ("workloads/web/data", false),
                ("volumes/site", false),
            ]
        );
        assert_eq!(list[3].path, s.rootfs_path("web"));
        assert_eq!(s.list_volumes().unwrap(), ["pg data", "site"]);
        rec.finish();
    }

    #[test]
    fn pipes_stream_through_real_processes() {
        let mut out = Vec::new();
        pipe_out(
            &Cmd::new("sh").args(["-c", "printf 'stream\\0bytes'"]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"stream\0bytes");

        let err = pipe_out(
            &Cmd::new("sh").args(["-c", "printf partial; echo \"cannot open 'tank/x@s': dataset does not exist\" >&2; exit 1"]),
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(err.is(ZfsErrorKind::NotFound), "{err}");
        assert!(err.to_string().contains("dataset does not exist"), "{err}");

        let mut input: &[u8] = b"abc";
        pipe_in(
            &Cmd::new("sh").args(["-c", "test \"$(cat)\" = abc"]),
            &mut input,
        )
        .unwrap();

        // The receiver fails early: its message wins over the broken pipe.
        let big = vec![7u8; 1 << 20];
        let err = pipe_in(
            &Cmd::new("sh").args([
                "-c",
                "echo 'cannot receive new filesystem stream: out of space' >&2; exit 1",
            ]),
            &mut big.as_slice(),
        )
        .unwrap_err();
        assert!(err.is(ZfsErrorKind::OutOfSpace), "{err}");

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk went away"))
            }
        }
        let err = pipe_in(&Cmd::new("sh").args(["-c", "cat >/dev/null"]), &mut Broken).unwrap_err();
        assert!(matches!(err, ZfsError::Stream { .. }), "{err}");
        assert!(err.to_string().contains("disk went away"), "{err}");
    }
}
