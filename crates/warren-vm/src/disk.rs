//! The disks of a microVM, made on the host through the executor: the root disk built from the
//! run's root filesystem tree (`mkfs.ext4 -d`, rebuilt for every start, so the guest always
//! boots the tree a container would get), and the persistent disks kept inside the workload's
//! datasets (its `data` dataset and volumes), created once and kept, so the datasets'
//! snapshots, clones, export and import carry them unchanged. A full VM's own disk lives in
//! its `data` dataset the same way ([`ensure_own_disk`]): the operator's image is its template,
//! copied on first use, never written.

use crate::config::{Disk, DiskFormat};
use crate::{invalid, Result};
use std::path::{Path, PathBuf};
use warren_exec::{Cmd, Executor};

/// The file holding a persistent disk inside a dataset's directory.
pub const DATASET_DISK: &str = "vm-disk.ext4";
/// The size of a persistent disk made without a limit (sparse: it costs what the guest
/// writes).
pub const DEFAULT_DATA_DISK: u64 = 4 << 30;
/// The size of a full VM's own disk made empty (for an installer ISO) without a `disk_size`
/// (sparse: it costs what the guest writes).
pub const DEFAULT_OWN_DISK: u64 = 8 << 30;
/// Free room left on a root disk beyond its tree, in bytes.
pub const ROOT_SLACK: u64 = 256 << 20;

/// The bytes a tree occupies (allocated blocks; a hard-linked file counted once).
pub fn tree_bytes(root: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// The size a root disk for a tree of `tree` bytes gets: the tree plus a quarter, plus
/// [`ROOT_SLACK`], rounded up to MiB.
pub fn root_disk_size(tree: u64) -> u64 {
    let want = tree + tree / 4 + ROOT_SLACK;
    want.div_ceil(1 << 20) << 20
}

/// `mkfs.ext4` making `image` (a new regular file of `size` bytes) from the tree `source`
/// (None: an empty filesystem), labelled `label`.
pub fn mkfs_cmd(image: &Path, size: u64, source: Option<&Path>, label: &str) -> Result<Cmd> {
    if size < (8 << 20) {
        return Err(invalid(
            "disk",
            format!("{size} bytes is too small for ext4"),
        ));
    }
    let mut c = Cmd::new("mkfs.ext4").args(["-q", "-F", "-L", label, "-E", "lazy_itable_init=1"]);
    if let Some(src) = source {
        c = c.arg("-d").arg(src.as_os_str());
    }
    Ok(c.arg(image.as_os_str()).arg(format!("{}k", size / 1024)))
}

/// Builds the root disk `image` from `rootfs` (replacing an older one). The tree's
/// filesystem is synced first: `mkfs.ext4 -d` maps files with FIEMAP and fails with EIO on
/// extents still delayed in the page cache (a freshly unpacked image).
pub fn build_root_disk(exec: &dyn Executor, rootfs: &Path, image: &Path) -> Result<()> {
    let tree =
        tree_bytes(rootfs).map_err(|e| invalid("rootfs", format!("{}: {e}", rootfs.display())))?;
    syncfs(rootfs).map_err(|e| invalid("rootfs", format!("syncing {}: {e}", rootfs.display())))?;
    let _ = std::fs::remove_file(image);
    exec.run(&mkfs_cmd(
        image,
        root_disk_size(tree),
        Some(rootfs),
        "root",
    )?)?;
    Ok(())
}

/// The persistent disk of the dataset mounted at `dir`, made (empty, `size` bytes, sparse)
/// when it does not exist yet; its path.
pub fn ensure_dataset_disk(exec: &dyn Executor, dir: &Path, size: u64) -> Result<PathBuf> {
    let image = dir.join(DATASET_DISK);
    if image.exists() {
        return Ok(image);
    }
    let partial = dir.join(format!(".{DATASET_DISK}.partial"));
    let _ = std::fs::remove_file(&partial);
    exec.run(&mkfs_cmd(&partial, size, None, "data")?)?;
    std::fs::rename(&partial, &image)
        .map_err(|e| invalid("data", format!("{}: {e}", image.display())))?;
    Ok(image)
}

/// The file name of a full VM's own disk inside its `data` dataset.
pub fn own_disk_name(format: DiskFormat) -> &'static str {
    match format {
        DiskFormat::Raw => "vm-root.raw",
        DiskFormat::Qcow2 => "vm-root.qcow2",
    }
}

/// The format of a disk image, by its name: `.qcow2` is qcow2, anything else raw.
pub fn format_of(image: &Path) -> DiskFormat {
    if image.extension().is_some_and(|e| e == "qcow2") {
        DiskFormat::Qcow2
    } else {
        DiskFormat::Raw
    }
}

/// A full VM's own disk inside its data dataset `store`, made on first use: a copy of the
/// operator's `template` (reflinked where the filesystem can, holes kept), or an empty sparse
/// raw disk of `size` bytes (`None`: [`DEFAULT_OWN_DISK`]) when there is no
/// template. An existing disk is kept as it is (what the guest wrote), and grown to `size`
/// when that was raised. A partial copy never takes the disk's name.
pub fn ensure_own_disk(
    exec: &dyn Executor,
    store: &Path,
    template: Option<&Path>,
    size: Option<u64>,
) -> Result<Disk> {
    let format = template.map(format_of).unwrap_or_default();
    let image = store.join(own_disk_name(format));
    let disk = Disk {
        format,
        ..Disk::raw(&image)
    };
    let io =
        |what: &str, e: std::io::Error| invalid("disk", format!("{what} {}: {e}", image.display()));
    if !image.exists() {
        let partial = store.join(format!(".{}.partial", own_disk_name(format)));
        let _ = std::fs::remove_file(&partial);
        match template {
            Some(t) => {
                exec.run(
                    &Cmd::new("cp")
                        .args(["--reflink=auto", "--sparse=always", "--"])
                        .arg(t.as_os_str())
                        .arg(partial.as_os_str()),
                )?;
            }
            None => {
                let f = std::fs::File::create(&partial).map_err(|e| io("creating", e))?;
                f.set_len(size.unwrap_or(DEFAULT_OWN_DISK))
                    .map_err(|e| io("sizing", e))?;
            }
        }
        std::fs::rename(&partial, &image).map_err(|e| io("naming", e))?;
    }
    if let Some(size) = size {
        match format {
            DiskFormat::Raw => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&image)
                    .map_err(|e| io("opening", e))?;
                let now = f.metadata().map_err(|e| io("reading", e))?.len();
                if size > now {
                    f.set_len(size).map_err(|e| io("growing", e))?;
                }
            }
            DiskFormat::Qcow2 => {
                // Growing only: qemu-img refuses to shrink without --shrink.
                exec.run(
                    &Cmd::new("qemu-img")
                        .args(["resize", "-f", "qcow2", "--"])
                        .arg(image.as_os_str())
                        .arg(size.to_string()),
                )?;
            }
        }
    }
    Ok(disk)
}

/// Writes out every dirty page of the filesystem holding `path`.
fn syncfs(path: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs only reads the open descriptor.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    dir.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_vms_own_disk_is_a_copy_of_its_template_kept_and_grown() {
        let exec = warren_exec::HostExecutor;
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("base.img");
        std::fs::write(&template, b"template bytes").unwrap();
        let store = dir.path().join("data");
        std::fs::create_dir(&store).unwrap();

        let d = ensure_own_disk(&exec, &store, Some(&template), None).unwrap();
        assert_eq!(d.path, store.join("vm-root.raw"));
        assert_eq!(d.format, DiskFormat::Raw);
        assert_eq!(std::fs::read(&d.path).unwrap(), b"template bytes");
        // What the guest writes is kept; the template is never written.
        std::fs::write(&d.path, b"guest bytes").unwrap();
        let again = ensure_own_disk(&exec, &store, Some(&template), Some(1 << 20)).unwrap();
        assert_eq!(again.path, d.path);
        assert_eq!(std::fs::read(&template).unwrap(), b"template bytes");
        let kept = std::fs::read(&d.path).unwrap();
        assert!(kept.starts_with(b"guest bytes"));
        assert_eq!(kept.len(), 1 << 20, "grown to disk_size");
        // Never shrunk.
        ensure_own_disk(&exec, &store, Some(&template), Some(4096)).unwrap();
        assert_eq!(std::fs::metadata(&d.path).unwrap().len(), 1 << 20);
        assert!(
            !std::fs::read_dir(&store).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("partial")),
            "no partial copy left"
        );
    }

    #[test]
    fn an_installer_vm_gets_an_empty_sparse_disk() {
        use std::os::unix::fs::MetadataExt;
        let exec = warren_exec::HostExecutor;
        let store = tempfile::tempdir().unwrap();
        let d = ensure_own_disk(&exec, store.path(), None, None).unwrap();
        let meta = std::fs::metadata(&d.path).unwrap();
        assert_eq!(meta.len(), DEFAULT_OWN_DISK);
        assert!(meta.blocks() * 512 < 1 << 20, "sparse");
        // A qcow2 template keeps its format and name.
        assert_eq!(format_of(Path::new("/v/d.qcow2")), DiskFormat::Qcow2);
        assert_eq!(own_disk_name(DiskFormat::Qcow2), "vm-root.qcow2");
        // A missing template is an error and leaves no disk behind.
        let other = tempfile::tempdir().unwrap();
        assert!(ensure_own_disk(
            &exec,
            other.path(),
            Some(Path::new("/nonexistent.img")),
            None
        )
        .is_err());
        assert!(!other.path().join("vm-root.raw").exists());
    }

    #[test]
    fn root_disks_leave_room() {
        assert_eq!(root_disk_size(0), ROOT_SLACK);
        assert_eq!(root_disk_size(100 << 20), (125 << 20) + ROOT_SLACK);
        assert_eq!(root_disk_size(1) % (1 << 20), 0);
    }

    #[test]
    fn mkfs_commands() {
        let c = mkfs_cmd(
            Path::new("/r/root.ext4"),
            300 << 20,
            Some(Path::new("/t")),
            "root",
        )
        .unwrap();
        assert_eq!(
            c.argv_string(),
            "mkfs.ext4 -q -F -L root -E lazy_itable_init=1 -d /t /r/root.ext4 307200k"
        );
        let c = mkfs_cmd(Path::new("/d/x"), 1 << 30, None, "data").unwrap();
        assert!(!c.argv_string().contains(" -d "));
        assert!(mkfs_cmd(Path::new("/d/x"), 1 << 20, None, "data").is_err());
    }

    #[test]
    fn tree_bytes_counts_hard_links_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 64 * 1024]).unwrap();
        let one = tree_bytes(d.path()).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        assert_eq!(tree_bytes(d.path()).unwrap(), one);
        assert!(one >= 64 * 1024);
    }
}
