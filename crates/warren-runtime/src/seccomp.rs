//! The default seccomp profile of every container.
//!
//! It has the semantics of Docker's default profile for a container holding Docker's default
//! capability set ([`crate::bundle::DEFAULT_CAPS`]): every system call not listed fails with
//! `EPERM`; the listed ones are allowed, some only with certain arguments:
//!
//! - `clone` only without namespace flags (`CLONE_NEWNS`, `CLONE_NEWUTS`, `CLONE_NEWIPC`,
//!   `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET`, `CLONE_NEWCGROUP`);
//! - `clone3` fails with `ENOSYS` (its flags live in memory seccomp cannot inspect), so C
//!   libraries fall back to `clone`;
//! - `socket` for every address family but `AF_VSOCK`;
//! - `personality` only for the harmless personas (Linux, 32-bit Linux, `UNAME26`, and the
//!   query `0xffffffff`).
//!
//! Left out, among others: `mount`, `umount2`, `pivot_root`, `unshare`, `setns`, module
//! loading (`init_module`, `finit_module`, `delete_module`), the kernel keyring (`add_key`,
//! `keyctl`, `request_key`), `bpf`, `perf_event_open`, `kexec_load`, `reboot`, `swapon`,
//! `swapoff`, `syslog`, `acct`, `settimeofday`, `clock_settime`, `iopl`, `ioperm`,
//! `open_by_handle_at`, `userfaultfd`, `quotactl`, and the new mount API (`fsopen`, `fsmount`,
//! `move_mount`, `open_tree`). Most of them need a capability the container does not hold
//! anyway; the profile is the second wall, and it also closes the ones that need none
//! (`unshare(CLONE_NEWUSER)`, `keyctl`, `userfaultfd`).
//!
//! Only the host's native system call ABI is filtered, like systemd's
//! `SystemCallArchitectures=native`: a call through another ABI (32-bit x86 with `int 0x80`,
//! x32, 32-bit ARM) matches no listed architecture and kills the process (runc's bad-arch
//! action, `SIGSYS`), so 32-bit binaries do not run in containers. Docker also lists the
//! compatible ABIs; each one more makes runc compile and load the whole rule set again at every
//! container start (about 7 ms per ABI with runc 1.1 and libseccomp 2.5, half of a bare
//! `runc run`), and the compat entry points have been the less trodden attack surface.
//!
//! [`profile`] is pure: a function of the architecture only, golden-tested per architecture
//! (`tests/golden/seccomp-<arch>.json`, regenerated with `WARREN_BLESS=1`). Names a host's
//! libseccomp does not know are skipped by runc, so the table may list calls newer than the
//! host; calls newer than every listed one fail with `ENOSYS` (runc's own rule).

use serde_json::{json, Value};

/// `EPERM`: what a refused call returns.
pub const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns, so that callers fall back to `clone`.
pub const ENOSYS: u32 = 38;
/// `AF_VSOCK`: the one socket family refused (host/hypervisor sockets).
pub const AF_VSOCK: u64 = 40;
/// Every namespace flag of `clone`: `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`.
pub const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;
/// The `personality` arguments allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26` and `0xffffffff` (query the current persona).
pub const PERSONAS: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Files, directories, links, metadata and extended attributes.
const FILES: &[&str] = &[
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "name_to_handle_at",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

/// Waiting on many descriptors, event and timer descriptors, asynchronous I/O.
const EVENTS: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioctl",
    "_newselect",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Processes and threads: creation (`clone` is a conditional rule), exec, exit, waiting,
/// identity and credentials (changing them needs CAP_SETUID/CAP_SETGID), limits, tracing of
/// the container's own processes (safe since Linux 4.8, where seccomp is re-checked after a
/// tracer changes a call).
const PROCESSES: &[&str] = &[
    "capget",
    "capset",
    "chroot",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "restart_syscall",
    "rseq",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "setsid",
    "setuid",
    "setuid32",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// Scheduling of the container's own threads.
const SCHEDULING: &[&str] = &[
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
];

/// Memory mappings, locking, protection keys, futexes.
const MEMORY: &[&str] = &[
    "brk",
    "futex",
    "futex_time64",
    "futex_waitv",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "process_mrelease",
    "remap_file_pages",
];

/// Signals.
const SIGNALS: &[&str] = &[
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
];

/// Clocks and timers (reading; `adjtimex` and `clock_adjtime` change the clock only with
/// CAP_SYS_TIME).
const TIME: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
];

/// Sockets (`socket` itself is a conditional rule) and System V / POSIX IPC.
const NETWORK_AND_IPC: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "ipc",
    "listen",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// System information and randomness.
const SYSTEM: &[&str] = &["getrandom", "sysinfo"];

/// Every unconditionally allowed call on every architecture, by group.
pub const ALLOWED: &[&[&str]] = &[
    FILES,
    EVENTS,
    PROCESSES,
    SCHEDULING,
    MEMORY,
    SIGNALS,
    TIME,
    NETWORK_AND_IPC,
    SYSTEM,
];

/// Calls that exist or matter on x86 only: `arch_prctl` (64-bit and x32 thread-local storage)
/// and `modify_ldt`.
const X86_ONLY: &[&str] = &["arch_prctl", "modify_ldt"];
/// Calls of 32- and 64-bit ARM: cache flushing, TLS, and the ARM argument orders of
/// `fadvise64_64` and `sync_file_range`.
const ARM_ONLY: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "sync_file_range2",
];

/// The architectures a profile is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// x86-64 (its 32-bit x86 and x32 ABIs are refused).
    X86_64,
    /// AArch64 (32-bit ARM is refused).
    Aarch64,
}

impl Arch {
    /// The architecture of a Rust target (`std::env::consts::ARCH`); None for others, whose
    /// profile lists no architectures (libseccomp then filters the native one).
    pub fn from_target(arch: &str) -> Option<Arch> {
        match arch {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// This host's architecture.
    pub fn host() -> Option<Arch> {
        Arch::from_target(std::env::consts::ARCH)
    }

    /// The native architecture alone, in libseccomp's names: calls through any other ABI
    /// are refused.
    pub fn seccomp_names(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["SCMP_ARCH_X86_64"],
            Arch::Aarch64 => &["SCMP_ARCH_AARCH64"],
        }
    }

    fn extra_calls(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => X86_ONLY,
            Arch::Aarch64 => ARM_ONLY,
        }
    }
}

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

/// One argument condition: argument `index` compared with `value` by `op`.
fn arg(index: u32, value: u64, op: &str) -> Value {
    json!({"index": index, "value": value, "op": op})
}

/// The default profile for `arch` as the OCI `linux.seccomp` object.
pub fn profile(arch: Option<Arch>) -> Value {
    let mut unconditional: Vec<&str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
    if let Some(a) = arch {
        unconditional.extend(a.extra_calls());
    }
    unconditional.sort_unstable();
    let mut syscalls = vec![allow(&unconditional)];
    // clone without any namespace flag (flags are the first argument on x86 and ARM).
    syscalls.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
    }));
    // The ENOSYS makes glibc and musl fall back to clone, whose flags the rule above checks.
    syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    syscalls.push(json!({
        "names": ["socket"],
        "action": "SCMP_ACT_ALLOW",
        "args": [arg(0, AF_VSOCK, "SCMP_CMP_NE")],
    }));
    for persona in PERSONAS {
        syscalls.push(json!({
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [arg(0, *persona, "SCMP_CMP_EQ")],
        }));
    }
    let architectures: &[&str] = arch.map_or(&[], |a| a.seccomp_names());
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures,
        "syscalls": syscalls,
    })
}

/// [`profile`] for this host's architecture, built once: it depends on nothing else, and every
/// container start and one-off run writes it into its bundle.
pub fn host_profile() -> &'static Value {
    static PROFILE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PROFILE.get_or_init(|| profile(Arch::host()))
}

/// Every call the profile allows without conditions on `arch`, sorted.
pub fn allowed_calls(arch: Option<Arch>) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
    if let Some(a) = arch {
        v.extend(a.extra_calls());
    }
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::Path;

    #[test]
    fn the_cached_host_profile_is_the_host_profile() {
        assert_eq!(host_profile(), &profile(Arch::host()));
        assert!(std::ptr::eq(host_profile(), host_profile()), "built once");
    }

    #[test]
    fn golden_profiles() {
        for (arch, file) in [
            (Some(Arch::X86_64), "seccomp-x86_64.json"),
            (Some(Arch::Aarch64), "seccomp-aarch64.json"),
        ] {
            let mut got = serde_json::to_string_pretty(&profile(arch)).unwrap();
            got.push('\n');
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden")
                .join(file);
            if std::env::var_os("WARREN_BLESS").is_some() {
                std::fs::write(&path, &got).unwrap();
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
            assert_eq!(got, want, "{file} differs from the golden file");
        }
    }

    #[test]
    fn no_call_is_listed_twice() {
        for arch in [None, Some(Arch::X86_64), Some(Arch::Aarch64)] {
            let calls = allowed_calls(arch);
            let unique: BTreeSet<&str> = calls.iter().copied().collect();
            assert_eq!(unique.len(), calls.len(), "duplicates for {arch:?}");
            for conditional in ["clone", "clone3", "socket", "personality"] {
                assert!(
                    !unique.contains(conditional),
                    "{conditional} is conditional"
                );
            }
        }
    }

    /// The calls a container must never get, whatever its capabilities.
    #[test]
    fn dangerous_calls_are_refused() {
        let calls: BTreeSet<&str> = allowed_calls(Some(Arch::X86_64)).into_iter().collect();
        for refused in [
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "kexec_file_load",
            "add_key",
            "keyctl",
            "request_key",
            "bpf",
            "perf_event_open",
            "reboot",
            "swapon",
            "swapoff",
            "syslog",
            "acct",
            "settimeofday",
            "clock_settime",
            "iopl",
            "ioperm",
            "open_by_handle_at",
            "userfaultfd",
            "quotactl",
            "fsopen",
            "fsmount",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "lookup_dcookie",
            "vhangup",
            "nfsservctl",
            "uselib",
            "sethostname",
            "setdomainname",
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "mbind",
            "set_mempolicy",
            "move_pages",
            "fanotify_init",
        ] {
            assert!(!calls.contains(refused), "{refused} must not be allowed");
        }
    }

    #[test]
    fn conditional_rules() {
        let p = profile(Some(Arch::X86_64));
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        let rules = p["syscalls"].as_array().unwrap();
        let named = |n: &str| -> Vec<&Value> {
            rules
                .iter()
                .filter(|r| r["names"].as_array().unwrap().iter().any(|x| x == n))
                .collect()
        };
        let clone = named("clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0]["args"][0]["value"], 0x7E02_0000u64);
        assert_eq!(clone[0]["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let clone3 = named("clone3");
        assert_eq!(clone3[0]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3[0]["errnoRet"], 38);
        assert_eq!(named("socket")[0]["args"][0]["op"], "SCMP_CMP_NE");
        assert_eq!(named("socket")[0]["args"][0]["value"], 40);
        let personas: Vec<u64> = named("personality")
            .iter()
            .map(|r| r["args"][0]["value"].as_u64().unwrap())
            .collect();
        assert_eq!(personas, PERSONAS);
        // The OCI types accept the profile as rendered.
        let typed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(p.clone()).unwrap();
        assert_eq!(typed.architectures().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn architectures_follow_the_target() {
        assert_eq!(Arch::from_target("x86_64"), Some(Arch::X86_64));
        assert_eq!(Arch::from_target("aarch64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_target("riscv64"), None);
        let arm = allowed_calls(Some(Arch::Aarch64));
        assert!(arm.contains(&"cacheflush") && !arm.contains(&"arch_prctl"));
        let x86 = allowed_calls(Some(Arch::X86_64));
        assert!(x86.contains(&"arch_prctl") && !x86.contains(&"cacheflush"));
        // Only the native ABI: a 32-bit or x32 call matches no architecture and is refused.
        assert_eq!(
            profile(Some(Arch::X86_64))["architectures"],
            json!(["SCMP_ARCH_X86_64"])
        );
        assert_eq!(
            profile(Some(Arch::Aarch64))["architectures"],
            json!(["SCMP_ARCH_AARCH64"])
        );
        let other = profile(None);
        assert_eq!(other["architectures"], json!([]));
    }
}
