//! The host resource budget: how much of the host's memory and CPUs its workloads may claim.
//!
//! A `[host]` table in warren.toml reserves part of the host for itself
//! ([`HostReserve`]: `reserve_memory`, `reserve_cpus`); what is left is the workloads'. Each
//! workload set to run claims its memory limit (`resources.memory`; a container or jail
//! without one claims nothing) or, for a vm, its guest memory ([`WorkloadSpec::vm_memory_bytes`],
//! 512 MiB by default), and its CPU limit (`resources.cpus`, a vm's virtual CPUs).
//!
//! [`check`] is the apply-time check: memory over the budget is refused, located at the
//! workload's `resources.memory` (or at `[host]` when the reserve is what no longer fits), and
//! CPUs over the budget are a warning only (CPU time is shared, commonly overcommitted).
//! [`Budget::of`] is the summary `warren info` shows. Both are pure: the host's size is an
//! input ([`HostSize`]), read by the daemon.

use crate::parse::{Diagnostic, Parsed};
use crate::spec::{DesiredState, Kind, WorkloadSpec};
use serde::{Deserialize, Serialize};

/// The `[host]` table: what the host keeps for itself.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostReserve {
    /// Bytes of memory no workload may claim.
    #[serde(default)]
    pub reserve_memory: u64,
    /// CPUs no workload should claim (fractions allowed).
    #[serde(default)]
    pub reserve_cpus: f64,
}

/// What the host has: its memory in bytes and its CPUs; `None` when it could not be read
/// (that part of the budget is then not checked).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HostSize {
    pub memory: Option<u64>,
    pub cpus: Option<u32>,
}

/// Whether a workload counts against the budget: it is set to run.
pub fn counts(w: &WorkloadSpec) -> bool {
    w.state == DesiredState::Running
}

/// The memory a workload claims: a vm's guest memory, else its memory limit (0 without one).
pub fn memory_claim(w: &WorkloadSpec) -> u64 {
    match w.kind {
        Kind::Vm => w.vm_memory_bytes(),
        _ => w.resources.memory.unwrap_or(0),
    }
}

/// The CPUs a workload claims: a vm's virtual CPUs, else its CPU limit (0 without one).
pub fn cpu_claim(w: &WorkloadSpec) -> f64 {
    match w.kind {
        Kind::Vm => w.vm_cpus() as f64,
        _ => w.resources.cpus.unwrap_or(0.0),
    }
}

/// The budget and its use, as `warren info` shows it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Budget {
    /// The host's memory in bytes (`None`: unknown).
    pub memory_total: Option<u64>,
    /// Memory reserved for the host by `[host] reserve_memory`.
    pub memory_reserved: u64,
    /// Memory claimed by the workloads set to run.
    pub memory_allocated: u64,
    /// What is left for more workloads (`None`: the host's memory is unknown).
    pub memory_left: Option<u64>,
    /// The host's CPUs (`None`: unknown).
    pub cpus_total: Option<u32>,
    /// CPUs reserved for the host by `[host] reserve_cpus`.
    pub cpus_reserved: f64,
    /// CPUs claimed by the workloads set to run.
    pub cpus_allocated: f64,
    /// CPUs left (negative when overcommitted; `None`: unknown).
    pub cpus_left: Option<f64>,
}

impl Budget {
    /// The budget of a host of `size` with `reserve`, used by the `workloads` set to run.
    pub fn of<'a>(
        size: &HostSize,
        reserve: &HostReserve,
        workloads: impl IntoIterator<Item = &'a WorkloadSpec>,
    ) -> Budget {
        let running: Vec<&WorkloadSpec> = workloads.into_iter().filter(|w| counts(w)).collect();
        let memory_allocated = running.iter().map(|w| memory_claim(w)).sum::<u64>();
        let cpus_allocated = running.iter().map(|w| cpu_claim(w)).sum::<f64>();
        Budget {
            memory_total: size.memory,
            memory_reserved: reserve.reserve_memory,
            memory_allocated,
            memory_left: size.memory.map(|m| {
                m.saturating_sub(reserve.reserve_memory)
                    .saturating_sub(memory_allocated)
            }),
            cpus_total: size.cpus,
            cpus_reserved: reserve.reserve_cpus,
            cpus_allocated,
            cpus_left: size
                .cpus
                .map(|c| c as f64 - reserve.reserve_cpus - cpus_allocated),
        }
    }
}

/// A size for messages: GiB or MiB with one decimal.
pub fn human(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

/// A CPU count for messages: whole numbers without a fraction.
fn cpus(n: f64) -> String {
    if n.fract() == 0.0 {
        format!("{n:.0}")
    } else {
        format!("{n:.2}")
    }
}

/// What [`check`] found: errors refuse the file, warnings are reported with the apply.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<String>,
}

/// The budget checks of `parsed` on a host of `size`. `others` are the workloads already
/// stored that stay (not in this file, not pruned); `stored` is the reserve in force, which the
/// file's `[host]` table replaces. Every workload is checked alone against what the host has
/// for workloads; then the workloads set to run, the others first and this file's in name
/// order, are added up and the first of the file's that no longer fits is refused.
pub fn check(
    parsed: &Parsed,
    others: &[&WorkloadSpec],
    size: &HostSize,
    stored: &HostReserve,
) -> Checked {
    let mut out = Checked::default();
    let reserve = parsed.spec.host.unwrap_or(*stored);
    let declared = parsed.spec.host.is_some();
    if let Some(total) = size.memory {
        memory(parsed, others, total, &reserve, declared, &mut out);
    }
    if let Some(total) = size.cpus {
        let total = total as f64;
        if declared && reserve.reserve_cpus > total {
            out.errors.push(parsed.diagnostic(
                "host.reserve_cpus",
                format!(
                    "host.reserve_cpus: {} is more than this host's {} CPUs",
                    cpus(reserve.reserve_cpus),
                    cpus(total)
                ),
            ));
            return out;
        }
        let available = total - reserve.reserve_cpus;
        let claimed: f64 = others
            .iter()
            .copied()
            .chain(parsed.spec.workloads.values())
            .filter(|w| counts(w))
            .map(cpu_claim)
            .sum();
        if claimed > available + 1e-9 {
            out.warnings.push(format!(
                "the workloads set to run may use {} CPUs together, more than the {} this host \
                 has for them ({} CPUs, {} reserved by [host] reserve_cpus); they share CPU time",
                cpus(claimed),
                cpus(available),
                cpus(total),
                cpus(reserve.reserve_cpus)
            ));
        }
    }
    out
}

fn memory(
    parsed: &Parsed,
    others: &[&WorkloadSpec],
    total: u64,
    reserve: &HostReserve,
    declared: bool,
    out: &mut Checked,
) {
    let available = total.saturating_sub(reserve.reserve_memory);
    let what = if reserve.reserve_memory == 0 {
        format!("this host's {} of memory", human(total))
    } else {
        format!(
            "the {} of memory this host has for workloads ({}, less {} reserved by [host] \
             reserve_memory)",
            human(available),
            human(total),
            human(reserve.reserve_memory)
        )
    };
    if declared && reserve.reserve_memory >= total {
        out.errors.push(parsed.diagnostic(
            "host.reserve_memory",
            format!(
                "host.reserve_memory: {} leaves nothing of this host's {} of memory",
                human(reserve.reserve_memory),
                human(total)
            ),
        ));
        return;
    }
    let mut sum: u64 = 0;
    let mut parts: Vec<String> = Vec::new();
    for w in others.iter().filter(|w| counts(w)) {
        let m = memory_claim(w);
        if m > 0 {
            sum = sum.saturating_add(m);
            parts.push(format!("{} {}", w.name, human(m)));
        }
    }
    let mut over: Option<&str> = None;
    for (name, w) in &parsed.spec.workloads {
        let m = memory_claim(w);
        let field = format!("workload.{name}.resources.memory");
        if m > available {
            out.errors.push(parsed.diagnostic(
                &field,
                format!(
                    "{field}: a {} of {} does not fit {what}{}",
                    w.kind.as_str(),
                    human(m),
                    if w.kind == Kind::Vm && w.resources.memory.is_none() {
                        " (512 MiB is the default of a vm)"
                    } else {
                        ""
                    }
                ),
            ));
            continue;
        }
        if !counts(w) || m == 0 {
            continue;
        }
        sum = sum.saturating_add(m);
        parts.push(format!("{name} {}", human(m)));
        if sum > available && over.is_none() {
            over = Some(name);
        }
    }
    let field = match over {
        Some(name) => format!("workload.{name}.resources.memory"),
        None if sum > available && declared => "host.reserve_memory".to_string(),
        None => return,
    };
    out.errors.push(parsed.diagnostic(
        &field,
        format!(
            "{field}: the workloads set to run need {} of memory together ({}), more than {what}",
            human(sum),
            parts.join(", "),
        ),
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Source;

    const GIB: u64 = 1 << 30;

    fn host(memory: u64, cpus: u32) -> HostSize {
        HostSize {
            memory: Some(memory),
            cpus: Some(cpus),
        }
    }

    fn run(text: &str, others: &[&WorkloadSpec], size: HostSize, stored: HostReserve) -> Checked {
        let parsed = crate::parse_spec(text, "w.toml").unwrap();
        check(&parsed, others, &size, &stored)
    }

    fn errors(text: &str, others: &[&WorkloadSpec], size: HostSize) -> Vec<String> {
        run(text, others, size, HostReserve::default())
            .errors
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    fn stored(name: &str, kind: Kind, memory: Option<u64>) -> WorkloadSpec {
        let mut w = WorkloadSpec::new(name, Source::World("busybox".into()));
        w.kind = kind;
        w.resources.memory = memory;
        w
    }

    #[test]
    fn one_workload_larger_than_the_host_is_refused() {
        let text = "[workload.big]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"16G\" }\n\n[workload.box]\nworld = \"busybox\"\nresources = { memory = \"16G\" }\n";
        assert_eq!(
            errors(text, &[], host(8 * GIB, 2)),
            [
                "w.toml:4:24: workload.big.resources.memory: a vm of 16.0 GiB does not fit this host's 8.0 GiB of memory",
                "w.toml:8:24: workload.box.resources.memory: a container of 16.0 GiB does not fit this host's 8.0 GiB of memory",
            ]
        );
        // A vm's default counts, and is named.
        let small = "[workload.vm1]\nkind = \"vm\"\nworld = \"busybox\"\n";
        assert_eq!(
            errors(small, &[], host(256 << 20, 1)),
            ["w.toml:1:11: workload.vm1.resources.memory: a vm of 512.0 MiB does not fit this host's 256.0 MiB of memory (512 MiB is the default of a vm)"]
        );
        assert!(errors(small, &[], host(GIB, 1)).is_empty());
        // Unknown host size: nothing is checked.
        assert_eq!(
            run(text, &[], HostSize::default(), HostReserve::default()),
            Checked::default()
        );
    }

    #[test]
    fn workloads_set_to_run_must_fit_together() {
        let text = "[workload.a]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n\n[workload.b]\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n\n[workload.c]\nworld = \"busybox\"\n";
        assert!(
            errors(text, &[], host(6 * GIB, 2)).is_empty(),
            "exactly full fits; c has no limit and claims nothing"
        );
        assert_eq!(
            errors(text, &[], host(5 * GIB, 2)),
            ["w.toml:8:24: workload.b.resources.memory: the workloads set to run need 6.0 GiB of memory together (a 3.0 GiB, b 3.0 GiB), more than this host's 5.0 GiB of memory"]
        );
        // Stored workloads that stay count, containers and vms alike; stopped ones do not.
        let old = stored("old", Kind::Vm, Some(GIB));
        let web = stored("web", Kind::Container, Some(GIB));
        let mut idle = stored("idle", Kind::Container, Some(100 * GIB));
        idle.state = DesiredState::Stopped;
        assert_eq!(
            errors(text, &[&old, &web, &idle], host(7 * GIB, 2)),
            ["w.toml:8:24: workload.b.resources.memory: the workloads set to run need 8.0 GiB of memory together (old 1.0 GiB, web 1.0 GiB, a 3.0 GiB, b 3.0 GiB), more than this host's 7.0 GiB of memory"]
        );
        // A stopped workload in the file does not count either (but must fit alone).
        let stopped = text.replace("[workload.b]\n", "[workload.b]\nstate = \"stopped\"\n");
        assert!(errors(&stopped, &[&old, &web], host(7 * GIB, 2)).is_empty());
    }

    #[test]
    fn the_reserve_shrinks_the_budget_and_is_located() {
        let text = "[host]\nreserve_memory = \"2G\"\nreserve_cpus = 1\n\n[workload.a]\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n";
        assert!(errors(text, &[], host(5 * GIB, 2)).is_empty());
        assert_eq!(
            errors(text, &[], host(4 * GIB, 2)),
            ["w.toml:7:24: workload.a.resources.memory: a container of 3.0 GiB does not fit the 2.0 GiB of memory this host has for workloads (4.0 GiB, less 2.0 GiB reserved by [host] reserve_memory)"]
        );
        // Only the reserve changes: the stored workloads no longer fit, and [host] is blamed.
        let only = "[host]\nreserve_memory = \"3G\"\n";
        let a = stored("a", Kind::Container, Some(3 * GIB));
        assert_eq!(
            errors(only, &[&a], host(5 * GIB, 2)),
            ["w.toml:2:18: host.reserve_memory: the workloads set to run need 3.0 GiB of memory together (a 3.0 GiB), more than the 2.0 GiB of memory this host has for workloads (5.0 GiB, less 3.0 GiB reserved by [host] reserve_memory)"]
        );
        assert_eq!(
            errors("[host]\nreserve_memory = \"8G\"\n", &[], host(8 * GIB, 2)),
            ["w.toml:2:18: host.reserve_memory: 8.0 GiB leaves nothing of this host's 8.0 GiB of memory"]
        );
        assert_eq!(
            errors("[host]\nreserve_cpus = 3\n", &[], host(8 * GIB, 2)),
            ["w.toml:2:16: host.reserve_cpus: 3 is more than this host's 2 CPUs"]
        );
        // The stored reserve applies to a file without [host].
        let file = "[workload.a]\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n";
        let reserve = HostReserve {
            reserve_memory: 3 * GIB,
            reserve_cpus: 0.0,
        };
        let c = run(file, &[], host(5 * GIB, 2), reserve);
        assert_eq!(c.errors.len(), 1, "{c:?}");
        assert!(c.errors[0].message.contains("less 3.0 GiB reserved"));
    }

    #[test]
    fn cpus_over_the_budget_are_a_warning() {
        let text = "[host]\nreserve_cpus = 1\n\n[workload.a]\nworld = \"busybox\"\nresources = { cpus = 1 }\n\n[workload.v]\nkind = \"vm\"\nworld = \"busybox\"\n";
        let c = run(text, &[], host(8 * GIB, 4), HostReserve::default());
        assert_eq!(c, Checked::default());
        let c = run(text, &[], host(8 * GIB, 2), HostReserve::default());
        assert!(c.errors.is_empty(), "{c:?}");
        assert_eq!(
            c.warnings,
            ["the workloads set to run may use 2 CPUs together, more than the 1 this host has for them (2 CPUs, 1 reserved by [host] reserve_cpus); they share CPU time"]
        );
    }

    #[test]
    fn the_budget_summary() {
        let a = stored("a", Kind::Container, Some(GIB));
        let v = stored("v", Kind::Vm, None);
        let mut off = stored("off", Kind::Container, Some(4 * GIB));
        off.state = DesiredState::Stopped;
        let free = stored("free", Kind::Container, None);
        let reserve = HostReserve {
            reserve_memory: 2 * GIB,
            reserve_cpus: 0.5,
        };
        let b = Budget::of(&host(8 * GIB, 4), &reserve, [&a, &v, &off, &free]);
        assert_eq!(
            b,
            Budget {
                memory_total: Some(8 * GIB),
                memory_reserved: 2 * GIB,
                memory_allocated: GIB + (512 << 20),
                memory_left: Some(4 * GIB + (512 << 20)),
                cpus_total: Some(4),
                cpus_reserved: 0.5,
                cpus_allocated: 1.0,
                cpus_left: Some(2.5),
            }
        );
        let over = Budget::of(&host(GIB, 1), &reserve, [&a]);
        assert_eq!(over.memory_left, Some(0));
        assert_eq!(
            Budget::of(&HostSize::default(), &reserve, [&a]).memory_left,
            None
        );
    }
}
