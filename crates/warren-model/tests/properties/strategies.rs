//! Strategies for valid specs that respect the file-wide rules, and their parts.

use super::*;

/// Volume names mounts are drawn from, so that workloads share volumes often.
pub(crate) const VOLUME_NAMES: &[&str] = &["media", "cache", "logs", "v-2"];

/// Characters for free-form strings: quotes, backslashes, control characters that TOML must
/// escape, and multi-byte characters.
pub(crate) const CHARS: &[char] = &[
    'a', 'Z', '0', '9', ' ', '-', '_', '.', '/', ':', '$', '{', '}', '[', ']', '#', '=', '"', '\'',
    '\\', '\n', '\t', '\r', '\u{1}', '\u{7f}', 'é', 'ß', '😀', '中',
];

pub(crate) fn text(min: usize, exclude: &'static [char]) -> impl Strategy<Value = String> {
    let chars: Vec<char> = CHARS
        .iter()
        .copied()
        .filter(|c| !exclude.contains(c))
        .collect();
    prop::collection::vec(select(chars), min..10).prop_map(|v| v.into_iter().collect())
}

pub(crate) fn label() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"
}

pub(crate) fn absolute_path() -> impl Strategy<Value = String> {
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

pub(crate) fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        label().prop_map(Source::World),
        "[a-z0-9][a-z0-9./:@_-]{0,30}".prop_map(Source::Image),
        "[a-z][a-z0-9]{0,8}/[a-z][a-z0-9]{0,8}( [0-9]{1,3}(\\.[0-9]{1,3}){0,2})?"
            .prop_map(Source::Recipe),
    ]
}

pub(crate) fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        text(0, &['\0']),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
    ]
}

pub(crate) fn resources() -> impl Strategy<Value = Resources> {
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
pub(crate) fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        1024u64 * 1024..=u64::MAX / 2,
        (1u64..=4096).prop_map(|g| g << 30),
        (2u64..=4096).prop_map(|m| m * 1_000_000),
    ]
}

pub(crate) fn snapshots() -> impl Strategy<Value = SnapshotPolicy> {
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
pub(crate) fn domain() -> impl Strategy<Value = String> {
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
pub(crate) fn route_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_string()),
        "(/[a-z0-9_~-][a-z0-9._~-]{0,7}){1,3}/?",
    ]
}

pub(crate) fn tls() -> impl Strategy<Value = TlsChoice> {
    prop_oneof![
        Just(TlsChoice::None),
        Just(TlsChoice::Local),
        (absolute_path(), absolute_path()).prop_map(|(cert, key)| TlsChoice::Files { cert, key }),
    ]
}

pub(crate) fn port_mapping() -> impl Strategy<Value = PortMapping> {
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
pub(crate) fn route() -> impl Strategy<Value = RouteSpec> {
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

pub(crate) fn site() -> impl Strategy<Value = SiteSpec> {
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

pub(crate) fn volume_spec(name: &'static str) -> impl Strategy<Value = VolumeSpec> {
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
pub(crate) fn mounts() -> impl Strategy<Value = Vec<VolumeMount>> {
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
pub(crate) fn jail_options() -> impl Strategy<Value = JailOptions> {
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

/// VM options: a microVM's kernel, initrd and command line, or a full VM's disk and/or ISO
/// with either firmware; the console on or off.
pub(crate) fn vm_options() -> impl Strategy<Value = VmOptions> {
    let microvm = (
        prop::option::of(absolute_path()),
        prop::option::of(absolute_path()),
        prop::option::of(text(0, &['\0', '\n', '\r'])),
    )
        .prop_map(|(kernel, initrd, cmdline)| VmOptions {
            kernel: kernel.map(Into::into),
            initrd: initrd.map(Into::into),
            cmdline,
            ..VmOptions::default()
        });
    let full = (
        prop::option::of(absolute_path()),
        absolute_path(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(16u64 << 20..1 << 44),
    )
        .prop_map(|(disk, other, iso, uefi, disk_size)| VmOptions {
            disk_size,
            // At least one of the two is set.
            iso: (iso || disk.is_none()).then(|| other.into()),
            disk: disk.map(Into::into),
            firmware: if uefi {
                VmFirmware::Uefi
            } else {
                VmFirmware::Bios
            },
            ..VmOptions::default()
        });
    (prop_oneof![microvm, full], any::<bool>()).prop_map(|(mut v, console)| {
        v.console = console;
        v
    })
}

pub(crate) fn workload() -> impl Strategy<Value = WorkloadSpec> {
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
        (jail_options(), vm_options()),
    )
        .prop_map(
            |(
                (name, kind, source, command, env),
                (workdir, user, hostname, restart, state, resources, data_path),
                (volumes, snapshots, network, ports, route, readonly_rootfs, userns),
                (mut jail, vm),
            )| {
                // VM options only on a vm; a full VM has no source (the placeholder).
                let vm = if kind == Kind::Vm {
                    vm
                } else {
                    VmOptions::default()
                };
                let source = if vm.is_full_vm() {
                    Source::World(String::new())
                } else {
                    source
                };
                WorkloadSpec {
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
                    // The start order spans workloads: see `spec_file`.
                    after: Vec::new(),
                    // Neither switch on a vm (its own kernel isolates it).
                    readonly_rootfs: readonly_rootfs && kind != Kind::Vm,
                    // A user namespace needs a network namespace of its own.
                    userns: userns && network != NetworkMode::Host && kind != Kind::Vm,
                    // Jail options never on a vm; vnet = true never with the host's network.
                    jail: if kind == Kind::Vm {
                        JailOptions::default()
                    } else {
                        if network == NetworkMode::Host && jail.vnet == Some(true) {
                            jail.vnet = None;
                        }
                        jail
                    },
                    vm,
                }
            },
        )
}

/// Whether `a` and `b` are the same path or one lies below the other.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('/').filter(|c| !c.is_empty()).collect();
    let b: Vec<&str> = b.split('/').filter(|c| !c.is_empty()).collect();
    a.starts_with(&b) || b.starts_with(&a)
}

pub(crate) fn spec_file() -> impl Strategy<Value = SpecFile> {
    let volumes = prop::collection::vec(select(VOLUME_NAMES).prop_flat_map(volume_spec), 0..3);
    // Per workload in name order, up to two picks of workloads before it to start after.
    let order = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3), 4);
    (prop::collection::vec(workload(), 0..4), volumes, order).prop_map(|(ws, vs, order)| {
        let mut workloads: BTreeMap<String, WorkloadSpec> =
            ws.into_iter().map(|w| (w.name.clone(), w)).collect();
        // A start order without cycles (only after workloads earlier in name order), each
        // name once; `completed` only after a workload that does not restart after every exit
        // (no generated workload has a health check, so none waits for `healthy`).
        let names: Vec<String> = workloads.keys().cloned().collect();
        for (i, name) in names.iter().enumerate().skip(1) {
            let mut after: Vec<Dependency> = Vec::new();
            for pick in &order[i] {
                let target = &names[usize::from(*pick) % i];
                if after.iter().any(|d| &d.name == target) {
                    continue;
                }
                let wait = if pick & 0x80 != 0 && workloads[target].restart != RestartPolicy::Always
                {
                    WaitFor::Completed
                } else {
                    WaitFor::Started
                };
                after.push(Dependency::new(target, wait));
            }
            workloads.get_mut(name).expect("named").after = after;
        }
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
        SpecFile {
            workloads,
            volumes,
            host: None,
        }
    })
}

/// How a workload is written out; the parser must not care.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// `resources`/`env` as `[workload.x.resources]` sections rather than inline tables.
    pub(crate) sections: bool,
    /// `resources.memory = ...` dotted keys rather than an inline table.
    pub(crate) dotted: bool,
    /// Memory as a unit string when it divides evenly.
    pub(crate) units: bool,
    /// Write default-valued fields explicitly.
    pub(crate) explicit_defaults: bool,
    /// CRLF line endings.
    pub(crate) crlf: bool,
    /// `[volume.*]` tables before the workloads rather than after.
    pub(crate) volumes_first: bool,
}

impl Style {
    pub(crate) fn from_bits(b: [bool; 6]) -> Self {
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

pub(crate) fn style() -> impl Strategy<Value = Style> {
    any::<[bool; 6]>().prop_map(Style::from_bits)
}
