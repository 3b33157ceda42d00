//! Bridge networking for jails on FreeBSD, the [`BridgeNetwork`] the daemon picks there: the
//! counterpart of the Linux `network` module, with the same inputs and the same store.
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
//! [`BridgeNetwork::repair`] runs on every housekeeping tick: a destroyed bridge, lost forwarding or a
//! flushed or edited anchor is put back, with an event naming what was fixed.

use super::engine::{BridgeJoin, BridgeNetwork, RunningOnBridge};
use super::netnames::{
    install_in_root, render_hosts, usable_resolv_conf, write_in_place, NetSettings,
};
use anyhow::{anyhow, Context, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren_exec::Executor;
use warren_model::{NetworkMode, WorkloadSpec};
use warren_net::freebsd::{self as bsd, PfAnchor};
use warren_net::ipam;
use warren_net::ruleset::Ruleset;
use warren_store::Store;

/// The bridge network of one daemon on FreeBSD.
pub struct FreeBsdBridge {
    pub settings: NetSettings,
    exec: Arc<dyn Executor>,
    dir: PathBuf,
    anchor: Mutex<PfAnchor>,
    /// The default route's interface, looked up when pf rules are first rendered.
    ext_if: Mutex<Option<String>>,
    /// The hosts file text last written.
    hosts: Mutex<Option<String>>,
}

impl FreeBsdBridge {
    pub fn new(
        settings: NetSettings,
        exec: Arc<dyn Executor>,
        state_dir: &Path,
    ) -> Result<FreeBsdBridge> {
        bsd::check_ifname(&settings.bridge)?;
        let anchor = PfAnchor::new(&settings.table)?;
        let dir = state_dir.join("net");
        std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        write_in_place(
            &dir.join("resolv.conf"),
            usable_resolv_conf(&host).as_bytes(),
        )?;
        Ok(FreeBsdBridge {
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

    fn external_interface(&self) -> Result<String> {
        let mut cached = self.ext_if.lock().unwrap();
        if let Some(i) = cached.as_ref() {
            return Ok(i.clone());
        }
        let found = bsd::external_interface(self.exec.as_ref())?;
        *cached = Some(found.clone());
        Ok(found)
    }
}

impl BridgeNetwork for FreeBsdBridge {
    fn settings(&self) -> &NetSettings {
        &self.settings
    }

    /// Makes the bridge exist with its gateway address, and IPv4 forwarding on. Returns what
    /// had to be changed.
    fn ensure_bridge(&self) -> Result<Vec<String>> {
        let s = &self.settings;
        let mut fixed = bsd::ensure_bridge(self.exec.as_ref(), &s.bridge, &s.subnet)?;
        if bsd::ensure_forwarding(self.exec.as_ref())? {
            fixed.push("enabled IPv4 forwarding".into());
        }
        Ok(fixed)
    }

    /// The address (kept if it has one) with the bridge ready; the jail runtime attaches the
    /// jail to it (an epair into the bridge, or an alias on it). Jails have no user namespace.
    fn attach(&self, store: &Store, name: &str, _userns: Option<u32>) -> Result<Ipv4Addr> {
        let subnet = self.settings.subnet;
        let address =
            store.assign_address(name, |taken| ipam::allocate(&subnet, name, taken))??;
        self.ensure_bridge()?;
        Ok(address)
    }

    /// The jail runtime attaches the jail to the bridge itself; names are copied in.
    fn join(&self, _name: &str, _userns: Option<u32>) -> BridgeJoin {
        BridgeJoin {
            namespace: warren_runtime::NetNamespace::Bridge,
            binds: Vec::new(),
            userns_path: None,
        }
    }

    /// A bhyve VM's tap: the address, with the bridge ready; the tap is made and enslaved by
    /// the bhyve lifecycle (`warren_vm::bhyve`), named after the VM.
    fn attach_tap(&self, store: &Store, name: &str) -> Result<(String, Ipv4Addr)> {
        let address = self.attach(store, name, None)?;
        Ok((self.tap_name(name), address))
    }

    fn tap_name(&self, name: &str) -> String {
        format!("tap-{name}")
    }

    fn hosts_text(&self) -> Option<String> {
        std::fs::read_to_string(self.hosts_path()).ok()
    }

    /// Copies the current hosts file and resolver configuration into a workload's `/etc`.
    fn install_names(&self, rootfs: &Path) -> Result<()> {
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
    fn detach(&self, store: &Store, name: &str, release: bool) -> Result<()> {
        if release {
            store.release_address(name)?;
        }
        Ok(())
    }

    /// Whether this daemon has loaded (or found loaded) its anchor.
    fn rules_loaded(&self) -> bool {
        self.anchor.lock().unwrap().loaded()
    }

    /// Renders warren's anchor for `ruleset` and loads it if it differs from what is loaded.
    /// Returns whether it loaded anything.
    fn sync_rules(&self, ruleset: &Ruleset) -> Result<bool> {
        let ext_if = self.external_interface()?;
        let text = warren_net::pf::render(ruleset, &ext_if)?;
        let mut anchor = self.anchor.lock().unwrap();
        Ok(anchor.sync(self.exec.as_ref(), &text)?)
    }

    /// Rewrites the hosts file if its text changed, and copies it into the root of every
    /// bridge workload whose root filesystem exists (`rootfs` names it).
    fn sync_hosts(
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
    /// rules (reloaded when the kernel's copy drifted). The jails' epairs are the jail
    /// runtime's. Nothing is kept while no bridge workload is desired and no anchor loaded.
    fn repair(&self, bridge_desired: bool, _running: &[RunningOnBridge]) -> Result<Vec<String>> {
        if !bridge_desired && !self.rules_loaded() {
            return Ok(Vec::new());
        }
        let mut fixed = self.ensure_bridge()?;
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
