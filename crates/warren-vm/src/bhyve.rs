//! FreeBSD's hypervisor: the `bhyve`, `bhyveload`, `grub-bhyve` and `bhyvectl` command lines of a
//! [`VmConfig`], and a VM's lifecycle through the [`Executor`].
//!
//! A [`BhyvePlan`] ([`plan`]) holds, computed purely:
//!
//! - the `bhyve` argv: `-c CPUS -m MEMM -A -H -P -u -w` (ACPI tables, yield on `HLT`, exit on
//!   `PAUSE`, RTC in UTC, ignore unimplemented MSRs), `hostbridge` in slot 0, an `ahci-cd` for
//!   the ISO, `virtio-blk` per disk (zvols, `/dev/zvol/POOL/...`), `virtio-9p` per share,
//!   `virtio-net` on the tap
//!   with its MAC, `virtio-console` with the agent's port ([`AGENT_PORT`]) on a unix socket,
//!   `lpc` in slot 31 with `com1` on the VM's nmdm device (`/dev/nmdm-NAME.1A`; the console
//!   is attached on the `B` side) and, for UEFI, `-l bootrom,CODE,VARS`;
//! - `bhyveload` for FreeBSD guests booted without UEFI (`firmware = "bios"` on a disk), or
//!   `grub-bhyve` for a microVM;
//! - the tap's name, the bridge it joins, the pid file and log of the `daemon(8)` that runs
//!   `bhyve` detached.
//!
//! [`Bhyve::create`] runs: `ifconfig tap create` (which prints the new `tapN`), its rename to
//! the config's tap name, `ifconfig BRIDGE addm TAP`, `ifconfig TAP up`; then `bhyveload`
//! (or, for a microVM, the grub files written and `grub-bhyve`);
//! then `daemon -f -o LOG -p PIDFILE bhyve ...`. When a step fails, what was done is undone in
//! reverse ([`Progress`], [`undo_cmds`]): `bhyvectl --destroy --vm=NAME` once the kernel may
//! hold the VM, `ifconfig TAP destroy` (which also removes it from the bridge) once the tap
//! exists. [`teardown_cmds`] is the same list for a whole VM. [`Bhyve::prepare`] is the
//! same without the start, for a supervisor that runs `bhyve` itself
//! ([`crate::bhyve_runtime`]).
//!
//! bhyve cannot boot a Linux kernel itself: a microVM ([`Boot::Kernel`]) is loaded by
//! `grub-bhyve` (package `grub2-bhyve`) instead of `bhyveload`, from host files ([`GrubBoot`]):
//! a `device.map` that maps no guest disk (the microVM has none to boot from) and a
//! `grub/grub.cfg` whose `linux (host)/…` and `initrd (host)/…` read the kernel and the
//! initramfs from the host (`-r host`), then `boot`; `halt` after it ends `grub-bhyve` instead
//! of leaving it at its prompt when the kernel did not load. Its files are host directories
//! shared over virtio-9p ([`crate::config::Share`], `-s N,virtio-9p,TAG=PATH[,ro]`), which the
//! guest agent mounts by tag.

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
    /// `bhyveload`, for guests booted without UEFI, or `grub-bhyve` for a microVM.
    pub load: Option<Cmd>,
    /// The files `grub-bhyve` reads, for a microVM.
    pub grub: Option<GrubBoot>,
    /// `bhyve ...`, as run under `daemon(8)`.
    pub bhyve: Cmd,
    pub pidfile: PathBuf,
    pub log: PathBuf,
}

/// The disk bhyveload reads the guest's loader from, and the others.
fn boot_media(c: &VmConfig) -> Result<(Option<&Path>, Vec<&Disk>)> {
    let mut disks = Vec::new();
    let iso = match &c.boot {
        // Loaded by grub-bhyve from host files: no boot disk.
        Boot::Kernel { .. } => None,
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
    for sh in &c.shares {
        let mut v = format!("virtio-9p,{}={}", sh.tag, path_str(&sh.path));
        if sh.readonly {
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

/// What `grub-bhyve` reads to load a microVM's kernel and initramfs from the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubBoot {
    /// `RUN_DIR/device.map` and its text.
    pub device_map: PathBuf,
    pub device_map_text: String,
    /// `RUN_DIR/grub/grub.cfg` (`grub-bhyve -d RUN_DIR/grub`) and its text.
    pub script: PathBuf,
    pub script_text: String,
}

impl GrubBoot {
    /// Writes both files.
    pub fn write(&self) -> Result<()> {
        for (p, text) in [
            (&self.device_map, &self.device_map_text),
            (&self.script, &self.script_text),
        ] {
            let io = |e: std::io::Error| invalid("grub", format!("{}: {e}", p.display()));
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            std::fs::write(p, text).map_err(io)?;
        }
        Ok(())
    }
}

/// The grub files of a microVM whose run directory is `run_dir`.
pub fn grub_boot(c: &VmConfig, run_dir: &Path) -> Result<GrubBoot> {
    c.validate()?;
    let Boot::Kernel {
        kernel,
        initrd,
        cmdline,
    } = &c.boot
    else {
        return Err(invalid("boot", "grub-bhyve loads a microVM's kernel"));
    };
    crate::config::check_path("run_dir", run_dir)?;
    // grub's parser: a word in single quotes is taken literally.
    let quote = |s: &str| -> Result<String> {
        if s.contains('\'') {
            return Err(invalid("cmdline", format!("{s:?} holds a single quote")));
        }
        Ok(format!("'{s}'"))
    };
    let mut script = format!("linux {}", quote(&format!("(host){}", path_str(kernel)))?);
    for w in cmdline.split_whitespace() {
        script.push(' ');
        script.push_str(&quote(w)?);
    }
    script.push('\n');
    if let Some(i) = initrd {
        script.push_str(&format!(
            "initrd {}\n",
            quote(&format!("(host){}", path_str(i)))?
        ));
    }
    script.push_str("boot\nhalt\n");
    Ok(GrubBoot {
        device_map: run_dir.join("device.map"),
        device_map_text: "# warren: the microVM's kernel and initramfs are read from (host)\n"
            .into(),
        script: run_dir.join("grub").join("grub.cfg"),
        script_text: script,
    })
}

/// `grub-bhyve -m DEVICE_MAP -r host -d GRUB_DIR -M MEMM -c CONSOLE NAME`: loads a microVM's
/// kernel and initramfs from the host into the VM.
pub fn grub_cmd(c: &VmConfig, g: &GrubBoot) -> Cmd {
    let dir = g.script.parent().unwrap_or(Path::new("/"));
    Cmd::new("grub-bhyve")
        .arg("-m")
        .arg(&g.device_map)
        .args(["-r", "host", "-d"])
        .arg(dir)
        .args([
            "-M".to_string(),
            format!("{}M", c.memory_mib),
            "-c".into(),
            nmdm_host(&c.name),
            c.name.clone(),
        ])
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
    let (load, grub) = match (&c.boot, &c.firmware) {
        (Boot::Kernel { .. }, _) => {
            let g = grub_boot(c, run_dir)?;
            (Some(grub_cmd(c, &g)), Some(g))
        }
        (_, Firmware::Bios) => (Some(bhyveload_cmd(c)?), None),
        (_, Firmware::Uefi { .. }) => (None, None),
    };
    Ok(BhyvePlan {
        name: c.name.clone(),
        tap: c.nic.as_ref().map(|n| n.tap.clone()),
        load,
        grub,
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
        if let Some(g) = &p.grub {
            g.write()?;
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
