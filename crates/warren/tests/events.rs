//! Tier-2 tests of the event stream: `warren events -f` prints new events as they happen,
//! filtered by workload, and the WebSocket endpoint sends the backlog then live events, each
//! once and in order.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLEEPER: &str =
    "world = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n";

#[test]
fn events_follow_prints_new_events_for_one_workload() {
    let d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["events", "-f", "-o", "json", "--workload", "a", "-n", "0"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    // Give the follower time to subscribe, then make things happen to a and b.
    std::thread::sleep(Duration::from_millis(500));
    d.apply(
        "w.toml",
        &format!("[workload.a]\n{SLEEPER}\n[workload.b]\n{SLEEPER}"),
    );
    d.wait_running("a");
    d.wait_running("b");
    d.ok(&["stop", "a"]);
    let mut kinds = Vec::new();
    let mut typed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kinds.contains(&"stopped".to_string()) && Instant::now() < deadline {
        if let Ok(v) = rx.recv_timeout(Duration::from_millis(200)) {
            assert_eq!(v["workload"], "a", "only a's events: {v}");
            kinds.push(v["kind"].as_str().unwrap().to_string());
            typed.push(v["event"].clone());
        }
    }
    // SAFETY: ending the follower this test started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    assert!(kinds.contains(&"started".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"stopped".to_string()), "{kinds:?}");
    let started = kinds.iter().position(|k| k == "started").unwrap();
    let stopped = kinds.iter().position(|k| k == "stopped").unwrap();
    assert!(started < stopped, "{kinds:?}");
    // The typed event carries the fields: the start's PID, the stop's exit.
    assert_eq!(typed[started]["type"], "started", "{typed:?}");
    assert!(typed[started]["pid"].as_i64().unwrap() > 0, "{typed:?}");
    assert_eq!(typed[stopped]["type"], "stopped", "{typed:?}");
    assert!(typed[stopped]["code"].is_i64(), "{typed:?}");
    assert!(typed[stopped]["oom_killed"].is_boolean(), "{typed:?}");
}

#[test]
fn websocket_sends_backlog_then_live_events_once_in_order() {
    let d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    let socket = d.socket();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use futures_util::StreamExt;
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let (mut ws, resp) =
            tokio_tungstenite::client_async("ws://warren/v1/events/ws?after=0", stream)
                .await
                .expect("websocket handshake");
        assert_eq!(resp.status(), 101);
        let state_dir = d.state_dir().to_path_buf();
        let applier = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(300));
            let path = state_dir.join("ws.toml");
            std::fs::write(&path, format!("[workload.c]\n{SLEEPER}")).unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_warren"))
                .args(["apply", "-f", path.to_str().unwrap()])
                .env("WARREN_STATE_DIR", &state_dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
        let mut ids = Vec::new();
        let mut saw_world = false;
        let mut saw_started = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !saw_started {
            let msg = tokio::time::timeout_at(deadline, ws.next())
                .await
                .expect("events arrive")
                .expect("stream open")
                .expect("message");
            let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            ids.push(v["id"].as_i64().unwrap());
            saw_world |= v["kind"] == "world";
            saw_started |= v["kind"] == "started" && v["workload"] == "c";
        }
        applier.await.unwrap();
        assert!(
            saw_world,
            "the backlog (world created before connecting) came first"
        );
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted, "each event once, in order");
    });
}
