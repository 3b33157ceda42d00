//! The pf anchor as pfctl shows it back (FreeBSD 14/15 formats; see `tests/golden/pf/README.md`)
//! compared with what `pf::render` writes: in sync, drifted, and flushed.

use std::path::Path;
use warren_net::ipam::Subnet;
use warren_net::pf::{drift, parse_rules, render};
use warren_net::ports::PortMapping;
use warren_net::ruleset::{Forward, Ruleset};

fn golden(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/pf")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn rendered() -> String {
    let mut r = Ruleset::new("bridge0", Subnet::parse("10.88.0.0/16").unwrap());
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
    render(&r, "em0").unwrap()
}

#[test]
fn shown_rules_parse() {
    let nat = parse_rules(&golden("pfctl_sn.txt")).unwrap();
    assert_eq!(nat.len(), 3);
    assert_eq!(nat[0].action, "nat");
    assert_eq!(nat[0].to, "!10.88.0.0/16");
    assert_eq!(nat[0].target.as_deref(), Some("(em0)"));
    assert_eq!(nat[1].to_port, Some(8080));
    assert_eq!(nat[1].target_port, Some(80));
    assert_eq!(nat[2].to, "192.0.2.10");
    let rules = parse_rules(&golden("pfctl_sr.txt")).unwrap();
    assert_eq!(rules.len(), 3);
    assert_eq!(rules[0].label.as_deref(), Some("warren:web"));
    assert!(rules[0].quick);
    assert_eq!(rules[0].direction.as_deref(), Some("in"));
    assert_eq!(rules[2].interface.as_deref(), Some("bridge0"));
}

#[test]
fn loaded_anchor_matches_rendering() {
    let d = drift(
        &rendered(),
        &golden("pfctl_sn.txt"),
        &golden("pfctl_sr.txt"),
    )
    .unwrap();
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn drift_is_reported() {
    let d = drift(
        &rendered(),
        &golden("pfctl_sn.txt"),
        &golden("pfctl_sr_drifted.txt"),
    )
    .unwrap();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].starts_with("missing:") && d[0].contains("warren:dns"),
        "{d:#?}"
    );
    assert!(
        d[1].starts_with("unexpected:") && d[1].contains("10.88.0.9"),
        "{d:#?}"
    );
}

#[test]
fn flushed_anchor_is_all_missing() {
    let d = drift(&rendered(), &golden("empty.txt"), &golden("empty.txt")).unwrap();
    assert_eq!(d.len(), 6);
    assert!(d.iter().all(|x| x.starts_with("missing:")));
}
