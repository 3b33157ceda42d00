//! The engine: owns live workload state and carries out plans.
//!
//! It holds the authoritative observed state (written through to the store on every change),
//! a lock per workload (a workload has at most one operation in flight; the planner sees a
//! locked workload as busy), the live shims, and the event bus. The reconcile loop
//! ([`Engine::run`]) plans with every idle workload locked, then executes each workload's steps
//! in its own task, bounded by a semaphore, so a slow or crash-looping workload never delays the
//! others. Shim exits are observed through pidfds (no polling), for shims this daemon started
//! and for shims adopted from a previous daemon alike.

use super::Config;
use anyhow::{anyhow, Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{broadcast, watch, Notify, OwnedMutexGuard, Semaphore};
use warren_model::event::EventKind;
use warren_model::plan::{self, Action, Desired, LastExit, Observed, Step};
use warren_model::{DesiredState, Source};
use warren_runtime::{Bind, ContainerSpec, ExitInfo, Runtime, ShimState};
use warren_storage::Storage;
use warren_store::{now_ms, Event, ObservedRow, Store};

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
    wake: Notify,
    observed: Mutex<BTreeMap<String, ObservedRow>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    live: Mutex<HashMap<String, Live>>,
    events: broadcast::Sender<Event>,
    parallel: Arc<Semaphore>,
    /// Workloads whose disk limit is currently reached (an event was raised).
    quota_full: Mutex<std::collections::HashSet<String>>,
    /// Bridge networking (Linux: netns, veth, nft; FreeBSD: bridge, pf, names in jails).
    #[cfg(any(target_os = "linux", target_os = "freebsd"))]
    pub net: Arc<super::network::Net>,
    pub ingress: Arc<super::ingress::Ingress>,
    /// The last networking error reported (reported again only when it changes).
    network_error: Mutex<Option<String>>,
    /// Health of the workloads with health checks, by name.
    health: Mutex<HashMap<String, warren_model::health::HealthStatus>>,
    /// The live Scheme REPL (set once the daemon runs).
    pub repl: std::sync::OnceLock<Arc<super::repl::Repl>>,
    /// The workload kinds this host runs, built once at start; an input of every plan.
    pub caps: warren_model::HostCapabilities,
}

impl Engine {
    pub fn new(
        cfg: Config,
        store: Store,
        storage: Arc<dyn Storage>,
        runtime: Arc<dyn Runtime>,
        exec: Arc<dyn warren_exec::Executor>,
    ) -> Result<Arc<Engine>> {
        let observed = store.observed()?;
        #[cfg(any(target_os = "linux", target_os = "freebsd"))]
        let net = Arc::new(super::network::Net::new(
            cfg.net.clone(),
            exec.clone(),
            &cfg.instance,
            &cfg.state_dir,
        )?);
        #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
        let _ = exec;
        let ingress = Arc::new(super::ingress::Ingress::new(
            cfg.ingress.clone(),
            &cfg.state_dir,
        ));
        let (events, _) = broadcast::channel(1024);
        let parallel = Arc::new(Semaphore::new(cfg.parallel.max(1)));
        Ok(Arc::new(Engine {
            cfg,
            store,
            storage,
            runtime,
            wake: Notify::new(),
            observed: Mutex::new(observed),
            locks: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            events,
            parallel,
            quota_full: Mutex::new(Default::default()),
            #[cfg(any(target_os = "linux", target_os = "freebsd"))]
            net,
            ingress,
            network_error: Mutex::new(None),
            health: Mutex::new(HashMap::new()),
            repl: std::sync::OnceLock::new(),
            caps: warren_model::HostCapabilities::for_os(std::env::consts::OS),
        }))
    }

    /// Asks the reconcile loop for a pass now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Subscribes to events as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Records an event (store, live stream, daemon log).
    pub fn event(&self, workload: Option<&str>, kind: EventKind) {
        tracing::info!(
            workload = workload.unwrap_or("-"),
            kind = kind.category(),
            "{kind}"
        );
        match self.store.add_event(workload, &kind) {
            Ok(ev) => {
                let _ = self.events.send(ev);
            }
            Err(e) => tracing::error!("cannot record event: {e}"),
        }
    }

    /// The runc container id of a workload (unique per state dir).
    pub fn container_id(&self, name: &str) -> String {
        format!("warren-{}-{name}", self.cfg.instance)
    }

    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.cfg.state_dir.join("workloads").join(name)
    }

    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.run_dir(name).join("logs")
    }

    pub fn observed_row(&self, name: &str) -> Option<ObservedRow> {
        self.observed.lock().unwrap().get(name).cloned()
    }

    pub fn observed_all(&self) -> BTreeMap<String, ObservedRow> {
        self.observed.lock().unwrap().clone()
    }

    /// Records whether a workload's disk limit is reached; returns the previous state.
    pub(super) fn quota_full(&self, name: &str, full: bool) -> bool {
        let mut set = self.quota_full.lock().unwrap();
        if full {
            !set.insert(name.to_string())
        } else {
            set.remove(name)
        }
    }

    pub(super) fn update(&self, name: &str, f: impl FnOnce(&mut ObservedRow)) {
        let row = {
            let mut obs = self.observed.lock().unwrap();
            let row = obs.entry(name.to_string()).or_default();
            f(row);
            row.clone()
        };
        if let Err(e) = self.store.put_observed(name, &row) {
            tracing::error!(workload = name, "cannot persist observed state: {e}");
        }
    }

    fn forget(&self, name: &str) {
        self.observed.lock().unwrap().remove(name);
        if let Err(e) = self.store.delete_observed(name) {
            tracing::error!(workload = name, "cannot forget observed state: {e}");
        }
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    /// Exclusive access to a workload if nobody holds it now.
    pub fn try_lock(&self, name: &str) -> Option<OwnedMutexGuard<()>> {
        self.lock_for(name).try_lock_owned().ok()
    }

    /// Waits for exclusive access to a workload (API operations).
    pub async fn lock(&self, name: &str) -> OwnedMutexGuard<()> {
        self.lock_for(name).lock_owned().await
    }

    /// The reconcile loop: a pass on every wake-up, on every tick, and when a backoff expires.
    pub async fn run(self: Arc<Self>) {
        let keeper = self.clone();
        tokio::spawn(async move {
            loop {
                keeper.housekeeping().await;
                keeper.repair_network().await;
                tokio::time::sleep(keeper.cfg.tick).await;
            }
        });
        loop {
            let next_wake = match self.clone().reconcile_once().await {
                Ok(w) => w,
                Err(e) => {
                    self.event(
                        None,
                        EventKind::error(format!("reconcile pass failed: {e:#}")),
                    );
                    None
                }
            };
            let mut sleep = self.cfg.tick;
            if let Some(at) = next_wake {
                let now = now_ms();
                sleep = sleep.min(Duration::from_millis(at.saturating_sub(now).max(10)));
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// One pass: lock idle workloads, plan, dispatch each workload's steps to its own task.
    /// Returns when a backoff expires, if any.
    pub async fn reconcile_once(self: Arc<Self>) -> Result<Option<u64>> {
        let desired = self.desired_all()?;
        let mut names: Vec<String> = desired.keys().cloned().collect();
        names.extend(self.observed_all().into_keys());
        names.sort();
        names.dedup();
        let mut guards = HashMap::new();
        let mut observed = BTreeMap::new();
        for name in &names {
            let guard = self.lock_for(name).try_lock_owned().ok();
            let mut o: Observed = self
                .observed_row(name)
                .map(|r| r.to_observed())
                .unwrap_or_default();
            o.busy = guard.is_none();
            if let Some(g) = guard {
                guards.insert(name.clone(), g);
            }
            observed.insert(name.clone(), o);
        }
        // A storage that cannot list its worlds must not hold up stops and restarts: plan
        // without builds, and a provision that needs one fails and says so.
        let missing = match self.missing_sources(&desired, &observed).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("cannot list worlds: {e:#}");
                plan::Missing::default()
            }
        };
        let p = plan::plan(
            &desired,
            &observed,
            &self.caps,
            &missing,
            now_ms(),
            &self.cfg.backoff,
        );
        for (name, steps) in p.by_workload() {
            let Some(guard) = guards.remove(&name) else {
                continue;
            };
            let engine = self.clone();
            let desired = desired.get(&name).cloned();
            let permit = self.parallel.clone();
            tokio::spawn(async move {
                let _permit = permit.acquire_owned().await;
                let done = engine.execute(&name, desired.as_ref(), &steps).await;
                drop(guard);
                // A failed step is retried on the next tick, not in a tight loop.
                if done {
                    engine.wake();
                }
            });
        }
        let synced = self
            .sync_network(&desired)
            .await
            .map_err(|e| format!("{e:#}"));
        let report = {
            // An error is reported when it first happens or changes, not on every pass.
            let mut last = self.network_error.lock().unwrap();
            let report = synced
                .as_ref()
                .err()
                .filter(|e| last.as_ref() != Some(*e))
                .cloned();
            *last = synced.err();
            report
        };
        if let Some(e) = report {
            self.event(None, EventKind::error(format!("network: {e}")));
        }
        Ok(p.next_wake_ms)
    }

    /// The desired workloads: the operator's, plus the routing workload while anything is
    /// routed.
    /// The stored image `reference` names.
    pub fn image_record(&self, reference: &str) -> Result<warren_store::ImageRecord> {
        let r = super::sources::normalize_reference(reference).map_err(|e| anyhow!(e))?;
        self.store.image(&r)?.ok_or_else(|| {
            anyhow!("image {r} is not stored: import it with `warren image import FILE` or pull it")
        })
    }

    /// The world an image workload's rootfs is made from.
    pub fn image_world(&self, reference: &str) -> Result<String> {
        let record = self.image_record(reference)?;
        record
            .top()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("image {} has no layers stored", record.reference))
    }

    /// The drift hash of `spec` (see [`super::sources::image_hash`]).
    pub fn drift_hash(&self, spec: &warren_model::WorkloadSpec) -> Result<String> {
        match spec.source {
            Source::Recipe(_) => super::sources::recipe_hash(&self.store, spec),
            _ => super::sources::image_hash(&self.store, spec),
        }
    }

    pub fn desired_all(&self) -> Result<BTreeMap<String, Desired>> {
        let mut desired = self.store.desired()?;
        for d in desired.values_mut() {
            if matches!(d.spec.source, Source::Image(_) | Source::Recipe(_)) {
                d.hash = self.drift_hash(&d.spec)?;
            }
        }
        let volumes = self.store.volumes()?;
        // Only once a configuration nginx accepted exists: nginx cannot start without one.
        if self.ingress.conf_path().exists() {
            self.add_router(&mut desired, &volumes);
        }
        Ok(desired)
    }

    /// `desired` as a plan of a not yet applied spec sees it: image and recipe workloads
    /// hashed with what their reference names now (unchanged when it names nothing yet: the
    /// apply pulls or builds it), and the routing workload present whenever something is
    /// routed, as it will be once the apply's routes are rendered.
    pub fn desired_for_plan(
        &self,
        desired: &mut BTreeMap<String, Desired>,
        volumes: &BTreeMap<String, warren_model::VolumeSpec>,
    ) {
        for d in desired.values_mut() {
            if matches!(d.spec.source, Source::Image(_) | Source::Recipe(_)) {
                if let Ok(h) = self.drift_hash(&d.spec) {
                    d.hash = h;
                }
            }
        }
        self.add_router(desired, volumes);
    }

    /// Adds the routing workload to `desired` when a workload or volume is routed.
    fn add_router(
        &self,
        desired: &mut BTreeMap<String, Desired>,
        volumes: &BTreeMap<String, warren_model::VolumeSpec>,
    ) {
        let specs: Vec<&warren_model::WorkloadSpec> = desired.values().map(|d| &d.spec).collect();
        if let Some(spec) = self.ingress.router_spec(&specs, volumes) {
            let mut d = Desired::new(spec, 0);
            // Restarted like any workload; a store that cannot say asks for no restart.
            d.restart_generation = self.store.restart_generation(&d.spec.name).unwrap_or(0);
            desired.insert(d.spec.name.clone(), d);
        }
    }

    /// Brings published ports, names and ingress routes in line with `desired`; each is
    /// rendered purely and applied only when its text changed.
    async fn sync_network(self: &Arc<Self>, desired: &BTreeMap<String, Desired>) -> Result<()> {
        let engine = self.clone();
        let desired = desired.clone();
        let running: std::collections::HashSet<String> = self
            .observed_all()
            .into_iter()
            .filter(|(_, r)| r.pid.is_some())
            .map(|(n, _)| n)
            .collect();
        let router = super::ingress::ROUTER;
        let router_run =
            self.observed_row(router)
                .and_then(|r| r.pid)
                .map(|pid| super::ingress::RouterRun {
                    runtime: self.runtime.clone(),
                    id: self.container_id(router),
                    pid,
                    rootfs: self.storage.rootfs_path(router),
                });
        let volumes = self.store.volumes()?;
        let notes = tokio::task::spawn_blocking(move || -> Result<Vec<String>> {
            let mut notes = Vec::new();
            let specs: Vec<&warren_model::WorkloadSpec> =
                desired.values().map(|d| &d.spec).collect();
            #[cfg(target_os = "linux")]
            let (addresses, gateway) = {
                let addresses = engine.store.addresses()?;
                let rules = engine.net.ruleset(&specs, &addresses);
                if !addresses.is_empty() || engine.net.rules_loaded() {
                    engine.net.sync_rules(&rules)?;
                }
                engine.net.sync_hosts(&specs, &addresses)?;
                (addresses, engine.net.settings.subnet.gateway())
            };
            #[cfg(target_os = "freebsd")]
            let (addresses, gateway) = {
                let addresses = engine.store.addresses()?;
                let rules = engine.net.ruleset(&specs, &addresses);
                if !addresses.is_empty() || engine.net.rules_loaded() {
                    engine.net.sync_rules(&rules)?;
                }
                let storage = engine.storage.clone();
                engine
                    .net
                    .sync_hosts(&specs, &addresses, &|n| storage.rootfs_path(n))?;
                (addresses, engine.net.settings.subnet.gateway())
            };
            #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
            let (addresses, gateway): (BTreeMap<String, std::net::Ipv4Addr>, _) =
                (BTreeMap::new(), std::net::Ipv4Addr::LOCALHOST);
            let wanted = engine.ingress.router_spec(&specs, &volumes).is_some();
            if wanted || engine.ingress.conf_path().exists() {
                let inputs: Vec<super::ingress::RouteInput<'_>> = specs
                    .iter()
                    .filter(|s| s.name != router)
                    .map(|s| super::ingress::RouteInput {
                        spec: s,
                        running: running.contains(&s.name),
                        address: addresses.get(&s.name).copied(),
                    })
                    .collect();
                let routes = engine.ingress.routes(&inputs, &volumes, gateway)?;
                engine.ingress.prepare()?;
                match engine.ingress.sync(&routes, router_run.as_ref()) {
                    Ok(Some(summary)) => notes.push(summary),
                    Ok(None) => {}
                    Err(e) => {
                        return Err(e.context(
                            "ingress configuration refused; the previous one keeps serving",
                        ))
                    }
                }
            }
            Ok(notes)
        })
        .await??;
        for n in notes {
            self.event(None, EventKind::RouteChanged { summary: n });
        }
        Ok(())
    }

    /// Executes one workload's steps in order; the first failure ends the sequence (and is
    /// reported by returning `false`).
    async fn execute(
        self: &Arc<Self>,
        name: &str,
        desired: Option<&Desired>,
        steps: &[Step],
    ) -> bool {
        for step in steps {
            let r = match &step.action {
                Action::Provision { hash } => match desired {
                    Some(d) => self.provision(d, hash).await,
                    None => Err(anyhow!("no desired spec")),
                },
                Action::Start => match desired {
                    Some(d) => self.start(d, &step.reason).await,
                    None => Err(anyhow!("no desired spec")),
                },
                Action::Stop => self.stop(name, &step.reason).await,
                Action::Deprovision => self.deprovision(name).await,
                Action::Remove => self.remove(name, false).await,
                Action::BuildWorld { world } => self.build_world(world).await,
                Action::PullImage { reference } => Err(anyhow!(
                    "image {reference} is not stored: apply the file again (an apply pulls it) or \
                     pull it with `warren image pull`"
                )),
            };
            if let Err(e) = r {
                self.event(
                    Some(name),
                    EventKind::StepFailed {
                        action: step.action.verb().to_string(),
                        error: format!("{e:#}"),
                    },
                );
                return false;
            }
        }
        true
    }

    /// Builds a built-in world unless it exists (another workload's step may have built it
    /// first: builds of one world are serialized).
    async fn build_world(self: &Arc<Self>, world: &str) -> Result<()> {
        let _g = self.lock(&format!("world/{world}")).await;
        let storage = self.storage.clone();
        let w = world.to_string();
        let built = tokio::task::spawn_blocking(move || -> Result<bool> {
            if storage.list_worlds()?.contains(&w) {
                return Ok(false);
            }
            warren_storage::worlds::create_world(&*storage, &w, &warren_exec::HostExecutor)?;
            Ok(true)
        })
        .await??;
        if built {
            self.event(
                None,
                EventKind::WorldCreated {
                    name: world.to_string(),
                },
            );
        }
        Ok(())
    }

    /// The built-in worlds that workloads about to be provisioned need and the host lacks
    /// (asked of the storage only when such a workload exists).
    async fn missing_sources(
        &self,
        desired: &BTreeMap<String, Desired>,
        observed: &BTreeMap<String, Observed>,
    ) -> Result<plan::Missing> {
        let wanted: std::collections::BTreeSet<String> = desired
            .values()
            .filter(|d| self.caps.runs(d.spec.kind))
            .filter(|d| {
                observed
                    .get(&d.spec.name)
                    .and_then(|o| o.provisioned.as_ref())
                    != Some(&d.hash)
            })
            .filter_map(|d| match &d.spec.source {
                Source::World(w) if warren_model::names::BUILTIN_WORLDS.contains(&w.as_str()) => {
                    Some(w.clone())
                }
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(plan::Missing::default());
        }
        let storage = self.storage.clone();
        let existing = tokio::task::spawn_blocking(move || storage.list_worlds()).await??;
        Ok(plan::Missing {
            worlds: wanted
                .into_iter()
                .filter(|w| !existing.contains(w))
                .collect(),
            images: Default::default(),
        })
    }

    async fn provision(self: &Arc<Self>, d: &Desired, hash: &str) -> Result<()> {
        let name = d.spec.name.clone();
        // A missing built-in world was built by a planned step before this one.
        let world = match &d.spec.source {
            Source::World(w) => w.clone(),
            Source::Image(r) => self.image_world(r)?,
            Source::Recipe(r) => super::sources::resolve_ref(&self.store, r)?.world,
        };
        let storage = self.storage.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            storage.create_rootfs(&n, &world)?;
            storage.ensure_data(&n)?;
            Ok(())
        })
        .await??;
        if let Some(note) = self.own_datasets(&name, &d.spec).await? {
            self.event(Some(&name), EventKind::Userns { note });
        }
        self.apply_quota(&name, d.spec.resources.disk).await?;
        self.update(&name, |r| {
            r.provisioned = Some(hash.to_string());
            r.failures = 0;
            if matches!(r.last_exit, Some(LastExit::Exited { .. })) {
                r.last_exit = Some(LastExit::Deliberate);
            }
        });
        self.event(
            Some(&name),
            EventKind::Provisioned {
                generation: d.generation,
            },
        );
        Ok(())
    }

    /// The host id pool of user-namespaced workloads (`/etc/subuid`, `/etc/subgid`).
    fn id_pool(&self) -> Result<warren_runtime::userns::IdPool> {
        warren_runtime::userns::IdPool::from_host().map_err(|e| anyhow!(e))
    }

    /// The first host id of a provisioned user-namespaced workload's range.
    pub(super) fn userns_base(&self, name: &str) -> Result<u32> {
        let slot = self
            .store
            .userns_slot(name)?
            .ok_or_else(|| anyhow!("{name} has no user-namespace range"))?;
        self.id_pool()?.base(slot).ok_or_else(|| {
            anyhow!("{name}'s user-namespace slot {slot} lies outside the host id pool")
        })
    }

    /// Gives a workload's datasets the owner its spec asks for, after provisioning, cloning or
    /// a rollback: with `userns`, its rootfs, data and the volumes it mounts writable are
    /// re-owned into its range (a slot is allocated first); without, data and writable volumes
    /// left in a range (by an earlier `userns = true`, a rollback to a snapshot taken then, or
    /// a volume's earlier writer) are shifted back, and the slot is released. Read-only volume
    /// mounts keep their owner (files readable by others stay readable). Every inode of a
    /// re-owned tree is visited (O(files)); a tree already owned right is skipped after a look
    /// at its top directory. Returns a note for the event log when anything was visited.
    pub(super) async fn own_datasets(
        self: &Arc<Self>,
        name: &str,
        spec: &warren_model::WorkloadSpec,
    ) -> Result<Option<String>> {
        use std::os::unix::fs::MetadataExt;
        let held = self.store.userns_slot(name)?;
        let rootfs = self.storage.rootfs_path(name);
        let data = self.storage.data_path(name);
        let volumes: Vec<std::path::PathBuf> = spec
            .volumes
            .iter()
            .filter(|m| !m.readonly)
            .map(|m| {
                self.storage
                    .dataset_path(&warren_storage::DatasetId::Volume(m.volume.clone()))
            })
            .collect();
        if !spec.userns && held.is_none() {
            // The common case: nothing of this workload was ever in a range. Only a tree whose
            // top directory is owned by a pool id needs the walk back.
            let Ok(pool) = self.id_pool() else {
                return Ok(None);
            };
            let in_range = |p: &std::path::Path| {
                std::fs::metadata(p).is_ok_and(|m| {
                    m.uid() >= warren_runtime::userns::IDS_PER_WORKLOAD
                        && pool.container_id(m.uid()).is_some()
                })
            };
            if !in_range(&data) && !volumes.iter().any(|v| in_range(v)) {
                return Ok(None);
            }
        }
        let pool = self.id_pool()?;
        let target = if spec.userns {
            let slot = self
                .store
                .assign_userns_slot(name, pool.slots)?
                .ok_or_else(|| {
                    anyhow!(
                        "every one of the {} user-namespace ranges of the host id pool is taken",
                        pool.slots
                    )
                })?;
            pool.base(slot)
        } else {
            None
        };
        let mut dirs = vec![data];
        if target.is_some() {
            dirs.push(rootfs);
        }
        dirs.extend(volumes);
        let stats = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
            let mut changed = 0;
            let mut visited = 0;
            for dir in dirs.iter().filter(|d| d.exists()) {
                let s = warren_runtime::userns::shift_tree(dir, &pool, target)?;
                changed += s.changed;
                visited += s.visited;
            }
            Ok((visited, changed))
        })
        .await??;
        Ok(Some(match target {
            Some(base) => format!(
                "root, data and writable volumes owned by host ids {base}..{} ({} of {} files re-owned)",
                u64::from(base) + u64::from(warren_runtime::userns::IDS_PER_WORKLOAD) - 1,
                stats.1,
                stats.0
            ),
            None => {
                if held.is_some() {
                    self.store.release_userns_slot(name)?;
                }
                format!(
                    "no user namespace: data and writable volumes owned by plain ids ({} of {} files re-owned)",
                    stats.1, stats.0
                )
            }
        }))
    }

    /// Lets a user-namespaced container's root (an unprivileged host id) reach its root
    /// filesystem and bind sources: every directory on the way from the state dir gets the
    /// search bit for others (never read), and a directory above the state dir that lacks it
    /// is an error naming it.
    pub(super) fn allow_traversal(&self, spec: &ContainerSpec) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let state = &self.cfg.state_dir;
        let mut targets = vec![spec.rootfs.clone()];
        targets.extend(spec.binds.iter().map(|b| b.source.clone()));
        for target in targets {
            for dir in target.ancestors().skip(1) {
                let meta = std::fs::metadata(dir).with_context(|| format!("{}", dir.display()))?;
                let mode = meta.permissions().mode();
                if mode & 0o001 != 0 {
                    continue;
                }
                if dir.starts_with(state) {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o001))
                        .with_context(|| format!("{}", dir.display()))?;
                } else {
                    return Err(anyhow!(
                        "{} (mode {:o}) is not searchable by others, so a user-namespaced \
                         workload cannot reach {}; run chmod o+x on it",
                        dir.display(),
                        mode & 0o7777,
                        target.display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Builds the runtime's container spec for a workload.
    pub fn container_spec(&self, d: &Desired) -> Result<ContainerSpec> {
        let spec = &d.spec;
        let (meta, image) = match &spec.source {
            Source::World(world) => (
                warren_storage::worlds::world_meta(&*self.storage, world)?,
                None,
            ),
            Source::Recipe(r) => {
                let build = super::sources::resolve_ref(&self.store, r)?;
                (
                    warren_storage::worlds::world_meta(&*self.storage, &build.world)?,
                    None,
                )
            }
            Source::Image(r) => {
                let record = self.image_record(r)?;
                let top = record.top().unwrap_or_default().to_string();
                let config = super::sources::record_config(&record)?;
                let defaults =
                    super::sources::run_defaults(spec, &config).map_err(|e| anyhow!(e))?;
                (
                    warren_storage::worlds::world_meta(&*self.storage, &top)?,
                    Some(defaults),
                )
            }
        };
        let mut binds = world_binds(&meta);
        binds.push(Bind {
            source: self.storage.data_path(&spec.name),
            dest: spec.data_path.clone(),
            readonly: false,
        });
        for m in &spec.volumes {
            let source = self
                .storage
                .dataset_path(&warren_storage::DatasetId::Volume(m.volume.clone()));
            if !source.exists() {
                return Err(anyhow!("volume {} does not exist", m.volume));
            }
            binds.push(Bind {
                source,
                dest: m.path.clone(),
                readonly: m.readonly,
            });
        }
        if spec.name == super::ingress::ROUTER {
            let prefix = self.ingress.prefix.clone();
            let inside = self.ingress.platform.workload_prefix(&prefix);
            binds.push(Bind {
                source: prefix,
                dest: inside.display().to_string(),
                readonly: false,
            });
        }
        let network = match spec.network {
            warren_model::NetworkMode::Host => warren_runtime::NetNamespace::Host,
            warren_model::NetworkMode::None => warren_runtime::NetNamespace::Private,
            #[cfg(target_os = "linux")]
            warren_model::NetworkMode::Bridge => {
                binds.push(Bind {
                    source: self.net.hosts_path(),
                    dest: "/etc/hosts".into(),
                    readonly: true,
                });
                binds.push(Bind {
                    source: self.net.resolv_path(),
                    dest: "/etc/resolv.conf".into(),
                    readonly: true,
                });
                warren_runtime::NetNamespace::Path(self.net.netns_path(&spec.name))
            }
            // The jail runtime attaches the jail to the bridge itself; names are copied in.
            #[cfg(target_os = "freebsd")]
            warren_model::NetworkMode::Bridge => warren_runtime::NetNamespace::Bridge,
            #[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
            warren_model::NetworkMode::Bridge => {
                return Err(anyhow!(
                    "network = \"bridge\" is not supported on this host yet"
                ))
            }
        };
        let (args, env, cwd, user) = match image {
            Some(d) => (d.args, d.env, d.cwd, d.user),
            None => (
                if spec.command.is_empty() {
                    meta.default_command.clone()
                } else {
                    spec.command.clone()
                },
                spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                spec.workdir.clone().unwrap_or_else(|| "/".into()),
                spec.user.clone(),
            ),
        };
        let userns = if spec.userns {
            let base = self.userns_base(&spec.name)?;
            let path = match spec.network {
                warren_model::NetworkMode::Host => {
                    return Err(anyhow!(
                        "userns = true needs a network namespace of its own, not network = \"host\""
                    ))
                }
                // The bridge namespace belongs to a user namespace kept beside it.
                #[cfg(target_os = "linux")]
                warren_model::NetworkMode::Bridge => Some(self.net.userns_path(&spec.name, base)),
                _ => None,
            };
            Some(warren_runtime::UserNamespace {
                host_id: base,
                size: warren_runtime::userns::IDS_PER_WORKLOAD,
                path,
            })
        } else {
            None
        };
        #[cfg(target_os = "freebsd")]
        let jail = {
            let address = match spec.network {
                warren_model::NetworkMode::Bridge => {
                    let addresses = self.store.addresses()?;
                    let a = addresses
                        .get(&spec.name)
                        .copied()
                        .ok_or_else(|| anyhow!("{} has no address on the bridge yet", spec.name))?;
                    Some(self.net.bridge_address(a))
                }
                _ => None,
            };
            jail_params(spec, address, &*self.storage)?
        };
        #[cfg(not(target_os = "freebsd"))]
        let jail = warren_runtime::JailParams::default();
        Ok(ContainerSpec {
            network,
            userns,
            jail,
            id: self.container_id(&spec.name),
            rootfs: self.storage.rootfs_path(&spec.name),
            readonly_rootfs: spec.readonly_rootfs,
            binds,
            args,
            env,
            cwd,
            user,
            hostname: spec.effective_hostname().to_string(),
            resources: spec.resources.clone(),
            terminal: false,
            cgroup_path: format!("/warren-{}/{}", self.cfg.instance, spec.name),
        })
    }

    /// Starts a provisioned workload now; the caller holds its lock.
    pub(super) async fn start_desired(self: &Arc<Self>, d: &Desired, reason: &str) -> Result<()> {
        self.start(d, reason).await
    }

    async fn start(self: &Arc<Self>, d: &Desired, reason: &str) -> Result<()> {
        let name = d.spec.name.clone();
        if d.spec.userns && self.store.userns_slot(&name)?.is_none() {
            // Datasets that never were re-owned (an imported workload, say): provision again.
            self.update(&name, |r| r.provisioned = None);
            return Err(anyhow!(
                "{name} has no user-namespace range yet; it is provisioned again"
            ));
        }
        // The jail's address and names exist before its spec is computed.
        #[cfg(target_os = "freebsd")]
        if d.spec.network == warren_model::NetworkMode::Bridge {
            let engine = self.clone();
            let n = name.clone();
            let specs: Vec<warren_model::WorkloadSpec> =
                self.desired_all()?.into_values().map(|d| d.spec).collect();
            tokio::task::spawn_blocking(move || -> Result<()> {
                engine.net.prepare(&engine.store, &n)?;
                let addresses = engine.store.addresses()?;
                let refs: Vec<&warren_model::WorkloadSpec> = specs.iter().collect();
                let storage = engine.storage.clone();
                engine
                    .net
                    .sync_hosts(&refs, &addresses, &|w| storage.rootfs_path(w))?;
                engine.net.install_names(&engine.storage.rootfs_path(&n))?;
                Ok(())
            })
            .await?
            .context("preparing the network")?;
        }
        let cspec = self.container_spec(d)?;
        if cspec.userns.is_some() {
            self.allow_traversal(&cspec)?;
        }
        #[cfg(target_os = "linux")]
        if d.spec.network == warren_model::NetworkMode::Bridge {
            let engine = self.clone();
            let n = name.clone();
            let userns = cspec.userns.as_ref().map(|u| u.host_id);
            let specs: Vec<warren_model::WorkloadSpec> =
                self.desired_all()?.into_values().map(|d| d.spec).collect();
            tokio::task::spawn_blocking(move || -> Result<()> {
                engine.net.prepare(&engine.store, &n, userns)?;
                // The new address is in the hosts file before the workload can look it up.
                let addresses = engine.store.addresses()?;
                let refs: Vec<&warren_model::WorkloadSpec> = specs.iter().collect();
                engine.net.sync_hosts(&refs, &addresses)?;
                Ok(())
            })
            .await?
            .context("preparing the network")?;
        }
        let run_dir = self.run_dir(&name);
        std::fs::create_dir_all(&run_dir).with_context(|| format!("{}", run_dir.display()))?;
        for stale in ["state.json", "exit.json"] {
            let _ = std::fs::remove_file(run_dir.join(stale));
        }
        let runtime = self.runtime.clone();
        let rd = run_dir.clone();
        let started = tokio::task::spawn_blocking(move || runtime.start(&cspec, &rd)).await?;
        let was_restart = matches!(
            self.observed_row(&name).and_then(|r| r.last_exit),
            Some(LastExit::Exited { .. })
        );
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                // Count a failed start like a crash so the backoff applies.
                let now = now_ms();
                let backoff = self.cfg.backoff;
                self.update(&name, |r| {
                    r.pid = None;
                    r.restart_generation = d.restart_generation;
                    r.failures = backoff.next_failures(r.failures, 0);
                    r.last_exit = Some(LastExit::Exited {
                        code: 127,
                        signal: None,
                        oom_killed: false,
                        at_ms: now,
                    });
                });
                return Err(e.into());
            }
        };
        let state = started.state.clone();
        self.update(&name, |r| {
            r.pid = Some(state.container_pid);
            r.started_ms = Some(state.started_at_ms);
            r.restart_generation = d.restart_generation;
            if was_restart {
                r.restarts += 1;
            }
        });
        if was_restart {
            self.event(
                Some(&name),
                EventKind::Restarted {
                    reason: reason.to_string(),
                },
            );
        }
        self.event(
            Some(&name),
            EventKind::Started {
                pid: state.container_pid,
                generation: d.generation,
            },
        );
        self.watch_shim(&name, state, Some(started.shim));
        Ok(())
    }

    /// Watches a shim until it exits, then records how the container ended.
    fn watch_shim(
        self: &Arc<Self>,
        name: &str,
        state: ShimState,
        child: Option<std::process::Child>,
    ) {
        let (tx, rx) = watch::channel(false);
        let rx_for_health = rx.clone();
        self.live.lock().unwrap().insert(
            name.to_string(),
            Live {
                shim_pid: state.shim_pid,
                stopping: false,
                exited: rx,
            },
        );
        // The run's health monitor, if the workload declares a check.
        if let Ok(Some(d)) = self.store.get_desired(name) {
            match d.spec.health {
                Some(check) => super::health::spawn(
                    self.clone(),
                    name.to_string(),
                    check,
                    d.spec.network,
                    state.started_at_ms,
                    rx_for_health,
                ),
                None => self.set_health(name, None),
            }
        }
        let engine = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            if let Err(e) = wait_exit(state.shim_pid).await {
                tracing::error!(workload = name, "cannot watch shim {}: {e}", state.shim_pid);
            }
            if let Some(mut c) = child {
                let _ = tokio::task::spawn_blocking(move || c.wait()).await;
            }
            engine.shim_exited(&name, &state).await;
            let _ = tx.send(true);
            engine.wake();
        });
    }

    async fn shim_exited(&self, name: &str, state: &ShimState) {
        let deliberate = {
            let mut live = self.live.lock().unwrap();
            match live.get(name) {
                Some(l) if l.shim_pid == state.shim_pid => {
                    let s = l.stopping;
                    live.remove(name);
                    s
                }
                _ => false,
            }
        };
        let exit = read_json::<ExitInfo>(&self.run_dir(name).join("exit.json"));
        let now = now_ms();
        let exit = match exit {
            Some(e) => e,
            None => {
                // The shim died without recording an exit: make sure the container is gone.
                let rt = self.runtime.clone();
                let id = self.container_id(name);
                let _ = tokio::task::spawn_blocking(move || rt.delete(&id)).await;
                self.event(
                    Some(name),
                    EventKind::error("supervisor exited without an exit status; container removed"),
                );
                ExitInfo {
                    code: 255,
                    signal: None,
                    oom_killed: false,
                    finished_at_ms: now,
                }
            }
        };
        let ran = exit.finished_at_ms.saturating_sub(state.started_at_ms);
        let backoff = self.cfg.backoff;
        self.update(name, |r| {
            if r.pid != Some(state.container_pid) && r.pid.is_some() {
                return; // a newer run already replaced this one
            }
            r.pid = None;
            if deliberate {
                r.last_exit = Some(LastExit::Deliberate);
            } else {
                r.failures = backoff.next_failures(r.failures, ran);
                r.last_exit = Some(LastExit::Exited {
                    code: exit.code,
                    signal: exit.signal,
                    oom_killed: exit.oom_killed,
                    at_ms: exit.finished_at_ms,
                });
            }
        });
        self.event(
            Some(name),
            EventKind::ended(deliberate, exit.code, exit.signal, exit.oom_killed),
        );
    }

    /// Stops a workload's main process: TERM, then KILL after the grace period.
    pub async fn stop(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        let rx = {
            let mut live = self.live.lock().unwrap();
            live.get_mut(name).map(|l| {
                l.stopping = true;
                l.exited.clone()
            })
        };
        let id = self.container_id(name);
        match rx {
            Some(mut rx) => {
                self.signal(&id, "TERM").await;
                let mut first = rx.clone();
                let exited = tokio::time::timeout(self.cfg.stop_timeout, first.wait_for(|v| *v))
                    .await
                    .is_ok();
                if !exited {
                    self.event(
                        Some(name),
                        EventKind::Killing {
                            grace_ms: self.cfg.stop_timeout.as_millis() as u64,
                        },
                    );
                    self.signal(&id, "KILL").await;
                    let exited = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|v| *v))
                        .await
                        .is_ok();
                    if !exited {
                        return Err(anyhow!("container did not exit after KILL"));
                    }
                }
            }
            None => {
                let rt = self.runtime.clone();
                tokio::task::spawn_blocking(move || rt.delete(&id)).await??;
                self.update(name, |r| {
                    r.pid = None;
                    r.last_exit = Some(LastExit::Deliberate);
                });
            }
        }
        tracing::debug!(workload = name, "stopped: {reason}");
        Ok(())
    }

    async fn signal(&self, id: &str, sig: &str) {
        let rt = self.runtime.clone();
        let (id, sig) = (id.to_string(), sig.to_string());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || rt.signal(&id, &sig)).await {
            tracing::warn!("signal failed: {e}");
        }
    }

    async fn deprovision(self: &Arc<Self>, name: &str) -> Result<()> {
        let rt = self.runtime.clone();
        let storage = self.storage.clone();
        let id = self.container_id(name);
        let n = name.to_string();
        let bundle = self.run_dir(name).join("bundle");
        tokio::task::spawn_blocking(move || -> Result<()> {
            rt.delete(&id)?;
            storage.delete_rootfs(&n)?;
            if bundle.exists() {
                std::fs::remove_dir_all(&bundle)?;
            }
            Ok(())
        })
        .await??;
        self.update(name, |r| r.provisioned = None);
        Ok(())
    }

    /// Stops and removes a workload's rootfs, runtime state and logs; `purge` also deletes its
    /// data dataset. The desired spec must already be gone from the store.
    pub async fn remove(self: &Arc<Self>, name: &str, purge: bool) -> Result<()> {
        if self.live.lock().unwrap().contains_key(name) {
            self.stop(name, "removing").await?;
        }
        self.deprovision(name).await?;
        let run_dir = self.run_dir(name);
        let storage = self.storage.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if run_dir.exists() {
                std::fs::remove_dir_all(&run_dir)?;
            }
            if purge {
                storage.delete_data(&n)?;
            }
            Ok(())
        })
        .await??;
        if purge {
            // No data owned by its range is left.
            self.store.release_userns_slot(name)?;
        }
        #[cfg(any(target_os = "linux", target_os = "freebsd"))]
        {
            let engine = self.clone();
            let n = name.to_string();
            tokio::task::spawn_blocking(move || engine.net.teardown(&engine.store, &n, true))
                .await?
                .context("removing the workload's network")?;
        }
        self.forget(name);
        self.event(
            Some(name),
            EventKind::Removed {
                data_deleted: purge,
            },
        );
        Ok(())
    }

    /// Starts a workload now (operator request): clears any exit so the policy does not hold it.
    pub async fn start_now(self: &Arc<Self>, name: &str) -> Result<()> {
        let _g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        self.update(name, |r| {
            if r.pid.is_none() {
                r.last_exit = Some(LastExit::Deliberate);
                r.failures = 0;
            }
        });
        drop(_g);
        self.wake();
        Ok(())
    }

    /// Records the desired state as stopped (operator stop); the planner stops it.
    pub async fn stop_now(self: &Arc<Self>, name: &str) -> Result<()> {
        self.store.set_state(name, DesiredState::Stopped)?;
        self.wake();
        Ok(())
    }

    /// A workload's health, when it has a health check.
    pub fn health_of(&self, name: &str) -> Option<warren_model::health::HealthStatus> {
        self.health.lock().unwrap().get(name).copied()
    }

    pub fn set_health(&self, name: &str, status: Option<warren_model::health::HealthStatus>) {
        let mut h = self.health.lock().unwrap();
        match status {
            Some(s) => h.insert(name.to_string(), s),
            None => h.remove(name),
        };
    }

    /// Restarts a running workload for `reason` (a failed health check): counted as a restart.
    pub async fn restart_for(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        self.restart_with(name, reason).await?;
        self.update(name, |r| r.restarts += 1);
        self.event(
            Some(name),
            EventKind::Restarted {
                reason: reason.to_string(),
            },
        );
        Ok(())
    }

    /// Asks for a restart (operator restart): the desired state becomes running and the
    /// workload's restart generation grows, so the planner stops (if running) and starts it
    /// once, whatever its restart policy and backoff say. Returns the new restart generation.
    pub async fn restart_now(self: &Arc<Self>, name: &str) -> Result<u64> {
        let g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        let generation = self.store.request_restart(name)?;
        self.update(name, |r| r.failures = 0);
        drop(g);
        self.wake();
        Ok(generation)
    }

    async fn restart_with(self: &Arc<Self>, name: &str, reason: &str) -> Result<()> {
        let g = self.lock(name).await;
        self.store.set_state(name, DesiredState::Running)?;
        if self.live.lock().unwrap().contains_key(name) {
            self.stop(name, reason).await?;
        }
        let d = self
            .desired_all()?
            .remove(name)
            .ok_or_else(|| anyhow!("no such workload"))?;
        if self
            .observed_row(name)
            .and_then(|r| r.provisioned)
            .as_deref()
            == Some(&d.hash)
        {
            self.update(name, |r| r.failures = 0);
            self.start(&d, reason).await?;
        }
        drop(g);
        self.wake();
        Ok(())
    }

    /// Deletes a workload: removes it from the desired state and waits for the planned stop
    /// and removal; `purge` then deletes its data dataset (data, not runtime: no step of a plan).
    pub async fn delete_now(self: &Arc<Self>, name: &str, purge: bool) -> Result<bool> {
        let g = self.lock(name).await;
        let existed = self.store.get_desired(name)?.is_some() || self.observed_row(name).is_some();
        self.store.apply(&[], &[name.to_string()])?;
        drop(g);
        if existed {
            self.wait_removed(name).await?;
        }
        if purge {
            let _g = self.lock(name).await;
            let storage = self.storage.clone();
            let n = name.to_string();
            tokio::task::spawn_blocking(move || storage.delete_data(&n)).await??;
            // No data owned by its range is left.
            self.store.release_userns_slot(name)?;
        }
        Ok(existed)
    }

    /// Wakes the reconciler and waits until a workload no longer desired is removed (its
    /// observed state is forgotten), or its removal fails.
    async fn wait_removed(self: &Arc<Self>, name: &str) -> Result<()> {
        let mut events = self.subscribe();
        self.wake();
        let deadline =
            tokio::time::Instant::now() + self.cfg.stop_timeout + Duration::from_secs(30);
        while self.observed_row(name).is_some() {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => return Err(anyhow!("{name} was not removed in time")),
                Ok(Ok(ev)) if ev.workload.as_deref() == Some(name) && ev.kind.is_error() => {
                    return Err(anyhow!("{}", ev.kind));
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    /// On daemon start: re-adopt shims that survived, record exits that happened while the
    /// daemon was away, and reset workloads whose processes vanished (host reboot).
    pub async fn adopt(self: &Arc<Self>) {
        for (name, row) in self.observed_all() {
            let Some(pid) = row.pid else { continue };
            let run_dir = self.run_dir(&name);
            let state = read_json::<ShimState>(&run_dir.join("state.json"));
            match state {
                Some(st)
                    if st.container_pid == pid
                        && warren_runtime::proc::process_alive(
                            st.shim_pid,
                            st.shim_start_ticks,
                        ) =>
                {
                    self.event(
                        Some(&name),
                        EventKind::Adopted {
                            pid,
                            shim_pid: st.shim_pid,
                        },
                    );
                    self.watch_shim(&name, st, None);
                }
                Some(st) if run_dir.join("exit.json").exists() => {
                    // Exited while the daemon was away: record it as a normal exit.
                    self.shim_exited(&name, &st).await;
                }
                _ => {
                    let rt = self.runtime.clone();
                    let id = self.container_id(&name);
                    let _ = tokio::task::spawn_blocking(move || rt.delete(&id)).await;
                    self.update(&name, |r| {
                        r.pid = None;
                        r.last_exit = None;
                    });
                    self.event(Some(&name), EventKind::Lost { pid });
                }
            }
        }
    }

    /// Re-creates networking someone removed (bridge, nft table or pf anchor, workload veths).
    async fn repair_network(self: &Arc<Self>) {
        #[cfg(target_os = "freebsd")]
        {
            let any_bridge = self.desired_all().is_ok_and(|d| {
                d.values()
                    .any(|d| d.spec.network == warren_model::NetworkMode::Bridge)
            });
            if !any_bridge && !self.net.rules_loaded() {
                return;
            }
            let engine = self.clone();
            match tokio::task::spawn_blocking(move || engine.net.repair()).await {
                Ok(Ok(fixed)) => {
                    for f in fixed {
                        self.event(None, EventKind::NetworkRepaired { what: f });
                    }
                }
                Ok(Err(e)) => self.event(None, EventKind::error(format!("network repair: {e:#}"))),
                Err(e) => self.event(None, EventKind::error(format!("network repair: {e}"))),
            }
        }
        #[cfg(target_os = "linux")]
        {
            let Ok(desired) = self.desired_all() else {
                return;
            };
            let Ok(addresses) = self.store.addresses() else {
                return;
            };
            let running: Vec<(String, u32, std::net::Ipv4Addr)> = self
                .observed_all()
                .into_iter()
                .filter(|(n, _)| {
                    desired
                        .get(n)
                        .is_some_and(|d| d.spec.network == warren_model::NetworkMode::Bridge)
                })
                .filter_map(|(n, r)| {
                    let addr = *addresses.get(&n)?;
                    Some((n, r.pid? as u32, addr))
                })
                .collect();
            if running.is_empty() && !self.net.rules_loaded() {
                return;
            }
            let engine = self.clone();
            match tokio::task::spawn_blocking(move || engine.net.repair(&running)).await {
                Ok(Ok(fixed)) => {
                    for f in fixed {
                        self.event(None, EventKind::NetworkRepaired { what: f });
                    }
                }
                Ok(Err(e)) => self.event(None, EventKind::error(format!("network repair: {e:#}"))),
                Err(e) => self.event(None, EventKind::error(format!("network repair: {e}"))),
            }
        }
    }

    /// Live status of one workload for the API.
    pub fn status(&self, d: &Desired) -> crate::wire::Status {
        let row = self.observed_row(&d.spec.name).unwrap_or_default();
        let refused = self.caps.refusal(d.spec.kind);
        let state = if refused.is_some() {
            "refused"
        } else if row.pid.is_some() {
            "running"
        } else if d.spec.state == DesiredState::Stopped {
            "stopped"
        } else {
            match &row.last_exit {
                Some(exit @ LastExit::Exited { .. }) => {
                    if plan::restarts_after(d.spec.restart, exit) {
                        "restarting"
                    } else {
                        "exited"
                    }
                }
                _ => "pending",
            }
        };
        crate::wire::Status {
            name: d.spec.name.clone(),
            kind: d.spec.kind.as_str().to_string(),
            state: state.to_string(),
            desired: d.spec.state.as_str().to_string(),
            pid: row.pid,
            restarts: row.restarts,
            source: match &d.spec.source {
                Source::World(w) => format!("world:{w}"),
                Source::Image(i) => format!("image:{i}"),
                Source::Recipe(r) => format!("recipe:{r}"),
            },
            generation: d.generation,
            last_exit: match row.last_exit {
                Some(LastExit::Exited {
                    code,
                    signal,
                    oom_killed,
                    at_ms,
                }) => Some(crate::wire::ExitSummary {
                    code,
                    signal,
                    oom_killed,
                    at_ms,
                }),
                _ => None,
            },
            started_ms: row.started_ms,
            refused: refused.map(str::to_string),
            health: d
                .spec
                .health
                .as_ref()
                .and_then(|_| self.health_of(&d.spec.name))
                .map(|h| h.as_str().to_string()),
            address: match d.spec.network {
                warren_model::NetworkMode::Bridge => self
                    .store
                    .addresses()
                    .ok()
                    .and_then(|a| a.get(&d.spec.name).map(|a| a.to_string())),
                _ => None,
            },
        }
    }
}

/// What a workload running as a jail needs beyond the OCI fields: its `allow.*` permissions,
/// vnet or not, its bridge address (`address`, bridge workloads) and, with
/// `jailed_dataset = true`, its data dataset by ZFS name (only the ZFS driver has one).
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub fn jail_params(
    spec: &warren_model::WorkloadSpec,
    address: Option<warren_runtime::BridgeAddress>,
    storage: &dyn Storage,
) -> Result<warren_runtime::JailParams> {
    let jailed_dataset = if spec.jail.jailed_dataset {
        let id = warren_storage::DatasetId::Data(spec.name.clone());
        let dataset = storage.zfs_dataset(&id).ok_or_else(|| {
            anyhow!(
                "{}: jailed_dataset = true needs the zfs storage driver (this daemon uses {})",
                spec.name,
                storage.driver()
            )
        })?;
        Some(warren_runtime::JailedDataset {
            dataset,
            host_mountpoint: storage.data_path(&spec.name),
            jail_mountpoint: spec.data_path.clone(),
        })
    } else {
        None
    };
    Ok(warren_runtime::JailParams {
        allow: spec.jail.allow.clone(),
        vnet: spec.jail.vnet(),
        address,
        jailed_dataset,
    })
}

/// The host bind mounts a world asks for, as runtime binds.
pub fn world_binds(meta: &warren_storage::WorldMeta) -> Vec<Bind> {
    meta.binds
        .iter()
        .map(|b| Bind {
            source: b.source.clone(),
            dest: b.dest.clone(),
            readonly: b.readonly,
        })
        .collect()
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Resolves when process `pid` has exited: readiness of a pidfd (Linux) or of a kqueue
/// watching `NOTE_EXIT` (FreeBSD). No polling either way.
async fn wait_exit(pid: i32) -> std::io::Result<()> {
    let Some(fd) = exit_fd(pid)? else {
        return Ok(()); // already gone
    };
    // SAFETY: the AsyncFd owns the fd and nothing else closes or replaces it.
    let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ = afd.readable().await?;
    Ok(())
}

/// An fd that becomes readable when `pid` exits; None if it has already exited.
#[cfg(target_os = "linux")]
fn exit_fd(pid: i32) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: fd was just returned by the kernel and is owned by nothing else.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// An fd that becomes readable when `pid` exits; None if it has already exited.
#[cfg(target_os = "freebsd")]
fn exit_fd(pid: i32) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: kqueue() returns a new fd or -1.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: kq was just returned by the kernel and is owned by nothing else.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    // SAFETY: an all-zero kevent is a valid value to fill in.
    let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
    ev.ident = pid as libc::uintptr_t;
    ev.filter = libc::EVFILT_PROC;
    ev.flags = libc::EV_ADD | libc::EV_ONESHOT;
    ev.fflags = libc::NOTE_EXIT;
    use std::os::fd::AsRawFd;
    // SAFETY: registers one event on our kqueue; no events are returned.
    let r = unsafe {
        libc::kevent(
            kq.as_raw_fd(),
            &ev,
            1,
            std::ptr::null_mut(),
            0,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(kq))
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn exit_fd(_pid: i32) -> std::io::Result<Option<OwnedFd>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "watching process exits needs Linux or FreeBSD",
    ))
}

#[cfg(test)]
mod tests {
    use super::jail_params;
    use std::sync::Arc;
    use warren_exec::RecordingExecutor;
    use warren_model::{Source, WorkloadSpec};

    fn zfs(rec: &Arc<RecordingExecutor>) -> warren_storage::zfs::ZfsStorage {
        rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
            .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            "tank/warren\tmountpoint\t/var/db/warren/zfs\tlocal\n\
             tank/warren/volumes\tmountpoint\t/var/db/warren/zfs/volumes\tlocal\n\
             tank/warren/workloads\tmountpoint\t/var/db/warren/zfs/workloads\tlocal\n\
             tank/warren/worlds\tmountpoint\t/var/db/warren/zfs/worlds\tlocal\n",
        );
        let s =
            warren_storage::zfs::ZfsStorage::open("tank", "/var/db/warren/zfs".into(), rec.clone())
                .unwrap();
        rec.finish();
        s
    }

    #[test]
    fn jail_options_become_jail_params() {
        let rec = Arc::new(RecordingExecutor::new());
        let storage = zfs(&rec);
        let mut w = WorkloadSpec::new("web", Source::World("freebsd-14".into()));
        let plain = jail_params(&w, None, &storage).unwrap();
        assert_eq!(plain, warren_runtime::JailParams::default());

        w.jail.allow = vec!["raw_sockets".into(), "sysvipc".into()];
        w.jail.vnet = Some(false);
        w.jail.jailed_dataset = true;
        w.data_path = "/var/db/app".into();
        let address = warren_runtime::BridgeAddress {
            address: "10.88.0.5".parse().unwrap(),
            prefix: 16,
            gateway: "10.88.0.1".parse().unwrap(),
        };
        let p = jail_params(&w, Some(address), &storage).unwrap();
        assert_eq!(p.allow, ["raw_sockets", "sysvipc"]);
        assert!(!p.vnet);
        assert_eq!(p.address, Some(address));
        assert_eq!(
            p.jailed_dataset,
            Some(warren_runtime::JailedDataset {
                dataset: "tank/warren/workloads/web/data".into(),
                host_mountpoint: "/var/db/warren/zfs/workloads/web/data".into(),
                jail_mountpoint: "/var/db/app".into(),
            })
        );

        // Without ZFS there is no dataset to hand over: a clear error naming the driver.
        let dir = tempfile::tempdir().unwrap();
        let plain_dirs = warren_storage::dir::DirStorage::new(dir.path().into(), rec.clone());
        let err = jail_params(&w, None, &plain_dirs).unwrap_err().to_string();
        assert!(
            err.contains("needs the zfs storage driver") && err.contains("dir"),
            "{err}"
        );
        rec.finish();
    }
}
