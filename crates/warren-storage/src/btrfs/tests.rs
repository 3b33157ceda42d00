//! Unit tests of the btrfs driver: its parsers, the send stream format, and its operations
//! through a fake `btrfs` executor.

use super::*;
use warren_exec::RecordingExecutor;

fn setup() -> (tempfile::TempDir, Arc<RecordingExecutor>, BtrfsStorage) {
    let t = tempfile::tempdir().unwrap();
    let rec = Arc::new(RecordingExecutor::new());
    let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
    (t, rec, s)
}

/// The recording fake plus the filesystem side effects of the subvolume commands, so the
/// driver's renames and existence checks see what real btrfs would have left.
struct FakeBtrfs(RecordingExecutor);

impl Executor for FakeBtrfs {
    fn run(&self, cmd: &Cmd) -> Result<warren_exec::Output, ExecError> {
        let out = self.0.run(cmd)?;
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let last = Path::new(args.last().unwrap());
        match (
            args.first().map(String::as_str),
            args.get(1).map(String::as_str),
        ) {
            (Some("subvolume"), Some("snapshot" | "create")) => {
                std::fs::create_dir_all(last).unwrap()
            }
            (Some("subvolume"), Some("delete")) => std::fs::remove_dir_all(last).unwrap(),
            _ => {}
        }
        Ok(out)
    }

    fn spawn(
        &self,
        cmd: &Cmd,
        streams: warren_exec::Streams,
    ) -> Result<Box<dyn warren_exec::Process>, ExecError> {
        self.0.spawn(cmd, streams)
    }
}

fn fake() -> (tempfile::TempDir, Arc<FakeBtrfs>, BtrfsStorage) {
    let t = tempfile::tempdir().unwrap();
    let exec = Arc::new(FakeBtrfs(RecordingExecutor::new()));
    let s = BtrfsStorage::new(t.path().to_path_buf(), exec.clone());
    (t, exec, s)
}

const NO_QUOTAS: &str = "ERROR: can't list qgroups: quotas not enabled";

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Makes snapshot `label` of `id` by hand, `age` seconds after the epoch.
fn fake_snapshot(s: &BtrfsStorage, id: &DatasetId, label: &str, age: u64, file: &str) {
    let dir = snapshot_dir(s.root(), id);
    std::fs::create_dir_all(dir.join(label)).unwrap();
    std::fs::write(dir.join(label).join("file"), file).unwrap();
    let meta = SnapMeta {
        created_at: age,
        created_ns: age * 1_000_000_000,
        subvol_id: Some(300 + age),
    };
    write_snap_meta(&dir, label, &meta).unwrap();
}

#[test]
fn snapshot_commands_and_metadata() {
    let (t, exec, s) = fake();
    let id = DatasetId::Data("web".into());
    assert!(matches!(
        s.snapshot(&id, "nightly"),
        Err(StorageError::NoSuchDataset(k)) if k == "workloads/web/data"
    ));
    let data = t.path().join("workloads/web/data");
    std::fs::create_dir_all(&data).unwrap();
    assert!(matches!(
        s.snapshot(&id, "../x"),
        Err(StorageError::InvalidLabel(_))
    ));
    let snap = t.path().join("snapshots/workloads/web/data/nightly");
    exec.0
        .expect_ok(
            &format!("btrfs subvolume snapshot -r {} {}", p(&data), p(&snap)),
            "",
        )
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&snap)),
            "258\n",
        );
    let info = s.snapshot(&id, "nightly").unwrap();
    assert_eq!(info.dataset, "workloads/web/data");
    assert_eq!(info.bytes, None);
    let meta: SnapMeta = serde_json::from_slice(
        &std::fs::read(t.path().join("snapshots/workloads/web/data/nightly.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta.subvol_id, Some(258));
    assert_eq!(meta.created_at, info.created_at);
    assert!(matches!(
        s.snapshot(&id, "nightly"),
        Err(StorageError::SnapshotExists { .. })
    ));
    // Listing asks qgroups for sizes (none without quotas).
    exec.0.expect_err(
        &format!("btrfs qgroup show --raw -pcre --sync {}", p(t.path())),
        NO_QUOTAS,
    );
    let list = s.snapshots(&id).unwrap();
    assert_eq!(list, vec![info]);
    exec.0.finish();
}

#[test]
fn failed_metadata_step_deletes_the_snapshot() {
    let (t, exec, s) = fake();
    let id = DatasetId::Volume("v".into());
    let vol = t.path().join("volumes/v");
    std::fs::create_dir_all(&vol).unwrap();
    let snap = t.path().join("snapshots/volumes/v/a");
    exec.0
        .expect_ok(
            &format!("btrfs subvolume snapshot -r {} {}", p(&vol), p(&snap)),
            "",
        )
        .expect_err(
            &format!("btrfs inspect-internal rootid {}", p(&snap)),
            "ERROR: not a subvolume",
        )
        .expect_ok(&format!("btrfs subvolume delete {}", p(&snap)), "");
    let err = s.snapshot(&id, "a").unwrap_err().to_string();
    assert!(err.contains("not a subvolume"), "{err}");
    assert!(!snap.exists());
    assert!(!t.path().join("snapshots/volumes/v/a.json").exists());
    exec.0.finish();
}

#[test]
fn rollback_refuses_newer_then_swaps_and_deletes_them() {
    let (t, exec, s) = fake();
    let id = DatasetId::Volume("v".into());
    let vol = t.path().join("volumes/v");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("file"), "current").unwrap();
    fake_snapshot(&s, &id, "old", 1, "old");
    fake_snapshot(&s, &id, "mid", 2, "mid");
    fake_snapshot(&s, &id, "new", 3, "new");

    let err = s.rollback(&id, "old", false).unwrap_err();
    assert!(
        matches!(&err, StorageError::NewerSnapshots { newer, .. } if newer == &["mid", "new"]),
        "{err}"
    );
    assert!(err.to_string().contains("mid, new"), "{err}");
    assert!(exec.0.ran().is_empty(), "a refused rollback ran commands");
    assert!(matches!(
        s.rollback(&id, "gone", true),
        Err(StorageError::NoSuchSnapshot { .. })
    ));

    let dir = t.path().join("snapshots/volumes/v");
    let new = t.path().join("volumes/.v.new");
    let old = t.path().join("volumes/.v.old");
    exec.0
        .expect_err(
            &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
            NO_QUOTAS,
        )
        .expect_ok(
            &format!(
                "btrfs subvolume snapshot {} {}",
                p(&dir.join("old")),
                p(&new)
            ),
            "",
        )
        .expect_ok(&format!("btrfs subvolume delete {}", p(&old)), "")
        .expect_ok(
            &format!("btrfs subvolume delete {}", p(&dir.join("new"))),
            "",
        )
        .expect_ok(
            &format!("btrfs subvolume delete {}", p(&dir.join("mid"))),
            "",
        );
    assert_eq!(s.rollback(&id, "old", true).unwrap(), ["mid", "new"]);
    exec.0.finish();
    assert!(!new.exists() && !old.exists());
    assert!(!dir.join("mid.json").exists() && !dir.join("new.json").exists());
    assert!(dir.join("old.json").exists());
}

#[test]
fn rollback_failure_before_the_swap_keeps_the_dataset() {
    let (t, exec, s) = fake();
    let id = DatasetId::Volume("v".into());
    let vol = t.path().join("volumes/v");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("file"), "current").unwrap();
    fake_snapshot(&s, &id, "old", 1, "old");
    let snap = t.path().join("snapshots/volumes/v/old");
    let new = t.path().join("volumes/.v.new");
    let show = "Qgroupid Referenced Exclusive Max referenced Max exclusive Parent Child Path\n\
                0/260 16384 16384 8388608 none - - volumes/v\n";
    exec.0
        .expect_ok(
            &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
            show,
        )
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&vol)),
            "260\n",
        )
        .expect_ok(
            &format!("btrfs subvolume snapshot {} {}", p(&snap), p(&new)),
            "",
        )
        .expect_err(
            &format!("btrfs qgroup limit 8388608 {}", p(&new)),
            "ERROR: unable to limit requested quota group: No space left on device",
        )
        .expect_ok(&format!("btrfs subvolume delete {}", p(&new)), "");
    let err = s.rollback(&id, "old", false).unwrap_err().to_string();
    assert!(err.contains("unable to limit"), "{err}");
    exec.0.finish();
    assert_eq!(
        std::fs::read_to_string(vol.join("file")).unwrap(),
        "current"
    );
    assert!(!new.exists());
}

#[test]
fn rollback_repairs_a_crash_between_the_renames() {
    let (t, exec, s) = fake();
    let id = DatasetId::Volume("v".into());
    let old = t.path().join("volumes/.v.old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("file"), "current").unwrap();
    fake_snapshot(&s, &id, "snap", 1, "snap");
    let vol = t.path().join("volumes/v");
    let new = t.path().join("volumes/.v.new");
    exec.0
        .expect_err(
            &format!("btrfs qgroup show --raw -pcre {}", p(t.path())),
            NO_QUOTAS,
        )
        .expect_ok(
            &format!(
                "btrfs subvolume snapshot {} {}",
                p(&t.path().join("snapshots/volumes/v/snap")),
                p(&new)
            ),
            "",
        )
        .expect_ok(&format!("btrfs subvolume delete {}", p(&old)), "");
    s.rollback(&id, "snap", false).unwrap();
    exec.0.finish();
    assert!(vol.exists() && !old.exists() && !new.exists());
}

#[test]
fn clone_commands() {
    let (t, exec, s) = fake();
    let src = DatasetId::Data("web".into());
    let data = t.path().join("workloads/web/data");
    std::fs::create_dir_all(&data).unwrap();
    fake_snapshot(&s, &src, "s", 1, "x");
    let a = t.path().join("volumes/a");
    let b = t.path().join("volumes/b");
    exec.0
        .expect_ok(
            &format!("btrfs subvolume snapshot {} {}", p(&data), p(&a)),
            "",
        )
        .expect_ok(
            &format!(
                "btrfs subvolume snapshot {} {}",
                p(&t.path().join("snapshots/workloads/web/data/s")),
                p(&b)
            ),
            "",
        );
    s.clone_dataset(&src, None, &DatasetId::Volume("a".into()))
        .unwrap();
    s.clone_dataset(&src, Some("s"), &DatasetId::Volume("b".into()))
        .unwrap();
    assert!(matches!(
        s.clone_dataset(&src, None, &DatasetId::Volume("a".into())),
        Err(StorageError::Exists(p)) if p == a
    ));
    assert!(matches!(
        s.clone_dataset(&src, Some("t"), &DatasetId::Volume("c".into())),
        Err(StorageError::NoSuchSnapshot { existing, .. }) if existing == ["s"]
    ));
    exec.0.finish();
}

#[test]
fn quota_setup_commands() {
    let (t, exec, s) = fake();
    let root = p(t.path());
    let data = t.path().join("workloads/web/data");
    let rootfs = t.path().join("workloads/web/rootfs");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&rootfs).unwrap();
    let header = "Qgroupid Referenced Exclusive Max referenced Max exclusive Parent Child Path\n\
                  -------- ---------- --------- -------------- ------------- ------ ----- ----\n";
    let fresh = format!(
        "{header}0/5 16384 16384 none none - - <toplevel>\n\
         0/256 16384 16384 none none - - workloads/web/data\n\
         0/257 16384 16384 none none - - workloads/web/rootfs\n"
    );
    exec.0
        .expect_err(&format!("btrfs qgroup show --raw -pcre {root}"), NO_QUOTAS)
        .expect_ok(&format!("btrfs quota enable {root}"), "")
        .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
        .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &fresh)
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&data)),
            "256",
        )
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&rootfs)),
            "257",
        )
        .expect_ok(&format!("btrfs qgroup create 1/256 {root}"), "")
        .expect_ok(
            &format!("btrfs qgroup assign --no-rescan 0/256 1/256 {root}"),
            "",
        )
        .expect_ok(
            &format!("btrfs qgroup assign --no-rescan 0/257 1/256 {root}"),
            "",
        )
        .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
        .expect_ok(&format!("btrfs qgroup limit -e 8388608 1/256 {root}"), "");
    s.set_workload_quota("web", Some(8 << 20)).unwrap();
    exec.0.finish();
    assert_eq!(
        std::fs::read_to_string(t.path().join("workloads/web/qgroup")).unwrap(),
        "1/256\n"
    );

    // Recreated rootfs (subvolume 300): the stale member is swapped for the new one.
    let grouped = format!(
        "{header}0/256 16384 16384 none none 1/256 - workloads/web/data\n\
         0/257 16384 16384 none none 1/256 - workloads/web/rootfs\n\
         1/256 32768 32768 none 8388608 - 0/256,0/257 <0 member qgroups>\n"
    );
    exec.0
        .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&data)),
            "256",
        )
        .expect_ok(
            &format!("btrfs inspect-internal rootid {}", p(&rootfs)),
            "300",
        )
        .expect_ok(
            &format!("btrfs qgroup remove --no-rescan 0/257 1/256 {root}"),
            "",
        )
        .expect_ok(
            &format!("btrfs qgroup assign --no-rescan 0/300 1/256 {root}"),
            "",
        )
        .expect_ok(&format!("btrfs quota rescan -w {root}"), "")
        .expect_ok(&format!("btrfs qgroup limit -e 4096 1/256 {root}"), "");
    s.set_workload_quota("web", Some(4096)).unwrap();
    exec.0.finish();

    // Usage reads the group; clearing the limit keeps the group.
    exec.0
        .expect_ok(
            &format!("btrfs qgroup show --raw -pcre --sync {root}"),
            &grouped,
        )
        .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
        .expect_ok(&format!("btrfs qgroup limit -e none 1/256 {root}"), "");
    assert_eq!(s.workload_usage("web").unwrap(), (32768, Some(8388608)));
    s.set_workload_quota("web", None).unwrap();
    exec.0.finish();

    // A dataset's own limit is on its referenced bytes.
    exec.0
        .expect_ok(&format!("btrfs qgroup show --raw -pcre {root}"), &grouped)
        .expect_ok(&format!("btrfs qgroup limit 1048576 {}", p(&data)), "");
    s.set_quota(&DatasetId::Data("web".into()), Some(1 << 20))
        .unwrap();
    exec.0.finish();
}

#[test]
fn quota_on_missing_dataset_runs_nothing() {
    let (_t, exec, s) = fake();
    assert!(matches!(
        s.set_workload_quota("web", Some(1)),
        Err(StorageError::NoSuchDataset(_))
    ));
    assert!(matches!(
        s.set_quota(&DatasetId::Volume("v".into()), Some(1)),
        Err(StorageError::NoSuchDataset(_))
    ));
    assert!(exec.0.ran().is_empty());
}

#[test]
fn qgroup_show_parser() {
    let out = "WARNING: qgroup data inconsistent, rescan recommended\n\
Qgroupid    Referenced    Exclusive  Max referenced  Max exclusive Parent   Child         Path \n\
--------    ----------    ---------  --------------  ------------- ------   -----         ---- \n\
0/5              16384        16384            none           none -        -             <toplevel>\n\
0/256          6307840      6307840            none           none 1/100    -             a dir/with space\n\
1/100         10469376     10469376            none       10485760 -        0/256,0/257   <0 member qgroups>\n";
    let groups = parse_qgroup_show(out).unwrap();
    assert_eq!(groups.len(), 3);
    assert_eq!(
        groups[2],
        Qgroup {
            id: "1/100".into(),
            referenced: 10469376,
            exclusive: 10469376,
            max_referenced: None,
            max_exclusive: Some(10485760),
            parents: vec![],
            children: vec!["0/256".into(), "0/257".into()],
        }
    );
    assert_eq!(groups[1].parents, ["1/100"]);
    assert!(parse_qgroup_show("0/5 12 x none none - -\n").is_err());
    assert!(parse_qgroup_show("0/5 12\n").is_err());
    assert_eq!(parse_qgroup_id("1/256"), Some((1, 256)));
    assert_eq!(parse_qgroup_id("x"), None);
}

#[test]
fn filesystem_du_parser() {
    let out =
        "     Total   Exclusive  Set shared  Filename\n   6291456     4096           0  m/a\n";
    assert_eq!(parse_filesystem_du(out), Ok((6291456, 4096)));
    assert!(parse_filesystem_du("nothing").is_err());
}

/// A stream: header, `subvol` command with a path, one `write`-like command, `end`.
fn stream(name: &str) -> Vec<u8> {
    fn cmd(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut c = (body.len() as u32).to_le_bytes().to_vec();
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(&[0; 4]);
        c.extend_from_slice(body);
        let crc = crc32c(0, &c);
        c[6..10].copy_from_slice(&crc.to_le_bytes());
        c
    }
    let mut body = Vec::new();
    for (t, v) in [(SEND_ATTR_PATH, name.as_bytes()), (1, &[7u8; 16][..])] {
        body.extend_from_slice(&t.to_le_bytes());
        body.extend_from_slice(&(v.len() as u16).to_le_bytes());
        body.extend_from_slice(v);
    }
    let mut s = SEND_MAGIC.to_vec();
    s.extend_from_slice(&1u32.to_le_bytes());
    s.extend(cmd(SEND_CMD_SUBVOL, &body));
    s.extend(cmd(15, &[1, 2, 3, 4, 5]));
    s.extend(cmd(SEND_CMD_END, &[]));
    s
}

#[test]
fn send_stream_check_follows_framing() {
    let full = stream("nightly");
    for chunk in [1, 3, 10, 4096] {
        let mut c = SendStreamCheck::new();
        for part in full.chunks(chunk) {
            c.feed(part).unwrap();
        }
        assert_eq!(c.first_command(), Some(SEND_CMD_SUBVOL));
        assert!(c.first_command_complete());
        c.finish().unwrap();
    }
    // Cut anywhere, even exactly at a command boundary, it is refused.
    for cut in [5, 17, 27, full.len() - 10, full.len() - 1] {
        let mut c = SendStreamCheck::new();
        c.feed(&full[..cut]).unwrap();
        assert!(c.finish().is_err(), "cut at {cut} accepted");
    }
    let mut c = SendStreamCheck::new();
    assert!(c.feed(b"btrfs-strEAm").is_err());
    let mut c = SendStreamCheck::new();
    let mut trailing = full.clone();
    trailing.push(0);
    assert!(c.feed(&trailing).is_err());
}

#[test]
fn first_path_rewrite_fixes_length_and_crc() {
    // Standard CRC-32C check value, with the usual inversions applied around the raw one.
    assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    let original = stream("nightly");
    let rewritten = rewrite_first_path(&original, ".incoming-1").unwrap();
    assert_eq!(rewritten, stream(".incoming-1"));
    assert!(rewrite_first_path(&original[..20], "x").is_err());
}

#[test]
fn ro_property_parser() {
    assert_eq!(parse_ro_property("ro=true\n"), Some(true));
    assert_eq!(parse_ro_property("ro=false\n"), Some(false));
    assert_eq!(parse_ro_property("label=x\nro=false\n"), Some(false));
    assert_eq!(parse_ro_property(""), None);
    assert_eq!(parse_ro_property("ro=maybe"), None);
}

#[test]
fn world_create_and_seal_commands() {
    let (t, rec, s) = setup();
    let w = t.path().join("worlds/host");
    rec.expect_ok(&format!("btrfs subvolume create {}", w.display()), "");
    assert_eq!(s.create_world_dataset("host").unwrap(), w);
    std::fs::create_dir(&w).unwrap(); // what the real command would have made
    rec.expect_ok(
        &format!("btrfs property set -ts {} ro true", w.display()),
        "",
    );
    s.seal_world("host").unwrap();
    assert!(matches!(
        s.create_world_dataset("host"),
        Err(StorageError::Exists(p)) if p == w
    ));
    rec.finish();
}

#[test]
fn snapshot_replaces_existing_rootfs() {
    let (t, rec, s) = setup();
    let w = t.path().join("worlds/busybox");
    let r = t.path().join("workloads/web/rootfs");
    std::fs::create_dir_all(&w).unwrap();
    rec.expect_ok(
        &format!("btrfs subvolume snapshot {} {}", w.display(), r.display()),
        "",
    );
    assert_eq!(s.create_rootfs("web", "busybox").unwrap(), r);
    std::fs::create_dir_all(&r).unwrap();
    rec.expect_ok(&format!("btrfs subvolume delete {}", r.display()), "")
        .expect_ok(
            &format!("btrfs subvolume snapshot {} {}", w.display(), r.display()),
            "",
        );
    s.create_rootfs("web", "busybox").unwrap();
    rec.finish();
}

#[test]
fn rootfs_of_missing_world_runs_nothing() {
    let (_t, rec, s) = setup();
    assert!(matches!(
        s.create_rootfs("web", "host"),
        Err(StorageError::NoSuchWorld(w)) if w == "host"
    ));
    assert!(rec.ran().is_empty());
}

#[test]
fn world_delete_clears_ro_first_and_removes_metadata() {
    let (t, rec, s) = setup();
    let w = t.path().join("worlds/host");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
    rec.expect_ok(
        &format!("btrfs property set -ts {} ro false", w.display()),
        "",
    )
    .expect_ok(&format!("btrfs subvolume delete {}", w.display()), "");
    s.delete_world("host").unwrap();
    assert!(!t.path().join("worlds/host.json").exists());
    rec.finish();
}

#[test]
fn failed_subvolume_delete_keeps_metadata() {
    let (t, rec, s) = setup();
    let w = t.path().join("worlds/host");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
    rec.expect_ok(
        &format!("btrfs property set -ts {} ro false", w.display()),
        "",
    )
    .expect_err(
        &format!("btrfs subvolume delete {}", w.display()),
        "Device or resource busy",
    );
    let err = s.delete_world("host").unwrap_err().to_string();
    assert!(err.contains("resource busy"), "{err}");
    assert!(t.path().join("worlds/host.json").exists());
    rec.finish();
}

#[test]
fn deletes_are_idempotent_and_remove_workload_dir() {
    let (t, rec, s) = setup();
    s.delete_rootfs("web").unwrap();
    s.delete_data("web").unwrap();
    s.delete_world("host").unwrap();
    assert!(rec.ran().is_empty());

    let d = t.path().join("workloads/web/data");
    rec.expect_ok(&format!("btrfs subvolume create {}", d.display()), "");
    assert_eq!(s.ensure_data("web").unwrap(), d);
    std::fs::create_dir(&d).unwrap();
    assert_eq!(s.ensure_data("web").unwrap(), d); // exists: no command
    rec.expect_ok(&format!("btrfs subvolume delete {}", d.display()), "");
    s.delete_data("web").unwrap();
    rec.finish();
    // The fake left `d` behind, so the workload dir is not empty and stays.
    assert!(t.path().join("workloads/web").exists());
    std::fs::remove_dir(&d).unwrap();
    s.delete_data("web").unwrap();
    assert!(!t.path().join("workloads/web").exists());
}

#[test]
fn list_reads_ro_flags() {
    let (t, rec, s) = setup();
    let w = t.path().join("worlds/host");
    let r = t.path().join("workloads/web/rootfs");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::create_dir_all(&r).unwrap();
    std::fs::write(t.path().join("worlds/host.json"), "{}").unwrap();
    rec.expect_ok(
        &format!("btrfs property get -ts {} ro", w.display()),
        "ro=true\n",
    )
    .expect_ok(
        &format!("btrfs property get -ts {} ro", r.display()),
        "ro=false\n",
    );
    let list = s.list_datasets().unwrap();
    rec.finish();
    assert_eq!(
        list,
        vec![
            DatasetInfo {
                name: "worlds/host".into(),
                path: w,
                readonly: true
            },
            DatasetInfo {
                name: "workloads/web/rootfs".into(),
                path: r,
                readonly: false
            },
        ]
    );
}

#[test]
fn send_spawns_btrfs_send_through_the_executor() {
    let (_t, exec, s) = fake();
    let id = DatasetId::Data("web".into());
    fake_snapshot(&s, &id, "a", 1, "one");
    fake_snapshot(&s, &id, "b", 2, "two");
    let dir = snapshot_dir(s.root(), &id);
    let (a, b) = (p(&dir.join("a")), p(&dir.join("b")));
    exec.0
        .expect_spawn(&format!("btrfs send {b}"), b"FULL\0STREAM", Ok(()))
        .expect_spawn(&format!("btrfs send -p {a} {b}"), b"INCREMENT", Ok(()))
        .expect_spawn(
            &format!("btrfs send {a}"),
            b"partial",
            Err("ERROR: send ioctl failed with -5: Input/output error"),
        );
    let mut out = Vec::new();
    s.send(&id, "b", None, &mut out).unwrap();
    assert_eq!(out, b"FULL\0STREAM");
    out.clear();
    s.send(&id, "b", Some("a"), &mut out).unwrap();
    assert_eq!(out, b"INCREMENT");
    let err = s.send(&id, "a", None, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("Input/output error"), "{err}");
    // A missing snapshot is refused before anything is spawned.
    assert!(s.send(&id, "c", None, &mut Vec::new()).is_err());
    exec.0.finish();
}

#[test]
fn receive_feeds_btrfs_receive_the_renamed_stream_and_cleans_up_on_failure() {
    let (_t, exec, s) = fake();
    let id = DatasetId::Data("web".into());
    let dir = snapshot_dir(s.root(), &id);
    let full = stream("nightly");
    let argv = format!("btrfs receive {}", p(&dir));
    exec.0
        .expect_spawn(
            &argv,
            b"",
            Err("ERROR: empty stream is not considered valid"),
        )
        .expect_spawn(&argv, b"", Ok(()));
    let err = s
        .receive_staged(&id, "copy", &mut full.as_slice())
        .unwrap_err();
    assert!(err.to_string().contains("empty stream"), "{err}");
    let fed = exec.0.fed();
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0].0, argv);
    // The first command names the hidden incoming subvolume instead of the sender's.
    let sent = &fed[0].1;
    let mut check = SendStreamCheck::new();
    check.feed(sent).unwrap();
    check.finish().unwrap();
    let name = String::from_utf8_lossy(sent);
    assert!(
        name.contains(STAGED_PREFIX) && !name.contains("nightly"),
        "{name:?}"
    );
    assert_eq!(sent[sent.len() - 40..], full[full.len() - 40..]);
    assert!(!dir.exists(), "left behind: {:?}", std::fs::read_dir(&dir));

    // A stream that stops before its end command is refused even when btrfs accepted it.
    let cut = &full[..full.len() - 10];
    let err = s.receive_staged(&id, "copy", &mut &cut[..]).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(!dir.exists());
    exec.0.finish();
}

#[test]
fn filesystem_usage_parser() {
    let out = "Overall:\n    Device size:\t\t        4294967296\n    Device allocated:\t\t         998244352\n    Used:\t\t\t           2228224\n    Free (estimated):\t\t        3740794880\t(min: 2092433408)\n\nData,single: Size:444596224, Used:524288 (0.12%)\n";
    assert_eq!(
        parse_filesystem_usage(out),
        Ok(crate::PoolUsage {
            size: 4294967296,
            used: 2228224
        })
    );
    assert!(parse_filesystem_usage("Overall:\n").is_err());
}
