//! The OCI runtime end to end against the real runc: busybox containers in a temporary rootfs,
//! supervised by `warren shim`. Linux only. Needs root, runc and a static busybox; fails (never
//! skips) when they are missing. Every test uses its own container id, runc root and cgroup, and
//! its guard removes all of them (and ends the processes it started) even when an assertion
//! fails.

#![cfg(target_os = "linux")]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren_exec::{Executor, HostExecutor};
use warren_model::Resources;
use warren_runtime::logs::{LogFollower, Stream};
use warren_runtime::oci::OciRuntime;
use warren_runtime::proc::{process_alive, read_stat};
use warren_runtime::runc::Runc;
use warren_runtime::{shim, ExecRequest, Runtime, RuntimeError, ShimState, WorkloadRun};

const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const CONTROLLERS: &[&str] = &[
    "memory", "pids", "cpu", "cpuacct", "devices", "freezer", "blkio",
];
const ROLE_ENV: &str = "WARREN_RUNTIME_TEST_ROLE";
const DIR_ENV: &str = "WARREN_RUNTIME_TEST_DIR";
const ID_ENV: &str = "WARREN_RUNTIME_TEST_ID";
/// Marks the state line in a helper's output (libtest may print on the same line first).
const STATE_MARK: &str = "@@warren-state@@ ";

fn preflight() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "runtime_oci tests need root (they create namespaces and cgroups through runc)"
    );
    assert!(
        Path::new(RUNC).exists(),
        "runtime_oci tests need runc at {RUNC}"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "runtime_oci tests need a static busybox at {BUSYBOX} (apt-get install busybox-static)"
    );
}

/// Everything one test created, removed on drop.
struct Fixture {
    dir: tempfile::TempDir,
    id: String,
    cgroup: String,
    children: Vec<Child>,
    /// Processes started indirectly (not our children): (pid, start ticks).
    others: Vec<(i32, u64)>,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        preflight();
        let dir = tempfile::Builder::new()
            .prefix("warren-rt-")
            .tempdir()
            .unwrap();
        let id = format!("wrt-{name}-{}", std::process::id());
        let f = Fixture {
            cgroup: format!("/warren-test-{id}"),
            id,
            dir,
            children: Vec::new(),
            others: Vec::new(),
        };
        build_rootfs(&f.rootfs());
        f
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    fn run_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    fn runtime(&self) -> OciRuntime {
        runtime_at(self.path())
    }

    fn spec(&self, args: &[&str]) -> WorkloadRun {
        spec_at(self.path(), &self.id, args)
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        CONTROLLERS
            .iter()
            .map(|c| Path::new("/sys/fs/cgroup").join(c).join(&self.cgroup[1..]))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let runc = Runc::new(RUNC, self.path().join("runc"));
        let _ = HostExecutor.run(&runc.delete_cmd(&self.id, true));
        for &(pid, ticks) in &self.others {
            if process_alive(pid, ticks) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for d in self.cgroup_dirs() {
            if d.exists() {
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

fn runtime_at(dir: &Path) -> OciRuntime {
    OciRuntime::new(
        Arc::new(HostExecutor),
        Runc::new(RUNC, dir.join("runc")),
        PathBuf::from(env!("CARGO_BIN_EXE_warren")),
    )
}

fn spec_at(dir: &Path, id: &str, args: &[&str]) -> WorkloadRun {
    WorkloadRun {
        id: id.to_string(),
        rootfs: dir.join("rootfs"),
        readonly_rootfs: false,
        binds: Vec::new(),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        cwd: "/".into(),
        user: None,
        hostname: "testbox".into(),
        resources: Resources::default(),
        terminal: false,
        cgroup_path: format!("/warren-test-{id}"),
        network: Default::default(),
        userns: None,
        backend: Default::default(),
    }
}

/// busybox with every applet linked in /bin, plus passwd and group.
fn build_rootfs(root: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let out = Command::new(BUSYBOX).arg("--list").output().unwrap();
    assert!(out.status.success(), "busybox --list failed");
    for applet in String::from_utf8(out.stdout).unwrap().lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

fn wait_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit within {timeout:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ns_link(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn smaps_kb(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.trim().trim_end_matches(" kB").trim().parse().ok()
        })
        .unwrap_or_else(|| panic!("{key} not in smaps_rollup"))
}

fn exec_output(
    rt: &OciRuntime,
    id: &str,
    argv: &[&str],
    env: &[&str],
    cwd: Option<&str>,
) -> (i32, String) {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let env: Vec<String> = env.iter().map(|s| s.to_string()).collect();
    let out = rt
        .exec(
            id,
            &ExecRequest {
                argv,
                tty: false,
                env,
                cwd: cwd.map(String::from),
            },
        )
        .unwrap()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn container_runs_isolated_logs_execs_and_dies() {
    let mut f = Fixture::new("life");
    let rt = f.runtime();
    let t0 = Instant::now();
    let started = rt
        .start(
            &f.spec(&["sh", "-c", "echo hello; echo oops >&2; sleep 1000"]),
            &f.run_dir(),
        )
        .unwrap();
    eprintln!(
        "start (bundle, shim, runc create + start): {:?}",
        t0.elapsed()
    );
    let state = started.state.clone();
    f.children.push(started.shim);
    assert_eq!(
        shim::read_state(&f.run_dir()).unwrap().as_ref(),
        Some(&state)
    );
    assert_eq!(state.shim_pid as u32, f.children[0].id());
    assert!(process_alive(state.shim_pid, state.shim_start_ticks));
    let cpid = state.container_pid.to_string();
    let cstat = read_stat(state.container_pid).expect("container process exists");
    assert!(
        !matches!(cstat.state, 'Z' | 'X'),
        "container is {}",
        cstat.state
    );
    assert_eq!(
        cstat.ppid, state.shim_pid,
        "the shim is the container's parent"
    );
    let seen = rt.observe(&f.id).unwrap().expect("runc knows it");
    assert!(seen.running && !seen.frozen);
    assert_eq!(seen.pid, Some(state.container_pid));
    assert!(
        rt.adopt(&state),
        "its shim runs, so a restarted daemon adopts it"
    );
    // Frozen for a snapshot, then thawed.
    rt.freeze(&f.id).unwrap();
    let seen = rt.observe(&f.id).unwrap().expect("runc knows it");
    assert!(seen.running && seen.frozen, "{seen:?}");
    rt.thaw(&f.id).unwrap();
    let seen = rt.observe(&f.id).unwrap().expect("runc knows it");
    assert!(seen.running && !seen.frozen, "{seen:?}");
    for ns in ["pid", "mnt", "uts", "ipc", "net"] {
        assert_ne!(
            ns_link(&cpid, ns),
            ns_link("self", ns),
            "{ns} namespace is shared"
        );
    }

    // Output of both streams reaches the log.
    let mut follower = LogFollower::open(&f.run_dir().join("logs"), None).unwrap();
    let (mut out_ok, mut err_ok) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(out_ok && err_ok) && Instant::now() < deadline {
        for l in follower.wait_next(Duration::from_millis(500)).unwrap() {
            out_ok |= l.stream == Stream::Stdout && l.text == "hello" && !l.partial;
            err_ok |= l.stream == Stream::Stderr && l.text == "oops" && !l.partial;
        }
    }
    assert!(
        out_ok && err_ok,
        "log lines missing: stdout {out_ok}, stderr {err_ok}"
    );

    // exec: exit status, env and cwd.
    assert_eq!(
        exec_output(&rt, &f.id, &["sh", "-c", "exit 7"], &[], None).0,
        7
    );
    let (code, out) = exec_output(
        &rt,
        &f.id,
        &["sh", "-c", "echo $FOO; pwd; hostname"],
        &["FOO=bar"],
        Some("/tmp"),
    );
    assert_eq!((code, out.as_str()), (0, "bar\n/tmp\ntestbox\n"));

    // exec with a terminal.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut cmd = rt
        .exec(
            &f.id,
            &ExecRequest {
                tty: true,
                ..ExecRequest::new(vec!["tty".to_string()])
            },
        )
        .unwrap();
    cmd.stdin(Stdio::from(pty.slave.try_clone().unwrap()))
        .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
        .stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let st = wait_timeout(&mut child, Duration::from_secs(20));
    assert!(st.success(), "runc exec --tty: {st}");
    let mut master = std::fs::File::from(pty.master);
    let mut tty_out = Vec::new();
    let _ = master.read_to_end(&mut tty_out); // ends with EIO once the slave is closed
    let tty_out = String::from_utf8_lossy(&tty_out);
    assert!(tty_out.starts_with("/dev/pts/"), "tty printed {tty_out:?}");

    let rss = smaps_kb(state.shim_pid, "Rss");
    let pss = smaps_kb(state.shim_pid, "Pss");
    eprintln!("shim memory while supervising: Rss {rss} kB, Pss {pss} kB");
    assert!(pss < 16 * 1024, "the shim uses {pss} kB PSS");

    // SIGKILL the main process: the shim records it, cleans up and exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(state.container_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = wait_timeout(&mut f.children[0], Duration::from_secs(20));
    assert!(st.success(), "shim exit: {st}");
    let exit = shim::read_exit(&f.run_dir()).unwrap().expect("exit.json");
    assert_eq!(
        (exit.code, exit.signal, exit.oom_killed),
        (137, Some(9), false)
    );
    assert!(exit.finished_at_ms >= state.started_at_ms);
    assert_eq!(rt.observe(&f.id).unwrap(), None);
    for d in f.cgroup_dirs() {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    // Idempotent cleanup calls on an absent container.
    rt.kill(&f.id, "KILL").unwrap();
    rt.stop(&f.id).unwrap();
    rt.delete(&f.id).unwrap();
}

#[test]
fn shim_forwards_sigterm_and_records_the_exit_code() {
    let mut f = Fixture::new("term");
    let rt = f.runtime();
    let started = rt
        .start(
            &f.spec(&[
                "sh",
                "-c",
                "trap 'echo bye; exit 3' TERM; echo ready; sleep 1000 & wait",
            ]),
            &f.run_dir(),
        )
        .unwrap();
    f.children.push(started.shim);
    let mut follower = LogFollower::open(&f.run_dir().join("logs"), None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ready = false;
    while !ready && Instant::now() < deadline {
        ready = follower
            .wait_next(Duration::from_millis(500))
            .unwrap()
            .iter()
            .any(|l| l.text == "ready");
    }
    assert!(ready, "the container never printed ready");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(started.state.shim_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = wait_timeout(&mut f.children[0], Duration::from_secs(20));
    assert!(st.success(), "shim exit: {st}");
    let exit = shim::read_exit(&f.run_dir()).unwrap().expect("exit.json");
    assert_eq!((exit.code, exit.signal), (3, None));
    let texts: Vec<String> = warren_runtime::logs::read_tail(&f.run_dir().join("logs"), None)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(texts, ["ready", "bye"]);
}

#[test]
fn memory_limit_ends_in_oom_kill() {
    let mut f = Fixture::new("oom");
    let rt = f.runtime();
    let mut spec = f.spec(&["sh", "-c", "x=$(yes | head -c 200000000); echo survived"]);
    spec.resources.memory = Some(16 * 1024 * 1024);
    spec.resources.pids = Some(64);
    spec.resources.cpus = Some(1.0);
    let started = rt.start(&spec, &f.run_dir()).unwrap();
    let mem = Path::new("/sys/fs/cgroup/memory")
        .join(&f.cgroup[1..])
        .join("memory.limit_in_bytes");
    if let Ok(limit) = std::fs::read_to_string(&mem) {
        assert_eq!(limit.trim(), (16 * 1024 * 1024).to_string());
    }
    f.children.push(started.shim);
    let st = wait_timeout(&mut f.children[0], Duration::from_secs(60));
    assert!(st.success(), "shim exit: {st}");
    let exit = shim::read_exit(&f.run_dir()).unwrap().expect("exit.json");
    assert!(exit.oom_killed, "not reported as OOM-killed: {exit:?}");
    assert_ne!(exit.code, 0, "{exit:?}");
    for d in f.cgroup_dirs() {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
}

#[test]
fn bad_command_fails_with_runc_message_and_leaves_nothing() {
    let f = Fixture::new("bad");
    let rt = f.runtime();
    let err = rt
        .start(&f.spec(&["/no/such/binary"]), &f.run_dir())
        .unwrap_err();
    eprintln!("start failed as expected: {err}");
    match &err {
        RuntimeError::ShimFailed { id, reason } => {
            assert_eq!(id, &f.id);
            assert!(
                reason.contains("/no/such/binary") && reason.contains("no such file"),
                "reason does not carry runc's message: {reason}"
            );
        }
        other => panic!("expected ShimFailed, got {other}"),
    }
    assert_eq!(rt.observe(&f.id).unwrap(), None);
    for d in f.cgroup_dirs() {
        assert!(!d.exists(), "{} is left behind", d.display());
    }
    assert_eq!(shim::read_state(&f.run_dir()).unwrap(), None);
    assert!(rt
        .start(
            &{
                let mut s = f.spec(&["sh"]);
                s.user = Some("ghost".into());
                s
            },
            &f.run_dir()
        )
        .is_err_and(|e| matches!(e, RuntimeError::NoSuchUser { .. })));
}

/// Helper roles of `shim_survives_its_starter`, run in re-executed copies of this binary.
fn helper_role(role: &str) -> ! {
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let id = std::env::var(ID_ENV).unwrap();
    match role {
        // Starts the container and exits at once, abandoning the shim.
        "starter" => {
            let rt = runtime_at(&dir);
            let started = rt
                .start(&spec_at(&dir, &id, &["sleep", "1000"]), &dir.join("run"))
                .unwrap();
            println!(
                "\n{STATE_MARK}{}",
                serde_json::to_string(&started.state).unwrap()
            );
            std::process::exit(0)
        }
        // A subreaper standing in for a supervisor above the daemon: runs the starter, passes
        // its report on, then reaps whatever is reparented to it until nothing is left.
        "reaper" => {
            // SAFETY: plain prctl.
            assert_eq!(
                unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) },
                0
            );
            let out = Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "shim_survives_its_starter",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(ROLE_ENV, "starter")
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .unwrap();
            assert!(out.status.success(), "starter failed: {}", out.status);
            for l in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some(i) = l.find(STATE_MARK) {
                    println!("\n{}", &l[i..]);
                }
            }
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            while nix::sys::wait::waitpid(None::<nix::unistd::Pid>, None).is_ok() {}
            std::process::exit(0)
        }
        other => panic!("unknown helper role {other}"),
    }
}

#[test]
fn shim_survives_its_starter() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        helper_role(&role);
    }
    let mut f = Fixture::new("orphan");
    let reaper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shim_survives_its_starter",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE_ENV, "reaper")
        .env(DIR_ENV, f.path())
        .env(ID_ENV, &f.id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let reaper_pid = reaper.id() as i32;
    f.children.push(reaper);
    let stdout = f.children[0].stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = l.find(STATE_MARK) {
                let json = &l[i + STATE_MARK.len()..];
                let _ = tx.send(serde_json::from_str::<ShimState>(json).unwrap());
            }
        }
    });
    let state = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the starter reported no state");
    f.others.push((state.shim_pid, state.shim_start_ticks));

    // The starter is gone; the shim lives on, adopted by the reaper, and so does the container.
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(state.shim_pid, state.shim_start_ticks));
    assert_eq!(read_stat(state.shim_pid).unwrap().ppid, reaper_pid);
    let c = read_stat(state.container_pid).expect("container process");
    assert_eq!(c.ppid, state.shim_pid);
    let rt = f.runtime();
    assert!(rt.observe(&f.id).unwrap().is_some_and(|o| o.running));
    assert!(rt.adopt(&state));

    rt.kill(&f.id, "KILL").unwrap();
    let st = wait_timeout(&mut f.children[0], Duration::from_secs(30));
    assert!(st.success(), "reaper exit: {st}");
    assert!(!process_alive(state.shim_pid, state.shim_start_ticks));
    let exit = shim::read_exit(&f.run_dir()).unwrap().expect("exit.json");
    assert_eq!((exit.code, exit.signal), (137, Some(9)));
    assert_eq!(rt.observe(&f.id).unwrap(), None);
}
