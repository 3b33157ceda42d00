//! The reconcile loop: plan with every idle workload locked, execute each workload's steps in
//! its own task (bounded by the engine's semaphore), build missing built-in worlds, adopt
//! surviving shims on start, and the live status the API reports (its `restarting` or
//! `exited` from the planner's restart decision, `waiting` from its start order).

use super::state::read_json;
use super::Engine;
use anyhow::{anyhow, Result};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use warren_model::event::EventKind;
use warren_model::plan::{self, Action, Desired, LastExit, Observed, Step};
use warren_model::{DesiredState, Source};
use warren_runtime::ShimState;

impl Engine {
    /// The reconcile loop: a pass on every wake-up, on every tick, and when a backoff expires.
    /// Networking someone removed is repaired on every tick. (The services' periodic work,
    /// snapshot schedules and quota watching, runs in a loop of its own that the daemon
    /// starts: the engine never calls up into a service.)
    pub async fn run(self: Arc<Self>) {
        let keeper = self.clone();
        tokio::spawn(async move {
            loop {
                keeper.repair_network().await;
                tokio::time::sleep(keeper.cfg.tick).await;
            }
        });
        loop {
            let began = std::time::Instant::now();
            let pass = self.clone().reconcile_once().await;
            self.telemetry.reconcile_pass(began.elapsed());
            let next_wake = match pass {
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
                let now = self.clock.now_ms();
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
            let mut o: Observed = self.planner_view(name).unwrap_or_default();
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
            self.clock.now_ms(),
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

    /// Executes one workload's steps in order; the first failure ends the sequence (and is
    /// reported by returning `false`).
    pub(super) async fn execute(
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
    pub(super) async fn build_world(self: &Arc<Self>, world: &str) -> Result<()> {
        let _g = self.lock(&format!("world/{world}")).await;
        let storage = self.storage.clone();
        let exec = self.exec.clone();
        let w = world.to_string();
        let built = tokio::task::spawn_blocking(move || -> Result<bool> {
            if storage.list_worlds()?.contains(&w) {
                return Ok(false);
            }
            warren_storage::worlds::create_world(&*storage, &w, &*exec)?;
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
    pub(super) async fn missing_sources(
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

    /// On daemon start: re-adopt shims that survived, record exits that happened while the
    /// daemon was away, and reset workloads whose processes vanished (host reboot).
    pub async fn adopt(self: &Arc<Self>) {
        for (name, row) in self.observed_all() {
            let Some(pid) = row.pid else { continue };
            let run_dir = self.run_dir(&name);
            let state = read_json::<ShimState>(&run_dir.join("state.json"));
            match state {
                Some(st) if st.container_pid == pid && self.shims.alive(&st) => {
                    self.event(
                        Some(&name),
                        EventKind::Adopted {
                            pid,
                            shim_pid: st.shim_pid,
                        },
                    );
                    self.watch_shim(&name, st);
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

    /// Live status of one workload for the API.
    pub fn status(&self, d: &Desired) -> crate::wire::Status {
        let row = self.observed_row(&d.spec.name).unwrap_or_default();
        let refused = self.caps.refusal(d.spec.kind);
        // The start order the planner holds starts back with.
        let waiting = self.unmet_dependencies(&d.spec);
        let mut state = if refused.is_some() {
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
        // Only a start the planner would make can wait.
        let waiting = waiting.filter(|_| matches!(state, "pending" | "restarting"));
        if waiting.is_some() {
            state = "waiting";
        }
        crate::wire::Status {
            name: d.spec.name.clone(),
            kind: d.spec.kind.as_str().to_string(),
            state: state.to_string(),
            desired: d.spec.state.as_str().to_string(),
            pid: row.pid,
            restarts: row.restarts,
            source: match (d.spec.rootfs_source(), &d.spec.vm) {
                (Some(Source::World(w)), _) => format!("world:{w}"),
                (Some(Source::Image(i)), _) => format!("image:{i}"),
                (Some(Source::Recipe(r)), _) => format!("recipe:{r}"),
                (None, vm) => match (&vm.iso, &vm.disk) {
                    (Some(iso), _) => format!("iso:{}", iso.display()),
                    (None, Some(disk)) => format!("disk:{}", disk.display()),
                    (None, None) => "-".into(),
                },
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
            waiting,
            health: d
                .spec
                .health
                .as_ref()
                .and_then(|_| self.health_of(&d.spec.name))
                .map(|h| h.as_str().to_string()),
            accel: (d.spec.kind == warren_model::Kind::Vm)
                .then(|| {
                    std::fs::read_to_string(
                        self.run_dir(&d.spec.name)
                            .join(warren_vm::runtime::ACCEL_FILE),
                    )
                    .ok()
                })
                .flatten()
                .map(|a| a.trim().to_string()),
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
