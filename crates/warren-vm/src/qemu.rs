//! The `qemu-system-x86_64` command line of a [`VmConfig`], for Debian 12's QEMU 7.2.
//!
//! Two machines, chosen by how the VM boots ([`Machine::for_config`]):
//!
//! - **`microvm`** for kernel boots: `-M microvm,x-option-roms=off,pit=off,pic=off,
//!   isa-serial=on,rtc=on` under KVM — no PCI, no firmware option ROMs, no legacy timers;
//!   devices are virtio-mmio (`virtio-blk-device`, `virtio-net-device`,
//!   `virtio-serial-device`), which QEMU announces to the kernel itself (ACPI and
//!   `virtio_mmio.device=` on the command line). The console is the one ISA serial port
//!   (`ttyS0`). `-no-reboot`: a guest reboot or panic ends QEMU and the supervisor decides what
//!   happens next. Under TCG the guest has no kvmclock, HPET or ACPI PM timer: measured with
//!   Debian 12's kernel, it hangs calibrating its TSC with or without the PIT. So under TCG
//!   the PIT stays on (`pit=on`, the only tick source before the local APIC timer is set up)
//!   and the kernel command line gets `tsc_early_khz=` with the host's TSC frequency (TCG's
//!   guest TSC runs at the host's rate); with both it boots, with either alone it does not.
//! - **`q35`** for disk images and installer ISOs: SeaBIOS (QEMU's default) or OVMF as two
//!   pflash drives (read-only code, the VM's own variable store), the ISO on `ide-cd` booted
//!   first, disks on `virtio-blk-pci`, `virtio-net-pci`, `virtio-serial-pci`.
//!
//! Common to both: `-nodefaults -no-user-config -nographic` (no device, config file or display
//! QEMU would add on its own), the serial console on a `-chardev` (a unix socket server with an
//! optional `logfile=`, or a plain file), the agent's `virtserialport` named
//! [`AGENT_PORT`] on a unix socket server, the tap NIC with `script=no,downscript=no` (warren
//! creates and bridges the tap), and `-qmp unix:PATH,server=on,wait=off`. QEMU is not
//! daemonized: the workload's shim is its parent and supervisor.
//!
//! Option values are escaped as QEMU's option parser wants (a `,` in a path doubled).

use std::path::Path;

use warren_exec::Cmd;

use crate::config::{path_str, Accel, Boot, Disk, Firmware, VmConfig, AGENT_PORT};
use crate::Result;

/// The emulator binary.
pub const QEMU: &str = "qemu-system-x86_64";

/// The QEMU machine a config runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    Microvm,
    Q35,
}

impl Machine {
    /// `microvm` for kernel boots, `q35` for firmware boots.
    pub fn for_config(c: &VmConfig) -> Machine {
        if c.is_micro() {
            Machine::Microvm
        } else {
            Machine::Q35
        }
    }

    /// The name `-machine help` lists it under.
    pub fn name(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Q35 => "q35",
        }
    }
}

/// The `-M` value of the microVM machine under KVM.
pub const MICROVM_MACHINE: &str = "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=on,rtc=on";

/// The `-M` value of the microVM machine under TCG: the PIT is the guest's tick source.
pub const MICROVM_MACHINE_TCG: &str =
    "microvm,x-option-roms=off,pit=on,pic=off,isa-serial=on,rtc=on";

/// The microVM machine for `accel`.
pub fn microvm_machine(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => MICROVM_MACHINE,
        Accel::Tcg => MICROVM_MACHINE_TCG,
    }
}

/// The kernel command line QEMU passes: the config's, plus `tsc_early_khz=` for a microVM
/// under TCG (unless the config already sets it).
pub fn kernel_cmdline(c: &VmConfig) -> Option<String> {
    let Boot::Kernel { cmdline, .. } = &c.boot else {
        return None;
    };
    let mut line = cmdline.clone();
    if let (Accel::Tcg, Some(khz)) = (c.accel, c.tsc_khz) {
        if !line
            .split_whitespace()
            .any(|w| w.starts_with("tsc_early_khz="))
        {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&format!("tsc_early_khz={khz}"));
        }
    }
    Some(line)
}

/// A value inside a QEMU option list, with `,` doubled.
pub fn escape(v: &str) -> String {
    v.replace(',', ",,")
}

fn esc_path(p: &Path) -> String {
    escape(path_str(p))
}

/// The argv after the program for `c` (validated first).
pub fn args(c: &VmConfig) -> Result<Vec<String>> {
    c.validate()?;
    if !c.shares.is_empty() {
        return Err(crate::invalid(
            "shares",
            "QEMU microVMs get their files as disks; virtio-9p shares are bhyve's",
        ));
    }
    let machine = Machine::for_config(c);
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    push(&["-name", &format!("{},debug-threads=on", escape(&c.name))]);
    match machine {
        Machine::Microvm => push(&["-M", microvm_machine(c.accel)]),
        Machine::Q35 => push(&["-M", "q35"]),
    }
    push(&["-accel", c.accel.as_str()]);
    push(&[
        "-cpu",
        match c.accel {
            Accel::Kvm => "host",
            Accel::Tcg => "max",
        },
    ]);
    push(&["-smp", &c.cpus.to_string()]);
    push(&["-m", &format!("{}M", c.memory_mib)]);
    push(&["-nodefaults", "-no-user-config", "-nographic"]);
    if machine == Machine::Microvm {
        push(&["-no-reboot"]);
    }

    // Firmware and boot media.
    let mut disks: Vec<&Disk> = Vec::new();
    match &c.boot {
        Boot::Kernel { kernel, initrd, .. } => {
            push(&["-kernel", path_str(kernel)]);
            if let Some(i) = initrd {
                push(&["-initrd", path_str(i)]);
            }
            push(&["-append", &kernel_cmdline(c).unwrap_or_default()]);
        }
        Boot::Disk(d) => disks.push(d),
        Boot::Iso { iso, disk } => {
            push(&[
                "-drive",
                &format!(
                    "id=cd0,if=none,media=cdrom,readonly=on,format=raw,file={}",
                    esc_path(iso)
                ),
            ]);
            push(&["-device", "ide-cd,drive=cd0,bus=ide.0,bootindex=0"]);
            if let Some(d) = disk {
                disks.push(d);
            }
        }
    }
    if let Firmware::Uefi { code, vars } = &c.firmware {
        push(&[
            "-drive",
            &format!(
                "if=pflash,unit=0,format=raw,readonly=on,file={}",
                esc_path(code)
            ),
        ]);
        push(&[
            "-drive",
            &format!("if=pflash,unit=1,format=raw,file={}", esc_path(vars)),
        ]);
    }
    disks.extend(&c.disks);

    // Console.
    let console = match (&c.console.socket, &c.console.log) {
        (Some(s), log) => {
            let mut v = format!("socket,id=console,path={},server=on,wait=off", esc_path(s));
            if let Some(l) = log {
                v.push_str(&format!(",logfile={}", esc_path(l)));
            }
            v
        }
        (None, Some(l)) => format!("file,id=console,path={}", esc_path(l)),
        (None, None) => unreachable!("validate requires a console socket or log"),
    };
    push(&["-chardev", &console]);
    push(&["-serial", "chardev:console"]);

    let (blk, net, serial) = match machine {
        Machine::Microvm => (
            "virtio-blk-device",
            "virtio-net-device",
            "virtio-serial-device",
        ),
        Machine::Q35 => ("virtio-blk-pci", "virtio-net-pci", "virtio-serial-pci"),
    };
    let boots_from_disk = matches!(c.boot, Boot::Disk(_) | Boot::Iso { disk: Some(_), .. });
    for (i, d) in disks.iter().enumerate() {
        let mut drive = format!(
            "id=disk{i},if=none,format={},file={}",
            d.format.as_str(),
            esc_path(&d.path)
        );
        if d.readonly {
            drive.push_str(",readonly=on");
        }
        push(&["-drive", &drive]);
        let mut dev = format!("{blk},drive=disk{i}");
        if i == 0 && boots_from_disk {
            dev.push_str(",bootindex=1");
        }
        push(&["-device", &dev]);
    }
    if let Some(n) = &c.nic {
        push(&[
            "-netdev",
            &format!("tap,id=net0,ifname={},script=no,downscript=no", n.tap),
        ]);
        push(&["-device", &format!("{net},netdev=net0,mac={}", n.mac)]);
    }
    if let Some(agent) = &c.agent {
        push(&["-device", &format!("{serial},id=vser0")]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=agent,path={},server=on,wait=off",
                esc_path(agent)
            ),
        ]);
        push(&[
            "-device",
            &format!("virtserialport,bus=vser0.0,chardev=agent,name={AGENT_PORT}"),
        ]);
    }
    if let Some(q) = &c.qmp {
        push(&["-qmp", &format!("unix:{},server=on,wait=off", esc_path(q))]);
    }
    Ok(a)
}

/// The whole command for `c`.
pub fn command(c: &VmConfig) -> Result<Cmd> {
    Ok(Cmd::new(QEMU).args(args(c)?))
}

/// `qemu-system-x86_64 -accel help`.
pub fn accel_help_cmd() -> Cmd {
    Cmd::new(QEMU).args(["-accel", "help"])
}

/// `qemu-system-x86_64 -machine help`.
pub fn machine_help_cmd() -> Cmd {
    Cmd::new(QEMU).args(["-machine", "help"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Console, Mac, Nic, OVMF_CODE};

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut c = VmConfig::kernel("a", "/k", "");
        c.tsc_khz = Some(1000);
        c.console.log = Some("/run/a,b/console.log".into());
        let a = args(&c).unwrap();
        assert!(
            a.contains(&"file,id=console,path=/run/a,,b/console.log".to_string()),
            "{a:?}"
        );
    }

    #[test]
    fn tcg_microvms_get_the_pit_and_the_tsc_frequency() {
        let mut c = VmConfig::kernel("a", "/k", "console=ttyS0");
        c.tsc_khz = Some(2_596_150);
        c.console.log = Some("/l".into());
        let a = args(&c).unwrap();
        assert!(a.contains(&MICROVM_MACHINE_TCG.to_string()), "{a:?}");
        assert!(
            a.contains(&"console=ttyS0 tsc_early_khz=2596150".to_string()),
            "{a:?}"
        );
        c.accel = Accel::Kvm;
        let a = args(&c).unwrap();
        assert!(a.contains(&MICROVM_MACHINE.to_string()), "{a:?}");
        assert!(a.contains(&"console=ttyS0".to_string()), "{a:?}");
        c.accel = Accel::Tcg;
        c.boot = Boot::Kernel {
            kernel: "/k".into(),
            initrd: None,
            cmdline: "tsc_early_khz=5".into(),
        };
        assert_eq!(kernel_cmdline(&c).unwrap(), "tsc_early_khz=5");
    }

    #[test]
    fn a_bad_config_builds_nothing() {
        let mut c = VmConfig::kernel("a", "/k", "");
        c.tsc_khz = Some(1000);
        c.console = Console::default();
        assert_eq!(args(&c).unwrap_err().field(), Some("console"));
    }

    #[test]
    fn microvm_uses_mmio_devices_and_q35_pci() {
        let mut c = VmConfig::kernel("a", "/k", "");
        c.tsc_khz = Some(1000);
        c.console.log = Some("/l".into());
        c.disks.push(Disk::raw("/d"));
        c.nic = Some(Nic {
            tap: "wv0".into(),
            mac: Mac::for_name("a"),
        });
        c.agent = Some("/agent".into());
        let micro = args(&c).unwrap().join(" ");
        assert!(micro.contains("virtio-blk-device,drive=disk0"), "{micro}");
        assert!(!micro.contains("-pci"), "{micro}");
        assert_eq!(Machine::for_config(&c), Machine::Microvm);
        c.boot = Boot::Disk(Disk::raw("/root.img"));
        c.firmware = Firmware::Uefi {
            code: OVMF_CODE.into(),
            vars: "/vars.fd".into(),
        };
        let full = args(&c).unwrap().join(" ");
        assert!(full.contains("-M q35"), "{full}");
        assert!(
            full.contains("virtio-blk-pci,drive=disk0,bootindex=1"),
            "{full}"
        );
        assert!(full.contains("virtio-blk-pci,drive=disk1 "), "{full}");
        assert!(!full.contains("-device virtio-blk-device"), "{full}");
        assert!(!full.contains("-kernel"), "{full}");
    }
}
