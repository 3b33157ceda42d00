//! Tier-2 end-to-end tests: the real CLI against a real daemon, with real runc containers on a
//! real loop-backed btrfs pool. Each test has its own daemon and state dir.

mod common;

use common::*;
use nix::sys::signal::Signal;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLEEPER: &str = r#"world = "busybox"
command = ["sh", "-c", "echo started; exec sleep 100000"]
"#;

fn sleepers(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[workload.{n}]\n{SLEEPER}\n"))
        .collect()
}

#[test]
fn three_workloads_each_get_their_own_namespaces() {
    let d = Daemon::start(&[]);
    let out = d.apply("w.toml", &sleepers(&["a", "b", "c"]));
    assert!(out.contains("+ a (create)"), "{out}");
    let pids: Vec<i32> = ["a", "b", "c"].iter().map(|n| d.wait_running(n)).collect();
    let list = d.list();
    assert_eq!(list.len(), 3);
    for w in &list {
        for key in ["name", "kind", "state", "pid"] {
            assert!(w.get(key).is_some(), "list -o json lacks {key}: {w}");
        }
        assert_eq!(w["state"], "running");
        assert_eq!(w["kind"], "container");
    }
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        let host = ns_inode("self", ns);
        let mut seen = vec![host];
        for pid in &pids {
            let ino = ns_inode(&pid.to_string(), ns);
            assert!(
                !seen.contains(&ino),
                "{ns} namespace of pid {pid} is shared"
            );
            seen.push(ino);
        }
    }
    // The hostname is the workload name; PID 1 inside is the main process.
    let out = d.ok(&[
        "exec",
        "b",
        "--",
        "sh",
        "-c",
        "hostname; echo $$; cat /proc/1/cmdline",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "b");
    assert!(out.contains("sleep"), "{out}");
}

#[test]
fn memory_limit_kills_and_restart_policy_backs_off() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.hog]
world = "busybox"
restart = "always"
resources = { memory = "16M" }
command = ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]
"#,
    );
    let v = d.wait_for("hog", 60, "three restarts after OOM kills", |v| {
        v["restarts"].as_u64().unwrap_or(0) >= 3
    });
    assert!(v["restarts"].as_u64().unwrap() >= 3);
    let events: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["events", "--workload", "hog", "-n", "200", "-o", "json"]))
            .unwrap();
    let exits: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["event"]["type"] == "exited")
        .collect();
    assert!(
        exits.iter().any(|e| e["event"]["oom_killed"] == true),
        "no OOM exit recorded: {events:#?}"
    );
    // Backoff: the wait from an exit to the next start grows (300ms, 600ms, 1200ms ...).
    // Measured from each exit, so how long a run took before the kernel killed it (the
    // first is slower: nothing is cached yet) does not count.
    let mut delays: Vec<u64> = Vec::new();
    let mut exited_at = None;
    for e in &events {
        let ts = e["ts_ms"].as_u64().unwrap();
        match e["kind"].as_str() {
            Some("exited") => exited_at = Some(ts),
            Some("started") => {
                if let Some(x) = exited_at.take() {
                    delays.push(ts - x);
                }
            }
            _ => {}
        }
    }
    let timeline = || {
        events
            .iter()
            .map(|e| format!("{} {} {}", e["ts_ms"], e["kind"], e["message"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(delays.len() >= 3, "{}", timeline());
    assert!(
        delays[0] >= 250 && delays[2] > delays[0] + 300,
        "restarts did not back off: delays {delays:?}\n{}",
        timeline()
    );
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn killed_main_process_is_restarted_and_logs_continue() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.ticker]
world = "busybox"
command = ["sh", "-c", "echo boot; i=0; while true; do echo tick $i; echo err $i >&2; i=$((i+1)); sleep 0.2; done"]
"#,
    );
    let pid = d.wait_running("ticker");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let v = d.wait_for("ticker", 30, "restart after SIGKILL", |v| {
        v["pid"].as_i64().is_some_and(|p| p as i32 != pid) && v["state"] == "running"
    });
    assert_eq!(v["restarts"], 1);
    assert_eq!(v["last_exit"]["code"], 137);
    // Logs hold both runs; stderr is kept apart.
    wait_until(10, "two boots in the log", || {
        d.ok(&["logs", "ticker"]).matches("boot").count() >= 2
    });
    let out = d.cli(&["logs", "ticker", "--tail", "4"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.lines().all(|l| l.starts_with("tick") || l == "boot"),
        "{stdout}"
    );
    assert!(stderr.lines().all(|l| l.starts_with("err")), "{stderr}");
    assert_eq!(stdout.lines().count() + stderr.lines().count(), 4);
}

#[test]
fn logs_follow_streams_new_lines() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.talker]
world = "busybox"
command = ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]
"#,
    );
    d.wait_running("talker");
    let mut child = Command::new(WARREN)
        .args(["logs", "-f", "--tail", "1", "talker"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut numbers = Vec::new();
    let start = Instant::now();
    while numbers.len() < 6 {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "logs -f ended");
        numbers.push(
            line.trim()
                .strip_prefix("line ")
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "lines were not live"
    );
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
}

#[test]
fn exec_propagates_exit_status_and_allocates_a_terminal() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &sleepers(&["box"]));
    d.wait_running("box");
    let out = d.cli(&[
        "exec",
        "box",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = d.cli(&["exec", "-t", "box", "--", "tty"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/dev/pts/"),
        "{out:?}"
    );
    // stdin is forwarded.
    let mut child = Command::new(WARREN)
        .args(["exec", "box", "--", "sh", "-c", "read x; echo got $x"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    // Exec into a missing workload is a clear error.
    let out = d.cli(&["exec", "nope", "--", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workload named"));
}

#[test]
fn daemon_sigkill_leaves_workloads_running_and_they_are_adopted() {
    let mut d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.keep]
world = "busybox"
command = ["sh", "-c", "i=0; while true; do echo beat $i; i=$((i+1)); sleep 0.2; done"]

[workload.idle]
world = "busybox"
state = "stopped"
command = ["sleep", "1000"]
"#,
    );
    let pid = d.wait_running("keep");
    d.kill_daemon(Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(700));
    assert!(alive(pid), "workload died with the daemon");
    let before = std::fs::read_to_string(d.state_dir().join("workloads/keep/logs/container.log"))
        .unwrap()
        .lines()
        .count();
    d.spawn();
    let v = d.wait_for("keep", 20, "adoption", |v| v["state"] == "running");
    assert_eq!(
        v["pid"].as_i64().unwrap() as i32,
        pid,
        "not the same process"
    );
    assert_eq!(v["restarts"], 0);
    assert_eq!(d.get("idle")["state"], "stopped");
    // Logs continue after the restart and the adopted workload is still supervised.
    wait_until(10, "more log lines", || {
        d.ok(&["logs", "keep"]).lines().count() > before + 3
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    d.wait_for("keep", 30, "restart of adopted workload", |v| {
        v["restarts"] == 1 && v["state"] == "running"
    });
}

#[test]
fn drift_recreates_and_keeps_data_while_state_only_stops() {
    let d = Daemon::start(&[]);
    let spec = |greeting: &str, state: &str| {
        format!(
            "[workload.app]\nworld = \"busybox\"\nstate = \"{state}\"\nenv = {{ GREETING = \"{greeting}\" }}\ncommand = [\"sh\", \"-c\", \"echo $GREETING >> /data/seen; exec sleep 100000\"]\n"
        )
    };
    d.apply("w.toml", &spec("one", "running"));
    let pid1 = d.wait_running("app");
    d.ok(&[
        "exec",
        "app",
        "--",
        "sh",
        "-c",
        "echo scratch > /tmp/scratch",
    ]);
    let plan = d.ok(&["plan", "-f", d.state_dir().join("w.toml").to_str().unwrap()]);
    assert!(plan.contains("no changes"), "{plan}");
    std::fs::write(d.state_dir().join("w2.toml"), spec("two", "running")).unwrap();
    let plan = d.ok(&[
        "plan",
        "-f",
        d.state_dir().join("w2.toml").to_str().unwrap(),
    ]);
    assert!(plan.contains("~ app (update: env.GREETING)"), "{plan}");
    assert!(plan.contains("stop app: spec changed"), "{plan}");
    d.apply("w.toml", &spec("two", "running"));
    let v = d.wait_for("app", 30, "recreate", |v| {
        v["state"] == "running" && v["pid"].as_i64().is_some_and(|p| p as i32 != pid1)
    });
    assert_eq!(v["spec"]["env"]["GREETING"], "two");
    let seen = d.ok(&["exec", "app", "--", "cat", "/data/seen"]);
    assert_eq!(seen, "one\ntwo\n", "data did not survive the recreate");
    let out = d.cli(&["exec", "app", "--", "cat", "/tmp/scratch"]);
    assert!(!out.status.success(), "rootfs was not recreated");
    // Only the state changes: stop, no recreate; then start again, data intact.
    let pid2 = v["pid"].as_i64().unwrap() as i32;
    let out = d.apply("w.toml", &spec("two", "stopped"));
    assert!(out.contains("stop app: desired state is stopped"), "{out}");
    assert!(!out.contains("provision"), "{out}");
    d.wait_for("app", 20, "stopped", |v| v["state"] == "stopped");
    assert!(!alive(pid2));
    d.apply("w.toml", &spec("two", "running"));
    d.wait_running("app");
    let seen = d.ok(&["exec", "app", "--", "cat", "/data/seen"]);
    assert_eq!(seen, "one\ntwo\ntwo\n");
}

#[test]
fn delete_leaves_nothing_behind() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &sleepers(&["gone", "stays"]));
    let pid = d.wait_running("gone");
    d.wait_running("stays");
    let cgroups = |name: &str| -> Vec<std::path::PathBuf> {
        cgroup_controllers()
            .iter()
            .map(|c| {
                std::path::Path::new("/sys/fs/cgroup")
                    .join(c)
                    .join(format!("warren-{}", d.instance()))
                    .join(name)
            })
            .filter(|p| p.exists())
            .collect()
    };
    assert!(
        !cgroups("gone").is_empty(),
        "expected cgroups while running"
    );
    // Delete without --purge keeps the data dataset only.
    let out = d.ok(&["delete", "gone"]);
    assert!(out.contains("data kept"), "{out}");
    assert!(!alive(pid));
    assert!(d.pool_root().join("workloads/gone/data").exists());
    assert!(!d.pool_root().join("workloads/gone/rootfs").exists());
    d.ok(&["delete", "--purge", "gone"]);
    assert!(
        cgroups("gone").is_empty(),
        "cgroups left: {:?}",
        cgroups("gone")
    );
    assert!(!d.pool_root().join("workloads/gone").exists());
    assert!(!d.state_dir().join("workloads/gone").exists());
    let subvols = Command::new("btrfs")
        .args([
            "subvolume",
            "list",
            "-o",
            d.pool_root().join("workloads").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let subvols = String::from_utf8_lossy(&subvols.stdout);
    assert!(!subvols.contains("workloads/gone"), "{subvols}");
    assert!(subvols.contains("workloads/stays"), "{subvols}");
    let mounts = warren_storage::pool::mounts_under(d.state_dir());
    assert_eq!(mounts, vec![d.pool_root()], "unexpected mounts");
    let runc = Command::new("runc")
        .args(["--root", d.runc_root().to_str().unwrap(), "list", "-q"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&runc.stdout).contains("gone"));
    assert!(d.list().iter().all(|w| w["name"] != "gone"));
    let out = d.cli(&["delete", "gone"]);
    assert!(!out.status.success());
}

#[test]
fn desired_state_survives_a_daemon_restart() {
    let mut d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("{}[workload.off]\nworld = \"busybox\"\nstate = \"stopped\"\ncommand = [\"sleep\", \"1000\"]\n", sleepers(&["on"])),
    );
    let pid = d.wait_running("on");
    d.ok(&["stop", "on"]);
    assert!(!alive(pid));
    d.kill_daemon(Signal::SIGTERM);
    d.spawn();
    let list = d.list();
    assert_eq!(list.len(), 2);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(d.get("on")["state"], "stopped");
    assert_eq!(d.get("off")["state"], "stopped");
    let out = d.ok(&["start", "on"]);
    assert!(out.contains("running"), "{out}");
    d.wait_running("on");
    let out = d.ok(&["get", "on"]);
    assert!(out.contains("state: running"), "{out}");
}

#[test]
fn restart_is_planned_once_whatever_the_policy() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.r]
world = "busybox"
restart = "never"
command = ["sh", "-c", "exec sleep 100000"]

[workload.once]
world = "busybox"
restart = "never"
command = ["sh", "-c", "test -e /data/again && exec sleep 100000; touch /data/again"]
"#,
    );
    let pid = d.wait_running("r");
    let out = d.ok(&["restart", "r"]);
    let after = d.get("r");
    let new_pid = after["pid"].as_i64().unwrap() as i32;
    assert!(out.contains("r: running"), "{out}");
    assert_ne!(new_pid, pid);
    assert!(!alive(pid) && alive(new_pid));
    // The request is honoured once: later passes leave the new run alone.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(d.get("r")["pid"], after["pid"]);
    assert_eq!(d.get("r")["state"], "running");

    // An exited workload whose policy is `never` runs again when a restart is asked for.
    d.wait_for("once", 30, "exited", |v| v["state"] == "exited");
    let out = d.ok(&["restart", "once"]);
    assert!(out.contains("once: running"), "{out}");
    d.wait_running("once");
}

#[test]
fn invalid_files_change_nothing() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &sleepers(&["base"]));
    d.wait_running("base");
    let before = d.list();
    let cases: &[(&str, &str)] = &[
        (
            "[workload.base]\nworld = \"busybox\"\ncomand = [\"true\"]\n",
            "bad.toml:3:1: workload.base.comand: unknown key; did you mean `command`?",
        ),
        (
            "[workload.base]\nworld = \"busybox\"\nkind = \"jail\"\n",
            "bad.toml:3:8: workload.base.kind: kind \"jail\" is not supported",
        ),
        (
            "[workload.base]\nworld = \"nosuch\"\n",
            "bad.toml:2:9: workload.base.world: world \"nosuch\" does not exist",
        ),
        ("[workload.Bad_Name]\nworld = \"busybox\"\n", "bad.toml:1:"),
        ("[workload.base\n", "bad.toml:1:"),
    ];
    for (text, expect) in cases {
        std::fs::write(d.state_dir().join("bad.toml"), text).unwrap();
        let out = Command::new(WARREN)
            .current_dir(d.state_dir())
            .args(["apply", "-f", "bad.toml"])
            .env("WARREN_STATE_DIR", d.state_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text} was accepted");
        assert!(
            stderr.contains(expect),
            "for {text:?} expected {expect:?} in:\n{stderr}"
        );
    }
    let after = d.list();
    assert_eq!(before.len(), after.len());
    assert_eq!(before[0]["pid"], after[0]["pid"]);
    assert_eq!(before[0]["generation"], after[0]["generation"]);
}

#[test]
fn run_rm_is_ephemeral() {
    let d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    let out = d.cli(&[
        "run",
        "--rm",
        "busybox",
        "--",
        "sh",
        "-c",
        "echo hi; hostname; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}\n{}", d.log());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("hi\nrun-"), "{stdout}");
    wait_until(10, "ephemeral rootfs removed", || {
        std::fs::read_dir(d.pool_root().join("workloads"))
            .map(|rd| rd.count() == 0)
            .unwrap_or(true)
    });
    assert_eq!(
        warren_storage::pool::mounts_under(d.state_dir()),
        vec![d.pool_root()],
        "the ephemeral overlay is still mounted"
    );
    // Writes go to the overlay, never into the world.
    let out = d.cli(&[
        "run",
        "--rm",
        "busybox",
        "--",
        "sh",
        "-c",
        "echo x > /bin/written && cat /bin/written",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    assert!(!d.pool_root().join("worlds/busybox/bin/written").exists());
    let out = d.cli(&["run", "busybox", "--", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rm"));
    // The process starts before the stream is upgraded: stdin written afterwards still
    // reaches it, and a terminal run gets its pty.
    let mut child = Command::new(WARREN)
        .args([
            "run",
            "--rm",
            "busybox",
            "--",
            "sh",
            "-c",
            "read x; echo got $x",
        ])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got hello\n");
    let out = d.cli(&["run", "--rm", "-t", "busybox", "--", "tty"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("/dev/pts/"),
        "{out:?}"
    );
    // A world that does not exist prepares nothing.
    let out = d.cli(&["run", "--rm", "nosuchworld", "--", "true"]);
    assert!(!out.status.success());
    wait_until(10, "nothing left of the runs", || {
        std::fs::read_dir(d.pool_root().join("workloads"))
            .map(|rd| rd.count() == 0)
            .unwrap_or(true)
    });
}

#[test]
fn host_world_runs_host_programs_and_cli_reports_missing_daemon() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        r#"[workload.py]
world = "host"
command = ["python3", "-c", "import http.server, socketserver; socketserver.TCPServer(('127.0.0.1', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()"]
workdir = "/etc"
"#,
    );
    d.wait_running("py");
    wait_until(20, "http server answering inside the workload", || {
        d.cli(&["exec", "py", "--", "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/passwd').read().decode())"])
            .status
            .success()
    });
    let out = d.ok(&["exec", "py", "--", "python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/hosts').read().decode())"]);
    assert!(out.contains("localhost"), "{out}");
    // /usr is the host's, read-only.
    let out = d.cli(&["exec", "py", "--", "touch", "/usr/x"]);
    assert!(!out.status.success());
    let out = Command::new(WARREN)
        .args(["list"])
        .env("WARREN_SOCKET", "/nonexistent/warren.sock")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("daemon is not running"));
}
