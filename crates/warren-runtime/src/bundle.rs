//! OCI bundle rendering: [`WorkloadRun`] to runc's `config.json`.
//!
//! [`render_config_with`] is pure: it takes the workload's `/etc/passwd` and `/etc/group`
//! contents as strings and is tested against a golden file
//! (`tests/golden/config.json`, regenerated with `WARREN_BLESS=1`). [`render_config`] reads those
//! files from the rootfs; [`write_bundle`] writes `config.json` into a bundle directory.
//!
//! The hardening follows Docker's defaults: new pid, mount, uts, ipc and network namespaces,
//! Docker's default capability set (bounding, effective, permitted only), `noNewPrivileges`,
//! the default seccomp profile ([`crate::seccomp`]), a deny-all device cgroup with the usual
//! character devices allowed, masked and read-only `/proc` and `/sys` paths. The only binds
//! are the ones the spec lists (the workload's own data dataset and volumes, its world's
//! read-only host directories, the names files).
//!
//! A read-only root filesystem (`root.readonly`) gets fresh tmpfs mounts on `/tmp`,
//! `/var/tmp` (mode 1777) and `/run` (0755), like podman's `--read-only-tmpfs`; binds still
//! go on top, so the data dataset and volumes stay writable. A user namespace adds the `user`
//! namespace (new, or joined by path) and identical uid and gid mappings.

use crate::seccomp::{self, Arch};
use crate::{Bind, NetNamespace, Result, RuntimeError, WorkloadRun};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// PATH given to the main process when the spec has none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (bind-mounted over with /dev/null or an empty tmpfs).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths remounted read-only inside the container.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// CFS period used to express a CPU limit.
pub const CPU_PERIOD: u64 = 100_000;
/// RLIMIT_NOFILE (soft and hard) of the main process, when the host allows it
/// (see [`host_nofile_limit`]).
pub const NOFILE_LIMIT: u64 = 1_048_576;

/// The RLIMIT_NOFILE to give containers on this host: [`NOFILE_LIMIT`], unless this process
/// cannot raise its hard limit that far (no CAP_SYS_RESOURCE), in which case runc could not
/// either and the current hard limit is used.
pub fn host_nofile_limit() -> u64 {
    // rlim_t is u64 on Linux and i64 on FreeBSD (where RLIM_INFINITY is i64::MAX).
    #[cfg_attr(target_os = "linux", allow(clippy::useless_conversion))]
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .and_then(|(_, hard)| u64::try_from(hard).ok())
        .unwrap_or(NOFILE_LIMIT);
    if hard >= NOFILE_LIMIT || has_cap_sys_resource() {
        NOFILE_LIMIT
    } else {
        hard
    }
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The resolved identity of the main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The home directory from /etc/passwd, `/` when the uid has no entry.
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 || l.starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_gid(group: &str, name: &str) -> Option<u32> {
    group.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// Resolves `uid[:gid]` / `name[:group]` (None = root) against passwd and group contents.
pub fn resolve_user(user: Option<&str>, passwd: &str, group: &str) -> Result<ResolvedUser> {
    let spec = user.unwrap_or("0");
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g.is_some_and(str::is_empty) {
        return Err(RuntimeError::Spec(format!(
            "user {spec:?}: empty user or group"
        )));
    }
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|e| e.uid == uid),
        Err(_) => Some(
            passwd_entries(passwd)
                .find(|e| e.name == u)
                .ok_or_else(|| RuntimeError::NoSuchUser {
                    user: u.to_string(),
                })?,
        ),
    };
    let uid = match (&entry, u.parse::<u32>()) {
        (_, Ok(uid)) => uid,
        (Some(e), Err(_)) => e.uid,
        (None, Err(_)) => unreachable!("named users without an entry were rejected"),
    };
    let gid = match g {
        None => entry.as_ref().map_or(0, |e| e.gid),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_gid(group, g).ok_or_else(|| RuntimeError::NoSuchGroup {
                group: g.to_string(),
            })?,
        },
    };
    let home = entry
        .as_ref()
        .map(|e| e.home)
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
        .to_string();
    Ok(ResolvedUser { uid, gid, home })
}

fn env_has(env: &[String], key: &str) -> bool {
    env.iter()
        .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
}

fn check_spec(spec: &WorkloadRun) -> Result<()> {
    let bad = |m: String| Err(RuntimeError::Spec(m));
    if spec.id.is_empty() {
        return bad("empty container id".into());
    }
    if spec.args.is_empty() {
        return bad(format!("{}: empty command", spec.id));
    }
    if !spec.rootfs.is_absolute() {
        return bad(format!(
            "{}: rootfs {} is not absolute",
            spec.id,
            spec.rootfs.display()
        ));
    }
    if !spec.cwd.is_empty() && !spec.cwd.starts_with('/') {
        return bad(format!("{}: cwd {:?} is not absolute", spec.id, spec.cwd));
    }
    if !spec.cgroup_path.starts_with('/') {
        return bad(format!(
            "{}: cgroup path {:?} is not absolute",
            spec.id, spec.cgroup_path
        ));
    }
    for b in &spec.binds {
        if !b.dest.starts_with('/') || !b.source.is_absolute() {
            return bad(format!(
                "{}: bind {} -> {:?} must use absolute paths",
                spec.id,
                b.source.display(),
                b.dest
            ));
        }
    }
    if let Some(c) = spec.resources.cpus {
        if !(c.is_finite() && c > 0.0) {
            return bad(format!("{}: cpus must be positive, got {c}", spec.id));
        }
    }
    if let Some(u) = &spec.userns {
        if u.host_id == 0 || u.size == 0 || u.host_id.checked_add(u.size).is_none() {
            return bad(format!(
                "{}: user namespace must map to unprivileged host ids, got {}+{}",
                spec.id, u.host_id, u.size
            ));
        }
        if u.path.as_ref().is_some_and(|p| !p.is_absolute()) {
            return bad(format!("{}: user namespace path is not absolute", spec.id));
        }
    }
    if spec.resources.memory == Some(0) || spec.resources.pids == Some(0) {
        return bad(format!(
            "{}: memory and pids limits must be positive",
            spec.id
        ));
    }
    Ok(())
}

fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

/// The tmpfs mounts a read-only root filesystem gets.
fn readonly_rootfs_mounts() -> Vec<Value> {
    let tmpfs = |dest: &str, mode: &str| {
        json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", format!("mode={mode}")]})
    };
    vec![
        tmpfs("/tmp", "1777"),
        tmpfs("/var/tmp", "1777"),
        tmpfs("/run", "755"),
    ]
}

fn bind_mount(b: &Bind) -> Value {
    let mut options = vec!["rbind", "rprivate"];
    if b.readonly {
        options.push("ro");
    }
    json!({"destination": b.dest, "type": "bind", "source": b.source, "options": options})
}

fn device_rules() -> Vec<Value> {
    let allow = |major: i64, minor: Option<i64>| {
        json!({"allow": true, "type": "c", "major": major, "minor": minor.unwrap_or(-1),
               "access": "rwm"})
    };
    vec![
        json!({"allow": false, "access": "rwm"}),
        allow(1, Some(3)), // null
        allow(1, Some(5)), // zero
        allow(1, Some(7)), // full
        allow(1, Some(8)), // random
        allow(1, Some(9)), // urandom
        allow(5, Some(0)), // tty
        allow(5, Some(2)), // ptmx
        allow(136, None),  // pts/*
    ]
}

/// Renders the OCI spec from `spec`, the rootfs's `/etc/passwd` and `/etc/group` contents and
/// the RLIMIT_NOFILE to set (normally [`NOFILE_LIMIT`]), for this host's architecture.
pub fn render_config_with(
    spec: &WorkloadRun,
    passwd: &str,
    group: &str,
    nofile: u64,
) -> Result<Spec> {
    render_config_for(spec, passwd, group, nofile, Arch::host())
}

/// [`render_config_with`] for a given architecture (its seccomp profile).
pub fn render_config_for(
    spec: &WorkloadRun,
    passwd: &str,
    group: &str,
    nofile: u64,
    arch: Option<Arch>,
) -> Result<Spec> {
    check_spec(spec)?;
    let user = resolve_user(spec.user.as_deref(), passwd, group)?;
    let mut env = spec.env.clone();
    if !env_has(&env, "PATH") {
        env.push(DEFAULT_PATH.to_string());
    }
    if !env_has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    if spec.terminal && !env_has(&env, "TERM") {
        env.push("TERM=xterm".to_string());
    }
    let cwd = if spec.cwd.is_empty() { "/" } else { &spec.cwd };

    let mut mounts = default_mounts();
    if spec.readonly_rootfs {
        mounts.extend(readonly_rootfs_mounts());
    }
    mounts.extend(spec.binds.iter().map(bind_mount));

    let mut resources = json!({ "devices": device_rules() });
    if let Some(m) = spec.resources.memory {
        let m =
            i64::try_from(m).map_err(|_| RuntimeError::Spec("memory limit too large".into()))?;
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(c) = spec.resources.cpus {
        let quota = (c * CPU_PERIOD as f64).round().max(1000.0) as i64;
        resources["cpu"] = json!({"quota": quota, "period": CPU_PERIOD});
    }
    if let Some(p) = spec.resources.pids {
        let p = i64::try_from(p).map_err(|_| RuntimeError::Spec("pids limit too large".into()))?;
        resources["pids"] = json!({ "limit": p });
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "mount"}),
        json!({"type": "uts"}),
        json!({"type": "ipc"}),
    ];
    match &spec.network {
        NetNamespace::Private => namespaces.push(json!({"type": "network"})),
        NetNamespace::Host => {}
        NetNamespace::Path(p) => namespaces.push(json!({"type": "network", "path": p})),
        NetNamespace::Bridge => {
            return Err(RuntimeError::Spec(
                "an OCI container joins a prepared network namespace; attaching to the bridge \
                 by itself is a jail's"
                    .into(),
            ))
        }
    }
    if let Some(u) = &spec.userns {
        namespaces.push(match &u.path {
            Some(p) => json!({"type": "user", "path": p}),
            None => json!({"type": "user"}),
        });
    }
    let mut config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": spec.terminal,
            "user": {"uid": user.uid, "gid": user.gid},
            "args": spec.args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": DEFAULT_CAPS,
                "effective": DEFAULT_CAPS,
                "permitted": DEFAULT_CAPS,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": true,
        },
        "root": {"path": spec.rootfs, "readonly": spec.readonly_rootfs},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": {
            "cgroupsPath": spec.cgroup_path,
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "seccomp": if arch == Arch::host() {
                seccomp::host_profile().clone()
            } else {
                seccomp::profile(arch)
            },
        },
    });
    if let Some(u) = &spec.userns {
        let map = json!([{"containerID": 0, "hostID": u.host_id, "size": u.size}]);
        config["linux"]["uidMappings"] = map.clone();
        config["linux"]["gidMappings"] = map;
    }
    serde_json::from_value(config)
        .map_err(|e| RuntimeError::Spec(format!("{}: rendering config.json: {e}", spec.id)))
}

fn read_optional(path: &Path) -> Result<String> {
    match std::fs::read(path) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Renders the OCI spec, reading users and groups from the rootfs and the file limit from the
/// host ([`host_nofile_limit`]).
pub fn render_config(spec: &WorkloadRun) -> Result<Spec> {
    let passwd = read_optional(&spec.rootfs.join("etc/passwd"))?;
    let group = read_optional(&spec.rootfs.join("etc/group"))?;
    render_config_with(spec, &passwd, &group, host_nofile_limit())
}

/// Canonical, deterministic JSON for a spec: sorted keys, sorted capability sets.
pub fn config_json(spec: &Spec) -> Result<String> {
    let mut v = serde_json::to_value(spec)
        .map_err(|e| RuntimeError::Other(format!("serializing config.json: {e}")))?;
    if let Some(caps) = v.pointer_mut("/process/capabilities") {
        if let Some(obj) = caps.as_object_mut() {
            for set in obj.values_mut() {
                if let Some(arr) = set.as_array_mut() {
                    arr.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
            }
        }
    }
    let mut s = serde_json::to_string_pretty(&sort_keys(v))
        .map_err(|e| RuntimeError::Other(format!("serializing config.json: {e}")))?;
    s.push('\n');
    Ok(s)
}

fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Renders the spec and writes `dir/config.json` (atomically); returns its path.
pub fn write_bundle(dir: &Path, spec: &WorkloadRun) -> Result<PathBuf> {
    let config = config_json(&render_config(spec)?)?;
    std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    write_atomic(&path, config.as_bytes())?;
    Ok(path)
}

/// Writes `path` via a temporary sibling and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| RuntimeError::Io { path: p, source }
    };
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::Resources;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # comment\n\
                          daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                          www:x:33:33:www-data:/var/www:/usr/sbin/nologin\n\
                          broken line\n";
    const GROUP: &str = "root:x:0:\nwww:x:33:\nstaff:x:50:www\n";

    fn fixed_spec() -> WorkloadRun {
        WorkloadRun {
            id: "warren-web".into(),
            rootfs: "/var/lib/warren/workloads/web/rootfs".into(),
            readonly_rootfs: true,
            binds: vec![
                Bind {
                    source: "/var/lib/warren/workloads/web/data".into(),
                    dest: "/data".into(),
                    readonly: false,
                },
                Bind {
                    source: "/etc/warren/ca.pem".into(),
                    dest: "/etc/ssl/ca.pem".into(),
                    readonly: true,
                },
            ],
            args: vec!["/bin/httpd".into(), "-f".into(), "-p".into(), "80".into()],
            env: vec!["GREETING=hello world".into()],
            cwd: "/srv".into(),
            user: Some("www:staff".into()),
            hostname: "web".into(),
            resources: Resources {
                memory: Some(64 * 1024 * 1024),
                cpus: Some(0.5),
                pids: Some(100),
                disk: None,
            },
            terminal: false,
            cgroup_path: "/warren/web".into(),
            network: Default::default(),
            userns: None,
            backend: Default::default(),
        }
    }

    #[test]
    fn golden_config() {
        let spec = render_config_for(
            &fixed_spec(),
            PASSWD,
            GROUP,
            NOFILE_LIMIT,
            Some(Arch::X86_64),
        )
        .unwrap();
        let got = config_json(&spec).unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/config.json");
        if std::env::var_os("WARREN_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run with WARREN_BLESS=1)", path.display()));
        assert_eq!(got, want, "config.json differs from the golden file");
        // Rendering is deterministic.
        assert_eq!(config_json(&spec).unwrap(), got);
    }

    fn render_value(s: &WorkloadRun) -> Value {
        let spec = render_config_for(s, PASSWD, GROUP, NOFILE_LIMIT, Some(Arch::X86_64)).unwrap();
        serde_json::from_str(&config_json(&spec).unwrap()).unwrap()
    }

    /// The hardening every container gets, whatever its spec.
    #[test]
    fn hardening_is_always_rendered() {
        let mut s = fixed_spec();
        s.readonly_rootfs = false;
        s.binds.clear();
        let v = render_value(&s);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(
                v["process"]["capabilities"][set].as_array().unwrap().len(),
                DEFAULT_CAPS.len()
            );
        }
        assert!(v["process"]["capabilities"].get("inheritable").is_none());
        assert!(v["process"]["capabilities"].get("ambient").is_none());
        assert_eq!(v["linux"]["seccomp"], seccomp::profile(Some(Arch::X86_64)));
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
        assert!(v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .contains(&json!("/proc/kcore")));
        assert_eq!(v["root"]["readonly"], false);
        // Only the default mounts: no bind of anything the spec did not list.
        let mounts = v["mounts"].as_array().unwrap();
        assert!(mounts.iter().all(|m| m["type"] != "bind"), "{mounts:?}");
        let dests: Vec<&str> = mounts
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(!dests.contains(&"/tmp"));
        assert!(!v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "user"));
        assert!(v["linux"].get("uidMappings").is_none());
    }

    #[test]
    fn readonly_rootfs_gets_tmpfs_under_the_binds() {
        let v = render_value(&fixed_spec());
        assert_eq!(v["root"]["readonly"], true);
        let mounts = v["mounts"].as_array().unwrap();
        let pos = |d: &str| mounts.iter().position(|m| m["destination"] == d).unwrap();
        for d in ["/tmp", "/var/tmp", "/run"] {
            assert_eq!(mounts[pos(d)]["type"], "tmpfs", "{d}");
            assert!(pos(d) < pos("/data"), "{d} must come before the binds");
        }
        assert_eq!(
            mounts[pos("/tmp")]["options"],
            json!(["nosuid", "nodev", "mode=1777"])
        );
        assert!(!mounts[pos("/data")]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }

    #[test]
    fn user_namespace_maps_root_to_the_given_range() {
        let mut s = fixed_spec();
        s.userns = Some(crate::UserNamespace {
            host_id: 0x7001_0000,
            size: 65536,
            path: None,
        });
        let v = render_value(&s);
        let map = json!([{"containerID": 0, "hostID": 0x7001_0000u32, "size": 65536}]);
        assert_eq!(v["linux"]["uidMappings"], map);
        assert_eq!(v["linux"]["gidMappings"], map);
        let ns = v["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "user"})));
        s.userns.as_mut().unwrap().path = Some("/run/warren/userns/x".into());
        let v = render_value(&s);
        assert!(v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "user", "path": "/run/warren/userns/x"})));
        for bad in [(0, 65536), (100_000, 0), (u32::MAX, 2)] {
            s.userns = Some(crate::UserNamespace {
                host_id: bad.0,
                size: bad.1,
                path: None,
            });
            let e = render_config_with(&s, PASSWD, GROUP, NOFILE_LIMIT).unwrap_err();
            assert!(e.to_string().contains("unprivileged host ids"), "{e}");
        }
        s.userns = Some(crate::UserNamespace {
            host_id: 100_000,
            size: 65536,
            path: Some("relative".into()),
        });
        assert!(render_config_with(&s, PASSWD, GROUP, NOFILE_LIMIT).is_err());
    }

    #[test]
    fn users_resolve_by_number_and_name() {
        let r = |u: Option<&str>| resolve_user(u, PASSWD, GROUP);
        let ru = |uid, gid, home: &str| ResolvedUser {
            uid,
            gid,
            home: home.into(),
        };
        assert_eq!(r(None).unwrap(), ru(0, 0, "/root"));
        assert_eq!(r(Some("www")).unwrap(), ru(33, 33, "/var/www"));
        assert_eq!(r(Some("www:staff")).unwrap(), ru(33, 50, "/var/www"));
        assert_eq!(r(Some("33")).unwrap(), ru(33, 33, "/var/www"));
        assert_eq!(r(Some("1000")).unwrap(), ru(1000, 0, "/"));
        assert_eq!(r(Some("1000:7")).unwrap(), ru(1000, 7, "/"));
        assert_eq!(r(Some("daemon:0")).unwrap(), ru(1, 0, "/usr/sbin"));
        assert!(matches!(
            r(Some("nobody")),
            Err(RuntimeError::NoSuchUser { user }) if user == "nobody"
        ));
        assert!(matches!(
            r(Some("www:wheel")),
            Err(RuntimeError::NoSuchGroup { group }) if group == "wheel"
        ));
        assert!(matches!(r(Some(":5")), Err(RuntimeError::Spec(_))));
    }

    #[test]
    fn env_defaults_fill_only_missing_keys() {
        let mut s = fixed_spec();
        s.user = None;
        s.terminal = true;
        s.env = vec!["PATH=/opt/bin".into()];
        let spec = render_config_with(&s, PASSWD, GROUP, NOFILE_LIMIT).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, vec!["PATH=/opt/bin", "HOME=/root", "TERM=xterm"]);
        s.env = vec!["HOME=/x".into(), "TERM=vt100".into()];
        let spec = render_config_with(&s, "", "", NOFILE_LIMIT).unwrap();
        let env = spec.process().as_ref().unwrap().env().clone().unwrap();
        assert_eq!(env, vec!["HOME=/x", "TERM=vt100", DEFAULT_PATH]);
    }

    #[test]
    fn network_namespace_follows_the_spec() {
        let net_ns = |network: NetNamespace| {
            let mut spec = fixed_spec();
            spec.network = network;
            spec.user = None;
            let config = render_config_with(&spec, "", "", 1024).unwrap();
            let v = serde_json::to_value(&config).unwrap();
            v["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
        };
        assert_eq!(
            net_ns(NetNamespace::Private),
            Some(json!({"type": "network"}))
        );
        assert_eq!(net_ns(NetNamespace::Host), None);
        assert_eq!(
            net_ns(NetNamespace::Path("/run/netns/warren-x-web".into())),
            Some(json!({"type": "network", "path": "/run/netns/warren-x-web"}))
        );
        let mut spec = fixed_spec();
        spec.network = NetNamespace::Bridge;
        spec.user = None;
        let err = render_config_with(&spec, "", "", 1024).unwrap_err();
        assert!(
            err.to_string().contains("prepared network namespace"),
            "{err}"
        );
    }

    #[test]
    fn minimal_spec_has_no_limits_and_default_cwd() {
        let mut s = fixed_spec();
        s.readonly_rootfs = false;
        s.resources = Resources::default();
        s.binds.clear();
        s.cwd = String::new();
        s.user = None;
        let v: Value = serde_json::from_str(
            &config_json(&render_config_with(&s, "", "", NOFILE_LIMIT).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["process"]["user"], json!({"uid": 0, "gid": 0}));
        let res = v["linux"]["resources"].as_object().unwrap();
        assert_eq!(res.keys().collect::<Vec<_>>(), vec!["devices"]);
        assert_eq!(v["mounts"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let cases: Vec<fn(&mut WorkloadRun)> = vec![
            |s| s.args.clear(),
            |s| s.rootfs = "relative".into(),
            |s| s.cwd = "srv".into(),
            |s| s.cgroup_path = "warren/web".into(),
            |s| s.binds[0].dest = "data".into(),
            |s| s.resources.cpus = Some(0.0),
            |s| s.resources.memory = Some(0),
            |s| s.id = String::new(),
        ];
        for (i, f) in cases.into_iter().enumerate() {
            let mut s = fixed_spec();
            f(&mut s);
            assert!(
                matches!(
                    render_config_with(&s, PASSWD, GROUP, NOFILE_LIMIT),
                    Err(RuntimeError::Spec(_))
                ),
                "case {i}"
            );
        }
    }

    #[test]
    fn nofile_limit_is_rendered_and_bounded_by_the_host() {
        let spec = render_config_with(&fixed_spec(), PASSWD, GROUP, 4096).unwrap();
        let rl = spec.process().as_ref().unwrap().rlimits().clone().unwrap();
        assert_eq!((rl[0].hard(), rl[0].soft()), (4096, 4096));
        let host = host_nofile_limit();
        assert!(host > 0 && host <= NOFILE_LIMIT);
    }

    #[test]
    fn write_bundle_reads_rootfs_users() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(rootfs.join("etc/group"), GROUP).unwrap();
        let mut s = fixed_spec();
        s.rootfs = rootfs;
        let path = write_bundle(&dir.path().join("bundle"), &s).unwrap();
        let back = Spec::load(&path).unwrap();
        let user = back.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (33, 50));
        s.user = Some("ghost".into());
        assert!(matches!(
            write_bundle(&dir.path().join("b2"), &s),
            Err(RuntimeError::NoSuchUser { .. })
        ));
    }
}
