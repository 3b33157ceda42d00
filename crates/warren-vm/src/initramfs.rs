//! A writer of `newc` cpio archives, the format Linux unpacks as an initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a 110-byte ASCII
//! header (`070701` and thirteen 8-digit hex fields), the NUL-terminated name padded to four
//! bytes, the data padded to four bytes; the archive ends with an entry named `TRAILER!!!`.
//! The kernel accepts the archive as is or compressed (gzip and others).
//!
//! Entries are directories, regular files, symlinks and device nodes, with fixed owner
//! (root) and time (0) so the same input gives the same bytes.
//!
//! [`build_guest_initramfs`] writes the initramfs of a microVM: `/init` is the guest agent
//! (`warren-agent`), with the shared libraries its ELF asks for at the paths `ldd` resolves
//! (the dynamic loader included), the kernel modules of [`crate::kernel::MICROVM_MODULES`]
//! as plain `.ko` files under `/warren/ko` (`.ko.xz` and `.ko.zst` decompressed here) and
//! their load order in `/warren/modules`, and `/dev/console`. The archive is not compressed
//! (the guest unpacks it faster than it would inflate it under TCG). It is rebuilt only when
//! an input's identity (path, size, modification time) changed: the identities are kept in
//! `OUT.key` beside it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use warren_exec::{Cmd, Executor};

use crate::kernel::{guest_modules, module_name, KernelFiles, MICROVM_MODULES};
use crate::{invalid, Result};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Archive {
    buf: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Archive {
            buf: Vec::new(),
            next_ino: 1,
        }
    }

    /// A directory (its parents must be added first, as the kernel does not create them).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<&mut Self> {
        self.entry(path, S_IFDIR | (perm & 0o7777), 2, (0, 0), b"")
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<&mut Self> {
        self.entry(path, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node (`dev/console` is 5:1).
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<&mut Self> {
        self.entry(path, S_IFCHR | (perm & 0o7777), 1, (major, minor), b"")
    }

    /// The archive's bytes, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.header("TRAILER!!!", 0, 0, 1, (0, 0), 0);
        self.buf
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<&mut Self> {
        let ok = !path.is_empty()
            && !path.starts_with('/')
            && !path.contains('\0')
            && path
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..");
        if !ok {
            return Err(invalid(
                "initramfs",
                format!("{path:?} is not a relative path without '.' or '..'"),
            ));
        }
        let size = u32::try_from(data.len())
            .map_err(|_| invalid("initramfs", format!("{path}: larger than 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(path, ino, mode, nlink, rdev, size);
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(self)
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// The file listing the modules the agent loads, in order.
pub const MODULES_LIST: &str = "warren/modules";

/// Where the modules are in the initramfs.
pub const MODULES_DIR: &str = "warren/ko";

/// Bumped when the layout changes, so old cached archives are rebuilt.
const LAYOUT: &str = "warren-initramfs-1";

/// The shared objects of `ldd` output, by absolute path (`linux-vdso` has none); a library
/// `not found` is an error; a static executable has none.
pub fn parse_ldd(out: &str) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for line in out.lines().map(str::trim) {
        if line.contains("not a dynamic executable") || line.contains("statically linked") {
            continue;
        }
        let target = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    return Err(invalid(
                        "agent",
                        format!("library {} not found", name.trim()),
                    ));
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            v.push(PathBuf::from(path));
        }
    }
    Ok(v)
}

/// The shared libraries `bin` needs, asked of `ldd`.
pub fn shared_libraries(exec: &dyn Executor, bin: &Path) -> Result<Vec<PathBuf>> {
    match exec.run(&Cmd::new("ldd").arg(bin)) {
        Ok(out) => parse_ldd(&out.stdout_str()),
        // ldd fails on a static executable (FreeBSD's says "not a dynamic ELF executable").
        Err(e) if format!("{e}").contains("not a dynamic") => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn identity(p: &Path) -> Result<String> {
    let m =
        std::fs::metadata(p).map_err(|e| invalid("initramfs", format!("{}: {e}", p.display())))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{} {} {mtime}\n", p.display(), m.len()))
}

/// The bytes of a module file, decompressed.
fn module_bytes(exec: &dyn Executor, p: &Path) -> Result<Vec<u8>> {
    let name = p.to_string_lossy();
    let tool = if name.ends_with(".ko.xz") {
        Some("xz")
    } else if name.ends_with(".ko.zst") {
        Some("zstd")
    } else {
        None
    };
    match tool {
        Some(t) => Ok(exec.run(&Cmd::new(t).arg("-dc").arg(p))?.stdout),
        None => std::fs::read(p).map_err(|e| invalid("initramfs", format!("{name}: {e}"))),
    }
}

/// Adds `path`'s parent directories not yet added.
fn parents(a: &mut Archive, dirs: &mut BTreeSet<String>, path: &str) -> Result<()> {
    let comps: Vec<&str> = path.split('/').collect();
    for i in 1..comps.len() {
        let d = comps[..i].join("/");
        if dirs.insert(d.clone()) {
            a.dir(&d, 0o755)?;
        }
    }
    Ok(())
}

/// Writes the initramfs of a microVM to `out` (see the module docs), unless the one there was
/// built from the same inputs. Returns whether it was (re)built.
pub fn build_guest_initramfs(
    exec: &dyn Executor,
    agent_bin: &Path,
    kernel: &KernelFiles,
    out: &Path,
) -> Result<bool> {
    build_initramfs_with(exec, agent_bin, kernel, MICROVM_MODULES, out)
}

/// [`build_guest_initramfs`] with the modules named `wanted` (and what they depend on), as
/// [`crate::kernel::BHYVE_MODULES`] for a bhyve guest.
pub fn build_initramfs_with(
    exec: &dyn Executor,
    agent_bin: &Path,
    kernel: &KernelFiles,
    wanted: &[&str],
    out: &Path,
) -> Result<bool> {
    let modules = guest_modules(&kernel.modules_dir, wanted)?;
    let libs = shared_libraries(exec, agent_bin)?;
    let mut key = format!("{LAYOUT}\n");
    for p in std::iter::once(agent_bin)
        .chain(libs.iter().map(PathBuf::as_path))
        .chain(modules.iter().map(PathBuf::as_path))
    {
        key.push_str(&identity(p)?);
    }
    let key_path = PathBuf::from(format!("{}.key", out.display()));
    if out.is_file() && std::fs::read_to_string(&key_path).ok().as_deref() == Some(key.as_str()) {
        return Ok(false);
    }

    let io =
        |what: &Path, e: std::io::Error| invalid("initramfs", format!("{}: {e}", what.display()));
    let mut a = Archive::new();
    let mut dirs = BTreeSet::new();
    for d in ["dev", "proc", "sys", "newroot", "warren", MODULES_DIR] {
        parents(&mut a, &mut dirs, &format!("{d}/x"))?;
    }
    a.char_dev("dev/console", 0o600, 5, 1)?;
    let agent = std::fs::read(agent_bin).map_err(|e| io(agent_bin, e))?;
    a.file("init", 0o755, &agent)?;
    for lib in &libs {
        let rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        if dirs.contains(&rel) {
            continue;
        }
        parents(&mut a, &mut dirs, &rel)?;
        let bytes = std::fs::read(lib).map_err(|e| io(lib, e))?;
        a.file(&rel, 0o755, &bytes)?;
        dirs.insert(rel);
    }
    let mut list = String::new();
    for m in &modules {
        let name = format!("{}.ko", module_name(&m.to_string_lossy()));
        let rel = format!("{MODULES_DIR}/{name}");
        a.file(&rel, 0o644, &module_bytes(exec, m)?)?;
        list.push_str(&format!("/{rel}\n"));
    }
    a.file(MODULES_LIST, 0o644, list.as_bytes())?;

    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", out.display(), std::process::id()));
    std::fs::write(&tmp, a.finish()).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, out).map_err(|e| io(out, e))?;
    std::fs::write(&key_path, key).map_err(|e| io(&key_path, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_one_file_and_the_trailer() {
        let mut a = Archive::new();
        a.file("init", 0o755, b"hi\n").unwrap();
        let b = a.finish();
        // header (110) + "init\0" (5) = 115, padded to 116; data 3 padded to 4.
        assert_eq!(&b[..6], b"070701");
        assert_eq!(&b[6..14], b"00000001");
        assert_eq!(&b[14..22], b"000081ED");
        assert_eq!(&b[54..62], b"00000003");
        assert_eq!(&b[110..116], b"init\0\0");
        assert_eq!(&b[116..120], b"hi\n\0");
        assert_eq!(&b[120..126], b"070701");
        assert_eq!(&b[120 + 110..120 + 121], b"TRAILER!!!\0");
        assert_eq!(b.len() % 4, 0);
    }

    #[test]
    fn bad_paths_are_refused() {
        let mut a = Archive::new();
        for p in ["", "/init", "a/../b", "a//b", "./x"] {
            assert_eq!(
                a.file(p, 0o644, b"").unwrap_err().field(),
                Some("initramfs")
            );
        }
    }

    #[test]
    fn ldd_output_gives_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffc)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out).unwrap(),
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").unwrap().is_empty());
        assert_eq!(
            parse_ldd("\tlibfoo.so.1 => not found\n")
                .unwrap_err()
                .field(),
            Some("agent")
        );
    }

    #[test]
    fn the_guest_initramfs_holds_the_agent_libraries_and_modules_and_is_cached() {
        let d = tempfile::tempdir().unwrap();
        let mods = d.path().join("lib/modules/6.1.0-1-amd64");
        std::fs::create_dir_all(mods.join("kernel")).unwrap();
        let mut dep = String::new();
        for m in [
            "virtio_ring",
            "virtio",
            "virtio_mmio",
            "virtio_console",
            "virtio_blk",
            "virtio_net",
            "crc32c_generic",
            "ext4",
        ] {
            std::fs::write(mods.join(format!("kernel/{m}.ko")), m.as_bytes()).unwrap();
            let deps = match m {
                "virtio_ring" | "crc32c_generic" => "",
                "virtio" => "kernel/virtio_ring.ko",
                _ if m.starts_with("virtio") => "kernel/virtio.ko kernel/virtio_ring.ko",
                _ => "",
            };
            dep.push_str(&format!("kernel/{m}.ko: {deps}\n"));
        }
        std::fs::write(mods.join("modules.dep"), dep).unwrap();
        let agent = d.path().join("warren-agent");
        std::fs::write(&agent, b"\x7fELF agent").unwrap();
        let lib = d.path().join("libc.so.6");
        std::fs::write(&lib, b"libc").unwrap();
        let k = KernelFiles {
            vmlinuz: d.path().join("vmlinuz-6.1.0-1-amd64"),
            modules_dir: mods,
            release: "6.1.0-1-amd64".into(),
        };
        let ldd = format!("\tlibc.so.6 => {} (0x1)\n", lib.display());
        let rec = warren_exec::RecordingExecutor::new();
        rec.expect_ok(&format!("ldd {}", agent.display()), &ldd);
        let out = d.path().join("out/initramfs.cpio");
        assert!(build_guest_initramfs(&rec, &agent, &k, &out).unwrap());
        let bytes = std::fs::read(&out).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for needle in [
            "init\0",
            "\x7fELF agent",
            "dev/console\0",
            "warren/ko/virtio_ring.ko\0",
            "warren/ko/ext4.ko\0",
            "/warren/ko/virtio_ring.ko\n/warren/ko/virtio.ko\n/warren/ko/virtio_mmio.ko\n",
            "/warren/ko/crc32c_generic.ko\n/warren/ko/ext4.ko\n",
        ] {
            assert!(text.contains(needle), "{needle:?} missing");
        }
        let lib_rel = lib.to_string_lossy().trim_start_matches('/').to_string();
        assert!(text.contains(&format!("{lib_rel}\0")));
        rec.finish();

        // The same inputs: nothing rebuilt (ldd runs again, to see the libraries' identities).
        let rec = warren_exec::RecordingExecutor::new();
        rec.expect_ok(&format!("ldd {}", agent.display()), &ldd);
        assert!(!build_guest_initramfs(&rec, &agent, &k, &out).unwrap());
        // A changed agent: rebuilt.
        std::fs::write(&agent, b"\x7fELF agent v2").unwrap();
        rec.expect_ok(&format!("ldd {}", agent.display()), &ldd);
        assert!(build_guest_initramfs(&rec, &agent, &k, &out).unwrap());
        assert!(String::from_utf8_lossy(&std::fs::read(&out).unwrap()).contains("agent v2"));
        rec.finish();
    }
}
