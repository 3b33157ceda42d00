//! [`BhyveRuntime`]: the [`Runtime`] of `kind = "vm"` on FreeBSD, bhyve under the jail-style
//! shim ([`warren_runtime::shim`]).
//!
//! A [`WorkloadRun`] whose backend part is [`Backend::Vm`] with a [`VmBoot::Firmware`] boot (a
//! full VM: a `disk`, raw files or zvols, or an installer `iso`) becomes a [`VmConfig`] and a
//! [`BhyvePlan`] ([`BhyveRuntime::config`], [`bhyve::plan`]): `uefi` boots through the
//! `edk2-bhyve` bootrom with the VM's own copy of its variable store (`RUN_DIR/BHYVE_UEFI_VARS.fd`,
//! copied once with `cp`), otherwise `bhyveload` loads a FreeBSD guest from its disk; the NIC
//! is the tap [`VmParams::nic`] names (`tap-NAME`, which the bridge leaves to this runtime) with
//! a MAC derived from the id; `com1` is the VM's nmdm device (`/dev/nmdm-ID.1A`; an operator
//! attaches to `/dev/nmdm-ID.1B`).
//!
//! [`Runtime::start`] writes `RUN_DIR/jail.json` ([`JailShimConfig`]) whose main program is
//! `bhyve` with the plan's argv and whose teardown is `bhyvectl --destroy --vm=ID` and the
//! tap's destruction, runs the lifecycle's preparation ([`Bhyve::prepare`]: the tap created,
//! renamed, added to the bridge and up, then `bhyveload`; a failing step undoes the ones
//! before it) and starts the shim (`warren shim RUN_DIR`), which runs bhyve with its output in
//! the workload's logs, records `state.json` (bhyve's pid) and, once bhyve has exited (the
//! guest powered off, rebooted or was destroyed), runs the teardown and writes `exit.json`. So
//! a VM outlives the daemon and is adopted like a jail. A shim that does not report `ok` gets
//! the teardown run by the runtime.
//!
//! Operations by id find the run directory through `<state>/runs/<id>`, a link the start
//! writes (as [`crate::runtime::VmRuntime`]'s do):
//! - stop and `TERM`/`INT`: `kill -s TERM PID` to bhyve, which presses the guest's ACPI power
//!   button; `KILL`: `bhyvectl --destroy --vm=ID` (bhyve exits, the shim tears down);
//! - freeze/thaw: `kill -s STOP`/`CONT` to bhyve, which pauses the vCPUs and the device
//!   models, so the disks in the workload's datasets are not written while a snapshot is
//!   taken (crash-consistent: there is no guest agent to flush the guest's own caches);
//! - delete: the teardown of `jail.json` (what is gone already is not an error), then waits
//!   for the shim to finish, so a start that follows never races its teardown;
//! - observe: running while the shim that started bhyve is alive and has not written
//!   `exit.json`.
//!
//! A microVM ([`VmBoot::Kernel`], a workload from a world, image or recipe) runs under the VM
//! shim ([`crate::shim`], `vm.json`) instead, as on Linux with bhyve in QEMU's place:
//! - boot: `grub-bhyve` loads the operator's Linux kernel (`vm.kernel`, required: FreeBSD has
//!   no Debian kernel to fetch) and initramfs from host files ([`bhyve::grub_boot`]). The
//!   initramfs is the operator's `vm.initrd`, or warren's built from the kernel's modules
//!   (`lib/modules/RELEASE` beside it, [`crate::kernel::BHYVE_MODULES`]) with the guest agent
//!   given by [`BhyveRuntime::with_agent`] (a static Linux `warren-agent`) as PID 1; without
//!   either, the start fails naming `vm.kernel` or `vm.initrd`;
//! - files: the rootfs dataset tree is shared over virtio-9p with the tag `root`, and every
//!   bind whose source is a directory (the `data` dataset, volumes) as `vN`; the agent mounts
//!   them (`fstype = "9p"`), so the guest works on the datasets themselves;
//! - the agent's port is bhyve's `virtio-console` port [`crate::config::AGENT_PORT`] on
//!   `RUN_DIR/agent.sock`; `com1` stays on the nmdm device (`cu -l /dev/nmdm-ID.1B`);
//! - the shim runs bhyve, relays the agent like QEMU's (logs, exec sessions and control over
//!   `ctl.sock`) and, once bhyve has exited, runs `vm.json`'s teardown (`bhyvectl --destroy`,
//!   the tap's removal);
//! - stop asks the agent to power off (`kill -s TERM` to bhyve when it cannot be asked);
//!   signals other than `KILL` go to the guest's main process; freeze asks the agent, then
//!   stops bhyve (`kill -s STOP`: its 9p server is paused, so the datasets hold still while
//!   they are snapshotted) and thaw continues it, thaws the guest and sets its clock; `exec`
//!   is `warren vm-exec` on the control socket, `cp` its copy sessions; name changes rewrite
//!   the guest's hosts file.
//!
//! Not on bhyve (each an [`RuntimeError::Unsupported`] naming why): signals other than the
//! ones above to a full VM, exec and cp into a full VM (it has no agent); one-off foreground
//! runs.
//! Every command goes through the [`Executor`], so the whole protocol is tested on Linux with
//! the recording executor.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_runtime::io_err;

use warren_exec::{Cmd, Executor};
use warren_runtime::logs::{DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
use warren_runtime::shim::{self as rshim, JailShimConfig};
use warren_runtime::{
    proc, Backend, CopyRequest, ExecRequest, Observed, Result, Runtime, RuntimeError, Started,
    VmBoot, VmParams, WorkloadRun,
};

use crate::agent::proto::{self, Message, Mount, NetConfig, StartSpec};
use crate::bhyve::{self, Bhyve, BhyvePlan, BHYVE_UEFI, BHYVE_UEFI_VARS};
use crate::config::{Boot, Console, Disk, DiskFormat, Firmware, Mac, Nic, Share};
use crate::runtime::{signal_number, DEFAULT_MEMORY};
use crate::shim::{client, VmShimConfig, CTL_SOCKET};
use crate::{VmBackend, VmConfig};

/// The VM's copy of the UEFI variable store, in its run directory.
pub const VARS_FILE: &str = "BHYVE_UEFI_VARS.fd";
/// How long [`Runtime::delete`] waits for the shim to finish its teardown.
const DELETE_WAIT: Duration = Duration::from_secs(10);
/// bhyve's end of a microVM's agent port, in its run directory.
pub const AGENT_SOCKET: &str = "agent.sock";
/// The 9p tag of a microVM's root.
pub const ROOT_TAG: &str = "root";
/// How long a control request waits for the guest.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a guest may take to take new names (a guest still booting is tried again later).
const NAMES_TIMEOUT: Duration = Duration::from_secs(5);

/// The bhyve backend.
pub struct BhyveRuntime {
    exec: Arc<dyn Executor>,
    bhyve: Bhyve,
    /// The executable run as `EXE shim RUN_DIR` (the warren binary).
    shim_exe: PathBuf,
    /// `<state>/vm`: the run links.
    state_dir: PathBuf,
    /// The UEFI firmware and the variable store template each UEFI VM copies.
    uefi_code: PathBuf,
    uefi_vars: PathBuf,
    log_max_bytes: u64,
    log_max_files: u32,
    /// VMs frozen by [`Runtime::freeze`] and not thawed since.
    frozen: Mutex<HashSet<String>>,
    /// The guest agent (a static Linux `warren-agent`) put into a microVM's initramfs when the
    /// operator gives none.
    agent: Option<PathBuf>,
}

impl std::fmt::Debug for BhyveRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BhyveRuntime")
            .field("bhyve", &self.bhyve)
            .field("shim_exe", &self.shim_exe)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn unsupported(id: &str, what: &str) -> RuntimeError {
    RuntimeError::Unsupported(format!("{id}: {what}"))
}

impl BhyveRuntime {
    /// A runtime whose taps join `bridge` and whose shims are `shim_exe shim RUN_DIR`.
    pub fn new(
        exec: Arc<dyn Executor>,
        bridge: &str,
        shim_exe: PathBuf,
        state_dir: PathBuf,
    ) -> Result<BhyveRuntime> {
        let bhyve = Bhyve::new(exec.clone(), bridge).map_err(RuntimeError::from)?;
        Ok(BhyveRuntime {
            exec,
            bhyve,
            shim_exe,
            state_dir,
            uefi_code: BHYVE_UEFI.into(),
            uefi_vars: BHYVE_UEFI_VARS.into(),
            log_max_bytes: DEFAULT_MAX_BYTES,
            log_max_files: DEFAULT_MAX_FILES,
            frozen: Mutex::new(HashSet::new()),
            agent: None,
        })
    }

    /// The guest agent binary (a static Linux executable) warren's initramfs is built with.
    pub fn with_agent(mut self, agent: PathBuf) -> Self {
        self.agent = Some(agent);
        self
    }

    /// Uses another UEFI firmware and variable store template than `edk2-bhyve`'s.
    pub fn with_firmware(mut self, code: PathBuf, vars: PathBuf) -> Self {
        self.uefi_code = code;
        self.uefi_vars = vars;
        self
    }

    /// Sets the log rotation size and the number of files kept (current one included).
    pub fn with_log_limits(mut self, max_bytes: u64, max_files: u32) -> Self {
        self.log_max_bytes = max_bytes.max(1);
        self.log_max_files = max_files.max(1);
        self
    }

    /// Loads the `vmm` and `nmdm` modules and has taps come up when opened; run once when
    /// the daemon starts.
    pub fn prepare_host(&self) -> Result<()> {
        for c in bhyve::prepare_host_cmds() {
            self.exec.run(&c)?;
        }
        Ok(())
    }

    /// The run directory of a VM this runtime started, by its id.
    pub fn run_dir(&self, id: &str) -> Option<PathBuf> {
        std::fs::read_link(self.state_dir.join("runs").join(id)).ok()
    }

    /// The VM's config for `spec`, whose run directory is `run_dir`, computed purely.
    pub fn config(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<VmConfig> {
        spec.expect_backend("vm")?;
        let Backend::Vm(p) = &spec.backend else {
            unreachable!("checked by expect_backend")
        };
        let VmParams { boot, nic, .. } = p;
        let VmBoot::Firmware {
            disk, iso, uefi, ..
        } = boot
        else {
            return Err(RuntimeError::Spec(format!(
                "{}: a microVM's config comes with its start (BhyveRuntime::micro_config)",
                spec.id
            )));
        };
        let memory = spec.resources.memory.unwrap_or(DEFAULT_MEMORY);
        let cpus = spec
            .resources
            .cpus
            .map(|c| c.ceil().max(1.0) as u32)
            .unwrap_or(1);
        let disk = disk.as_ref().map(|d| Disk {
            // bhyve refuses qcow2 by name ([`bhyve::plan`]).
            format: if d.extension().is_some_and(|e| e == "qcow2") {
                DiskFormat::Qcow2
            } else {
                DiskFormat::Raw
            },
            ..Disk::raw(d)
        });
        let boot = match (iso, disk) {
            (Some(iso), disk) => Boot::Iso {
                iso: iso.clone(),
                disk,
            },
            (None, Some(d)) => Boot::Disk(d),
            (None, None) => {
                return Err(RuntimeError::Spec(format!(
                    "{}: a full VM needs a disk or an iso",
                    spec.id
                )))
            }
        };
        let firmware = if *uefi {
            Firmware::Uefi {
                code: self.uefi_code.clone(),
                vars: run_dir.join(VARS_FILE),
            }
        } else {
            Firmware::Bios
        };
        let cfg = VmConfig {
            name: spec.id.clone(),
            cpus,
            memory_mib: memory >> 20,
            boot,
            firmware,
            disks: Vec::new(),
            shares: Vec::new(),
            nic: nic.as_ref().map(|n| Nic {
                tap: n.tap.clone(),
                mac: Mac::for_name(&spec.id),
            }),
            agent: None,
            qmp: None,
            // com1 is the nmdm device: the console is read on its other side.
            console: Console {
                socket: None,
                log: Some(bhyve::nmdm_console(&spec.id).into()),
            },
            accel: crate::config::Accel::Kvm,
            tsc_khz: None,
        };
        cfg.validate().map_err(RuntimeError::from)?;
        Ok(cfg)
    }

    /// A microVM's kernel and initramfs: the operator's, or warren's initramfs built for
    /// the kernel (cached in `<state>/initramfs`).
    fn micro_boot_files(
        &self,
        id: &str,
        kernel: Option<&Path>,
        initrd: Option<&Path>,
    ) -> Result<(PathBuf, PathBuf)> {
        let Some(kernel) = kernel else {
            return Err(RuntimeError::Spec(format!(
                "{id}: vm.kernel: a microVM on FreeBSD boots the operator's Linux kernel \
                 (kernel = \"/path/vmlinuz-RELEASE\" with lib/modules/RELEASE beside it); \
                 there is no Debian kernel to fetch here"
            )));
        };
        if let Some(i) = initrd {
            if !kernel.is_file() {
                return Err(RuntimeError::Spec(format!(
                    "{id}: vm.kernel: {} does not exist",
                    kernel.display()
                )));
            }
            if !i.is_file() {
                return Err(RuntimeError::Spec(format!(
                    "{id}: vm.initrd: {} does not exist",
                    i.display()
                )));
            }
            return Ok((kernel.to_path_buf(), i.to_path_buf()));
        }
        let files = crate::kernel::from_path(kernel)
            .map_err(|e| RuntimeError::Spec(format!("{id}: {e}")))?;
        let agent = self.agent.as_ref().filter(|a| a.is_file()).ok_or_else(|| {
            RuntimeError::Spec(format!(
                "{id}: vm.initrd: none given, and warren's initramfs needs the guest agent (a \
                 static Linux warren-agent) installed beside warren"
            ))
        })?;
        let dir = self.state_dir.join("initramfs");
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let out = dir.join(format!("initramfs-bhyve-{}.cpio", files.release));
        crate::initramfs::build_initramfs_with(
            self.exec.as_ref(),
            agent,
            &files,
            crate::kernel::BHYVE_MODULES,
            &out,
        )
        .map_err(|e| RuntimeError::Spec(format!("{id}: {e}")))?;
        Ok((files.vmlinuz, out))
    }

    /// A microVM's config and its main process's start, for `spec` whose run directory is
    /// `run_dir`: the rootfs and the directory binds shared over virtio-9p.
    pub fn micro_config(
        &self,
        spec: &WorkloadRun,
        run_dir: &Path,
    ) -> Result<(VmConfig, StartSpec)> {
        spec.expect_backend("vm")?;
        let Backend::Vm(p) = &spec.backend else {
            unreachable!("checked by expect_backend")
        };
        let VmBoot::Kernel {
            kernel,
            initrd,
            cmdline,
        } = &p.boot
        else {
            return Err(RuntimeError::Spec(format!("{}: not a microVM", spec.id)));
        };
        let (kernel, initramfs) =
            self.micro_boot_files(&spec.id, kernel.as_deref(), initrd.as_deref())?;
        let memory = spec.resources.memory.unwrap_or(DEFAULT_MEMORY);
        let cpus = spec
            .resources
            .cpus
            .map(|c| c.ceil().max(1.0) as u32)
            .unwrap_or(1);
        let mut shares = vec![Share::new(ROOT_TAG, &spec.rootfs, spec.readonly_rootfs)];
        let mut mounts = Vec::new();
        for b in spec.binds.iter().filter(|b| b.source.is_dir()) {
            let tag = format!("v{}", shares.len());
            mounts.push(Mount {
                device: tag.clone(),
                path: b.dest.clone(),
                fstype: "9p".into(),
                readonly: b.readonly,
            });
            shares.push(Share::new(&tag, &b.source, b.readonly));
        }
        let nic = p.nic.as_ref().map(|n| Nic {
            tap: n.tap.clone(),
            mac: Mac::for_name(&spec.id),
        });
        let mut line = crate::guest::CMDLINE.to_string();
        if let Some(extra) = cmdline {
            line.push(' ');
            line.push_str(extra);
        }
        let start = StartSpec {
            argv: spec.args.clone(),
            env: spec.env.clone(),
            cwd: spec.cwd.clone(),
            user: spec.user.clone(),
            hostname: spec.hostname.clone(),
            root: Mount {
                device: ROOT_TAG.into(),
                path: "/".into(),
                fstype: "9p".into(),
                readonly: spec.readonly_rootfs,
            },
            mounts,
            net: match (&p.nic, &nic) {
                (Some(n), Some(host)) => Some(NetConfig {
                    mac: host.mac.to_string(),
                    address: n.address.address,
                    prefix: n.address.prefix,
                    gateway: n.address.gateway,
                }),
                _ => None,
            },
            hosts: p.hosts.clone(),
            time_unix_ns: 0,
        };
        let cfg = VmConfig {
            name: spec.id.clone(),
            cpus,
            memory_mib: memory >> 20,
            boot: Boot::Kernel {
                kernel,
                initrd: Some(initramfs),
                cmdline: line,
            },
            firmware: Firmware::Bios,
            disks: Vec::new(),
            shares,
            nic,
            agent: Some(run_dir.join(AGENT_SOCKET)),
            qmp: None,
            console: Console {
                socket: None,
                log: Some(bhyve::nmdm_console(&spec.id).into()),
            },
            accel: crate::config::Accel::Kvm,
            tsc_khz: None,
        };
        cfg.validate().map_err(RuntimeError::from)?;
        Ok((cfg, start))
    }

    /// The VM shim's `vm.json` for a microVM: bhyve as the hypervisor, the agent's start, the
    /// VM's teardown once bhyve has exited.
    pub fn micro_shim_config(
        &self,
        spec: &WorkloadRun,
        plan: &BhyvePlan,
        cfg: &VmConfig,
        start: StartSpec,
        run_dir: &Path,
    ) -> Result<VmShimConfig> {
        Ok(VmShimConfig {
            id: spec.id.clone(),
            qemu: plan.bhyve.argv_vec(),
            agent_socket: cfg
                .agent
                .clone()
                .unwrap_or_else(|| run_dir.join(AGENT_SOCKET)),
            start: Some(start),
            console_socket: None,
            console_attach: None,
            log_dir: run_dir.join("logs"),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            cgroup_path: spec.cgroup_path.clone(),
            memory_limit: None,
            teardown: bhyve::teardown_cmds(plan)
                .map_err(RuntimeError::from)?
                .iter()
                .map(Cmd::argv_vec)
                .collect(),
        })
    }

    /// The control socket of a running microVM's shim; a full VM has no agent to reach.
    fn agent_ctl(&self, id: &str) -> Result<PathBuf> {
        if !self.is_micro(id) {
            return Err(unsupported(
                id,
                "exec and cp go through a guest agent, and a full VM has none: it is reached \
                 over its network or console",
            ));
        }
        self.run_dir(id)
            .filter(|_| self.live(id).is_some())
            .map(|d| d.join(CTL_SOCKET))
            .ok_or_else(|| RuntimeError::Other(format!("{id} is not a running VM")))
    }

    /// Whether run `id` is a microVM (its shim is the VM shim, with `vm.json`).
    fn is_micro(&self, id: &str) -> bool {
        self.run_dir(id)
            .is_some_and(|d| d.join(crate::shim::CONFIG_FILE).is_file())
    }

    /// One control request to a microVM's agent through its shim's `ctl.sock`.
    fn control(&self, id: &str, m: &Message) -> Result<()> {
        self.control_within(id, m, CONTROL_TIMEOUT)
    }

    /// [`Self::control`], waiting at most `timeout` for the answer.
    fn control_within(&self, id: &str, m: &Message, timeout: Duration) -> Result<()> {
        let ctl = self
            .run_dir(id)
            .map(|d| d.join(CTL_SOCKET))
            .ok_or_else(|| RuntimeError::Other(format!("{id}: no such VM run")))?;
        client::request(&ctl, m, timeout).map_err(|e| RuntimeError::Other(format!("{id}: {e}")))
    }

    /// The shim's `jail.json` for `plan`: bhyve as the main program, the VM's teardown after it.
    pub fn shim_config(
        &self,
        id: &str,
        plan: &BhyvePlan,
        run_dir: &Path,
    ) -> Result<JailShimConfig> {
        Ok(JailShimConfig {
            id: id.to_string(),
            program: Some(plan.bhyve.program.clone()),
            jexec: plan.bhyve.argv_vec()[1..].to_vec(),
            log_dir: run_dir.join("logs"),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            teardown: bhyve::teardown_cmds(plan)
                .map_err(RuntimeError::from)?
                .iter()
                .map(Cmd::argv_vec)
                .collect(),
        })
    }

    /// The teardown of `id`: `vm.json`'s or `jail.json`'s, or the VM's destruction when there is none.
    fn teardown(&self, id: &str) -> Result<Vec<Cmd>> {
        let recorded = self
            .run_dir(id)
            .and_then(|d| match crate::shim::read_config(&d) {
                Some(Ok(vm)) => Some(vm.teardown),
                Some(Err(_)) => None,
                None => rshim::read_jail_config(&d).ok().map(|c| c.teardown),
            });
        match recorded {
            Some(teardown) => Ok(teardown
                .iter()
                .filter_map(|a| a.split_first().map(|(p, rest)| Cmd::new(p).args(rest)))
                .collect()),
            None => Ok(vec![bhyve::destroy_cmd(id).map_err(RuntimeError::from)?]),
        }
    }

    /// Runs `cmds` in order; what is already gone is not an error.
    fn run_teardown(&self, cmds: &[Cmd]) -> Result<()> {
        for c in cmds {
            match self.exec.run(c) {
                Ok(_) => {}
                Err(e) if bhyve::is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The run's shim state while its shim is alive and bhyve has not been reported ended.
    fn live(&self, id: &str) -> Option<warren_runtime::ShimState> {
        let dir = self.run_dir(id)?;
        let state = rshim::read_state(&dir).ok()??;
        if rshim::read_exit(&dir).ok().flatten().is_some() {
            return None;
        }
        // The shim reaps bhyve: while it lives and has not written exit.json, the pid is
        // bhyve's.
        proc::process_alive(state.shim_pid, state.shim_start_ticks).then_some(state)
    }

    /// `kill -s SIG PID` to the VM's bhyve, if it runs.
    fn signal(&self, id: &str, sig: &str) -> Result<()> {
        let Some(state) = self.live(id) else {
            return Ok(());
        };
        let c = Cmd::new("kill").args([
            "-s".to_string(),
            sig.to_string(),
            state.container_pid.to_string(),
        ]);
        match self.exec.run(&c) {
            Ok(_) => Ok(()),
            // Ended since: nothing left to signal.
            Err(e) if e.stderr().contains("No such process") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a start that did not succeed: the shim, then the VM and its tap.
    fn abandon(&self, plan: &BhyvePlan, shim: Option<&mut std::process::Child>) {
        if let Some(shim) = shim {
            let _ = shim.kill();
            let _ = shim.wait();
        }
        if let Ok(cmds) = bhyve::teardown_cmds(plan) {
            let _ = self.run_teardown(&cmds);
        }
        let _ = std::fs::remove_file(self.state_dir.join("runs").join(&plan.name));
    }
}

impl VmBackend for BhyveRuntime {
    fn owns(&self, id: &str) -> bool {
        self.run_dir(id).is_some()
    }
}

impl Runtime for BhyveRuntime {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started> {
        spec.expect_backend(self.name())?;
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let run_dir = run_dir.canonicalize().map_err(io_err(run_dir))?;
        let micro = matches!(
            spec.backend,
            Backend::Vm(VmParams {
                boot: VmBoot::Kernel { .. },
                ..
            })
        );
        let (cfg, start) = if micro {
            let (c, s) = self.micro_config(spec, &run_dir)?;
            (c, Some(s))
        } else {
            (self.config(spec, &run_dir)?, None)
        };
        let plan = bhyve::plan(&cfg, &run_dir).map_err(RuntimeError::from)?;
        // `warren shim` picks the VM shim when vm.json is there: only this start's stays.
        for stale in [
            rshim::STATE_FILE,
            rshim::EXIT_FILE,
            crate::shim::CONFIG_FILE,
            rshim::JAIL_CONFIG_FILE,
        ] {
            let p = run_dir.join(stale);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
                _ => {}
            }
        }
        if let Firmware::Uefi { vars, .. } = &cfg.firmware {
            if !self.uefi_code.exists() {
                return Err(RuntimeError::Unsupported(format!(
                    "{}: the UEFI firmware {} is not installed (pkg install edk2-bhyve)",
                    spec.id,
                    self.uefi_code.display()
                )));
            }
            // The VM's own variable store, kept across starts.
            if !vars.exists() {
                self.exec
                    .run(&Cmd::new("cp").arg(&self.uefi_vars).arg(vars))?;
            }
        }
        match start {
            Some(start) => {
                let vm = self.micro_shim_config(spec, &plan, &cfg, start, &run_dir)?;
                rshim::write_json(&run_dir.join(crate::shim::CONFIG_FILE), &vm)?;
            }
            None => {
                rshim::write_jail_config(&run_dir, &self.shim_config(&spec.id, &plan, &run_dir)?)?
            }
        }
        let runs = self.state_dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(io_err(&runs))?;
        let link = runs.join(&spec.id);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&run_dir, &link).map_err(io_err(&link))?;
        self.frozen.lock().unwrap().remove(&spec.id);

        if let Err(e) = self.bhyve.prepare(&plan) {
            let _ = std::fs::remove_file(&link);
            return Err(RuntimeError::from(e));
        }
        rshim::start(&self.shim_exe, &run_dir, &spec.id, |child| {
            self.abandon(&plan, child)
        })
    }

    /// A microVM's agent is asked to power off; otherwise (or when it cannot be asked)
    /// SIGTERM to bhyve: the guest's ACPI power button.
    fn stop(&self, id: &str) -> Result<()> {
        if self.is_micro(id) && self.live(id).is_some() {
            let grace = crate::shim::STOP_GRACE.as_millis() as u64;
            if self
                .control(id, &Message::Poweroff(proto::Poweroff { grace_ms: grace }))
                .is_ok()
            {
                return Ok(());
            }
        }
        self.signal(id, "TERM")
    }

    /// `KILL` destroys the VM; a microVM's other signals go to its main process through the
    /// agent; a full VM's `TERM` and `INT` press the power button.
    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let sig = signal_number(signal)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown signal {signal:?}")))?;
        if sig == libc::SIGKILL {
            if self.run_dir(id).is_none() {
                return Ok(());
            }
            return self.run_teardown(&[bhyve::destroy_cmd(id).map_err(RuntimeError::from)?]);
        }
        if self.is_micro(id) {
            if self.live(id).is_none() {
                return Ok(());
            }
            return match self.control(id, &Message::Signal(proto::Signal { signal: sig })) {
                Ok(()) => Ok(()),
                Err(_) if sig == libc::SIGTERM => self.signal(id, "TERM"),
                Err(e) => Err(e),
            };
        }
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            return self.signal(id, "TERM");
        }
        Err(unsupported(
            id,
            &format!(
                "a full bhyve VM takes TERM (its power button) or KILL (destroy), not {signal}: \
                 it has no guest agent to signal its processes"
            ),
        ))
    }

    /// SIGSTOP to bhyve: the vCPUs and device models pause, the disks and 9p shares are left
    /// alone. A microVM's agent is asked to freeze its filesystems first.
    fn freeze(&self, id: &str) -> Result<()> {
        if self.is_micro(id) && self.live(id).is_some() {
            self.control(id, &Message::Freeze)?;
        }
        self.signal(id, "STOP")?;
        if self.live(id).is_some() {
            self.frozen.lock().unwrap().insert(id.to_string());
        }
        Ok(())
    }

    /// SIGCONT to bhyve; a microVM's agent then thaws its filesystems and sets its clock
    /// (the guest may have been paused for a while).
    fn thaw(&self, id: &str) -> Result<()> {
        self.signal(id, "CONT")?;
        self.frozen.lock().unwrap().remove(id);
        if self.is_micro(id) && self.live(id).is_some() {
            self.control(id, &Message::Thaw)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            self.control(id, &Message::TimeSync(proto::TimeSync { unix_ns: now }))?;
        }
        Ok(())
    }

    /// Rewrites a running microVM's `/etc/hosts` through its agent.
    fn update_names(&self, id: &str, hosts: &str) -> Result<()> {
        if !self.is_micro(id) || self.live(id).is_none() {
            return Ok(());
        }
        self.control_within(
            id,
            &Message::Hosts(proto::Hosts {
                text: hosts.to_string(),
            }),
            NAMES_TIMEOUT,
        )
    }

    /// Destroys the VM and its tap, waits for the shim to finish and forgets the run.
    fn delete(&self, id: &str) -> Result<()> {
        if self.run_dir(id).is_none() {
            return Ok(());
        }
        self.run_teardown(&self.teardown(id)?)?;
        let deadline = std::time::Instant::now() + DELETE_WAIT;
        while self.live(id).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.frozen.lock().unwrap().remove(id);
        let _ = std::fs::remove_file(self.state_dir.join("runs").join(id));
        Ok(())
    }

    fn observe(&self, id: &str) -> Result<Option<Observed>> {
        if self.run_dir(id).is_none() {
            return Ok(None);
        }
        let live = self.live(id);
        Ok(Some(Observed {
            running: live.is_some(),
            frozen: live.is_some() && self.frozen.lock().unwrap().contains(id),
            pid: live.map(|s| s.container_pid),
        }))
    }

    /// `warren vm-exec CTL_SOCKET ...`: an exec session through a microVM's agent.
    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command> {
        if self.is_micro(id) && req.argv.is_empty() {
            return Err(RuntimeError::Spec(format!("{id}: exec needs a command")));
        }
        let ctl = self.agent_ctl(id)?;
        crate::runtime::vm_exec_command(&self.shim_exe, &ctl, req)
    }

    /// A running microVM's files through its agent (`warren cp`); a full VM has none.
    fn copy_out(&self, id: &str, req: &CopyRequest, out: &mut dyn std::io::Write) -> Result<()> {
        let ctl = self.agent_ctl(id)?;
        client::copy_out(&ctl, crate::runtime::copy_spec(req), out)
            .map_err(|e| RuntimeError::Other(e.to_string()))
    }

    fn copy_in(
        &self,
        id: &str,
        req: &CopyRequest,
        input: &mut (dyn std::io::Read + Send),
    ) -> Result<()> {
        let ctl = self.agent_ctl(id)?;
        client::copy_in(&ctl, crate::runtime::copy_spec(req), input)
            .map_err(|e| RuntimeError::Other(e.to_string()))
    }

    fn run_foreground(&self, spec: &WorkloadRun, _run_dir: &Path) -> Result<std::process::Command> {
        Err(unsupported(
            &spec.id,
            "one-off runs are containers; a VM runs as a workload",
        ))
    }
}
