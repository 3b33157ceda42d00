//! The jail shim's supervising part, FreeBSD only: the reaper, signals as kqueue events,
//! `jexec` of the main process, the kevent(2) loop that copies output and reaps children, and
//! the teardown once the main process has exited (see the [parent module](super) for the
//! sequence). The loop's decisions are [`Supervision`]'s, tested on every OS.

use super::{
    exit_info, note, now_ms, read_jail_config, write_json, JailShimConfig, Next, Supervision,
    DRAIN_GRACE, EXIT_FILE, STATE_FILE,
};
use crate::logs::{LogWriter, Stream};
use crate::{Result, RuntimeError, ShimState};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use warren_exec::{Cmd, Executor, HostExecutor};

/// The signals the shim takes as kqueue events. TERM and INT are ignored (a kqueue still
/// records them) so they never end the shim; SIGCHLD keeps its default disposition, which
/// the filter records, where an ignored SIGCHLD would not be.
const TAKEN: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT];

fn other(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Other(msg.into())
}

fn os_err(what: &str) -> RuntimeError {
    other(format!("{what}: {}", std::io::Error::last_os_error()))
}

/// In the forked jexec child: default dispositions for what the shim ignores, and an empty
/// signal mask, so the jail's main process does not inherit the shim's signal setup.
fn reset_signals() -> std::io::Result<()> {
    // SAFETY: signal, sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        for sig in [libc::SIGHUP, libc::SIGPIPE, libc::SIGTERM, libc::SIGINT] {
            libc::signal(sig, libc::SIG_DFL);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A kqueue and the few registrations the shim needs.
struct Kqueue(OwnedFd);

impl Kqueue {
    fn new() -> Result<Kqueue> {
        // SAFETY: kqueue() returns a new fd or -1.
        let fd = unsafe { libc::kqueue() };
        if fd < 0 {
            return Err(os_err("kqueue"));
        }
        // SAFETY: fd was just returned by the kernel and is owned by nothing else.
        Ok(Kqueue(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Registers (`EV_ADD`) one event.
    fn add(&self, ident: usize, filter: i16, fflags: u32) -> std::io::Result<()> {
        // SAFETY: an all-zero kevent is a valid value to fill in.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = ident as libc::uintptr_t;
        ev.filter = filter;
        ev.flags = libc::EV_ADD;
        ev.fflags = fflags;
        // SAFETY: registers one event on our kqueue; no events are returned.
        let r = unsafe {
            libc::kevent(
                self.0.as_raw_fd(),
                &ev,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for events (at most `timeout`; None: until one comes).
    fn wait(
        &self,
        events: &mut [libc::kevent],
        timeout: Option<Duration>,
    ) -> std::io::Result<usize> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `events` has room for its length; nothing is registered by this call.
        let n = unsafe {
            libc::kevent(
                self.0.as_raw_fd(),
                std::ptr::null(),
                0,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                ts_ptr,
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// Steps 1 to 4 of the module docs; `status` is taken when `ok` has been reported.
pub(super) fn run(run_dir: &Path, status: &mut Option<File>) -> Result<()> {
    // SAFETY: procctl on this process with no argument; signal only changes dispositions.
    unsafe {
        let me = libc::getpid() as libc::id_t;
        if libc::procctl(
            libc::P_PID,
            me,
            libc::PROC_REAP_ACQUIRE,
            std::ptr::null_mut(),
        ) != 0
        {
            return Err(os_err("cannot become the reaper of its descendants"));
        }
        for sig in [libc::SIGHUP, libc::SIGPIPE, libc::SIGTERM, libc::SIGINT] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let kq = Kqueue::new()?;
    for sig in TAKEN {
        kq.add(sig as usize, libc::EVFILT_SIGNAL, 0)
            .map_err(|e| other(format!("kqueue signal {sig}: {e}")))?;
    }

    let cfg = read_jail_config(run_dir)?;
    let mut log = LogWriter::open(&cfg.log_dir, cfg.log_max_bytes, cfg.log_max_files)?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| other(format!("pipe: {e}")))
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let program = cfg.program.as_deref().unwrap_or("jexec");
    let mut cmd = warren_exec::std_command(program)?;
    cmd.args(&cfg.jexec)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .current_dir("/");
    // SAFETY: reset_signals only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(reset_signals) };
    let child = cmd.spawn().map_err(|e| {
        other(format!(
            "cannot start `{program} {}`: {e}",
            cfg.jexec.join(" ")
        ))
    })?;
    // Drop our copies of the pipes' write ends: only jexec and its descendants hold them now.
    drop(cmd);
    let main_pid = child.id() as i32;
    // The shim reaps with waitpid; the handle is not needed.
    drop(child);

    let state = crate::proc::self_start_ticks().and_then(|ticks| {
        let state = ShimState {
            id: cfg.id.clone(),
            shim_pid: std::process::id() as i32,
            shim_start_ticks: ticks,
            container_pid: main_pid,
            started_at_ms: now_ms(),
        };
        write_json(&run_dir.join(STATE_FILE), &state)
    });
    if let Err(e) = state {
        let _ = kill(Pid::from_raw(main_pid), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(main_pid), None);
        return Err(e);
    }
    // Gone already: SIGCHLD reports it.
    let _ = kq.add(main_pid as usize, libc::EVFILT_PROC, libc::NOTE_EXIT);
    if let Some(mut s) = status.take() {
        // The daemon may be gone already; the jail runs regardless.
        let _ = s.write_all(b"ok\n");
    }

    let main_status = supervise(run_dir, &kq, out_r, err_r, &mut log, main_pid);
    for s in [Stream::Stdout, Stream::Stderr] {
        if let Err(e) = log.finish(s) {
            note(run_dir, &format!("log: {e}"));
        }
    }
    teardown(run_dir, &cfg);
    reap_all();
    write_json(
        &run_dir.join(EXIT_FILE),
        &exit_info(main_status, false, now_ms()),
    )
}

/// Runs the teardown commands in order; a failure is noted and the next one still runs.
fn teardown(run_dir: &Path, cfg: &JailShimConfig) {
    let exec = HostExecutor;
    for argv in &cfg.teardown {
        let Some((program, args)) = argv.split_first() else {
            continue;
        };
        if let Err(e) = exec.run(&Cmd::new(program).args(args)) {
            note(run_dir, &format!("teardown `{}`: {e}", argv.join(" ")));
        }
    }
}

/// Reaps every exited child without blocking.
fn reap_all() {
    while let Ok(ws) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if ws == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Copies output and reaps children until [`Supervision`] says the main process has exited
/// and its output is drained; returns the main process's wait status.
fn supervise(
    run_dir: &Path,
    kq: &Kqueue,
    out_r: OwnedFd,
    err_r: OwnedFd,
    log: &mut LogWriter,
    main_pid: i32,
) -> WaitStatus {
    let mut pipes: Vec<(RawFd, Option<File>, Stream)> = Vec::new();
    for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
        let raw = fd.as_raw_fd();
        if let Err(e) = kq.add(raw as usize, libc::EVFILT_READ, 0) {
            note(run_dir, &format!("kqueue read: {e}"));
        }
        pipes.push((raw, Some(File::from(fd)), stream));
    }
    let mut sup = Supervision::new(main_pid, pipes.len(), DRAIN_GRACE);
    let mut log_failed = false;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: an all-zero kevent is a valid value for the kernel to overwrite.
    let mut events: Vec<libc::kevent> = (0..8).map(|_| unsafe { std::mem::zeroed() }).collect();
    // The main process may have ended before the first kevent.
    let mut check_children = true;
    loop {
        if check_children {
            check_children = false;
            while let Ok(ws) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                if ws == WaitStatus::StillAlive {
                    break;
                }
                sup.reaped(ws, Instant::now());
            }
        }
        let timeout = match sup.next(Instant::now()) {
            Next::Done => break,
            Next::Wait(t) => t,
        };
        let n = match kq.wait(&mut events, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                note(run_dir, &format!("kevent: {e}"));
                break;
            }
        };
        for ev in &events[..n] {
            if ev.filter == libc::EVFILT_SIGNAL {
                let sig = ev.ident as libc::c_int;
                if sig == libc::SIGCHLD {
                    check_children = true;
                } else if let Some(pid) = sup.forward(sig) {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(Pid::from_raw(pid), s);
                    }
                }
            } else if ev.filter == libc::EVFILT_PROC {
                check_children = true;
            } else if ev.filter == libc::EVFILT_READ {
                let fd = ev.ident as RawFd;
                let Some((_, slot, stream)) = pipes.iter_mut().find(|(raw, _, _)| *raw == fd)
                else {
                    continue;
                };
                let Some(f) = slot.as_mut() else { continue };
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // Closing the fd removes its kevent.
                        *slot = None;
                        sup.pipe_closed();
                    }
                    Ok(n) => {
                        if let Err(e) = log.write(*stream, &buf[..n]) {
                            if !log_failed {
                                note(run_dir, &format!("log: {e}"));
                                log_failed = true;
                            }
                        }
                    }
                }
            }
        }
    }
    sup.main_status().unwrap_or(WaitStatus::StillAlive)
}
