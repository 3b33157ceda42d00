//! The engine's state: the event bus, observed rows (written through to the store), the
//! per-workload locks, paths and ids of a workload's run, health, and the desired state as
//! the planner sees it (with the routing workload and resolved image and recipe hashes).

use super::Engine;
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, OwnedMutexGuard};
use warren_model::event::EventKind;
use warren_model::plan::Desired;
use warren_model::Source;
use warren_store::{Event, ObservedRow};

impl Engine {
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
        self.telemetry.event(kind.category());
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
    pub(in crate::daemon) fn quota_full(&self, name: &str, full: bool) -> bool {
        let mut set = self.quota_full.lock().unwrap();
        if full {
            !set.insert(name.to_string())
        } else {
            set.remove(name)
        }
    }

    pub(in crate::daemon) fn update(&self, name: &str, f: impl FnOnce(&mut ObservedRow)) {
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

    pub(super) fn forget(&self, name: &str) {
        self.observed.lock().unwrap().remove(name);
        if let Err(e) = self.store.delete_observed(name) {
            tracing::error!(workload = name, "cannot forget observed state: {e}");
        }
    }

    pub(super) fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
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

    /// The stored image `reference` names.
    pub fn image_record(&self, reference: &str) -> Result<warren_store::ImageRecord> {
        let r = crate::daemon::sources::normalize_reference(reference).map_err(|e| anyhow!(e))?;
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

    /// The drift hash of `spec` (see [`crate::daemon::sources::image_hash`]).
    pub fn drift_hash(&self, spec: &warren_model::WorkloadSpec) -> Result<String> {
        match spec.source {
            Source::Recipe(_) => crate::daemon::sources::recipe_hash(&self.store, spec),
            _ => crate::daemon::sources::image_hash(&self.store, spec),
        }
    }

    /// The desired workloads: the operator's, plus the routing workload while anything is
    /// routed.
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
    pub(super) fn add_router(
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

    /// Registers the Scheme evaluator (once; a second registration is ignored).
    pub fn set_evaluator(&self, evaluator: Arc<dyn super::Evaluator>) {
        let _ = self.evaluator.set(evaluator);
    }

    /// The Scheme evaluator, once one is registered.
    pub fn evaluator(&self) -> Option<Arc<dyn super::Evaluator>> {
        self.evaluator.get().cloned()
    }

    /// A workload's health, when it has a health check.
    pub fn health_of(&self, name: &str) -> Option<warren_model::health::HealthStatus> {
        self.health.lock().unwrap().get(name).copied()
    }

    /// Records a workload's health; a change wakes the reconcile loop (dependents may wait
    /// for `healthy`).
    pub fn set_health(&self, name: &str, status: Option<warren_model::health::HealthStatus>) {
        let before = {
            let mut h = self.health.lock().unwrap();
            match status {
                Some(s) => h.insert(name.to_string(), s),
                None => h.remove(name),
            }
        };
        if before != status {
            self.wake();
        }
    }

    /// What `spec`'s start waits for now ([`warren_model::plan::unmet_dependencies`] over
    /// its dependencies' current view), if anything.
    pub fn unmet_dependencies(&self, spec: &warren_model::WorkloadSpec) -> Option<String> {
        let deps: BTreeMap<String, warren_model::plan::Observed> = spec
            .after
            .iter()
            .filter_map(|dep| Some((dep.name.clone(), self.planner_view(&dep.name)?)))
            .collect();
        warren_model::plan::unmet_dependencies(spec, &deps)
    }

    /// The planner's view of one workload: its observed row and its health (not busy).
    pub fn planner_view(&self, name: &str) -> Option<warren_model::plan::Observed> {
        let mut o = self.observed_row(name)?.to_observed();
        o.health = self.health_of(name);
        Some(o)
    }
}

pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}
