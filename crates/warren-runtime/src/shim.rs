//! The per-workload shim: `warren shim RUN_DIR`, the process that lets a container outlive the
//! daemon.
//!
//! The daemon ([`crate::oci::OciRuntime::start`]) writes `RUN_DIR/shim.json` ([`ShimConfig`])
//! and the bundle, then spawns the shim in its own session with a status pipe whose fd number is
//! in [`STATUS_FD_ENV`]. The shim:
//!
//! 1. becomes a child subreaper, ignores SIGHUP and SIGPIPE, and takes SIGCHLD, SIGTERM and
//!    SIGINT through a signalfd;
//! 2. runs `runc create` with the write ends of two pipes as the container's stdout and stderr,
//!    reads the container's PID, writes `state.json` ([`ShimState`]) and runs `runc start`;
//! 3. writes `ok` on the status pipe (or `error: REASON` for any failure up to here, after
//!    removing what runc created) and closes it;
//! 4. supervises with poll(2): copies output into the rotating log, reaps every child (the
//!    container's init and any reparented orphan), forwards SIGTERM and SIGINT to the main
//!    process;
//! 5. when the main process exits: drains the pipes (until EOF or a short grace), reads the
//!    cgroup's OOM-kill counter, runs `runc delete --force`, writes `exit.json` ([`ExitInfo`])
//!    and exits 0.
//!
//! Plain std, nix and libc: no async runtime, no threads, no busy polling. Problems after the
//! status pipe is closed are appended to `RUN_DIR/shim.log`.

use crate::bundle::write_atomic;
use crate::logs::{LogWriter, Stream};
use crate::runc::{self, Runc};
use crate::{ExitInfo, Result, RuntimeError, ShimState};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warren_exec::{Executor, HostExecutor};

/// Environment variable carrying the status pipe's fd number.
pub const STATUS_FD_ENV: &str = "WARREN_SHIM_STATUS_FD";
/// The shim's configuration inside the run directory.
pub const CONFIG_FILE: &str = "shim.json";
/// Written once the container runs: [`ShimState`].
pub const STATE_FILE: &str = "state.json";
/// Written when the main process has ended: [`ExitInfo`].
pub const EXIT_FILE: &str = "exit.json";
/// Where runc writes the container's PID.
pub const PID_FILE: &str = "container.pid";
/// runc's own log (JSON lines).
pub const RUNC_LOG: &str = "runc.log";
/// The shim's diagnostics after it has reported.
pub const SHIM_LOG: &str = "shim.log";
/// How long output is still collected after the main process exited.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// `RUN_DIR/shim.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShimConfig {
    pub id: String,
    pub runc: Runc,
    pub bundle: PathBuf,
    pub log_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub cgroup_path: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RuntimeError::Other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

pub(crate) fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(v)
        .map_err(|e| RuntimeError::Other(format!("{}: {e}", path.display())))?;
    write_atomic(path, &data)
}

/// Reads `RUN_DIR/state.json`; None when the shim has not written it.
pub fn read_state(run_dir: &Path) -> Result<Option<ShimState>> {
    read_json(&run_dir.join(STATE_FILE))
}

/// Reads `RUN_DIR/exit.json`; None while the main process runs.
pub fn read_exit(run_dir: &Path) -> Result<Option<ExitInfo>> {
    read_json(&run_dir.join(EXIT_FILE))
}

/// Reads `RUN_DIR/shim.json`.
pub fn read_config(run_dir: &Path) -> Result<ShimConfig> {
    let path = run_dir.join(CONFIG_FILE);
    read_json(&path)?
        .ok_or_else(|| io_err(&path)(std::io::Error::from(std::io::ErrorKind::NotFound)))
}

/// The `oom_kill N` counter from cgroup v1 `memory.oom_control` or v2 `memory.events`.
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == "oom_kill").then(|| v.trim().parse().ok()).flatten()
    })
}

/// How many processes the OOM killer ended in the container's memory cgroup (None when the
/// cgroup or the counter is not there).
pub fn oom_kill_count(cgroup_path: &str) -> Option<u64> {
    let rel = cgroup_path.trim_start_matches('/');
    let file = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events")
    } else {
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control")
    };
    parse_oom_kill(&std::fs::read_to_string(file).ok()?)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The exit record for a wait status of the main process.
pub fn exit_info(status: WaitStatus, oom_killed: bool, finished_at_ms: u64) -> ExitInfo {
    let (code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    };
    ExitInfo {
        code,
        signal,
        oom_killed,
        finished_at_ms,
    }
}

/// Entry point of `warren shim RUN_DIR`; never returns.
pub fn main(run_dir: &Path) -> ! {
    let mut status = take_status_pipe();
    let code = match run(run_dir, &mut status) {
        Ok(()) => 0,
        Err(e) => {
            let msg = e.to_string();
            match status.take() {
                Some(mut s) => {
                    let _ = write!(s, "error: {msg}");
                }
                None => note(run_dir, &msg),
            }
            1
        }
    };
    std::process::exit(code)
}

/// Takes the inherited status pipe and makes it close-on-exec again, so runc and the container
/// never hold it.
fn take_status_pipe() -> Option<File> {
    let fd: RawFd = std::env::var(STATUS_FD_ENV).ok()?.parse().ok()?;
    if fd < 3 {
        return None;
    }
    // SAFETY: fcntl on an fd number only inspects or flags it.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return None;
    }
    // SAFETY: as above; the fd was handed to this process for its exclusive use.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
        Some(File::from_raw_fd(fd))
    }
}

/// Appends a diagnostic line to `RUN_DIR/shim.log`.
fn note(run_dir: &Path, msg: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join(SHIM_LOG))
    {
        let ts = crate::logs::format_timestamp(SystemTime::now());
        let _ = writeln!(f, "{ts} {msg}");
    }
}

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

fn run(run_dir: &Path, status: &mut Option<File>) -> Result<()> {
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
    fn oom_counters_parse() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
        assert_eq!(parse_oom_kill(""), None);
    }

    #[test]
    fn exit_info_from_wait_status() {
        let p = Pid::from_raw(10);
        assert_eq!(
            exit_info(WaitStatus::Exited(p, 3), false, 5),
            ExitInfo {
                code: 3,
                signal: None,
                oom_killed: false,
                finished_at_ms: 5
            }
        );
        assert_eq!(
            exit_info(WaitStatus::Signaled(p, Signal::SIGKILL, false), true, 6),
            ExitInfo {
                code: 137,
                signal: Some(9),
                oom_killed: true,
                finished_at_ms: 6
            }
        );
    }

    #[test]
    fn config_and_state_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), None);
        assert_eq!(read_exit(dir.path()).unwrap(), None);
        assert!(read_config(dir.path()).is_err());
        let cfg = ShimConfig {
            id: "warren-x".into(),
            runc: Runc::default(),
            bundle: "/run/x/bundle".into(),
            log_dir: "/run/x/logs".into(),
            log_max_bytes: 10,
            log_max_files: 3,
            cgroup_path: "/warren/x".into(),
        };
        write_json(&dir.path().join(CONFIG_FILE), &cfg).unwrap();
        assert_eq!(read_config(dir.path()).unwrap(), cfg);
        let st = ShimState {
            id: "warren-x".into(),
            shim_pid: 1,
            shim_start_ticks: 2,
            container_pid: 3,
            started_at_ms: 4,
        };
        write_json(&dir.path().join(STATE_FILE), &st).unwrap();
        assert_eq!(read_state(dir.path()).unwrap(), Some(st));
        std::fs::write(dir.path().join(EXIT_FILE), "{").unwrap();
        assert!(read_exit(dir.path()).is_err());
    }

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
