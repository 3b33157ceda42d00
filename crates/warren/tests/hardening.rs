//! Workload hardening, checked from inside real containers (runc on a real btrfs pool, through
//! the real daemon and CLI): no mounts, no host processes, no module loading, no /dev/mem, no
//! other workload's data, Docker's default capability set, the default seccomp profile,
//! read-only root filesystems, and user namespaces whose root is unprivileged on the host.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

const SLEEP: &str = r#"command = ["sh", "-c", "exec sleep 100000"]"#;

/// Bits of Docker's default capability set, by name.
const CAP_BITS: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_RAW", 13),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_MKNOD", 27),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_SETFCAP", 31),
];

/// Runs `script` with `sh -c` inside workload `name`; returns (success, stdout, stderr).
fn sh(d: &Daemon, name: &str, script: &str) -> (bool, String, String) {
    let out = d.cli(&["exec", name, "--", "sh", "-c", script]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`sh`], but the script must succeed; returns its stdout.
fn sh_ok(d: &Daemon, name: &str, script: &str) -> String {
    let (ok, out, err) = sh(d, name, script);
    assert!(
        ok,
        "{name}: `{script}` failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Like [`sh`], but the script must fail; returns stdout and stderr together.
fn sh_fails(d: &Daemon, name: &str, script: &str) -> String {
    let (ok, out, err) = sh(d, name, script);
    assert!(
        !ok,
        "{name}: `{script}` succeeded:\nstdout: {out}\nstderr: {err}"
    );
    format!("{out}{err}")
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"))
        .trim()
        .to_string()
}

#[test]
fn a_workload_cannot_reach_the_host_or_its_neighbours() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("[workload.a]\nworld = \"busybox\"\n{SLEEP}\n\n[workload.b]\nworld = \"busybox\"\n{SLEEP}\n"),
    );
    let a_pid = d.wait_running("a");
    d.wait_running("b");
    sh_ok(&d, "a", "echo secret-of-a-7f3e > /data/secret");

    // Mounting is refused (no CAP_SYS_ADMIN, and no mount syscall in the profile).
    let out = sh_fails(&d, "b", "mkdir -p /mnt && mount -t tmpfs none /mnt");
    assert!(
        out.contains("denied") || out.contains("not permitted"),
        "{out}"
    );
    let out = sh_fails(&d, "b", "umount /proc");
    assert!(!out.is_empty());

    // Only the workload's own processes are in /proc.
    let listing = sh_ok(
        &d,
        "b",
        "for p in /proc/[0-9]*; do echo \"${p#/proc/} $(tr '\\0' ' ' < $p/cmdline)\"; done",
    );
    let pids: Vec<u32> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(pids.contains(&1), "{listing}");
    assert!(
        pids.len() <= 5,
        "more processes than the workload's own:\n{listing}"
    );
    let host_procs = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    assert!(host_procs > pids.len() + 5, "host has {host_procs}");
    assert!(
        !listing.contains("warren") && !listing.contains(&format!(" {a_pid} ")),
        "{listing}"
    );
    let one = sh_ok(&d, "b", "tr '\\0' ' ' < /proc/1/cmdline");
    assert!(one.contains("sleep"), "{one}");

    // Module loading fails with EPERM (a real kernel would say the file is no module).
    let out = sh_fails(&d, "b", "echo not-a-module > /tmp/x.ko && insmod /tmp/x.ko");
    assert!(out.contains("not permitted"), "{out}");

    // No /dev/mem, and a hand-made node for it cannot be opened (device cgroup).
    sh_fails(&d, "b", "test -e /dev/mem");
    let out = sh_fails(&d, "b", "mknod /tmp/mem c 1 1 && head -c 1 /tmp/mem");
    assert!(out.contains("not permitted"), "{out}");
    let devices = sh_ok(&d, "b", "ls /dev");
    for absent in ["mem", "kmem", "port", "sda", "vda", "loop0"] {
        assert!(
            !devices.split_whitespace().any(|n| n == absent),
            "/dev/{absent} is visible: {devices}"
        );
    }

    // a's data: not mounted into b, not findable, not even named in b's mount table.
    let a_data = d.pool_root().join("workloads/a/data");
    assert!(a_data.join("secret").exists(), "a's marker is missing");
    let mountinfo = sh_ok(&d, "b", "cat /proc/self/mountinfo");
    assert!(
        !mountinfo.contains("workloads/a/"),
        "b mounts something of a's:\n{mountinfo}"
    );
    assert!(mountinfo.contains("workloads/b/data"), "{mountinfo}");
    let (_, found, _) = sh(
        &d,
        "b",
        "for d in /*; do case $d in /proc|/sys|/dev) ;; *) grep -rl secret-of-a-7f3e $d 2>/dev/null;; esac; done",
    );
    assert!(found.trim().is_empty(), "b found a's data: {found}");
    let out = sh_fails(&d, "b", &format!("ls {}", a_data.display()));
    assert!(out.contains("No such file"), "{out}");

    // Capabilities: exactly Docker's default set, nothing inheritable or ambient.
    let status = sh_ok(&d, "b", "cat /proc/self/status");
    let want: u64 = CAP_BITS.iter().map(|(_, bit)| 1u64 << bit).sum();
    assert_eq!(want, 0xa80425fb);
    let names: BTreeSet<&str> = CAP_BITS.iter().map(|(n, _)| *n).collect();
    let ours: BTreeSet<&str> = warren_runtime::bundle::DEFAULT_CAPS
        .iter()
        .copied()
        .collect();
    assert_eq!(names, ours, "the renderer's set is Docker's");
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        let have = u64::from_str_radix(&status_field(&status, key), 16).unwrap();
        assert_eq!(have, want, "{key}: {have:x}");
    }
    for key in ["CapInh", "CapAmb"] {
        assert_eq!(
            u64::from_str_radix(&status_field(&status, key), 16).unwrap(),
            0
        );
    }
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    // Seccomp mode 2: a filter is installed.
    assert_eq!(status_field(&status, "Seccomp"), "2");

    // A call the capability set allows but the profile refuses: a new user namespace needs
    // no capability (the host does it as any user), yet inside it fails with EPERM.
    let host = Command::new("busybox")
        .args(["unshare", "-U", "true"])
        .output()
        .unwrap();
    assert!(
        host.status.success(),
        "unshare -U must work on the host for this check: {}",
        String::from_utf8_lossy(&host.stderr)
    );
    let out = sh_fails(&d, "b", "unshare -U true");
    assert!(out.contains("Operation not permitted"), "{out}");
    let out = sh_fails(&d, "b", "unshare -n true");
    assert!(out.contains("Operation not permitted"), "{out}");
    // The allowed personas still work (PER_LINUX32).
    sh_ok(&d, "b", "linux32 true");
}

#[test]
fn host_programs_run_under_the_profile() {
    require_python();
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.py]
world = "host"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "8080", "--directory", "/data"]
"#,
    );
    d.wait_running("py");
    sh_ok(&d, "py", "echo served-under-seccomp > /data/index.html");
    // The client's and the server's threads start with clone3 -> ENOSYS -> clone.
    let script = r#"
import threading, time, urllib.request
for _ in range(100):
    try:
        body = urllib.request.urlopen("http://127.0.0.1:8080/index.html", timeout=5).read()
        break
    except OSError:
        time.sleep(0.1)
out = []
t = threading.Thread(target=lambda: out.append(body.decode().strip()))
t.start(); t.join()
print(out[0])
"#;
    let out = d.ok(&["exec", "py", "--", "python3", "-c", script]);
    assert_eq!(out.trim(), "served-under-seccomp");
    let status = sh_ok(&d, "py", "cat /proc/self/status");
    assert_eq!(status_field(&status, "Seccomp"), "2");
}

fn require_python() {
    assert!(
        warren_exec::resolve("python3").is_some(),
        "python3 is missing: apt-get install python3"
    );
}

#[test]
fn readonly_rootfs_refuses_writes_outside_data_volumes_and_tmp() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!(
            "[workload.ro]\nworld = \"busybox\"\nreadonly_rootfs = true\nvolumes = [\"scratch:/scratch\"]\n{SLEEP}\n\n[volume.scratch]\n"
        ),
    );
    d.wait_running("ro");
    for path in ["/etc/x", "/x", "/bin/x", "/root/x"] {
        let out = sh_fails(&d, "ro", &format!("touch {path}"));
        assert!(out.contains("Read-only file system"), "{path}: {out}");
    }
    sh_ok(
        &d,
        "ro",
        "touch /data/x /tmp/x /var/tmp/x /run/x /scratch/x /dev/shm/x",
    );
    let mounts = sh_ok(&d, "ro", "cat /proc/mounts");
    for tmp in ["/tmp", "/var/tmp", "/run"] {
        assert!(
            mounts
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(tmp) && l.contains("tmpfs")),
            "{tmp} is no tmpfs:\n{mounts}"
        );
    }
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap();
    assert!(
        root.split_whitespace().nth(3).unwrap().starts_with("ro"),
        "{root}"
    );
    assert!(d.pool_root().join("workloads/ro/data/x").exists());
    // Switching it off recreates the container with a writable root.
    d.apply(
        "w.toml",
        &format!(
            "[workload.ro]\nworld = \"busybox\"\nvolumes = [\"scratch:/scratch\"]\n{SLEEP}\n\n[volume.scratch]\n"
        ),
    );
    wait_until(30, "a writable root", || sh(&d, "ro", "touch /etc/x").0);
}

/// (first host id, count) of the uid_map of `pid`, which must have exactly one line.
fn uid_map(pid: i32, file: &str) -> (u64, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    let f: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (f[0], f[1], f[2])
}

#[test]
fn userns_root_is_unprivileged_on_the_host() {
    let d = Daemon::start(&[]);
    let spec = |userns: bool| {
        format!(
            r#"[workload.web]
world = "busybox"
userns = {userns}
command = ["httpd", "-f", "-p", "80", "-h", "/data"]

[workload.quiet]
world = "busybox"
userns = {userns}
network = "none"
volumes = ["media:/srv/media"]
{SLEEP}
hooks = [{{ on = "start", job = ["sh", "-c", "id -u > /data/job-uid"] }}]

[volume.media]
"#
        )
    };
    d.apply("w.toml", &spec(true));
    let pid = d.wait_running("web");
    let quiet = d.wait_running("quiet");

    // Inside: root. Outside: an unprivileged id, the same for every uid and gid field.
    assert_eq!(sh_ok(&d, "web", "id -u; id -g"), "0\n0\n");
    let (inner, base, count) = uid_map(pid, "uid_map");
    assert_eq!((inner, count), (0, 65536));
    assert!(base >= 65536, "root maps to host id {base}");
    assert_eq!(uid_map(pid, "gid_map"), (0, base, 65536));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for key in ["Uid", "Gid"] {
        let ids: Vec<u64> = status_field(&status, key)
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(ids, vec![base; 4], "{key}");
    }
    assert_ne!(ns_inode(&pid.to_string(), "user"), ns_inode("self", "user"));

    // The datasets belong to the range: what root writes is owned by `base` on the host.
    sh_ok(&d, "web", "echo hello-from-userns > /data/index.html");
    let data = d.pool_root().join("workloads/web/data");
    let meta = std::fs::metadata(data.join("index.html")).unwrap();
    assert_eq!((meta.uid() as u64, meta.gid() as u64), (base, base));
    let etc = std::fs::metadata(d.pool_root().join("workloads/web/rootfs/etc/passwd")).unwrap();
    assert_eq!(etc.uid() as u64, base);
    sh_ok(
        &d,
        "web",
        "touch /etc/written-by-root && chown 33:33 /data/index.html",
    );
    assert_eq!(
        std::fs::metadata(data.join("index.html")).unwrap().uid() as u64,
        base + 33
    );
    d.ok(&["snapshot", "web", "--label", "in-range"]);

    // Root in the user namespace owns its network namespace: it bound port 80.
    let page = sh_ok(&d, "web", "wget -qO- http://127.0.0.1:80/index.html");
    assert_eq!(page.trim(), "hello-from-userns");
    // ...and still nothing of the host's.
    sh_fails(&d, "web", "mount -t tmpfs none /mnt");

    // The other workload has its own range, apart from this one.
    let (_, other, _) = uid_map(quiet, "uid_map");
    assert!(other >= 65536);
    assert!(
        other + 65536 <= base || base + 65536 <= other,
        "ranges overlap: {base} and {other}"
    );
    assert_eq!(sh_ok(&d, "quiet", "id -u"), "0\n");
    // Its start hook's job ran in its range too: root inside, the range's first id outside.
    let job_out = d.pool_root().join("workloads/quiet/data/job-uid");
    wait_until(30, "the start job", || job_out.exists());
    let meta = std::fs::metadata(&job_out).unwrap();
    assert_eq!((meta.uid() as u64, meta.gid() as u64), (other, other));
    assert_eq!(std::fs::read_to_string(&job_out).unwrap(), "0\n");
    // Its writable volume is its own too.
    sh_ok(
        &d,
        "quiet",
        "echo media > /srv/media/song && chown 7:7 /srv/media/song",
    );
    let song = d.pool_root().join("volumes/media/song");
    assert_eq!(std::fs::metadata(&song).unwrap().uid() as u64, other + 7);

    // A clone gets a range of its own, and its copies of the datasets are moved into it.
    d.ok(&["clone", "web", "copy"]);
    let copy = d.wait_running("copy");
    let (_, cbase, _) = uid_map(copy, "uid_map");
    for b in [base, other] {
        assert!(
            cbase + 65536 <= b || b + 65536 <= cbase,
            "{cbase} overlaps {b}"
        );
    }
    let copied = d.pool_root().join("workloads/copy/data/index.html");
    let meta = std::fs::metadata(&copied).unwrap();
    assert_eq!(
        (meta.uid() as u64, meta.gid() as u64),
        (cbase + 33, cbase + 33)
    );
    let page = sh_ok(&d, "copy", "wget -qO- http://127.0.0.1:80/index.html");
    assert_eq!(page.trim(), "hello-from-userns");
    assert_eq!(sh_ok(&d, "copy", "stat -c %u /data/index.html"), "33\n");

    // Switching userns off recreates the workload and gives the data back to plain ids.
    d.apply("w.toml", &spec(false));
    wait_until(60, "web without a user namespace", || {
        d.get("web")["pid"]
            .as_i64()
            .is_some_and(|p| p as i32 != pid && uid_map(p as i32, "uid_map").1 == 0)
    });
    let meta = std::fs::metadata(data.join("index.html")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (33, 33));
    // ...and the volume's writer gives its volume back too.
    wait_until(60, "quiet without a user namespace", || {
        d.get("quiet")["pid"]
            .as_i64()
            .is_some_and(|p| p as i32 != quiet && uid_map(p as i32, "uid_map").1 == 0)
    });
    assert_eq!(std::fs::metadata(&song).unwrap().uid(), 7);
    let page = sh_ok(&d, "web", "wget -qO- http://127.0.0.1:80/index.html");
    assert_eq!(page.trim(), "hello-from-userns");

    // A rollback to a snapshot taken in the range gives its files plain owners again.
    d.ok(&["rollback", "web", "in-range", "--force"]);
    let meta = std::fs::metadata(data.join("index.html")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (33, 33));
    assert_eq!(sh_ok(&d, "web", "stat -c %u /data/index.html"), "33\n");
}
