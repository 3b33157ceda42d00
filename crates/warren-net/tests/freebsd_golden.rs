//! FreeBSD host networking through the recording executor: the bridge created, repaired or
//! left alone (and a failure at each creation step undone), forwarding, the external
//! interface, and the pf anchor loaded only when its text changed or the kernel's copy
//! drifted. Output shapes in `tests/golden/freebsd` and `tests/golden/pf` (provenance in their
//! READMEs).

use std::net::Ipv4Addr;
use std::path::Path;

use warren_exec::RecordingExecutor;
use warren_net::freebsd::{
    ensure_bridge, ensure_forwarding, external_interface, parse_inet, parse_route_interface,
    parse_up, PfAnchor,
};
use warren_net::ipam::Subnet;
use warren_net::pf::render;
use warren_net::ports::PortMapping;
use warren_net::ruleset::{Forward, Ruleset};

fn golden(dir: &str, name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dir)
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn subnet() -> Subnet {
    Subnet::parse("10.88.0.0/16").unwrap()
}

#[test]
fn ifconfig_and_route_output_parse() {
    let up = golden("freebsd", "ifconfig_bridge.txt");
    assert_eq!(
        parse_inet(&up).unwrap(),
        [(Ipv4Addr::new(10, 88, 0, 1), 16)]
    );
    assert!(parse_up(&up));
    let bare = golden("freebsd", "ifconfig_bridge_bare.txt");
    assert_eq!(parse_inet(&bare).unwrap(), []);
    assert!(!parse_up(&bare));
    assert_eq!(
        parse_route_interface(&golden("freebsd", "route_get_default.txt")).as_deref(),
        Some("em0")
    );
    assert_eq!(
        parse_route_interface("route: route has not been found\n"),
        None
    );
    assert_eq!(parse_route_interface("  interface: em0; pass all\n"), None);
    for bad in [
        "\tinet 10.88.0.1 broadcast 10.88.255.255\n",
        "\tinet 10.88.0.1 netmask 0xffff00ff\n",
        "\tinet 10.88.0.1 netmask zz\n",
        "\tinet nope netmask 0xffffff00\n",
    ] {
        assert!(parse_inet(bad).unwrap_err().starts_with("line 1"), "{bad}");
    }
}

#[test]
fn bridge_created_when_missing() {
    let rec = RecordingExecutor::new();
    rec.expect_err(
        "ifconfig warren0",
        "ifconfig: interface warren0 does not exist\n",
    )
    .expect_ok("ifconfig bridge create", "bridge3\n")
    .expect_ok("ifconfig bridge3 name warren0", "warren0\n")
    .expect_ok("ifconfig warren0 inet 10.88.0.1/16 up", "");
    assert_eq!(
        ensure_bridge(&rec, "warren0", &subnet()).unwrap(),
        ["created bridge warren0 (10.88.0.0/16)"]
    );
    rec.finish();
}

#[test]
fn bridge_creation_failures_are_undone() {
    let rec = RecordingExecutor::new();
    rec.expect_err(
        "ifconfig warren0",
        "ifconfig: interface warren0 does not exist\n",
    )
    .expect_ok("ifconfig bridge create", "bridge3\n")
    .expect_err("ifconfig bridge3 name warren0", "ifconfig: File exists\n")
    .expect_ok("ifconfig bridge3 destroy", "");
    assert!(ensure_bridge(&rec, "warren0", &subnet())
        .unwrap_err()
        .to_string()
        .contains("File exists"));
    rec.finish();

    rec.expect_err(
        "ifconfig warren0",
        "ifconfig: interface warren0 does not exist\n",
    )
    .expect_ok("ifconfig bridge create", "bridge3\n")
    .expect_ok("ifconfig bridge3 name warren0", "warren0\n")
    .expect_err(
        "ifconfig warren0 inet 10.88.0.1/16 up",
        "ifconfig: ioctl: busy\n",
    )
    .expect_ok("ifconfig warren0 destroy", "");
    assert!(ensure_bridge(&rec, "warren0", &subnet()).is_err());
    rec.finish();

    // Garbage from `bridge create` is refused before anything is renamed.
    rec.expect_err(
        "ifconfig warren0",
        "ifconfig: interface warren0 does not exist\n",
    )
    .expect_ok("ifconfig bridge create", "em0; reboot\n");
    assert!(ensure_bridge(&rec, "warren0", &subnet())
        .unwrap_err()
        .to_string()
        .contains("not a new bridge"));
    rec.finish();

    // Any other failure to look is an error, not a reason to create.
    rec.expect_err("ifconfig warren0", "ifconfig: socket: Permission denied\n");
    assert!(ensure_bridge(&rec, "warren0", &subnet()).is_err());
    rec.finish();
}

#[test]
fn existing_bridge_is_repaired_or_left_alone() {
    let rec = RecordingExecutor::new();
    rec.expect_ok(
        "ifconfig warren0",
        &golden("freebsd", "ifconfig_bridge.txt"),
    );
    assert!(ensure_bridge(&rec, "warren0", &subnet())
        .unwrap()
        .is_empty());
    rec.finish();

    rec.expect_ok(
        "ifconfig warren0",
        &golden("freebsd", "ifconfig_bridge_bare.txt"),
    )
    .expect_ok("ifconfig warren0 inet 10.88.0.1/16 alias", "")
    .expect_ok("ifconfig warren0 up", "");
    assert_eq!(
        ensure_bridge(&rec, "warren0", &subnet()).unwrap(),
        [
            "gave bridge warren0 its address 10.88.0.1/16",
            "brought bridge warren0 up"
        ]
    );
    rec.finish();

    for hostile in ["warren0 destroy", "-warren", "a-very-long-bridge-name", ""] {
        assert!(
            ensure_bridge(&rec, hostile, &subnet()).is_err(),
            "{hostile}"
        );
    }
    rec.finish();
}

#[test]
fn forwarding_and_external_interface() {
    let rec = RecordingExecutor::new();
    rec.expect_ok("sysctl -n net.inet.ip.forwarding", "0\n")
        .expect_ok(
            "sysctl net.inet.ip.forwarding=1",
            "net.inet.ip.forwarding: 0 -> 1\n",
        )
        .expect_ok("sysctl -n net.inet.ip.forwarding", "1\n")
        .expect_ok(
            "route -n get default",
            &golden("freebsd", "route_get_default.txt"),
        )
        .expect_err("route -n get default", "route: route has not been found\n")
        .expect_ok("route -n get default", "   route to: default\n");
    assert!(ensure_forwarding(&rec).unwrap());
    assert!(!ensure_forwarding(&rec).unwrap());
    assert_eq!(external_interface(&rec).unwrap(), "em0");
    assert!(external_interface(&rec).is_err());
    assert!(external_interface(&rec)
        .unwrap_err()
        .to_string()
        .contains("interface:"));
    rec.finish();
}

fn rendered(extra: bool) -> String {
    let mut r = Ruleset::new("bridge0", subnet());
    r.forwards.push(Forward {
        workload: "web".into(),
        mapping: PortMapping::parse("8080:80").unwrap(),
        address: "10.88.0.2".parse().unwrap(),
    });
    r.forwards.push(Forward {
        workload: "dns".into(),
        mapping: PortMapping::parse("192.0.2.10:53:53/udp").unwrap(),
        address: "10.88.0.3".parse().unwrap(),
    });
    if extra {
        r.forwards.push(Forward {
            workload: "git".into(),
            mapping: PortMapping::parse("2222:22").unwrap(),
            address: "10.88.0.4".parse().unwrap(),
        });
    }
    render(&r, "em0").unwrap()
}

#[test]
fn anchor_kept_by_a_restarted_daemon_when_in_sync() {
    let rec = RecordingExecutor::new();
    let mut a = PfAnchor::new("warren").unwrap();
    assert_eq!(a.name(), "warren/warren");
    assert!(!a.loaded());
    rec.expect_ok(
        "pfctl -a warren/warren -s nat",
        &golden("pf", "pfctl_sn.txt"),
    )
    .expect_ok(
        "pfctl -a warren/warren -s rules",
        &golden("pf", "pfctl_sr.txt"),
    );
    assert!(!a.sync(&rec, &rendered(false)).unwrap());
    assert!(a.loaded());
    // Unchanged text: no command at all.
    assert!(!a.sync(&rec, &rendered(false)).unwrap());
    rec.finish();
    // A new published port: loaded in one transaction.
    rec.expect_ok("pfctl -a warren/warren -f -", "");
    assert!(a.sync(&rec, &rendered(true)).unwrap());
    assert!(!a.sync(&rec, &rendered(true)).unwrap());
    rec.finish();
}

#[test]
fn anchor_loaded_at_start_when_drifted_and_repaired_when_flushed() {
    let rec = RecordingExecutor::new();
    let mut a = PfAnchor::new("warren").unwrap();
    rec.expect_ok(
        "pfctl -a warren/warren -s nat",
        &golden("pf", "pfctl_sn.txt"),
    )
    .expect_ok(
        "pfctl -a warren/warren -s rules",
        &golden("pf", "pfctl_sr_drifted.txt"),
    )
    .expect_ok("pfctl -a warren/warren -f -", "");
    assert!(a.sync(&rec, &rendered(false)).unwrap());
    rec.finish();

    // In sync: repair only looks.
    rec.expect_ok(
        "pfctl -a warren/warren -s nat",
        &golden("pf", "pfctl_sn.txt"),
    )
    .expect_ok(
        "pfctl -a warren/warren -s rules",
        &golden("pf", "pfctl_sr.txt"),
    );
    assert!(a.repair(&rec).unwrap().is_empty());
    rec.finish();

    // Flushed by an operator's `pfctl -F all`: reloaded.
    rec.expect_ok("pfctl -a warren/warren -s nat", &golden("pf", "empty.txt"))
        .expect_ok(
            "pfctl -a warren/warren -s rules",
            &golden("pf", "empty.txt"),
        )
        .expect_ok("pfctl -a warren/warren -f -", "");
    assert_eq!(a.repair(&rec).unwrap().len(), 6);
    rec.finish();

    // A failed load is reported and the anchor is not taken as loaded.
    let mut b = PfAnchor::new("warren").unwrap();
    rec.expect_ok("pfctl -a warren/warren -s nat", "")
        .expect_ok("pfctl -a warren/warren -s rules", "")
        .expect_err(
            "pfctl -a warren/warren -f -",
            "pfctl: Syntax error in config file\n",
        );
    assert!(b.sync(&rec, &rendered(false)).is_err());
    assert!(!b.loaded());
    assert!(b.repair(&rec).unwrap().is_empty());
    rec.finish();

    // Garbage from pfctl is an error naming the line, never a silent "in sync".
    let mut c = PfAnchor::new("warren").unwrap();
    rec.expect_ok("pfctl -a warren/warren -s nat", "nat gibberish\n")
        .expect_ok("pfctl -a warren/warren -s rules", "");
    assert!(c
        .sync(&rec, &rendered(false))
        .unwrap_err()
        .to_string()
        .contains("line 1"));
    rec.finish();
    assert!(PfAnchor::new("warren/../x").is_err());
}
