//! Tier-2 tests of health checks: a failing http check restarts the workload after `retries`
//! failures (and it comes back healthy), an exec check reports health without restarting when
//! `on_unhealthy = "none"`, and health shows in `get`.

mod common;

use common::*;

#[test]
fn failing_http_check_restarts_after_retries_and_exec_checks_report() {
    let d = Daemon::start(&[]);
    // httpd serves /tmp/www/ok, created at each start; the test removes it to make checks fail.
    d.apply(
        "w.toml",
        r#"[workload.web]
world = "busybox"
command = ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/ok && exec httpd -f -p 8080 -h /tmp/www"]
health = { http = "/ok", port = 8080, interval = "1s", timeout = "1s", retries = 3 }

[workload.job]
world = "busybox"
network = "none"
command = ["sh", "-c", "touch /tmp/ready; exec sleep 100000"]
health = { exec = ["test", "-f", "/tmp/ready"], interval = "1s", retries = 2, on_unhealthy = "none" }
"#,
    );
    d.wait_running("web");
    d.wait_running("job");
    d.wait_for("web", 30, "healthy", |v| v["health"] == "healthy");
    d.wait_for("job", 30, "healthy", |v| v["health"] == "healthy");
    let restarts = |v: &serde_json::Value| v["restarts"].as_u64().unwrap();
    let before = restarts(&d.get("web"));
    let pid = d.wait_running("web");

    d.ok(&["exec", "web", "--", "rm", "/tmp/www/ok"]);
    // Three failures a second apart, then a restart: the command recreates the page.
    let v = d.wait_for("web", 40, "a restart for failed checks", |v| {
        restarts(v) > before
    });
    assert_ne!(v["pid"].as_i64(), Some(pid as i64));
    d.wait_for("web", 30, "healthy again", |v| v["health"] == "healthy");
    let events = d.ok(&["events", "--workload", "web", "-n", "100"]);
    assert!(
        events.contains("health unhealthy: GET /ok answered 404 (3 failures in a row)"),
        "{events}"
    );
    assert!(events.contains("restarted unhealthy"), "{events}");
    assert_eq!(restarts(&d.get("web")), before + 1, "exactly one restart");

    // on_unhealthy = "none": reported, not restarted.
    let job_pid = d.wait_running("job");
    d.ok(&["exec", "job", "--", "rm", "/tmp/ready"]);
    d.wait_for("job", 30, "unhealthy", |v| v["health"] == "unhealthy");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(d.wait_running("job"), job_pid, "not restarted");
    let list = d.ok(&["list"]);
    assert!(list.contains("running (unhealthy)"), "{list}");
}
