//! Property tests: every valid [`JailSpec`] survives rendering to a `jail.conf` fragment and to
//! `jail -c` arguments and parsing back, whatever quotes, backslashes, dollars, braces or
//! comment markers its strings hold; and the parser never panics on arbitrary text.

use proptest::prelude::*;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use warren_jail::conf::{parse_conf, JailNet, JailSpec};

/// Printable text including every character that is special in jail.conf.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\''),
            Just('\\'),
            Just('$'),
            Just('{'),
            Just('}'),
            Just(';'),
            Just(','),
            Just('='),
            Just('#'),
            Just('/'),
            Just('*'),
            Just(' '),
            Just('é'),
            proptest::char::range('a', 'z'),
        ],
        1..24,
    )
    .prop_map(|v| v.into_iter().collect::<String>())
    .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn ifname() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_.]{0,14}"
}

fn net() -> impl Strategy<Value = JailNet> {
    prop_oneof![
        Just(JailNet::Inherit),
        Just(JailNet::Disable),
        proptest::option::of(ifname()).prop_map(|interface| JailNet::Vnet { interface }),
        (
            ifname(),
            proptest::collection::vec((any::<u32>(), 0u8..=32), 1..4)
        )
            .prop_map(|(interface, a)| JailNet::Alias {
                interface,
                addrs: a
                    .into_iter()
                    .map(|(ip, p)| (Ipv4Addr::from(ip), p))
                    .collect(),
            }),
    ]
}

prop_compose! {
    fn spec()(
        name in "[A-Za-z_][A-Za-z0-9_-]{0,20}",
        path in proptest::collection::vec(text().prop_filter("no slash or dot name", |s| !s.contains('/') && s != "." && s != ".."), 1..4),
        hostname in "[a-z0-9]{1,10}(\\.[a-z0-9][a-z0-9-]{0,8})?",
        net in net(),
        allow in proptest::collection::btree_set("(raw_sockets|mount\\.devfs|mount\\.zfs|sysvipc|chflags|set_hostname)", 0..4),
        enforce_statfs in 0u8..=2,
        devfs_ruleset in proptest::option::of(any::<u32>()),
        mount_devfs in any::<bool>(),
        exec_start in proptest::option::of(text()),
        exec_stop in proptest::option::of(text()),
        persist in any::<bool>(),
        children_max in any::<u32>(),
    ) -> JailSpec {
        JailSpec {
            name,
            path: PathBuf::from(format!("/{}", path.join("/"))),
            hostname,
            net,
            allow,
            enforce_statfs,
            devfs_ruleset,
            mount_devfs,
            exec_start,
            exec_stop,
            persist,
            children_max,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn conf_round_trips(s in spec()) {
        let text = s.render_conf().unwrap();
        prop_assert_eq!(parse_conf(&text).unwrap(), s.clone(), "{}", text);
    }

    #[test]
    fn args_round_trip(s in spec()) {
        let args = s.create_args().unwrap();
        prop_assert_eq!(JailSpec::from_args(&args).unwrap(), s);
    }

    #[test]
    fn parser_never_panics(t in "\\PC{0,200}") {
        let _ = parse_conf(&t);
    }
}
