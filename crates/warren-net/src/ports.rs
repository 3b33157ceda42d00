//! Published ports: parsing, conflict checks, and the host's own listening sockets.
//!
//! A port mapping is written `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]` or just `PORT[/PROTO]`
//! (the same port on both sides); `PROTO` is `tcp` (the default) or `udp`; an IPv6 host address
//! goes in brackets (`[::1]:8080:80`). [`conflicts`] finds two mappings that would claim the same
//! host port, and [`host_conflicts`] finds mappings that collide with a socket the host already
//! listens on, as read from `/proc/net/{tcp,tcp6,udp,udp6}` by [`parse_proc_net`]. An absent or
//! unspecified host address (`0.0.0.0`, `::`) overlaps every address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Transport protocol of a mapping or socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host port published to a workload port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMapping {
    /// The host address to listen on; `None` means every address.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

/// Why a port mapping or a `/proc/net` table could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port mapping {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
    #[error("cannot parse {file} line {line}: {reason}")]
    ProcNet {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("reading the host's listening sockets is not supported on this platform")]
    Unsupported,
}

impl PortMapping {
    /// Parses one mapping; see the module documentation for the syntax.
    pub fn parse(spec: &str) -> Result<PortMapping, PortError> {
        let bad = |reason: String| PortError::Invalid {
            spec: spec.to_string(),
            reason,
        };
        let s = spec.trim();
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let (rest, proto) = match s.rsplit_once('/') {
            Some((rest, p)) => (
                rest,
                match p {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    other => {
                        return Err(bad(format!(
                            "unknown protocol {other:?} (expected tcp or udp)"
                        )))
                    }
                },
            ),
            None => (s, Proto::Tcp),
        };
        let (host_ip, ports) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, ports) = after
                .split_once("]:")
                .ok_or_else(|| bad("an IPv6 host address must look like [::1]:8080:80".into()))?;
            let ip: Ipv6Addr = ip
                .parse()
                .map_err(|_| bad(format!("{ip:?} is not an IPv6 address")))?;
            (Some(IpAddr::V6(ip)), ports)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.len() {
                2 if parts[0].parse::<Ipv4Addr>().is_ok() => {
                    return Err(bad("a host address needs HOST_PORT:CONTAINER_PORT".into()))
                }
                1 | 2 => (None, rest),
                3 => {
                    let ip: Ipv4Addr = parts[0]
                        .parse()
                        .map_err(|_| bad(format!("{:?} is not an IPv4 address", parts[0])))?;
                    (Some(IpAddr::V4(ip)), &rest[parts[0].len() + 1..])
                }
                _ => {
                    return Err(bad(
                        "too many ':' (an IPv6 host address goes in brackets: [::1]:8080:80)"
                            .into(),
                    ))
                }
            }
        };
        let port = |p: &str, what: &str| -> Result<u16, PortError> {
            if p.contains('-') {
                return Err(bad(format!("{what} {p:?}: port ranges are not supported")));
            }
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(format!("{what} {p:?} is not a number")));
            }
            match p.parse::<u32>() {
                Ok(0) => Err(bad(format!("{what} 0 is not allowed"))),
                Ok(n) if n <= 65535 => Ok(n as u16),
                _ => Err(bad(format!("{what} {p} is above 65535"))),
            }
        };
        let (host_port, container_port) = match ports.split_once(':') {
            Some((h, c)) => (port(h, "host port")?, port(c, "container port")?),
            None if host_ip.is_some() => {
                return Err(bad("a host address needs HOST_PORT:CONTAINER_PORT".into()))
            }
            None => {
                let p = port(ports, "port")?;
                (p, p)
            }
        };
        Ok(PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
        })
    }

    /// The host address, with `0.0.0.0` and `::` normalised to `None` (every address).
    pub fn specific_host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }

    /// Whether two mappings claim an overlapping host address, port and protocol.
    pub fn overlaps(&self, other: &PortMapping) -> bool {
        self.proto == other.proto
            && self.host_port == other.host_port
            && addrs_overlap(self.specific_host_ip(), other.specific_host_ip())
    }
}

fn addrs_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

impl FromStr for PortMapping {
    type Err = PortError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortMapping::parse(s)
    }
}

impl fmt::Display for PortMapping {
    /// The canonical form, which parses back to the same mapping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            None => {}
        }
        write!(
            f,
            "{}:{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

/// Two workloads' mappings (or two of one workload's) that claim the same host port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub first: String,
    pub first_mapping: PortMapping,
    pub second: String,
    pub second_mapping: PortMapping,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host port {}/{} is published twice: by {:?} ({}) and by {:?} ({})",
            self.first_mapping.host_port,
            self.first_mapping.proto,
            self.first,
            self.first_mapping,
            self.second,
            self.second_mapping
        )
    }
}

/// Every pair of mappings that overlap, in input order.
pub fn conflicts<W: AsRef<str>>(all: &[(W, PortMapping)]) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (i, (w1, m1)) in all.iter().enumerate() {
        for (w2, m2) in &all[i + 1..] {
            if m1.overlaps(m2) {
                out.push(Conflict {
                    first: w1.as_ref().to_string(),
                    first_mapping: *m1,
                    second: w2.as_ref().to_string(),
                    second_mapping: *m2,
                });
            }
        }
    }
    out
}

/// A socket the host listens on (TCP in `LISTEN`, or an unconnected bound UDP socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listener {
    pub proto: Proto,
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}/{}", self.port, self.proto),
            IpAddr::V6(a) => write!(f, "[{a}]:{}/{}", self.port, self.proto),
        }
    }
}

/// A mapping that collides with a socket the host already listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConflict {
    pub workload: String,
    pub mapping: PortMapping,
    pub listener: Listener,
}

impl fmt::Display for HostConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} publishes {} but the host already listens on {}",
            self.workload, self.mapping, self.listener
        )
    }
}

/// Mappings whose host port a host socket already holds (same protocol and port, overlapping
/// address), in input order.
pub fn host_conflicts<W: AsRef<str>>(
    all: &[(W, PortMapping)],
    listeners: &[Listener],
) -> Vec<HostConflict> {
    let mut out = Vec::new();
    for (w, m) in all {
        for l in listeners {
            let laddr = (!l.addr.is_unspecified()).then_some(l.addr);
            if l.proto == m.proto
                && l.port == m.host_port
                && addrs_overlap(m.specific_host_ip(), laddr)
            {
                out.push(HostConflict {
                    workload: w.as_ref().to_string(),
                    mapping: *m,
                    listener: *l,
                });
            }
        }
    }
    out
}

/// Which `/proc/net` table a text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcNetKind {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
}

impl ProcNetKind {
    pub const ALL: [ProcNetKind; 4] = [
        ProcNetKind::Tcp,
        ProcNetKind::Tcp6,
        ProcNetKind::Udp,
        ProcNetKind::Udp6,
    ];

    /// The file name under `/proc/net`.
    pub fn file_name(&self) -> &'static str {
        match self {
            ProcNetKind::Tcp => "tcp",
            ProcNetKind::Tcp6 => "tcp6",
            ProcNetKind::Udp => "udp",
            ProcNetKind::Udp6 => "udp6",
        }
    }

    fn proto(&self) -> Proto {
        match self {
            ProcNetKind::Tcp | ProcNetKind::Tcp6 => Proto::Tcp,
            ProcNetKind::Udp | ProcNetKind::Udp6 => Proto::Udp,
        }
    }
}

/// TCP_LISTEN in the kernel's socket state numbering.
const ST_LISTEN: u8 = 0x0A;
/// TCP_CLOSE: what an unconnected (bound, receiving from anyone) UDP socket shows.
const ST_CLOSE: u8 = 0x07;

/// The listening sockets in one `/proc/net/{tcp,tcp6,udp,udp6}` text: TCP sockets in state
/// `0A` (LISTEN), UDP sockets in state `07` (unconnected) with a local port. Connected UDP
/// sockets are clients and are left out. Addresses are decoded in the byte order of the machine
/// that wrote the table (the running host), as the kernel prints them.
pub fn parse_proc_net(kind: ProcNetKind, text: &str) -> Result<Vec<Listener>, PortError> {
    let file = format!("/proc/net/{}", kind.file_name());
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: &str| PortError::ProcNet {
            file: file.clone(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        if i == 0 {
            if fields.first() != Some(&"sl") {
                return Err(bad("missing the `sl local_address ...` header"));
            }
            continue;
        }
        if fields.is_empty() {
            continue;
        }
        if fields.len() < 4 || !fields[0].ends_with(':') {
            return Err(bad("expected `N: LOCAL REMOTE ST ...`"));
        }
        let (addr, port) = fields[1]
            .split_once(':')
            .ok_or_else(|| bad("local address has no port"))?;
        let port = u16::from_str_radix(port, 16).map_err(|_| bad("bad local port"))?;
        let st = u8::from_str_radix(fields[3], 16).map_err(|_| bad("bad socket state"))?;
        let addr = match (kind, addr.len()) {
            (ProcNetKind::Tcp | ProcNetKind::Udp, 8) => {
                let w = u32::from_str_radix(addr, 16).map_err(|_| bad("bad IPv4 address"))?;
                IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
            }
            (ProcNetKind::Tcp6 | ProcNetKind::Udp6, 32) => {
                let mut bytes = [0u8; 16];
                for (k, chunk) in bytes.chunks_mut(4).enumerate() {
                    let w = u32::from_str_radix(&addr[k * 8..k * 8 + 8], 16)
                        .map_err(|_| bad("bad IPv6 address"))?;
                    chunk.copy_from_slice(&w.to_ne_bytes());
                }
                IpAddr::V6(Ipv6Addr::from(bytes))
            }
            _ => return Err(bad("local address has the wrong length for this table")),
        };
        let listening = match kind.proto() {
            Proto::Tcp => st == ST_LISTEN,
            Proto::Udp => st == ST_CLOSE && port != 0,
        };
        if listening {
            out.push(Listener {
                proto: kind.proto(),
                addr,
                port,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every socket the host listens on, from the four `/proc/net` tables of the caller's network
/// namespace. A missing IPv6 table (IPv6 disabled) counts as empty.
#[cfg(target_os = "linux")]
pub fn host_listeners() -> Result<Vec<Listener>, PortError> {
    let mut all = Vec::new();
    for kind in ProcNetKind::ALL {
        let path = format!("/proc/net/{}", kind.file_name());
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && matches!(kind, ProcNetKind::Tcp6 | ProcNetKind::Udp6) =>
            {
                continue
            }
            Err(e) => {
                return Err(PortError::Read {
                    path,
                    reason: e.to_string(),
                })
            }
        };
        all.extend(parse_proc_net(kind, &text)?);
    }
    all.sort();
    all.dedup();
    Ok(all)
}

/// Every socket the host listens on. `/proc/net` exists only on Linux.
#[cfg(not(target_os = "linux"))]
pub fn host_listeners() -> Result<Vec<Listener>, PortError> {
    Err(PortError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pm(s: &str) -> PortMapping {
        PortMapping::parse(s).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            pm("8080:80/tcp"),
            PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(
            pm("127.0.0.1:5353:53/udp"),
            PortMapping {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 5353,
                container_port: 53,
                proto: Proto::Udp
            }
        );
        assert_eq!(
            pm("80"),
            PortMapping {
                host_ip: None,
                host_port: 80,
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(
            pm("[::1]:8080:80"),
            PortMapping {
                host_ip: Some("::1".parse().unwrap()),
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(pm("53/udp").to_string(), "53:53/udp");
        assert_eq!(pm("[::1]:8080:80").to_string(), "[::1]:8080:80/tcp");
    }

    #[test]
    fn errors_are_clear() {
        let cases = [
            ("0:80", "invalid port mapping \"0:80\": host port 0 is not allowed"),
            (
                "8080:70000",
                "invalid port mapping \"8080:70000\": container port 70000 is above 65535",
            ),
            (
                "8080:80/sctp",
                "invalid port mapping \"8080:80/sctp\": unknown protocol \"sctp\" (expected tcp or udp)",
            ),
            (
                "300.0.0.1:80:80",
                "invalid port mapping \"300.0.0.1:80:80\": \"300.0.0.1\" is not an IPv4 address",
            ),
            (
                "[::zz]:80:80",
                "invalid port mapping \"[::zz]:80:80\": \"::zz\" is not an IPv6 address",
            ),
            (
                "::1:80:80",
                "invalid port mapping \"::1:80:80\": too many ':' (an IPv6 host address goes in brackets: [::1]:8080:80)",
            ),
            ("http", "invalid port mapping \"http\": port \"http\" is not a number"),
            (
                "8000-8010:80",
                "invalid port mapping \"8000-8010:80\": host port \"8000-8010\": port ranges are not supported",
            ),
            (
                "127.0.0.1:80",
                "invalid port mapping \"127.0.0.1:80\": a host address needs HOST_PORT:CONTAINER_PORT",
            ),
            ("", "invalid port mapping \"\": it is empty"),
        ];
        for (spec, msg) in cases {
            assert_eq!(PortMapping::parse(spec).unwrap_err().to_string(), msg);
        }
    }

    #[test]
    fn conflicts_name_both_workloads() {
        let all = vec![
            ("web", pm("8080:80")),
            ("dns", pm("127.0.0.1:5353:53/udp")),
            ("api", pm("127.0.0.1:8080:3000")),
            ("dns2", pm("127.0.0.2:5353:53/udp")),
            ("udpweb", pm("8080:80/udp")),
            ("v6", pm("[::1]:9000:9000")),
            ("v4", pm("127.0.0.1:9000:9000")),
        ];
        let c = conflicts(&all);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            c[0].to_string(),
            "host port 8080/tcp is published twice: by \"web\" (8080:80/tcp) and by \"api\" (127.0.0.1:8080:3000/tcp)"
        );
        let c = conflicts(&[("a", pm("0.0.0.0:53:53/udp")), ("b", pm("[::1]:53:53/udp"))]);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn host_conflicts_against_listeners() {
        let listeners = vec![
            Listener {
                proto: Proto::Tcp,
                addr: "127.0.0.1".parse().unwrap(),
                port: 8080,
            },
            Listener {
                proto: Proto::Udp,
                addr: "::".parse().unwrap(),
                port: 53,
            },
        ];
        let all = vec![
            ("a", pm("8080:80")),
            ("b", pm("10.0.0.1:8080:80")),
            ("c", pm("8080:80/udp")),
            ("d", pm("127.0.0.2:53:53/udp")),
        ];
        let c = host_conflicts(&all, &listeners);
        let names: Vec<&str> = c.iter().map(|c| c.workload.as_str()).collect();
        assert_eq!(names, ["a", "d"]);
        assert_eq!(
            c[0].to_string(),
            "\"a\" publishes 8080:80/tcp but the host already listens on 127.0.0.1:8080/tcp"
        );
    }

    #[test]
    fn proc_net_rejects_garbage() {
        assert!(parse_proc_net(ProcNetKind::Tcp, "hello\n").is_err());
        let e = parse_proc_net(
            ProcNetKind::Tcp,
            "  sl  local_address rem_address   st\n   0: 0000:07E8 00000000:0000 0A\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot parse /proc/net/tcp line 2: local address has the wrong length for this table"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn host_listeners_sees_a_live_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let all = host_listeners().unwrap();
        assert!(
            all.contains(&Listener {
                proto: Proto::Tcp,
                addr: "127.0.0.1".parse().unwrap(),
                port
            }),
            "{all:?}"
        );
    }

    fn arb_mapping() -> impl Strategy<Value = PortMapping> {
        let ip = prop_oneof![
            Just(None),
            any::<[u8; 4]>().prop_map(|b| Some(IpAddr::from(b))),
            any::<[u8; 16]>().prop_map(|b| Some(IpAddr::from(b))),
        ];
        (
            ip,
            1u16..,
            1u16..,
            prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)],
        )
            .prop_map(|(host_ip, host_port, container_port, proto)| PortMapping {
                host_ip,
                host_port,
                container_port,
                proto,
            })
    }

    proptest! {
        #[test]
        fn display_round_trips(m in arb_mapping()) {
            prop_assert_eq!(PortMapping::parse(&m.to_string()), Ok(m));
        }

        #[test]
        fn overlap_is_symmetric(a in arb_mapping(), b in arb_mapping()) {
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            prop_assert!(a.overlaps(&a));
        }
    }
}
