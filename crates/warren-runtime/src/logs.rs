//! Container logs: the shim's rotating [`LogWriter`] and the readers ([`read_tail`],
//! [`LogFollower`]).
//!
//! The format is the CRI one, one record per line:
//! `2024-05-01T12:00:00.123456789Z stdout F text`. `F` marks a full line, `P` a partial chunk
//! (a line longer than [`MAX_LINE`] bytes is split, and output that ends without a newline is
//! flushed as `P` at EOF). The current file is `container.log`; when it would grow past the size
//! limit it is renamed to `container.log.1` (older ones shift to `.2` ... and the oldest is
//! dropped). Rotation happens only between records, so every file holds whole lines.
//!
//! [`LogFollower`] waits for changes with inotify on Linux and kqueue on the BSDs and macOS;
//! on other OSes [`LogFollower::open`] fails with [`RuntimeError::Unsupported`].

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

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which of the container's output streams a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
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
    let stream = match parts.next()? {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        _ => return None,
    };
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

fn rotated_path(dir: &Path, k: u32) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{k}"))
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
}

impl LogWriter {
    /// Opens (appending to) `dir/container.log`, creating the directory if needed.
    /// `max_files` counts the current file; at least 1.
    pub fn open(dir: &Path, max_bytes: u64, max_files: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join(LOG_FILE);
        let file = open_append(&path)?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        Ok(LogWriter {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
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

    fn rotate(&mut self) -> Result<()> {
        let current = self.dir.join(LOG_FILE);
        let keep = self.max_files - 1;
        if keep == 0 {
            remove_if_exists(&current)?;
        } else {
            remove_if_exists(&rotated_path(&self.dir, keep))?;
            for k in (1..keep).rev() {
                rename_if_exists(&rotated_path(&self.dir, k), &rotated_path(&self.dir, k + 1))?;
            }
            rename_if_exists(&current, &rotated_path(&self.dir, 1))?;
        }
        self.file = open_append(&current)?;
        self.size = 0;
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

fn rename_if_exists(from: &Path, to: &Path) -> Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(from)(e)),
        _ => Ok(()),
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

/// Rotated files that exist, newest first (`.1`, `.2`, ...), with their inode numbers.
///
/// The writer may be shifting files while this runs: it renames from the oldest down, so a file
/// only ever moves to a higher number. Scanning upwards past gaps, with duplicates removed by
/// inode, therefore sees every file once and in order.
fn rotated_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let prefix = format!("{LOG_FILE}.");
    let highest = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix(&prefix)?.parse::<u32>().ok()
            })
            .max()
            .unwrap_or(0)
        })
        .unwrap_or(0);
    let mut out: Vec<(PathBuf, u64)> = Vec::new();
    for k in 1..=highest.saturating_add(2) {
        let p = rotated_path(dir, k);
        if let Ok(m) = std::fs::metadata(&p) {
            if !out.iter().any(|(_, i)| *i == m.ino()) {
                out.push((p, m.ino()));
            }
        }
    }
    out
}

/// The last `n` records (all when None) across the rotated files and the current one, oldest
/// first.
pub fn read_tail(log_dir: &Path, n: Option<usize>) -> Result<Vec<LogLine>> {
    if !log_dir.is_dir() {
        return Err(RuntimeError::Io {
            path: log_dir.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut files: Vec<PathBuf> = vec![log_dir.join(LOG_FILE)];
    files.extend(rotated_files(log_dir).into_iter().map(|(p, _)| p));
    // Newest file first; stop once enough lines are collected.
    let mut chunks: Vec<Vec<LogLine>> = Vec::new();
    let mut count = 0;
    for f in &files {
        let mut lines = Vec::new();
        read_file_lines(f, &mut lines)?;
        count += lines.len();
        chunks.push(lines);
        if n.is_some_and(|n| count >= n) {
            break;
        }
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
/// written, across rotations (no line lost or repeated). Blocks on inotify or kqueue, never
/// polls.
#[derive(Debug)]
pub struct LogFollower {
    dir: PathBuf,
    watch: watch::Watch,
    /// The file being read and its inode.
    current: Option<(File, u64)>,
    /// Bytes of the current file after the last complete line.
    buf: Vec<u8>,
    /// Lines to hand out before reading more.
    ready: Vec<LogLine>,
}

impl LogFollower {
    /// Starts following `log_dir`; the first [`LogFollower::wait_next`] returns the last `tail`
    /// existing records (all when None).
    pub fn open(log_dir: &Path, tail: Option<usize>) -> Result<Self> {
        let mut f = LogFollower {
            dir: log_dir.to_path_buf(),
            watch: watch::Watch::new(log_dir)?,
            current: None,
            buf: Vec::new(),
            ready: Vec::new(),
        };
        let mut lines = Vec::new();
        let path = log_dir.join(LOG_FILE);
        match File::open(&path) {
            Ok(file) => {
                let ino = file.metadata().map_err(io_err(&path))?.ino();
                f.watch.watch_file(&file)?;
                for (p, i) in rotated_files(log_dir).iter().rev() {
                    if *i != ino {
                        read_file_lines(p, &mut lines)?;
                    }
                }
                f.current = Some((file, ino));
                f.read_current(&mut lines)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
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

    /// Reads what is new, switching files when `container.log` was rotated.
    fn collect(&mut self, out: &mut Vec<LogLine>) -> Result<()> {
        self.read_current(out)?;
        let path = self.dir.join(LOG_FILE);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let ino = file.metadata().map_err(io_err(&path))?.ino();
        let old_ino = match &self.current {
            Some((_, old)) if *old == ino => return Ok(()),
            Some((_, old)) => Some(*old),
            None => None,
        };
        // The file we held was rotated away: finish it (the writer is done with it), then read
        // the rotated files that came after it in full, then start on the new current file.
        self.read_current(out)?;
        self.buf.clear();
        if let Some(old) = old_ino {
            let rotated = rotated_files(&self.dir);
            let newest = rotated
                .iter()
                .position(|(_, i)| *i == ino)
                .map_or(0, |k| k + 1);
            let ours = rotated
                .iter()
                .position(|(_, i)| *i == old)
                .unwrap_or(rotated.len());
            if ours > newest {
                for (p, _) in rotated[newest..ours].iter().rev() {
                    read_file_lines(p, out)?;
                }
            }
        }
        self.watch.watch_file(&file)?;
        self.current = Some((file, ino));
        self.read_current(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_of_known_instants() {
        assert_eq!(
            format_timestamp(UNIX_EPOCH),
            "1970-01-01T00:00:00.000000000Z"
        );
        // 2024-02-29T23:59:59.123456789Z (a leap day).
        let t = UNIX_EPOCH + Duration::new(1_709_251_199, 123_456_789);
        assert_eq!(format_timestamp(t), "2024-02-29T23:59:59.123456789Z");
        let t = UNIX_EPOCH + Duration::new(951_782_400, 5);
        assert_eq!(format_timestamp(t), "2000-02-29T00:00:00.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_102_444_800);
        assert_eq!(format_timestamp(t), "2100-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn format_and_parse_round_trip() {
        let ts = "2024-05-01T12:00:00.000000001Z";
        let raw = format_line(ts, Stream::Stderr, true, b"a b  c");
        assert_eq!(raw, b"2024-05-01T12:00:00.000000001Z stderr P a b  c\n");
        let l = parse_line(std::str::from_utf8(&raw).unwrap()).unwrap();
        assert_eq!(
            l,
            LogLine {
                ts: ts.into(),
                stream: Stream::Stderr,
                partial: true,
                text: "a b  c".into()
            }
        );
        let empty = parse_line("2024-05-01T12:00:00.000000001Z stdout F ").unwrap();
        assert_eq!(empty.text, "");
        assert!(!empty.partial);
    }

    #[test]
    fn garbage_lines_are_skipped() {
        for g in [
            "",
            "hello",
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00Z stdin F x",
            "2024-05-01T12:00:00Z stdout X x",
            "not-a-time stdout F x",
            "\u{0}\u{1} stdout F",
        ] {
            assert_eq!(parse_line(g), None, "{g:?}");
        }
    }

    fn texts(lines: &[LogLine]) -> Vec<(Stream, bool, String)> {
        lines
            .iter()
            .map(|l| (l.stream, l.partial, l.text.clone()))
            .collect()
    }

    #[test]
    fn writer_splits_lines_streams_and_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), DEFAULT_MAX_BYTES, 3).unwrap();
        w.write(Stream::Stdout, b"hel").unwrap();
        w.write(Stream::Stderr, b"oops\nno newline").unwrap();
        w.write(Stream::Stdout, b"lo\nworld\n").unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 5];
        w.write(Stream::Stdout, &long).unwrap();
        w.write(Stream::Stdout, b"\n").unwrap();
        w.finish(Stream::Stderr).unwrap();
        w.finish(Stream::Stdout).unwrap();
        let lines = read_tail(dir.path(), None).unwrap();
        let x = |n| "x".repeat(n);
        assert_eq!(
            texts(&lines),
            vec![
                (Stream::Stderr, false, "oops".into()),
                (Stream::Stdout, false, "hello".into()),
                (Stream::Stdout, false, "world".into()),
                (Stream::Stdout, true, x(MAX_LINE)),
                (Stream::Stdout, true, x(MAX_LINE)),
                (Stream::Stdout, false, x(5)),
                (Stream::Stderr, true, "no newline".into()),
            ]
        );
        assert!(lines.iter().all(|l| l.ts.len() == 30));
        assert_eq!(read_tail(dir.path(), Some(2)).unwrap().len(), 2);
    }

    #[test]
    fn rotation_keeps_max_files_and_order() {
        let dir = tempfile::tempdir().unwrap();
        // Each record is 30 + 8 + 6 + 1 = 45 bytes: two fit in 100 bytes.
        let mut w = LogWriter::open(dir.path(), 100, 3).unwrap();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line{i:02}\n").as_bytes())
                .unwrap();
        }
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["container.log", "container.log.1", "container.log.2"]
        );
        for f in &names {
            assert!(std::fs::metadata(dir.path().join(f)).unwrap().len() <= 100);
        }
        let all: Vec<String> = read_tail(dir.path(), None)
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(
            all,
            vec!["line04", "line05", "line06", "line07", "line08", "line09"]
        );
        let last3: Vec<String> = read_tail(dir.path(), Some(3))
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(last3, vec!["line07", "line08", "line09"]);

        // One file only: rotation starts a fresh file.
        let dir1 = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir1.path(), 100, 1).unwrap();
        for i in 0..5 {
            w.write(Stream::Stdout, format!("line{i:02}\n").as_bytes())
                .unwrap();
        }
        let all: Vec<String> = read_tail(dir1.path(), None)
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(all, vec!["line04"]);
    }

    #[test]
    fn follower_sees_tail_then_new_lines_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        // Several rotations can happen between two reads; enough files are kept for the follower
        // to catch up.
        let mut w = LogWriter::open(dir.path(), 200, 200).unwrap();
        for i in 0..3 {
            w.write(Stream::Stdout, format!("pre{i}\n").as_bytes())
                .unwrap();
        }
        let mut f = LogFollower::open(dir.path(), Some(2)).unwrap();
        let first: Vec<String> = f
            .wait_next(Duration::from_secs(1))
            .unwrap()
            .into_iter()
            .map(|l| l.text)
            .collect();
        assert_eq!(first, vec!["pre1", "pre2"]);
        assert!(f.wait_next(Duration::from_millis(50)).unwrap().is_empty());

        const N: usize = 400;
        let writer = std::thread::spawn(move || {
            for i in 0..N {
                w.write(Stream::Stdout, format!("n{i:04}\n").as_bytes())
                    .unwrap();
                if i % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        });
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while got.len() < N && Instant::now() < deadline {
            for l in f.wait_next(Duration::from_millis(500)).unwrap() {
                got.push(l.text);
            }
        }
        writer.join().unwrap();
        let want: Vec<String> = (0..N).map(|i| format!("n{i:04}")).collect();
        assert_eq!(got, want);
        assert!(dir.path().join("container.log.3").exists());
        assert!(f.wait_next(Duration::from_millis(50)).unwrap().is_empty());
    }
}
