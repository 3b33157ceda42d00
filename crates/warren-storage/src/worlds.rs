//! Worlds: the read-only base systems that workload root filesystems are snapshots of.
//!
//! [`create_world`] builds one into a fresh dataset, writes its metadata to
//! `worlds/<name>.json` (next to the dataset), then seals the dataset. Any failure deletes the
//! half-built dataset and its metadata, so a world either exists complete and sealed or not at
//! all. [`world_meta`] reads the metadata back.
//!
//! Every world starts from the same skeleton: `proc sys dev tmp(1777) run var/tmp(1777)
//! var/log var/lib var/cache root(0700) home srv mnt opt etc data`.
//!
//! ## `host`
//! A thin, read-only view of the host: the dataset holds only the skeleton and a private `/etc`.
//! For each of the host's `/usr /bin /sbin /lib /lib32 /lib64 /libx32` that exists: a symlink
//! on the host (merged /usr: `/bin -> usr/bin`) becomes the same symlink in the world; a real
//! directory becomes an empty mountpoint plus a read-only bind in [`WorldMeta::binds`], which
//! the runtime mounts. `/usr` must be a directory and is always such a bind. Host programs
//! (`python3`, `nginx`, ...) therefore run inside unchanged.
//!
//! The private `/etc` contains exactly:
//! - `passwd`, `group`: the host's system accounts only (uid/gid below 1000, plus `nobody` and
//!   `nogroup`); password fields become `x` and group member lists keep only those accounts.
//!   No `shadow` or `gshadow`;
//! - `hosts`: `127.0.0.1 localhost` and `::1 localhost`;
//! - `resolv.conf`: copied if it is a regular file on the host, else an empty file (no
//!   nameservers);
//! - `nsswitch.conf`, `ld.so.cache`, `ld.so.conf`, `os-release`, `mime.types`, `localtime`,
//!   each if present on the host, copied as the resolved file (symlinks followed);
//! - `ld.so.conf.d/`, `alternatives/` and `ssl/` copied as trees with symlinks kept as
//!   symlinks, except `ssl/private/` (host private keys never enter a world).
//!
//! ## `busybox`
//! Debian's statically linked busybox (package `busybox-static`, at `/bin/busybox` or
//! `/usr/bin/busybox`; refused unless its ELF has no `PT_INTERP` header) copied to
//! `/bin/busybox`, one symlink to `/bin/busybox` per applet path printed by
//! `busybox --list-full`, the skeleton and a minimal `/etc` (`passwd` with root and nobody,
//! `group` with root and nogroup, `hosts`). No binds.
//!
//! Both worlds default to `/bin/sh`.

use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use warren_exec::{Cmd, Executor};

use crate::fsutil::{copy_tree, exists, io_err, mkdir_mode, write_file};
use crate::{Result, Storage, StorageError, WorldBind, WorldMeta};

/// The worlds [`create_world`] can build.
pub const KNOWN_WORLDS: &[&str] = &["host", "busybox"];

const SKELETON: &[(&str, u32)] = &[
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("run", 0o755),
    ("var", 0o755),
    ("var/tmp", 0o1777),
    ("var/log", 0o755),
    ("var/lib", 0o755),
    ("var/cache", 0o755),
    ("root", 0o700),
    ("home", 0o755),
    ("srv", 0o755),
    ("mnt", 0o755),
    ("opt", 0o755),
    ("etc", 0o755),
    ("data", 0o755),
];

const HOST_SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];
const HOST_ETC_FILES: &[&str] = &[
    "nsswitch.conf",
    "ld.so.cache",
    "ld.so.conf",
    "os-release",
    "mime.types",
    "localtime",
];
const HOST_ETC_TREES: &[&str] = &["ld.so.conf.d", "alternatives", "ssl"];
const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Builds world `name` (one of [`KNOWN_WORLDS`]) in `storage`, sealed; `exec` runs the
/// programs the build needs (`busybox --list-full`).
pub fn create_world(storage: &dyn Storage, name: &str, exec: &dyn Executor) -> Result<WorldMeta> {
    if !KNOWN_WORLDS.contains(&name) {
        return Err(StorageError::UnknownWorld(name.to_string()));
    }
    let meta_path = storage.world_meta_path(name);
    if exists(&meta_path) {
        return Err(StorageError::Exists(meta_path));
    }
    let root = storage.create_world_dataset(name)?;
    build_world(storage, name, root, |root| match name {
        "host" => build_host(Path::new("/"), root),
        _ => build_busybox(root, exec),
    })
}

/// Builds world `name` from `parent` (a copy-on-write snapshot of it, see
/// [`Storage::create_world_from`]) or, with no parent, from an empty dataset: `populate`
/// changes the new dataset, then the metadata is written and the world sealed. The new world
/// keeps the parent's binds; `default_command` (when not empty) replaces the parent's. Any
/// failure deletes the new world again and leaves the parent as it was.
///
/// Image layers, recipe builds and imported root filesystems are all derived worlds.
pub fn derive_world(
    storage: &dyn Storage,
    name: &str,
    parent: Option<&str>,
    default_command: Vec<String>,
    populate: impl FnOnce(&Path) -> Result<()>,
) -> Result<WorldMeta> {
    let meta_path = storage.world_meta_path(name);
    if exists(&meta_path) {
        return Err(StorageError::Exists(meta_path));
    }
    let (root, inherited) = match parent {
        Some(p) => {
            let meta = world_meta(storage, p)?;
            (storage.create_world_from(name, p)?, Some(meta))
        }
        None => (storage.create_world_dataset(name)?, None),
    };
    build_world(storage, name, root, |root| {
        populate(root)?;
        let (binds, parent_command) = inherited
            .map(|m| (m.binds, m.default_command))
            .unwrap_or_default();
        Ok(Built {
            binds,
            default_command: if default_command.is_empty() {
                parent_command
            } else {
                default_command
            },
        })
    })
}

/// The metadata of an existing world.
pub fn world_meta(storage: &dyn Storage, name: &str) -> Result<WorldMeta> {
    let path = storage.world_meta_path(name);
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StorageError::NoSuchWorld(name.to_string()))
        }
        other => other.map_err(io_err(&path))?,
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        StorageError::Other(format!("{}: invalid world metadata: {e}", path.display()))
    })
}

/// What a world builder produces besides files.
#[derive(Debug)]
struct Built {
    binds: Vec<WorldBind>,
    default_command: Vec<String>,
}

/// Lets `populate` fill the new dataset at `root`, writes the metadata and seals; on any
/// failure deletes the dataset (and the metadata) again.
fn build_world(
    storage: &dyn Storage,
    name: &str,
    root: PathBuf,
    populate: impl FnOnce(&Path) -> Result<Built>,
) -> Result<WorldMeta> {
    let result = populate(&root).and_then(|built| {
        let meta = WorldMeta {
            name: name.to_string(),
            binds: built.binds,
            default_command: built.default_command,
            created_at: unix_now(),
        };
        write_meta(storage, &meta)?;
        storage.seal_world(name)?;
        Ok(meta)
    });
    if result.is_err() {
        // The build error is what the caller needs; a cleanup failure would only mask it.
        let _ = storage.delete_world(name);
    }
    result
}

fn write_meta(storage: &dyn Storage, meta: &WorldMeta) -> Result<()> {
    let path = storage.world_meta_path(&meta.name);
    let mut json = serde_json::to_vec_pretty(meta)
        .map_err(|e| StorageError::Other(format!("cannot encode world metadata: {e}")))?;
    json.push(b'\n');
    write_file(&path, &json, 0o644)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn skeleton(root: &Path) -> Result<()> {
    SKELETON
        .iter()
        .try_for_each(|(dir, mode)| mkdir_mode(&root.join(dir), *mode))
}

fn sh() -> Vec<String> {
    vec!["/bin/sh".to_string()]
}

// ---- host -------------------------------------------------------------------------------

/// Builds the `host` world from the system rooted at `host` (`/` for real).
fn build_host(host: &Path, root: &Path) -> Result<Built> {
    skeleton(root)?;
    let binds = mirror_system_dirs(host, root)?;
    host_etc(&host.join("etc"), &root.join("etc"))?;
    Ok(Built {
        binds,
        default_command: sh(),
    })
}

/// Symlinks stay symlinks; directories become mountpoints with read-only binds.
fn mirror_system_dirs(host: &Path, root: &Path) -> Result<Vec<WorldBind>> {
    let usr = host.join("usr");
    if !usr.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Err(StorageError::Other(format!(
            "{} is not a directory: the host world needs it",
            usr.display()
        )));
    }
    let mut binds = Vec::new();
    for dir in HOST_SYSTEM_DIRS {
        let src = host.join(dir);
        let Ok(meta) = src.symlink_metadata() else {
            continue;
        };
        let dst = root.join(dir);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&src).map_err(io_err(&src))?;
            symlink(&target, &dst).map_err(io_err(&dst))?;
        } else if meta.is_dir() {
            mkdir_mode(&dst, 0o755)?;
            binds.push(WorldBind {
                source: src,
                dest: format!("/{dir}"),
                readonly: true,
            });
        }
    }
    Ok(binds)
}

/// Fills the world's private `/etc` from the host's; see the module docs for the list.
fn host_etc(host_etc: &Path, etc: &Path) -> Result<()> {
    let passwd = read_or_empty(&host_etc.join("passwd"))?;
    let passwd = system_passwd(&passwd);
    let users: Vec<&str> = passwd.lines().filter_map(|l| l.split(':').next()).collect();
    let group = system_group(&read_or_empty(&host_etc.join("group"))?, &users);
    write_file(&etc.join("passwd"), passwd.as_bytes(), 0o644)?;
    write_file(&etc.join("group"), group.as_bytes(), 0o644)?;
    write_file(&etc.join("hosts"), HOSTS.as_bytes(), 0o644)?;
    copy_resolv_conf(&host_etc.join("resolv.conf"), &etc.join("resolv.conf"))?;
    for file in HOST_ETC_FILES {
        copy_resolved_if_present(&host_etc.join(file), &etc.join(file))?;
    }
    for tree in HOST_ETC_TREES {
        let src = host_etc.join(tree);
        if src.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            copy_tree(&src, &etc.join(tree), &|rel| {
                *tree == "ssl" && rel == Path::new("private")
            })?;
        }
    }
    Ok(())
}

fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other.map_err(io_err(path)),
    }
}

fn copy_resolv_conf(src: &Path, dst: &Path) -> Result<()> {
    if src.symlink_metadata().is_ok_and(|m| m.is_file()) {
        std::fs::copy(src, dst).map_err(io_err(dst))?;
        Ok(())
    } else {
        write_file(dst, b"", 0o644)
    }
}

/// Copies the file `src` resolves to, if it resolves to a regular file.
fn copy_resolved_if_present(src: &Path, dst: &Path) -> Result<()> {
    if std::fs::metadata(src).is_ok_and(|m| m.is_file()) {
        std::fs::copy(src, dst).map_err(io_err(dst))?;
    }
    Ok(())
}

/// Keeps the `name:pw:id:...` lines of system accounts (id < 1000 or named `keep`), with the
/// password field replaced by `x` and `rewrite` applied to the fields.
fn system_accounts(text: &str, keep: &str, rewrite: impl Fn(&mut [String])) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let mut f: Vec<String> = line.split(':').map(str::to_string).collect();
        let Some(id) = f.get(2).and_then(|id| id.parse::<u32>().ok()) else {
            continue;
        };
        if id >= 1000 && f[0] != keep {
            continue;
        }
        f[1] = "x".to_string();
        rewrite(&mut f);
        out.push_str(&f.join(":"));
        out.push('\n');
    }
    out
}

/// `/etc/passwd` restricted to system users plus `nobody`.
fn system_passwd(text: &str) -> String {
    system_accounts(text, "nobody", |_| {})
}

/// `/etc/group` restricted to system groups plus `nogroup`, members restricted to `users`.
fn system_group(text: &str, users: &[&str]) -> String {
    system_accounts(text, "nogroup", |f| {
        if let Some(members) = f.get_mut(3) {
            let kept: Vec<&str> = members.split(',').filter(|m| users.contains(m)).collect();
            *members = kept.join(",");
        }
    })
}

// ---- busybox ----------------------------------------------------------------------------

/// Builds the `busybox` world from the host's static busybox.
fn build_busybox(root: &Path, exec: &dyn Executor) -> Result<Built> {
    let busybox = find_static_busybox()?;
    skeleton(root)?;
    mkdir_mode(&root.join("bin"), 0o755)?;
    let dst = root.join("bin/busybox");
    std::fs::copy(&busybox, &dst).map_err(io_err(&dst))?;
    let list = exec
        .run(&Cmd::new(&busybox.to_string_lossy()).arg("--list-full"))?
        .stdout_str();
    for applet in applet_paths(&list)? {
        link_applet(root, &applet)?;
    }
    let etc = root.join("etc");
    write_file(
        &etc.join("passwd"),
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    )?;
    write_file(&etc.join("group"), b"root:x:0:\nnogroup:x:65534:\n", 0o644)?;
    write_file(&etc.join("hosts"), HOSTS.as_bytes(), 0o644)?;
    Ok(Built {
        binds: Vec::new(),
        default_command: sh(),
    })
}

/// The host's busybox, if it is the statically linked one.
fn find_static_busybox() -> Result<PathBuf> {
    let Some(path) = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    else {
        return Err(StorageError::Other(
            "busybox not found at /bin/busybox or /usr/bin/busybox: \
             install the Debian package busybox-static"
                .to_string(),
        ));
    };
    let bytes = std::fs::read(&path).map_err(io_err(&path))?;
    match elf_is_static(&bytes) {
        Ok(true) => Ok(path),
        Ok(false) => Err(StorageError::Other(format!(
            "{} is dynamically linked and cannot run in the busybox world: \
             install the Debian package busybox-static",
            path.display()
        ))),
        Err(e) => Err(StorageError::Other(format!("{}: {e}", path.display()))),
    }
}

/// Relative applet paths from `busybox --list-full`, without `bin/busybox` itself.
fn applet_paths(list: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for line in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = PathBuf::from(line);
        if !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StorageError::Other(format!(
                "unexpected applet path {line:?} from busybox --list-full"
            )));
        }
        if path != Path::new("bin/busybox") {
            out.push(path);
        }
    }
    Ok(out)
}

fn link_applet(root: &Path, applet: &Path) -> Result<()> {
    let dst = root.join(applet);
    if let Some(parent) = dst.parent() {
        mkdir_mode(parent, 0o755)?;
    }
    if exists(&dst) {
        return Ok(());
    }
    symlink("/bin/busybox", &dst).map_err(io_err(&dst))
}

const PT_INTERP: u32 = 3;

/// Whether a 64-bit ELF image is statically linked (has no `PT_INTERP` program header).
pub fn elf_is_static(bytes: &[u8]) -> Result<bool, String> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".to_string());
    }
    if bytes.get(4) != Some(&2) {
        return Err("not a 64-bit ELF file".to_string());
    }
    let le = match bytes.get(5) {
        Some(1) => true,
        Some(2) => false,
        _ => return Err("ELF file with unknown byte order".to_string()),
    };
    let field = |off: usize, len: usize| -> Result<u64, String> {
        let b = bytes
            .get(off..off + len)
            .ok_or_else(|| format!("ELF file truncated at byte {off}"))?;
        let fold = |acc: u64, x: &u8| (acc << 8) | u64::from(*x);
        Ok(if le {
            b.iter().rev().fold(0, fold)
        } else {
            b.iter().fold(0, fold)
        })
    };
    let phoff = field(0x20, 8)? as usize;
    let phentsize = field(0x36, 2)? as usize;
    let phnum = field(0x38, 2)? as usize;
    for i in 0..phnum {
        if field(phoff + i * phentsize, 4)? == u64::from(PT_INTERP) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btrfs::BtrfsStorage;
    use std::sync::Arc;
    use warren_exec::RecordingExecutor;

    /// A minimal ELF64 header with the given program header types.
    fn elf(le: bool, types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = if le { 1 } else { 2 };
        let put = |b: &mut Vec<u8>, off: usize, v: u64, len: usize| {
            let bytes = if le {
                v.to_le_bytes()[..len].to_vec()
            } else {
                v.to_be_bytes()[8 - len..].to_vec()
            };
            b[off..off + len].copy_from_slice(&bytes);
        };
        put(&mut b, 0x20, 64, 8);
        put(&mut b, 0x36, 56, 2);
        put(&mut b, 0x38, types.len() as u64, 2);
        for (i, t) in types.iter().enumerate() {
            put(&mut b, 64 + 56 * i, u64::from(*t), 4);
        }
        b
    }

    #[test]
    fn elf_reader() {
        assert_eq!(elf_is_static(&elf(true, &[6, 1, 1])), Ok(true));
        assert_eq!(elf_is_static(&elf(true, &[6, 3, 1])), Ok(false));
        assert_eq!(elf_is_static(&elf(false, &[1, 3])), Ok(false));
        assert_eq!(elf_is_static(&elf(false, &[1])), Ok(true));
        assert!(elf_is_static(b"#!/bin/sh\n").is_err());
        let mut elf32 = elf(true, &[]);
        elf32[4] = 1;
        assert!(elf_is_static(&elf32).unwrap_err().contains("64-bit"));
        let truncated = &elf(true, &[1, 3])[..80];
        assert!(elf_is_static(truncated).unwrap_err().contains("truncated"));
    }

    #[test]
    fn elf_reader_on_a_dynamic_host_binary() {
        let env = std::fs::read("/usr/bin/env").expect("/usr/bin/env is part of coreutils");
        assert_eq!(elf_is_static(&env), Ok(false));
    }

    #[test]
    fn passwd_keeps_system_accounts_only() {
        let host = "root:$6$hash:0:0:root:/root:/bin/bash\n\
                    daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                    alice:x:1000:1000:Alice:/home/alice:/bin/bash\n\
                    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                    bob:x:70000:70000::/home/bob:/bin/sh\n\
                    +nis\n# comment\n";
        assert_eq!(
            system_passwd(host),
            "root:x:0:0:root:/root:/bin/bash\n\
             daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        );
    }

    #[test]
    fn group_keeps_system_groups_and_members() {
        let host = "root:x:0:\nsudo:x:27:alice,daemon\nadm:x:4:daemon\n\
                    alice:x:1000:\nnogroup:x:65534:\nusers:x:100:alice\n";
        assert_eq!(
            system_group(host, &["root", "daemon", "nobody"]),
            "root:x:0:\nsudo:x:27:daemon\nadm:x:4:daemon\nnogroup:x:65534:\nusers:x:100:\n"
        );
    }

    #[test]
    fn applet_list() {
        let list = "usr/bin/[\nbin/sh\nbin/busybox\nsbin/ip\nlinuxrc\n\n";
        let paths = applet_paths(list).unwrap();
        assert_eq!(
            paths,
            ["usr/bin/[", "bin/sh", "sbin/ip", "linuxrc"].map(PathBuf::from)
        );
        assert!(applet_paths("../etc/passwd\n").is_err());
        assert!(applet_paths("/bin/sh\n").is_err());
    }

    #[test]
    fn host_world_from_a_fake_host() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        for d in [
            "usr/bin",
            "lib64",
            "etc/ssl/private",
            "etc/ssl/certs",
            "etc/alternatives",
        ] {
            std::fs::create_dir_all(host.join(d)).unwrap();
        }
        symlink("usr/bin", host.join("bin")).unwrap();
        symlink("usr/lib", host.join("lib")).unwrap();
        std::fs::write(
            host.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/a:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(host.join("etc/ssl/private/key.pem"), "secret").unwrap();
        std::fs::write(host.join("etc/ssl/certs/ca.pem"), "ca").unwrap();
        symlink("/usr/bin/mawk", host.join("etc/alternatives/awk")).unwrap();
        symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            host.join("etc/resolv.conf"),
        )
        .unwrap();
        std::fs::write(host.join("etc/zoneinfo-utc"), "TZif").unwrap();
        symlink("zoneinfo-utc", host.join("etc/localtime")).unwrap();

        let root = t.path().join("world");
        std::fs::create_dir(&root).unwrap();
        let built = build_host(&host, &root).unwrap();

        let dests: Vec<&str> = built.binds.iter().map(|b| b.dest.as_str()).collect();
        assert_eq!(dests, ["/usr", "/lib64"]);
        assert!(built.binds.iter().all(|b| b.readonly));
        assert_eq!(built.binds[0].source, host.join("usr"));
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert!(root.join("usr").is_dir() && root.join("lib64").is_dir());
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(passwd, "root:x:0:0::/root:/bin/sh\n");
        assert!(!root.join("etc/shadow").exists());
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
            HOSTS
        );
        assert_eq!(std::fs::read(root.join("etc/resolv.conf")).unwrap(), b"");
        assert_eq!(std::fs::read(root.join("etc/localtime")).unwrap(), b"TZif");
        assert!(!root.join("etc/localtime").is_symlink());
        assert_eq!(
            std::fs::read_link(root.join("etc/alternatives/awk")).unwrap(),
            Path::new("/usr/bin/mawk")
        );
        assert!(root.join("etc/ssl/certs/ca.pem").is_file());
        assert!(!root.join("etc/ssl/private").exists());
        use std::os::unix::fs::PermissionsExt;
        let tmp = std::fs::metadata(root.join("var/tmp"))
            .unwrap()
            .permissions();
        assert_eq!(tmp.mode() & 0o7777, 0o1777);
    }

    #[test]
    fn host_world_needs_a_usr_directory() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("world");
        std::fs::create_dir(&root).unwrap();
        let err = build_host(&t.path().join("nohost"), &root).unwrap_err();
        assert!(err.to_string().contains("usr is not a directory"), "{err}");
    }

    #[test]
    fn unknown_world_is_refused_before_anything_runs() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        assert!(matches!(
            create_world(&s, "gentoo", rec.as_ref()),
            Err(StorageError::UnknownWorld(w)) if w == "gentoo"
        ));
        assert!(matches!(
            world_meta(&s, "host"),
            Err(StorageError::NoSuchWorld(w)) if w == "host"
        ));
        assert!(rec.ran().is_empty());
    }

    #[test]
    fn failed_seal_deletes_the_world() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        let w = t.path().join("worlds/busybox");
        rec.expect_ok(&format!("btrfs subvolume create {}", w.display()), "")
            .expect_err(
                &format!("btrfs property set -ts {} ro true", w.display()),
                "Read-only file system",
            )
            .expect_ok(
                &format!("btrfs property set -ts {} ro false", w.display()),
                "",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", w.display()), "");
        let root = s.create_world_dataset("busybox").unwrap();
        let err = build_world(&s, "busybox", root, |root| {
            std::fs::create_dir(root).unwrap(); // what `subvolume create` would have made
            skeleton(root)?;
            Ok(Built {
                binds: Vec::new(),
                default_command: sh(),
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("Read-only file system"), "{err}");
        rec.finish();
        assert!(!s.world_meta_path("busybox").exists());
    }

    #[test]
    fn failed_populate_deletes_the_world_without_sealing() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        let w = t.path().join("worlds/host");
        rec.expect_ok(&format!("btrfs subvolume create {}", w.display()), "")
            .expect_ok(
                &format!("btrfs property set -ts {} ro false", w.display()),
                "",
            )
            .expect_ok(&format!("btrfs subvolume delete {}", w.display()), "");
        let root = s.create_world_dataset("host").unwrap();
        let err = build_world(&s, "host", root, |root| {
            std::fs::create_dir(root).unwrap();
            Err(StorageError::Other("copy failed".into()))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "copy failed");
        rec.finish();
    }

    #[test]
    fn existing_world_is_not_touched() {
        let t = tempfile::tempdir().unwrap();
        let rec = Arc::new(RecordingExecutor::new());
        let s = BtrfsStorage::new(t.path().to_path_buf(), rec.clone());
        std::fs::create_dir_all(s.world_path("host")).unwrap();
        assert!(matches!(
            create_world(&s, "host", rec.as_ref()),
            Err(StorageError::Exists(p)) if p == s.world_path("host")
        ));
        assert!(rec.ran().is_empty());
        assert!(s.world_path("host").exists());
    }
}
