//! Tier-2 tests of the live spec file: `daemon --spec FILE` applies every save (an invalid one
//! changes nothing and says where), writes live changes back, `spec export` re-applies as a
//! no-op, and `apply --watch` follows a file from the CLI.

mod common;

use common::*;
use std::process::{Command, Stdio};

const A: &str =
    "[workload.a]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n";
const B: &str =
    "[workload.b]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n";

fn names(d: &Daemon) -> Vec<String> {
    d.list()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn watched_spec_file_applies_saves_and_takes_live_changes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("warren.toml");
    std::fs::write(&file, A).unwrap();
    let d = Daemon::start(&["--spec", file.to_str().unwrap()]);
    wait_until(30, "a applied from the file", || {
        names(&d).contains(&"a".to_string())
    });
    d.wait_running("a");

    // A saved change is applied.
    std::fs::write(&file, format!("{A}\n{B}")).unwrap();
    wait_until(30, "b from the saved file", || {
        names(&d).contains(&"b".to_string())
    });
    d.wait_running("b");

    // An invalid save changes nothing and names the place.
    std::fs::write(
        &file,
        format!("{A}\n[workload.b]\nworld = \"busybox\"\ncomand = [\"sleep\"]\n"),
    )
    .unwrap();
    wait_until(20, "the error event", || {
        d.ok(&["events", "-n", "50"])
            .contains("warren.toml:8:1: workload.b.comand: unknown key; did you mean `command`?")
    });
    assert_eq!(names(&d), ["a", "b"]);
    assert_eq!(d.get("b")["state"], "running");

    // Fixed by removing b: the file is the whole desired state.
    std::fs::write(&file, A).unwrap();
    wait_until(30, "b removed", || !names(&d).contains(&"b".to_string()));

    // A live change is written back to the file, which then applies as a no-op.
    d.ok(&["stop", "a"]);
    wait_until(20, "the write-back", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("state = \"stopped\""))
    });
    let plan = d.ok(&["plan", "-f", file.to_str().unwrap(), "--prune"]);
    assert!(
        !plan.contains("+ ") && !plan.contains("~ ") && !plan.contains("- "),
        "{plan}"
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        d.get("a")["state"],
        "stopped",
        "the written-back file did not undo the stop"
    );

    // spec export re-applies as a no-op.
    let exported = tmp.path().join("exported.toml");
    d.ok(&["spec", "export", "-o", exported.to_str().unwrap()]);
    let plan = d.ok(&["plan", "-f", exported.to_str().unwrap(), "--prune"]);
    assert!(
        !plan.contains("+ ") && !plan.contains("~ ") && !plan.contains("- "),
        "{plan}"
    );
}

#[test]
fn apply_watch_follows_the_file() {
    let d = Daemon::start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("w.toml");
    std::fs::write(&file, A).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["apply", "-f", file.to_str().unwrap(), "--watch"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until(30, "a applied by the watcher", || {
        names(&d).contains(&"a".to_string())
    });
    d.wait_running("a");
    std::fs::write(&file, format!("{A}\n{B}")).unwrap();
    wait_until(30, "b applied by the watcher", || {
        names(&d).contains(&"b".to_string())
    });
    d.wait_running("b");
    std::fs::write(&file, B).unwrap();
    wait_until(30, "a removed", || !names(&d).contains(&"a".to_string()));
    // A live change comes back into the watched file.
    d.ok(&["stop", "b"]);
    wait_until(20, "the write-back", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("state = \"stopped\""))
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        d.get("b")["state"],
        "stopped",
        "the written-back file did not undo the stop"
    );
    // SAFETY: ending the watcher this test started, by its PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}
