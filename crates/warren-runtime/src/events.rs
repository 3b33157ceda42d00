//! One event-source trait for the two things warren waits on: a process exiting and a file or
//! directory changing. [`EventSource`] is implemented with pidfds and inotify on Linux and with
//! one kqueue (`EVFILT_PROC`/`NOTE_EXIT` and `EVFILT_VNODE`) on FreeBSD; [`new_source`] picks
//! the one of the host. No polling either way: [`EventSource::wait`] blocks in `poll(2)` or
//! `kevent(2)` until something happened or the timeout passed.
//!
//! A process that has already exited when it is watched is reported by the next `wait`, so a
//! caller cannot miss an exit between spawning and watching.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Something that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The watched process exited (it may still need reaping by its parent).
    ProcessExited(i32),
    /// The watched path (or, for a directory, an entry directly in it) changed.
    FileChanged(PathBuf),
}

/// A set of watched processes and paths.
pub trait EventSource: Send {
    /// Reports `pid`'s exit once. Watching a process that is gone reports it at once.
    fn watch_process(&mut self, pid: i32) -> io::Result<()>;
    /// Reports changes of `path` (writes, attribute changes, renames, removal; for a directory
    /// also entries created, removed or renamed in it) until the source is dropped.
    fn watch_path(&mut self, path: &Path) -> io::Result<()>;
    /// Waits up to `timeout` for events; empty when none came.
    fn wait(&mut self, timeout: Duration) -> io::Result<Vec<Event>>;
}

/// The host's event source.
pub fn new_source() -> io::Result<Box<dyn EventSource>> {
    imp::new_source()
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{Event, EventSource};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
    use std::collections::HashMap;
    use std::io;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub struct LinuxSource {
        inotify: Inotify,
        paths: HashMap<WatchDescriptor, PathBuf>,
        pidfds: Vec<(i32, OwnedFd)>,
        pending: Vec<Event>,
    }

    pub fn new_source() -> io::Result<Box<dyn EventSource>> {
        Ok(Box::new(LinuxSource {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?,
            paths: HashMap::new(),
            pidfds: Vec::new(),
            pending: Vec::new(),
        }))
    }

    impl EventSource for LinuxSource {
        fn watch_process(&mut self, pid: i32) -> io::Result<()> {
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    self.pending.push(Event::ProcessExited(pid));
                    return Ok(());
                }
                return Err(e);
            }
            // SAFETY: the kernel just returned this fd; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            self.pidfds.push((pid, fd));
            Ok(())
        }

        fn watch_path(&mut self, path: &Path) -> io::Result<()> {
            let wd = self.inotify.add_watch(
                path,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_ATTRIB
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )?;
            self.paths.insert(wd, path.to_path_buf());
            Ok(())
        }

        fn wait(&mut self, timeout: Duration) -> io::Result<Vec<Event>> {
            if !self.pending.is_empty() {
                return Ok(std::mem::take(&mut self.pending));
            }
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            let ready: Vec<bool> = {
                let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
                fds.extend(
                    self.pidfds
                        .iter()
                        .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN)),
                );
                match poll(
                    &mut fds,
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
                ) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            let mut out = Vec::new();
            if ready[0] {
                while let Ok(events) = self.inotify.read_events() {
                    if events.is_empty() {
                        break;
                    }
                    for e in events {
                        if let Some(p) = self.paths.get(&e.wd) {
                            let ev = Event::FileChanged(p.clone());
                            if !out.contains(&ev) {
                                out.push(ev);
                            }
                        }
                    }
                }
            }
            let mut i = 0;
            let mut k = 1;
            while i < self.pidfds.len() {
                if ready[k] {
                    let (pid, _) = self.pidfds.remove(i);
                    out.push(Event::ProcessExited(pid));
                } else {
                    i += 1;
                }
                k += 1;
            }
            Ok(out)
        }
    }
}

#[cfg(target_os = "freebsd")]
mod imp {
    use super::{Event, EventSource};
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub struct KqueueSource {
        kq: OwnedFd,
        /// Open descriptors of watched paths (EVFILT_VNODE needs one), by fd number.
        paths: HashMap<usize, (OwnedFd, PathBuf)>,
        pending: Vec<Event>,
    }

    pub fn new_source() -> io::Result<Box<dyn EventSource>> {
        // SAFETY: kqueue() returns a new fd or -1.
        let kq = unsafe { libc::kqueue() };
        if kq < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Box::new(KqueueSource {
            // SAFETY: the kernel just returned this fd; nothing else owns it.
            kq: unsafe { OwnedFd::from_raw_fd(kq) },
            paths: HashMap::new(),
            pending: Vec::new(),
        }))
    }

    fn change(ident: usize, filter: i16, flags: u16, fflags: u32) -> libc::kevent {
        // SAFETY: an all-zero kevent is a valid value to fill in.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = ident as libc::uintptr_t;
        ev.filter = filter;
        ev.flags = flags;
        ev.fflags = fflags;
        ev
    }

    impl KqueueSource {
        fn register(&self, ev: &libc::kevent) -> io::Result<()> {
            // SAFETY: registers one event on our kqueue; no events are returned.
            let r = unsafe {
                libc::kevent(
                    self.kq.as_raw_fd(),
                    ev,
                    1,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null(),
                )
            };
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        }
    }

    impl EventSource for KqueueSource {
        fn watch_process(&mut self, pid: i32) -> io::Result<()> {
            let ev = change(
                pid as usize,
                libc::EVFILT_PROC,
                libc::EV_ADD | libc::EV_ONESHOT,
                libc::NOTE_EXIT,
            );
            match self.register(&ev) {
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                    self.pending.push(Event::ProcessExited(pid));
                    Ok(())
                }
                other => other,
            }
        }

        fn watch_path(&mut self, path: &Path) -> io::Result<()> {
            let c = CString::new(path.as_os_str().as_bytes())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
            // SAFETY: c is a valid C string; open returns a new fd or -1.
            let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this fd; nothing else owns it.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let ev = change(
                fd.as_raw_fd() as usize,
                libc::EVFILT_VNODE,
                libc::EV_ADD | libc::EV_CLEAR,
                libc::NOTE_WRITE
                    | libc::NOTE_EXTEND
                    | libc::NOTE_ATTRIB
                    | libc::NOTE_DELETE
                    | libc::NOTE_RENAME
                    | libc::NOTE_LINK,
            );
            self.register(&ev)?;
            self.paths
                .insert(fd.as_raw_fd() as usize, (fd, path.to_path_buf()));
            Ok(())
        }

        fn wait(&mut self, timeout: Duration) -> io::Result<Vec<Event>> {
            if !self.pending.is_empty() {
                return Ok(std::mem::take(&mut self.pending));
            }
            // SAFETY: an all-zero kevent array is valid output space.
            let mut evs: [libc::kevent; 16] = unsafe { std::mem::zeroed() };
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            // SAFETY: evs has room for 16 events; no changes are passed.
            let n = unsafe {
                libc::kevent(
                    self.kq.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    evs.as_mut_ptr(),
                    evs.len() as libc::c_int,
                    &ts,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    return Ok(Vec::new());
                }
                return Err(e);
            }
            let mut out = Vec::new();
            for ev in &evs[..n as usize] {
                if ev.filter == libc::EVFILT_PROC {
                    out.push(Event::ProcessExited(ev.ident as i32));
                } else if let Some((_, p)) = self.paths.get(&(ev.ident as usize)) {
                    let e = Event::FileChanged(p.clone());
                    if !out.contains(&e) {
                        out.push(e);
                    }
                }
            }
            Ok(out)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
mod imp {
    use super::EventSource;
    use std::io;

    pub fn new_source() -> io::Result<Box<dyn EventSource>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "event sources need Linux (pidfd, inotify) or FreeBSD (kqueue)",
        ))
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "freebsd")))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Waits until `want` arrives, at most 10 s.
    fn wait_for(src: &mut dyn EventSource, want: &Event) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if src.wait(Duration::from_millis(500)).unwrap().contains(want) {
                return;
            }
        }
        panic!("{want:?} never reported");
    }

    #[test]
    fn process_exit_is_reported() {
        let mut src = new_source().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        src.watch_process(pid).unwrap();
        // Not before it exits.
        assert!(src.wait(Duration::from_millis(50)).unwrap().is_empty());
        wait_for(src.as_mut(), &Event::ProcessExited(pid));
        child.wait().unwrap();
    }

    #[test]
    fn a_process_already_gone_is_reported_at_once() {
        let mut src = new_source().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        src.watch_process(pid).unwrap();
        assert_eq!(
            src.wait(Duration::from_secs(5)).unwrap(),
            vec![Event::ProcessExited(pid)]
        );
    }

    #[test]
    fn file_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spec.toml");
        std::fs::write(&file, "a").unwrap();
        let mut src = new_source().unwrap();
        src.watch_path(&file).unwrap();
        assert!(src.wait(Duration::from_millis(50)).unwrap().is_empty());
        std::fs::write(&file, "ab").unwrap();
        wait_for(src.as_mut(), &Event::FileChanged(file.clone()));
        assert!(src.watch_path(&dir.path().join("missing")).is_err());
    }
}
