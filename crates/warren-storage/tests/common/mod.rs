//! The tier-1 harness shared by `tier1.rs` and `tier1_datasets.rs`: requirement checks, temp
//! dirs off btrfs, and [`LoopBtrfs`], a sparse loop-backed btrfs image whose guard unmounts it
//! and detaches its loop devices even when the test fails.
//!
//! Each test crate that uses it defines `TIER1_TOOLS`, the tools (with their Debian packages)
//! it needs besides btrfs-progs and mount.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, Executor, HostExecutor};
use warren_storage::btrfs::BtrfsStorage;
use warren_storage::pool::{loop_devices_of, mounts_under};

pub fn exec() -> Arc<dyn Executor> {
    Arc::new(HostExecutor)
}

pub fn run(cmd: Cmd) -> String {
    HostExecutor
        .run(&cmd)
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout_str()
}

/// Fails the test (never skips it) when the host cannot run tier-1 tests: root, loop devices,
/// btrfs-progs, mount and the test crate's `TIER1_TOOLS`.
pub fn require_tier1() {
    let uid = nix::unistd::geteuid();
    assert!(
        uid.is_root(),
        "tier-1 test needs root (running as uid {uid})"
    );
    let base = [
        ("mkfs.btrfs", "btrfs-progs"),
        ("btrfs", "btrfs-progs"),
        ("mount", "mount"),
        ("umount", "mount"),
        ("losetup", "mount"),
    ];
    for &(tool, package) in base.iter().chain(crate::TIER1_TOOLS) {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "tier-1 test needs {tool} (Debian package {package})"
        );
    }
    assert!(
        Path::new("/dev/loop-control").exists(),
        "tier-1 test needs loop devices (/dev/loop-control is missing)"
    );
}

pub fn tempdir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    assert!(
        !warren_storage::pool::is_btrfs(t.path()).unwrap(),
        "tier-1 tests need a temp dir that is not on btrfs (set TMPDIR)"
    );
    t
}

/// Asserts (with a grace period for autoclear) that no loop device holds `img`.
pub fn assert_no_loop_device(img: &Path) {
    for _ in 0..50 {
        if loop_devices_of(img, &HostExecutor).unwrap().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "loop devices still attached to {}: {:?}",
        img.display(),
        loop_devices_of(img, &HostExecutor).unwrap()
    );
}

/// Best-effort teardown for guards: unmount everything under `dir`, detach `img`'s loops.
pub fn teardown(dir: &Path, img: &Path) {
    for mnt in mounts_under(dir).into_iter().rev() {
        if HostExecutor.run(&Cmd::new("umount").arg(&mnt)).is_err() {
            let _ = HostExecutor.run(&Cmd::new("umount").arg("-l").arg(&mnt));
        }
    }
    if img.exists() {
        for _ in 0..50 {
            match loop_devices_of(img, &HostExecutor) {
                Ok(devs) if devs.is_empty() => return,
                _ => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        for dev in loop_devices_of(img, &HostExecutor).unwrap_or_default() {
            let _ = HostExecutor.run(&Cmd::new("losetup").arg("-d").arg(dev));
        }
    }
}

/// A sparse loop-backed btrfs filesystem mounted in a temp dir; unmounted and detached on drop.
pub struct LoopBtrfs {
    pub dir: tempfile::TempDir,
    pub img: PathBuf,
    pub mnt: PathBuf,
}

impl LoopBtrfs {
    pub fn new(size: u64) -> Self {
        require_tier1();
        let dir = tempdir();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        run(Cmd::new("mkfs.btrfs").arg("-q").arg(&img));
        let guard = LoopBtrfs { dir, img, mnt };
        run(Cmd::new("mount")
            .args(["-o", "loop"])
            .arg(&guard.img)
            .arg(&guard.mnt));
        guard
    }

    pub fn storage(&self) -> BtrfsStorage {
        BtrfsStorage::new(self.mnt.clone(), exec())
    }

    /// Subvolume paths relative to the filesystem top, sorted.
    pub fn subvolumes(&self) -> Vec<String> {
        let out = run(Cmd::new("btrfs").args(["subvolume", "list"]).arg(&self.mnt));
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split_once(" path ").map(|(_, p)| p.to_string()))
            .collect();
        v.sort();
        v
    }
}

impl Drop for LoopBtrfs {
    fn drop(&mut self) {
        teardown(self.dir.path(), &self.img);
        if !std::thread::panicking() {
            assert!(mounts_under(self.dir.path()).is_empty());
            assert_no_loop_device(&self.img);
        }
    }
}
