//! FreeBSD release worlds on ZFS, through the recording executor: a thick world is a dataset
//! filled by the unpacker and sealed with `@base`; a failed unpack destroys the dataset and its
//! metadata; a thin world is a second sealed dataset holding the writable parts, with the
//! thick world's read-only directories as binds. Tier 0: no ZFS needed.

use std::path::Path;
use std::sync::Arc;

use warren_exec::RecordingExecutor;
use warren_storage::freebsd::{create_thick, create_thin};
use warren_storage::zfs::ZfsStorage;
use warren_storage::StorageError;

fn open(rec: &Arc<RecordingExecutor>, root: &Path) -> ZfsStorage {
    let r = root.display();
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &format!(
                "tank/warren\tmountpoint\t{r}\tlocal\n\
             tank/warren/volumes\tmountpoint\t{r}/volumes\tlocal\n\
             tank/warren/workloads\tmountpoint\t{r}/workloads\tlocal\n\
             tank/warren/worlds\tmountpoint\t{r}/worlds\tlocal\n"
            ),
        );
    std::fs::create_dir_all(root.join("worlds")).unwrap();
    ZfsStorage::open("tank", root.to_path_buf(), rec.clone()).unwrap()
}

#[test]
fn release_worlds_on_zfs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let r = root.display();
    let rec = Arc::new(RecordingExecutor::new());
    let s = open(&rec, root);
    rec.finish();

    // Thick: create, unpack, metadata, readonly, @base.
    rec.expect_ok(
        &format!(
            "zfs create -o mountpoint={r}/worlds/freebsd-14-2 tank/warren/worlds/freebsd-14-2"
        ),
        "",
    )
    .expect_ok("zfs set readonly=on tank/warren/worlds/freebsd-14-2", "")
    .expect_ok("zfs snapshot tank/warren/worlds/freebsd-14-2@base", "");
    let meta = create_thick(
        &s,
        "freebsd-14-2",
        Path::new("/dist/base.txz"),
        |archive, world| {
            assert_eq!(archive, Path::new("/dist/base.txz"));
            for d in ["bin", "usr/lib", "usr/local/etc", "etc"] {
                std::fs::create_dir_all(world.join(d)).unwrap();
            }
            std::fs::write(world.join("etc/rc.conf"), "x\n").unwrap();
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(meta.default_command, ["/bin/sh"]);
    assert!(root.join("worlds/freebsd-14-2.json").is_file());
    rec.finish();

    // A failed unpack: the dataset (no @base yet, no clones) and the metadata are removed.
    rec.expect_ok(
        &format!(
            "zfs create -o mountpoint={r}/worlds/freebsd-13-9 tank/warren/worlds/freebsd-13-9"
        ),
        "",
    )
    .expect_err(
        "zfs get -Hp -o value clones tank/warren/worlds/freebsd-13-9@base",
        "cannot open 'tank/warren/worlds/freebsd-13-9@base': dataset does not exist\n",
    )
    .expect_ok("zfs destroy -r tank/warren/worlds/freebsd-13-9", "");
    let err = create_thick(&s, "freebsd-13-9", Path::new("/dist/base.txz"), |_, _| {
        Err(StorageError::Other(
            "base.txz: entry ../x leaves the root".into(),
        ))
    })
    .unwrap_err();
    assert!(err.to_string().contains("leaves the root"), "{err}");
    assert!(!root.join("worlds/freebsd-13-9.json").exists());
    rec.finish();

    // Thin: a dataset of its own with the writable parts, binds for the shared ones.
    rec.expect_ok(
        &format!(
            "zfs create -o mountpoint={r}/worlds/freebsd-14-2-thin tank/warren/worlds/freebsd-14-2-thin"
        ),
        "",
    )
    .expect_ok("zfs set readonly=on tank/warren/worlds/freebsd-14-2-thin", "")
    .expect_ok("zfs snapshot tank/warren/worlds/freebsd-14-2-thin@base", "");
    std::fs::create_dir_all(root.join("worlds/freebsd-14-2-thin")).unwrap();
    let thin = create_thin(&s, "freebsd-14-2-thin", "freebsd-14-2").unwrap();
    rec.finish();
    let dests: Vec<&str> = thin.binds.iter().map(|b| b.dest.as_str()).collect();
    assert_eq!(dests, ["/bin", "/usr/lib"]);
    assert!(thin
        .binds
        .iter()
        .all(|b| b.readonly && b.source.starts_with(root.join("worlds/freebsd-14-2"))));
    let world = root.join("worlds/freebsd-14-2-thin");
    assert!(world.join("etc/rc.conf").is_file());
    assert!(world.join("usr/local/etc").is_dir());
    assert_eq!(std::fs::read_dir(world.join("bin")).unwrap().count(), 0);
    let stored = warren_storage::worlds::world_meta(&s, "freebsd-14-2-thin").unwrap();
    assert_eq!(stored.binds, thin.binds);
}
