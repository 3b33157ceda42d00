//! The btrfs dataset driver: every dataset is a subvolume under a root directory that lives on
//! a btrfs filesystem.
//!
//! - a world is a subvolume sealed with `btrfs property set -ts PATH ro true`;
//! - a workload rootfs is `btrfs subvolume snapshot WORLD ROOTFS`: writable, constant time,
//!   sharing every extent with the world until written;
//! - a workload's data is a plain subvolume (`btrfs subvolume create`), so it can be snapshotted
//!   and sent independently of the rootfs;
//! - deletes use `btrfs subvolume delete` (a world's read-only property is cleared first) and
//!   are idempotent.
//!
//! Read-only state is read back with `btrfs property get -ts PATH ro`. All commands go through
//! the injected [`Executor`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, Executor};

use crate::fsutil::{
    check_name, create_dir_all, exists, remove_dir_if_empty, remove_file_if_exists, subdirs,
};
use crate::{DatasetInfo, Result, Storage, StorageError};

/// Subvolume-backed datasets under `root`.
pub struct BtrfsStorage {
    root: PathBuf,
    exec: Arc<dyn Executor>,
}

impl BtrfsStorage {
    /// `root` must be a directory on a btrfs filesystem; `worlds/` and `workloads/` are created
    /// under it on demand.
    pub fn new(root: PathBuf, exec: Arc<dyn Executor>) -> Self {
        BtrfsStorage { root, exec }
    }

    fn btrfs<const N: usize>(&self, args: [&str; N], path: &Path) -> Result<String> {
        let cmd = Cmd::new("btrfs").args(args).arg(path);
        Ok(self.exec.run(&cmd)?.stdout_str())
    }

    fn btrfs2(&self, args: &[&str], from: &Path, to: &Path) -> Result<()> {
        let cmd = Cmd::new("btrfs").args(args).arg(from).arg(to);
        self.exec.run(&cmd)?;
        Ok(())
    }

    fn create_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "create"], path).map(drop)
    }

    fn delete_subvolume(&self, path: &Path) -> Result<()> {
        self.btrfs(["subvolume", "delete"], path).map(drop)
    }

    fn set_readonly(&self, path: &Path, readonly: bool) -> Result<()> {
        let value = if readonly { "true" } else { "false" };
        let cmd = Cmd::new("btrfs")
            .args(["property", "set", "-ts"])
            .arg(path)
            .args(["ro", value]);
        self.exec.run(&cmd)?;
        Ok(())
    }

    fn is_readonly(&self, path: &Path) -> Result<bool> {
        let cmd = Cmd::new("btrfs")
            .args(["property", "get", "-ts"])
            .arg(path)
            .arg("ro");
        let out = self.exec.run(&cmd)?.stdout_str();
        parse_ro_property(&out).ok_or_else(|| {
            StorageError::Other(format!(
                "unexpected output of `btrfs property get -ts {} ro`: {out:?}",
                path.display()
            ))
        })
    }

    fn info(&self, name: String, path: PathBuf) -> Result<DatasetInfo> {
        let readonly = self.is_readonly(&path)?;
        Ok(DatasetInfo {
            name,
            path,
            readonly,
        })
    }
}

/// Parses the `ro=true` / `ro=false` line that `btrfs property get -ts PATH` prints.
pub fn parse_ro_property(out: &str) -> Option<bool> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("ro="))
        .and_then(|v| match v {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
}

impl Storage for BtrfsStorage {
    fn driver(&self) -> &'static str {
        "btrfs"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create_world_dataset(&self, world: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        create_dir_all(&self.root.join("worlds"))?;
        self.create_subvolume(&path)?;
        Ok(path)
    }

    fn seal_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if !exists(&path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.set_readonly(&path, true)
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            self.set_readonly(&path, false)?;
            self.delete_subvolume(&path)?;
        }
        remove_file_if_exists(&self.world_meta_path(world))
    }

    fn list_worlds(&self) -> Result<Vec<String>> {
        let mut sealed = Vec::new();
        for name in subdirs(&self.root.join("worlds"))? {
            if self.is_readonly(&self.world_path(&name))? {
                sealed.push(name);
            }
        }
        Ok(sealed)
    }

    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        check_name("world", world)?;
        let world_path = self.world_path(world);
        if !exists(&world_path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.delete_rootfs(workload)?;
        let rootfs = self.rootfs_path(workload);
        create_dir_all(rootfs.parent().expect("rootfs has a parent"))?;
        self.btrfs2(&["subvolume", "snapshot"], &world_path, &rootfs)?;
        Ok(rootfs)
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        let rootfs = self.rootfs_path(workload);
        if exists(&rootfs) {
            self.delete_subvolume(&rootfs)?;
        }
        Ok(())
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if !exists(&data) {
            create_dir_all(data.parent().expect("data has a parent"))?;
            self.create_subvolume(&data)?;
        }
        Ok(data)
    }

    fn delete_data(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if exists(&data) {
            self.delete_subvolume(&data)?;
        }
        remove_dir_if_empty(&self.root.join("workloads").join(workload))
    }

    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let mut out = Vec::new();
        for world in subdirs(&self.root.join("worlds"))? {
            out.push(self.info(format!("worlds/{world}"), self.world_path(&world))?);
        }
        for workload in subdirs(&self.root.join("workloads"))? {
            for (kind, path) in [
                ("rootfs", self.rootfs_path(&workload)),
                ("data", self.data_path(&workload)),
            ] {
                if exists(&path) {
                    out.push(self.info(format!("workloads/{workload}/{kind}"), path)?);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    fn setup() -> (tempfile::TempDir, Arc<RecordingExecutor>, BtrfsStorage) {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        (t, rec, s)
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
}
