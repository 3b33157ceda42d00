//! Discovery on the LAN with mDNS/DNS-SD: what the daemon announces and what `warren discover`
//! and `warren adopt SHORT_ID` hear.
//!
//! A daemon whose remote API listens announces the service `_warren._tcp.local.` (instance
//! `warren-SHORT`, port = the remote API's) with TXT records `id` (the host id, the audience of
//! tokens), `short` (its first 8 characters), `version`, `port` and `fp` (the remote API's
//! certificate fingerprint, `sha256:...`). The interfaces it announces on are the ones named
//! by `--mdns-interface`, else every interface except the daemon's bridge, container and VM
//! links (`warren*`, `wv*`, `veth*`, `tap*`, `docker*`, `br-*`, `virbr*`) and VPN links (`wg*`,
//! `tun*`, `tailscale*`, `zt*`): a homelab's LAN, not its containers or tunnels.
//!
//! What is heard is only a hint: the fingerprint is pinned when adopting, and the TLS
//! connection is refused if the certificate presented differs from it.

use anyhow::{anyhow, Context, Result};
use mdns_sd::{IfKind, IfPredicate, ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_warren._tcp.local.";

/// Interface name prefixes skipped when no `--mdns-interface` is given.
const SKIPPED_PREFIXES: &[&str] = &[
    "warren",
    "wv",
    "veth",
    "tap",
    "docker",
    "br-",
    "virbr",
    "wg",
    "tun",
    "tailscale",
    "zt",
];

/// Whether the default selection skips interface `name` (`bridge`: the daemon's bridge).
pub fn skipped_by_default(name: &str, bridge: &str) -> bool {
    name == bridge || SKIPPED_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// What the daemon announces.
#[derive(Debug, Clone)]
pub struct Announcement {
    pub host_id: String,
    pub fingerprint: String,
    /// The remote API's port.
    pub port: u16,
    /// Interfaces to announce on (empty: the default selection).
    pub interfaces: Vec<String>,
    /// The daemon's bridge (never announced on by default).
    pub bridge: String,
}

/// The short id of a host id: its first 8 characters.
pub fn short_id(host_id: &str) -> &str {
    host_id.get(..8).unwrap_or(host_id)
}

/// The TXT records of an announcement.
pub fn txt(a: &Announcement) -> Vec<(&'static str, String)> {
    vec![
        ("id", a.host_id.clone()),
        ("short", short_id(&a.host_id).to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("port", a.port.to_string()),
        ("fp", a.fingerprint.clone()),
    ]
}

/// A running announcement; dropping it withdraws the service and stops the responder.
pub struct Announcer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl Drop for Announcer {
    fn drop(&mut self) {
        if let Ok(rx) = self.daemon.unregister(&self.fullname) {
            let _ = rx.recv_timeout(Duration::from_secs(1));
        }
        let _ = self.daemon.shutdown();
    }
}

fn mdns_err(e: mdns_sd::Error) -> anyhow::Error {
    anyhow!("mDNS: {e}")
}

/// Starts announcing `a` on the selected interfaces.
pub fn announce(a: &Announcement) -> Result<Announcer> {
    let daemon = ServiceDaemon::new().map_err(mdns_err)?;
    if a.interfaces.is_empty() {
        let bridge = a.bridge.clone();
        daemon
            .disable_interface(IfKind::Predicate(IfPredicate::new(move |i| {
                skipped_by_default(&i.name, &bridge)
            })))
            .map_err(mdns_err)?;
    } else {
        daemon.disable_interface(IfKind::All).map_err(mdns_err)?;
        daemon
            .enable_interface(
                a.interfaces
                    .iter()
                    .map(|n| IfKind::Name(n.clone()))
                    .collect::<Vec<_>>(),
            )
            .map_err(mdns_err)?;
    }
    let short = short_id(&a.host_id);
    let host_name = format!("warren-{short}.local.");
    let txt: Vec<(&str, String)> = txt(a);
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        &format!("warren-{short}"),
        &host_name,
        "",
        a.port,
        &txt[..],
    )
    .map_err(mdns_err)?
    .enable_addr_auto();
    let fullname = info.get_fullname().to_string();
    daemon.register(info).map_err(mdns_err)?;
    Ok(Announcer { daemon, fullname })
}

/// One host heard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heard {
    pub host_id: String,
    pub short_id: String,
    pub version: String,
    pub addresses: Vec<IpAddr>,
    pub port: u16,
    pub fingerprint: String,
}

impl Heard {
    /// `ADDR:PORT` to connect to: the first IPv4 address, else the first address.
    pub fn endpoint(&self) -> Option<String> {
        let addr = self
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(self.addresses.first())?;
        Some(match addr {
            IpAddr::V4(v4) => format!("{v4}:{}", self.port),
            IpAddr::V6(v6) => format!("[{v6}]:{}", self.port),
        })
    }
}

/// A host from its TXT records, port and addresses (`None` when a record is missing).
pub fn heard(txt: &BTreeMap<String, String>, port: u16, addresses: Vec<IpAddr>) -> Option<Heard> {
    let host_id = txt.get("id")?.clone();
    let fingerprint = txt.get("fp")?.clone();
    if !fingerprint.starts_with("sha256:") {
        return None;
    }
    let mut addresses = addresses;
    addresses.sort();
    addresses.dedup();
    Some(Heard {
        short_id: txt
            .get("short")
            .cloned()
            .unwrap_or_else(|| short_id(&host_id).to_string()),
        version: txt.get("version").cloned().unwrap_or_default(),
        port: txt.get("port").and_then(|p| p.parse().ok()).unwrap_or(port),
        host_id,
        addresses,
        fingerprint,
    })
}

/// Listens for `timeout` and returns every host heard, by host id (blocking).
pub fn browse(timeout: Duration) -> Result<Vec<Heard>> {
    let daemon = ServiceDaemon::new().map_err(mdns_err)?;
    let rx = daemon.browse(SERVICE_TYPE).map_err(mdns_err)?;
    let deadline = Instant::now() + timeout;
    let mut found: BTreeMap<String, Heard> = BTreeMap::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(ServiceEvent::ServiceResolved(s)) => {
                let txt: BTreeMap<String, String> = s
                    .txt_properties
                    .iter()
                    .map(|p| (p.key().to_string(), p.val_str().to_string()))
                    .collect();
                let addrs = s.addresses.iter().map(|a| a.to_ip_addr()).collect();
                if let Some(h) = heard(&txt, s.port, addrs) {
                    match found.get_mut(&h.host_id) {
                        Some(old) => {
                            old.addresses.extend(h.addresses);
                            old.addresses.sort();
                            old.addresses.dedup();
                        }
                        None => {
                            found.insert(h.host_id.clone(), h);
                        }
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.stop_browse(SERVICE_TYPE);
    let _ = daemon.shutdown();
    Ok(found.into_values().collect())
}

/// Parses `3s`, `500ms`, `2m` or a number of seconds.
pub fn parse_timeout(s: &str) -> Result<Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .with_context(|| format!("{s:?}: give a duration such as 3s or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => anyhow::bail!("{s:?}: give a duration such as 3s or 500ms"),
    };
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_selection_skips_bridges_containers_and_vpns() {
        for skip in [
            "warren0",
            "wv0a1b2c",
            "veth12",
            "tap3",
            "docker0",
            "br-1f2e",
            "wg0",
            "tun0",
            "tailscale0",
            "lab-br",
        ] {
            assert!(skipped_by_default(skip, "lab-br"), "{skip}");
        }
        for keep in ["eth0", "enp3s0", "wlan0", "bond0", "lo"] {
            assert!(!skipped_by_default(keep, "lab-br"), "{keep}");
        }
    }

    #[test]
    fn txt_records_round_trip() {
        let a = Announcement {
            host_id: "0123456789abcdef0123456789abcdef".into(),
            fingerprint: "sha256:aa".into(),
            port: 7443,
            interfaces: vec![],
            bridge: "warren0".into(),
        };
        let txt: BTreeMap<String, String> = txt(&a)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(txt["short"], "01234567");
        let addrs = vec![
            "fe80::1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
        ];
        let h = heard(&txt, 1, addrs).unwrap();
        assert_eq!(h.host_id, a.host_id);
        assert_eq!(h.short_id, "01234567");
        assert_eq!(h.port, 7443);
        assert_eq!(h.fingerprint, "sha256:aa");
        assert_eq!(h.addresses.len(), 2);
        assert_eq!(h.endpoint().unwrap(), "10.0.0.2:7443");
        let mut bad = txt.clone();
        bad.insert("fp".into(), "md5:x".into());
        assert_eq!(heard(&bad, 1, vec![]), None);
        bad.remove("fp");
        assert_eq!(heard(&bad, 1, vec![]), None);
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_timeout("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_timeout("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("3h").is_err());
    }
}
