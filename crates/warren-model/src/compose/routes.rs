//! Reverse-proxy labels as a warren route (`domains`, `port`, `path`, `tls`).
//!
//! Traefik: `traefik.http.routers.R.rule` with `Host(...)` (several hosts, `||`) and at most one
//! `PathPrefix(...)`; the port from `traefik.http.services.S.loadbalancer.server.port`, else
//! the service's only port; `...routers.R.tls` or a certificate resolver gives
//! `tls = "local"`. caddy-docker-proxy: `caddy` (or `caddy_N`) holds the addresses,
//! `caddy.reverse_proxy: "{{upstreams PORT}}"` the port; Caddy serves HTTPS, so the route gets
//! `tls = "local"` unless the address says `http://`. A rule warren cannot route (another
//! matcher, TCP routers, two ports) is an error at its label; labels that only tune the proxy
//! (middlewares, entry points) are dropped with a warning.

use super::emit::{self, Table};
use super::yaml::Pos;
use super::Cx;
use crate::parse::values::{check_domain, check_route_path};
use crate::render::quote;

pub(crate) fn is_route_label(name: &str) -> bool {
    name.starts_with("traefik.") || caddy_prefix(name).is_some()
}

/// `caddy`, `caddy_0`, ... and the rest after it (`""` or `.reverse_proxy`).
fn caddy_prefix(name: &str) -> Option<(&str, &str)> {
    let end = name.find('.').unwrap_or(name.len());
    let (head, rest) = name.split_at(end);
    let ok = head == "caddy"
        || head
            .strip_prefix("caddy_")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    ok.then_some((head, rest))
}

#[derive(Default)]
struct Route {
    domains: Vec<(String, Pos)>,
    port: Option<(u16, Pos)>,
    path: Option<(String, Pos)>,
    tls: bool,
    disabled: bool,
}

impl Route {
    fn port(&mut self, cx: &mut Cx<'_>, path: &str, port: u16, at: Pos) {
        match self.port {
            Some((p, _)) if p != port => cx.error(
                at,
                format!(
                    "{path}: routes to port {port} and {p}; a warren workload has one route port"
                ),
            ),
            _ => self.port = Some((port, at)),
        }
    }

    fn path(&mut self, cx: &mut Cx<'_>, path: &str, prefix: &str, at: Pos) {
        match &self.path {
            Some((p, _)) if p != prefix => cx.error(
                at,
                format!("{path}: routes the paths {prefix} and {p}; a warren workload has one route path"),
            ),
            _ => self.path = Some((prefix.to_string(), at)),
        }
    }
}

pub(crate) fn route(
    cx: &mut Cx<'_>,
    table: &mut Table,
    service: &str,
    labels: &[(String, String, Pos)],
    container_ports: &[u16],
) {
    let mut r = Route::default();
    let mut dropped: Vec<&str> = Vec::new();
    let mut first_at: Option<Pos> = None;
    for (name, value, at) in labels {
        let path = format!("{service}.labels.{name}");
        let at = *at;
        if let Some(rest) = name.strip_prefix("traefik.") {
            let parts: Vec<&str> = rest.split('.').collect();
            match parts.as_slice() {
                ["enable"] => r.disabled = value == "false",
                ["http", "routers", _, "rule"] => {
                    first_at.get_or_insert(at);
                    traefik_rule(cx, &mut r, &path, value, at);
                }
                ["http", "routers", _, "tls"] => r.tls |= value == "true",
                ["http", "routers", _, "tls", "certresolver"] => {
                    r.tls = true;
                    cx.warn(at, format!("{path}: warren's local CA signs the route instead of Traefik's resolver {value:?}"));
                }
                ["http", "routers", _, "entrypoints" | "service" | "priority"] => {}
                ["http", "services", _, "loadbalancer", "server", "port"] => {
                    match value.parse::<u16>() {
                        Ok(p) if p > 0 => r.port(cx, &path, p, at),
                        _ => cx.error(at, format!("{path}: {value:?} is not a port")),
                    }
                }
                ["docker", ..] => {}
                ["tcp" | "udp", ..] => cx.unmappable(
                    &super::yaml::Key {
                        text: name.clone(),
                        at,
                    },
                    &path,
                    "the ingress routes HTTP; publish the port with `ports`",
                ),
                _ => dropped.push(name),
            }
        } else if let Some((_, rest)) = caddy_prefix(name) {
            match rest {
                "" => {
                    first_at.get_or_insert(at);
                    for address in value
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|a| !a.is_empty())
                    {
                        let (host, plain_http) = match address.strip_prefix("http://") {
                            Some(h) => (h, true),
                            None => (address.strip_prefix("https://").unwrap_or(address), false),
                        };
                        let host = host.split(':').next().unwrap_or(host);
                        r.tls |= !plain_http;
                        add_domain(cx, &mut r, &path, host, at);
                    }
                }
                ".reverse_proxy" => {
                    let inner = value
                        .trim()
                        .strip_prefix("{{")
                        .and_then(|v| v.strip_suffix("}}"))
                        .map(str::trim);
                    let words: Vec<&str> = inner
                        .map(|i| i.split_whitespace().collect())
                        .unwrap_or_default();
                    match words.as_slice() {
                        ["upstreams"] | ["upstreams", "http"] => {}
                        ["upstreams", port] | ["upstreams", "http", port] => match port.parse::<u16>() {
                            Ok(p) if p > 0 => r.port(cx, &path, p, at),
                            _ => cx.error(at, format!("{path}: {port:?} is not a port")),
                        },
                        _ => cx.error(
                            at,
                            format!("{path}: cannot be converted: expected \"{{{{upstreams PORT}}}}\", found {value:?}"),
                        ),
                    }
                }
                ".tls" if value == "internal" => r.tls = true,
                _ => dropped.push(name),
            }
        }
    }
    if !dropped.is_empty() {
        let at = labels
            .iter()
            .find(|(n, _, _)| n == dropped[0])
            .map_or(table.at, |(_, _, a)| *a);
        let msg = format!(
            "{service}.labels: dropped the proxy settings {}",
            dropped.join(", ")
        );
        cx.warn(at, msg.clone());
        table.comments.push(msg);
    }
    if r.disabled || r.domains.is_empty() {
        return;
    }
    let at = first_at.unwrap_or(table.at);
    let port = match r.port {
        Some((p, at)) => Some((p, at)),
        None => {
            let mut unique: Vec<u16> = container_ports.to_vec();
            unique.sort_unstable();
            unique.dedup();
            match unique.as_slice() {
                [p] => Some((*p, at)),
                _ => {
                    cx.error(
                        at,
                        format!(
                            "{service}.labels: the route needs the service's port: add \
                             traefik.http.services.NAME.loadbalancer.server.port or \
                             caddy.reverse_proxy: \"{{{{upstreams PORT}}}}\""
                        ),
                    );
                    None
                }
            }
        }
    };
    let Some((port, port_at)) = port else {
        return;
    };
    let domains: Vec<&str> = r.domains.iter().map(|(d, _)| d.as_str()).collect();
    table.set("domains", emit::strings(&domains), at);
    table.set("port", port.to_string(), port_at);
    if let Some((p, pat)) = &r.path {
        if p != "/" {
            table.set("path", quote(p), *pat);
        }
    }
    if r.tls {
        table.set("tls", quote("local"), at);
    }
}

fn add_domain(cx: &mut Cx<'_>, r: &mut Route, path: &str, domain: &str, at: Pos) {
    match check_domain(domain) {
        Ok(()) => {
            if !r.domains.iter().any(|(d, _)| d == domain) {
                r.domains.push((domain.to_string(), at));
            }
        }
        Err(reason) => cx.error(at, format!("{path}: {reason}")),
    }
}

/// Reads `Host(`a`, `b`) || Host(`c`) && PathPrefix(`/x`)`.
fn traefik_rule(cx: &mut Cx<'_>, r: &mut Route, path: &str, rule: &str, at: Pos) {
    let mut rest = rule.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(' || c == ')');
        if rest.is_empty() {
            break;
        }
        if let Some(after) = rest.strip_prefix("||").or_else(|| rest.strip_prefix("&&")) {
            rest = after;
            continue;
        }
        let name_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let matcher = &rest[..name_len];
        let after = rest[name_len..].trim_start();
        let Some(args_start) = after.strip_prefix('(') else {
            cx.error(at, format!("{path}: cannot read the rule {rule:?}"));
            return;
        };
        let Some(close) = args_start.find(')') else {
            cx.error(at, format!("{path}: cannot read the rule {rule:?}"));
            return;
        };
        let args: Vec<String> = args_start[..close]
            .split(',')
            .map(|a| {
                a.trim()
                    .trim_matches(|c| c == '`' || c == '"' || c == '\'')
                    .to_string()
            })
            .filter(|a| !a.is_empty())
            .collect();
        match matcher {
            "Host" => {
                for a in &args {
                    add_domain(cx, r, path, a, at);
                }
            }
            "PathPrefix" | "Path" => match args.as_slice() {
                [p] => match check_route_path(p) {
                    Ok(()) => r.path(cx, path, p, at),
                    Err(reason) => cx.error(at, format!("{path}: {reason}")),
                },
                _ => cx.error(at, format!("{path}: a warren route has one path prefix")),
            },
            other => {
                cx.error(
                    at,
                    format!("{path}: cannot be converted: the matcher {other}() has no warren equivalent (warren routes by Host and PathPrefix)"),
                );
                return;
            }
        }
        rest = &args_start[close + 1..];
    }
}
