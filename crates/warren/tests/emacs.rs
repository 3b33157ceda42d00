//! Tier-2 tests of the Emacs package in `emacs/`: its ERT suite run in batch Emacs against a
//! live daemon (the list shows the applied workloads, an action stops one, the event stream
//! refreshes the list, the org dynamic blocks render their tables, the REPL evaluates
//! `(workloads)`), byte-compilation with warnings as errors, and installation with package.el.
//!
//! They need `emacs` (Debian's `emacs-nox`) and `elpa-transient`, and fail without them.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The package's source directory.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../emacs")
        .canonicalize()
        .expect("the emacs/ directory")
}

fn require_emacs() {
    assert!(
        warren_exec::resolve("emacs").is_some(),
        "emacs is missing: apt-get install emacs-nox elpa-transient"
    );
}

/// Runs batch Emacs with `args` in `home` (its HOME), killing it after `secs`; returns its
/// output (stdout and stderr together, in order).
fn emacs(args: &[&str], home: &Path, env: &[(&str, String)], secs: u64) -> (bool, String) {
    let log = home.join("emacs-output.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new("emacs");
    cmd.arg("--batch")
        .args(args)
        .current_dir(package_dir().parent().unwrap())
        .env("HOME", home)
        .env_remove("EMACSLOADPATH")
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run emacs");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("{text}\n(emacs killed after {secs} s)")),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_ert_suite_passes_against_a_live_daemon() {
    require_emacs();
    let d = Daemon::start(&[]);
    let port = free_port();
    d.apply(
        "emacs.toml",
        &format!(
            r#"
[workload.emacs-a]
world = "busybox"
command = ["sh", "-c", "echo hello from emacs-a; exec sleep 100000"]
ports = ["{port}:80"]
domains = ["emacs-a.test"]
port = 80

[workload.emacs-b]
world = "busybox"
network = "none"
command = ["sleep", "100000"]
"#
        ),
    );
    d.wait_running("emacs-a");
    d.wait_running("emacs-b");

    let home = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(WARREN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let test_file = package_dir().join("test/warren-test.el");
    let (ok, out) = emacs(
        &[
            "-L",
            package_dir().to_str().unwrap(),
            "-l",
            "ert",
            "-l",
            test_file.to_str().unwrap(),
            "-f",
            "ert-run-tests-batch-and-exit",
        ],
        home.path(),
        &[
            ("WARREN_STATE_DIR", d.state_dir().display().to_string()),
            ("WARREN_EXECUTABLE", WARREN.to_string()),
            ("PATH", path),
            ("WARREN_TEST_WORKLOADS", "emacs-a emacs-b".to_string()),
            ("WARREN_TEST_PORT", port.to_string()),
        ],
        300,
    );
    let events = stdout(&d.cli(&["events", "-n", "100"]));
    assert!(
        ok,
        "the ERT suite failed:\n{out}\nevents:\n{events}\ndaemon log:\n{}",
        d.log()
    );
    // Every test in the file ran (an empty selection would pass too).
    let defined = std::fs::read_to_string(&test_file)
        .unwrap()
        .matches("(ert-deftest ")
        .count();
    assert!(
        out.contains(&format!(
            "Ran {defined} tests, {defined} results as expected, 0 unexpected"
        )),
        "expected {defined} tests to pass:\n{out}"
    );
    // The action really stopped and started the second workload, per the daemon.
    let log = stdout(&d.cli(&["events", "--workload", "emacs-b", "-n", "100"]));
    assert!(log.contains(" stopped "), "{log}");
}

#[test]
fn the_package_byte_compiles_without_warnings() {
    require_emacs();
    let work = tempfile::tempdir().unwrap();
    // Compiled in a copy, so no .elc lands in the source tree.
    let src = work.path().join("warren");
    std::fs::create_dir_all(src.join("test")).unwrap();
    let mut files = Vec::new();
    for dir in [package_dir(), package_dir().join("test")] {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "el") {
                let to = src.join(p.strip_prefix(package_dir()).unwrap());
                std::fs::copy(&p, &to).unwrap();
                files.push(to.display().to_string());
            }
        }
    }
    assert!(files.len() >= 6, "package files: {files:?}");
    let mut args = vec![
        "-L".to_string(),
        src.display().to_string(),
        "--eval".to_string(),
        "(setq byte-compile-error-on-warn t)".to_string(),
        "-f".to_string(),
        "batch-byte-compile".to_string(),
    ];
    args.extend(files.iter().cloned());
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    let (ok, out) = emacs(&args, work.path(), &[], 120);
    assert!(ok, "byte-compilation failed:\n{out}");
    assert!(!out.contains("Warning"), "byte-compilation warned:\n{out}");
    for f in &files {
        assert!(Path::new(&format!("{f}c")).exists(), "{f} was not compiled");
    }
}

#[test]
fn the_package_installs_with_package_el() {
    require_emacs();
    let home = tempfile::tempdir().unwrap();
    let elpa = home.path().join("elpa");
    let install = format!(
        "(progn (require 'package) (setq package-user-dir {:?}) (package-initialize) \
         (package-install-file {:?}))",
        elpa.display().to_string(),
        format!("{}/", package_dir().display())
    );
    let (ok, out) = emacs(&["--eval", &install], home.path(), &[], 120);
    assert!(ok, "package-install-file failed:\n{out}");
    // A new Emacs activates it: the commands and the org blocks are autoloaded, nothing else
    // is loaded until used.
    let check = format!(
        "(progn (require 'package) (setq package-user-dir {:?}) (package-initialize) \
         (unless (package-installed-p 'warren) (error \"not installed\")) \
         (dolist (f '(warren-list warren-logs warren-events warren-describe warren-exec warren-info \
                      warren-repl org-dblock-write:warren-status \
                      org-dblock-write:warren-snapshots)) \
           (unless (autoloadp (symbol-function f)) (error \"%s is not autoloaded\" f))) \
         (when (featurep 'warren-list) (error \"loaded eagerly\")) \
         (require 'org) \
         (unless (assoc \"warren-status\" org-dynamic-block-alist) \
           (error \"warren-status is not an org dynamic block\")) \
         (message \"package ok\"))",
        elpa.display().to_string()
    );
    let (ok, out) = emacs(&["--eval", &check], home.path(), &[], 60);
    assert!(ok && out.contains("package ok"), "{out}");
}
