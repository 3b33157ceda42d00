//! FreeBSD host networking for bridge workloads, as command builders and parsers run through
//! the executor: warren's bridge (`ifconfig bridge create`, renamed after warren's setting,
//! holding the subnet's gateway address), IPv4 forwarding (`net.inet.ip.forwarding`), the
//! external interface (the default route's, for pf's NAT and redirects) and [`PfAnchor`],
//! which loads warren's pf anchor only when its text changed or the kernel's copy drifted.
//!
//! The epair of each jail is the jail runtime's (`warren-jail`); this module holds what is
//! shared by every workload. Everything compiles and is tested on every OS: the commands are
//! only built here and run by the executor the caller hands in.

use std::net::Ipv4Addr;

use warren_exec::{Cmd, ExecError, Executor};

use crate::ipam::Subnet;
use crate::nft::valid_ifname;
use crate::pf::{self, PfError};

/// The sysctl that lets the host route between the bridge and its other interfaces.
pub const FORWARDING: &str = "net.inet.ip.forwarding";

/// Errors of FreeBSD network setup.
#[derive(Debug, thiserror::Error)]
pub enum BsdNetError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error(transparent)]
    Pf(#[from] PfError),
    #[error("invalid interface name {0:?} (1 to 15 letters, digits, '_' or '.')")]
    Interface(String),
    #[error("`{command}` printed {output:?}: {reason}")]
    Output {
        command: String,
        output: String,
        reason: String,
    },
}

/// Checks a name warren gives an interface of its own.
pub fn check_ifname(name: &str) -> Result<(), BsdNetError> {
    if valid_ifname(name) && name.len() <= 15 && !name.contains(['-', ':']) {
        Ok(())
    } else {
        Err(BsdNetError::Interface(name.to_string()))
    }
}

/// `ifconfig NAME`: the interface's flags and addresses; fails when it does not exist.
pub fn show_cmd(name: &str) -> Cmd {
    Cmd::new("ifconfig").arg(name)
}

/// Whether a failed `ifconfig NAME` said there is no such interface.
pub fn is_missing(e: &ExecError) -> bool {
    e.stderr().contains("does not exist")
}

/// The IPv4 addresses and prefix lengths of one `ifconfig NAME` listing
/// (`inet 10.88.0.1 netmask 0xffff0000 broadcast 10.88.255.255`).
pub fn parse_inet(text: &str) -> Result<Vec<(Ipv4Addr, u8)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"inet") {
            continue;
        }
        let bad = |what: &str| format!("line {}: {what}: {line:?}", i + 1);
        let addr: Ipv4Addr = words
            .get(1)
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| bad("no IPv4 address"))?;
        let pos = words
            .iter()
            .position(|w| *w == "netmask")
            .ok_or_else(|| bad("no netmask"))?;
        let mask = words.get(pos + 1).ok_or_else(|| bad("no netmask value"))?;
        let mask = u32::from_str_radix(mask.trim_start_matches("0x"), 16)
            .map_err(|_| bad("netmask is not hexadecimal"))?;
        if mask.leading_ones() + mask.trailing_zeros() != 32 {
            return Err(bad("netmask is not contiguous"));
        }
        out.push((addr, mask.leading_ones() as u8));
    }
    Ok(out)
}

/// Whether an `ifconfig NAME` listing's flags say it is up (`flags=8843<UP,BROADCAST,...>`).
pub fn parse_up(text: &str) -> bool {
    text.lines().next().is_some_and(|l| {
        l.split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .is_some_and(|(flags, _)| flags.split(',').any(|f| f == "UP"))
    })
}

fn run(exec: &dyn Executor, c: &Cmd) -> Result<String, BsdNetError> {
    Ok(exec.run(c)?.stdout_str())
}

/// Makes warren's bridge `name` exist, up, with the subnet's gateway address. Returns what
/// had to be changed. A bridge created here is destroyed again when a later step fails.
pub fn ensure_bridge(
    exec: &dyn Executor,
    name: &str,
    subnet: &Subnet,
) -> Result<Vec<String>, BsdNetError> {
    check_ifname(name)?;
    let cidr = format!("{}/{}", subnet.gateway(), subnet.prefix());
    let listing = match exec.run(&show_cmd(name)) {
        Ok(out) => out.stdout_str(),
        Err(e) if is_missing(&e) => {
            let c = Cmd::new("ifconfig").args(["bridge", "create"]);
            let created = run(exec, &c)?.trim().to_string();
            let numbered = created
                .strip_prefix("bridge")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
            if !numbered {
                return Err(BsdNetError::Output {
                    command: c.argv_string(),
                    output: created,
                    reason: "not a new bridge's name".into(),
                });
            }
            if let Err(e) = run(exec, &Cmd::new("ifconfig").args([&created, "name", name])) {
                let _ = exec.run(&Cmd::new("ifconfig").args([&created, "destroy"]));
                return Err(e);
            }
            if let Err(e) = run(
                exec,
                &Cmd::new("ifconfig").args([name, "inet", &cidr, "up"]),
            ) {
                let _ = exec.run(&Cmd::new("ifconfig").args([name, "destroy"]));
                return Err(e);
            }
            return Ok(vec![format!("created bridge {name} ({subnet})")]);
        }
        Err(e) => return Err(e.into()),
    };
    let mut changed = Vec::new();
    let addrs = parse_inet(&listing).map_err(|reason| BsdNetError::Output {
        command: show_cmd(name).argv_string(),
        output: listing.clone(),
        reason,
    })?;
    if !addrs.contains(&(subnet.gateway(), subnet.prefix())) {
        run(
            exec,
            &Cmd::new("ifconfig").args([name, "inet", &cidr, "alias"]),
        )?;
        changed.push(format!("gave bridge {name} its address {cidr}"));
    }
    if !parse_up(&listing) {
        run(exec, &Cmd::new("ifconfig").args([name, "up"]))?;
        changed.push(format!("brought bridge {name} up"));
    }
    Ok(changed)
}

/// Turns IPv4 forwarding on if it is off. Returns whether it changed it.
pub fn ensure_forwarding(exec: &dyn Executor) -> Result<bool, BsdNetError> {
    let now = run(exec, &Cmd::new("sysctl").args(["-n", FORWARDING]))?;
    if now.trim() == "1" {
        return Ok(false);
    }
    run(exec, &Cmd::new("sysctl").arg(format!("{FORWARDING}=1")))?;
    Ok(true)
}

/// `route -n get default`: the default route, whose interface faces the outside.
pub fn default_route_cmd() -> Cmd {
    Cmd::new("route").args(["-n", "get", "default"])
}

/// The `interface:` of a `route -n get` answer.
pub fn parse_route_interface(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k.trim() == "interface")
            .then(|| v.trim().to_string())
            .filter(|v| check_ifname(v).is_ok())
    })
}

/// The external interface: the default route's.
pub fn external_interface(exec: &dyn Executor) -> Result<String, BsdNetError> {
    let c = default_route_cmd();
    let out = run(exec, &c)?;
    parse_route_interface(&out).ok_or_else(|| BsdNetError::Output {
        command: c.argv_string(),
        output: out,
        reason: "no usable `interface:` line; pf's NAT needs the default route's interface".into(),
    })
}

/// warren's pf anchor (`warren/<table>`) and the text last loaded into it.
#[derive(Debug, Clone)]
pub struct PfAnchor {
    anchor: String,
    last: Option<String>,
}

impl PfAnchor {
    pub fn new(table: &str) -> Result<PfAnchor, BsdNetError> {
        Ok(PfAnchor {
            anchor: pf::anchor(table)?,
            last: None,
        })
    }

    /// `warren/<table>`.
    pub fn name(&self) -> &str {
        &self.anchor
    }

    /// Whether this daemon has loaded (or found loaded) its anchor.
    pub fn loaded(&self) -> bool {
        self.last.is_some()
    }

    /// What differs between `text` and the kernel's copy of the anchor (`pfctl -s nat`,
    /// `pfctl -s rules`).
    pub fn drift(&self, exec: &dyn Executor, text: &str) -> Result<Vec<String>, BsdNetError> {
        let nat = run(exec, &pf::show_nat_cmd(&self.anchor))?;
        let rules = run(exec, &pf::show_rules_cmd(&self.anchor))?;
        Ok(pf::drift(text, &nat, &rules)?)
    }

    /// Loads `text` (`pfctl -a ANCHOR -f -`) when it differs from what was last loaded. The
    /// first time (a daemon just started) the kernel's copy is compared first and kept when
    /// it already matches, so a restart reloads nothing. Returns whether it loaded.
    pub fn sync(&mut self, exec: &dyn Executor, text: &str) -> Result<bool, BsdNetError> {
        match &self.last {
            Some(last) if last == text => return Ok(false),
            Some(_) => {}
            None => {
                if self.drift(exec, text)?.is_empty() {
                    self.last = Some(text.to_string());
                    return Ok(false);
                }
            }
        }
        run(exec, &pf::load_cmd(&self.anchor, text))?;
        self.last = Some(text.to_string());
        Ok(true)
    }

    /// Reloads the last loaded text if the kernel's copy drifted from it (the anchor was
    /// flushed, pf.conf reloaded). Returns the differences found (empty: nothing done).
    pub fn repair(&mut self, exec: &dyn Executor) -> Result<Vec<String>, BsdNetError> {
        let Some(text) = self.last.clone() else {
            return Ok(Vec::new());
        };
        let drift = self.drift(exec, &text)?;
        if !drift.is_empty() {
            run(exec, &pf::load_cmd(&self.anchor, &text))?;
        }
        Ok(drift)
    }
}
