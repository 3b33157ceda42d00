//! `/proc/PID/stat` reading: the process state and start time that tell a live process from a
//! zombie or from an unrelated process that reused the PID.
//!
//! [`parse_stat`] is pure; [`process_alive`] is what the daemon uses to decide whether a shim
//! recorded in `state.json` is still the same process.

use std::path::PathBuf;

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

/// Reads and parses `/proc/PID/stat`; None when the process does not exist.
pub fn read_stat(pid: i32) -> Option<ProcStat> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

/// This process's start time in clock ticks since boot.
pub fn self_start_ticks() -> crate::Result<u64> {
    let path = PathBuf::from("/proc/self/stat");
    let text = std::fs::read_to_string(&path).map_err(|source| crate::RuntimeError::Io {
        path: path.clone(),
        source,
    })?;
    parse_stat(&text)
        .map(|s| s.start_ticks)
        .ok_or_else(|| crate::RuntimeError::Other(format!("cannot parse {}", path.display())))
}

/// Whether `pid` is a running (not zombie or dead) process that started at `start_ticks`.
pub fn process_alive(pid: i32, start_ticks: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match read_stat(pid) {
        Some(s) => !matches!(s.state, 'Z' | 'X' | 'x') && s.start_ticks == start_ticks,
        None => false,
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
    fn own_process_is_alive_and_mismatch_is_not() {
        let me = std::process::id() as i32;
        let ticks = self_start_ticks().unwrap();
        assert!(process_alive(me, ticks));
        assert!(!process_alive(me, ticks + 1));
        assert!(!process_alive(0, ticks));
        assert!(!process_alive(i32::MAX, ticks));
    }

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
