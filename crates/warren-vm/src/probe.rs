//! What the host can run VMs with: parsers of `qemu-system-x86_64 -accel help` and
//! `-machine help`, and the choice of accelerator.
//!
//! `/dev/kvm` existing is not enough: some hosts expose a KVM device that cannot boot a stock
//! guest kernel. So the choice is made from a [`KvmProbe`], which records whether the device
//! opens, whether QEMU lists the `kvm` accelerator and how a probe boot under KVM ended;
//! [`choose_accel`] picks KVM only when a probe boot succeeded, and says why in words fit for
//! `warren get`. Running the probe boot is the caller's business (it is a VM like any other).

use crate::config::Accel;
use crate::{Result, VmError};

/// The accelerators a QEMU binary lists under `-accel help`.
pub fn parse_accel_help(out: &str) -> Result<Vec<String>> {
    let mut lines = out.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some(h) if h.starts_with("Accelerators supported") => {}
        other => {
            return Err(VmError::Output {
                command: "qemu-system-x86_64 -accel help".into(),
                reason: format!("expected the accelerator list header, got {other:?}"),
            })
        }
    }
    Ok(lines.map(str::to_string).collect())
}

/// One machine of `-machine help`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineInfo {
    pub name: String,
    pub description: String,
    /// The versioned machine this name stands for (`q35` → `pc-q35-7.2`).
    pub alias_of: Option<String>,
    /// QEMU's default machine.
    pub default: bool,
    pub deprecated: bool,
}

/// The machines a QEMU binary lists under `-machine help`.
pub fn parse_machine_help(out: &str) -> Result<Vec<MachineInfo>> {
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(h) if h.starts_with("Supported machines are") => {}
        other => {
            return Err(VmError::Output {
                command: "qemu-system-x86_64 -machine help".into(),
                reason: format!("expected the machine list header, got {other:?}"),
            })
        }
    }
    let mut machines = Vec::new();
    for l in lines {
        let (name, rest) = match l.split_once(char::is_whitespace) {
            Some((n, r)) => (n, r.trim()),
            None => (l.trim(), ""),
        };
        let mut description = rest.to_string();
        let mut alias_of = None;
        let mut default = false;
        let mut deprecated = false;
        // Trailing "(alias of X)", "(default)" and "(deprecated)" notes, in any order.
        while let Some(open) = description.rfind(" (") {
            let note = &description[open + 2..];
            let Some(note) = note.strip_suffix(')') else {
                break;
            };
            if let Some(a) = note.strip_prefix("alias of ") {
                alias_of = Some(a.to_string());
            } else if note == "default" {
                default = true;
            } else if note == "deprecated" {
                deprecated = true;
            } else {
                break;
            }
            description.truncate(open);
        }
        machines.push(MachineInfo {
            name: name.to_string(),
            description,
            alias_of,
            default,
            deprecated,
        });
    }
    Ok(machines)
}

/// Whether the machines warren uses are there: `microvm` and `q35`.
pub fn missing_machines(machines: &[MachineInfo]) -> Vec<&'static str> {
    ["microvm", "q35"]
        .into_iter()
        .filter(|m| !machines.iter().any(|x| x.name == *m))
        .collect()
}

/// The state of `/dev/kvm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmDevice {
    Missing,
    /// It exists but cannot be opened read-write (the reason, e.g. permission denied).
    Unusable(String),
    Usable,
}

/// How a probe boot under KVM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeBoot {
    /// The guest printed its marker; the boot took this many milliseconds.
    Booted { millis: u64 },
    /// It did not (QEMU failed, the guest hung past the deadline, ...), with what was seen.
    Failed(String),
}

/// Everything the accelerator choice is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    pub device: KvmDevice,
    /// `kvm` appears under `-accel help`.
    pub qemu_has_kvm: bool,
    /// The probe boot under KVM, if one ran.
    pub boot: Option<ProbeBoot>,
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accel: Accel,
    pub reason: String,
}

/// KVM only when a probe boot under it succeeded; TCG otherwise, saying why.
pub fn choose_accel(p: &KvmProbe) -> AccelChoice {
    let tcg = |reason: String| AccelChoice {
        accel: Accel::Tcg,
        reason,
    };
    match &p.device {
        KvmDevice::Missing => return tcg("tcg: /dev/kvm does not exist".into()),
        KvmDevice::Unusable(why) => return tcg(format!("tcg: /dev/kvm cannot be opened: {why}")),
        KvmDevice::Usable => {}
    }
    if !p.qemu_has_kvm {
        return tcg("tcg: this QEMU has no kvm accelerator".into());
    }
    match &p.boot {
        None => tcg("tcg: no probe boot under kvm has run".into()),
        Some(ProbeBoot::Failed(why)) => tcg(format!("tcg: a probe boot under kvm failed: {why}")),
        Some(ProbeBoot::Booted { millis }) => AccelChoice {
            accel: Accel::Kvm,
            reason: format!("kvm: a probe boot succeeded in {millis} ms"),
        },
    }
}

/// The host's TSC frequency in kHz from `/proc/cpuinfo` (the first `cpu MHz`), which a
/// microVM under TCG is told ([`crate::VmConfig::tsc_khz`]).
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let mhz = cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "cpu MHz").then(|| v.trim().parse::<f64>().ok())?
    })?;
    (mhz.is_finite() && mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// Whether `/dev/kvm` (or `path`) opens read-write.
pub fn kvm_device(path: &std::path::Path) -> KvmDevice {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
    {
        Ok(_) => KvmDevice::Usable,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => KvmDevice::Missing,
        Err(e) => KvmDevice::Unusable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_choice() {
        let mut p = KvmProbe {
            device: KvmDevice::Usable,
            qemu_has_kvm: true,
            boot: Some(ProbeBoot::Booted { millis: 420 }),
        };
        assert_eq!(choose_accel(&p).accel, Accel::Kvm);
        assert_eq!(
            choose_accel(&p).reason,
            "kvm: a probe boot succeeded in 420 ms"
        );
        p.boot = Some(ProbeBoot::Failed("no marker within 20 s".into()));
        let c = choose_accel(&p);
        assert_eq!(c.accel, Accel::Tcg);
        assert!(c.reason.contains("no marker within 20 s"), "{}", c.reason);
        p.boot = None;
        assert_eq!(choose_accel(&p).accel, Accel::Tcg);
        p.boot = Some(ProbeBoot::Booted { millis: 1 });
        p.qemu_has_kvm = false;
        assert_eq!(choose_accel(&p).accel, Accel::Tcg);
        p.qemu_has_kvm = true;
        p.device = KvmDevice::Missing;
        assert_eq!(choose_accel(&p).reason, "tcg: /dev/kvm does not exist");
        p.device = KvmDevice::Unusable("permission denied".into());
        assert_eq!(choose_accel(&p).accel, Accel::Tcg);
    }

    #[test]
    fn tsc_from_cpuinfo() {
        let c = "processor\t: 0\nmodel name\t: x\ncpu MHz\t\t: 2596.150\ncache size\t: 512 KB\n";
        assert_eq!(host_tsc_khz(c), Some(2_596_150));
        assert_eq!(host_tsc_khz("processor : 0\n"), None);
        assert_eq!(host_tsc_khz("cpu MHz : x\n"), None);
    }

    #[test]
    fn kvm_device_states() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(kvm_device(&d.path().join("kvm")), KvmDevice::Missing);
        let f = d.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert_eq!(kvm_device(&f), KvmDevice::Usable);
        assert!(matches!(kvm_device(d.path()), KvmDevice::Unusable(_)));
    }

    #[test]
    fn machine_notes_in_any_order() {
        let out = "Supported machines are:\nold  An old one (deprecated) (alias of older-1)\nx\n";
        let m = parse_machine_help(out).unwrap();
        assert_eq!(m[0].description, "An old one");
        assert!(m[0].deprecated);
        assert_eq!(m[0].alias_of.as_deref(), Some("older-1"));
        assert_eq!(m[1].name, "x");
        assert_eq!(m[1].description, "");
        assert!(parse_machine_help("garbage").is_err());
        assert!(parse_accel_help("").is_err());
    }
}
