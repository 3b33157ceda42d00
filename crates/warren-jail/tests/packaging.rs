//! The FreeBSD packaging files: the rc.d script is valid sh(1) and an rc.subr script, and the
//! port's pkg-plist lists exactly what its Makefile installs.

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
    let path = packaging().join("rc.d/warren");
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
    let text = read("rc.d/warren");
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
    ] {
        assert!(text.contains(needed), "rc.d/warren lacks {needed:?}");
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
    assert_eq!(plist, ["bin/warren", "etc/rc.d/warren"]);
    assert!(mk.contains("${STAGEDIR}${PREFIX}/etc/rc.d/warren"));
    assert!(!read("port/pkg-descr").trim().is_empty());
}
