//! Tests of the store: every table through the public API, migrations from older schemas.
use super::*;
use crate::migrations::migrations;
use rusqlite::Connection;
use std::collections::BTreeMap;
use warren_model::event::EventKind;
use warren_model::plan::LastExit;
use warren_model::Source;
use warren_model::{DesiredState, VolumeSpec, WorkloadSpec};

fn spec(name: &str) -> WorkloadSpec {
    WorkloadSpec::new(name, Source::World("busybox".into()))
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("warren.db")).unwrap();
    (dir, store)
}

#[test]
fn migrations_are_valid() {
    migrations().validate().unwrap();
}

#[test]
fn apply_tracks_generations_and_changes() {
    let (_d, s) = open();
    let o = s.apply(&[spec("a"), spec("b")], &[]).unwrap();
    assert_eq!(o.generation, 1);
    assert_eq!(o.created, ["a", "b"]);
    // Same content: nothing changes, generation stays.
    let o = s.apply(&[spec("a"), spec("b")], &[]).unwrap();
    assert_eq!(o.generation, 1);
    assert_eq!(o.unchanged, ["a", "b"]);
    let mut a2 = spec("a");
    a2.command = vec!["true".into()];
    let o = s.apply(&[a2.clone()], &["b".into(), "zz".into()]).unwrap();
    assert_eq!(o.generation, 2);
    assert_eq!(o.updated, ["a"]);
    assert_eq!(o.removed, ["b"]);
    let d = s.desired().unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d["a"].generation, 2);
    assert_eq!(d["a"].hash, a2.hash());
    assert_eq!(d["a"].spec, a2);
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.db");
    {
        let s = Store::open(&path).unwrap();
        s.apply(&[spec("a")], &[]).unwrap();
        s.set_state("a", DesiredState::Stopped).unwrap();
        s.put_observed(
            "a",
            &ObservedRow {
                provisioned: Some("h".into()),
                pid: Some(7),
                last_exit: Some(LastExit::Exited {
                    code: 3,
                    signal: None,
                    oom_killed: true,
                    at_ms: 9,
                }),
                failures: 2,
                restarts: 4,
                started_ms: Some(1),
                restart_generation: 5,
            },
        )
        .unwrap();
        s.add_event(
            Some("a"),
            &EventKind::Started {
                pid: 7,
                generation: 2,
            },
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.generation().unwrap(), 2);
    assert_eq!(
        s.get_desired("a").unwrap().unwrap().spec.state,
        DesiredState::Stopped
    );
    let o = &s.observed().unwrap()["a"];
    assert_eq!(o.pid, Some(7));
    assert_eq!(o.restarts, 4);
    assert_eq!(o.restart_generation, 5);
    assert!(matches!(
        o.last_exit,
        Some(LastExit::Exited { code: 3, .. })
    ));
    let ev = s.events(0, Some("a"), 10).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].kind,
        EventKind::Started {
            pid: 7,
            generation: 2
        }
    );
    assert!(s.events(0, Some("other"), 10).unwrap().is_empty());
}

#[test]
fn restart_requests_grow_and_go_with_the_workload() {
    let (_d, s) = open();
    s.apply(&[spec("a")], &[]).unwrap();
    let generation = s.generation().unwrap();
    assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 0);
    assert_eq!(s.request_restart("a").unwrap(), 1);
    assert_eq!(s.request_restart("a").unwrap(), 2);
    // A restart request is not a spec change.
    assert_eq!(s.generation().unwrap(), generation);
    assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 2);
    assert_eq!(s.desired().unwrap()["a"].restart_generation, 2);
    // Names without a stored spec (the routing workload) are counted too.
    assert_eq!(s.request_restart("router").unwrap(), 1);
    assert_eq!(s.restart_generation("router").unwrap(), 1);
    s.apply(&[], &["a".to_string()]).unwrap();
    s.apply(&[spec("a")], &[]).unwrap();
    assert_eq!(s.get_desired("a").unwrap().unwrap().restart_generation, 0);
}

#[test]
fn volumes_and_snapshot_marks_persist() {
    let (_d, s) = open();
    let v = VolumeSpec {
        name: "media".into(),
        size: Some(1 << 30),
        snapshots: None,
        site: None,
    };
    s.put_volumes(std::slice::from_ref(&v), &[]).unwrap();
    assert_eq!(s.volumes().unwrap()["media"], v);
    s.put_volumes(&[], &["media".into()]).unwrap();
    assert!(s.volumes().unwrap().is_empty());
    assert_eq!(s.last_auto_snapshot("workload/web").unwrap(), None);
    s.mark_auto_snapshot("workload/web", 42).unwrap();
    s.mark_auto_snapshot("workload/web", 43).unwrap();
    assert_eq!(s.last_auto_snapshot("workload/web").unwrap(), Some(43));
}

#[test]
fn addresses_are_unique_stable_and_released() {
    let (d, s) = open();
    let next =
        |taken: &BTreeMap<String, std::net::Ipv4Addr>| -> Result<std::net::Ipv4Addr, String> {
            let used: Vec<u32> = taken.values().map(|a| u32::from(*a)).collect();
            let mut n = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 2));
            while used.contains(&n) {
                n += 1;
            }
            Ok(n.into())
        };
    let keep = |name: &'static str| {
        move |taken: &BTreeMap<String, std::net::Ipv4Addr>| match taken.get(name) {
            Some(a) => Ok(*a),
            None => next(taken),
        }
    };
    let a = s.assign_address("a", keep("a")).unwrap().unwrap();
    let b = s.assign_address("b", keep("b")).unwrap().unwrap();
    assert_ne!(a, b);
    assert_eq!(s.assign_address("a", keep("a")).unwrap().unwrap(), a);
    let failed: Result<std::net::Ipv4Addr, String> =
        s.assign_address("c", |_| Err("full".to_string())).unwrap();
    assert_eq!(failed.unwrap_err(), "full");
    assert!(!s.addresses().unwrap().contains_key("c"));
    // The same address for a second name is refused by the table itself.
    assert!(s.assign_address("c", |_| Ok::<_, String>(a)).is_err());
    drop(s);
    let s = Store::open(&d.path().join("warren.db")).unwrap();
    assert_eq!(s.addresses().unwrap()["b"], b);
    assert!(s.release_address("a").unwrap());
    assert!(!s.release_address("a").unwrap());
    assert_eq!(s.assign_address("c", keep("c")).unwrap().unwrap(), a);
}

#[test]
fn userns_slots_are_unique_stable_and_released() {
    let (d, s) = open();
    assert_eq!(s.assign_userns_slot("a", 3).unwrap(), Some(0));
    assert_eq!(s.assign_userns_slot("b", 3).unwrap(), Some(1));
    assert_eq!(s.assign_userns_slot("a", 3).unwrap(), Some(0));
    assert_eq!(s.assign_userns_slot("c", 3).unwrap(), Some(2));
    assert_eq!(s.assign_userns_slot("d", 3).unwrap(), None);
    assert_eq!(s.userns_slot("d").unwrap(), None);
    drop(s);
    let s = Store::open(&d.path().join("warren.db")).unwrap();
    assert_eq!(s.userns_slot("b").unwrap(), Some(1));
    assert!(s.release_userns_slot("b").unwrap());
    assert!(!s.release_userns_slot("b").unwrap());
    assert_eq!(s.assign_userns_slot("d", 3).unwrap(), Some(1));
    assert_eq!(
        s.userns_slots().unwrap(),
        BTreeMap::from([("a".into(), 0), ("c".into(), 2), ("d".into(), 1)])
    );
    // The table itself refuses one slot for two names.
    let dup = s
        .conn()
        .execute("INSERT INTO userns_slots (name, slot) VALUES ('e', 0)", []);
    assert!(dup.is_err());
}

#[test]
fn images_are_stored_moved_and_removed() {
    let (d, s) = open();
    let rec = |reference: &str, id: &str| ImageRecord {
        reference: reference.into(),
        id: id.into(),
        manifest_digest: None,
        config: serde_json::json!({"cmd": ["/bin/sh"]}),
        layers: vec!["oci-a".into(), format!("oci-{id}")],
        size: 10,
        created_ms: 1,
    };
    assert!(s.image("app:v1").unwrap().is_none());
    s.put_image(&rec("app:v1", "1")).unwrap();
    s.put_image(&rec("app:v2", "2")).unwrap();
    assert_eq!(s.image("app:v1").unwrap().unwrap().top(), Some("oci-1"));
    // Re-importing a tag moves it.
    s.put_image(&rec("app:v1", "3")).unwrap();
    drop(s);
    let s = Store::open(&d.path().join("warren.db")).unwrap();
    let all = s.images().unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["app:v1", "app:v2"]);
    assert_eq!(all["app:v1"].id, "3");
    assert!(s.remove_image("app:v2").unwrap());
    assert!(!s.remove_image("app:v2").unwrap());
    assert_eq!(s.images().unwrap().len(), 1);
}

#[test]
fn recipe_builds_are_recorded_per_version() {
    let (_d, s) = open();
    let b = |v: &str, key: &str| RecipeBuild {
        name: "lang/ruby".into(),
        version: v.into(),
        key: key.into(),
        world: format!("rcp-{key}"),
        parent: "world busybox".into(),
        created_ms: 1,
    };
    s.put_recipe_build(&b("2.1.0", "a")).unwrap();
    s.put_recipe_build(&b("2.1.1", "b")).unwrap();
    s.put_recipe_build(&b("2.1.0", "c")).unwrap();
    let all = s.recipe_builds().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].key, "c");
    assert!(s.remove_recipe_build("lang/ruby", "2.1.1").unwrap());
    assert!(!s.remove_recipe_build("lang/ruby", "2.1.1").unwrap());
    assert_eq!(s.recipe_builds().unwrap().len(), 1);
}

#[test]
fn operator_keys_and_meta() {
    let (_d, s) = open();
    s.set_meta(&[("claim_code", Some("ABC")), ("claim_opened_at", Some("10"))])
        .unwrap();
    assert_eq!(s.meta("claim_code").unwrap().as_deref(), Some("ABC"));
    let k = OperatorKeyRow {
        fingerprint: "SHA256:x".into(),
        public_key: "pk".into(),
        name: "alice".into(),
        added_ms: 5,
    };
    assert!(s
        .add_operator_key(&k, &["claim_code", "claim_opened_at"])
        .unwrap());
    assert_eq!(
        s.meta("claim_code").unwrap(),
        None,
        "enrolment closes the window"
    );
    assert!(!s.add_operator_key(&k, &[]).unwrap());
    assert_eq!(s.operator_keys().unwrap(), std::slice::from_ref(&k));
    assert!(s.revoke_operator_key("SHA256:x").unwrap());
    assert!(!s.revoke_operator_key("SHA256:x").unwrap());
    assert!(s.operator_keys().unwrap().is_empty());
    assert_eq!(s.meta("generation").unwrap().as_deref(), Some("0"));
}

#[test]
fn events_are_bounded_and_ordered() {
    let (_d, s) = open();
    for i in 0..(EVENT_LIMIT + 250) {
        s.add_event(None, &EventKind::error(i.to_string())).unwrap();
    }
    let c = s.conn();
    let n: i64 = c
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    drop(c);
    assert!(n <= EVENT_LIMIT + 100, "{n} events kept");
    let last = s.events(0, None, 3).unwrap();
    assert_eq!(
        last.iter().map(|e| e.kind.to_string()).collect::<Vec<_>>(),
        ["10247", "10248", "10249"]
    );
}

#[test]
fn events_round_trip_with_their_fields() {
    let (_d, s) = open();
    let crash = EventKind::Exited {
        code: 137,
        signal: Some(9),
        oom_killed: true,
    };
    let added = s.add_event(Some("web"), &crash).unwrap();
    s.add_event(None, &EventKind::WorldCreated { name: "w".into() })
        .unwrap();
    let ev = s.events(0, None, 10).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0], added);
    assert_eq!(ev[0].kind, crash);
    assert_eq!(ev[0].workload.as_deref(), Some("web"));
    assert_eq!(ev[1].kind, EventKind::WorldCreated { name: "w".into() });
    // The kind word and the rendered message are stored beside the JSON.
    let (kind, message, data): (String, String, String) = s
        .conn()
        .query_row(
            "SELECT kind, message, data FROM events WHERE id = ?1",
            [added.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(kind, "exited");
    assert_eq!(message, "killed by the memory limit (code 137)");
    let v: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(v["type"], "exited");
    assert_eq!(v["signal"], 9);
    assert_eq!(v["oom_killed"], true);
}

#[test]
fn events_from_before_typed_events_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warren.db");
    {
        // A database at the schema before the `data` column, with an event in it.
        let mut c = Connection::open(&path).unwrap();
        migrations().to_version(&mut c, 7).unwrap();
        c.execute(
            "INSERT INTO events (ts_ms, workload, kind, message)
             VALUES (5, 'a', 'exited', 'exit code 3')",
            [],
        )
        .unwrap();
    }
    let s = Store::open(&path).unwrap();
    // A row whose JSON this version does not know falls back the same way.
    s.conn()
        .execute(
            "INSERT INTO events (ts_ms, workload, kind, message, data)
             VALUES (6, 'a', 'future', 'later', '{\"type\":\"not-yet\"}')",
            [],
        )
        .unwrap();
    s.add_event(Some("a"), &EventKind::Lost { pid: 4 }).unwrap();
    let ev = s.events(0, Some("a"), 10).unwrap();
    let kinds: Vec<&EventKind> = ev.iter().map(|e| &e.kind).collect();
    assert_eq!(
        kinds,
        [
            &EventKind::Legacy {
                kind: "exited".into(),
                message: "exit code 3".into()
            },
            &EventKind::Legacy {
                kind: "future".into(),
                message: "later".into()
            },
            &EventKind::Lost { pid: 4 },
        ]
    );
    assert_eq!(ev[0].kind.category(), "exited");
    assert_eq!(ev[0].kind.to_string(), "exit code 3");
}

#[test]
fn failed_transaction_changes_nothing() {
    let (_d, s) = open();
    s.apply(&[spec("a")], &[]).unwrap();
    {
        let c = s.conn();
        c.execute_batch("CREATE TRIGGER boom BEFORE INSERT ON workloads WHEN NEW.name = 'bad' BEGIN SELECT RAISE(ABORT, 'boom'); END;")
            .unwrap();
    }
    let mut a2 = spec("a");
    a2.command = vec!["x".into()];
    assert!(s.apply(&[a2, spec("bad")], &[]).is_err());
    let d = s.desired().unwrap();
    assert_eq!(d.len(), 1);
    assert!(d["a"].spec.command.is_empty());
    assert_eq!(s.generation().unwrap(), 1);
}
