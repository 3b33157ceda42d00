//! The engine's seams: the traits through which it reaches what it does not own. Downward,
//! its backends (the clock its decisions read, the bridge network it syncs ([`BridgeNetwork`]),
//! the shims it supervises); upward, nothing: a service above the engine that the engine's users need to
//! find (the Scheme evaluator) registers itself here, and services that react to events
//! subscribe to the engine's event bus ([`super::Engine::subscribe`]).

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the seams' async methods (trait objects cannot have `async fn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Evaluates Scheme expressions for hooks and the API (implemented by the REPL service,
/// which registers itself with [`super::Engine::set_evaluator`]).
pub trait Evaluator: Send + Sync {
    /// The printed value of the last form of `expr`, or the error.
    fn eval(&self, expr: String) -> BoxFuture<'_, Result<String, String>>;
}

/// The time the engine's decisions read (the planner's `now`, backoff expiry, the time of a
/// failed start or of an exit without a recorded status). Tests drive a manual clock.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        warren_store::now_ms()
    }
}

/// The shims the engine supervises: starting a workload's main process under a shim and
/// learning when that shim exits. The shim records how the main process ended in the run
/// directory (`exit.json`, read by the engine) before it exits; this seam only says when.
pub trait Shims: Send + Sync {
    /// Starts the container under a detached shim (blocking); returns once the main process
    /// exists. The shim writes its state to `run_dir/state.json`.
    fn start(
        &self,
        spec: &warren_runtime::WorkloadRun,
        run_dir: &std::path::Path,
    ) -> anyhow::Result<warren_runtime::ShimState>;
    /// Whether the shim recorded in `state` still runs (after a daemon restart).
    fn alive(&self, state: &warren_runtime::ShimState) -> bool;
    /// Resolves when the shim of `state` has exited (and is reaped, if this daemon started it).
    fn exited(&self, state: &warren_runtime::ShimState) -> BoxFuture<'static, std::io::Result<()>>;
}

/// How a bridge workload's container joins the bridge, as its runtime spec says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeJoin {
    /// The namespace the container joins (Linux: the prepared network namespace; FreeBSD: the
    /// bridge, which the jail runtime attaches the jail to).
    pub namespace: warren_runtime::NetNamespace,
    /// Files bound read-only into the workload, `(host path, path inside)`: the hosts file
    /// and resolver configuration where they can be bound (Linux); none where they are
    /// copied in ([`BridgeNetwork::install_names`]).
    pub binds: Vec<(std::path::PathBuf, String)>,
    /// For a workload with its own user namespace: the user namespace that owns its network
    /// namespace, kept beside it (Linux), which the container joins.
    pub userns_path: Option<std::path::PathBuf>,
}

/// A running bridge workload, as [`BridgeNetwork::repair`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningOnBridge {
    pub name: String,
    /// A process inside the workload's network namespace.
    pub pid: u32,
    pub address: std::net::Ipv4Addr,
    /// A VM: its host end is a tap QEMU holds open, not a veth into a namespace.
    pub vm: bool,
}

/// What the engine does with the bridge network: the bridge itself, each workload's place on
/// it, the packet filter's [`Ruleset`](warren_net::ruleset::Ruleset), the names workloads
/// resolve, and the repair of what someone removed. Linux implements it with a bridge,
/// network namespaces, veth pairs and nftables ([`crate::daemon::network`]); FreeBSD with a
/// bridge, jails' epairs or aliases and a pf anchor ([`crate::daemon::network_freebsd`]);
/// the daemon picks one at start. Every method may block (it runs commands): call it from a
/// blocking task.
pub trait BridgeNetwork: Send + Sync {
    /// The bridge, its subnet and the packet filter table or anchor.
    fn settings(&self) -> &crate::daemon::netnames::NetSettings;

    /// Makes the bridge exist with its gateway address, and forwarding on. Returns what had
    /// to be changed.
    fn ensure_bridge(&self) -> anyhow::Result<Vec<String>>;

    /// Gives `name` its address (kept across restarts, from the store's IPAM table) and its
    /// place on the bridge (whatever is missing): on Linux its network namespace and veth,
    /// owned by the user namespace of the id range starting at `userns` when given; on
    /// FreeBSD the bridge is made ready and the jail runtime adds the epair or alias.
    fn attach(
        &self,
        store: &warren_store::Store,
        name: &str,
        userns: Option<u32>,
    ) -> anyhow::Result<std::net::Ipv4Addr>;

    /// How `name`'s container joins the bridge once attached.
    fn join(&self, name: &str, userns: Option<u32>) -> BridgeJoin;

    /// A VM's place on the bridge: its address (assigned once, like a container's) and a tap
    /// device enslaved to the bridge, made when missing. Returns the tap's name.
    fn attach_tap(
        &self,
        store: &warren_store::Store,
        name: &str,
    ) -> anyhow::Result<(String, std::net::Ipv4Addr)>;

    /// The tap device [`BridgeNetwork::attach_tap`] makes for VM `name`.
    fn tap_name(&self, name: &str) -> String;

    /// The hosts file text bridge workloads see (a VM's guest gets a copy at start).
    fn hosts_text(&self) -> Option<String>;

    /// Removes `name`'s place on the bridge; `release` also frees its address.
    fn detach(&self, store: &warren_store::Store, name: &str, release: bool) -> anyhow::Result<()>;

    /// Whether this daemon has loaded (or found loaded) its rules, so it must keep them
    /// current.
    fn rules_loaded(&self) -> bool;

    /// Renders `ruleset` for this host's packet filter and loads it if it differs from what
    /// is loaded. Returns whether it loaded anything.
    fn sync_rules(&self, ruleset: &warren_net::ruleset::Ruleset) -> anyhow::Result<bool>;

    /// Rewrites the hosts file if its text changed (and, where names are copied rather than
    /// bound, copies it into each bridge workload's root, which `rootfs` names). Returns
    /// whether it changed.
    fn sync_hosts(
        &self,
        specs: &[&warren_model::WorkloadSpec],
        addresses: &std::collections::BTreeMap<String, std::net::Ipv4Addr>,
        rootfs: &dyn Fn(&str) -> std::path::PathBuf,
    ) -> anyhow::Result<bool>;

    /// Puts the names (hosts file, resolver configuration) into a workload's root where they
    /// are copied rather than bound; nothing where they are bound.
    fn install_names(&self, rootfs: &std::path::Path) -> anyhow::Result<()>;

    /// Re-creates what someone removed: the bridge, forwarding, the loaded rules, and the
    /// place on the bridge of each `running` workload. `bridge_desired` says whether any
    /// desired workload uses the bridge. Does nothing when there is nothing to keep. Returns
    /// what it fixed.
    fn repair(
        &self,
        bridge_desired: bool,
        running: &[RunningOnBridge],
    ) -> anyhow::Result<Vec<String>>;

    /// The address, prefix and gateway of an attached workload, as a jail wants them (only
    /// the jail runtime's spec carries them).
    #[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
    fn bridge_address(&self, address: std::net::Ipv4Addr) -> warren_runtime::BridgeAddress {
        let subnet = self.settings().subnet;
        warren_runtime::BridgeAddress {
            address,
            prefix: subnet.prefix(),
            gateway: subnet.gateway(),
        }
    }
}
