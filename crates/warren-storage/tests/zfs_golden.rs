//! The ZFS driver's command protocol, end to end through the recording executor: a whole
//! workload lifecycle produces exactly the expected `zfs` commands, and a failure injected at
//! each mutating step runs the compensating commands so nothing is left half-done.
//! Tier 0: no ZFS kernel module needed. The outputs and error messages are those OpenZFS
//! 2.1–2.3 (Linux, and FreeBSD 14's 2.2) prints, reconstructed from its source: see
//! `tests/golden/zfs/README.md` for where each comes from. None was captured from a live pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, RecordingExecutor};
use warren_storage::zfs::{command_error, ZfsError, ZfsErrorKind, ZfsStorage};
use warren_storage::{DatasetId, SnapshotInfo, Storage, StorageError};

const ROOT: &str = "/srv/warren-zfs-golden";

fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/zfs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn no_such(ds: &str) -> String {
    format!("cannot open '{ds}': dataset does not exist\n")
}

/// Scripts `open` against an existing, correctly mounted layout.
fn open_existing(rec: &Arc<RecordingExecutor>) -> ZfsStorage {
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &format!(
                "tank/warren\tmountpoint\t{ROOT}\tlocal\n\
             tank/warren/volumes\tmountpoint\t{ROOT}/volumes\tlocal\n\
             tank/warren/workloads\tmountpoint\t{ROOT}/workloads\tlocal\n\
             tank/warren/worlds\tmountpoint\t{ROOT}/worlds\tlocal\n"
            ),
        );
    let s = ZfsStorage::open("tank", PathBuf::from(ROOT), rec.clone()).unwrap();
    rec.finish();
    s
}

fn setup() -> (Arc<RecordingExecutor>, ZfsStorage) {
    let rec = Arc::new(RecordingExecutor::new());
    let s = open_existing(&rec);
    (rec, s)
}

/// The stream step of send/receive, failing the way `zfs` would with `stderr`.
fn stream_failure(cmd: &Cmd, stderr: &str) -> ZfsError {
    command_error(ExecError::Failed {
        argv: cmd.argv_string(),
        status: "exit status: 1".into(),
        stdout: String::new(),
        stderr: stderr.into(),
    })
}

#[test]
fn full_workload_lifecycle_runs_exactly_these_commands() {
    let rec = Arc::new(RecordingExecutor::new());
    let data = DatasetId::Data("web".into());
    let copy = DatasetId::Volume("web-copy".into());

    // open: the pool exists, warren's datasets do not yet.
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_err(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &no_such("tank/warren"),
        )
        .expect_ok(
            &format!("zfs create -p -o mountpoint={ROOT} tank/warren"),
            "",
        )
        .expect_ok(
            &format!("zfs create -p -o mountpoint={ROOT}/worlds tank/warren/worlds"),
            "",
        )
        .expect_ok(
            &format!("zfs create -p -o mountpoint={ROOT}/workloads tank/warren/workloads"),
            "",
        )
        .expect_ok(
            &format!("zfs create -p -o mountpoint={ROOT}/volumes tank/warren/volumes"),
            "",
        );
    let s = ZfsStorage::open("tank", PathBuf::from(ROOT), rec.clone()).unwrap();
    assert_eq!(s.driver(), "zfs");
    assert_eq!(s.pool_dataset(), "tank/warren");
    // The names a jail is handed its data dataset by.
    assert_eq!(
        s.zfs_dataset(&DatasetId::Data("web".into())).as_deref(),
        Some("tank/warren/workloads/web/data")
    );
    assert_eq!(s.zfs_dataset(&DatasetId::Data("a/../b".into())), None);

    // world: create, seal, list
    rec.expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/worlds/busybox tank/warren/worlds/busybox"),
        "",
    );
    assert_eq!(
        s.create_world_dataset("busybox").unwrap(),
        Path::new(ROOT).join("worlds/busybox")
    );
    rec.expect_ok("zfs set readonly=on tank/warren/worlds/busybox", "")
        .expect_ok("zfs snapshot tank/warren/worlds/busybox@base", "");
    s.seal_world("busybox").unwrap();
    rec.expect_ok(
        "zfs list -Hp -t snapshot -o name -d 2 tank/warren/worlds",
        "tank/warren/worlds/busybox@base\n",
    );
    assert_eq!(s.list_worlds().unwrap(), ["busybox"]);

    // rootfs: a clone of the world's @base
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        "tank/warren/worlds/busybox@base\n",
    )
    .expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        &no_such("tank/warren/workloads/web"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/web tank/warren/workloads/web"),
        "",
    )
    .expect_ok(
        &format!(
            "zfs clone -o mountpoint={ROOT}/workloads/web/rootfs \
             tank/warren/worlds/busybox@base tank/warren/workloads/web/rootfs"
        ),
        "",
    );
    assert_eq!(
        s.create_rootfs("web", "busybox").unwrap(),
        s.rootfs_path("web")
    );

    // data
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        "tank/warren/workloads/web\ntank/warren/workloads/web/rootfs\n",
    )
    .expect_ok(
        &format!(
            "zfs create -o mountpoint={ROOT}/workloads/web/data tank/warren/workloads/web/data"
        ),
        "",
    );
    assert_eq!(s.ensure_data("web").unwrap(), s.data_path("web"));
    assert_eq!(s.dataset_path(&data), s.data_path("web"));

    // snapshots
    rec.expect_ok("zfs snapshot tank/warren/workloads/web/data@before", "")
        .expect_ok(
            "zfs list -Hp -t snapshot -o name,used,creation tank/warren/workloads/web/data@before",
            "tank/warren/workloads/web/data@before\t0\t1768471234\n",
        );
    assert_eq!(
        s.snapshot(&data, "before").unwrap(),
        SnapshotInfo {
            dataset: "workloads/web/data".into(),
            label: "before".into(),
            created_at: 1768471234,
            bytes: Some(0),
        }
    );
    rec.expect_ok("zfs snapshot tank/warren/workloads/web/data@after", "")
        .expect_ok(
            "zfs list -Hp -t snapshot -o name,used,creation tank/warren/workloads/web/data@after",
            "tank/warren/workloads/web/data@after\t0\t1768471301\n",
        );
    s.snapshot(&data, "after").unwrap();
    let listing = "tank/warren/workloads/web/data@before\t65536\t1768471234\n\
                   tank/warren/workloads/web/data@after\t0\t1768471301\n";
    let list_cmd =
        "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/warren/workloads/web/data";
    rec.expect_ok(list_cmd, listing);
    let snaps = s.snapshots(&data).unwrap();
    assert_eq!(
        snaps
            .iter()
            .map(|s| (s.label.as_str(), s.bytes))
            .collect::<Vec<_>>(),
        [("before", Some(65536)), ("after", Some(0))]
    );

    // rollback: refused by name without destroy_newer (no `zfs rollback` runs), then done
    rec.expect_ok(list_cmd, listing);
    let err = s.rollback(&data, "before", false).unwrap_err().to_string();
    assert!(err.contains("newer than \"before\" (after)"), "{err}");
    rec.expect_ok(list_cmd, listing)
        .expect_ok("zfs rollback -r tank/warren/workloads/web/data@before", "");
    assert_eq!(s.rollback(&data, "before", true).unwrap(), ["after"]);

    // quota and usage of the whole workload
    rec.expect_ok("zfs set quota=10737418240 tank/warren/workloads/web", "")
        .expect_ok(
            "zfs get -Hp -o property,value used,quota tank/warren/workloads/web",
            &golden("get_usage.txt"),
        );
    s.set_workload_quota("web", Some(10 << 30)).unwrap();
    assert_eq!(
        s.workload_usage("web").unwrap(),
        (22052864, Some(10737418240))
    );

    // send: full and incremental streams are built from the snapshot names
    let mut sent = Vec::new();
    for since in [None, Some("before")] {
        s.send_via(&data, "after", since, |cmd| {
            sent.push(cmd.argv_string());
            Ok(())
        })
        .unwrap();
    }
    assert_eq!(
        sent,
        [
            "zfs send tank/warren/workloads/web/data@after",
            "zfs send -i @before tank/warren/workloads/web/data@after"
        ]
    );

    // clone of the data's current state into a volume, then removed again
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/web-copy",
        &no_such("tank/warren/volumes/web-copy"),
    )
    .expect_ok(
        "zfs snapshot tank/warren/workloads/web/data@warren-clone-volumes-web-copy",
        "",
    )
    .expect_ok(
        &format!(
            "zfs clone -o mountpoint={ROOT}/volumes/web-copy \
             tank/warren/workloads/web/data@warren-clone-volumes-web-copy tank/warren/volumes/web-copy"
        ),
        "",
    );
    s.clone_dataset(&data, None, &copy).unwrap();
    rec.expect_ok("zfs destroy -r tank/warren/volumes/web-copy", "");
    s.delete_volume("web-copy").unwrap();

    // the world is in use while the rootfs exists
    rec.expect_ok(
        "zfs get -Hp -o value clones tank/warren/worlds/busybox@base",
        "tank/warren/workloads/web/rootfs\n",
    );
    let err = s.delete_world("busybox").unwrap_err().to_string();
    assert!(
        err.contains("world \"busybox\" is the origin of workloads/web/rootfs"),
        "{err}"
    );

    // teardown
    rec.expect_ok("zfs destroy -r tank/warren/workloads/web/rootfs", "");
    s.delete_rootfs("web").unwrap();
    rec.expect_ok("zfs destroy -r tank/warren/workloads/web/data", "")
        .expect_ok("zfs destroy tank/warren/workloads/web", "");
    s.delete_data("web").unwrap();
    rec.expect_ok(
        "zfs get -Hp -o value clones tank/warren/worlds/busybox@base",
        &golden("clones_none.txt"),
    )
    .expect_ok("zfs destroy -r tank/warren/worlds/busybox", "");
    s.delete_world("busybox").unwrap();
    rec.finish();
}

#[test]
fn open_refuses_a_missing_pool_and_undoes_a_partial_layout() {
    let rec = Arc::new(RecordingExecutor::new());
    rec.expect_err(
        "zfs list -Hp -o name nosuchpool",
        &golden("err_no_pool.txt"),
    );
    let err = ZfsStorage::open("nosuchpool", PathBuf::from(ROOT), rec.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("\"nosuchpool\" does not exist"), "{err}");
    assert!(err.contains("zpool create"), "{err}");
    rec.finish();

    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_err(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &no_such("tank/warren"),
        )
        .expect_ok(
            &format!("zfs create -p -o mountpoint={ROOT} tank/warren"),
            "",
        )
        .expect_err(
            &format!("zfs create -p -o mountpoint={ROOT}/worlds tank/warren/worlds"),
            "cannot create 'tank/warren/worlds': out of space\n",
        )
        .expect_ok("zfs destroy tank/warren", "");
    let err = ZfsStorage::open("tank", PathBuf::from(ROOT), rec.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("out of space"), "{err}");
    rec.finish();
}

#[test]
fn open_refuses_datasets_mounted_elsewhere() {
    let rec = Arc::new(RecordingExecutor::new());
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &golden("get_mountpoint.txt"),
        );
    let err = ZfsStorage::open("tank", PathBuf::from(ROOT), rec.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tank/warren is mounted at /var/lib/warren, not at /srv/warren-zfs-golden"),
        "{err}"
    );
    rec.finish();

    // The same layout is accepted at its own root; nothing is created.
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &golden("get_mountpoint.txt"),
        );
    ZfsStorage::open("tank", PathBuf::from("/var/lib/warren"), rec.clone()).unwrap();
    rec.finish();
}

#[test]
fn world_creation_and_seal_failures() {
    let (rec, s) = setup();
    let create = format!("zfs create -o mountpoint={ROOT}/worlds/host tank/warren/worlds/host");
    rec.expect_err(&create, &golden("err_already_exists.txt"));
    assert!(matches!(
        s.create_world_dataset("host"),
        Err(StorageError::Exists(p)) if p == Path::new(ROOT).join("worlds/host")
    ));
    rec.finish();

    // A failed @base snapshot destroys the (read-only, unusable) world.
    rec.expect_ok("zfs set readonly=on tank/warren/worlds/host", "")
        .expect_err(
            "zfs snapshot tank/warren/worlds/host@base",
            &golden("err_snapshot_out_of_space.txt"),
        )
        .expect_ok("zfs destroy -r tank/warren/worlds/host", "");
    let err = s.seal_world("host").unwrap_err().to_string();
    assert!(err.contains("out of space"), "{err}");
    rec.finish();

    // So does a failed readonly=on.
    rec.expect_err(
        "zfs set readonly=on tank/warren/worlds/host",
        "cannot set property for 'tank/warren/worlds/host': permission denied\n",
    )
    .expect_ok("zfs destroy -r tank/warren/worlds/host", "");
    assert!(s.seal_world("host").is_err());
    rec.finish();

    // A cleanup that fails too is reported with the original error.
    rec.expect_ok("zfs set readonly=on tank/warren/worlds/host", "")
        .expect_err(
            "zfs snapshot tank/warren/worlds/host@base",
            &golden("err_snapshot_out_of_space.txt"),
        )
        .expect_err(
            "zfs destroy -r tank/warren/worlds/host",
            "cannot unmount '/srv/warren-zfs-golden/worlds/host': pool or dataset is busy\n",
        );
    let err = s.seal_world("host").unwrap_err().to_string();
    assert!(err.contains("out of space"), "{err}");
    assert!(err.contains("undoing it also failed"), "{err}");
    assert!(err.contains("is busy"), "{err}");
    rec.finish();

    // Sealing a sealed world is a no-op; sealing a missing one names the world.
    rec.expect_ok("zfs set readonly=on tank/warren/worlds/host", "")
        .expect_err(
            "zfs snapshot tank/warren/worlds/host@base",
            "cannot create snapshot 'tank/warren/worlds/host@base': dataset already exists\n",
        );
    s.seal_world("host").unwrap();
    rec.expect_err(
        "zfs set readonly=on tank/warren/worlds/nope",
        &no_such("tank/warren/worlds/nope"),
    );
    assert!(matches!(
        s.seal_world("nope"),
        Err(StorageError::NoSuchWorld(w)) if w == "nope"
    ));
    rec.finish();
}

#[test]
fn delete_world_is_idempotent_and_names_dependent_clones() {
    let (rec, s) = setup();
    rec.expect_ok(
        "zfs get -Hp -o value clones tank/warren/worlds/busybox@base",
        &golden("clones.txt"),
    );
    let err = s.delete_world("busybox").unwrap_err().to_string();
    assert!(
        err.contains("workloads/api/rootfs, workloads/web/rootfs"),
        "{err}"
    );
    rec.finish();

    // A clone made between the check and the destroy: zfs refuses, nothing is swallowed.
    rec.expect_ok(
        "zfs get -Hp -o value clones tank/warren/worlds/busybox@base",
        &golden("clones_none.txt"),
    )
    .expect_err(
        "zfs destroy -r tank/warren/worlds/busybox",
        &golden("err_dependent_clones_recursive.txt"),
    );
    let err = s.delete_world("busybox").unwrap_err().to_string();
    assert!(err.contains("filesystem has dependent clones"), "{err}");
    rec.finish();

    rec.expect_err(
        "zfs get -Hp -o value clones tank/warren/worlds/busybox@base",
        &no_such("tank/warren/worlds/busybox@base"),
    )
    .expect_err(
        "zfs destroy -r tank/warren/worlds/busybox",
        &no_such("tank/warren/worlds/busybox"),
    );
    s.delete_world("busybox").unwrap();
    rec.finish();
}

#[test]
fn rootfs_failures_leave_no_workload_dataset_behind() {
    let (rec, s) = setup();
    let clone = format!(
        "zfs clone -o mountpoint={ROOT}/workloads/web/rootfs \
         tank/warren/worlds/busybox@base tank/warren/workloads/web/rootfs"
    );

    // Missing world: nothing but the check runs.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        &no_such("tank/warren/worlds/busybox@base"),
    );
    assert!(matches!(
        s.create_rootfs("web", "busybox"),
        Err(StorageError::NoSuchWorld(w)) if w == "busybox"
    ));
    rec.finish();

    // A failed clone destroys the workload dataset this call created.
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        "tank/warren/worlds/busybox@base\n",
    )
    .expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        &no_such("tank/warren/workloads/web"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/web tank/warren/workloads/web"),
        "",
    )
    .expect_err(
        &clone,
        "cannot create 'tank/warren/workloads/web/rootfs': out of space\n",
    )
    .expect_ok("zfs destroy tank/warren/workloads/web", "");
    let err = s.create_rootfs("web", "busybox").unwrap_err().to_string();
    assert!(err.contains("out of space"), "{err}");
    rec.finish();

    // An existing rootfs is replaced; a workload dataset that was there stays on failure.
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        "tank/warren/worlds/busybox@base\n",
    )
    .expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        &golden("list_children.txt"),
    )
    .expect_ok("zfs destroy -r tank/warren/workloads/web/rootfs", "")
    .expect_err(
        &clone,
        "cannot create 'tank/warren/workloads/web/rootfs': out of space\n",
    );
    assert!(s.create_rootfs("web", "busybox").is_err());
    rec.finish();

    // delete_rootfs: absent is fine, busy is an error.
    rec.expect_err(
        "zfs destroy -r tank/warren/workloads/web/rootfs",
        &no_such("tank/warren/workloads/web/rootfs"),
    )
    .expect_err(
        "zfs destroy -r tank/warren/workloads/web/rootfs",
        &golden("err_busy.txt"),
    );
    s.delete_rootfs("web").unwrap();
    let err = s.delete_rootfs("web").unwrap_err().to_string();
    assert!(err.contains("busy"), "{err}");
    rec.finish();
}

#[test]
fn data_failures_and_idempotent_deletes() {
    let (rec, s) = setup();
    let create =
        format!("zfs create -o mountpoint={ROOT}/workloads/db/data tank/warren/workloads/db/data");
    rec.expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/db",
        &no_such("tank/warren/workloads/db"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/db tank/warren/workloads/db"),
        "",
    )
    .expect_err(
        &create,
        "cannot create 'tank/warren/workloads/db/data': out of space\n",
    )
    .expect_ok("zfs destroy tank/warren/workloads/db", "");
    assert!(s.ensure_data("db").is_err());
    rec.finish();

    // Existing data: one query, nothing created.
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/db",
        "tank/warren/workloads/db\ntank/warren/workloads/db/data\n",
    );
    assert_eq!(s.ensure_data("db").unwrap(), s.data_path("db"));
    rec.finish();

    // On a pool with `listsnapshots=on` the listing has the workload dataset's snapshots too
    // (sorted right after it); they are not children.
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/db",
        "tank/warren/workloads/db\ntank/warren/workloads/db@data\n",
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/db/data tank/warren/workloads/db/data"),
        "",
    );
    assert_eq!(s.ensure_data("db").unwrap(), s.data_path("db"));
    rec.finish();

    // A workload dataset destroyed meanwhile: the create names the missing parent.
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/db",
        "tank/warren/workloads/db\n",
    )
    .expect_err(&create, &golden("err_parent_missing.txt"));
    let err = s.ensure_data("db").unwrap_err().to_string();
    assert!(err.contains("parent does not exist"), "{err}");
    rec.finish();

    // delete_data keeps the workload dataset while the rootfs is in it, and is idempotent.
    rec.expect_ok("zfs destroy -r tank/warren/workloads/db/data", "")
        .expect_err(
            "zfs destroy tank/warren/workloads/db",
            &golden("err_has_children.txt"),
        )
        .expect_err(
            "zfs destroy -r tank/warren/workloads/db/data",
            &no_such("tank/warren/workloads/db/data"),
        )
        .expect_err(
            "zfs destroy tank/warren/workloads/db",
            &no_such("tank/warren/workloads/db"),
        );
    s.delete_data("db").unwrap();
    s.delete_data("db").unwrap();
    rec.finish();
}

#[test]
fn snapshot_rollback_and_quota_failures() {
    let (rec, s) = setup();
    let data = DatasetId::Data("web".into());

    rec.expect_err(
        "zfs snapshot tank/warren/workloads/web/data@nightly",
        &golden("err_snapshot_exists.txt"),
    );
    assert!(matches!(
        s.snapshot(&data, "nightly"),
        Err(StorageError::Exists(p)) if p == Path::new("tank/warren/workloads/web/data@nightly")
    ));
    rec.finish();

    // The snapshot was taken but cannot be read back: it is destroyed again.
    rec.expect_ok("zfs snapshot tank/warren/workloads/web/data@nightly", "")
        .expect_ok(
            "zfs list -Hp -t snapshot -o name,used,creation tank/warren/workloads/web/data@nightly",
            "tank/warren/workloads/web/data@nightly\t0\n",
        )
        .expect_ok("zfs destroy tank/warren/workloads/web/data@nightly", "");
    let err = s.snapshot(&data, "nightly").unwrap_err().to_string();
    assert!(
        err.contains("expected 3 tab-separated columns, found 2"),
        "{err}"
    );
    rec.finish();

    let list_cmd =
        "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/warren/workloads/web/data";
    rec.expect_ok(list_cmd, &golden("snapshot_list.txt"));
    let err = s.rollback(&data, "weekly", true).unwrap_err().to_string();
    assert!(err.contains("has no snapshot \"weekly\""), "{err}");
    rec.expect_ok(list_cmd, &golden("snapshot_list.txt"))
        .expect_ok("zfs rollback tank/warren/workloads/web/data@nightly", "");
    assert!(s.rollback(&data, "nightly", false).unwrap().is_empty());
    // `-r` does not destroy clones of the newer snapshots: zfs refuses and names them.
    rec.expect_ok(list_cmd, &golden("snapshot_list.txt"))
        .expect_err(
            "zfs rollback -r tank/warren/workloads/web/data@before-upgrade",
            &golden("err_rollback_clones.txt"),
        );
    let err = s
        .rollback(&data, "before-upgrade", true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("clones of previous snapshots exist"), "{err}");
    // A snapshot taken between the listing and the rollback.
    rec.expect_ok(list_cmd, &golden("snapshot_list.txt"))
        .expect_err(
            "zfs rollback tank/warren/workloads/web/data@nightly",
            &golden("err_rollback_race.txt"),
        );
    let err = s.rollback(&data, "nightly", false).unwrap_err().to_string();
    assert!(err.contains("more recent than"), "{err}");
    rec.finish();

    rec.expect_err(
        "zfs destroy tank/warren/workloads/web/data@gone",
        &golden("err_no_snapshots.txt"),
    );
    let err = s.delete_snapshot(&data, "gone").unwrap_err().to_string();
    assert_eq!(err, "workloads/web/data has no snapshot \"gone\"");
    // A held snapshot (a `zfs send` in progress holds it): busy, in 2.1–2.3.2 and 2.3.3+ words.
    for held in ["err_snapshot_busy.txt", "err_snapshot_held.txt"] {
        rec.expect_err(
            "zfs destroy tank/warren/workloads/web/data@nightly",
            &golden(held),
        );
        let err = s.delete_snapshot(&data, "nightly").unwrap_err().to_string();
        assert!(err.contains("cannot destroy snapshot"), "{err}");
    }
    rec.expect_ok("zfs destroy tank/warren/workloads/web/data@nightly", "");
    s.delete_snapshot(&data, "nightly").unwrap();
    rec.finish();

    rec.expect_err(
        "zfs set quota=1048576 tank/warren/workloads/nope",
        &no_such("tank/warren/workloads/nope"),
    )
    .expect_ok("zfs set quota=none tank/warren/workloads/web", "")
    .expect_ok("zfs set quota=none tank/warren/workloads/web/data", "")
    .expect_ok(
        "zfs get -Hp -o property,value used,quota tank/warren/workloads/web/data",
        &golden("get_usage_none.txt"),
    );
    assert!(s.set_workload_quota("nope", Some(1 << 20)).is_err());
    let err = s
        .set_workload_quota("web", Some(0))
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 bytes"), "{err}");
    s.set_workload_quota("web", None).unwrap();
    s.set_quota(&data, None).unwrap();
    assert_eq!(s.usage(&data).unwrap(), (98304, None));
    rec.finish();
}

#[test]
fn clone_failures_remove_the_temporary_snapshot_and_parent() {
    let (rec, s) = setup();
    let src = DatasetId::Volume("site".into());
    let dst = DatasetId::Data("preview".into());
    let temp = "tank/warren/volumes/site@warren-clone-workloads-preview-data";

    rec.expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/preview",
        &no_such("tank/warren/workloads/preview"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/preview tank/warren/workloads/preview"),
        "",
    )
    // a stale temporary snapshot from an earlier, since deleted clone is replaced
    .expect_err(
        &format!("zfs snapshot {temp}"),
        &format!("cannot create snapshot '{temp}': dataset already exists\n"),
    )
    .expect_ok(&format!("zfs destroy {temp}"), "")
    .expect_ok(&format!("zfs snapshot {temp}"), "")
    .expect_err(
        &format!(
            "zfs clone -o mountpoint={ROOT}/workloads/preview/data {temp} \
             tank/warren/workloads/preview/data"
        ),
        "cannot create 'tank/warren/workloads/preview/data': out of space\n",
    )
    .expect_ok(&format!("zfs destroy {temp}"), "")
    .expect_ok("zfs destroy tank/warren/workloads/preview", "");
    let err = s.clone_dataset(&src, None, &dst).unwrap_err().to_string();
    assert!(err.contains("out of space"), "{err}");
    rec.finish();

    // An explicit snapshot takes no temporary one; an existing destination is refused.
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/preview",
        "tank/warren/workloads/preview\ntank/warren/workloads/preview/data\n",
    );
    assert!(matches!(
        s.clone_dataset(&src, Some("v1"), &dst),
        Err(StorageError::Exists(p)) if p == s.data_path("preview")
    ));
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/v1-copy",
        &no_such("tank/warren/volumes/v1-copy"),
    )
    .expect_ok(
        &format!(
            "zfs clone -o mountpoint={ROOT}/volumes/v1-copy tank/warren/volumes/site@v1 \
             tank/warren/volumes/v1-copy"
        ),
        "",
    );
    s.clone_dataset(&src, Some("v1"), &DatasetId::Volume("v1-copy".into()))
        .unwrap();
    rec.finish();
}

#[test]
fn failed_full_receive_leaves_nothing() {
    let (rec, s) = setup();
    let id = DatasetId::Data("moved".into());
    rec.expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/moved",
        &no_such("tank/warren/workloads/moved"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/moved tank/warren/workloads/moved"),
        "",
    )
    .expect_ok("zfs receive -A tank/warren/workloads/moved/data", "")
    .expect_ok(
        "zfs list -Hp -o name tank/warren/workloads/moved/data",
        "tank/warren/workloads/moved/data\n",
    )
    .expect_ok("zfs destroy -r tank/warren/workloads/moved/data", "")
    .expect_ok("zfs destroy tank/warren/workloads/moved", "");
    let mut ran = None;
    let err = s
        .receive_via(&id, "cutover", |cmd| {
            ran = Some(cmd.argv_string());
            Err(stream_failure(cmd, &golden("err_quota_exceeded.txt")))
        })
        .unwrap_err();
    assert_eq!(
        ran.unwrap(),
        format!(
            "zfs receive -s -u -o mountpoint={ROOT}/workloads/moved/data \
             tank/warren/workloads/moved/data@cutover"
        )
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("receiving into tank/warren/workloads/moved/data"),
        "{msg}"
    );
    assert!(msg.contains("space quota exceeded"), "{msg}");
    assert!(!msg.contains("resume"), "{msg}");
    rec.finish();

    // The stream arrived but the mount failed: still nothing left (no partial state to abort).
    let vol = DatasetId::Volume("site".into());
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/site",
        &no_such("tank/warren/volumes/site"),
    )
    .expect_err(
        "zfs mount tank/warren/volumes/site",
        "cannot mount 'tank/warren/volumes/site': mountpoint or dataset is busy\n",
    )
    .expect_err(
        "zfs receive -A tank/warren/volumes/site",
        &golden("err_no_resume_state.txt"),
    )
    .expect_ok(
        "zfs list -Hp -o name tank/warren/volumes/site",
        "tank/warren/volumes/site\n",
    )
    .expect_ok("zfs destroy -r tank/warren/volumes/site", "");
    assert!(s.receive_via(&vol, "l", |_| Ok(())).is_err());
    rec.finish();

    // Success: received unmounted with its mountpoint, then mounted.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/site",
        &no_such("tank/warren/volumes/site"),
    )
    .expect_ok("zfs mount tank/warren/volumes/site", "");
    s.receive_via(&vol, "l", |cmd| {
        assert_eq!(
            cmd.argv_string(),
            format!(
                "zfs receive -s -u -o mountpoint={ROOT}/volumes/site tank/warren/volumes/site@l"
            )
        );
        Ok(())
    })
    .unwrap();
    rec.finish();
}

#[test]
fn failed_incremental_receive_reports_the_resume_token() {
    let (rec, s) = setup();
    let vol = DatasetId::Volume("site".into());
    let token = golden("resume_token.txt").trim_end().to_string();
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/volumes/site",
        "tank/warren/volumes/site\n",
    )
    .expect_ok(
        "zfs get -Hp -o value receive_resume_token tank/warren/volumes/site",
        &golden("resume_token.txt"),
    );
    let err = s
        .receive_via(&vol, "b", |cmd| {
            assert_eq!(
                cmd.argv_string(),
                "zfs receive -s -u tank/warren/volumes/site@b"
            );
            Err(ZfsError::Stream {
                argv: cmd.argv_string(),
                error: std::io::Error::other("connection reset by peer"),
            })
        })
        .unwrap_err();
    match &err {
        ZfsError::Receive { token: Some(t), .. } => assert_eq!(t, &token),
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("connection reset by peer"), "{msg}");
    assert!(msg.contains(&format!("zfs send -t {token}")), "{msg}");
    assert!(
        msg.contains("zfs receive -A tank/warren/volumes/site"),
        "{msg}"
    );
    rec.finish();

    // A stream refused outright (dataset modified) leaves no token to resume.
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/volumes/site",
        "tank/warren/volumes/site\n",
    )
    .expect_ok(
        "zfs get -Hp -o value receive_resume_token tank/warren/volumes/site",
        &golden("resume_token_none.txt"),
    )
    .expect_ok("zfs receive -A tank/warren/volumes/site", "");
    let err = s
        .receive_via(&vol, "b", |cmd| {
            Err(stream_failure(cmd, &golden("err_modified.txt")))
        })
        .unwrap_err();
    assert!(
        matches!(&err, ZfsError::Receive { token: None, error, .. } if error.kind() == Some(ZfsErrorKind::Modified)),
        "{err:?}"
    );
    s.abort_receive(&vol).unwrap();
    rec.finish();

    // Send errors come back classified, with nothing run through the executor.
    let before = rec.ran().len();
    let err = s
        .send_via(&vol, "b", Some("a"), |cmd| {
            Err(stream_failure(cmd, &golden("err_does_not_exist.txt")))
        })
        .unwrap_err();
    assert_eq!(err.kind(), Some(ZfsErrorKind::NotFound));
    assert_eq!(rec.ran().len(), before);
}

#[test]
fn derived_worlds_are_clones_of_the_parent_base() {
    let (rec, s) = setup();
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        "tank/warren/worlds/busybox@base\n",
    )
    .expect_ok(
        &format!(
            "zfs clone -o mountpoint={ROOT}/worlds/oci-1 \
             tank/warren/worlds/busybox@base tank/warren/worlds/oci-1"
        ),
        "",
    );
    assert_eq!(
        s.create_world_from("oci-1", "busybox").unwrap(),
        Path::new(ROOT).join("worlds/oci-1")
    );
    rec.finish();

    // A parent without @base (missing, or never sealed) is refused before anything is made.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/worlds/half@base",
        &no_such("tank/warren/worlds/half@base"),
    );
    assert!(matches!(
        s.create_world_from("oci-2", "half"),
        Err(StorageError::NoSuchWorld(w)) if w == "half"
    ));
    rec.finish();

    // An existing child name is reported as such.
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/worlds/busybox@base",
        "tank/warren/worlds/busybox@base\n",
    )
    .expect_err(
        &format!(
            "zfs clone -o mountpoint={ROOT}/worlds/oci-1 \
             tank/warren/worlds/busybox@base tank/warren/worlds/oci-1"
        ),
        "cannot create 'tank/warren/worlds/oci-1': dataset already exists\n",
    );
    assert!(matches!(
        s.create_world_from("oci-1", "busybox"),
        Err(StorageError::Exists(_))
    ));
    rec.finish();
    assert!(s.create_world_from("a/b", "busybox").is_err());
}
