//! Tier-2 tests of `warren info`, the Prometheus metrics and the daemon's own log: info's
//! facts against the host's (/proc/meminfo, nproc, the btrfs pool as `btrfs filesystem usage`
//! reports it), `promtool check metrics` on a scrape, metrics that move (a crash-looping
//! workload's restart counter, memory following a workload that allocates), the plain-HTTP
//! metrics listener, `/v1/metrics` and `/v1/info` refused over TLS without a token, and
//! `warren daemon logs` showing the start line and none of the Scheme engine's parser lines.
//! Needs promtool (Debian's `prometheus` package) and curl (scripts/install-deps).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One sample per series: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample(text: &str, series: &str) -> Option<f64> {
    samples(text).get(series).copied()
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed (apt-get install prometheus; scripts/install-deps)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics refused the scrape:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn meminfo_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The pool's (size, used) as `btrfs filesystem usage -b` prints them.
fn btrfs_usage(pool: &std::path::Path) -> (u64, u64) {
    let out = Command::new("btrfs")
        .args(["filesystem", "usage", "-b"])
        .arg(pool)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (field("Device size:"), field("Used:"))
}

#[test]
fn info_reports_the_host_and_daemon_logs_are_warrens_own() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.idle]
world = "busybox"
command = ["sleep", "100000"]
"#,
    );
    d.wait_running("idle");

    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info", "-o", "json"])).unwrap();
    // The host.
    assert_eq!(info["host"]["memory_bytes"], meminfo_total(), "{info:#}");
    let nproc = String::from_utf8(Command::new("nproc").output().unwrap().stdout).unwrap();
    assert_eq!(info["host"]["cpus"], nproc.trim().parse::<u64>().unwrap());
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(info["host"]["name"], hostname.trim());
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(info["host"]["kernel"], format!("Linux {}", release.trim()));
    assert_eq!(info["host"]["os"], "linux");
    // The daemon.
    assert_eq!(info["daemon"]["pid"], d.daemon_pid());
    assert_eq!(info["daemon"]["version"], env!("CARGO_PKG_VERSION"));
    // The pool, as btrfs reports it.
    assert_eq!(info["storage"]["driver"], "btrfs");
    let (size, used) = btrfs_usage(&d.pool_root());
    assert_eq!(info["storage"]["size_bytes"], size);
    assert_eq!(size, 4 << 30, "the test pool is 4 GiB");
    let reported = info["storage"]["used_bytes"].as_u64().unwrap();
    assert!(
        reported.abs_diff(used) < 64 << 20,
        "used {reported} vs btrfs {used}"
    );
    let fill = info["storage"]["fill_percent"].as_f64().unwrap();
    assert!(
        (fill - reported as f64 * 100.0 / size as f64).abs() < 0.01,
        "{fill}"
    );
    // Runtimes, workloads, ingress, remote.
    let runc = info["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "runc")
        .expect("runc listed");
    assert_eq!(runc["available"], true);
    assert!(info["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "qemu" && r["kind"] == "vm"));
    assert_eq!(info["workloads"]["total"], 1);
    assert_eq!(info["workloads"]["by_kind"]["container"]["running"], 1);
    assert_eq!(info["ingress"]["state"], "off");
    assert!(info.get("remote").is_none(), "started with --listen none");

    let table = d.ok(&["info"]);
    assert!(
        table.contains("storage") && table.contains("btrfs at"),
        "{table}"
    );
    assert!(table.contains("1 (container: 1 running)"), "{table}");
    let yaml = d.ok(&["info", "-o", "yaml"]);
    assert!(yaml.contains("driver: btrfs"), "{yaml}");

    // The daemon's own log: its start, warren's lines, none of the Scheme parser's.
    let log = d.ok(&["daemon", "logs"]);
    assert!(
        log.lines()
            .any(|l| l.contains("started (pid") && l.contains("kind=daemon")),
        "{log}"
    );
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.lines().any(|l| l.contains(" steel")),
        "third-party info lines got in:\n{log}"
    );
    let stored =
        std::fs::read_to_string(d.state_dir().join("logs/daemon.log")).expect("the log file");
    for line in stored.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON records");
        let target = v["target"].as_str().unwrap();
        assert!(
            target.starts_with("warren") || matches!(v["level"].as_str(), Some("WARN" | "ERROR")),
            "{line}"
        );
    }
    let warn = d.ok(&["daemon", "logs", "--level", "warn"]);
    assert!(!warn.contains(" INFO "), "{warn}");
    let json = d.ok(&["daemon", "logs", "--json"]);
    assert!(json
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));

    // Following: a new event's line arrives.
    let mut follow = Command::new(WARREN)
        .args(["daemon", "logs", "-f"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    d.ok(&["stop", "idle"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = l.contains("workload=idle") && l.contains("stopped");
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(follow.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = follow.wait();
    assert!(seen, "`daemon logs -f` did not show the stop");
}

#[test]
fn metrics_pass_promtool_and_move() {
    let port = free_port();
    let d = Daemon::start(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    d.apply(
        "w.toml",
        r#"[workload.hog]
world = "busybox"
# The loop keeps the shell (and its 50 MB variable): a last simple command would replace it.
command = ["sh", "-c", "x=$(head -c 50000000 /dev/zero | tr '\\0' a); while :; do sleep 1000; done"]

[workload.idle]
world = "busybox"
command = ["sleep", "100000"]

[workload.flaky]
world = "busybox"
restart = "always"
command = ["sh", "-c", "sleep 0.5; exit 3"]
"#,
    );
    d.wait_running("idle");
    d.wait_running("hog");
    let _ = d.ok(&["info"]);

    // Memory follows the workload that allocates.
    let deadline = Instant::now() + Duration::from_secs(120);
    let text = loop {
        let text = d.ok(&["metrics"]);
        let hog = sample(
            &text,
            "warren_workload_memory_bytes{name=\"hog\",kind=\"container\"}",
        );
        if hog.is_some_and(|m| m > 50e6) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "hog's memory never passed 50 MB:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let idle = sample(
        &text,
        "warren_workload_memory_bytes{name=\"idle\",kind=\"container\"}",
    )
    .expect("idle's memory");
    assert!(idle < 20e6, "idle uses {idle}");
    promtool_check(&text);

    // The named series exist.
    for series in [
        "warren_workload_up{name=\"idle\",kind=\"container\"}",
        "warren_workload_state{name=\"idle\",kind=\"container\",state=\"running\"}",
        "warren_workload_cpu_seconds_total{name=\"hog\",kind=\"container\"}",
        "warren_workload_pids{name=\"idle\",kind=\"container\"}",
        "warren_workload_io_read_bytes_total{name=\"idle\",kind=\"container\"}",
        "warren_workload_io_written_bytes_total{name=\"idle\",kind=\"container\"}",
        "warren_pool_size_bytes",
        "warren_pool_used_bytes",
        "warren_pool_fill_ratio",
        "warren_reconcile_passes_total",
        "warren_reconcile_duration_seconds_count",
        "warren_applies_total",
        "warren_api_requests_total{method=\"GET\",route=\"/v1/info\",status=\"200\"}",
        "warren_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/info\"}",
        "warren_events_total{kind=\"started\"}",
        "warren_ingress_reloads_total",
        "warren_ingress_rejected_configs_total",
        "warren_dataset_used_bytes{dataset=\"workloads/idle\"}",
    ] {
        assert!(sample(&text, series).is_some(), "no {series} in:\n{text}");
    }
    assert_eq!(sample(&text, "warren_applies_total"), Some(1.0));
    assert_eq!(
        sample(&text, "warren_pool_size_bytes"),
        Some((4u64 << 30) as f64)
    );
    assert!(
        sample(
            &text,
            "warren_workload_pids{name=\"idle\",kind=\"container\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        sample(
            &text,
            "warren_workload_cpu_seconds_total{name=\"hog\",kind=\"container\"}"
        )
        .unwrap()
            > 0.0
    );

    // A crash-looping workload's restart counter moves.
    let restarts = |text: &str| {
        sample(
            text,
            "warren_workload_restarts_total{name=\"flaky\",kind=\"container\"}",
        )
        .unwrap_or(0.0)
    };
    let first = restarts(&d.ok(&["metrics"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = d.ok(&["metrics"]);
        if restarts(&text) >= first + 2.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "flaky's restarts stayed at {first}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The plain-HTTP listener serves the same metrics, and nothing else.
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (code, body) = get("/metrics");
    assert_eq!(code, "200");
    assert!(body.contains("warren_pool_size_bytes"), "{body}");
    promtool_check(&body);
    let (code, _) = get("/v1/workloads");
    assert_eq!(code, "404");
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info", "-o", "json"])).unwrap();
    assert_eq!(info["metrics_listen"], format!("127.0.0.1:{port}"));
}

#[test]
fn metrics_and_info_over_tls_need_a_token() {
    let port = free_port();
    let d = Daemon::start(&["--listen", &format!("127.0.0.1:{port}")]);
    wait_until(20, "the remote API listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let status = |path: &str| {
        let out = Command::new("curl")
            .args(["-sk", "--tlsv1.3", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://127.0.0.1:{port}{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(status("/v1/metrics"), "401");
    assert_eq!(status("/v1/info"), "401");
    // The remote API's address and fingerprint, as its open auth route tells them.
    let out = Command::new("curl")
        .args(["-sk", "--tlsv1.3"])
        .arg(format!("https://127.0.0.1:{port}/v1/auth/info"))
        .output()
        .unwrap();
    let auth: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info", "-o", "json"])).unwrap();
    assert_eq!(info["remote"]["address"], format!("127.0.0.1:{port}"));
    assert_eq!(info["remote"]["fingerprint"], auth["fingerprint"], "{auth}");
    assert_eq!(info["remote"]["host_id"], auth["host_id"], "{auth}");
    assert_eq!(info["host"]["id"], auth["host_id"]);
    // Over the local socket the metrics answer.
    let text = d.ok(&["metrics"]);
    assert!(text.contains("warren_daemon_uptime_seconds"), "{text}");
}
