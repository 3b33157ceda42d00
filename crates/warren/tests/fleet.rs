//! Tier-2 tests of fan-out: two daemons with their remote APIs on loopback, adopted as two
//! contexts; `--all` and `--context a,b` send one command to both, tables gain a HOST column,
//! and a stopped daemon shows as an error on its own row while the other's rows still print
//! (the exit status says a host failed).

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
