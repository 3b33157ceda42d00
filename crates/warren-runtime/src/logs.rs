//! Container logs: the shim's rotating [`LogWriter`] and the readers ([`read_tail`],
//! [`LogFollower`]).
//!
//! The format is the CRI one, one record per line:
//! `2024-05-01T12:00:00.123456789Z stdout F text`. `F` marks a full line, `P` a partial chunk
//! (a line longer than [`MAX_LINE`] bytes is split, and output that ends without a newline is
//! flushed as `P` at EOF).
//!
//! Files in the log directory:
//!
//! - `container.log`: the file being written.
//! - `container.log.<seq>`: rotated files, `<seq>` zero-padded to ten digits
//!   (`container.log.0000000001`, `container.log.0000000002`, ...); a greater number is newer.
//!
//! When a record would grow `container.log` past the size limit, the writer renames it in one
//! step to `container.log.<seq>`, `<seq>` one more than the newest rotated file's, starts a new
//! `container.log`, then deletes the oldest rotated files beyond `max_files - 1` (with
//! `max_files` 1 the full file is deleted instead). Rotation happens only between records, so
//! every file holds whole lines. Names are never reused, so a reader that has found a file keeps
//! its place however many rotations follow. Rotated files of the older layout (`container.log.1`
//! the newest, `.2`, ...: fewer than ten digits) count as older than every numbered one.
//!
//! [`LogFollower`] waits for changes with inotify on Linux and kqueue on the BSDs and macOS;
//! on other OSes [`LogFollower::open`] fails with [`RuntimeError::Unsupported`].

use crate::io_err;
use crate::{Result, RuntimeError};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The current log file's name inside the log directory.
pub const LOG_FILE: &str = "container.log";
/// Longest text of one record; longer lines are split into `P` chunks.
pub const MAX_LINE: usize = 16 * 1024;
/// Default size at which `container.log` is rotated.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of files kept, the current one included.
pub const DEFAULT_MAX_FILES: u32 = 3;

/// Which of the container's output streams a record came from.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// RFC 3339 UTC timestamp with nanoseconds, as written.
    pub ts: String,
    pub stream: Stream,
    /// A chunk of a longer line, or output that ended without a newline.
    pub partial: bool,
    pub text: String,
}

/// Formats `t` as RFC 3339 UTC with nine fractional digits (`2006-01-02T15:04:05.000000000Z`).
pub fn format_timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Renders one record (with its trailing newline).
pub fn format_line(ts: &str, stream: Stream, partial: bool, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ts.len() + text.len() + 12);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Parses one record (without its newline). Lines that are not records yield None.
pub fn parse_line(line: &str) -> Option<LogLine> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next()?;
    let stream: Stream = parts.next()?.parse().ok()?;
    let partial = match parts.next()? {
        "F" => false,
        "P" => true,
        _ => return None,
    };
    let text = parts.next().unwrap_or("");
    // A timestamp is at least `YYYY-MM-DDTHH:MM:SSZ`.
    if ts.len() < 20 || !ts.ends_with('Z') || ts.as_bytes()[10] != b'T' {
        return None;
    }
    Some(LogLine {
        ts: ts.to_string(),
        stream,
        partial,
        text: text.to_string(),
    })
}

/// Digits of a rotated file's sequence number.
const SEQ_WIDTH: usize = 10;

/// A rotated file's place in rotation order; greater is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seq {
    /// `container.log.<k>` of the older layout, where `.1` was the newest.
    Legacy(std::cmp::Reverse<u64>),
    /// `container.log.<seq>`, zero-padded to [`SEQ_WIDTH`] digits.
    Numbered(u64),
}

impl Seq {
    fn parse(name: &str) -> Option<Seq> {
        let digits = name.strip_prefix(LOG_FILE)?.strip_prefix('.')?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = digits.parse::<u64>().ok()?;
        Some(if digits.len() >= SEQ_WIDTH {
            Seq::Numbered(n)
        } else {
            Seq::Legacy(std::cmp::Reverse(n))
        })
    }
}

fn rotated_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{seq:0SEQ_WIDTH$}"))
}

/// The rotated files in `dir`, oldest first.
fn rotated_files(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(Seq::parse) {
            out.push((seq, entry.path()));
        }
    }
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// The number for the next rotated file: one more than the newest numbered one.
fn next_seq(rotated: &[(Seq, PathBuf)]) -> u64 {
    rotated
        .iter()
        .filter_map(|(seq, _)| match seq {
            Seq::Numbered(n) => Some(n.saturating_add(1)),
            Seq::Legacy(_) => None,
        })
        .max()
        .unwrap_or(1)
}

/// The inode of `path`, None when it does not exist.
fn file_ino(path: &Path) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// Opens `path` with its inode, None when it does not exist.
fn open_with_ino(path: &Path) -> Result<Option<(File, u64)>> {
    match File::open(path) {
        Ok(f) => {
            let ino = f.metadata().map_err(io_err(path))?.ino();
            Ok(Some((f, ino)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The shim's log writer: splits each stream into records and rotates by size.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: File,
    size: u64,
    pending: [Vec<u8>; 2],
    /// Number for the next rotated file, so numbers only grow even if files are deleted.
    next_seq: u64,
}

impl LogWriter {
    /// Opens (appending to) `dir/container.log`, creating the directory if needed.
    /// `max_files` counts the current file; at least 1.
    pub fn open(dir: &Path, max_bytes: u64, max_files: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOG_FILE);
        let file = open_append(&path)?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        let next_seq = next_seq(&rotated_files(dir)?);
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
            next_seq,
        })
    }

    /// Appends output from `stream`; complete lines become records at once, the rest waits for
    /// its newline (or [`LogWriter::finish`]).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.pending[stream.index()]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
            let mut line = &buf[start..start + nl];
            while line.len() > MAX_LINE {
                self.emit(stream, true, &line[..MAX_LINE])?;
                line = &line[MAX_LINE..];
            }
            self.emit(stream, false, line)?;
            start += nl + 1;
        }
        while buf.len() - start > MAX_LINE {
            self.emit(stream, true, &buf[start..start + MAX_LINE])?;
            start += MAX_LINE;
        }
        buf.drain(..start);
        self.pending[stream.index()] = buf;
        Ok(())
    }

    /// Flushes output of `stream` that never got its newline, as a partial record.
    pub fn finish(&mut self, stream: Stream) -> Result<()> {
        let rest = std::mem::take(&mut self.pending[stream.index()]);
        if !rest.is_empty() {
            self.emit(stream, true, &rest)?;
        }
        Ok(())
    }

    fn emit(&mut self, stream: Stream, partial: bool, text: &[u8]) -> Result<()> {
        let line = format_line(&format_timestamp(SystemTime::now()), stream, partial, text);
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let path = self.dir.join(LOG_FILE);
        self.file.write_all(&line).map_err(io_err(&path))?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// Renames `container.log` to the next numbered name (one atomic step for readers), starts a
    /// new one, then deletes the oldest rotated files beyond `max_files - 1`.
    fn rotate(&mut self) -> Result<()> {
        let current = self.dir.join(LOG_FILE);
        let keep = (self.max_files - 1) as usize;
        let mut rotated = rotated_files(&self.dir)?;
        if keep == 0 {
            remove_if_exists(&current)?;
        } else {
            let seq = self.next_seq.max(next_seq(&rotated));
            let to = rotated_path(&self.dir, seq);
            if rename_if_exists(&current, &to)? {
                rotated.push((Seq::Numbered(seq), to));
            }
            self.next_seq = seq.saturating_add(1);
        }
        self.file = open_append(&current)?;
        self.size = 0;
        let excess = rotated.len().saturating_sub(keep);
        for (_, path) in &rotated[..excess] {
            remove_if_exists(path)?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(path)(e)),
        _ => Ok(()),
    }
}

/// Whether `from` existed (and was renamed).
fn rename_if_exists(from: &Path, to: &Path) -> Result<bool> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(from)(e)),
    }
}

/// Splits complete lines off `buf` (keeping an unterminated tail) and parses them into `out`.
fn take_lines(buf: &mut Vec<u8>, out: &mut Vec<LogLine>) {
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        if let Some(l) = parse_line(&String::from_utf8_lossy(&buf[start..start + nl])) {
            out.push(l);
        }
        start += nl + 1;
    }
    buf.drain(..start);
}

fn read_file_lines(path: &Path, out: &mut Vec<LogLine>) -> Result<()> {
    let mut data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    data.push(b'\n');
    take_lines(&mut data, out);
    Ok(())
}

/// The last `n` records (all when None) across the rotated files and the current one, oldest
/// first: `container.log` as opened here, and the files rotated before it.
pub fn read_tail(log_dir: &Path, n: Option<usize>) -> Result<Vec<LogLine>> {
    if !log_dir.is_dir() {
        return Err(RuntimeError::Io {
            path: log_dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let path = log_dir.join(LOG_FILE);
    let current = open_with_ino(&path)?;
    let mut rotated = rotated_files(log_dir)?;
    // Files from the one `container.log` became (if it was rotated meanwhile) on are newer than
    // what its handle reads.
    if let Some((_, ino)) = &current {
        for (i, (_, p)) in rotated.iter().enumerate() {
            if file_ino(p)? == Some(*ino) {
                rotated.truncate(i);
                break;
            }
        }
    }
    // Newest file first; stop once enough lines are collected.
    let mut chunks: Vec<Vec<LogLine>> = Vec::new();
    let mut count = 0;
    if let Some((mut file, _)) = current {
        let mut data = Vec::new();
        file.read_to_end(&mut data).map_err(io_err(&path))?;
        data.push(b'\n');
        let mut lines = Vec::new();
        take_lines(&mut data, &mut lines);
        count += lines.len();
        chunks.push(lines);
    }
    for (_, p) in rotated.iter().rev() {
        if n.is_some_and(|n| count >= n) {
            break;
        }
        let mut lines = Vec::new();
        read_file_lines(p, &mut lines)?;
        count += lines.len();
        chunks.push(lines);
    }
    let mut all: Vec<LogLine> = chunks.into_iter().rev().flatten().collect();
    if let Some(n) = n {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    Ok(all)
}

/// Waiting for changes in a log directory: the directory's entries and the file being read.
#[cfg(target_os = "linux")]
mod watch {
    use super::io_err;
    use crate::Result;
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// An inotify watch on the directory; it reports writes to the files in it as well.
    #[derive(Debug)]
    pub(super) struct Watch {
        dir: PathBuf,
        inotify: Inotify,
    }

    impl Watch {
        pub(super) fn new(dir: &Path) -> Result<Self> {
            let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .map_err(|e| io_err(dir)(e.into()))?;
            inotify
                .add_watch(
                    dir,
                    AddWatchFlags::IN_MODIFY
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_MOVED_FROM
                        | AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_CLOSE_WRITE,
                )
                .map_err(|e| io_err(dir)(e.into()))?;
            Ok(Watch {
                dir: dir.to_path_buf(),
                inotify,
            })
        }

        /// Nothing to do: the directory watch covers the files in it.
        pub(super) fn watch_file(&mut self, _file: &File) -> Result<()> {
            Ok(())
        }

        /// Discards the pending events.
        pub(super) fn drain(&mut self) -> Result<()> {
            loop {
                match self.inotify.read_events() {
                    Ok(ev) if !ev.is_empty() => continue,
                    Ok(_) | Err(nix::errno::Errno::EAGAIN) => return Ok(()),
                    Err(e) => return Err(io_err(&self.dir)(e.into())),
                }
            }
        }

        /// Blocks until an event is pending or `timeout` has passed.
        pub(super) fn wait(&mut self, timeout: Duration) -> Result<()> {
            let ms = PollTimeout::try_from(timeout.as_millis().max(1).min(i32::MAX as u128))
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
                Err(e) => Err(io_err(&self.dir)(e.into())),
            }
        }
    }
}

/// Waiting for changes in a log directory: the directory's entries and the file being read.
#[cfg(any(
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "macos"
))]
mod watch {
    use super::io_err;
    use crate::Result;
    use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
    use nix::sys::time::TimeSpec;
    use std::fs::File;
    use std::os::fd::{AsFd, AsRawFd};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    /// A kqueue with EVFILT_VNODE filters on the directory (entries created, renamed or
    /// removed) and on the file being read (appended to), which a directory filter does not
    /// report. A file's filter goes away when the file is closed.
    #[derive(Debug)]
    pub(super) struct Watch {
        dir: PathBuf,
        kq: Kqueue,
        /// Held open for its filter.
        dir_file: File,
    }

    fn vnode_event(fd: &impl AsRawFd) -> KEvent {
        KEvent::new(
            fd.as_raw_fd() as usize,
            EventFilter::EVFILT_VNODE,
            EvFlags::EV_ADD | EvFlags::EV_CLEAR,
            FilterFlag::NOTE_WRITE
                | FilterFlag::NOTE_EXTEND
                | FilterFlag::NOTE_RENAME
                | FilterFlag::NOTE_DELETE,
            0,
            0,
        )
    }

    fn empty_event() -> KEvent {
        KEvent::new(
            0,
            EventFilter::EVFILT_VNODE,
            EvFlags::empty(),
            FilterFlag::empty(),
            0,
            0,
        )
    }

    impl Watch {
        pub(super) fn new(dir: &Path) -> Result<Self> {
            let kq = Kqueue::new().map_err(|e| io_err(dir)(e.into()))?;
            nix::fcntl::fcntl(
                kq.as_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .map_err(|e| io_err(dir)(e.into()))?;
            let dir_file = File::open(dir).map_err(io_err(dir))?;
            let mut w = Watch {
                dir: dir.to_path_buf(),
                kq,
                dir_file,
            };
            let ev = vnode_event(&w.dir_file);
            w.register(ev)?;
            Ok(w)
        }

        fn register(&mut self, ev: KEvent) -> Result<()> {
            self.kq
                .kevent(&[ev], &mut [], Some(*TimeSpec::new(0, 0).as_ref()))
                .map(|_| ())
                .map_err(|e| io_err(&self.dir)(e.into()))
        }

        /// Also reports writes to `file` (the one being read) while it stays open.
        pub(super) fn watch_file(&mut self, file: &File) -> Result<()> {
            self.register(vnode_event(file))
        }

        /// Discards the pending events.
        pub(super) fn drain(&mut self) -> Result<()> {
            let mut events = [empty_event(); 8];
            loop {
                match self
                    .kq
                    .kevent(&[], &mut events, Some(*TimeSpec::new(0, 0).as_ref()))
                {
                    Ok(n) if n == events.len() => continue,
                    Ok(_) => return Ok(()),
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(io_err(&self.dir)(e.into())),
                }
            }
        }

        /// Blocks until an event is pending or `timeout` has passed. The event is consumed;
        /// the caller rereads the files after every wait.
        pub(super) fn wait(&mut self, timeout: Duration) -> Result<()> {
            let mut events = [empty_event(); 1];
            let ts = TimeSpec::from_duration(timeout);
            match self.kq.kevent(&[], &mut events, Some(*ts.as_ref())) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
                Err(e) => Err(io_err(&self.dir)(e.into())),
            }
        }
    }
}

/// No change notification on this OS: following logs is unsupported.
#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "macos"
)))]
mod watch {
    use crate::{Result, RuntimeError};
    use std::fs::File;
    use std::path::Path;
    use std::time::Duration;

    /// Never constructed.
    #[derive(Debug)]
    pub(super) enum Watch {}

    impl Watch {
        pub(super) fn new(_dir: &Path) -> Result<Self> {
            Err(RuntimeError::Unsupported(
                "following logs needs inotify or kqueue".into(),
            ))
        }

        pub(super) fn watch_file(&mut self, _file: &File) -> Result<()> {
            match *self {}
        }

        pub(super) fn drain(&mut self) -> Result<()> {
            match *self {}
        }

        pub(super) fn wait(&mut self, _timeout: Duration) -> Result<()> {
            match *self {}
        }
    }
}

/// Follows a log directory: returns the requested tail first, then every new record as it is
/// written, across rotations. Blocks on inotify or kqueue, never polls.
///
/// It holds the file it reads open. When `container.log` turns out to be another file, the held
/// one was rotated: it reads that to its end (the writer is done with it, and an open file can
/// be read even once deleted), finds its number by inode among the rotated files, reads every
/// newer rotated file in order, then goes on with the new `container.log`. No record is lost or
/// repeated as long as at most `max_files` rotations happen between two reads. With more, the
/// files rotated and deleted before the follower got to them are skipped: it continues with the
/// oldest rotated file still there.
#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    watch: watch::Watch,
    /// The file being read and its inode.
    current: Option<(File, u64)>,
    /// The newest rotated file read, or known to be older than `current`; older ones are done.
    read_upto: Option<Seq>,
    /// Bytes of the current file after the last complete line.
    buf: Vec<u8>,
    /// Lines to hand out before reading more.
    ready: Vec<LogLine>,
}

/// How many times [`LogFollower::collect`] looks again when the file it opened as
/// `container.log` was rotated before it listed the directory and is gone from it.
const RELIST_ATTEMPTS: u32 = 8;

impl LogFollower {
    /// Starts following `log_dir`; the first [`LogFollower::wait_next`] returns the last `tail`
    /// existing records (all when None).
    pub fn open(log_dir: &Path, tail: Option<usize>) -> Result<Self> {
        let mut f = LogFollower {
            dir: log_dir.to_path_buf(),
            watch: watch::Watch::new(log_dir)?,
            current: None,
            read_upto: None,
            buf: Vec::new(),
            ready: Vec::new(),
        };
        let mut lines = Vec::new();
        f.collect(&mut lines)?;
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        f.ready = lines;
        Ok(f)
    }

    /// New complete records, waiting up to `timeout` for some; empty on timeout.
    pub fn wait_next(&mut self, timeout: Duration) -> Result<Vec<LogLine>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.watch.drain()?;
            let mut out = std::mem::take(&mut self.ready);
            self.collect(&mut out)?;
            if !out.is_empty() {
                return Ok(out);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(out);
            }
            self.watch.wait(left)?;
        }
    }

    fn read_current(&mut self, out: &mut Vec<LogLine>) -> Result<()> {
        if let Some((file, _)) = &mut self.current {
            let path = self.dir.join(LOG_FILE);
            file.read_to_end(&mut self.buf).map_err(io_err(&path))?;
            take_lines(&mut self.buf, out);
        }
        Ok(())
    }

    /// Reads what is new, moving on to the next files when `container.log` was rotated.
    fn collect(&mut self, out: &mut Vec<LogLine>) -> Result<()> {
        self.read_current(out)?;
        let path = self.dir.join(LOG_FILE);
        // The held file stays open until the end, so no other file can take its inode.
        let held = self.current.as_ref().map(|(_, ino)| *ino);
        let mut attempts = 0;
        let (next, rotated, from, to) = loop {
            // Opened before listing: every file rotated before `next` was created is listed.
            let next = open_with_ino(&path)?;
            let next_ino = next.as_ref().map(|(_, ino)| *ino);
            if held.is_some() && (next_ino.is_none() || next_ino == held) {
                // Not rotated, or between the writer's rename and its new file (whose creation
                // wakes us up).
                return Ok(());
            }
            // The unread rotated files, oldest first, with their inodes.
            let mut rotated = Vec::new();
            for (seq, p) in rotated_files(&self.dir)? {
                if self.read_upto.is_none_or(|upto| seq > upto) {
                    if let Some(ino) = file_ino(&p)? {
                        rotated.push((seq, p, ino));
                    }
                }
            }
            // After the held file; when it is gone, all of them.
            let from = held
                .and_then(|h| rotated.iter().position(|r| r.2 == h))
                .map_or(0, |i| i + 1);
            // Up to `next`, in case it was rotated too since we opened it.
            let to = match next_ino.and_then(|n| rotated.iter().position(|r| r.2 == n)) {
                Some(i) => i,
                // `next` is no longer `container.log` yet not listed: rotated after the listing
                // (then everything listed is older), or rotated and deleted before it (then
                // newer files are listed). Look again to tell.
                None if next_ino.is_some()
                    && attempts < RELIST_ATTEMPTS
                    && file_ino(&path)? != next_ino =>
                {
                    attempts += 1;
                    continue;
                }
                None => rotated.len(),
            };
            break (next, rotated, from, to.max(from));
        };
        // The writer has finished with the held file: read it to its end.
        self.read_current(out)?;
        self.buf.clear();
        if from > 0 {
            self.read_upto = Some(rotated[from - 1].0);
        }
        for (seq, p, _) in &rotated[from..to] {
            read_file_lines(p, out)?;
            self.read_upto = Some(*seq);
        }
        self.current = next;
        if let Some((file, _)) = &self.current {
            self.watch.watch_file(file)?;
        }
        self.read_current(out)
    }
}

#[cfg(test)]
mod tests;
