//! warren's initramfs for microVMs: the guest agent as `/init`, the shared libraries its ELF
//! asks for (found with `ldd` through the executor) at the paths it asks for them, the kernel
//! modules the agent loads ([`crate::kernel::GUEST_MODULES`] with their dependencies) and
//! `/warren/modules`, their paths in load order, one per line. Built once per agent binary
//! and kernel and cached by their identities (path, size, modification time).

use crate::initramfs::Archive;
use crate::kernel::{resolve_modules, KernelFiles, GUEST_MODULES};
use crate::{invalid, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use warren_exec::{Cmd, Executor};

/// The list of modules to load, inside the initramfs.
pub const MODULE_LIST: &str = "warren/modules";

/// The shared libraries in `ldd` output (absolute paths; the vDSO skipped).
pub fn parse_ldd(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, right)) => right.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| path.to_string())
        })
        .collect()
}

fn identity(p: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m =
        std::fs::metadata(p).map_err(|e| invalid("initramfs", format!("{}: {e}", p.display())))?;
    Ok(format!("{}:{}:{}", p.display(), m.len(), m.mtime()))
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| invalid("initramfs", format!("{}: {e}", p.display())))
}

/// Adds `path`'s parent directories not added yet.
fn parents(a: &mut Archive, made: &mut BTreeSet<String>, path: &str) -> Result<()> {
    let mut at = String::new();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(part);
        if made.insert(at.clone()) {
            a.dir(&at, 0o755)?;
        }
    }
    Ok(())
}

/// The initramfs for `kernel` with `agent` as PID 1, in `cache` (built when missing).
pub fn build_guest_initramfs(
    exec: &dyn Executor,
    agent: &Path,
    kernel: &KernelFiles,
    cache: &Path,
) -> Result<PathBuf> {
    let mut key = identity(agent)?;
    key.push_str(&identity(&kernel.vmlinuz)?);
    if let Some(m) = &kernel.modules_dir {
        key.push_str(&m.display().to_string());
    }
    let out = cache.join(format!("initramfs-{:016x}.cpio", fnv(&key)));
    if out.exists() {
        return Ok(out);
    }
    let ldd = exec.run(&Cmd::new("ldd").arg(agent))?;
    let libs = parse_ldd(&ldd.stdout_str());

    let mut a = Archive::new();
    let mut made = BTreeSet::new();
    for d in ["dev", "proc", "sys", "newroot", "warren", "tmp", "run"] {
        made.insert(d.to_string());
        a.dir(d, 0o755)?;
    }
    a.char_dev("dev/console", 0o600, 5, 1)?;
    a.char_dev("dev/null", 0o666, 1, 3)?;
    a.file("init", 0o755, &read(agent)?)?;
    for lib in &libs {
        parents(&mut a, &mut made, lib)?;
        a.file(lib.trim_start_matches('/'), 0o755, &read(Path::new(lib))?)?;
    }
    let mut list = String::new();
    if let Some(dir) = &kernel.modules_dir {
        let dep = std::fs::read_to_string(dir.join("modules.dep")).unwrap_or_default();
        let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
        for rel in resolve_modules(&dep, &builtin, GUEST_MODULES) {
            let inside = format!("lib/modules/{rel}");
            parents(&mut a, &mut made, &inside)?;
            a.file(&inside, 0o644, &read(&dir.join(&rel))?)?;
            list.push('/');
            list.push_str(&inside);
            list.push('\n');
        }
    }
    a.file(MODULE_LIST, 0o644, list.as_bytes())?;
    std::fs::create_dir_all(cache)
        .map_err(|e| invalid("initramfs", format!("{}: {e}", cache.display())))?;
    let partial = out.with_extension("partial");
    std::fs::write(&partial, a.finish()).map_err(|e| invalid("initramfs", e.to_string()))?;
    std::fs::rename(&partial, &out).map_err(|e| invalid("initramfs", e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_paths() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
        );
    }
}
