//! Tier-1 tests: real btrfs on sparse loop files, real worlds, real copies.
//!
//! They need root and btrfs-progs, util-linux and busybox-static; when something is missing
//! they fail saying what. Every test makes its own image in its own temp dir and a guard
//! unmounts it (and checks that no loop device stays attached) even when the test fails, so
//! the tests run in parallel without interfering.
//!
//! btrfs and loop devices exist only on Linux, so elsewhere this file compiles to nothing.

#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use common::{assert_no_loop_device, exec, require_tier1, run, teardown, tempdir, LoopBtrfs};
use warren_exec::{Cmd, HostExecutor};
use warren_storage::dir::DirStorage;
use warren_storage::pool::{
    close_pool, loop_devices_of, mounts_under, open_storage, pool_image, pool_mountpoint, Driver,
    PoolOptions,
};
use warren_storage::worlds::{create_world, world_meta};
use warren_storage::{Storage, StorageError};

const IMAGE_SIZE: u64 = 256 << 20;

/// Tools the tier-1 harness checks for besides btrfs-progs and mount.
const TIER1_TOOLS: &[(&str, &str)] = &[("unshare", "util-linux"), ("chroot", "coreutils")];

/// A state dir whose embedded pool is closed on drop.
struct PoolGuard {
    state: tempfile::TempDir,
}

impl PoolGuard {
    fn new() -> Self {
        require_tier1();
        PoolGuard { state: tempdir() }
    }

    fn opts() -> PoolOptions {
        PoolOptions {
            driver: Driver::Auto,
            image_size: IMAGE_SIZE,
            ..Default::default()
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        let _ = close_pool(self.state.path(), exec());
        teardown(self.state.path(), &pool_image(self.state.path()));
    }
}

// ---- behaviour shared by both drivers -----------------------------------------------------

fn build_both_worlds(s: &dyn Storage) {
    let host = create_world(s, "host", &HostExecutor).unwrap();
    let busybox = create_world(s, "busybox", &HostExecutor).unwrap();
    assert_eq!(s.list_worlds().unwrap(), ["busybox", "host"]);
    assert_eq!(world_meta(s, "host").unwrap(), host);
    assert_eq!(world_meta(s, "busybox").unwrap(), busybox);
    assert_eq!(host.default_command, ["/bin/sh"]);
    assert!(host.binds.iter().any(|b| b.dest == "/usr" && b.readonly));
    assert!(busybox.binds.is_empty());
    assert!(matches!(
        create_world(s, "host", &HostExecutor),
        Err(StorageError::Exists(_))
    ));
    assert!(matches!(
        create_world(s, "alpine", &HostExecutor),
        Err(StorageError::UnknownWorld(_))
    ));
}

fn check_world_contents(s: &dyn Storage) {
    let host = s.world_path("host");
    let passwd = std::fs::read_to_string(host.join("etc/passwd")).unwrap();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let uid: u32 = f[2].parse().unwrap();
        assert!(
            uid < 1000 || f[0] == "nobody",
            "user leaked into host world: {line}"
        );
    }
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(!host.join("etc/shadow").exists());
    assert!(host.join("etc/ld.so.cache").is_file());
    for dir in ["tmp", "var/tmp"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(host.join(dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o1777, "{dir}");
    }
    let bb = s.world_path("busybox");
    assert_eq!(
        std::fs::read_link(bb.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(bb.join("bin/busybox").is_file());
    assert!(std::fs::read_link(bb.join("usr/bin/awk")).is_ok());
}

/// Rootfs: writable copy, isolated from the world, replaced on re-create, data persists,
/// and deleting both leaves nothing.
fn check_rootfs_lifecycle(s: &dyn Storage) {
    let rootfs = s.create_rootfs("web", "busybox").unwrap();
    std::fs::write(rootfs.join("tmp/scratch"), "x").unwrap();
    assert!(!s.world_path("busybox").join("tmp/scratch").exists());
    assert_eq!(
        run(Cmd::new("chroot").arg(&rootfs).args([
            "/bin/sh",
            "-c",
            "echo hello from $(basename $0)"
        ])),
        "hello from sh\n"
    );

    let again = s.create_rootfs("web", "busybox").unwrap();
    assert_eq!(again, rootfs);
    assert!(
        !rootfs.join("tmp/scratch").exists(),
        "rootfs was not replaced"
    );

    let data = s.ensure_data("web").unwrap();
    std::fs::write(data.join("keep"), "precious").unwrap();
    assert_eq!(s.ensure_data("web").unwrap(), data);
    s.delete_rootfs("web").unwrap();
    assert!(!rootfs.exists());
    s.create_rootfs("web", "host").unwrap();
    assert_eq!(
        std::fs::read_to_string(data.join("keep")).unwrap(),
        "precious"
    );

    let names: Vec<(String, bool)> = s
        .list_datasets()
        .unwrap()
        .into_iter()
        .map(|d| (d.name, d.readonly))
        .collect();
    assert_eq!(
        names,
        [
            ("worlds/busybox".to_string(), true),
            ("worlds/host".to_string(), true),
            ("workloads/web/rootfs".to_string(), false),
            ("workloads/web/data".to_string(), false),
        ]
    );

    s.delete_rootfs("web").unwrap();
    s.delete_data("web").unwrap();
    s.delete_rootfs("web").unwrap();
    s.delete_data("web").unwrap();
    assert!(!s.root().join("workloads/web").exists());
    assert!(matches!(
        s.create_rootfs("web", "nope"),
        Err(StorageError::NoSuchWorld(_))
    ));
}

fn check_delete_world(s: &dyn Storage) {
    s.delete_world("busybox").unwrap();
    s.delete_world("busybox").unwrap();
    assert_eq!(s.list_worlds().unwrap(), ["host"]);
    assert!(!s.world_meta_path("busybox").exists());
    assert!(matches!(
        world_meta(s, "busybox"),
        Err(StorageError::NoSuchWorld(_))
    ));
    create_world(s, "busybox", &HostExecutor).unwrap();
    assert_eq!(s.list_worlds().unwrap(), ["busybox", "host"]);
}

/// Runs host programs inside the host world the way the runtime will: binds mounted
/// read-only, in a private mount namespace that disappears with the command.
fn check_host_programs_run(s: &dyn Storage) {
    let meta = world_meta(s, "host").unwrap();
    let rootfs = s.create_rootfs("hostprog", "host").unwrap();
    let mut script = String::new();
    for b in &meta.binds {
        let dst = format!("{}{}", rootfs.display(), b.dest);
        script += &format!(
            "mount --bind {src} {dst} && mount -o remount,bind,ro {dst} && ",
            src = b.source.display()
        );
    }
    script += &format!(
        "chroot {} /bin/sh -c '/usr/bin/python3 -c \"print(6*7)\" && /usr/sbin/nginx -v 2>&1'",
        rootfs.display()
    );
    let out = run(Cmd::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(script));
    assert!(out.starts_with("42\nnginx version"), "{out}");
    assert!(mounts_under(&rootfs).is_empty());
    s.delete_rootfs("hostprog").unwrap();
    s.delete_data("hostprog").unwrap();
}

// ---- btrfs --------------------------------------------------------------------------------

#[test]
fn btrfs_worlds_are_sealed_subvolumes() {
    let fs = LoopBtrfs::new(IMAGE_SIZE);
    let s = fs.storage();
    build_both_worlds(&s);
    check_world_contents(&s);
    assert_eq!(fs.subvolumes(), ["worlds/busybox", "worlds/host"]);
    let err = std::fs::write(s.world_path("busybox").join("tmp/x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let err = std::fs::remove_file(s.world_path("busybox").join("bin/sh")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    check_delete_world(&s);
}

#[test]
fn btrfs_rootfs_snapshots_and_data() {
    let fs = LoopBtrfs::new(IMAGE_SIZE);
    let s = fs.storage();
    build_both_worlds(&s);
    check_rootfs_lifecycle(&s);
    assert_eq!(fs.subvolumes(), ["worlds/busybox", "worlds/host"]);
}

#[test]
fn btrfs_host_world_runs_host_programs() {
    let fs = LoopBtrfs::new(IMAGE_SIZE);
    let s = fs.storage();
    create_world(&s, "host", &HostExecutor).unwrap();
    check_host_programs_run(&s);
}

// ---- dir ----------------------------------------------------------------------------------

fn dir_storage() -> (tempfile::TempDir, DirStorage) {
    require_tier1();
    let t = tempdir();
    let s = DirStorage::new(t.path().join("datasets"), exec());
    (t, s)
}

#[test]
fn dir_worlds_are_sealed() {
    let (_t, s) = dir_storage();
    build_both_worlds(&s);
    check_world_contents(&s);
    assert!(s.root().join("worlds/host.sealed").exists());
    check_delete_world(&s);
}

#[test]
fn dir_rootfs_copies_and_data() {
    let (_t, s) = dir_storage();
    build_both_worlds(&s);
    check_rootfs_lifecycle(&s);
}

#[test]
fn dir_host_world_runs_host_programs() {
    let (_t, s) = dir_storage();
    create_world(&s, "host", &HostExecutor).unwrap();
    check_host_programs_run(&s);
}

#[test]
fn dir_refuses_to_delete_a_mounted_rootfs() {
    let (t, s) = dir_storage();
    create_world(&s, "busybox", &HostExecutor).unwrap();
    let rootfs = s.create_rootfs("web", "busybox").unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("precious"), "x").unwrap();
    let mnt = rootfs.join("mnt");
    run(Cmd::new("mount").arg("--bind").arg(&outside).arg(&mnt));
    let refused = s.delete_rootfs("web");
    run(Cmd::new("umount").arg(&mnt));
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("still mounted"), "{err}");
    assert!(outside.join("precious").exists());
    s.delete_rootfs("web").unwrap();
    assert!(!rootfs.exists());
}

// ---- pool ---------------------------------------------------------------------------------

#[test]
fn pool_is_created_mounted_once_and_closed() {
    let g = PoolGuard::new();
    let state = g.state.path();
    let s = open_storage(state, &PoolGuard::opts(), exec()).unwrap();
    assert_eq!(s.driver(), "btrfs");
    assert_eq!(s.root(), pool_mountpoint(state));
    assert_eq!(mounts_under(state), [pool_mountpoint(state)]);
    create_world(s.as_ref(), "busybox", &HostExecutor).unwrap();

    let again = open_storage(state, &PoolGuard::opts(), exec()).unwrap();
    assert_eq!(mounts_under(state), [pool_mountpoint(state)]);
    assert_eq!(again.list_worlds().unwrap(), ["busybox"]);

    close_pool(state, exec()).unwrap();
    assert!(mounts_under(state).is_empty());
    assert!(loop_devices_of(&pool_image(state), &HostExecutor)
        .unwrap()
        .is_empty());
    close_pool(state, exec()).unwrap();

    // Reopening mounts the existing image (no reformat): the world is still there.
    let reopened = open_storage(state, &PoolGuard::opts(), exec()).unwrap();
    assert_eq!(reopened.list_worlds().unwrap(), ["busybox"]);
    close_pool(state, exec()).unwrap();
    assert_no_loop_device(&pool_image(state));
}

#[test]
fn pool_refuses_an_image_that_is_not_btrfs() {
    let g = PoolGuard::new();
    let state = g.state.path();
    let img = pool_image(state);
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(Cmd::new("mkfs.ext4").arg("-q").arg(&img));
    let err = match open_storage(state, &PoolGuard::opts(), exec()) {
        Ok(_) => panic!("an ext4 pool.img was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("does not hold a btrfs filesystem"), "{err}");
    assert!(err.contains("pool.img"), "{err}");
    assert!(mounts_under(state).is_empty());
}

#[test]
fn pool_on_a_btrfs_state_dir_uses_it_directly() {
    let fs = LoopBtrfs::new(IMAGE_SIZE);
    let state = fs.mnt.join("state");
    let s = open_storage(&state, &PoolGuard::opts(), exec()).unwrap();
    assert_eq!(s.driver(), "btrfs");
    assert_eq!(s.root(), state.join("datasets"));
    assert!(!pool_image(&state).exists());
    assert_eq!(mounts_under(fs.dir.path()), std::slice::from_ref(&fs.mnt));
    create_world(s.as_ref(), "busybox", &HostExecutor).unwrap();
    assert_eq!(fs.subvolumes(), ["state/datasets/worlds/busybox"]);
    s.delete_world("busybox").unwrap();
}

#[test]
fn pool_dir_driver_when_asked() {
    let g = PoolGuard::new();
    let state = g.state.path();
    let opts = PoolOptions {
        driver: Driver::Dir,
        ..PoolOptions::default()
    };
    let s = open_storage(state, &opts, exec()).unwrap();
    assert_eq!(s.driver(), "dir");
    assert_eq!(s.root(), state.join("datasets"));
    assert!(!pool_image(state).exists());
    assert!(mounts_under(state).is_empty());
}
