//! Tier-2 tests of fan-out and discovery. Fan-out: two daemons with their remote APIs on
//! loopback, adopted as two contexts; `--all` and `--context a,b` send one command to both,
//! tables gain a HOST column, `events -f` interleaves both hosts' live events, and a stopped
//! daemon shows as an error on its own row while the other's rows still print (the exit
//! status says a host failed). Discovery: two daemons each in its own network namespace,
//! joined by a veth pair and announcing on it with mDNS (one naming it with
//! `--mdns-interface`, one by the default selection); each hears the other (`warren
//! discover`: address, port, fingerprint), one adopts the other by its short id (the
//! advertised fingerprint pinned), and fan-out from there lists both and reports the stopped
//! one.

mod common;

use common::*;
use std::process::{Command, Output, Stdio};

/// The CLI with an operator config dir of its own (remote contexts only).
fn cli(config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("WARREN_STATE_DIR", "/nonexistent-warren-state")
        .env_remove("WARREN_HOST")
        .env_remove("WARREN_CONTEXT")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = cli(config, args);
    assert!(
        out.status.success(),
        "warren {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn remote_daemon() -> (Daemon, u16) {
    let port = free_port();
    let d = Daemon::start(&["--listen", &format!("127.0.0.1:{port}")]);
    wait_until(20, "the remote API listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (d, port)
}

/// The HOST and NAME cells of a `list` table's rows.
fn hosts_and_names(table: &str) -> Vec<(String, String)> {
    table
        .lines()
        .skip(1)
        .map(|l| {
            let mut cells = l.split_whitespace();
            (
                cells.next().unwrap_or("").to_string(),
                cells.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn fan_out_lists_both_hosts_and_reports_a_stopped_one_on_its_row() {
    let (a, pa) = remote_daemon();
    let (mut b, pb) = remote_daemon();
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path();
    for (d, port, name) in [(&a, pa, "alpha"), (&b, pb, "beta")] {
        let code = d.ok(&["daemon", "claim-code"]).trim().to_string();
        ok(
            cfg,
            &[
                "adopt",
                &format!("127.0.0.1:{port}"),
                "--yes",
                "--claim-code",
                &code,
                "--name",
                name,
            ],
        );
    }
    // A command that does not fan out is a usage error.
    assert_eq!(cli(cfg, &["--all", "world", "list"]).status.code(), Some(2));
    for (ctx, name) in [("alpha", "on-alpha"), ("beta", "on-beta")] {
        ok(cfg, &["--context", ctx, "world", "create", "busybox"]);
        let spec = cfg.join(format!("{ctx}.toml"));
        std::fs::write(
            &spec,
            format!("[workload.{name}]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n"),
        )
        .unwrap();
        ok(
            cfg,
            &["--context", ctx, "apply", "-f", spec.to_str().unwrap()],
        );
    }
    a.wait_running("on-alpha");
    b.wait_running("on-beta");

    let table = ok(cfg, &["list", "--all"]);
    assert!(table.starts_with("HOST "), "{table}");
    let rows = hosts_and_names(&table);
    assert!(
        rows.contains(&("alpha".into(), "on-alpha".into())),
        "{table}"
    );
    assert!(rows.contains(&("beta".into(), "on-beta".into())), "{table}");
    assert_eq!(rows.len(), 2, "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&ok(cfg, &["--context", "beta,alpha", "list", "-o", "json"])).unwrap();
    let hosts: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["beta", "alpha"], "{json}");
    assert_eq!(json[0]["ok"], true, "{json}");
    assert_eq!(json[0]["result"][0]["name"], "on-beta", "{json}");

    // get, plan and snapshot on both hosts: one object or line per host, its own outcome.
    let got = cli(cfg, &["--all", "get", "on-alpha", "-o", "json"]);
    assert_eq!(got.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(json[0]["host"], "alpha", "{json}");
    assert_eq!(json[0]["result"]["spec"]["name"], "on-alpha", "{json}");
    assert_eq!(json[1]["ok"], false, "{json}");
    let alpha_spec = cfg.join("alpha.toml");
    let plan = ok(cfg, &["--all", "plan", "-f", alpha_spec.to_str().unwrap()]);
    assert!(
        plan.lines()
            .any(|l| l.starts_with("beta ") && l.contains("+ on-alpha (create)")),
        "{plan}"
    );
    assert!(
        !plan
            .lines()
            .any(|l| l.starts_with("alpha ") && l.contains("+ on-alpha")),
        "{plan}"
    );
    let snap = cli(
        cfg,
        &[
            "--context",
            "alpha,beta",
            "snapshot",
            "on-beta",
            "--label",
            "s1",
        ],
    );
    let text = String::from_utf8_lossy(&snap.stdout).to_string();
    assert_eq!(snap.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("beta ") && l.contains("on-beta: snapshot s1")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("alpha ") && l.contains("error:")),
        "{text}"
    );

    // A lifecycle verb on both hosts: each reports its own outcome.
    let stopped = cli(cfg, &["--all", "stop", "on-alpha"]);
    let text = String::from_utf8_lossy(&stopped.stdout).to_string();
    assert!(!stopped.status.success(), "beta has no on-alpha: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("alpha ") && l.contains("on-alpha: stopped")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("beta ") && l.contains("error:")),
        "{text}"
    );

    // `events -f` interleaves both hosts' streams, each line prefixed with its host.
    let mut follow = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--all", "events", "-f"])
        .env("XDG_CONFIG_HOME", cfg)
        .env("WARREN_STATE_DIR", "/nonexistent-warren-state")
        .env_remove("WARREN_HOST")
        .env_remove("WARREN_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
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
    // The backlog first; then new events on both hosts must arrive live.
    let mut seen = Vec::new();
    while let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(1500)) {
        seen.push(l);
    }
    let backlog = seen.len();
    assert!(
        seen.iter().any(|l| l.starts_with("alpha ")) && seen.iter().any(|l| l.starts_with("beta ")),
        "{seen:#?}"
    );
    ok(cfg, &["--context", "alpha", "start", "on-alpha"]);
    ok(cfg, &["--context", "beta", "stop", "on-beta"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let live = |seen: &Vec<String>| {
        let new = &seen[backlog..];
        new.iter()
            .any(|l| l.starts_with("alpha ") && l.contains(" on-alpha "))
            && new
                .iter()
                .any(|l| l.starts_with("beta ") && l.contains(" on-beta "))
    };
    while !live(&seen) && std::time::Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(follow.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = follow.wait();
    assert!(live(&seen), "{seen:#?}");

    // One daemon stopped: its row is an error, the other's rows still print, status 1.
    b.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let out = cli(cfg, &["list", "--all"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{table}");
    let rows = hosts_and_names(&table);
    assert!(
        rows.contains(&("alpha".into(), "on-alpha".into())),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("beta ")
            && l.contains("error: ")
            && l.contains(&pb.to_string())),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&cli(cfg, &["list", "--all", "-o", "json"]).stdout).unwrap();
    assert_eq!(json[0]["host"], "alpha");
    assert_eq!(json[0]["ok"], true);
    assert_eq!(json[1]["host"], "beta");
    assert_eq!(json[1]["ok"], false);
    assert!(
        json[1]["error"].as_str().unwrap().contains("connecting"),
        "{json}"
    );
}

/// Two network namespaces joined by a veth pair, with `10.249.X.1` in the first and
/// `10.249.X.2` in the second; every namespace and link is deleted by name on drop.
struct NetPair {
    ns: [String; 2],
    veth: [String; 2],
    addr: [String; 2],
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl NetPair {
    fn new() -> NetPair {
        let id = std::process::id();
        let x = 1 + id % 250;
        let pair = NetPair {
            ns: [format!("wfleet{id}a"), format!("wfleet{id}b")],
            veth: [format!("wfl{id}a"), format!("wfl{id}b")],
            addr: [format!("10.249.{x}.1"), format!("10.249.{x}.2")],
        };
        for ns in &pair.ns {
            ip(&["netns", "add", ns]);
        }
        ip(&[
            "link",
            "add",
            &pair.veth[0],
            "type",
            "veth",
            "peer",
            "name",
            &pair.veth[1],
        ]);
        for i in 0..2 {
            let (ns, dev, addr) = (&pair.ns[i], &pair.veth[i], &pair.addr[i]);
            ip(&["link", "set", dev, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up", "multicast", "on"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", dev]);
        }
        pair
    }

    fn nsenter(&self, i: usize) -> [String; 2] {
        ["nsenter".into(), format!("--net=/run/netns/{}", self.ns[i])]
    }

    /// The CLI run inside namespace `i` with the operator config dir `config`.
    fn cli(&self, i: usize, config: &std::path::Path, args: &[&str]) -> Output {
        let [prog, net] = self.nsenter(i);
        Command::new(prog)
            .arg(net)
            .arg(env!("CARGO_BIN_EXE_warren"))
            .args(args)
            .env("XDG_CONFIG_HOME", config)
            .env("WARREN_STATE_DIR", "/nonexistent-warren-state")
            .env_remove("WARREN_HOST")
            .env_remove("WARREN_CONTEXT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, i: usize, config: &std::path::Path, args: &[&str]) -> String {
        let out = self.cli(i, config, args);
        assert!(
            out.status.success(),
            "warren {args:?} in {} failed: {}{}",
            self.ns[i],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for NetPair {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        // Deleting a namespace deletes the veth in it; the pair is gone with either end.
        for dev in &self.veth {
            let _ = Command::new("ip").args(["link", "del", dev]).output();
        }
    }
}

/// The remote API's host id and fingerprint, from `warren info`.
fn identity(d: &Daemon) -> (String, String) {
    let info: serde_json::Value = serde_json::from_str(&d.ok(&["info", "-o", "json"])).unwrap();
    (
        info["remote"]["host_id"].as_str().unwrap().to_string(),
        info["remote"]["fingerprint"].as_str().unwrap().to_string(),
    )
}

#[test]
fn daemons_in_two_namespaces_discover_each_other_and_fan_out() {
    let pair = NetPair::new();
    // Declared after the namespaces, so dropped (stopped) before they are deleted.
    // a names its veth; b announces on the default selection (its veth is not a skipped kind).
    let mut daemons: Vec<Daemon> = (0..2)
        .map(|i| {
            let [prog, net] = pair.nsenter(i);
            let listen = format!("{}:7443", pair.addr[i]);
            let mut extra = vec!["--listen", &listen];
            if i == 0 {
                extra.extend(["--mdns-interface", &pair.veth[0]]);
            } else {
                extra.extend(["--mdns", "on"]);
            }
            Daemon::start_under(&[&prog, &net], &extra)
        })
        .collect();
    let ids: Vec<(String, String)> = daemons.iter().map(identity).collect();
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path();

    // Each hears the other on its veth, with its address, port and fingerprint.
    for (me, other) in [(0, 1), (1, 0)] {
        let heard: Vec<serde_json::Value> =
            serde_json::from_str(&pair.ok(me, cfg, &["discover", "--timeout", "3s", "-o", "json"]))
                .unwrap();
        let h = heard
            .iter()
            .find(|h| h["host_id"] == ids[other].0.as_str())
            .unwrap_or_else(|| {
                panic!("{} did not hear {}: {heard:?}", pair.ns[me], pair.ns[other])
            });
        assert_eq!(h["fingerprint"], ids[other].1.as_str(), "{h}");
        assert_eq!(h["port"], 7443, "{h}");
        assert_eq!(h["short_id"], &ids[other].0[..8], "{h}");
        assert!(
            h["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == pair.addr[other].as_str()),
            "{h}"
        );
        assert!(h["context"].is_null(), "{h}");
    }

    // From namespace a: adopt b by its short id (its advertised fingerprint pinned), a by
    // address; then both are a fan-out away.
    let code = |d: &Daemon| d.ok(&["daemon", "claim-code"]).trim().to_string();
    let short_b = &ids[1].0[..8];
    pair.ok(
        0,
        cfg,
        &[
            "adopt",
            short_b,
            "--yes",
            "--claim-code",
            &code(&daemons[1]),
            "--name",
            "b",
        ],
    );
    pair.ok(
        0,
        cfg,
        &[
            "adopt",
            &format!("{}:7443", pair.addr[0]),
            "--yes",
            "--claim-code",
            &code(&daemons[0]),
            "--name",
            "a",
        ],
    );
    let config_text = std::fs::read_to_string(cfg.join("warren/config.toml")).unwrap();
    assert!(config_text.contains(&ids[1].1), "{config_text}");
    assert!(
        config_text.contains(&format!("{}:7443", pair.addr[1])),
        "{config_text}"
    );
    let table = pair.ok(0, cfg, &["discover", "--timeout", "2s"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(short_b) && l.trim_end().ends_with(" b")),
        "the table says b is pinned: {table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&pair.ok(0, cfg, &["--all", "list", "-o", "json"])).unwrap();
    assert_eq!(json[0]["host"], "a", "{json}");
    assert_eq!(json[0]["ok"], true, "{json}");
    assert_eq!(json[1]["host"], "b", "{json}");
    assert_eq!(json[1]["ok"], true, "{json}");

    // b stopped: its row is an error, a's still prints, and the status says a host failed.
    daemons[1].kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let out = pair.cli(0, cfg, &["--all", "info"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("a ") && l.contains("host ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("b ") && l.contains("error: ")),
        "{text}"
    );
    drop(daemons);
}
