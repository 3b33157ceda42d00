//! Dataset operations at the workload and volume level: snapshots (taken on all of a
//! workload's datasets at once, with the container frozen), rollback, clone, volumes, quotas
//! and the retention schedule.
//!
//! Invariants: a workload snapshot exists on every dataset of the workload or on none (a
//! failure part-way deletes what was taken); rollback checks every dataset before changing any;
//! automatic snapshots are labelled `auto-<unix-seconds>` and retention prunes only those.

use super::engine::Engine;
use super::error::{DatasetError, WorkloadError};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use warren_model::event::EventKind;
use warren_model::plan::{Desired, LastExit};
use warren_model::{SnapshotPolicy, VolumeSpec};
use warren_storage::{DatasetId, SnapshotInfo};
use warren_store::now_ms;

/// How long a snapshot, rollback or clone waits for another operation on the workload before
/// it answers busy (short under test, so the busy path is tested in a blink).
#[cfg(not(test))]
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
#[cfg(test)]
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Prefix of automatic snapshot labels; retention never touches other labels.
pub const AUTO_PREFIX: &str = "auto-";

/// A workload or volume snapshot as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct SnapshotView {
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Exclusive bytes across the datasets, when the driver can tell.
    pub bytes: Option<u64>,
    /// Dataset keys holding this label.
    pub datasets: Vec<String>,
    pub automatic: bool,
}

/// Whose datasets: a workload's (rootfs and data) or a volume's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Workload(String),
    Volume(String),
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Workload(n) | Target::Volume(n) => n,
        }
    }

    fn mark(&self) -> String {
        match self {
            Target::Workload(n) => format!("workload/{n}"),
            Target::Volume(n) => format!("volume/{n}"),
        }
    }
}

/// Merges per-dataset snapshots (each list oldest first, as drivers return them) into one
/// view per label, oldest first; snapshots taken within the same second keep the drivers' order.
pub fn merge_snapshots(lists: &[Vec<SnapshotInfo>]) -> Vec<SnapshotView> {
    let mut by_label: BTreeMap<String, SnapshotView> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for s in lists.iter().flatten() {
        if !by_label.contains_key(&s.label) {
            order.push(s.label.clone());
        }
        let v = by_label
            .entry(s.label.clone())
            .or_insert_with(|| SnapshotView {
                label: s.label.clone(),
                created_at: s.created_at,
                bytes: Some(0),
                datasets: Vec::new(),
                automatic: s.label.starts_with(AUTO_PREFIX),
            });
        v.created_at = v.created_at.min(s.created_at);
        v.bytes = match (v.bytes, s.bytes) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        v.datasets.push(s.dataset.clone());
    }
    let mut out: Vec<SnapshotView> = order.iter().filter_map(|l| by_label.remove(l)).collect();
    out.sort_by_key(|v| v.created_at);
    out
}

/// Automatic snapshots to delete so that `keep` remain (oldest first).
pub fn prune_list(snaps: &[SnapshotView], keep: u32) -> Vec<String> {
    let autos: Vec<&SnapshotView> = snaps.iter().filter(|s| s.automatic).collect();
    let excess = autos.len().saturating_sub(keep as usize);
    autos[..excess].iter().map(|s| s.label.clone()).collect()
}

/// Whether an automatic snapshot is due.
pub fn snapshot_due(last_ms: Option<u64>, policy: &SnapshotPolicy, now_ms: u64) -> bool {
    match last_ms {
        None => true,
        Some(last) => now_ms.saturating_sub(last) >= policy.every_secs * 1000,
    }
}

/// Checks a snapshot label against the one rule ([`warren_model::names::check_snapshot_label`]).
pub fn check_label(label: &str) -> Result<()> {
    warren_model::names::check_snapshot_label(label)
        .map_err(|_| DatasetError::BadLabel(label.to_string()).into())
}

fn no_snapshot(target: &Target, label: &str) -> anyhow::Error {
    DatasetError::NoSnapshot {
        target: target.name().to_string(),
        label: label.to_string(),
    }
    .into()
}

/// The last error of the sweep of staged receives, so a lasting one is reported once.
static LAST_SWEEP_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

impl Engine {
    fn datasets_of(&self, target: &Target) -> Vec<DatasetId> {
        match target {
            Target::Workload(n) => {
                let mut v = Vec::new();
                if self.storage.rootfs_path(n).exists() {
                    v.push(DatasetId::Rootfs(n.clone()));
                }
                v.push(DatasetId::Data(n.clone()));
                v
            }
            Target::Volume(n) => vec![DatasetId::Volume(n.clone())],
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn warren_storage::Storage) -> warren_storage::Result<T> + Send + 'static,
    ) -> Result<T> {
        let storage = self.storage.clone();
        Ok(tokio::task::spawn_blocking(move || f(&*storage)).await??)
    }

    /// Exclusive access to a workload, waiting at most `wait` for an operation in flight
    /// (a start, a rollback, an export) to finish; then busy.
    pub async fn lock_or_busy(
        &self,
        name: &str,
        wait: std::time::Duration,
    ) -> Result<tokio::sync::OwnedMutexGuard<()>> {
        tokio::time::timeout(wait, self.lock(name))
            .await
            .map_err(|_| WorkloadError::Busy(name.to_string()).into())
    }

    fn check_exists(&self, target: &Target) -> Result<()> {
        let exists = match target {
            Target::Workload(n) => self.store.get_desired(n)?.is_some(),
            Target::Volume(n) => self.store.volumes()?.contains_key(n),
        };
        if !exists {
            match target {
                Target::Workload(n) => return Err(DatasetError::NoWorkload(n.clone()).into()),
                Target::Volume(n) => return Err(DatasetError::NoVolume(n.clone()).into()),
            }
        }
        Ok(())
    }

    /// Snapshots of a workload or volume.
    pub async fn list_snapshots(&self, target: &Target) -> Result<Vec<SnapshotView>> {
        self.check_exists(target)?;
        let ids = self.datasets_of(target);
        let lists = self
            .blocking(move |s| {
                let mut lists = Vec::new();
                for id in &ids {
                    if s.dataset_path(id).exists() {
                        lists.push(s.snapshots(id)?);
                    }
                }
                Ok(lists)
            })
            .await?;
        Ok(merge_snapshots(&lists))
    }

    /// Takes a snapshot of every dataset of `target` under one label (default
    /// `<name>-<unix-seconds>`). A running workload is frozen while it is taken.
    pub async fn take_snapshot(
        self: &Arc<Self>,
        target: &Target,
        label: Option<String>,
    ) -> Result<String> {
        self.check_exists(target)?;
        let label = label.unwrap_or_else(|| format!("{}-{}", target.name(), now_ms() / 1000));
        check_label(&label)?;
        let _guard = match target {
            Target::Workload(n) => Some(self.lock_or_busy(n, LOCK_WAIT).await?),
            Target::Volume(_) => None,
        };
        self.snapshot_locked(target, &label).await?;
        Ok(label)
    }

    async fn snapshot_locked(self: &Arc<Self>, target: &Target, label: &str) -> Result<()> {
        let ids = self.datasets_of(target);
        let paused = match target {
            Target::Workload(n) if self.observed_row(n).and_then(|r| r.pid).is_some() => {
                let rt = self.runtime.clone();
                let id = self.container_id(n);
                tokio::task::spawn_blocking(move || rt.freeze(&id))
                    .await?
                    .is_ok()
                    .then(|| n.clone())
            }
            _ => None,
        };
        let l = label.to_string();
        let result = self
            .blocking(move |s| {
                let mut taken: Vec<DatasetId> = Vec::new();
                for id in &ids {
                    match s.snapshot(id, &l) {
                        Ok(_) => taken.push(id.clone()),
                        Err(e) => {
                            for t in &taken {
                                let _ = s.delete_snapshot(t, &l);
                            }
                            return Err(e);
                        }
                    }
                }
                Ok(())
            })
            .await;
        if let Some(n) = paused {
            let rt = self.runtime.clone();
            let id = self.container_id(&n);
            tokio::task::spawn_blocking(move || rt.thaw(&id)).await??;
        }
        result?;
        let (workload, volume) = match target {
            Target::Workload(n) => (Some(n.as_str()), None),
            Target::Volume(n) => (None, Some(n.clone())),
        };
        self.event(
            workload,
            EventKind::SnapshotTaken {
                label: label.to_string(),
                volume,
            },
        );
        Ok(())
    }

    /// Deletes one snapshot from every dataset that has it.
    pub async fn delete_snapshot(&self, target: &Target, label: &str) -> Result<()> {
        let views = self.list_snapshots(target).await?;
        let Some(view) = views.iter().find(|v| v.label == label) else {
            return Err(no_snapshot(target, label));
        };
        let ids: Vec<DatasetId> = self
            .datasets_of(target)
            .into_iter()
            .filter(|id| view.datasets.contains(&id.key()))
            .collect();
        let l = label.to_string();
        self.blocking(move |s| {
            for id in &ids {
                s.delete_snapshot(id, &l)?;
            }
            Ok(())
        })
        .await?;
        let workload = matches!(target, Target::Workload(_)).then(|| target.name());
        self.event(
            workload,
            EventKind::SnapshotDeleted {
                label: label.to_string(),
                target: target.name().to_string(),
            },
        );
        Ok(())
    }

    /// Rolls every dataset of `target` back to `label`, stopping a running workload first and
    /// starting it again afterwards. Newer snapshots are refused unless `force`.
    pub async fn rollback(
        self: &Arc<Self>,
        target: &Target,
        label: &str,
        force: bool,
    ) -> Result<Vec<String>> {
        let views = self.list_snapshots(target).await?;
        let Some(pos) = views.iter().position(|v| v.label == label) else {
            return Err(no_snapshot(target, label));
        };
        let newer: Vec<String> = views[pos + 1..].iter().map(|v| v.label.clone()).collect();
        if !newer.is_empty() && !force {
            return Err(DatasetError::Conflict(format!(
                "rolling back to {label} would destroy newer snapshots: {} (use --force)",
                newer.join(", ")
            ))
            .into());
        }
        if let Target::Volume(v) = target {
            let writers: Vec<String> = self
                .store
                .desired()?
                .values()
                .filter(|d| d.spec.volumes.iter().any(|m| &m.volume == v))
                .filter(|d| {
                    self.observed_row(&d.spec.name)
                        .and_then(|r| r.pid)
                        .is_some()
                })
                .map(|d| d.spec.name.clone())
                .collect();
            if !writers.is_empty() {
                return Err(DatasetError::Conflict(format!(
                    "volume {v} is in use by running workloads: {} (stop them first)",
                    writers.join(", ")
                ))
                .into());
            }
        }
        let guard = match target {
            Target::Workload(n) => Some(self.lock_or_busy(n, LOCK_WAIT).await?),
            Target::Volume(_) => None,
        };
        let was_running = match target {
            Target::Workload(n) => {
                let running = self.observed_row(n).and_then(|r| r.pid).is_some();
                if running {
                    self.stop(n, "rollback").await?;
                }
                running
            }
            Target::Volume(_) => false,
        };
        let ids: Vec<DatasetId> = self
            .datasets_of(target)
            .into_iter()
            .filter(|id| views[pos].datasets.contains(&id.key()))
            .collect();
        let l = label.to_string();
        let destroyed = self
            .blocking(move |s| {
                let mut destroyed = Vec::new();
                for id in &ids {
                    destroyed.extend(s.rollback(id, &l, force)?);
                }
                destroyed.sort();
                destroyed.dedup();
                Ok(destroyed)
            })
            .await;
        let workload = matches!(target, Target::Workload(_)).then(|| target.name());
        if destroyed.is_ok() {
            // The snapshot's files carry the owners of when it was taken (before `userns` was
            // switched on or off, or under a volume's earlier writer): give them the owners
            // the spec asks for now.
            if let Err(e) = self.reown_after_rollback(target).await {
                self.event(
                    workload,
                    EventKind::error(format!("re-owning after the rollback to {label}: {e:#}")),
                );
            }
        }
        match &destroyed {
            Ok(_) => self.event(
                workload,
                EventKind::RolledBack {
                    target: target.name().to_string(),
                    label: label.to_string(),
                },
            ),
            Err(e) => self.event(
                workload,
                EventKind::error(format!("rollback to {label} failed: {e:#}")),
            ),
        }
        if let (Target::Workload(n), true) = (target, was_running) {
            if let Some(d) = self.store.get_desired(n)? {
                self.start_desired(&d, "after rollback").await?;
            }
        }
        drop(guard);
        self.wake();
        destroyed
    }

    /// Re-owns the rolled-back datasets of `target` for the workloads that use them.
    async fn reown_after_rollback(self: &Arc<Self>, target: &Target) -> Result<()> {
        let users: Vec<Desired> = match target {
            Target::Workload(n) => self.store.get_desired(n)?.into_iter().collect(),
            Target::Volume(v) => self
                .store
                .desired()?
                .into_values()
                .filter(|d| d.spec.volumes.iter().any(|m| &m.volume == v && !m.readonly))
                .collect(),
        };
        for d in users {
            if let Some(note) = self.own_datasets(&d.spec.name, &d.spec).await? {
                self.event(Some(&d.spec.name), EventKind::Userns { note });
            }
        }
        Ok(())
    }

    /// Creates workload `dst` as a copy-on-write clone of `src` (of its snapshot `label`, or of
    /// its current state).
    pub async fn clone_workload(
        self: &Arc<Self>,
        src: &str,
        dst: &str,
        label: Option<&str>,
    ) -> Result<()> {
        warren_model::names::check_dns_label(dst)
            .map_err(|e| DatasetError::BadName(format!("clone name: {e}")))?;
        let d = self
            .store
            .get_desired(src)?
            .ok_or_else(|| DatasetError::NoWorkload(src.to_string()))?;
        if self.store.get_desired(dst)?.is_some() || self.observed_row(dst).is_some() {
            return Err(WorkloadError::Conflict(format!(
                "a workload named {dst:?} already exists"
            ))
            .into());
        }
        if self.storage.data_path(dst).exists() {
            return Err(WorkloadError::Conflict(format!(
                "data of a deleted workload {dst:?} still exists (warren delete --purge {dst})"
            ))
            .into());
        }
        if let Some(m) = d.spec.volumes.iter().find(|m| !m.readonly) {
            return Err(WorkloadError::Conflict(format!(
                "{src} mounts volume {} read-write; a clone would be a second writer (mount it :ro in {src} first)",
                m.volume
            ))
            .into());
        }
        let _g = self.lock_or_busy(src, LOCK_WAIT).await?;
        let mut spec = d.spec.clone();
        spec.name = dst.to_string();
        if spec.hostname.as_deref() == Some(src) {
            spec.hostname = None;
        }
        let provisioned = self.observed_row(src).and_then(|r| r.provisioned).is_some()
            && self.storage.rootfs_path(src).exists();
        let (s, t, l) = (src.to_string(), dst.to_string(), label.map(str::to_string));
        self.blocking(move |st| {
            st.clone_dataset(
                &DatasetId::Data(s.clone()),
                l.as_deref(),
                &DatasetId::Data(t.clone()),
            )?;
            if provisioned {
                if let Err(e) = st.clone_dataset(
                    &DatasetId::Rootfs(s),
                    l.as_deref(),
                    &DatasetId::Rootfs(t.clone()),
                ) {
                    let _ = st.delete_data(&t);
                    return Err(e);
                }
            }
            Ok(())
        })
        .await?;
        if let Some(disk) = spec.resources.disk {
            let t = dst.to_string();
            self.blocking(move |st| st.set_workload_quota(&t, Some(disk)))
                .await?;
        }
        if provisioned && spec.userns {
            // The clone gets a range of its own; its copies are re-owned into it.
            if let Err(e) = self.own_datasets(dst, &spec).await {
                let t = dst.to_string();
                let _ = self
                    .blocking(move |st| {
                        st.delete_rootfs(&t)?;
                        st.delete_data(&t)
                    })
                    .await;
                let _ = self.store.release_userns_slot(dst);
                return Err(e);
            }
        }
        let hash = self.drift_hash(&spec)?;
        self.store.apply(std::slice::from_ref(&spec), &[])?;
        if provisioned {
            self.update(dst, |r| {
                r.provisioned = Some(hash);
                r.last_exit = Some(LastExit::Deliberate);
            });
        }
        self.event(
            Some(dst),
            EventKind::Cloned {
                from: src.to_string(),
                label: label.map(str::to_string),
            },
        );
        self.wake();
        Ok(())
    }

    /// Creates or resizes the volumes of a file. Returns the names newly created (so a caller
    /// whose later step fails can remove them).
    pub async fn ensure_volumes(&self, vols: &[VolumeSpec]) -> Result<Vec<String>> {
        let vols = vols.to_vec();
        self.blocking(move |s| {
            let mut created: Vec<String> = Vec::new();
            for v in &vols {
                let existed = s.dataset_path(&DatasetId::Volume(v.name.clone())).exists();
                let r = s.ensure_volume(&v.name).and_then(|_| match v.size {
                    Some(b) => s.set_quota(&DatasetId::Volume(v.name.clone()), Some(b)),
                    None => Ok(()),
                });
                if let Err(e) = r {
                    for c in &created {
                        let _ = s.delete_volume(c);
                    }
                    return Err(e);
                }
                if !existed {
                    created.push(v.name.clone());
                }
            }
            Ok(created)
        })
        .await
    }

    /// Deletes a volume and its data; refused while any workload declares a mount of it.
    pub async fn delete_volume(&self, name: &str) -> Result<()> {
        let declared = self.store.volumes()?.contains_key(name);
        let stored = self
            .storage
            .dataset_path(&DatasetId::Volume(name.to_string()))
            .exists();
        if !declared && !stored {
            return Err(DatasetError::NoVolume(name.to_string()).into());
        }
        let users: Vec<String> = self
            .store
            .desired()?
            .values()
            .filter(|d| d.spec.volumes.iter().any(|m| m.volume == name))
            .map(|d| d.spec.name.clone())
            .collect();
        if !users.is_empty() {
            return Err(DatasetError::Conflict(format!(
                "volume {name} is mounted by {}; remove those mounts first",
                users.join(", ")
            ))
            .into());
        }
        let n = name.to_string();
        self.blocking(move |s| s.delete_volume(&n)).await?;
        self.store.put_volumes(&[], &[name.to_string()])?;
        self.event(
            None,
            EventKind::VolumeDeleted {
                name: name.to_string(),
            },
        );
        Ok(())
    }

    /// One pass of the snapshot schedules and of quota watching, and the sweep of staged
    /// receives nobody holds (an import interrupted by a crash); run at start-up and on every
    /// tick.
    pub async fn housekeeping(self: &Arc<Self>) {
        match self.blocking(|s| s.sweep_staged()).await {
            Ok(swept) => {
                *LAST_SWEEP_ERROR.lock().unwrap_or_else(|p| p.into_inner()) = None;
                for place in swept {
                    self.event(
                        None,
                        EventKind::StorageCleaned {
                            place: place.to_string(),
                        },
                    );
                }
            }
            Err(e) => {
                // Reported once while it keeps failing the same way, not on every tick.
                let msg = format!("deleting leftovers of interrupted imports: {e:#}");
                let mut last = LAST_SWEEP_ERROR.lock().unwrap_or_else(|p| p.into_inner());
                if last.as_deref() != Some(msg.as_str()) {
                    self.event(None, EventKind::error(&msg));
                    *last = Some(msg);
                }
            }
        }
        let now = now_ms();
        let mut targets: Vec<(Target, SnapshotPolicy)> = Vec::new();
        if let Ok(desired) = self.store.desired() {
            for d in desired.values() {
                if let Some(p) = d.spec.snapshots {
                    if self.storage.data_path(&d.spec.name).exists() {
                        targets.push((Target::Workload(d.spec.name.clone()), p));
                    }
                }
                if d.spec.resources.disk.is_some() {
                    self.watch_quota(&d.spec.name).await;
                }
            }
        }
        if let Ok(vols) = self.store.volumes() {
            for v in vols.values() {
                if let Some(p) = v.snapshots {
                    targets.push((Target::Volume(v.name.clone()), p));
                }
            }
        }
        for (target, policy) in targets {
            if let Err(e) = self.retention_one(&target, &policy, now).await {
                let workload = matches!(target, Target::Workload(_)).then(|| target.name());
                self.event(
                    workload,
                    EventKind::error(format!("automatic snapshot of {}: {e:#}", target.name())),
                );
            }
        }
    }

    async fn retention_one(
        self: &Arc<Self>,
        target: &Target,
        policy: &SnapshotPolicy,
        now: u64,
    ) -> Result<()> {
        let mark = target.mark();
        if snapshot_due(self.store.last_auto_snapshot(&mark)?, policy, now) {
            let label = format!("{AUTO_PREFIX}{}", now / 1000);
            let _guard = match target {
                Target::Workload(n) => match self.try_lock(n) {
                    Some(g) => Some(g),
                    None => return Ok(()), // busy: the next tick takes it
                },
                Target::Volume(_) => None,
            };
            self.snapshot_locked(target, &label).await?;
            self.store.mark_auto_snapshot(&mark, now)?;
        }
        let snaps = self.list_snapshots(target).await?;
        for label in prune_list(&snaps, policy.keep) {
            self.delete_snapshot(target, &label).await?;
        }
        Ok(())
    }

    async fn watch_quota(&self, name: &str) {
        let n = name.to_string();
        let Ok((used, Some(limit))) = self.blocking(move |s| s.workload_usage(&n)).await else {
            return;
        };
        let full = used.saturating_add(64 * 1024) >= limit;
        let was = self.quota_full(name, full);
        if full && !was {
            self.event(Some(name), EventKind::Quota { used, limit });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(ds: &str, label: &str, at: u64, bytes: Option<u64>) -> SnapshotInfo {
        SnapshotInfo {
            dataset: ds.into(),
            label: label.into(),
            created_at: at,
            bytes,
        }
    }

    #[test]
    fn merges_by_label_oldest_first() {
        let v = merge_snapshots(&[
            vec![snap("r", "b", 20, Some(1)), snap("r", "a", 10, Some(2))],
            vec![snap("d", "a", 11, Some(3)), snap("d", "auto-5", 30, None)],
        ]);
        let labels: Vec<_> = v.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "auto-5"]);
        // Same second: the drivers' order wins over the labels' order.
        let same = merge_snapshots(&[vec![snap("r", "zz", 5, None), snap("r", "aa", 5, None)]]);
        assert_eq!(same[0].label, "zz");
        assert_eq!(v[0].bytes, Some(5));
        assert_eq!(v[0].datasets, ["r", "d"]);
        assert_eq!(v[0].created_at, 10);
        assert_eq!(v[2].bytes, None);
        assert!(v[2].automatic && !v[0].automatic);
    }

    #[test]
    fn prunes_only_oldest_automatic_snapshots() {
        let v = merge_snapshots(&[vec![
            snap("d", "auto-1", 1, None),
            snap("d", "manual", 2, None),
            snap("d", "auto-3", 3, None),
            snap("d", "auto-4", 4, None),
        ]]);
        assert_eq!(prune_list(&v, 2), ["auto-1"]);
        assert_eq!(prune_list(&v, 1), ["auto-1", "auto-3"]);
        assert!(prune_list(&v, 5).is_empty());
    }

    #[test]
    fn schedule_due() {
        let p = SnapshotPolicy {
            every_secs: 60,
            keep: 3,
        };
        assert!(snapshot_due(None, &p, 0));
        assert!(!snapshot_due(Some(1_000), &p, 60_999));
        assert!(snapshot_due(Some(1_000), &p, 61_000));
    }

    #[test]
    fn labels() {
        assert!(check_label("before-upgrade.1_x").is_ok());
        for bad in [
            "",
            ".hidden",
            "..",
            "-x",
            "x.json",
            "a/b",
            "sp ace",
            &"x".repeat(65),
        ] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }
}
