//! Tier-2 tests of the live Scheme REPL: piped scripts evaluate form by form in one live image,
//! read and change the model (status, spec fields through apply, start/stop, snapshots),
//! register callbacks that run on events, and an endless loop is interrupted without harming
//! the daemon.

mod common;

use common::*;
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn repl(d: &Daemon, script: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("repl")
        .env("WARREN_STATE_DIR", d.state_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn ok(d: &Daemon, script: &str) -> String {
    let out = repl(d, script);
    assert!(
        out.status.success(),
        "{script}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_repl_reads_and_changes_the_live_model() {
    let d = Daemon::start(&["--repl-time-limit", "12"]);
    d.apply(
        "w.toml",
        "[workload.a]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n",
    );
    d.wait_running("a");

    // Forms evaluate in order, definitions live on between sessions.
    let out = ok(
        &d,
        "(+ 1 2)\n(define answer 41) ; a comment (with parens)\n\"a (string)\"\n",
    );
    assert_eq!(out, "3\n\"a (string)\"\n");
    assert_eq!(ok(&d, "(+ answer 1)"), "42\n");
    assert_eq!(ok(&d, "(workloads)"), "(\"a\")\n");
    let status = ok(&d, "(hash-ref (workload \"a\") \"state\")");
    assert_eq!(status, "\"running\"\n");

    // Changing a spec field applies it through validation; a bad value changes nothing.
    let out = ok(
        &d,
        "(set-spec! \"a\" \"env\" \"{\\\"MODE\\\": \\\"dev\\\"}\")",
    );
    assert!(out.contains("applied"), "{out}");
    wait_until(30, "a recreated with the new env", || {
        d.get("a")["spec"]["env"]["MODE"] == "dev" && d.get("a")["state"] == "running"
    });
    let bad = repl(&d, "(set-spec! \"a\" \"restart\" \"sometimes\")");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error:"));
    assert_eq!(d.get("a")["spec"]["restart"], "always");

    // Verbs.
    ok(&d, "(stop! \"a\")");
    assert_eq!(d.get("a")["state"], "stopped");
    ok(&d, "(start! \"a\")");
    d.wait_running("a");
    assert_eq!(ok(&d, "(snapshot! \"a\" \"from-repl\")"), "\"from-repl\"\n");
    assert!(d.ok(&["snapshots", "a"]).contains("from-repl"));
    assert!(ok(&d, "(events 5)").contains("a "));
    assert!(ok(&d, "(events)").contains("a "));
    // Every other verb through (api ...).
    let out = ok(
        &d,
        "(api \"post\" \"/v1/workloads/a/clone\" \"{\\\"name\\\": \\\"a2\\\"}\")",
    );
    assert!(out.contains("a2"), "{out}");
    wait_until(30, "the clone exists", || {
        d.list().iter().any(|w| w["name"] == "a2")
    });
    assert!(ok(&d, "(api \"get\" \"/v1/workloads/a2\")").contains("\\\"name\\\":\\\"a2\\\""));
    let bad = repl(&d, "(api \"get\" \"/v1/workloads/nope\")");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("404"));

    // An error is reported and the session goes on.
    let out = repl(&d, "(car '())\n(+ 2 2)\n");
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));

    // An endless loop is interrupted; the daemon and the REPL go on.
    let t = Instant::now();
    let out = repl(
        &d,
        "(define (spin n) (spin (+ n 1)))\n(spin 0)\n(+ 20 22)\n",
    );
    assert!(t.elapsed() < Duration::from_secs(40));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("interrupted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
    assert_eq!(d.get("a")["state"], "running");
}

/// Whether the daemon runs its Scheme thread (named `warren-scheme`).
fn scheme_thread_runs(d: &Daemon) -> bool {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", d.daemon_pid())).unwrap();
    tasks.flatten().any(|t| {
        std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "warren-scheme")
    })
}

#[test]
fn callbacks_run_on_events() {
    let d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    // Nothing evaluated and nothing journaled: the Scheme image has not been started.
    assert!(
        !scheme_thread_runs(&d),
        "the Scheme image started before first use"
    );
    ok(
        &d,
        "(on \"c\" 'crash (lambda (w ev) (snapshot! w \"after-crash\")))\n",
    );
    d.apply(
        "w.toml",
        "[workload.c]\nworld = \"busybox\"\nnetwork = \"none\"\nrestart = \"never\"\ncommand = [\"sh\", \"-c\", \"sleep 1; exit 2\"]\n",
    );
    wait_until(30, "the crash callback took a snapshot", || {
        d.cli(&["snapshots", "c"]).status.success()
            && d.ok(&["snapshots", "c"]).contains("after-crash")
    });
    assert!(scheme_thread_runs(&d));
}

#[test]
fn on_a_terminal_the_repl_edits_lines_and_keeps_history() {
    use std::io::Read;
    let d = Daemon::start(&[]);
    let config = tempfile::tempdir().unwrap();
    // `script` gives the REPL a terminal; the input is typed into it, each line once the
    // editor shows its prompt (it flushes typeahead when it takes the terminal).
    let mut child = Command::new("script")
        .args([
            "-qec",
            &format!("{} repl", env!("CARGO_BIN_EXE_warren")),
            "/dev/null",
        ])
        .env("WARREN_STATE_DIR", d.state_dir())
        .env("XDG_CONFIG_HOME", config.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("script (util-linux) runs");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut out = child.stdout.take().unwrap();
    let s2 = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            s2.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let wait_for = |what: &str, count: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().unwrap().matches(what).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {what:?} in {:?}",
                seen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdin = child.stdin.take().unwrap();
    wait_for("warren> ", 1);
    stdin.write_all(b"(+ 40\n").unwrap();
    wait_for("...> ", 1);
    stdin.write_all(b"2)\n").unwrap();
    wait_for("warren> ", 2);
    let mut exited = false;
    for _ in 0..10 {
        stdin.write_all(b"\x04").unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if exited {
            break;
        }
    }
    if !exited {
        let _ = child.kill();
    }
    let _ = child.wait();
    let text = seen.lock().unwrap().clone();
    assert!(exited, "Ctrl-D did not leave the REPL: {text}");
    assert!(text.contains("42"), "{text}");
    let history = std::fs::read_to_string(config.path().join("warren/repl_history")).unwrap();
    assert!(
        history.contains("(+ 40") && history.contains("2)"),
        "{history}"
    );
}

/// Top-level definitions and callback registrations are journaled and replayed into the image
/// of a restarted daemon; `off` cancels registrations for good; a journaled form that no longer
/// evaluates is reported and skipped without losing the others.
#[test]
fn definitions_and_callbacks_survive_a_daemon_restart() {
    let mut d = Daemon::start(&[]);
    d.ok(&["world", "create", "busybox"]);
    d.apply(
        "w.toml",
        "[workload.tmp]\nworld = \"busybox\"\nnetwork = \"none\"\ncommand = [\"sleep\", \"100000\"]\n",
    );
    d.wait_running("tmp");
    ok(
        &d,
        "(define (snap w ev) (snapshot! w \"after-crash\"))\n\
         (on \"c\" 'crash snap)\n\
         (define greeting \"hi\")\n\
         (define greeting \"hello\")\n\
         (on \"c\" 'exit (lambda (w ev) 1))\n\
         (off \"c\" 'exit)\n\
         (define tmp-source (hash-ref (workload \"tmp\") \"source\"))\n\
         (start! \"tmp\")\n",
    );
    assert_eq!(ok(&d, "(callbacks)"), "((\"c\" \"crash\"))\n");
    d.ok(&["delete", "tmp"]);

    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    d.spawn();
    // The journal holds a callback, so the restarted daemon starts its Scheme image at once:
    // the replayed callback acts on events before anything is evaluated.
    assert!(
        scheme_thread_runs(&d),
        "a journal to replay starts the image"
    );
    d.apply(
        "w.toml",
        "[workload.c]\nworld = \"busybox\"\nnetwork = \"none\"\nrestart = \"never\"\ncommand = [\"sh\", \"-c\", \"sleep 1; exit 2\"]\n",
    );
    wait_until(30, "the replayed crash callback took a snapshot", || {
        d.cli(&["snapshots", "c"]).status.success()
            && d.ok(&["snapshots", "c"]).contains("after-crash")
    });
    assert_eq!(ok(&d, "greeting"), "\"hello\"\n");
    assert_eq!(ok(&d, "(callbacks)"), "((\"c\" \"crash\"))\n");
    // The definition that read a workload now gone was reported and left out.
    let events = d.ok(&["events", "-n", "100"]);
    assert!(
        events.contains("not replayed") && events.contains("tmp-source"),
        "{events}"
    );
    let out = repl(&d, "tmp-source");
    assert!(!out.status.success(), "tmp-source is still defined");
}
