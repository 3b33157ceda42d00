//! Tier-1 tests: real bridges, veth pairs, network namespaces and nftables tables.
//!
//! Every test creates its own namespaces (`warren-t-<random>-*`), its own bridge (never
//! `warren0`) and its own nftables table (never `warren`), sends traffic only to loopback and to
//! those namespaces, and removes all of it through a drop guard, also when it fails. Processes
//! are ended by the PID they were started with. The tests run one at a time (a lock) because
//! they share host-wide sysctls, which are restored to their previous values afterwards.
//! They need root and `ip`, `nft`, `nsenter`, `ping`, `python3` and `sysctl`
//! (`scripts/install-deps` installs them) and fail, saying what is missing, without them.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use warren_exec::{Cmd, Executor, HostExecutor};
use warren_net::bridge::{attach_veth, detach_veth, ensure_bridge, link, Netns, VethAttachment};
use warren_net::ipam::{allocate, Subnet};
use warren_net::nft::{self, Forward, Ruleset};
use warren_net::ports::{host_conflicts, host_listeners, PortMapping};
use warren_net::sysctl;

static SERIAL: Mutex<()> = Mutex::new(());

const PYTHON: &str = "/usr/bin/python3";

/// Undo actions run in reverse order on drop: commands, and children killed by PID.
#[derive(Default)]
struct Cleanup {
    steps: Vec<Step>,
}

enum Step {
    Run(Cmd),
    Kill(Child),
}

impl Cleanup {
    fn run(&mut self, cmd: Cmd) {
        self.steps.push(Step::Run(cmd));
    }
    fn kill(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.steps.push(Step::Kill(child));
        pid
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            match step {
                Step::Run(cmd) => {
                    match HostExecutor.run(&cmd) {
                        Ok(_) => {}
                        // Already gone (the test removed it itself).
                        Err(e) if e.stderr().contains("Cannot find device") => {}
                        Err(e) => eprintln!("cleanup: {e}"),
                    }
                }
                Step::Kill(mut child) => {
                    // `Child::kill` signals exactly this PID.
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
    }
}

fn require_host() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "tier-1 networking tests need root (effective uid is {uid})"
    );
    let missing: Vec<&str> = ["ip", "nft", "nsenter", "ping", "sysctl"]
        .into_iter()
        .filter(|p| warren_exec::resolve(p).is_none())
        .chain((!std::path::Path::new(PYTHON).exists()).then_some(PYTHON))
        .collect();
    assert!(
        missing.is_empty(),
        "tier-1 networking tests need {missing:?}: run scripts/install-deps as root"
    );
}

fn random_hex() -> String {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").expect("random uuid");
    uuid.trim().replace('-', "")[..6].to_string()
}

fn random_byte(hex: &str, at: usize) -> u8 {
    u8::from_str_radix(&hex[at..at + 2], 16).unwrap()
}

fn sh(cmd: Cmd) -> String {
    HostExecutor
        .run(&cmd)
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout_str()
}

fn ip(args: &[&str]) -> Cmd {
    Cmd::new("ip").args(args.iter().copied())
}

fn netns_exec(ns: &str, args: &[&str]) -> Cmd {
    ip(&["netns", "exec", ns]).args(args.iter().copied())
}

/// Names and addresses unique to one test run.
struct World {
    tag: String,
    bridge: String,
    subnet: Subnet,
    table: String,
}

impl World {
    fn new() -> World {
        let tag = random_hex();
        let subnet = Subnet::parse(&format!(
            "10.{}.{}.0/24",
            200 + random_byte(&tag, 0) % 50,
            random_byte(&tag, 2)
        ))
        .unwrap();
        let routes = sh(ip(&["-4", "-o", "route", "show"]));
        assert!(
            !routes.contains(&subnet.network().to_string()),
            "test subnet {subnet} is already routed on this host; run again"
        );
        World {
            bridge: format!("wtb{tag}"),
            table: format!("warren_t_{tag}"),
            tag,
            subnet,
        }
    }

    fn netns(&self, c: &mut Cleanup, suffix: &str) -> String {
        let name = format!("warren-t-{}-{suffix}", self.tag);
        sh(ip(&["netns", "add", &name]));
        c.run(ip(&["netns", "del", &name]));
        name
    }

    fn bridge(&self, c: &mut Cleanup) {
        c.run(ip(&["link", "del", "dev", &self.bridge]));
        let changes = ensure_bridge(&HostExecutor, &self.bridge, &self.subnet).unwrap();
        assert!(changes.created && changes.address_added && changes.brought_up);
        assert!(ensure_bridge(&HostExecutor, &self.bridge, &self.subnet)
            .unwrap()
            .unchanged());
    }

    fn attach(&self, c: &mut Cleanup, host_if: &str, netns: Netns, address: Ipv4Addr) {
        c.run(ip(&["link", "del", "dev", host_if]));
        attach_veth(
            &HostExecutor,
            &VethAttachment {
                host_if: host_if.to_string(),
                netns,
                bridge: self.bridge.clone(),
                address,
                subnet: self.subnet,
            },
        )
        .unwrap();
    }
}

/// Sets a sysctl for the test and restores the previous value on cleanup.
fn set_sysctl(c: &mut Cleanup, key: &str, value: &str) {
    if let Some(old) = sysctl::ensure(&HostExecutor, key, value).unwrap() {
        c.run(sysctl::write_cmd(key, &old));
    }
}

/// Starts `sleep` inside a named namespace and returns its PID once it is in there, so the
/// namespace can be addressed by PID as a container's would be.
fn holder_pid(c: &mut Cleanup, ns: &str) -> u32 {
    let child = warren_exec::std_command("ip")
        .unwrap()
        .args(["netns", "exec", ns, "sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("start sleep in namespace");
    let pid = c.kill(child);
    let want = std::fs::metadata(format!("/run/netns/{ns}")).unwrap().ino();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
        if now.ok() == Some(want) {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "process {pid} never entered {ns}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(16)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"warren-ok\n")
    c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(100).decode().strip())
"#;

/// Starts the TCP server inside `ns` on `port` and waits until it listens.
fn start_server(c: &mut Cleanup, ns: &str, port: u16) {
    let mut child = warren_exec::std_command("ip")
        .unwrap()
        .args(["netns", "exec", ns, PYTHON, "-c", SERVER, &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start server");
    let stdout = child.stdout.take().unwrap();
    c.kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "server in {ns} did not start");
}

fn free_port(bind: &str) -> u16 {
    TcpListener::bind((bind, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn host_fetch(port: u16) -> std::io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim().to_string())
}

fn netns_fetch(ns: &str, addr: Ipv4Addr, port: u16) -> Result<String, String> {
    HostExecutor
        .run(&netns_exec(
            ns,
            &[PYTHON, "-c", CLIENT, &addr.to_string(), &port.to_string()],
        ))
        .map(|o| o.stdout_str().trim().to_string())
        .map_err(|e| e.to_string())
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn two_namespaces_on_a_bridge_ping_each_other() {
    require_host();
    let _serial = lock();
    let w = World::new();
    let mut c = Cleanup::default();
    let ns_a = w.netns(&mut c, "a");
    let ns_b = w.netns(&mut c, "b");
    let pid_a = holder_pid(&mut c, &ns_a);
    w.bridge(&mut c);

    let mut taken = BTreeMap::new();
    let addr_a = allocate(&w.subnet, "a", &taken).unwrap();
    taken.insert("a".to_string(), addr_a);
    let addr_b = allocate(&w.subnet, "b", &taken).unwrap();
    taken.insert("b".to_string(), addr_b);
    assert_ne!(addr_a, addr_b);

    let veth_a = format!("wva{}", w.tag);
    let veth_b = format!("wvb{}", w.tag);
    w.attach(&mut c, &veth_a, Netns::Pid(pid_a), addr_a);
    w.attach(&mut c, &veth_b, Netns::Named(ns_b.clone()), addr_b);

    sh(netns_exec(
        &ns_a,
        &["ping", "-c1", "-W1", &addr_b.to_string()],
    ));
    sh(netns_exec(
        &ns_b,
        &["ping", "-c1", "-W1", &addr_a.to_string()],
    ));
    sh(netns_exec(
        &ns_b,
        &["ping", "-c1", "-W1", &w.subnet.gateway().to_string()],
    ));
    let route = sh(ip(&["-n", &ns_a, "route", "show", "default"]));
    assert!(
        route.contains(&format!("via {} dev eth0", w.subnet.gateway())),
        "{route}"
    );

    // Re-attaching replaces the stale pair (a new eth0 with a new MAC, so A forgets the old
    // neighbour entry); detaching removes it and is idempotent.
    w.attach(&mut c, &veth_b, Netns::Named(ns_b.clone()), addr_b);
    sh(ip(&["-n", &ns_a, "neigh", "flush", "all"]));
    sh(netns_exec(
        &ns_a,
        &["ping", "-c1", "-W1", &addr_b.to_string()],
    ));
    assert!(detach_veth(&HostExecutor, &veth_b).unwrap());
    assert!(link(&HostExecutor, &veth_b).unwrap().is_none());
    assert!(!detach_veth(&HostExecutor, &veth_b).unwrap());
    assert!(HostExecutor
        .run(&netns_exec(
            &ns_a,
            &["ping", "-c1", "-W1", &addr_b.to_string()]
        ))
        .is_err());
}

#[test]
fn published_port_reaches_a_namespace_from_the_host_and_another_machine() {
    require_host();
    let _serial = lock();
    let w = World::new();
    let mut c = Cleanup::default();
    let ns_b = w.netns(&mut c, "b");
    let ns_ext = w.netns(&mut c, "ext");
    w.bridge(&mut c);

    let addr_b = allocate(&w.subnet, "b", &BTreeMap::new()).unwrap();
    let veth_b = format!("wvb{}", w.tag);
    w.attach(&mut c, &veth_b, Netns::Named(ns_b.clone()), addr_b);

    // "Another machine": a namespace on its own point-to-point link to the host.
    let veth_ext = format!("wve{}", w.tag);
    let link_net = format!("10.{}.{}", 199, random_byte(&w.tag, 4));
    let host_side: Ipv4Addr = format!("{link_net}.1").parse().unwrap();
    c.run(ip(&["link", "del", "dev", &veth_ext]));
    sh(ip(&[
        "link", "add", &veth_ext, "type", "veth", "peer", "name", "eth0", "netns", &ns_ext,
    ]));
    sh(ip(&[
        "addr",
        "add",
        &format!("{host_side}/30"),
        "dev",
        &veth_ext,
    ]));
    sh(ip(&["link", "set", "dev", &veth_ext, "up"]));
    sh(ip(&[
        "-n",
        &ns_ext,
        "addr",
        "add",
        &format!("{link_net}.2/30"),
        "dev",
        "eth0",
    ]));
    sh(ip(&["-n", &ns_ext, "link", "set", "dev", "eth0", "up"]));

    // The minimum: forwarding for the other machine, route_localnet on the test bridge only
    // (for 127.0.0.1). Previous values come back on cleanup.
    set_sysctl(&mut c, sysctl::IP_FORWARD, "1");
    set_sysctl(&mut c, &sysctl::route_localnet_key(&w.bridge), "1");

    let container_port = 8000;
    start_server(&mut c, &ns_b, container_port);
    let local_port = free_port("127.0.0.1");
    let any_port = free_port("0.0.0.0");

    let mut rs = Ruleset::new(&w.bridge, w.subnet);
    rs.table = w.table.clone();
    rs.forwards = vec![
        Forward {
            workload: "b".into(),
            mapping: PortMapping::parse(&format!("127.0.0.1:{local_port}:{container_port}"))
                .unwrap(),
            address: addr_b,
        },
        Forward {
            workload: "b".into(),
            mapping: PortMapping::parse(&format!("{any_port}:{container_port}/tcp")).unwrap(),
            address: addr_b,
        },
    ];
    let pairs: Vec<(String, PortMapping)> = rs
        .forwards
        .iter()
        .map(|f| (f.workload.clone(), f.mapping))
        .collect();
    let listeners = host_listeners().unwrap();
    assert!(
        host_conflicts(&pairs, &listeners).is_empty(),
        "chosen ports are in use"
    );
    let text = nft::render(&rs).unwrap();

    c.run(
        Cmd::new("nft")
            .args(["-f", "-"])
            .stdin(nft::render_removal(&w.table).unwrap().into_bytes()),
    );
    assert!(!nft::table_exists(&HostExecutor, &w.table).unwrap());
    nft::apply(&HostExecutor, &w.table, &text).unwrap();
    assert!(nft::table_exists(&HostExecutor, &w.table).unwrap());

    assert_eq!(host_fetch(local_port).unwrap(), "warren-ok");
    assert_eq!(host_fetch(any_port).unwrap(), "warren-ok");
    assert_eq!(
        netns_fetch(&ns_ext, host_side, any_port).unwrap(),
        "warren-ok"
    );
    // The 127.0.0.1 mapping is not published on other addresses.
    assert!(netns_fetch(&ns_ext, host_side, local_port).is_err());

    // Applying again changes nothing.
    let list = || sh(Cmd::new("nft").args(["list", "table", "inet", &w.table]));
    let before = list();
    nft::apply(&HostExecutor, &w.table, &text).unwrap();
    assert_eq!(list(), before);
    assert_eq!(host_fetch(local_port).unwrap(), "warren-ok");

    // Deleting the table removes the forwards; deleting twice is fine.
    nft::remove(&HostExecutor, &w.table).unwrap();
    assert!(!nft::table_exists(&HostExecutor, &w.table).unwrap());
    nft::remove(&HostExecutor, &w.table).unwrap();
    assert!(host_fetch(local_port).is_err());
    assert!(netns_fetch(&ns_ext, host_side, any_port).is_err());

    // Re-applying restores them.
    nft::apply(&HostExecutor, &w.table, &text).unwrap();
    assert_eq!(list(), before);
    assert_eq!(host_fetch(local_port).unwrap(), "warren-ok");
    assert_eq!(
        netns_fetch(&ns_ext, host_side, any_port).unwrap(),
        "warren-ok"
    );
}
