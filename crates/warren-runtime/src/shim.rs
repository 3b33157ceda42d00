//! The per-workload shim: `warren shim RUN_DIR`, the process that lets a container outlive the
//! daemon.
//!
//! The daemon ([`Runtime::start`](crate::Runtime::start) of [`crate::oci::OciRuntime`]) writes
//! `RUN_DIR/shim.json` ([`ShimConfig`]) and the bundle, then spawns the shim in its own session
//! with a status pipe whose fd number is in [`STATUS_FD_ENV`]. The shim:
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
//!
//! Steps 1 to 5 live in the Linux-only `linux` submodule.
//!
//! On FreeBSD the same binary is the jail's supervisor (the `freebsd` submodule): the daemon
//! creates the jail itself (mounts, epair, `jail -c`, rctl rules), writes
//! `RUN_DIR/jail.json` ([`JailShimConfig`]) and spawns the shim the same way. The shim
//!
//! 1. becomes the reaper of its descendants (`procctl(PROC_REAP_ACQUIRE)`), ignores SIGHUP and
//!    SIGPIPE, and takes SIGCHLD, SIGTERM and SIGINT as kqueue `EVFILT_SIGNAL` events;
//! 2. starts `jexec ...` (the main process, attached to the jail; or the config's `program`,
//!    `bhyve` for a VM) with pipes as its stdout and stderr, writes `state.json` with its own start stamp and jexec's PID, and reports
//!    `ok`;
//! 3. supervises with kevent(2): output into the rotating log, children reaped on SIGCHLD
//!    (`EVFILT_PROC` `NOTE_EXIT` on the main process too), SIGTERM and SIGINT forwarded to it;
//! 4. when the main process has exited and its output is drained ([`Supervision`], the pure
//!    part, shared by tests on every OS): runs the teardown commands of `jail.json` (remove
//!    the rules, the jail, the epair, the mounts), writes `exit.json` and exits 0.
//!
//! So a jail outlives the daemon exactly like a container: the daemon adopts the shim from
//! `state.json` and reads `exit.json` whichever daemon was running when it ended. On other
//! OSes the shim writes `error: ...` on the status pipe and exits 1; the file formats, their
//! readers and [`launch`] are portable.

use crate::bundle::write_atomic;
use crate::io_err;
use crate::runc::Runc;
use crate::{ExitInfo, Result, RuntimeError, ShimState};
use nix::sys::wait::WaitStatus;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
use freebsd::run;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::run;

/// How long [`launch`] waits for the shim to report.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The jail shim's configuration inside the run directory (FreeBSD).
pub const JAIL_CONFIG_FILE: &str = "jail.json";
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

/// `RUN_DIR/jail.json`: the jail shim's main process and what it undoes after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JailShimConfig {
    pub id: String,
    /// The program started as the main process, `jexec` when absent; a bhyve VM's is
    /// `bhyve`, whose teardown destroys the VM and its tap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// The arguments of `jexec` (or of `program`) that start the main process in the
    /// (already created) jail.
    pub jexec: Vec<String>,
    pub log_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// Commands (argv) run in order once the main process has ended: they remove the jail
    /// and everything made for it. A failing one is noted in `shim.log`; the next still runs.
    pub teardown: Vec<Vec<String>>,
}

/// Reads `RUN_DIR/jail.json`.
pub fn read_jail_config(run_dir: &Path) -> Result<JailShimConfig> {
    let path = run_dir.join(JAIL_CONFIG_FILE);
    read_json(&path)?
        .ok_or_else(|| io_err(&path)(std::io::Error::from(std::io::ErrorKind::NotFound)))
}

/// Writes `RUN_DIR/jail.json` (atomically).
pub fn write_jail_config(run_dir: &Path, cfg: &JailShimConfig) -> Result<()> {
    write_json(&run_dir.join(JAIL_CONFIG_FILE), cfg)
}

/// What the supervision loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait for events, at most this long (None: until one comes).
    Wait(Option<Duration>),
    /// The main process has ended and its output is drained (or the grace ran out).
    Done,
}

/// The supervision loop's decisions, without I/O: which children's exits matter, which
/// signals are forwarded, and when output collection stops. The FreeBSD shim drives it from
/// kevent(2); tests drive it directly.
#[derive(Debug, Clone)]
pub struct Supervision {
    main_pid: i32,
    main_status: Option<WaitStatus>,
    drain_until: Option<std::time::Instant>,
    open_pipes: usize,
    grace: Duration,
}

impl Supervision {
    /// Supervises `main_pid` whose output arrives on `open_pipes` pipes.
    pub fn new(main_pid: i32, open_pipes: usize, grace: Duration) -> Self {
        Supervision {
            main_pid,
            main_status: None,
            drain_until: None,
            open_pipes,
            grace,
        }
    }

    /// A child was reaped with `status`; only the main process's exit counts (a reparented
    /// orphan's is just reaped). A stop or continue report is not an exit.
    pub fn reaped(&mut self, status: WaitStatus, now: std::time::Instant) {
        let pid = match status {
            WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _) => p.as_raw(),
            _ => return,
        };
        if pid == self.main_pid && self.main_status.is_none() {
            self.main_status = Some(status);
            self.drain_until = Some(now + self.grace);
        }
    }

    /// One of the output pipes reached end of file.
    pub fn pipe_closed(&mut self) {
        self.open_pipes = self.open_pipes.saturating_sub(1);
    }

    /// The PID a received signal is forwarded to: TERM and INT go to the main process while
    /// it runs (as the Linux shim does); SIGCHLD, others and anything after its exit go
    /// nowhere.
    pub fn forward(&self, signal: i32) -> Option<i32> {
        (self.main_status.is_none() && (signal == libc::SIGTERM || signal == libc::SIGINT))
            .then_some(self.main_pid)
    }

    /// The main process's wait status once it has exited.
    pub fn main_status(&self) -> Option<WaitStatus> {
        self.main_status
    }

    /// What to do now.
    pub fn next(&self, now: std::time::Instant) -> Next {
        match self.drain_until {
            None => Next::Wait(None),
            Some(_) if self.open_pipes == 0 => Next::Done,
            Some(t) => {
                let left = t.saturating_duration_since(now);
                if left.is_zero() {
                    Next::Done
                } else {
                    Next::Wait(Some(left))
                }
            }
        }
    }
}

/// Launches the shim for `id` and turns its report into a started run: `ok` with a
/// `state.json` is a [`crate::Started`]; anything else is [`RuntimeError::ShimFailed`] with the
/// shim's reason. `abandon` undoes what the caller prepared for the run: it gets the shim to end
/// and reap while the shim is alive (no report in time, or `ok` without a state), and `None`
/// when the launch failed or the shim has already exited with an error.
pub fn start(
    exe: &Path,
    run_dir: &Path,
    id: &str,
    mut abandon: impl FnMut(Option<&mut std::process::Child>),
) -> Result<crate::Started> {
    let failed = |reason: String| RuntimeError::ShimFailed {
        id: id.to_string(),
        reason,
    };
    let (mut child, report) = match launch(exe, run_dir) {
        Ok(l) => l,
        Err(e) => {
            abandon(None);
            return Err(e);
        }
    };
    let report = match report {
        Ok(Some(r)) => r,
        Ok(None) => {
            abandon(Some(&mut child));
            return Err(failed(format!(
                "no report within {}s",
                START_TIMEOUT.as_secs()
            )));
        }
        Err(e) => {
            abandon(Some(&mut child));
            return Err(e);
        }
    };
    if report.trim() == "ok" {
        return match read_state(run_dir) {
            Ok(Some(state)) => Ok(crate::Started { state, shim: child }),
            Ok(None) => {
                abandon(Some(&mut child));
                Err(failed("the shim wrote no state.json".into()))
            }
            Err(e) => {
                abandon(Some(&mut child));
                Err(e)
            }
        };
    }
    let status = child
        .wait()
        .map_err(|e| RuntimeError::Other(format!("waiting for the shim: {e}")))?;
    abandon(None);
    let reason = match report.strip_prefix("error: ") {
        Some(r) => r.trim().to_string(),
        None if report.trim().is_empty() => format!("the shim exited without reporting ({status})"),
        None => report.trim().to_string(),
    };
    Err(failed(reason))
}

/// Spawns `EXE shim RUN_DIR` in a new session with a status pipe and waits (at most
/// [`START_TIMEOUT`]) for its report: `Ok(Some(text))` once the shim closed the pipe,
/// `Ok(None)` on timeout. The caller owns the child either way (and ends it on timeout).
pub fn launch(exe: &Path, run_dir: &Path) -> Result<(std::process::Child, Result<Option<String>>)> {
    let (status_r, status_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::Other(format!("pipe: {e}")))?;
    // Keep the inherited fd clear of 0..2, which the child's stdio setup overwrites.
    let dup = nix::fcntl::fcntl(status_w.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))
        .map_err(|e| RuntimeError::Other(format!("dup: {e}")))?;
    drop(status_w);
    // SAFETY: F_DUPFD_CLOEXEC returned a new fd that nothing else owns.
    let status_w: OwnedFd = unsafe { OwnedFd::from_raw_fd(dup) };
    let spawned = spawn_detached(exe, run_dir, &status_w);
    drop(status_w);
    let child = spawned?;
    Ok((child, read_status(status_r)))
}

/// Spawns `EXE shim RUN_DIR` in a new session with the status pipe's write end inherited.
fn spawn_detached(exe: &Path, run_dir: &Path, status_w: &OwnedFd) -> Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    let exe = exe.to_string_lossy();
    let mut cmd = warren_exec::std_command(&exe)?;
    let fd = status_w.as_raw_fd();
    cmd.arg("shim")
        .arg(run_dir)
        .env(STATUS_FD_ENV, fd.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir("/");
    // SAFETY: setsid and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| {
        RuntimeError::Exec(warren_exec::ExecError::Spawn {
            argv: format!("{exe} shim {}", run_dir.display()),
            source,
        })
    })
}

/// Reads the status pipe to EOF (bounded by [`START_TIMEOUT`]); None on timeout.
fn read_status(status_r: OwnedFd) -> Result<Option<String>> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    use std::io::Read;
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut file = File::from(status_r);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let timeout = PollTimeout::try_from(left.as_millis().max(1)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                return Err(RuntimeError::Other(format!(
                    "polling the shim status pipe: {e}"
                )))
            }
        }
        match file.read(&mut buf) {
            Ok(0) => return Ok(Some(String::from_utf8_lossy(&out).into_owned())),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(RuntimeError::Other(format!(
                    "reading the shim status pipe: {e}"
                )))
            }
        }
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

pub fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
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
/// cgroup or the counter is not there, and always on OSes other than Linux).
pub fn oom_kill_count(cgroup_path: &str) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
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
pub fn take_status_pipe() -> Option<File> {
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
pub fn note(run_dir: &Path, msg: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join(SHIM_LOG))
    {
        let ts = crate::logs::format_timestamp(SystemTime::now());
        let _ = writeln!(f, "{ts} {msg}");
    }
}

/// The shim's supervision needs Linux (containers) or FreeBSD (jails).
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn run(_run_dir: &Path, _status: &mut Option<File>) -> Result<()> {
    Err(RuntimeError::Unsupported(
        "the shim needs Linux (containers) or FreeBSD (jails)".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

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
    fn supervision_waits_for_the_main_exit_then_drains() {
        let t0 = std::time::Instant::now();
        let grace = Duration::from_secs(2);
        let mut s = Supervision::new(40, 2, grace);
        assert_eq!(s.next(t0), Next::Wait(None));
        assert_eq!(s.forward(libc::SIGTERM), Some(40));
        assert_eq!(s.forward(libc::SIGINT), Some(40));
        assert_eq!(s.forward(libc::SIGCHLD), None);
        assert_eq!(s.forward(libc::SIGHUP), None);
        // An orphan reparented to the shim exits: reaped, nothing else.
        s.reaped(WaitStatus::Exited(Pid::from_raw(77), 0), t0);
        assert_eq!(s.next(t0), Next::Wait(None));
        // A stopped main process has not exited.
        s.reaped(WaitStatus::Stopped(Pid::from_raw(40), Signal::SIGSTOP), t0);
        assert_eq!(s.main_status(), None);
        // Output closes before the exit: still waiting for it.
        s.pipe_closed();
        assert_eq!(s.next(t0), Next::Wait(None));
        s.reaped(WaitStatus::Exited(Pid::from_raw(40), 3), t0);
        assert_eq!(
            s.main_status(),
            Some(WaitStatus::Exited(Pid::from_raw(40), 3))
        );
        assert_eq!(
            s.forward(libc::SIGTERM),
            None,
            "nothing to forward to any more"
        );
        assert_eq!(s.next(t0), Next::Wait(Some(grace)));
        assert_eq!(
            s.next(t0 + Duration::from_millis(500)),
            Next::Wait(Some(Duration::from_millis(1500)))
        );
        // A later report for the same PID (reused) does not replace the first.
        s.reaped(WaitStatus::Exited(Pid::from_raw(40), 9), t0);
        assert_eq!(
            s.main_status(),
            Some(WaitStatus::Exited(Pid::from_raw(40), 3))
        );
        s.pipe_closed();
        assert_eq!(s.next(t0), Next::Done);
    }

    #[test]
    fn supervision_stops_draining_after_the_grace() {
        let t0 = std::time::Instant::now();
        let mut s = Supervision::new(5, 2, Duration::from_secs(1));
        s.reaped(
            WaitStatus::Signaled(Pid::from_raw(5), Signal::SIGKILL, false),
            t0,
        );
        // A daemonized grandchild holds the pipes open: the grace ends the wait.
        assert_eq!(s.next(t0 + Duration::from_secs(1)), Next::Done);
        assert_eq!(exit_info(s.main_status().unwrap(), false, 1).code, 137);
    }

    #[test]
    fn jail_config_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_jail_config(dir.path()).is_err());
        let cfg = JailShimConfig {
            id: "warren-web".into(),
            program: None,
            jexec: vec!["-l".into(), "warren-web".into(), "/bin/sh".into()],
            log_dir: "/var/db/warren/workloads/web/logs".into(),
            log_max_bytes: 10,
            log_max_files: 2,
            teardown: vec![vec!["jail".into(), "-r".into(), "warren-web".into()]],
        };
        write_jail_config(dir.path(), &cfg).unwrap();
        assert_eq!(read_jail_config(dir.path()).unwrap(), cfg);
        let text = std::fs::read_to_string(dir.path().join(JAIL_CONFIG_FILE)).unwrap();
        assert!(!text.contains("program"), "{text}");
        let vm = JailShimConfig {
            program: Some("bhyve".into()),
            ..cfg
        };
        write_jail_config(dir.path(), &vm).unwrap();
        assert_eq!(read_jail_config(dir.path()).unwrap(), vm);
        std::fs::write(dir.path().join(JAIL_CONFIG_FILE), "{\"id\": 1}").unwrap();
        assert!(read_jail_config(dir.path()).is_err());
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
}
