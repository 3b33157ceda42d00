//! Apply-time checks against this host (a service of `apply`): the files a VM boots from
//! (`vm.kernel`, `vm.initrd`, `vm.disk`, `vm.iso`) exist on the daemon's host, and the host
//! resource budget ([`warren_model::budget`]): the memory of every workload set to run
//! (containers' and jails' limits, VMs' guest memory) fits the host's less the `[host]`
//! reserve, each alone and all together, and CPUs over the budget are a warning. Every problem
//! is a diagnostic located at the field, and a file with one is refused whole, so nothing is
//! stored or changed. [`check`] is pure over a [`VmHost`] (a file lookup) and the budget check
//! is the model's, so every case is tested without root; [`host_size`] reads the host's memory
//! (`/proc/meminfo` on Linux, `sysctl -n hw.physmem` through the executor on FreeBSD) and CPUs
//! once per apply; the reserve in force is kept in the store ([`stored_reserve`]).

use std::path::Path;
use warren_exec::Executor;
use warren_model::budget::{HostReserve, HostSize};
use warren_model::{Diagnostic, Kind, Parsed};

/// What the file checks know of the host.
pub struct VmHost<'a> {
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

/// The store's key of the `[host]` reserve in force (JSON of [`HostReserve`]).
const RESERVE_KEY: &str = "host.reserve";

/// The `[host]` reserve in force: the last one a file applied (`None`: no file had one, and
/// nothing is reserved).
pub fn stored_reserve(store: &warren_store::Store) -> anyhow::Result<Option<HostReserve>> {
    Ok(match store.meta(RESERVE_KEY)? {
        Some(json) => Some(serde_json::from_str(&json)?),
        None => None,
    })
}

/// Records `reserve` as the one in force.
pub fn store_reserve(
    store: &warren_store::Store,
    reserve: &HostReserve,
) -> Result<(), warren_store::StoreError> {
    let json = serde_json::to_string(reserve).expect("a reserve serializes");
    store.set_meta(&[(RESERVE_KEY, Some(json.as_str()))])
}

/// The host's memory and online CPUs, each `None` when it cannot be read.
pub fn host_size(exec: &dyn Executor) -> HostSize {
    HostSize {
        memory: host_memory(exec),
        cpus: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u32),
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

/// The boot-file checks of the VMs in `parsed` on `host`.
pub fn check(parsed: &Parsed, host: &VmHost<'_>) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (name, w) in parsed
        .spec
        .workloads
        .iter()
        .filter(|(_, w)| w.kind == Kind::Vm)
    {
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
    diags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host where only the files under `/srv/ok/` exist.
    fn messages(text: &str) -> Vec<String> {
        let parsed = warren_model::parse_spec(text, "w.toml").unwrap();
        let lookup = |p: &Path| {
            if p.starts_with("/srv/ok") {
                Ok(())
            } else {
                Err("does not exist on the daemon's host".to_string())
            }
        };
        check(&parsed, &VmHost { lookup: &lookup })
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
            messages(text),
            [
                "w.toml:11:7: workload.full.vm.iso: /srv/gone.iso does not exist on the daemon's host",
                "w.toml:4:17: workload.micro.vm.kernel: /srv/missing/vmlinuz does not exist on the daemon's host",
            ]
        );
    }

    #[test]
    fn the_reserve_is_kept_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = warren_store::Store::open(&dir.path().join("w.db")).unwrap();
        assert_eq!(stored_reserve(&store).unwrap(), None);
        let r = HostReserve {
            reserve_memory: 2 << 30,
            reserve_cpus: 1.0,
        };
        store_reserve(&store, &r).unwrap();
        assert_eq!(stored_reserve(&store).unwrap(), Some(r));
        let size = host_size(&warren_exec::RecordingExecutor::new());
        assert!(size.cpus.is_some_and(|c| c >= 1), "{size:?}");
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
