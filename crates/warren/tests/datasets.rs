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

/// Staged receives (`.incoming-*`) anywhere under the pool's `snapshots/`, and import spools.
fn staged_leftovers(d: &Daemon) -> Vec<std::path::PathBuf> {
    fn walk(p: &std::path::Path, depth: usize, found: &mut Vec<std::path::PathBuf>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".incoming-") {
                found.push(e.path());
            } else if depth > 0 && e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), depth - 1, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(&d.pool_root().join("snapshots"), 4, &mut found);
    if let Ok(rd) = std::fs::read_dir(d.state_dir().join("tmp")) {
        found.extend(
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("import-"))
                .map(|e| e.path()),
        );
    }
    found
}

/// Where things are in an archive: each section's chunks (from its first chunk length to the
/// end of its last chunk) and the trailer's first byte.
struct Layout {
    sections: Vec<std::ops::Range<usize>>,
    trailer: usize,
}

fn layout(b: &[u8]) -> Layout {
    let be32 = |p: usize| u32::from_be_bytes(b[p..p + 4].try_into().unwrap()) as usize;
    let mut p = 12 + be32(8);
    let mut sections = Vec::new();
    while b[p] == 1 {
        p += 2;
        let start = p;
        loop {
            let l = be32(p);
            p += 4;
            if l == 0 {
                break;
            }
            p += l;
        }
        sections.push(start..p - 4);
        p += 32;
    }
    assert_eq!(b[p], 0, "trailer tag");
    Layout {
        sections,
        trailer: p,
    }
}

/// A workload named `name` exists nowhere: not in the store, not in the pool, no staged
/// receive or spool is left.
fn assert_no_trace(d: &Daemon, name: &str) {
    assert!(d.list().iter().all(|w| w["name"] != name));
    assert!(!d.pool_root().join("workloads").join(name).exists());
    assert!(!d
        .pool_root()
        .join("snapshots/workloads")
        .join(name)
        .exists());
    assert_eq!(staged_leftovers(d), Vec::<std::path::PathBuf>::new());
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
        assert_no_trace(&d, "broken");
    }

    // A full archive cannot overwrite an existing workload.
    assert!(!d.cli(&["import", full.to_str().unwrap()]).status.success());
    // A deleted workload keeps its data: importing over it names the kept data and the ways
    // out, and `delete --purge` removes the kept data of a workload already deleted.
    let out = d.ok(&["delete", "app"]);
    assert!(out.contains("data kept"), "{out}");
    assert!(d.list().is_empty());
    let out = d.cli(&["import", full.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kept data of a deleted workload \"app\"")
            && err.contains("warren delete --purge app")
            && err.contains("--name"),
        "{err}"
    );
    assert!(d.list().is_empty());
    let out = d.ok(&["delete", "--purge", "app"]);
    assert!(out.contains("kept data"), "{out}");
    assert!(!d.pool_root().join("workloads/app/data").exists());
    assert!(!d.cli(&["delete", "--purge", "app"]).status.success());
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

#[test]
fn damage_at_the_end_of_a_two_section_archive_creates_nothing() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &format!("[workload.src]\n{KEEPER}"));
    d.wait_running("src");
    sh(
        &d,
        "src",
        "head -c 2000000 /dev/urandom > /data/blob; echo conf > /etc/conf",
    );
    let full = d.state_dir().join("full.warx");
    d.ok(&["export", "src", "-o", full.to_str().unwrap()]);
    let bytes = std::fs::read(&full).unwrap();
    let l = layout(&bytes);
    assert_eq!(l.sections.len(), 2, "rootfs and data");
    let last = l.sections[1].clone();
    let flip = |at: usize| {
        let mut b = bytes.clone();
        b[at] ^= 0x10;
        b
    };
    let bad = d.state_dir().join("bad.warx");
    for (what, broken) in [
        // Both streams arrive whole; only their digests or the trailer tell.
        ("last section", flip(last.end - 10)),
        ("section digest", flip(last.end + 4 + 3)),
        ("trailer digest", flip(l.trailer + 5)),
        ("end marker", flip(bytes.len() - 2)),
        ("cut in the end marker", bytes[..bytes.len() - 3].to_vec()),
        ("cut before the trailer", bytes[..l.trailer].to_vec()),
        ("extra byte", [&bytes[..], b"x"].concat()),
    ] {
        std::fs::write(&bad, broken).unwrap();
        let out = d.cli(&["import", bad.to_str().unwrap(), "--name", "broken"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(err.contains("import refused"), "{what}: {err}");
        println!("{what}: {}", err.trim());
        assert_no_trace(&d, "broken");
    }
    // The intact archive still imports, byte for byte.
    let out = d.ok(&["import", full.to_str().unwrap(), "--name", "good"]);
    assert!(out.contains("imported good"), "{out}");
    d.wait_running("good");
    assert_eq!(
        sh(&d, "good", "md5sum /data/blob /etc/conf"),
        sh(&d, "src", "md5sum /data/blob /etc/conf")
    );
    assert_eq!(staged_leftovers(&d), Vec::<std::path::PathBuf>::new());
}

#[test]
fn incremental_import_damaged_in_its_second_section_changes_nothing() {
    let d = Daemon::start(&[]);
    d.apply("w.toml", &format!("[workload.app]\n{KEEPER}"));
    d.wait_running("app");
    sh(
        &d,
        "app",
        "head -c 500000 /dev/urandom > /data/blob; echo base > /etc/conf",
    );
    let full = d.state_dir().join("full.warx");
    d.ok(&["export", "app", "-o", full.to_str().unwrap()]);
    let base = labels(&snapshots(&d, "app", false)).pop().unwrap();
    sh(
        &d,
        "app",
        "head -c 300000 /dev/urandom >> /data/blob; echo changed > /etc/conf; echo new > /data/new",
    );
    let incr = d.state_dir().join("incr.warx");
    d.ok(&[
        "export",
        "app",
        "--since",
        &base,
        "-o",
        incr.to_str().unwrap(),
    ]);
    let sum2 = sh(&d, "app", "md5sum /data/blob /etc/conf /data/new");
    d.ok(&["delete", "--purge", "app"]);
    d.ok(&["import", full.to_str().unwrap()]);
    d.wait_running("app");
    let files = "md5sum /data/blob /etc/conf; ls /data";
    let before = sh(&d, "app", files);
    let snaps_before = labels(&snapshots(&d, "app", false));
    assert_eq!(snaps_before, [base]);

    let bytes = std::fs::read(&incr).unwrap();
    let l = layout(&bytes);
    assert_eq!(l.sections.len(), 2, "rootfs and data");
    let bad = d.state_dir().join("bad-incr.warx");
    for (what, broken) in [
        ("data section", {
            let mut b = bytes.clone();
            b[l.sections[1].end - 10] ^= 0x01;
            b
        }),
        ("trailer", {
            let mut b = bytes.clone();
            b[l.trailer + 1] ^= 0x01;
            b
        }),
        (
            "cut in the data section",
            bytes[..l.sections[1].end - 10].to_vec(),
        ),
    ] {
        std::fs::write(&bad, broken).unwrap();
        let out = d.cli(&["import", bad.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(err.contains("import refused"), "{what}: {err}");
        // The workload runs again with exactly its data and rootfs of before.
        d.wait_running("app");
        assert_eq!(sh(&d, "app", files), before, "{what} changed the workload");
        assert_eq!(labels(&snapshots(&d, "app", false)), snaps_before);
        assert_eq!(staged_leftovers(&d), Vec::<std::path::PathBuf>::new());
    }
    d.ok(&["import", incr.to_str().unwrap()]);
    d.wait_running("app");
    assert_eq!(sh(&d, "app", "md5sum /data/blob /etc/conf /data/new"), sum2);
}

#[test]
fn a_staged_receive_left_by_a_killed_daemon_is_deleted_on_restart() {
    let mut d = Daemon::start(&[]);
    d.apply("w.toml", &format!("[workload.src]\n{KEEPER}"));
    d.wait_running("src");
    sh(&d, "src", "head -c 4000000 /dev/urandom > /data/blob");
    let full = d.state_dir().join("full.warx");
    d.ok(&["export", "src", "-o", full.to_str().unwrap()]);
    let bytes = std::fs::read(&full).unwrap();
    let l = layout(&bytes);
    // Send the archive up to the middle of its data section, then hold the pipe open.
    let mut import = Command::new(WARREN)
        .args(["import", "-", "--name", "half"])
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = import.stdin.take().unwrap();
    let middle = (l.sections[1].start + l.sections[1].end) / 2;
    std::io::Write::write_all(&mut stdin, &bytes[..middle]).unwrap();
    wait_until(30, "a staged receive", || !staged_leftovers(&d).is_empty());
    d.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    import.kill().unwrap();
    let _ = import.wait();
    drop(stdin);
    assert!(!staged_leftovers(&d).is_empty());
    d.spawn();
    wait_until(30, "the leftover deleted", || {
        staged_leftovers(&d).is_empty()
    });
    assert_no_trace(&d, "half");
    assert!(d
        .ok(&["events", "-n", "500"])
        .contains("leftover of an interrupted import"));
    // The name is free: the archive imports under it.
    d.ok(&["import", full.to_str().unwrap(), "--name", "half"]);
    d.wait_running("half");
}
