//! The shim's supervising part, Linux only: the child subreaper, the signalfd, `runc create`
//! and `runc start`, the poll loop that copies output and reaps children, and the cleanup
//! when the main process exits (see the [parent module](super) for the sequence).

use super::{
    exit_info, io_err, note, now_ms, oom_kill_count, read_config, write_json, ShimConfig,
    DRAIN_GRACE, EXIT_FILE, PID_FILE, RUNC_LOG, STATE_FILE,
};
use crate::logs::{LogWriter, Stream};
use crate::runc;
use crate::{Result, RuntimeError, ShimState};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;
use warren_exec::{Executor, HostExecutor};

/// In the forked runc child: default signal dispositions and an empty mask, so the container
/// does not inherit the shim's signal setup.
fn reset_signals() -> std::io::Result<()> {
    // SAFETY: signal, sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn other(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::Other(msg.into())
}

fn nix_err(what: &str) -> impl FnOnce(nix::errno::Errno) -> RuntimeError + '_ {
    move |e| other(format!("{what}: {e}"))
}

/// Everything available right now in a pipe whose writers may be gone.
fn read_available(fd: &OwnedFd) -> String {
    let _ = nix::fcntl::fcntl(
        fd.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = nix::unistd::read(fd.as_fd(), &mut buf) {
        if n == 0 || out.len() > 64 * 1024 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

/// The error messages in runc's JSON log.
fn runc_log_errors(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Steps 1 to 5 of the module docs; `status` is taken when `ok` has been reported.
pub(super) fn run(run_dir: &Path, status: &mut Option<File>) -> Result<()> {
    // SAFETY: plain prctl and signal-disposition calls in a single-threaded process.
    unsafe {
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0 {
            return Err(other(format!(
                "cannot become a child subreaper: {}",
                std::io::Error::last_os_error()
            )));
        }
        nix::sys::signal::signal(Signal::SIGHUP, SigHandler::SigIgn)
            .map_err(nix_err("ignoring SIGHUP"))?;
        nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigIgn)
            .map_err(nix_err("ignoring SIGPIPE"))?;
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(nix_err("blocking signals"))?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(nix_err("signalfd"))?;

    let cfg = read_config(run_dir)?;
    let exec = HostExecutor;
    let mut log = LogWriter::open(&cfg.log_dir, cfg.log_max_bytes, cfg.log_max_files)?;
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(nix_err("pipe"));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;

    let pid_file = run_dir.join(PID_FILE);
    let runc_log = run_dir.join(RUNC_LOG);
    for stale in [&pid_file, &runc_log] {
        let _ = std::fs::remove_file(stale);
    }
    let create = cfg
        .runc
        .create_cmd(&cfg.id, &cfg.bundle, &pid_file, Some(&runc_log));
    let mut cmd = runc::std_command(&create)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w))
        .current_dir("/");
    // SAFETY: reset_signals only makes async-signal-safe calls.
    unsafe { cmd.pre_exec(reset_signals) };
    let mut child = cmd
        .spawn()
        .map_err(|e| other(format!("cannot start `{}`: {e}", create.argv_string())))?;
    // Drop our copies of the pipes' write ends: only runc and the container hold them now.
    drop(cmd);
    let st = child
        .wait()
        .map_err(|e| other(format!("waiting for runc create: {e}")))?;
    if !st.success() {
        let mut reason = read_available(&err_r);
        if reason.is_empty() {
            reason = runc_log_errors(&runc_log);
        }
        if reason.is_empty() {
            reason = format!("runc create failed ({st})");
        }
        let _ = cfg.runc.force_delete(&exec, &cfg.id);
        reap_all();
        return Err(other(reason));
    }

    let container_pid = match start_container(run_dir, &cfg, &exec, &pid_file) {
        Ok(pid) => pid,
        Err(e) => {
            let _ = cfg.runc.force_delete(&exec, &cfg.id);
            reap_all();
            return Err(e);
        }
    };
    if let Some(mut s) = status.take() {
        // The daemon may be gone already; the container runs regardless.
        let _ = s.write_all(b"ok\n");
    }

    let main_status = supervise(run_dir, &sfd, out_r, err_r, &mut log, container_pid);
    for s in [Stream::Stdout, Stream::Stderr] {
        if let Err(e) = log.finish(s) {
            note(run_dir, &format!("log: {e}"));
        }
    }
    let oom_killed = oom_kill_count(&cfg.cgroup_path).is_some_and(|n| n > 0);
    if let Err(e) = cfg.runc.force_delete(&exec, &cfg.id) {
        note(run_dir, &format!("runc delete: {e}"));
    }
    reap_all();
    write_json(
        &run_dir.join(EXIT_FILE),
        &exit_info(main_status, oom_killed, now_ms()),
    )
}

/// After `runc create`: reads the PID, records state.json and runs `runc start`.
fn start_container(
    run_dir: &Path,
    cfg: &ShimConfig,
    exec: &dyn Executor,
    pid_file: &Path,
) -> Result<i32> {
    let text = std::fs::read_to_string(pid_file).map_err(io_err(pid_file))?;
    let container_pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| other(format!("{}: not a pid: {text:?}", pid_file.display())))?;
    let state = ShimState {
        id: cfg.id.clone(),
        shim_pid: std::process::id() as i32,
        shim_start_ticks: crate::proc::self_start_ticks()?,
        container_pid,
        started_at_ms: now_ms(),
    };
    write_json(&run_dir.join(STATE_FILE), &state)?;
    exec.run(&cfg.runc.start_cmd(&cfg.id)).map_err(|e| {
        let s = e.stderr().trim();
        other(if s.is_empty() {
            e.to_string()
        } else {
            s.to_string()
        })
    })?;
    Ok(container_pid)
}

/// Reaps every exited child without blocking.
fn reap_all() {
    while let Ok(ws) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if ws == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Copies output and reaps children until the main process has exited and its output is
/// drained; returns the main process's wait status.
fn supervise(
    run_dir: &Path,
    sfd: &SignalFd,
    out_r: OwnedFd,
    err_r: OwnedFd,
    log: &mut LogWriter,
    main_pid: i32,
) -> WaitStatus {
    let mut pipes: [(Option<File>, Stream); 2] = [
        (Some(File::from(out_r)), Stream::Stdout),
        (Some(File::from(err_r)), Stream::Stderr),
    ];
    let main = Pid::from_raw(main_pid);
    let mut main_status: Option<WaitStatus> = None;
    let mut drain_until: Option<Instant> = None;
    let mut log_failed = false;
    let mut buf = vec![0u8; 64 * 1024];
    // The main process may have ended before the signalfd was first polled.
    let mut check_children = true;
    loop {
        if check_children {
            check_children = false;
            while let Ok(ws) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                match ws {
                    WaitStatus::StillAlive => break,
                    WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _) if p == main => {
                        main_status = Some(ws);
                        drain_until = Some(Instant::now() + DRAIN_GRACE);
                    }
                    _ => {}
                }
            }
        }
        let open = pipes.iter().filter(|(f, _)| f.is_some()).count();
        let timeout = match drain_until {
            Some(_) if open == 0 => break,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let mut which = Vec::new();
        for (i, (f, _)) in pipes.iter().enumerate() {
            if let Some(f) = f {
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                which.push(i);
            }
        }
        match nix::poll::poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                note(run_dir, &format!("poll: {e}"));
                break;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = sfd.read_signal() {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    check_children = true;
                } else if main_status.is_none() {
                    if let Ok(s) = Signal::try_from(sig) {
                        let _ = kill(main, s);
                    }
                }
            }
        }
        for (k, &i) in which.iter().enumerate() {
            if !ready[k + 1] {
                continue;
            }
            let (slot, stream) = &mut pipes[i];
            let Some(f) = slot.as_mut() else { continue };
            match f.read(&mut buf) {
                Ok(0) | Err(_) => *slot = None,
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
    main_status.unwrap_or(WaitStatus::StillAlive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_log_error_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("runc.log");
        std::fs::write(
            &p,
            "{\"level\":\"info\",\"msg\":\"hi\"}\nnoise\n\
             {\"level\":\"error\",\"msg\":\"exec: no such file\"}\n",
        )
        .unwrap();
        assert_eq!(runc_log_errors(&p), "exec: no such file");
        assert_eq!(runc_log_errors(&dir.path().join("none")), "");
    }
}
