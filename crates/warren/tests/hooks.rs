//! Tier-2 tests of event hooks: a crash runs the crash handler exactly once, start hooks exec
//! inside the workload, a slow handler times out without delaying anything else, an interval
//! schedule fires repeatedly, webhooks POST the event, and host hooks need the daemon's opt-in.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

fn hook_events(d: &Daemon, name: &str) -> Vec<String> {
    d.ok(&["events", "--workload", name, "-n", "500"])
        .lines()
        .filter(|l| l.contains(" hook "))
        .map(str::to_string)
        .collect()
}

#[test]
fn crash_start_slow_and_scheduled_hooks() {
    let d = Daemon::start(&["--allow-host-hooks"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("crashes.log");
    let spec = format!(
        r#"[workload.crasher]
world = "busybox"
network = "none"
restart = "never"
command = ["sh", "-c", "sleep 1; exit 3"]
hooks = [
  {{ on = "crash", host = ["sh", "-c", "echo \"$WARREN_WORKLOAD $WARREN_EVENT $WARREN_MESSAGE\" >> {log}"] }},
  {{ on = "start", exec = ["sh", "-c", "echo started > /data/hook-start"] }},
]

[workload.slow]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
hooks = [
  {{ on = "start", exec = ["sleep", "30"], timeout = "1s" }},
  {{ on = "schedule", every = "1s", snapshot = "tick" }},
  {{ on = "schedule", every = "1s", job = ["sh", "-c", "echo ran >> /data/job.log; hostname >> /data/job.log"] }},
]

[workload.quick]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
"#,
        log = log.display()
    );
    let t = Instant::now();
    d.apply("w.toml", &spec);
    d.wait_running("quick");
    d.wait_running("slow");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "a slow hook held up other workloads"
    );
    // The crash handler runs once, with the event's details.
    wait_until(30, "the crash hook ran", || {
        std::fs::read_to_string(&log).is_ok_and(|s| !s.is_empty())
    });
    std::thread::sleep(Duration::from_secs(3));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, "crasher crash exit code 3\n", "exactly once");
    // The start hook ran inside the workload.
    assert_eq!(
        std::fs::read_to_string(d.pool_root().join("workloads/crasher/data/hook-start"))
            .unwrap_or_default(),
        "started\n"
    );
    // The slow hook timed out and said so.
    wait_until(10, "the slow hook timed out", || {
        hook_events(&d, "slow")
            .iter()
            .any(|l| l.contains("start → exec: timed out after 1s"))
    });
    // The interval schedule took snapshots.
    wait_until(15, "scheduled snapshots", || {
        hook_events(&d, "slow")
            .iter()
            .filter(|l| l.contains("schedule → snapshot: ok"))
            .count()
            >= 2
    });
    let snaps = d.ok(&["snapshots", "slow"]);
    assert!(snaps.contains("tick-"), "{snaps}");
    // The scheduled job ran in ephemeral containers of its own, on the workload's data.
    let job_log = d.pool_root().join("workloads/slow/data/job.log");
    wait_until(20, "two job runs", || {
        std::fs::read_to_string(&job_log).is_ok_and(|s| s.matches("ran").count() >= 2)
    });
    let text = std::fs::read_to_string(&job_log).unwrap();
    let hosts: Vec<&str> = text.lines().filter(|l| l.starts_with("job-")).collect();
    assert!(
        hosts.len() >= 2 && hosts[0] != hosts[1],
        "each run its own container: {text}"
    );
    assert!(!d
        .pool_root()
        .join("workloads/slow/rootfs/data/job.log")
        .exists());
    assert_eq!(d.get("quick")["state"], "running");
}

#[test]
fn webhooks_post_the_event_and_host_hooks_need_the_opt_in() {
    let d = Daemon::start(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut s = stream;
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                head.push_str(&line);
            }
            let mut body = vec![0u8; len];
            let _ = reader.read_exact(&mut body);
            let _ = s.write_all(b"HTTP/1.0 204 No Content\r\n\r\n");
            let _ = tx.send(format!("{head}\n{}", String::from_utf8_lossy(&body)));
        }
    });
    d.apply(
        "w.toml",
        &format!(
            r#"[workload.w]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
hooks = [
  {{ on = "stop", webhook = "http://127.0.0.1:{port}/alerts" }},
  {{ on = "start", host = ["touch", "/tmp/warren-hooks-must-not-exist"] }},
  {{ on = "start", scheme = "(snapshot! w \"from-scheme\")" }},
]
"#
        ),
    );
    d.wait_running("w");
    d.ok(&["stop", "w"]);
    let got = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the webhook was called");
    assert!(got.starts_with("POST /alerts HTTP/1."), "{got}");
    let body: serde_json::Value =
        serde_json::from_str(got.split("\n\n").last().unwrap().trim()).unwrap();
    assert_eq!(body["workload"], "w");
    assert_eq!(body["event"], "stop");
    wait_until(10, "the webhook outcome", || {
        hook_events(&d, "w")
            .iter()
            .any(|l| l.contains("stop → webhook: ok (204)"))
    });
    assert!(hook_events(&d, "w").iter().any(|l| l.contains(
        "start → host: failed: host hooks need the daemon to run with --allow-host-hooks"
    )));
    assert!(!std::path::Path::new("/tmp/warren-hooks-must-not-exist").exists());
    // A Scheme hook ran in the live image with `w` bound.
    wait_until(20, "the scheme hook's snapshot", || {
        d.ok(&["snapshots", "w"]).contains("from-scheme")
    });
    assert!(hook_events(&d, "w")
        .iter()
        .any(|l| l.contains("start → scheme: ok")));
}

#[test]
fn a_write_under_a_watched_path_runs_the_change_hook() {
    let d = Daemon::start(&["--allow-host-hooks"]);
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("changes.log");
    d.apply(
        "w.toml",
        &format!(
            r#"[workload.w]
world = "busybox"
network = "none"
command = ["sh", "-c", "mkdir -p /data/conf; exec sleep 100000"]
hooks = [
  {{ on = "change", path = "/data/conf", host = ["sh", "-c", "echo \"$WARREN_EVENT $WARREN_MESSAGE\" >> {log}"] }},
]
"#,
            log = log.display()
        ),
    );
    d.wait_running("w");
    let conf = d.pool_root().join("workloads/w/data/conf");
    wait_until(20, "the conf directory", || conf.is_dir());
    // Give the watcher time to attach, then write from inside the workload.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!log.exists(), "nothing changed yet");
    d.ok(&[
        "exec",
        "w",
        "--",
        "sh",
        "-c",
        "echo a > /data/conf/app.conf; echo b >> /data/conf/app.conf",
    ]);
    wait_until(20, "the change hook ran", || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("change /data/conf changed"))
    });
    std::thread::sleep(Duration::from_secs(1));
    let runs = std::fs::read_to_string(&log).unwrap().lines().count();
    assert_eq!(runs, 1, "one burst, one run");
}
