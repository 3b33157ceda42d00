//! A `kind = "vm"` workload's run: the common part a container would get (its rootfs tree,
//! command, environment, user), with only the binds that are datasets kept (the `data`
//! dataset and volumes: they become the VM's persistent disks), plus the VM part: how it
//! boots, its console, its tap on the bridge and the names it starts with.

use super::Engine;
use anyhow::{anyhow, Result};
use warren_model::{NetworkMode, VmFirmware, WorkloadSpec};
use warren_runtime::{Backend, VmBoot, VmNic, VmParams, WorkloadRun};

impl Engine {
    /// Turns the container-shaped `run` of VM workload `spec` into a VM's.
    pub(super) fn vm_run(&self, spec: &WorkloadSpec, mut run: WorkloadRun) -> Result<WorkloadRun> {
        let data = self.storage.data_path(&spec.name);
        let volumes: Vec<std::path::PathBuf> = spec
            .volumes
            .iter()
            .map(|m| {
                self.storage
                    .dataset_path(&warren_storage::DatasetId::Volume(m.volume.clone()))
            })
            .collect();
        run.binds
            .retain(|b| b.source == data || volumes.contains(&b.source));
        let nic = match spec.network {
            NetworkMode::Bridge => {
                let address = self
                    .store
                    .addresses()?
                    .get(&spec.name)
                    .copied()
                    .ok_or_else(|| anyhow!("{} has no address on the bridge yet", spec.name))?;
                Some(VmNic {
                    tap: self.net.tap_name(&spec.name),
                    address: self.net.bridge_address(address),
                })
            }
            NetworkMode::Host | NetworkMode::None => None,
        };
        let o = &spec.vm;
        let boot = if o.is_full_vm() {
            VmBoot::Firmware {
                disk: o.disk.clone(),
                iso: o.iso.clone(),
                uefi: o.firmware == VmFirmware::Uefi,
                store: Some(data.clone()),
                disk_size: o.disk_size,
            }
        } else {
            VmBoot::Kernel {
                kernel: o.kernel.clone(),
                initrd: o.initrd.clone(),
                cmdline: o.cmdline.clone(),
            }
        };
        run.network = warren_runtime::NetNamespace::Private;
        run.backend = Backend::Vm(VmParams {
            boot,
            console: o.console,
            hosts: nic.as_ref().and_then(|_| self.net.hosts_text()),
            nic,
        });
        Ok(run)
    }
}
