//! Thin, checked wrappers over the system calls the agent makes: mounts, module loading,
//! filesystem freezing, the clock and hostname, pseudo-terminals, descriptor flags and the
//! final power-off. Each returns `io::Error::last_os_error()` on failure, with the operation's
//! subject added where it helps a log line.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// `_IOWR('X', 119, int)` and `_IOWR('X', 120, int)` from `linux/fs.h`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

pub fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a string"))
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn context(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// `mount(2)`; `src`, `fstype` and `data` may be empty.
pub fn mount(
    src: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (s, t, f, d) = (cstr(src)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    let opt = |c: &CString, empty: bool| if empty { std::ptr::null() } else { c.as_ptr() };
    let r = unsafe {
        libc::mount(
            opt(&s, src.is_empty()),
            t.as_ptr(),
            opt(&f, fstype.is_empty()),
            flags,
            opt(&d, data.is_empty()) as *const libc::c_void,
        )
    };
    check(r)
        .map(|_| ())
        .map_err(|e| context(&format!("mount {src} on {target} ({fstype})"), e))
}

/// `umount2(2)`.
pub fn umount(target: &str, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    check(unsafe { libc::umount2(t.as_ptr(), flags) })
        .map(|_| ())
        .map_err(|e| context(&format!("umount {target}"), e))
}

/// Loads a kernel module from a file (`finit_module(2)`); one already loaded is fine.
pub fn load_module(path: &Path) -> io::Result<()> {
    let f = std::fs::File::open(path).map_err(|e| context(&path.display().to_string(), e))?;
    let params = cstr("")?;
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            f.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Ok(());
        }
        return Err(context(&format!("load {}", path.display()), e));
    }
    Ok(())
}

/// Freezes (`FIFREEZE`) or thaws (`FITHAW`) the filesystem mounted at `path`.
pub fn freeze(path: &str, freeze: bool) -> io::Result<()> {
    let f = std::fs::File::open(path).map_err(|e| context(path, e))?;
    let req = if freeze { FIFREEZE } else { FITHAW };
    let r = unsafe { libc::ioctl(f.as_raw_fd(), req as _, 0 as libc::c_int) };
    check(r).map(|_| ()).map_err(|e| {
        context(
            &format!("{} {path}", if freeze { "freeze" } else { "thaw" }),
            e,
        )
    })
}

/// Sets the real-time clock to `unix_ns`.
pub fn set_clock(unix_ns: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
    };
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) })
        .map(|_| ())
        .map_err(|e| context("set the clock", e))
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    check(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })
        .map(|_| ())
        .map_err(|e| context(&format!("sethostname {name}"), e))
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A new pseudo-terminal of `rows` × `cols`: (master, slave).
pub fn openpty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut m, mut s) = (-1, -1);
    let ws = winsize(rows, cols);
    check(unsafe { libc::openpty(&mut m, &mut s, std::ptr::null_mut(), std::ptr::null(), &ws) })
        .map_err(|e| context("openpty", e))?;
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    set_cloexec(m.as_raw_fd())?;
    set_cloexec(s.as_raw_fd())?;
    Ok((m, s))
}

fn winsize(rows: u16, cols: u16) -> libc::winsize {
    libc::winsize {
        ws_row: if rows == 0 { 24 } else { rows },
        ws_col: if cols == 0 { 80 } else { cols },
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets a terminal's size (`TIOCSWINSZ`).
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = winsize(rows, cols);
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }).map(|_| ())
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    let fl = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) }).map(|_| ())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) }).map(|_| ())
}

/// `read(2)`: `Ok(0)` at end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `write(2)`.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `kill(2)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    check(unsafe { libc::kill(pid, sig) }).map(|_| ())
}

/// A descriptor that becomes readable when `SIGCHLD` arrives (the signal is blocked).
pub fn sigchld_fd() -> io::Result<OwnedFd> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        check(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = check(libc::signalfd(
            -1,
            &set,
            libc::SFD_NONBLOCK | libc::SFD_CLOEXEC,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reaps one exited child without blocking: `(pid, raw status)`.
pub fn reap_one() -> Option<(i32, i32)> {
    let mut status = 0;
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Reaps what has exited; whether children remain (as PID 1, every process of the guest).
pub fn reap_all() -> bool {
    loop {
        let mut status = 0;
        match unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } {
            0 => return true,
            pid if pid > 0 => {}
            _ => return io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD),
        }
    }
}

/// Waits until a path exists (a device node devtmpfs creates once its driver probed).
pub fn wait_for(path: &str, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    while !Path::new(path).exists() {
        if start.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{path} did not appear within {} s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn sync() {
    unsafe { libc::sync() };
}

/// Powers the machine off; QEMU (`-no-reboot`) then exits.
pub fn power_off() -> ! {
    sync();
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    // Only reached when not allowed to (not PID 1 in the initial namespace).
    eprintln!(
        "warren-agent: power off failed: {}",
        io::Error::last_os_error()
    );
    loop {
        unsafe { libc::pause() };
    }
}
