//! The names and published ports of bridge workloads, computed the same way on every OS: the
//! hosts file (`<name>`, `<name>.warren`), the resolver configuration handed to workloads, and
//! the published-port [`Ruleset`] that Linux renders as nftables rules and FreeBSD as a pf
//! anchor, and the [`NetSettings`] both read. Pure but for [`write_in_place`].

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use warren_model::{NetworkMode, WorkloadSpec};
use warren_net::ipam::Subnet;
use warren_net::ruleset::{Forward, Ruleset};

/// Bridge network settings of one daemon: the bridge, its subnet, and warren's packet filter
/// table (the nftables `inet` table on Linux, the pf anchor `warren/<table>` on FreeBSD).
#[derive(Debug, Clone)]
pub struct NetSettings {
    pub bridge: String,
    pub subnet: Subnet,
    pub table: String,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            bridge: warren_net::bridge::DEFAULT_BRIDGE.to_string(),
            subnet: Subnet::parse("10.88.0.0/16").expect("default subnet parses"),
            table: warren_net::ruleset::DEFAULT_TABLE.to_string(),
        }
    }
}

/// The ruleset for the desired workloads: every published port of a bridge workload that has
/// an address, on `settings`' bridge, subnet and table (the pf anchor's name on FreeBSD).
pub fn published(
    settings: &NetSettings,
    specs: &[&WorkloadSpec],
    addresses: &BTreeMap<String, Ipv4Addr>,
) -> Ruleset {
    let mut r = Ruleset::new(&settings.bridge, settings.subnet);
    r.table = settings.table.clone();
    for spec in specs {
        if spec.network != NetworkMode::Bridge {
            continue;
        }
        let Some(addr) = addresses.get(&spec.name) else {
            continue;
        };
        for m in &spec.ports {
            r.forwards.push(Forward {
                workload: spec.name.clone(),
                mapping: *m,
                address: *addr,
            });
        }
    }
    r
}

/// The lines of a resolv.conf that work from inside a workload's namespace.
pub fn usable_resolv_conf(host: &str) -> String {
    let mut out = String::from("# written by warren from the host's resolver configuration\n");
    for line in host.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("nameserver") {
            let loopback = addr
                .trim()
                .parse::<std::net::IpAddr>()
                .map(|a| a.is_loopback())
                .unwrap_or(true);
            if loopback {
                continue;
            }
        }
        if t.starts_with("nameserver") || t.starts_with("search") || t.starts_with("options") {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// The hosts file for `specs`: each bridge workload with an address as `NAME` and
/// `NAME.warren` (and its hostname, when it has its own).
pub fn render_hosts(specs: &[&WorkloadSpec], addresses: &BTreeMap<String, Ipv4Addr>) -> String {
    let mut out = String::from(
        "# written by warren: workloads by name; do not edit\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n",
    );
    let mut specs: Vec<&&WorkloadSpec> = specs.iter().collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    for spec in specs {
        if spec.network != NetworkMode::Bridge {
            continue;
        }
        let Some(addr) = addresses.get(&spec.name) else {
            continue;
        };
        let mut names = vec![spec.name.clone(), format!("{}.warren", spec.name)];
        let host = spec.effective_hostname();
        if !names.iter().any(|n| n == host) {
            names.push(host.to_string());
        }
        out.push_str(&format!("{addr}\t{}\n", names.join(" ")));
    }
    out
}

/// Replaces a file's contents keeping its inode, so a bind mount of it sees the new text.
pub fn write_in_place(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("{}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Writes `data` to `root/REL` (a file in a workload's own root filesystem, `etc/hosts`) without
/// following a symbolic link anywhere below `root`: the workload owns its root, and a link it
/// planted at `/etc` or `/etc/hosts` must not turn the daemon's write into one on the host.
/// Missing directories are created (0755); the file is replaced in place, mode 0644. (FreeBSD
/// copies names and rc settings into jails; Linux binds the names.)
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub fn install_in_root(root: &Path, rel: &Path, data: &[u8]) -> Result<()> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::Mode;
    use std::io::Write;
    use std::path::Component;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            _ => anyhow::bail!("{} is not a plain relative path", rel.display()),
        }
    }
    let Some((name, dirs)) = parts.split_last() else {
        anyhow::bail!("an empty path");
    };
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut dir = open(root, dir_flags, Mode::empty())
        .with_context(|| format!("opening {}", root.display()))?;
    let mut seen = root.to_path_buf();
    for d in dirs {
        seen.push(d);
        let next = match openat(&dir, *d, dir_flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&dir, *d, Mode::from_bits_truncate(0o755))
                    .with_context(|| format!("creating {}", seen.display()))?;
                openat(&dir, *d, dir_flags, Mode::empty())
                    .with_context(|| format!("opening {}", seen.display()))?
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "{} is not a directory of the workload's own (a link?): {e}",
                    seen.display()
                ))
            }
        };
        dir = next;
    }
    let target = root.join(rel);
    let fd = openat(
        &dir,
        *name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "{} cannot be written as a plain file (a link?): {e}",
            target.display()
        )
    })?;
    let mut f = std::fs::File::from(fd);
    f.write_all(data)
        .with_context(|| format!("writing {}", target.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_model::{PortMapping, Source};

    #[test]
    fn published_ports_of_addressed_bridge_workloads_only() {
        let settings = NetSettings {
            bridge: "warren0".into(),
            subnet: warren_net::ipam::Subnet::parse("10.88.0.0/16").unwrap(),
            table: "warren".into(),
        };
        let mut web = WorkloadSpec::new("web", Source::World("busybox".into()));
        web.ports = vec![PortMapping::parse("8080:80").unwrap()];
        let mut host = WorkloadSpec::new("tool", Source::World("busybox".into()));
        host.network = NetworkMode::Host;
        let mut later = WorkloadSpec::new("later", Source::World("busybox".into()));
        later.ports = vec![PortMapping::parse("9090:90").unwrap()];
        let addrs: BTreeMap<String, Ipv4Addr> = [
            ("web".to_string(), Ipv4Addr::new(10, 88, 0, 2)),
            ("tool".to_string(), Ipv4Addr::new(10, 88, 0, 3)),
        ]
        .into();
        let r = published(&settings, &[&web, &host, &later], &addrs);
        assert_eq!(r.bridge, "warren0");
        assert_eq!(r.table, "warren");
        assert_eq!(r.forwards.len(), 1);
        assert_eq!(r.forwards[0].workload, "web");
        assert_eq!(r.forwards[0].address, Ipv4Addr::new(10, 88, 0, 2));
    }

    #[test]
    fn names_are_installed_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        install_in_root(&root, Path::new("etc/hosts"), b"10.88.0.2\tweb\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "10.88.0.2\tweb\n"
        );
        install_in_root(&root, Path::new("etc/hosts"), b"short\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
            "short\n"
        );

        // A link planted at /etc/resolv.conf, or at /etc itself, is refused; the host file
        // it points at is untouched.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "host data").unwrap();
        std::os::unix::fs::symlink(&victim, root.join("etc/resolv.conf")).unwrap();
        let err = install_in_root(&root, Path::new("etc/resolv.conf"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("a link?"), "{err:#}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::create_dir(other.join("etc")).unwrap();
        std::fs::rename(root.join("etc"), dir.path().join("old-etc")).unwrap();
        std::os::unix::fs::symlink(other.join("etc"), root.join("etc")).unwrap();
        assert!(install_in_root(&root, Path::new("etc/hosts"), b"x").is_err());
        assert!(!other.join("etc/hosts").exists());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host data");
        assert!(install_in_root(&root, Path::new("../x"), b"x").is_err());
        assert!(install_in_root(&root, Path::new("/etc/x"), b"x").is_err());
        assert!(
            install_in_root(&dir.path().join("missing"), Path::new("etc/hosts"), b"x").is_err()
        );
        // Nested directories are made as needed.
        std::fs::remove_file(root.join("etc")).unwrap();
        install_in_root(
            &root,
            Path::new("etc/rc.conf.d/nginx"),
            b"nginx_enable=\"YES\"\n",
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("etc/rc.conf.d/nginx")).unwrap(),
            "nginx_enable=\"YES\"\n"
        );
    }
}
