//! File-change notification behind one trait: inotify on Linux, kqueue (`EVFILT_VNODE`) on
//! FreeBSD. A watcher watches one path (a file, or a directory and the entries directly in
//! it) and reports that something changed; callers debounce and act.

use std::path::Path;
use std::time::Duration;

/// One watched path.
pub trait FileWatcher: Send {
    /// Waits up to `timeout` for a change; true if one happened.
    fn wait(&mut self, timeout: Duration) -> std::io::Result<bool>;
}

/// A watcher for `path` on this platform.
pub fn watch(path: &Path) -> std::io::Result<Box<dyn FileWatcher>> {
    imp::watch(path)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::FileWatcher;
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    use std::path::Path;
    use std::time::Duration;

    pub struct InotifyWatcher {
        fd: Inotify,
    }

    pub fn watch(path: &Path) -> std::io::Result<Box<dyn FileWatcher>> {
        let fd = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        fd.add_watch(
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
        Ok(Box::new(InotifyWatcher { fd }))
    }

    impl FileWatcher for InotifyWatcher {
        fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
            let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            let n = poll(
                &mut fds,
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
            )?;
            if n == 0 {
                return Ok(false);
            }
            // Drain everything pending: one change report per burst.
            let mut any = false;
            while let Ok(events) = self.fd.read_events() {
                if events.is_empty() {
                    break;
                }
                any = true;
            }
            Ok(any)
        }
    }
}

#[cfg(target_os = "freebsd")]
mod imp {
    use super::FileWatcher;
    use nix::sys::event::{EvFlags, EventFilter, FilterFlag, KEvent, Kqueue};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::path::Path;
    use std::time::Duration;

    pub struct KqueueWatcher {
        kq: Kqueue,
        _file: OwnedFd,
    }

    pub fn watch(path: &Path) -> std::io::Result<Box<dyn FileWatcher>> {
        let file: OwnedFd = std::fs::File::open(path)?.into();
        let kq = Kqueue::new()?;
        let ev = KEvent::new(
            file.as_raw_fd() as usize,
            EventFilter::EVFILT_VNODE,
            EvFlags::EV_ADD | EvFlags::EV_CLEAR,
            FilterFlag::NOTE_WRITE
                | FilterFlag::NOTE_EXTEND
                | FilterFlag::NOTE_ATTRIB
                | FilterFlag::NOTE_DELETE
                | FilterFlag::NOTE_RENAME,
            0,
            0,
        );
        kq.kevent(&[ev], &mut [], None)?;
        Ok(Box::new(KqueueWatcher { kq, _file: file }))
    }

    impl FileWatcher for KqueueWatcher {
        fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
            let mut out = [KEvent::new(
                0,
                EventFilter::EVFILT_VNODE,
                EvFlags::empty(),
                FilterFlag::empty(),
                0,
                0,
            )];
            let ts = libc::timespec {
                tv_sec: timeout.as_secs() as libc::time_t,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            let n = self.kq.kevent(&[], &mut out, Some(ts))?;
            Ok(n > 0)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
mod imp {
    use super::FileWatcher;
    use std::path::Path;

    pub fn watch(_path: &Path) -> std::io::Result<Box<dyn FileWatcher>> {
        Err(std::io::Error::other(
            "file-change hooks are not supported on this platform",
        ))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn changes_in_a_directory_are_reported_once_per_burst() {
        let t = tempfile::tempdir().unwrap();
        let mut w = watch(t.path()).unwrap();
        assert!(!w.wait(Duration::from_millis(50)).unwrap());
        std::fs::write(t.path().join("a"), "1").unwrap();
        std::fs::write(t.path().join("b"), "2").unwrap();
        assert!(w.wait(Duration::from_secs(2)).unwrap());
        assert!(!w.wait(Duration::from_millis(50)).unwrap(), "drained");
        std::fs::remove_file(t.path().join("a")).unwrap();
        assert!(w.wait(Duration::from_secs(2)).unwrap());
        assert!(watch(&t.path().join("missing")).is_err());
    }
}
