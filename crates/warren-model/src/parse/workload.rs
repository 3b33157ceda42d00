//! The `[workload.NAME]` table: its keys, command, environment and resource limits.

use super::*;

impl Walker<'_> {
    pub(super) fn workload(
        &mut self,
        parent: &Path,
        name_key: &Key<'_>,
        body: &Value<'_>,
    ) -> Option<WorkloadSpec> {
        let name: &str = name_key.get_ref();
        let (path, errors_before, table) = self.named_table(parent, name_key, body, "workload")?;
        if name == RESERVED_WORKLOAD {
            self.error(
                name_key.span().start,
                &path,
                format!("the name {name:?} is reserved for warren's routing workload"),
            );
        }

        let mut spec = WorkloadSpec::new(name, Source::World(String::new()));
        // Networking and ingress fields, checked against each other after the loop:
        // (key offset, well-formed elements) for `ports` and `domains`, key offsets of the
        // route-only keys present, and whether `path` was well-formed.
        let mut ports: Option<(usize, Vec<Element<PortMapping>>)> = None;
        let mut domains: Option<(usize, Vec<Element<String>>)> = None;
        let mut route_keys: Vec<(usize, &str)> = Vec::new();
        let mut route_path_ok = true;
        // (key offset, source) for each of `world` and `image` present, valid or not.
        let mut sources: Vec<(usize, &str, Option<Source>)> = Vec::new();
        let mut entrypoint_at: Option<usize> = None;
        let mut health_at: Option<usize> = None;
        // Well-formed mounts: (element path, element offset, mount).
        let mut mounts: Vec<(Path, usize, VolumeMount)> = Vec::new();
        let mut data_path_ok = true;
        let mut userns_at: Option<usize> = None;
        let mut readonly_at: Option<usize> = None;
        let mut vm: Option<super::vm::VmTable> = None;
        // (key offset, offset of `vnet = true` if given) of the `jail` table.
        let mut jail_at: Option<(usize, Option<usize>)> = None;
        // The start order: `after` entries and (key offset, value) of `wait`.
        let mut after: Option<Vec<super::order::AfterEntry>> = None;
        let mut wait: Option<(usize, Option<crate::spec::WaitFor>)> = None;
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "kind" => {
                    if let Some(k) = self.one_of(&fpath, value) {
                        spec.kind = k;
                    }
                }
                "world" => {
                    let world = self.checked_string(&fpath, value, |s| {
                        check_dns_label(s).map_err(|r| format!("invalid world name: {r}"))
                    });
                    sources.push((key.span().start, "world", world.map(Source::World)));
                }
                "image" => {
                    let image = self.checked_string(&fpath, value, values::check_image);
                    sources.push((key.span().start, "image", image.map(Source::Image)));
                }
                "recipe" => {
                    let recipe = self.checked_string(&fpath, value, |s| {
                        crate::recipe::parse_recipe_ref(s).map(|_| ())
                    });
                    sources.push((key.span().start, "recipe", recipe.map(Source::Recipe)));
                }
                "command" => {
                    if let Some(c) = self.command(&fpath, value) {
                        spec.command = c;
                    }
                }
                "entrypoint" => {
                    entrypoint_at = Some(key.span().start);
                    if let Some(c) = self.command(&fpath, value) {
                        spec.entrypoint = Some(c);
                    }
                }
                "env" => {
                    if let Some(e) = self.env(&fpath, value) {
                        spec.env = e;
                    }
                }
                "workdir" => {
                    spec.workdir = self.checked_string(&fpath, value, values::check_absolute);
                }
                "user" => {
                    spec.user = self.checked_string(&fpath, value, values::check_user);
                }
                "hostname" => {
                    spec.hostname = self.checked_string(&fpath, value, values::check_hostname);
                }
                "restart" => {
                    if let Some(r) = self.one_of(&fpath, value) {
                        spec.restart = r;
                    }
                }
                "state" => {
                    if let Some(s) = self.one_of(&fpath, value) {
                        spec.state = s;
                    }
                }
                "data_path" => match self.checked_string(&fpath, value, values::check_data_path) {
                    Some(p) => spec.data_path = p,
                    None => data_path_ok = false,
                },
                "resources" => self.resources(&fpath, value, &mut spec),
                "volumes" => mounts = self.volume_mounts(&fpath, value),
                "snapshots" => spec.snapshots = self.snapshots(&fpath, key, value),
                "health" => {
                    health_at = Some(key.span().start);
                    spec.health = self.health(&fpath, key, value);
                }
                "hooks" => spec.hooks = self.hooks(&fpath, value),
                "network" => {
                    if let Some(n) = self.one_of(&fpath, value) {
                        spec.network = n;
                    }
                }
                "ports" => ports = Some((key.span().start, self.ports(&fpath, value))),
                "domains" => {
                    domains = Some((key.span().start, self.domains(&fpath, value)));
                }
                "port" => {
                    route_keys.push((key.span().start, "port"));
                    spec.route.port = self.route_port(&fpath, value);
                }
                "path" => {
                    route_keys.push((key.span().start, "path"));
                    match self.checked_string(&fpath, value, values::check_route_path) {
                        Some(p) => spec.route.path = p,
                        None => route_path_ok = false,
                    }
                }
                "websocket" => {
                    route_keys.push((key.span().start, "websocket"));
                    if let Some(b) = self.boolean(&fpath, value) {
                        spec.route.websocket = b;
                    }
                }
                "max_body" => {
                    route_keys.push((key.span().start, "max_body"));
                    spec.route.max_body = self.bytes(&fpath, value, 0);
                }
                "tls" => {
                    route_keys.push((key.span().start, "tls"));
                    if let Some(t) = self.tls(&fpath, key, value) {
                        spec.route.tls = t;
                    }
                }
                "readonly_rootfs" => {
                    if let Some(b) = self.boolean(&fpath, value) {
                        spec.readonly_rootfs = b;
                        readonly_at = Some(key.span().start);
                    }
                }
                "userns" => {
                    if let Some(b) = self.boolean(&fpath, value) {
                        spec.userns = b;
                        userns_at = Some(key.span().start);
                    }
                }
                "jail" => {
                    let (options, vnet_at) = self.jail(&fpath, value);
                    jail_at = Some((key.span().start, vnet_at));
                    if let Some(j) = options {
                        spec.jail = j;
                    }
                }
                "vm" => {
                    let table = self.vm(&fpath, key, value);
                    if let Some(options) = &table.options {
                        spec.vm = options.clone();
                    }
                    vm = Some(table);
                }
                "after" => after = Some(self.after(&fpath, value)),
                "wait" => wait = Some((key.span().start, self.one_of(&fpath, value))),
                _ => self.unknown_key(key, &fpath, WORKLOAD_KEYS),
            }
        }
        spec.after = self.start_order(name, &path, after, wait);

        // VM options against the kind, the source and the keys a vm has no use for; `kind`
        // may come after them.
        sources.sort_by_key(|(offset, _, _)| *offset);
        self.vm_workload(
            &path,
            spec.kind,
            vm.as_ref(),
            &sources,
            userns_at.filter(|_| spec.userns),
            readonly_at.filter(|_| spec.readonly_rootfs),
        );
        let full_vm = vm.as_ref().is_some_and(|t| t.full.is_some());

        // Jail options shape a jail; `kind` and `network` may come after them.
        if let Some((offset, vnet_at)) = jail_at {
            if spec.kind == Kind::Vm {
                self.error(
                    offset,
                    &path.key("jail"),
                    "jail options apply to kind \"jail\" or \"container\" (a container runs \
                     as a jail on FreeBSD hosts), not to a vm",
                );
            }
            if let (Some(at), NetworkMode::Host) = (vnet_at, spec.network) {
                self.error(
                    at,
                    &path.key("jail").key("vnet"),
                    "vnet = true needs network = \"bridge\" or \"none\"; with network = \
                     \"host\" the jail uses the host's addresses",
                );
            }
        }

        // Network probes need a network; `network` may come after `health`.
        if let (Some(at), Some(h)) = (health_at, &spec.health) {
            if spec.network == NetworkMode::None
                && !matches!(h.probe, crate::health::Probe::Exec(_))
            {
                self.error(
                    at,
                    &path.key("health"),
                    "http and tcp checks need a network; with network = \"none\" use exec",
                );
            }
        }

        // A user namespace needs a network namespace of its own; `network` may come later.
        if let (Some(offset), true, NetworkMode::Host) = (userns_at, spec.userns, spec.network) {
            self.error(
                offset,
                &path.key("userns"),
                "userns = true needs a network namespace of its own (network = \"bridge\" or \
                 \"none\"); root in a user namespace holds no privileges over the host's network",
            );
        }

        // Published ports need the bridge; `network` may come after `ports`.
        if let Some((offset, mappings)) = ports {
            let refusal = match spec.network {
                NetworkMode::Bridge => None,
                NetworkMode::Host => Some(
                    "ports need network = \"bridge\"; with network = \"host\" the workload's \
                     own sockets are already on the host",
                ),
                NetworkMode::None => Some(
                    "ports need network = \"bridge\"; with network = \"none\" the workload has \
                     no network to publish",
                ),
            };
            match refusal {
                Some(reason) if !mappings.is_empty() => {
                    self.error(offset, &path.key("ports"), reason);
                }
                _ => {
                    for (ppath, at, mapping) in mappings {
                        spec.ports.push(mapping);
                        self.published.push(PortUse {
                            workload: name.to_string(),
                            mapping,
                            path: ppath,
                            offset: at,
                        });
                    }
                }
            }
        }

        // The route: `domains` needs `port`, and the route-only keys need `domains`.
        match domains {
            Some((offset, names)) => {
                let dpath = path.key("domains");
                if spec.network == NetworkMode::None {
                    self.error(
                        offset,
                        &dpath,
                        "the ingress cannot reach a workload with network = \"none\"; \
                         use \"bridge\" or \"host\"",
                    );
                }
                if !route_keys.iter().any(|(_, k)| *k == "port") {
                    self.error(
                        offset,
                        &dpath,
                        "`domains` needs `port`, the workload port to route to",
                    );
                }
                for (dpath, at, domain) in names {
                    spec.route.domains.push(domain.clone());
                    if route_path_ok {
                        self.routes.push(RouteUse {
                            owner: format!("workload {name:?}"),
                            domain,
                            route_path: spec.route.path.clone(),
                            path: dpath,
                            offset: at,
                        });
                    }
                }
            }
            None => {
                for (offset, key) in route_keys {
                    let hint = if key == "port" {
                        "; it is the workload port the ingress routes to (publish host ports with \
                         `ports`)"
                    } else {
                        ""
                    };
                    self.error(
                        offset,
                        &path.key(key),
                        format!("`{key}` is only meaningful with `domains`{hint}"),
                    );
                }
            }
        }

        // `data_path` may come after `volumes`, so mounts are checked against it here.
        for (mpath, offset, mount) in mounts {
            if data_path_ok {
                let reason = if values::path_within(&mount.path, &spec.data_path) {
                    if values::path_within(&spec.data_path, &mount.path) {
                        Some(format!(
                            "mount path {:?} is the workload's data_path",
                            mount.path
                        ))
                    } else {
                        Some(format!(
                            "mount path {:?} is inside the workload's data_path {:?}",
                            mount.path, spec.data_path
                        ))
                    }
                } else if values::path_within(&spec.data_path, &mount.path) {
                    Some(format!(
                        "mount path {:?} contains the workload's data_path {:?}",
                        mount.path, spec.data_path
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    // A refused mount takes no part in the file-wide checks.
                    self.error(offset, &mpath, reason);
                    continue;
                }
            }
            spec.volumes.push(mount.clone());
            self.mounts.push(MountUse {
                workload: name.to_string(),
                index: spec.volumes.len() - 1,
                path: mpath,
                offset,
                mount,
            });
        }

        match sources.as_slice() {
            // A full VM boots its own disk; its source stays the placeholder (see `Source`).
            [] if full_vm => {}
            [] if spec.kind == Kind::Vm => self.error(
                name_key.span().start,
                &path,
                "needs `world`, `image` or `recipe` (a microVM), or `vm.disk` or `vm.iso` \
                 (a full VM)",
            ),
            [] => self.error(
                name_key.span().start,
                &path,
                "needs `world`, `image` or `recipe`",
            ),
            [_] if full_vm => {}
            [(_, kind, source)] => {
                if let Some(source) = source {
                    spec.source = source.clone();
                }
                if let (Some(offset), "world" | "recipe") = (entrypoint_at, *kind) {
                    self.error(
                        offset,
                        &path.key("entrypoint"),
                        "`entrypoint` replaces an image's entrypoint; world and recipe workloads give their whole argv in `command`",
                    );
                }
            }
            [(_, first, _), (offset, second, _), ..] => {
                let (offset, first, second) = (*offset, *first, *second);
                self.error(
                    offset,
                    &path.key(second),
                    format!("a workload has one of `world`, `image` or `recipe` (`{first}` is already set)"),
                );
            }
        }
        (self.diagnostics.len() == errors_before).then_some(spec)
    }

    pub(super) fn command(&mut self, path: &Path, value: &Value<'_>) -> Option<Vec<String>> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::String(_) => {
                self.wrong_type(
                    path,
                    value,
                    "an array of strings",
                    r#"; use an array, e.g. ["sh", "-c", "..."]"#,
                );
                return None;
            }
            _ => {
                self.wrong_type(path, value, "an array of strings", "");
                return None;
            }
        };
        let mut argv = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            match self.string(&ipath, item) {
                Some("") => {
                    self.error(item.span().start, &ipath, "must not be empty");
                    ok = false;
                }
                Some(s) if s.contains('\0') => {
                    self.error(
                        item.span().start,
                        &ipath,
                        "must not contain a NUL character",
                    );
                    ok = false;
                }
                Some(s) => argv.push(s.to_string()),
                None => ok = false,
            }
        }
        ok.then_some(argv)
    }

    pub(super) fn env(
        &mut self,
        path: &Path,
        value: &Value<'_>,
    ) -> Option<BTreeMap<String, String>> {
        let table = self.table(path, value, r#"; e.g. env = { PORT = "8080" }"#)?;
        let mut env = BTreeMap::new();
        let mut ok = true;
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            let kpath = path.key(name);
            self.record(&kpath, key, value);
            let bad_name = if name.is_empty() {
                Some("variable name must not be empty")
            } else if name.contains('=') {
                Some("variable name must not contain '='")
            } else if name.contains('\0') {
                Some("variable name must not contain a NUL character")
            } else {
                None
            };
            if let Some(reason) = bad_name {
                self.error(key.span().start, &kpath, reason);
                ok = false;
            }
            let text = match value.get_ref() {
                DeValue::String(s) if s.contains('\0') => {
                    self.error(
                        value.span().start,
                        &kpath,
                        "must not contain a NUL character",
                    );
                    None
                }
                DeValue::String(s) => Some(s.to_string()),
                DeValue::Integer(i) => match integer(i) {
                    Some(n) => Some(n.to_string()),
                    None => {
                        self.error(value.span().start, &kpath, "integer out of range");
                        None
                    }
                },
                DeValue::Float(f) => Some(f.as_str().to_string()),
                DeValue::Boolean(b) => Some(b.to_string()),
                // A dotted key (`A.B = 1`) makes a table whose span is the key itself.
                DeValue::Table(_) if value.span() == key.span() => {
                    self.wrong_type(
                        &kpath,
                        value,
                        "a string, number or boolean",
                        &format!("; quote names that contain dots, e.g. \"{name}.x\" = \"...\""),
                    );
                    None
                }
                _ => {
                    self.wrong_type(&kpath, value, "a string, number or boolean", "");
                    None
                }
            };
            match text {
                Some(t) => {
                    env.insert(name.to_string(), t);
                }
                None => ok = false,
            }
        }
        ok.then_some(env)
    }

    pub(super) fn resources(&mut self, path: &Path, value: &Value<'_>, spec: &mut WorkloadSpec) {
        let Some(table) = self.table(
            path,
            value,
            r#"; e.g. resources = { memory = "256M", cpus = 0.5 }"#,
        ) else {
            return;
        };
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let rpath = path.key(field);
            self.record(&rpath, key, value);
            match field {
                "memory" => spec.resources.memory = self.bytes(&rpath, value, values::MIN_MEMORY),
                "disk" => spec.resources.disk = self.bytes(&rpath, value, values::MIN_DISK),
                "cpus" => spec.resources.cpus = self.cpus(&rpath, value),
                "pids" => spec.resources.pids = self.pids(&rpath, value),
                _ => self.unknown_key(key, &rpath, RESOURCE_KEYS),
            }
        }
    }

    /// A size in bytes (an integer, or a string with a unit) of at least `min`.
    pub(super) fn bytes(&mut self, path: &Path, value: &Value<'_>, min: u64) -> Option<u64> {
        let at = value.span().start;
        let bytes = match value.get_ref() {
            DeValue::Integer(i) => match integer(i) {
                Some(n) if n < 0 => {
                    self.error(at, path, format!("must be positive, found {n}"));
                    return None;
                }
                Some(n) => match u64::try_from(n) {
                    Ok(n) => n,
                    Err(_) => {
                        self.error(at, path, "integer out of range");
                        return None;
                    }
                },
                None => {
                    self.error(at, path, "integer out of range");
                    return None;
                }
            },
            DeValue::String(s) => match values::parse_memory(s) {
                Ok(n) => n,
                Err(reason) => {
                    self.error(at, path, reason);
                    return None;
                }
            },
            _ => {
                self.wrong_type(
                    path,
                    value,
                    r#"a number of bytes or a size such as "256M""#,
                    "",
                );
                return None;
            }
        };
        if bytes < min {
            self.error(
                at,
                path,
                format!(
                    "{} is below the minimum of {}",
                    values::human_bytes(bytes),
                    values::human_bytes(min)
                ),
            );
            return None;
        }
        Some(bytes)
    }

    pub(super) fn cpus(&mut self, path: &Path, value: &Value<'_>) -> Option<f64> {
        let at = value.span().start;
        let (cpus, shown) = match value.get_ref() {
            DeValue::Integer(i) => (
                integer(i).map_or(f64::INFINITY, |n| n as f64),
                i.to_string(),
            ),
            DeValue::Float(f) => (
                f.as_str().parse::<f64>().unwrap_or(f64::NAN),
                f.as_str().to_string(),
            ),
            _ => {
                self.wrong_type(path, value, "a number of cores", "");
                return None;
            }
        };
        if cpus.is_nan() || cpus <= 0.0 {
            self.error(at, path, format!("must be greater than 0, found {shown}"));
            return None;
        }
        if cpus > MAX_CPUS {
            self.error(at, path, format!("must be at most 1024, found {shown}"));
            return None;
        }
        Some(cpus)
    }

    pub(super) fn pids(&mut self, path: &Path, value: &Value<'_>) -> Option<u64> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(path, value, "an integer", "");
            return None;
        };
        match integer(i) {
            Some(n) if n >= 1 => match u64::try_from(n) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(at, path, "integer out of range");
                    None
                }
            },
            Some(n) => {
                self.error(at, path, format!("must be at least 1, found {n}"));
                None
            }
            None => {
                self.error(at, path, "integer out of range");
                None
            }
        }
    }
}
