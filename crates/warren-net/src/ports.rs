//! Published ports: the host's own listening sockets, and the mapping syntax re-exported from
//! [`warren_model::ports`].
//!
//! A port mapping is written `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]` or just `PORT[/PROTO]`
//! (see [`warren_model::ports`], where the type lives so the spec parser can use it).
//! [`conflicts`] finds two mappings that would claim the same host port, and [`host_conflicts`]
//! finds mappings that collide with a socket the host already listens on, as read from
//! `/proc/net/{tcp,tcp6,udp,udp6}` by [`parse_proc_net`]. An absent or unspecified host address
//! (`0.0.0.0`, `::`) overlaps every address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use warren_model::ports::{conflicts, Conflict, PortError, PortMapping, Proto};

/// Why the host's listening sockets could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerError {
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

fn addrs_overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
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
pub fn parse_proc_net(kind: ProcNetKind, text: &str) -> Result<Vec<Listener>, ListenerError> {
    let file = format!("/proc/net/{}", kind.file_name());
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: &str| ListenerError::ProcNet {
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
pub fn host_listeners() -> Result<Vec<Listener>, ListenerError> {
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
                return Err(ListenerError::Read {
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
pub fn host_listeners() -> Result<Vec<Listener>, ListenerError> {
    Err(ListenerError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(s: &str) -> PortMapping {
        PortMapping::parse(s).unwrap()
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
}
