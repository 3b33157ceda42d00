//! `jls --libxo json` output of FreeBSD 13–15 (see `tests/golden/jls/README.md` for where each
//! file's shape comes from) parsed into observed jail state.

use std::path::Path;
use warren_jail::jls::{parse_jls, JailState};

fn golden(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/jls")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn verbose_listing_of_14() {
    let jails = parse_jls(&golden("jls_v_14.json")).unwrap();
    assert_eq!(jails.len(), 3);
    assert_eq!(jails[0].jid, 1);
    assert_eq!(jails[0].name, "warren-web");
    assert_eq!(jails[0].hostname, "web");
    assert_eq!(jails[0].path, "/srv/warren/workloads/web/rootfs");
    assert_eq!(jails[0].cpusetid, Some(3));
    assert!(jails[0].ipv4.is_empty() && jails[0].ipv6.is_empty());
    assert_eq!(
        jails[1].ipv4,
        vec![
            "192.0.2.7".parse::<std::net::Ipv4Addr>().unwrap(),
            "192.0.2.8".parse().unwrap()
        ]
    );
    assert_eq!(
        jails[1].ipv6,
        vec!["2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap()]
    );
    assert_eq!(jails[1].state, JailState::Active);
    assert_eq!(jails[2].state, JailState::Dying);
}

#[test]
fn pretty_listing_of_15() {
    let jails = parse_jls(&golden("jls_v_15_pretty.json")).unwrap();
    assert_eq!(jails.len(), 1);
    assert_eq!(jails[0].jid, 7);
    assert_eq!(jails[0].name, "warren-warren-ingress");
    assert_eq!(
        jails[0].ipv4,
        vec!["10.88.0.2".parse::<std::net::Ipv4Addr>().unwrap()]
    );
}

#[test]
fn empty_listing() {
    assert!(parse_jls(&golden("jls_empty.json")).unwrap().is_empty());
}

#[test]
fn default_listing_names_jails_by_jid() {
    let jails = parse_jls(&golden("jls_default.json")).unwrap();
    assert_eq!(jails.len(), 2);
    assert_eq!(jails[0].name, "1");
    assert_eq!(
        jails[0].ipv4,
        vec!["192.0.2.7".parse::<std::net::Ipv4Addr>().unwrap()]
    );
    assert!(jails[1].ipv4.is_empty());
    assert_eq!(jails[1].cpusetid, None);
}
