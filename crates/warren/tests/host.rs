//! Tier-2 tests of what a daemon shares with its host: the resource budget (an apply over it
//! is refused and changes nothing; `warren info` shows it), a second daemon refused the bridge
//! or subnet another instance owns, an address already answering on the bridge never handed
//! out, and a remote API port already taken ending the daemon's start.

mod common;

use common::{Daemon, WARREN};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mem_total() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

fn info(d: &Daemon) -> serde_json::Value {
    serde_json::from_str(&d.ok(&["info", "-o", "json"])).unwrap()
}

fn names(d: &Daemon) -> Vec<String> {
    d.list()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_string())
        .collect()
}

fn generation(applied: &str) -> u64 {
    let at = applied.find("applied (generation ").expect(applied);
    applied[at + 20..]
        .split(')')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

const MIB: u64 = 1 << 20;

fn workload(name: &str, extra: &str) -> String {
    format!(
        "[workload.{name}]\nworld = \"busybox\"\ncommand = [\"sleep\", \"3600\"]\nnetwork = \"none\"\n{extra}\n"
    )
}

#[test]
fn an_apply_over_the_memory_budget_is_refused_and_changes_nothing() {
    let d = Daemon::start(&[]);
    let total = mem_total();
    // The host keeps all but 512 MiB for itself.
    let reserve = total - 512 * MIB;
    let first = format!(
        "[host]\nreserve_memory = {reserve}\nreserve_cpus = 0\n\n{}",
        workload("a", "resources = { memory = \"256M\" }")
    );
    let out = d.apply("one.toml", &first);
    let g1 = generation(&out);
    let b = &info(&d)["budget"];
    assert_eq!(b["memory_total"], total);
    assert_eq!(b["memory_reserved"], reserve);
    assert_eq!(b["memory_allocated"], 256 * MIB);
    assert_eq!(b["memory_left"], 256 * MIB);
    let text = d.ok(&["info"]);
    assert!(
        text.contains("memory budget") && text.contains("256.0 MiB allocated, 256.0 MiB left"),
        "{text}"
    );

    // A second file whose workload does not fit: refused at its memory key.
    let path = d.state_dir().join("two.toml");
    std::fs::write(
        &path,
        workload("b", "resources = { memory = \"300M\" }")
            + &workload("c", "")
            + &workload(
                "d",
                "state = \"stopped\"\nresources = { memory = \"100M\" }",
            ),
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("two.toml:5:24: workload.b.resources.memory: the workloads set to run need 556.0 MiB of memory together (a 256.0 MiB, b 300.0 MiB), more than the 512.0 MiB of memory this host has for workloads"),
        "{err}"
    );
    assert_eq!(names(&d), ["a"], "nothing was stored");
    // A reserve that leaves too little for what runs: refused at [host].
    let path3 = d.state_dir().join("three.toml");
    std::fs::write(
        &path3,
        format!("[host]\nreserve_memory = {}\n", total - 128 * MIB),
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", path3.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "three.toml:2:18: host.reserve_memory: the workloads set to run need 256.0 MiB"
        ),
        "{err}"
    );
    assert_eq!(
        info(&d)["budget"]["memory_reserved"],
        reserve,
        "reserve kept"
    );

    // Without b the file fits (c has no limit and claims nothing; d is stopped): the next
    // generation is the one after the first apply, so the refusals stored nothing.
    std::fs::write(
        &path,
        workload("c", "")
            + &workload(
                "d",
                "state = \"stopped\"\nresources = { memory = \"100M\" }",
            ),
    )
    .unwrap();
    let out = d.ok(&["apply", "-f", path.to_str().unwrap()]);
    assert_eq!(generation(&out), g1 + 1, "{out}");
    assert_eq!(names(&d), ["a", "c", "d"]);
    assert_eq!(info(&d)["budget"]["memory_allocated"], 256 * MIB);

    // CPUs over the budget are applied with a warning.
    let cpus = std::thread::available_parallelism().unwrap().get();
    let path4 = d.state_dir().join("four.toml");
    std::fs::write(
        &path4,
        workload("e", &format!("resources = {{ cpus = {} }}", cpus + 1)),
    )
    .unwrap();
    let out = d.cli(&["apply", "-f", path4.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: the workloads set to run may use {} CPUs together, more than the {cpus} this host has for them",
            cpus + 1
        )),
        "{err}"
    );
    assert_eq!(info(&d)["budget"]["cpus_allocated"], (cpus + 1) as f64);
}

/// Runs `warren daemon ARGS` on a fresh state dir and waits for it to end (killing it, by
/// PID, after 30 s): its exit status and everything it printed and logged.
fn daemon_that_fails(args: &[&str]) -> (std::process::ExitStatus, String) {
    let dir = tempfile::Builder::new()
        .prefix("warren-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut child = Command::new(WARREN)
        .arg("daemon")
        .args(args)
        .arg("--runc-root")
        .arg(dir.path().join("runc"))
        .env("WARREN_STATE_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon kept running: {args:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    // Nothing of the failed daemon stays behind: no claim, no pool.
    let instance = common::instance_of(dir.path());
    assert!(
        !std::path::Path::new(&format!("/run/warren/networks/{instance}.json")).exists(),
        "a refused daemon left its claim"
    );
    assert!(!dir.path().join("pool.img").exists());
    (status, text)
}

#[test]
fn a_second_daemon_is_refused_the_bridge_and_subnet_of_another() {
    let a = Daemon::start(&[]);
    // A bridge workload creates the bridge and takes the first address.
    a.apply(
        "w.toml",
        "[workload.first]\nworld = \"busybox\"\ncommand = [\"sleep\", \"3600\"]\n",
    );
    a.wait_running("first");
    let prefix = a.net.gateway.rsplit_once('.').unwrap().0.to_string();
    assert_eq!(
        a.get("first")["address"].as_str().unwrap(),
        format!("{prefix}.2")
    );
    let owner = a.state_dir().display().to_string();

    // The same bridge in another subnet.
    let (status, text) = daemon_that_fails(&[
        "--listen",
        "none",
        "--bridge",
        &a.net.bridge,
        "--subnet",
        "10.251.7.0/24",
    ]);
    assert!(!status.success());
    assert!(
        text.contains(&format!(
            "bridge {} belongs to the running daemon (pid {}) of state dir {owner}",
            a.net.bridge,
            a.daemon_pid()
        )) && text.contains("--bridge and --subnet"),
        "{text}"
    );
    // Another bridge in the same subnet.
    let (status, text) = daemon_that_fails(&[
        "--listen",
        "none",
        "--bridge",
        "wtsecond",
        "--subnet",
        &a.net.subnet,
    ]);
    assert!(!status.success());
    assert!(
        text.contains(&format!(
            "subnet {} (it uses {}",
            a.net.subnet, a.net.subnet
        )) && text.contains(&owner),
        "{text}"
    );
    assert!(
        Command::new("ip")
            .args(["link", "show", "wtsecond"])
            .output()
            .map(|o| !o.status.success())
            .unwrap(),
        "the refused daemon created its bridge"
    );

    // Something else answers on the bridge at the next free address: it is not handed out.
    let taken = format!("{prefix}.3");
    let ns = format!("wtimp{}", std::process::id());
    let veth = format!("wi{}", std::process::id() % 100000);
    let ip = |args: &[&str]| {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {out:?}");
    };
    ip(&["netns", "add", &ns]);
    let impostor = Impostor(ns.clone());
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
    ]);
    ip(&["link", "set", &veth, "master", &a.net.bridge, "up"]);
    ip(&[
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{taken}/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    let ping = Command::new("ping")
        .args(["-c", "1", "-W", "3", &taken])
        .output()
        .unwrap();
    assert!(ping.status.success(), "{ping:?}");
    a.apply(
        "w2.toml",
        "[workload.second]\nworld = \"busybox\"\ncommand = [\"sleep\", \"3600\"]\n",
    );
    a.wait_running("second");
    assert_eq!(
        a.get("second")["address"].as_str().unwrap(),
        format!("{prefix}.4")
    );
    assert!(
        a.log().contains(&format!("{taken} answers on bridge")),
        "{}",
        a.log()
    );
    drop(impostor);
}

/// The test's own network namespace (its veth goes with it), removed on drop.
struct Impostor(String);

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn a_remote_api_port_in_use_ends_the_start() {
    common::require_host();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let (status, text) = daemon_that_fails(&[
        "--listen",
        &addr,
        "--bridge",
        "wtport",
        "--subnet",
        "10.251.9.0/24",
    ]);
    assert!(!status.success());
    assert!(
        text.contains(&format!(
            "address {addr} in use by another process; pass --listen ADDR:PORT (or --listen none), or stop it"
        )),
        "{text}"
    );
    drop(holder);
}
