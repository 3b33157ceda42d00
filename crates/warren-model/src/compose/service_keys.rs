//! The longer service keys: `ports`, `volumes` (with the one-writer bookkeeping and the move
//! of warren's `data_path` away from a volume at `/data`), `depends_on` as `after`, `deploy`,
//! and the resource limits (`deploy.resources.limits`, `mem_limit`, `cpus`, `pids_limit`).

use super::emit;
use super::fields;
use super::service::{Mount, Service, ServiceInfo};
use super::yaml::{Node, Pos, Value};
use super::{dns_name, Cx};
use crate::render::quote;

impl Service {
    /// Returns the container ports, for routes without an explicit port.
    pub(super) fn ports(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) -> Vec<u16> {
        let Value::Seq(items) = &value.value else {
            cx.error(
                value.at,
                format!("{path}: expected a list, found {}", value.kind()),
            );
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        let mut targets = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let result = match &item.value {
                Value::Map(entries) => {
                    for (k, _) in entries {
                        if ![
                            "target",
                            "published",
                            "host_ip",
                            "protocol",
                            "mode",
                            "name",
                            "app_protocol",
                        ]
                        .contains(&k.text.as_str())
                        {
                            cx.error(k.at, format!("{ipath}.{}: unknown key", k.text));
                        }
                    }
                    let mut get = |k: &str| {
                        entries
                            .iter()
                            .find(|(e, _)| e.text == k)
                            .and_then(|(_, v)| cx.text(&format!("{ipath}.{k}"), v))
                    };
                    let target = get("target");
                    let published = get("published");
                    let host_ip = get("host_ip");
                    let proto = get("protocol").unwrap_or_else(|| "tcp".into());
                    match target {
                        Some(t) => fields::port_mappings(
                            host_ip.as_deref(),
                            published.as_deref(),
                            &t,
                            &proto,
                        ),
                        None => Err("needs `target`".into()),
                    }
                }
                _ => match cx.text(&ipath, item) {
                    Some(t) => fields::short_port(&t),
                    None => continue,
                },
            };
            match result {
                Ok(mappings) => {
                    for m in mappings {
                        targets.push(m.container_port);
                        out.push(fields::port_text(&m));
                    }
                }
                Err(reason) => cx.error(item.at, format!("{ipath}: {reason}")),
            }
        }
        if !out.is_empty() {
            self.table.set("ports", emit::strings(&out), value.at);
        }
        targets
    }

    pub(super) fn volumes(
        &mut self,
        cx: &mut Cx<'_>,
        path: &str,
        value: &Node,
        mounts: &mut Vec<Mount>,
    ) {
        let Value::Seq(items) = &value.value else {
            cx.error(
                value.at,
                format!("{path}: expected a list, found {}", value.kind()),
            );
            return;
        };
        let mut out: Vec<String> = Vec::new();
        let mut targets: Vec<String> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            // (type, source, target, read-only)
            let (kind, source, target, read_only) = match &item.value {
                Value::Map(entries) => {
                    let mut kind = None;
                    let (mut source, mut target, mut ro) = (None, None, false);
                    for (k, v) in entries {
                        let kp = format!("{ipath}.{}", k.text);
                        match k.text.as_str() {
                            "type" => kind = cx.text(&kp, v),
                            "source" => source = cx.text(&kp, v),
                            "target" => target = cx.text(&kp, v),
                            "read_only" => ro = cx.text(&kp, v).as_deref() == Some("true"),
                            "consistency" | "volume" | "bind" | "tmpfs" | "image" => {
                                cx.warn(
                                    k.at,
                                    format!(
                                        "{kp}: dropped: warren mounts volumes with its own options"
                                    ),
                                );
                            }
                            _ => cx.error(k.at, format!("{kp}: unknown key")),
                        }
                    }
                    let Some(target) = target else {
                        cx.error(item.at, format!("{ipath}: needs `target`"));
                        continue;
                    };
                    (kind.unwrap_or_else(|| "volume".into()), source, target, ro)
                }
                _ => {
                    let Some(text) = cx.text(&ipath, item) else {
                        continue;
                    };
                    match fields::short_volume(&text) {
                        Ok(v) => {
                            if !v.ignored.is_empty() {
                                cx.warn(
                                    item.at,
                                    format!(
                                        "{ipath}: dropped the mount options {}",
                                        v.ignored.join(",")
                                    ),
                                );
                            }
                            let kind = match v.source {
                                Some(s) if fields::is_host_path(s) => "bind",
                                _ => "volume",
                            };
                            (
                                kind.to_string(),
                                v.source.map(str::to_string),
                                v.target.to_string(),
                                v.read_only,
                            )
                        }
                        Err(reason) => {
                            cx.error(item.at, format!("{ipath}: {reason}"));
                            continue;
                        }
                    }
                }
            };
            match (kind.as_str(), source) {
                ("bind", Some(src)) => cx.error(
                    item.at,
                    format!(
                        "{ipath}: the bind mount of {src:?} cannot be converted: warren mounts no host paths; use a named volume and copy the files in"
                    ),
                ),
                ("volume", None) => {
                    let msg = format!("{ipath}: dropped the anonymous volume at {target}: it stays part of the root filesystem");
                    cx.warn(item.at, msg.clone());
                    self.table.comments.push(msg);
                }
                ("volume", Some(src)) => {
                    if let Err(reason) = crate::parse::values::check_absolute(&target) {
                        cx.error(item.at, format!("{ipath}: target {reason}"));
                        continue;
                    }
                    let volume = dns_name(&src);
                    mounts.push(Mount {
                        volume: volume.clone(),
                        service: self.table.name.clone(),
                        read_only,
                        at: item.at,
                    });
                    targets.push(target.clone());
                    out.push(format!("{volume}:{target}{}", if read_only { ":ro" } else { "" }));
                }
                ("tmpfs", _) => {
                    let msg = format!("{ipath}: dropped the tmpfs at {target}: it stays part of the root filesystem");
                    cx.warn(item.at, msg.clone());
                    self.table.comments.push(msg);
                }
                (other, _) => cx.error(item.at, format!("{ipath}: volumes of type {other:?} cannot be converted")),
            }
        }
        if !out.is_empty() {
            self.table.set("volumes", emit::strings(&out), value.at);
        }
        // warren's own data dataset is at /data; move it out of the way of a volume there.
        let default = "/data";
        if targets.iter().any(|t| {
            crate::parse::values::path_within(t, default)
                || crate::parse::values::path_within(default, t)
        }) {
            self.table.set_commented(
                "data_path",
                quote("/warren-data"),
                value.at,
                "a volume is mounted at /data, warren's default data_path",
            );
        }
    }

    pub(super) fn depends_on(
        &mut self,
        cx: &mut Cx<'_>,
        path: &str,
        value: &Node,
        infos: &[ServiceInfo],
    ) {
        // (name, wait, position)
        let mut deps: Vec<(String, &'static str, Pos)> = Vec::new();
        match &value.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(name) = cx.text(&format!("{path}[{i}]"), item) {
                        deps.push((name, "started", item.at));
                    }
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let kpath = format!("{path}.{}", k.text);
                    let mut wait = "started";
                    if let Some(opts) = cx.map(&kpath, v) {
                        for (o, ov) in opts {
                            let opath = format!("{kpath}.{}", o.text);
                            match o.text.as_str() {
                                "condition" => match cx.text(&opath, ov).as_deref() {
                                    Some("service_started") => wait = "started",
                                    Some("service_healthy") => wait = "healthy",
                                    Some("service_completed_successfully") => wait = "completed",
                                    Some(other) => cx.error(ov.at, format!("{opath}: unknown condition {other:?}; expected service_started, service_healthy or service_completed_successfully")),
                                    None => {}
                                },
                                "restart" | "required" => {
                                    cx.warn(o.at, format!("{opath}: dropped: warren orders starts only"));
                                }
                                _ => cx.error(o.at, format!("{opath}: unknown key")),
                            }
                        }
                    }
                    deps.push((k.text.clone(), wait, k.at));
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
                return;
            }
        }
        let mut items: Vec<String> = Vec::new();
        for (name, wait, at) in deps {
            let target = dns_name(&name);
            let Some(info) = infos.iter().find(|i| i.name == target) else {
                cx.error(
                    at,
                    format!("{path}: depends on {name:?}, which is not a service of this file"),
                );
                continue;
            };
            if !info.included {
                cx.error(at, format!("{path}: depends on {name:?}, which is left out (its profiles are not active)"));
                continue;
            }
            if wait == "healthy" && !info.healthcheck {
                cx.error(
                    at,
                    format!("{path}: waits for {name:?} to be healthy, but it has no healthcheck"),
                );
                continue;
            }
            items.push(if wait == "started" {
                quote(&target)
            } else {
                format!("{{ name = {}, wait = {} }}", quote(&target), quote(wait))
            });
        }
        if !items.is_empty() {
            self.table
                .set("after", format!("[{}]", items.join(", ")), value.at);
        }
    }

    /// Returns whether it set the restart policy.
    pub(super) fn deploy(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) -> bool {
        let mut restart = false;
        let Some(entries) = cx.map(path, value) else {
            return false;
        };
        for (k, v) in entries {
            let kpath = format!("{path}.{}", k.text);
            match k.text.as_str() {
                "resources" => {
                    let Some(res) = cx.map(&kpath, v) else {
                        continue;
                    };
                    for (r, rv) in res {
                        let rpath = format!("{kpath}.{}", r.text);
                        match r.text.as_str() {
                            "limits" => {
                                let Some(limits) = cx.map(&rpath, rv) else {
                                    continue;
                                };
                                for (l, lv) in limits {
                                    let lpath = format!("{rpath}.{}", l.text);
                                    match l.text.as_str() {
                                        "cpus" => self.cpus(cx, &lpath, lv),
                                        "memory" => self.memory(cx, &lpath, lv),
                                        "pids" => self.pids(cx, &lpath, lv),
                                        _ => cx.unmappable(
                                            l,
                                            &lpath,
                                            "warren limits cpus, memory and pids",
                                        ),
                                    }
                                }
                            }
                            "reservations" => self.drop(cx, r, &rpath, "warren sets limits only"),
                            _ => cx.error(r.at, format!("{rpath}: unknown key")),
                        }
                    }
                }
                "replicas" => match cx.text(&kpath, v).as_deref() {
                    Some("1") | None => {}
                    Some("0") => {
                        self.table
                            .set_commented("state", quote("stopped"), v.at, "replicas: 0")
                    }
                    Some(_) => cx.unmappable(k, &kpath, "a workload runs one instance"),
                },
                "restart_policy" => {
                    let Some(opts) = cx.map(&kpath, v) else {
                        continue;
                    };
                    for (o, ov) in opts {
                        let opath = format!("{kpath}.{}", o.text);
                        match o.text.as_str() {
                            "condition" => {
                                let policy = match cx.text(&opath, ov).as_deref() {
                                    Some("none") => "never",
                                    Some("on-failure") => "on-failure",
                                    Some("any") => "always",
                                    Some(other) => {
                                        cx.error(ov.at, format!("{opath}: unknown condition {other:?}; expected none, on-failure or any"));
                                        continue;
                                    }
                                    None => continue,
                                };
                                restart = true;
                                self.table.set("restart", quote(policy), ov.at);
                            }
                            _ => cx.warn(
                                o.at,
                                format!("{opath}: dropped: warren restarts with its own backoff"),
                            ),
                        }
                    }
                }
                "mode" | "labels" | "placement" | "update_config" | "rollback_config"
                | "endpoint_mode" => {
                    self.drop(
                        cx,
                        k,
                        &kpath,
                        "a single host runs one instance of each workload",
                    );
                }
                _ => cx.error(k.at, format!("{kpath}: unknown key")),
            }
        }
        restart
    }

    pub(super) fn resources(&mut self, key: &'static str, value: String, at: Pos) {
        self.resources.retain(|(k, _, _)| *k != key);
        self.resources.push((key, value, at));
        let parts: Vec<String> = ["memory", "cpus", "pids"]
            .iter()
            .filter_map(|k| self.resources.iter().find(|(r, _, _)| r == k))
            .map(|(k, v, _)| format!("{k} = {v}"))
            .collect();
        let first = self
            .resources
            .iter()
            .map(|(_, _, at)| *at)
            .min()
            .unwrap_or(at);
        self.table
            .set("resources", format!("{{ {} }}", parts.join(", ")), first);
    }

    pub(super) fn memory(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) {
        let Some(text) = cx.text(path, value) else {
            return;
        };
        match fields::docker_bytes(&text) {
            Ok(b) if b < crate::parse::values::MIN_MEMORY => {
                cx.error(
                    value.at,
                    format!("{path}: {text} is below warren's minimum of 4M"),
                );
            }
            Ok(b) => self.resources("memory", quote(&fields::warren_size(b)), value.at),
            Err(reason) => cx.error(value.at, format!("{path}: {reason}")),
        }
    }

    pub(super) fn cpus(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) {
        let Some(text) = cx.text(path, value) else {
            return;
        };
        match text.parse::<f64>() {
            Ok(c) if c > 0.0 && c <= 1024.0 => self.resources("cpus", format!("{c:?}"), value.at),
            Ok(0.0) => {}
            _ => cx.error(
                value.at,
                format!("{path}: expected a number of CPUs above 0, found {text:?}"),
            ),
        }
    }

    pub(super) fn pids(&mut self, cx: &mut Cx<'_>, path: &str, value: &Node) {
        let Some(text) = cx.text(path, value) else {
            return;
        };
        match text.parse::<i64>() {
            Ok(n) if n >= 1 => self.resources("pids", n.to_string(), value.at),
            Ok(n) if n <= 0 => {}
            _ => cx.error(
                value.at,
                format!("{path}: expected a number of processes, found {text:?}"),
            ),
        }
    }
}
