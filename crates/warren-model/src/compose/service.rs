//! The file's top level and one compose service to one `[workload.NAME]` table: which keys
//! map, which are dropped with a warning, which are refused.

use super::emit::{self, Out, Table};
use super::routes;
use super::yaml::{Key, Node, Pos, Value};
use super::{dns_name, Cx};
use crate::names::check_dns_label;
use crate::parse::suggest::did_you_mean;
use crate::render::quote;

const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "volumes", "networks", "secrets", "configs", "include", "models",
];

/// Service keys whose loss is harmless: dropped with a warning and the reason.
const DROPPED: &[(&str, &str)] = &[
    ("annotations", "warren has no container annotations"),
    (
        "attach",
        "logs are always kept; read them with `warren logs`",
    ),
    ("blkio_config", "warren sets no block I/O weights"),
    (
        "cap_drop",
        "warren's containers already run with a reduced capability set",
    ),
    ("container_name", "the workload is named after the service"),
    ("cpu_count", "use deploy.resources.limits.cpus"),
    ("cpu_percent", "use deploy.resources.limits.cpus"),
    ("cpu_shares", "warren sets no CPU shares"),
    ("cpu_period", "use deploy.resources.limits.cpus"),
    ("cpu_quota", "use deploy.resources.limits.cpus"),
    ("cpuset", "warren pins no CPUs"),
    ("credential_spec", "a Windows option"),
    ("develop", "compose watch has no warren equivalent"),
    ("dns", "workloads use warren's resolver"),
    ("dns_opt", "workloads use warren's resolver"),
    ("dns_search", "workloads use warren's resolver"),
    ("domainname", "warren sets only the hostname"),
    (
        "expose",
        "every port of a workload is reachable on warren's bridge",
    ),
    (
        "external_links",
        "workloads reach each other by name on warren's bridge",
    ),
    (
        "extra_hosts",
        "warren writes the hosts file itself (workload names resolve)",
    ),
    ("init", "the shim reaps orphaned processes"),
    (
        "links",
        "workloads reach each other by name on warren's bridge",
    ),
    (
        "logging",
        "the shim keeps the output; read it with `warren logs`",
    ),
    ("mac_address", "warren assigns addresses itself"),
    ("mem_reservation", "warren sets limits only"),
    ("mem_swappiness", "warren sets no swappiness"),
    ("memswap_limit", "warren sets no swap limit"),
    ("oom_kill_disable", "the kernel's OOM killer stays enabled"),
    ("oom_score_adj", "warren sets no OOM score"),
    ("platform", "images are run on the host's platform"),
    (
        "pull_policy",
        "images are imported with `warren image import`",
    ),
    (
        "security_opt",
        "warren applies its own seccomp profile and hardening",
    ),
    ("shm_size", "/dev/shm keeps warren's default size"),
    (
        "stdin_open",
        "workloads run without standard input; use `warren exec -t`",
    ),
    ("stop_grace_period", "warren's stop timeout applies"),
    ("stop_signal", "warren stops workloads with SIGTERM"),
    ("storage_opt", "warren sets quotas with resources.disk"),
    (
        "tty",
        "workloads run without a terminal; use `warren exec -t`",
    ),
    ("ulimits", "warren keeps the default limits"),
    ("uts", "every workload has its own hostname"),
];

/// Service keys that cannot be converted, with the reason.
pub(crate) const REFUSED: &[(&str, &str)] = &[
    ("cap_add", "warren grants no extra capabilities"),
    (
        "cgroup",
        "warren places every workload in a cgroup of its own",
    ),
    (
        "cgroup_parent",
        "warren places every workload in a cgroup of its own",
    ),
    ("configs", "warren has no configs; put the file in a volume"),
    (
        "device_cgroup_rules",
        "warren passes no devices to containers",
    ),
    ("devices", "warren passes no devices to containers"),
    ("extends", "merge the extended service into this one first"),
    ("gpus", "warren passes no GPUs to containers"),
    ("group_add", "warren sets no supplementary groups"),
    ("ipc", "every workload has an IPC namespace of its own"),
    ("isolation", "a Windows option"),
    ("label_file", "put the labels in the file"),
    ("models", "warren runs no models"),
    ("pid", "every workload has a PID namespace of its own"),
    ("post_start", "use a warren hook with on = \"start\""),
    ("pre_stop", "use a warren hook with on = \"stop\""),
    ("privileged", "warren runs no privileged containers"),
    ("provider", "warren has no service providers"),
    ("runtime", "warren chooses the runtime"),
    ("secrets", "warren has no secrets; use env or a volume"),
    ("sysctls", "warren sets no sysctls"),
    ("use_api_socket", "warren does not expose a Docker socket"),
    ("userns_mode", "use warren's `userns = true` instead"),
    ("volumes_from", "mount the named volumes explicitly"),
];

/// Keys handled by the converter itself.
const MAPPED: &[&str] = &[
    "build",
    "command",
    "cpus",
    "depends_on",
    "deploy",
    "entrypoint",
    "env_file",
    "environment",
    "healthcheck",
    "hostname",
    "image",
    "labels",
    "mem_limit",
    "network_mode",
    "networks",
    "pids_limit",
    "ports",
    "profiles",
    "read_only",
    "restart",
    "scale",
    "tmpfs",
    "user",
    "volumes",
    "working_dir",
];

/// What the whole file knows about one service, gathered before any is converted.
pub(crate) struct ServiceInfo {
    pub name: String,
    pub at: Pos,
    pub included: bool,
    pub healthcheck: bool,
}

/// A top-level volume.
struct VolumeInfo {
    name: String,
    at: Pos,
}

/// A volume mount of a service, for the one-writer check.
pub(crate) struct Mount {
    pub volume: String,
    pub service: String,
    pub read_only: bool,
    pub at: Pos,
}

/// Converts the whole file.
pub(crate) fn file(cx: &mut Cx<'_>, root: &Node) -> Out {
    let mut out = Out::default();
    let Some(top) = cx.map("the file", root) else {
        return out;
    };
    let mut services_node = None;
    let mut volumes_node = None;
    for (key, value) in top {
        let k = key.text.as_str();
        match k {
            "services" => services_node = Some(value),
            "volumes" => volumes_node = Some(value),
            "version" | "name" => {}
            _ if k.starts_with("x-") => {}
            "networks" => networks(cx, value),
            "secrets" | "configs" => {
                if !value.is_null() && value.as_map().is_some_and(|m| !m.is_empty()) {
                    cx.warn(
                        key.at,
                        format!(
                            "{k}: dropped: warren has no {k}; services that use them are refused"
                        ),
                    );
                }
            }
            "include" => cx.unmappable(key, k, "merge the included files into this one first"),
            _ => unknown(cx, key, k, TOP_KEYS),
        }
    }

    let profiles: Vec<String> = cx
        .var("COMPOSE_PROFILES")
        .map(|p| {
            p.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let services: &[(Key, Node)] = match services_node {
        Some(node) if !node.is_null() => cx.map("services", node).unwrap_or(&[]),
        _ => &[],
    };
    if services.is_empty() {
        cx.error(root.at, "the file has no services");
        return out;
    }

    // Names and what other services need to know, first.
    let mut infos: Vec<ServiceInfo> = Vec::new();
    for (key, node) in services {
        let name = dns_name(&key.text);
        if let Err(reason) = check_dns_label(&name) {
            cx.error(
                key.at,
                format!("services.{}: cannot be a workload name: {reason}", key.text),
            );
        } else if name != key.text {
            cx.warn(
                key.at,
                format!("services.{}: becomes workload {name:?}", key.text),
            );
        }
        if let Some(first) = infos.iter().find(|i| i.name == name) {
            cx.error(
                key.at,
                format!(
                    "services.{}: becomes workload {name:?}, like the service at line {}",
                    key.text, first.at.line
                ),
            );
        }
        let included = match node.get("profiles") {
            None => true,
            Some(p) => {
                let listed = cx.strings(&format!("services.{}.profiles", key.text), p, false);
                let listed = listed.unwrap_or_default();
                let on = listed.is_empty() || listed.iter().any(|p| profiles.contains(p));
                if !on {
                    cx.warn(
                        key.at,
                        format!(
                            "services.{}: left out: none of its profiles is active (COMPOSE_PROFILES)",
                            key.text
                        ),
                    );
                }
                on
            }
        };
        let healthcheck = node.get("healthcheck").is_some_and(|h| {
            let disabled = h
                .get("disable")
                .is_some_and(|d| matches!(&d.value, Value::Scalar { text, .. } if text == "true"));
            let none = h.get("test").is_some_and(|t| match &t.value {
                Value::Seq(items) => items.first().is_some_and(
                    |f| matches!(&f.value, Value::Scalar { text, .. } if text == "NONE"),
                ),
                _ => false,
            });
            !disabled && !none
        });
        infos.push(ServiceInfo {
            name,
            at: key.at,
            included,
            healthcheck,
        });
    }

    let volumes = match volumes_node {
        Some(node) if !node.is_null() => top_volumes(cx, node),
        _ => Vec::new(),
    };

    let mut mounts: Vec<Mount> = Vec::new();
    for ((key, node), info) in services.iter().zip(&infos) {
        if !info.included {
            continue;
        }
        let mut svc = Service {
            path: format!("services.{}", key.text),
            table: Table::new("workload", &info.name, key.at),
            env: Vec::new(),
            resources: Vec::new(),
        };
        svc.convert(cx, node, &infos, &mut mounts);
        let Service { mut table, env, .. } = svc;
        table.env = env;
        out.workloads.push(table);
    }

    // Mounts name declared volumes; one writer per volume.
    for (i, m) in mounts.iter().enumerate() {
        if !volumes.iter().any(|v| v.name == m.volume) {
            cx.error(
                m.at,
                format!(
                    "volume {:?} is not declared in the top-level `volumes`",
                    m.volume
                ),
            );
            continue;
        }
        if m.read_only {
            continue;
        }
        if let Some(first) = mounts[..i]
            .iter()
            .find(|o| o.volume == m.volume && !o.read_only)
        {
            cx.error(
                m.at,
                format!(
                    "volume {:?} is mounted read-write by {:?} too (line {}); warren allows one \
                     writer per volume: add :ro to all mounts but one",
                    m.volume, first.service, first.at.line
                ),
            );
        }
    }
    for v in volumes {
        if mounts.iter().any(|m| m.volume == v.name) {
            out.volumes.push(Table::new("volume", &v.name, v.at));
        } else {
            cx.warn(
                v.at,
                format!("volumes.{}: dropped: no service mounts it", v.name),
            );
        }
    }
    out
}

fn unknown(cx: &mut Cx<'_>, key: &Key, path: &str, known: &[&str]) {
    let hint = did_you_mean(&key.text, known)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default();
    cx.error(key.at, format!("{path}: unknown key{hint}"));
}

fn networks(cx: &mut Cx<'_>, node: &Node) {
    let Some(entries) = node.as_map() else {
        return;
    };
    for (key, value) in entries {
        if key.text == "default" && value.is_null() {
            continue;
        }
        cx.warn(
            key.at,
            format!(
                "networks.{}: dropped: every workload is on warren's one bridge, where all reach each other by name",
                key.text
            ),
        );
    }
}

fn top_volumes(cx: &mut Cx<'_>, node: &Node) -> Vec<VolumeInfo> {
    let mut out: Vec<VolumeInfo> = Vec::new();
    let Some(entries) = cx.map("volumes", node) else {
        return out;
    };
    for (key, body) in entries {
        let path = format!("volumes.{}", key.text);
        let name = dns_name(&key.text);
        if let Err(reason) = check_dns_label(&name) {
            cx.error(key.at, format!("{path}: cannot be a volume name: {reason}"));
            continue;
        }
        if name != key.text {
            cx.warn(key.at, format!("{path}: becomes volume {name:?}"));
        }
        if !body.is_null() {
            if let Some(opts) = cx.map(&path, body) {
                for (k, v) in opts {
                    let kpath = format!("{path}.{}", k.text);
                    match k.text.as_str() {
                        "external" => {
                            let external = matches!(&v.value, Value::Scalar { text, .. } if text == "true")
                                || v.as_map().is_some();
                            if external {
                                cx.warn(
                                    k.at,
                                    format!("{kpath}: warren creates an empty volume {name:?}; the external volume's data is not copied"),
                                );
                            }
                        }
                        "driver" => {
                            let d = cx.text(&kpath, v);
                            if d.is_some_and(|d| d != "local") {
                                cx.unmappable(k, &kpath, "warren's volumes are datasets of its own storage pool");
                            }
                        }
                        "driver_opts" => cx.unmappable(
                            k,
                            &kpath,
                            "warren's volumes are datasets of its own storage pool (no bind or NFS options)",
                        ),
                        "labels" | "name" => {
                            cx.warn(k.at, format!("{kpath}: dropped: the volume is named {name:?}"));
                        }
                        x if x.starts_with("x-") => {}
                        _ => unknown(cx, k, &kpath, &["driver", "driver_opts", "external", "labels", "name"]),
                    }
                }
            }
        }
        out.push(VolumeInfo { name, at: key.at });
    }
    out
}

/// One service being converted.
pub(super) struct Service {
    pub(super) path: String,
    pub(super) table: Table,
    pub(super) env: Vec<(String, String, Pos)>,
    pub(super) resources: Vec<(&'static str, String, Pos)>,
}

impl Service {
    fn convert(
        &mut self,
        cx: &mut Cx<'_>,
        node: &Node,
        infos: &[ServiceInfo],
        mounts: &mut Vec<Mount>,
    ) {
        let Some(entries) = cx.map(&self.path, node) else {
            return;
        };
        let mut route_labels: Vec<(String, String, Pos)> = Vec::new();
        let mut dropped_labels: Vec<String> = Vec::new();
        let mut env_files: Vec<(String, String, Pos)> = Vec::new();
        let mut restart_set = false;
        let mut has_image = false;
        let mut build: Option<&Key> = None;
        let mut container_ports: Vec<u16> = Vec::new();
        for (key, value) in entries {
            let k = key.text.as_str();
            let path = format!("{}.{k}", self.path);
            if k.starts_with("x-") {
                continue;
            }
            if let Some((_, why)) = DROPPED.iter().find(|(d, _)| *d == k) {
                if k == "expose" {
                    if let Some(items) = cx.strings(&path, value, false) {
                        for p in items {
                            let port = p
                                .split('/')
                                .next()
                                .unwrap_or("")
                                .split('-')
                                .next()
                                .unwrap_or("");
                            if let Ok(n) = port.parse::<u16>() {
                                container_ports.push(n);
                            }
                        }
                    }
                }
                self.drop(cx, key, &path, why);
                continue;
            }
            if let Some((_, why)) = REFUSED.iter().find(|(d, _)| *d == k) {
                if k == "privileged"
                    && matches!(&value.value, Value::Scalar { text, .. } if text == "false")
                {
                    continue;
                }
                cx.unmappable(key, &path, why);
                continue;
            }
            match k {
                "image" => {
                    if let Some(image) = cx.text(&path, value) {
                        match crate::parse::values::check_image(&image) {
                            Ok(()) => {
                                has_image = true;
                                self.table.set("image", quote(&image), value.at);
                            }
                            Err(reason) => cx.error(value.at, format!("{path}: {reason}")),
                        }
                    }
                }
                "build" => build = Some(key),
                "command" | "entrypoint" => {
                    if value.is_null() {
                        continue;
                    }
                    if let Some(argv) = cx.strings(&path, value, true) {
                        let field = if k == "command" { "command" } else { "entrypoint" };
                        if k == "command" && argv.is_empty() {
                            continue;
                        }
                        self.table.set(field, emit::strings(&argv), value.at);
                    }
                }
                "environment" => self.environment(cx, &path, value),
                "env_file" => env_files = self.env_files(cx, &path, value),
                "working_dir" => self.checked(cx, &path, value, "workdir", crate::parse::values::check_absolute),
                "user" => self.checked(cx, &path, value, "user", crate::parse::values::check_user),
                "hostname" => self.checked(cx, &path, value, "hostname", crate::parse::values::check_hostname),
                "restart" => {
                    restart_set = true;
                    self.restart(cx, &path, value);
                }
                "read_only" => {
                    if cx.text(&path, value).as_deref() == Some("true") {
                        self.table.set("readonly_rootfs", "true".into(), value.at);
                    }
                }
                "network_mode" => self.network_mode(cx, key, &path, value),
                "networks" => {
                    let only_default = match &value.value {
                        Value::Seq(items) => items.iter().all(|i| matches!(&i.value, Value::Scalar { text, .. } if text == "default")),
                        Value::Map(m) => m.iter().all(|(k, v)| k.text == "default" && v.is_null()),
                        _ => false,
                    };
                    if !only_default {
                        self.drop(cx, key, &path, "every workload is on warren's one bridge, where all reach each other by name");
                    }
                }
                "ports" => container_ports.extend(self.ports(cx, &path, value)),
                "volumes" => self.volumes(cx, &path, value, mounts),
                "tmpfs" => self.drop(cx, key, &path, "the paths stay part of the root filesystem (readonly_rootfs gives /tmp, /var/tmp and /run as tmpfs)"),
                "depends_on" => self.depends_on(cx, &path, value, infos),
                "healthcheck" => super::health::healthcheck(cx, &mut self.table, &path, key, value),
                "deploy" => {
                    if self.deploy(cx, &path, value) {
                        restart_set = true;
                    }
                }
                "mem_limit" => self.memory(cx, &path, value),
                "cpus" => self.cpus(cx, &path, value),
                "pids_limit" => self.pids(cx, &path, value),
                "scale" => {
                    if cx.text(&path, value).is_some_and(|s| s != "1") {
                        cx.unmappable(key, &path, "a workload runs one instance");
                    }
                }
                "labels" => {
                    for (name, text, at) in labels(cx, &path, value) {
                        if routes::is_route_label(&name) {
                            route_labels.push((name, text, at));
                        } else {
                            dropped_labels.push(name);
                        }
                    }
                }
                "profiles" => {}
                _ => {
                    let mut known: Vec<&str> = MAPPED.to_vec();
                    known.extend(DROPPED.iter().map(|(k, _)| *k));
                    known.extend(REFUSED.iter().map(|(k, _)| *k));
                    unknown(cx, key, &path, &known);
                }
            }
        }
        if let Some(key) = build {
            let path = format!("{}.build", self.path);
            if has_image {
                self.drop(
                    cx,
                    key,
                    &path,
                    "the image is used as named; build it yourself and `warren image import` it",
                );
            } else {
                cx.unmappable(
                    key,
                    &path,
                    "warren does not build Dockerfiles; build the image, `warren image import` it and name it in `image`, or write a Warrenfile recipe",
                );
            }
        } else if !entries.iter().any(|(k, _)| k.text == "image") {
            cx.error(self.table.at, format!("{}: needs `image`", self.path));
        }
        if !restart_set {
            self.table.set_commented(
                "restart",
                quote("never"),
                self.table.at,
                "compose's default: restart: \"no\"",
            );
        }
        // env_file first, `environment` wins.
        for (k, v, at) in env_files {
            if !self.env.iter().any(|(e, _, _)| *e == k) {
                self.env.push((k, v, at));
            }
        }
        self.env.sort_by(|a, b| a.0.cmp(&b.0));
        if !dropped_labels.is_empty() {
            let at = entries
                .iter()
                .find(|(k, _)| k.text == "labels")
                .map_or(self.table.at, |(k, _)| k.at);
            let path = format!("{}.labels", self.path);
            let msg = format!(
                "{path}: dropped: {} (warren keeps no labels)",
                dropped_labels.join(", ")
            );
            cx.warn(at, msg.clone());
            self.table.comments.push(msg);
        }
        if !route_labels.is_empty() {
            routes::route(
                cx,
                &mut self.table,
                &self.path,
                &route_labels,
                &container_ports,
            );
        }
    }

    /// A harmless drop: a warning and a comment.
    pub(super) fn drop(&mut self, cx: &mut Cx<'_>, key: &Key, path: &str, why: &str) {
        let msg = format!("{path}: dropped: {why}");
        cx.warn(key.at, msg.clone());
        self.table.comments.push(msg);
    }

    fn checked(
        &mut self,
        cx: &mut Cx<'_>,
        path: &str,
        value: &Node,
        field: &'static str,
        check: fn(&str) -> Result<(), String>,
    ) {
        if let Some(text) = cx.text(path, value) {
            match check(&text) {
                Ok(()) => self.table.set(field, quote(&text), value.at),
                Err(reason) => cx.error(value.at, format!("{path}: {reason}")),
            }
        }
    }

    fn environment(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) {
        let put = |cx: &mut Cx<'_>,
                   env: &mut Vec<(String, String, Pos)>,
                   name: String,
                   val: Option<String>,
                   at: Pos| {
            if name.is_empty() || name.contains('\0') {
                cx.error(at, format!("{path}: invalid variable name {name:?}"));
                return;
            }
            // `NAME` alone takes the value from the environment Compose runs in.
            let val = match val {
                Some(v) => v,
                None => match cx.var(&name) {
                    Some(v) => v,
                    None => {
                        cx.warn(
                            at,
                            format!("{path}.{name}: not set in the environment; left out"),
                        );
                        return;
                    }
                },
            };
            env.retain(|(k, _, _)| *k != name);
            env.push((name, val, at));
        };
        match &value.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let Some(text) = cx.text(&format!("{path}[{i}]"), item) else {
                        continue;
                    };
                    let (name, val) = match text.split_once('=') {
                        Some((n, v)) => (n.to_string(), Some(v.to_string())),
                        None => (text, None),
                    };
                    put(cx, &mut self.env, name, val, item.at);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let val = if v.is_null() {
                        None
                    } else {
                        match cx.text(&format!("{path}.{}", k.text), v) {
                            Some(t) => Some(t),
                            None => continue,
                        }
                    };
                    put(cx, &mut self.env, k.text.clone(), val, k.at);
                }
            }
            _ => {
                cx.error(
                    value.at,
                    format!(
                        "{path}: expected a list or a mapping, found {}",
                        value.kind()
                    ),
                );
            }
        }
    }

    fn env_files(
        &mut self,
        cx: &mut Cx<'_>,
        path: &str,
        value: &Node,
    ) -> Vec<(String, String, Pos)> {
        // (path, required, position)
        let mut files: Vec<(String, bool, Pos)> = Vec::new();
        let items: Vec<&Node> = match &value.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![value],
        };
        for (i, item) in items.into_iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            match &item.value {
                Value::Map(_) => {
                    let Some(p) = item.get("path") else {
                        cx.error(item.at, format!("{ipath}: needs `path`"));
                        continue;
                    };
                    let required = item
                        .get("required")
                        .map(|r| cx.text(&format!("{ipath}.required"), r));
                    if let Some(p) = cx.text(&format!("{ipath}.path"), p) {
                        files.push((
                            p,
                            !matches!(required, Some(Some(ref r)) if r == "false"),
                            item.at,
                        ));
                    }
                }
                _ => {
                    if let Some(p) = cx.text(&ipath, item) {
                        files.push((p, true, item.at));
                    }
                }
            }
        }
        let mut vars: Vec<(String, String, Pos)> = Vec::new();
        for (file, required, at) in files {
            match cx.read_file(&file) {
                Ok(text) => {
                    let lookup = |n: &str| cx.var(n);
                    match super::interpolate::parse_dotenv(&text, &lookup) {
                        Ok(pairs) => {
                            for (k, v) in pairs {
                                vars.retain(|(e, _, _)| *e != k);
                                vars.push((k, v, at));
                            }
                        }
                        Err(e) => cx.error(
                            at,
                            format!("{path}: {file}:{}:{}: {}", e.line, e.column, e.message),
                        ),
                    }
                }
                Err(super::ReadError::NotFound) if !required => {
                    cx.warn(at, format!("{path}: {file} does not exist (not required)"));
                }
                Err(super::ReadError::NotFound) => {
                    cx.error(at, format!("{path}: {file} does not exist"))
                }
                Err(super::ReadError::Other(why)) => {
                    cx.error(at, format!("{path}: reading {file}: {why}"))
                }
            }
        }
        if !vars.is_empty() {
            self.table
                .comments
                .push(format!("env also holds the variables of {path}"));
        }
        vars
    }

    fn restart(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) {
        let Some(text) = cx.text(path, value) else {
            return;
        };
        let (policy, comment) = match text.as_str() {
            "no" => ("never", None),
            "always" => ("always", None),
            "unless-stopped" => (
                "always",
                Some("unless-stopped: `warren stop` keeps it stopped"),
            ),
            "on-failure" => ("on-failure", None),
            t if t.starts_with("on-failure:") => {
                cx.warn(
                    value.at,
                    format!(
                        "{path}: the retry limit of {t:?} is dropped; warren retries with backoff"
                    ),
                );
                (
                    "on-failure",
                    Some("the retry limit is dropped; warren retries with backoff"),
                )
            }
            other => {
                cx.error(value.at, format!("{path}: unknown policy {other:?}; expected no, always, on-failure or unless-stopped"));
                return;
            }
        };
        match comment {
            Some(c) => self
                .table
                .set_commented("restart", quote(policy), value.at, c),
            None => self.table.set("restart", quote(policy), value.at),
        }
    }

    fn network_mode(&mut self, cx: &mut Cx<'_>, key: &Key, path: &str, value: &Node) {
        let Some(mode) = cx.text(path, value) else {
            return;
        };
        match mode.as_str() {
            "bridge" | "default" => {}
            "host" | "none" => self.table.set("network", quote(&mode), value.at),
            _ => cx.unmappable(
                key,
                path,
                &format!("{mode:?}: a workload has a network of its own (bridge, host or none)"),
            ),
        }
    }
}

/// A service's labels as (name, value, position), from a list (`a=b`) or a mapping.
fn labels(cx: &mut Cx<'_>, path: &str, value: &Node) -> Vec<(String, String, Pos)> {
    let mut out = Vec::new();
    match &value.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if let Some(text) = cx.text(&format!("{path}[{i}]"), item) {
                    let (k, v) = text.split_once('=').unwrap_or((&text, ""));
                    out.push((k.to_string(), v.to_string(), item.at));
                }
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                let text = if v.is_null() {
                    Some(String::new())
                } else {
                    cx.text(&format!("{path}.{}", k.text), v)
                };
                if let Some(text) = text {
                    out.push((k.text.clone(), text, k.at));
                }
            }
        }
        _ => cx.error(
            value.at,
            format!(
                "{path}: expected a list or a mapping, found {}",
                value.kind()
            ),
        ),
    }
    out
}
