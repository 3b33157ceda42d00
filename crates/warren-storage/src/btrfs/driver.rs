//! The [`Storage`] implementation of [`BtrfsStorage`].

use super::*;

impl Storage for BtrfsStorage {
    fn driver(&self) -> &'static str {
        "btrfs"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create_world_dataset(&self, world: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        create_dir_all(&self.root.join("worlds"))?;
        self.create_subvolume(&path)?;
        Ok(path)
    }

    fn create_world_from(&self, world: &str, parent: &str) -> Result<PathBuf> {
        check_name("world", world)?;
        check_name("world", parent)?;
        let from = self.world_path(parent);
        if !exists(&from) || !self.is_readonly(&from)? {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        let path = self.world_path(world);
        if exists(&path) {
            return Err(StorageError::Exists(path));
        }
        // A snapshot without -r is writable even though its source is read-only.
        self.btrfs2(&["subvolume", "snapshot"], &from, &path)?;
        Ok(path)
    }

    fn seal_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if !exists(&path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.set_readonly(&path, true)
    }

    fn delete_world(&self, world: &str) -> Result<()> {
        check_name("world", world)?;
        let path = self.world_path(world);
        if exists(&path) {
            self.set_readonly(&path, false)?;
            self.delete_subvolume(&path)?;
        }
        remove_file_if_exists(&self.world_meta_path(world))
    }

    fn list_worlds(&self) -> Result<Vec<String>> {
        let mut sealed = Vec::new();
        for name in subdirs(&self.root.join("worlds"))? {
            if self.is_readonly(&self.world_path(&name))? {
                sealed.push(name);
            }
        }
        Ok(sealed)
    }

    fn create_rootfs(&self, workload: &str, world: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        check_name("world", world)?;
        let world_path = self.world_path(world);
        if !exists(&world_path) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        self.delete_rootfs(workload)?;
        let rootfs = self.rootfs_path(workload);
        create_dir_all(rootfs.parent().expect("rootfs has a parent"))?;
        self.btrfs2(&["subvolume", "snapshot"], &world_path, &rootfs)?;
        Ok(rootfs)
    }

    fn delete_rootfs(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Rootfs(workload.to_string()))?;
        let rootfs = self.rootfs_path(workload);
        if exists(&rootfs) {
            self.delete_subvolume(&rootfs)?;
        }
        self.drop_workload_group_if_unused(workload)
    }

    fn ensure_data(&self, workload: &str) -> Result<PathBuf> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if !exists(&data) {
            create_dir_all(data.parent().expect("data has a parent"))?;
            self.create_subvolume(&data)?;
        }
        Ok(data)
    }

    fn delete_data(&self, workload: &str) -> Result<()> {
        check_name("workload", workload)?;
        self.delete_snapshots_of(&DatasetId::Data(workload.to_string()))?;
        let data = self.data_path(workload);
        if exists(&data) {
            self.delete_subvolume(&data)?;
        }
        self.drop_workload_group_if_unused(workload)?;
        remove_dir_if_empty(&self.root.join("workloads").join(workload))
    }

    fn list_datasets(&self) -> Result<Vec<DatasetInfo>> {
        let mut out = Vec::new();
        for world in subdirs(&self.root.join("worlds"))? {
            out.push(self.info(format!("worlds/{world}"), self.world_path(&world))?);
        }
        for workload in subdirs(&self.root.join("workloads"))? {
            for (kind, path) in [
                ("rootfs", self.rootfs_path(&workload)),
                ("data", self.data_path(&workload)),
            ] {
                if exists(&path) {
                    out.push(self.info(format!("workloads/{workload}/{kind}"), path)?);
                }
            }
        }
        for volume in self.list_volumes()? {
            let id = DatasetId::Volume(volume);
            out.push(self.info(id.key(), self.dataset_path(&id))?);
        }
        Ok(out)
    }

    fn ensure_volume(&self, name: &str) -> Result<PathBuf> {
        check_name("volume", name)?;
        let path = self.dataset_path(&DatasetId::Volume(name.to_string()));
        if !exists(&path) {
            create_dir_all(&self.root.join("volumes"))?;
            self.create_subvolume(&path)?;
        }
        Ok(path)
    }

    fn delete_volume(&self, name: &str) -> Result<()> {
        check_name("volume", name)?;
        let id = DatasetId::Volume(name.to_string());
        self.delete_snapshots_of(&id)?;
        let path = self.dataset_path(&id);
        let (new, old) = swap_names(&path);
        self.recover_swap(&path, &new, &old)?;
        if exists(&path) {
            self.delete_subvolume(&path)?;
        }
        Ok(())
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        let names = subdirs(&self.root.join("volumes"))?;
        Ok(names.into_iter().filter(|n| !n.starts_with('.')).collect())
    }

    fn snapshot(&self, id: &DatasetId, label: &str) -> Result<SnapshotInfo> {
        let src = self.existing_dataset(id)?;
        let (dir, dst) = self.new_snapshot(id, label)?;
        create_dir_all(&dir)?;
        let group = match id {
            DatasetId::Rootfs(w) | DatasetId::Data(w) => self.workload_group(w)?,
            DatasetId::Volume(_) => None,
        };
        let mut cmd = Cmd::new("btrfs").args(["subvolume", "snapshot", "-r"]);
        if let Some(g) = &group {
            // Snapshots of a workload stay charged to it (see the module docs).
            cmd = cmd.args(["-i", g.as_str()]);
        }
        // The metadata (creation time) is written before the snapshot appears, so a listing
        // running concurrently never sees a snapshot without its time.
        let provisional = SnapMeta::now(None);
        write_snap_meta(&dir, label, &provisional)?;
        if let Err(e) = self.run(cmd.arg(&src).arg(&dst)) {
            let _ = remove_file_if_exists(&snapshot_meta_path(&dir, label));
            return Err(e);
        }
        let recorded = self.subvol_id(&dst).and_then(|sid| {
            let meta = SnapMeta {
                subvol_id: Some(sid),
                ..provisional
            };
            write_snap_meta(&dir, label, &meta).map(|()| meta)
        });
        match recorded {
            Ok(meta) => Ok(SnapEntry {
                label: label.to_string(),
                path: dst,
                meta,
            }
            .info(id, None)),
            Err(e) => {
                let _ = self.delete_subvolume(&dst);
                let _ = remove_file_if_exists(&snapshot_meta_path(&dir, label));
                Err(e)
            }
        }
    }

    fn snapshots(&self, id: &DatasetId) -> Result<Vec<SnapshotInfo>> {
        check_dataset_id(id)?;
        let entries = list_snap_entries(&snapshot_dir(&self.root, id))?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let groups = self.qgroups_synced()?;
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let bytes = match &groups {
                None => None,
                Some(groups) => {
                    let sid = match e.meta.subvol_id {
                        Some(sid) => sid,
                        None => self.subvol_id(&e.path)?,
                    };
                    let qid = format!("0/{sid}");
                    groups.iter().find(|q| q.id == qid).map(|q| q.exclusive)
                }
            };
            out.push(e.info(id, bytes));
        }
        Ok(out)
    }

    fn rollback(&self, id: &DatasetId, label: &str, destroy_newer: bool) -> Result<Vec<String>> {
        snapdir::rollback(self, id, label, destroy_newer)
    }

    fn delete_snapshot(&self, id: &DatasetId, label: &str) -> Result<()> {
        snapdir::delete_snapshot(self, id, label)
    }

    fn clone_dataset(&self, src: &DatasetId, label: Option<&str>, dst: &DatasetId) -> Result<()> {
        snapdir::clone_dataset(self, src, label, dst)
    }

    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> Result<()> {
        let path = self.existing_dataset(id)?;
        match bytes {
            Some(bytes) => {
                self.ensure_quotas()?;
                self.btrfs2(&["qgroup", "limit"], Path::new(&bytes.to_string()), &path)
            }
            None if self.qgroups()?.is_some() => {
                self.btrfs2(&["qgroup", "limit"], Path::new("none"), &path)
            }
            None => Ok(()),
        }
    }

    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> Result<()> {
        check_name("workload", workload)?;
        let data = self.data_path(workload);
        if !exists(&data) {
            return Err(StorageError::NoSuchDataset(
                DatasetId::Data(workload.to_string()).key(),
            ));
        }
        let Some(bytes) = bytes else {
            if let Some(group) = self.workload_group(workload)? {
                if self.qgroups()?.is_some() {
                    self.on_root(&["qgroup", "limit", "-e", "none", &group])?;
                }
            }
            return Ok(());
        };
        let groups = self.ensure_quotas()?;
        let data_id = self.subvol_id(&data)?;
        let group = match self.workload_group(workload)? {
            Some(g) => g,
            None => format!("1/{data_id}"),
        };
        let mut want = vec![format!("0/{data_id}")];
        let rootfs = self.rootfs_path(workload);
        if exists(&rootfs) {
            want.push(format!("0/{}", self.subvol_id(&rootfs)?));
        }
        for id in [
            DatasetId::Rootfs(workload.to_string()),
            DatasetId::Data(workload.to_string()),
        ] {
            for e in list_snap_entries(&snapshot_dir(&self.root, &id))? {
                let sid = match e.meta.subvol_id {
                    Some(sid) => sid,
                    None => self.subvol_id(&e.path)?,
                };
                want.push(format!("0/{sid}"));
            }
        }
        let have = match groups.iter().find(|q| q.id == group) {
            Some(g) => g.children.clone(),
            None => {
                self.on_root(&["qgroup", "create", &group])?;
                Vec::new()
            }
        };
        write_group_file(&self.group_file(workload), &group)?;
        let mut changed = false;
        for stale in have.iter().filter(|c| !want.contains(c)) {
            self.on_root(&["qgroup", "remove", "--no-rescan", stale, &group])?;
            changed = true;
        }
        for member in want.iter().filter(|c| !have.contains(c)) {
            self.on_root(&["qgroup", "assign", "--no-rescan", member, &group])?;
            changed = true;
        }
        if changed {
            self.on_root(&["quota", "rescan", "-w"])?;
        }
        self.on_root(&["qgroup", "limit", "-e", &bytes.to_string(), &group])
            .map(drop)
    }

    fn workload_usage(&self, workload: &str) -> Result<(u64, Option<u64>)> {
        check_name("workload", workload)?;
        let paths: Vec<PathBuf> = [self.rootfs_path(workload), self.data_path(workload)]
            .into_iter()
            .filter(|p| exists(p))
            .collect();
        if paths.is_empty() {
            return Err(StorageError::NoSuchDataset(format!("workloads/{workload}")));
        }
        let Some(groups) = self.qgroups_synced()? else {
            let mut sum = 0;
            for p in &paths {
                sum += self.filesystem_du(p)?.1;
            }
            return Ok((sum, None));
        };
        if let Some(group) = self.workload_group(workload)? {
            if let Some(g) = groups.iter().find(|q| q.id == group) {
                return Ok((g.exclusive, g.max_exclusive));
            }
        }
        let mut sum = 0;
        for p in &paths {
            let qid = format!("0/{}", self.subvol_id(p)?);
            sum += groups
                .iter()
                .find(|q| q.id == qid)
                .map_or(0, |q| q.exclusive);
        }
        Ok((sum, None))
    }

    fn pool_usage(&self) -> Result<crate::PoolUsage> {
        let out = self.on_root(&["filesystem", "usage", "-b"])?;
        parse_filesystem_usage(&out.stdout_str()).map_err(StorageError::Other)
    }

    fn usage(&self, id: &DatasetId) -> Result<(u64, Option<u64>)> {
        let path = self.existing_dataset(id)?;
        let Some(groups) = self.qgroups_synced()? else {
            return Ok((self.filesystem_du(&path)?.0, None));
        };
        let qid = format!("0/{}", self.subvol_id(&path)?);
        match groups.iter().find(|q| q.id == qid) {
            Some(q) => Ok((q.referenced, q.max_referenced)),
            None => Err(StorageError::Other(format!(
                "btrfs has no qgroup {qid} for {}",
                path.display()
            ))),
        }
    }

    fn send(
        &self,
        id: &DatasetId,
        label: &str,
        since: Option<&str>,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        check_dataset_id(id)?;
        let snap = self.existing_snapshot(id, label)?;
        let parent = since.map(|s| self.existing_snapshot(id, s)).transpose()?;
        let mut cmd = Cmd::new("btrfs").arg("send");
        if let Some(p) = &parent {
            cmd = cmd.arg("-p").arg(p);
        }
        stream_out(&*self.exec, &cmd.arg(&snap), out)
    }

    fn receive_staged(
        &self,
        id: &DatasetId,
        label: &str,
        input: &mut dyn std::io::Read,
    ) -> Result<Staged> {
        check_dataset_id(id)?;
        let (dir, _) = self.new_snapshot(id, label)?;
        // Read the whole first command: full or incremental decides what must exist, and
        // it names the subvolume btrfs receive will create.
        let mut check = SendStreamCheck::new();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !check.first_command_complete() {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StorageError::Other(format!("reading the stream: {e}"))),
            };
            check
                .feed(&buf[..n])
                .map_err(|e| StorageError::Other(format!("refusing the stream: {e}")))?;
            head.extend_from_slice(&buf[..n]);
        }
        let incremental = match check.first_command() {
            _ if !check.first_command_complete() => {
                return Err(StorageError::Other(
                    "refusing the stream: it ended before its first command (truncated)".into(),
                ))
            }
            Some(SEND_CMD_SUBVOL) => false,
            Some(SEND_CMD_SNAPSHOT) => true,
            other => {
                return Err(StorageError::Other(format!(
                    "refusing the stream: it starts with command {other:?}, not a subvolume"
                )))
            }
        };
        stream_fits(id, incremental, exists(&self.dataset_path(id)))?;
        // btrfs receive names the subvolume after the sender's snapshot, and a read-only
        // subvolume cannot be moved to another directory afterwards. So the stream is received
        // into the snapshot directory itself under a hidden temp name (written into its first
        // command), renamed to the label within that directory on commit.
        let incoming_name = format!("{STAGED_PREFIX}{}", unique_suffix());
        let head = rewrite_first_path(&head, &incoming_name)
            .map_err(|e| StorageError::Other(format!("refusing the stream: {e}")))?;
        let incoming = dir.join(&incoming_name);
        let mut staged = Staged::new(id, label, incoming.to_string_lossy().into_owned());
        staged.set_incremental(incremental);
        let received = create_dir_all(&dir)
            .and_then(|()| self.receive_into(&dir, &head, &mut check, input))
            .and_then(|()| {
                if is_subvolume(&incoming) {
                    Ok(())
                } else {
                    Err(StorageError::Other(format!(
                        "btrfs receive did not create {}",
                        incoming.display()
                    )))
                }
            });
        match received {
            Ok(()) => Ok(staged),
            Err(e) => Err(self.discard_staged(staged, e)),
        }
    }

    fn commit_staged(&self, staged: Staged) -> Result<()> {
        let id = staged.id().clone();
        let label = staged.label().to_string();
        let incoming = PathBuf::from(staged.place());
        let dataset = self.dataset_path(&id);
        let (dir, dst) = match self
            .new_snapshot(&id, &label)
            .and_then(|v| stream_fits(&id, staged.incremental(), exists(&dataset)).map(|()| v))
        {
            Ok(v) => v,
            Err(e) => return Err(self.discard_staged(staged, e)),
        };
        if let Err(e) = rename(&incoming, &dst) {
            return Err(self.discard_staged(staged, e));
        }
        let installed = (|| {
            let meta = SnapMeta::now(Some(self.subvol_id(&dst)?));
            write_snap_meta(&dir, &label, &meta)?;
            if staged.incremental() {
                self.replace_dataset(&id, &dst)
            } else {
                create_dir_all(dataset.parent().expect("dataset has a parent"))?;
                self.btrfs2(&["subvolume", "snapshot"], &dst, &dataset)
            }
        })();
        if let Err(e) = installed {
            let _ = self.delete_subvolume(&dst);
            let _ = remove_file_if_exists(&snapshot_meta_path(&dir, &label));
            let _ = remove_empty_dirs_up_to(&dir, &self.root);
            return Err(e);
        }
        Ok(())
    }

    fn abort_staged(&self, staged: Staged) -> Result<()> {
        self.delete_staged(Path::new(staged.place()))
    }

    fn sweep_staged(&self) -> Result<Vec<String>> {
        crate::fsutil::sweep_staged_under(&self.root, |p| self.delete_staged(p))
    }
}

/// Whether a stream may be received into `id`: a full one needs it absent, an incremental one
/// present (holding the base snapshot, which `btrfs receive` checks).
fn stream_fits(id: &DatasetId, incremental: bool, exists: bool) -> Result<()> {
    if incremental && !exists {
        return Err(StorageError::Other(format!(
            "an incremental stream needs dataset {} holding its base snapshot; it does \
             not exist (receive the full stream first)",
            id.key()
        )));
    }
    if !incremental && exists {
        return Err(StorageError::Other(format!(
            "a full stream needs dataset {} to be absent, and it exists (delete it, or \
             send an incremental stream)",
            id.key()
        )));
    }
    Ok(())
}
