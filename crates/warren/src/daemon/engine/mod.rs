//! The engine: owns live workload state and carries out plans.
//!
//! It holds the authoritative observed state (written through to the store on every change),
//! a lock per workload (a workload has at most one operation in flight; the planner sees a
//! locked workload as busy), the live shims, and the event bus. The reconcile loop
//! ([`Engine::run`]) plans with every idle workload locked, then executes each workload's steps
//! in its own task, bounded by a semaphore, so a slow or crash-looping workload never delays the
//! others. Shim exits are observed through pidfds (no polling), for shims this daemon started
//! and for shims adopted from a previous daemon alike.
//!
//! Its parts: [`state`] (bus, observed rows, locks, desired state), [`reconcile`] (the loop,
//! world builds, adoption, status), [`steps`] (provision, start, deprovision, remove),
//! [`container`] (the runtime's `WorkloadRun`; [`vm`] makes a VM's of it), [`supervision`] (shim watching, stop,
//! operator actions) and [`netsync`] (network and ingress sync, repair).

mod container;
#[cfg(test)]
pub(crate) mod fakes;
mod netsync;
mod reconcile;
mod seams;
mod state;
mod steps;
mod supervision;
#[cfg(test)]
mod tests;
mod vm;

pub use container::world_binds;
pub use seams::{
    BoxFuture, BridgeJoin, BridgeNetwork, Clock, Evaluator, RunningOnBridge, Shims, SystemClock,
};

use super::Config;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch, Notify, Semaphore};
use warren_runtime::Runtime;
use warren_storage::Storage;
use warren_store::{Event, ObservedRow, Store};

/// A shim this daemon watches.
struct Live {
    shim_pid: i32,
    stopping: bool,
    exited: watch::Receiver<bool>,
}

pub struct Engine {
    pub cfg: Config,
    pub store: Store,
    pub storage: Arc<dyn Storage>,
    pub runtime: Arc<dyn Runtime>,
    /// The shims of running workloads: started, and watched until they exit.
    shims: Arc<dyn Shims>,
    /// Every command the engine runs (world builds, networking) goes through it.
    pub exec: Arc<dyn warren_exec::Executor>,
    /// The time the engine's decisions read.
    pub clock: Arc<dyn Clock>,
    wake: Notify,
    observed: Mutex<BTreeMap<String, ObservedRow>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    live: Mutex<HashMap<String, Live>>,
    events: broadcast::Sender<Event>,
    parallel: Arc<Semaphore>,
    /// Workloads whose disk limit is currently reached (an event was raised).
    quota_full: Mutex<std::collections::HashSet<String>>,
    /// Bridge networking (Linux: netns, veth, nft; FreeBSD: bridge, pf, names in jails).
    pub net: Arc<dyn BridgeNetwork>,
    pub ingress: Arc<super::ingress::Ingress>,
    /// The last networking error reported (reported again only when it changes).
    network_error: Mutex<Option<String>>,
    /// The hosts file text each running VM's guest was last given (a guest keeps its own
    /// copy of the names).
    vm_names: Mutex<HashMap<String, String>>,
    /// Health of the workloads with health checks, by name.
    health: Mutex<HashMap<String, warren_model::health::HealthStatus>>,
    /// The Scheme evaluator (the REPL service registers itself once the daemon runs).
    evaluator: std::sync::OnceLock<Arc<dyn Evaluator>>,
    /// The workload kinds this host runs, built once at start; an input of every plan.
    pub caps: warren_model::HostCapabilities,
    /// The daemon's counters (reconcile passes, events, API requests) and start time.
    pub telemetry: Arc<super::telemetry::Telemetry>,
}

/// What the engine works through: its backends and its clock. [`Engine::new`] builds the
/// host's; tests build fakes.
pub struct Backends {
    pub storage: Arc<dyn Storage>,
    pub runtime: Arc<dyn Runtime>,
    pub shims: Arc<dyn Shims>,
    pub exec: Arc<dyn warren_exec::Executor>,
    pub clock: Arc<dyn Clock>,
    pub net: Arc<dyn BridgeNetwork>,
    /// The workload kinds this host runs.
    pub caps: warren_model::HostCapabilities,
}

impl Engine {
    /// The engine over the host's backends: `runtime`'s shims watched by pidfd or kqueue, the
    /// system clock, and the host's bridge network.
    pub fn new(
        cfg: Config,
        store: Store,
        storage: Arc<dyn Storage>,
        runtime: Arc<dyn Runtime>,
        exec: Arc<dyn warren_exec::Executor>,
        net: Arc<dyn BridgeNetwork>,
    ) -> Result<Arc<Engine>> {
        let shims = Arc::new(supervision::RuntimeShims::new(runtime.clone()));
        Engine::with_backends(
            cfg,
            store,
            Backends {
                storage,
                runtime,
                shims,
                exec,
                clock: Arc::new(SystemClock),
                net,
                caps: crate::daemon::host_capabilities(),
            },
        )
    }

    /// The engine over `backends`, with the observed state `store` holds.
    pub fn with_backends(cfg: Config, store: Store, backends: Backends) -> Result<Arc<Engine>> {
        let Backends {
            storage,
            runtime,
            shims,
            exec,
            clock,
            net,
            caps,
        } = backends;
        let observed = store.observed()?;
        let ingress = Arc::new(super::ingress::Ingress::new(
            cfg.ingress.clone(),
            &cfg.state_dir,
            exec.clone(),
        ));
        let (events, _) = broadcast::channel(1024);
        let parallel = Arc::new(Semaphore::new(cfg.parallel.max(1)));
        Ok(Arc::new(Engine {
            cfg,
            store,
            storage,
            runtime,
            shims,
            exec,
            clock,
            wake: Notify::new(),
            observed: Mutex::new(observed),
            locks: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            events,
            parallel,
            quota_full: Mutex::new(Default::default()),
            net,
            ingress,
            network_error: Mutex::new(None),
            vm_names: Mutex::new(HashMap::new()),
            health: Mutex::new(HashMap::new()),
            evaluator: std::sync::OnceLock::new(),
            caps,
            telemetry: Default::default(),
        }))
    }
}
