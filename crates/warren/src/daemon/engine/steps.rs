//! The executor's steps on one workload: provision (root filesystem, data, ownership for user
//! namespaces, quota), start under a shim, deprovision and remove.

use super::Engine;
use anyhow::{anyhow, Context, Result};
use std::sync::Arc;
use warren_model::event::EventKind;
use warren_model::plan::{Desired, LastExit};
use warren_model::Source;

impl Engine {
    pub(super) async fn provision(self: &Arc<Self>, d: &Desired, hash: &str) -> Result<()> {
        let name = d.spec.name.clone();
        // A missing built-in world was built by a planned step before this one.
        // A full VM boots its own disk: it has no root filesystem, only its data dataset.
        let world = match d.spec.rootfs_source() {
            None => None,
            Some(Source::World(w)) => Some(w.clone()),
            Some(Source::Image(r)) => Some(self.image_world(r)?),
            Some(Source::Recipe(r)) => {
                Some(crate::daemon::sources::resolve_ref(&self.store, r)?.world)
            }
        };
        let storage = self.storage.clone();
        let n = name.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            if let Some(world) = world {
                storage.create_rootfs(&n, &world)?;
            }
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

    /// Applies a workload's disk limit after (re)provisioning.
    pub async fn apply_quota(&self, name: &str, disk: Option<u64>) -> Result<()> {
        if let Some(bytes) = disk {
            let n = name.to_string();
            let storage = self.storage.clone();
            tokio::task::spawn_blocking(move || storage.set_workload_quota(&n, Some(bytes)))
                .await?
                .context("setting the disk limit")?;
        }
        Ok(())
    }

    /// The host id pool of user-namespaced workloads (`/etc/subuid`, `/etc/subgid`).
    pub(super) fn id_pool(&self) -> Result<warren_runtime::userns::IdPool> {
        warren_runtime::userns::IdPool::from_host().map_err(|e| anyhow!(e))
    }

    /// The first host id of a provisioned user-namespaced workload's range.
    pub(in crate::daemon) fn userns_base(&self, name: &str) -> Result<u32> {
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
    pub(in crate::daemon) async fn own_datasets(
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

    /// Starts a provisioned workload now; the caller holds its lock.
    pub(in crate::daemon) async fn start_desired(
        self: &Arc<Self>,
        d: &Desired,
        reason: &str,
    ) -> Result<()> {
        self.start(d, reason).await
    }

    pub(super) async fn start(self: &Arc<Self>, d: &Desired, reason: &str) -> Result<()> {
        let name = d.spec.name.clone();
        if d.spec.userns && self.store.userns_slot(&name)?.is_none() {
            // Datasets that never were re-owned (an imported workload, say): provision again.
            self.update(&name, |r| r.provisioned = None);
            return Err(anyhow!(
                "{name} has no user-namespace range yet; it is provisioned again"
            ));
        }
        // The workload's address, its place on the bridge and the names exist before its
        // spec is computed (a jail's spec carries its address) and before it can look a name up.
        if d.spec.network == warren_model::NetworkMode::Bridge {
            let engine = self.clone();
            let n = name.clone();
            let userns = match d.spec.userns {
                true => Some(self.userns_base(&name)?),
                false => None,
            };
            let specs: Vec<warren_model::WorkloadSpec> =
                self.desired_all()?.into_values().map(|d| d.spec).collect();
            let vm = d.spec.kind == warren_model::Kind::Vm;
            tokio::task::spawn_blocking(move || -> Result<()> {
                if vm {
                    engine.net.attach_tap(&engine.store, &n)?;
                } else {
                    engine.net.attach(&engine.store, &n, userns)?;
                }
                let addresses = engine.store.addresses()?;
                let refs: Vec<&warren_model::WorkloadSpec> = specs.iter().collect();
                let storage = engine.storage.clone();
                engine
                    .net
                    .sync_hosts(&refs, &addresses, &|w| storage.rootfs_path(w))?;
                if !vm {
                    engine.net.install_names(&engine.storage.rootfs_path(&n))?;
                }
                Ok(())
            })
            .await?
            .context("preparing the network")?;
        }
        let cspec = self.container_spec(d)?;
        if cspec.userns.is_some() {
            self.allow_traversal(&cspec)?;
        }
        let run_dir = self.run_dir(&name);
        std::fs::create_dir_all(&run_dir).with_context(|| format!("{}", run_dir.display()))?;
        for stale in ["state.json", "exit.json"] {
            let _ = std::fs::remove_file(run_dir.join(stale));
        }
        let shims = self.shims.clone();
        let rd = run_dir.clone();
        let started = tokio::task::spawn_blocking(move || shims.start(&cspec, &rd)).await?;
        let was_restart = matches!(
            self.observed_row(&name).and_then(|r| r.last_exit),
            Some(LastExit::Exited { .. })
        );
        let started = match started {
            Ok(s) => s,
            Err(e) => {
                // Count a failed start like a crash so the backoff applies.
                let now = self.clock.now_ms();
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
                return Err(e);
            }
        };
        let state = started;
        // A new run is not healthy until its own checks pass (dependents waiting for
        // `healthy` read this); its monitor reports from here on.
        self.set_health(
            &name,
            d.spec
                .health
                .as_ref()
                .map(|_| warren_model::health::HealthStatus::Starting),
        );
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
        self.watch_shim(&name, state);
        Ok(())
    }

    pub(super) async fn deprovision(self: &Arc<Self>, name: &str) -> Result<()> {
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
        {
            let engine = self.clone();
            let n = name.to_string();
            tokio::task::spawn_blocking(move || engine.net.detach(&engine.store, &n, true))
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
}
