//! [`ZfsStorage`]: the [`Storage`] driver itself, composing the command builders and parsers
//! with undo on failure.

use super::*;

/// ZFS-backed datasets under `<pool>/warren`, mounted under `mountpoint_root`.
pub struct ZfsStorage {
    /// e.g. `tank/warren`.
    pub(super) pool_dataset: String,
    pub(super) mountpoint_root: PathBuf,
    pub(super) exec: Arc<dyn Executor>,
}

impl ZfsStorage {
    /// Attaches to `<pool>/warren`, creating it and its `worlds`, `workloads` and `volumes`
    /// children (mounted under `root`) when missing. Fails clearly when `pool` does not exist
    /// or when an existing dataset is mounted elsewhere; whatever this call created is
    /// destroyed again on failure.
    pub fn open(pool: &str, root: PathBuf, exec: Arc<dyn Executor>) -> Result<Self> {
        check_pool(pool)?;
        let s = ZfsStorage {
            pool_dataset: format!("{pool}/warren"),
            mountpoint_root: root,
            exec,
        };
        s.prepare(pool)?;
        Ok(s)
    }

    /// The parent dataset, e.g. `tank/warren`.
    pub fn pool_dataset(&self) -> &str {
        &self.pool_dataset
    }

    /// The ZFS name of a dataset (`tank/warren/workloads/web/data`), checking its name.
    pub fn dataset_name(&self, id: &DatasetId) -> Result<String, ZfsError> {
        let (kind, name) = match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => ("workload", w),
            DatasetId::Volume(v) => ("volume", v),
        };
        check_component(kind, name)?;
        Ok(self.ds(&id.key()))
    }

    fn ds(&self, rel: &str) -> String {
        format!("{}/{rel}", self.pool_dataset)
    }

    fn mnt(&self, rel: &str) -> PathBuf {
        self.mountpoint_root.join(rel)
    }

    fn rel<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.pool_dataset.as_str())?
            .strip_prefix('/')
    }

    fn run(&self, cmd: &Cmd) -> Result<String, ZfsError> {
        self.exec
            .run(cmd)
            .map(|o| o.stdout_str())
            .map_err(command_error)
    }

    /// Runs `cmd`; a failure of kind `ok_kinds` counts as done. Returns whether it succeeded.
    fn run_unless(&self, cmd: &Cmd, ok_kinds: &[ZfsErrorKind]) -> Result<bool, ZfsError> {
        match self.run(cmd) {
            Ok(_) => Ok(true),
            Err(e) if e.kind().is_some_and(|k| ok_kinds.contains(&k)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn parsed<T>(cmd: &Cmd, r: Result<T, ParseError>) -> Result<T, ZfsError> {
        r.map_err(|error| ZfsError::Parse {
            argv: cmd.argv_string(),
            error,
        })
    }

    /// Runs the compensating commands (latest first) for `error`; an absent target is fine.
    fn undo(&self, error: ZfsError, mut undo: Vec<Cmd>) -> ZfsError {
        while let Some(cmd) = undo.pop() {
            if let Err(e) = self.run_unless(&cmd, &[ZfsErrorKind::NotFound]) {
                return ZfsError::Cleanup {
                    error: Box::new(error),
                    cleanup: Box::new(e),
                };
            }
        }
        error
    }

    fn prepare(&self, pool: &str) -> Result<(), ZfsError> {
        if let Err(e) = self.run(&exists_cmd(pool)) {
            return Err(if e.is(ZfsErrorKind::NotFound) {
                ZfsError::NoPool(pool.to_string())
            } else {
                e
            });
        }
        let get = get_cmd(&self.pool_dataset, &["mountpoint"], 1);
        let rows = match self.run(&get) {
            Ok(out) => Self::parsed(&get, parse_get(&out))?,
            Err(e) if e.is(ZfsErrorKind::NotFound) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut created = Vec::new();
        for rel in ["", "worlds", "workloads", "volumes"] {
            let (name, want) = if rel.is_empty() {
                (self.pool_dataset.clone(), self.mountpoint_root.clone())
            } else {
                (self.ds(rel), self.mnt(rel))
            };
            let step = match rows.iter().find(|r| r.name == name) {
                Some(r) if Path::new(&r.value) != want => Err(ZfsError::Mountpoint {
                    dataset: name.clone(),
                    actual: r.value.clone(),
                    expected: want,
                }),
                Some(_) => Ok(()),
                None => self.run(&create_cmd(&name, &want, true)).map(|_| {
                    created.push(destroy_cmd(&name, false));
                }),
            };
            if let Err(e) = step {
                return Err(self.undo(e, created));
            }
        }
        Ok(())
    }

    fn workload_ds(&self, workload: &str) -> String {
        self.ds(&format!("workloads/{workload}"))
    }

    /// The children (`rootfs`, `data`) of the workload's dataset, or None if it is absent.
    fn workload_children(&self, workload: &str) -> Result<Option<BTreeSet<String>>, ZfsError> {
        let parent = self.workload_ds(workload);
        let cmd = children_cmd(&parent);
        let out = match self.run(&cmd) {
            Ok(out) => out,
            Err(e) if e.is(ZfsErrorKind::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        Ok(Some(
            rows.iter()
                .filter_map(|r| r[0].strip_prefix(parent.as_str())?.strip_prefix('/'))
                .map(str::to_string)
                .collect(),
        ))
    }

    /// Makes sure `id`'s parent exists (creating the workload dataset if needed) and tells
    /// whether `id` itself exists; returns the commands that undo what was created.
    fn prepare_parent(&self, id: &DatasetId) -> Result<(bool, Vec<Cmd>), ZfsError> {
        let ds = self.dataset_name(id)?;
        match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => {
                let child = if matches!(id, DatasetId::Rootfs(_)) {
                    "rootfs"
                } else {
                    "data"
                };
                match self.workload_children(w)? {
                    Some(children) => Ok((children.contains(child), Vec::new())),
                    None => {
                        let parent = self.workload_ds(w);
                        let m = self.mnt(&format!("workloads/{w}"));
                        self.run(&create_cmd(&parent, &m, false))?;
                        Ok((false, vec![destroy_cmd(&parent, false)]))
                    }
                }
            }
            DatasetId::Volume(_) => {
                let exists = self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound])?;
                Ok((exists, Vec::new()))
            }
        }
    }

    fn list_snapshots(&self, ds: &str) -> Result<Vec<ZfsSnapshot>, ZfsError> {
        let cmd = snapshot_list_cmd(ds);
        let out = self.run(&cmd)?;
        let snaps = Self::parsed(&cmd, parse_snapshot_list(&out))?;
        Ok(snaps.into_iter().filter(|s| s.dataset == ds).collect())
    }

    fn usage_of(&self, ds: &str) -> Result<(u64, Option<u64>), ZfsError> {
        let cmd = usage_cmd(ds);
        let out = self.run(&cmd)?;
        let props = Self::parsed(&cmd, parse_properties(&out))?;
        let prop = |p: &str| {
            props
                .get(p)
                .ok_or_else(|| ParseError::MissingProperty(p.to_string()))
        };
        let used =
            Self::parsed(&cmd, prop("used").and_then(|v| parse_size("used", v)))?.unwrap_or(0);
        let quota = Self::parsed(&cmd, prop("quota").and_then(|v| parse_quota(v)))?;
        Ok((used, quota))
    }

    fn take_snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        self.run(&snapshot_cmd(&ds, label))?;
        let name = format!("{ds}@{label}");
        let cmd = snapshot_info_cmd(&name);
        let info = self.run(&cmd).and_then(|out| {
            Self::parsed(
                &cmd,
                parse_snapshot_list(&out)
                    .and_then(|v| v.into_iter().next().ok_or(ParseError::Empty)),
            )
        });
        match info {
            Ok(s) => Ok(SnapshotInfo {
                dataset: id.key(),
                label: s.label,
                created_at: s.creation,
                bytes: Some(s.used),
            }),
            Err(e) => Err(self.undo(e, vec![destroy_cmd(&name, false)])),
        }
    }

    fn do_rollback(
        &self,
        id: &DatasetId,
        label: &str,
        destroy_newer: bool,
    ) -> Result<Vec<String>, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let snaps = self.list_snapshots(&ds)?;
        let pos =
            snaps
                .iter()
                .position(|s| s.label == label)
                .ok_or_else(|| ZfsError::NoSnapshot {
                    dataset: id.key(),
                    label: label.to_string(),
                })?;
        let newer: Vec<String> = snaps[pos + 1..].iter().map(|s| s.label.clone()).collect();
        if !newer.is_empty() && !destroy_newer {
            return Err(ZfsError::NewerSnapshots {
                dataset: id.key(),
                label: label.to_string(),
                newer,
            });
        }
        self.run(&rollback_cmd(&ds, label, !newer.is_empty()))?;
        Ok(newer)
    }

    fn do_clone(
        &self,
        src: &DatasetId,
        label: Option<&str>,
        dst: &DatasetId,
    ) -> Result<(), ZfsError> {
        let src_ds = self.dataset_name(src)?;
        let dst_ds = self.dataset_name(dst)?;
        if let Some(l) = label {
            check_label(l)?;
        }
        let (exists, mut undo) = self.prepare_parent(dst)?;
        if exists {
            return Err(ZfsError::Exists(self.dataset_path(dst)));
        }
        let snap_label = match label {
            Some(l) => l.to_string(),
            None => {
                let temp = clone_snapshot_label(dst);
                let take = match self.run(&snapshot_cmd(&src_ds, &temp)) {
                    // Left by an earlier clone to `dst` that has since been deleted: replace
                    // it (zfs refuses if anything still depends on it).
                    Err(e) if e.is(ZfsErrorKind::Exists) => self
                        .run(&destroy_cmd(&format!("{src_ds}@{temp}"), false))
                        .and_then(|_| self.run(&snapshot_cmd(&src_ds, &temp))),
                    other => other,
                };
                if let Err(e) = take {
                    return Err(self.undo(e, undo));
                }
                undo.push(destroy_cmd(&format!("{src_ds}@{temp}"), false));
                temp
            }
        };
        let snapshot = format!("{src_ds}@{snap_label}");
        match self.run(&clone_cmd(&snapshot, &dst_ds, &self.dataset_path(dst))) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.undo(e, undo)),
        }
    }

    /// [`Storage::send`] with the streaming step supplied by the caller: `stream` gets the
    /// `zfs send` command to run (the trait method pipes it with [`pipe_out`]).
    pub fn send_via(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<(), ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        if let Some(s) = since {
            check_label(s)?;
        }
        stream(&send_cmd(&ds, label, since))
    }

    /// [`Storage::receive`] with the streaming step supplied by the caller: `stream` gets the
    /// `zfs receive` command to feed (the trait method pipes it with [`pipe_in`]).
    ///
    /// A full stream (into an absent dataset) is received unmounted with its mountpoint, then
    /// mounted; if anything fails its partial state is aborted (`zfs receive -A`) and whatever
    /// is left is destroyed, along with a workload dataset created for it. An incremental
    /// stream that fails leaves the dataset as it was, with the resumable partial state kept
    /// aside by ZFS: the error carries its `receive_resume_token` (see [`resume_send_cmd`] and
    /// [`ZfsStorage::abort_receive`]).
    pub fn receive_via(
        &self,
        id: &DatasetId,
        label: &str,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<(), ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let (exists, mut undo) = self.prepare_parent(id)?;
        let mountpoint = self.dataset_path(id);
        let cmd = receive_cmd(&ds, label, (!exists).then_some(mountpoint.as_path()));
        let received = stream(&cmd);
        if exists {
            return received.map_err(|error| {
                let token = self
                    .run(&get_value_cmd(&ds, "receive_resume_token"))
                    .ok()
                    .and_then(|out| parse_value(&out));
                ZfsError::Receive {
                    dataset: ds.clone(),
                    token,
                    error: Box::new(error),
                }
            });
        }
        let result = received.and_then(|_| self.run(&mount_cmd(&ds)).map(drop));
        let Err(error) = result else {
            return Ok(());
        };
        let error = ZfsError::Receive {
            dataset: ds.clone(),
            token: None,
            error: Box::new(error),
        };
        // Discard the partial state, then make sure no dataset is left behind.
        let cleanup = self
            .run_unless(&receive_abort_cmd(&ds), &[ZfsErrorKind::NotFound])
            .and_then(|_| self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound]));
        match cleanup {
            Ok(true) => undo.push(destroy_cmd(&ds, true)),
            Ok(false) => {}
            Err(e) => {
                return Err(ZfsError::Cleanup {
                    error: Box::new(error),
                    cleanup: Box::new(e),
                })
            }
        }
        Err(self.undo(error, undo))
    }

    /// Discards the partial state an interrupted incremental receive into `id` left aside.
    pub fn abort_receive(&self, id: &DatasetId) -> Result<()> {
        let ds = self.dataset_name(id)?;
        self.run_unless(&receive_abort_cmd(&ds), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    /// [`Storage::receive_staged`] with the streaming step supplied by the caller (the trait
    /// method pipes it with [`pipe_in`]).
    ///
    /// A full stream (into an absent dataset) goes into a new hidden dataset
    /// `<pool>/warren/incoming-<unique>` ([`receive_staged_cmd`]: unmounted, `canmount=noauto`,
    /// its final mountpoint set); no listing shows it and the dataset does not exist. A failed
    /// receive destroys whatever it left.
    ///
    /// ZFS applies an incremental stream to the dataset holding its base; it cannot be
    /// received beside it. So an incremental stream is received in place, and staging it
    /// means remembering the dataset's newest snapshot: `zfs receive` refuses a dataset
    /// modified since that snapshot, so rolling back to it (`zfs rollback -r`, which also
    /// destroys the received snapshot) restores exactly the state before. A failed receive
    /// changes nothing (ZFS discards a non-resumable partial receive).
    pub fn receive_staged_via(
        &self,
        id: &DatasetId,
        label: &str,
        stream: impl FnOnce(&Cmd) -> Result<(), ZfsError>,
    ) -> Result<Staged, ZfsError> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        let exists = self.run_unless(&exists_cmd(&ds), &[ZfsErrorKind::NotFound])?;
        if !exists {
            let place = self.ds(&format!(
                "{STAGED_PREFIX}{}",
                crate::fsutil::unique_suffix()
            ));
            let staged = Staged::new(id, label, place.clone());
            let mountpoint = self.dataset_path(id);
            let cmd = receive_staged_cmd(&place, label, Some(&mountpoint));
            return match stream(&cmd) {
                Ok(()) => Ok(staged),
                Err(error) => {
                    let error = ZfsError::Receive {
                        dataset: place.clone(),
                        token: None,
                        error: Box::new(error),
                    };
                    Err(self.undo(error, vec![destroy_cmd(&place, true)]))
                }
            };
        }
        let Some(base) = self.list_snapshots(&ds)?.pop() else {
            return Err(ZfsError::NoSnapshot {
                dataset: id.key(),
                label: "(the base of the incremental stream)".into(),
            });
        };
        let mut staged = Staged::new(id, label, ds.clone());
        staged.set_incremental(true);
        staged.set_base(Some(base.label));
        match stream(&receive_staged_cmd(&ds, label, None)) {
            Ok(()) => Ok(staged),
            Err(error) => {
                let error = ZfsError::Receive {
                    dataset: ds.clone(),
                    token: None,
                    error: Box::new(error),
                };
                Err(match self.ensure_mounted(&ds) {
                    Ok(()) => error,
                    Err(e) => ZfsError::Cleanup {
                        error: Box::new(error),
                        cleanup: Box::new(e),
                    },
                })
            }
        }
    }

    /// Mounts `ds` unless its `mounted` property says it is (an incremental receive with `-u`
    /// leaves the dataset unmounted).
    fn ensure_mounted(&self, ds: &str) -> Result<(), ZfsError> {
        let cmd = get_value_cmd(ds, "mounted");
        let out = self.run(&cmd)?;
        if parse_value(&out).as_deref() == Some("yes") {
            return Ok(());
        }
        self.run(&mount_cmd(ds)).map(drop)
    }

    /// [`Storage::commit_staged`]: a full stream's hidden dataset is renamed into place
    /// (creating the workload dataset if needed), gets `canmount=on` (not inheritable) and is
    /// mounted; if any
    /// of that fails, it and whatever was created for it are destroyed. An incremental stream
    /// is already in place: its dataset is mounted.
    pub fn commit_staged_zfs(&self, staged: Staged) -> Result<(), ZfsError> {
        let id = staged.id().clone();
        let ds = self.dataset_name(&id)?;
        if staged.incremental() {
            return self
                .ensure_mounted(&ds)
                .map_err(|e| self.discard(staged, e));
        }
        let (exists, mut undo) = match self.prepare_parent(&id) {
            Ok(v) => v,
            Err(e) => return Err(self.discard(staged, e)),
        };
        if exists {
            let e = self.undo(ZfsError::Exists(self.dataset_path(&id)), undo);
            return Err(self.discard(staged, e));
        }
        if let Err(e) = self.run(&rename_cmd(staged.place(), &ds)) {
            let e = self.undo(e, undo);
            return Err(self.discard(staged, e));
        }
        undo.push(destroy_cmd(&ds, true));
        let mounted = self
            .run(&set_cmd(&ds, "canmount", "on"))
            .and_then(|_| self.run(&mount_cmd(&ds)));
        match mounted {
            Ok(_) => Ok(()),
            Err(e) => Err(self.undo(e, undo)),
        }
    }

    /// [`Storage::abort_staged`]: a full stream's hidden dataset is destroyed; an incremental
    /// one's dataset is rolled back to the snapshot it had before (destroying the received one)
    /// and mounted.
    pub fn abort_staged_zfs(&self, staged: Staged) -> Result<(), ZfsError> {
        if !staged.incremental() {
            self.run_unless(
                &destroy_cmd(staged.place(), true),
                &[ZfsErrorKind::NotFound],
            )?;
            return Ok(());
        }
        let ds = staged.place();
        let base = staged
            .base()
            .expect("an incremental staged receive has a base");
        self.run(&rollback_cmd(ds, base, true))?;
        self.ensure_mounted(ds)
    }

    /// Aborts `staged` after `error`, reporting a failed cleanup alongside.
    fn discard(&self, staged: Staged, error: ZfsError) -> ZfsError {
        match self.abort_staged_zfs(staged) {
            Ok(()) => error,
            Err(e) => ZfsError::Cleanup {
                error: Box::new(error),
                cleanup: Box::new(e),
            },
        }
    }

    /// [`Storage::sweep_staged`]: destroys the `<pool>/warren/incoming-*` datasets no staged
    /// receive of this process holds.
    pub fn sweep_staged_zfs(&self) -> Result<Vec<String>, ZfsError> {
        let cmd = children_cmd(&self.pool_dataset);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut swept = Vec::new();
        for row in rows {
            let name = &row[0];
            let staged = self
                .rel(name)
                .is_some_and(|rel| rel.starts_with(STAGED_PREFIX) && !rel.contains('/'));
            if !staged || crate::staged_is_live(name) {
                continue;
            }
            self.run_unless(&destroy_cmd(name, true), &[ZfsErrorKind::NotFound])?;
            swept.push(name.clone());
        }
        Ok(swept)
    }
}

impl Storage for ZfsStorage {
    fn driver(&self) -> &'static str {
        "zfs"
    }

    fn zfs_dataset(&self, id: &DatasetId) -> Option<String> {
        self.dataset_name(id).ok()
    }

    fn root(&self) -> &Path {
        &self.mountpoint_root
    }

    fn create_world_dataset(&self, world: &str) -> Result<PathBuf> {
        check_component("world", world)?;
        let rel = format!("worlds/{world}");
        let path = self.mnt(&rel);
        match self.run(&create_cmd(&self.ds(&rel), &path, false)) {
            Err(e) if e.is(ZfsErrorKind::Exists) => Err(StorageError::Exists(path)),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(path),
        }
    }

    /// A clone of `worlds/<parent>@base`. Clones take their properties from their place in
    /// the hierarchy, not from the origin, so the new world is writable until sealed; the
    /// parent cannot be destroyed while it has this clone.
    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf> {
        check_component("world", world)?;
        check_component("world", parent)?;
        let base = format!("{}@{BASE_SNAPSHOT}", self.ds(&format!("worlds/{parent}")));
        if !self.run_unless(&exists_cmd(&base), &[ZfsErrorKind::NotFound])? {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        let rel = format!("worlds/{world}");
        let path = self.mnt(&rel);
        match self.run(&clone_cmd(&base, &self.ds(&rel), &path)) {
            Err(e) if e.is(ZfsErrorKind::Exists) => Err(StorageError::Exists(path)),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(path),
        }
    }

    /// `readonly=on`, then `@base`. A world that cannot be sealed is destroyed, so a retry
    /// starts clean; sealing a sealed world is a no-op.
    fn seal_world(&self, world: &str) -> Result<()> {
        check_component("world", world)?;
        let ds = self.ds(&format!("worlds/{world}"));
        let sealed = self.run(&set_cmd(&ds, "readonly", "on")).and_then(|_| {
            self.run_unless(&snapshot_cmd(&ds, BASE_SNAPSHOT), &[ZfsErrorKind::Exists])
        });
        match sealed {
            Ok(_) => Ok(()),
            Err(e) if e.is(ZfsErrorKind::NotFound) => {
                Err(StorageError::NoSuchWorld(world.to_string()))
            }
            Err(e) => Err(self.undo(e, vec![destroy_cmd(&ds, true)]).into()),
        }
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_component("world", world)?;
        let ds = self.ds(&format!("worlds/{world}"));
        let base = format!("{ds}@{BASE_SNAPSHOT}");
        match self.run(&get_value_cmd(&base, "clones")) {
            Ok(out) => {
                let clones = parse_clones(&out);
                if !clones.is_empty() {
                    return Err(ZfsError::WorldInUse {
                        world: world.to_string(),
                        clones: clones
                            .iter()
                            .map(|c| self.rel(c).unwrap_or(c).to_string())
                            .collect(),
                    }
                    .into());
                }
            }
            Err(e) if e.is(ZfsErrorKind::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        remove_file_if_exists(&self.world_meta_path(world))
    }

    /// Worlds with a `@base` snapshot, sorted.
    fn list_worlds(&self) -> Result<Vec<String>> {
        let parent = self.ds("worlds");
        let cmd = child_snapshots_cmd(&parent);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut worlds: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                let (ds, label) = r[0].split_once('@')?;
                let world = ds.strip_prefix(parent.as_str())?.strip_prefix('/')?;
                (label == BASE_SNAPSHOT && !world.contains('/')).then(|| world.to_string())
            })
            .collect();
        worlds.sort();
        worlds.dedup();
        Ok(worlds)
    }

    /// Checks `<world>@base`, creates the workload dataset if needed, destroys an existing
    /// rootfs and clones the world; a failed clone destroys the workload dataset it created.
    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf> {
        check_component("workload", workload)?;
        check_component("world", world)?;
        let base = format!("{}@{BASE_SNAPSHOT}", self.ds(&format!("worlds/{world}")));
        if !self.run_unless(&exists_cmd(&base), &[ZfsErrorKind::NotFound])? {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        let id = DatasetId::Rootfs(workload.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        let (exists, undo) = self.prepare_parent(&id)?;
        let result = if exists {
            self.run(&destroy_cmd(&ds, true))
        } else {
            Ok(String::new())
        }
        .and_then(|_| self.run(&clone_cmd(&base, &ds, &path)));
        match result {
            Ok(_) => Ok(path),
            Err(e) => Err(self.undo(e, undo).into()),
        }
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Rootfs(workload.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        let id = DatasetId::Data(workload.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        let (exists, undo) = self.prepare_parent(&id)?;
        if !exists {
            if let Err(e) = self.run(&create_cmd(&ds, &path, false)) {
                return Err(self.undo(e, undo).into());
            }
        }
        Ok(path)
    }

    /// Destroys the data dataset, then the workload dataset if nothing else is in it.
    fn delete_data(&self, workload: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Data(workload.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        self.run_unless(
            &destroy_cmd(&self.workload_ds(workload), false),
            &[ZfsErrorKind::NotFound, ZfsErrorKind::HasChildren],
        )?;
        Ok(())
    }

    /// Worlds, then workloads (rootfs before data), then volumes.
    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let cmd = list_filesystems_cmd(&self.pool_dataset);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 2))?;
        let mut found: Vec<((u8, String, u8), DatasetInfo)> = Vec::new();
        for row in &rows {
            let Some(rel) = self.rel(&row[0]) else {
                continue;
            };
            let parts: Vec<&str> = rel.split('/').collect();
            let key = match parts.as_slice() {
                ["worlds", w] => (0, w.to_string(), 0),
                ["workloads", w, "rootfs"] => (1, w.to_string(), 0),
                ["workloads", w, "data"] => (1, w.to_string(), 1),
                ["volumes", v] => (2, v.to_string(), 0),
                _ => continue,
            };
            found.push((
                key,
                DatasetInfo {
                    name: rel.to_string(),
                    path: self.mnt(rel),
                    readonly: parse_on_off(&row[1]),
                },
            ));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().map(|(_, info)| info).collect())
    }

    fn ensure_volume(&self, name: &str) -> Result<PathBuf> {
        let id = DatasetId::Volume(name.to_string());
        let ds = self.dataset_name(&id)?;
        let path = self.dataset_path(&id);
        self.run_unless(&create_cmd(&ds, &path, false), &[ZfsErrorKind::Exists])?;
        Ok(path)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        let ds = self.dataset_name(&DatasetId::Volume(name.to_string()))?;
        self.run_unless(&destroy_cmd(&ds, true), &[ZfsErrorKind::NotFound])?;
        Ok(())
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        let parent = self.ds("volumes");
        let cmd = children_cmd(&parent);
        let out = self.run(&cmd)?;
        let rows = Self::parsed(&cmd, parse_list(&out, 1))?;
        let mut volumes: Vec<String> = rows
            .iter()
            .filter_map(|r| r[0].strip_prefix(parent.as_str())?.strip_prefix('/'))
            .map(str::to_string)
            .collect();
        volumes.sort();
        Ok(volumes)
    }

    /// `zfs snapshot`, then reads back its size and creation time (destroying the snapshot
    /// again if that fails).
    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo> {
        Ok(self.take_snapshot(id, label)?)
    }

    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>> {
        let ds = self.dataset_name(id)?;
        Ok(self
            .list_snapshots(&ds)?
            .into_iter()
            .map(|s| SnapshotInfo {
                dataset: id.key(),
                label: s.label,
                created_at: s.creation,
                bytes: Some(s.used),
            })
            .collect())
    }

    /// Lists the snapshots first: newer ones are refused by name unless `destroy_newer`, in
    /// which case `zfs rollback -r` destroys them.
    fn rollback(&self, id: &DatasetId, label: &str, destroy_newer: bool) -> Result<Vec<String>> {
        Ok(self.do_rollback(id, label, destroy_newer)?)
    }

    fn delete_snapshot(&self, id: &DatasetId, label: &str) -> Result<()> {
        let ds = self.dataset_name(id)?;
        check_label(label)?;
        match self.run(&destroy_cmd(&format!("{ds}@{label}"), false)) {
            Ok(_) => Ok(()),
            Err(e) if e.is(ZfsErrorKind::NotFound) => Err(ZfsError::NoSnapshot {
                dataset: id.key(),
                label: label.to_string(),
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// `zfs clone` of `src@label`, or of a new `src@warren-clone-<dst>` when `label` is None
    /// (it stays as the clone's origin). Fails with [`StorageError::Exists`] if `dst` exists.
    fn clone_dataset(&self, src: &DatasetId, label: Option<&str>, dst: &DatasetId) -> Result<()> {
        Ok(self.do_clone(src, label, dst)?)
    }

    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> Result<()> {
        let ds = self.dataset_name(id)?;
        self.run(&set_cmd(&ds, "quota", &quota_value(&ds, bytes)?))?;
        Ok(())
    }

    /// The quota sits on `workloads/<name>`, so it covers rootfs, data and their snapshots,
    /// and survives a recreated rootfs.
    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()> {
        check_component("workload", workload)?;
        let ds = self.workload_ds(workload);
        self.run(&set_cmd(&ds, "quota", &quota_value(&ds, bytes)?))?;
        Ok(())
    }

    fn workload_usage(&self, workload: &str) -> Result<(u64, Option<u64>)> {
        check_component("workload", workload)?;
        Ok(self.usage_of(&self.workload_ds(workload))?)
    }

    /// `used` (including snapshots), which is what `quota` limits.
    fn pool_usage(&self) -> Result<crate::PoolUsage> {
        let cmd = pool_usage_cmd(&self.pool_dataset);
        let out = self.run(&cmd)?;
        let props = Self::parsed(&cmd, parse_properties(&out))?;
        let bytes = |p: &str| {
            Self::parsed(
                &cmd,
                props
                    .get(p)
                    .ok_or_else(|| ParseError::MissingProperty(p.to_string()))
                    .and_then(|v| parse_size(p, v)),
            )
            .map(|v| v.unwrap_or(0))
        };
        let used = bytes("used")?;
        let available = bytes("available")?;
        Ok(crate::PoolUsage {
            size: used + available,
            used,
        })
    }

    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)> {
        let ds = self.dataset_name(id)?;
        Ok(self.usage_of(&ds)?)
    }

    fn send(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        Ok(self.send_via(id, label, since, |cmd| pipe_out(&*self.exec, cmd, out))?)
    }

    /// See [`ZfsStorage::receive_via`].
    fn receive(&self, id: &DatasetId, label: &str, input: &mut dyn std::io::Read) -> Result<()> {
        Ok(self.receive_via(id, label, |cmd| pipe_in(&*self.exec, cmd, input))?)
    }

    /// See [`ZfsStorage::receive_staged_via`].
    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged> {
        Ok(self.receive_staged_via(id, label, |cmd| pipe_in(&*self.exec, cmd, input))?)
    }

    /// See [`ZfsStorage::commit_staged_zfs`].
    fn commit_staged(&self, staged: Staged) -> Result<()> {
        Ok(self.commit_staged_zfs(staged)?)
    }

    /// See [`ZfsStorage::abort_staged_zfs`].
    fn abort_staged(&self, staged: Staged) -> Result<()> {
        Ok(self.abort_staged_zfs(staged)?)
    }

    /// See [`ZfsStorage::sweep_staged_zfs`].
    fn sweep_staged(&self) -> Result<Vec<String>> {
        Ok(self.sweep_staged_zfs()?)
    }
}
