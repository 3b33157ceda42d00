//! A spec rendered back to `warren.toml` text in any of the table styles, and TOML-ish
//! noise for the no-panic property.

use super::*;

/// A TOML basic string.
pub(crate) fn quote(s: &str) -> String {
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

pub(crate) fn env_literal(v: &str) -> String {
    let canonical_int = v.parse::<i64>().is_ok_and(|n| n.to_string() == v);
    if canonical_int || v == "true" || v == "false" {
        v.to_string()
    } else {
        quote(v)
    }
}

pub(crate) fn memory_literal(bytes: u64, units: bool) -> String {
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
pub(crate) fn duration_literal(secs: u64, units: bool) -> String {
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

pub(crate) fn snapshot_pairs(p: &SnapshotPolicy, style: Style) -> Vec<(&'static str, String)> {
    vec![
        ("every", duration_literal(p.every_secs, style.units)),
        ("keep", p.keep.to_string()),
    ]
}

pub(crate) fn mount_literal(m: &VolumeMount, style: Style) -> String {
    let mode = match (m.readonly, style.explicit_defaults) {
        (true, _) => ":ro",
        (false, true) => ":rw",
        (false, false) => "",
    };
    quote(&format!("{}:{}{mode}", m.volume, m.path))
}

/// Writes `key` as a sub-table of `[header]`: inline or dotted here (in the table's own
/// body), or returns the text of a `[header.key]` section to append after the body.
pub(crate) fn sub_table(
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

pub(crate) fn string_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quote(i)).collect();
    format!("[{}]", quoted.join(", "))
}

pub(crate) fn tls_pairs(cert: &str, key: &str) -> Vec<(&'static str, String)> {
    vec![("cert", quote(cert)), ("key", quote(key))]
}

/// `tls` as a value: a string, or an inline table of its files.
pub(crate) fn tls_literal(t: &TlsChoice) -> String {
    match t {
        TlsChoice::None => quote("none"),
        TlsChoice::Local => quote("local"),
        TlsChoice::Files { cert, key } => {
            format!("{{ cert = {}, key = {} }}", quote(cert), quote(key))
        }
    }
}

pub(crate) fn site_pairs(site: &SiteSpec, style: Style) -> Vec<(&'static str, String)> {
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

pub(crate) fn render_volumes(out: &mut String, spec: &SpecFile, style: Style) {
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

pub(crate) fn resource_pairs(r: &Resources, style: Style) -> Vec<(&'static str, String)> {
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

pub(crate) fn render(spec: &SpecFile, style: Style) -> String {
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
        match w.rootfs_source() {
            Some(Source::World(s)) => writeln!(out, "world = {}", quote(s)).unwrap(),
            Some(Source::Image(s)) => writeln!(out, "image = {}", quote(s)).unwrap(),
            Some(Source::Recipe(s)) => writeln!(out, "recipe = {}", quote(s)).unwrap(),
            None => {}
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
        // One shared condition may be written once as `wait`; otherwise names for
        // "started" and `{ name, wait }` tables for the rest (every entry a table when
        // defaults are explicit).
        let shared = w
            .after
            .first()
            .map(|d| d.wait)
            .filter(|first| style.sections && w.after.iter().all(|d| d.wait == *first));
        if let Some(wait) = shared {
            writeln!(out, "wait = {}", quote(wait.as_str())).unwrap();
        }
        if !w.after.is_empty() || style.explicit_defaults {
            let entries: Vec<String> = w
                .after
                .iter()
                .map(|d| {
                    if shared.is_some() || (d.wait == WaitFor::Started && !style.explicit_defaults)
                    {
                        quote(&d.name)
                    } else {
                        format!(
                            "{{ name = {}, wait = {} }}",
                            quote(&d.name),
                            quote(d.wait.as_str())
                        )
                    }
                })
                .collect();
            writeln!(out, "after = [{}]", entries.join(", ")).unwrap();
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
        let mut vm_pairs: Vec<(&'static str, String)> = Vec::new();
        for (key, path) in [
            ("kernel", &w.vm.kernel),
            ("initrd", &w.vm.initrd),
            ("disk", &w.vm.disk),
            ("iso", &w.vm.iso),
        ] {
            if let Some(p) = path {
                vm_pairs.push((key, quote(&p.to_string_lossy())));
            }
        }
        if let Some(c) = &w.vm.cmdline {
            vm_pairs.push(("cmdline", quote(c)));
        }
        if let Some(size) = w.vm.disk_size {
            vm_pairs.push(("disk_size", size.to_string()));
        }
        if w.vm.firmware != VmFirmware::Bios || (style.explicit_defaults && w.kind == Kind::Vm) {
            vm_pairs.push(("firmware", quote(w.vm.firmware.as_str())));
        }
        if w.vm.console || (style.explicit_defaults && w.kind == Kind::Vm) {
            vm_pairs.push(("console", w.vm.console.to_string()));
        }
        let vm_section = if vm_pairs.is_empty() {
            None
        } else {
            sub_table(&mut out, &header, "vm", &vm_pairs, style)
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
            if let Some(section) = vm_section {
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
pub(crate) fn toml_ish() -> impl Strategy<Value = String> {
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
        "[workload.web.vm]\n",
        "vm = { ",
        "kind = \"vm\"\n",
        "kernel = \"/boot/vmlinuz\"",
        "disk = \"/srv/d.img\"",
        "iso = ",
        "firmware = \"uefi\"",
        "cmdline = ",
        "console = ",
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
