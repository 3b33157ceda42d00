//! The agent on Linux: PID 1's start ([`main`]) and the supervisor ([`Agent`]), one `poll(2)`
//! loop over the agent port, a `signalfd` for `SIGCHLD` and every process's pipes.
//!
//! **The port.** Opened non-blocking. A virtio-serial port reads end-of-file while no host is
//! connected and a write to it would wait for one, so the link has three states: no host
//! (probed every [`RECONNECT_POLL`] by a read), a host that has not said `Hello` yet, and ready.
//! Only a ready link is written. Frames wait in a queue; when the host goes away a frame half
//! written is dropped and the rest wait for the next host, after its `Hello` answer. While
//! the queue is longer than [`QUEUE_LIMIT`] or no host is ready, process output is not read
//! (the processes block on full pipes) so nothing is lost.
//!
//! **Processes.** Channel 0 is the main process; execs have the host's channels. Every child
//! is reaped here (the agent is PID 1, orphans included). When a process has been reaped its
//! pipes are drained, then `Exit` is sent. When the main process ends, or on `Poweroff`,
//! the agent sends what is queued, terminates every other process, syncs, unmounts and powers
//! off. Its own problems go to the serial console (stderr), never to the port.

mod copy;
mod net;
mod setup;
mod sys;

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use warren_vm::agent::proto::{
    ExecSpec, Exit, Hello, Hosts, Message, Poweroff, Resize, Signal, StartSpec, Started, TimeSync,
};
use warren_vm::agent::{Decoder, Frame, MAIN_CHANNEL, VERSION};

/// How often a port without a host is probed for one.
const RECONNECT_POLL: Duration = Duration::from_millis(50);
/// Queued output beyond which process pipes are no longer read.
const QUEUE_LIMIT: usize = 512 * 1024;
/// How long the final frames may take to leave before power-off.
const FLUSH_DEADLINE: Duration = Duration::from_secs(3);
/// How long other processes get between SIGTERM and SIGKILL at power-off.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// A line on the serial console.
pub fn log(msg: &str) {
    eprintln!("warren-agent: {msg}");
}

pub fn main() {
    if std::process::id() != 1 {
        log("must run as PID 1 of a microVM (the init of warren's initramfs)");
        std::process::exit(1);
    }
    setup::early_mounts();
    setup::load_modules();
    let port = match setup::find_port(Duration::from_secs(30)).and_then(|p| {
        let c = sys::cstr(&p.to_string_lossy())?;
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }) {
        Ok(p) => p,
        Err(e) => {
            log(&format!("no agent port: {e}"));
            sys::power_off();
        }
    };
    let sigchld = match sys::sigchld_fd() {
        Ok(s) => s,
        Err(e) => {
            log(&format!("signalfd: {e}"));
            sys::power_off();
        }
    };
    Agent::new(port, sigchld).run()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    NoHost,
    AwaitingHello,
    Ready,
}

/// One supervised process.
struct Proc {
    pid: i32,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_eof: bool,
    tty: bool,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pty: Option<OwnedFd>,
    exit: Option<Exit>,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Sig,
    Port,
    Out(u32),
    Err(u32),
    In(u32),
}

pub struct Agent {
    port: OwnedFd,
    sigchld: OwnedFd,
    link: Link,
    decoder: Decoder,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the queue's front frame already written.
    sent: usize,
    queued: usize,
    procs: BTreeMap<u32, Proc>,
    setup: Option<setup::Setup>,
    /// When the main process gets SIGKILL after a `Poweroff`.
    kill_at: Option<Instant>,
    /// Power off as soon as the queue is flushed.
    finishing: bool,
}

fn exit_of(status: i32) -> Exit {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        Exit {
            code: 128 + sig,
            signal: Some(sig),
        }
    } else {
        Exit {
            code: libc::WEXITSTATUS(status),
            signal: None,
        }
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR))
}

impl Agent {
    fn new(port: OwnedFd, sigchld: OwnedFd) -> Agent {
        Agent {
            port,
            sigchld,
            link: Link::NoHost,
            decoder: Decoder::new(),
            queue: VecDeque::new(),
            sent: 0,
            queued: 0,
            procs: BTreeMap::new(),
            setup: None,
            kill_at: None,
            finishing: false,
        }
    }

    fn send(&mut self, channel: u32, m: &Message) {
        self.send_frame(m.to_frame(channel));
    }

    fn send_frame(&mut self, f: Frame) {
        match f.encode() {
            Ok(b) => {
                self.queued += b.len();
                self.queue.push_back(b);
            }
            Err(e) => log(&format!("cannot encode a {:?} frame: {e}", f.kind)),
        }
    }

    fn run(mut self) -> ! {
        loop {
            if self.finishing {
                self.power_off();
            }
            let mut fds: Vec<libc::pollfd> = Vec::new();
            let mut slots: Vec<Slot> = Vec::new();
            let mut add = |fd: RawFd, events: libc::c_short, slot: Slot| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                slots.push(slot);
            };
            add(self.sigchld.as_raw_fd(), libc::POLLIN, Slot::Sig);
            if self.link != Link::NoHost {
                let mut ev = libc::POLLIN;
                if self.link == Link::Ready && !self.queue.is_empty() {
                    ev |= libc::POLLOUT;
                }
                add(self.port.as_raw_fd(), ev, Slot::Port);
            }
            let read_output = self.link == Link::Ready && self.queued < QUEUE_LIMIT;
            for (&ch, p) in &self.procs {
                if read_output {
                    if let Some(fd) = &p.stdout {
                        add(fd.as_raw_fd(), libc::POLLIN, Slot::Out(ch));
                    }
                    if let Some(fd) = &p.stderr {
                        add(fd.as_raw_fd(), libc::POLLIN, Slot::Err(ch));
                    }
                }
                if let Some(fd) = &p.stdin {
                    if !p.stdin_buf.is_empty() {
                        add(fd.as_raw_fd(), libc::POLLOUT, Slot::In(ch));
                    }
                }
            }
            let mut timeout: i32 = -1;
            if self.link == Link::NoHost {
                timeout = RECONNECT_POLL.as_millis() as i32;
            }
            if let Some(at) = self.kill_at {
                let ms = at
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(i32::MAX as u128) as i32;
                timeout = if timeout < 0 { ms } else { timeout.min(ms) };
            }
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if !would_block(&e) {
                    log(&format!("poll: {e}"));
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            if self.link == Link::NoHost {
                self.read_port();
            }
            for (pfd, slot) in fds.iter().zip(&slots) {
                if pfd.revents == 0 {
                    continue;
                }
                match *slot {
                    Slot::Sig => self.reap(),
                    Slot::Port => {
                        if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            self.read_port();
                        }
                    }
                    Slot::Out(ch) => self.read_output(ch, false),
                    Slot::Err(ch) => self.read_output(ch, true),
                    Slot::In(ch) => self.write_stdin(ch),
                }
            }
            if let Some(at) = self.kill_at {
                if Instant::now() >= at {
                    self.kill_at = None;
                    if let Some(p) = self.procs.get(&MAIN_CHANNEL) {
                        let _ = sys::kill(p.pid, libc::SIGKILL);
                    }
                }
            }
            self.finish_exited();
            self.flush();
        }
    }

    /// Reads what the port has; notices a host going away or arriving.
    fn read_port(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match sys::read(self.port.as_raw_fd(), &mut buf) {
                Ok(0) => {
                    if self.link != Link::NoHost {
                        self.host_gone();
                    }
                    return;
                }
                Ok(n) => {
                    if self.link == Link::NoHost {
                        self.link = Link::AwaitingHello;
                    }
                    self.decoder.push(&buf[..n]);
                    self.decode();
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    // A host is connected (with no host the read says end of file).
                    if self.link == Link::NoHost {
                        self.link = Link::AwaitingHello;
                    }
                    return;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => {
                    log(&format!("reading the agent port: {e}"));
                    self.host_gone();
                    return;
                }
            }
        }
    }

    fn host_gone(&mut self) {
        self.link = Link::NoHost;
        self.decoder = Decoder::new();
        if self.sent > 0 {
            if let Some(f) = self.queue.pop_front() {
                self.queued -= f.len();
            }
            self.sent = 0;
        }
    }

    fn decode(&mut self) {
        loop {
            match self.decoder.next() {
                Ok(Some(f)) => self.handle_frame(f),
                Ok(None) => return,
                Err(e) => {
                    // The stream is out of step: wait for the host to connect again.
                    log(&format!("bad frame from the host: {e}"));
                    self.decoder = Decoder::new();
                    self.link = Link::AwaitingHello;
                    return;
                }
            }
        }
    }

    fn handle_frame(&mut self, f: Frame) {
        let ch = f.channel;
        let m = match Message::from_frame(&f) {
            Ok(m) => m,
            Err(e) => {
                self.reply(ch, Message::error(e.to_string()));
                return;
            }
        };
        if self.link == Link::AwaitingHello && !matches!(m, Message::Hello(_)) {
            log(&format!("{:?} before Hello ignored", m.kind()));
            return;
        }
        match m {
            Message::Hello(h) => {
                if h.version != VERSION {
                    log(&format!(
                        "host speaks protocol {}, the agent {VERSION}",
                        h.version
                    ));
                }
                let answer = Message::Hello(Hello {
                    version: VERSION,
                    kernel: Some(sys::kernel_release()),
                })
                .to_frame(MAIN_CHANNEL);
                if let Ok(b) = answer.encode() {
                    // Before anything queued for the previous host, after a frame half sent.
                    self.queued += b.len();
                    let at = usize::from(self.sent > 0).min(self.queue.len());
                    self.queue.insert(at, b);
                }
                self.link = Link::Ready;
            }
            Message::Start(spec) => self.start(ch, &spec),
            Message::Exec(spec) => self.exec(ch, &spec),
            Message::CopyOut(spec) => self.copy(ch, true, &spec),
            Message::CopyIn(spec) => self.copy(ch, false, &spec),
            Message::Stdin(data) => self.stdin(ch, data),
            Message::Signal(Signal { signal }) => match self.procs.get(&ch) {
                Some(p) => {
                    if let Err(e) = sys::kill(p.pid, signal) {
                        self.reply(ch, Message::error(format!("signal {signal}: {e}")));
                    }
                }
                None => self.reply(ch, Message::error(format!("no process on channel {ch}"))),
            },
            Message::Resize(Resize { rows, cols }) => {
                let r = match self.procs.get(&ch).and_then(|p| p.pty.as_ref()) {
                    Some(m) => sys::set_winsize(m.as_raw_fd(), rows, cols),
                    None => Err(io::Error::other(format!("no terminal on channel {ch}"))),
                };
                if let Err(e) = r {
                    self.reply(ch, Message::error(format!("resize: {e}")));
                }
            }
            Message::Freeze => {
                let r = self.freeze(true);
                self.ack(ch, r);
            }
            Message::Thaw => {
                let r = self.freeze(false);
                self.ack(ch, r);
            }
            Message::TimeSync(TimeSync { unix_ns }) => {
                let r = sys::set_clock(unix_ns);
                self.ack(ch, r);
            }
            Message::Hosts(Hosts { text }) => {
                let r = setup::rewrite_hosts(&text);
                self.ack(ch, r);
            }
            Message::Poweroff(Poweroff { grace_ms }) => match self.procs.get(&MAIN_CHANNEL) {
                Some(p) if p.exit.is_none() => {
                    let _ = sys::kill(p.pid, libc::SIGTERM);
                    self.kill_at = Some(Instant::now() + Duration::from_millis(grace_ms));
                }
                _ => self.finishing = true,
            },
            other => log(&format!("unexpected {:?} from the host", other.kind())),
        }
    }

    fn reply(&mut self, ch: u32, m: Message) {
        self.send(ch, &m);
    }

    fn ack(&mut self, ch: u32, r: io::Result<()>) {
        match r {
            Ok(()) => self.reply(ch, Message::Ack),
            Err(e) => self.reply(ch, Message::error(e.to_string())),
        }
    }

    fn start(&mut self, ch: u32, spec: &StartSpec) {
        if ch != MAIN_CHANNEL || self.setup.is_some() {
            self.reply(
                ch,
                Message::error("Start is accepted once, on channel 0".to_string()),
            );
            return;
        }
        let r = setup::start(spec).and_then(|s| {
            let spawned = setup::spawn(&setup::ProcSpec {
                argv: &spec.argv,
                env: &spec.env,
                cwd: &spec.cwd,
                user: s.user,
                tty: None,
            });
            self.setup = Some(s);
            spawned
        });
        match r {
            Ok(p) => {
                self.reply(ch, Message::Started(Started { pid: p.pid }));
                self.add_proc(ch, p, false);
            }
            Err(e) => {
                log(&format!("start: {e}"));
                self.reply(ch, Message::error(format!("start: {e}")));
                self.finishing = true;
            }
        }
    }

    fn exec(&mut self, ch: u32, spec: &ExecSpec) {
        let Some(s) = &self.setup else {
            self.reply(ch, Message::error("the workload has not started"));
            return;
        };
        if ch == MAIN_CHANNEL || self.procs.contains_key(&ch) {
            self.reply(ch, Message::error(format!("channel {ch} is in use")));
            return;
        }
        let mut env = s.env.clone();
        env.extend(spec.env.iter().cloned());
        let r = setup::spawn(&setup::ProcSpec {
            argv: &spec.argv,
            env: &env,
            cwd: spec.cwd.as_deref().unwrap_or(&s.cwd),
            user: s.user,
            tty: spec.tty.then_some((spec.rows, spec.cols)),
        });
        match r {
            Ok(p) => {
                self.reply(ch, Message::Started(Started { pid: p.pid }));
                self.add_proc(ch, p, spec.tty);
            }
            Err(e) => self.reply(ch, Message::error(format!("exec: {e}"))),
        }
    }

    /// `CopyOut`/`CopyIn`: a child of the agent copying as root in the guest's root, with
    /// the tar stream on its stdout or stdin.
    fn copy(&mut self, ch: u32, out: bool, spec: &warren_vm::agent::CopySpec) {
        if self.setup.is_none() {
            self.reply(ch, Message::error("the workload has not started"));
            return;
        }
        if ch == MAIN_CHANNEL || self.procs.contains_key(&ch) {
            self.reply(ch, Message::error(format!("channel {ch} is in use")));
            return;
        }
        match copy::spawn(out, spec) {
            Ok(p) => {
                self.reply(ch, Message::Started(Started { pid: p.pid }));
                self.add_proc(ch, p, false);
            }
            Err(e) => self.reply(ch, Message::error(format!("copy: {e}"))),
        }
    }

    fn add_proc(&mut self, ch: u32, s: setup::Spawned, tty: bool) {
        self.procs.insert(
            ch,
            Proc {
                pid: s.pid,
                stdin: Some(s.stdin),
                stdin_buf: Vec::new(),
                stdin_eof: false,
                tty,
                stdout: Some(s.stdout),
                stderr: s.stderr,
                pty: s.pty,
                exit: None,
            },
        );
    }

    fn stdin(&mut self, ch: u32, data: Vec<u8>) {
        let Some(p) = self.procs.get_mut(&ch) else {
            return;
        };
        if p.stdin.is_none() {
            return;
        }
        if data.is_empty() {
            p.stdin_eof = true;
            if p.tty {
                // End of input on a terminal is its EOF character.
                p.stdin_buf.push(0x04);
            }
        } else {
            p.stdin_buf.extend_from_slice(&data);
        }
        self.write_stdin(ch);
    }

    fn write_stdin(&mut self, ch: u32) {
        let Some(p) = self.procs.get_mut(&ch) else {
            return;
        };
        let Some(fd) = &p.stdin else {
            return;
        };
        while !p.stdin_buf.is_empty() {
            match sys::write(fd.as_raw_fd(), &p.stdin_buf) {
                Ok(n) => {
                    p.stdin_buf.drain(..n);
                }
                Err(e) if would_block(&e) => return,
                Err(_) => {
                    // The process closed its input.
                    p.stdin_buf.clear();
                    p.stdin = None;
                    return;
                }
            }
        }
        if p.stdin_eof {
            p.stdin = None;
        }
    }

    /// Reads one chunk of a process's output into a frame; closes the stream at its end.
    fn read_output(&mut self, ch: u32, stderr: bool) {
        let mut buf = vec![0u8; 64 * 1024];
        self.read_chunk(ch, stderr, &mut buf);
    }

    /// Returns whether more may follow.
    fn read_chunk(&mut self, ch: u32, stderr: bool, buf: &mut [u8]) -> bool {
        let Some(p) = self.procs.get_mut(&ch) else {
            return false;
        };
        let slot = if stderr { &mut p.stderr } else { &mut p.stdout };
        let Some(fd) = slot else {
            return false;
        };
        match sys::read(fd.as_raw_fd(), buf) {
            Ok(0) => {
                *slot = None;
                false
            }
            Ok(n) => {
                let kind = if stderr {
                    warren_vm::agent::Kind::Stderr
                } else {
                    warren_vm::agent::Kind::Stdout
                };
                self.send_frame(Frame::data(kind, ch, buf[..n].to_vec()));
                true
            }
            Err(e) if would_block(&e) => false,
            Err(_) => {
                // EIO: a terminal whose other side is closed.
                *slot = None;
                false
            }
        }
    }

    fn reap(&mut self) {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        while sys::read(self.sigchld.as_raw_fd(), &mut info).is_ok() {}
        while let Some((pid, status)) = sys::reap_one() {
            if let Some(p) = self.procs.values_mut().find(|p| p.pid == pid) {
                p.exit = Some(exit_of(status));
            }
        }
    }

    /// Sends `Exit` for reaped processes after what their pipes still hold.
    fn finish_exited(&mut self) {
        let done: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.exit.is_some())
            .map(|(&c, _)| c)
            .collect();
        let mut buf = vec![0u8; 64 * 1024];
        for ch in done {
            for stderr in [false, true] {
                // What the pipe holds; a bound, as a process the exited one left behind may
                // keep writing to it.
                let mut chunks = 0;
                while chunks < 32 && self.read_chunk(ch, stderr, &mut buf) {
                    chunks += 1;
                }
            }
            let p = self.procs.remove(&ch).expect("listed");
            let exit = p.exit.expect("exited");
            self.send(ch, &Message::Exit(exit));
            if ch == MAIN_CHANNEL {
                self.finishing = true;
            }
        }
    }

    /// Writes queued frames until the port would block.
    fn flush(&mut self) {
        while self.link == Link::Ready {
            let Some(front) = self.queue.front() else {
                return;
            };
            match sys::write(self.port.as_raw_fd(), &front[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    if self.sent == front.len() {
                        self.queued -= front.len();
                        self.queue.pop_front();
                        self.sent = 0;
                    }
                }
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    log(&format!("writing the agent port: {e}"));
                    self.host_gone();
                    return;
                }
            }
        }
    }

    fn freeze(&mut self, freeze: bool) -> io::Result<()> {
        let Some(s) = &self.setup else {
            return Err(io::Error::other("the workload has not started"));
        };
        let mounts = s.workload_mounts.clone();
        if freeze {
            // Deepest first, so a failure thaws exactly what was frozen.
            let mut done: Vec<&String> = Vec::new();
            for m in mounts.iter().rev() {
                if let Err(e) = sys::freeze(m, true) {
                    for d in done {
                        let _ = sys::freeze(d, false);
                    }
                    return Err(e);
                }
                done.push(m);
            }
            Ok(())
        } else {
            let mut first_err = None;
            for m in &mounts {
                if let Err(e) = sys::freeze(m, false) {
                    // EINVAL: it was not frozen.
                    if e.raw_os_error() != Some(libc::EINVAL) && first_err.is_none() {
                        first_err = Some(e);
                    }
                }
            }
            first_err.map_or(Ok(()), Err)
        }
    }

    /// Sends what is queued (within [`FLUSH_DEADLINE`]), stops every process, syncs, unmounts
    /// and powers off.
    fn power_off(&mut self) -> ! {
        let start = Instant::now();
        while !self.queue.is_empty() && start.elapsed() < FLUSH_DEADLINE {
            if self.link == Link::NoHost {
                self.read_port();
            }
            self.flush();
            if self.queue.is_empty() {
                break;
            }
            let mut p = libc::pollfd {
                fd: self.port.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            unsafe { libc::poll(&mut p, 1, 20) };
            if p.revents & libc::POLLHUP != 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(s) = &self.setup {
            // Thaw first: a frozen filesystem would block the sync.
            for m in &s.workload_mounts {
                let _ = sys::freeze(m, false);
            }
        }
        let _ = sys::kill(-1, libc::SIGTERM);
        let start = Instant::now();
        while sys::reap_all() && start.elapsed() < KILL_GRACE {
            std::thread::sleep(Duration::from_millis(10));
        }
        if sys::reap_all() {
            let _ = sys::kill(-1, libc::SIGKILL);
            while sys::reap_all() && start.elapsed() < KILL_GRACE * 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        sys::sync();
        if let Some(s) = &self.setup {
            for m in s.all_mounts.iter().rev() {
                if let Err(e) = sys::umount(m, 0) {
                    let _ = sys::umount(m, libc::MNT_DETACH);
                    if m != "/proc" && m != "/sys" && m != "/dev" {
                        log(&format!("{e}"));
                    }
                }
            }
            if let Err(e) = sys::mount("", "/", "", libc::MS_REMOUNT | libc::MS_RDONLY, "") {
                log(&format!("{e}"));
            }
        }
        sys::power_off()
    }
}
