//! Project chores, run as `cargo xtask <command>` from anywhere in the workspace.
//!
//! - `fmt`: `cargo fmt --all -- --check`.
//! - `lint`: `cargo clippy --workspace --all-targets -- -D warnings`.
//! - `freebsd-check`: type-checks every crate and target of the workspace for
//!   `x86_64-unknown-freebsd` from a Linux host. It needs Debian's `rustc-web`, `cargo-web` and
//!   `rust-web-src` (rustc and cargo under `/usr/bin`, with the standard library sources), and
//!   runs `/usr/bin/cargo check --workspace --all-targets --keep-going --target
//!   x86_64-unknown-freebsd -Zbuild-std=std,test --target-dir target-fbsd` with
//!   `RUSTC_BOOTSTRAP=1 RUSTC=/usr/bin/rustc RUSTFLAGS="-D warnings"`. `-Zbuild-std` builds the
//!   FreeBSD standard library from source (no FreeBSD sysroot is installed), which is why the
//!   bootstrap switch is needed; the own target dir keeps those artifacts apart from the host
//!   build. Warnings are errors as in `lint`, so code left unused by a `cfg(target_os)` gate
//!   fails here (lints of dependencies and of the standard library stay capped by cargo).
//!   `--keep-going` reports the errors of every crate in one run. When the toolchain is missing
//!   the command fails and says what to install: it never passes without having checked.
//! - `ci`: `fmt`, `lint`, `cargo test --workspace`, `freebsd-check`, in that order, stopping at
//!   the first failure.
//!
//! - `bench [--check] [PART...]`: see [`bench`]; medians and ratios against runc and podman in
//!   one run; the parts `run`, `datasets`, `apply` and `ingress` can be run alone (`cargo xtask
//!   bench datasets`). Every measured ratio is printed against its target (one table,
//!   [`bench_targets`]); `--check` exits non-zero when one missed.
//!
//! - `dist [--debug] [--no-build]`: the Debian package (see [`dist`]): man pages and shell
//!   completions rendered from the CLI, then `cargo deb`, into `target/dist/`.
//! - `port`: the FreeBSD port's crate list and checksums from `Cargo.lock` (see [`port`]).
//!
//! Every step runs from the workspace root and echoes the command it runs and how long it took.

mod bench;
mod bench_images;
mod bench_ingress;
mod bench_targets;
mod bench_vm;
mod dist;
mod port;
#[cfg(test)]
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The FreeBSD target checked by `freebsd-check`.
const FREEBSD_TARGET: &str = "x86_64-unknown-freebsd";
/// The Debian toolchain `freebsd-check` uses (packages `rustc-web`, `cargo-web`).
const SYSTEM_RUSTC: &str = "/usr/bin/rustc";
const SYSTEM_CARGO: &str = "/usr/bin/cargo";
/// The packages that provide it.
const FREEBSD_PACKAGES: &str = "rustc-web cargo-web rust-web-src";
/// Target dir of the FreeBSD check, relative to the workspace root.
const FREEBSD_TARGET_DIR: &str = "target-fbsd";

/// A subcommand: name, one-line help, what it does.
type Task = (&'static str, &'static str, fn(&Path) -> Result<()>);

const TASKS: &[Task] = &[
    ("fmt", "check formatting (cargo fmt --all -- --check)", fmt),
    (
        "lint",
        "clippy on every crate and target, warnings denied",
        lint,
    ),
    (
        "freebsd-check",
        "type-check the workspace for x86_64-unknown-freebsd",
        freebsd_check,
    ),
    (
        "ci",
        "fmt, lint, test, freebsd-check; stops at the first failure",
        ci,
    ),
    (
        "bench",
        "warren vs runc, podman: run --rm, datasets, apply of 50, idle memory (needs root); \
         `bench PART...` runs only those parts (run, datasets, apply, ingress, images, vm); \
         `bench --check` fails when a measured ratio misses its target",
        bench::bench,
    ),
    (
        "dist",
        "the Debian package in target/dist (release; `dist --debug` packages the dev \
         profile, `--no-build` the binaries already built)",
        |root| dist::dist(root, &dist::Options::default()).map(|_| ()),
    ),
    (
        "port",
        "regenerate the FreeBSD port's Makefile.crates and distinfo from Cargo.lock",
        port::port,
    ),
];

fn main() -> ExitCode {
    match dispatch() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = match args.as_slice() {
        [] => {
            eprint!("{}", usage());
            bail!("no command given");
        }
        [name, rest @ ..] if name == "bench" => {
            let check = rest.iter().any(|a| a == "--check");
            let parts: Vec<String> = rest.iter().filter(|a| *a != "--check").cloned().collect();
            return bench::bench_parts(&workspace_root(), &parts, check);
        }
        [name, rest @ ..] if name == "dist" => {
            return dist::dist(&workspace_root(), &dist::Options::parse(rest)?).map(|_| ());
        }
        [name] => name.as_str(),
        [name, extra @ ..] => bail!("{name} takes no arguments (got {extra:?})"),
    };
    if matches!(name, "help" | "-h" | "--help") {
        print!("{}", usage());
        return Ok(());
    }
    let Some((_, _, task)) = TASKS.iter().find(|(n, _, _)| *n == name) else {
        eprint!("{}", usage());
        bail!("unknown command {name:?}");
    };
    task(&workspace_root())
}

fn usage() -> String {
    let mut s = String::from("usage: cargo xtask <command>\n\ncommands:\n");
    for (name, help, _) in TASKS {
        s.push_str(&format!("  {name:<15} {help}\n"));
    }
    s
}

/// The directory holding the workspace `Cargo.toml` (the parent of this crate).
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .expect("xtask lives inside the workspace")
        .to_path_buf()
}

/// The cargo that runs this xtask (`CARGO`, set by `cargo run`), else `cargo` from `PATH`.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cmd` in `root`, echoing it first; fails unless it exits successfully.
fn run(root: &Path, mut cmd: Command) -> Result<()> {
    cmd.current_dir(root);
    let shown = show(&cmd);
    eprintln!("$ {shown}");
    let start = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let took = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("`{shown}` failed ({status}) after {took:.1}s");
    }
    eprintln!("ok ({took:.1}s): {shown}");
    Ok(())
}

/// The command as an operator would type it, with the variables set for it.
fn show(cmd: &Command) -> String {
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .collect();
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// A word as a shell needs it (only spaces occur in what xtask runs).
fn quote(word: &std::ffi::OsStr) -> String {
    let word = word.to_string_lossy();
    if word.contains(char::is_whitespace) {
        format!("\"{word}\"")
    } else {
        word.into_owned()
    }
}

fn fmt(root: &Path) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["fmt", "--all", "--", "--check"]);
    run(root, cmd)
}

fn lint(root: &Path) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(root, cmd)
}

fn test(root: &Path) -> Result<()> {
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]);
    run(root, cmd)
}

fn freebsd_check(root: &Path) -> Result<()> {
    for tool in [SYSTEM_RUSTC, SYSTEM_CARGO] {
        if !Path::new(tool).is_file() {
            bail!(
                "{tool} not found: the FreeBSD check needs Debian's matched toolchain and \
                 standard library sources; install them with \
                 `apt-get install -y {FREEBSD_PACKAGES}`"
            );
        }
    }
    let src = std_sources(Path::new(SYSTEM_RUSTC))?;
    if !src.join("library").join("std").is_dir() {
        bail!(
            "{} has no standard library sources (needed by -Zbuild-std); install them with \
             `apt-get install -y {FREEBSD_PACKAGES}`",
            src.display()
        );
    }
    // Flags the operator set stay; with `--target` they apply to FreeBSD code only.
    let rustflags = match std::env::var("RUSTFLAGS") {
        Ok(flags) if !flags.trim().is_empty() => format!("{flags} -D warnings"),
        _ => "-D warnings".to_string(),
    };
    let mut cmd = Command::new(SYSTEM_CARGO);
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .env("RUSTC", SYSTEM_RUSTC)
        .env("RUSTFLAGS", rustflags)
        // Variables from the cargo that runs this xtask would point at its own toolchain.
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTDOC")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args([
            "check",
            "--workspace",
            "--all-targets",
            "--keep-going",
            "--target",
            FREEBSD_TARGET,
            "-Zbuild-std=std,test",
            "--target-dir",
            FREEBSD_TARGET_DIR,
        ]);
    run(root, cmd)
}

/// `<sysroot>/lib/rustlib/src/rust` of `rustc`, where `-Zbuild-std` looks for the sources.
fn std_sources(rustc: &Path) -> Result<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .with_context(|| format!("cannot run {}", rustc.display()))?;
    if !out.status.success() {
        bail!(
            "`{} --print sysroot` failed ({}): {}",
            rustc.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sysroot = String::from_utf8(out.stdout).context("sysroot is not UTF-8")?;
    Ok(Path::new(sysroot.trim()).join("lib/rustlib/src/rust"))
}

fn ci(root: &Path) -> Result<()> {
    fmt(root)?;
    lint(root)?;
    test(root)?;
    freebsd_check(root)
}
