//! Bridge networking for workloads on Linux, the [`BridgeNetwork`] the daemon picks there:
//! addresses, namespaces, veths, published ports and names.
//!
//! Every `network = "bridge"` workload gets a named network namespace
//! (`/run/netns/warren-<instance>-<name>`) prepared before its container starts: a veth pair
//! whose host end is enslaved to the bridge and whose peer is `eth0` inside, holding the
//! workload's address from the IPAM table in SQLite (stable across restarts and recreation,
//! released on delete) and a default route via the bridge. The container joins that namespace,
//! so networking is ready before the main process runs and survives container restarts.
//!
//! Published ports and outbound NAT live in warren's own nftables table, rendered by the pure
//! [`warren_net::nft::render`] from the desired workloads and their addresses, and loaded in one
//! transaction only when the text changes. Names are served by one hosts file
//! (`<name>`, `<name>.warren`) bind-mounted read-only over every bridge workload's `/etc/hosts`
//! and rewritten in place when the set of addresses changes.
//!
//! A workload with `userns = true` gets its network namespace created inside its own user
//! namespace ([`warren_runtime::userns::create_persistent`]), so root in the workload holds
//! its privileges over its own network; the user namespace is kept by a bind mount under
//! `/run/warren/userns/` named after the namespace and the range's first host id. A namespace
//! whose owner no longer matches the spec (userns switched, another range) is re-created.
//!
//! [`BridgeNetwork::repair`] runs on every housekeeping tick: a deleted bridge, nft table or workload veth
//! (host reboot, an operator's `ip link del`) is re-created, with an event naming what was fixed.

use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren_exec::Executor;
use warren_model::WorkloadSpec;
use warren_net::bridge::{self, Netns, VethAttachment};
use warren_net::ipam;
use warren_net::nft;
use warren_net::ruleset::Ruleset;
use warren_store::Store;

use super::engine::{BridgeJoin, BridgeNetwork, RunningOnBridge};
use super::netnames::{render_hosts, usable_resolv_conf, write_in_place, NetSettings};

/// Where the user namespaces owning workloads' network namespaces are bound.
pub const USERNS_DIR: &str = "/run/warren/userns";

/// The bridge network of one daemon on Linux.
pub struct LinuxBridge {
    pub settings: NetSettings,
    exec: Arc<dyn Executor>,
    instance: String,
    dir: PathBuf,
    /// The nft text last loaded (None: not loaded by this daemon yet).
    rules: Mutex<Option<String>>,
    /// The hosts file text last written.
    hosts: Mutex<Option<String>>,
}

/// FNV-1a, for short stable interface names.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl LinuxBridge {
    pub fn new(
        settings: NetSettings,
        exec: Arc<dyn Executor>,
        instance: &str,
        state_dir: &Path,
    ) -> Result<LinuxBridge> {
        bridge::check_name(&settings.bridge)?;
        nft::validate_table(&settings.table)?;
        let dir = state_dir.join("net");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let net = LinuxBridge {
            settings,
            exec,
            instance: instance.to_string(),
            dir,
            rules: Mutex::new(None),
            hosts: Mutex::new(None),
        };
        net.write_resolv_conf()?;
        Ok(net)
    }

    /// The `ip netns` name of a workload's namespace.
    pub fn netns_name(&self, name: &str) -> String {
        let readable = format!("warren-{}-{name}", self.instance);
        if bridge::valid_netns_name(&readable) {
            readable
        } else {
            format!("warren-{}-{:016x}", self.instance, fnv(name))
        }
    }

    pub fn netns_path(&self, name: &str) -> PathBuf {
        Path::new("/run/netns").join(self.netns_name(name))
    }

    /// Where the user namespace owning a `userns = true` workload's network namespace is
    /// bound, for the range starting at host id `base`.
    pub fn userns_path(&self, name: &str, base: u32) -> PathBuf {
        Path::new(USERNS_DIR).join(format!("{}.{base}", self.netns_name(name)))
    }

    /// Unbinds every user namespace file of `name` but `keep`.
    fn release_userns_files(&self, name: &str, keep: Option<&Path>) -> Result<()> {
        let prefix = format!("{}.", self.netns_name(name));
        let Ok(entries) = std::fs::read_dir(USERNS_DIR) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with(&prefix) && Some(path.as_path()) != keep
            {
                warren_runtime::userns::release_file(&path)?;
            }
        }
        Ok(())
    }

    /// The host end of a workload's veth pair (at most 15 characters).
    pub fn host_if(&self, name: &str) -> String {
        format!(
            "wv{:010x}",
            fnv(&format!("{}/{name}", self.instance)) & 0xff_ffff_ffff
        )
    }

    /// The hosts file bind-mounted over `/etc/hosts` of bridge workloads.
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The resolver configuration bind-mounted over `/etc/resolv.conf` of bridge workloads.
    pub fn resolv_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// `name`'s address: the one it holds, else the lowest free one that nothing on the
    /// bridge answers for. An address the host's neighbour table shows answering with a MAC
    /// that no workload of this daemon holds (another instance's workload, a machine bridged
    /// in by hand) is skipped, with a warning.
    fn assign(&self, store: &Store, name: &str) -> Result<Ipv4Addr> {
        let subnet = self.settings.subnet;
        let answering = std::fs::read_to_string(bridge::PROC_ARP)
            .map(|arp| bridge::parse_answering(&arp, &self.settings.bridge))
            .unwrap_or_default();
        let address = store.assign_address(name, |taken| {
            if taken.get(name).is_some_and(|a| subnet.is_assignable(*a)) {
                return ipam::allocate(&subnet, name, taken);
            }
            let foreign = foreign_neighbours(&subnet, &answering, taken);
            let mut busy = taken.clone();
            for (i, (addr, mac)) in foreign.iter().enumerate() {
                tracing::warn!(
                    "{addr} answers on bridge {} (MAC {mac}) but belongs to no workload here; not assigning it",
                    self.settings.bridge
                );
                busy.insert(format!("\0neighbour-{i}"), *addr);
            }
            ipam::allocate(&subnet, name, &busy)
        })??;
        Ok(address)
    }

    fn run(&self, cmd: &warren_exec::Cmd) -> Result<()> {
        self.exec
            .run(cmd)
            .map(|_| ())
            .map_err(|e| anyhow!("{}: {e}", cmd.argv_string()))
    }

    /// Writes `resolv.conf` for workloads: the host's nameservers, unless they are loopback
    /// addresses (a local stub resolver is unreachable from a workload's namespace), in which
    /// case systemd-resolved's upstream list is used if there is one.
    fn write_resolv_conf(&self) -> Result<()> {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let mut text = usable_resolv_conf(&host);
        if !text.contains("nameserver") {
            if let Ok(upstream) = std::fs::read_to_string("/run/systemd/resolve/resolv.conf") {
                text = usable_resolv_conf(&upstream);
            }
        }
        write_in_place(&self.resolv_path(), text.as_bytes())
    }
}

/// The neighbours answering in `subnet` that no workload holds (`taken`, name → address).
/// An entry with the MAC warren gives that address ([`bridge::mac_for`]) is a workload of this
/// daemon deleted since (no other instance shares the bridge: [`super::netclaim`]).
pub fn foreign_neighbours(
    subnet: &ipam::Subnet,
    answering: &[(Ipv4Addr, String)],
    taken: &BTreeMap<String, Ipv4Addr>,
) -> Vec<(Ipv4Addr, String)> {
    answering
        .iter()
        .filter(|(a, mac)| {
            subnet.is_assignable(*a)
                && !taken.values().any(|t| t == a)
                && *mac != bridge::mac_for(*a)
        })
        .cloned()
        .collect()
}

impl BridgeNetwork for LinuxBridge {
    fn settings(&self) -> &NetSettings {
        &self.settings
    }

    /// The bridge with its gateway address, IPv4 forwarding, and `route_localnet` on the
    /// bridge (the NAT itself is the nft table's).
    fn ensure_bridge(&self) -> Result<Vec<String>> {
        let s = &self.settings;
        let mut fixed = Vec::new();
        let c = bridge::ensure_bridge(self.exec.as_ref(), &s.bridge, &s.subnet)?;
        if c.created {
            fixed.push(format!("created bridge {} ({})", s.bridge, s.subnet));
        } else if !c.unchanged() {
            fixed.push(format!("repaired bridge {}", s.bridge));
        }
        if warren_net::sysctl::ensure_ip_forward(self.exec.as_ref())? {
            fixed.push("enabled IPv4 forwarding".into());
        }
        // Lets a port published on 127.0.0.1 be forwarded into the bridge.
        let key = warren_net::sysctl::route_localnet_key(&s.bridge);
        warren_net::sysctl::ensure(self.exec.as_ref(), &key, "1")?;
        Ok(fixed)
    }

    /// The address, namespace and veth (whatever is missing). With `userns` (the range's
    /// first host id), the namespace belongs to a user namespace mapping container ids
    /// `0..65536` there.
    fn attach(&self, store: &Store, name: &str, userns: Option<u32>) -> Result<Ipv4Addr> {
        let address = self.assign(store, name)?;
        self.ensure_bridge()?;
        let ns = self.netns_name(name);
        let path = self.netns_path(name);
        let owner = userns.map(|base| self.userns_path(name, base));
        if path.exists() {
            let owned = owner.as_deref().is_none_or(|o| o.exists())
                && warren_runtime::userns::netns_owned_by(&path, owner.as_deref()).unwrap_or(false);
            if !owned {
                // userns was switched (or its range moved): start over in the right owner.
                bridge::detach_veth(self.exec.as_ref(), &self.host_if(name))?;
                self.run(&bridge::netns_del_cmd(&ns))?;
            }
        }
        self.release_userns_files(name, owner.as_deref())?;
        let fresh_ns = !path.exists();
        if fresh_ns {
            match (userns, &owner) {
                (Some(base), Some(owner)) => {
                    for dir in [Path::new("/run/netns"), Path::new(USERNS_DIR)] {
                        std::fs::create_dir_all(dir)
                            .with_context(|| format!("{}", dir.display()))?;
                    }
                    warren_runtime::userns::create_persistent(
                        owner,
                        &path,
                        base,
                        warren_runtime::userns::IDS_PER_WORKLOAD,
                    )
                    .context("creating the workload's user and network namespaces")?;
                }
                _ => self.run(&bridge::netns_add_cmd(&ns))?,
            }
        }
        let host_if = self.host_if(name);
        if fresh_ns || bridge::link(self.exec.as_ref(), &host_if)?.is_none() {
            let attached = bridge::attach_veth(
                self.exec.as_ref(),
                &VethAttachment {
                    host_if,
                    netns: Netns::Named(ns.clone()),
                    bridge: self.settings.bridge.clone(),
                    address,
                    subnet: self.settings.subnet,
                },
            );
            if let Err(e) = attached {
                if fresh_ns {
                    let _ = self.exec.run(&bridge::netns_del_cmd(&ns));
                    let _ = self.release_userns_files(name, None);
                }
                return Err(e.into());
            }
        }
        Ok(address)
    }

    fn join(&self, name: &str, userns: Option<u32>) -> BridgeJoin {
        BridgeJoin {
            namespace: warren_runtime::NetNamespace::Path(self.netns_path(name)),
            binds: vec![
                (self.hosts_path(), "/etc/hosts".into()),
                (self.resolv_path(), "/etc/resolv.conf".into()),
            ],
            userns_path: userns.map(|base| self.userns_path(name, base)),
        }
    }

    /// A tap named like the workload's veth would be (so detach and repair find it).
    fn attach_tap(&self, store: &Store, name: &str) -> Result<(String, Ipv4Addr)> {
        let address = self.assign(store, name)?;
        self.ensure_bridge()?;
        let tap = self.tap_name(name);
        if bridge::link(self.exec.as_ref(), &tap)?.is_none() {
            self.run(&bridge::tap_add_cmd(&tap))?;
        }
        self.run(&bridge::set_master_cmd(&tap, &self.settings.bridge))?;
        self.run(&bridge::link_up_cmd(&tap))?;
        Ok((tap, address))
    }

    fn tap_name(&self, name: &str) -> String {
        self.host_if(name)
    }

    fn hosts_text(&self) -> Option<String> {
        std::fs::read_to_string(self.hosts_path()).ok()
    }

    /// The veth (or a VM's tap), the namespace and its user namespace files.
    fn detach(&self, store: &Store, name: &str, release: bool) -> Result<()> {
        bridge::detach_veth(self.exec.as_ref(), &self.host_if(name))?;
        if self.netns_path(name).exists() {
            self.run(&bridge::netns_del_cmd(&self.netns_name(name)))?;
        }
        self.release_userns_files(name, None)?;
        if release {
            store.release_address(name)?;
        }
        Ok(())
    }

    /// Whether this daemon has loaded its table (so it must keep it current).
    fn rules_loaded(&self) -> bool {
        self.rules.lock().unwrap().is_some()
    }

    /// Loads `ruleset` if it differs from what this daemon last loaded. Returns whether it
    /// loaded anything.
    fn sync_rules(&self, ruleset: &Ruleset) -> Result<bool> {
        let text = nft::render(ruleset)?;
        let mut last = self.rules.lock().unwrap();
        if last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        nft::apply(self.exec.as_ref(), &self.settings.table, &text)?;
        *last = Some(text);
        Ok(true)
    }

    /// Rewrites the hosts file (in place, so bind mounts see it) if its text changed.
    fn sync_hosts(
        &self,
        specs: &[&WorkloadSpec],
        addresses: &BTreeMap<String, Ipv4Addr>,
        _rootfs: &dyn Fn(&str) -> PathBuf,
    ) -> Result<bool> {
        let text = render_hosts(specs, addresses);
        let mut last = self.hosts.lock().unwrap();
        let path = self.hosts_path();
        if last.as_deref() == Some(text.as_str()) && path.exists() {
            return Ok(false);
        }
        write_in_place(&path, text.as_bytes())?;
        *last = Some(text);
        Ok(true)
    }

    /// The names are bound over `/etc/hosts` and `/etc/resolv.conf` ([`Self::join`]).
    fn install_names(&self, _rootfs: &Path) -> Result<()> {
        Ok(())
    }

    /// Re-creates what someone deleted: the bridge, the nft table, the veth of each running
    /// bridge workload. Nothing is kept while no bridge workload runs and no table is loaded.
    fn repair(&self, _bridge_desired: bool, running: &[RunningOnBridge]) -> Result<Vec<String>> {
        if running.is_empty() && !self.rules_loaded() {
            return Ok(Vec::new());
        }
        let mut fixed = self.ensure_bridge()?;
        if self.rules.lock().unwrap().is_some()
            && !nft::table_exists(self.exec.as_ref(), &self.settings.table)?
        {
            let text = self.rules.lock().unwrap().clone().unwrap_or_default();
            nft::apply(self.exec.as_ref(), &self.settings.table, &text)?;
            fixed.push(format!(
                "restored nftables table inet {}",
                self.settings.table
            ));
        }
        if running.is_empty() {
            return Ok(fixed);
        }
        let out = self
            .exec
            .run(&bridge::links_cmd())
            .map_err(|e| anyhow!("listing links: {e}"))?;
        let links = bridge::parse_link_masters(&out.stdout_str())?;
        let br = &self.settings.bridge;
        for RunningOnBridge {
            name,
            pid,
            address,
            vm,
        } in running
        {
            let (pid, address) = (*pid, *address);
            let host_if = self.host_if(name);
            match links.iter().find(|(n, _)| *n == host_if) {
                Some((_, Some(master))) if master == br => continue,
                Some(_) => {
                    // The bridge was re-created: the veth survived but lost its master.
                    self.run(&bridge::set_master_cmd(&host_if, br))?;
                    self.run(&bridge::link_up_cmd(&host_if))?;
                    fixed.push(format!("re-enslaved {name} ({host_if}) to {br}"));
                    continue;
                }
                None if *vm => {
                    // QEMU held the deleted tap's queue: only a restart reconnects the VM.
                    fixed.push(format!(
                        "{name}'s tap {host_if} was deleted; restart the VM to reconnect it"
                    ));
                    continue;
                }
                None => {}
            }
            // By PID: the namespace's bind mount may be gone too; the process still holds it.
            bridge::attach_veth(
                self.exec.as_ref(),
                &VethAttachment {
                    host_if: host_if.clone(),
                    netns: Netns::Pid(pid),
                    bridge: self.settings.bridge.clone(),
                    address,
                    subnet: self.settings.subnet,
                },
            )
            .with_context(|| format!("re-attaching {name}"))?;
            fixed.push(format!("re-attached {name} ({host_if}, {address})"));
        }
        Ok(fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::{NetworkMode, Source};

    fn spec(name: &str, network: NetworkMode) -> WorkloadSpec {
        let mut s = WorkloadSpec::new(name, Source::World("busybox".into()));
        s.network = network;
        s
    }

    #[test]
    fn foreign_neighbours_are_the_unknown_answering_addresses() {
        let subnet = ipam::Subnet::parse("10.88.0.0/24").unwrap();
        let ip = |d: u8| Ipv4Addr::new(10, 88, 0, d);
        let answering = vec![
            (ip(1), "aa:00:00:00:00:01".to_string()),
            (ip(2), "02:42:0a:58:00:02".to_string()),
            (ip(3), "aa:00:00:00:00:03".to_string()),
            (ip(4), bridge::mac_for(ip(4))),
            (ip(5), "aa:00:00:00:00:05".to_string()),
            (Ipv4Addr::new(192, 0, 2, 9), "aa:00:00:00:00:09".to_string()),
        ];
        let taken: BTreeMap<String, Ipv4Addr> =
            [("web".to_string(), ip(2)), ("vm".to_string(), ip(5))].into();
        // The gateway, held addresses (a vm's own MAC too), warren's own MACs and addresses
        // outside the subnet are not foreign.
        assert_eq!(
            foreign_neighbours(&subnet, &answering, &taken),
            [(ip(3), "aa:00:00:00:00:03".to_string())]
        );
    }

    #[test]
    fn hosts_list_bridge_workloads_by_name() {
        let db = spec("db", NetworkMode::Bridge);
        let mut web = spec("web", NetworkMode::Bridge);
        web.hostname = Some("frontend".into());
        let host = spec("tool", NetworkMode::Host);
        let pending = spec("later", NetworkMode::Bridge);
        let addrs: BTreeMap<String, Ipv4Addr> = [
            ("db".to_string(), Ipv4Addr::new(10, 88, 0, 3)),
            ("web".to_string(), Ipv4Addr::new(10, 88, 0, 2)),
            ("tool".to_string(), Ipv4Addr::new(10, 88, 0, 9)),
        ]
        .into();
        let text = render_hosts(&[&web, &db, &host, &pending], &addrs);
        let lines: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(
            lines,
            [
                "10.88.0.3\tdb db.warren",
                "10.88.0.2\tweb web.warren frontend"
            ]
        );
    }

    #[test]
    fn resolv_conf_drops_loopback_resolvers() {
        let host =
            "# generated\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch lan\noptions edns0\n";
        let out = usable_resolv_conf(host);
        assert!(!out.contains("127.0.0.53"));
        assert!(out.contains("nameserver 192.0.2.1\n"));
        assert!(out.contains("search lan\n"));
        assert!(out.contains("options edns0\n"));
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        let dir = tempfile::tempdir().unwrap();
        let net = LinuxBridge::new(
            NetSettings::default(),
            Arc::new(warren_exec::RecordingExecutor::new()),
            "abc123",
            dir.path(),
        )
        .unwrap();
        let long = "a".repeat(63);
        for n in ["web", long.as_str()] {
            let i = net.host_if(n);
            assert!(i.len() <= 15 && bridge::check_name(&i).is_ok(), "{i}");
            assert!(bridge::valid_netns_name(&net.netns_name(n)));
        }
        assert_eq!(net.netns_name("web"), "warren-abc123-web");
        assert_ne!(net.host_if("web"), net.host_if("db"));
    }
}
