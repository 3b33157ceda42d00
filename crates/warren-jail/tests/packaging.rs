//! The FreeBSD port: the rc.d script (`files/warren.in`, installed by `USE_RC_SUBR`) is valid
//! sh(1) and an rc.subr script whose daemon(8) command line, run against a stand-in rc.subr,
//! carries the rc.conf settings; the port's pkg-plist lists what its Makefile installs; the
//! vendored crate list and distinfo are there (`cargo xtask port` keeps them in step with
//! Cargo.lock, checked by its own tests).

use std::path::PathBuf;
use std::process::Command;

fn packaging() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../packaging/freebsd")
}

fn read(rel: &str) -> String {
    let p = packaging().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn rc_script_parses_and_uses_rc_subr() {
    let path = packaging().join("port/files/warren.in");
    let out = Command::new("sh")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("sh(1) is needed to check the rc.d script's syntax");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = read("port/files/warren.in");
    for needed in [
        "# PROVIDE: warren",
        "# REQUIRE:",
        "# KEYWORD: shutdown",
        ". /etc/rc.subr",
        "name=\"warren\"",
        "rcvar=\"warren_enable\"",
        "load_rc_config $name",
        "run_rc_command \"$1\"",
        "daemon --storage zfs --zfs-pool",
        "procname=\"%%PREFIX%%/bin/warren\"",
        "command=\"/usr/sbin/daemon\"",
        "pidfile=",
    ] {
        assert!(text.contains(needed), "files/warren.in lacks {needed:?}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_ne!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o111,
        0
    );
}

#[test]
fn port_skeleton_is_consistent() {
    let mk = read("port/Makefile");
    for needed in [
        "PORTNAME=\twarren",
        "USES=\t\tcargo",
        "CARGO_INSTALL_PATH=\tcrates/warren",
        "LICENSE=\tAPACHE20",
        ".include <bsd.port.mk>",
    ] {
        assert!(mk.contains(needed), "port/Makefile lacks {needed:?}");
    }
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        mk.contains(&format!("DISTVERSION=\t{version}")),
        "DISTVERSION is not {version}"
    );
    let plist_text = read("port/pkg-plist");
    let plist: Vec<&str> = plist_text.lines().collect();
    assert_eq!(
        plist,
        [
            "bin/warren",
            "share/bash-completion/completions/warren",
            "share/fish/vendor_completions.d/warren.fish",
            "share/zsh/site-functions/_warren",
        ]
    );
    for file in &plist[1..] {
        assert!(
            mk.contains(&format!("${{STAGEDIR}}${{PREFIX}}/{file}\n")),
            "port/Makefile does not install {file}"
        );
    }
    // The rc.d script is added to the plist by USE_RC_SUBR, the man pages by post-install.
    assert!(mk.contains("USE_RC_SUBR=\twarren"));
    assert!(mk.contains(">> ${TMPPLIST}"));
    assert!(mk.contains(".include \"${.CURDIR}/Makefile.crates\""));
    assert!(read("port/Makefile.crates").contains("CARGO_CRATES=\t"));
    assert!(read("port/distinfo").starts_with("SHA256 (rust/crates/"));
    assert!(!read("port/pkg-descr").trim().is_empty());
}

/// The rc.d script run by sh(1) against a stand-in for rc.subr that prints the command
/// rc.subr would start.
fn rc_command(settings: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let subr = dir.path().join("rc.subr");
    std::fs::write(
        &subr,
        "load_rc_config() { :; }\nrun_rc_command() { echo \"$1|$command $command_args\"; }\n",
    )
    .unwrap();
    let script = read("port/files/warren.in")
        .replace(
            ". /etc/rc.subr",
            &format!("{settings}\n. {}", subr.display()),
        )
        .replace("%%PREFIX%%", "/usr/local");
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg("warren")
        .arg("start")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn rc_settings_reach_the_daemon_command_line() {
    assert_eq!(
        rc_command(""),
        "start|/usr/sbin/daemon -f -S -T warren -R 2 -P /var/run/warren.pid \
         /usr/local/bin/warren --state-dir /var/db/warren daemon --storage zfs --zfs-pool zroot \
         --bridge warren0 "
            .trim_end()
    );
    let custom = rc_command(
        "warren_state_dir=/data/warren\nwarren_zfs_pool=tank/warren\n\
         warren_socket_group=warren\nwarren_flags='--listen none'",
    );
    assert_eq!(
        custom,
        "start|/usr/sbin/daemon -f -S -T warren -R 2 -P /var/run/warren.pid \
         /usr/local/bin/warren --state-dir /data/warren daemon --storage zfs --zfs-pool \
         tank/warren --bridge warren0 --socket-group warren --listen none"
    );
}
