//! The Linux kernel microVMs boot and the modules their guest agent loads.
//!
//! [`ensure_kernel`] finds a kernel without installing anything on the host, in this order:
//! the file [`KERNEL_ENV`] names (its modules beside it under `lib/modules/RELEASE`, or the
//! host's `/lib/modules/RELEASE`); the newest Debian kernel package already unpacked under the
//! cache directory; else the package `linux-image-amd64` depends on, fetched with
//! `apt-get download` and unpacked with `dpkg-deb -x` into `CACHE/linux-image-RELEASE/`
//! (through a per-process `.partial` directory renamed when complete). Debian's packages carry no
//! `modules.dep` (the host's `depmod` writes it at install), so it is generated with
//! `depmod -b` into the unpacked tree.
//!
//! [`guest_modules`] turns the module names a microVM needs ([`MICROVM_MODULES`]) into the
//! dependency-ordered files to load, from `modules.dep`, skipping what `modules.builtin` says
//! is built in. Debian 12's kernel ships plain `.ko` files; `.ko.xz` and `.ko.zst` are
//! decompressed when the initramfs is built ([`crate::initramfs::build_guest_initramfs`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use warren_exec::{Cmd, Executor};

use crate::{invalid, Result, VmError};

/// The environment variable naming a kernel image to use instead of Debian's.
pub const KERNEL_ENV: &str = "WARREN_VM_KERNEL";

/// The Debian metapackage whose kernel dependency is fetched.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";

/// What a microVM guest needs loaded, in order: the virtio-mmio transport, the agent's
/// console port, disks, the NIC, and ext4 (with the crc32c its checksums ask the crypto API
/// for, which would otherwise need a `modprobe` the guest does not have).
pub const MICROVM_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
    "crc32c_generic",
    "ext4",
];

/// What a bhyve microVM guest needs loaded, in order: virtio over PCI (bhyve has no
/// virtio-mmio), the agent's console port, the NIC, and the 9p client over virtio that mounts
/// the host's shares (its root among them) with the network filesystem library it uses.
pub const BHYVE_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_console",
    "virtio_net",
    "netfs",
    "9pnet",
    "9pnet_virtio",
    "9p",
];

/// A kernel image and its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFiles {
    pub vmlinuz: PathBuf,
    /// `…/lib/modules/RELEASE`.
    pub modules_dir: PathBuf,
    pub release: String,
}

/// The release in a `vmlinuz-RELEASE` file name.
pub fn release_of(vmlinuz: &Path) -> Option<String> {
    vmlinuz
        .file_name()?
        .to_str()?
        .strip_prefix("vmlinuz-")
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

/// Compares versions with their digit runs as numbers (`6.1.0-9` < `6.1.0-57`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(u64, String)> {
        let mut v = Vec::new();
        let mut num = String::new();
        let mut text = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !text.is_empty() {
                    v.push((0, std::mem::take(&mut text)));
                }
                num.push(c);
            } else {
                if !num.is_empty() {
                    v.push((num.parse().unwrap_or(u64::MAX), String::new()));
                    num.clear();
                }
                text.push(c);
            }
        }
        if !num.is_empty() {
            v.push((num.parse().unwrap_or(u64::MAX), String::new()));
        }
        if !text.is_empty() {
            v.push((0, text));
        }
        v
    }
    parts(a).cmp(&parts(b))
}

/// The modules directory of `release` in an unpacked tree (`lib/modules` or
/// `usr/lib/modules`).
fn modules_in(tree: &Path, release: &str) -> Option<PathBuf> {
    ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|d| tree.join(d).join(release))
        .find(|p| p.is_dir())
}

/// The kernel of an unpacked package tree (`boot/vmlinuz-*` and its modules).
fn kernel_in(tree: &Path) -> Option<KernelFiles> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(tree.join("boot"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| release_of(&p).map(|r| (r, p)))
        .collect();
    found.sort_by(|a, b| version_cmp(&a.0, &b.0));
    let (release, vmlinuz) = found.pop()?;
    let modules_dir = modules_in(tree, &release)?;
    Some(KernelFiles {
        vmlinuz,
        modules_dir,
        release,
    })
}

/// The newest kernel unpacked under `cache_dir` (`linux-image-*/`).
pub fn find_unpacked(cache_dir: &Path) -> Option<KernelFiles> {
    let mut found: Vec<KernelFiles> = std::fs::read_dir(cache_dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-image-"))
        })
        .filter_map(|p| kernel_in(&p))
        .collect();
    found.sort_by(|a, b| version_cmp(&a.release, &b.release));
    found.pop()
}

/// The kernel named by [`KERNEL_ENV`]'s value.
pub fn from_path(vmlinuz: &Path) -> Result<KernelFiles> {
    if !vmlinuz.is_file() {
        return Err(invalid(
            "kernel",
            format!("{} does not exist", vmlinuz.display()),
        ));
    }
    let release = release_of(vmlinuz).ok_or_else(|| {
        invalid(
            "kernel",
            format!(
                "{}: the file name must be vmlinuz-RELEASE to find its modules",
                vmlinuz.display()
            ),
        )
    })?;
    let beside = vmlinuz
        .parent()
        .and_then(Path::parent)
        .and_then(|tree| modules_in(tree, &release));
    let modules_dir = beside
        .or_else(|| modules_in(Path::new("/"), &release))
        .ok_or_else(|| {
            invalid(
                "kernel",
                format!(
                    "no lib/modules/{release} beside {} nor on the host",
                    vmlinuz.display()
                ),
            )
        })?;
    Ok(KernelFiles {
        vmlinuz: vmlinuz.to_path_buf(),
        modules_dir,
        release,
    })
}

/// The kernel package `linux-image-amd64` depends on, from `apt-cache depends` output.
pub fn parse_kernel_package(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends
        .lines()
        .find_map(|l| l.trim().strip_prefix("Depends: linux-image-"))
        .map(|p| format!("linux-image-{}", p.trim()))
}

/// A kernel for microVMs: see the module docs for where it comes from.
pub fn ensure_kernel(exec: &dyn Executor, cache_dir: &Path) -> Result<KernelFiles> {
    if let Some(k) = std::env::var_os(KERNEL_ENV) {
        return from_path(Path::new(&k));
    }
    if let Some(k) = find_unpacked(cache_dir) {
        ensure_depmod(exec, &k)?;
        return Ok(k);
    }
    fetch(exec, cache_dir)
}

/// Writes `modules.dep` into an unpacked tree that has none.
fn ensure_depmod(exec: &dyn Executor, k: &KernelFiles) -> Result<()> {
    if k.modules_dir.join("modules.dep").is_file() {
        return Ok(());
    }
    // modules_dir is BASE/lib/modules/RELEASE (or BASE/usr/lib/modules/RELEASE).
    let mut base = k.modules_dir.clone();
    for _ in 0..3 {
        base.pop();
    }
    if base.ends_with("usr") {
        base.pop();
    }
    exec.run(&Cmd::new("depmod").arg("-b").arg(&base).arg(&k.release))?;
    Ok(())
}

fn fetch(exec: &dyn Executor, cache_dir: &Path) -> Result<KernelFiles> {
    let io = |what: &str, e: std::io::Error| invalid("kernel", format!("{what}: {e}"));
    std::fs::create_dir_all(cache_dir).map_err(|e| io(&cache_dir.display().to_string(), e))?;
    let deps = exec
        .run(&Cmd::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?
        .stdout_str();
    let pkg = parse_kernel_package(&deps).ok_or_else(|| VmError::Output {
        command: format!("apt-cache depends {KERNEL_METAPACKAGE}"),
        reason: "no linux-image-* dependency".into(),
    })?;
    // Per process, so two fetching at once do not share a staging directory.
    let staging = cache_dir.join(format!(".{pkg}.partial.{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io("clearing a partial unpack", e))?;
    }
    let tree = staging.join("tree");
    std::fs::create_dir_all(&tree).map_err(|e| io("staging", e))?;
    exec.run(
        &Cmd::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && apt-get download \"$2\"")
            .arg("sh")
            .arg(&staging)
            .arg(&pkg),
    )?;
    let deb = std::fs::read_dir(&staging)
        .map_err(|e| io("staging", e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| invalid("kernel", format!("apt-get download {pkg} left no .deb")))?;
    exec.run(&Cmd::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let k = kernel_in(&tree).ok_or_else(|| {
        invalid(
            "kernel",
            format!("{pkg} holds no boot/vmlinuz-* with modules"),
        )
    })?;
    ensure_depmod(exec, &k)?;
    let dest = cache_dir.join(&pkg);
    if dest.exists() && kernel_in(&dest).is_none() {
        std::fs::remove_dir_all(&dest).map_err(|e| io("removing an incomplete unpack", e))?;
    }
    let moved = std::fs::rename(&tree, &dest);
    let _ = std::fs::remove_dir_all(&staging);
    // A complete unpack already there (another fetch won the race) is as good as ours.
    if let Err(e) = moved {
        if kernel_in(&dest).is_none() {
            return Err(io("moving the unpacked kernel in place", e));
        }
    }
    kernel_in(&dest).ok_or_else(|| invalid("kernel", format!("{} is incomplete", dest.display())))
}

/// A module's name as the kernel knows it: the file name without `.ko` (and compression),
/// with `-` as `_`.
pub fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

/// The files to load, in order, for `wanted` given `modules.dep` and `modules.builtin`
/// contents: each module after its dependencies, each once, built-in ones left out. The
/// paths are as `modules.dep` writes them (relative to the modules directory).
pub fn resolve_modules(dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>> {
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| module_name(l.trim()))
        .collect();
    let mut table: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in dep.lines() {
        let Some((path, deps)) = line.split_once(':') else {
            continue;
        };
        let path = path.trim();
        let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
        table.insert(module_name(path), (path.to_string(), deps));
    }
    fn visit(
        name: &str,
        table: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
        depth: usize,
    ) -> Result<()> {
        if seen.contains(name) || builtin.contains(name) {
            return Ok(());
        }
        if depth > 64 {
            return Err(invalid("modules", format!("dependency loop at {name}")));
        }
        let (path, deps) = table.get(name).ok_or_else(|| {
            invalid(
                "modules",
                format!("{name} is neither built in nor in modules.dep"),
            )
        })?;
        for d in deps {
            visit(&module_name(d), table, builtin, seen, out, depth + 1)?;
        }
        seen.insert(name.to_string());
        out.push(path.clone());
        Ok(())
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in wanted {
        visit(&module_name(w), &table, &builtin, &mut seen, &mut out, 0)?;
    }
    Ok(out)
}

/// The module files under `modules_dir` to load for `wanted`, dependencies first
/// ([`resolve_modules`] over its `modules.dep` and `modules.builtin`).
pub fn guest_modules(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>> {
    let read = |name: &str| {
        std::fs::read_to_string(modules_dir.join(name))
            .map_err(|e| invalid("modules", format!("{}/{name}: {e}", modules_dir.display())))
    };
    let dep = read("modules.dep")?;
    let builtin = read("modules.builtin").unwrap_or_default();
    Ok(resolve_modules(&dep, &builtin, wanted)?
        .into_iter()
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                modules_dir.join(p)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A piece of Debian 12's (6.1) modules.dep, as `depmod` writes it.
    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/crypto/crc32c_generic.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
";

    #[test]
    fn modules_come_after_their_dependencies_each_once() {
        let got = resolve_modules(DEP, "kernel/net/unix/unix.ko\n", MICROVM_MODULES).unwrap();
        let names: Vec<String> = got.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_ring",
                "virtio",
                "virtio_mmio",
                "virtio_console",
                "virtio_blk",
                "failover",
                "net_failover",
                "virtio_net",
                "crc32c_generic",
                "crc16",
                "mbcache",
                "jbd2",
                "ext4"
            ]
        );
        assert_eq!(got[0], "kernel/drivers/virtio/virtio_ring.ko");
    }

    #[test]
    fn a_bhyve_guest_loads_the_9p_client_over_virtio_pci() {
        // Debian 12's: virtio_pci built in, the 9p stack and the agent's port as modules.
        let dep = format!(
            "{DEP}kernel/fs/netfs/netfs.ko:\n\
             kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko\n\
             kernel/net/9p/9pnet.ko:\n\
             kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko\n"
        );
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_pci.ko\n";
        let got = resolve_modules(&dep, builtin, BHYVE_MODULES).unwrap();
        let names: Vec<String> = got.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_console",
                "failover",
                "net_failover",
                "virtio_net",
                "netfs",
                "9pnet",
                "9pnet_virtio",
                "fscache",
                "9p"
            ]
        );
    }

    #[test]
    fn built_in_modules_are_left_out_and_unknown_ones_refused() {
        let builtin = "kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_mmio.ko\n";
        let got = resolve_modules(DEP, builtin, &["virtio_mmio", "virtio_blk"]).unwrap();
        assert_eq!(got, ["kernel/drivers/block/virtio_blk.ko"]);
        let e = resolve_modules(DEP, "", &["nosuch"]).unwrap_err();
        assert_eq!(e.field(), Some("modules"));
        // Names match across '-' and '_', and compressed files keep their names.
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst"),
            "crc32c_intel"
        );
        let got = resolve_modules(DEP, "", &["crc32c-intel"]).unwrap();
        assert_eq!(got, ["kernel/arch/x86/crypto/crc32c-intel.ko"]);
    }

    #[test]
    fn guest_modules_reads_a_modules_directory() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("modules.dep"), DEP).unwrap();
        let got = guest_modules(d.path(), &["virtio_blk"]).unwrap();
        assert_eq!(
            got,
            [
                d.path().join("kernel/drivers/virtio/virtio_ring.ko"),
                d.path().join("kernel/drivers/virtio/virtio.ko"),
                d.path().join("kernel/drivers/block/virtio_blk.ko"),
            ]
        );
        let empty = tempfile::tempdir().unwrap();
        assert!(guest_modules(empty.path(), &["virtio_blk"]).is_err());
    }

    #[test]
    fn versions_compare_by_number() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("6.1.0-9-amd64", "6.1.0-57-amd64"), Less);
        assert_eq!(version_cmp("6.10.0-1", "6.9.0-1"), Greater);
        assert_eq!(version_cmp("6.1.0-57-amd64", "6.1.0-57-amd64"), Equal);
        assert_eq!(
            release_of(Path::new("/x/boot/vmlinuz-6.1.0-57-amd64")).as_deref(),
            Some("6.1.0-57-amd64")
        );
        assert_eq!(release_of(Path::new("/x/vmlinuz")), None);
    }

    #[test]
    fn the_kernel_package_is_linux_image_amd64s_dependency() {
        let out = "linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n";
        assert_eq!(
            parse_kernel_package(out).as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(parse_kernel_package("linux-image-amd64\n"), None);
    }

    #[test]
    fn an_unpacked_tree_is_found_newest_first() {
        let d = tempfile::tempdir().unwrap();
        for rel in ["6.1.0-9-amd64", "6.1.0-57-amd64"] {
            let tree = d.path().join(format!("linux-image-{rel}"));
            std::fs::create_dir_all(tree.join("boot")).unwrap();
            std::fs::write(tree.join("boot").join(format!("vmlinuz-{rel}")), b"k").unwrap();
            std::fs::create_dir_all(tree.join("lib/modules").join(rel)).unwrap();
        }
        // A partial unpack is not a candidate.
        std::fs::create_dir_all(d.path().join(".linux-image-7.partial/tree/boot")).unwrap();
        let k = find_unpacked(d.path()).unwrap();
        assert_eq!(k.release, "6.1.0-57-amd64");
        assert!(k.modules_dir.ends_with("lib/modules/6.1.0-57-amd64"));
        let f = from_path(&k.vmlinuz).unwrap();
        assert_eq!(f, k);
    }
}
