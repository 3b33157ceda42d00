//! The neutral ruleset: what warren's packet filter must do for bridge workloads, independent
//! of the filter that does it. Both renderers take it: [`crate::nft::render`] turns it into
//! warren's nftables table on Linux, [`crate::pf::render`] into warren's pf anchor on FreeBSD.
//!
//! A [`Ruleset`] says three things:
//!
//! - **published ports**: each [`Forward`] maps a host address, port and protocol to a
//!   workload's address and port (nft: a DNAT rule; pf: an `rdr` rule and its `pass`);
//! - **outbound NAT** of the bridge's [`Subnet`] leaving through any other interface (nft:
//!   masquerade; pf: `nat` to the external interface's address);
//! - **forwarding** of traffic to and from the bridge (nft: the `forward` chain; pf: a `pass`
//!   on the bridge).
//!
//! [`Ruleset::validate`] holds the checks every renderer needs (names that can be quoted,
//! IPv4 host addresses only, workload addresses inside the subnet, no overlapping mappings);
//! a renderer adds only its own syntax's limits. [`Ruleset::sorted_forwards`] is the one
//! order both render in, so the output is independent of the order forwards were added.

use std::net::{IpAddr, Ipv4Addr};

use crate::ipam::Subnet;
use crate::ports::{conflicts, Conflict, PortMapping};

/// The table (nft) or anchor (pf, `warren/<table>`) warren uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "warren";

/// Why a ruleset cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RulesetError {
    #[error("invalid nftables table name {0:?}: use letters, digits and '_', starting with a letter, at most 64 characters")]
    TableName(String),
    #[error("invalid bridge interface name {0:?}: 1 to 15 characters, no whitespace, '/', ':' or quotes")]
    BridgeName(String),
    #[error("workload name {0:?} cannot be used in a rule comment: at most 100 printable characters without quotes or backslashes")]
    WorkloadName(String),
    #[error("workload {workload:?} publishes {mapping}: an IPv6 host address cannot be forwarded to the workload's IPv4 address")]
    Ipv6HostIp {
        workload: String,
        mapping: PortMapping,
    },
    #[error("workload {workload:?} has address {address}, which is not a workload address of subnet {subnet}")]
    AddressOutsideSubnet {
        workload: String,
        address: Ipv4Addr,
        subnet: Subnet,
    },
    #[error("{0}")]
    Conflict(Conflict),
}

/// One published port: which workload, the mapping, and the workload's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub workload: String,
    pub mapping: PortMapping,
    pub address: Ipv4Addr,
}

/// Everything warren's packet filter rules are rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The nftables `inet` table's name, or the pf anchor's under `warren/`
    /// ([`DEFAULT_TABLE`] in production).
    pub table: String,
    /// The workload bridge interface.
    pub bridge: String,
    /// The bridge's subnet: masqueraded on the way out, forwarded to and from.
    pub subnet: Subnet,
    /// Published ports, in any order (rendering sorts them).
    pub forwards: Vec<Forward>,
}

impl Ruleset {
    /// A ruleset for `bridge` and `subnet` in the default table, with no published ports.
    pub fn new(bridge: &str, subnet: Subnet) -> Ruleset {
        Ruleset {
            table: DEFAULT_TABLE.to_string(),
            bridge: bridge.to_string(),
            subnet,
            forwards: Vec::new(),
        }
    }

    /// The checks every renderer needs: a valid table and bridge name, workload names usable
    /// in a rule comment, IPv4 host addresses only (workloads have IPv4 addresses), workload
    /// addresses in the subnet's workload range, and no overlapping mappings (a filter would
    /// silently let the first rule win).
    pub fn validate(&self) -> Result<(), RulesetError> {
        validate_table(&self.table)?;
        if !valid_ifname(&self.bridge) {
            return Err(RulesetError::BridgeName(self.bridge.clone()));
        }
        for f in &self.forwards {
            if !valid_comment(&f.workload) {
                return Err(RulesetError::WorkloadName(f.workload.clone()));
            }
            if matches!(f.mapping.host_ip, Some(IpAddr::V6(_))) {
                return Err(RulesetError::Ipv6HostIp {
                    workload: f.workload.clone(),
                    mapping: f.mapping,
                });
            }
            if !self.subnet.is_assignable(f.address) {
                return Err(RulesetError::AddressOutsideSubnet {
                    workload: f.workload.clone(),
                    address: f.address,
                    subnet: self.subnet,
                });
            }
        }
        let pairs: Vec<(&str, PortMapping)> = self
            .forwards
            .iter()
            .map(|f| (f.workload.as_str(), f.mapping))
            .collect();
        if let Some(c) = conflicts(&pairs).into_iter().next() {
            return Err(RulesetError::Conflict(c));
        }
        Ok(())
    }

    /// The forwards in rendering order: by protocol, host port, host address, workload.
    pub fn sorted_forwards(&self) -> Vec<&Forward> {
        let mut forwards: Vec<&Forward> = self.forwards.iter().collect();
        forwards.sort_by(|a, b| {
            (
                a.mapping.proto,
                a.mapping.host_port,
                a.mapping.host_ip,
                &a.workload,
            )
                .cmp(&(
                    b.mapping.proto,
                    b.mapping.host_port,
                    b.mapping.host_ip,
                    &b.workload,
                ))
        });
        forwards
    }
}

/// Checks a table name: a letter, then letters, digits or `_`, at most 64 characters.
pub fn validate_table(table: &str) -> Result<(), RulesetError> {
    let mut chars = table.chars();
    let ok = table.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(RulesetError::TableName(table.to_string()))
    }
}

/// Whether `name` is usable as an interface name (1..=15 bytes, no whitespace, `/`, `:`,
/// quotes or backslashes).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '/' | ':' | '"' | '\'' | '\\'))
}

fn valid_comment(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && s.chars().all(|c| !c.is_control() && c != '"' && c != '\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(workload: &str, mapping: &str, address: &str) -> Forward {
        Forward {
            workload: workload.into(),
            mapping: PortMapping::parse(mapping).unwrap(),
            address: address.parse().unwrap(),
        }
    }

    fn ruleset() -> Ruleset {
        let mut r = Ruleset::new("bridge0", Subnet::parse("10.88.0.0/16").unwrap());
        r.forwards.push(forward("web", "8080:80", "10.88.0.2"));
        r.forwards
            .push(forward("dns", "192.0.2.10:53:53/udp", "10.88.0.3"));
        r
    }

    /// One ruleset, both filters: every published port, the NAT and the bridge's forwarding
    /// appear in each rendering, in the same order.
    #[test]
    fn the_same_ruleset_renders_to_nft_and_pf() {
        let r = ruleset();
        let nft = crate::nft::render(&r).unwrap();
        let pf = crate::pf::render(&r, "em0").unwrap();
        let nft_dnat: Vec<&str> = nft.lines().filter(|l| l.contains(" dnat ")).collect();
        assert_eq!(
            nft_dnat,
            [
                "\t\tmeta nfproto ipv4 tcp dport 8080 dnat ip to 10.88.0.2:80 comment \"web\"",
                "\t\tip daddr 192.0.2.10 udp dport 53 dnat ip to 10.88.0.3:53 comment \"dns\"",
            ]
        );
        let pf_rdr: Vec<&str> = pf.lines().filter(|l| l.starts_with("rdr ")).collect();
        assert_eq!(
            pf_rdr,
            [
                "rdr on em0 inet proto tcp from any to any port 8080 -> 10.88.0.2 port 80",
                "rdr on em0 inet proto udp from any to 192.0.2.10 port 53 -> 10.88.0.3 port 53",
            ]
        );
        assert!(nft.contains("ip saddr 10.88.0.0/16 oifname != \"bridge0\" masquerade"));
        assert!(pf.contains("nat on em0 inet from 10.88.0.0/16 to ! 10.88.0.0/16 -> (em0)"));
        assert!(
            nft.contains("iifname \"bridge0\" accept")
                && nft.contains("oifname \"bridge0\" accept")
        );
        assert!(pf.contains("pass quick on bridge0 all keep state label \"warren:bridge\""));
        // Both renderers refuse what the neutral checks refuse, with the same reason.
        let mut bad = ruleset();
        bad.forwards[0].address = "10.99.0.2".parse().unwrap();
        let nft_err = crate::nft::render(&bad).unwrap_err().to_string();
        let pf_err = crate::pf::render(&bad, "em0").unwrap_err().to_string();
        assert_eq!(nft_err, pf_err);
        assert_eq!(nft_err, bad.validate().unwrap_err().to_string());
    }

    #[test]
    fn forwards_render_in_one_order() {
        let r = ruleset();
        let mut shuffled = r.clone();
        shuffled.forwards.reverse();
        let names = |r: &Ruleset| -> Vec<String> {
            r.sorted_forwards()
                .iter()
                .map(|f| f.workload.clone())
                .collect()
        };
        assert_eq!(names(&r), ["web", "dns"]);
        assert_eq!(names(&shuffled), names(&r));
    }

    #[test]
    fn neutral_checks() {
        assert!(ruleset().validate().is_ok());
        let mut r = ruleset();
        r.table = "warren; flush ruleset".into();
        assert!(matches!(r.validate(), Err(RulesetError::TableName(_))));
        let mut r = ruleset();
        r.bridge = "br\"0".into();
        assert!(matches!(r.validate(), Err(RulesetError::BridgeName(_))));
        let mut r = ruleset();
        r.forwards[0].workload = "a\"b".into();
        assert!(matches!(r.validate(), Err(RulesetError::WorkloadName(_))));
        let mut r = ruleset();
        r.forwards[0].mapping = PortMapping::parse("[::1]:8080:80").unwrap();
        assert!(matches!(r.validate(), Err(RulesetError::Ipv6HostIp { .. })));
        let mut r = ruleset();
        r.forwards.push(forward("api", "8080:3000", "10.88.0.4"));
        assert!(matches!(r.validate(), Err(RulesetError::Conflict(_))));
    }
}
