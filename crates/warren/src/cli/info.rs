//! `warren info` (what the host is and runs, as a table, JSON or YAML), `warren metrics` (the
//! Prometheus text), and `warren daemon logs` (the daemon's own log file, read on the host:
//! readable lines filtered by level, optionally following new lines across rotations).

use super::Exit;
use crate::client::{routes, Client};
use crate::daemon::logfile;
use crate::wire::Info;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::io::{BufRead, Seek, Write};
use std::path::Path;

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub(super) enum InfoFormat {
    Table,
    Json,
    Yaml,
}

pub(super) async fn info(client: &Client, format: InfoFormat) -> Result<Exit> {
    let info: Info = client.get(&routes::INFO.call()).await?;
    match format {
        InfoFormat::Json => println!("{}", serde_json::to_string_pretty(&info)?),
        InfoFormat::Yaml => print!("{}", crate::output::yaml(&serde_json::to_value(&info)?)),
        InfoFormat::Table => print!("{}", render(&info)),
    }
    Ok(Exit::Success)
}

pub(super) async fn metrics(client: &Client) -> Result<Exit> {
    use http_body_util::BodyExt;
    let body = client.get_stream(&routes::METRICS.call()).await?;
    let bytes = body.collect().await?.to_bytes();
    std::io::stdout().write_all(&bytes)?;
    Ok(Exit::Success)
}

/// Bytes in a readable unit (GiB, MiB, KiB).
pub fn bytes(n: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if n >= size {
            return format!("{:.1} {unit}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// Seconds as `3d 4h`, `2h 5m`, `7m 3s` or `12s`.
pub fn duration(s: u64) -> String {
    let (d, h, m) = (s / 86400, s / 3600 % 24, s / 60 % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m {}s", s % 60),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The readable form of `warren info`: one `key: value` line per fact, in sections.
pub fn render(i: &Info) -> String {
    let mut rows: Vec<(String, String)> = vec![
        (
            "host".into(),
            format!("{} (id {})", i.host.name, or_dash(&i.host.id)),
        ),
        (
            "os".into(),
            format!(
                "{}, {} ({})",
                if i.host.os_release.is_empty() {
                    &i.host.os
                } else {
                    &i.host.os_release
                },
                i.host.kernel,
                i.host.arch
            ),
        ),
        (
            "resources".into(),
            format!(
                "{} CPUs, {} memory ({} available), up {}",
                i.host.cpus,
                bytes(i.host.memory_bytes),
                bytes(i.host.memory_available_bytes),
                duration(i.host.uptime_s)
            ),
        ),
        ("memory budget".into(), memory_budget(&i.budget)),
        ("cpu budget".into(), cpu_budget(&i.budget)),
        (
            "warren".into(),
            format!(
                "{} (pid {}, up {}, state {})",
                i.daemon.version,
                i.daemon.pid,
                duration(i.daemon.uptime_s),
                i.daemon.state_dir
            ),
        ),
        (
            "storage".into(),
            match (
                i.storage.size_bytes,
                i.storage.used_bytes,
                i.storage.fill_percent,
            ) {
                (Some(size), Some(used), Some(fill)) => format!(
                    "{} at {}: {} of {} used ({fill:.1}%)",
                    i.storage.driver,
                    i.storage.root,
                    bytes(used),
                    bytes(size)
                ),
                _ => format!(
                    "{} at {}: size unknown ({})",
                    i.storage.driver,
                    i.storage.root,
                    i.storage.error.as_deref().unwrap_or("no answer")
                ),
            },
        ),
    ];
    for r in &i.runtimes {
        rows.push((
            format!("runtime {}", r.name),
            format!(
                "{} for {}{}: {}",
                if r.available {
                    "available"
                } else {
                    "unavailable"
                },
                r.kind,
                r.accel
                    .as_ref()
                    .map(|a| format!(" ({a})"))
                    .unwrap_or_default(),
                r.detail
            ),
        ));
    }
    rows.push((
        "ingress".into(),
        format!(
            "{} (ports {}/{}{})",
            i.ingress.state,
            i.ingress.http_port,
            i.ingress.https_port,
            if i.ingress.domains.is_empty() {
                String::new()
            } else {
                format!("; {}", i.ingress.domains.join(", "))
            }
        ),
    ));
    let counts: Vec<String> = i
        .workloads
        .by_kind
        .iter()
        .map(|(kind, states)| {
            let s: Vec<String> = states.iter().map(|(st, n)| format!("{n} {st}")).collect();
            format!("{kind}: {}", s.join(", "))
        })
        .collect();
    rows.push((
        "workloads".into(),
        if counts.is_empty() {
            "0".into()
        } else {
            format!("{} ({})", i.workloads.total, counts.join("; "))
        },
    ));
    rows.push((
        "remote API".into(),
        match &i.remote {
            Some(r) => format!(
                "{} (host id {}, fingerprint {})",
                r.address, r.host_id, r.fingerprint
            ),
            None => "off".into(),
        },
    ));
    if let Some(m) = &i.metrics_listen {
        rows.push(("metrics".into(), format!("http://{m}/metrics")));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{k:<width$}  {v}\n"))
        .collect()
}

/// The memory budget: the host's total, the `[host]` reserve, what the workloads set to run
/// claim, and what is left.
fn memory_budget(b: &warren_model::budget::Budget) -> String {
    match (b.memory_total, b.memory_left) {
        (Some(total), Some(left)) => format!(
            "{} total, {} reserved, {} allocated, {} left",
            bytes(total),
            bytes(b.memory_reserved),
            bytes(b.memory_allocated),
            bytes(left)
        ),
        _ => format!(
            "total unknown, {} reserved, {} allocated",
            bytes(b.memory_reserved),
            bytes(b.memory_allocated)
        ),
    }
}

/// The CPU budget, as [`memory_budget`] (left is negative when overcommitted).
fn cpu_budget(b: &warren_model::budget::Budget) -> String {
    let n = |c: f64| format!("{}", (c * 100.0).round() / 100.0);
    match (b.cpus_total, b.cpus_left) {
        (Some(total), Some(left)) => format!(
            "{total} total, {} reserved, {} allocated, {} left",
            n(b.cpus_reserved),
            n(b.cpus_allocated),
            n(left)
        ),
        _ => format!(
            "total unknown, {} reserved, {} allocated",
            n(b.cpus_reserved),
            n(b.cpus_allocated)
        ),
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// `warren daemon logs`: the daemon's log in `state_dir` (with its rotated files, oldest
/// first), lines at `level` or more severe; with `follow`, new lines as they come.
pub(super) async fn daemon_logs(
    client: &Client,
    state_dir: &Path,
    follow: bool,
    level: &str,
    json: bool,
) -> Result<Exit> {
    if client.remote.is_some() {
        bail!(
            "the daemon's log is read on its host (warren daemon logs, without a remote context)"
        );
    }
    if !logfile::LEVELS
        .iter()
        .any(|l| l.eq_ignore_ascii_case(level))
    {
        bail!("--level {level:?}: give one of error, warn, info, debug, trace");
    }
    let path = state_dir.join(logfile::FILE);
    let emit = |line: &str, out: &mut dyn Write| -> std::io::Result<()> {
        match logfile::render_line(line) {
            Some((l, text)) if logfile::at_least(&l, level) => {
                writeln!(out, "{}", if json { line } else { &text })
            }
            _ => Ok(()),
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for n in (1..=logfile::KEEP).rev() {
        let old = logfile::RotatingFile::rotated(&path, n);
        if let Ok(f) = std::fs::File::open(&old) {
            for line in std::io::BufReader::new(f).lines() {
                emit(&line?, &mut out)?;
            }
        }
    }
    let mut f = std::fs::File::open(&path).with_context(|| {
        format!(
            "{} (has the daemon run with this state dir?)",
            path.display()
        )
    })?;
    let mut reader = std::io::BufReader::new(f.try_clone()?);
    let mut pending = String::new();
    loop {
        let mut buf = String::new();
        let n = reader.read_line(&mut buf)?;
        if n > 0 {
            pending.push_str(&buf);
            if pending.ends_with('\n') {
                emit(pending.trim_end(), &mut out)?;
                pending.clear();
            }
            continue;
        }
        if !follow {
            break;
        }
        out.flush()?;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Rotated: the path names a new file; read it from its start.
        let pos = reader.stream_position()?;
        let rotated = match (std::fs::metadata(&path), f.metadata()) {
            (Ok(now), Ok(open)) => {
                use std::os::unix::fs::MetadataExt;
                now.ino() != open.ino() || now.len() < pos
            }
            _ => false,
        };
        if rotated {
            f = std::fs::File::open(&path)?;
            reader = std::io::BufReader::new(f.try_clone()?);
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::*;

    fn sample() -> Info {
        Info {
            host: HostInfo {
                name: "box".into(),
                id: "h-1".into(),
                os: "linux".into(),
                os_release: "Debian GNU/Linux 12 (bookworm)".into(),
                kernel: "Linux 6.1.0".into(),
                arch: "x86_64".into(),
                cpus: 2,
                memory_bytes: 8 << 30,
                memory_available_bytes: 6 << 30,
                uptime_s: 90061,
            },
            daemon: DaemonInfo {
                version: "0.1.0".into(),
                pid: 42,
                uptime_s: 65,
                started_ms: 0,
                state_dir: "/var/lib/warren".into(),
            },
            storage: StorageInfo {
                driver: "btrfs".into(),
                root: "/var/lib/warren/pool".into(),
                size_bytes: Some(20 << 30),
                used_bytes: Some(5 << 30),
                fill_percent: Some(25.0),
                error: None,
            },
            runtimes: vec![RuntimeInfo {
                name: "qemu".into(),
                kind: "vm".into(),
                available: true,
                detail: "/usr/bin/qemu-system-x86_64".into(),
                accel: Some("tcg".into()),
            }],
            ingress: IngressInfo {
                state: "running".into(),
                domains: vec!["a.test".into()],
                http_port: 80,
                https_port: 443,
            },
            workloads: WorkloadCounts {
                total: 3,
                by_kind: [(
                    "container".to_string(),
                    [("running".to_string(), 2), ("stopped".to_string(), 1)].into(),
                )]
                .into(),
            },
            remote: Some(RemoteInfo {
                address: "0.0.0.0:7443".into(),
                host_id: "h-1".into(),
                fingerprint: "ab:cd".into(),
            }),
            metrics_listen: None,
            budget: warren_model::budget::Budget {
                memory_total: Some(8 << 30),
                memory_reserved: 2 << 30,
                memory_allocated: 1536 << 20,
                memory_left: Some(4608 << 20),
                cpus_total: Some(2),
                cpus_reserved: 1.0,
                cpus_allocated: 1.5,
                cpus_left: Some(-0.5),
            },
        }
    }

    #[test]
    fn renders_every_section() {
        let text = render(&sample());
        let expected = "\
host           box (id h-1)
os             Debian GNU/Linux 12 (bookworm), Linux 6.1.0 (x86_64)
resources      2 CPUs, 8.0 GiB memory (6.0 GiB available), up 1d 1h
memory budget  8.0 GiB total, 2.0 GiB reserved, 1.5 GiB allocated, 4.5 GiB left
cpu budget     2 total, 1 reserved, 1.5 allocated, -0.5 left
warren         0.1.0 (pid 42, up 1m 5s, state /var/lib/warren)
storage        btrfs at /var/lib/warren/pool: 5.0 GiB of 20.0 GiB used (25.0%)
runtime qemu   available for vm (tcg): /usr/bin/qemu-system-x86_64
ingress        running (ports 80/443; a.test)
workloads      3 (container: 2 running, 1 stopped)
remote API     0.0.0.0:7443 (host id h-1, fingerprint ab:cd)
";
        assert_eq!(text, expected);
    }

    #[test]
    fn units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3600 * 5 + 60 * 7), "5h 7m");
    }
}
