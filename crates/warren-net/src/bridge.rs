//! The workload bridge and the veth pairs that attach workloads to it.
//!
//! Pure command builders (exact `ip` argv, checked by the tests) and parsers of `ip -j` JSON,
//! plus the Linux functions that run them through a [`warren_exec::Executor`]:
//!
//! - [`ensure_bridge`] makes the bridge exist with the subnet's gateway address and be up,
//!   changing only what is missing (it reads `ip -j -d link show` and `ip -j addr show` first);
//! - [`attach_veth`] creates a veth pair whose peer is created directly inside the workload's
//!   network namespace as `eth0` (`ip link add H type veth peer name eth0 address MAC netns PID`, so no
//!   temporary name ever exists in the host namespace), enslaves the host end to the bridge,
//!   and configures the address and default route inside the namespace with
//!   `nsenter -t PID -n ip ...` (containers are known by PID) or `ip -n NAME ...`
//!   (named namespaces);
//! - [`detach_veth`] deletes the host end, which deletes its peer too.

use std::net::Ipv4Addr;

use warren_exec::Cmd;

use crate::ipam::Subnet;
use crate::nft::valid_ifname;

/// The interface name workloads see.
pub const WORKLOAD_IF: &str = "eth0";

/// The default bridge name.
pub const DEFAULT_BRIDGE: &str = "warren0";

/// Errors of bridge and veth management.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("invalid interface name {0:?}: 1 to 15 characters, no whitespace, '/', ':' or quotes")]
    Name(String),
    #[error("invalid network namespace name {0:?}")]
    NetnsName(String),
    #[error("{name} exists but is a {kind} link, not a bridge")]
    NotABridge { name: String, kind: String },
    #[error("cannot parse `ip -j` output for {name}: {reason}")]
    Json { name: String, reason: String },
    #[error("{what}: {source}")]
    Exec {
        what: String,
        #[source]
        source: warren_exec::ExecError,
    },
    #[error("address {address} is not a workload address of subnet {subnet}")]
    Address { address: Ipv4Addr, subnet: Subnet },
}

/// A network namespace, by the PID of a process inside it or by its `ip netns` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Pid(u32),
    Named(String),
}

impl Netns {
    /// The argument `ip link ... netns X` takes.
    pub fn ip_arg(&self) -> String {
        match self {
            Netns::Pid(p) => p.to_string(),
            Netns::Named(n) => n.clone(),
        }
    }

    /// Checks a named namespace's name (PIDs are always acceptable).
    pub fn validate(&self) -> Result<(), LinkError> {
        match self {
            Netns::Pid(_) => Ok(()),
            Netns::Named(n) if valid_netns_name(n) => Ok(()),
            Netns::Named(n) => Err(LinkError::NetnsName(n.clone())),
        }
    }
}

/// Whether `n` is a safe `ip netns` name: letters, digits, `-`, `_`, `.`; not `.` or `..`.
pub fn valid_netns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n != "."
        && n != ".."
        && !n.starts_with('-')
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks an interface name (see [`valid_ifname`]), refusing a leading `-` too.
pub fn check_name(name: &str) -> Result<(), LinkError> {
    if valid_ifname(name) && !name.starts_with('-') {
        Ok(())
    } else {
        Err(LinkError::Name(name.to_string()))
    }
}

fn ip(args: &[&str]) -> Cmd {
    Cmd::new("ip").args(args.iter().copied())
}

/// `ip -j -d link show dev NAME`: the link with its kind.
pub fn link_show_cmd(name: &str) -> Cmd {
    ip(&["-j", "-d", "link", "show", "dev", name])
}

/// `ip -j addr show dev NAME`.
pub fn addr_show_cmd(name: &str) -> Cmd {
    ip(&["-j", "addr", "show", "dev", name])
}

/// `ip link add name NAME type bridge`.
pub fn bridge_add_cmd(name: &str) -> Cmd {
    ip(&["link", "add", "name", name, "type", "bridge"])
}

/// `ip addr add ADDR/PREFIX dev NAME`.
pub fn addr_add_cmd(name: &str, addr: Ipv4Addr, prefix: u8) -> Cmd {
    ip(&["addr", "add", &format!("{addr}/{prefix}"), "dev", name])
}

/// `ip link set dev NAME up`.
pub fn link_up_cmd(name: &str) -> Cmd {
    ip(&["link", "set", "dev", name, "up"])
}

/// `ip tuntap add dev NAME mode tap`: a persistent tap device (a VM's NIC), deleted like any
/// link.
pub fn tap_add_cmd(name: &str) -> Cmd {
    ip(&["tuntap", "add", "dev", name, "mode", "tap"])
}

/// `ip link del dev NAME`.
pub fn link_del_cmd(name: &str) -> Cmd {
    ip(&["link", "del", "dev", name])
}

/// The workload side's MAC address for `addr`: locally administered, derived from the address
/// (`02:42:` and its four bytes), so an address handed to a new workload keeps its MAC and
/// neighbours' ARP caches stay right.
pub fn mac_for(addr: Ipv4Addr) -> String {
    let [a, b, c, d] = addr.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// `ip link add HOST type veth peer name eth0 address MAC netns NS`: the peer is born inside
/// the namespace, with the MAC of [`mac_for`].
pub fn veth_add_cmd(host_if: &str, netns: &Netns, addr: Ipv4Addr) -> Cmd {
    ip(&[
        "link",
        "add",
        host_if,
        "type",
        "veth",
        "peer",
        "name",
        WORKLOAD_IF,
        "address",
        &mac_for(addr),
        "netns",
        &netns.ip_arg(),
    ])
}

/// `ip netns add NAME`: a named namespace, bind-mounted at `/run/netns/NAME`.
pub fn netns_add_cmd(name: &str) -> Cmd {
    ip(&["netns", "add", name])
}

/// `ip netns del NAME`.
pub fn netns_del_cmd(name: &str) -> Cmd {
    ip(&["netns", "del", name])
}

/// `ip -j link show`: every link of the host namespace.
pub fn links_cmd() -> Cmd {
    ip(&["-j", "link", "show"])
}

/// Each interface in `ip -j link show` output with the bridge it is enslaved to, if any.
pub fn parse_link_masters(json: &str) -> Result<Vec<(String, Option<String>)>, LinkError> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| LinkError::Json {
        name: "link list".into(),
        reason: e.to_string(),
    })?;
    let items = v.as_array().ok_or_else(|| LinkError::Json {
        name: "link list".into(),
        reason: "not a JSON array".into(),
    })?;
    Ok(items
        .iter()
        .filter_map(|l| {
            let name = l.get("ifname")?.as_str()?.to_string();
            let master = l.get("master").and_then(|m| m.as_str()).map(str::to_string);
            Some((name, master))
        })
        .collect())
}

/// `ip link set dev HOST master BRIDGE`.
pub fn set_master_cmd(host_if: &str, bridge: &str) -> Cmd {
    ip(&["link", "set", "dev", host_if, "master", bridge])
}

/// An `ip` command run inside a namespace: `nsenter -t PID -n ip ARGS` or `ip -n NAME ARGS`.
pub fn ip_in(netns: &Netns, args: &[&str]) -> Cmd {
    match netns {
        Netns::Pid(pid) => Cmd::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "ip"])
            .args(args.iter().copied()),
        Netns::Named(name) => Cmd::new("ip").args(["-n", name]).args(args.iter().copied()),
    }
}

/// What `ip -j -d link show` says about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub name: String,
    /// `linkinfo.info_kind` (`bridge`, `veth`, ...); `None` for plain devices.
    pub kind: Option<String>,
    /// Administratively up (`UP` in flags).
    pub up: bool,
    pub master: Option<String>,
}

fn json_err(name: &str, reason: impl Into<String>) -> LinkError {
    LinkError::Json {
        name: name.to_string(),
        reason: reason.into(),
    }
}

fn first_entry(name: &str, json: &str) -> Result<serde_json::Value, LinkError> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| json_err(name, e.to_string()))?;
    let arr = v
        .as_array()
        .ok_or_else(|| json_err(name, "expected a JSON array"))?;
    match arr.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(json_err(
            name,
            format!("expected one link, got {}", arr.len()),
        )),
    }
}

/// Parses `ip -j -d link show dev NAME`.
pub fn parse_link(name: &str, json: &str) -> Result<LinkInfo, LinkError> {
    let e = first_entry(name, json)?;
    let s = |v: Option<&serde_json::Value>| v.and_then(|x| x.as_str()).map(str::to_string);
    let ifname = s(e.get("ifname")).ok_or_else(|| json_err(name, "no \"ifname\""))?;
    let up = e
        .get("flags")
        .and_then(|f| f.as_array())
        .ok_or_else(|| json_err(name, "no \"flags\" array"))?
        .iter()
        .any(|f| f.as_str() == Some("UP"));
    Ok(LinkInfo {
        name: ifname,
        kind: s(e.get("linkinfo").and_then(|l| l.get("info_kind"))),
        up,
        master: s(e.get("master")),
    })
}

/// The IPv4 addresses (with prefix lengths) in `ip -j addr show dev NAME`.
pub fn parse_ipv4_addrs(name: &str, json: &str) -> Result<Vec<(Ipv4Addr, u8)>, LinkError> {
    let e = first_entry(name, json)?;
    let mut out = Vec::new();
    let infos = e
        .get("addr_info")
        .and_then(|a| a.as_array())
        .ok_or_else(|| json_err(name, "no \"addr_info\" array"))?;
    for a in infos {
        if a.get("family").and_then(|f| f.as_str()) != Some("inet") {
            continue;
        }
        let local = a
            .get("local")
            .and_then(|l| l.as_str())
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| json_err(name, "an inet address without a valid \"local\""))?;
        let prefix = a
            .get("prefixlen")
            .and_then(|p| p.as_u64())
            .and_then(|p| u8::try_from(p).ok())
            .ok_or_else(|| json_err(name, "an inet address without \"prefixlen\""))?;
        out.push((local, prefix));
    }
    Ok(out)
}

/// Where the kernel lists the IPv4 neighbours of every link (read as a file: no process on
/// the path that hands out addresses).
pub const PROC_ARP: &str = "/proc/net/arp";

/// The neighbours on link `dev` in [`PROC_ARP`]'s text that answered: address and MAC of
/// every entry whose flags say complete (`0x2`) or permanent (`0x4`), with a MAC.
pub fn parse_answering(proc_arp: &str, dev: &str) -> Vec<(Ipv4Addr, String)> {
    let mut out = Vec::new();
    for line in proc_arp.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [ip, _hw_type, flags, mac, _mask, device] = f[..] else {
            continue;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
        if device != dev || flags & 0x6 == 0 || mac == "00:00:00:00:00:00" {
            continue;
        }
        if let Ok(ip) = ip.parse() {
            out.push((ip, mac.to_ascii_lowercase()));
        }
    }
    out
}

/// What [`ensure_bridge`] had to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeChanges {
    pub created: bool,
    pub address_added: bool,
    pub brought_up: bool,
}

impl BridgeChanges {
    /// Whether the bridge was already as wanted.
    pub fn unchanged(&self) -> bool {
        *self == BridgeChanges::default()
    }
}

/// One veth attachment of a workload to the bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethAttachment {
    /// Host-side interface name (at most 15 characters).
    pub host_if: String,
    /// The workload's namespace; the peer appears there as `eth0`.
    pub netns: Netns,
    pub bridge: String,
    /// The workload's address (from [`crate::ipam::allocate`]).
    pub address: Ipv4Addr,
    pub subnet: Subnet,
}

#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(target_os = "linux")]
mod linux {
    use super::*;
    use warren_exec::{ExecError, Executor};

    fn run(exec: &dyn Executor, cmd: &Cmd) -> Result<warren_exec::Output, LinkError> {
        exec.run(cmd).map_err(|source| LinkError::Exec {
            what: cmd.argv_string(),
            source,
        })
    }

    fn missing(e: &ExecError) -> bool {
        let s = e.stderr();
        s.contains("does not exist") || s.contains("Cannot find device")
    }

    /// The link named `name`, or `None` if there is none.
    pub fn link(exec: &dyn Executor, name: &str) -> Result<Option<LinkInfo>, LinkError> {
        check_name(name)?;
        match exec.run(&link_show_cmd(name)) {
            Ok(out) => parse_link(name, &out.stdout_str()).map(Some),
            Err(e) if missing(&e) => Ok(None),
            Err(source) => Err(LinkError::Exec {
                what: format!("inspecting {name}"),
                source,
            }),
        }
    }

    /// Makes bridge `name` exist, hold the subnet's gateway address and be up. Changes only
    /// what is missing; other addresses on the bridge are left alone.
    pub fn ensure_bridge(
        exec: &dyn Executor,
        name: &str,
        subnet: &Subnet,
    ) -> Result<BridgeChanges, LinkError> {
        let mut changes = BridgeChanges::default();
        let gw = subnet.gateway();
        let (has_addr, up) = match link(exec, name)? {
            None => {
                run(exec, &bridge_add_cmd(name))?;
                changes.created = true;
                (false, false)
            }
            Some(info) => {
                let kind = info.kind.clone().unwrap_or_else(|| "plain".into());
                if kind != "bridge" {
                    return Err(LinkError::NotABridge {
                        name: name.to_string(),
                        kind,
                    });
                }
                let out = run(exec, &addr_show_cmd(name))?;
                let addrs = parse_ipv4_addrs(name, &out.stdout_str())?;
                (addrs.contains(&(gw, subnet.prefix())), info.up)
            }
        };
        if !has_addr {
            run(exec, &addr_add_cmd(name, gw, subnet.prefix()))?;
            changes.address_added = true;
        }
        if !up {
            run(exec, &link_up_cmd(name))?;
            changes.brought_up = true;
        }
        Ok(changes)
    }

    /// Creates the veth pair of `a` (replacing a stale host end of the same name), enslaves the
    /// host end to the bridge, and gives `eth0` inside the namespace its address and a default
    /// route via the gateway. On failure after the pair exists, the pair is deleted again.
    pub fn attach_veth(exec: &dyn Executor, a: &VethAttachment) -> Result<(), LinkError> {
        check_name(&a.host_if)?;
        check_name(&a.bridge)?;
        a.netns.validate()?;
        if !a.subnet.is_assignable(a.address) {
            return Err(LinkError::Address {
                address: a.address,
                subnet: a.subnet,
            });
        }
        if link(exec, &a.host_if)?.is_some() {
            run(exec, &link_del_cmd(&a.host_if))?;
        }
        run(exec, &veth_add_cmd(&a.host_if, &a.netns, a.address))?;
        let configure = || -> Result<(), LinkError> {
            let cidr = format!("{}/{}", a.address, a.subnet.prefix());
            let gw = a.subnet.gateway().to_string();
            run(exec, &set_master_cmd(&a.host_if, &a.bridge))?;
            run(exec, &link_up_cmd(&a.host_if))?;
            run(
                exec,
                &ip_in(&a.netns, &["addr", "add", &cidr, "dev", WORKLOAD_IF]),
            )?;
            run(
                exec,
                &ip_in(&a.netns, &["link", "set", "dev", WORKLOAD_IF, "up"]),
            )?;
            run(exec, &ip_in(&a.netns, &["link", "set", "dev", "lo", "up"]))?;
            run(
                exec,
                &ip_in(
                    &a.netns,
                    &[
                        "route",
                        "replace",
                        "default",
                        "via",
                        &gw,
                        "dev",
                        WORKLOAD_IF,
                    ],
                ),
            )?;
            Ok(())
        };
        configure().inspect_err(|_| {
            let _ = exec.run(&link_del_cmd(&a.host_if));
        })
    }

    /// Deletes the host end of a veth pair (its peer goes with it). Returns whether it existed.
    pub fn detach_veth(exec: &dyn Executor, host_if: &str) -> Result<bool, LinkError> {
        if link(exec, host_if)?.is_none() {
            return Ok(false);
        }
        match exec.run(&link_del_cmd(host_if)) {
            Ok(_) => Ok(true),
            // Gone in between (the namespace died): the goal is reached.
            Err(e) if missing(&e) => Ok(false),
            Err(source) => Err(LinkError::Exec {
                what: format!("deleting {host_if}"),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answering_neighbours() {
        let arp = "IP address       HW type     Flags       HW address            Mask     Device
10.88.0.2        0x1         0x2         02:42:0A:58:00:02     *        warren0
10.88.0.3        0x1         0x2         aa:bb:cc:dd:ee:ff     *        warren0
10.88.0.4        0x1         0x0         00:00:00:00:00:00     *        warren0
10.88.0.6        0x1         0x6         aa:bb:cc:dd:ee:02     *        warren0
10.88.0.7        0x1         0x2         aa:bb:cc:dd:ee:03     *        eth0
garbage
";
        assert_eq!(
            parse_answering(arp, "warren0"),
            [
                (
                    "10.88.0.2".parse().unwrap(),
                    "02:42:0a:58:00:02".to_string()
                ),
                (
                    "10.88.0.3".parse().unwrap(),
                    "aa:bb:cc:dd:ee:ff".to_string()
                ),
                (
                    "10.88.0.6".parse().unwrap(),
                    "aa:bb:cc:dd:ee:02".to_string()
                ),
            ]
        );
        assert_eq!(parse_answering("", "warren0"), []);
    }

    const BRIDGE_DOWN: &str = r#"[{"ifindex":5,"ifname":"warren0","flags":["BROADCAST","MULTICAST"],"mtu":1500,"qdisc":"noop","operstate":"DOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"f6:59:e2:eb:2f:af","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535,"linkinfo":{"info_kind":"bridge","info_data":{"forward_delay":1500,"hello_time":200,"max_age":2000,"ageing_time":30000,"stp_state":0,"priority":32768}},"num_tx_queues":1,"num_rx_queues":1}]"#;
    const BRIDGE_UP: &str = r#"[{"ifindex":5,"ifname":"warren0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UNKNOWN","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"f6:59:e2:eb:2f:af","broadcast":"ff:ff:ff:ff:ff:ff","linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}}}]"#;
    const ADDRS: &str = r#"[{"ifindex":5,"ifname":"warren0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UNKNOWN","group":"default","txqlen":1000,"link_type":"ether","address":"f6:59:e2:eb:2f:af","broadcast":"ff:ff:ff:ff:ff:ff","addr_info":[{"family":"inet","local":"10.88.0.1","prefixlen":16,"scope":"global","label":"warren0","valid_life_time":4294967295,"preferred_life_time":4294967295},{"family":"inet6","local":"fe80::f459:e2ff:feeb:2faf","prefixlen":64,"scope":"link","tentative":true,"valid_life_time":4294967295,"preferred_life_time":4294967295}]}]"#;
    const ETH0: &str = r#"[{"ifindex":4,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1400,"qdisc":"pfifo_fast","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"02:fc:00:00:00:01","broadcast":"ff:ff:ff:ff:ff:ff","promiscuity":0,"allmulti":0,"min_mtu":68,"max_mtu":65535}]"#;

    #[test]
    fn builders_produce_exact_argv() {
        let pid = Netns::Pid(4242);
        let named = Netns::Named("warren-t-ab".into());
        let cases = [
            (link_show_cmd("warren0"), "ip -j -d link show dev warren0"),
            (addr_show_cmd("warren0"), "ip -j addr show dev warren0"),
            (
                bridge_add_cmd("warren0"),
                "ip link add name warren0 type bridge",
            ),
            (
                addr_add_cmd("warren0", "10.88.0.1".parse().unwrap(), 16),
                "ip addr add 10.88.0.1/16 dev warren0",
            ),
            (link_up_cmd("warren0"), "ip link set dev warren0 up"),
            (link_del_cmd("wv1"), "ip link del dev wv1"),
            (
                veth_add_cmd("wv1", &pid, "10.88.0.2".parse().unwrap()),
                "ip link add wv1 type veth peer name eth0 address 02:42:0a:58:00:02 netns 4242",
            ),
            (
                set_master_cmd("wv1", "warren0"),
                "ip link set dev wv1 master warren0",
            ),
            (
                ip_in(&pid, &["link", "set", "dev", "eth0", "up"]),
                "nsenter -t 4242 -n ip link set dev eth0 up",
            ),
            (
                ip_in(&named, &["route", "show"]),
                "ip -n warren-t-ab route show",
            ),
        ];
        for (cmd, argv) in cases {
            assert_eq!(cmd.argv_string(), argv);
        }
    }

    #[test]
    fn parses_link_lists_with_masters() {
        let json = r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"]},{"ifindex":7,"ifname":"wv0011223344","flags":["UP"],"master":"warren0","link_type":"ether"},{"ifindex":8,"ifname":"wv55","flags":[]}]"#;
        assert_eq!(
            parse_link_masters(json).unwrap(),
            vec![
                ("lo".to_string(), None),
                ("wv0011223344".to_string(), Some("warren0".to_string())),
                ("wv55".to_string(), None),
            ]
        );
        assert!(parse_link_masters("{}").is_err());
        assert_eq!(netns_add_cmd("w-1").argv_string(), "ip netns add w-1");
        assert_eq!(netns_del_cmd("w-1").argv_string(), "ip netns del w-1");
    }

    #[test]
    fn parses_ip_json() {
        let l = parse_link("warren0", BRIDGE_DOWN).unwrap();
        assert_eq!(l.kind.as_deref(), Some("bridge"));
        assert!(!l.up);
        assert!(parse_link("warren0", BRIDGE_UP).unwrap().up);
        assert_eq!(parse_link("eth0", ETH0).unwrap().kind, None);
        assert_eq!(
            parse_ipv4_addrs("warren0", ADDRS).unwrap(),
            vec![("10.88.0.1".parse().unwrap(), 16)]
        );
        assert!(parse_link("x", "[]").is_err());
        assert!(parse_link("x", "nope").is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ensure_bridge_creates_then_does_nothing() {
        let subnet = Subnet::parse("10.88.0.0/16").unwrap();
        let r = warren_exec::RecordingExecutor::new();
        r.expect_err(
            "ip -j -d link show dev warren0",
            "Device \"warren0\" does not exist.",
        )
        .expect_ok("ip link add name warren0 type bridge", "")
        .expect_ok("ip addr add 10.88.0.1/16 dev warren0", "")
        .expect_ok("ip link set dev warren0 up", "")
        .expect_ok("ip -j -d link show dev warren0", BRIDGE_UP)
        .expect_ok("ip -j addr show dev warren0", ADDRS);
        let c = ensure_bridge(&r, "warren0", &subnet).unwrap();
        assert_eq!(
            c,
            BridgeChanges {
                created: true,
                address_added: true,
                brought_up: true
            }
        );
        assert!(ensure_bridge(&r, "warren0", &subnet).unwrap().unchanged());
        r.finish();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ensure_bridge_repairs_and_refuses_non_bridges() {
        let subnet = Subnet::parse("10.88.0.0/16").unwrap();
        let r = warren_exec::RecordingExecutor::new();
        r.expect_ok("ip -j -d link show dev warren0", BRIDGE_DOWN)
            .expect_ok(
                "ip -j addr show dev warren0",
                r#"[{"ifname":"warren0","flags":[],"addr_info":[]}]"#,
            )
            .expect_ok("ip addr add 10.88.0.1/16 dev warren0", "")
            .expect_ok("ip link set dev warren0 up", "")
            .expect_ok("ip -j -d link show dev eth0", ETH0);
        let c = ensure_bridge(&r, "warren0", &subnet).unwrap();
        assert!(!c.created && c.address_added && c.brought_up);
        let e = ensure_bridge(&r, "eth0", &subnet).unwrap_err();
        assert_eq!(
            e.to_string(),
            "eth0 exists but is a plain link, not a bridge"
        );
        r.finish();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn attach_and_detach_veth() {
        let a = VethAttachment {
            host_if: "wv1".into(),
            netns: Netns::Pid(4242),
            bridge: "warren0".into(),
            address: "10.88.0.2".parse().unwrap(),
            subnet: Subnet::parse("10.88.0.0/16").unwrap(),
        };
        let r = warren_exec::RecordingExecutor::new();
        r.expect_err(
            "ip -j -d link show dev wv1",
            "Device \"wv1\" does not exist.",
        )
        .expect_ok(
            "ip link add wv1 type veth peer name eth0 address 02:42:0a:58:00:02 netns 4242",
            "",
        )
        .expect_ok("ip link set dev wv1 master warren0", "")
        .expect_ok("ip link set dev wv1 up", "")
        .expect_ok("nsenter -t 4242 -n ip addr add 10.88.0.2/16 dev eth0", "")
        .expect_ok("nsenter -t 4242 -n ip link set dev eth0 up", "")
        .expect_ok("nsenter -t 4242 -n ip link set dev lo up", "")
        .expect_ok(
            "nsenter -t 4242 -n ip route replace default via 10.88.0.1 dev eth0",
            "",
        );
        attach_veth(&r, &a).unwrap();
        // A failure inside the namespace removes the pair again.
        let b = VethAttachment {
            netns: Netns::Named("ns1".into()),
            ..a.clone()
        };
        r.expect_ok("ip -j -d link show dev wv1", BRIDGE_UP)
            .expect_ok("ip link del dev wv1", "")
            .expect_ok(
                "ip link add wv1 type veth peer name eth0 address 02:42:0a:58:00:02 netns ns1",
                "",
            )
            .expect_ok("ip link set dev wv1 master warren0", "")
            .expect_ok("ip link set dev wv1 up", "")
            .expect_err(
                "ip -n ns1 addr add 10.88.0.2/16 dev eth0",
                "RTNETLINK answers: File exists",
            )
            .expect_ok("ip link del dev wv1", "");
        let e = attach_veth(&r, &b).unwrap_err().to_string();
        assert!(e.contains("File exists"), "{e}");
        r.expect_ok("ip -j -d link show dev wv1", BRIDGE_UP)
            .expect_ok("ip link del dev wv1", "")
            .expect_err(
                "ip -j -d link show dev wv1",
                "Device \"wv1\" does not exist.",
            );
        assert!(detach_veth(&r, "wv1").unwrap());
        assert!(!detach_veth(&r, "wv1").unwrap());
        r.finish();

        let bad = VethAttachment {
            host_if: "much-too-long-name0".into(),
            ..a.clone()
        };
        assert!(matches!(attach_veth(&r, &bad), Err(LinkError::Name(_))));
        let bad = VethAttachment {
            address: "10.88.0.1".parse().unwrap(),
            ..a
        };
        assert!(matches!(
            attach_veth(&r, &bad),
            Err(LinkError::Address { .. })
        ));
    }
}
