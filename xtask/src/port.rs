//! `cargo xtask port`: the FreeBSD port's vendored crates, from `Cargo.lock`.
//!
//! The ports framework builds a Rust port offline from the crates it lists in `CARGO_CRATES`
//! (`USES=cargo` fetches each as `rust/crates/NAME-VERSION.crate` and checks it against
//! `distinfo`). Its own `make cargo-crates` target writes that list from `Cargo.lock` on a
//! FreeBSD host; this task writes the same text without one, into
//! `packaging/freebsd/port/Makefile.crates` (which the port's Makefile includes), and the
//! matching `distinfo`: each crate's SHA256 is the checksum `Cargo.lock` records, its SIZE
//! that of the `.crate` file in the local cargo registry cache (`cargo fetch` fills it; the
//! file's own SHA256 is checked against the lock first). Only crates from a registry are
//! vendored: workspace members have no source, and a git source is refused (the port would
//! need a GH_TUPLE for it). The release tarball's own distinfo lines are added by
//! `make makesum` when a release is published.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Where the port lives, relative to the workspace root.
pub const PORT_DIR: &str = "packaging/freebsd/port";

/// One locked crate that comes from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub name: String,
    pub version: String,
    /// The SHA256 of the `.crate` file, as `Cargo.lock` records it.
    pub checksum: String,
}

impl Locked {
    /// `NAME-VERSION`, the word `CARGO_CRATES` lists.
    pub fn id(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// The distfile's name as the ports framework stores it.
    pub fn distfile(&self) -> String {
        format!("rust/crates/{}.crate", self.id())
    }
}

/// The registry crates of a `Cargo.lock` (format 3 or 4), in the lock's order (by name).
pub fn parse_lock(text: &str) -> Result<Vec<Locked>> {
    #[derive(Default)]
    struct Pkg {
        name: Option<String>,
        version: Option<String>,
        source: Option<String>,
        checksum: Option<String>,
        line: usize,
    }
    let mut pkgs: Vec<Pkg> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line == "[[package]]" {
            pkgs.push(Pkg {
                line: i + 1,
                ..Pkg::default()
            });
            continue;
        }
        if line.starts_with('[') {
            // [metadata] of old lock files, or anything else that is no package.
            pkgs.push(Pkg::default());
            continue;
        }
        let Some(pkg) = pkgs.last_mut() else { continue };
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let value = || value.trim_matches('"').to_string();
        match key {
            "name" => pkg.name = Some(value()),
            "version" => pkg.version = Some(value()),
            "source" => pkg.source = Some(value()),
            "checksum" => pkg.checksum = Some(value()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for p in pkgs {
        let (Some(name), Some(version)) = (p.name, p.version) else {
            continue;
        };
        match p.source.as_deref() {
            None => continue, // a workspace member
            Some(s) if s.starts_with("registry+") || s.starts_with("sparse+") => {}
            Some(s) => bail!(
                "Cargo.lock:{}: {name} {version} comes from {s}: the port vendors registry \
                 crates only",
                p.line
            ),
        }
        let Some(checksum) = p.checksum else {
            bail!("Cargo.lock:{}: {name} {version} has no checksum", p.line);
        };
        if checksum.len() != 64 || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "Cargo.lock:{}: {name} {version}: bad checksum {checksum:?}",
                p.line
            );
        }
        out.push(Locked {
            name,
            version,
            checksum,
        });
    }
    Ok(out)
}

/// `Makefile.crates`: the `CARGO_CRATES` assignment as `make cargo-crates` prints it.
pub fn makefile_crates(crates: &[Locked]) -> String {
    let mut s = String::from("# Generated from Cargo.lock by `cargo xtask port`; do not edit.\n");
    for (i, c) in crates.iter().enumerate() {
        let start = if i == 0 { "CARGO_CRATES=\t" } else { "\t\t" };
        let end = if i + 1 == crates.len() { "\n" } else { " \\\n" };
        s.push_str(start);
        s.push_str(&c.id());
        s.push_str(end);
    }
    s
}

/// `distinfo`: a SHA256 and a SIZE line per crate, in the list's order. `size` gives a crate's
/// size in bytes.
pub fn distinfo(crates: &[Locked], size: impl Fn(&Locked) -> Result<u64>) -> Result<String> {
    let mut s = String::new();
    for c in crates {
        let f = c.distfile();
        s.push_str(&format!("SHA256 ({f}) = {}\n", c.checksum));
        s.push_str(&format!("SIZE ({f}) = {}\n", size(c)?));
    }
    Ok(s)
}

/// The local registry caches, `$CARGO_HOME/registry/cache/*/` (one per registry index).
fn registry_caches() -> Result<Vec<PathBuf>> {
    let home = match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cargo"),
    };
    let cache = home.join("registry/cache");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .with_context(|| format!("reading {} (run `cargo fetch` first)", cache.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

/// The size of a crate's `.crate` file in one of `caches`, after checking its SHA256.
fn cached_size(caches: &[PathBuf], c: &Locked) -> Result<u64> {
    let name = format!("{}.crate", c.id());
    let Some(path) = caches.iter().map(|d| d.join(&name)).find(|p| p.is_file()) else {
        bail!("{name} is not in the local registry cache (run `cargo fetch`)");
    };
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if digest != c.checksum {
        bail!(
            "{} has SHA256 {digest}, Cargo.lock says {}",
            path.display(),
            c.checksum
        );
    }
    Ok(bytes.len() as u64)
}

/// Writes `Makefile.crates` and `distinfo` of the port from the workspace's `Cargo.lock`.
pub fn port(root: &Path) -> Result<()> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let crates = parse_lock(&lock)?;
    let caches = registry_caches()?;
    let info = distinfo(&crates, |c| cached_size(&caches, c))?;
    let dir = root.join(PORT_DIR);
    std::fs::write(dir.join("Makefile.crates"), makefile_crates(&crates))?;
    std::fs::write(dir.join("distinfo"), info)?;
    eprintln!(
        "wrote {PORT_DIR}/Makefile.crates and {PORT_DIR}/distinfo ({} crates)",
        crates.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 4

[[package]]
name = "adler2"
version = "2.0.1"
source = "registry+https://example.invalid/index"
checksum = "320119579fcad9c21884f5c4861d16174d0e06250625266f50fe6898340abefa"

[[package]]
name = "warren"
version = "0.1.0"
dependencies = [
 "adler2",
 "zstd-sys",
]

[[package]]
name = "zstd-sys"
version = "2.0.16+zstd.1.5.7"
source = "registry+https://example.invalid/index"
checksum = "91e19ebc2adc8f83e43039e79776e3fda8ca919132d68a1fed6a5faca2683748"
"#;

    #[test]
    fn the_crate_list_is_what_make_cargo_crates_prints() {
        let crates = parse_lock(LOCK).unwrap();
        assert_eq!(
            makefile_crates(&crates),
            "# Generated from Cargo.lock by `cargo xtask port`; do not edit.\n\
             CARGO_CRATES=\tadler2-2.0.1 \\\n\
             \t\tzstd-sys-2.0.16+zstd.1.5.7\n"
        );
    }

    #[test]
    fn distinfo_has_the_locks_checksum_and_the_size() {
        let crates = parse_lock(LOCK).unwrap();
        let text = distinfo(&crates, |c| Ok(c.name.len() as u64)).unwrap();
        assert_eq!(
            text,
            "SHA256 (rust/crates/adler2-2.0.1.crate) = \
             320119579fcad9c21884f5c4861d16174d0e06250625266f50fe6898340abefa\n\
             SIZE (rust/crates/adler2-2.0.1.crate) = 6\n\
             SHA256 (rust/crates/zstd-sys-2.0.16+zstd.1.5.7.crate) = \
             91e19ebc2adc8f83e43039e79776e3fda8ca919132d68a1fed6a5faca2683748\n\
             SIZE (rust/crates/zstd-sys-2.0.16+zstd.1.5.7.crate) = 8\n"
        );
    }

    #[test]
    fn a_git_source_or_a_missing_checksum_is_refused_with_its_line() {
        let git = LOCK.replace(
            "source = \"registry+https://example.invalid/index\"\nchecksum = \"9",
            "source = \"git+https://example.invalid/zstd#abc\"\nchecksum = \"9",
        );
        let e = parse_lock(&git).unwrap_err().to_string();
        assert!(e.starts_with("Cargo.lock:19: zstd-sys"), "{e}");
        let unsummed = LOCK.replace(
            "checksum = \"320119579fcad9c21884f5c4861d16174d0e06250625266f50fe6898340abefa\"\n",
            "",
        );
        let e = parse_lock(&unsummed).unwrap_err().to_string();
        assert!(e.contains("adler2 2.0.1 has no checksum"), "{e}");
    }

    #[test]
    fn the_size_comes_from_a_cached_crate_whose_digest_matches() {
        let d = std::env::temp_dir().join(format!("xtask-port-{}", std::process::id()));
        let cache = d.join("index.example");
        std::fs::create_dir_all(&cache).unwrap();
        let body = b"not really a crate";
        let sum: String = Sha256::digest(body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let c = Locked {
            name: "tiny".into(),
            version: "1.0.0".into(),
            checksum: sum,
        };
        let caches = vec![cache.clone()];
        assert!(cached_size(&caches, &c)
            .unwrap_err()
            .to_string()
            .contains("cargo fetch"));
        std::fs::write(cache.join("tiny-1.0.0.crate"), body).unwrap();
        assert_eq!(cached_size(&caches, &c).unwrap(), body.len() as u64);
        std::fs::write(cache.join("tiny-1.0.0.crate"), b"tampered").unwrap();
        assert!(cached_size(&caches, &c)
            .unwrap_err()
            .to_string()
            .contains("Cargo.lock says"));
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The committed port matches the workspace's Cargo.lock: after a dependency changes,
    /// `cargo xtask port` brings it up to date.
    #[test]
    fn the_committed_port_matches_cargo_lock() {
        let root = crate::workspace_root();
        let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
        let crates = parse_lock(&lock).unwrap();
        let dir = root.join(PORT_DIR);
        let committed = std::fs::read_to_string(dir.join("Makefile.crates")).unwrap();
        assert!(
            committed == makefile_crates(&crates),
            "{PORT_DIR}/Makefile.crates is stale: run `cargo xtask port`"
        );
        let info = std::fs::read_to_string(dir.join("distinfo")).unwrap();
        let mut lines = info.lines();
        for c in &crates {
            let f = c.distfile();
            assert_eq!(
                lines.next(),
                Some(format!("SHA256 ({f}) = {}", c.checksum).as_str()),
                "{PORT_DIR}/distinfo is stale: run `cargo xtask port`"
            );
            let size = lines.next().unwrap_or_default();
            let n = size
                .strip_prefix(&format!("SIZE ({f}) = "))
                .and_then(|n| n.parse::<u64>().ok());
            assert!(n.is_some_and(|n| n > 0), "{PORT_DIR}/distinfo: {size:?}");
        }
        assert_eq!(lines.next(), None, "{PORT_DIR}/distinfo lists more crates");
    }
}
