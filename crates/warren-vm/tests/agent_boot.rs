//! The guest agent for real: a microVM (QEMU 7.2, TCG) boots Debian's kernel with the
//! initramfs of [`warren_vm::initramfs::build_guest_initramfs`] (the `warren-agent` binary as
//! `/init`), an ext4 root made with `mkfs.ext4 -d` from a busybox tree, an ext4 data disk and
//! a tap NIC. Over the agent socket the test speaks [`warren_vm::agent::proto`]: the
//! handshake, `Start` (the main process's stdout and stderr), execs (an exit status, stdin
//! echoed back, a pty, the hostname, hosts file and network the agent configured, with a ping
//! of the host's end of the tap), freeze and thaw, time sync and a power-off that ends QEMU.
//! A second boot from the same data disk sees the file the first one wrote. Boot times are
//! printed.
//!
//! Needs root (the tap), `qemu-system-x86_64`, busybox-static and `mkfs.ext4`
//! (`scripts/install-deps`), and a kernel ([`warren_vm::kernel::ensure_kernel`], cached under
//! the target dir). The agent binary is built with `cargo build -p warren-agent` into the
//! target dir this test binary lives in (`target/debug/warren-agent`). QEMU is killed by its
//! PID if the test fails; the tap is deleted.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use warren_exec::{Cmd, Executor, HostExecutor};
use warren_vm::agent::proto::{
    self, CopySpec, ExecSpec, Exit, Hello, Message, Mount, NetConfig, Poweroff, Resize, Signal,
    StartSpec, TimeSync,
};
use warren_vm::config::{Accel, Boot, Disk, Mac, Nic};
use warren_vm::{initramfs, kernel, probe, qemu, VmConfig};

fn target_tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// Builds `warren-agent` into the target dir and profile of this test binary and returns its
/// path (`cargo build` may run here: cargo holds no build lock while tests run).
fn agent_binary() -> PathBuf {
    // target/debug/deps/agent_boot-HASH → target/debug
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec!["build", "-p", "warren-agent"];
    if profile_dir.ends_with("release") {
        args.push("--release");
    }
    let out = std::process::Command::new(cargo)
        .args(&args)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace)
        .output()
        .expect("running cargo build -p warren-agent");
    assert!(
        out.status.success(),
        "cargo build -p warren-agent: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join("warren-agent");
    assert!(bin.is_file(), "{} missing after the build", bin.display());
    bin
}

/// An ext4 image of a busybox tree (every applet a symlink in /bin).
fn root_image(dir: &Path) -> PathBuf {
    let tree = dir.join("rootfs");
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "data", "root"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("/bin/busybox (busybox-static, installed by scripts/install-deps)");
    let list = HostExecutor
        .run(&Cmd::new("busybox").arg("--list"))
        .unwrap()
        .stdout_str();
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    std::fs::write(tree.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(tree.join("etc/hosts"), "127.0.0.1 image-hosts\n").unwrap();
    let img = dir.join("root.img");
    HostExecutor
        .run(
            &Cmd::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "root", "-d"])
                .arg(&tree)
                .arg(&img)
                .arg("32M"),
        )
        .unwrap();
    img
}

fn data_image(dir: &Path) -> PathBuf {
    let img = dir.join("data.img");
    HostExecutor
        .run(
            &Cmd::new("mkfs.ext4")
                .args(["-q", "-F", "-L", "data"])
                .arg(&img)
                .arg("16M"),
        )
        .unwrap();
    img
}

/// A tap device with the host's end of a /30 on it, deleted on drop.
struct Tap {
    name: String,
    host: std::net::Ipv4Addr,
    guest: std::net::Ipv4Addr,
}

impl Tap {
    fn new() -> Tap {
        let id = std::process::id();
        let name = format!("wva{}", id % 10000);
        let net = [10, 231, (id % 250) as u8, 4];
        let host = std::net::Ipv4Addr::new(net[0], net[1], net[2], 5);
        let guest = std::net::Ipv4Addr::new(net[0], net[1], net[2], 6);
        let ip = |args: &[&str]| HostExecutor.run(&Cmd::new("ip").args(args));
        let _ = ip(&["tuntap", "del", "dev", &name, "mode", "tap"]);
        ip(&["tuntap", "add", "dev", &name, "mode", "tap"]).expect("a tap device (needs root)");
        let tap = Tap { name, host, guest };
        ip(&["addr", "add", &format!("{host}/30"), "dev", &tap.name]).unwrap();
        ip(&["link", "set", &tap.name, "up"]).unwrap();
        tap
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let _ = HostExecutor
            .run(&Cmd::new("ip").args(["tuntap", "del", "dev", &self.name, "mode", "tap"]));
    }
}

/// A running microVM and the agent connection.
struct Vm {
    qemu: Child,
    started: Instant,
    tx: UnixStream,
    rx: Receiver<(u32, Message)>,
    sock: PathBuf,
    console: PathBuf,
    stderr: PathBuf,
    /// Output per (channel, is stderr).
    output: HashMap<(u32, bool), Vec<u8>>,
    exits: HashMap<u32, Exit>,
    /// Milliseconds from QEMU's start to the agent's Hello.
    hello_ms: u128,
    kernel: String,
}

/// A thread reading messages from the agent connection.
fn reader(stream: &UnixStream) -> Receiver<(u32, Message)> {
    let mut reader = stream.try_clone().unwrap();
    let (send, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(Some(m)) = proto::read_message(&mut reader) {
            if send.send(m).is_err() {
                return;
            }
        }
    });
    rx
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.qemu.try_wait() {
            let _ = self.qemu.kill();
            let _ = self.qemu.wait();
        }
    }
}

impl Vm {
    fn boot(
        dir: &Path,
        tag: &str,
        k: &kernel::KernelFiles,
        initrd: &Path,
        disks: &[&Path],
        tap: Option<&Tap>,
    ) -> Vm {
        let mut c = VmConfig::kernel(
            &format!("agent-{tag}"),
            &k.vmlinuz,
            "console=ttyS0 panic=-1 loglevel=4",
        );
        if let Boot::Kernel { initrd: i, .. } = &mut c.boot {
            *i = Some(initrd.to_path_buf());
        }
        c.accel = Accel::Tcg;
        c.tsc_khz = probe::host_tsc_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap());
        c.memory_mib = 256;
        for d in disks {
            c.disks.push(Disk::raw(d));
        }
        c.nic = tap.map(|t| Nic {
            tap: t.name.clone(),
            mac: Mac::for_name(&c.name),
        });
        let sock = dir.join(format!("agent-{tag}.sock"));
        c.agent = Some(sock.clone());
        let console = dir.join(format!("console-{tag}.log"));
        c.console.log = Some(console.clone());
        let stderr = dir.join(format!("qemu-{tag}.stderr"));
        let started = Instant::now();
        let qemu = warren_exec::std_command(qemu::QEMU)
            .expect("qemu-system-x86_64 (qemu-system-x86, installed by scripts/install-deps)")
            .args(qemu::args(&c).unwrap())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut qemu = qemu;
        let stream = loop {
            if let Ok(s) = UnixStream::connect(&sock) {
                break s;
            }
            if let Some(st) = qemu.try_wait().unwrap() {
                panic!(
                    "QEMU exited ({st}): {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = qemu.kill();
                let _ = qemu.wait();
                panic!("no agent socket within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let rx = reader(&stream);
        let mut vm = Vm {
            qemu,
            started,
            tx: stream,
            rx,
            sock,
            console,
            stderr,
            output: HashMap::new(),
            exits: HashMap::new(),
            hello_ms: 0,
            kernel: String::new(),
        };
        vm.hello(Duration::from_secs(60));
        vm.hello_ms = vm.started.elapsed().as_millis();
        vm
    }

    /// The handshake: the host's Hello, the agent's answer first.
    fn hello(&mut self, timeout: Duration) {
        self.send(
            0,
            Message::Hello(Hello {
                version: proto::VERSION,
                kernel: None,
            }),
        );
        let (_, m) = self.next(timeout, "the agent's Hello");
        match m {
            Message::Hello(h) => {
                assert_eq!(h.version, proto::VERSION);
                self.kernel = h.kernel.unwrap_or_default();
            }
            other => panic!("{other:?} instead of Hello\n{}", self.diag()),
        }
    }

    /// Closes the agent connection, waits, connects again and says Hello.
    fn reconnect(&mut self, away: Duration) {
        let _ = self.tx.shutdown(std::net::Shutdown::Both);
        // Nothing is due before the exec's output.
        if let Ok((ch, m)) = self.rx.recv_timeout(Duration::from_millis(200)) {
            panic!("{m:?} on {ch} before the disconnect");
        }
        std::thread::sleep(away);
        let deadline = Instant::now() + Duration::from_secs(10);
        self.tx = loop {
            match UnixStream::connect(&self.sock) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "reconnecting: {e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        self.rx = reader(&self.tx);
        self.hello(Duration::from_secs(10));
    }

    fn diag(&self) -> String {
        let tail = |p: &Path| {
            let s = std::fs::read_to_string(p).unwrap_or_default();
            let start = s.len().saturating_sub(3000);
            s[s.floor_char_boundary_compat(start)..].to_string()
        };
        format!(
            "console:\n{}\nqemu stderr:\n{}",
            tail(&self.console),
            tail(&self.stderr)
        )
    }

    fn send(&mut self, ch: u32, m: Message) {
        proto::write_message(&mut self.tx, ch, &m).unwrap();
        self.tx.flush().unwrap();
    }

    /// The next message, recording output and exits on the way.
    fn next(&mut self, timeout: Duration, waiting_for: &str) -> (u32, Message) {
        match self.rx.recv_timeout(timeout) {
            Ok((ch, m)) => {
                match &m {
                    Message::Stdout(b) => self.output.entry((ch, false)).or_default().extend(b),
                    Message::Stderr(b) => self.output.entry((ch, true)).or_default().extend(b),
                    Message::Exit(e) => {
                        self.exits.insert(ch, *e);
                    }
                    _ => {}
                }
                (ch, m)
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("no {waiting_for} within {timeout:?}\n{}", self.diag())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!(
                    "the agent connection ended waiting for {waiting_for}\n{}",
                    self.diag()
                )
            }
        }
    }

    /// Reads messages until `f` accepts one (other channels' messages are recorded too).
    fn until(&mut self, what: &str, mut f: impl FnMut(u32, &Message) -> bool) -> (u32, Message) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (ch, m) = self.next(left, what);
            if f(ch, &m) {
                return (ch, m);
            }
        }
    }

    fn started(&mut self, ch: u32) -> i32 {
        match self.until(&format!("Started on {ch}"), |c, m| {
            c == ch && matches!(m, Message::Started(_) | Message::Error(_))
        }) {
            (_, Message::Started(s)) => s.pid,
            (_, m) => panic!("channel {ch}: {m:?}\n{}", self.diag()),
        }
    }

    fn exit(&mut self, ch: u32) -> Exit {
        if let Some(e) = self.exits.get(&ch) {
            return *e;
        }
        self.until(&format!("Exit on {ch}"), |c, m| {
            c == ch && matches!(m, Message::Exit(_))
        });
        self.exits[&ch]
    }

    fn out_when_done(&mut self, ch: u32) -> String {
        self.exit(ch);
        self.out(ch, false)
    }

    fn out(&self, ch: u32, stderr: bool) -> String {
        String::from_utf8_lossy(self.output.get(&(ch, stderr)).map_or(&[][..], |v| v)).into_owned()
    }

    fn ack(&mut self, ch: u32, what: &str) {
        match self.until(what, |c, m| {
            c == ch && matches!(m, Message::Ack | Message::Error(_))
        }) {
            (_, Message::Ack) => {}
            (_, m) => panic!("{what}: {m:?}\n{}", self.diag()),
        }
    }

    fn exec(&mut self, ch: u32, argv: &[&str], tty: bool) {
        self.send(
            ch,
            Message::Exec(ExecSpec {
                argv: argv.iter().map(|s| s.to_string()).collect(),
                env: vec![],
                cwd: None,
                tty,
                rows: 24,
                cols: 80,
            }),
        );
        self.started(ch);
    }

    /// Waits for QEMU to exit (the guest powered off); the milliseconds it took.
    fn wait_exit(&mut self, within: Duration) -> u128 {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(st) = self.qemu.try_wait().unwrap() {
                assert!(st.success(), "QEMU exited with {st}\n{}", self.diag());
                return t.elapsed().as_millis();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "QEMU still runs {within:?} after power-off\n{}",
            self.diag()
        );
    }
}

/// `str::floor_char_boundary` for the toolchains this workspace supports.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, i: usize) -> usize;
}

impl FloorCharBoundary for String {
    fn floor_char_boundary_compat(&self, mut i: usize) -> usize {
        while i > 0 && !self.is_char_boundary(i) {
            i -= 1;
        }
        i
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn start_spec(argv: &str, net: Option<NetConfig>) -> StartSpec {
    let disk = |device: &str, path: &str| Mount {
        device: device.into(),
        path: path.into(),
        fstype: "ext4".into(),
        readonly: false,
    };
    StartSpec {
        argv: vec!["sh".into(), "-c".into(), argv.into()],
        env: vec!["GREETING=hi".into()],
        cwd: "/".into(),
        user: None,
        hostname: "agent-guest".into(),
        root: disk("/dev/vda", "/"),
        mounts: vec![disk("/dev/vdb", "/data")],
        net,
        hosts: Some("127.0.0.1 localhost\n10.0.0.9 other-workload\n".into()),
        time_unix_ns: now_ns(),
    }
}

#[test]
fn the_agent_runs_the_workload_execs_freezes_and_powers_off() {
    let dir = tempfile::tempdir().unwrap();
    let k = kernel::ensure_kernel(&HostExecutor, &target_tmp().join("vm-kernel"))
        .expect("a kernel (WARREN_VM_KERNEL, or Debian's fetched with apt-get download)");
    let agent = agent_binary();
    let initrd = target_tmp().join("agent-initramfs").join("initramfs.cpio");
    let t = Instant::now();
    let rebuilt = initramfs::build_guest_initramfs(&HostExecutor, &agent, &k, &initrd).unwrap();
    let built_ms = t.elapsed().as_millis();
    let t = Instant::now();
    assert!(!initramfs::build_guest_initramfs(&HostExecutor, &agent, &k, &initrd).unwrap());
    let cached_ms = t.elapsed().as_millis();
    let root = root_image(dir.path());
    let data = data_image(dir.path());
    let tap = Tap::new();

    // First boot: the workload writes /data/x.
    let mut vm = Vm::boot(dir.path(), "1", &k, &initrd, &[&root, &data], Some(&tap));
    assert_eq!(vm.kernel, k.release);
    let mac = Mac::for_name("agent-1").to_string();
    vm.send(
        0,
        Message::Start(Box::new(start_spec(
            "echo out; echo err >&2; cat /data/x 2>/dev/null; echo hello > /data/x; sync; sleep 30",
            Some(NetConfig {
                mac,
                address: tap.guest,
                prefix: 30,
                gateway: tap.host,
            }),
        ))),
    );
    let main_pid = vm.started(0);
    let started_ms = vm.started.elapsed().as_millis();
    assert!(main_pid > 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(vm.out(0, false).contains("out\n") && vm.out(0, true).contains("err\n")) {
        assert!(
            Instant::now() < deadline,
            "main output: {:?} / {:?}",
            vm.out(0, false),
            vm.out(0, true)
        );
        vm.next(Duration::from_secs(30), "the main process's output");
    }
    assert_eq!(vm.out(0, false), "out\n", "the data disk starts empty");

    // An exit status.
    vm.exec(1, &["sh", "-c", "exit 7"], false);
    assert_eq!(
        vm.exit(1),
        Exit {
            code: 7,
            signal: None
        }
    );

    // Stdin echoed back, then end of input.
    vm.exec(2, &["cat"], false);
    vm.send(2, Message::Stdin(b"ping through the agent\n".to_vec()));
    vm.send(2, Message::Stdin(Vec::new()));
    assert_eq!(
        vm.exit(2),
        Exit {
            code: 0,
            signal: None
        }
    );
    assert_eq!(vm.out(2, false), "ping through the agent\n");

    // A terminal.
    vm.exec(
        3,
        &["sh", "-c", "tty; echo tty-ok; echo to-stderr >&2"],
        true,
    );
    assert_eq!(vm.exit(3).code, 0);
    let tty_out = vm.out(3, false);
    assert!(tty_out.contains("/dev/pts/"), "{tty_out:?}");
    assert!(tty_out.contains("tty-ok\r\n"), "{tty_out:?}");
    assert!(
        tty_out.contains("to-stderr"),
        "a tty's stderr is its stdout: {tty_out:?}"
    );
    assert_eq!(vm.out(3, true), "");

    // What Start configured: environment, hostname, hosts, mounts, the NIC and its route.
    vm.exec(
        4,
        &[
            "sh",
            "-c",
            &format!(
                "echo env=$GREETING; hostname; cat /etc/hosts; grep -c ' /data ext4 ' /proc/mounts; ip route; ping -c 1 -W 5 {}",
                tap.host
            ),
        ],
        false,
    );
    let e = vm.exit(4);
    let out = vm.out(4, false);
    assert_eq!(e.code, 0, "{out}\n{}", vm.out(4, true));
    for want in [
        "env=hi\n",
        "agent-guest\n",
        "10.0.0.9 other-workload\n",
        "1\n",
        &format!("default via {}", tap.host),
        "1 packets received",
    ] {
        assert!(out.contains(want), "{want:?} missing in:\n{out}");
    }
    assert!(!out.contains("image-hosts"), "{out}");

    // An exec that cannot start.
    vm.send(
        5,
        Message::Exec(ExecSpec {
            argv: vec!["/no/such/program".into()],
            env: vec![],
            cwd: None,
            tty: false,
            rows: 0,
            cols: 0,
        }),
    );
    match vm.until("Exec's Error", |c, m| {
        c == 5 && matches!(m, Message::Error(_) | Message::Started(_))
    }) {
        (_, Message::Error(_)) => {}
        (_, m) => panic!("{m:?}"),
    }

    // A terminal resized before it is read.
    vm.exec(6, &["sh", "-c", "read x; stty size"], true);
    vm.send(
        6,
        Message::Resize(Resize {
            rows: 33,
            cols: 101,
        }),
    );
    vm.send(6, Message::Stdin(b"\n".to_vec()));
    assert_eq!(vm.exit(6).code, 0);
    assert!(
        vm.out(6, false).contains("33 101"),
        "{:?}",
        vm.out(6, false)
    );

    // A signal to an exec.
    vm.exec(7, &["sleep", "30"], false);
    vm.send(7, Message::Signal(Signal { signal: 9 }));
    assert_eq!(
        vm.exit(7),
        Exit {
            code: 137,
            signal: Some(9)
        }
    );

    // The host goes away while an exec runs and comes back: its output and exit wait for it.
    vm.exec(8, &["sh", "-c", "sleep 1; echo after-reconnect"], false);
    vm.reconnect(Duration::from_secs(2));
    assert_eq!(vm.exit(8).code, 0);
    assert_eq!(vm.out(8, false), "after-reconnect\n");

    // Freeze holds writes to the workload's filesystems until Thaw.
    vm.send(0, Message::Freeze);
    vm.ack(0, "Freeze");
    vm.exec(9, &["sh", "-c", "echo x > /data/during-freeze"], false);
    let held = vm.rx.recv_timeout(Duration::from_millis(1500));
    assert!(
        held.is_err(),
        "the write to a frozen filesystem did not wait: {held:?}"
    );
    vm.send(0, Message::Thaw);
    vm.ack(0, "Thaw");
    assert_eq!(vm.exit(9).code, 0);
    vm.send(0, Message::TimeSync(TimeSync { unix_ns: now_ns() }));
    vm.ack(0, "TimeSync");

    // File copy in and out (`warren cp`): a tar stream placed in the guest with its mode,
    // read back; hostile archives refused with nothing written.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_size(0);
    b.append_data(&mut h, "conf", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o640);
    h.set_uid(33);
    h.set_size(7);
    b.append_data(&mut h, "conf/app.ini", &b"x=1\ny=2"[..])
        .unwrap();
    let archive = b.into_inner().unwrap();
    let copy = |path: &str, keep: bool| CopySpec {
        path: path.into(),
        contents: false,
        directory: false,
        keep_owners: keep,
    };
    vm.send(10, Message::CopyIn(copy("/data", true)));
    vm.started(10);
    for chunk in archive.chunks(3000) {
        vm.send(10, Message::Stdin(chunk.to_vec()));
    }
    vm.send(10, Message::Stdin(Vec::new()));
    assert_eq!(vm.exit(10).code, 0, "{}", vm.out(10, true));
    vm.exec(
        11,
        &[
            "sh",
            "-c",
            "stat -c '%a %u' /data/conf /data/conf/app.ini; cat /data/conf/app.ini",
        ],
        false,
    );
    assert_eq!(vm.exit(11).code, 0);
    assert_eq!(vm.out(11, false), "750 0\n640 33\nx=1\ny=2");
    vm.send(12, Message::CopyOut(copy("/data/conf", false)));
    vm.started(12);
    vm.send(12, Message::Stdin(Vec::new()));
    assert_eq!(vm.exit(12).code, 0, "{}", vm.out(12, true));
    let out = vm.output.get(&(12, false)).cloned().unwrap_or_default();
    let mut names = Vec::new();
    for e in tar::Archive::new(&out[..]).entries().unwrap() {
        let e = e.unwrap();
        names.push((
            e.path().unwrap().display().to_string(),
            e.header().mode().unwrap(),
            e.header().uid().unwrap(),
        ));
    }
    assert_eq!(
        names,
        [
            ("conf".to_string(), 0o750, 0),
            ("conf/app.ini".to_string(), 0o640, 33)
        ]
    );
    // `..` in an archive, and a path through a link out of the root: refused in the guest.
    let mut evil = Vec::new();
    {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..8].copy_from_slice(b"../evil\0");
        h.set_mode(0o644);
        h.set_size(0);
        h.set_cksum();
        evil.extend_from_slice(h.as_bytes());
        evil.resize(evil.len() + 1024, 0);
    }
    vm.send(13, Message::CopyIn(copy("/data", false)));
    vm.started(13);
    vm.send(13, Message::Stdin(evil));
    vm.send(13, Message::Stdin(Vec::new()));
    assert_eq!(vm.exit(13).code, 1);
    assert!(vm.out(13, true).contains(".."), "{}", vm.out(13, true));
    vm.send(14, Message::CopyOut(copy("/data/nothing-here", false)));
    vm.started(14);
    vm.send(14, Message::Stdin(Vec::new()));
    assert_eq!(vm.exit(14).code, 1);
    assert!(
        vm.out(14, true).contains("does not exist"),
        "{}",
        vm.out(14, true)
    );
    vm.exec(
        15,
        &["sh", "-c", "ls -a /data | grep -c -e evil -e warren-cp"],
        false,
    );
    assert_eq!(vm.out_when_done(15), "0\n");

    // Power-off: the main process gets SIGTERM, then the VM goes down.
    let t = Instant::now();
    vm.send(0, Message::Poweroff(Poweroff { grace_ms: 3000 }));
    let exit = vm.exit(0);
    assert_eq!(
        exit,
        Exit {
            code: 143,
            signal: Some(15)
        }
    );
    vm.wait_exit(Duration::from_secs(30));
    let off_ms = t.elapsed().as_millis();
    let first_hello = vm.hello_ms;
    let console1 = std::fs::read_to_string(&vm.console).unwrap_or_default();
    drop(vm);

    // Second boot from the same data disk, the root read-only this time: the file is there,
    // and stdin closed at once reads as end of file.
    let mut vm = Vm::boot(dir.path(), "2", &k, &initrd, &[&root, &data], None);
    let mut spec = start_spec(
        "cat /data/x; cat; touch /rootfs-write 2>/dev/null || echo ro",
        None,
    );
    spec.root.readonly = true;
    vm.send(0, Message::Start(Box::new(spec)));
    vm.started(0);
    vm.send(0, Message::Stdin(Vec::new()));
    assert_eq!(
        vm.exit(0),
        Exit {
            code: 0,
            signal: None
        }
    );
    assert_eq!(vm.out(0, false), "hello\nro\n");
    let exit_ms = vm.wait_exit(Duration::from_secs(30));
    // What the agent said about itself on the consoles (nothing, when all went well).
    let console2 = std::fs::read_to_string(&vm.console).unwrap_or_default();
    for l in console1.lines().chain(console2.lines()) {
        if l.contains("warren-agent:") {
            eprintln!("console: {l}");
        }
    }
    eprintln!(
        "initramfs ready in {built_ms} ms (rebuilt: {rebuilt}), then cached in {cached_ms} ms; boot to agent Hello: {first_hello} ms and {} ms; Started after {started_ms} ms; power-off to QEMU exit {off_ms} ms; main exit to QEMU exit {exit_ms} ms",
        vm.hello_ms
    );
}
