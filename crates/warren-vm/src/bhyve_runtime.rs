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
//! Not on bhyve (each an [`RuntimeError::Unsupported`] naming why): microVMs
//! ([`VmBoot::Kernel`]: bhyve has no direct kernel boot, and their guest agent is relayed by
//! the VM shim, which runs on Linux only), so `exec` into a VM too; other signals than the
//! ones above; one-off foreground runs. Every command goes through the [`Executor`], so the
//! whole protocol is tested on Linux with the recording executor.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_runtime::io_err;

use warren_exec::{Cmd, Executor};
use warren_runtime::logs::{DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
use warren_runtime::shim::{self as rshim, JailShimConfig};
use warren_runtime::{
    proc, Backend, ExecRequest, Observed, Result, Runtime, RuntimeError, Started, VmBoot, VmParams,
    WorkloadRun,
};

use crate::bhyve::{self, Bhyve, BhyvePlan, BHYVE_UEFI, BHYVE_UEFI_VARS};
use crate::config::{Boot, Console, Disk, DiskFormat, Firmware, Mac, Nic};
use crate::runtime::{signal_number, DEFAULT_MEMORY};
use crate::{VmBackend, VmConfig};

/// The VM's copy of the UEFI variable store, in its run directory.
pub const VARS_FILE: &str = "BHYVE_UEFI_VARS.fd";
/// How long [`Runtime::delete`] waits for the shim to finish its teardown.
const DELETE_WAIT: Duration = Duration::from_secs(10);

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
        })
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
            return Err(unsupported(
                &spec.id,
                "bhyve boots a disk or an iso, not a kernel, and a microVM's guest agent is \
                 relayed by the VM shim, which runs on Linux only: give the VM a `disk` or an `iso`",
            ));
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

    /// The teardown of `id`: `jail.json`'s, or the VM's destruction when there is none.
    fn teardown(&self, id: &str) -> Result<Vec<Cmd>> {
        let recorded = self
            .run_dir(id)
            .and_then(|d| rshim::read_jail_config(&d).ok());
        match recorded {
            Some(cfg) => Ok(cfg
                .teardown
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
        let cfg = self.config(spec, &run_dir)?;
        let plan = bhyve::plan(&cfg, &run_dir).map_err(RuntimeError::from)?;
        for stale in [rshim::STATE_FILE, rshim::EXIT_FILE] {
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
        rshim::write_jail_config(&run_dir, &self.shim_config(&spec.id, &plan, &run_dir)?)?;
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

    /// SIGTERM to bhyve: the guest's ACPI power button.
    fn stop(&self, id: &str) -> Result<()> {
        self.kill(id, "TERM")
    }

    /// `TERM` and `INT` press the power button, `KILL` destroys the VM.
    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let sig = signal_number(signal)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown signal {signal:?}")))?;
        if sig == libc::SIGKILL {
            if self.run_dir(id).is_none() {
                return Ok(());
            }
            return self.run_teardown(&[bhyve::destroy_cmd(id).map_err(RuntimeError::from)?]);
        }
        if sig == libc::SIGTERM || sig == libc::SIGINT {
            return self.signal(id, "TERM");
        }
        Err(unsupported(
            id,
            &format!(
                "a bhyve VM takes TERM (its power button) or KILL (destroy), not {signal}: \
                 signals to the guest's processes need the guest agent, relayed on Linux only"
            ),
        ))
    }

    /// SIGSTOP to bhyve: the vCPUs and device models pause, the disks are left alone.
    fn freeze(&self, id: &str) -> Result<()> {
        self.signal(id, "STOP")?;
        if self.live(id).is_some() {
            self.frozen.lock().unwrap().insert(id.to_string());
        }
        Ok(())
    }

    fn thaw(&self, id: &str) -> Result<()> {
        self.signal(id, "CONT")?;
        self.frozen.lock().unwrap().remove(id);
        Ok(())
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

    fn exec(&self, id: &str, _req: &ExecRequest) -> Result<std::process::Command> {
        Err(unsupported(
            id,
            "exec into a VM goes through its guest agent, which the VM shim relays on Linux \
             only; bhyve VMs are reached over their network or console",
        ))
    }

    fn run_foreground(&self, spec: &WorkloadRun, _run_dir: &Path) -> Result<std::process::Command> {
        Err(unsupported(
            &spec.id,
            "one-off runs are containers; a VM runs as a workload",
        ))
    }
}
