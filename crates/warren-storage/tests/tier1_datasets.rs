//! Tier-1 tests of snapshots, rollback, clones, quotas, volumes and send/receive: real btrfs
//! on sparse loop files, real copies for the dir driver.
//!
//! They need root, btrfs-progs, util-linux, coreutils and GNU tar; when something is missing
//! they fail saying what. Every btrfs test makes its own image(s) in its own temp dir and a
//! guard unmounts them and detaches their loop devices even when the test fails.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{exec, require_tier1, run, tempdir, LoopBtrfs};
use warren_exec::{Cmd, Executor, HostExecutor};
use warren_storage::dir::DirStorage;
use warren_storage::{DatasetId, Storage, StorageError};

const MIB: u64 = 1 << 20;

/// Tools the tier-1 harness checks for besides btrfs-progs and mount.
const TIER1_TOOLS: &[(&str, &str)] = &[("cp", "coreutils"), ("tar", "tar")];

fn dir_storage() -> (tempfile::TempDir, DirStorage) {
    require_tier1();
    let t = tempdir();
    let s = DirStorage::new(t.path().join("datasets"), exec());
    (t, s)
}

// ---- helpers ------------------------------------------------------------------------------

/// Every entry under `root`: kind, mode, owner and a hash of the contents (or link target).
fn fingerprint(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        let path = root.join(rel);
        let m = path.symlink_metadata().unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let what = if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&path).unwrap().display())
        } else if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
            format!("dir {mode:o} {}:{}", m.uid(), m.gid())
        } else {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).unwrap().hash(&mut h);
            format!(
                "file {mode:o} {}:{} {} {:x}",
                m.uid(),
                m.gid(),
                m.len(),
                h.finish()
            )
        };
        out.insert(rel.display().to_string(), what);
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn populate(dir: &Path) {
    std::fs::create_dir_all(dir.join("etc/conf.d")).unwrap();
    std::fs::write(dir.join("etc/app.conf"), "port = 80\n").unwrap();
    std::fs::write(dir.join("etc/conf.d/doomed"), "delete me").unwrap();
    std::fs::write(dir.join("blob"), random_bytes(300_000)).unwrap();
    std::os::unix::fs::symlink("etc/app.conf", dir.join("conf")).unwrap();
    std::fs::set_permissions(
        dir.join("etc/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(dir.join("blob"), Some(1234), Some(5678)).unwrap();
}

fn change(dir: &Path) {
    std::fs::write(dir.join("etc/app.conf"), "port = 8080\n").unwrap();
    std::fs::remove_file(dir.join("etc/conf.d/doomed")).unwrap();
    std::fs::write(dir.join("new-file"), "new").unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("blob"))
        .unwrap();
    f.write_all(b"tail").unwrap();
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let mut f = std::fs::File::open("/dev/urandom").unwrap();
    std::io::Read::read_exact(&mut f, &mut v).unwrap();
    v
}

/// Writes `mib` MiB of random data (one random MiB repeated) to `path`, then fsyncs.
fn write_mib(path: &Path, mib: u64) -> std::io::Result<()> {
    let block = random_bytes(MIB as usize);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for _ in 0..mib {
        f.write_all(&block)?;
    }
    f.sync_all()
}

fn assert_edquot(r: std::io::Result<()>, what: &str) {
    let err = r.expect_err(&format!("{what}: write beyond the quota succeeded"));
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{what}: {err}");
}

fn data(w: &str) -> DatasetId {
    DatasetId::Data(w.into())
}

fn vol(v: &str) -> DatasetId {
    DatasetId::Volume(v.into())
}

fn labels(s: &dyn Storage, id: &DatasetId) -> Vec<String> {
    s.snapshots(id)
        .unwrap()
        .into_iter()
        .map(|i| i.label)
        .collect()
}

/// Nothing named like a temp entry anywhere under `root`.
fn assert_no_temp_entries(root: &Path) {
    fn walk(p: &Path, found: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                found.push(e.path());
            }
            if e.file_type().unwrap().is_dir() && p.components().count() < 12 {
                walk(&e.path(), found);
            }
        }
    }
    let mut found = Vec::new();
    for top in ["workloads", "volumes", "snapshots"] {
        walk(&root.join(top), &mut found);
    }
    assert!(found.is_empty(), "temp entries left behind: {found:?}");
}

// ---- behaviour shared by both drivers -----------------------------------------------------

/// snapshot → change → rollback gives back the exact tree; newer snapshots are refused, then
/// destroyed on request; labels are checked; deleting the dataset deletes its snapshots.
fn check_snapshot_rollback(s: &dyn Storage) {
    let id = data("web");
    let d = s.ensure_data("web").unwrap();
    populate(&d);
    let before = fingerprint(&d);
    let info = s.snapshot(&id, "s1").unwrap();
    assert_eq!(
        (info.dataset.as_str(), info.label.as_str()),
        ("workloads/web/data", "s1")
    );
    assert!(s
        .root()
        .join("snapshots/workloads/web/data/s1/etc/app.conf")
        .exists());
    assert!(s
        .root()
        .join("snapshots/workloads/web/data/s1.json")
        .exists());
    assert!(matches!(
        s.snapshot(&id, "s1"),
        Err(StorageError::SnapshotExists { .. })
    ));
    for bad in [".hidden", "a/b", "", "x.json"] {
        let err = s.snapshot(&id, bad).unwrap_err();
        assert!(matches!(err, StorageError::InvalidLabel(_)), "{err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }

    change(&d);
    assert_ne!(fingerprint(&d), before);
    assert_eq!(s.rollback(&id, "s1", false).unwrap(), Vec::<String>::new());
    assert_eq!(
        fingerprint(&d),
        before,
        "rollback did not restore the exact tree"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("etc/conf.d/doomed")).unwrap(),
        "delete me"
    );
    // The dataset is writable after the rollback and the snapshot is still there.
    change(&d);
    let changed = fingerprint(&d);
    s.snapshot(&id, "s2").unwrap();
    std::fs::write(d.join("after-s2"), "x").unwrap();

    let err = s.rollback(&id, "s1", false).unwrap_err();
    match &err {
        StorageError::NewerSnapshots { newer, .. } => assert_eq!(newer, &["s2"]),
        other => panic!("expected NewerSnapshots, got {other}"),
    }
    assert!(err.to_string().contains("s2"), "{err}");
    assert!(
        d.join("after-s2").exists(),
        "a refused rollback changed the dataset"
    );
    assert_eq!(labels(s, &id), ["s1", "s2"]);

    assert_eq!(s.rollback(&id, "s1", true).unwrap(), ["s2"]);
    assert_eq!(fingerprint(&d), before);
    assert_eq!(labels(s, &id), ["s1"]);
    assert!(!s.root().join("snapshots/workloads/web/data/s2").exists());
    assert!(matches!(
        s.rollback(&id, "nope", false),
        Err(StorageError::NoSuchSnapshot { .. })
    ));
    let _ = changed;

    s.snapshot(&id, "s3").unwrap();
    s.delete_snapshot(&id, "s3").unwrap();
    assert!(matches!(
        s.delete_snapshot(&id, "s3"),
        Err(StorageError::NoSuchSnapshot { .. })
    ));
    assert_eq!(labels(s, &id), ["s1"]);
    assert_no_temp_entries(s.root());

    s.delete_data("web").unwrap();
    assert!(
        !s.root().join("snapshots").exists(),
        "snapshots outlived their dataset"
    );
    assert!(!s.root().join("workloads/web").exists());
    assert!(s.snapshots(&id).unwrap().is_empty());
}

/// Volumes: create, snapshot, clone, list, delete with snapshots.
fn check_volumes(s: &dyn Storage) {
    assert!(s.list_volumes().unwrap().is_empty());
    let v = s.ensure_volume("site").unwrap();
    assert_eq!(v, s.root().join("volumes/site"));
    assert_eq!(s.ensure_volume("site").unwrap(), v);
    std::fs::write(v.join("index.html"), "v1").unwrap();
    s.snapshot(&vol("site"), "v1").unwrap();
    std::fs::write(v.join("index.html"), "v2").unwrap();
    s.clone_dataset(&vol("site"), Some("v1"), &vol("site-old"))
        .unwrap();
    s.clone_dataset(&vol("site"), None, &vol("site-now"))
        .unwrap();
    assert!(matches!(
        s.clone_dataset(&vol("site"), None, &vol("site-now")),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        s.clone_dataset(&vol("nope"), None, &vol("x")),
        Err(StorageError::NoSuchDataset(_))
    ));
    let old = s.dataset_path(&vol("site-old"));
    assert_eq!(
        std::fs::read_to_string(old.join("index.html")).unwrap(),
        "v1"
    );
    std::fs::write(old.join("index.html"), "edited clone").unwrap();
    assert_eq!(std::fs::read_to_string(v.join("index.html")).unwrap(), "v2");
    let now = s.dataset_path(&vol("site-now"));
    assert_eq!(
        std::fs::read_to_string(now.join("index.html")).unwrap(),
        "v2"
    );
    assert_eq!(s.list_volumes().unwrap(), ["site", "site-now", "site-old"]);
    assert!(s
        .list_datasets()
        .unwrap()
        .iter()
        .any(|d| d.name == "volumes/site" && !d.readonly));

    s.delete_volume("site").unwrap();
    s.delete_volume("site").unwrap();
    assert!(!v.exists());
    assert!(!s.root().join("snapshots/volumes/site").exists());
    assert!(s.snapshots(&vol("site")).unwrap().is_empty());
    s.delete_volume("site-old").unwrap();
    s.delete_volume("site-now").unwrap();
    assert!(s.list_volumes().unwrap().is_empty());
    assert!(matches!(
        s.snapshot(&vol("site"), "x"),
        Err(StorageError::NoSuchDataset(_))
    ));
}

// ---- btrfs --------------------------------------------------------------------------------

#[test]
fn btrfs_snapshot_rollback_restores_exact_bytes() {
    let fs = LoopBtrfs::new(256 * MIB);
    let s = fs.storage();
    check_snapshot_rollback(&s);
    assert!(fs.subvolumes().is_empty(), "{:?}", fs.subvolumes());
}

#[test]
fn btrfs_snapshots_are_read_only_subvolumes() {
    let fs = LoopBtrfs::new(256 * MIB);
    let s = fs.storage();
    s.ensure_data("web").unwrap();
    s.snapshot(&data("web"), "nightly").unwrap();
    assert_eq!(
        fs.subvolumes(),
        ["snapshots/workloads/web/data/nightly", "workloads/web/data"]
    );
    let snap = s.root().join("snapshots/workloads/web/data/nightly");
    let err = std::fs::write(snap.join("x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // Without quotas the size of a snapshot is unknown.
    assert_eq!(s.snapshots(&data("web")).unwrap()[0].bytes, None);
    s.delete_data("web").unwrap();
    assert!(fs.subvolumes().is_empty());
}

#[test]
fn btrfs_volumes_with_snapshots() {
    let fs = LoopBtrfs::new(256 * MIB);
    let s = fs.storage();
    check_volumes(&s);
    assert!(fs.subvolumes().is_empty(), "{:?}", fs.subvolumes());
}

#[test]
fn btrfs_clone_is_constant_time() {
    let fs = LoopBtrfs::new(3 << 30);
    let s = fs.storage();
    let small = s.ensure_volume("small").unwrap();
    let big = s.ensure_volume("big").unwrap();
    write_mib(&small.join("f"), 1).unwrap();
    write_mib(&big.join("f"), 1024).unwrap();
    run(Cmd::new("sync"));
    let t = Instant::now();
    s.clone_dataset(&vol("small"), None, &vol("small-clone"))
        .unwrap();
    let t_small = t.elapsed();
    let t = Instant::now();
    s.clone_dataset(&vol("big"), None, &vol("big-clone"))
        .unwrap();
    let t_big = t.elapsed();
    println!("clone of 1 MiB: {t_small:?}, clone of 1 GiB: {t_big:?}");
    assert!(
        t_big < Duration::from_secs(1),
        "clone of 1 GiB took {t_big:?}"
    );
    let floor = Duration::from_millis(20);
    assert!(
        t_big < t_small.max(floor) * 5,
        "clone of 1 GiB ({t_big:?}) is not constant time next to 1 MiB ({t_small:?})"
    );
    let clone = s.dataset_path(&vol("big-clone"));
    assert_eq!(
        std::fs::metadata(clone.join("f")).unwrap().len(),
        1024 * MIB
    );
    // Snapshot and clone of a snapshot are constant time too.
    let t = Instant::now();
    s.snapshot(&vol("big"), "s").unwrap();
    s.clone_dataset(&vol("big"), Some("s"), &vol("big-from-snap"))
        .unwrap();
    println!("snapshot + clone of it, 1 GiB: {:?}", t.elapsed());
}

#[test]
fn btrfs_quota_on_a_volume_gives_edquot() {
    let fs = LoopBtrfs::new(512 * MIB);
    let s = fs.storage();
    let v = s.ensure_volume("uploads").unwrap();
    assert_eq!(s.usage(&vol("uploads")).unwrap().1, None);
    s.set_quota(&vol("uploads"), Some(8 * MIB)).unwrap();
    s.set_quota(&vol("uploads"), Some(8 * MIB)).unwrap(); // quotas already on: idempotent
    write_mib(&v.join("a"), 4).unwrap();
    let (used, limit) = s.usage(&vol("uploads")).unwrap();
    println!("volume usage after 4 MiB: {used} bytes, limit {limit:?}");
    assert_eq!(limit, Some(8 * MIB));
    assert!((4 * MIB..5 * MIB).contains(&used), "{used}");
    assert_edquot(write_mib(&v.join("b"), 8), "volume");

    // Snapshots report what only they hold.
    std::fs::remove_file(v.join("b")).unwrap();
    s.snapshot(&vol("uploads"), "before-delete").unwrap();
    std::fs::remove_file(v.join("a")).unwrap();
    run(Cmd::new("btrfs").args(["filesystem", "sync"]).arg(&v));
    let snaps = s.snapshots(&vol("uploads")).unwrap();
    println!("snapshot exclusive bytes: {:?}", snaps[0].bytes);
    assert!(snaps[0].bytes.unwrap() >= 4 * MIB, "{snaps:?}");

    s.set_quota(&vol("uploads"), None).unwrap();
    assert_eq!(s.usage(&vol("uploads")).unwrap().1, None);
    write_mib(&v.join("c"), 12).unwrap();
}

#[test]
fn btrfs_workload_quota_counts_bytes_beyond_the_world() {
    let fs = LoopBtrfs::new(512 * MIB);
    let s = fs.storage();
    // A world holding 16 MiB: twice the quota, and not charged to the workload.
    let w = s.create_world_dataset("fat").unwrap();
    write_mib(&w.join("world-bytes"), 16).unwrap();
    s.seal_world("fat").unwrap();
    let rootfs = s.create_rootfs("web", "fat").unwrap();
    let d = s.ensure_data("web").unwrap();
    assert!(matches!(
        s.set_workload_quota("nope", Some(MIB)),
        Err(StorageError::NoSuchDataset(_))
    ));
    s.set_workload_quota("web", Some(8 * MIB)).unwrap();
    let group = std::fs::read_to_string(s.root().join("workloads/web/qgroup")).unwrap();
    assert!(group.starts_with("1/"), "{group}");

    write_mib(&d.join("a"), 3).unwrap();
    write_mib(&rootfs.join("b"), 3).unwrap();
    let (used, limit) = s.workload_usage("web").unwrap();
    println!("workload usage after 6 MiB (world 16 MiB): {used} bytes, limit {limit:?}");
    assert_eq!(limit, Some(8 * MIB));
    assert!((6 * MIB..7 * MIB).contains(&used), "{used}");
    assert_edquot(write_mib(&d.join("c"), 4), "workload data");

    // A recreated rootfs is a new subvolume: re-applying the quota moves it into the group.
    std::fs::remove_file(d.join("c")).unwrap();
    let rootfs = s.create_rootfs("web", "fat").unwrap();
    s.set_workload_quota("web", Some(8 * MIB)).unwrap();
    assert_eq!(
        std::fs::read_to_string(s.root().join("workloads/web/qgroup")).unwrap(),
        group,
        "the workload's group changed"
    );
    let (used, _) = s.workload_usage("web").unwrap();
    assert!((3 * MIB..4 * MIB).contains(&used), "{used}");
    write_mib(&rootfs.join("b"), 3).unwrap();
    assert_edquot(write_mib(&rootfs.join("c"), 4), "recreated rootfs");

    // A rollback of the data keeps it in the group.
    std::fs::remove_file(rootfs.join("c")).unwrap();
    s.snapshot(&data("web"), "s").unwrap();
    s.rollback(&data("web"), "s", false).unwrap();
    assert_edquot(write_mib(&d.join("d"), 4), "rolled-back data");

    s.set_workload_quota("web", None).unwrap();
    assert_eq!(s.workload_usage("web").unwrap().1, None);
    write_mib(&d.join("e"), 4).unwrap();

    s.delete_rootfs("web").unwrap();
    s.delete_data("web").unwrap();
    assert!(!s.root().join("workloads/web").exists());
    let groups = run(Cmd::new("btrfs")
        .args(["qgroup", "show", "--raw"])
        .arg(&fs.mnt));
    assert!(
        !groups.contains(group.trim()),
        "group left behind:\n{groups}"
    );
}

#[test]
fn btrfs_send_receive_full_incremental_and_truncated() {
    let a = LoopBtrfs::new(256 * MIB);
    let b = LoopBtrfs::new(256 * MIB);
    let (sa, sb) = (a.storage(), b.storage());
    let id = data("db");
    let src = sa.ensure_data("db").unwrap();
    populate(&src);
    sa.snapshot(&id, "s1").unwrap();
    let mut full = Vec::new();
    sa.send(&id, "s1", None, &mut full).unwrap();
    println!("full stream: {} bytes", full.len());

    // A truncated stream is refused and leaves nothing behind.
    let before = b.subvolumes();
    let err = sb
        .receive(&id, "s1", &mut &full[..full.len() / 2])
        .unwrap_err();
    println!("truncated full stream: {err}");
    assert_eq!(b.subvolumes(), before);
    assert!(!sb.data_path("db").exists());
    assert!(sb.snapshots(&id).unwrap().is_empty());
    assert_no_temp_entries(sb.root());
    let err = sb
        .receive(&id, "s1", &mut &b"not a stream at all"[..])
        .unwrap_err();
    assert!(err.to_string().contains("not a btrfs send stream"), "{err}");

    sb.receive(&id, "s1", &mut &full[..]).unwrap();
    let dst = sb.data_path("db");
    assert_eq!(fingerprint(&dst), fingerprint(&src));
    assert_eq!(labels(&sb, &id), ["s1"]);
    std::fs::write(dst.join("writable"), "yes").unwrap();
    std::fs::remove_file(dst.join("writable")).unwrap();
    let err = sb.receive(&id, "again", &mut &full[..]).unwrap_err();
    assert!(err.to_string().contains("full stream needs"), "{err}");

    change(&src);
    sa.snapshot(&id, "s2").unwrap();
    let mut incr = Vec::new();
    sa.send(&id, "s2", Some("s1"), &mut incr).unwrap();
    println!("incremental stream: {} bytes", incr.len());
    assert!(incr.len() < full.len() / 2);

    let before = b.subvolumes();
    let err = sb
        .receive(&id, "s2", &mut &incr[..incr.len() / 2])
        .unwrap_err();
    println!("truncated incremental stream: {err}");
    assert_eq!(b.subvolumes(), before);
    assert_no_temp_entries(sb.root());
    let s1 = sa.root().join("snapshots/workloads/db/data/s1");
    assert_eq!(
        fingerprint(&dst),
        fingerprint(&s1),
        "a refused stream changed the dataset"
    );

    sb.receive(&id, "s2", &mut &incr[..]).unwrap();
    assert_eq!(fingerprint(&dst), fingerprint(&src));
    assert_eq!(labels(&sb, &id), ["s1", "s2"]);
    assert_no_temp_entries(sb.root());

    // An incremental stream needs its base on the receiving side.
    let err = sb
        .receive(&data("other"), "s2", &mut &incr[..])
        .unwrap_err();
    assert!(
        err.to_string().contains("incremental stream needs"),
        "{err}"
    );
    assert!(matches!(
        sa.send(&id, "s2", Some("zz"), &mut Vec::new()),
        Err(StorageError::NoSuchSnapshot { .. })
    ));
}

// ---- dir ----------------------------------------------------------------------------------

#[test]
fn dir_snapshot_rollback_restores_exact_bytes() {
    let (_t, s) = dir_storage();
    check_snapshot_rollback(&s);
}

#[test]
fn dir_volumes_with_snapshots() {
    let (_t, s) = dir_storage();
    check_volumes(&s);
}

#[test]
fn dir_quotas_are_unsupported_and_usage_sums_files() {
    let (_t, s) = dir_storage();
    let v = s.ensure_volume("v").unwrap();
    std::fs::write(v.join("a"), vec![0u8; 1000]).unwrap();
    let err = s.set_quota(&vol("v"), Some(MIB)).unwrap_err();
    assert!(matches!(err, StorageError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("quota"), "{err}");
    assert!(matches!(
        s.set_workload_quota("web", Some(MIB)),
        Err(StorageError::Unsupported(_))
    ));
    assert_eq!(s.usage(&vol("v")).unwrap(), (1000, None));
    let d = s.ensure_data("web").unwrap();
    std::fs::write(d.join("x"), "12345").unwrap();
    assert_eq!(s.workload_usage("web").unwrap(), (5, None));
}

#[test]
fn dir_send_receive_full_and_refusals() {
    let (_t, a) = dir_storage();
    let (_u, b) = dir_storage();
    let id = data("db");
    let src = a.ensure_data("db").unwrap();
    populate(&src);
    a.snapshot(&id, "s1").unwrap();
    let mut full = Vec::new();
    a.send(&id, "s1", None, &mut full).unwrap();

    let err = b
        .receive(&id, "s1", &mut &full[..full.len() / 2])
        .unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(!b.data_path("db").exists());
    assert!(b.snapshots(&id).unwrap().is_empty());
    assert_no_temp_entries(b.root());

    b.receive(&id, "s1", &mut &full[..]).unwrap();
    assert_eq!(fingerprint(&b.data_path("db")), fingerprint(&src));
    assert_eq!(labels(&b, &id), ["s1"]);
    assert!(b.receive(&id, "s2", &mut &full[..]).is_err());

    change(&src);
    a.snapshot(&id, "s2").unwrap();
    let err = a.send(&id, "s2", Some("s1"), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, StorageError::Unsupported(_)), "{err}");

    // Archives that would write outside the target are refused, and nothing of them is kept.
    let t = tempdir();
    std::fs::write(t.path().join("payload"), "x").unwrap();
    for (name, args) in [
        ("absolute", vec!["-P", "-cf", "-", "/etc/hostname"]),
        ("dotdot", vec!["-P", "-cf", "-", "sub/../payload"]),
    ] {
        std::fs::create_dir_all(t.path().join("sub")).unwrap();
        let tar = HostExecutor
            .run(&Cmd::new("tar").arg("-C").arg(t.path()).args(args))
            .unwrap()
            .stdout;
        let err = b.receive(&data(name), "evil", &mut &tar[..]).unwrap_err();
        println!("{name}: {err}");
        assert!(err.to_string().contains("refusing"), "{err}");
        assert!(!b.data_path(name).exists());
    }
    let evil = t.path().join("evil");
    std::fs::create_dir(&evil).unwrap();
    std::os::unix::fs::symlink("/etc", evil.join("link")).unwrap();
    let mut tar = HostExecutor
        .run(
            &Cmd::new("tar")
                .arg("-C")
                .arg(&evil)
                .args(["-cf", "-", "link"]),
        )
        .unwrap()
        .stdout;
    // Append a member that extraction would write through the symlink.
    std::fs::remove_file(evil.join("link")).unwrap();
    std::fs::create_dir(evil.join("link")).unwrap();
    std::fs::write(evil.join("link/pwned"), "x").unwrap();
    let second = HostExecutor
        .run(
            &Cmd::new("tar")
                .arg("-C")
                .arg(&evil)
                .args(["-cf", "-", "link/pwned"]),
        )
        .unwrap()
        .stdout;
    let end = tar.len() - tar.iter().rev().take_while(|&&b| b == 0).count();
    tar.truncate(end.div_ceil(512) * 512);
    tar.extend_from_slice(&second);
    let err = b.receive(&data("sym"), "evil", &mut &tar[..]).unwrap_err();
    println!("through symlink: {err}");
    assert!(err.to_string().contains("below the symlink"), "{err}");
    assert!(!Path::new("/etc/pwned").exists());
    assert_no_temp_entries(b.root());
}

// ---- staged receives ----------------------------------------------------------------------

/// Yields `data`, then fails where it would have ended: a stream whose container found it
/// damaged at its end (an archive section whose digest does not match).
struct FailsAtEnd<'a>(&'a [u8]);

impl std::io::Read for FailsAtEnd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "checksum mismatch at the end of the section",
            ));
        }
        std::io::Read::read(&mut self.0, buf)
    }
}

/// The staged place of a btrfs or dir receive: hidden, and no listing shows it.
fn assert_hidden(s: &dyn Storage, staged: &warren_storage::Staged) {
    let place = Path::new(staged.place());
    assert!(place.exists(), "{}", place.display());
    assert!(place.starts_with(s.root().join("snapshots")));
    let name = place.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(".incoming-"), "{name}");
    let listed = s.list_datasets().unwrap();
    assert!(
        listed.iter().all(|d| !d.path.starts_with(place)),
        "{listed:?}"
    );
    assert!(labels(s, staged.id()).iter().all(|l| l != staged.label()));
}

/// Staged full receive → abort leaves nothing; → commit installs; a dataset that appeared
/// meanwhile makes the commit fail without touching it; a failing reader leaves nothing; the
/// sweep deletes only the staged receives nobody holds.
fn check_staged_full(s: &dyn Storage, full: &[u8], src: &BTreeMap<String, String>) {
    let id = data("db");
    let st = s.receive_staged(&id, "s1", &mut &full[..]).unwrap();
    assert!(!st.incremental());
    assert!(!s.data_path("db").exists(), "staged counts as existing");
    assert_hidden(s, &st);
    s.abort_staged(st).unwrap();
    assert!(!s.data_path("db").exists());
    assert!(s.snapshots(&id).unwrap().is_empty());
    assert_no_temp_entries(s.root());
    assert!(!s.root().join("snapshots/workloads/db").exists());

    let err = s
        .receive_staged(&id, "s1", &mut FailsAtEnd(full))
        .unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!s.data_path("db").exists());
    assert_no_temp_entries(s.root());

    let st = s.receive_staged(&id, "s1", &mut &full[..]).unwrap();
    s.commit_staged(st).unwrap();
    assert_eq!(&fingerprint(&s.data_path("db")), src);
    assert_eq!(labels(s, &id), ["s1"]);
    assert_no_temp_entries(s.root());

    // The dataset appears between stage and commit: refused, the newcomer untouched.
    let other = data("other");
    let st = s.receive_staged(&other, "s1", &mut &full[..]).unwrap();
    let d = s.ensure_data("other").unwrap();
    std::fs::write(d.join("mine"), "mine").unwrap();
    let err = s.commit_staged(st).unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(std::fs::read_to_string(d.join("mine")).unwrap(), "mine");
    assert!(labels(s, &other).is_empty());
    assert_no_temp_entries(s.root());

    // Sweep: a held staged receive stays, a dropped one and a crash's leftover go.
    let held = s
        .receive_staged(&data("held"), "s1", &mut &full[..])
        .unwrap();
    let dropped = s
        .receive_staged(&data("lost"), "s1", &mut &full[..])
        .unwrap();
    let lost = PathBuf::from(dropped.place());
    drop(dropped);
    let crashed = s.root().join("snapshots/volumes/v/.incoming-1-2-3");
    std::fs::create_dir_all(&crashed).unwrap();
    std::fs::write(crashed.join("partial"), "x").unwrap();
    let mut swept = s.sweep_staged().unwrap();
    swept.sort();
    let mut want = vec![
        lost.to_string_lossy().into_owned(),
        crashed.to_string_lossy().into_owned(),
    ];
    want.sort();
    assert_eq!(swept, want);
    assert!(!lost.exists() && !crashed.exists());
    assert!(!s.root().join("snapshots/volumes").exists());
    assert!(Path::new(held.place()).exists());
    s.commit_staged(held).unwrap();
    assert_eq!(&fingerprint(&s.data_path("held")), src);
    assert!(s.sweep_staged().unwrap().is_empty());
    assert_no_temp_entries(s.root());
}

#[test]
fn btrfs_staged_receive_commit_abort_and_sweep() {
    let a = LoopBtrfs::new(256 * MIB);
    let b = LoopBtrfs::new(256 * MIB);
    let (sa, sb) = (a.storage(), b.storage());
    let id = data("db");
    let src = sa.ensure_data("db").unwrap();
    populate(&src);
    sa.snapshot(&id, "s1").unwrap();
    let mut full = Vec::new();
    sa.send(&id, "s1", None, &mut full).unwrap();
    let s1 = fingerprint(&src);
    let before = b.subvolumes();
    check_staged_full(&sb, &full, &s1);
    for gone in ["db", "other", "held"] {
        sb.delete_data(gone).unwrap();
    }
    assert_eq!(b.subvolumes(), before, "subvolumes left behind");

    // Incremental: staged, the dataset keeps its state; abort; stage again and commit.
    sb.receive(&id, "s1", &mut &full[..]).unwrap();
    change(&src);
    sa.snapshot(&id, "s2").unwrap();
    let mut incr = Vec::new();
    sa.send(&id, "s2", Some("s1"), &mut incr).unwrap();
    let dst = sb.data_path("db");
    let subvols = b.subvolumes();
    let st = sb.receive_staged(&id, "s2", &mut &incr[..]).unwrap();
    assert!(st.incremental());
    assert_hidden(&sb, &st);
    assert_eq!(fingerprint(&dst), s1, "a staged stream changed the dataset");
    assert_eq!(labels(&sb, &id), ["s1"]);
    sb.abort_staged(st).unwrap();
    assert_eq!(fingerprint(&dst), s1);
    assert_eq!(b.subvolumes(), subvols);
    assert_no_temp_entries(sb.root());
    let err = sb
        .receive_staged(&id, "s2", &mut FailsAtEnd(&incr))
        .unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(fingerprint(&dst), s1);
    assert_eq!(b.subvolumes(), subvols);
    let st = sb.receive_staged(&id, "s2", &mut &incr[..]).unwrap();
    sb.commit_staged(st).unwrap();
    assert_eq!(fingerprint(&dst), fingerprint(&src));
    assert_eq!(labels(&sb, &id), ["s1", "s2"]);
    assert_no_temp_entries(sb.root());
}

#[test]
fn dir_staged_receive_commit_abort_and_sweep() {
    let (_t, a) = dir_storage();
    let (_u, b) = dir_storage();
    let id = data("db");
    let src = a.ensure_data("db").unwrap();
    populate(&src);
    a.snapshot(&id, "s1").unwrap();
    let mut full = Vec::new();
    a.send(&id, "s1", None, &mut full).unwrap();
    check_staged_full(&b, &full, &fingerprint(&src));
}

/// A derived world is a writable copy-on-write snapshot of its parent: changing it leaves the
/// parent's bytes alone, it is sealed when built, it inherits the parent's binds, and a failed
/// build leaves nothing.
fn derived_worlds(s: &dyn Storage) {
    use warren_storage::worlds::{derive_world, world_meta};
    let base = derive_world(s, "base", None, vec!["/bin/app".into()], |root| {
        populate(root);
        Ok(())
    })
    .unwrap();
    assert_eq!(base.default_command, ["/bin/app"]);
    let before = fingerprint(&s.world_path("base"));
    let child = derive_world(s, "child", Some("base"), Vec::new(), |root| {
        std::fs::write(root.join("etc/app.conf"), "port = 8080\n").unwrap();
        std::fs::remove_file(root.join("etc/conf.d/doomed")).unwrap();
        std::fs::write(root.join("added"), "new").unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(child.default_command, ["/bin/app"], "inherited");
    assert_eq!(fingerprint(&s.world_path("base")), before, "parent changed");
    let c = s.world_path("child");
    assert_eq!(
        std::fs::read_to_string(c.join("etc/app.conf")).unwrap(),
        "port = 8080\n"
    );
    assert!(!c.join("etc/conf.d/doomed").exists());
    assert_eq!(
        std::fs::read(c.join("blob")).unwrap(),
        std::fs::read(s.world_path("base").join("blob")).unwrap()
    );
    let mut worlds = s.list_worlds().unwrap();
    worlds.sort();
    assert_eq!(worlds, ["base", "child"]);
    assert_eq!(world_meta(s, "child").unwrap().name, "child");

    // A failing build deletes its half-made world; the parent stays.
    let err = derive_world(s, "broken", Some("child"), Vec::new(), |root| {
        std::fs::write(root.join("partial"), "x").unwrap();
        Err(StorageError::Other("layer refused".into()))
    })
    .unwrap_err();
    assert!(err.to_string().contains("layer refused"), "{err}");
    assert!(!s.world_path("broken").exists());
    assert!(!s.world_meta_path("broken").exists());
    // Unknown or unsealed parents are refused; an existing name too.
    assert!(matches!(
        derive_world(s, "orphan", Some("nope"), Vec::new(), |_| Ok(())),
        Err(StorageError::NoSuchWorld(_))
    ));
    assert!(derive_world(s, "child", Some("base"), Vec::new(), |_| Ok(())).is_err());
    assert!(s.create_world_from("../x", "base").is_err());
    // A rootfs made from the child sees the child's content.
    let rootfs = s.create_rootfs("web", "child").unwrap();
    assert!(rootfs.join("added").exists());
}

#[test]
fn btrfs_derived_worlds_share_their_parent() {
    let fs = LoopBtrfs::new(256 * MIB);
    derived_worlds(&fs.storage());
}

#[test]
fn dir_derived_worlds_copy_their_parent() {
    let (_t, s) = dir_storage();
    derived_worlds(&s);
}
