//! [`VmRuntime`]: the [`Runtime`] of `kind = "vm"` on Linux, QEMU under a VM shim
//! ([`crate::shim`]).
//!
//! A [`WorkloadRun`] whose backend part is [`Backend::Vm`] becomes:
//! - a microVM ([`VmBoot::Kernel`]): QEMU's `microvm` machine booting the kernel (the
//!   operator's, or Debian's unpacked into the state dir, [`crate::kernel`]) with warren's
//!   initramfs, whose agent is PID 1. The root disk is built from the run's rootfs
//!   ([`crate::disk`]) for every start; every bind whose source is a dataset directory (the
//!   `data` dataset, volumes) becomes a persistent disk kept inside that dataset and mounted by
//!   the agent where the bind would be. The main process and execs run through the agent.
//! - a full VM ([`VmBoot::Firmware`]): the `q35` machine with SeaBIOS or OVMF booting a disk
//!   image or an installer ISO, without an agent; its serial console is its log.
//!
//! A VM's serial console is attachable (`warren console`) on `RUN_DIR/console.sock`
//! ([`CONSOLE_SOCKET`], the shim's console hub) for a full VM always and for a microVM with
//! `console = true` ([`VmRuntime::console_socket`]).
//!
//! The accelerator is KVM when `/dev/kvm` boots a guest here and TCG otherwise
//! ([`VmRuntime::accel`], probed once and remembered in the state dir).
//!
//! Operations by id find the run directory through `<state>/runs/<id>`, a link the start
//! writes; the shim's control socket there carries stop (guest power-off), signals, freeze and
//! thaw (the guest's filesystems), and exec sessions (`warren vm-exec`).

use crate::agent::proto::{self, Message, Mount, NetConfig, StartSpec};
use crate::config::{Accel, Boot, Console, Disk, Firmware, Mac, Nic, OVMF_CODE, OVMF_VARS};
use crate::shim::{client, VmShimConfig, CONSOLE_SOCKET, CTL_SOCKET, SERIAL_SOCKET};
use crate::{disk, qemu, VmConfig};

/// QEMU's QMP socket in a run dir.
const QMP_SOCKET: &str = "qmp.sock";
/// QEMU's end of the agent's virtio-serial port in a microVM's run dir.
const AGENT_SOCKET: &str = "agent.sock";
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warren_exec::Executor;
use warren_runtime::io_err;
use warren_runtime::shim as rshim;
use warren_runtime::{
    Backend, CopyRequest, ExecRequest, Observed, Result, Runtime, RuntimeError, Started, VmBoot,
    WorkloadRun,
};

/// Memory a VM gets when its resources name none.
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// What QEMU may use beyond the guest's RAM before its cgroup's limit (its own code, the
/// translation cache under TCG, device buffers).
pub const QEMU_OVERHEAD: u64 = 384 << 20;
/// Written into the run directory at start: the accelerator the VM runs with.
pub const ACCEL_FILE: &str = "accel";
/// How long a control request waits for the guest.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a guest may take to take new names (a guest still booting is tried again later).
const NAMES_TIMEOUT: Duration = Duration::from_secs(5);

/// The VM backend.
pub struct VmRuntime {
    exec: Arc<dyn Executor>,
    /// The executable run as `EXE shim RUN_DIR` and `EXE vm-exec` (the warren binary).
    shim_exe: PathBuf,
    /// The guest agent binary put into the initramfs.
    agent: PathBuf,
    /// `<state>/vm`: the run links.
    state_dir: PathBuf,
    /// The kernel and initramfs caches and the accelerator probe's result (`<state>/vm`, or
    /// `WARREN_VM_CACHE` to share them between daemons).
    cache_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    accel: Mutex<Option<Accel>>,
}

impl VmRuntime {
    pub fn new(
        exec: Arc<dyn Executor>,
        shim_exe: PathBuf,
        agent: PathBuf,
        state_dir: PathBuf,
    ) -> VmRuntime {
        let cache_dir = std::env::var_os("WARREN_VM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| state_dir.clone());
        VmRuntime {
            exec,
            shim_exe,
            agent,
            state_dir,
            cache_dir,
            log_max_bytes: 10 << 20,
            log_max_files: 3,
            accel: Mutex::new(None),
        }
    }

    /// The run directory of a VM this runtime started, by its id.
    pub fn run_dir(&self, id: &str) -> Option<PathBuf> {
        std::fs::read_link(self.state_dir.join("runs").join(id)).ok()
    }

    /// Whether `id` is a VM this runtime started (and has not deleted).
    pub fn owns(&self, id: &str) -> bool {
        self.run_dir(id).is_some()
    }

    /// The socket a client attaches to the serial console of the VM whose run directory is
    /// `run_dir` on: None when it has none (a microVM without `console = true`).
    pub fn console_socket(run_dir: &Path) -> Option<PathBuf> {
        let cfg = crate::shim::read_config(run_dir)?.ok()?;
        cfg.console_attach
    }

    fn ctl(&self, id: &str) -> Option<PathBuf> {
        self.run_dir(id).map(|d| d.join(CTL_SOCKET))
    }

    /// The accelerator VMs get here: `WARREN_VM_ACCEL` (kvm or tcg) when set, else what the
    /// probe found (remembered in `<state>/accel`).
    pub fn accel(&self) -> Accel {
        let mut a = self.accel.lock().unwrap();
        if let Some(a) = *a {
            return a;
        }
        let found = match std::env::var("WARREN_VM_ACCEL").ok().as_deref() {
            Some("kvm") => Accel::Kvm,
            Some(_) => Accel::Tcg,
            None => {
                let file = self.cache_dir.join("accel");
                match std::fs::read_to_string(&file)
                    .ok()
                    .as_deref()
                    .map(str::trim)
                {
                    Some("kvm") => Accel::Kvm,
                    Some("tcg") => Accel::Tcg,
                    _ => {
                        let probed = self.probe_accel();
                        let _ = std::fs::create_dir_all(&self.cache_dir);
                        let _ = std::fs::write(&file, probed.as_str());
                        probed
                    }
                }
            }
        };
        *a = Some(found);
        found
    }

    /// KVM only when `/dev/kvm` opens and a guest boots with it to the agent's greeting.
    fn probe_accel(&self) -> Accel {
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return Accel::Tcg;
        }
        match crate::guest::probe_boot(self.exec.as_ref(), &self.cache_dir, &self.agent, Accel::Kvm)
        {
            Ok(true) => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }

    fn config(
        &self,
        spec: &WorkloadRun,
        boot: &VmBoot,
        run_dir: &Path,
    ) -> Result<(VmConfig, Option<StartSpec>)> {
        let p = spec.vm().expect("checked by expect_backend");
        let memory = spec.resources.memory.unwrap_or(DEFAULT_MEMORY);
        let cpus = spec
            .resources
            .cpus
            .map(|c| c.ceil().max(1.0) as u32)
            .unwrap_or(1);
        let accel = self.accel();
        // QEMU's serial socket, held by the shim's console hub, which serves it to clients
        // on CONSOLE_SOCKET.
        let console = Console {
            socket: p.console.then(|| run_dir.join(SERIAL_SOCKET)),
            log: Some(run_dir.join("console.log")),
        };
        let nic = p.nic.as_ref().map(|n| Nic {
            tap: n.tap.clone(),
            mac: Mac::for_name(&spec.id),
        });
        let base = VmConfig {
            name: spec.id.clone(),
            cpus,
            memory_mib: memory >> 20,
            boot: Boot::Disk(Disk::raw("/")),
            firmware: Firmware::Bios,
            disks: Vec::new(),
            shares: Vec::new(),
            nic: nic.clone(),
            agent: None,
            qmp: Some(run_dir.join(QMP_SOCKET)),
            console,
            accel,
            tsc_khz: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| crate::probe::host_tsc_khz(&c)),
        };
        match boot {
            VmBoot::Firmware {
                disk,
                iso,
                uefi,
                store,
                disk_size,
            } => {
                let firmware = if *uefi {
                    let vars = run_dir.join("OVMF_VARS.fd");
                    if !vars.exists() {
                        std::fs::copy(OVMF_VARS, &vars).map_err(io_err(&vars))?;
                    }
                    Firmware::Uefi {
                        code: OVMF_CODE.into(),
                        vars,
                    }
                } else {
                    Firmware::Bios
                };
                // Its own disk in its data dataset (so snapshots, rollback, clone and export
                // carry it), or the operator's file itself when there is no dataset.
                let disk = match store {
                    Some(store) => Some(
                        disk::ensure_own_disk(
                            self.exec.as_ref(),
                            store,
                            disk.as_deref(),
                            *disk_size,
                        )
                        .map_err(RuntimeError::from)?,
                    ),
                    None => disk.as_ref().map(|d| Disk {
                        format: disk::format_of(d),
                        ..Disk::raw(d)
                    }),
                };
                // Volumes are ext4 disks after the boot disk, for the guest to mount.
                let mut disks = Vec::new();
                for b in &spec.binds {
                    if !b.source.is_dir() || store.as_deref() == Some(b.source.as_path()) {
                        continue;
                    }
                    let image = disk::ensure_dataset_disk(
                        self.exec.as_ref(),
                        &b.source,
                        disk::DEFAULT_DATA_DISK,
                    )
                    .map_err(RuntimeError::from)?;
                    disks.push(Disk {
                        readonly: b.readonly,
                        ..Disk::raw(image)
                    });
                }
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
                // A full VM's serial console is its log: the shim copies it from the socket
                // (and serves it on CONSOLE_SOCKET).
                let console = Console {
                    socket: Some(run_dir.join(SERIAL_SOCKET)),
                    log: None,
                };
                Ok((
                    VmConfig {
                        boot,
                        firmware,
                        console,
                        disks,
                        ..base
                    },
                    None,
                ))
            }
            VmBoot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                let guest = crate::guest::boot_files(
                    self.exec.as_ref(),
                    &self.cache_dir,
                    &self.agent,
                    kernel.as_deref(),
                    initrd.as_deref(),
                )
                .map_err(RuntimeError::from)?;
                let root = run_dir.join("root.ext4");
                disk::build_root_disk(self.exec.as_ref(), &spec.rootfs, &root)
                    .map_err(RuntimeError::from)?;
                let mut disks = vec![Disk::raw(&root)];
                let mut mounts = Vec::new();
                for b in &spec.binds {
                    if !b.source.is_dir() {
                        continue;
                    }
                    let image = disk::ensure_dataset_disk(
                        self.exec.as_ref(),
                        &b.source,
                        disk::DEFAULT_DATA_DISK,
                    )
                    .map_err(RuntimeError::from)?;
                    mounts.push(Mount {
                        device: crate::guest::disk_device(disks.len()),
                        path: b.dest.clone(),
                        fstype: "ext4".into(),
                        readonly: b.readonly,
                    });
                    disks.push(Disk {
                        readonly: b.readonly,
                        ..Disk::raw(image)
                    });
                }
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
                        device: crate::guest::disk_device(0),
                        path: "/".into(),
                        fstype: "ext4".into(),
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
                Ok((
                    VmConfig {
                        boot: Boot::Kernel {
                            kernel: guest.kernel,
                            initrd: Some(guest.initramfs),
                            cmdline: line,
                        },
                        disks,
                        agent: Some(run_dir.join(AGENT_SOCKET)),
                        ..base
                    },
                    Some(start),
                ))
            }
        }
    }

    /// QEMU's pid from the run's state, if that process still is this run's QEMU.
    fn qemu_pid(&self, id: &str) -> Option<i32> {
        let dir = self.run_dir(id)?;
        let state = rshim::read_state(&dir).ok()??;
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", state.container_pid)).ok()?;
        let marker = dir.join(QMP_SOCKET);
        let marker = marker.to_string_lossy();
        String::from_utf8_lossy(&cmdline)
            .contains(marker.as_ref())
            .then_some(state.container_pid)
    }

    fn control(&self, id: &str, m: &Message) -> Result<()> {
        let Some(ctl) = self.ctl(id) else {
            return Ok(());
        };
        client::request(&ctl, m, CONTROL_TIMEOUT)
            .map_err(|e| RuntimeError::Other(format!("{id}: {e}")))
    }
}

impl VmRuntime {
    /// Whether run `id` is a full VM: QEMU was given no agent port.
    fn is_full_vm(&self, id: &str) -> bool {
        self.run_dir(id)
            .is_some_and(|d| d.join(QMP_SOCKET).exists() && !d.join(AGENT_SOCKET).exists())
    }

    /// A QMP session with run `id`'s QEMU.
    fn qmp(&self, id: &str) -> Result<crate::qmp::Qmp<std::os::unix::net::UnixStream>> {
        let dir = self
            .run_dir(id)
            .ok_or_else(|| RuntimeError::Other(format!("{id}: no such VM run")))?;
        let sock =
            std::os::unix::net::UnixStream::connect(dir.join(QMP_SOCKET)).map_err(io_err(&dir))?;
        let _ = sock.set_read_timeout(Some(CONTROL_TIMEOUT));
        crate::qmp::Qmp::handshake(sock)
            .map(|(q, _)| q)
            .map_err(|e| qmp_err(id, e))
    }
}

fn qmp_err(id: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(format!("{id}: QMP: {e}"))
}

impl crate::VmBackend for VmRuntime {
    fn owns(&self, id: &str) -> bool {
        VmRuntime::owns(self, id)
    }
}

impl Runtime for VmRuntime {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started> {
        spec.expect_backend(self.name())?;
        let Backend::Vm(p) = &spec.backend else {
            unreachable!("checked by expect_backend")
        };
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let run_dir = run_dir.canonicalize().map_err(io_err(run_dir))?;
        for stale in [rshim::STATE_FILE, rshim::EXIT_FILE] {
            let _ = std::fs::remove_file(run_dir.join(stale));
        }
        let (cfg, start) = self.config(spec, &p.boot, &run_dir)?;
        let accel_file = run_dir.join(ACCEL_FILE);
        std::fs::write(&accel_file, cfg.accel.as_str()).map_err(io_err(&accel_file))?;
        let program = warren_exec::resolve("qemu-system-x86_64").ok_or_else(|| {
            RuntimeError::Unsupported(
                "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)".into(),
            )
        })?;
        let mut qemu_argv = vec![program.display().to_string()];
        qemu_argv.extend(qemu::args(&cfg).map_err(RuntimeError::from)?);
        let memory = spec.resources.memory.unwrap_or(DEFAULT_MEMORY);
        let shim_cfg = VmShimConfig {
            id: spec.id.clone(),
            qemu: qemu_argv,
            agent_socket: cfg
                .agent
                .clone()
                .unwrap_or_else(|| run_dir.join(AGENT_SOCKET)),
            start,
            console_socket: cfg.console.socket.clone(),
            console_attach: cfg
                .console
                .socket
                .as_ref()
                .map(|_| run_dir.join(CONSOLE_SOCKET)),
            log_dir: run_dir.join("logs"),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            cgroup_path: spec.cgroup_path.clone(),
            memory_limit: Some(memory + QEMU_OVERHEAD),
            teardown: Vec::new(),
        };
        rshim::write_json(&run_dir.join(crate::shim::CONFIG_FILE), &shim_cfg)?;
        let runs = self.state_dir.join("runs");
        std::fs::create_dir_all(&runs).map_err(io_err(&runs))?;
        let link = runs.join(&spec.id);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&run_dir, &link).map_err(io_err(&link))?;

        rshim::start(&self.shim_exe, &run_dir, &spec.id, |child| {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
        })
    }

    /// Asks the guest to power off (the agent ends the main process, syncs and unmounts).
    fn stop(&self, id: &str) -> Result<()> {
        let grace = crate::shim::STOP_GRACE.as_millis() as u64;
        match self.control(id, &Message::Poweroff(proto::Poweroff { grace_ms: grace })) {
            Ok(()) => Ok(()),
            // No agent (a full VM) or a shim gone: QEMU's own SIGTERM.
            Err(_) => self.kill(id, "TERM"),
        }
    }

    /// `KILL` ends QEMU itself; any other signal goes to the guest's main process.
    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        let sig = signal_number(signal)
            .ok_or_else(|| RuntimeError::Spec(format!("unknown signal {signal:?}")))?;
        if sig == libc::SIGKILL {
            if let Some(pid) = self.qemu_pid(id) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Ok(());
        }
        match self.control(id, &Message::Signal(proto::Signal { signal: sig })) {
            Ok(()) => Ok(()),
            Err(_) if sig == libc::SIGTERM => {
                if let Some(pid) = self.qemu_pid(id) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Freezes the guest's filesystems (the agent's fsfreeze), so a snapshot of the disks in
    /// the workload's datasets is consistent.
    /// A full VM has no agent: its vCPUs are paused instead (QMP `stop`, which also drains and
    /// flushes its disks), so a snapshot of its disk is at least crash-consistent.
    fn freeze(&self, id: &str) -> Result<()> {
        if self.is_full_vm(id) {
            return self.qmp(id)?.stop().map_err(|e| qmp_err(id, e));
        }
        self.control(id, &Message::Freeze)
    }

    /// Rewrites the guest's `/etc/hosts` through the agent (a full VM has none: its names
    /// are its own business).
    fn update_names(&self, id: &str, hosts: &str) -> Result<()> {
        if self.is_full_vm(id) {
            return Ok(());
        }
        let Some(ctl) = self.ctl(id) else {
            return Ok(());
        };
        let m = Message::Hosts(proto::Hosts {
            text: hosts.to_string(),
        });
        client::request(&ctl, &m, NAMES_TIMEOUT)
            .map_err(|e| RuntimeError::Other(format!("{id}: {e}")))
    }

    /// Lets the guest's filesystems run again and sets its clock (it may have been paused
    /// for a while).
    fn thaw(&self, id: &str) -> Result<()> {
        if self.is_full_vm(id) {
            return self.qmp(id)?.cont().map_err(|e| qmp_err(id, e));
        }
        self.control(id, &Message::Thaw)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.control(id, &Message::TimeSync(proto::TimeSync { unix_ns: now }))
    }

    /// The run is this daemon's when its shim still runs (the recorded start time guards
    /// against a reused pid) and QEMU answers on its QMP socket that the guest runs.
    fn adopt(&self, state: &warren_runtime::ShimState) -> bool {
        if !warren_runtime::proc::process_alive(state.shim_pid, state.shim_start_ticks) {
            return false;
        }
        let Some(dir) = self.run_dir(&state.id) else {
            return false;
        };
        let Ok(sock) = std::os::unix::net::UnixStream::connect(dir.join(QMP_SOCKET)) else {
            return false;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        match crate::qmp::Qmp::handshake(sock) {
            Ok((mut q, _)) => q.query_status().map(|s| s.running).unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Kills a QEMU still running and forgets the run.
    fn delete(&self, id: &str) -> Result<()> {
        if let Some(pid) = self.qemu_pid(id) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            // The shim sees QEMU end, records it and removes the cgroup.
            for _ in 0..200 {
                if self.qemu_pid(id).is_none() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if let Some(dir) = self.run_dir(id) {
            let _ = std::fs::remove_file(dir.join("root.ext4"));
        }
        let _ = std::fs::remove_file(self.state_dir.join("runs").join(id));
        Ok(())
    }

    fn observe(&self, id: &str) -> Result<Option<Observed>> {
        if self.run_dir(id).is_none() {
            return Ok(None);
        }
        let pid = self.qemu_pid(id);
        Ok(Some(Observed {
            running: pid.is_some(),
            frozen: false,
            pid,
        }))
    }

    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command> {
        if req.argv.is_empty() {
            return Err(RuntimeError::Spec(format!("{id}: exec needs a command")));
        }
        let ctl = self
            .ctl(id)
            .ok_or_else(|| RuntimeError::Other(format!("{id} is not a running VM")))?;
        vm_exec_command(&self.shim_exe, &ctl, req)
    }

    fn copy_out(&self, id: &str, req: &CopyRequest, out: &mut dyn std::io::Write) -> Result<()> {
        let ctl = self
            .ctl(id)
            .ok_or_else(|| RuntimeError::Other(format!("{id} is not a running VM")))?;
        client::copy_out(&ctl, copy_spec(req), out).map_err(|e| RuntimeError::Other(e.to_string()))
    }

    fn copy_in(
        &self,
        id: &str,
        req: &CopyRequest,
        input: &mut (dyn std::io::Read + Send),
    ) -> Result<()> {
        let ctl = self
            .ctl(id)
            .ok_or_else(|| RuntimeError::Other(format!("{id} is not a running VM")))?;
        client::copy_in(&ctl, copy_spec(req), input).map_err(|e| RuntimeError::Other(e.to_string()))
    }

    fn run_foreground(&self, spec: &WorkloadRun, _run_dir: &Path) -> Result<std::process::Command> {
        Err(RuntimeError::Unsupported(format!(
            "{}: one-off runs are containers; a VM runs as a workload",
            spec.id
        )))
    }
}

/// The agent's copy request for a runtime's.
pub(crate) fn copy_spec(req: &CopyRequest) -> crate::agent::CopySpec {
    crate::agent::CopySpec {
        path: req.path.clone(),
        contents: req.contents,
        directory: req.directory,
        keep_owners: req.keep_owners,
    }
}

/// A signal's number from its name (`TERM`, `SIGTERM`, `15`).
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (n > 0 && n < 65).then_some(n);
    }
    let n = name.strip_prefix("SIG").unwrap_or(name);
    let sig: nix::sys::signal::Signal = format!("SIG{n}").parse().ok()?;
    Some(sig as i32)
}

/// `EXE vm-exec CTL [--tty] [--env K=V]... [--cwd D] -- ARGV`: an exec session through a
/// microVM's agent, relayed by its shim's `ctl.sock` (QEMU and bhyve alike).
pub(crate) fn vm_exec_command(
    shim_exe: &Path,
    ctl: &Path,
    req: &ExecRequest,
) -> Result<std::process::Command> {
    let mut c = warren_exec::std_command(&shim_exe.to_string_lossy())?;
    c.arg("vm-exec").arg(ctl);
    if req.tty {
        c.arg("--tty");
    }
    for e in &req.env {
        c.arg("--env").arg(e);
    }
    if let Some(cwd) = &req.cwd {
        c.arg("--cwd").arg(cwd);
    }
    c.arg("--").args(&req.argv);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("TERM"), Some(libc::SIGTERM));
        assert_eq!(signal_number("SIGKILL"), Some(libc::SIGKILL));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("BOGUS"), None);
        assert_eq!(signal_number("0"), None);
    }

    #[test]
    fn a_run_for_another_backend_is_refused() {
        let rt = VmRuntime::new(
            Arc::new(warren_exec::RecordingExecutor::new()),
            "/bin/true".into(),
            "/bin/true".into(),
            std::env::temp_dir(),
        );
        let run = WorkloadRun::one_off("x", "/x", "x", "/".into(), vec!["true".into()]);
        let err = rt.start(&run, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("not for the vm runtime"), "{err}");
        assert!(rt.run_foreground(&run, Path::new("/")).is_err());
        assert!(!rt.owns("x"));
    }
}
