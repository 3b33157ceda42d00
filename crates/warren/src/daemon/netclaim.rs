//! Which warren instance owns which bridge and subnet on this host, so two daemons (two state
//! dirs) never share one: both would hand out the same addresses and route to each other's
//! workloads.
//!
//! Each daemon records a claim at start, `<CLAIMS_DIR>/<instance>.json` (its state dir, pid,
//! bridge and subnet), and holds a lock on that file while it runs. Before claiming, it reads
//! every other claim under one directory-wide lock: a claim whose daemon runs (its file is
//! locked) or whose state dir still exists (its daemon is stopped, but its workloads outlive
//! it) owns its bridge and subnet, and a daemon asking for the same bridge or an overlapping
//! subnet refuses to start, naming the other instance's state dir. Claims of state dirs that
//! are gone are removed. On Linux the host's addresses are checked too: an interface other
//! than the bridge holding an address in the subnet (another instance from before claims, a
//! container engine's bridge, a LAN) refuses the start the same way, checked after the claims
//! so that another instance is named when it is the owner. [`conflict`] and
//! [`address_conflict`] are pure and unit-tested; [`claim`] does the file work.

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use warren_net::ipam::Subnet;

/// Where the claims live: a runtime directory, emptied by a reboot like the bridges are.
pub const CLAIMS_DIR: &str = if cfg!(target_os = "freebsd") {
    "/var/run/warren/networks"
} else {
    "/run/warren/networks"
};

/// One instance's claim on a bridge and subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub state_dir: String,
    pub pid: u32,
    pub bridge: String,
    pub subnet: String,
}

/// Another instance's claim as found on this host.
#[derive(Debug, Clone)]
pub struct Found {
    pub claim: Claim,
    pub file: PathBuf,
    /// Its daemon runs (it holds the claim's lock).
    pub running: bool,
    /// Its state dir still holds a store (the instance exists, daemon running or not).
    pub exists: bool,
}

/// Whether two subnets share an address.
pub fn overlaps(a: &Subnet, b: &Subnet) -> bool {
    a.contains(b.network()) || b.contains(a.network())
}

/// Why `ours` may not be claimed given the `others` found, or `None` when it may. Claims of
/// the same state dir and of instances that are gone are ignored.
pub fn conflict(ours: &Claim, others: &[Found]) -> Option<String> {
    let subnet = Subnet::parse(&ours.subnet).ok()?;
    for f in others {
        let c = &f.claim;
        if c.state_dir == ours.state_dir || !(f.running || f.exists) {
            continue;
        }
        let what = if c.bridge == ours.bridge {
            format!("bridge {}", ours.bridge)
        } else if Subnet::parse(&c.subnet).is_ok_and(|s| overlaps(&s, &subnet)) {
            format!(
                "subnet {} (it uses {} on {})",
                ours.subnet, c.subnet, c.bridge
            )
        } else {
            continue;
        };
        let whose = if f.running {
            format!(
                "the running daemon (pid {}) of state dir {}",
                c.pid, c.state_dir
            )
        } else {
            format!(
                "the warren instance of state dir {} (its daemon is stopped; its workloads may run)",
                c.state_dir
            )
        };
        return Some(format!(
            "{what} belongs to {whose}; start this daemon with another --bridge and --subnet, \
             or remove {} if that instance is gone",
            f.file.display()
        ));
    }
    None
}

/// The IPv4 addresses of every interface in `ip -j -4 addr show`: (interface, address, prefix).
pub fn parse_addrs(json: &str) -> Result<Vec<(String, Ipv4Addr, u8)>> {
    let links: Vec<serde_json::Value> =
        serde_json::from_str(json).context("parsing `ip -j addr show`")?;
    let mut out = Vec::new();
    for l in &links {
        let Some(name) = l.get("ifname").and_then(|n| n.as_str()) else {
            continue;
        };
        let infos = l.get("addr_info").and_then(|a| a.as_array());
        for a in infos.into_iter().flatten() {
            if a.get("family").and_then(|f| f.as_str()) != Some("inet") {
                continue;
            }
            let local = a
                .get("local")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok());
            let prefix = a.get("prefixlen").and_then(|p| p.as_u64());
            if let (Some(local), Some(prefix)) = (local, prefix) {
                out.push((name.to_string(), local, prefix.min(32) as u8));
            }
        }
    }
    Ok(out)
}

/// Why `subnet` may not be used on `bridge` given the host's `addrs`: another interface holds
/// an address in it, or a network it is part of.
pub fn address_conflict(
    bridge: &str,
    subnet: &Subnet,
    addrs: &[(String, Ipv4Addr, u8)],
) -> Option<String> {
    for (ifname, addr, prefix) in addrs {
        if ifname == bridge {
            continue;
        }
        let theirs = Subnet::parse(&format!("{addr}/{prefix}")).ok();
        if subnet.contains(*addr) || theirs.is_some_and(|t| overlaps(&t, subnet)) {
            return Some(format!(
                "subnet {subnet} overlaps {addr}/{prefix} of interface {ifname} on this host \
                 (another warren instance's bridge, or another network); start this daemon \
                 with another --subnet"
            ));
        }
    }
    None
}

/// A claim this daemon holds for as long as the value lives.
#[derive(Debug)]
pub struct Held {
    _file: std::fs::File,
}

fn lock(f: &std::fs::File, how: libc::c_int) -> bool {
    // SAFETY: flock on a valid fd.
    unsafe { libc::flock(f.as_raw_fd(), how) == 0 }
}

/// Checks `ours` against the other claims in `dir`, then runs `check` (the host's addresses),
/// then records it as `instance`'s, holding its lock; an error names the instance that owns
/// the bridge or subnet, and nothing is recorded.
pub fn claim(
    dir: &Path,
    instance: &str,
    ours: &Claim,
    check: impl FnOnce() -> Result<()>,
) -> Result<Held> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let guard_path = dir.join(".lock");
    let guard = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&guard_path)
        .with_context(|| format!("{}", guard_path.display()))?;
    // One daemon at a time checks and claims.
    if !lock(&guard, libc::LOCK_EX) {
        return Err(anyhow!("locking {}", guard_path.display()));
    }
    let mine = dir.join(format!("{instance}.json"));
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let path = e.path();
        if path == mine || path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(claim) = serde_json::from_str::<Claim>(&text) else {
            continue;
        };
        let running = match std::fs::File::open(&path) {
            Ok(f) => !lock(&f, libc::LOCK_SH | libc::LOCK_NB),
            Err(_) => false,
        };
        let exists = Path::new(&claim.state_dir).join("warren.db").exists();
        if !running && !exists {
            // Its state dir is gone: nothing owns this claim any more.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        found.push(Found {
            claim,
            file: path,
            running,
            exists,
        });
    }
    if let Some(why) = conflict(ours, &found) {
        return Err(anyhow!(why));
    }
    check()?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&mine)
        .with_context(|| format!("{}", mine.display()))?;
    if !lock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        return Err(anyhow!("{} is locked by another daemon", mine.display()));
    }
    file.set_len(0)?;
    std::io::Write::write_all(&mut &file, &serde_json::to_vec_pretty(ours)?)
        .with_context(|| format!("{}", mine.display()))?;
    drop(guard);
    Ok(Held { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim_of(dir: &str, bridge: &str, subnet: &str) -> Claim {
        Claim {
            state_dir: dir.into(),
            pid: 42,
            bridge: bridge.into(),
            subnet: subnet.into(),
        }
    }

    fn found(c: Claim, running: bool, exists: bool) -> Found {
        Found {
            claim: c,
            file: PathBuf::from("/run/warren/networks/abc.json"),
            running,
            exists,
        }
    }

    #[test]
    fn a_bridge_or_an_overlapping_subnet_of_another_instance_is_refused() {
        let ours = claim_of("/var/lib/b", "warren0", "10.88.0.0/16");
        let other = claim_of("/var/lib/a", "warren0", "10.89.0.0/16");
        let why = conflict(&ours, &[found(other.clone(), true, true)]).unwrap();
        assert_eq!(
            why,
            "bridge warren0 belongs to the running daemon (pid 42) of state dir /var/lib/a; \
             start this daemon with another --bridge and --subnet, or remove \
             /run/warren/networks/abc.json if that instance is gone"
        );
        let stopped = conflict(&ours, &[found(other.clone(), false, true)]).unwrap();
        assert!(stopped.contains("its daemon is stopped"), "{stopped}");
        // Gone instances and our own earlier claim do not count.
        assert_eq!(conflict(&ours, &[found(other, false, false)]), None);
        let me = claim_of("/var/lib/b", "warren0", "10.88.0.0/16");
        assert_eq!(conflict(&ours, &[found(me, true, true)]), None);
        // Another bridge in an overlapping subnet.
        let inner = claim_of("/var/lib/a", "warren1", "10.88.4.0/24");
        let why = conflict(&ours, &[found(inner, true, true)]).unwrap();
        assert!(
            why.starts_with("subnet 10.88.0.0/16 (it uses 10.88.4.0/24 on warren1) belongs to"),
            "{why}"
        );
        let apart = claim_of("/var/lib/a", "warren1", "10.89.0.0/16");
        assert_eq!(conflict(&ours, &[found(apart, true, true)]), None);
    }

    #[test]
    fn host_addresses_in_the_subnet_are_refused() {
        let json = r#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.1.5","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]},
            {"ifindex":5,"ifname":"warren0","addr_info":[{"family":"inet","local":"10.88.0.1","prefixlen":16}]},
            {"ifindex":6,"ifname":"docker0","addr_info":[{"family":"inet","local":"172.17.0.1","prefixlen":16}]}]"#;
        let addrs = parse_addrs(json).unwrap();
        assert_eq!(addrs.len(), 4);
        assert_eq!(
            addrs[2],
            ("warren0".into(), "10.88.0.1".parse().unwrap(), 16)
        );
        let s = |t: &str| Subnet::parse(t).unwrap();
        // The bridge's own address is fine.
        assert_eq!(
            address_conflict("warren0", &s("10.88.0.0/16"), &addrs),
            None
        );
        assert_eq!(
            address_conflict("wt1", &s("10.88.0.0/16"), &addrs).unwrap(),
            "subnet 10.88.0.0/16 overlaps 10.88.0.1/16 of interface warren0 on this host \
             (another warren instance's bridge, or another network); start this daemon with \
             another --subnet"
        );
        assert!(address_conflict("wt1", &s("172.16.0.0/12"), &addrs)
            .unwrap()
            .contains("docker0"));
        assert_eq!(address_conflict("wt1", &s("10.99.0.0/24"), &addrs), None);
        assert!(parse_addrs("nope").is_err());
    }

    fn ok() -> Result<()> {
        Ok(())
    }

    #[test]
    fn claims_are_recorded_held_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a_state = tempfile::tempdir().unwrap();
        std::fs::write(a_state.path().join("warren.db"), b"").unwrap();
        let a = claim_of(a_state.path().to_str().unwrap(), "wa", "10.200.0.0/24");
        let held = claim(dir.path(), "aaa", &a, ok).unwrap();
        let text = std::fs::read_to_string(dir.path().join("aaa.json")).unwrap();
        assert_eq!(serde_json::from_str::<Claim>(&text).unwrap(), a);
        // The same bridge, then the same subnet, from another state dir: refused.
        let b = claim_of("/nonexistent/b", "wa", "10.201.0.0/24");
        let err = claim(dir.path(), "bbb", &b, ok).unwrap_err().to_string();
        assert!(
            err.contains("the running daemon") && err.contains(&a.state_dir),
            "{err}"
        );
        let b = claim_of("/nonexistent/b", "wb", "10.200.0.128/25");
        assert!(claim(dir.path(), "bbb", &b, ok).is_err());
        // A's daemon stops: its state dir still exists, so it still owns them.
        drop(held);
        let err = claim(dir.path(), "bbb", &b, ok).unwrap_err().to_string();
        assert!(err.contains("its daemon is stopped"), "{err}");
        // A's state dir is gone: its claim is swept and B may have them.
        drop(a_state);
        let _b = claim(dir.path(), "bbb", &b, ok).unwrap();
        assert!(!dir.path().join("aaa.json").exists());
        assert!(dir.path().join("bbb.json").exists());
        // The same instance again (a restart) is fine.
        drop(_b);
        let _again = claim(dir.path(), "bbb", &b, ok).unwrap();
        // A failing host check records nothing.
        let c = claim_of("/nonexistent/c", "wc", "10.202.0.0/24");
        let err = claim(dir.path(), "ccc", &c, || Err(anyhow!("overlaps eth0")));
        assert_eq!(err.unwrap_err().to_string(), "overlaps eth0");
        assert!(!dir.path().join("ccc.json").exists());
    }
}
