//! Apply-time checks of VM workloads against this host (a service of `apply`): the files a VM
//! boots from (`vm.kernel`, `vm.initrd`, `vm.disk`, `vm.iso`) exist on the daemon's host, and
//! the VMs' memory fits the host's, each VM alone and all declared VMs together. Every problem
//! is a diagnostic located at the field, and a file with one is refused whole, so nothing is
//! stored or changed. [`check`] is pure over a [`VmHost`] (the host's memory and a file
//! lookup), so every case is tested without root; [`host_memory`] reads the memory once per
//! apply (`/proc/meminfo` on Linux, `sysctl -n hw.physmem` through the executor on FreeBSD).

use std::path::Path;
use warren_exec::Executor;
use warren_model::{Diagnostic, Kind, Parsed, WorkloadSpec};

/// What the checks know of the host.
pub struct VmHost<'a> {
    /// The host's memory in bytes; `None` when it could not be read (the memory checks are
    /// then skipped).
    pub memory: Option<u64>,
    /// Whether a VM can boot from this path: `Err(reason)` when it cannot.
    pub lookup: &'a dyn Fn(&Path) -> Result<(), String>,
}

/// The real lookup: the path exists on this host and is not a directory (a file, or a block
/// device for a disk).
pub fn lookup(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err("is a directory, not a file".into()),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("does not exist on the daemon's host".into())
        }
        Err(e) => Err(format!("cannot be read on the daemon's host: {e}")),
    }
}

/// The host's memory in bytes, or `None` when it cannot be read.
pub fn host_memory(exec: &dyn Executor) -> Option<u64> {
    if cfg!(target_os = "linux") {
        let _ = exec;
        meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
    } else if cfg!(target_os = "freebsd") {
        let out = exec
            .run(&warren_exec::Cmd::new("sysctl").args(["-n", "hw.physmem"]))
            .ok()?;
        physmem(&out.stdout_str())
    } else {
        None
    }
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes (the file counts in KiB, written `kB`).
pub fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => n.checked_mul(1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// The output of FreeBSD's `sysctl -n hw.physmem`: bytes.
pub fn physmem(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A size for messages: GiB or MiB with one decimal.
fn human(n: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if n >= 1 << 30 {
        format!("{:.1} GiB", n as f64 / GIB)
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}

/// The VM checks of `parsed` on `host`. `others` are the VMs already declared that stay
/// declared (stored, not in this file, not pruned); their memory counts towards the total.
pub fn check(parsed: &Parsed, others: &[&WorkloadSpec], host: &VmHost<'_>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let vms: Vec<(&String, &WorkloadSpec)> = parsed
        .spec
        .workloads
        .iter()
        .filter(|(_, w)| w.kind == Kind::Vm)
        .collect();
    for (name, w) in &vms {
        for (key, path) in [
            ("kernel", &w.vm.kernel),
            ("initrd", &w.vm.initrd),
            ("disk", &w.vm.disk),
            ("iso", &w.vm.iso),
        ] {
            let Some(path) = path else { continue };
            if let Err(reason) = (host.lookup)(path) {
                let field = format!("workload.{name}.vm.{key}");
                diags.push(
                    parsed.diagnostic(&field, format!("{field}: {} {reason}", path.display())),
                );
            }
        }
    }
    let Some(total) = host.memory else {
        return diags;
    };
    let mut sum: u64 = others
        .iter()
        .filter(|w| w.kind == Kind::Vm)
        .map(|w| w.vm_memory_bytes())
        .sum();
    let mut parts: Vec<String> = others
        .iter()
        .filter(|w| w.kind == Kind::Vm)
        .map(|w| format!("{} {}", w.name, human(w.vm_memory_bytes())))
        .collect();
    let mut over: Option<&String> = None;
    for (name, w) in &vms {
        let memory = w.vm_memory_bytes();
        let field = format!("workload.{name}.resources.memory");
        if memory > total {
            diags.push(parsed.diagnostic(
                &field,
                format!(
                    "{field}: a vm of {} does not fit this host's {} of memory{}",
                    human(memory),
                    human(total),
                    if w.resources.memory.is_none() {
                        " (512 MiB is the default of a vm)"
                    } else {
                        ""
                    }
                ),
            ));
            continue;
        }
        sum = sum.saturating_add(memory);
        parts.push(format!("{name} {}", human(memory)));
        if sum > total && over.is_none() {
            over = Some(name);
        }
    }
    if let Some(name) = over {
        let field = format!("workload.{name}.resources.memory");
        diags.push(parsed.diagnostic(
            &field,
            format!(
                "{field}: the vms declared need {} together ({}), more than this host's {} of memory",
                human(sum),
                parts.join(", "),
                human(total)
            ),
        ));
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::{Source, WorkloadSpec};

    const GIB: u64 = 1 << 30;

    /// A host with `memory` where only the files under `/srv/ok/` exist.
    fn messages(text: &str, others: &[&WorkloadSpec], memory: Option<u64>) -> Vec<String> {
        let parsed = warren_model::parse_spec(text, "w.toml").unwrap();
        let lookup = |p: &Path| {
            if p.starts_with("/srv/ok") {
                Ok(())
            } else {
                Err("does not exist on the daemon's host".to_string())
            }
        };
        let host = VmHost {
            memory,
            lookup: &lookup,
        };
        check(&parsed, others, &host)
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn missing_boot_files_are_located_at_their_field() {
        let text = r#"[workload.micro]
kind = "vm"
world = "busybox"
vm = { kernel = "/srv/missing/vmlinuz", initrd = "/srv/ok/initrd.img" }

[workload.full]
kind = "vm"

[workload.full.vm]
disk = "/srv/ok/disk.raw"
iso = "/srv/gone.iso"
"#;
        assert_eq!(
            messages(text, &[], Some(8 * GIB)),
            [
                "w.toml:11:7: workload.full.vm.iso: /srv/gone.iso does not exist on the daemon's host",
                "w.toml:4:17: workload.micro.vm.kernel: /srv/missing/vmlinuz does not exist on the daemon's host",
            ]
        );
    }

    #[test]
    fn a_vm_larger_than_the_host_is_refused() {
        let text = "[workload.big]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"16G\" }\n\n[workload.box]\nworld = \"busybox\"\nresources = { memory = \"16G\" }\n";
        assert_eq!(
            messages(text, &[], Some(8 * GIB)),
            ["w.toml:4:24: workload.big.resources.memory: a vm of 16.0 GiB does not fit this host's 8.0 GiB of memory"]
        );
        // The default counts too, and is named.
        let small = "[workload.vm1]\nkind = \"vm\"\nworld = \"busybox\"\n";
        assert_eq!(
            messages(small, &[], Some(256 << 20)),
            ["w.toml:1:11: workload.vm1.resources.memory: a vm of 512.0 MiB does not fit this host's 256.0 MiB of memory (512 MiB is the default of a vm)"]
        );
        assert!(messages(small, &[], Some(GIB)).is_empty());
        // Unknown host memory: only the files are checked.
        assert!(messages(text, &[], None).is_empty());
    }

    #[test]
    fn the_vms_together_must_fit_the_host() {
        let text = "[workload.a]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n\n[workload.b]\nkind = \"vm\"\nworld = \"busybox\"\nresources = { memory = \"3G\" }\n";
        assert!(
            messages(text, &[], Some(6 * GIB)).is_empty(),
            "exactly full fits"
        );
        assert_eq!(
            messages(text, &[], Some(5 * GIB)),
            ["w.toml:9:24: workload.b.resources.memory: the vms declared need 6.0 GiB together (a 3.0 GiB, b 3.0 GiB), more than this host's 5.0 GiB of memory"]
        );
        // VMs stored outside this file count; containers do not.
        let mut stored = WorkloadSpec::new("old", Source::World("busybox".into()));
        stored.kind = Kind::Vm;
        stored.resources.memory = Some(GIB);
        let mut container = WorkloadSpec::new("web", Source::World("busybox".into()));
        container.resources.memory = Some(100 * GIB);
        assert_eq!(
            messages(text, &[&stored, &container], Some(6 * GIB)),
            ["w.toml:9:24: workload.b.resources.memory: the vms declared need 7.0 GiB together (old 1.0 GiB, a 3.0 GiB, b 3.0 GiB), more than this host's 6.0 GiB of memory"]
        );
    }

    #[test]
    fn memory_parsers() {
        let meminfo = "MemTotal:        8137460 kB\nMemFree:          123456 kB\n";
        assert_eq!(meminfo_total(meminfo), Some(8137460 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: lots kB\n"), None);
        assert_eq!(meminfo_total("MemTotal: 12 MB\n"), None);
        assert_eq!(physmem("8544636928\n"), Some(8544636928));
        assert_eq!(physmem("hw.physmem: 1\n"), None);
        #[cfg(target_os = "linux")]
        {
            let exec = warren_exec::RecordingExecutor::new();
            let m = host_memory(&exec).expect("this host's memory");
            assert!(m > 64 << 20, "{m}");
        }
    }

    #[test]
    fn the_real_lookup_tells_missing_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.raw");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(lookup(&file), Ok(()));
        assert_eq!(lookup(dir.path()), Err("is a directory, not a file".into()));
        assert_eq!(
            lookup(&dir.path().join("nope")),
            Err("does not exist on the daemon's host".into())
        );
    }
}
