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
//! Steps 1 to 5 live in the Linux-only `linux` submodule. On other OSes the shim writes
//! `error: the OCI shim needs Linux` on the status pipe and exits 1; the file formats and
//! their readers here are portable.

use crate::bundle::write_atomic;
use crate::runc::Runc;
use crate::{ExitInfo, Result, RuntimeError, ShimState};
use nix::sys::wait::WaitStatus;
use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux::run;

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

/// The shim's supervision needs Linux (subreaper, signalfd, cgroups, runc).
#[cfg(not(target_os = "linux"))]
fn run(_run_dir: &Path, _status: &mut Option<File>) -> Result<()> {
    Err(RuntimeError::Unsupported("the OCI shim needs Linux".into()))
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
