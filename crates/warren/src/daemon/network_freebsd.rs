//! Bridge networking for jails on FreeBSD: the counterpart of the Linux `network` module,
//! with the same inputs and the same store.
//!
//! Every `network = "bridge"` workload gets its address from the IPAM table in SQLite (the
//! allocator and rows Linux uses: stable across restarts, released on delete). warren's
//! bridge is an `if_bridge` interface made with `ifconfig bridge create` and renamed after
//! the `--bridge` setting, holding the subnet's gateway address; IPv4 forwarding is turned
//! on. The jail's own side (an epair into the bridge, or an address alias on it) is made by
//! the jail runtime from the address this module hands out.
//!
//! Published ports and outbound NAT are warren's pf anchor (`warren/<table>`), rendered by
//! [`warren_net::pf::render`] from the [`Ruleset`] the nft renderer gets on Linux and the
//! external interface (the default route's), and loaded with `pfctl -a ... -f -` only when
//! its text changed; a daemon that starts finds an anchor already in sync and leaves it
//! ([`warren_net::freebsd::PfAnchor`]). The operator's own ruleset is never touched: it
//! evaluates `warren/*` anchors (see the README).
//!
//! Names: the hosts file (`<name>`, `<name>.warren`) and the resolver configuration are
//! written under `<state>/net` as on Linux, and copied into each bridge workload's own
//! `/etc` (nullfs cannot mount a single file everywhere), never following a link the
//! workload planted there.
//!
//! [`Net::repair`] runs on every housekeeping tick: a destroyed bridge, lost forwarding or a
//! flushed or edited anchor is put back, with an event naming what was fixed.

use super::netnames::{install_in_root, render_hosts, usable_resolv_conf, write_in_place};
use super::NetSettings;
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren_exec::Executor;
use warren_model::{NetworkMode, WorkloadSpec};
use warren_net::freebsd::{self as bsd, PfAnchor};
use warren_net::ipam;
use warren_net::nft::Ruleset;
use warren_store::Store;

/// The bridge network of one daemon on FreeBSD.
pub struct Net {
    pub settings: NetSettings,
    exec: Arc<dyn Executor>,
    dir: PathBuf,
    anchor: Mutex<PfAnchor>,
    /// The default route's interface, looked up when pf rules are first rendered.
    ext_if: Mutex<Option<String>>,
    /// The hosts file text last written.
    hosts: Mutex<Option<String>>,
}

impl Net {
    pub fn new(
        settings: NetSettings,
        exec: Arc<dyn Executor>,
        _instance: &str,
        state_dir: &Path,
    ) -> Result<Net> {
        bsd::check_ifname(&settings.bridge)?;
        let anchor = PfAnchor::new(&settings.table)?;
        let dir = state_dir.join("net");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write_in_place(
            &dir.join("resolv.conf"),
            usable_resolv_conf(&host).as_bytes(),
        )?;
        Ok(Net {
            settings,
            exec,
            dir,
            anchor: Mutex::new(anchor),
            ext_if: Mutex::new(None),
            hosts: Mutex::new(None),
        })
    }

    /// The hosts file copied into bridge workloads.
    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join("hosts")
    }

    /// The resolver configuration copied into bridge workloads.
    pub fn resolv_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }

    /// Makes the bridge exist with its gateway address, and IPv4 forwarding on. Returns what
    /// had to be changed.
    pub fn ensure_base(&self) -> Result<Vec<String>> {
        let s = &self.settings;
        let mut fixed = bsd::ensure_bridge(self.exec.as_ref(), &s.bridge, &s.subnet)?;
        if bsd::ensure_forwarding(self.exec.as_ref())? {
            fixed.push("enabled IPv4 forwarding".into());
        }
        Ok(fixed)
    }

    /// Gives `name` its address (kept if it has one) with the bridge ready; the jail runtime
    /// attaches the jail to it.
    pub fn prepare(&self, store: &Store, name: &str) -> Result<Ipv4Addr> {
        let subnet = self.settings.subnet;
        let address =
            store.assign_address(name, |taken| ipam::allocate(&subnet, name, taken))??;
        self.ensure_base()?;
        Ok(address)
    }

    /// The address, prefix and gateway of a prepared workload, as the jail runtime wants them.
    pub fn bridge_address(&self, address: Ipv4Addr) -> warren_runtime::BridgeAddress {
        warren_runtime::BridgeAddress {
            address,
            prefix: self.settings.subnet.prefix(),
            gateway: self.settings.subnet.gateway(),
        }
    }

    /// Copies the current hosts file and resolver configuration into a workload's `/etc`.
    pub fn install_names(&self, rootfs: &Path) -> Result<()> {
        for (file, name) in [
            (self.hosts_path(), "hosts"),
            (self.resolv_path(), "resolv.conf"),
        ] {
            let data = match std::fs::read(&file) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(anyhow!("{}: {e}", file.display())),
            };
            install_in_root(rootfs, &Path::new("etc").join(name), &data)?;
        }
        Ok(())
    }

    /// Frees a workload's address when `release` (its epair is the jail runtime's).
    pub fn teardown(&self, store: &Store, name: &str, release: bool) -> Result<()> {
        if release {
            store.release_address(name)?;
        }
        Ok(())
    }

    /// The ruleset for the desired workloads, exactly as Linux computes it for nft.
    pub fn ruleset(
        &self,
        specs: &[&WorkloadSpec],
        addresses: &BTreeMap<String, Ipv4Addr>,
    ) -> Ruleset {
        super::netnames::published(&self.settings, specs, addresses)
    }

    /// Whether this daemon has loaded (or found loaded) its anchor.
    pub fn rules_loaded(&self) -> bool {
        self.anchor.lock().unwrap().loaded()
    }

    fn external_interface(&self) -> Result<String> {
        let mut cached = self.ext_if.lock().unwrap();
        if let Some(i) = cached.as_ref() {
            return Ok(i.clone());
        }
        let found = bsd::external_interface(self.exec.as_ref())?;
        *cached = Some(found.clone());
        Ok(found)
    }

    /// Renders warren's anchor for `ruleset` and loads it if it differs from what is loaded.
    /// Returns whether it loaded anything.
    pub fn sync_rules(&self, ruleset: &Ruleset) -> Result<bool> {
        let ext_if = self.external_interface()?;
        let text = warren_net::pf::render(ruleset, &ext_if)?;
        let mut anchor = self.anchor.lock().unwrap();
        Ok(anchor.sync(self.exec.as_ref(), &text)?)
    }

    /// Rewrites the hosts file if its text changed, and copies it into the root of every
    /// bridge workload whose root filesystem exists (`rootfs` names it).
    pub fn sync_hosts(
        &self,
        specs: &[&WorkloadSpec],
        addresses: &BTreeMap<String, Ipv4Addr>,
        rootfs: &dyn Fn(&str) -> PathBuf,
    ) -> Result<bool> {
        let text = render_hosts(specs, addresses);
        let mut last = self.hosts.lock().unwrap();
        let path = self.hosts_path();
        if last.as_deref() == Some(text.as_str()) && path.exists() {
            return Ok(false);
        }
        write_in_place(&path, text.as_bytes())?;
        for spec in specs {
            if spec.network != NetworkMode::Bridge {
                continue;
            }
            let root = rootfs(&spec.name);
            if root.is_dir() {
                install_in_root(&root, Path::new("etc/hosts"), text.as_bytes())
                    .with_context(|| format!("names of {}", spec.name))?;
            }
        }
        *last = Some(text);
        Ok(true)
    }

    /// Re-creates what someone removed: the bridge and its address, forwarding, the anchor's
    /// rules (reloaded when the kernel's copy drifted). Returns what it fixed.
    pub fn repair(&self) -> Result<Vec<String>> {
        let mut fixed = self.ensure_base()?;
        let mut anchor = self.anchor.lock().unwrap();
        let drift = anchor.repair(self.exec.as_ref())?;
        if !drift.is_empty() {
            fixed.push(format!(
                "reloaded pf anchor {} ({} rule(s) differed)",
                anchor.name(),
                drift.len()
            ));
        }
        Ok(fixed)
    }
}
