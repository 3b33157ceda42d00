//! Golden tests of the pure parsers and renderers: `/proc/net` tables captured from a real
//! Debian 12 host, and the nftables ruleset compared with checked-in files. Set
//! `WARREN_UPDATE_GOLDEN=1` to rewrite the ruleset files after an intended change.

use std::net::IpAddr;
use std::path::PathBuf;

use warren_net::ipam::Subnet;
use warren_net::nft::render;
use warren_net::ports::{
    host_conflicts, parse_proc_net, Listener, PortMapping, ProcNetKind, Proto,
};
use warren_net::ruleset::{Forward, Ruleset};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(name: &str, actual: &str) {
    if std::env::var_os("WARREN_UPDATE_GOLDEN").is_some() {
        std::fs::write(golden(name), actual).unwrap();
    }
    assert_eq!(actual, read(name), "golden file {name} differs");
}

fn l(proto: Proto, addr: &str, port: u16) -> Listener {
    Listener {
        proto,
        addr: addr.parse::<IpAddr>().unwrap(),
        port,
    }
}

#[test]
fn proc_net_tcp() {
    // Listening: 0.0.0.0:18443, 0.0.0.0:2024, 127.0.0.1:18080. The two ends of an established
    // loopback connection and a TIME_WAIT socket are not listeners.
    let got = parse_proc_net(ProcNetKind::Tcp, &read("proc_net_tcp")).unwrap();
    assert_eq!(
        got,
        vec![
            l(Proto::Tcp, "0.0.0.0", 2024),
            l(Proto::Tcp, "0.0.0.0", 18443),
            l(Proto::Tcp, "127.0.0.1", 18080),
        ]
    );
}

#[test]
fn proc_net_tcp6() {
    let got = parse_proc_net(ProcNetKind::Tcp6, &read("proc_net_tcp6")).unwrap();
    assert_eq!(
        got,
        vec![l(Proto::Tcp, "::", 18444), l(Proto::Tcp, "::1", 18081)]
    );
}

#[test]
fn proc_net_udp() {
    // The connected client socket (state 01) is not a listener.
    let got = parse_proc_net(ProcNetKind::Udp, &read("proc_net_udp")).unwrap();
    assert_eq!(
        got,
        vec![
            l(Proto::Udp, "0.0.0.0", 15354),
            l(Proto::Udp, "127.0.0.1", 15353),
        ]
    );
}

#[test]
fn proc_net_udp6() {
    let got = parse_proc_net(ProcNetKind::Udp6, &read("proc_net_udp6")).unwrap();
    assert_eq!(
        got,
        vec![l(Proto::Udp, "::", 15356), l(Proto::Udp, "::1", 15355)]
    );
}

#[test]
fn captured_listeners_refuse_mappings() {
    let mut all = Vec::new();
    for (kind, file) in [
        (ProcNetKind::Tcp, "proc_net_tcp"),
        (ProcNetKind::Tcp6, "proc_net_tcp6"),
        (ProcNetKind::Udp, "proc_net_udp"),
        (ProcNetKind::Udp6, "proc_net_udp6"),
    ] {
        all.extend(parse_proc_net(kind, &read(file)).unwrap());
    }
    let mappings = vec![
        ("ssh-like", PortMapping::parse("2024:22").unwrap()),
        ("free", PortMapping::parse("2025:22").unwrap()),
        ("dns", PortMapping::parse("127.0.0.1:15353:53/udp").unwrap()),
        ("other-ip", PortMapping::parse("10.0.0.1:18080:80").unwrap()),
    ];
    let c = host_conflicts(&mappings, &all);
    let names: Vec<&str> = c.iter().map(|c| c.workload.as_str()).collect();
    assert_eq!(names, ["ssh-like", "dns"]);
    assert_eq!(
        c[0].to_string(),
        "\"ssh-like\" publishes 2024:22/tcp but the host already listens on 0.0.0.0:2024/tcp"
    );
}

fn fwd(workload: &str, mapping: &str, address: &str) -> Forward {
    Forward {
        workload: workload.into(),
        mapping: PortMapping::parse(mapping).unwrap(),
        address: address.parse().unwrap(),
    }
}

#[test]
fn nft_ruleset_with_ports() {
    let mut r = Ruleset::new("warren0", Subnet::parse("10.88.0.0/16").unwrap());
    // Deliberately unsorted: the output is ordered by protocol, port, address, workload.
    r.forwards = vec![
        fwd("dns", "127.0.0.1:5353:53/udp", "10.88.0.3"),
        fwd("web", "8080:80", "10.88.0.2"),
        fwd("git", "0.0.0.0:2222:22/tcp", "10.88.0.4"),
        fwd("git", "127.0.0.1:3000:3000", "10.88.0.4"),
    ];
    let text = render(&r).unwrap();
    check("nft_ruleset_ports.nft", &text);
    let mut shuffled = r.clone();
    shuffled.forwards.reverse();
    assert_eq!(
        render(&shuffled).unwrap(),
        text,
        "rendering is order independent"
    );
}

#[test]
fn nft_ruleset_without_ports_in_a_named_table() {
    let mut r = Ruleset::new("br-test", Subnet::parse("172.30.5.0/24").unwrap());
    r.table = "warren_test".into();
    check("nft_ruleset_empty.nft", &render(&r).unwrap());
}
