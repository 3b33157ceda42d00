//! FreeBSD release worlds: `freebsd-M-m` (thick, release M.m) and `freebsd-M-m-thin` (world
//! names allow no dots: `freebsd-14-2` is 14.2-RELEASE).
//!
//! A **thick** release world holds a whole FreeBSD base system, unpacked from the release's
//! `base.txz` after the file was checked against the release's `MANIFEST` (SHA-256); on ZFS it
//! is a dataset with the `@base` snapshot that every workload's root filesystem is cloned from,
//! like any world. A **thin** world (as Bastille's thin jails) is built on the thick world of
//! the same release: its dataset holds only the parts a system writes to (`/etc`, `/var`,
//! `/root`, `/usr/local`, `/home`, ...), copied from the thick world, and every read-only part
//! of the base ([`THIN_SHARED`]) is an empty mountpoint plus a read-only bind of the thick
//! world's directory in [`WorldMeta::binds`] — nullfs mounts in a jail, bind mounts in a Linux
//! container. Thin workloads therefore share one copy of the base on disk and in the page
//! cache, and a base upgrade is one new thick world.
//!
//! Where the release comes from ([`DistSource`]), first match wins:
//! 1. `--mirror URL` (http, https or file): a distribution site laid out as the release sites
//!    are, `URL/<arch>/<M.m>-RELEASE/{MANIFEST,base.txz}`;
//! 2. the `WARREN_FREEBSD_DIST` environment variable, the same;
//! 3. `/usr/freebsd-dist`, where bsdinstall keeps the distribution sets of the installed
//!    release (`MANIFEST`, `base.txz` directly in it).
//!
//! No site is built in. Downloads use the system's fetcher through the executor (`fetch` on
//! FreeBSD, `curl` elsewhere) into the state directory's scratch space; nothing is unpacked
//! before the digest matched, and any failure deletes the half-built world.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use warren_exec::{Cmd, Executor};

use crate::fsutil::{copy_tree, io_err, mkdir_mode};
use crate::{worlds, Result, Storage, StorageError, WorldBind, WorldMeta};

/// Directories of a thin world shared read-only from its thick world (when the release has
/// them).
pub const THIN_SHARED: &[&str] = &[
    "bin",
    "boot",
    "lib",
    "libexec",
    "rescue",
    "sbin",
    "usr/bin",
    "usr/include",
    "usr/lib",
    "usr/lib32",
    "usr/libdata",
    "usr/libexec",
    "usr/sbin",
    "usr/share",
    "usr/src",
];

/// The environment variable naming a distribution site.
pub const DIST_ENV: &str = "WARREN_FREEBSD_DIST";
/// Where bsdinstall keeps the installed release's distribution sets.
pub const LOCAL_DIST: &str = "/usr/freebsd-dist";

/// A release world name, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseWorld {
    /// `14.2`
    pub version: String,
    pub thin: bool,
}

impl ReleaseWorld {
    /// `14.2-RELEASE`, the release's directory on a distribution site.
    pub fn release(&self) -> String {
        format!("{}-RELEASE", self.version)
    }
    /// The thick world a thin one is built on (itself for a thick one).
    pub fn base_world(&self) -> String {
        format!("freebsd-{}", self.version.replace('.', "-"))
    }
}

/// Parses `freebsd-M-m` and `freebsd-M-m-thin`; None for any other name. `M` is 1 to 3
/// digits, `m` 1 or 2.
pub fn release_of(name: &str) -> Option<ReleaseWorld> {
    let rest = name.strip_prefix("freebsd-")?;
    let (version, thin) = match rest.strip_suffix("-thin") {
        Some(v) => (v, true),
        None => (rest, false),
    };
    let (major, minor) = version.split_once('-')?;
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    (digits(major, 3) && digits(minor, 2)).then(|| ReleaseWorld {
        version: format!("{major}.{minor}"),
        thin,
    })
}

/// One line of a release `MANIFEST`: `name sha256 count dist "description" default`,
/// tab-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub file: String,
    pub sha256: String,
    /// Entries in the archive.
    pub entries: u64,
    pub dist: String,
    pub description: String,
    /// Selected by default in bsdinstall.
    pub default: bool,
}

/// Parses a release `MANIFEST`; errors name the line.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad =
            |what: &str| StorageError::Other(format!("MANIFEST line {}: {what}: {line:?}", i + 1));
        let f: Vec<&str> = line.split('\t').collect();
        let [file, sha, count, dist, desc, default] = f.as_slice() else {
            return Err(bad("expected 6 tab-separated fields"));
        };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the digest is not 64 hex digits"));
        }
        let entries = count
            .parse()
            .map_err(|_| bad("the entry count is not a number"))?;
        let default = match *default {
            "on" => true,
            "off" => false,
            _ => return Err(bad("the default is neither on nor off")),
        };
        if file.is_empty() || file.contains('/') {
            return Err(bad("the file name is empty or has a '/'"));
        }
        out.push(ManifestEntry {
            file: file.to_string(),
            sha256: sha.to_ascii_lowercase(),
            entries,
            dist: dist.to_string(),
            description: desc.trim_matches('"').to_string(),
            default,
        });
    }
    Ok(out)
}

/// Where distribution files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DistSource {
    /// A directory holding `MANIFEST` and `base.txz` (a `file:` site's release directory, or
    /// `/usr/freebsd-dist`).
    Dir(PathBuf),
    /// An http(s) URL of the release's directory, ending in `/`.
    Url(String),
}

/// The machine name distribution sites use for this host.
pub fn dist_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64/aarch64",
        "x86" => "i386",
        "powerpc64" => "powerpc/powerpc64",
        "riscv64" => "riscv/riscv64",
        other => other,
    }
}

/// The source of `release` from `--mirror` (`mirror`), else the environment (`env`), else
/// `local` when it holds a MANIFEST.
pub fn dist_source(
    release: &ReleaseWorld,
    mirror: Option<&str>,
    env: Option<&str>,
    local: &Path,
) -> Result<DistSource> {
    let site = mirror.or(env.filter(|e| !e.is_empty()));
    if let Some(site) = site {
        let base = format!(
            "{}/{}/{}/",
            site.trim_end_matches('/'),
            dist_arch(),
            release.release()
        );
        return if let Some(path) = base.strip_prefix("file://") {
            Ok(DistSource::Dir(PathBuf::from(path)))
        } else if let Some(path) = base.strip_prefix("file:") {
            Ok(DistSource::Dir(PathBuf::from(path)))
        } else if base.starts_with("http://") || base.starts_with("https://") {
            Ok(DistSource::Url(base))
        } else {
            Err(StorageError::Other(format!(
                "distribution site {site:?} must be an http://, https:// or file: URL"
            )))
        };
    }
    if local.join("MANIFEST").is_file() {
        return Ok(DistSource::Dir(local.to_path_buf()));
    }
    Err(StorageError::Other(format!(
        "no FreeBSD distribution site: give one with --mirror URL (laid out as URL/{}/{}/base.txz) \
         or {DIST_ENV}, or keep the release's distribution sets in {}",
        dist_arch(),
        release.release(),
        local.display()
    )))
}

/// The command that downloads `url` to `dest`: `fetch` on FreeBSD, `curl` elsewhere.
pub fn download_cmd(url: &str, dest: &Path) -> Cmd {
    if cfg!(target_os = "freebsd") {
        Cmd::new("fetch").args(["-q", "-o"]).arg(dest).arg(url)
    } else {
        Cmd::new("curl")
            .args(["-fsSL", "--proto", "=http,https", "-o"])
            .arg(dest)
            .arg(url)
    }
}

/// The SHA-256 of a file, in hex.
pub fn file_sha256(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Makes `base.txz` of `source` available as a local file whose digest matched the release's
/// MANIFEST (downloaded into `scratch` from a URL); returns its path.
pub fn fetch_verified(
    source: &DistSource,
    scratch: &Path,
    exec: &dyn Executor,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let (manifest, base) = match source {
        DistSource::Dir(dir) => {
            let m = dir.join("MANIFEST");
            let text = std::fs::read_to_string(&m).map_err(io_err(&m))?;
            (text, dir.join("base.txz"))
        }
        DistSource::Url(url) => {
            mkdir_mode(scratch, 0o700)?;
            let m = scratch.join("MANIFEST");
            progress(&format!("fetching {url}MANIFEST"));
            exec.run(&download_cmd(&format!("{url}MANIFEST"), &m))?;
            let text = std::fs::read_to_string(&m).map_err(io_err(&m))?;
            let b = scratch.join("base.txz");
            progress(&format!("fetching {url}base.txz"));
            exec.run(&download_cmd(&format!("{url}base.txz"), &b))?;
            (text, b)
        }
    };
    let entries = parse_manifest(&manifest)?;
    let want = entries
        .iter()
        .find(|e| e.file == "base.txz")
        .ok_or_else(|| StorageError::Other("the release MANIFEST lists no base.txz".into()))?;
    progress("checking base.txz against the MANIFEST");
    let got = file_sha256(&base)?;
    if got != want.sha256 {
        return Err(StorageError::Other(format!(
            "base.txz does not match the release MANIFEST (sha256 {got}, expected {}): nothing was unpacked",
            want.sha256
        )));
    }
    Ok(base)
}

/// Builds thick release world `name` from `base` (a checked `base.txz`): `unpack(archive,
/// root)` unpacks it safely into the new dataset.
pub fn create_thick(
    storage: &dyn Storage,
    name: &str,
    base: &Path,
    unpack: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<WorldMeta> {
    worlds::derive_world(storage, name, None, vec!["/bin/sh".into()], |root| {
        unpack(base, root)?;
        // The release has no resolver configuration; the network setup writes one later.
        Ok(())
    })
}

/// Builds thin world `name` on the sealed thick world `base_world` (see the module docs).
pub fn create_thin(storage: &dyn Storage, name: &str, base_world: &str) -> Result<WorldMeta> {
    let base_root = storage.world_path(base_world);
    let base_meta = worlds::world_meta(storage, base_world)?;
    let shared: Vec<&str> = THIN_SHARED
        .iter()
        .copied()
        .filter(|d| base_root.join(d).is_dir())
        .collect();
    let meta = worlds::derive_world(
        storage,
        name,
        None,
        base_meta.default_command.clone(),
        |root| {
            for entry in std::fs::read_dir(&base_root).map_err(io_err(&base_root))? {
                let name = entry.map_err(io_err(&base_root))?.file_name();
                let top = Path::new(&name);
                if shared.iter().any(|d| top == Path::new(d)) {
                    continue;
                }
                copy_tree(&base_root.join(&name), &root.join(&name), &|rel: &Path| {
                    shared.iter().any(|d| top.join(rel) == Path::new(d))
                })?;
            }
            for d in &shared {
                let mode = std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata(base_root.join(d))
                        .map_err(io_err(&base_root.join(d)))?
                        .permissions(),
                );
                std::fs::create_dir_all(root.join(d)).map_err(io_err(&root.join(d)))?;
                std::fs::set_permissions(
                    root.join(d),
                    std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
                )
                .map_err(io_err(&root.join(d)))?;
            }
            Ok(())
        },
    )?;
    // The binds go into the metadata after the build (derive_world writes none for a world
    // without a parent).
    let mut meta = meta;
    meta.binds = thin_binds(&base_root, &shared);
    let path = storage.world_meta_path(name);
    let json = serde_json::to_vec_pretty(&meta).expect("meta serializes");
    std::fs::write(&path, json).map_err(io_err(&path))?;
    Ok(meta)
}

/// The read-only binds of a thin world: each shared directory of the thick world at
/// `base_root` onto the same path.
pub fn thin_binds(base_root: &Path, shared: &[&str]) -> Vec<WorldBind> {
    shared
        .iter()
        .map(|d| WorldBind {
            source: base_root.join(d),
            dest: format!("/{d}"),
            readonly: true,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_names() {
        assert_eq!(
            release_of("freebsd-14-2"),
            Some(ReleaseWorld {
                version: "14.2".into(),
                thin: false
            })
        );
        let thin = release_of("freebsd-15-0-thin").unwrap();
        assert!(thin.thin);
        assert_eq!(thin.release(), "15.0-RELEASE");
        assert_eq!(thin.base_world(), "freebsd-15-0");
        for bad in [
            "freebsd",
            "freebsd-",
            "freebsd-14",
            "freebsd-14-",
            "freebsd--2",
            "freebsd-14-2-1",
            "freebsd-14-x",
            "freebsd-14.2",
            "freebsd-14-2-thick",
            "freebsd-1400-2",
            "freebsd-14-200",
            "debian-14-2",
        ] {
            assert_eq!(release_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn manifest_golden() {
        let text = include_str!("../tests/golden/freebsd/MANIFEST");
        let m = parse_manifest(text).unwrap();
        assert_eq!(m.len(), 10);
        let base = m.iter().find(|e| e.file == "base.txz").unwrap();
        assert_eq!(base.dist, "base");
        assert_eq!(base.description, "Base system (MANDATORY)");
        assert!(base.default);
        assert_eq!(base.sha256.len(), 64);
        assert!(base.entries > 10_000);
        let src = m.iter().find(|e| e.file == "src.txz").unwrap();
        assert!(!src.default);
    }

    #[test]
    fn malformed_manifests_name_the_line() {
        let good = format!(
            "base.txz\t{}\t5\tbase\t\"Base system (MANDATORY)\"\ton",
            "a".repeat(64)
        );
        assert_eq!(parse_manifest(&good).unwrap().len(), 1);
        for (text, want) in [
            ("base.txz\tabc\t5\tbase\t\"x\"\ton".to_string(), "64 hex"),
            (good.replace("\t5\t", "\tfive\t"), "entry count"),
            (good.replace("\ton", "\tmaybe"), "neither on nor off"),
            (good.replace('\t', " "), "6 tab-separated"),
            (good.replace("base.txz", "../base.txz"), "has a '/'"),
            (format!("\n\n{}", good.replace("\ton", "")), "line 3"),
        ] {
            let err = parse_manifest(&text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn sources_in_order() {
        let r = release_of("freebsd-14-2").unwrap();
        let none = Path::new("/nonexistent-dist");
        let arch = dist_arch();
        assert_eq!(
            dist_source(
                &r,
                Some("https://mirror.example/releases/"),
                Some("file:///x"),
                none
            )
            .unwrap(),
            DistSource::Url(format!(
                "https://mirror.example/releases/{arch}/14.2-RELEASE/"
            ))
        );
        assert_eq!(
            dist_source(&r, None, Some("file:///srv/dist"), none).unwrap(),
            DistSource::Dir(PathBuf::from(format!("/srv/dist/{arch}/14.2-RELEASE/")))
        );
        let err = dist_source(&r, Some("ftp://x"), None, none).unwrap_err();
        assert!(
            err.to_string().contains("http://, https:// or file:"),
            "{err}"
        );
        let err = dist_source(&r, None, Some(""), none).unwrap_err();
        assert!(err.to_string().contains("--mirror URL"), "{err}");
        let local = tempfile::tempdir().unwrap();
        std::fs::write(local.path().join("MANIFEST"), "").unwrap();
        assert_eq!(
            dist_source(&r, None, None, local.path()).unwrap(),
            DistSource::Dir(local.path().to_path_buf())
        );
    }

    #[test]
    fn downloads_go_through_the_executor_and_are_checked() {
        let scratch = tempfile::tempdir().unwrap();
        let url = "https://mirror.example/amd64/14.2-RELEASE/";
        let src = DistSource::Url(url.into());
        let manifest = scratch.path().join("MANIFEST");
        let want = download_cmd(&format!("{url}MANIFEST"), &manifest).argv_string();
        // The recording executor downloads nothing: the MANIFEST cannot be read.
        let rec = warren_exec::RecordingExecutor::new();
        rec.expect_ok(&want, "");
        let err = fetch_verified(&src, scratch.path(), &rec, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("MANIFEST"), "{err}");
        rec.finish();
        if !cfg!(target_os = "freebsd") {
            assert!(
                want.starts_with("curl -fsSL --proto =http,https -o "),
                "{want}"
            );
        }
        // A failed download is the error, and nothing more is fetched.
        let rec = warren_exec::RecordingExecutor::new();
        rec.expect_err(&want, "curl: (22) The requested URL returned error: 404");
        let err = fetch_verified(&src, scratch.path(), &rec, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        rec.finish();
    }

    #[test]
    fn a_base_that_does_not_match_its_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.txz"), b"not the real thing").unwrap();
        let good = file_sha256(&dir.path().join("base.txz")).unwrap();
        let line = |sha: &str| format!("base.txz\t{sha}\t1\tbase\t\"Base system\"\ton\n");
        std::fs::write(dir.path().join("MANIFEST"), line(&good)).unwrap();
        let src = DistSource::Dir(dir.path().to_path_buf());
        let rec = warren_exec::RecordingExecutor::new();
        let got = fetch_verified(&src, dir.path(), &rec, &mut |_| {}).unwrap();
        assert_eq!(got, dir.path().join("base.txz"));
        std::fs::write(dir.path().join("MANIFEST"), line(&"0".repeat(64))).unwrap();
        let err = fetch_verified(&src, dir.path(), &rec, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        std::fs::write(dir.path().join("MANIFEST"), "").unwrap();
        let err = fetch_verified(&src, dir.path(), &rec, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("no base.txz"), "{err}");
        assert!(rec.ran().is_empty(), "a local site runs nothing");
    }

    #[test]
    fn thin_binds_share_the_base_read_only() {
        let b = thin_binds(Path::new("/pool/worlds/freebsd-14-2"), &["bin", "usr/lib"]);
        assert_eq!(
            b,
            vec![
                WorldBind {
                    source: "/pool/worlds/freebsd-14-2/bin".into(),
                    dest: "/bin".into(),
                    readonly: true
                },
                WorldBind {
                    source: "/pool/worlds/freebsd-14-2/usr/lib".into(),
                    dest: "/usr/lib".into(),
                    readonly: true
                },
            ]
        );
    }
}
