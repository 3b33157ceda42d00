//! The ZFS driver's staged receive ([`Storage::receive_staged`], commit, abort, sweep) through
//! the recording executor: exactly these `zfs` commands, and every failure undone.
//! Tier 0: no ZFS kernel module needed.

use std::path::PathBuf;
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, RecordingExecutor};
use warren_storage::zfs::{command_error, ZfsError, ZfsStorage};
use warren_storage::{DatasetId, Storage};

const ROOT: &str = "/srv/warren-zfs-staged";

fn no_such(ds: &str) -> String {
    format!("cannot open '{ds}': dataset does not exist\n")
}

/// `open` against an existing, correctly mounted layout.
fn setup() -> (Arc<RecordingExecutor>, ZfsStorage) {
    let rec = Arc::new(RecordingExecutor::new());
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
    (rec, s)
}

fn stream_failure(cmd: &Cmd) -> ZfsError {
    command_error(ExecError::Failed {
        argv: cmd.argv_string(),
        status: "exit status: 1".into(),
        stdout: String::new(),
        stderr: "cannot receive new filesystem stream: checksum mismatch or incomplete stream\n"
            .into(),
    })
}

/// The dataset a `zfs receive ... DS@LABEL` receives into.
fn received_into(cmd: &Cmd) -> String {
    let last = cmd.args.last().unwrap().to_string_lossy().into_owned();
    last.split_once('@').unwrap().0.to_string()
}

const FULL_PREFIX: &str = "zfs receive -u -o canmount=noauto -o mountpoint=";

#[test]
fn full_stream_is_staged_hidden_and_renamed_into_place_on_commit() {
    let (rec, s) = setup();
    let vol = DatasetId::Volume("site".into());
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/site",
        &no_such("tank/warren/volumes/site"),
    );
    let mut argv = String::new();
    let staged = s
        .receive_staged_via(&vol, "l", |cmd| {
            argv = cmd.argv_string();
            Ok(())
        })
        .unwrap();
    rec.finish();
    let hidden = staged.place().to_string();
    assert!(
        hidden.starts_with("tank/warren/incoming-") && !hidden[12..].contains('/'),
        "{hidden}"
    );
    assert_eq!(
        argv,
        format!("{FULL_PREFIX}{ROOT}/volumes/site {hidden}@l"),
        "received unmounted, never mounted at boot, with its final mountpoint"
    );
    assert!(!staged.incremental());
    assert_eq!(staged.id(), &vol);
    assert_eq!(staged.label(), "l");

    // No listing shows it: not a dataset, not a volume.
    rec.expect_ok(
        "zfs list -Hp -t filesystem -o name,readonly -r tank/warren",
        &format!(
            "tank/warren\toff\ntank/warren/volumes\toff\ntank/warren/workloads\toff\n\
             tank/warren/worlds\toff\n{hidden}\toff\n"
        ),
    )
    .expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/volumes",
        "tank/warren/volumes\n",
    );
    assert!(s.list_datasets().unwrap().is_empty());
    assert!(s.list_volumes().unwrap().is_empty());
    rec.finish();

    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/site",
        &no_such("tank/warren/volumes/site"),
    )
    .expect_ok(&format!("zfs rename {hidden} tank/warren/volumes/site"), "")
    .expect_ok("zfs set canmount=on tank/warren/volumes/site", "")
    .expect_ok("zfs mount tank/warren/volumes/site", "");
    s.commit_staged(staged).unwrap();
    rec.finish();
}

#[test]
fn failed_full_receive_and_failed_commit_leave_nothing() {
    let (rec, s) = setup();
    let data = DatasetId::Data("web".into());
    // The stream fails: the hidden dataset (if zfs left one) is destroyed.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/workloads/web/data",
        &no_such("tank/warren/workloads/web/data"),
    );
    let err = s
        .receive_staged_via(&data, "l", |cmd| {
            rec.expect_err(
                &format!("zfs destroy -r {}", received_into(cmd)),
                &no_such(&received_into(cmd)),
            );
            Err(stream_failure(cmd))
        })
        .unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    rec.finish();

    // Received, but the mount at commit fails: the renamed dataset and the workload dataset
    // created for it are destroyed.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/workloads/web/data",
        &no_such("tank/warren/workloads/web/data"),
    );
    let staged = s.receive_staged_via(&data, "l", |_| Ok(())).unwrap();
    let hidden = staged.place().to_string();
    rec.expect_err(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        &no_such("tank/warren/workloads/web"),
    )
    .expect_ok(
        &format!("zfs create -o mountpoint={ROOT}/workloads/web tank/warren/workloads/web"),
        "",
    )
    .expect_ok(
        &format!("zfs rename {hidden} tank/warren/workloads/web/data"),
        "",
    )
    .expect_ok("zfs set canmount=on tank/warren/workloads/web/data", "")
    .expect_err(
        "zfs mount tank/warren/workloads/web/data",
        "cannot mount 'tank/warren/workloads/web/data': mountpoint or dataset is busy\n",
    )
    .expect_ok("zfs destroy -r tank/warren/workloads/web/data", "")
    .expect_ok("zfs destroy tank/warren/workloads/web", "");
    assert!(s.commit_staged(staged).is_err());
    rec.finish();

    // The dataset appeared meanwhile: commit refuses and destroys the hidden dataset.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/workloads/web/data",
        &no_such("tank/warren/workloads/web/data"),
    );
    let staged = s.receive_staged_via(&data, "l", |_| Ok(())).unwrap();
    let hidden = staged.place().to_string();
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/workloads/web",
        "tank/warren/workloads/web\ntank/warren/workloads/web/data\n",
    )
    .expect_ok(&format!("zfs destroy -r {hidden}"), "");
    let err = s.commit_staged(staged).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    rec.finish();

    // Abort destroys it.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/workloads/web/data",
        &no_such("tank/warren/workloads/web/data"),
    );
    let staged = s.receive_staged_via(&data, "l", |_| Ok(())).unwrap();
    rec.expect_ok(&format!("zfs destroy -r {}", staged.place()), "");
    s.abort_staged(staged).unwrap();
    rec.finish();
}

#[test]
fn incremental_stream_is_received_in_place_and_rolled_back_on_abort() {
    let (rec, s) = setup();
    let vol = DatasetId::Volume("site".into());
    let snaps = "tank/warren/volumes/site@a\t4096\t1768348800\n\
                 tank/warren/volumes/site@b\t8192\t1768435200\n";
    let stage = |rec: &RecordingExecutor| {
        rec.expect_ok(
            "zfs list -Hp -o name tank/warren/volumes/site",
            "tank/warren/volumes/site\n",
        )
        .expect_ok(
            "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/warren/volumes/site",
            snaps,
        );
    };
    stage(&rec);
    let staged = s
        .receive_staged_via(&vol, "c", |cmd| {
            assert_eq!(
                cmd.argv_string(),
                "zfs receive -u tank/warren/volumes/site@c",
                "not resumable: an interrupted receive keeps no partial state"
            );
            Ok(())
        })
        .unwrap();
    assert!(staged.incremental());
    assert_eq!(staged.place(), "tank/warren/volumes/site");
    rec.finish();
    // Abort: back to the newest snapshot before the receive (destroying @c), mounted again.
    rec.expect_ok("zfs rollback -r tank/warren/volumes/site@b", "")
        .expect_ok(
            "zfs get -Hp -o value mounted tank/warren/volumes/site",
            "no\n",
        )
        .expect_ok("zfs mount tank/warren/volumes/site", "");
    s.abort_staged(staged).unwrap();
    rec.finish();

    // Commit: already in place; mounted if `receive -u` left it unmounted.
    stage(&rec);
    let staged = s.receive_staged_via(&vol, "c", |_| Ok(())).unwrap();
    rec.expect_ok(
        "zfs get -Hp -o value mounted tank/warren/volumes/site",
        "yes\n",
    );
    s.commit_staged(staged).unwrap();
    rec.finish();

    // A failed stream changes nothing; the dataset is made sure to be mounted.
    stage(&rec);
    rec.expect_ok(
        "zfs get -Hp -o value mounted tank/warren/volumes/site",
        "yes\n",
    );
    let err = s
        .receive_staged_via(&vol, "c", |cmd| Err(stream_failure(cmd)))
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("receiving into tank/warren/volumes/site"),
        "{err}"
    );
    assert!(!err.to_string().contains("resume"), "{err}");
    rec.finish();

    // Without a snapshot there is no base: nothing is received.
    rec.expect_ok(
        "zfs list -Hp -o name tank/warren/volumes/site",
        "tank/warren/volumes/site\n",
    )
    .expect_ok(
        "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/warren/volumes/site",
        "",
    );
    assert!(s
        .receive_staged_via(&vol, "c", |_| panic!("received without a base"))
        .is_err());
    rec.finish();
}

#[test]
fn sweep_destroys_only_staged_datasets_nobody_holds() {
    let (rec, s) = setup();
    let vol = DatasetId::Volume("site".into());
    let stage = |rec: &RecordingExecutor| {
        rec.expect_err(
            "zfs list -Hp -o name tank/warren/volumes/site",
            &no_such("tank/warren/volumes/site"),
        );
        s.receive_staged_via(&vol, "l", |_| Ok(())).unwrap()
    };
    let held = stage(&rec);
    let dropped = stage(&rec);
    let dropped_place = dropped.place().to_string();
    drop(dropped);
    let leftover = "tank/warren/incoming-1-2-3";
    rec.expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren",
        &format!(
            "tank/warren\ntank/warren/volumes\ntank/warren/workloads\ntank/warren/worlds\n\
             {}\n{dropped_place}\n{leftover}\n",
            held.place()
        ),
    )
    .expect_ok(&format!("zfs destroy -r {dropped_place}"), "")
    .expect_ok(&format!("zfs destroy -r {leftover}"), "");
    assert_eq!(
        s.sweep_staged().unwrap(),
        [dropped_place, leftover.to_string()]
    );
    rec.finish();
    rec.expect_ok(&format!("zfs destroy -r {}", held.place()), "");
    s.abort_staged(held).unwrap();
    rec.finish();
}
