//! Tier-2 tests of datasets through the real CLI and daemon: snapshots, rollback, clones,
//! quotas, volumes, retention and export/import, on real btrfs loop pools.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEEPER: &str = r#"world = "busybox"
command = ["sh", "-c", "exec sleep 100000"]
"#;

fn snapshots(d: &Daemon, name: &str, volume: bool) -> Vec<serde_json::Value> {
    let mut args = vec!["snapshots", name, "-o", "json"];
    if volume {
        args.push("--volume");
    }
    serde_json::from_str(&d.ok(&args)).unwrap()
}

fn labels(snaps: &[serde_json::Value]) -> Vec<String> {
    snaps
        .iter()
        .map(|s| s["label"].as_str().unwrap().to_string())
        .collect()
}

fn sh(d: &Daemon, name: &str, script: &str) -> String {
    d.ok(&["exec", name, "--", "sh", "-c", script])
}

#[test]
fn snapshot_rollback_restores_exact_bytes() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &format!("[workload.db]\n{KEEPER}"));
    let pid = d.wait_running("db");
    sh(&d, "db", "head -c 65536 /dev/urandom > /data/blob; echo one > /data/keep; echo root > /etc/marker; echo gone > /data/deleted");
    let before = sh(
        &d,
        "db",
        "md5sum /data/blob /data/keep /etc/marker /data/deleted",
    );
    let out = d.ok(&["snapshot", "db", "--label", "before"]);
    assert!(out.contains("snapshot before"), "{out}");
    // The workload kept running (it was only frozen).
    assert_eq!(d.get("db")["pid"].as_i64().unwrap() as i32, pid);
    sh(&d, "db", "head -c 100 /dev/urandom >> /data/blob; echo two > /data/keep; rm /data/deleted; echo changed > /etc/marker; echo new > /data/new");
    d.ok(&["snapshot", "db", "--label", "after"]);
    let snaps = snapshots(&d, "db", false);
    assert_eq!(labels(&snaps), ["before", "after"]);
    assert_eq!(
        snaps[0]["datasets"].as_array().unwrap().len(),
        2,
        "{snaps:?}"
    );
    // Rolling back past a newer snapshot needs --force.
    let out = d.cli(&["rollback", "db", "before"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("after") && err.contains("--force"), "{err}");
    assert_eq!(labels(&snapshots(&d, "db", false)), ["before", "after"]);
    let out = d.ok(&["rollback", "db", "before", "--force"]);
    assert!(out.contains("destroyed newer snapshots: after"), "{out}");
    let pid2 = d.wait_running("db");
    assert_ne!(pid, pid2, "a running workload is restarted by rollback");
    let after = sh(
        &d,
        "db",
        "md5sum /data/blob /data/keep /etc/marker /data/deleted",
    );
    assert_eq!(before, after);
    assert!(!d
        .cli(&["exec", "db", "--", "test", "-e", "/data/new"])
        .status
        .success());
    assert_eq!(labels(&snapshots(&d, "db", false)), ["before"]);
    // Deleting a snapshot; default labels are <name>-<unix time>.
    d.ok(&["snapshot", "rm", "db", "before"]);
    let out = d.ok(&["snapshot", "db"]);
    assert!(out.contains("snapshot db-"), "{out}");
    assert!(!d
        .cli(&["snapshot", "db", "--label", "../x"])
        .status
        .success());
    assert!(!d.cli(&["rollback", "db", "nope"]).status.success());
}

#[test]
fn clone_copies_data_and_runs_independently() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &format!("[workload.src]\n{KEEPER}"));
    d.wait_running("src");
    sh(&d, "src", "echo v1 > /data/f");
    d.ok(&["snapshot", "src", "--label", "s1"]);
    sh(&d, "src", "echo v2 > /data/f");
    let t = Instant::now();
    d.ok(&["clone", "src", "now"]);
    d.ok(&["clone", "src", "old", "--snapshot", "s1"]);
    let took = t.elapsed();
    d.wait_running("now");
    d.wait_running("old");
    assert_eq!(sh(&d, "now", "cat /data/f"), "v2\n");
    assert_eq!(sh(&d, "old", "cat /data/f"), "v1\n");
    sh(&d, "now", "echo mine > /data/f");
    assert_eq!(sh(&d, "src", "cat /data/f"), "v2\n");
    assert_eq!(sh(&d, "now", "hostname"), "now\n");
    assert!(took < Duration::from_secs(10), "clones took {took:?}");
    let out = d.cli(&["clone", "src", "now"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // The clone is an ordinary workload: it survives in the store and can be deleted.
    assert!(d.list().iter().any(|w| w["name"] == "old"));
    d.ok(&["delete", "--purge", "old"]);
}

#[test]
fn disk_quota_fails_writes_inside_and_raises_an_event() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("[workload.small]\n{KEEPER}resources = {{ disk = \"8M\" }}\n"),
    );
    d.wait_running("small");
    let ok = d.cli(&[
        "exec",
        "small",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/a bs=1M count=2 && sync",
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let full = d.cli(&[
        "exec",
        "small",
        "--",
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/b bs=1M count=32 && sync",
    ]);
    assert!(!full.status.success(), "a write beyond the limit succeeded");
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(err.contains("quota") || err.contains("space"), "{err}");
    wait_until(30, "quota event", || {
        d.ok(&["events", "--workload", "small"])
            .contains("disk limit reached")
    });
    // The daemon is fine and the workload still runs.
    assert_eq!(d.get("small")["state"], "running");
}

#[test]
fn volumes_one_writer_readers_and_listing() {
    let d = Daemon::start(&[]);
    let two_writers = format!(
        "[volume.media]\nsize = \"64M\"\n\n[workload.a]\n{KEEPER}volumes = [\"media:/srv/media\"]\n\n[workload.b]\n{KEEPER}volumes = [\"media:/srv/media\"]\n"
    );
    std::fs::write(d.state_dir().join("bad.toml"), &two_writers).unwrap();
    let out = Command::new(WARREN)
        .current_dir(d.state_dir())
        .args(["apply", "-f", "bad.toml"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.toml:") && err.contains("\"a\"") && err.contains("workload.b"),
        "{err}"
    );
    assert!(d.list().is_empty(), "a refused file created workloads");
    d.apply(
        "w.toml",
        &format!(
            "[volume.media]\nsize = \"64M\"\n\n[workload.a]\n{KEEPER}volumes = [\"media:/srv/media\"]\n\n[workload.b]\n{KEEPER}volumes = [\"media:/srv/media:ro\"]\n"
        ),
    );
    d.wait_running("a");
    d.wait_running("b");
    sh(&d, "a", "echo shared > /srv/media/x");
    assert_eq!(sh(&d, "b", "cat /srv/media/x"), "shared\n");
    assert!(!d
        .cli(&["exec", "b", "--", "sh", "-c", "echo no > /srv/media/y"])
        .status
        .success());
    let vols: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["volume", "list", "-o", "json"])).unwrap();
    assert_eq!(vols.len(), 1);
    let mounts: Vec<&str> = vols[0]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(mounts, ["a:/srv/media", "b:/srv/media:ro"]);
    // Volume snapshots and rollback (refused while a writer runs).
    d.ok(&["snapshot", "--volume", "media", "--label", "v1"]);
    sh(&d, "a", "echo changed > /srv/media/x");
    assert!(!d
        .cli(&["rollback", "--volume", "media", "v1"])
        .status
        .success());
    d.ok(&["stop", "a", "b"]);
    d.ok(&["rollback", "--volume", "media", "v1"]);
    d.ok(&["start", "a"]);
    d.wait_running("a");
    assert_eq!(sh(&d, "a", "cat /srv/media/x"), "shared\n");
    // A volume in use cannot be removed.
    assert!(!d.cli(&["volume", "rm", "media"]).status.success());
}

#[test]
fn retention_keeps_exactly_keep_automatic_snapshots() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("[workload.r]\n{KEEPER}snapshots = {{ every = \"60s\", keep = 2 }}\n"),
    );
    d.wait_running("r");
    d.ok(&["snapshot", "r", "--label", "manual"]);
    // Automatic snapshots at about 0 s, 60 s and 120 s; the oldest is pruned.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let snaps = snapshots(&d, "r", false);
        let autos = snaps.iter().filter(|s| s["automatic"] == true).count();
        let pruned = d
            .ok(&["events", "--workload", "r", "-n", "500"])
            .matches("deleted")
            .count();
        if pruned >= 1 {
            // Read again after the pruning event: exactly `keep` automatic snapshots remain.
            let snaps = snapshots(&d, "r", false);
            let autos = snaps.iter().filter(|s| s["automatic"] == true).count();
            assert_eq!(autos, 2, "{snaps:#?}");
            let times: Vec<u64> = snaps
                .iter()
                .map(|s| s["created_at"].as_u64().unwrap())
                .collect();
            assert!(
                times.windows(2).all(|w| w[0] <= w[1]),
                "not oldest first: {snaps:#?}"
            );
            let auto_labels: Vec<String> = labels(&snaps)
                .into_iter()
                .filter(|l| l.starts_with("auto-"))
                .collect();
            let mut sorted = auto_labels.clone();
            sorted.sort();
            assert_eq!(
                auto_labels, sorted,
                "the newest automatic snapshots were not the ones kept"
            );
            assert!(labels(&snaps).contains(&"manual".to_string()));
            break;
        }
        // A new automatic snapshot exists for a moment before the oldest is pruned.
        assert!(autos <= 3, "retention is not pruning: {snaps:#?}");
        assert!(
            Instant::now() < deadline,
            "no automatic snapshot was pruned: {snaps:#?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn export_delete_import_and_incremental() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("[workload.app]\n{KEEPER}env = {{ MODE = \"prod\" }}\n"),
    );
    d.wait_running("app");
    sh(
        &d,
        "app",
        "head -c 300000 /dev/urandom > /data/blob; echo base > /etc/conf",
    );
    let sum1 = sh(&d, "app", "md5sum /data/blob /etc/conf");
    let full = d.state_dir().join("full.warx");
    d.ok(&["export", "app", "-o", full.to_str().unwrap()]);
    let base = labels(&snapshots(&d, "app", false)).pop().unwrap();
    assert!(base.starts_with("export-"), "{base}");
    sh(&d, "app", "echo more >> /data/blob");
    let sum2 = sh(&d, "app", "md5sum /data/blob /etc/conf");
    let incr = d.state_dir().join("incr.warx");
    // Export also works to stdout (for piping over ssh).
    let out = Command::new(WARREN)
        .args(["export", "app", "--since", &base, "-o", "-"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdout(Stdio::from(std::fs::File::create(&incr).unwrap()))
        .status()
        .unwrap();
    assert!(out.success());

    // Corrupted and truncated archives are refused and leave nothing behind.
    let bytes = std::fs::read(&full).unwrap();
    let bad = d.state_dir().join("bad.warx");
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    for broken in [flipped, bytes[..bytes.len() / 2].to_vec()] {
        std::fs::write(&bad, broken).unwrap();
        let out = d.cli(&["import", bad.to_str().unwrap(), "--name", "broken"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("import refused"),
            "{out:?}"
        );
        assert!(d.list().iter().all(|w| w["name"] != "broken"));
        assert!(!d.pool_root().join("workloads/broken").exists());
    }
    assert_eq!(
        std::fs::read_dir(d.state_dir().join("tmp"))
            .unwrap()
            .count(),
        0
    );

    // A full archive cannot overwrite an existing workload.
    assert!(!d.cli(&["import", full.to_str().unwrap()]).status.success());
    d.ok(&["delete", "--purge", "app"]);
    let out = d.ok(&["import", full.to_str().unwrap()]);
    assert!(out.contains("imported app"), "{out}");
    d.wait_running("app");
    assert_eq!(sh(&d, "app", "md5sum /data/blob /etc/conf"), sum1);
    assert_eq!(d.get("app")["spec"]["env"]["MODE"], "prod");
    // The incremental archive applies on top of the imported one.
    let out = d.ok(&["import", incr.to_str().unwrap()]);
    assert!(out.contains("incremental"), "{out}");
    d.wait_running("app");
    assert_eq!(sh(&d, "app", "md5sum /data/blob /etc/conf"), sum2);
    // And a copy under another name from stdin.
    let out = Command::new(WARREN)
        .args(["import", "-", "--name", "copy"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::from(std::fs::File::open(&full).unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    d.wait_running("copy");
    assert_eq!(sh(&d, "copy", "md5sum /data/blob /etc/conf"), sum1);
}

#[test]
fn volume_export_import_full_and_incremental() {
    let d = Daemon::start(&[]);
    d.apply(
        "w.toml",
        &format!("[volume.shared]\n\n[workload.w]\n{KEEPER}volumes = [\"shared:/srv/v\"]\n"),
    );
    d.wait_running("w");
    sh(&d, "w", "echo first > /srv/v/f");
    let full = d.state_dir().join("vol.warx");
    d.ok(&["export", "--volume", "shared", "-o", full.to_str().unwrap()]);
    let base = labels(&snapshots(&d, "shared", true)).pop().unwrap();
    sh(&d, "w", "echo second >> /srv/v/f");
    let incr = d.state_dir().join("vol-incr.warx");
    d.ok(&[
        "export",
        "--volume",
        "shared",
        "--since",
        &base,
        "-o",
        incr.to_str().unwrap(),
    ]);
    let out = d.ok(&["import", full.to_str().unwrap(), "--name", "copy"]);
    assert!(out.contains("imported copy"), "{out}");
    let f = d.pool_root().join("volumes/copy/f");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "first\n");
    d.ok(&["import", incr.to_str().unwrap(), "--name", "copy"]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "first\nsecond\n");
    let vols: Vec<serde_json::Value> =
        serde_json::from_str(&d.ok(&["volume", "list", "-o", "json"])).unwrap();
    assert!(
        vols.iter()
            .any(|v| v["name"] == "copy" && v["declared"] == true),
        "{vols:?}"
    );
    // A second full import under the same name is refused.
    assert!(!d
        .cli(&["import", full.to_str().unwrap(), "--name", "copy"])
        .status
        .success());
    d.ok(&["volume", "rm", "copy"]);
    assert!(!d.pool_root().join("volumes/copy").exists());
}
