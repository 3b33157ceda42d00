//! What a host can run: the workload kinds it has a backend for, and for every other kind the
//! reason it cannot run it.
//!
//! [`HostCapabilities`] is an input of the planner ([`crate::plan::plan`]) and of the apply
//! checks: a kind the host cannot run is refused with the same reason in both places, located
//! in the file at apply and listed in the plan's refusals for state already stored. The daemon
//! builds it once at start ([`HostCapabilities::for_host`], after looking for the program
//! [`vm_hypervisor`] names); tests build any host they need.

use crate::spec::Kind;
use serde::{Deserialize, Serialize};

/// The workload kinds this host runs, and why it does not run the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCapabilities {
    /// One entry per kind: `None` when the host runs it, else the reason it cannot.
    container: Option<String>,
    jail: Option<String>,
    vm: Option<String>,
}

/// The program a host running `os` runs VMs with: `qemu-system-x86_64` (looked up on the
/// executor's search path) on Linux, `/usr/sbin/bhyve` on FreeBSD; `None` where warren has no
/// VM backend.
pub fn vm_hypervisor(os: &str) -> Option<&'static str> {
    match os {
        "linux" => Some("qemu-system-x86_64"),
        "freebsd" => Some("/usr/sbin/bhyve"),
        _ => None,
    }
}

impl HostCapabilities {
    /// What a host running `os` (`std::env::consts::OS`) runs without looking for a
    /// hypervisor: containers everywhere (on FreeBSD a container runs as a jail), jails on
    /// FreeBSD, no vms ([`HostCapabilities::for_host`] with none found).
    pub fn for_os(os: &str) -> Self {
        HostCapabilities::for_host(os, false)
    }

    /// What a host running `os` runs, `hypervisor_found` telling whether its
    /// [`vm_hypervisor`] is installed: containers everywhere, jails on FreeBSD, vms where the
    /// hypervisor is, and for a missing one the reason naming what to install.
    pub fn for_host(os: &str, hypervisor_found: bool) -> Self {
        let freebsd = os == "freebsd";
        let vm = match (os, hypervisor_found) {
            ("linux" | "freebsd", true) => None,
            ("linux", false) => Some(
                "kind \"vm\" needs QEMU, and qemu-system-x86_64 is not installed on this host: \
                 install it (apt-get install qemu-system-x86, or scripts/install-deps) and \
                 restart the daemon"
                    .to_string(),
            ),
            ("freebsd", false) => Some(
                "kind \"vm\" needs bhyve, and /usr/sbin/bhyve is missing on this host: install \
                 FreeBSD's base system with bhyve (amd64) and restart the daemon"
                    .to_string(),
            ),
            _ => Some(format!(
                "kind \"vm\" is not supported on this host ({os}): vms need Linux with QEMU or \
                 FreeBSD with bhyve"
            )),
        };
        HostCapabilities {
            container: None,
            jail: (!freebsd).then(|| {
                format!(
                    "kind \"jail\" is not supported on this host ({os}): jails need a FreeBSD host"
                )
            }),
            vm,
        }
    }

    /// A host that runs exactly `kinds`; every other kind is refused with `reason`.
    pub fn only(kinds: &[Kind], reason: &str) -> Self {
        let why = |k: Kind| {
            (!kinds.contains(&k))
                .then(|| format!("kind {:?} is not supported: {reason}", k.as_str()))
        };
        HostCapabilities {
            container: why(Kind::Container),
            jail: why(Kind::Jail),
            vm: why(Kind::Vm),
        }
    }

    /// The same host, now running `kind` (a backend found by probing).
    pub fn with(mut self, kind: Kind) -> Self {
        *self.slot(kind) = None;
        self
    }

    /// The same host, not running `kind`, for `reason`.
    pub fn without(mut self, kind: Kind, reason: impl Into<String>) -> Self {
        *self.slot(kind) = Some(reason.into());
        self
    }

    fn slot(&mut self, kind: Kind) -> &mut Option<String> {
        match kind {
            Kind::Container => &mut self.container,
            Kind::Jail => &mut self.jail,
            Kind::Vm => &mut self.vm,
        }
    }

    /// Why this host cannot run `kind`, or `None` when it can.
    pub fn refusal(&self, kind: Kind) -> Option<&str> {
        match kind {
            Kind::Container => self.container.as_deref(),
            Kind::Jail => self.jail.as_deref(),
            Kind::Vm => self.vm.as_deref(),
        }
    }

    /// Whether this host runs `kind`.
    pub fn runs(&self, kind: Kind) -> bool {
        self.refusal(kind).is_none()
    }

    /// The kinds this host runs, in declaration order.
    pub fn kinds(&self) -> Vec<Kind> {
        [Kind::Container, Kind::Jail, Kind::Vm]
            .into_iter()
            .filter(|k| self.runs(*k))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_per_os() {
        let linux = HostCapabilities::for_os("linux");
        assert_eq!(linux.kinds(), [Kind::Container]);
        assert_eq!(
            linux.refusal(Kind::Jail),
            Some("kind \"jail\" is not supported on this host (linux): jails need a FreeBSD host")
        );
        let freebsd = HostCapabilities::for_os("freebsd");
        assert_eq!(freebsd.kinds(), [Kind::Container, Kind::Jail]);
        assert!(freebsd.refusal(Kind::Vm).unwrap().contains("\"vm\""));
    }

    #[test]
    fn vms_run_where_the_hypervisor_is_found() {
        assert_eq!(vm_hypervisor("linux"), Some("qemu-system-x86_64"));
        assert_eq!(vm_hypervisor("freebsd"), Some("/usr/sbin/bhyve"));
        assert_eq!(vm_hypervisor("macos"), None);
        let linux = HostCapabilities::for_host("linux", true);
        assert_eq!(linux.kinds(), [Kind::Container, Kind::Vm]);
        let freebsd = HostCapabilities::for_host("freebsd", true);
        assert_eq!(freebsd.kinds(), [Kind::Container, Kind::Jail, Kind::Vm]);
        let no_qemu = HostCapabilities::for_host("linux", false);
        assert_eq!(no_qemu.kinds(), [Kind::Container]);
        let reason = no_qemu.refusal(Kind::Vm).unwrap();
        assert!(
            reason.contains("qemu-system-x86_64")
                && reason.contains("apt-get install qemu-system-x86"),
            "{reason}"
        );
        let no_bhyve = HostCapabilities::for_host("freebsd", false);
        assert!(no_bhyve
            .refusal(Kind::Vm)
            .unwrap()
            .contains("/usr/sbin/bhyve"));
        // A hypervisor found on a system warren has no VM backend for does not count.
        let other = HostCapabilities::for_host("macos", true);
        assert!(other.refusal(Kind::Vm).unwrap().contains("(macos)"));
        assert_eq!(HostCapabilities::for_os("linux"), no_qemu);
    }

    #[test]
    fn with_and_without_change_one_kind() {
        let h = HostCapabilities::for_os("linux").with(Kind::Vm);
        assert_eq!(h.kinds(), [Kind::Container, Kind::Vm]);
        let h = h.without(Kind::Vm, "no /dev/kvm");
        assert_eq!(h.refusal(Kind::Vm), Some("no /dev/kvm"));
        let only = HostCapabilities::only(&[Kind::Jail], "test host");
        assert_eq!(only.kinds(), [Kind::Jail]);
        assert_eq!(
            only.refusal(Kind::Container),
            Some("kind \"container\" is not supported: test host")
        );
    }
}
