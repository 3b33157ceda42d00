//! Tier-2 tests of `warren cp` through the real CLI and daemon: files and directories both
//! ways for a running and a stopped container, tar streams on stdin and stdout, modes and
//! owners, a user-namespaced container's owner mapping, and hostile archives and paths
//! refused with nothing written.

mod common;

use common::*;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

const SPEC: &str = r#"[workload.box]
world = "busybox"
command = ["sh", "-c", "exec sleep 100000"]

[workload.off]
world = "busybox"
network = "none"
command = ["sh", "-c", "exec sleep 100000"]

[workload.ns]
world = "busybox"
network = "none"
userns = true
command = ["sh", "-c", "exec sleep 100000"]
"#;

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    d.ok(&["exec", name, "--", "sh", "-c", script])
}

/// `warren cp ARGS` that must fail; returns stderr.
fn cp_fails(d: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["cp"];
    all.extend_from_slice(args);
    let out = d.cli(&all);
    assert!(
        !out.status.success(),
        "warren {all:?} succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `warren cp - DST` fed `input`.
fn cp_stdin(d: &Daemon, dst: &str, input: &[u8]) -> std::process::Output {
    cp_stdin_with(d, &[], dst, input)
}

/// `warren cp FLAGS - DST` fed `input`.
fn cp_stdin_with(d: &Daemon, flags: &[&str], dst: &str, input: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("cp")
        .args(flags)
        .args(["-", dst])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(input);
    drop(stdin);
    child.wait_with_output().unwrap()
}

/// A raw tar with the given (name, type, link target, data) entries, names unchecked.
fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, link, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha").unwrap();
    std::fs::set_permissions(dir.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(dir.join("a.txt"), Some(1234), Some(5678)).unwrap();
    std::fs::write(dir.join("sub/run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        dir.join("sub/run.sh"),
        std::fs::Permissions::from_mode(0o751),
    )
    .unwrap();
    symlink("a.txt", dir.join("link")).unwrap();
}

#[test]
fn cp_in_and_out_of_containers() {
    let d = Daemon::start(&[]);
    d.apply("cp.toml", SPEC);
    d.wait_running("box");
    d.wait_running("off");
    d.wait_running("ns");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("src");
    tree(&src);
    let src_s = src.to_str().unwrap();

    // A directory into an existing directory of a running container: inside it, modes kept,
    // owned by the container's root without -a.
    d.ok(&["cp", src_s, "box:/data"]);
    assert_eq!(
        sh(&d, "box", "cat /data/src/a.txt; stat -c '%a %u %g' /data/src/a.txt /data/src/sub/run.sh; readlink /data/src/link"),
        "alpha640 0 0\n751 0 0\na.txt\n"
    );
    // To a missing name, created under it; with -a the owners are kept.
    d.ok(&["cp", "-a", src_s, "box:/data/kept"]);
    assert_eq!(
        sh(&d, "box", "stat -c '%a %u %g' /data/kept/a.txt"),
        "640 1234 5678\n"
    );
    // A single file into the root filesystem, then its contents replaced.
    let file = local.path().join("motd");
    std::fs::write(&file, "one").unwrap();
    d.ok(&["cp", file.to_str().unwrap(), "box:/etc/motd"]);
    std::fs::write(&file, "two").unwrap();
    d.ok(&["cp", file.to_str().unwrap(), "box:/etc/motd"]);
    assert_eq!(sh(&d, "box", "cat /etc/motd"), "two");
    // A directory's contents (SRC/.) into an existing directory.
    sh(&d, "box", "mkdir -p /srv/flat");
    d.ok(&["cp", &format!("{src_s}/."), "box:/srv/flat"]);
    assert_eq!(
        sh(&d, "box", "ls /srv/flat | tr '\\n' ' '"),
        "a.txt link sub "
    );

    // Out again: a directory to a missing local name, modes kept, owned by the caller; with
    // -a the owners travel back.
    let out = local.path().join("out");
    d.ok(&["cp", "box:/data/src", out.to_str().unwrap()]);
    let m = std::fs::metadata(out.join("a.txt")).unwrap();
    assert_eq!(std::fs::read_to_string(out.join("a.txt")).unwrap(), "alpha");
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.uid(), 0);
    assert_eq!(
        std::fs::metadata(out.join("sub/run.sh")).unwrap().mode() & 0o7777,
        0o751
    );
    let kept = local.path().join("kept");
    d.ok(&["cp", "-a", "box:/data/kept", kept.to_str().unwrap()]);
    let m = std::fs::metadata(kept.join("a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    // Into an existing local directory it goes inside.
    d.ok(&["cp", "box:/etc/motd", local.path().to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(local.path().join("motd")).unwrap(),
        "two"
    );

    // `-`: a tar stream on stdout, and one from stdin into an existing directory.
    let tarred = d.ok(&["cp", "box:/data/src", "-"]);
    let mut names: Vec<String> = tar::Archive::new(tarred.as_bytes())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["src", "src/a.txt", "src/link", "src/sub", "src/sub/run.sh"]
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o600);
    h.set_size(5);
    b.append_data(&mut h, "piped/x", &b"piped"[..]).unwrap();
    let piped = b.into_inner().unwrap();
    let o = cp_stdin(&d, "box:/data", &piped);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sh(&d, "box", "cat /data/piped/x; stat -c ' %a' /data/piped/x"),
        "piped 600\n"
    );
    let o = cp_stdin(&d, "box:/data/nowhere", &piped);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));

    // A stopped container: both ways, and the file is there when it runs again.
    d.ok(&["stop", "off"]);
    d.ok(&["cp", file.to_str().unwrap(), "off:/data/while-stopped"]);
    d.ok(&["cp", src_s, "off:/opt"]);
    let back = local.path().join("from-stopped");
    d.ok(&["cp", "off:/opt/src/a.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "alpha");
    d.ok(&["start", "off"]);
    d.wait_running("off");
    assert_eq!(
        sh(&d, "off", "cat /data/while-stopped /opt/src/a.txt"),
        "twoalpha"
    );

    // userns: the container's ids are the host's base + id, both ways.
    let host_data = d.pool_root().join("workloads/ns/data");
    let base = std::fs::metadata(&host_data).unwrap().uid();
    assert!(base >= 65536, "ns data is owned by {base}");
    d.ok(&["cp", "-a", src_s, "ns:/data"]);
    let m = std::fs::metadata(host_data.join("src/a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (base + 1234, base + 5678));
    assert_eq!(
        sh(&d, "ns", "stat -c '%u %g' /data/src/a.txt"),
        "1234 5678\n"
    );
    d.ok(&["cp", file.to_str().unwrap(), "ns:/data/plain"]);
    let m = std::fs::metadata(host_data.join("plain")).unwrap();
    assert_eq!((m.uid(), m.gid()), (base, base));
    assert_eq!(sh(&d, "ns", "stat -c '%u %g' /data/plain"), "0 0\n");
    let nsout = local.path().join("nsout");
    d.ok(&["cp", "-a", "ns:/data/src", nsout.to_str().unwrap()]);
    let m = std::fs::metadata(nsout.join("a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 5678));
    // An owner outside the namespace's range is refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_uid(70000);
    h.set_size(1);
    b.append_data(&mut h, "far", &b"x"[..]).unwrap();
    let far = b.into_inner().unwrap();
    let o = cp_stdin_with(&d, &["-a"], "ns:/data", &far);
    assert!(!o.status.success());
    let msg = String::from_utf8_lossy(&o.stderr);
    assert!(
        msg.contains("outside the workload's user namespace"),
        "{msg}"
    );
    assert!(!host_data.join("far").exists());
    // Without -a owners are not taken from the stream: accepted, owned by the root.
    let o = cp_stdin(&d, "ns:/data", &far);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::metadata(host_data.join("far")).unwrap().uid(),
        base
    );

    // Hostile archives: refused, nothing written.
    let before = sh(&d, "box", "find /data /etc | sort");
    let ok: &[u8] = b"ok";
    for (what, archive) in [
        (
            "dotdot",
            raw_tar(&[
                ("good", tar::EntryType::Regular, "", ok),
                ("../../etc/evil", tar::EntryType::Regular, "", ok),
            ]),
        ),
        (
            "absolute",
            raw_tar(&[("/etc/evil", tar::EntryType::Regular, "", ok)]),
        ),
        (
            "symlink leading out",
            raw_tar(&[
                ("d/", tar::EntryType::Directory, "", b""),
                ("d/up", tar::EntryType::Symlink, "../../../..", b""),
            ]),
        ),
        (
            "hard link leading out",
            raw_tar(&[("h", tar::EntryType::Link, "../etc/passwd", b"")]),
        ),
        (
            "device",
            raw_tar(&[("null", tar::EntryType::Char, "", b"")]),
        ),
        (
            "write through a link",
            raw_tar(&[
                ("l", tar::EntryType::Symlink, "/etc", b""),
                ("l/evil", tar::EntryType::Regular, "", ok),
            ]),
        ),
    ] {
        let o = cp_stdin(&d, "box:/data", &archive);
        assert!(!o.status.success(), "{what} accepted");
        assert_eq!(
            sh(&d, "box", "find /data /etc | sort"),
            before,
            "{what} left something"
        );
    }

    // Links inside the container never lead to the host's files.
    let secret_dir = tempfile::tempdir().unwrap();
    std::fs::write(secret_dir.path().join("secret"), "host").unwrap();
    let sd = secret_dir.path().to_str().unwrap();
    sh(
        &d,
        "box",
        &format!(
            "ln -s {sd} /data/esc && ln -s ../../../../../.. /data/up && ln -s /etc /data/etc-link"
        ),
    );
    let msg = cp_fails(
        &d,
        &["box:/data/esc/secret", local.path().to_str().unwrap()],
    );
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = cp_fails(
        &d,
        &[
            &format!("box:/data/up{sd}/secret"),
            local.path().to_str().unwrap(),
        ],
    );
    assert!(msg.contains("does not exist"), "{msg}");
    d.ok(&[
        "cp",
        file.to_str().unwrap(),
        "box:/data/etc-link/through-link",
    ]);
    assert_eq!(sh(&d, "box", "cat /etc/through-link"), "two");
    assert!(!Path::new("/etc/through-link").exists());
    let msg = cp_fails(&d, &[file.to_str().unwrap(), "box:/data/esc/planted"]);
    assert!(msg.contains("does not exist"), "{msg}");
    assert_eq!(
        std::fs::read_dir(secret_dir.path()).unwrap().count(),
        1,
        "something was written beside the host's secret"
    );

    // A file bound over a file (the bridge's hosts file) is read from its source, and
    // never written; a tree placed over a mount point is refused.
    let hosts = d.ok(&["cp", "box:/etc/hosts", "-"]);
    let mut a = tar::Archive::new(hosts.as_bytes());
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(e.path().unwrap().display().to_string(), "hosts");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut e, &mut text).unwrap();
    assert_eq!(text, sh(&d, "box", "cat /etc/hosts"));
    let msg = cp_fails(&d, &[file.to_str().unwrap(), "box:/etc/hosts"]);
    assert!(msg.contains("read-only"), "{msg}");
    let over = local.path().join("over");
    std::fs::create_dir_all(over.join("data")).unwrap();
    std::fs::write(over.join("data/hidden"), "x").unwrap();
    let msg = cp_fails(&d, &[&format!("{}/.", over.display()), "box:/"]);
    assert!(msg.contains("mount point"), "{msg}");

    // Refusals with clear messages.
    let msg = cp_fails(&d, &[src_s, local.path().join("x").to_str().unwrap()]);
    assert!(msg.contains("must be NAME:/PATH"), "{msg}");
    let msg = cp_fails(&d, &["box:/etc/motd", "off:/tmp/x"]);
    assert!(msg.contains("both SRC and DST"), "{msg}");
    let msg = cp_fails(&d, &[src_s, "ghost:/data"]);
    assert!(msg.contains("ghost"), "{msg}");
    let msg = cp_fails(&d, &["box:/proc/1/environ", "-"]);
    assert!(msg.contains("no directory on the host"), "{msg}");
    let msg = cp_fails(&d, &["box:/nope", local.path().to_str().unwrap()]);
    assert!(msg.contains("does not exist"), "{msg}");
    let msg = cp_fails(&d, &[src_s, "box:/etc/motd"]);
    assert!(msg.contains("onto the non-directory"), "{msg}");
    let msg = cp_fails(&d, &[src_s, "box:relative"]);
    assert!(msg.contains("absolute"), "{msg}");
}
