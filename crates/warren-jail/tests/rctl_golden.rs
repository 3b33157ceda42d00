//! rctl rules: warren's resource limits rendered and parsed back (property tests), and
//! `rctl` / `rctl -h` / `rctl -h -u` output of FreeBSD 13–15 parsed (golden files; see
//! `tests/golden/rctl/README.md`).

use proptest::prelude::*;
use std::path::Path;
use warren_jail::rctl::{jail_rules, parse_rules, parse_usage, rules_for, Rule, RESOURCES};
use warren_model::Resources;

fn golden(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/rctl")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn plain_and_humanized_listings_agree() {
    let plain = parse_rules(&golden("rctl_list.txt")).unwrap();
    let human = parse_rules(&golden("rctl_list_h.txt")).unwrap();
    assert_eq!(plain.len(), 7);
    assert_eq!(plain, human);
    assert_eq!(plain[4].per.as_deref(), Some("user"));
    assert_eq!(plain[5].action, "sigterm");
    let r = Resources {
        memory: Some(512 << 20),
        cpus: Some(0.5),
        pids: Some(256),
        disk: None,
    };
    // What warren would add for warren-web is exactly what the listing shows for it.
    assert_eq!(
        jail_rules(&plain, "warren-web"),
        rules_for("warren-web", &r).unwrap()
    );
}

#[test]
fn usage() {
    let u = parse_usage(&golden("rctl_usage_h.txt")).unwrap();
    assert_eq!(u.len(), 25);
    assert_eq!(u["memoryuse"], 42 << 20);
    assert_eq!(u["vmemoryuse"], 3 << 29);
    assert_eq!(u["maxproc"], 4);
    assert_eq!(u["writebps"], 12 << 10);
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        prop::sample::select(vec!["process", "user", "loginclass", "jail"]),
        "[A-Za-z0-9_.-]{1,20}",
        prop::sample::select(RESOURCES.to_vec()),
        prop::sample::select(vec![
            "deny", "log", "devctl", "throttle", "sigterm", "sigkill",
        ]),
        proptest::option::of(any::<u64>()),
        proptest::option::of(prop::sample::select(vec![
            "process",
            "user",
            "loginclass",
            "jail",
        ])),
    )
        .prop_map(|(s, id, res, act, amount, per)| Rule {
            subject: s.into(),
            subject_id: id,
            resource: res.into(),
            action: act.into(),
            per: amount.and(per.map(str::to_string)),
            amount,
        })
}

proptest! {
    #[test]
    fn rule_round_trips(r in rule()) {
        prop_assert_eq!(parse_rules(&format!("{r}\n")).unwrap(), vec![r]);
    }

    #[test]
    fn resources_round_trip(mem in proptest::option::of(1u64..u64::MAX), pids in proptest::option::of(1u64..1_000_000), pcpu in proptest::option::of(1u32..10_000)) {
        let r = Resources { memory: mem, cpus: pcpu.map(|p| f64::from(p) / 100.0), pids, disk: None };
        let rules = rules_for("warren-w", &r).unwrap();
        let text: String = rules.iter().map(|r| format!("{r}\n")).collect();
        let back = parse_rules(&text).unwrap();
        prop_assert_eq!(&back, &rules);
        let get = |res: &str| back.iter().find(|x| x.resource == res).and_then(|x| x.amount);
        prop_assert_eq!(get("memoryuse"), mem);
        prop_assert_eq!(get("maxproc"), pids);
        prop_assert_eq!(get("pcpu"), pcpu.map(u64::from));
    }

    #[test]
    fn parsers_never_panic(t in "\\PC{0,120}") {
        let _ = parse_rules(&t);
        let _ = parse_usage(&t);
    }
}
