//! The VM shim's supervising part, Linux only (see the [parent module](super) for the
//! sequence): QEMU in its cgroup, the agent link, the relay threads and the exit record.

use super::{VmShimConfig, BOOT_TIMEOUT, CTL_SOCKET, STOP_GRACE};
use crate::agent::proto::{self, Frame, Kind};
use nix::sys::signal::{SigSet, Signal};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use warren_runtime::logs::{LogWriter, Stream};
use warren_runtime::shim::{self as rshim, EXIT_FILE, STATE_FILE};
use warren_runtime::{ExitInfo, ShimState};

type Res<T> = std::result::Result<T, String>;

/// QEMU's own output (not the guest's).
pub const QEMU_LOG: &str = "qemu.log";
/// The boot's timeline in the run directory, one `PHASE UNIX_MICROS` a line: `shim` (the shim
/// runs), `qemu` (QEMU is spawned), `connected` (the agent's socket), `hello` (the agent's
/// greeting, the first bytes the guest writes on its port), `started` (the main process runs).
pub const TIMES_FILE: &str = "boot-times";

/// Entry point of `warren shim RUN_DIR` for a VM; never returns.
pub fn main(run_dir: &Path) -> ! {
    let mut status = rshim::take_status_pipe();
    let code = match run(run_dir, &mut status) {
        Ok(()) => 0,
        Err(msg) => {
            match status.take() {
                Some(mut s) => {
                    let _ = write!(s, "error: {msg}");
                }
                None => rshim::note(run_dir, &msg),
            }
            1
        }
    };
    std::process::exit(code)
}

/// The workload's cgroup (v2, or the v1 memory and pids hierarchies).
struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    fn create(path: &str, memory: Option<u64>) -> Res<Cgroup> {
        let rel = path.trim_start_matches('/');
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = Vec::new();
        if root.join("cgroup.controllers").exists() {
            let dir = root.join(rel);
            // Let the memory and pids controllers reach the workload's cgroup.
            let mut at = root.to_path_buf();
            for part in Path::new(rel)
                .parent()
                .into_iter()
                .flat_map(|p| p.components())
            {
                let _ = std::fs::write(at.join("cgroup.subtree_control"), "+memory +pids");
                at = at.join(part);
                let _ = std::fs::create_dir(&at);
            }
            let _ = std::fs::write(at.join("cgroup.subtree_control"), "+memory +pids");
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if let Some(m) = memory {
                write_file(&dir.join("memory.max"), &m.to_string())?;
            }
            dirs.push(dir);
        } else {
            for ctl in ["memory", "pids"] {
                let base = root.join(ctl);
                if !base.exists() {
                    continue;
                }
                let dir = base.join(rel);
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                if let (Some(m), "memory") = (memory, ctl) {
                    write_file(&dir.join("memory.limit_in_bytes"), &m.to_string())?;
                }
                dirs.push(dir);
            }
        }
        Ok(Cgroup { dirs })
    }

    fn add(&self, pid: u32) -> Res<()> {
        for d in &self.dirs {
            write_file(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn remove(&self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn write_file(path: &Path, text: &str) -> Res<()> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// What the relay threads share.
struct Shared {
    agent: Mutex<UnixStream>,
    /// Exec sessions by agent channel: where their frames go.
    sessions: Mutex<HashMap<u32, UnixStream>>,
    next_channel: AtomicU32,
    /// The waiter of the one control request in flight, and the lock that makes it one.
    reply: Mutex<Option<mpsc::Sender<Frame>>>,
    control: Mutex<()>,
    exit: Mutex<Option<proto::Exit>>,
    logs: Mutex<LogWriter>,
    run_dir: PathBuf,
}

impl Shared {
    fn send(&self, f: &Frame) -> proto::Result<()> {
        let mut a = self.agent.lock().unwrap();
        proto::write_frame(&mut *a, f)
    }
}

fn spawn_qemu(cfg: &VmShimConfig, run_dir: &Path) -> Res<Child> {
    let (prog, args) = cfg.qemu.split_first().ok_or("vm.json has no QEMU argv")?;
    let log = File::create(run_dir.join(QEMU_LOG)).map_err(|e| format!("{QEMU_LOG}: {e}"))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = warren_exec::std_command(prog).map_err(|e| e.to_string())?;
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .current_dir(run_dir);
    // SAFETY: prctl and sigprocmask are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // QEMU dies with its shim: a VM nobody supervises must not keep its disks busy.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting {prog}: {e}"))
}

/// The last lines QEMU printed, for an error message.
fn qemu_tail(run_dir: &Path) -> String {
    let text = std::fs::read_to_string(run_dir.join(QEMU_LOG)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("; ")
}

fn connect_agent(
    socket: &Path,
    qemu: &mut Child,
    run_dir: &Path,
    deadline: Instant,
) -> Res<UnixStream> {
    loop {
        if let Ok(Some(st)) = qemu.try_wait() {
            return Err(format!("QEMU exited ({st}): {}", qemu_tail(run_dir)));
        }
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("agent socket {}: {e}", socket.display()))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Reads frames until one on channel 0 answers (`want` or `Error`); output before it is
/// logged.
fn await_reply(
    stream: &mut UnixStream,
    want: Kind,
    logs: &mut LogWriter,
    deadline: Instant,
) -> Res<Frame> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the guest sent no {want:?} within {}s",
                BOOT_TIMEOUT.as_secs()
            ));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let f = match proto::read_frame(stream) {
            Ok(Some(f)) => f,
            Ok(None) => return Err("the agent closed its port".into()),
            Err(e) => return Err(format!("reading the agent: {e}")),
        };
        match f.kind {
            k if k == want => return Ok(f),
            Kind::Error => {
                let msg = f
                    .parse::<proto::ErrorMsg>()
                    .map(|e| e.message)
                    .unwrap_or_default();
                return Err(format!("the guest agent: {msg}"));
            }
            Kind::Stdout => {
                let _ = logs.write(Stream::Stdout, &f.payload);
            }
            Kind::Stderr => {
                let _ = logs.write(Stream::Stderr, &f.payload);
            }
            _ => {}
        }
    }
}

fn run(run_dir: &Path, status: &mut Option<File>) -> Res<()> {
    let cfg = match super::read_config(run_dir) {
        Some(c) => c?,
        None => {
            return Err(format!(
                "{} has no {}",
                run_dir.display(),
                super::CONFIG_FILE
            ))
        }
    };
    // Every thread starts with SIGTERM and SIGINT blocked; one thread takes them.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block()
        .map_err(|e| format!("sigprocmask: {e}"))?;
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut times = vec![("shim", unix_ns() / 1000)];
    let mut logs = LogWriter::open(&cfg.log_dir, cfg.log_max_bytes, cfg.log_max_files)
        .map_err(|e| e.to_string())?;
    let cgroup = Cgroup::create(&cfg.cgroup_path, cfg.memory_limit)?;
    let ctl = run_dir.join(CTL_SOCKET);
    let _ = std::fs::remove_file(&ctl);
    let _ = std::fs::remove_file(&cfg.agent_socket);
    let started = Instant::now();
    let deadline = started + BOOT_TIMEOUT;
    times.push(("qemu", unix_ns() / 1000));
    let mut qemu = match spawn_qemu(&cfg, run_dir) {
        Ok(q) => q,
        Err(e) => {
            cgroup.remove();
            return Err(e);
        }
    };
    let fail = |qemu: &mut Child, msg: String| -> Res<()> {
        let _ = qemu.kill();
        let _ = qemu.wait();
        cgroup.remove();
        Err(msg)
    };
    if let Err(e) = cgroup.add(qemu.id()) {
        return fail(&mut qemu, e);
    }
    let mut agent = None;
    if let Some(start) = &cfg.start {
        let setup = (|| -> Res<UnixStream> {
            let mut s = connect_agent(&cfg.agent_socket, &mut qemu, run_dir, deadline)?;
            times.push(("connected", unix_ns() / 1000));
            let hello = Frame::control(
                Kind::Hello,
                0,
                &proto::Hello {
                    version: proto::VERSION,
                    kernel: None,
                },
            );
            proto::write_frame(&mut s, &hello).map_err(|e| format!("greeting the agent: {e}"))?;
            await_reply(&mut s, Kind::Hello, &mut logs, deadline)?;
            times.push(("hello", unix_ns() / 1000));
            let mut start = start.clone();
            start.time_unix_ns = unix_ns();
            let f = Frame::control(Kind::Start, 0, &start);
            proto::write_frame(&mut s, &f).map_err(|e| format!("starting the workload: {e}"))?;
            await_reply(&mut s, Kind::Started, &mut logs, deadline)?;
            times.push(("started", unix_ns() / 1000));
            // The main process reads end of file on stdin, as a container's does.
            proto::write_frame(&mut s, &Frame::data(Kind::Stdin, 0, Vec::new()))
                .map_err(|e| format!("closing the workload's stdin: {e}"))?;
            s.set_read_timeout(None).map_err(|e| e.to_string())?;
            Ok(s)
        })();
        match setup {
            Ok(s) => agent = Some(s),
            Err(e) => {
                let tail = qemu_tail(run_dir);
                let msg = if tail.is_empty() {
                    e
                } else {
                    format!("{e} (QEMU: {tail})")
                };
                return fail(&mut qemu, msg);
            }
        }
    }
    let text: String = times.iter().map(|(p, t)| format!("{p} {t}\n")).collect();
    let _ = std::fs::write(run_dir.join(TIMES_FILE), text);
    let state = ShimState {
        id: cfg.id.clone(),
        shim_pid: std::process::id() as i32,
        shim_start_ticks: warren_runtime::proc::self_start_ticks().map_err(|e| e.to_string())?,
        container_pid: qemu.id() as i32,
        started_at_ms: rshim::now_ms(),
    };
    if let Err(e) = rshim::write_json(&run_dir.join(STATE_FILE), &state) {
        return fail(&mut qemu, e.to_string());
    }
    let listener = match UnixListener::bind(&ctl) {
        Ok(l) => l,
        Err(e) => return fail(&mut qemu, format!("{}: {e}", ctl.display())),
    };
    let console_listener = match &cfg.console_attach {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            match UnixListener::bind(path) {
                Ok(l) => Some(l),
                Err(e) => return fail(&mut qemu, format!("{}: {e}", path.display())),
            }
        }
        None => None,
    };
    if let Some(mut s) = status.take() {
        let _ = s.write_all(b"ok");
    }

    let qemu_pid = qemu.id() as i32;
    let mut reader = None;
    let shared = match agent {
        Some(agent) => {
            let r = agent.try_clone().map_err(|e| e.to_string())?;
            let shared = Arc::new(Shared {
                agent: Mutex::new(agent),
                sessions: Mutex::new(HashMap::new()),
                next_channel: AtomicU32::new(1),
                reply: Mutex::new(None),
                control: Mutex::new(()),
                exit: Mutex::new(None),
                logs: Mutex::new(logs),
                run_dir: run_dir.to_path_buf(),
            });
            let sh = shared.clone();
            reader = Some(std::thread::spawn(move || read_agent(r, &sh)));
            let sh = shared.clone();
            std::thread::spawn(move || serve(listener, &sh));
            if let Some(serial) = cfg.console_socket.clone() {
                std::thread::spawn(move || super::console::run(&serial, console_listener, None));
            }
            Some(shared)
        }
        None => {
            // A full VM: its serial console is its log.
            if let Some(serial) = cfg.console_socket.clone() {
                std::thread::spawn(move || {
                    super::console::run(&serial, console_listener, Some(logs))
                });
            }
            None
        }
    };
    {
        let sh = shared.clone();
        std::thread::spawn(move || on_signals(mask, sh, qemu_pid));
    }
    let st = qemu.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    if let Some(r) = reader {
        // The agent's socket closes with QEMU; what it sent last is read by then.
        let until = Instant::now() + Duration::from_secs(2);
        while !r.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let oom = rshim::oom_kill_count(&cfg.cgroup_path).unwrap_or(0) > 0;
    let reported = shared.as_ref().and_then(|s| *s.exit.lock().unwrap());
    let info = exit_record(reported, st, oom, rshim::now_ms());
    if let Some(s) = &shared {
        let mut l = s.logs.lock().unwrap();
        let _ = l.finish(Stream::Stdout);
        let _ = l.finish(Stream::Stderr);
    }
    let _ = std::fs::remove_file(&ctl);
    let _ = std::fs::remove_file(&cfg.agent_socket);
    if let Some(path) = &cfg.console_attach {
        let _ = std::fs::remove_file(path);
    }
    cgroup.remove();
    rshim::write_json(&run_dir.join(EXIT_FILE), &info).map_err(|e| e.to_string())
}

/// The workload's exit: what the agent reported, or QEMU's own ending (a crash, a kill, a
/// guest that powered off without reporting).
fn exit_record(
    reported: Option<proto::Exit>,
    qemu: std::process::ExitStatus,
    oom: bool,
    at: u64,
) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    let (code, signal) = match (reported, qemu.signal()) {
        (Some(r), _) => (r.code, r.signal),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => match qemu.code() {
            Some(0) => (0, None),
            Some(c) => (c, None),
            None => (255, None),
        },
    };
    ExitInfo {
        code,
        signal,
        oom_killed: oom,
        finished_at_ms: at,
    }
}

fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The agent's frames: the main process's output into the logs, its exit kept, control
/// replies to their waiter, exec sessions' frames to their clients.
fn read_agent(mut r: UnixStream, sh: &Shared) {
    loop {
        let f = match proto::read_frame(&mut r) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                rshim::note(&sh.run_dir, &format!("reading the agent: {e}"));
                break;
            }
        };
        if f.channel == 0 {
            match f.kind {
                Kind::Stdout | Kind::Stderr => {
                    let stream = if f.kind == Kind::Stdout {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    if let Err(e) = sh.logs.lock().unwrap().write(stream, &f.payload) {
                        rshim::note(&sh.run_dir, &format!("writing the log: {e}"));
                    }
                }
                Kind::Exit => {
                    if let Ok(x) = f.parse::<proto::Exit>() {
                        *sh.exit.lock().unwrap() = Some(x);
                    }
                }
                Kind::Ack | Kind::Error => {
                    if let Some(tx) = sh.reply.lock().unwrap().take() {
                        let _ = tx.send(f);
                    }
                }
                _ => {}
            }
            continue;
        }
        let mut sessions = sh.sessions.lock().unwrap();
        let done = f.kind == Kind::Exit || f.kind == Kind::Error;
        if let Some(client) = sessions.get_mut(&f.channel) {
            let out = Frame {
                channel: 0,
                ..f.clone()
            };
            if proto::write_frame(client, &out).is_err() || done {
                if done {
                    let _ = client.shutdown(std::net::Shutdown::Write);
                }
                sessions.remove(&f.channel);
            }
        }
    }
    // The guest is gone: every session ends.
    for (_, c) in sh.sessions.lock().unwrap().drain() {
        let _ = c.shutdown(std::net::Shutdown::Both);
    }
}

fn serve(listener: UnixListener, sh: &Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let sh = sh.clone();
        std::thread::spawn(move || {
            if let Err(e) = session(conn, &sh) {
                rshim::note(&sh.run_dir, &format!("control connection: {e}"));
            }
        });
    }
}

/// One control connection: an exec session, or one control request.
fn session(mut conn: UnixStream, sh: &Shared) -> Res<()> {
    let first = match proto::read_frame(&mut conn).map_err(|e| e.to_string())? {
        Some(f) => f,
        None => return Ok(()),
    };
    match first.kind {
        Kind::Exec | Kind::CopyOut | Kind::CopyIn => {
            let ch = sh.next_channel.fetch_add(1, Ordering::Relaxed);
            let w = conn.try_clone().map_err(|e| e.to_string())?;
            sh.sessions.lock().unwrap().insert(ch, w);
            sh.send(&Frame {
                channel: ch,
                ..first
            })
            .map_err(|e| e.to_string())?;
            loop {
                match proto::read_frame(&mut conn) {
                    Ok(Some(f)) if matches!(f.kind, Kind::Stdin | Kind::Signal | Kind::Resize) => {
                        sh.send(&Frame { channel: ch, ..f })
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            // The client left: a session still running is ended.
            if sh.sessions.lock().unwrap().remove(&ch).is_some() {
                let kill = Frame::control(
                    Kind::Signal,
                    ch,
                    &proto::Signal {
                        signal: libc::SIGKILL,
                    },
                );
                let _ = sh.send(&kill);
            }
            Ok(())
        }
        Kind::Freeze | Kind::Thaw | Kind::TimeSync | Kind::Hosts => {
            let _one = sh.control.lock().unwrap();
            let (tx, rx) = mpsc::channel();
            *sh.reply.lock().unwrap() = Some(tx);
            sh.send(&Frame {
                channel: 0,
                ..first
            })
            .map_err(|e| e.to_string())?;
            let reply = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| proto::Message::error("the guest did not answer").to_frame(0));
            proto::write_frame(&mut conn, &reply).map_err(|e| e.to_string())
        }
        Kind::Signal | Kind::Poweroff => {
            sh.send(&Frame {
                channel: 0,
                ..first
            })
            .map_err(|e| e.to_string())?;
            proto::write_frame(&mut conn, &proto::Message::Ack.to_frame(0))
                .map_err(|e| e.to_string())
        }
        other => {
            let f = proto::Message::error(format!("{other:?} is not a request")).to_frame(0);
            proto::write_frame(&mut conn, &f).map_err(|e| e.to_string())
        }
    }
}

/// SIGTERM or SIGINT: the guest is asked to power off; QEMU is killed after the grace.
fn on_signals(mask: SigSet, sh: Option<Arc<Shared>>, qemu: i32) {
    loop {
        if mask.wait().is_err() {
            return;
        }
        match &sh {
            Some(sh) => {
                let grace = STOP_GRACE.as_millis() as u64;
                let _ = sh.send(&Frame::control(
                    Kind::Poweroff,
                    0,
                    &proto::Poweroff { grace_ms: grace },
                ));
            }
            None => {
                // A full VM: ACPI power button through QEMU's own SIGTERM handling.
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu), Signal::SIGTERM);
            }
        }
        std::thread::spawn(move || {
            std::thread::sleep(STOP_GRACE + Duration::from_secs(5));
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu), Signal::SIGKILL);
        });
    }
}
