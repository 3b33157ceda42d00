//! What happens before the protocol: the early mounts of PID 1, the kernel modules, the
//! agent's port; and what `Start` does: the workload's disks under `/newroot`, the system
//! filesystems inside it, hostname, `/etc/hosts`, the network and the clock, then the switch of
//! root (`mount --move /newroot /` and `chroot`), and the spawning of processes with their
//! environment, directory, user, pipes or a pseudo-terminal.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use warren_vm::agent::{Mount, StartSpec};
use warren_vm::config::AGENT_PORT;

use super::{net, sys};

/// The list of modules to load, one path a line, in load order.
const MODULES_LIST: &str = "/warren/modules";

/// Where the workload's root is assembled before the switch.
const NEWROOT: &str = "/newroot";

/// The `PATH` a process gets when its environment names none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a disk's device node may take to appear.
const DEVICE_WAIT: Duration = Duration::from_secs(10);

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// `/proc`, `/sys` and `/dev` of the initramfs.
pub fn early_mounts() {
    for (src, target, fstype, flags, data) in [
        ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
        ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
    ] {
        let _ = std::fs::create_dir_all(target);
        if let Err(e) = sys::mount(src, target, fstype, flags, data) {
            if e.raw_os_error() != Some(libc::EBUSY) {
                crate::linux::log(&format!("{e}"));
            }
        }
    }
}

/// Loads the modules of [`MODULES_LIST`] in order; a missing list means a kernel with the
/// drivers built in.
pub fn load_modules() {
    let Ok(list) = std::fs::read_to_string(MODULES_LIST) else {
        return;
    };
    for m in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Err(e) = sys::load_module(Path::new(m)) {
            crate::linux::log(&format!("{e}"));
        }
    }
}

/// The device node of the virtio-serial port named [`AGENT_PORT`], waiting for the driver.
pub fn find_port(timeout: Duration) -> io::Result<PathBuf> {
    let start = std::time::Instant::now();
    loop {
        if let Ok(rd) = std::fs::read_dir("/sys/class/virtio-ports") {
            for e in rd.flatten() {
                let name = std::fs::read_to_string(e.path().join("name")).unwrap_or_default();
                if name.trim() == AGENT_PORT {
                    let dev = Path::new("/dev").join(e.file_name());
                    sys::wait_for(&dev.to_string_lossy(), DEVICE_WAIT)?;
                    return Ok(dev);
                }
            }
        }
        if start.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio-serial port named {AGENT_PORT}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `path` inside the new root, without `..` escapes.
fn under_root(path: &str) -> io::Result<String> {
    let clean: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if clean.contains(&"..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mount path {path} contains '..'"),
        ));
    }
    Ok(format!("{NEWROOT}/{}", clean.join("/")))
}

/// The guest path of a mount, normalized (`/data`).
pub fn guest_path(path: &str) -> String {
    let clean: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", clean.join("/"))
}

/// The options of a virtio-9p mount (bhyve's shares): Linux's 9P2000.L dialect over the
/// virtio transport, with 512 KiB messages.
pub const NINEP_OPTIONS: &str = "trans=virtio,version=9p2000.L,msize=524288";

/// Mounts a disk (`device` is its node) or, for `fstype = "9p"`, a host share (`device` is its
/// tag, which exists once the virtio driver has probed it: the mount is retried until then).
fn mount_disk(m: &Mount, target: &str) -> io::Result<()> {
    let flags = if m.readonly { libc::MS_RDONLY } else { 0 };
    if m.fstype == "9p" {
        let start = std::time::Instant::now();
        loop {
            match sys::mount(&m.device, target, "9p", flags, NINEP_OPTIONS) {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() > DEVICE_WAIT => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("9p share {}: {e}", m.device),
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    sys::wait_for(&m.device, DEVICE_WAIT)?;
    sys::mount(&m.device, target, &m.fstype, flags, "")
}

/// What `Start` set up, for freezing and unmounting later.
#[derive(Debug, Default)]
pub struct Setup {
    /// Guest paths of the workload's filesystems that freeze, the root first: its disks. A
    /// 9p share has no guest-side cache to hold back (every write reaches the host's file),
    /// so it is left out; the host pauses the hypervisor's device models instead.
    pub workload_mounts: Vec<String>,
    /// Guest paths of every mount made, in order.
    pub all_mounts: Vec<String>,
    pub user: Option<(u32, u32)>,
    pub cwd: String,
    pub env: Vec<String>,
}

/// Sets the guest up as `spec` says and switches root; the main process is spawned by the
/// caller with [`spawn`].
pub fn start(spec: &StartSpec) -> io::Result<Setup> {
    if spec.time_unix_ns > 0 {
        sys::set_clock(spec.time_unix_ns)?;
    }
    std::fs::create_dir_all(NEWROOT)?;
    mount_disk(&spec.root, NEWROOT)?;
    let mut s = Setup {
        workload_mounts: if spec.root.fstype == "9p" {
            Vec::new()
        } else {
            vec!["/".into()]
        },
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        ..Setup::default()
    };
    for m in &spec.mounts {
        let target = under_root(&m.path)?;
        std::fs::create_dir_all(&target)
            .map_err(|e| io::Error::new(e.kind(), format!("mkdir {}: {e}", m.path)))?;
        mount_disk(m, &target)?;
        if m.fstype != "9p" {
            s.workload_mounts.push(guest_path(&m.path));
        }
        s.all_mounts.push(guest_path(&m.path));
    }
    for (src, path, fstype, flags, data) in [
        ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, ""),
        ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, ""),
        ("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        (
            "shm",
            "/dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "/tmp",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
    ] {
        let target = under_root(path)?;
        if !Path::new(&target).is_dir() && std::fs::create_dir_all(&target).is_err() {
            crate::linux::log(&format!(
                "{path} is missing in a read-only root: not mounted"
            ));
            continue;
        }
        sys::mount(src, &target, fstype, flags, data)?;
        s.all_mounts.push(path.to_string());
    }
    if !spec.hostname.is_empty() {
        sys::set_hostname(&spec.hostname)?;
    }
    if let Some(hosts) = &spec.hosts {
        if bind_hosts(hosts)? {
            s.all_mounts.push("/etc/hosts".into());
        }
    }
    net::loopback_up()?;
    if let Some(n) = &spec.net {
        net::configure(n)?;
    }
    s.user = match &spec.user {
        Some(u) => Some(parse_user(u, Path::new(NEWROOT))?),
        None => None,
    };
    switch_root()?;
    Ok(s)
}

/// Writes the hosts file into the initramfs and binds it over the root's `/etc/hosts`, so a
/// read-only root works and the workload's disk is not changed. A root without
/// `/etc/hosts` gets one when it is writable; a read-only one goes without (logged): whether
/// it was bound.
fn bind_hosts(content: &str) -> io::Result<bool> {
    let src = "/warren/hosts";
    std::fs::create_dir_all("/warren")?;
    std::fs::write(src, content)?;
    let target = under_root("/etc/hosts")?;
    if !Path::new(&target).exists() {
        let made =
            std::fs::create_dir_all(under_root("/etc")?).and_then(|_| std::fs::write(&target, b""));
        if let Err(e) = made {
            crate::linux::log(&format!(
                "no /etc/hosts in the root and none can be made: {e}"
            ));
            return Ok(false);
        }
    }
    sys::mount(src, &target, "", libc::MS_BIND, "")?;
    Ok(true)
}

/// Rewrites the running guest's `/etc/hosts` in place (truncate and write), so the bind
/// made at start (whose source is no longer reachable by path) carries the new text.
pub fn rewrite_hosts(content: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open("/etc/hosts")?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

fn switch_root() -> io::Result<()> {
    std::env::set_current_dir(NEWROOT)?;
    sys::mount(".", "/", "", libc::MS_MOVE, "")?;
    let dot = sys::cstr(".")?;
    if unsafe { libc::chroot(dot.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")
}

/// `uid[:gid]`, each numeric or a name looked up in the root's `/etc/passwd` and
/// `/etc/group`; a user alone gets its passwd group, or 0.
pub fn parse_user(spec: &str, root: &Path) -> io::Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let entry = |name: &str| -> Option<(u32, u32)> {
        passwd.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
        })
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::NotFound, format!("unknown {what}"));
    let (uid, pw_gid) = match u.parse::<u32>() {
        Ok(n) => (n, passwd_gid_of_uid(&passwd, n)),
        Err(_) => entry(u)
            .map(|(a, b)| (a, Some(b)))
            .ok_or_else(|| bad(&format!("user {u}")))?,
    };
    let gid = match g {
        None => pw_gid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
                group
                    .lines()
                    .find_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        (f.len() > 2 && f[0] == g).then(|| f[2].parse().ok())?
                    })
                    .ok_or_else(|| bad(&format!("group {g}")))?
            }
        },
    };
    Ok((uid, gid))
}

fn passwd_gid_of_uid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2].parse() == Ok(uid)).then(|| f[3].parse().ok())?
    })
}

/// A spawned process's descriptors: stdin, and stdout and stderr (one pty master as stdout
/// for a tty).
pub struct Spawned {
    pub pid: i32,
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    /// The pty master, for resizing.
    pub pty: Option<OwnedFd>,
}

/// How to run one process.
pub struct ProcSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub user: Option<(u32, u32)>,
    /// A pseudo-terminal of (rows, cols) instead of pipes.
    pub tty: Option<(u16, u16)>,
}

/// The environment of a process: `env` entries, with a default `PATH` when none is given.
pub fn environment(env: &[String]) -> Vec<(String, String)> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut order = Vec::new();
    for e in std::iter::once(DEFAULT_PATH).chain(env.iter().map(String::as_str)) {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        if map.insert(k.to_string(), v.to_string()).is_none() {
            order.push(k.to_string());
        }
    }
    order
        .into_iter()
        .map(|k| {
            let v = map.remove(&k).unwrap_or_default();
            (k, v)
        })
        .collect()
}

/// Starts a process in its own session with its output on pipes (or a pty).
pub fn spawn(p: &ProcSpec) -> io::Result<Spawned> {
    let Some(prog) = p.argv.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty argv"));
    };
    let mut c = Command::new(prog);
    c.args(&p.argv[1..])
        .env_clear()
        .envs(environment(p.env))
        .current_dir(if p.cwd.is_empty() { "/" } else { p.cwd });
    if let Some((uid, gid)) = p.user {
        c.uid(uid).gid(gid);
    }
    let tty = p.tty.is_some();
    let mut pty_master = None;
    if let Some((rows, cols)) = p.tty {
        let (m, s) = sys::openpty(rows, cols)?;
        c.stdin(Stdio::from(s.try_clone()?))
            .stdout(Stdio::from(s.try_clone()?))
            .stderr(Stdio::from(s));
        pty_master = Some(m);
    } else {
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    unsafe {
        c.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if tty && libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = c
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{prog}: {e}")))?;
    drop(c);
    let pid = child.id() as i32;
    let s = match pty_master {
        Some(m) => Spawned {
            pid,
            stdin: m.try_clone()?,
            stdout: m.try_clone()?,
            stderr: None,
            pty: Some(m),
        },
        None => Spawned {
            pid,
            stdin: child.stdin.take().expect("piped").into(),
            stdout: child.stdout.take().expect("piped").into(),
            stderr: Some(child.stderr.take().expect("piped").into()),
            pty: None,
        },
    };
    // The agent reaps every child itself (waitpid(-1)); dropping `child` neither waits nor kills.
    drop(child);
    for fd in [Some(&s.stdin), Some(&s.stdout), s.stderr.as_ref()]
        .into_iter()
        .flatten()
    {
        sys::set_nonblocking(fd.as_raw_fd())?;
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_new_root() {
        assert_eq!(under_root("/data").unwrap(), "/newroot/data");
        assert_eq!(under_root("data/./x/").unwrap(), "/newroot/data/x");
        assert_eq!(under_root("/").unwrap(), "/newroot/");
        assert!(under_root("/data/../../etc").is_err());
        assert_eq!(guest_path("data//x/"), "/data/x");
    }

    #[test]
    fn the_environment_gets_a_default_path_the_spec_can_replace() {
        let e = environment(&["A=1".into(), "PATH=/bin".into(), "B".into()]);
        assert_eq!(
            e,
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("A".into(), "1".into()),
                ("B".into(), "".into())
            ]
        );
        assert_eq!(environment(&[])[0].0, "PATH");
    }

    #[test]
    fn users_numeric_and_by_name() {
        let d = std::env::temp_dir().join(format!("warren-agent-user-{}", std::process::id()));
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::write(
            d.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nwww:x:33:34::/var/www:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(parse_user("1000", &d).unwrap(), (1000, 0));
        assert_eq!(parse_user("33", &d).unwrap(), (33, 34));
        assert_eq!(parse_user("1000:7", &d).unwrap(), (1000, 7));
        assert_eq!(parse_user("www", &d).unwrap(), (33, 34));
        assert_eq!(parse_user("www:staff", &d).unwrap(), (33, 50));
        assert!(parse_user("nobody", &d).is_err());
        assert!(parse_user("0:nogroup", &d).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
