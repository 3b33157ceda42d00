//! Test harness for end-to-end tests: a real `warren daemon` on its own state dir (with its own
//! loop-backed btrfs pool), driven through the real CLI.
//!
//! Every daemon is torn down on drop: workloads deleted with --purge through the API, the daemon
//! ended by PID, leftover runc containers and cgroups of this instance removed, the pool
//! unmounted. Tests need root, runc, btrfs-progs and busybox-static and fail (never skip) without
//! them.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WARREN: &str = env!("CARGO_BIN_EXE_warren");

/// Fails the test with a clear reason when the host lacks what tier-2 tests need.
pub fn require_host() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "end-to-end tests need root (they create loop devices, mounts and containers)"
    );
    for (tool, pkg) in [
        ("runc", "runc"),
        ("mkfs.btrfs", "btrfs-progs"),
        ("busybox", "busybox-static"),
    ] {
        assert!(
            warren_exec::resolve(tool).is_some(),
            "{tool} is missing: apt-get install {pkg}"
        );
    }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub args: Vec<String>,
    /// A command the daemon runs under (`nsenter --net=...`), empty for none.
    pub wrapper: Vec<String>,
    /// This daemon's own bridge, subnet, nft table and ingress ports, so daemons of parallel
    /// tests never share network state.
    pub net: TestNet,
}

#[derive(Debug, Clone)]
pub struct TestNet {
    pub bridge: String,
    pub subnet: String,
    /// The bridge's gateway (first) address.
    pub gateway: String,
    pub table: String,
    pub http_port: u16,
    pub https_port: u16,
}

static NET_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestNet {
    fn new(instance: &str) -> TestNet {
        // Unique within this test process by sequence, across test processes by PID.
        let seq = NET_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 256;
        let second = 64 + std::process::id() % 128;
        TestNet {
            bridge: format!("wt{instance}"),
            subnet: format!("10.{second}.{seq}.0/24"),
            gateway: format!("10.{second}.{seq}.1"),
            table: format!("warren_t{instance}"),
            http_port: free_port(),
            https_port: free_port(),
        }
    }
}

impl Daemon {
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("warren.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    pub fn instance(&self) -> String {
        instance_of(self.dir.path())
    }

    pub fn runc_root(&self) -> PathBuf {
        self.dir.path().join("runc")
    }

    /// Starts a daemon with fast timings for tests.
    pub fn start(extra: &[&str]) -> Daemon {
        Self::start_under(&[], extra)
    }

    /// Starts a daemon as [`Daemon::start`] does, run under `wrapper` (e.g. `nsenter
    /// --net=/run/netns/NS`, which takes the daemon's path and arguments after it).
    pub fn start_under(wrapper: &[&str], extra: &[&str]) -> Daemon {
        require_host();
        let dir = tempfile::Builder::new()
            .prefix("warren-e2e-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut args: Vec<String> = [
            "daemon",
            "--pool-gib",
            "4",
            "--tick",
            "1",
            "--stop-timeout",
            "3",
            "--backoff-base-ms",
            "300",
            "--backoff-cap-ms",
            "3000",
            "--stable-ms",
            "5000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("--runc-root".into());
        args.push(dir.path().join("runc").display().to_string());
        let net = TestNet::new(&instance_of(dir.path()));
        for (flag, value) in [
            ("--bridge", net.bridge.clone()),
            ("--subnet", net.subnet.clone()),
            ("--nft-table", net.table.clone()),
            ("--http-port", net.http_port.to_string()),
            ("--https-port", net.https_port.to_string()),
        ] {
            args.push(flag.into());
            args.push(value);
        }
        // No remote API unless the test asks for one (port 7443 is shared by every daemon).
        if !extra.contains(&"--listen") {
            args.extend(["--listen".to_string(), "none".to_string()]);
        }
        // No mDNS announcement on the host's LAN unless the test asks for one.
        if !extra.contains(&"--mdns") && !extra.contains(&"--mdns-interface") {
            args.extend(["--mdns".to_string(), "off".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon {
            dir,
            child: None,
            args,
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            net,
        };
        d.spawn();
        d
    }

    /// (Re)starts the daemon process on the same state dir.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut cmd = match self.wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(WARREN);
                c
            }
            None => Command::new(WARREN),
        };
        let child = cmd
            .args(&self.args)
            .env("WARREN_STATE_DIR", self.dir.path())
            .env("WARREN_LOG", "info")
            // Daemons share one VM kernel and initramfs cache (and accelerator probe).
            .env("WARREN_VM_CACHE", vm_cache())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                break;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("daemon exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen in time:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn daemon_pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Ends the daemon process with `signal` and reaps it.
    pub fn kill_daemon(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), signal);
            let _ = c.wait();
        }
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(WARREN)
            .args(args)
            .env("WARREN_STATE_DIR", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run warren")
    }

    /// Runs the CLI and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "warren {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Writes a spec file into the state dir's parent temp dir and applies it.
    pub fn apply(&self, name: &str, toml: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        self.ok(&["apply", "-f", path.to_str().unwrap()])
    }

    pub fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["list", "-o", "json"])).unwrap()
    }

    pub fn get(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", name, "-o", "json"])).unwrap()
    }

    /// Polls `get NAME` until `pred` holds (or panics after `secs`).
    pub fn wait_for(
        &self,
        name: &str,
        secs: u64,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.get(name);
            if pred(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: timed out waiting for {what}; last: {v:#}\nevents:\n{}\ndaemon log:\n{}",
                self.ok(&["events", "-n", "200"]),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_running(&self, name: &str) -> i32 {
        let v = self.wait_for(name, 30, "running", |v| {
            v["state"] == "running" && v["pid"].is_i64()
        });
        v["pid"].as_i64().unwrap() as i32
    }

    pub fn pool_root(&self) -> PathBuf {
        self.dir.path().join("pool")
    }

    /// Removes everything this daemon created.
    fn teardown(&mut self) {
        if self.child.is_some() {
            if let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(
                &self.cli(&["list", "-o", "json"]).stdout,
            ) {
                for w in list {
                    let _ = self.cli(&["delete", "--purge", w["name"].as_str().unwrap()]);
                }
            }
            self.kill_daemon(nix::sys::signal::Signal::SIGTERM);
        }
        // Anything still known to runc under this daemon's root.
        let root = self.runc_root();
        if let Ok(out) = Command::new("runc")
            .args(["--root", root.to_str().unwrap(), "list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new("runc")
                    .args(["--root", root.to_str().unwrap(), "delete", "--force", id])
                    .output();
            }
        }
        // Network state: the namespaces (their veths go with them), the bridge, the table.
        if let Ok(rd) = std::fs::read_dir("/run/netns") {
            let prefix = format!("warren-{}-", self.instance());
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with(&prefix) {
                    let _ = Command::new("ip").args(["netns", "del", &n]).output();
                }
            }
        }
        // User namespaces kept for userns bridge workloads.
        if let Ok(rd) = std::fs::read_dir("/run/warren/userns") {
            let prefix = format!("warren-{}-", self.instance());
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = Command::new("umount").arg("-l").arg(e.path()).output();
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.net.bridge])
            .output();
        // The daemon's claim on its bridge and subnet.
        let _ = std::fs::remove_file(format!("/run/warren/networks/{}.json", self.instance()));
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.net.table])
            .output();
        for ctl in cgroup_controllers() {
            let dir = Path::new("/sys/fs/cgroup")
                .join(&ctl)
                .join(format!("warren-{}", self.instance()));
            remove_cgroup_tree(&dir);
        }
        let _ =
            warren_storage::pool::close_pool(self.dir.path(), Arc::new(warren_exec::HostExecutor));
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Makes sure the guest agent is installed next to the `warren` under test, where the daemon
/// looks for it: `cargo test` builds only the binaries of packages with integration tests, so
/// `warren-agent` is built here (once per test process; cargo holds no build lock while tests
/// run).
pub fn ensure_agent() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = Path::new(WARREN).with_file_name("warren-agent");
            let profile = Path::new(WARREN).parent().unwrap();
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["build", "-p", "warren-agent"])
                .env("CARGO_TARGET_DIR", profile.parent().unwrap())
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile.ends_with("release") {
                cmd.arg("--release");
            }
            let out = cmd.output().expect("running cargo build -p warren-agent");
            assert!(
                out.status.success() && bin.is_file(),
                "cargo build -p warren-agent: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            bin
        })
        .clone()
}

/// The VM kernel and initramfs cache every test daemon shares.
pub fn vm_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("vm-cache")
}

/// The daemon's instance id for a state dir (FNV-1a of its path, as the daemon computes it).
pub fn instance_of(dir: &Path) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in dir.as_os_str().as_encoded_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{:06x}", h & 0xff_ffff)
}

/// cgroup v1 controller dirs (or "" for a pure v2 host).
pub fn cgroup_controllers() -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let p = e.path();
            if p.join("cgroup.procs").exists() && !p.is_symlink() {
                v.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
        v.push(String::new());
    }
    v
}

fn remove_cgroup_tree(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The inode of /proc/PID/ns/NS.
pub fn ns_inode(pid: &str, ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .ino()
}

/// Whether PID is a live (non-zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
            !matches!(after.trim_start().chars().next(), Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

pub fn wait_until(secs: u64, what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A namespace acting as another machine, linked to the host by a veth pair.
pub struct Peer {
    /// The namespace's name.
    pub ns: String,
    pub host_if: String,
    /// The host's address on the link, which the namespace reaches.
    pub host_ip: String,
}

impl Peer {
    /// `wpeer-TAG`, linked by `wpTAG` on the host (192.168.THIRD.1) to its `eth0`
    /// (192.168.THIRD.2).
    pub fn new(tag: &str, third: u32) -> Peer {
        let ns = format!("wpeer-{tag}");
        let host_if = format!("wp{tag}");
        let host_ip = format!("192.168.{third}.1");
        let run = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        run(&["netns", "add", &ns]);
        let p = Peer {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_ip: host_ip.clone(),
        };
        run(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        run(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_if]);
        run(&["link", "set", "dev", &host_if, "up"]);
        run(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("192.168.{third}.2/24"),
            "dev",
            "eth0",
        ]);
        run(&["-n", &ns, "link", "set", "dev", "eth0", "up"]);
        run(&["-n", &ns, "link", "set", "dev", "lo", "up"]);
        p
    }

    /// `curl URL` from inside the namespace: the status code and the body.
    pub fn curl(&self, url: &str) -> (u32, String) {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns,
                "curl",
                "-s",
                "-m",
                "5",
                "-w",
                "\n%{http_code}",
                url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "dev", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}
