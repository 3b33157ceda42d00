//! The kernel a microVM boots when the operator names none: Debian's `linux-image-amd64`,
//! fetched with `apt-get download` and unpacked (`dpkg-deb -x`, never installed on the host)
//! into a cache directory, with `depmod` run over the unpacked modules so their dependencies
//! are known; and the modules a microVM needs, resolved from `modules.dep` in load order.

use crate::{invalid, Result};
use std::path::{Path, PathBuf};
use warren_exec::{Cmd, Executor};

/// The modules a microVM's agent loads (with their dependencies): the virtio-mmio transport,
/// disks, the NIC, the agent's serial port, ext4 and the checksum ext4 asks for.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "virtio_console",
    "crc32c_generic",
    "ext4",
];

/// A kernel and, when known, its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    pub vmlinuz: PathBuf,
    /// `lib/modules/RELEASE` of this kernel (None: an operator's kernel, whose drivers are
    /// taken to be built in).
    pub modules_dir: Option<PathBuf>,
    pub release: Option<String>,
}

impl KernelFiles {
    /// An operator's kernel image, without modules.
    pub fn operator(vmlinuz: &Path) -> KernelFiles {
        KernelFiles {
            vmlinuz: vmlinuz.to_path_buf(),
            modules_dir: None,
            release: None,
        }
    }
}

/// The newest unpacked kernel in `cache` (`boot/vmlinuz-R` with `lib/modules/R`).
pub fn cached_kernel(cache: &Path) -> Option<KernelFiles> {
    let mut found: Vec<String> = std::fs::read_dir(cache.join("boot"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|r| {
            cache
                .join("lib/modules")
                .join(r)
                .join("modules.dep")
                .exists()
        })
        .collect();
    found.sort();
    let release = found.pop()?;
    Some(KernelFiles {
        vmlinuz: cache.join("boot").join(format!("vmlinuz-{release}")),
        modules_dir: Some(cache.join("lib/modules").join(&release)),
        release: Some(release),
    })
}

/// The package `linux-image-amd64` depends on, from `apt-cache depends` output.
pub fn kernel_package(depends: &str) -> Option<String> {
    depends.lines().find_map(|l| {
        let p = l.trim().strip_prefix("Depends: ")?;
        p.starts_with("linux-image-").then(|| p.trim().to_string())
    })
}

/// `WARREN_VM_KERNEL` (an operator's kernel), else the kernel cached in `cache`, else
/// Debian's, fetched and unpacked there now.
pub fn ensure_kernel(exec: &dyn Executor, cache: &Path) -> Result<KernelFiles> {
    if let Some(k) = std::env::var_os("WARREN_VM_KERNEL") {
        return Ok(KernelFiles::operator(Path::new(&k)));
    }
    if let Some(k) = cached_kernel(cache) {
        return Ok(k);
    }
    let dir = cache
        .to_str()
        .filter(|d| !d.contains('\''))
        .ok_or_else(|| {
            invalid(
                "kernel",
                format!("{} is not a usable cache path", cache.display()),
            )
        })?;
    std::fs::create_dir_all(cache).map_err(|e| invalid("kernel", format!("{dir}: {e}")))?;
    let depends = exec.run(&Cmd::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    let pkg = kernel_package(&depends.stdout_str()).ok_or_else(|| {
        invalid(
            "kernel",
            "apt-cache names no kernel package for linux-image-amd64",
        )
    })?;
    let fetch = format!("cd '{dir}' && apt-get download {pkg}");
    exec.run(&Cmd::new("sh").args(["-c", &fetch]))?;
    let deb = std::fs::read_dir(cache)
        .map_err(|e| invalid("kernel", e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&pkg) && n.ends_with(".deb"))
        })
        .ok_or_else(|| invalid("kernel", format!("apt-get download {pkg} left no .deb")))?;
    exec.run(&Cmd::new("dpkg-deb").arg("-x").arg(&deb).arg(cache))?;
    let _ = std::fs::remove_file(&deb);
    let release = std::fs::read_dir(cache.join("lib/modules"))
        .map_err(|e| invalid("kernel", e.to_string()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max()
        .ok_or_else(|| invalid("kernel", format!("{pkg} holds no modules")))?;
    exec.run(&Cmd::new("depmod").arg("-b").arg(cache).arg(&release))?;
    cached_kernel(cache)
        .ok_or_else(|| invalid("kernel", format!("{pkg} unpacked without a usable kernel")))
}

/// The module files to load for `wanted`, dependencies first, each once, from a
/// `modules.dep` text (paths relative to the modules dir). A wanted module that is built in
/// (listed in `builtin`, the `modules.builtin` text) or unknown is skipped.
pub fn resolve_modules(dep: &str, builtin: &str, wanted: &[&str]) -> Vec<String> {
    let name_of = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        stem.replace('-', "_")
    };
    let mut deps = std::collections::HashMap::new();
    for line in dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(
            name_of(module),
            (
                module.trim().to_string(),
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            ),
        );
    }
    let builtin: std::collections::HashSet<String> = builtin.lines().map(name_of).collect();
    let mut out: Vec<String> = Vec::new();
    for w in wanted {
        let w = w.replace('-', "_");
        if builtin.contains(&w) {
            continue;
        }
        let Some((path, ds)) = deps.get(&w) else {
            continue;
        };
        // modules.dep lists a module's dependencies, transitively, in load order reversed.
        for d in ds.iter().rev().chain(std::iter::once(path)) {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/crypto/crc32c_generic.ko:
";

    #[test]
    fn modules_come_after_their_dependencies_once() {
        let got = resolve_modules(DEP, "", &["virtio_mmio", "virtio_blk", "ext4"]);
        assert_eq!(
            got,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/virtio/virtio_mmio.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
            ]
        );
    }

    #[test]
    fn built_in_and_unknown_modules_are_skipped() {
        let got = resolve_modules(
            DEP,
            "kernel/fs/ext4/ext4.ko\n",
            &["ext4", "nosuch", "crc32c-generic"],
        );
        assert_eq!(got, ["kernel/crypto/crc32c_generic.ko"]);
    }

    #[test]
    fn the_kernel_package_is_read_from_apt_cache() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            kernel_package(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(kernel_package("linux-image-amd64\n"), None);
    }

    #[test]
    fn the_newest_unpacked_kernel_with_modules_is_used() {
        let d = tempfile::tempdir().unwrap();
        for r in ["6.1.0-1-amd64", "6.1.0-9-amd64"] {
            std::fs::create_dir_all(d.path().join("boot")).unwrap();
            std::fs::write(d.path().join(format!("boot/vmlinuz-{r}")), b"k").unwrap();
            std::fs::create_dir_all(d.path().join("lib/modules").join(r)).unwrap();
        }
        assert!(cached_kernel(d.path()).is_none(), "no modules.dep yet");
        std::fs::write(d.path().join("lib/modules/6.1.0-1-amd64/modules.dep"), "").unwrap();
        let k = cached_kernel(d.path()).unwrap();
        assert_eq!(k.release.as_deref(), Some("6.1.0-1-amd64"));
        std::fs::write(d.path().join("lib/modules/6.1.0-9-amd64/modules.dep"), "").unwrap();
        assert_eq!(
            cached_kernel(d.path()).unwrap().release.as_deref(),
            Some("6.1.0-9-amd64")
        );
    }
}
