//! What a host can run: the workload kinds it has a backend for, and for every other kind the
//! reason it cannot run it.
//!
//! [`HostCapabilities`] is an input of the planner ([`crate::plan::plan`]) and of the apply
//! checks: a kind the host cannot run is refused with the same reason in both places, located
//! in the file at apply and listed in the plan's refusals for state already stored. The daemon
//! builds it once at start ([`HostCapabilities::for_os`]); tests build any host they need.

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

impl HostCapabilities {
    /// What a host running `os` (`std::env::consts::OS`) runs today: containers everywhere
    /// (on FreeBSD a container runs as a jail), jails on FreeBSD, no vms yet.
    pub fn for_os(os: &str) -> Self {
        let freebsd = os == "freebsd";
        HostCapabilities {
            container: None,
            jail: (!freebsd).then(|| {
                format!(
                    "kind \"jail\" is not supported on this host ({os}): jails need a FreeBSD host"
                )
            }),
            vm: Some(
                "kind \"vm\" is not supported on this host yet: use kind = \"container\"".into(),
            ),
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
