//! Unit tests of the ZFS driver: parsers against captured output, and every operation's
//! command sequence through the recording executor.

use super::*;
use warren_exec::{HostExecutor, RecordingExecutor};

macro_rules! golden {
    ($name:literal) => {
        include_str!(concat!("../../tests/golden/zfs/", $name))
    };
}

fn storage() -> (Arc<RecordingExecutor>, ZfsStorage) {
    let rec = Arc::new(RecordingExecutor::new());
    let s = ZfsStorage {
        pool_dataset: "tank/warren".into(),
        mountpoint_root: PathBuf::from("/srv/warren-zfs"),
        exec: rec.clone(),
    };
    (rec, s)
}

#[test]
fn list_splits_tabs_and_keeps_spaces_and_dashes() {
    let rows = parse_list(golden!("list_mountpoints.txt"), 5).unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(
        rows[0],
        ["tank", "6316326912", "30124621824", "98304", "/tank"]
    );
    assert_eq!(rows[2][4], "legacy");
    assert_eq!(rows[3][0], "tank/media files");
    assert_eq!(rows[3][4], "/srv/media files/My Photos");
    assert_eq!(rows[4][4], "none");
    // A volume has no mountpoint: `-`.
    assert_eq!(rows[5][0], "tank/swap");
    assert_eq!(rows[5][4], "-");
    // Sorted by name, as `zfs list` does without -s.
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn list_rejects_wrong_column_counts() {
    let err = parse_list(golden!("list_mountpoints.txt"), 4).unwrap_err();
    assert_eq!(
        err,
        ParseError::Columns {
            line: 1,
            expected: 4,
            found: 5,
            text: "tank\t6316326912\t30124621824\t98304\t/tank".into()
        }
    );
    let msg = err.to_string();
    assert!(
        msg.contains("expected 4 tab-separated columns, found 5"),
        "{msg}"
    );
    // A space-aligned (non -H) listing is one column per line, never silently accepted.
    assert!(parse_list("NAME   USED  AVAIL\ntank   1.2G  28G\n", 3).is_err());
    assert!(parse_list("", 3).unwrap().is_empty());
}

#[test]
fn names_and_filesystems() {
    let rows = parse_list(golden!("list_children.txt"), 1).unwrap();
    assert_eq!(
        rows.concat(),
        [
            "tank/warren/workloads/web",
            "tank/warren/workloads/web/data",
            "tank/warren/workloads/web/rootfs"
        ]
    );
    let rows = parse_list(golden!("list_filesystems.txt"), 2).unwrap();
    assert_eq!(rows[0], ["tank/warren", "off"]);
    assert!(rows
        .iter()
        .any(|r| r[0] == "tank/warren/worlds/busybox" && r[1] == "on"));
}

#[test]
fn get_rows_with_sources() {
    let rows = parse_get(golden!("get_mountpoint.txt")).unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0],
        PropertyRow {
            name: "tank/warren".into(),
            property: "mountpoint".into(),
            value: "/var/lib/warren".into(),
            source: "local".into()
        }
    );
    assert_eq!(rows[1].source, "inherited from tank/warren");
    assert_eq!(rows[1].value, "/var/lib/warren/volumes");

    let rows = parse_get(golden!("get_properties.txt")).unwrap();
    let by: BTreeMap<_, _> = rows
        .iter()
        .map(|r| (r.property.as_str(), (r.value.as_str(), r.source.as_str())))
        .collect();
    assert_eq!(by["used"], ("3276800", "-"));
    assert_eq!(by["quota"], ("0", "default"));
    assert_eq!(by["refquota"], ("1073741824", "local"));
    assert_eq!(by["origin"], ("-", "-"));
    assert_eq!(by["receive_resume_token"], ("-", "-"));
    assert_eq!(by["compression"].1, "inherited from tank");
    assert_eq!(parse_quota(by["quota"].0).unwrap(), None);
    assert_eq!(parse_quota(by["refquota"].0).unwrap(), Some(1 << 30));
    assert_eq!(parse_size("origin", by["origin"].0).unwrap(), None);
    assert!(parse_get("tank\tused\t1\n").is_err());
}

#[test]
fn properties_and_sizes() {
    let p = parse_properties(golden!("get_usage.txt")).unwrap();
    assert_eq!(parse_size("used", &p["used"]).unwrap(), Some(22052864));
    assert_eq!(parse_quota(&p["quota"]).unwrap(), Some(10737418240));
    let p = parse_properties(golden!("get_usage_none.txt")).unwrap();
    assert_eq!(parse_quota(&p["quota"]).unwrap(), None);
    assert_eq!(parse_size("x", "-").unwrap(), None);
    assert_eq!(parse_size("x", "none").unwrap(), None);
    assert_eq!(parse_quota("none").unwrap(), None);
    let err = parse_size("used", "1.2G").unwrap_err().to_string();
    assert_eq!(err, "used \"1.2G\" is not a byte count or `-`");
}

#[test]
fn snapshot_list() {
    let snaps = parse_snapshot_list(golden!("snapshot_list.txt")).unwrap();
    assert_eq!(snaps.len(), 4);
    assert_eq!(
        snaps[0],
        ZfsSnapshot {
            dataset: "tank/warren/workloads/web/data".into(),
            label: "daily-2026-01-14".into(),
            used: 139264,
            creation: 1768348800
        }
    );
    assert_eq!(snaps[2].label, "before-upgrade");
    assert_eq!(snaps[3].used, 0);
    assert!(parse_snapshot_list(golden!("empty.txt"))
        .unwrap()
        .is_empty());
    assert!(matches!(
        parse_snapshot_list("tank/x\t0\t1\n"),
        Err(ParseError::SnapshotName { line: 1, .. })
    ));
    assert!(matches!(
        parse_snapshot_list("tank/x@a\t-\t1\n"),
        Err(ParseError::Number { .. })
    ));
}

#[test]
fn values_clones_and_tokens() {
    assert_eq!(
        parse_clones(golden!("clones.txt")),
        [
            "tank/warren/workloads/api/rootfs",
            "tank/warren/workloads/web/rootfs"
        ]
    );
    assert!(parse_clones(golden!("clones_none.txt")).is_empty());
    assert!(parse_clones("-\n").is_empty());
    let token = parse_value(golden!("resume_token.txt")).unwrap();
    assert!(!token.contains('\n'));
    // `<version>-<fletcher4 word 0 of the payload>-<packed nvlist size>-<zlib payload in hex>`
    // (`get_receive_resume_token_impl` in module/zfs/dsl_dataset.c).
    let parts: Vec<&str> = token.splitn(4, '-').collect();
    assert_eq!(parts.len(), 4, "{token}");
    assert_eq!(parts[0], "1");
    let cksum = u64::from_str_radix(parts[1], 16).unwrap();
    assert!(u64::from_str_radix(parts[2], 16).unwrap() > 0);
    assert!(parts[3].starts_with("789c"), "{token}");
    let hex = parts[3].as_bytes().chunks_exact(2);
    assert!(hex.remainder().is_empty(), "{token}");
    let payload: Vec<u8> = hex
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
    let fletcher4_a = payload
        .chunks_exact(4)
        .map(|w| u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
        .fold(0u64, u64::wrapping_add);
    assert_eq!(fletcher4_a, cksum, "{token}");
    assert_eq!(
        resume_send_cmd(&token).argv_string(),
        format!("zfs send -t {token}")
    );
    assert_eq!(parse_value(golden!("resume_token_none.txt")), None);
}

#[test]
fn error_classification() {
    use ZfsErrorKind::*;
    let cases = [
        (golden!("err_does_not_exist.txt"), NotFound, Some("tank/x")),
        (
            golden!("err_already_exists.txt"),
            Exists,
            Some("tank/warren/worlds/host"),
        ),
        (
            golden!("err_snapshot_exists.txt"),
            Exists,
            Some("tank/warren/workloads/web/data@nightly"),
        ),
        (
            golden!("err_has_children.txt"),
            HasChildren,
            Some("tank/warren/workloads/web"),
        ),
        (
            golden!("err_dependent_clones.txt"),
            HasClones,
            Some("tank/warren/worlds/busybox@base"),
        ),
        (
            golden!("err_out_of_space.txt"),
            OutOfSpace,
            Some("tank/warren/volumes/big"),
        ),
        (golden!("err_quota_exceeded.txt"), QuotaExceeded, None),
        (
            golden!("err_busy.txt"),
            Busy,
            Some("/var/lib/warren/workloads/web/rootfs"),
        ),
        (
            golden!("err_newer_snapshots.txt"),
            NewerSnapshots,
            Some("tank/warren/workloads/web/data@a"),
        ),
        (golden!("err_no_snapshots.txt"), NotFound, None),
        (golden!("err_no_pool.txt"), NotFound, Some("nosuchpool")),
        (golden!("err_modified.txt"), Modified, None),
        (
            golden!("err_no_resume_state.txt"),
            NotFound,
            Some("tank/warren/volumes/site"),
        ),
        (
            golden!("err_permission.txt"),
            PermissionDenied,
            Some("tank/warren"),
        ),
        (
            golden!("err_dependent_clones_recursive.txt"),
            HasClones,
            Some("tank/warren/worlds/busybox"),
        ),
        (
            golden!("err_rollback_clones.txt"),
            HasClones,
            Some("tank/warren/workloads/web/data@before-upgrade"),
        ),
        (golden!("err_snapshot_cloned.txt"), HasClones, None),
        (
            golden!("err_rollback_race.txt"),
            NewerSnapshots,
            Some("tank/warren/workloads/web/data"),
        ),
        (golden!("err_snapshot_busy.txt"), Busy, None),
        (golden!("err_snapshot_held.txt"), Busy, None),
        (
            golden!("err_mount_busy.txt"),
            Busy,
            Some("tank/warren/volumes/site"),
        ),
        (golden!("err_recv_partial_state.txt"), Busy, None),
        (
            golden!("err_recv_exists.txt"),
            Exists,
            Some("tank/warren/volumes/site"),
        ),
        (golden!("err_recv_no_match.txt"), Other, None),
        (
            golden!("err_recv_no_parent.txt"),
            NotFound,
            Some("tank/warren/workloads/moved"),
        ),
        (
            golden!("err_parent_missing.txt"),
            NotFound,
            Some("tank/warren/workloads/web/data"),
        ),
        (
            golden!("err_create_no_pool.txt"),
            NotFound,
            Some("nosuchpool/warren"),
        ),
        (golden!("err_snapshot_out_of_space.txt"), OutOfSpace, None),
        (
            golden!("err_snapshot_no_dataset.txt"),
            NotFound,
            Some("tank/warren/worlds/nope"),
        ),
        (
            golden!("err_abort_no_dataset.txt"),
            NotFound,
            Some("tank/warren/workloads/moved/data"),
        ),
        (
            golden!("err_mount_privileges.txt"),
            PermissionDenied,
            Some("tank/warren/volumes/site"),
        ),
        (golden!("err_no_module_freebsd.txt"), PermissionDenied, None),
        // Not errors warren can act on by kind; "already mounted" must not read as Exists.
        (
            golden!("err_already_mounted.txt"),
            Other,
            Some("tank/warren/volumes/site"),
        ),
        (
            golden!("err_created_not_mounted.txt"),
            Other,
            Some("/srv/warren/volumes/site"),
        ),
        (
            golden!("err_quota_below_used.txt"),
            Other,
            Some("tank/warren/workloads/web"),
        ),
        (golden!("err_no_module.txt"), Other, None),
        // The reason is read outside quoted names, and only on the first line.
        (
            "cannot open 'tank/warren/volumes/out of space': dataset does not exist\n",
            NotFound,
            Some("tank/warren/volumes/out of space"),
        ),
        (
            "cannot destroy 'tank/warren/workloads/web': filesystem has children\n\
             use '-r' to destroy the following datasets:\n\
             tank/warren/workloads/web/is busy\n",
            HasChildren,
            Some("tank/warren/workloads/web"),
        ),
        ("something else entirely", Other, None),
        ("", Other, None),
    ];
    for (text, kind, dataset) in cases {
        let f = classify(text);
        assert_eq!(f.kind, kind, "{text}");
        assert_eq!(f.dataset.as_deref(), dataset, "{text}");
        assert_eq!(
            f.message,
            text.lines().next().unwrap_or("").trim(),
            "{text}"
        );
    }
}

#[test]
fn command_errors_convert_to_storage_errors() {
    let failed = |stderr: &str| {
        command_error(ExecError::Failed {
            argv: "zfs create tank/warren/worlds/host".into(),
            status: "exit status: 1".into(),
            stdout: String::new(),
            stderr: stderr.into(),
        })
    };
    let e: StorageError = failed(golden!("err_already_exists.txt")).into();
    assert!(matches!(&e, StorageError::Exists(p) if p == Path::new("tank/warren/worlds/host")));
    let e: StorageError = failed(golden!("err_out_of_space.txt")).into();
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Exec(_)));
    assert!(
        msg.contains("out of space") && msg.contains("zfs create"),
        "{msg}"
    );
    let e: StorageError = ZfsError::ZeroQuota("tank/x".into()).into();
    assert!(e.to_string().contains("remove the limit"), "{e}");
}

#[test]
fn builders() {
    let m = Path::new("/srv/my root/volumes/v");
    let cases = [
        (exists_cmd("tank"), "zfs list -Hp -o name tank"),
        (children_cmd("tank/a"), "zfs list -Hp -o name -d 1 tank/a"),
        (
            list_filesystems_cmd("tank/warren"),
            "zfs list -Hp -t filesystem -o name,readonly -r tank/warren",
        ),
        (
            child_snapshots_cmd("tank/warren/worlds"),
            "zfs list -Hp -t snapshot -o name -d 2 tank/warren/worlds",
        ),
        (
            snapshot_list_cmd("tank/a"),
            "zfs list -Hp -t snapshot -o name,used,creation -s createtxg -d 1 tank/a",
        ),
        (
            snapshot_info_cmd("tank/a@s"),
            "zfs list -Hp -t snapshot -o name,used,creation tank/a@s",
        ),
        (
            get_cmd("tank/warren", &["mountpoint", "quota"], 1),
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint,quota -d 1 tank/warren",
        ),
        (get_value_cmd("tank/a@base", "clones"), "zfs get -Hp -o value clones tank/a@base"),
        (usage_cmd("tank/a"), "zfs get -Hp -o property,value used,quota tank/a"),
        (create_cmd("tank/v", m, false), "zfs create -o mountpoint=/srv/my root/volumes/v tank/v"),
        (create_cmd("tank/v", m, true), "zfs create -p -o mountpoint=/srv/my root/volumes/v tank/v"),
        (destroy_cmd("tank/a", true), "zfs destroy -r tank/a"),
        (destroy_cmd("tank/a@s", false), "zfs destroy tank/a@s"),
        (snapshot_cmd("tank/a", "s 1"), "zfs snapshot tank/a@s 1"),
        (clone_cmd("tank/a@s", "tank/b", m), "zfs clone -o mountpoint=/srv/my root/volumes/v tank/a@s tank/b"),
        (set_cmd("tank/a", "quota", "none"), "zfs set quota=none tank/a"),
        (rollback_cmd("tank/a", "s", false), "zfs rollback tank/a@s"),
        (rollback_cmd("tank/a", "s", true), "zfs rollback -r tank/a@s"),
        (send_cmd("tank/a", "b", None), "zfs send tank/a@b"),
        (send_cmd("tank/a", "b", Some("a")), "zfs send -i @a tank/a@b"),
        (receive_cmd("tank/a", "b", None), "zfs receive -s -u tank/a@b"),
        (receive_cmd("tank/a", "b", Some(m)), "zfs receive -s -u -o mountpoint=/srv/my root/volumes/v tank/a@b"),
        (receive_abort_cmd("tank/a"), "zfs receive -A tank/a"),
        (mount_cmd("tank/a"), "zfs mount tank/a"),
    ];
    for (cmd, want) in cases {
        assert_eq!(cmd.argv_string(), want);
        assert!(cmd.stdin.is_none());
    }
    // A mountpoint with spaces stays one argument.
    assert_eq!(
        create_cmd("tank/v", m, false).args[2],
        OsString::from("mountpoint=/srv/my root/volumes/v")
    );
    assert_eq!(quota_value("t", Some(5)).unwrap(), "5");
    assert_eq!(quota_value("t", None).unwrap(), "none");
    assert!(matches!(
        quota_value("t", Some(0)),
        Err(ZfsError::ZeroQuota(_))
    ));
    assert_eq!(
        clone_snapshot_label(&DatasetId::Data("web".into())),
        "warren-clone-workloads-web-data"
    );
}

#[test]
fn names_are_checked_before_anything_runs() {
    let (rec, s) = storage();
    for bad in [
        "", ".hidden", "a/b", "a@b", "a%b", "a,b", "x.json", "t\tab", "é",
    ] {
        assert!(s.create_world_dataset(bad).is_err(), "{bad:?}");
        assert!(s.ensure_data(bad).is_err(), "{bad:?}");
        assert!(s.ensure_volume(bad).is_err(), "{bad:?}");
    }
    let web = DatasetId::Data("web".into());
    for bad in ["", "a@b", "a%b", "a,b", "a/b", "a#b"] {
        assert!(s.snapshot(&web, bad).is_err(), "{bad:?}");
        assert!(s.delete_snapshot(&web, bad).is_err(), "{bad:?}");
    }
    assert!(check_component("world", "debian-12.5:base two").is_ok());
    assert!(matches!(
        ZfsStorage::open("tank/", "/x".into(), rec.clone()),
        Err(StorageError::Other(m)) if m.contains("invalid pool name")
    ));
    assert!(rec.ran().is_empty());
}

#[test]
fn list_worlds_needs_base() {
    let (rec, s) = storage();
    rec.expect_ok(
        "zfs list -Hp -t snapshot -o name -d 2 tank/warren/worlds",
        golden!("list_world_snapshots.txt"),
    );
    assert_eq!(s.list_worlds().unwrap(), ["busybox", "debian 12", "host"]);
    rec.finish();
}

#[test]
fn list_datasets_and_volumes() {
    let (rec, s) = storage();
    rec.expect_ok(
        "zfs list -Hp -t filesystem -o name,readonly -r tank/warren",
        golden!("list_filesystems.txt"),
    )
    // A pool with `listsnapshots=on` lists snapshots without `-t`: they are not volumes.
    .expect_ok(
        "zfs list -Hp -o name -d 1 tank/warren/volumes",
        golden!("list_children_listsnapshots.txt"),
    );
    let list = s.list_datasets().unwrap();
    let names: Vec<(&str, bool)> = list.iter().map(|d| (d.name.as_str(), d.readonly)).collect();
    assert_eq!(
        names,
        [
            ("worlds/busybox", true),
            ("worlds/host", true),
            ("workloads/api/data", false),
            ("workloads/web/rootfs", false),
            ("workloads/web/data", false),
            ("volumes/site", false),
        ]
    );
    assert_eq!(list[3].path, s.rootfs_path("web"));
    assert_eq!(s.list_volumes().unwrap(), ["pg data", "site"]);
    rec.finish();
}

#[test]
fn pipes_stream_through_real_processes() {
    let mut out = Vec::new();
    pipe_out(
        &HostExecutor,
        &Cmd::new("sh").args(["-c", "printf 'stream\\0bytes'"]),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, b"stream\0bytes");

    let err = pipe_out(
        &HostExecutor,
        &Cmd::new("sh").args([
            "-c",
            "printf partial; echo \"cannot open 'tank/x@s': dataset does not exist\" >&2; exit 1",
        ]),
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.is(ZfsErrorKind::NotFound), "{err}");
    assert!(err.to_string().contains("dataset does not exist"), "{err}");

    let mut input: &[u8] = b"abc";
    pipe_in(
        &HostExecutor,
        &Cmd::new("sh").args(["-c", "test \"$(cat)\" = abc"]),
        &mut input,
    )
    .unwrap();

    // The receiver fails early: its message wins over the broken pipe.
    let big = vec![7u8; 1 << 20];
    let err = pipe_in(
        &HostExecutor,
        &Cmd::new("sh").args([
            "-c",
            "echo 'cannot receive new filesystem stream: out of space' >&2; exit 1",
        ]),
        &mut big.as_slice(),
    )
    .unwrap_err();
    assert!(err.is(ZfsErrorKind::OutOfSpace), "{err}");

    struct Broken;
    impl Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk went away"))
        }
    }
    let err = pipe_in(
        &HostExecutor,
        &Cmd::new("sh").args(["-c", "cat >/dev/null"]),
        &mut Broken,
    )
    .unwrap_err();
    assert!(matches!(err, ZfsError::Stream { .. }), "{err}");
    assert!(err.to_string().contains("disk went away"), "{err}");
}

#[test]
fn send_and_receive_spawn_zfs_through_the_executor() {
    let (rec, s) = storage();
    let data = DatasetId::Data("web".into());
    let vol = DatasetId::Volume("site".into());
    rec.expect_spawn(
        "zfs send tank/warren/workloads/web/data@after",
        b"FULL\0STREAM",
        Ok(()),
    )
    .expect_spawn(
        "zfs send -i @before tank/warren/workloads/web/data@after",
        b"INCREMENT",
        Ok(()),
    )
    .expect_spawn(
        "zfs send tank/warren/workloads/web/data@gone",
        b"",
        Err("cannot open 'tank/warren/workloads/web/data@gone': dataset does not exist\n"),
    );
    let mut out = Vec::new();
    s.send(&data, "after", None, &mut out).unwrap();
    assert_eq!(out, b"FULL\0STREAM");
    out.clear();
    s.send(&data, "after", Some("before"), &mut out).unwrap();
    assert_eq!(out, b"INCREMENT");
    let err = s.send(&data, "gone", None, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("dataset does not exist"), "{err}");
    rec.finish();

    // A full stream into an absent volume: received unmounted with its mountpoint, then
    // mounted; the stream is fed to `zfs receive` as it is.
    rec.expect_err(
        "zfs list -Hp -o name tank/warren/volumes/site",
        "cannot open 'tank/warren/volumes/site': dataset does not exist\n",
    )
    .expect_spawn(
        "zfs receive -s -u -o mountpoint=/srv/warren-zfs/volumes/site tank/warren/volumes/site@l",
        b"",
        Ok(()),
    )
    .expect_ok("zfs mount tank/warren/volumes/site", "");
    s.receive(&vol, "l", &mut &b"THE STREAM"[..]).unwrap();
    assert_eq!(
        rec.fed(),
        [(
            "zfs receive -s -u -o mountpoint=/srv/warren-zfs/volumes/site tank/warren/volumes/site@l"
                .to_string(),
            b"THE STREAM".to_vec()
        )]
    );
    rec.finish();
}

#[test]
fn pool_usage_is_used_plus_available() {
    let (rec, s) = storage();
    rec.expect_ok(
        "zfs get -Hp -o property,value used,available tank/warren",
        "used\t6316326912\navailable\t30124621824\n",
    );
    assert_eq!(
        s.pool_usage().unwrap(),
        crate::PoolUsage {
            size: 6316326912 + 30124621824,
            used: 6316326912
        }
    );
    rec.finish();
    let (rec, s) = storage();
    rec.expect_ok(
        "zfs get -Hp -o property,value used,available tank/warren",
        "used\t12\n",
    );
    assert!(s.pool_usage().is_err(), "available missing");
    rec.finish();
}
