//! `/proc/PID/stat` reading: the process state and start time that tell a live process from a
//! zombie or from an unrelated process that reused the PID.
//!
//! [`parse_stat`] is pure; [`process_alive`] is what the daemon uses to decide whether a shim
//! recorded in `state.json` is still the same process.
//!
//! `/proc/PID/stat` is Linux's. On FreeBSD the same two facts come from the `kern.proc.pid`
//! sysctl (`struct kinfo_proc`): the start time (`ki_start`, as microseconds since the epoch:
//! a stamp compared for equality only, like Linux's ticks) and the state (`SZOMB` for a
//! zombie); [`read_stat`] still finds nothing there. Elsewhere [`self_start_ticks`] fails with
//! [`RuntimeError::Unsupported`] and [`process_alive`] only asks whether the PID exists
//! (`kill(pid, 0)`).

use crate::RuntimeError;

/// The fields of `/proc/PID/stat` warren cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: i32,
    /// The command name (field 2), without the surrounding parentheses.
    pub comm: String,
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Parses one `/proc/PID/stat` line. `comm` may contain spaces and parentheses: it spans from
/// the first `(` to the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = line[..open].trim().parse().ok()?;
    let comm = line[open + 1..close].to_string();
    let rest: Vec<&str> = line[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let mut state_chars = rest.first()?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    let ppid = rest.get(1)?.parse().ok()?;
    let start_ticks = rest.get(22 - 3)?.parse().ok()?;
    Some(ProcStat {
        pid,
        comm,
        state,
        ppid,
        start_ticks,
    })
}

/// Reads and parses `/proc/PID/stat`; None when the process does not exist (always, on OSes
/// other than Linux).
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let path = format!("/proc/{pid}/stat");
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// The start stamp of `pid` and whether it is a zombie, from `kern.proc.pid` (FreeBSD).
#[cfg(target_os = "freebsd")]
pub fn kinfo_start(pid: i32) -> Option<(u64, bool)> {
    let mib = [libc::CTL_KERN, libc::KERN_PROC, libc::KERN_PROC_PID, pid];
    // SAFETY: an all-zero kinfo_proc is a valid value for the kernel to fill in.
    let mut info: libc::kinfo_proc = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::kinfo_proc>();
    // SAFETY: `info` has room for `len` bytes; the name is four valid integers.
    let r = unsafe {
        libc::sysctl(
            mib.as_ptr(),
            mib.len() as libc::c_uint,
            (&mut info as *mut libc::kinfo_proc).cast(),
            &mut len,
            std::ptr::null(),
            0,
        )
    };
    // A vanished process answers with nothing (or ESRCH).
    if r != 0 || len < std::mem::size_of::<libc::kinfo_proc>() || info.ki_pid != pid {
        return None;
    }
    let start = (info.ki_start.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(info.ki_start.tv_usec as u64);
    Some((start, info.ki_stat == libc::SZOMB))
}

/// This process's start stamp: clock ticks since boot on Linux, microseconds since the epoch
/// on FreeBSD.
#[cfg(target_os = "freebsd")]
pub fn self_start_ticks() -> crate::Result<u64> {
    kinfo_start(std::process::id() as i32)
        .map(|(start, _)| start)
        .ok_or_else(|| {
            RuntimeError::Other(format!(
                "cannot read this process's kern.proc.pid entry: {}",
                std::io::Error::last_os_error()
            ))
        })
}

/// This process's start time in clock ticks since boot (Linux; FreeBSD has its own stamp).
#[cfg(not(target_os = "freebsd"))]
pub fn self_start_ticks() -> crate::Result<u64> {
    if !cfg!(target_os = "linux") {
        return Err(RuntimeError::Unsupported(
            "process start times need Linux's /proc".into(),
        ));
    }
    let path = std::path::PathBuf::from("/proc/self/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| RuntimeError::Io {
        path: path.clone(),
        source,
    })?;
    parse_stat(&text)
        .map(|s| s.start_ticks)
        .ok_or_else(|| RuntimeError::Other(format!("cannot parse {}", path.display())))
}

/// Whether `pid` is a running (not zombie or dead) process that started at `start_ticks`.
///
/// On FreeBSD the start stamp is `kern.proc.pid`'s; on other OSes but Linux: whether `pid`
/// exists at all; see the module docs.
pub fn process_alive(pid: i32, start_ticks: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    #[cfg(target_os = "freebsd")]
    return kinfo_start(pid).is_some_and(|(start, zombie)| !zombie && start == start_ticks);
    #[cfg(not(target_os = "freebsd"))]
    {
        if cfg!(target_os = "linux") {
            match read_stat(pid) {
                Some(s) => !matches!(s.state, 'Z' | 'X' | 'x') && s.start_ticks == start_ticks,
                None => false,
            }
        } else {
            use nix::errno::Errno;
            matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Ok(()) | Err(Errno::EPERM)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "4242 (warren) S 1 4242 4242 0 -1 4194560 1062 0 0 0 3 1 0 0 20 0 1 0 \
                         987654 12345678 500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 \
                         1 0 0 0 0 0";

    #[test]
    fn parses_plain_stat() {
        let s = parse_stat(PLAIN).unwrap();
        assert_eq!(
            s,
            ProcStat {
                pid: 4242,
                comm: "warren".into(),
                state: 'S',
                ppid: 1,
                start_ticks: 987654,
            }
        );
    }

    #[test]
    fn comm_with_spaces_and_parentheses() {
        let line = PLAIN.replace("(warren)", "(a ) (b) Z 9)");
        let s = parse_stat(&line).unwrap();
        assert_eq!(s.comm, "a ) (b) Z 9");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 1);
        assert_eq!(s.start_ticks, 987654);
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 x) S 1"), None);
        assert_eq!(parse_stat("12 (x) S 1 2 3"), None);
        assert_eq!(parse_stat("abc (x) S 1 2 3"), None);
    }

    #[test]
    fn nonpositive_pids_are_never_alive() {
        assert!(!process_alive(0, 0));
        assert!(!process_alive(-1, 0));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_is_alive_and_mismatch_is_not() {
        let me = std::process::id() as i32;
        let ticks = self_start_ticks().unwrap();
        assert!(process_alive(me, ticks));
        assert!(!process_alive(me, ticks + 1));
        assert!(!process_alive(0, ticks));
        assert!(!process_alive(i32::MAX, ticks));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn zombie_is_dead() {
        let child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        // Wait (without reaping) until the child is a zombie.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        assert_eq!(rc, 0);
        let st = read_stat(pid).unwrap();
        assert_eq!(st.state, 'Z');
        assert!(!process_alive(pid, st.start_ticks));
        let mut child = child;
        child.wait().unwrap();
    }
}
