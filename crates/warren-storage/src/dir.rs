//! The plain-directory dataset driver, for hosts without btrfs (or when asked for explicitly).
//!
//! Same layout as the btrfs driver, with ordinary directories:
//!
//! - a workload rootfs is a full copy of its world, `cp -a --reflink=auto WORLD ROOTFS`. That is
//!   O(size of the world) in time and (unless the filesystem supports reflinks) in space; the
//!   `host` and `busybox` worlds are a few MiB, so this stays cheap for them (`--reflink` is
//!   GNU cp's; elsewhere the copy is a plain `cp -a`);
//! - sealing a world writes a marker file `worlds/<world>.sealed` next to (outside) the world
//!   directory. This is bookkeeping, not enforcement: a plain directory cannot be made
//!   read-only against root, and warren itself never writes into a sealed world. The marker is
//!   what makes [`Storage::list_worlds`] report the world as complete and
//!   [`DatasetInfo::readonly`] true;
//! - deletes are recursive removals that refuse to run while anything is mounted at or below
//!   the dataset (they would otherwise descend into, and delete, the mounted filesystem).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, Executor};

use crate::fsutil::{
    check_name, create_dir_all, exists, io_err, refuse_if_mounted, remove_dir_if_empty,
    remove_file_if_exists, subdirs, write_file,
};
use crate::{DatasetInfo, Result, Storage, StorageError};

/// Options of the `cp` that copies a world into a rootfs.
#[cfg(target_os = "linux")]
const CP_OPTIONS: &[&str] = &["-a", "--reflink=auto"];
#[cfg(not(target_os = "linux"))]
const CP_OPTIONS: &[&str] = &["-a"];

/// Directory-backed datasets under `root`.
pub struct DirStorage {
    root: PathBuf,
    exec: Arc<dyn Executor>,
}

impl DirStorage {
    /// `worlds/` and `workloads/` are created under `root` on demand.
    pub fn new(root: PathBuf, exec: Arc<dyn Executor>) -> Self {
        DirStorage { root, exec }
    }

    fn seal_marker(&self, world: &str) -> PathBuf {
        self.root.join("worlds").join(format!("{world}.sealed"))
    }

    fn is_sealed(&self, world: &str) -> bool {
        exists(&self.seal_marker(world))
    }

    fn remove_tree(&self, path: &Path) -> Result<()> {
        if !exists(path) {
            return Ok(());
        }
        refuse_if_mounted(path)?;
        std::fs::remove_dir_all(path).map_err(io_err(path))
    }
}

impl Storage for DirStorage {
    fn driver(&self) -> &'static str {
        "dir"
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
        std::fs::create_dir(&path).map_err(io_err(&path))?;
        Ok(path)
    }

    fn seal_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        if !exists(&self.world_path(world)) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        write_file(&self.seal_marker(world), b"", 0o444)
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        // Unseal first so a half-removed world is never listed as complete.
        remove_file_if_exists(&self.seal_marker(world))?;
        self.remove_tree(&self.world_path(world))?;
        remove_file_if_exists(&self.world_meta_path(world))
    }

    fn list_worlds(&self) -> Result<Vec<String>> {
        let worlds = subdirs(&self.root.join("worlds"))?;
        Ok(worlds.into_iter().filter(|w| self.is_sealed(w)).collect())
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
        let cp = Cmd::new("cp")
            .args(CP_OPTIONS)
            .arg(&world_path)
            .arg(&rootfs);
        if let Err(e) = self.exec.run(&cp) {
            // Never leave a partial copy behind; the copy error is the one worth reporting.
            let _ = self.remove_tree(&rootfs);
            return Err(e.into());
        }
        Ok(rootfs)
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.remove_tree(&self.rootfs_path(workload))
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        create_dir_all(&data)?;
        Ok(data)
    }

    fn delete_data(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.remove_tree(&self.data_path(workload))?;
        remove_dir_if_empty(&self.root.join("workloads").join(workload))
    }

    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let mut out = Vec::new();
        for world in subdirs(&self.root.join("worlds"))? {
            out.push(DatasetInfo {
                name: format!("worlds/{world}"),
                path: self.world_path(&world),
                readonly: self.is_sealed(&world),
            });
        }
        for workload in subdirs(&self.root.join("workloads"))? {
            for (kind, path) in [
                ("rootfs", self.rootfs_path(&workload)),
                ("data", self.data_path(&workload)),
            ] {
                if exists(&path) {
                    out.push(DatasetInfo {
                        name: format!("workloads/{workload}/{kind}"),
                        path,
                        readonly: false,
                    });
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

    /// A `cp` that copies part of the tree, then fails like a full disk.
    struct HalfCopy(std::sync::Mutex<Vec<String>>);

    impl Executor for HalfCopy {
        fn run(&self, cmd: &Cmd) -> Result<warren_exec::Output, warren_exec::ExecError> {
            self.0.lock().unwrap().push(cmd.argv_string());
            let dst = Path::new(cmd.args.last().unwrap());
            std::fs::create_dir_all(dst.join("bin")).unwrap();
            std::fs::write(dst.join("bin/partial"), "x").unwrap();
            Err(warren_exec::ExecError::Failed {
                argv: cmd.argv_string(),
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: "No space left on device".into(),
            })
        }
    }

    #[test]
    fn failed_copy_leaves_no_rootfs() {
        let t = tempfile::tempdir().unwrap();
        let exec = Arc::new(HalfCopy(Default::default()));
        let s = DirStorage::new(t.path().to_path_buf(), exec.clone());
        let w = s.create_world_dataset("busybox").unwrap();
        let r = s.rootfs_path("web");
        let err = s.create_rootfs("web", "busybox").unwrap_err().to_string();
        assert!(err.contains("No space left"), "{err}");
        assert!(!r.exists());
        assert_eq!(
            *exec.0.lock().unwrap(),
            vec![format!(
                "cp {} {} {}",
                CP_OPTIONS.join(" "),
                w.display(),
                r.display()
            )]
        );
    }

    #[test]
    fn seal_is_a_marker_outside_the_world() {
        let t = tempfile::tempdir().unwrap();
        let s = DirStorage::new(t.path().to_path_buf(), Arc::new(RecordingExecutor::new()));
        s.create_world_dataset("host").unwrap();
        assert!(s.list_worlds().unwrap().is_empty());
        s.seal_world("host").unwrap();
        assert_eq!(s.list_worlds().unwrap(), vec!["host".to_string()]);
        assert!(t.path().join("worlds/host.sealed").exists());
        assert!(std::fs::read_dir(s.world_path("host"))
            .unwrap()
            .next()
            .is_none());
        s.delete_world("host").unwrap();
        s.delete_world("host").unwrap();
        assert!(std::fs::read_dir(t.path().join("worlds"))
            .unwrap()
            .next()
            .is_none());
    }
}
