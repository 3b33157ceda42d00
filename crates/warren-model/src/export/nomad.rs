//! Nomad job files (HCL2 jobspec), one per workload: `job "NAME" { group "NAME" { task "NAME" }}`.
//!
//! The mapping, in short (the full table is `docs/export.md`):
//! - an `image` source runs under the `docker` driver; a `world` or `recipe` source under the
//!   `exec` driver, whose root filesystem is the client's `chroot_env` (the header says which
//!   world or recipe it must hold);
//! - `restart = "always"` is a `service` job; `on-failure` a `batch` job (a clean exit is done,
//!   a failure is restarted); `never` a `batch` job with no restarts and no rescheduling;
//! - the network is the group's (`bridge`, `host`, `none`); published `ports` are static host
//!   ports mapped `to` the workload port, the route's port a dynamic one;
//! - volumes and the data dataset are Nomad *host volumes* (`source` = the volume's name, or
//!   `NAME-data`), declared in the client configuration; CSI needs a plugin per storage system
//!   and is not chosen;
//! - domains become Traefik tags on a Nomad-provider service (`traefik.http.routers.…`), the
//!   common way to route Nomad services by name; the health check becomes that service's
//!   `check`, with `check_restart` when an unhealthy workload is restarted.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{built_image, common_unmapped, data_used, key, skip_reason, volume_unmapped};
use super::{Export, ExportFile, Skipped, Unmapped};
use crate::health::{OnUnhealthy, Probe};
use crate::ports::PortMapping;
use crate::spec::*;

/// An HCL2 quoted string; `${` and `%{` are escaped so nothing is a template.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", q.join(", "))
}

/// Whether `s` may be written as a bare HCL attribute name.
fn identifier(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// An indenting HCL writer.
#[derive(Default)]
struct Hcl {
    out: String,
    depth: usize,
}

impl Hcl {
    fn line(&mut self, s: &str) {
        if s.is_empty() {
            self.out.push('\n');
            return;
        }
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }
    fn attr(&mut self, k: &str, v: impl AsRef<str>) {
        self.line(&format!("{k} = {}", v.as_ref()));
    }
    fn open(&mut self, head: &str) {
        self.line(&format!("{head} {{"));
        self.depth += 1;
    }
    fn close(&mut self) {
        self.depth -= 1;
        self.line("}");
    }
}

/// The port labels of a workload: static host ports first (`pHOSTPORT`), then the route's
/// port (`http`), then a health check's port that is neither (`health`).
struct Ports {
    statics: Vec<(String, PortMapping)>,
    route: Option<u16>,
    health: Option<u16>,
}

impl Ports {
    fn of(w: &WorkloadSpec) -> Ports {
        let statics: Vec<(String, PortMapping)> = w
            .ports
            .iter()
            .map(|m| (format!("p{}", m.host_port), *m))
            .collect();
        let route = (!w.route.domains.is_empty())
            .then_some(w.route.port)
            .flatten();
        let mut p = Ports {
            statics,
            route,
            health: None,
        };
        if let Some(hp) = w.health.as_ref().and_then(|h| match h.probe {
            Probe::Http { port, .. } | Probe::Tcp(port) => Some(port),
            Probe::Exec(_) => None,
        }) {
            if p.label(hp).is_none() {
                p.health = Some(hp);
            }
        }
        p
    }

    /// The label of a workload port.
    fn label(&self, port: u16) -> Option<String> {
        if self.route == Some(port) {
            return Some("http".into());
        }
        if let Some((l, _)) = self.statics.iter().find(|(_, m)| m.container_port == port) {
            return Some(l.clone());
        }
        (self.health == Some(port)).then(|| "health".into())
    }
}

/// `memory` of a Nomad task: MiB, rounded up.
fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

fn dur(secs: u64) -> String {
    quote(&format!("{secs}s"))
}

/// The Traefik tags routing the workload's domains to its service.
fn traefik_tags(w: &WorkloadSpec) -> Vec<String> {
    let r = &w.route;
    let hosts: Vec<String> = r
        .domains
        .iter()
        .map(|d| match d.strip_prefix("*.") {
            // One label in front of the rest, as the wildcard matches in warren's ingress.
            Some(rest) => format!("HostRegexp(`^[^.]+\\.{}$`)", rest.replace('.', "\\.")),
            None => format!("Host(`{d}`)"),
        })
        .collect();
    let mut rule = hosts.join(" || ");
    if hosts.len() > 1 {
        rule = format!("({rule})");
    }
    if r.path != "/" {
        rule = format!("{rule} && PathPrefix(`{}`)", r.path);
    }
    let n = &w.name;
    let mut tags = vec![
        "traefik.enable=true".to_string(),
        format!("traefik.http.routers.{n}.rule={rule}"),
    ];
    if r.tls != TlsChoice::None {
        tags.push(format!("traefik.http.routers.{n}.tls=true"));
    }
    tags
}

/// One workload's job file, what of it could not be mapped, and the host volumes it needs.
pub fn job(w: &WorkloadSpec, spec: &SpecFile) -> (String, Vec<Unmapped>, Vec<String>) {
    let mut unmapped = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    common_unmapped(w, &mut unmapped);
    let ports = Ports::of(w);
    let data = data_used(w);
    let image = match &w.source {
        Source::Image(r) => Some(r.clone()),
        _ => None,
    };
    let n = &w.name;

    let mut h = Hcl::default();
    h.open(&format!("job {}", quote(n)));
    h.attr("datacenters", list(&["*".to_string()]));
    let kind = match w.restart {
        RestartPolicy::Always => "service",
        RestartPolicy::OnFailure | RestartPolicy::Never => "batch",
    };
    h.attr("type", quote(kind));
    h.line("");
    h.open(&format!("group {}", quote(n)));
    h.attr(
        "count",
        if w.state == DesiredState::Stopped {
            "0"
        } else {
            "1"
        },
    );

    // Network.
    h.line("");
    h.open("network");
    h.attr("mode", quote(w.network.as_str()));
    if let Some(host) = &w.hostname {
        if w.network == NetworkMode::Bridge {
            h.attr("hostname", quote(host));
        }
    }
    if w.network == NetworkMode::None && !(w.ports.is_empty() && ports.route.is_none()) {
        unmapped.push(Unmapped {
            key: key(w, "network"),
            why: "\"none\" with ports: the ports are left out".into(),
        });
    } else {
        let to = w.network == NetworkMode::Bridge;
        for (label, m) in &ports.statics {
            h.open(&format!("port {}", quote(label)));
            h.attr("static", m.host_port.to_string());
            if to {
                h.attr("to", m.container_port.to_string());
            }
            h.close();
            if let Some(ip) = m.host_ip {
                unmapped.push(Unmapped {
                    key: key(w, "ports"),
                    why: format!(
                        "{ip}:{}: Nomad picks a port's address by host_network name; declare \
                         a host_network for {ip} in the client configuration and set \
                         host_network on port {label}",
                        m.host_port
                    ),
                });
            }
        }
        for (label, p) in [("http", ports.route), ("health", ports.health)] {
            if let Some(p) = p {
                h.open(&format!("port {}", quote(label)));
                h.attr(if to { "to" } else { "static" }, p.to_string());
                h.close();
            }
        }
    }
    h.close();

    // Volumes: (group label = host volume source, path, read-only).
    let mut mounts: Vec<(String, String, bool)> = Vec::new();
    if data {
        mounts.push((format!("{n}-data"), w.data_path.clone(), false));
    }
    for v in &w.volumes {
        mounts.push((v.volume.clone(), v.path.clone(), v.readonly));
    }
    for (vol, _, ro) in &mounts {
        h.line("");
        h.open(&format!("volume {}", quote(vol)));
        h.attr("type", quote("host"));
        h.attr("source", quote(vol));
        if *ro {
            h.attr("read_only", "true");
        }
        h.close();
        let size = spec
            .volumes
            .get(vol)
            .and_then(|v| v.size)
            .map(|s| format!(" ({} MiB)", mib(s)))
            .unwrap_or_default();
        notes.push(format!(
            "host volume {vol:?}{size}: declare it on the client ({CLIENT_FILE})"
        ));
    }

    // Restart policy.
    h.line("");
    match w.restart {
        RestartPolicy::Always | RestartPolicy::OnFailure => {
            h.open("restart");
            h.attr("attempts", "10");
            h.attr("interval", quote("30m"));
            h.attr("delay", quote("1s"));
            h.attr("mode", quote("delay"));
            h.close();
        }
        RestartPolicy::Never => {
            h.open("restart");
            h.attr("attempts", "0");
            h.attr("mode", quote("fail"));
            h.close();
            h.line("");
            h.open("reschedule");
            h.attr("attempts", "0");
            h.attr("unlimited", "false");
            h.close();
        }
    }

    // Service: the route, the health check.
    let route_port = ports.route.map(|_| "http".to_string());
    let check_port = w.health.as_ref().and_then(|hc| match hc.probe {
        Probe::Http { port, .. } | Probe::Tcp(port) => ports.label(port),
        Probe::Exec(_) => None,
    });
    if !w.route.domains.is_empty() && ports.route.is_none() {
        unmapped.push(Unmapped {
            key: key(w, "domains"),
            why: "a route without a port: Traefik needs the service's port".into(),
        });
    }
    if w.route.max_body.is_some() {
        unmapped.push(Unmapped {
            key: key(w, "max_body"),
            why: "a request body limit: add a Traefik buffering middleware".into(),
        });
    }
    if let TlsChoice::Files { .. } = w.route.tls {
        notes.push("tls files: load the certificate and key into Traefik's TLS store".into());
    } else if w.route.tls == TlsChoice::Local && ports.route.is_some() {
        notes.push("tls = \"local\": Traefik serves its default or ACME certificate".into());
    }
    let exec_check = matches!(w.health.as_ref().map(|h| &h.probe), Some(Probe::Exec(_)));
    if exec_check {
        unmapped.push(Unmapped {
            key: key(w, "health"),
            why: "an exec check: Nomad's built-in service provider runs http and tcp checks \
                  only (with Consul, a script check)"
                .into(),
        });
    }
    let first_static = ports.statics.first().map(|(l, _)| l.clone());
    if let Some(port) = route_port.or(first_static).or(check_port.clone()) {
        h.line("");
        h.open("service");
        h.attr("name", quote(n));
        h.attr("provider", quote("nomad"));
        h.attr("port", quote(&port));
        if ports.route.is_some() {
            h.attr("tags", list(&traefik_tags(w)));
        }
        if let (Some(hc), Some(cport)) = (&w.health, &check_port) {
            h.line("");
            h.open("check");
            match &hc.probe {
                Probe::Http { path, .. } => {
                    h.attr("type", quote("http"));
                    h.attr("path", quote(path));
                }
                _ => h.attr("type", quote("tcp")),
            }
            h.attr("port", quote(cport));
            h.attr("interval", dur(hc.interval_secs));
            h.attr("timeout", dur(hc.timeout_secs));
            if hc.on_unhealthy == OnUnhealthy::Restart {
                h.line("");
                h.open("check_restart");
                h.attr("limit", hc.retries.to_string());
                h.attr("grace", dur(hc.start_period_secs));
                h.close();
            }
            h.close();
        }
        h.close();
    }

    // The task.
    h.line("");
    h.open(&format!("task {}", quote(n)));
    let driver = if image.is_some() { "docker" } else { "exec" };
    h.attr("driver", quote(driver));
    if let Some(u) = &w.user {
        h.attr("user", quote(u));
    }
    h.line("");
    h.open("config");
    match &image {
        Some(img) => {
            h.attr("image", quote(img));
            if let Some(ep) = &w.entrypoint {
                h.attr("entrypoint", list(ep));
            }
            if let Some((first, rest)) = w.command.split_first() {
                h.attr("command", quote(first));
                if !rest.is_empty() {
                    h.attr("args", list(rest));
                }
            }
            if let Some(wd) = &w.workdir {
                h.attr("work_dir", quote(wd));
            }
            if w.readonly_rootfs {
                h.attr("readonly_rootfs", "true");
            }
            if let (Some(host), false) = (&w.hostname, w.network == NetworkMode::Bridge) {
                h.attr("hostname", quote(host));
            }
        }
        None => {
            let (first, rest) = match w.command.split_first() {
                Some((f, r)) => (f.clone(), r.to_vec()),
                None => ("/bin/sh".to_string(), Vec::new()),
            };
            h.attr("command", quote(&first));
            if !rest.is_empty() {
                h.attr("args", list(&rest));
            }
            if let Some((_, need)) = built_image(&w.source) {
                let world_host = w.source == Source::World("host".into());
                notes.push(if world_host {
                    "the exec driver's chroot is built from the client's own system \
                     (chroot_env), as world \"host\" is"
                        .to_string()
                } else {
                    format!(
                        "the exec driver's chroot (chroot_env) must hold the {}",
                        need.split(':').next().unwrap_or(&need)
                    )
                });
            }
            for (k, what) in [
                ("workdir", w.workdir.is_some()),
                ("readonly_rootfs", w.readonly_rootfs),
                (
                    "hostname",
                    w.hostname.is_some() && w.network != NetworkMode::Bridge,
                ),
            ] {
                if what {
                    unmapped.push(Unmapped {
                        key: key(w, k),
                        why: "the exec driver has no such option (the docker driver has)".into(),
                    });
                }
            }
        }
    }
    h.close();
    if !w.env.is_empty() {
        h.line("");
        // A name that is not an identifier needs the map form, where names are quoted.
        let block = w.env.keys().all(|k| identifier(k));
        h.open(if block { "env" } else { "env =" });
        for (k, v) in &w.env {
            let k = if block { k.clone() } else { quote(k) };
            h.attr(&k, quote(v));
        }
        h.close();
    }
    if w.resources.cpus.is_some() || w.resources.memory.is_some() {
        h.line("");
        h.open("resources");
        if let Some(c) = w.resources.cpus {
            h.attr("cpu", ((c * 1000.0).round() as u64).max(1).to_string());
            notes.push(format!(
                "cpus = {c}: cpu = {} MHz, assuming 1000 MHz a core; Nomad's cpu is a \
                 share, a hard limit needs the docker driver's cpu_hard_limit",
                (c * 1000.0).round() as u64
            ));
        }
        if let Some(m) = w.resources.memory {
            h.attr("memory", mib(m).to_string());
        }
        h.close();
    }
    if let Some(d) = w.resources.disk {
        unmapped.push(Unmapped {
            key: key(w, "resources.disk"),
            why: format!("{d} bytes of writes: Nomad limits only the allocation directory"),
        });
    }
    if w.userns {
        unmapped.push(Unmapped {
            key: key(w, "userns"),
            why: "a user namespace per workload: Nomad's drivers configure user namespaces \
                  per client (docker's userns-remap), not per task"
                .into(),
        });
    }
    for (vol, path, ro) in &mounts {
        h.line("");
        h.open("volume_mount");
        h.attr("volume", quote(vol));
        h.attr("destination", quote(path));
        if *ro {
            h.attr("read_only", "true");
        }
        h.close();
    }
    h.close();
    h.close();
    h.close();

    // The header: notes first, then what cannot map.
    let mut head = format!(
        "# Nomad job for warren workload {n:?}, from `warren spec export --format nomad`.\n"
    );
    if !data {
        let _ = writeln!(
            head,
            "# Its data dataset ({}) is not referred to by the spec and is left out.",
            w.data_path
        );
    }
    for note in notes.iter().collect::<BTreeSet<_>>() {
        let _ = writeln!(head, "# Note: {note}.");
    }
    unmapped.sort();
    unmapped.dedup();
    if !unmapped.is_empty() {
        head.push_str("# Cannot map:\n");
        for u in &unmapped {
            let _ = writeln!(head, "#   {u}");
        }
    }
    head.push('\n');
    let host_volumes = mounts.into_iter().map(|(v, _, _)| v).collect();
    (head + &h.out, unmapped, host_volumes)
}

/// The file of the client configuration that declares the host volumes.
pub const CLIENT_FILE: &str = "client-host-volumes.hcl";

/// Every exportable workload's job file (`NAME.nomad.hcl`), in name order, then the client
/// configuration declaring every host volume they mount ([`CLIENT_FILE`]), whose header lists
/// what of the volumes cannot map.
pub fn export(spec: &SpecFile) -> Export {
    let mut out = Export::default();
    let mut host_volumes: BTreeSet<String> = BTreeSet::new();
    for w in spec.workloads.values() {
        if let Some(why) = skip_reason(w) {
            out.skipped.push(Skipped {
                workload: w.name.clone(),
                why,
            });
            continue;
        }
        let (text, unmapped, volumes) = job(w, spec);
        out.files.push(ExportFile {
            name: format!("{}.nomad.hcl", w.name),
            text,
        });
        out.unmapped.extend(unmapped);
        host_volumes.extend(volumes);
    }
    let mut vol_unmapped = Vec::new();
    volume_unmapped(spec, &mut vol_unmapped);
    if !host_volumes.is_empty() || !vol_unmapped.is_empty() {
        let mut text = String::from(
            "# Nomad client configuration: the host volumes of the jobs exported by\n\
             # `warren spec export --format nomad`. Point each path at the volume's data\n\
             # (a copy of the warren volume, or its dataset) on every client that runs them.\n",
        );
        for s in &out.skipped {
            let _ = writeln!(text, "# Skipped: {s}.");
        }
        if !vol_unmapped.is_empty() {
            text.push_str("# Cannot map:\n");
            for u in &vol_unmapped {
                let _ = writeln!(text, "#   {u}");
            }
        }
        text.push('\n');
        let mut h = Hcl::default();
        h.open("client");
        for (i, v) in host_volumes.iter().enumerate() {
            if i > 0 {
                h.line("");
            }
            h.open(&format!("host_volume {}", quote(v)));
            h.attr("path", quote(&format!("/srv/nomad/volumes/{v}")));
            h.attr("read_only", "false");
            h.close();
        }
        h.close();
        out.files.push(ExportFile {
            name: CLIENT_FILE.into(),
            text: text + &h.out,
        });
    }
    out.unmapped.extend(vol_unmapped);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::HealthCheck;

    fn image(name: &str) -> WorkloadSpec {
        WorkloadSpec::new(name, Source::Image("docker.io/library/nginx:1".into()))
    }

    fn world(name: &str) -> WorkloadSpec {
        WorkloadSpec::new(name, Source::World("busybox".into()))
    }

    fn text(w: &WorkloadSpec) -> (String, Vec<String>) {
        let (t, u, _) = job(w, &SpecFile::default());
        (t, u.into_iter().map(|u| u.key).collect())
    }

    fn check(probe: Probe, on_unhealthy: OnUnhealthy) -> HealthCheck {
        HealthCheck {
            probe,
            interval_secs: 10,
            timeout_secs: 5,
            retries: 3,
            start_period_secs: 30,
            on_unhealthy,
        }
    }

    #[test]
    fn quoting_escapes_templates_and_specials() {
        assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(quote("${HOME} %{if} $x %y"), r#""$${HOME} %%{if} $x %y""#);
    }

    #[test]
    fn an_image_runs_under_docker_with_its_entrypoint_and_command() {
        let mut w = image("web");
        w.entrypoint = Some(vec!["/init".into()]);
        w.command = vec!["nginx".into(), "-g".into(), "daemon off;".into()];
        w.readonly_rootfs = true;
        w.workdir = Some("/srv".into());
        let (t, unmapped) = text(&w);
        assert!(t.contains("driver = \"docker\""));
        assert!(t.contains("image = \"docker.io/library/nginx:1\""));
        assert!(t.contains("entrypoint = [\"/init\"]"));
        assert!(t.contains("command = \"nginx\"\n"));
        assert!(t.contains("args = [\"-g\", \"daemon off;\"]"));
        assert!(t.contains("readonly_rootfs = true"));
        assert!(t.contains("work_dir = \"/srv\""));
        assert!(unmapped.is_empty(), "{unmapped:?}");
    }

    #[test]
    fn a_world_runs_under_exec_and_says_which_rootfs() {
        let mut w = world("clock");
        let (t, _) = text(&w);
        assert!(t.contains("driver = \"exec\""));
        assert!(
            t.contains("command = \"/bin/sh\""),
            "the world's default command"
        );
        assert!(
            t.contains("chroot_env) must hold the world \"busybox\""),
            "{t}"
        );
        w.readonly_rootfs = true;
        w.workdir = Some("/srv".into());
        let (_, unmapped) = text(&w);
        assert_eq!(
            unmapped,
            ["workload.clock.readonly_rootfs", "workload.clock.workdir"]
        );
    }

    #[test]
    fn restart_policies_choose_the_job_type() {
        let mut w = world("a");
        assert!(text(&w).0.contains("type = \"service\""));
        w.restart = RestartPolicy::OnFailure;
        let t = text(&w).0;
        assert!(t.contains("type = \"batch\"") && t.contains("mode = \"delay\""));
        w.restart = RestartPolicy::Never;
        let t = text(&w).0;
        assert!(t.contains("type = \"batch\"") && t.contains("mode = \"fail\""));
        assert!(t.contains("reschedule {\n      attempts = 0\n      unlimited = false"));
        w.state = DesiredState::Stopped;
        assert!(text(&w).0.contains("count = 0"));
    }

    #[test]
    fn ports_are_static_and_mapped_to_the_workload_port() {
        let mut w = world("a");
        w.ports = vec![PortMapping::parse("8443:443").unwrap()];
        w.route.domains = vec!["a.example".into()];
        w.route.port = Some(8080);
        let t = text(&w).0;
        assert!(t.contains("port \"p8443\" {\n        static = 8443\n        to = 443\n"));
        assert!(t.contains("port \"http\" {\n        to = 8080\n"));
        assert!(
            t.contains("port = \"http\""),
            "the service is on the routed port"
        );
        w.network = NetworkMode::Host;
        let t = text(&w).0;
        assert!(t.contains("mode = \"host\""));
        assert!(
            t.contains("port \"http\" {\n        static = 8080\n"),
            "{t}"
        );
        assert!(!t.contains("to = "), "no mapping on the host network");
    }

    #[test]
    fn a_host_address_is_listed() {
        let mut w = world("a");
        w.ports = vec![PortMapping::parse("127.0.0.1:9000:9000").unwrap()];
        assert_eq!(text(&w).1, ["workload.a.ports"]);
    }

    #[test]
    fn domains_become_traefik_tags() {
        let mut w = world("git");
        w.route.domains = vec!["git.example".into(), "*.apps.example".into()];
        w.route.port = Some(3000);
        w.route.path = "/api".into();
        w.route.tls = TlsChoice::Local;
        let tags = traefik_tags(&w);
        assert_eq!(
            tags,
            [
                "traefik.enable=true",
                "traefik.http.routers.git.rule=(Host(`git.example`) || \
                 HostRegexp(`^[^.]+\\.apps\\.example$`)) && PathPrefix(`/api`)",
                "traefik.http.routers.git.tls=true",
            ]
        );
        w.route.max_body = Some(1 << 20);
        assert_eq!(text(&w).1, ["workload.git.max_body"]);
    }

    #[test]
    fn health_checks_become_service_checks() {
        let mut w = world("a");
        w.health = Some(check(
            Probe::Http {
                path: "/healthz".into(),
                port: 8080,
            },
            OnUnhealthy::Restart,
        ));
        let t = text(&w).0;
        assert!(t.contains("port \"health\" {\n        to = 8080"), "{t}");
        assert!(
            t.contains("type = \"http\"\n        path = \"/healthz\"\n        port = \"health\"")
        );
        assert!(t.contains("check_restart {\n          limit = 3\n          grace = \"30s\""));
        w.health = Some(check(Probe::Tcp(5432), OnUnhealthy::None));
        let t = text(&w).0;
        assert!(t.contains("type = \"tcp\""));
        assert!(!t.contains("check_restart"), "no restart on unhealthy");
        w.health = Some(check(
            Probe::Exec(vec!["true".into()]),
            OnUnhealthy::Restart,
        ));
        let (t, unmapped) = text(&w);
        assert!(!t.contains("check {"));
        assert_eq!(unmapped, ["workload.a.health"]);
    }

    #[test]
    fn volumes_and_used_data_are_host_volumes() {
        let mut w = world("pub");
        w.volumes = vec![VolumeMount {
            volume: "files".into(),
            path: "/out".into(),
            readonly: true,
        }];
        let (t, _, vols) = job(&w, &SpecFile::default());
        assert_eq!(vols, ["files"]);
        assert!(t.contains("volume \"files\" {\n      type = \"host\"\n      source = \"files\"\n      read_only = true"));
        assert!(t.contains("volume_mount {\n        volume = \"files\"\n        destination = \"/out\"\n        read_only = true"));
        assert!(t.contains("data dataset (/data) is not referred to"));
        w.command = vec!["sh".into(), "-c".into(), "date >> /data/log".into()];
        let (t, _, vols) = job(&w, &SpecFile::default());
        assert_eq!(vols, ["pub-data", "files"]);
        assert!(t.contains("destination = \"/data\""));
    }

    #[test]
    fn what_nomad_has_no_place_for_is_listed() {
        let mut w = image("a");
        w.userns = true;
        w.resources.pids = Some(10);
        w.resources.disk = Some(1 << 30);
        w.hooks = vec![];
        w.snapshots = Some(SnapshotPolicy {
            every_secs: 60,
            keep: 2,
        });
        assert_eq!(
            text(&w).1,
            [
                "workload.a.resources.disk",
                "workload.a.resources.pids",
                "workload.a.snapshots",
                "workload.a.userns"
            ]
        );
        let (t, _) = text(&w);
        assert!(t.contains("# Cannot map:\n#   workload.a.resources.disk: "));
    }

    #[test]
    fn vms_and_jails_are_skipped() {
        let mut spec = SpecFile::default();
        let mut vm = world("vm");
        vm.kind = Kind::Vm;
        let mut jail = world("jail");
        jail.kind = Kind::Jail;
        spec.workloads.insert("vm".into(), vm);
        spec.workloads.insert("jail".into(), jail);
        spec.workloads.insert("ok".into(), world("ok"));
        let e = export(&spec);
        let names: Vec<&str> = e.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["ok.nomad.hcl"]);
        let skipped: Vec<&str> = e.skipped.iter().map(|s| s.workload.as_str()).collect();
        assert_eq!(skipped, ["jail", "vm"]);
    }

    #[test]
    fn env_names_that_are_not_identifiers_use_the_map_form() {
        let mut w = world("a");
        w.env.insert("A".into(), "1".into());
        assert!(text(&w).0.contains("env {\n        A = \"1\""));
        w.env.insert("b.c".into(), "2".into());
        assert!(text(&w)
            .0
            .contains("env = {\n        \"A\" = \"1\"\n        \"b.c\" = \"2\""));
    }
}
