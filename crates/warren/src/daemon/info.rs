//! `GET /v1/info`: what this host is (name, id, OS, kernel, CPUs, memory), the daemon's
//! version and uptime, the storage pool's size and fill, which runtimes work here, the ingress
//! state, workload counts by kind and state, the remote API's address and fingerprint, and
//! the host resource budget (`[host]`'s reserve and what the workloads set to run claim).
//!
//! Nothing here starts a probe: a VM runtime's accelerator is reported from what is already
//! known (`WARREN_VM_ACCEL`, or the probe result the VM runtime cached in `<state>/vm/accel`).
//! The host facts come from `/proc` and `uname` through pure parsers.

use super::engine::Engine;
use crate::wire::{
    DaemonInfo, HostInfo, Info, IngressInfo, RemoteInfo, RuntimeInfo, StorageInfo, WorkloadCounts,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Everything `GET /v1/info` answers (blocking: reads files and asks the storage driver).
pub fn gather(e: &Arc<Engine>) -> anyhow::Result<Info> {
    let desired = e.desired_all()?;
    let statuses: Vec<crate::wire::Status> = desired.values().map(|d| e.status(d)).collect();
    let mut by_kind: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for s in &statuses {
        *by_kind
            .entry(s.kind.clone())
            .or_default()
            .entry(s.state.clone())
            .or_default() += 1;
    }
    let domains: BTreeSet<String> = desired
        .values()
        .flat_map(|d| d.spec.route.domains.iter().cloned())
        .collect();
    let ingress_state = statuses
        .iter()
        .find(|s| s.name == super::ingress::ROUTER)
        .map(|s| s.state.clone())
        // Domains declared but no configuration accepted yet: the routing workload follows.
        .unwrap_or_else(|| if domains.is_empty() { "off" } else { "pending" }.to_string());
    let remote = e.telemetry.remote.get().map(|r| RemoteInfo {
        address: r.address.clone(),
        host_id: r.host_id.clone(),
        fingerprint: r.fingerprint.clone(),
    });
    let storage = match e.storage.pool_usage() {
        Ok(u) => StorageInfo {
            driver: e.storage.driver().to_string(),
            root: e.storage.root().display().to_string(),
            size_bytes: Some(u.size),
            used_bytes: Some(u.used),
            fill_percent: Some((u.fill_percent() * 100.0).round() / 100.0),
            error: None,
        },
        Err(err) => StorageInfo {
            driver: e.storage.driver().to_string(),
            root: e.storage.root().display().to_string(),
            size_bytes: None,
            used_bytes: None,
            fill_percent: None,
            error: Some(err.to_string()),
        },
    };
    let mut host = host_facts(Path::new("/"));
    host.id = remote
        .as_ref()
        .map(|r| r.host_id.clone())
        .or_else(|| {
            std::fs::read_to_string("/etc/machine-id")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    Ok(Info {
        daemon: DaemonInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            uptime_s: e.telemetry.uptime().as_secs(),
            started_ms: e.telemetry.started_ms,
            state_dir: e.cfg.state_dir.display().to_string(),
        },
        storage,
        runtimes: runtimes(&e.cfg.state_dir),
        ingress: IngressInfo {
            state: ingress_state,
            domains: domains.into_iter().collect(),
            http_port: e.cfg.ingress.http_port,
            https_port: e.cfg.ingress.https_port,
        },
        workloads: WorkloadCounts {
            total: statuses.len() as u32,
            by_kind,
        },
        budget: warren_model::budget::Budget::of(
            &super::vmcheck::host_size(&*e.exec),
            &super::vmcheck::stored_reserve(&e.store)?.unwrap_or_default(),
            e.store.desired()?.values().map(|d| &d.spec),
        ),
        host,
        remote,
        metrics_listen: e.telemetry.metrics_listen.get().cloned(),
    })
}

/// The host's facts, reading `/proc` and `/etc` under `root` (`/` but in tests).
pub fn host_facts(root: &Path) -> HostInfo {
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_default();
    let mem = meminfo(&read("proc/meminfo"));
    let uts = uname();
    HostInfo {
        name: uts.nodename,
        id: String::new(),
        os: std::env::consts::OS.to_string(),
        os_release: os_release_name(&read("etc/os-release")),
        kernel: format!("{} {}", uts.sysname, uts.release),
        arch: std::env::consts::ARCH.to_string(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_bytes: mem.0,
        memory_available_bytes: mem.1,
        uptime_s: uptime_seconds(&read("proc/uptime")),
    }
}

/// The fields of `uname(2)` this module reports.
#[derive(Default)]
struct Uname {
    nodename: String,
    sysname: String,
    release: String,
}

fn uname() -> Uname {
    // SAFETY: uname fills a zeroed struct of NUL-terminated arrays.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return Uname::default();
        }
        let s = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        Uname {
            nodename: s(&u.nodename),
            sysname: s(&u.sysname),
            release: s(&u.release),
        }
    }
}

/// MemTotal and MemAvailable from `/proc/meminfo`, in bytes.
pub fn meminfo(text: &str) -> (u64, u64) {
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
            .unwrap_or(0)
    };
    (kib("MemTotal:"), kib("MemAvailable:"))
}

/// Whole seconds of `/proc/uptime`'s first field.
pub fn uptime_seconds(text: &str) -> u64 {
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| s as u64)
        .unwrap_or(0)
}

/// `PRETTY_NAME` of an os-release file, unquoted.
pub fn os_release_name(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
        .unwrap_or_default()
}

/// The runtimes of this OS and whether each works here; no probe is started.
fn runtimes(state_dir: &Path) -> Vec<RuntimeInfo> {
    let os = std::env::consts::OS;
    let program = |name: &str| warren_exec::resolve(name);
    let mut out = Vec::new();
    if os == "freebsd" {
        let jail = program("/usr/sbin/jail");
        out.push(RuntimeInfo {
            name: "jail".into(),
            kind: "jail".into(),
            available: jail.is_some(),
            detail: jail
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "jail(8) not found".into()),
            accel: None,
        });
    } else {
        let runc = program("runc");
        out.push(RuntimeInfo {
            name: "runc".into(),
            kind: "container".into(),
            available: runc.is_some(),
            detail: runc
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "runc is not installed".into()),
            accel: None,
        });
    }
    if let Some(hv) = warren_model::vm_hypervisor(os) {
        let found = program(hv);
        let accel = known_accel(
            std::env::var("WARREN_VM_ACCEL").ok().as_deref(),
            std::fs::read_to_string(state_dir.join("vm").join("accel"))
                .ok()
                .as_deref(),
            os,
        );
        out.push(RuntimeInfo {
            name: if os == "freebsd" { "bhyve" } else { "qemu" }.into(),
            kind: "vm".into(),
            available: found.is_some(),
            detail: match (&found, &accel) {
                (None, _) => format!("{hv} is not installed"),
                (Some(p), Some(_)) => p.display().to_string(),
                (Some(p), None) => format!(
                    "{} (accelerator not probed yet: /dev/kvm {})",
                    p.display(),
                    if Path::new("/dev/kvm").exists() {
                        "present"
                    } else {
                        "absent"
                    }
                ),
            },
            accel,
        });
    }
    out
}

/// The VM accelerator already known here: `WARREN_VM_ACCEL` (kvm, or anything else: tcg),
/// else the VM runtime's cached probe result; bhyve always uses the CPU's virtualization.
pub fn known_accel(env: Option<&str>, cached: Option<&str>, os: &str) -> Option<String> {
    if os == "freebsd" {
        return Some("vmm".into());
    }
    match (env, cached.map(str::trim)) {
        (Some("kvm"), _) => Some("kvm".into()),
        (Some(_), _) => Some("tcg".into()),
        (None, Some(c @ ("kvm" | "tcg"))) => Some(c.into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_os_release() {
        let mem =
            "MemTotal:        8029604 kB\nMemFree:          123 kB\nMemAvailable:    4000000 kB\n";
        assert_eq!(meminfo(mem), (8029604 * 1024, 4000000 * 1024));
        assert_eq!(meminfo(""), (0, 0));
        assert_eq!(uptime_seconds("12345.67 2345.01\n"), 12345);
        assert_eq!(
            os_release_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
    }

    #[test]
    fn accelerator_is_what_is_known_only() {
        assert_eq!(known_accel(None, None, "linux"), None);
        assert_eq!(
            known_accel(None, Some("tcg\n"), "linux").as_deref(),
            Some("tcg")
        );
        assert_eq!(
            known_accel(Some("kvm"), Some("tcg"), "linux").as_deref(),
            Some("kvm")
        );
        assert_eq!(
            known_accel(Some("x"), None, "linux").as_deref(),
            Some("tcg")
        );
        assert_eq!(known_accel(None, Some("junk"), "linux"), None);
    }

    #[test]
    fn host_facts_read_the_given_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("proc/meminfo"),
            "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n",
        )
        .unwrap();
        std::fs::write(t.path().join("proc/uptime"), "99.5 1.0\n").unwrap();
        std::fs::write(t.path().join("etc/os-release"), "PRETTY_NAME=Test OS\n").unwrap();
        let h = host_facts(t.path());
        assert_eq!(h.memory_bytes, 2048 * 1024);
        assert_eq!(h.memory_available_bytes, 1024 * 1024);
        assert_eq!(h.uptime_s, 99);
        assert_eq!(h.os_release, "Test OS");
        assert!(h.cpus >= 1);
    }
}
