//! FreeBSD's hypervisor: the `bhyve`, `bhyveload` and `bhyvectl` command lines of a
//! [`VmConfig`], and a VM's lifecycle through the [`Executor`].
//!
//! A [`BhyvePlan`] ([`plan`]) holds, computed purely:
//!
//! - the `bhyve` argv: `-c CPUS -m MEMM -A -H -P -u -w` (ACPI tables, yield on `HLT`, exit on
//!   `PAUSE`, RTC in UTC, ignore unimplemented MSRs), `hostbridge` in slot 0, an `ahci-cd` for
//!   the ISO, `virtio-blk` per disk (zvols, `/dev/zvol/POOL/...`), `virtio-net` on the tap
//!   with its MAC, `virtio-console` with the agent's port ([`AGENT_PORT`]) on a unix socket,
//!   `lpc` in slot 31 with `com1` on the VM's nmdm device (`/dev/nmdm-NAME.1A`; the console
//!   is attached on the `B` side) and, for UEFI, `-l bootrom,CODE,VARS`;
//! - `bhyveload` for FreeBSD guests booted without UEFI (`firmware = "bios"` on a disk);
//! - the tap's name, the bridge it joins, the pid file and log of the `daemon(8)` that runs
//!   `bhyve` detached.
//!
//! [`Bhyve::create`] runs: `ifconfig tap create` (which prints the new `tapN`), its rename to
//! the config's tap name, `ifconfig BRIDGE addm TAP`, `ifconfig TAP up`; then `bhyveload`;
//! then `daemon -f -o LOG -p PIDFILE bhyve ...`. When a step fails, what was done is undone in
//! reverse ([`Progress`], [`undo_cmds`]): `bhyvectl --destroy --vm=NAME` once the kernel may
//! hold the VM, `ifconfig TAP destroy` (which also removes it from the bridge) once the tap
//! exists. [`teardown_cmds`] is the same list for a whole VM. [`Bhyve::prepare`] is the
//! same without the start, for a supervisor that runs `bhyve` itself
//! ([`crate::bhyve_runtime`]).
//!
//! Direct kernel boots are QEMU's: bhyve boots a disk or an ISO, through UEFI or `bhyveload`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use warren_exec::{Cmd, ExecError, Executor};

use crate::config::{path_str, Boot, Disk, DiskFormat, Firmware, VmConfig, AGENT_PORT};
use crate::{invalid, Result, VmError};

/// The UEFI firmware of the `edk2-bhyve` package.
pub const BHYVE_UEFI: &str = "/usr/local/share/uefi-firmware/BHYVE_UEFI.fd";
/// Its variable store template; each VM gets its own copy.
pub const BHYVE_UEFI_VARS: &str = "/usr/local/share/uefi-firmware/BHYVE_UEFI_VARS.fd";

/// The host side of a VM's console (bhyve's `com1`).
pub fn nmdm_host(name: &str) -> String {
    format!("/dev/nmdm-{name}.1A")
}

/// The side of the console an operator attaches to (`cu -l`).
pub fn nmdm_console(name: &str) -> String {
    format!("/dev/nmdm-{name}.1B")
}

/// Everything [`Bhyve::create`] runs for one VM, computed purely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BhyvePlan {
    pub name: String,
    /// The tap the VM's NIC uses, if it has one.
    pub tap: Option<String>,
    /// `bhyveload`, for guests booted without UEFI.
    pub load: Option<Cmd>,
    /// `bhyve ...`, as run under `daemon(8)`.
    pub bhyve: Cmd,
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

/// The disk bhyveload reads the guest's loader from, and the others.
fn boot_media(c: &VmConfig) -> Result<(Option<&Path>, Vec<&Disk>)> {
    let mut disks = Vec::new();
    let iso = match &c.boot {
        Boot::Kernel { .. } => {
            return Err(invalid(
                "boot",
                "bhyve boots a disk or an ISO; a direct kernel boot needs QEMU",
            ))
        }
        Boot::Disk(d) => {
            disks.push(d);
            None
        }
        Boot::Iso { iso, disk } => {
            disks.extend(disk);
            Some(iso.as_path())
        }
    };
    disks.extend(&c.disks);
    for (i, d) in disks.iter().enumerate() {
        if d.format != DiskFormat::Raw {
            return Err(invalid(
                "format",
                format!(
                    "disk {i} ({}): bhyve takes raw images and zvols, not qcow2",
                    d.path.display()
                ),
            ));
        }
    }
    Ok((iso, disks))
}

/// The `bhyve` argv after the program.
pub fn bhyve_args(c: &VmConfig) -> Result<Vec<String>> {
    c.validate()?;
    let (iso, disks) = boot_media(c)?;
    let mut a: Vec<String> = vec![
        "-c".into(),
        c.cpus.to_string(),
        "-m".into(),
        format!("{}M", c.memory_mib),
        "-A".into(),
        "-H".into(),
        "-P".into(),
        "-u".into(),
        "-w".into(),
        "-s".into(),
        "0,hostbridge".into(),
    ];
    let mut slot = 2u32;
    let mut dev = |a: &mut Vec<String>, what: String| -> Result<()> {
        if slot > 30 {
            return Err(invalid(
                "disks",
                "more devices than bhyve's PCI slots 2-30 hold",
            ));
        }
        a.push("-s".into());
        a.push(format!("{slot},{what}"));
        slot += 1;
        Ok(())
    };
    if let Some(iso) = iso {
        dev(&mut a, format!("ahci-cd,{}", path_str(iso)))?;
    }
    for d in &disks {
        let mut v = format!("virtio-blk,{}", path_str(&d.path));
        if d.readonly {
            v.push_str(",ro");
        }
        dev(&mut a, v)?;
    }
    if let Some(n) = &c.nic {
        dev(&mut a, format!("virtio-net,{},mac={}", n.tap, n.mac))?;
    }
    if let Some(agent) = &c.agent {
        dev(
            &mut a,
            format!("virtio-console,{AGENT_PORT}={}", path_str(agent)),
        )?;
    }
    a.extend(["-s".into(), "31,lpc".into()]);
    a.extend(["-l".into(), format!("com1,{}", nmdm_host(&c.name))]);
    if let Firmware::Uefi { code, vars } = &c.firmware {
        a.extend([
            "-l".into(),
            format!("bootrom,{},{}", path_str(code), path_str(vars)),
        ]);
    }
    a.push(c.name.clone());
    Ok(a)
}

/// `bhyveload -c CONSOLE -m MEMM -d DISK NAME`: loads a FreeBSD guest's kernel from its disk.
pub fn bhyveload_cmd(c: &VmConfig) -> Result<Cmd> {
    c.validate()?;
    let (iso, disks) = boot_media(c)?;
    let Some(disk) = disks.first().filter(|_| iso.is_none()) else {
        return Err(invalid(
            "boot",
            "bhyveload boots from a disk, not an ISO: use uefi",
        ));
    };
    Ok(Cmd::new("bhyveload").args([
        "-c".to_string(),
        nmdm_host(&c.name),
        "-m".into(),
        format!("{}M", c.memory_mib),
        "-d".into(),
        path_str(&disk.path).to_string(),
        c.name.clone(),
    ]))
}

/// `bhyvectl --destroy --vm=NAME`: removes the VM from the kernel.
pub fn destroy_cmd(name: &str) -> Result<Cmd> {
    crate::config::validate_name(name)?;
    Ok(Cmd::new("bhyvectl").args(["--destroy".to_string(), format!("--vm={name}")]))
}

/// `pkill -TERM -F PIDFILE`: bhyve turns SIGTERM into an ACPI power button press.
pub fn poweroff_cmd(pidfile: &Path) -> Cmd {
    Cmd::new("pkill").args(["-TERM", "-F"]).arg(pidfile)
}

/// The host preparation, run once: the `vmm` and `nmdm` modules, taps up when opened.
pub fn prepare_host_cmds() -> Vec<Cmd> {
    vec![
        Cmd::new("kldload").args(["-n", "vmm"]),
        Cmd::new("kldload").args(["-n", "nmdm"]),
        Cmd::new("sysctl").arg("net.link.tap.up_on_open=1"),
    ]
}

/// The plan for `c`: its pid file and bhyve's log live in `run_dir`.
pub fn plan(c: &VmConfig, run_dir: &Path) -> Result<BhyvePlan> {
    let args = bhyve_args(c)?;
    crate::config::check_path("run_dir", run_dir)?;
    let load = match c.firmware {
        Firmware::Bios => Some(bhyveload_cmd(c)?),
        Firmware::Uefi { .. } => None,
    };
    Ok(BhyvePlan {
        name: c.name.clone(),
        tap: c.nic.as_ref().map(|n| n.tap.clone()),
        load,
        bhyve: Cmd::new("bhyve").args(args),
        pidfile: run_dir.join(format!("{}.pid", c.name)),
        log: run_dir.join(format!("{}.bhyve.log", c.name)),
    })
}

/// `daemon -f -o LOG -p PIDFILE bhyve ...`: starts bhyve detached and returns.
pub fn start_cmd(p: &BhyvePlan) -> Cmd {
    let mut argv = vec![p.bhyve.program.clone().into()];
    argv.extend(p.bhyve.args.iter().cloned());
    Cmd::new("daemon")
        .arg("-f")
        .arg("-o")
        .arg(&p.log)
        .arg("-p")
        .arg(&p.pidfile)
        .args(argv)
}

/// How far [`Bhyve::create`] got: what [`undo_cmds`] removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The tap as it is named now (`tapN` before its rename).
    pub tap: Option<String>,
    /// The kernel may hold the VM (bhyveload or bhyve ran, even if it failed).
    pub vm: bool,
}

/// The undo of what `done` says was made, in reverse order.
pub fn undo_cmds(p: &BhyvePlan, done: &Progress) -> Result<Vec<Cmd>> {
    let mut cmds = Vec::new();
    if done.vm {
        cmds.push(destroy_cmd(&p.name)?);
    }
    if let Some(t) = &done.tap {
        cmds.push(Cmd::new("ifconfig").args([t.as_str(), "destroy"]));
    }
    Ok(cmds)
}

/// Everything that removes a VM made from `p`.
pub fn teardown_cmds(p: &BhyvePlan) -> Result<Vec<Cmd>> {
    undo_cmds(
        p,
        &Progress {
            tap: p.tap.clone(),
            vm: true,
        },
    )
}

/// Whether a failed teardown command found its object already gone.
pub fn is_gone(e: &ExecError) -> bool {
    let s = e.stderr();
    ["does not exist", "No such", "not found"]
        .iter()
        .any(|m| s.contains(m))
}

/// Runs VM lifecycles through an executor.
pub struct Bhyve {
    exec: Arc<dyn Executor>,
    bridge: String,
}

impl std::fmt::Debug for Bhyve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bhyve")
            .field("bridge", &self.bridge)
            .finish_non_exhaustive()
    }
}

impl Bhyve {
    pub fn new(exec: Arc<dyn Executor>, bridge: &str) -> Result<Self> {
        crate::config::validate_ifname("bridge", bridge)?;
        Ok(Bhyve {
            exec,
            bridge: bridge.to_string(),
        })
    }

    fn run(&self, c: &Cmd) -> Result<()> {
        self.exec.run(c).map(drop).map_err(Into::into)
    }

    /// Creates the tap, loads and starts the VM; on failure undoes every step done.
    pub fn create(&self, p: &BhyvePlan) -> Result<()> {
        self.steps(p, true)
    }

    /// Creates the tap and loads the VM (bhyveload), without starting `bhyve`: for a
    /// supervisor that runs `p.bhyve` itself. On failure undoes every step done.
    pub fn prepare(&self, p: &BhyvePlan) -> Result<()> {
        self.steps(p, false)
    }

    fn steps(&self, p: &BhyvePlan, start: bool) -> Result<()> {
        let mut done = Progress::default();
        let result = self.create_steps(p, &mut done, start);
        if result.is_err() {
            // Undo failures are ignored: the original error is what is reported.
            for c in undo_cmds(p, &done)? {
                let _ = self.exec.run(&c);
            }
        }
        result
    }

    fn create_steps(&self, p: &BhyvePlan, done: &mut Progress, start: bool) -> Result<()> {
        if let Some(tap) = &p.tap {
            let out = self
                .exec
                .run(&Cmd::new("ifconfig").args(["tap", "create"]))?;
            let created = out.stdout_str().trim().to_string();
            if !created.starts_with("tap") || created.contains(char::is_whitespace) {
                return Err(VmError::Output {
                    command: "ifconfig tap create".into(),
                    reason: format!("printed {created:?}, not a tap's name"),
                });
            }
            done.tap = Some(created.clone());
            self.run(&Cmd::new("ifconfig").args([created.as_str(), "name", tap]))?;
            done.tap = Some(tap.clone());
            self.run(&Cmd::new("ifconfig").args([self.bridge.as_str(), "addm", tap]))?;
            self.run(&Cmd::new("ifconfig").args([tap.as_str(), "up"]))?;
        }
        if let Some(load) = &p.load {
            done.vm = true;
            self.run(load)?;
        }
        if !start {
            return Ok(());
        }
        done.vm = true;
        self.run(&start_cmd(p))
    }

    /// Removes the VM and its tap; what is already gone is not an error.
    pub fn destroy(&self, p: &BhyvePlan) -> Result<()> {
        for c in teardown_cmds(p)? {
            match self.exec.run(&c) {
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
