//! Tier-2 tests of worlds: a Debian world built with debootstrap from the host's apt mirror
//! runs a workload; a world exported here imports byte for byte (and runs); hostile tarballs
//! are refused with nothing left; removal is refused while a workload names the world.
//!
//! Needs root, runc, btrfs-progs, busybox-static and debootstrap, and the network path to the
//! Debian mirror the host's apt uses (scripts/install-deps installs the packages).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn fails(d: &Daemon, args: &[&str]) -> String {
    let out = d.cli(args);
    assert!(!out.status.success(), "warren {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Every entry under `root`: kind, mode, owner, size and contents (or link target).
fn tree(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, String>) {
        let p = root.join(rel);
        let m = p.symlink_metadata().unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            let mut names: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
            "dir".to_string()
        } else {
            let bytes = std::fs::read(&p).unwrap();
            format!("file {} {:x}", bytes.len(), {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            })
        };
        out.insert(
            rel.display().to_string(),
            format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
        );
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

#[test]
fn debian_world_builds_from_the_host_mirror_and_runs() {
    assert!(
        warren_exec_has("debootstrap"),
        "debootstrap is not installed (apt-get install debootstrap; scripts/install-deps installs it)"
    );
    let d = Daemon::start(&[]);
    // Not built yet: apply says how to build it, and nothing is stored.
    let spec = d.state_dir().join("deb.toml");
    std::fs::write(
        &spec,
        "[workload.deb]\nworld = \"debian\"\nnetwork = \"none\"\n\
         command = [\"sh\", \"-c\", \"cat /etc/debian_version > /data/out; dpkg-query -W -f '${Status}' coreutils >> /data/out; exec sleep 100000\"]\n",
    )
    .unwrap();
    let err = fails(&d, &["apply", "-f", spec.to_str().unwrap()]);
    assert!(err.contains("warren world create debian"), "{err}");

    let out = d.cli(&["world", "create", "debian"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "world create debian failed: {stderr}\n{}",
        d.log()
    );
    assert!(
        stderr.contains("debootstrap "),
        "no progress shown: {stderr}"
    );
    assert!(
        stderr.contains("I: Base system installed successfully"),
        "{stderr}"
    );
    let root = d.pool_root().join("worlds/debian");
    assert!(root.join("usr/bin/apt-get").exists());
    assert!(
        std::fs::read_dir(root.join("var/cache/apt/archives"))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".deb")),
        "downloaded packages were left in the world"
    );
    d.ok(&["apply", "-f", spec.to_str().unwrap()]);
    d.wait_running("deb");
    let out = d.pool_root().join("workloads/deb/data/out");
    wait_until(30, "deb wrote /data/out", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.contains("installed"))
    });
    let text = std::fs::read_to_string(&out).unwrap();
    // The same release as the host (the point release may be newer).
    let host = std::fs::read_to_string("/etc/debian_version").unwrap_or_default();
    let want = format!("{}.", host.split('.').next().unwrap_or("").trim());
    assert!(
        text.starts_with(&want),
        "world's debian_version {text:?}, host's {want:?}"
    );
    assert!(text.ends_with("install ok installed"), "{text}");
    // In use: refused.
    let err = fails(&d, &["world", "rm", "debian"]);
    assert!(err.contains("used by deb"), "{err}");
}

fn warren_exec_has(tool: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).exists())
}

#[test]
fn worlds_export_and_import_byte_for_byte_and_refuse_hostile_tarballs() {
    let d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bb.tar.zst");
    d.ok(&["world", "export", "busybox", "-o", file.to_str().unwrap()]);
    assert!(!tmp.path().join("bb.tar.zst.part").exists());
    let out = d.ok(&["world", "import", "bb2", file.to_str().unwrap()]);
    assert!(out.contains("world bb2 imported"), "{out}");
    let worlds = d.pool_root().join("worlds");
    assert_eq!(tree(&worlds.join("bb2")), tree(&worlds.join("busybox")));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(worlds.join("bb2.json")).unwrap()).unwrap();
    assert_eq!(meta["default_command"], serde_json::json!(["/bin/sh"]));
    // With another default command; and the imported world runs.
    d.ok(&[
        "world",
        "import",
        "bb3",
        file.to_str().unwrap(),
        "--command",
        "/bin/sh",
        "-c",
        "echo from-bb3 > /data/out; exec sleep 100000",
    ]);
    d.apply(
        "w.toml",
        "[workload.imp]\nworld = \"bb3\"\nnetwork = \"none\"\n",
    );
    d.wait_running("imp");
    let out = d.pool_root().join("workloads/imp/data/out");
    wait_until(20, "imp wrote /data/out", || out.exists());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "from-bb3\n");

    // Removal: refused while used, for layers, for unknown names; fine otherwise.
    let err = fails(&d, &["world", "rm", "bb3"]);
    assert!(err.contains("used by imp"), "{err}");
    let err = fails(&d, &["world", "rm", "nope"]);
    assert!(err.contains("no world named"), "{err}");
    let err = fails(&d, &["world", "rm", "oci-0123"]);
    assert!(err.contains("image layer"), "{err}");
    d.ok(&["world", "rm", "bb2"]);
    assert!(!worlds.join("bb2").exists() && !worlds.join("bb2.json").exists());
    // Existing names and names warren reserves are refused.
    let err = fails(&d, &["world", "import", "bb3", file.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&d, &["world", "import", "oci-x", file.to_str().unwrap()]);
    assert!(err.contains("image layers"), "{err}");
    let err = fails(&d, &["world", "import", "Bad_Name", file.to_str().unwrap()]);
    assert!(err.contains("invalid world name"), "{err}");
    // The host world is a view of this host: not exportable.
    d.ok(&["world", "create", "host"]);
    let err = fails(&d, &["world", "export", "host", "-o", "/dev/null"]);
    assert!(err.contains("binds host directories"), "{err}");
    let err = fails(&d, &["world", "create", "plan9"]);
    assert!(err.contains("not one warren can build"), "{err}");

    // Hostile tarballs: nothing is written outside, no world is left.
    for (name, entry, link) in [
        ("dotdot", "../../../tmp/warren-escape", None),
        ("abs", "/tmp/warren-escape-abs", None),
        ("dev", "dev/sda", Some(tar::EntryType::Block)),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..entry.len()].copy_from_slice(entry.as_bytes());
        h.set_entry_type(link.unwrap_or(tar::EntryType::Regular));
        h.set_size(if link.is_some() { 0 } else { 3 });
        h.set_mode(0o644);
        h.set_cksum();
        b.append(
            &h,
            if link.is_some() {
                &b""[..]
            } else {
                &b"bad"[..]
            },
        )
        .unwrap();
        let path = tmp.path().join(format!("{name}.tar"));
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let world = format!("evil-{name}");
        let err = fails(&d, &["world", "import", &world, path.to_str().unwrap()]);
        assert!(err.contains("world import refused"), "{name}: {err}");
        assert!(!worlds.join(&world).exists(), "{name} left a world");
        assert!(!worlds.join(format!("{world}.json")).exists());
    }
    assert!(!Path::new("/tmp/warren-escape").exists());
    assert!(!Path::new("/tmp/warren-escape-abs").exists());
    // A truncated export is refused too.
    let bytes = std::fs::read(&file).unwrap();
    let cut = tmp.path().join("cut.tar.zst");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&d, &["world", "import", "cut", cut.to_str().unwrap()]);
    assert!(err.contains("world import refused"), "{err}");
    assert!(!worlds.join("cut").exists());
    // An archive with no entries (10 KB of zero bytes is a valid empty tar) makes no world.
    let empty = tmp.path().join("empty.tar");
    std::fs::write(&empty, vec![0u8; 10 * 1024]).unwrap();
    let err = fails(&d, &["world", "import", "hollow", empty.to_str().unwrap()]);
    assert!(
        err.contains("world import refused") && err.contains("holds no files"),
        "{err}"
    );
    assert!(!worlds.join("hollow").exists() && !worlds.join("hollow.json").exists());
    let list = d.ok(&["world", "list"]);
    assert!(
        !list.contains("evil") && !list.contains("cut") && !list.contains("hollow"),
        "{list}"
    );
}

/// A FreeBSD-style distribution site under `dist` holding `release` (`14.2-RELEASE`) with a
/// `base.txz` made by `make_tree(root)` and a MANIFEST naming `digest` (None: the real one).
fn release_site(dist: &Path, release: &str, make_tree: &dyn Fn(&Path), digest: Option<&str>) {
    let dir = release_dir(dist, release);
    std::fs::create_dir_all(&dir).unwrap();
    let tree = dist.join(format!("tree-{release}"));
    std::fs::create_dir_all(&tree).unwrap();
    make_tree(&tree);
    let base = dir.join("base.txz");
    let out = std::process::Command::new("tar")
        .args(["-cJf"])
        .arg(&base)
        .args(["--owner=0", "--group=0", "-C"])
        .arg(&tree)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let real = std::process::Command::new("sha256sum")
        .arg(&base)
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap();
    let sha = digest.unwrap_or_else(|| real.split_whitespace().next().unwrap());
    std::fs::write(
        dir.join("MANIFEST"),
        format!("base.txz\t{sha}\t10\tbase\t\"Base system (MANDATORY)\"\ton\nsrc.txz\t{}\t1\tsrc\t\"System source tree\"\toff\n", "0".repeat(64)),
    )
    .unwrap();
}

/// Where a distribution site keeps `release` for this host's architecture.
fn release_dir(dist: &Path, release: &str) -> std::path::PathBuf {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64/aarch64",
        other => other,
    };
    dist.join(arch).join(release)
}

/// A miniature base system: a static shell in /bin and /rescue, libraries and configuration.
fn mini_base(root: &Path) {
    for d in [
        "bin",
        "rescue",
        "sbin",
        "lib",
        "etc",
        "var/log",
        "usr/bin",
        "usr/lib",
        "usr/share/misc",
        "usr/local/etc",
        "root",
        "tmp",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (scripts/install-deps installs it)");
    std::fs::copy(busybox, root.join("bin/sh")).unwrap();
    std::fs::copy(busybox, root.join("rescue/sh")).unwrap();
    for applet in ["echo", "cat", "sleep", "touch", "ls"] {
        std::os::unix::fs::symlink("sh", root.join("bin").join(applet)).unwrap();
    }
    std::fs::write(root.join("etc/rc.conf"), "hostname=\"base\"\n").unwrap();
    std::fs::write(root.join("usr/share/misc/termcap"), "shared data\n").unwrap();
    std::fs::write(root.join("usr/local/etc/local.conf"), "mine\n").unwrap();
}

#[test]
fn freebsd_release_worlds_thick_and_thin_from_a_checked_base() {
    let d = Daemon::start(&[]);
    let dist = d.state_dir().join("dist");
    release_site(&dist, "14.2-RELEASE", &mini_base, None);
    let site = format!("file://{}", dist.display());

    // No site: a clear error saying how to give one, and nothing created.
    let err = fails(&d, &["world", "create", "freebsd-14-1"]);
    assert!(err.contains("--mirror URL"), "{err}");

    // Thick: the whole base in the world.
    d.ok(&["world", "create", "freebsd-14-2", "--mirror", &site]);
    let pool = d.pool_root();
    let thick = pool.join("worlds/freebsd-14-2");
    assert_eq!(
        std::fs::read_to_string(thick.join("etc/rc.conf")).unwrap(),
        "hostname=\"base\"\n"
    );
    assert!(thick.join("bin/sh").is_file());

    // Thin: its own writable parts, the read-only base shared by binds.
    d.ok(&["world", "create", "freebsd-14-2-thin"]);
    let thin = pool.join("worlds/freebsd-14-2-thin");
    assert_eq!(
        std::fs::read_to_string(thin.join("usr/local/etc/local.conf")).unwrap(),
        "mine\n"
    );
    assert!(thin.join("etc/rc.conf").is_file());
    for shared in ["bin", "rescue", "usr/bin", "usr/share"] {
        let entries = std::fs::read_dir(thin.join(shared)).unwrap().count();
        assert_eq!(entries, 0, "{shared} is a mountpoint, not a copy");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pool.join("worlds/freebsd-14-2-thin.json")).unwrap())
            .unwrap();
    let binds: Vec<String> = meta["binds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{}={} ro={}",
                b["dest"].as_str().unwrap(),
                b["source"].as_str().unwrap(),
                b["readonly"]
            )
        })
        .collect();
    assert!(
        binds.contains(&format!("/bin={} ro=true", thick.join("bin").display())),
        "{binds:?}"
    );
    assert!(
        !binds
            .iter()
            .any(|b| b.starts_with("/etc=") || b.starts_with("/usr/local=")),
        "{binds:?}"
    );

    // A workload of the thin world runs the shared shell and cannot change the shared base.
    d.apply(
        "w.toml",
        "[workload.thin]\nworld = \"freebsd-14-2-thin\"\nnetwork = \"none\"\ncommand = [\"/bin/sh\", \"-c\", \"cat /usr/share/misc/termcap > /data/seen; touch /usr/share/misc/x 2>/dev/null || echo ro >> /data/seen; exec sleep 100000\"]\n",
    );
    d.wait_running("thin");
    wait_until(20, "the thin workload's output", || {
        std::fs::read_to_string(pool.join("workloads/thin/data/seen"))
            .is_ok_and(|s| s.contains("ro"))
    });
    assert_eq!(
        std::fs::read_to_string(pool.join("workloads/thin/data/seen")).unwrap(),
        "shared data\nro\n"
    );
    assert!(!thick.join("usr/share/misc/x").exists());

    // A base.txz that does not match its MANIFEST creates nothing.
    release_site(&dist, "13.9-RELEASE", &mini_base, Some(&"ab".repeat(32)));
    let err = fails(&d, &["world", "create", "freebsd-13-9", "--mirror", &site]);
    assert!(err.contains("does not match the release MANIFEST"), "{err}");
    assert!(!pool.join("worlds/freebsd-13-9").exists());
    assert!(!pool.join("worlds/freebsd-13-9.json").exists());

    // A hostile base (an entry climbing out) is refused with nothing written outside.
    let outside = d.state_dir().join("escaped");
    release_site(&dist, "13.8-RELEASE", &mini_base, None);
    let rel_dir = release_dir(&dist, "13.8-RELEASE");
    let base = rel_dir.join("base.txz");
    let script = format!(
        "import io, tarfile\n\
         t = tarfile.open({base:?}, 'w:xz')\n\
         for name, data in [('./etc/rc.conf', b'x'), ('../../../../../../../../{esc}', b'out')]:\n\
         \x20   i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n\
         t.close()\n",
        base = base.display().to_string(),
        esc = outside.display().to_string().trim_start_matches('/'),
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sha = std::process::Command::new("sha256sum")
        .arg(&base)
        .output()
        .unwrap();
    let sha = String::from_utf8(sha.stdout).unwrap();
    std::fs::write(
        rel_dir.join("MANIFEST"),
        format!(
            "base.txz\t{}\t2\tbase\t\"Base system (MANDATORY)\"\ton\n",
            sha.split_whitespace().next().unwrap()
        ),
    )
    .unwrap();
    let err = fails(
        &d,
        &["world", "create", "freebsd-13-8-thin", "--mirror", &site],
    );
    assert!(err.contains("freebsd-13-8"), "{err}");
    let listed = d.ok(&["world", "list"]);
    assert!(!listed.contains("freebsd-13-8"), "{listed}");
    assert!(!pool.join("worlds/freebsd-13-8").exists());
    assert!(!outside.exists());
    // Scratch space is cleaned after every attempt.
    assert_eq!(
        std::fs::read_dir(d.state_dir().join("tmp"))
            .map(|r| r.count())
            .unwrap_or(0),
        0
    );
}
