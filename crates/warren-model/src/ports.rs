//! Published ports: the mapping syntax and conflict checks.
//!
//! A port mapping is written `[HOST_IP:]HOST_PORT:CONTAINER_PORT[/PROTO]` or just `PORT[/PROTO]`
//! (the same port on both sides); `PROTO` is `tcp` (the default) or `udp`; an IPv6 host address
//! goes in brackets (`[::1]:8080:80`). [`conflicts`] finds two mappings that would claim the same
//! host port. An absent or unspecified host address (`0.0.0.0`, `::`) overlaps every address.
//!
//! A mapping serializes as its canonical string (its [`Display`](fmt::Display) form, e.g.
//! `"127.0.0.1:5353:53/udp"`) and deserializes through [`PortMapping::parse`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use strum::VariantNames;

/// Transport protocol of a mapping or socket.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(&self) -> &'static str {
        (*self).into()
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

/// Why a port mapping could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid port mapping {spec:?}: {reason}")]
    Invalid { spec: String, reason: String },
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
                p.parse::<Proto>().map_err(|_| {
                    bad(format!(
                        "unknown protocol {p:?} (expected {})",
                        Proto::VARIANTS.join(" or ")
                    ))
                })?,
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

impl schemars::JsonSchema for PortMapping {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortMapping".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "[HOST_IP:]HOST_PORT[-END]:PORT[-END][/tcp|udp]",
            "examples": ["8080:80", "127.0.0.1:5353:53/udp"]
        })
    }
}

impl serde::Serialize for PortMapping {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PortMapping {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PortMapping::parse(&text).map_err(serde::de::Error::custom)
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
    fn serde_uses_the_canonical_string() {
        let m = pm("127.0.0.1:5353:53/udp");
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            "\"127.0.0.1:5353:53/udp\""
        );
        assert_eq!(
            serde_json::from_str::<PortMapping>("\"80\"").unwrap(),
            pm("80:80/tcp")
        );
        let e = serde_json::from_str::<PortMapping>("\"0:80\"").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid port mapping \"0:80\": host port 0 is not allowed"),
            "{e}"
        );
        assert!(serde_json::from_str::<PortMapping>("8080").is_err());
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
            let json = serde_json::to_string(&m).unwrap();
            prop_assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), m);
        }

        #[test]
        fn overlap_is_symmetric(a in arb_mapping(), b in arb_mapping()) {
            prop_assert_eq!(a.overlaps(&b), b.overlaps(&a));
            prop_assert!(a.overlaps(&a));
        }
    }
}
