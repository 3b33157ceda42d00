//! What a workload runs as: the runtime's [`WorkloadRun`] from a desired workload (world
//! binds, mounts, user namespace, network namespace, jail parameters) and the directory
//! traversal a user-namespaced workload needs.

use super::Engine;
use anyhow::{anyhow, Context, Result};
use warren_model::plan::Desired;
use warren_model::Source;
use warren_runtime::{Bind, WorkloadRun};
use warren_storage::Storage;

impl Engine {
    /// Lets a user-namespaced container's root (an unprivileged host id) reach its root
    /// filesystem and bind sources: every directory on the way from the state dir gets the
    /// search bit for others (never read), and a directory above the state dir that lacks it
    /// is an error naming it.
    pub(in crate::daemon) fn allow_traversal(&self, spec: &WorkloadRun) -> Result<()> {
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

    /// Builds the runtime's description of a workload's run.
    pub fn container_spec(&self, d: &Desired) -> Result<WorkloadRun> {
        let spec = &d.spec;
        if spec.rootfs_source().is_none() {
            // A full VM boots its own disk: only its identity, resources and data matter.
            let mut run = WorkloadRun::one_off(
                self.container_id(&spec.name),
                format!("/warren-{}/{}", self.cfg.instance, spec.name),
                spec.effective_hostname(),
                self.storage.rootfs_path(&spec.name),
                Vec::new(),
            );
            run.resources = spec.resources.clone();
            return self.vm_run(spec, run);
        }
        let (meta, image) = match &spec.source {
            Source::World(world) => (
                warren_storage::worlds::world_meta(&*self.storage, world)?,
                None,
            ),
            Source::Recipe(r) => {
                let build = crate::daemon::sources::resolve_ref(&self.store, r)?;
                (
                    warren_storage::worlds::world_meta(&*self.storage, &build.world)?,
                    None,
                )
            }
            Source::Image(r) => {
                let record = self.image_record(r)?;
                let top = record.top().unwrap_or_default().to_string();
                let config = crate::daemon::sources::record_config(&record)?;
                let defaults =
                    crate::daemon::sources::run_defaults(spec, &config).map_err(|e| anyhow!(e))?;
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
        if spec.name == crate::daemon::ingress::ROUTER {
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
            warren_model::NetworkMode::Bridge => {
                let join = self.net.join(&spec.name, None);
                binds.extend(join.binds.into_iter().map(|(source, dest)| Bind {
                    source,
                    dest,
                    readonly: true,
                }));
                join.namespace
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
                warren_model::NetworkMode::Bridge => {
                    self.net.join(&spec.name, Some(base)).userns_path
                }
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
        let backend = {
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
            warren_runtime::Backend::Jail(jail_params(spec, address, &*self.storage)?)
        };
        #[cfg(not(target_os = "freebsd"))]
        let backend = warren_runtime::Backend::Oci;
        let run = WorkloadRun {
            network,
            userns,
            backend,
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
        };
        match spec.kind {
            warren_model::Kind::Vm => self.vm_run(spec, run),
            _ => Ok(run),
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
