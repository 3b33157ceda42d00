//! IPv4 address management for the workload bridge.
//!
//! A [`Subnet`] is an IPv4 network such as `10.88.0.0/16`. Its first host address is the
//! gateway (the bridge's own address); the network and broadcast addresses are never handed out.
//! [`allocate`] is a pure function over the addresses already taken (as stored by the daemon):
//! a name that already holds an address in the subnet keeps it, so a recreated workload keeps its
//! address; a new name gets the lowest free host address. There is no hashing, so there are no
//! collisions; when every host address is taken the error names the subnet.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// Errors of subnet parsing and address allocation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("invalid subnet {input:?}: expected an IPv4 network like 10.88.0.0/16")]
    Syntax { input: String },
    #[error("invalid subnet {input:?}: prefix length {prefix} is not between 1 and 30")]
    Prefix { input: String, prefix: String },
    #[error("invalid subnet {input:?}: host bits are set (did you mean {network}?)")]
    HostBits { input: String, network: String },
    #[error("subnet {subnet} is exhausted: all {hosts} workload addresses are taken")]
    Exhausted { subnet: Subnet, hosts: u32 },
}

/// An IPv4 network with a prefix length between 1 and 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    network: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/len`. The address must be the network address (no host bits set), and
    /// the prefix must leave room for a gateway and at least one workload (`/30` at most).
    pub fn parse(input: &str) -> Result<Subnet, IpamError> {
        let syntax = || IpamError::Syntax {
            input: input.to_string(),
        };
        let (addr, prefix) = input.trim().split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let prefix_num: u8 = match prefix.parse() {
            Ok(p) if (1..=30).contains(&p) && !prefix.starts_with('+') => p,
            _ => {
                return Err(IpamError::Prefix {
                    input: input.to_string(),
                    prefix: prefix.to_string(),
                })
            }
        };
        let mask = mask(prefix_num);
        let network = Ipv4Addr::from(u32::from(addr) & mask);
        if network != addr {
            return Err(IpamError::HostBits {
                input: input.to_string(),
                network: format!("{network}/{prefix_num}"),
            });
        }
        Ok(Subnet {
            network,
            prefix: prefix_num,
        })
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The broadcast address (reserved).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix))
    }

    /// The gateway: the first host address, held by the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Whether `addr` lies in the subnet (network and broadcast included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix) == u32::from(self.network)
    }

    /// Whether `addr` may be given to a workload: inside the subnet and neither the network,
    /// the gateway nor the broadcast address.
    pub fn is_assignable(&self, addr: Ipv4Addr) -> bool {
        let a = u32::from(addr);
        self.contains(addr) && a > u32::from(self.gateway()) && a < u32::from(self.broadcast())
    }

    /// How many addresses workloads can get (all hosts but the gateway).
    pub fn assignable_count(&self) -> u32 {
        u32::from(self.broadcast()) - u32::from(self.gateway()) - 1
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = IpamError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Subnet::parse(s)
    }
}

/// The address for `name` in `subnet`, given every address already `taken` (name → address).
///
/// If `name` already holds an assignable address of this subnet it is returned unchanged.
/// Otherwise the lowest assignable address that no name holds is returned. Addresses held
/// outside the subnet (for example from an earlier, different subnet) are ignored.
pub fn allocate(
    subnet: &Subnet,
    name: &str,
    taken: &BTreeMap<String, Ipv4Addr>,
) -> Result<Ipv4Addr, IpamError> {
    if let Some(&addr) = taken.get(name) {
        if subnet.is_assignable(addr) {
            return Ok(addr);
        }
    }
    let used: BTreeSet<u32> = taken
        .values()
        .filter(|a| subnet.is_assignable(**a))
        .map(|a| u32::from(*a))
        .collect();
    let first = u32::from(subnet.gateway()) + 1;
    let last = u32::from(subnet.broadcast()) - 1;
    // `used` is sorted: walk it alongside the candidates; the first gap is the answer.
    let mut candidate = first;
    for u in used {
        if u != candidate {
            break;
        }
        candidate += 1;
    }
    if candidate > last {
        return Err(IpamError::Exhausted {
            subnet: *subnet,
            hosts: subnet.assignable_count(),
        });
    }
    Ok(Ipv4Addr::from(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_reserved_addresses() {
        let s = Subnet::parse("10.88.0.0/16").unwrap();
        assert_eq!(s.to_string(), "10.88.0.0/16");
        assert_eq!(s.gateway(), ip("10.88.0.1"));
        assert_eq!(s.broadcast(), ip("10.88.255.255"));
        assert_eq!(s.assignable_count(), 65533);
        assert!(!s.is_assignable(ip("10.88.0.0")));
        assert!(!s.is_assignable(ip("10.88.0.1")));
        assert!(s.is_assignable(ip("10.88.0.2")));
        assert!(!s.is_assignable(ip("10.88.255.255")));
        assert!(!s.is_assignable(ip("10.89.0.2")));
    }

    #[test]
    fn parse_errors_are_clear() {
        let e = Subnet::parse("10.88.0.1/16").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid subnet \"10.88.0.1/16\": host bits are set (did you mean 10.88.0.0/16?)"
        );
        assert!(matches!(
            Subnet::parse("10.0.0.0/31"),
            Err(IpamError::Prefix { .. })
        ));
        assert!(matches!(
            Subnet::parse("10.0.0.0/0"),
            Err(IpamError::Prefix { .. })
        ));
        assert!(matches!(
            Subnet::parse("10.0.0.0"),
            Err(IpamError::Syntax { .. })
        ));
        assert!(matches!(
            Subnet::parse("::1/64"),
            Err(IpamError::Syntax { .. })
        ));
    }

    #[test]
    fn lowest_free_and_stable() {
        let s = Subnet::parse("10.88.0.0/16").unwrap();
        let mut taken = BTreeMap::new();
        assert_eq!(allocate(&s, "a", &taken).unwrap(), ip("10.88.0.2"));
        taken.insert("a".to_string(), ip("10.88.0.2"));
        taken.insert("b".to_string(), ip("10.88.0.3"));
        taken.insert("c".to_string(), ip("10.88.0.5"));
        assert_eq!(allocate(&s, "d", &taken).unwrap(), ip("10.88.0.4"));
        assert_eq!(allocate(&s, "c", &taken).unwrap(), ip("10.88.0.5"));
        taken.remove("b");
        assert_eq!(allocate(&s, "e", &taken).unwrap(), ip("10.88.0.3"));
    }

    #[test]
    fn address_outside_subnet_is_replaced() {
        let s = Subnet::parse("10.88.0.0/24").unwrap();
        let taken = BTreeMap::from([("a".to_string(), ip("192.168.1.7"))]);
        assert_eq!(allocate(&s, "a", &taken).unwrap(), ip("10.88.0.2"));
    }

    #[test]
    fn exhausted_names_the_subnet() {
        let s = Subnet::parse("192.168.7.0/30").unwrap();
        let taken = BTreeMap::from([("a".to_string(), ip("192.168.7.2"))]);
        let e = allocate(&s, "b", &taken).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subnet 192.168.7.0/30 is exhausted: all 1 workload addresses are taken"
        );
        // The holder itself still gets its address.
        assert_eq!(allocate(&s, "a", &taken).unwrap(), ip("192.168.7.2"));
    }

    fn arb_taken(s: Subnet) -> impl Strategy<Value = BTreeMap<String, Ipv4Addr>> {
        let base = u32::from(s.network());
        let span = u32::from(s.broadcast()) - base;
        proptest::collection::btree_map(
            "[a-f]{1,3}",
            (0..=span + 2).prop_map(move |o| Ipv4Addr::from(base.wrapping_add(o))),
            0..40,
        )
        // Stored state never gives one address to two names: keep the first holder only.
        .prop_map(|m| {
            let mut seen = BTreeSet::new();
            m.into_iter().filter(|(_, a)| seen.insert(*a)).collect()
        })
    }

    fn arb_subnet() -> impl Strategy<Value = Subnet> {
        (any::<u32>(), 24u8..=30).prop_map(|(a, p)| {
            Subnet::parse(&format!("{}/{}", Ipv4Addr::from(a & mask(p)), p)).unwrap()
        })
    }

    proptest! {
        #[test]
        fn never_taken_or_reserved(
            (s, taken, name) in arb_subnet().prop_flat_map(|s| (Just(s), arb_taken(s), "[a-g]{1,3}"))
        ) {
            match allocate(&s, &name, &taken) {
                Ok(a) => {
                    prop_assert!(s.is_assignable(a));
                    for (other, b) in &taken {
                        if other != &name {
                            prop_assert_ne!(a, *b, "{} already holds {}", other, b);
                        }
                    }
                    // Lowest free: every lower assignable address is held by someone else.
                    if taken.get(&name) != Some(&a) {
                        let held: BTreeSet<Ipv4Addr> = taken.values().copied().collect();
                        let mut x = u32::from(s.gateway()) + 1;
                        while x < u32::from(a) {
                            prop_assert!(held.contains(&Ipv4Addr::from(x)));
                            x += 1;
                        }
                    }
                }
                Err(IpamError::Exhausted { subnet, .. }) => {
                    prop_assert_eq!(subnet, s);
                    let held: BTreeSet<Ipv4Addr> =
                        taken.values().copied().filter(|a| s.is_assignable(*a)).collect();
                    prop_assert_eq!(held.len() as u32, s.assignable_count());
                }
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        #[test]
        fn deterministic_and_stable(
            (s, taken, name) in arb_subnet().prop_flat_map(|s| (Just(s), arb_taken(s), "[a-g]{1,3}"))
        ) {
            let first = allocate(&s, &name, &taken);
            prop_assert_eq!(&first, &allocate(&s, &name, &taken.clone()));
            if let Ok(a) = first {
                // Once recorded, the name keeps its address whatever else is taken or freed.
                let mut after = taken.clone();
                after.insert(name.clone(), a);
                prop_assert_eq!(allocate(&s, &name, &after), Ok(a));
                let other = after.keys().find(|k| **k != name).cloned();
                if let Some(other) = other {
                    after.remove(&other);
                    prop_assert_eq!(allocate(&s, &name, &after), Ok(a));
                }
            }
        }
    }
}
