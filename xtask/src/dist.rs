//! `cargo xtask dist [--debug] [--no-build]`: the Debian package of warren.
//!
//! Builds `warren` and the guest agent `warren-agent` (release; `--debug` packages the dev
//! profile instead, which is what the package test does, as it needs no second, optimised
//! build; `--no-build` takes the binaries already there), renders into the profile's `dist/`
//! directory what the package carries besides them — the man pages of the whole command tree
//! (`warren generate-man`, gzipped without timestamps) and the bash, zsh and fish completions
//! (`warren completions SHELL`) — and runs `cargo deb -p warren --no-build` (metadata under
//! `[package.metadata.deb]` in `crates/warren/Cargo.toml`, maintainer files in
//! `packaging/debian/`) into `target/dist/`. The package's path is printed last.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, run};

/// What `dist` was asked for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Package the dev profile's binaries (unoptimised, quick to build) instead of release.
    pub debug: bool,
    /// Do not run `cargo build`: the binaries are there already.
    pub no_build: bool,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut o = Options::default();
        for a in args {
            match a.as_str() {
                "--debug" => o.debug = true,
                "--no-build" => o.no_build = true,
                other => bail!("dist: unknown option {other:?} (--debug, --no-build)"),
            }
        }
        Ok(o)
    }

    /// Cargo's name of the profile packaged.
    fn profile(&self) -> &'static str {
        if self.debug {
            "dev"
        } else {
            "release"
        }
    }

    /// The profile's directory under the target directory.
    fn profile_dir(&self) -> &'static str {
        if self.debug {
            "debug"
        } else {
            "release"
        }
    }
}

/// The shells completions are installed for, with the file name each one's package
/// directory expects (`cargo deb` puts them in place).
pub const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "warren.bash"),
    ("zsh", "_warren"),
    ("fish", "warren.fish"),
];

/// The target directory cargo builds into (`CARGO_TARGET_DIR`, else `target/`).
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => root.join(d),
        None => root.join("target"),
    }
}

/// Builds (unless told not to), renders the man pages and completions, makes the package and
/// returns its path.
pub fn dist(root: &Path, o: &Options) -> Result<PathBuf> {
    if !o.no_build {
        let mut build = cargo();
        build.args([
            "build",
            "--profile",
            o.profile(),
            "-p",
            "warren",
            "-p",
            "warren-agent",
        ]);
        run(root, build)?;
    }
    let target = target_dir(root);
    let bin_dir = target.join(o.profile_dir());
    let warren = bin_dir.join("warren");
    for bin in [&warren, &bin_dir.join("warren-agent")] {
        if !bin.is_file() {
            bail!(
                "{} is missing: build it first (or drop --no-build)",
                bin.display()
            );
        }
    }
    let dist = bin_dir.join("dist");
    let _ = std::fs::remove_dir_all(&dist);
    let man = dist.join("man");
    let mut gen = Command::new(&warren);
    gen.arg("generate-man").arg(&man);
    run(root, gen)?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)
        .with_context(|| format!("reading {}", man.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    pages.sort();
    if !pages.iter().any(|p| p.ends_with("warren.1")) {
        bail!(
            "warren generate-man wrote no warren.1 into {}",
            man.display()
        );
    }
    // -n: no name or timestamp in the gzip header, so the same pages give the same bytes.
    let mut gzip = Command::new("gzip");
    gzip.args(["-9", "-n", "-f"])
        .args(pages.iter().filter_map(|p| p.file_name()));
    run(&man, gzip)?;
    let completions = dist.join("completions");
    std::fs::create_dir_all(&completions)?;
    for (shell, file) in COMPLETIONS {
        let out = Command::new(&warren)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("running {} completions {shell}", warren.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "warren completions {shell} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        std::fs::write(completions.join(file), &out.stdout)?;
    }
    let out_dir = target.join("dist");
    std::fs::create_dir_all(&out_dir)?;
    let mut deb = cargo();
    deb.args(["deb", "-p", "warren", "--no-build", "--strip", "--profile"])
        .arg(o.profile())
        .arg("-o")
        .arg(&out_dir);
    if o.debug {
        // An unoptimised binary is large; the quick compression keeps the test short.
        deb.arg("--fast");
    }
    let shown = crate::show(&deb);
    eprintln!("$ {shown}");
    let output = deb.current_dir(root).output().with_context(|| {
        format!("cannot start `{shown}` (is cargo-deb installed? cargo install cargo-deb)")
    })?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("`{shown}` named no .deb: {stdout}"))?;
    println!("{}", path.display());
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(Options::parse(&[]).unwrap(), Options::default());
        let o = Options::parse(&["--debug".into(), "--no-build".into()]).unwrap();
        assert!(o.debug && o.no_build);
        assert_eq!((o.profile(), o.profile_dir()), ("dev", "debug"));
        assert_eq!(
            (
                Options::default().profile(),
                Options::default().profile_dir()
            ),
            ("release", "release")
        );
        assert!(Options::parse(&["--fast".into()]).is_err());
    }

    /// The completion files are where the package metadata takes them from.
    #[test]
    fn the_package_metadata_takes_every_completion_and_the_man_pages() {
        let root = crate::workspace_root();
        let manifest = std::fs::read_to_string(root.join("crates/warren/Cargo.toml")).unwrap();
        for (_, file) in COMPLETIONS {
            assert!(
                manifest.contains(&format!("target/release/dist/completions/{file}\"")),
                "crates/warren/Cargo.toml does not package {file}"
            );
        }
        assert!(manifest.contains("target/release/dist/man/*.1.gz"));
    }
}
