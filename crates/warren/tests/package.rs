//! Tier-2 tests of the Debian package and what its systemd unit relies on: the package built
//! by `cargo xtask dist --debug` (from the binaries this test run built) unpacked into a
//! throwaway root, its `warren --version` run, its files (agent, unit, sysusers.d, man pages,
//! completions, copyright) checked, `systemd-analyze verify` passing on the unit inside that
//! root, `lintian` finding no error, and its maintainer scripts run against that root
//! (`DPKG_ROOT`): the `warren` group created and the unit enabled, then both undone by purge;
//! `--socket-group`: a user in the group uses the API, one outside cannot, and without the
//! flag the socket is root's alone again; the `READY=1` and `STOPPING=1` notifications the
//! unit's `Type=notify` waits for. Needs cargo-deb, lintian, systemd-analyze, useradd and
//! runuser (scripts/install-deps).

mod common;

use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package from the binaries of this test run and returns its path.
fn build_deb() -> PathBuf {
    ensure_agent();
    let bin_dir = Path::new(WARREN).parent().unwrap();
    let target = bin_dir.parent().unwrap();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["run", "-q", "-p", "xtask", "--", "dist", "--no-build"])
        .env("CARGO_TARGET_DIR", target)
        .current_dir(workspace_root());
    if !bin_dir.ends_with("release") {
        cmd.arg("--debug");
    }
    let check = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["deb", "--version"])
        .output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "cargo-deb is missing: cargo install cargo-deb (scripts/install-deps)"
    );
    let started = std::time::Instant::now();
    let out = run(&mut cmd);
    eprintln!(
        "cargo xtask dist took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let path = PathBuf::from(stdout(&out).lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "no package at {path:?}");
    path
}

fn field(deb: &Path, name: &str) -> String {
    stdout(&run(Command::new("dpkg-deb").arg("-f").arg(deb).arg(name)))
        .trim()
        .to_string()
}

fn gunzip(path: &Path) -> String {
    stdout(&run(Command::new("gzip").arg("-dc").arg(path)))
}

#[test]
fn the_debian_package_unpacks_runs_and_passes_lintian_and_systemd_analyze() {
    for tool in ["dpkg-deb", "lintian", "systemd-analyze", "gzip"] {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "{tool} is missing (scripts/install-deps installs it)"
        );
    }
    let deb = build_deb();
    assert_eq!(field(&deb, "Package"), "warren");
    assert_eq!(
        field(&deb, "Version"),
        format!("{}-1", env!("CARGO_PKG_VERSION"))
    );
    let depends = field(&deb, "Depends");
    for dep in [
        "runc",
        "nginx",
        "btrfs-progs",
        "nftables",
        "iproute2",
        "libc6",
    ] {
        assert!(depends.contains(dep), "Depends lacks {dep}: {depends}");
    }
    assert!(field(&deb, "Recommends").contains("qemu-system-x86"));

    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(r));
    let version = stdout(&run(Command::new(r.join("usr/bin/warren")).arg("--version")));
    assert_eq!(
        version.trim(),
        format!("warren {}", env!("CARGO_PKG_VERSION"))
    );

    // The agent where the daemon looks for it beside /usr/bin/warren.
    let agent = r.join("usr/libexec/warren/warren-agent");
    assert!(agent.metadata().unwrap().permissions().mode() & 0o111 != 0);
    assert!(!r.join("usr/bin/warren-agent").exists());
    let sysusers = std::fs::read_to_string(r.join("usr/lib/sysusers.d/warren.conf")).unwrap();
    assert!(sysusers.lines().any(|l| l.trim() == "g warren - -"));
    let man = r.join("usr/share/man/man1");
    assert!(gunzip(&man.join("warren.1.gz")).contains(".TH warren 1"));
    assert!(gunzip(&man.join("warren-daemon.1.gz")).contains("socket\\-group"));
    assert!(man.join("warren-apply.1.gz").is_file());
    let bash =
        std::fs::read_to_string(r.join("usr/share/bash-completion/completions/warren")).unwrap();
    assert!(bash.contains("complete -F _warren"), "bash completion");
    let zsh = std::fs::read_to_string(r.join("usr/share/zsh/vendor-completions/_warren")).unwrap();
    assert!(zsh.starts_with("#compdef warren"), "zsh completion");
    let fish =
        std::fs::read_to_string(r.join("usr/share/fish/vendor_completions.d/warren.fish")).unwrap();
    assert!(fish.contains("complete -c warren"), "fish completion");
    let copyright = std::fs::read_to_string(r.join("usr/share/doc/warren/copyright")).unwrap();
    assert!(copyright.contains("License: Apache-2.0"));

    let unit_path = r.join("usr/lib/systemd/system/warren.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    for line in [
        "Type=notify",
        "Restart=on-failure",
        "KillMode=process",
        "StateDirectory=warren",
        "RuntimeDirectoryPreserve=yes",
        "ExecStart=/usr/bin/warren --state-dir /var/lib/warren daemon --socket-group warren",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    // systemd-analyze verify in the unpacked root: ExecStart's binary and the man pages of
    // Documentation= are the package's; the targets the unit names are the host's.
    let units = r.join("usr/lib/systemd/system");
    for e in std::fs::read_dir("/lib/systemd/system").unwrap().flatten() {
        let to = units.join(e.file_name());
        if e.file_type().unwrap().is_file() && !to.exists() {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
    let verify = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .arg("/usr/lib/systemd/system/warren.service")
        .env("MANPATH", r.join("usr/share/man")));
    assert!(
        verify.stderr.is_empty(),
        "systemd-analyze verify complained:\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );

    // lintian: warnings may stay, errors may not.
    let lint = Command::new("lintian").arg(&deb).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );
    assert!(
        !text.lines().any(|l| l.starts_with("E:")),
        "lintian found errors:\n{text}"
    );
    assert!(
        lint.status.success(),
        "lintian failed ({}):\n{text}",
        lint.status
    );

    maintainer_scripts(&deb, r);
}

/// The maintainer scripts against the unpacked root (`DPKG_ROOT`, which systemd-sysusers and
/// deb-systemd-helper honour; the other variables are the ones dpkg sets), with `systemctl` and `deb-systemd-invoke` replaced by stubs
/// that record their calls, so the host's service manager is never touched.
fn maintainer_scripts(deb: &Path, r: &Path) {
    let control = r.join("DEBIAN");
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&control));
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }
    let etc = r.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::write(etc.join(f), "").unwrap();
    }
    let stubs = r.join("stubs");
    std::fs::create_dir_all(&stubs).unwrap();
    let calls = r.join("stub-calls");
    for stub in ["systemctl", "deb-systemd-invoke"] {
        let p = stubs.join(stub);
        std::fs::write(
            &p,
            format!("#!/bin/sh\necho {stub} \"$@\" >> {}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", stubs.display());
    let script = |name: &str, args: &[&str]| {
        run(Command::new("sh")
            .arg(control.join(name))
            .args(args)
            .env("DPKG_ROOT", r)
            .env("DPKG_MAINTSCRIPT_PACKAGE", "warren")
            .env("DPKG_MAINTSCRIPT_NAME", name)
            .env("PATH", &path));
    };
    script("postinst", &["configure"]);
    let group = std::fs::read_to_string(etc.join("group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("warren:x:")),
        "postinst made no warren group: {group:?}"
    );
    let wants = etc.join("systemd/system/multi-user.target.wants/warren.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/usr/lib/systemd/system/warren.service")
    );
    // Configuring again (an upgrade) changes nothing.
    script("postinst", &["configure", "0.0.9-1"]);
    assert_eq!(std::fs::read_to_string(etc.join("group")).unwrap(), group);
    script("prerm", &["remove"]);
    script("postrm", &["remove"]);
    script("postrm", &["purge"]);
    assert!(
        std::fs::symlink_metadata(&wants).is_err(),
        "purge left the unit enabled"
    );
}

/// A group and users made for one test, removed again when dropped.
struct Accounts {
    group: String,
    users: Vec<String>,
}

impl Accounts {
    fn new() -> Accounts {
        for tool in ["groupadd", "useradd", "userdel", "groupdel", "runuser"] {
            assert!(
                warren_exec::resolve(tool).is_some(),
                "{tool} is missing (passwd, util-linux)"
            );
        }
        let tag = std::process::id();
        let mut a = Accounts {
            group: format!("wsg{tag}"),
            users: Vec::new(),
        };
        // Left by an earlier run of the same PID that was killed before its cleanup.
        for u in [format!("wsi{tag}"), format!("wso{tag}")] {
            let _ = Command::new("userdel").arg(u).output();
        }
        let _ = Command::new("groupdel").arg(&a.group).output();
        run(Command::new("groupadd").arg(&a.group));
        for (user, extra) in [(format!("wsi{tag}"), true), (format!("wso{tag}"), false)] {
            let mut cmd = Command::new("useradd");
            cmd.args(["-M", "-N", "-g", "nogroup", "-s", "/usr/sbin/nologin"]);
            if extra {
                cmd.args(["-G", &a.group]);
            }
            run(cmd.arg(&user));
            a.users.push(user);
        }
        a
    }

    fn member(&self) -> &str {
        &self.users[0]
    }

    fn outsider(&self) -> &str {
        &self.users[1]
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

/// `warren list -o json` against `d` as `user`.
fn list_as(d: &Daemon, user: &str) -> Output {
    Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(WARREN)
        .arg("--state-dir")
        .arg(d.state_dir())
        .args(["list", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_socket_group_may_use_the_api_and_no_one_else() {
    let accounts = Accounts::new();
    let mut d = Daemon::start(&["--socket-group", &accounts.group]);
    let gid = nix::unistd::Group::from_name(&accounts.group)
        .unwrap()
        .unwrap()
        .gid
        .as_raw();
    let sock = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o660);
    assert_eq!((sock.uid(), sock.gid()), (0, gid));
    let dir = std::fs::metadata(d.state_dir()).unwrap();
    assert_eq!(dir.mode() & 0o770, 0o710, "{:o}", dir.mode());
    assert_eq!(dir.gid(), gid);

    let member = list_as(&d, accounts.member());
    assert!(
        member.status.success(),
        "a member of the socket group was refused: {}",
        String::from_utf8_lossy(&member.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&member.stdout).unwrap();
    assert_eq!(listed, serde_json::json!([]));
    let outsider = list_as(&d, accounts.outsider());
    assert!(
        !outsider.status.success(),
        "a user outside the group got in"
    );
    assert!(
        String::from_utf8_lossy(&outsider.stderr).contains("ermission denied"),
        "{}",
        String::from_utf8_lossy(&outsider.stderr)
    );

    // Without the flag the socket is root's alone, as before.
    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let at = d.args.iter().position(|a| a == "--socket-group").unwrap();
    d.args.drain(at..at + 2);
    d.spawn();
    assert_eq!(std::fs::metadata(d.socket()).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(d.state_dir()).unwrap().mode() & 0o770,
        0o700
    );
    assert!(!list_as(&d, accounts.member()).status.success());
    d.ok(&["list"]);
}

#[test]
fn an_unknown_socket_group_stops_the_daemon_at_start() {
    require_host();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(WARREN)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["daemon", "--socket-group", "warren-no-such-group"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--socket-group") && err.contains("addgroup --system warren-no-such-group"),
        "{err}"
    );
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_once_it_serves_and_it_is_stopping() {
    let mut d = Daemon::start(&[]);
    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    // The daemon again, as systemd starts a Type=notify service: NOTIFY_SOCKET names a
    // datagram socket the service manager reads.
    let notify_path = d.state_dir().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(d.log_path())
        .unwrap();
    let child = Command::new(WARREN)
        .args(&d.args)
        .env("WARREN_STATE_DIR", d.state_dir())
        .env("WARREN_VM_CACHE", vm_cache())
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    d.child = Some(child);
    let mut buf = [0u8; 512];
    let n = notify
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no notification: {e}\n{}", d.log()));
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), "READY=1\n");
    // Ready means serving: the socket answers at once, and a reconcile pass has been made.
    std::os::unix::net::UnixStream::connect(d.socket()).expect("READY=1 before the socket");
    let metrics = d.ok(&["metrics"]);
    let passes: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warren_reconcile_passes_total "))
        .unwrap_or_else(|| panic!("no pass counter in:\n{metrics}"))
        .parse()
        .unwrap();
    assert!(passes >= 1.0);
    // Exactly one READY=1.
    notify
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    assert!(notify.recv(&mut buf).is_err(), "a second notification");
    notify
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let n = notify.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), "STOPPING=1\n");
}
