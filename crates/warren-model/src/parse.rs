//! The `warren.toml` parser and validator.
//!
//! Turns the text of a declarative file into a validated [`SpecFile`], or into a list of
//! [`Diagnostic`]s, each naming the file, line and column of the offending key or value.
//!
//! The text is first parsed into a span-preserving TOML tree; a hand-written walker then checks
//! every key and value against the schema below, collecting *all* problems (sorted by position)
//! rather than stopping at the first. A TOML syntax error (including a duplicate key) is
//! reported alone, since nothing after it can be trusted.
//!
//! ```toml
//! [workload.web]                # the key is the workload name (a DNS label)
//! kind = "container"            # container | jail | vm
//! world = "host"                # exactly one of `world` / `image`
//! command = ["python3", "-m", "http.server", "8080"]
//! env = { GREETING = "hi", PORT = 8080 }
//! workdir = "/srv"
//! user = "www-data"
//! hostname = "web"
//! restart = "always"            # always | on-failure | never
//! state = "running"             # running | stopped
//! data_path = "/data"
//! resources = { memory = "256M", cpus = 0.5, pids = 100, disk = "2G" }
//! volumes = ["media:/srv/media:ro", "cache:/var/cache"]   # VOLUME:/PATH[:ro|:rw], default rw
//! snapshots = { every = "30m", keep = 10 }                # automatic snapshots of its datasets
//! network = "bridge"            # bridge | host | none
//! ports = ["8080:80/tcp", "127.0.0.1:5353:53/udp"]        # [HOST_IP:]HOST_PORT:PORT[/PROTO]
//! domains = ["web.home.arpa", "*.apps.home.arpa"]         # ingress route to this workload...
//! port = 8080                   # ...to this workload port (required with `domains`)
//! path = "/"                    # path prefix, "/" by default
//! websocket = false
//! max_body = "50M"              # request body limit; 0 = unlimited; default nginx's
//! tls = "local"                 # none | local | { cert = "/abs/cert.pem", key = "/abs/key.pem" }
//! readonly_rootfs = true        # read-only root filesystem (data, volumes, /tmp stay writable)
//! userns = true                 # own user namespace: root inside is unprivileged outside
//! jail = { allow = ["raw_sockets", "sysvipc"], vnet = true, jailed_dataset = false }
//! after = ["db", { name = "migrate", wait = "completed" }] # start after these workloads...
//! wait = "healthy"              # ...once they are: started (default) | healthy | completed
//!
//! [workload.guest]
//! kind = "vm"
//! image = "alpine:3.20"         # a microVM: this root filesystem, booted by a Linux kernel
//! resources = { memory = "1G", cpus = 2 }                 # a vm's default: 512 MiB, 1 CPU
//!
//! [workload.guest.vm]
//! kernel = "/srv/vm/vmlinuz"    # microVM: kernel, initrd, cmdline (found on the host if absent)
//! initrd = "/srv/vm/initrd.img"
//! cmdline = "quiet"
//! # disk = "/srv/vm/disk.qcow2" # full VM instead: its own disk and/or an installer ISO,
//! # iso = "/srv/iso/install.iso"#   without world, image, recipe, kernel, initrd or cmdline
//! # firmware = "uefi"           # bios (default) | uefi (full VMs only)
//! console = true                # keep the serial console attachable
//!
//! [volume.media]                # the key is the volume name (a DNS label)
//! size = "10G"                  # optional size limit, same units as memory
//! snapshots = { every = "6h", keep = 5 }
//! site = { domains = ["media.home.arpa"], path = "/", autoindex = true, tls = "local" }
//!
//! [host]                        # what the host keeps for itself (crate::budget)
//! reserve_memory = "2G"         # no workload may claim this memory (a size, as for memory)
//! reserve_cpus = 1              # nor these CPUs (a warning only: CPU time is shared)
//! ```
//!
//! Sizes (`memory`, `disk`, `size`) are a number of bytes or a string with a unit (`"256M"`,
//! `"1GiB"`, `"500MB"`); memory must be at least 4 MiB, disk and volume sizes at least 1 MiB.
//! A snapshot `every` is a duration such as `"90s"`, `"30m"`, `"6h"`, `"1d"`, `"2w"` or
//! `"1h30m"` (at least one minute) and `keep` an integer from 1 to 1000; both are required.
//!
//! Volume mounts are checked against the whole file: every mounted volume must be declared as a
//! `[volume.NAME]` table, mount paths must be absolute (without `:` or `..`, and not `/`),
//! distinct within a workload and apart from its `data_path` (neither inside the other), and a
//! volume has at most one read-write mount across all workloads (one writer at a time;
//! read-only mounts are unlimited). When two workloads mount a volume read-write, the one later
//! in name order is reported.
//!
//! Networking: `ports` (see [`crate::ports`] for the syntax) need `network = "bridge"` (the
//! default); no two mappings of the file may claim the same host port, address and protocol.
//! Ingress: `domains` are lowercase DNS names of at least two labels, optionally with a leading
//! `*.` wildcard label, none listed twice; a workload with `domains` needs `port` (the workload
//! port the ingress proxies to) and a network other than `none`, and `port`, `path`,
//! `websocket`, `max_body` and `tls` mean nothing without `domains`. A `path` starts with `/`
//! and has no whitespace, none of `;{}'"\` and no `..` segment; `tls` files are absolute paths.
//! A volume's `site` serves its files under the same rules (its `domains` are required). One
//! domain and path are routed to one workload or site only. For both file-wide checks the claim
//! later in the file is reported, naming the earlier one. The workload name `warren-ingress` is
//! reserved for warren's own routing workload.
//!
//! Hardening: `readonly_rootfs` and `userns` are booleans; `userns = true` refuses
//! `network = "host"` (root in a user namespace has no privileges over the host's network, so
//! the workload could not even bind its ports).
//!
//! Jails: `jail` (a table, usually written `[workload.NAME.jail]`) holds the options of a
//! workload that runs as a jail on a FreeBSD host: `allow` lists jail(8) `allow.*` permissions
//! by their names without the prefix ([`crate::spec::JAIL_ALLOW`]; unknown, prefixed or
//! repeated names are refused), `vnet` chooses a network stack of its own (the default) or an
//! address alias, and `jailed_dataset` delegates the data dataset to the jail. The table is
//! refused on a `vm`, and `vnet = true` with `network = "host"`. Whether the host runs jails
//! at all is the daemon's check.
//!
//! VMs: `vm` (a table, usually written `[workload.NAME.vm]`) is accepted only with
//! `kind = "vm"`. A *microVM* boots a Linux kernel with the root filesystem of its `world`,
//! `image` or `recipe`; `kernel` and `initrd` pick the files, `cmdline` adds to the kernel
//! command line (one line, at most 2048 bytes). A *full VM* boots its own `disk` (raw or
//! qcow2) and/or an installer `iso` through its `firmware` (`bios` by default, `uefi`); it has
//! no root filesystem, so it takes no `world`, `image` or `recipe`, nor `kernel`, `initrd` or
//! `cmdline`, and `firmware = "uefi"` is refused on a microVM. Host paths are absolute without
//! `..`; whether they exist is checked by the daemon at apply, with the host's memory. A vm
//! needs a source or a disk or ISO; `userns`, `readonly_rootfs` and `jail` options are refused
//! on a vm (its own kernel isolates it). Without `resources`, a vm gets 512 MiB and one CPU
//! ([`crate::spec::WorkloadSpec::vm_memory_bytes`], [`crate::spec::WorkloadSpec::vm_cpus`]);
//! fractional `cpus` round up to whole virtual CPUs. Whether the host runs VMs at all is the
//! daemon's check.
//!
//! Start order: `after` lists the workloads (of the same file) this one starts after, as names
//! or `{ name, wait }` tables; `wait` is the condition of the entries that give none
//! (`"started"` by default): `started` (running, or its last run ended with status 0),
//! `healthy` (running and its health check passes: the dependency must declare `health`),
//! `completed` (its last run ended with status 0: a one-shot, so not `restart = "always"`).
//! Unknown names, a workload after itself, a name listed twice and cycles are refused, a cycle
//! at the entry that closes it with the whole cycle named (`a -> b -> a`); `wait` without
//! `after` is refused. The order only holds starts back: it is not part of the drift hash.
//!
//! A successful parse returns a [`Parsed`], which keeps the position of every field so that
//! later checks (host support for a kind, port conflicts, ...) can report `file:line:column`
//! too, through [`Parsed::locate`] and [`Parsed::diagnostic`].
//!
//! Field paths in messages and in [`Parsed::locate`] are dotted (`workload.web.env.PORT`,
//! `volume.media.size`); keys that are not bare TOML keys are quoted (`workload.web.env."A.B"`)
//! and array elements are indexed (`workload.web.command[1]`, `workload.web.volumes[0]`).

mod position;
pub(crate) mod suggest;
pub(crate) mod values;

pub use position::line_column;

use crate::names::check_dns_label;
use crate::ports::{conflicts, PortMapping};
use crate::spec::{
    JailOptions, Kind, NetworkMode, SiteSpec, SnapshotPolicy, Source, SpecFile, TlsChoice,
    VolumeMount, VolumeSpec, WorkloadSpec,
};
use position::LineIndex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// One problem found in a spec file, located at `file:line:column` (1-based).
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in one file (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{}", .diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct SpecError {
    pub diagnostics: Vec<Diagnostic>,
}

/// A validated spec file together with the position of every field in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub spec: SpecFile,
    file: String,
    /// Rendered field path -> (line, column).
    locations: BTreeMap<String, (usize, usize)>,
}

impl Parsed {
    /// line/column (1-based) of a dotted path such as `"workload.web.kind"` (the value's
    /// position; for a table, its header/key). Falls back to the nearest located parent, then
    /// 1:1.
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut candidate = path;
        loop {
            if let Some(pos) = self.locations.get(candidate) {
                return *pos;
            }
            match parent_path(candidate) {
                Some(parent) => candidate = parent,
                None => return (1, 1),
            }
        }
    }

    /// A diagnostic for `path` in this file, located by [`Parsed::locate`]. The message is used
    /// as given; by house style it names the field path first, like the parser's own
    /// (`workload.web.kind: ...`).
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.locate(path);
        Diagnostic {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }

    /// The file name given to [`parse_spec`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The validated spec, dropping the positions.
    pub fn into_spec(self) -> SpecFile {
        self.spec
    }
}

/// Parse and validate the text of a `warren.toml`. `file` is used only in diagnostics.
pub fn parse_spec(text: &str, file: &str) -> Result<Parsed, SpecError> {
    let lines = LineIndex::new(text);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let offset = e.span().map_or(text.len(), |s| s.start);
            let (line, column) = lines.position(offset);
            let span_text = e.span().and_then(|s| text.get(s)).unwrap_or("");
            return Err(SpecError {
                diagnostics: vec![Diagnostic {
                    file: file.to_string(),
                    line,
                    column,
                    message: syntax_message(e.message(), span_text),
                }],
            });
        }
    };
    let mut walker = Walker {
        lines,
        file,
        diagnostics: Vec::new(),
        locations: BTreeMap::new(),
        mounts: Vec::new(),
        routes: Vec::new(),
        published: Vec::new(),
        after_uses: Vec::new(),
    };
    let spec = walker.root(root.get_ref());
    if walker.diagnostics.is_empty() {
        Ok(Parsed {
            spec,
            file: file.to_string(),
            locations: walker.locations,
        })
    } else {
        let mut diagnostics = walker.diagnostics;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        Err(SpecError { diagnostics })
    }
}

/// The TOML parser's message, tidied to one line in house style.
fn syntax_message(message: &str, span_text: &str) -> String {
    let mut one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    while one_line.ends_with('.') {
        one_line.pop();
    }
    let key = span_text.trim();
    if one_line == "duplicate key" && !key.is_empty() && !key.contains('\n') {
        return format!("duplicate key `{key}`");
    }
    let mut chars = one_line.chars();
    let tidy = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "malformed document".to_string(),
    };
    format!("invalid TOML: {tidy}")
}

/// The path one segment up: `a.b[1]` -> `a.b` -> `a` -> None. Dots and brackets inside quoted
/// segments do not count.
fn parent_path(path: &str) -> Option<&str> {
    let mut cut = None;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in path.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_quotes = true,
            '.' | '[' if i > 0 => cut = Some(i),
            _ => {}
        }
    }
    cut.map(|i| &path[..i])
}

mod file;
mod hooks;
mod host;
mod ingress;
mod jail;
mod order;
mod vm;
mod volume;
mod walker;
mod workload;

use walker::*;

#[cfg(test)]
mod tests;
