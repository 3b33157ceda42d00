//! Ephemeral root filesystems for one-off containers (`warren run --rm`, build steps).
//!
//! A one-off container does not need a dataset of its own: its rootfs is an overlayfs whose
//! lower layer is the (read-only) world and whose upper and work dirs live next to it on the
//! pool, under `<root>/workloads/<name>/`. Mounting is one mount(2) call, much cheaper than a
//! dataset snapshot; [`remove`] unmounts and deletes everything, leaving no trace.
//!
//! Linux only (overlayfs); elsewhere both functions return [`StorageError::Unsupported`].

use crate::{Result, Storage, StorageError};
use std::path::PathBuf;

/// Directory holding an ephemeral rootfs and its layers.
pub fn dir(storage: &dyn Storage, name: &str) -> PathBuf {
    storage.root().join("workloads").join(name)
}

/// Mounts a fresh writable overlay of `world` and returns the rootfs path.
#[cfg(target_os = "linux")]
pub fn create(storage: &dyn Storage, name: &str, world: &str) -> Result<PathBuf> {
    use crate::fsutil::{create_dir_all, io_err};
    warren_model::names::check_dns_label(name)
        .map_err(|e| StorageError::Other(format!("ephemeral rootfs: {e}")))?;
    let lower = storage.world_path(world);
    if !lower.is_dir() {
        return Err(StorageError::NoSuchWorld(world.to_string()));
    }
    let base = dir(storage, name);
    if base.exists() {
        return Err(StorageError::Exists(base));
    }
    let (upper, work, rootfs) = (base.join("upper"), base.join("work"), base.join("rootfs"));
    for d in [&upper, &work, &rootfs] {
        create_dir_all(d)?;
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        escape(&lower),
        escape(&upper),
        escape(&work)
    );
    let r = nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    );
    if let Err(e) = r {
        let _ = std::fs::remove_dir_all(&base);
        return Err(io_err(&rootfs)(std::io::Error::from(e)));
    }
    Ok(rootfs)
}

#[cfg(not(target_os = "linux"))]
pub fn create(_storage: &dyn Storage, _name: &str, _world: &str) -> Result<PathBuf> {
    Err(StorageError::Unsupported(
        "ephemeral overlay root filesystems need Linux".into(),
    ))
}

/// Unmounts and deletes an ephemeral rootfs; no error if it is already gone.
#[cfg(target_os = "linux")]
pub fn remove(storage: &dyn Storage, name: &str) -> Result<()> {
    use crate::fsutil::io_err;
    let base = dir(storage, name);
    let rootfs = base.join("rootfs");
    if !base.exists() {
        return Ok(());
    }
    match nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(io_err(&rootfs)(std::io::Error::from(e))),
    }
    std::fs::remove_dir_all(&base).map_err(io_err(&base))
}

#[cfg(not(target_os = "linux"))]
pub fn remove(_storage: &dyn Storage, _name: &str) -> Result<()> {
    Err(StorageError::Unsupported(
        "ephemeral overlay root filesystems need Linux".into(),
    ))
}

/// Escapes the characters overlayfs treats specially in mount options.
#[cfg(any(target_os = "linux", test))]
fn escape(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_option_separators() {
        assert_eq!(escape(std::path::Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
        assert_eq!(escape(std::path::Path::new("/plain/path")), "/plain/path");
    }
}
