//! Tier-2 test of the start order: a workload `after` a dependency that must be healthy stays
//! provisioned but not started, shown `waiting` with the reason, until the dependency's health
//! check passes; then the reconciler starts it without any further operator action. An
//! operator restart while the dependency is unhealthy again stops it and leaves it waiting.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_dependent_waits_for_its_dependency_to_become_healthy() {
    let d = Daemon::start(&[]);
    // db turns healthy only once /tmp/ready exists (the test creates it).
    let out = d.apply(
        "w.toml",
        r#"[workload.db]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
health = { exec = ["test", "-f", "/tmp/ready"], interval = "1s", retries = 1, on_unhealthy = "none" }

[workload.web]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
after = [{ name = "db", wait = "healthy" }]
"#,
    );
    assert!(
        out.contains("then start web: waiting for db (healthy)"),
        "{out}"
    );
    d.wait_running("db");
    let v = d.wait_for("web", 30, "waiting", |v| v["state"] == "waiting");
    assert_eq!(v["waiting"], "waiting for db (healthy)", "{v:#}");

    // db's checks fail (unhealthy, left running): web keeps waiting and has never run.
    d.wait_for("db", 10, "unhealthy", |v| v["health"] == "unhealthy");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let v = d.get("web");
        assert_eq!(v["state"], "waiting", "{v:#}");
        assert!(v["pid"].is_null(), "{v:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(d.get("db")["health"], "unhealthy");
    let list = d.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("web ") && l.contains("waiting")),
        "{list}"
    );

    d.ok(&["exec", "db", "--", "touch", "/tmp/ready"]);
    d.wait_for("db", 10, "healthy", |v| v["health"] == "healthy");
    d.wait_running("web");
    let v = d.get("web");
    assert!(v["waiting"].is_null(), "{v:#}");
    let events = d.ok(&["events", "--workload", "web", "-n", "50"]);
    assert!(events.contains("started"), "{events}");

    // Restarts follow the order too: with db unhealthy again, `restart web` stops it and
    // answers that it waits; it runs again once db is healthy.
    let first = d.wait_running("web");
    d.ok(&["exec", "db", "--", "rm", "/tmp/ready"]);
    d.wait_for("db", 10, "unhealthy", |v| v["health"] == "unhealthy");
    let out = d.ok(&["restart", "web"]);
    assert_eq!(out.trim(), "web: waiting for db (healthy)");
    assert!(d.get("web")["pid"].is_null());
    d.ok(&["exec", "db", "--", "touch", "/tmp/ready"]);
    assert_ne!(d.wait_running("web"), first);
}
