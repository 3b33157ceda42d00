//! Property tests for the `warren.toml` parser: valid specs (workloads and volumes, with
//! mounts, published ports and routed domains that respect the file-wide rules) rendered to
//! TOML in any of the table styles parse back to the same [`SpecFile`], specs survive a JSON
//! round trip with the same hashes, and no input makes the parser panic.

use proptest::prelude::*;
use proptest::sample::select;
use std::collections::BTreeMap;
use std::fmt::Write;
use warren_model::{
    parse_spec, DesiredState, JailOptions, Kind, NetworkMode, PortMapping, Proto, Resources,
    RestartPolicy, RouteSpec, SiteSpec, SnapshotPolicy, Source, SpecFile, TlsChoice, VolumeMount,
    VolumeSpec, WorkloadSpec, JAIL_ALLOW,
};

/// Volume names mounts are drawn from, so that workloads share volumes often.
const VOLUME_NAMES: &[&str] = &["media", "cache", "logs", "v-2"];

/// Characters for free-form strings: quotes, backslashes, control characters that TOML must
/// escape, and multi-byte characters.
const CHARS: &[char] = &[
    'a', 'Z', '0', '9', ' ', '-', '_', '.', '/', ':', '$', '{', '}', '[', ']', '#', '=', '"', '\'',
    '\\', '\n', '\t', '\r', '\u{1}', '\u{7f}', 'é', 'ß', '😀', '中',
];

fn text(min: usize, exclude: &'static [char]) -> impl Strategy<Value = String> {
    let chars: Vec<char> = CHARS
        .iter()
        .copied()
        .filter(|c| !exclude.contains(c))
        .collect();
    prop::collection::vec(select(chars), min..10).prop_map(|v| v.into_iter().collect())
}

fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn absolute_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9._-]{1,8}", 1..4).prop_map(|parts| {
        let parts: Vec<String> = parts
            .into_iter()
            .map(|p| {
                if p.chars().all(|c| c == '.') {
                    "x".to_string()
                } else {
                    p
                }
            })
            .collect();
        format!("/{}", parts.join("/"))
    })
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        label().prop_map(Source::World),
        "[a-z0-9][a-z0-9./:@_-]{0,30}".prop_map(Source::Image),
        "[a-z][a-z0-9]{0,8}/[a-z][a-z0-9]{0,8}( [0-9]{1,3}(\\.[0-9]{1,3}){0,2})?"
            .prop_map(Source::Recipe),
    ]
}

fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        text(0, &['\0']),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
    ]
}

fn resources() -> impl Strategy<Value = Resources> {
    (
        prop::option::of(4u64 * 1024 * 1024..=u64::MAX / 2),
        prop::option::of((1u32..=1_024_000).prop_map(|m| f64::from(m) / 1000.0)),
        prop::option::of(1u64..=u64::from(u32::MAX)),
        prop::option::of(size()),
    )
        .prop_map(|(memory, cpus, pids, disk)| Resources {
            memory,
            cpus,
            pids,
            disk,
        })
}

/// A disk quota or volume size: at least 1 MiB (so at least 2 MB), often a whole number of some
/// unit.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        1024u64 * 1024..=u64::MAX / 2,
        (1u64..=4096).prop_map(|g| g << 30),
        (2u64..=4096).prop_map(|m| m * 1_000_000),
    ]
}

fn snapshots() -> impl Strategy<Value = SnapshotPolicy> {
    (
        prop_oneof![
            60u64..=1 << 40,
            (1u64..=1000).prop_map(|h| h * 3600),
            (1u64..=1000).prop_map(|m| m * 60 + 30),
        ],
        1u32..=1000,
    )
        .prop_map(|(every_secs, keep)| SnapshotPolicy { every_secs, keep })
}

/// A domain: two to four labels, sometimes under a wildcard.
fn domain() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec("[a-z]([a-z0-9-]{0,6}[a-z0-9])?", 2..4),
    )
        .prop_map(|(wild, labels)| {
            let name = labels.join(".");
            if wild {
                format!("*.{name}")
            } else {
                name
            }
        })
}

/// A route path prefix (never with a `..` segment: no segment starts with '.').
fn route_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        "(/[a-z0-9_~-][a-z0-9._~-]{0,7}){1,3}/?",
    ]
}

fn tls() -> impl Strategy<Value = TlsChoice> {
    prop_oneof![
        Just(TlsChoice::None),
        Just(TlsChoice::Local),
        (absolute_path(), absolute_path()).prop_map(|(cert, key)| TlsChoice::Files { cert, key }),
    ]
}

fn port_mapping() -> impl Strategy<Value = PortMapping> {
    let ip = prop_oneof![
        Just(None),
        any::<[u8; 4]>().prop_map(|b| Some(std::net::IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| Some(std::net::IpAddr::from(b))),
    ];
    (
        ip,
        1u16..,
        1u16..,
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)],
    )
        .prop_map(|(host_ip, host_port, container_port, proto)| PortMapping {
            host_ip,
            host_port,
            container_port,
            proto,
        })
}

/// A route as drawn; [`spec_file`] makes its domains valid for the whole file.
fn route() -> impl Strategy<Value = RouteSpec> {
    prop_oneof![
        Just(RouteSpec::default()),
        (
            prop::collection::vec(domain(), 1..3),
            1u16..,
            route_path(),
            any::<bool>(),
            prop::option::of(prop_oneof![Just(0u64), size()]),
            tls(),
        )
            .prop_map(
                |(domains, port, path, websocket, max_body, tls)| RouteSpec {
                    domains,
                    port: Some(port),
                    path,
                    websocket,
                    max_body,
                    tls,
                }
            ),
    ]
}

fn site() -> impl Strategy<Value = SiteSpec> {
    (
        prop::collection::vec(domain(), 1..3),
        route_path(),
        any::<bool>(),
        tls(),
    )
        .prop_map(|(domains, path, autoindex, tls)| SiteSpec {
            domains,
            path,
            autoindex,
            tls,
        })
}

fn volume_spec(name: &'static str) -> impl Strategy<Value = VolumeSpec> {
    (
        prop::option::of(size()),
        prop::option::of(snapshots()),
        prop::option::of(site()),
    )
        .prop_map(move |(size, snapshots, site)| VolumeSpec {
            name: name.to_string(),
            size,
            snapshots,
            site,
        })
}

/// Mounts as drawn; [`spec_file`] makes them valid for their workload and the whole file.
fn mounts() -> impl Strategy<Value = Vec<VolumeMount>> {
    prop::collection::vec(
        (select(VOLUME_NAMES), absolute_path(), any::<bool>()).prop_map(
            |(volume, path, readonly)| VolumeMount {
                volume: volume.to_string(),
                path,
                readonly,
            },
        ),
        0..4,
    )
}

/// Jail options: a sorted subset of the known permissions, vnet unset/on/off, a jailed
/// dataset or not.
fn jail_options() -> impl Strategy<Value = JailOptions> {
    (
        prop::sample::subsequence(JAIL_ALLOW.to_vec(), 0..4),
        prop::option::of(any::<bool>()),
        any::<bool>(),
    )
        .prop_map(|(allow, vnet, jailed_dataset)| JailOptions {
            allow: allow.into_iter().map(str::to_string).collect(),
            vnet,
            jailed_dataset,
        })
}

fn workload() -> impl Strategy<Value = WorkloadSpec> {
    (
        (
            label(),
            select(vec![Kind::Container, Kind::Jail, Kind::Vm]),
            source(),
            prop::collection::vec(text(1, &['\0']), 0..4),
            prop::collection::btree_map(text(1, &['\0', '=']), env_value(), 0..4),
        ),
        (
            prop::option::of(absolute_path()),
            prop::option::of(prop_oneof![
                "[a-z_][a-z0-9_-]{0,8}",
                "[0-9]{1,5}(:[0-9]{1,5})?",
                "[a-z][a-z0-9]{0,6}:[a-z][a-z0-9]{0,6}",
            ]),
            prop::option::of(prop::collection::vec(label(), 1..4).prop_map(|l| l.join("."))),
            select(vec![
                RestartPolicy::Always,
                RestartPolicy::OnFailure,
                RestartPolicy::Never,
            ]),
            select(vec![DesiredState::Running, DesiredState::Stopped]),
            resources(),
            absolute_path(),
        ),
        (
            mounts(),
            prop::option::of(snapshots()),
            select(vec![
                NetworkMode::Bridge,
                NetworkMode::Host,
                NetworkMode::None,
            ]),
            prop::collection::vec(port_mapping(), 0..3),
            route(),
            any::<bool>(),
            any::<bool>(),
        ),
        jail_options(),
    )
        .prop_map(
            |(
                (name, kind, source, command, env),
                (workdir, user, hostname, restart, state, resources, data_path),
                (volumes, snapshots, network, ports, route, readonly_rootfs, userns),
                mut jail,
            )| WorkloadSpec {
                // Image workloads exercise `entrypoint` too (worlds refuse it).
                entrypoint: match &source {
                    Source::Image(_) if command.len() > 1 => Some(command[..1].to_vec()),
                    _ => None,
                },
                name,
                kind,
                source,
                command,
                env,
                workdir,
                user,
                hostname,
                restart,
                state,
                resources,
                data_path,
                volumes,
                snapshots,
                network,
                ports,
                route,
                health: None,
                hooks: Vec::new(),
                readonly_rootfs,
                // A user namespace needs a network namespace of its own.
                userns: userns && network != NetworkMode::Host,
                // Jail options never on a vm; vnet = true never with the host's network.
                jail: if kind == Kind::Vm {
                    JailOptions::default()
                } else {
                    if network == NetworkMode::Host && jail.vnet == Some(true) {
                        jail.vnet = None;
                    }
                    jail
                },
            },
        )
}

/// Whether `a` and `b` are the same path or one lies below the other.
fn overlaps(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('/').filter(|c| !c.is_empty()).collect();
    let b: Vec<&str> = b.split('/').filter(|c| !c.is_empty()).collect();
    a.starts_with(&b) || b.starts_with(&a)
}

fn spec_file() -> impl Strategy<Value = SpecFile> {
    let volumes = prop::collection::vec(select(VOLUME_NAMES).prop_flat_map(volume_spec), 0..3);
    (prop::collection::vec(workload(), 0..4), volumes).prop_map(|(ws, vs)| {
        let mut workloads: BTreeMap<String, WorkloadSpec> =
            ws.into_iter().map(|w| (w.name.clone(), w)).collect();
        let mut volumes: BTreeMap<String, VolumeSpec> =
            vs.into_iter().map(|v| (v.name.clone(), v)).collect();
        // In name order, the first workload to mount a volume read-write is its one writer;
        // later ones get it read-only.
        let mut writers: BTreeMap<String, String> = BTreeMap::new();
        for w in workloads.values_mut() {
            let mut kept: Vec<VolumeMount> = Vec::new();
            for mut m in std::mem::take(&mut w.volumes) {
                if overlaps(&m.path, &w.data_path) || kept.iter().any(|k| k.path == m.path) {
                    continue;
                }
                if !m.readonly {
                    let writer = writers
                        .entry(m.volume.clone())
                        .or_insert_with(|| w.name.clone());
                    m.readonly = *writer != w.name;
                }
                volumes
                    .entry(m.volume.clone())
                    .or_insert_with(|| VolumeSpec {
                        name: m.volume.clone(),
                        size: None,
                        snapshots: None,
                        site: None,
                    });
                kept.push(m);
            }
            w.volumes = kept;
        }
        // No host port published twice in the file; only bridge workloads publish.
        let mut published: Vec<PortMapping> = Vec::new();
        for w in workloads.values_mut() {
            if w.network != NetworkMode::Bridge {
                w.ports.clear();
            }
            w.ports.retain(|m| {
                let free = !published.iter().any(|p| p.overlaps(m));
                if free {
                    published.push(*m);
                }
                free
            });
        }
        // No domain and path routed twice in the file; the ingress cannot reach network none.
        let mut routed: Vec<(String, String)> = Vec::new();
        let mut claim = |domains: &mut Vec<String>, path: &str| {
            domains.retain(|d| {
                let key = (d.clone(), path.to_string());
                let free = !routed.contains(&key);
                if free {
                    routed.push(key);
                }
                free
            });
        };
        for w in workloads.values_mut() {
            if w.network == NetworkMode::None {
                w.route = RouteSpec::default();
            }
            claim(&mut w.route.domains, &w.route.path);
            if w.route.domains.is_empty() {
                w.route = RouteSpec::default();
            }
        }
        for v in volumes.values_mut() {
            if let Some(site) = v.site.as_mut() {
                claim(&mut site.domains, &site.path);
                if site.domains.is_empty() {
                    v.site = None;
                }
            }
        }
        SpecFile { workloads, volumes }
    })
}

/// How a workload is written out; the parser must not care.
#[derive(Debug, Clone, Copy)]
struct Style {
    /// `resources`/`env` as `[workload.x.resources]` sections rather than inline tables.
    sections: bool,
    /// `resources.memory = ...` dotted keys rather than an inline table.
    dotted: bool,
    /// Memory as a unit string when it divides evenly.
    units: bool,
    /// Write default-valued fields explicitly.
    explicit_defaults: bool,
    /// CRLF line endings.
    crlf: bool,
    /// `[volume.*]` tables before the workloads rather than after.
    volumes_first: bool,
}

impl Style {
    fn from_bits(b: [bool; 6]) -> Self {
        Style {
            sections: b[0],
            dotted: b[1],
            units: b[2],
            explicit_defaults: b[3],
            crlf: b[4],
            volumes_first: b[5],
        }
    }
}

fn style() -> impl Strategy<Value = Style> {
    any::<[bool; 6]>().prop_map(Style::from_bits)
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => write!(out, "\\u{:04X}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn env_literal(v: &str) -> String {
    let canonical_int = v.parse::<i64>().is_ok_and(|n| n.to_string() == v);
    if canonical_int || v == "true" || v == "false" {
        v.to_string()
    } else {
        quote(v)
    }
}

fn memory_literal(bytes: u64, units: bool) -> String {
    if units {
        for (unit, m) in [
            ("G", 1u64 << 30),
            ("MiB", 1 << 20),
            ("MB", 1_000_000),
            ("K", 1 << 10),
        ] {
            if (bytes / m) * m == bytes {
                return quote(&format!("{}{unit}", bytes / m));
            }
        }
    }
    bytes.to_string()
}

/// Seconds as a duration string: combined units (`"1h30m"`) or plain seconds (`"5400s"`).
fn duration_literal(secs: u64, units: bool) -> String {
    if !units {
        return quote(&format!("{secs}s"));
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [
        ("w", 604_800u64),
        ("d", 86_400),
        ("h", 3600),
        ("m", 60),
        ("s", 1),
    ] {
        if rest >= size {
            write!(out, "{}{unit}", rest / size).unwrap();
            rest %= size;
        }
    }
    quote(&out)
}

fn snapshot_pairs(p: &SnapshotPolicy, style: Style) -> Vec<(&'static str, String)> {
    vec![
        ("every", duration_literal(p.every_secs, style.units)),
        ("keep", p.keep.to_string()),
    ]
}

fn mount_literal(m: &VolumeMount, style: Style) -> String {
    let mode = match (m.readonly, style.explicit_defaults) {
        (true, _) => ":ro",
        (false, true) => ":rw",
        (false, false) => "",
    };
    quote(&format!("{}:{}{mode}", m.volume, m.path))
}

/// Writes `key` as a sub-table of `[header]`: inline or dotted here (in the table's own
/// body), or returns the text of a `[header.key]` section to append after the body.
fn sub_table(
    out: &mut String,
    header: &str,
    key: &str,
    pairs: &[(&'static str, String)],
    style: Style,
) -> Option<String> {
    if style.sections {
        let mut section = format!("[{header}.{key}]\n");
        for (k, v) in pairs {
            writeln!(section, "{k} = {v}").unwrap();
        }
        Some(section)
    } else if style.dotted {
        for (k, v) in pairs {
            writeln!(out, "{key}.{k} = {v}").unwrap();
        }
        None
    } else {
        let inline: Vec<String> = pairs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        writeln!(out, "{key} = {{ {} }}", inline.join(", ")).unwrap();
        None
    }
}

fn string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

fn tls_pairs(cert: &str, key: &str) -> Vec<(&'static str, String)> {
    vec![("cert", quote(cert)), ("key", quote(key))]
}

/// `tls` as a value: a string, or an inline table of its files.
fn tls_literal(t: &TlsChoice) -> String {
    match t {
        TlsChoice::None => quote("none"),
        TlsChoice::Local => quote("local"),
        TlsChoice::Files { cert, key } => {
            format!("{{ cert = {}, key = {} }}", quote(cert), quote(key))
        }
    }
}

fn site_pairs(site: &SiteSpec, style: Style) -> Vec<(&'static str, String)> {
    let mut out = vec![("domains", string_array(&site.domains))];
    if site.path != "/" || style.explicit_defaults {
        out.push(("path", quote(&site.path)));
    }
    if site.autoindex || style.explicit_defaults {
        out.push(("autoindex", site.autoindex.to_string()));
    }
    if site.tls != TlsChoice::None || style.explicit_defaults {
        out.push(("tls", tls_literal(&site.tls)));
    }
    out
}

fn render_volumes(out: &mut String, spec: &SpecFile, style: Style) {
    for v in spec.volumes.values() {
        let header = format!("volume.{}", v.name);
        writeln!(out, "[{header}]").unwrap();
        if let Some(size) = v.size {
            writeln!(out, "size = {}", memory_literal(size, style.units)).unwrap();
        }
        let mut sections = String::new();
        if let Some(p) = &v.snapshots {
            if let Some(section) =
                sub_table(out, &header, "snapshots", &snapshot_pairs(p, style), style)
            {
                sections.push_str(&section);
            }
        }
        if let Some(site) = &v.site {
            if let Some(section) = sub_table(out, &header, "site", &site_pairs(site, style), style)
            {
                sections.push_str(&section);
            }
        }
        out.push_str(&sections);
        out.push('\n');
    }
}

fn resource_pairs(r: &Resources, style: Style) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = r.memory {
        out.push(("memory", memory_literal(m, style.units)));
    }
    if let Some(c) = r.cpus {
        out.push(("cpus", format!("{c:?}")));
    }
    if let Some(p) = r.pids {
        out.push(("pids", p.to_string()));
    }
    if let Some(d) = r.disk {
        out.push(("disk", memory_literal(d, style.units)));
    }
    out
}

fn render(spec: &SpecFile, style: Style) -> String {
    let mut out = String::from("# generated\n");
    if style.volumes_first {
        render_volumes(&mut out, spec, style);
    }
    for w in spec.workloads.values() {
        let header = format!("workload.{}", w.name);
        writeln!(out, "[{header}]").unwrap();
        if w.kind != Kind::Container || style.explicit_defaults {
            writeln!(out, "kind = {}", quote(w.kind.as_str())).unwrap();
        }
        match &w.source {
            Source::World(s) => writeln!(out, "world = {}", quote(s)).unwrap(),
            Source::Image(s) => writeln!(out, "image = {}", quote(s)).unwrap(),
            Source::Recipe(s) => writeln!(out, "recipe = {}", quote(s)).unwrap(),
        }
        if !w.command.is_empty() || style.explicit_defaults {
            let argv: Vec<String> = w.command.iter().map(|a| quote(a)).collect();
            writeln!(out, "command = [{}]", argv.join(", ")).unwrap();
        }
        if let Some(entrypoint) = &w.entrypoint {
            let argv: Vec<String> = entrypoint.iter().map(|a| quote(a)).collect();
            writeln!(out, "entrypoint = [{}]", argv.join(", ")).unwrap();
        }
        for (key, value) in [
            ("workdir", &w.workdir),
            ("user", &w.user),
            ("hostname", &w.hostname),
        ] {
            if let Some(v) = value {
                writeln!(out, "{key} = {}", quote(v)).unwrap();
            }
        }
        if w.restart != RestartPolicy::Always || style.explicit_defaults {
            writeln!(out, "restart = {}", quote(w.restart.as_str())).unwrap();
        }
        if w.state != DesiredState::Running || style.explicit_defaults {
            writeln!(out, "state = {}", quote(w.state.as_str())).unwrap();
        }
        if w.data_path != "/data" || style.explicit_defaults {
            writeln!(out, "data_path = {}", quote(&w.data_path)).unwrap();
        }
        if !w.volumes.is_empty() || style.explicit_defaults {
            let mounts: Vec<String> = w.volumes.iter().map(|m| mount_literal(m, style)).collect();
            writeln!(out, "volumes = [{}]", mounts.join(", ")).unwrap();
        }
        if w.network != NetworkMode::Bridge || style.explicit_defaults {
            writeln!(out, "network = {}", quote(w.network.as_str())).unwrap();
        }
        if w.readonly_rootfs || style.explicit_defaults {
            writeln!(out, "readonly_rootfs = {}", w.readonly_rootfs).unwrap();
        }
        if w.userns || style.explicit_defaults {
            writeln!(out, "userns = {}", w.userns).unwrap();
        }
        let mut jail_pairs: Vec<(&'static str, String)> = Vec::new();
        if !w.jail.allow.is_empty() || style.explicit_defaults {
            // Any order in the file; the parser sorts.
            let mut allow = w.jail.allow.clone();
            allow.reverse();
            jail_pairs.push(("allow", string_array(&allow)));
        }
        if let Some(v) = w.jail.vnet {
            jail_pairs.push(("vnet", v.to_string()));
        }
        if w.jail.jailed_dataset || style.explicit_defaults {
            jail_pairs.push(("jailed_dataset", w.jail.jailed_dataset.to_string()));
        }
        let jail_section = if jail_pairs.is_empty() || w.kind == Kind::Vm {
            None
        } else {
            sub_table(&mut out, &header, "jail", &jail_pairs, style)
        };
        if !w.ports.is_empty() || (style.explicit_defaults && w.network == NetworkMode::Bridge) {
            let ports: Vec<String> = w.ports.iter().map(|m| m.to_string()).collect();
            writeln!(out, "ports = {}", string_array(&ports)).unwrap();
        }
        let r = &w.route;
        let mut tls_section = None;
        if !r.domains.is_empty() {
            writeln!(out, "domains = {}", string_array(&r.domains)).unwrap();
            if let Some(port) = r.port {
                writeln!(out, "port = {port}").unwrap();
            }
            if r.path != "/" || style.explicit_defaults {
                writeln!(out, "path = {}", quote(&r.path)).unwrap();
            }
            if r.websocket || style.explicit_defaults {
                writeln!(out, "websocket = {}", r.websocket).unwrap();
            }
            if let Some(b) = r.max_body {
                writeln!(out, "max_body = {}", memory_literal(b, style.units)).unwrap();
            }
            match &r.tls {
                TlsChoice::Files { cert, key } => {
                    tls_section = sub_table(&mut out, &header, "tls", &tls_pairs(cert, key), style);
                }
                TlsChoice::None if !style.explicit_defaults => {}
                other => writeln!(out, "tls = {}", tls_literal(other)).unwrap(),
            }
        }
        let snapshots_section = w.snapshots.as_ref().and_then(|p| {
            sub_table(
                &mut out,
                &header,
                "snapshots",
                &snapshot_pairs(p, style),
                style,
            )
        });
        let resources = resource_pairs(&w.resources, style);
        if style.dotted && !style.sections {
            for (k, v) in &resources {
                writeln!(out, "resources.{k} = {v}").unwrap();
            }
        }
        let env: Vec<String> = w
            .env
            .iter()
            .map(|(k, v)| format!("{} = {}", quote(k), env_literal(v)))
            .collect();
        if style.sections {
            // Sections end the workload's own table, so they come last.
            if !env.is_empty() || style.explicit_defaults {
                writeln!(out, "[{header}.env]\n{}", env.join("\n")).unwrap();
            }
            if !resources.is_empty() {
                writeln!(out, "[{header}.resources]").unwrap();
                for (k, v) in &resources {
                    writeln!(out, "{k} = {v}").unwrap();
                }
            }
            if let Some(section) = snapshots_section {
                out.push_str(&section);
            }
            if let Some(section) = tls_section {
                out.push_str(&section);
            }
            if let Some(section) = jail_section {
                out.push_str(&section);
            }
        } else {
            if !env.is_empty() || style.explicit_defaults {
                writeln!(out, "env = {{ {} }}", env.join(", ")).unwrap();
            }
            if !style.dotted && (!resources.is_empty() || style.explicit_defaults) {
                let pairs: Vec<String> = resources
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect();
                writeln!(out, "resources = {{ {} }}", pairs.join(", ")).unwrap();
            }
        }
        out.push('\n');
    }
    if !style.volumes_first {
        render_volumes(&mut out, spec, style);
    }
    if style.crlf {
        out = out.replace('\n', "\r\n");
    }
    out
}

/// Fragments that steer random input towards the parser's deeper paths.
fn toml_ish() -> impl Strategy<Value = String> {
    let pieces = vec![
        "[workload.web]\n",
        "[workload.",
        "]\n",
        "[[workload.x]]\n",
        "workload",
        "web",
        ".",
        "world = \"host\"\n",
        "image = \"x\"\n",
        "kind = ",
        "\"jail\"",
        "command = ",
        "[\"sh\", ",
        "]",
        "env = { ",
        " }",
        "A = ",
        "resources = { memory = ",
        "\"256Mo\"",
        "\"4M\"",
        "cpus = ",
        "-1",
        "1e400",
        "nan",
        "pids = ",
        "0x7fffffffffffffff",
        "=",
        "\"",
        "'",
        "\n",
        "\r\n",
        " ",
        "#",
        "{",
        "}",
        ",",
        "é",
        "😀",
        "\u{feff}",
        "\\u0000",
        "1979-05-27T07:32:00Z",
        "true",
        "1_000",
        "data_path = \"/\"\n",
        "hostname = ",
        "user = ",
        "\"\"",
        "restart = ",
        "[volume.media]\n",
        "[volume.",
        "volume",
        "volumes = [",
        "\"media:/srv:ro\"",
        "\"media:/data\"",
        "\"cache:srv:x\"",
        "size = ",
        "snapshots = { every = ",
        "\"6h\"",
        "\"1h30m\"",
        "\"30s\"",
        "keep = ",
        "disk = ",
        "network = ",
        "\"host\"",
        "\"none\"",
        "readonly_rootfs = ",
        "userns = ",
        "[workload.web.jail]\n",
        "jail = { ",
        "allow = [\"raw_sockets\", ",
        "\"mount.zfs\"",
        "vnet = ",
        "jailed_dataset = ",
        "true\n",
        "ports = [",
        "\"8080:80\"",
        "\"127.0.0.1:5353:53/udp\"",
        "\"[::1]:80\"",
        "domains = [",
        "\"git.home.arpa\"",
        "\"*.Apps.home\"",
        "port = ",
        "3000",
        "path = \"/api\"\n",
        "websocket = ",
        "max_body = ",
        "tls = ",
        "\"local\"",
        "{ cert = \"/c.pem\", key = \"k\" }",
        "site = { domains = [",
        "autoindex = ",
        "[workload.warren-ingress]\n",
    ];
    prop::collection::vec(select(pieces), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rendered_specs_parse_back(spec in spec_file(), style in style()) {
        let text = render(&spec, style);
        match parse_spec(&text, "gen.toml") {
            Ok(parsed) => prop_assert_eq!(&parsed.spec, &spec, "\n{}", text),
            Err(e) => prop_assert!(false, "{}\n---\n{}", e, text),
        }
    }

    #[test]
    fn exported_specs_parse_back_and_export_the_same(spec in spec_file()) {
        let text = warren_model::render::to_toml(&spec, "exported");
        match parse_spec(&text, "export.toml") {
            Ok(parsed) => {
                prop_assert_eq!(&parsed.spec, &spec, "\n{}", text);
                prop_assert_eq!(warren_model::render::to_toml(&parsed.spec, "exported"), text);
            }
            Err(e) => prop_assert!(false, "{}\n---\n{}", e, text),
        }
    }

    #[test]
    fn specs_survive_json_with_the_same_hash(spec in spec_file()) {
        let json = serde_json::to_string(&spec).expect("serializes");
        let back: SpecFile = serde_json::from_str(&json).expect("deserializes");
        prop_assert_eq!(&back, &spec);
        for (name, w) in &spec.workloads {
            prop_assert_eq!(back.workloads[name].hash(), w.hash());
            let mut unrouted = w.clone();
            unrouted.ports.clear();
            unrouted.route = RouteSpec::default();
            prop_assert_eq!(unrouted.hash(), w.hash());
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let _ = parse_spec(&text, "any.toml");
    }

    #[test]
    fn toml_like_text_never_panics(text in toml_ish()) {
        if let Err(e) = parse_spec(&text, "any.toml") {
            prop_assert!(!e.diagnostics.is_empty());
            for d in &e.diagnostics {
                prop_assert!(d.line >= 1 && d.column >= 1);
                prop_assert!(!d.message.contains('\n'), "{}", d);
            }
        }
    }

    #[test]
    fn located_paths_are_inside_the_file(spec in spec_file(), style in style()) {
        let text = render(&spec, style);
        let parsed = parse_spec(&text, "gen.toml").expect("valid");
        let lines = text.lines().count();
        for name in spec.workloads.keys() {
            for field in [
                "",
                ".world",
                ".image",
                ".kind",
                ".resources.memory",
                ".resources.disk",
                ".env",
                ".command[0]",
                ".volumes[0]",
                ".snapshots.every",
                ".snapshots.keep",
                ".network",
                ".readonly_rootfs",
                ".userns",
                ".jail.allow[0]",
                ".jail.vnet",
                ".ports[0]",
                ".domains[0]",
                ".port",
                ".tls.cert",
            ] {
                let (line, column) = parsed.locate(&format!("workload.{name}{field}"));
                prop_assert!(line >= 2 && line <= lines && column >= 1);
            }
        }
        for name in spec.volumes.keys() {
            for field in [
                "",
                ".size",
                ".snapshots",
                ".snapshots.every",
                ".site.domains[0]",
                ".site.tls",
            ] {
                let (line, column) = parsed.locate(&format!("volume.{name}{field}"));
                prop_assert!(line >= 2 && line <= lines && column >= 1);
            }
        }
    }
}

#[test]
fn renderer_styles_cover_every_field() {
    let mut w = WorkloadSpec::new("web", Source::World("host".into()));
    w.env = BTreeMap::from([
        ("A.B".into(), "\"quoted\"\n".into()),
        ("N".into(), "12".into()),
    ]);
    w.resources.memory = Some(256 << 20);
    w.resources.cpus = Some(0.5);
    w.resources.disk = Some(2 << 30);
    w.volumes = vec![
        VolumeMount {
            volume: "media".into(),
            path: "/srv/media".into(),
            readonly: true,
        },
        VolumeMount {
            volume: "cache".into(),
            path: "/var/cache".into(),
            readonly: false,
        },
    ];
    w.snapshots = Some(SnapshotPolicy {
        every_secs: 5400,
        keep: 10,
    });
    w.ports = vec![
        PortMapping::parse("8080:80").unwrap(),
        PortMapping::parse("[::1]:5353:53/udp").unwrap(),
    ];
    w.readonly_rootfs = true;
    w.userns = true;
    w.jail = JailOptions {
        allow: vec!["raw_sockets".into(), "sysvipc".into()],
        vnet: Some(false),
        jailed_dataset: true,
    };
    w.route = RouteSpec {
        domains: vec!["web.home.arpa".into(), "*.apps.home.arpa".into()],
        port: Some(80),
        path: "/app".into(),
        websocket: true,
        max_body: Some(50 << 20),
        tls: TlsChoice::Files {
            cert: "/etc/warren/tls/web.pem".into(),
            key: "/etc/warren/tls/web.key".into(),
        },
    };
    let mut reader = WorkloadSpec::new("reader", Source::Image("alpine".into()));
    reader.volumes = vec![VolumeMount {
        volume: "cache".into(),
        path: "/cache".into(),
        readonly: true,
    }];
    reader.network = NetworkMode::Host;
    reader.route = RouteSpec {
        domains: vec!["reader.home.arpa".into()],
        port: Some(8080),
        max_body: Some(0),
        tls: TlsChoice::Local,
        ..RouteSpec::default()
    };
    let spec = SpecFile {
        workloads: BTreeMap::from([("web".into(), w), ("reader".into(), reader)]),
        volumes: BTreeMap::from([
            (
                "media".into(),
                VolumeSpec {
                    name: "media".into(),
                    size: Some(10 << 30),
                    snapshots: Some(SnapshotPolicy {
                        every_secs: 6 * 3600,
                        keep: 5,
                    }),
                    site: Some(SiteSpec {
                        domains: vec!["media.home.arpa".into()],
                        path: "/files".into(),
                        autoindex: true,
                        tls: TlsChoice::Files {
                            cert: "/etc/warren/tls/media.pem".into(),
                            key: "/etc/warren/tls/media.key".into(),
                        },
                    }),
                },
            ),
            (
                "cache".into(),
                VolumeSpec {
                    name: "cache".into(),
                    size: None,
                    snapshots: None,
                    site: Some(SiteSpec {
                        domains: vec!["cache.home.arpa".into()],
                        ..SiteSpec::default()
                    }),
                },
            ),
        ]),
    };
    for bits in 0..64u8 {
        let style = Style::from_bits(std::array::from_fn(|i| bits & (1 << i) != 0));
        let text = render(&spec, style);
        let parsed = parse_spec(&text, "r.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed.spec, spec, "{text}");
    }
}
