//! The desired state written back as a `warren.toml` that [`crate::parse_spec`] reads to the
//! same [`SpecFile`] (`warren spec export`, and the write-back of a watched spec file).
//! Canonical and deterministic: workloads then volumes in name order, defaults left out,
//! sub-tables inline, sizes in bytes and durations in seconds.

use std::fmt::Write;

use crate::health::{HealthCheck, OnUnhealthy, Probe};
use crate::hooks::{Hook, HookAction, Schedule};
use crate::spec::*;

/// A TOML basic string.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn strings(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", q.join(", "))
}

fn secs(n: u64) -> String {
    quote(&format!("{n}s"))
}

fn inline(pairs: &[(&str, String)]) -> String {
    let p: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("{{ {} }}", p.join(", "))
}

fn tls(t: &TlsChoice) -> String {
    match t {
        TlsChoice::None => quote("none"),
        TlsChoice::Local => quote("local"),
        TlsChoice::Files { cert, key } => inline(&[("cert", quote(cert)), ("key", quote(key))]),
    }
}

fn health(h: &HealthCheck) -> String {
    let mut p: Vec<(&str, String)> = match &h.probe {
        Probe::Exec(argv) => vec![("exec", strings(argv))],
        Probe::Http { path, port } => vec![("http", quote(path)), ("port", port.to_string())],
        Probe::Tcp(port) => vec![("tcp", port.to_string())],
    };
    p.push(("interval", secs(h.interval_secs)));
    p.push(("timeout", secs(h.timeout_secs)));
    p.push(("retries", h.retries.to_string()));
    if h.start_period_secs > 0 {
        p.push(("start_period", secs(h.start_period_secs)));
    }
    if h.on_unhealthy == OnUnhealthy::None {
        p.push(("on_unhealthy", quote("none")));
    }
    inline(&p)
}

fn hook(h: &Hook) -> String {
    let on = h.on.as_str();
    let mut p = vec![("on", quote(on))];
    if let Some(path) = &h.path {
        p.push(("path", quote(path)));
    }
    match &h.action {
        HookAction::Restart => p.push(("restart", "true".into())),
        HookAction::Exec(a) => p.push(("exec", strings(a))),
        HookAction::Host(a) => p.push(("host", strings(a))),
        HookAction::Webhook(u) => p.push(("webhook", quote(u))),
        HookAction::Snapshot(l) => p.push(("snapshot", quote(l))),
        HookAction::Scheme(x) => p.push(("scheme", quote(x))),
        HookAction::Job(a) => p.push(("job", strings(a))),
    }
    match &h.schedule {
        Some(Schedule::Cron(c)) => {
            p.push(("cron", quote(c.expr.as_str())));
            if let Some(z) = &c.zone {
                p.push(("timezone", quote(z.name())));
            }
        }
        Some(Schedule::Every(n)) => p.push(("every", secs(*n))),
        None => {}
    }
    p.push(("timeout", secs(h.timeout_secs)));
    inline(&p)
}

fn workload(out: &mut String, w: &WorkloadSpec) {
    let _ = writeln!(out, "[workload.{}]", w.name);
    if w.kind != Kind::Container {
        let _ = writeln!(out, "kind = {}", quote(w.kind.as_str()));
    }
    // A full VM has no source (its `source` is a placeholder).
    let _ = match w.rootfs_source() {
        Some(Source::World(s)) => writeln!(out, "world = {}", quote(s)),
        Some(Source::Image(s)) => writeln!(out, "image = {}", quote(s)),
        Some(Source::Recipe(s)) => writeln!(out, "recipe = {}", quote(s)),
        None => Ok(()),
    };
    if !w.command.is_empty() {
        let _ = writeln!(out, "command = {}", strings(&w.command));
    }
    if let Some(e) = &w.entrypoint {
        let _ = writeln!(out, "entrypoint = {}", strings(e));
    }
    if !w.env.is_empty() {
        let env: Vec<(&str, String)> = w.env.iter().map(|(k, v)| (k.as_str(), quote(v))).collect();
        let pairs: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{} = {v}", quote(k)))
            .collect();
        let _ = writeln!(out, "env = {{ {} }}", pairs.join(", "));
    }
    for (key, value) in [
        ("workdir", &w.workdir),
        ("user", &w.user),
        ("hostname", &w.hostname),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "{key} = {}", quote(v));
        }
    }
    if w.restart != RestartPolicy::Always {
        let _ = writeln!(out, "restart = {}", quote(w.restart.as_str()));
    }
    if w.state != DesiredState::Running {
        let _ = writeln!(out, "state = {}", quote(w.state.as_str()));
    }
    if w.data_path != default_data_path() {
        let _ = writeln!(out, "data_path = {}", quote(&w.data_path));
    }
    let r = &w.resources;
    let mut res: Vec<(&str, String)> = Vec::new();
    if let Some(m) = r.memory {
        res.push(("memory", m.to_string()));
    }
    if let Some(c) = r.cpus {
        res.push(("cpus", format!("{c:?}")));
    }
    if let Some(p) = r.pids {
        res.push(("pids", p.to_string()));
    }
    if let Some(d) = r.disk {
        res.push(("disk", d.to_string()));
    }
    if !res.is_empty() {
        let _ = writeln!(out, "resources = {}", inline(&res));
    }
    if !w.volumes.is_empty() {
        let m: Vec<String> = w
            .volumes
            .iter()
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.volume,
                    m.path,
                    if m.readonly { ":ro" } else { "" }
                )
            })
            .collect();
        let _ = writeln!(out, "volumes = {}", strings(&m));
    }
    if let Some(s) = &w.snapshots {
        let _ = writeln!(
            out,
            "snapshots = {}",
            inline(&[("every", secs(s.every_secs)), ("keep", s.keep.to_string())])
        );
    }
    if w.network != NetworkMode::Bridge {
        let _ = writeln!(out, "network = {}", quote(w.network.as_str()));
    }
    if !w.ports.is_empty() {
        let p: Vec<String> = w.ports.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(out, "ports = {}", strings(&p));
    }
    let route = &w.route;
    if !route.domains.is_empty() {
        let _ = writeln!(out, "domains = {}", strings(&route.domains));
        if let Some(p) = route.port {
            let _ = writeln!(out, "port = {p}");
        }
        if route.path != "/" {
            let _ = writeln!(out, "path = {}", quote(&route.path));
        }
        if route.websocket {
            let _ = writeln!(out, "websocket = true");
        }
        if let Some(b) = route.max_body {
            let _ = writeln!(out, "max_body = {b}");
        }
        if route.tls != TlsChoice::None {
            let _ = writeln!(out, "tls = {}", tls(&route.tls));
        }
    }
    if w.readonly_rootfs {
        let _ = writeln!(out, "readonly_rootfs = true");
    }
    if w.userns {
        let _ = writeln!(out, "userns = true");
    }
    if !w.jail.is_default() {
        let mut p: Vec<(&str, String)> = Vec::new();
        if !w.jail.allow.is_empty() {
            p.push(("allow", strings(&w.jail.allow)));
        }
        if let Some(v) = w.jail.vnet {
            p.push(("vnet", v.to_string()));
        }
        if w.jail.jailed_dataset {
            p.push(("jailed_dataset", "true".into()));
        }
        let _ = writeln!(out, "jail = {}", inline(&p));
    }
    if !w.vm.is_default() {
        let _ = writeln!(out, "vm = {}", vm(&w.vm));
    }
    if let Some(h) = &w.health {
        let _ = writeln!(out, "health = {}", health(h));
    }
    if !w.after.is_empty() {
        // A name alone waits for "started"; other conditions as `{ name, wait }`.
        let entries: Vec<String> = w
            .after
            .iter()
            .map(|d| match d.wait {
                WaitFor::Started => quote(&d.name),
                other => inline(&[("name", quote(&d.name)), ("wait", quote(other.as_str()))]),
            })
            .collect();
        let _ = writeln!(out, "after = [{}]", entries.join(", "));
    }
    if !w.hooks.is_empty() {
        let _ = writeln!(out, "hooks = [");
        for h in &w.hooks {
            let _ = writeln!(out, "  {},", hook(h));
        }
        let _ = writeln!(out, "]");
    }
    out.push('\n');
}

fn vm(v: &VmOptions) -> String {
    let mut p: Vec<(&str, String)> = Vec::new();
    let path = |p: &std::path::Path| quote(&p.to_string_lossy());
    for (key, value) in [
        ("kernel", &v.kernel),
        ("initrd", &v.initrd),
        ("disk", &v.disk),
        ("iso", &v.iso),
    ] {
        if let Some(f) = value {
            p.push((key, path(f)));
        }
    }
    if let Some(c) = &v.cmdline {
        p.push(("cmdline", quote(c)));
    }
    if let Some(size) = v.disk_size {
        p.push(("disk_size", size.to_string()));
    }
    if !v.firmware.is_default() {
        p.push(("firmware", quote(v.firmware.as_str())));
    }
    if v.console {
        p.push(("console", "true".into()));
    }
    inline(&p)
}

fn volume(out: &mut String, v: &VolumeSpec) {
    let _ = writeln!(out, "[volume.{}]", v.name);
    if let Some(s) = v.size {
        let _ = writeln!(out, "size = {s}");
    }
    if let Some(s) = &v.snapshots {
        let _ = writeln!(
            out,
            "snapshots = {}",
            inline(&[("every", secs(s.every_secs)), ("keep", s.keep.to_string())])
        );
    }
    if let Some(site) = &v.site {
        let mut p = vec![("domains", strings(&site.domains))];
        if site.path != "/" {
            p.push(("path", quote(&site.path)));
        }
        if site.autoindex {
            p.push(("autoindex", "true".into()));
        }
        if site.tls != TlsChoice::None {
            p.push(("tls", tls(&site.tls)));
        }
        let _ = writeln!(out, "site = {}", inline(&p));
    }
    out.push('\n');
}

/// `spec` as a warren.toml, headed by `header` comment lines.
pub fn to_toml(spec: &SpecFile, header: &str) -> String {
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "# {line}");
    }
    if !header.is_empty() {
        out.push('\n');
    }
    if let Some(h) = &spec.host {
        let _ = writeln!(out, "[host]");
        let _ = writeln!(out, "reserve_memory = {}", h.reserve_memory);
        let _ = writeln!(out, "reserve_cpus = {}", h.reserve_cpus);
        out.push('\n');
    }
    for w in spec.workloads.values() {
        workload(&mut out, w);
    }
    for v in spec.volumes.values() {
        volume(&mut out, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_hooks_and_the_rest_round_trip() {
        let text = r#"[workload.web]
world = "host"
command = ["python3", "-m", "http.server", "8080"]
env = { PORT = "8080", "ODD KEY" = "a \"quoted\" value" }
state = "stopped"
resources = { memory = "256M", cpus = 0.5 }
ports = ["8080:80"]
domains = ["web.home.arpa"]
port = 8080
tls = { cert = "/etc/c.pem", key = "/etc/c.key" }
health = { http = "/healthz", port = 8080, start_period = "1m", on_unhealthy = "none" }
hooks = [
  { on = "crash", exec = ["sh", "-c", "true"] },
  { on = "schedule", cron = "0 3 * * *", snapshot = "nightly" },
  { on = "schedule", every = "15m", webhook = "http://192.0.2.1/x" },
  { on = "stop", restart = true, timeout = "5s" },
  { on = "change", path = "/data/conf", exec = ["true"] },
  { on = "crash", scheme = "(snapshot! w \"crashed\")" },
  { on = "schedule", every = "1h", job = ["sh", "-c", "true"] },
]

[workload.cell]
kind = "jail"
world = "freebsd-14"
network = "none"
jail = { allow = ["sysvipc", "raw_sockets"], vnet = false }

[workload.cell2.jail]
jailed_dataset = true

[workload.cell2]
world = "freebsd-14"

[workload.job]
after = ["cell", { name = "web", wait = "healthy" }, { name = "installer", wait = "completed" }]
image = "app:v1"
entrypoint = ["/bin/sh", "-c"]
network = "none"
health = { exec = ["true"] }
readonly_rootfs = true

[workload.guest]
kind = "vm"
recipe = "lang/ruby 2.1"
resources = { memory = "1G", cpus = 2 }

[workload.guest.vm]
kernel = "/srv/vm/vmlinuz"
initrd = "/srv/vm/initrd.img"
cmdline = "quiet console=ttyS0"
console = true

[workload.installer]
kind = "vm"
restart = "never"
vm = { disk = "/srv/vm/disk.qcow2", iso = "/srv/iso/install.iso", firmware = "uefi" }

[host]
reserve_memory = "2G"
reserve_cpus = 0.5

[volume.media]
size = "1G"
snapshots = { every = "1d", keep = 7 }
site = { domains = ["media.home.arpa"], autoindex = true, tls = "local" }
"#;
        let spec = crate::parse_spec(text, "in.toml").unwrap().spec;
        let out = to_toml(&spec, "written by a test");
        let again = crate::parse_spec(&out, "out.toml")
            .unwrap_or_else(|e| panic!("{out}\n{}", e))
            .spec;
        assert_eq!(again, spec, "{out}");
        assert_eq!(to_toml(&again, "written by a test"), out, "deterministic");
        assert!(out.starts_with("# written by a test\n"));
        assert!(
            out.contains(
                r#"after = ["cell", { name = "web", wait = "healthy" }, { name = "installer", wait = "completed" }]"#
            ),
            "{out}"
        );
        let installer = &again.workloads["installer"];
        assert_eq!(installer.rootfs_source(), None);
        assert_eq!(installer.vm.firmware, VmFirmware::Uefi);
        assert!(
            out.contains(
                "[workload.installer]\nkind = \"vm\"\nrestart = \"never\"\nvm = { disk = "
            ),
            "{out}"
        );
    }
}
