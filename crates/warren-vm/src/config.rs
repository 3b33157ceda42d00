//! [`VmConfig`]: everything a hypervisor needs to run one VM, independent of the workload
//! model and of the hypervisor, and its validation.
//!
//! A VM boots one of three ways ([`Boot`]): a Linux kernel with an initrd and a command line
//! (a microVM), a disk image (raw or qcow2), or an installer ISO (with an optional disk to
//! install onto). Its other devices are virtio-blk disks backed by files (or zvols), host
//! directories shared over virtio-9p ([`Share`], bhyve's; the guest mounts them by tag), at most
//! one NIC on a tap device, the agent channel (a virtio-serial port named [`AGENT_PORT`] on a unix
//! socket), the serial console (a unix socket and/or a log file) and, for QEMU, the QMP socket.
//!
//! [`VmConfig::validate`] checks every value a command line would carry and names the field of
//! the first bad one ([`crate::VmError::Invalid`]); the builders call it first.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::{invalid, Result, VmError};

/// The name of the virtio-serial port the guest agent talks on.
pub const AGENT_PORT: &str = "org.warren.agent.0";

/// The longest unix socket path (`sun_path` holds 108 bytes with its NUL on Linux, 104 on
/// FreeBSD; the smaller bound keeps one config valid on both).
pub const MAX_SOCKET_PATH: usize = 103;

/// The longest kernel command line x86 Linux accepts (`COMMAND_LINE_SIZE` minus the NUL).
pub const MAX_CMDLINE: usize = 2047;

/// Smallest guest memory warren starts a VM with, in MiB.
pub const MIN_MEMORY_MIB: u64 = 16;

/// How a disk image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFormat {
    #[default]
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

impl FromStr for DiskFormat {
    type Err = VmError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            other => Err(invalid("format", format!("{other:?} is not raw or qcow2"))),
        }
    }
}

/// A virtio-blk disk backed by a file, a block device or a zvol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub format: DiskFormat,
    pub readonly: bool,
}

impl Disk {
    pub fn raw(path: impl Into<PathBuf>) -> Self {
        Disk {
            path: path.into(),
            format: DiskFormat::Raw,
            readonly: false,
        }
    }
}

/// How the VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// A Linux kernel loaded directly (a microVM).
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
    /// A bootable disk image; it is the first disk the guest sees.
    Disk(Disk),
    /// An installer ISO on a CD-ROM, booted first, with an optional disk to install onto.
    Iso { iso: PathBuf, disk: Option<Disk> },
}

/// The firmware of a full VM.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Firmware {
    /// SeaBIOS on QEMU (its built-in default), the kernel loader on microVMs.
    #[default]
    Bios,
    /// UEFI: read-only code and a per-VM writable copy of the variable store.
    Uefi { code: PathBuf, vars: PathBuf },
}

/// Debian's OVMF code image (package `ovmf`), 4 MiB flash layout.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The variable store template matching [`OVMF_CODE`]; each VM gets its own copy.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Which accelerator runs the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    Kvm,
    #[default]
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A unicast Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A stable, locally administered unicast address derived from a VM's name (`52:54:00`
    /// followed by three bytes of the name's FNV-1a hash).
    pub fn for_name(name: &str) -> Mac {
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        let [_, a, b, c] = h.to_be_bytes();
        Mac([0x52, 0x54, 0x00, a, b, c])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = VmError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            invalid(
                "mac",
                format!("{s:?} is not six hex octets like 52:54:00:12:34:56"),
            )
        };
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (o, p) in m.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if m[0] & 1 == 1 {
            return Err(invalid("mac", format!("{s} is a multicast address")));
        }
        Ok(Mac(m))
    }
}

/// The VM's network interface: a tap device on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub tap: String,
    pub mac: Mac,
}

/// A host directory the guest mounts over virtio-9p (`mount -t 9p TAG`), by its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The mount tag: 1 to 31 letters, digits, `-` or `_`.
    pub tag: String,
    pub path: PathBuf,
    pub readonly: bool,
}

impl Share {
    pub fn new(tag: &str, path: impl Into<PathBuf>, readonly: bool) -> Share {
        Share {
            tag: tag.to_string(),
            path: path.into(),
            readonly,
        }
    }
}

/// Where the serial console goes: a unix socket to attach to, a log of everything it printed,
/// or both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Console {
    pub socket: Option<PathBuf>,
    pub log: Option<PathBuf>,
}

/// One VM, as a hypervisor runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// The VM's name (also the bhyve VM name): letters, digits, `-`, `_` and `.`.
    pub name: String,
    pub cpus: u32,
    pub memory_mib: u64,
    pub boot: Boot,
    pub firmware: Firmware,
    /// Further virtio-blk disks, after the boot disk if any.
    pub disks: Vec<Disk>,
    /// Host directories shared over virtio-9p (bhyve only).
    pub shares: Vec<Share>,
    pub nic: Option<Nic>,
    /// The unix socket of the agent's virtio-serial port ([`AGENT_PORT`]).
    pub agent: Option<PathBuf>,
    /// QEMU's QMP socket.
    pub qmp: Option<PathBuf>,
    pub console: Console,
    pub accel: Accel,
    /// The host's TSC frequency in kHz ([`crate::probe::host_tsc_khz`]). A microVM under TCG
    /// has no PIT-independent clock to calibrate its TSC against (no HPET, no ACPI PM timer,
    /// no kvmclock), so its kernel is told the frequency (`tsc_early_khz=`); required there.
    pub tsc_khz: Option<u64>,
}

impl VmConfig {
    /// A microVM booting `kernel`, with one CPU, 256 MiB and nothing attached.
    pub fn kernel(name: &str, kernel: impl Into<PathBuf>, cmdline: &str) -> Self {
        VmConfig {
            name: name.to_string(),
            cpus: 1,
            memory_mib: 256,
            boot: Boot::Kernel {
                kernel: kernel.into(),
                initrd: None,
                cmdline: cmdline.to_string(),
            },
            firmware: Firmware::Bios,
            disks: Vec::new(),
            shares: Vec::new(),
            nic: None,
            agent: None,
            qmp: None,
            console: Console::default(),
            accel: Accel::Tcg,
            tsc_khz: None,
        }
    }

    /// Whether this VM boots a kernel directly (a microVM) rather than through firmware.
    pub fn is_micro(&self) -> bool {
        matches!(self.boot, Boot::Kernel { .. })
    }

    /// Checks every value; the error names the first bad field.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        if self.cpus == 0 || self.cpus > 255 {
            return Err(invalid(
                "cpus",
                format!("{} is not between 1 and 255", self.cpus),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(invalid(
                "memory",
                format!(
                    "{} MiB is less than the {MIN_MEMORY_MIB} MiB a guest needs",
                    self.memory_mib
                ),
            ));
        }
        // Beyond 1 TiB is a typo, not a VM warren can place.
        if self.memory_mib > 1 << 20 {
            return Err(invalid(
                "memory",
                format!("{} MiB is more than 1 TiB", self.memory_mib),
            ));
        }
        match &self.boot {
            Boot::Kernel {
                kernel,
                initrd,
                cmdline,
            } => {
                check_path("kernel", kernel)?;
                if let Some(i) = initrd {
                    check_path("initrd", i)?;
                }
                if cmdline.len() > MAX_CMDLINE {
                    return Err(invalid(
                        "cmdline",
                        format!("{} bytes is longer than {MAX_CMDLINE}", cmdline.len()),
                    ));
                }
                if let Some(c) = cmdline.chars().find(|c| c.is_control()) {
                    return Err(invalid(
                        "cmdline",
                        format!("holds the control character {c:?}"),
                    ));
                }
                match self.tsc_khz {
                    None if self.accel == Accel::Tcg => {
                        return Err(invalid(
                            "tsc_khz",
                            "a microVM under tcg needs the host's TSC frequency: its kernel has nothing to calibrate against",
                        ))
                    }
                    Some(0) => return Err(invalid("tsc_khz", "0 kHz")),
                    _ => {}
                }
                if matches!(self.firmware, Firmware::Uefi { .. }) {
                    return Err(invalid(
                        "firmware",
                        "uefi boots a disk or an ISO, not a kernel",
                    ));
                }
            }
            Boot::Disk(d) => check_disk("disk", d)?,
            Boot::Iso { iso, disk } => {
                check_path("iso", iso)?;
                if let Some(d) = disk {
                    check_disk("disk", d)?;
                }
            }
        }
        if let Firmware::Uefi { code, vars } = &self.firmware {
            check_path("firmware.code", code)?;
            check_path("firmware.vars", vars)?;
        }
        for (i, d) in self.disks.iter().enumerate() {
            check_disk(&format!("disks[{i}]"), d)?;
        }
        let mut tags = std::collections::BTreeSet::new();
        for (i, s) in self.shares.iter().enumerate() {
            let field = format!("shares[{i}]");
            let ok = !s.tag.is_empty()
                && s.tag.len() <= 31
                && s.tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
            if !ok {
                return Err(invalid(
                    field,
                    format!("tag {:?} is not 1-31 letters, digits, '-' or '_'", s.tag),
                ));
            }
            if !tags.insert(s.tag.as_str()) {
                return Err(invalid(field, format!("tag {:?} is used twice", s.tag)));
            }
            check_path(&field, &s.path)?;
            if s.path.to_string_lossy().contains(',') {
                return Err(invalid(
                    field,
                    format!("{} holds a ',' (an option separator)", s.path.display()),
                ));
            }
        }
        if let Some(n) = &self.nic {
            validate_ifname("tap", &n.tap)?;
            if n.mac.0[0] & 1 == 1 {
                return Err(invalid("mac", format!("{} is a multicast address", n.mac)));
            }
        }
        if let Some(a) = &self.agent {
            check_socket("agent", a)?;
        }
        if let Some(q) = &self.qmp {
            check_socket("qmp", q)?;
        }
        if let Some(s) = &self.console.socket {
            check_socket("console.socket", s)?;
        }
        if let Some(l) = &self.console.log {
            check_path("console.log", l)?;
        }
        if self.console.socket.is_none() && self.console.log.is_none() {
            return Err(invalid(
                "console",
                "neither a socket nor a log: the console would go nowhere",
            ));
        }
        Ok(())
    }
}

/// A VM name: 1 to 31 letters, digits, `-`, `_` or `.`, starting with a letter or digit
/// (bhyve's VM names are limited to 31 characters).
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 31
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!("{name:?} is not 1-31 letters, digits, '-', '_' or '.' starting with a letter or digit"),
        ))
    }
}

/// A network interface name: 1 to 15 letters, digits, `-`, `_` or `.`.
pub fn validate_ifname(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{name:?} is not an interface name (1-15 letters, digits, '-', '_', '.')"),
        ))
    }
}

/// An absolute, UTF-8 path without control characters.
pub fn check_path(field: &str, p: &Path) -> Result<()> {
    let Some(s) = p.to_str() else {
        return Err(invalid(field, format!("{p:?} is not UTF-8")));
    };
    if !p.is_absolute() {
        return Err(invalid(field, format!("{s:?} is not an absolute path")));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(invalid(field, format!("{s:?} holds a control character")));
    }
    Ok(())
}

fn check_disk(field: &str, d: &Disk) -> Result<()> {
    check_path(field, &d.path)
}

fn check_socket(field: &str, p: &Path) -> Result<()> {
    check_path(field, p)?;
    let len = p.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(invalid(
            field,
            format!("a unix socket path of {len} bytes is longer than {MAX_SOCKET_PATH}"),
        ));
    }
    Ok(())
}

/// A path as the string a command line carries (validated configs only hold UTF-8 paths).
pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micro() -> VmConfig {
        let mut c = VmConfig::kernel("web", "/boot/vmlinuz", "console=ttyS0");
        c.tsc_khz = Some(2_596_150);
        c.console.log = Some("/run/warren/web/console.log".into());
        c
    }

    fn field_of(c: &VmConfig) -> String {
        c.validate().unwrap_err().field().unwrap().to_string()
    }

    #[test]
    fn a_good_config_validates() {
        micro().validate().unwrap();
    }

    #[test]
    fn each_bad_value_names_its_field() {
        type Change = Box<dyn Fn(&mut VmConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|c| c.name = "-x".into())),
            ("name", Box::new(|c| c.name = "a/b".into())),
            ("name", Box::new(|c| c.name = "x".repeat(32))),
            ("cpus", Box::new(|c| c.cpus = 0)),
            ("cpus", Box::new(|c| c.cpus = 256)),
            ("memory", Box::new(|c| c.memory_mib = 8)),
            ("memory", Box::new(|c| c.memory_mib = (1 << 20) + 1)),
            (
                "kernel",
                Box::new(|c| {
                    c.boot = Boot::Kernel {
                        kernel: "vmlinuz".into(),
                        initrd: None,
                        cmdline: String::new(),
                    }
                }),
            ),
            (
                "initrd",
                Box::new(|c| {
                    c.boot = Boot::Kernel {
                        kernel: "/k".into(),
                        initrd: Some("i.gz".into()),
                        cmdline: String::new(),
                    }
                }),
            ),
            (
                "cmdline",
                Box::new(|c| {
                    c.boot = Boot::Kernel {
                        kernel: "/k".into(),
                        initrd: None,
                        cmdline: "a\nb".into(),
                    }
                }),
            ),
            (
                "cmdline",
                Box::new(|c| {
                    c.boot = Boot::Kernel {
                        kernel: "/k".into(),
                        initrd: None,
                        cmdline: "x".repeat(MAX_CMDLINE + 1),
                    }
                }),
            ),
            (
                "firmware",
                Box::new(|c| {
                    c.firmware = Firmware::Uefi {
                        code: OVMF_CODE.into(),
                        vars: "/v".into(),
                    }
                }),
            ),
            (
                "disk",
                Box::new(|c| c.boot = Boot::Disk(Disk::raw("d.img"))),
            ),
            (
                "iso",
                Box::new(|c| {
                    c.boot = Boot::Iso {
                        iso: "x.iso".into(),
                        disk: None,
                    }
                }),
            ),
            (
                "firmware.vars",
                Box::new(|c| {
                    c.boot = Boot::Disk(Disk::raw("/d.img"));
                    c.firmware = Firmware::Uefi {
                        code: OVMF_CODE.into(),
                        vars: "vars.fd".into(),
                    }
                }),
            ),
            (
                "disks[1]",
                Box::new(|c| c.disks = vec![Disk::raw("/a"), Disk::raw("b")]),
            ),
            (
                "tap",
                Box::new(|c| {
                    c.nic = Some(Nic {
                        tap: "a-very-long-tap-name".into(),
                        mac: Mac::for_name("x"),
                    })
                }),
            ),
            (
                "mac",
                Box::new(|c| {
                    c.nic = Some(Nic {
                        tap: "tap0".into(),
                        mac: Mac([1, 0, 0, 0, 0, 0]),
                    })
                }),
            ),
            ("agent", Box::new(|c| c.agent = Some("agent.sock".into()))),
            (
                "qmp",
                Box::new(|c| c.qmp = Some(PathBuf::from(format!("/{}", "q".repeat(120))))),
            ),
            (
                "console.log",
                Box::new(|c| c.console.log = Some("log".into())),
            ),
            ("console", Box::new(|c| c.console = Console::default())),
            ("tsc_khz", Box::new(|c| c.tsc_khz = None)),
            ("tsc_khz", Box::new(|c| c.tsc_khz = Some(0))),
        ];
        for (field, change) in cases {
            let mut c = micro();
            change(&mut c);
            assert_eq!(field_of(&c), field, "{c:?}");
        }
    }

    #[test]
    fn error_messages_name_field_and_value() {
        let mut c = micro();
        c.cpus = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "vm cpus: 0 is not between 1 and 255"
        );
    }

    #[test]
    fn macs_parse_print_and_derive() {
        let m: Mac = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0g",
            "5:54:00:ab:cd:0f",
            "01:00:00:00:00:00",
        ] {
            assert_eq!(
                bad.parse::<Mac>().unwrap_err().field(),
                Some("mac"),
                "{bad}"
            );
        }
        let a = Mac::for_name("web");
        assert_eq!(a, Mac::for_name("web"));
        assert_ne!(a, Mac::for_name("db"));
        assert_eq!(&a.0[..3], &[0x52, 0x54, 0x00]);
    }

    #[test]
    fn disk_formats() {
        assert_eq!("qcow2".parse::<DiskFormat>().unwrap(), DiskFormat::Qcow2);
        assert_eq!("raw".parse::<DiskFormat>().unwrap().as_str(), "raw");
        assert!("vmdk".parse::<DiskFormat>().is_err());
    }
}
