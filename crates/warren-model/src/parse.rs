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
//!
//! [volume.media]                # the key is the volume name (a DNS label)
//! size = "10G"                  # optional size limit, same units as memory
//! snapshots = { every = "6h", keep = 5 }
//! site = { domains = ["media.home.arpa"], path = "/", autoindex = true, tls = "local" }
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
//! A successful parse returns a [`Parsed`], which keeps the position of every field so that
//! later checks (host support for a kind, port conflicts, ...) can report `file:line:column`
//! too, through [`Parsed::locate`] and [`Parsed::diagnostic`].
//!
//! Field paths in messages and in [`Parsed::locate`] are dotted (`workload.web.env.PORT`,
//! `volume.media.size`); keys that are not bare TOML keys are quoted (`workload.web.env."A.B"`)
//! and array elements are indexed (`workload.web.command[1]`, `workload.web.volumes[0]`).

mod position;
pub(crate) mod suggest;
mod values;

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

/// A field path as rendered in messages and used as a location key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Path(String);

impl Path {
    fn root() -> Self {
        Path(String::new())
    }

    fn key(&self, key: &str) -> Self {
        let bare = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let segment = if bare {
            key.to_string()
        } else {
            format!("{key:?}")
        };
        if self.0.is_empty() {
            Path(segment)
        } else {
            Path(format!("{}.{segment}", self.0))
        }
    }

    fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Key<'i> = Spanned<DeString<'i>>;
/// A well-formed array element: its path, its offset and its value.
type Element<T> = (Path, usize, T);
type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &["workload", "volume"];
const WORKLOAD_KEYS: &[&str] = &[
    "kind",
    "world",
    "image",
    "recipe",
    "command",
    "entrypoint",
    "env",
    "workdir",
    "user",
    "hostname",
    "restart",
    "state",
    "data_path",
    "resources",
    "volumes",
    "snapshots",
    "health",
    "hooks",
    "network",
    "ports",
    "domains",
    "port",
    "path",
    "websocket",
    "max_body",
    "tls",
    "readonly_rootfs",
    "userns",
    "jail",
];
const JAIL_KEYS: &[&str] = &["allow", "vnet", "jailed_dataset"];
const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids", "disk"];
const VOLUME_KEYS: &[&str] = &["size", "snapshots", "site"];
const SNAPSHOT_KEYS: &[&str] = &["every", "keep"];
const HEALTH_KEYS: &[&str] = &[
    "exec",
    "http",
    "tcp",
    "port",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "on_unhealthy",
];
const HOOK_KEYS: &[&str] = &[
    "on", "restart", "exec", "host", "webhook", "snapshot", "scheme", "job", "cron", "every",
    "timeout", "path", "timezone",
];
const SITE_KEYS: &[&str] = &["domains", "path", "autoindex", "tls"];
const TLS_KEYS: &[&str] = &["cert", "key"];
/// The name of the workload warren itself runs for the ingress.
const RESERVED_WORKLOAD: &str = "warren-ingress";
const TLS_EXAMPLE: &str =
    r#"tls = { cert = "/etc/warren/tls/site.pem", key = "/etc/warren/tls/site.key" }"#;
const MAX_CPUS: f64 = 1024.0;

/// The name of a value's type in messages.
/// Which of a table's two required keys are missing, as "`a`", "`b`" or "`a` and `b`"; `None`
/// when both are present, or when a misspelled key (most likely the missing one) was already
/// reported.
fn missing_pair(a: (&str, bool), b: (&str, bool), misspelled: bool) -> Option<String> {
    match (a.1, b.1) {
        (true, true) => None,
        _ if misspelled => None,
        (false, true) => Some(format!("`{}`", a.0)),
        (true, false) => Some(format!("`{}`", b.0)),
        (false, false) => Some(format!("`{}` and `{}`", a.0, b.0)),
    }
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::Array(a) if !a.is_empty() && a.iter().all(|e| e.get_ref().is_table()) => {
            "array of tables"
        }
        other => other.type_str(),
    }
}

fn integer(v: &toml::de::DeInteger<'_>) -> Option<i128> {
    i128::from_str_radix(v.as_str(), v.radix()).ok()
}

/// One well-formed volume mount, kept for the checks that need the whole file.
struct MountUse {
    workload: String,
    index: usize,
    path: Path,
    offset: usize,
    mount: VolumeMount,
}

/// One well-formed domain of a workload route or volume site, for the file-wide check that no
/// domain and path is claimed twice.
struct RouteUse {
    /// `workload "git"` or `volume "www"`.
    owner: String,
    domain: String,
    route_path: String,
    path: Path,
    offset: usize,
}

/// One well-formed published port, for the file-wide conflict check.
struct PortUse {
    workload: String,
    mapping: PortMapping,
    path: Path,
    offset: usize,
}

/// Walks the TOML tree, building the spec and collecting diagnostics and locations.
struct Walker<'t> {
    lines: LineIndex<'t>,
    file: &'t str,
    diagnostics: Vec<Diagnostic>,
    locations: BTreeMap<String, (usize, usize)>,
    /// Every well-formed mount of every workload, in file order.
    mounts: Vec<MountUse>,
    /// Every well-formed routed domain of every workload and site.
    routes: Vec<RouteUse>,
    /// Every well-formed published port of every workload.
    published: Vec<PortUse>,
}

impl Walker<'_> {
    fn error(&mut self, offset: usize, path: &Path, message: impl fmt::Display) {
        let (line, column) = self.lines.position(offset);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: format!("{path}: {message}"),
        });
    }

    /// Remembers where `path` is: the key for tables, the value otherwise.
    fn record(&mut self, path: &Path, key: &Key<'_>, value: &Value<'_>) {
        let offset = if value.get_ref().is_table() {
            key.span().start
        } else {
            value.span().start
        };
        let pos = self.lines.position(offset);
        self.locations.insert(path.0.clone(), pos);
    }

    fn record_element(&mut self, path: &Path, value: &Value<'_>) {
        let pos = self.lines.position(value.span().start);
        self.locations.insert(path.0.clone(), pos);
    }

    fn unknown_key(&mut self, key: &Key<'_>, path: &Path, known: &[&str]) {
        let message = match suggest::did_you_mean(key.get_ref(), known) {
            Some(s) => format!("unknown key; did you mean `{s}`?"),
            None if known.len() == 1 => format!("unknown key; expected `{}`", known[0]),
            None => format!("unknown key; expected one of {}", known.join(", ")),
        };
        self.error(key.span().start, path, message);
    }

    fn wrong_type(&mut self, path: &Path, value: &Value<'_>, expected: &str, hint: &str) {
        let message = format!(
            "expected {expected}, found {}{hint}",
            type_name(value.get_ref())
        );
        self.error(value.span().start, path, message);
    }

    /// The common start of a `[what.NAME]` table: records its position, checks NAME as a DNS
    /// label and requires a table. Returns the path, the diagnostic count before it (so the
    /// caller can tell whether this entry added errors) and the table.
    fn named_table<'v, 'i>(
        &mut self,
        parent: &Path,
        name_key: &Key<'_>,
        body: &'v Value<'i>,
        what: &str,
    ) -> Option<(Path, usize, &'v DeTable<'i>)> {
        let name: &str = name_key.get_ref();
        let path = parent.key(name);
        self.record(&path, name_key, body);
        let errors_before = self.diagnostics.len();
        if let Err(reason) = check_dns_label(name) {
            self.error(
                name_key.span().start,
                &path,
                format!("invalid {what} name: {reason}"),
            );
        }
        let hint = if matches!(body.get_ref(), DeValue::Array(_)) {
            format!("; write `[{path}]`, not `[[{path}]]`")
        } else {
            String::new()
        };
        let table = self.table(&path, body, &hint)?;
        Some((path, errors_before, table))
    }

    fn table<'v, 'i>(
        &mut self,
        path: &Path,
        value: &'v Value<'i>,
        hint: &str,
    ) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(path, value, "a table", hint);
                None
            }
        }
    }

    fn string<'v>(&mut self, path: &Path, value: &'v Value<'_>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(path, value, "a string", "");
                None
            }
        }
    }

    /// A string checked by `check`; reports the check's reason.
    fn checked_string(
        &mut self,
        path: &Path,
        value: &Value<'_>,
        check: impl FnOnce(&str) -> Result<(), String>,
    ) -> Option<String> {
        let s = self.string(path, value)?;
        match check(s) {
            Ok(()) => Some(s.to_string()),
            Err(reason) => {
                self.error(value.span().start, path, reason);
                None
            }
        }
    }

    /// A string naming one variant of `T`, spelled as `T` spells it (its `VariantNames`).
    fn one_of<T: std::str::FromStr + strum::VariantNames>(
        &mut self,
        path: &Path,
        value: &Value<'_>,
    ) -> Option<T> {
        let s = self.string(path, value)?;
        if let Ok(v) = s.parse::<T>() {
            return Some(v);
        }
        let names = T::VARIANTS;
        let message = match suggest::did_you_mean(s, names) {
            Some(close) => format!("unknown value {s:?}; did you mean {close:?}?"),
            None => format!("unknown value {s:?}; expected one of {}", names.join(", ")),
        };
        self.error(value.span().start, path, message);
        None
    }

    fn root(&mut self, root: &DeTable<'_>) -> SpecFile {
        let mut spec = SpecFile::default();
        // Names under `volume`, valid or not; `None` if `volume` is present but not a table.
        let mut declared = Some(BTreeSet::new());
        for (key, value) in root.iter() {
            let top: &str = key.get_ref();
            let path = Path::root().key(top);
            self.record(&path, key, value);
            if !TOP_KEYS.contains(&top) {
                self.unknown_key(key, &path, TOP_KEYS);
                continue;
            }
            let hint = if matches!(value.get_ref(), DeValue::Array(_)) {
                format!("; declare each {top} as `[{top}.NAME]`")
            } else {
                String::new()
            };
            let Some(entries) = self.table(&path, value, &hint) else {
                if top == "volume" {
                    declared = None;
                }
                continue;
            };
            for (name, body) in entries.iter() {
                if top == "workload" {
                    if let Some(w) = self.workload(&path, name, body) {
                        spec.workloads.insert(w.name.clone(), w);
                    }
                } else {
                    if let Some(names) = declared.as_mut() {
                        names.insert(name.get_ref().to_string());
                    }
                    if let Some(v) = self.volume(&path, name, body) {
                        spec.volumes.insert(v.name.clone(), v);
                    }
                }
            }
        }
        self.check_mounts(declared.as_ref());
        self.check_routes();
        self.check_published();
        spec
    }

    /// No domain and path is routed twice across workloads and sites: the claim later in the
    /// file is reported, naming the earlier one.
    fn check_routes(&mut self) {
        let mut routes = std::mem::take(&mut self.routes);
        routes.sort_by_key(|r| r.offset);
        let mut claimed: BTreeMap<(&str, &str), &str> = BTreeMap::new();
        for r in &routes {
            let key = (r.domain.as_str(), r.route_path.as_str());
            match claimed.get(&key) {
                Some(owner) if *owner != r.owner => self.error(
                    r.offset,
                    &r.path,
                    format!(
                        "domain {:?} (path {:?}) is already routed to {owner}",
                        r.domain, r.route_path
                    ),
                ),
                Some(_) => {}
                None => {
                    claimed.insert(key, &r.owner);
                }
            }
        }
    }

    /// No host port is published by two workloads: the mapping later in the file is reported,
    /// naming the earlier workload and both mappings.
    fn check_published(&mut self) {
        let mut published = std::mem::take(&mut self.published);
        published.sort_by_key(|p| p.offset);
        let all: Vec<(&str, PortMapping)> = published
            .iter()
            .map(|p| (p.workload.as_str(), p.mapping))
            .collect();
        let mut reported = BTreeSet::new();
        for c in conflicts(&all) {
            // A workload's own mappings never overlap (that is refused earlier), so the
            // workload and mapping name one entry.
            let Some(i) = published
                .iter()
                .position(|p| p.workload == c.second && p.mapping == c.second_mapping)
            else {
                continue;
            };
            if !reported.insert(i) {
                continue;
            }
            let p = &published[i];
            self.error(
                p.offset,
                &p.path,
                format!(
                    "host port {}/{} ({}) is already published by workload {:?} ({})",
                    p.mapping.host_port, p.mapping.proto, p.mapping, c.first, c.first_mapping
                ),
            );
        }
    }

    /// The checks that need every workload and volume: each mounted volume is declared, and
    /// each volume has at most one read-write mount (the first workload in name order keeps
    /// it; any later one is reported).
    fn check_mounts(&mut self, declared: Option<&BTreeSet<String>>) {
        let mut mounts = std::mem::take(&mut self.mounts);
        mounts.sort_by(|a, b| (&a.workload, a.index).cmp(&(&b.workload, b.index)));
        let mut writers: BTreeMap<&str, &str> = BTreeMap::new();
        for m in &mounts {
            let volume = m.mount.volume.as_str();
            if let Some(names) = declared {
                if !names.contains(volume) {
                    self.error(
                        m.offset,
                        &m.path,
                        format!("volume {volume:?} is not declared; add a [volume.{volume}] table"),
                    );
                    continue;
                }
            }
            if m.mount.readonly {
                continue;
            }
            match writers.get(volume) {
                Some(writer) if *writer != m.workload => self.error(
                    m.offset,
                    &m.path,
                    format!(
                        "volume {volume:?} is already mounted read-write by workload {writer:?}; \
                         only one writer at a time (mount it with :ro)"
                    ),
                ),
                Some(_) => {}
                None => {
                    writers.insert(volume, &m.workload);
                }
            }
        }
    }

    fn volume(
        &mut self,
        parent: &Path,
        name_key: &Key<'_>,
        body: &Value<'_>,
    ) -> Option<VolumeSpec> {
        let name: &str = name_key.get_ref();
        let (path, errors_before, table) = self.named_table(parent, name_key, body, "volume")?;
        let mut spec = VolumeSpec {
            name: name.to_string(),
            size: None,
            snapshots: None,
            site: None,
        };
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "size" => spec.size = self.bytes(&fpath, value, values::MIN_DISK),
                "snapshots" => spec.snapshots = self.snapshots(&fpath, key, value),
                "site" => spec.site = self.site(&fpath, key, value, name),
                _ => self.unknown_key(key, &fpath, VOLUME_KEYS),
            }
        }
        (self.diagnostics.len() == errors_before).then_some(spec)
    }

    fn workload(
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
        // (key offset, offset of `vnet = true` if given) of the `jail` table.
        let mut jail_at: Option<(usize, Option<usize>)> = None;
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
                _ => self.unknown_key(key, &fpath, WORKLOAD_KEYS),
            }
        }

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

        sources.sort_by_key(|(offset, _, _)| *offset);
        match sources.as_slice() {
            [] => self.error(
                name_key.span().start,
                &path,
                "needs `world`, `image` or `recipe`",
            ),
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

    /// The `jail` table: `allow` (known `allow.*` names, each once), `vnet` and
    /// `jailed_dataset` (booleans). Returns the options when well-formed, and where a
    /// `vnet = true` is (checked against `network` by the caller).
    fn jail(&mut self, path: &Path, value: &Value<'_>) -> (Option<JailOptions>, Option<usize>) {
        let example = r#"; e.g. [workload.NAME.jail] with allow = ["raw_sockets"], vnet = true"#;
        let Some(table) = self.table(path, value, example) else {
            return (None, None);
        };
        let errors_before = self.diagnostics.len();
        let mut options = JailOptions::default();
        let mut vnet_at = None;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let jpath = path.key(field);
            self.record(&jpath, k, v);
            match field {
                "allow" => {
                    if let Some(a) = self.jail_allow(&jpath, v) {
                        options.allow = a;
                    }
                }
                "vnet" => {
                    if let Some(b) = self.boolean(&jpath, v) {
                        options.vnet = Some(b);
                        if b {
                            vnet_at = Some(v.span().start);
                        }
                    }
                }
                "jailed_dataset" => {
                    if let Some(b) = self.boolean(&jpath, v) {
                        options.jailed_dataset = b;
                    }
                }
                _ => self.unknown_key(k, &jpath, JAIL_KEYS),
            }
        }
        let ok = self.diagnostics.len() == errors_before;
        (ok.then_some(options), vnet_at)
    }

    /// `allow = ["raw_sockets", ...]`: jail(8) permission names without `allow.`, each once;
    /// returned sorted.
    fn jail_allow(&mut self, path: &Path, value: &Value<'_>) -> Option<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(
                path,
                value,
                "an array of strings",
                r#"; e.g. allow = ["raw_sockets", "sysvipc"]"#,
            );
            return None;
        };
        let mut seen = BTreeSet::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let Some(name) = self.string(&ipath, item) else {
                ok = false;
                continue;
            };
            let bare = name.strip_prefix("allow.").unwrap_or(name);
            if !crate::spec::JAIL_ALLOW.contains(&bare) {
                let message = match suggest::did_you_mean(bare, crate::spec::JAIL_ALLOW) {
                    Some(s) => format!("unknown jail permission {name:?}; did you mean {s:?}?"),
                    None => format!(
                        "unknown jail permission {name:?}; expected one of {}",
                        crate::spec::JAIL_ALLOW.join(", ")
                    ),
                };
                self.error(item.span().start, &ipath, message);
                ok = false;
            } else if bare != name {
                self.error(
                    item.span().start,
                    &ipath,
                    format!("write {bare:?}, without the \"allow.\" prefix"),
                );
                ok = false;
            } else if !seen.insert(bare.to_string()) {
                self.error(
                    item.span().start,
                    &ipath,
                    format!("jail permission {name:?} is listed twice"),
                );
                ok = false;
            }
        }
        ok.then(|| seen.into_iter().collect())
    }

    fn boolean(&mut self, path: &Path, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(path, value, "true or false", "");
                None
            }
        }
    }

    /// The `ports` array: each element a mapping, no two of them overlapping. Returns the
    /// well-formed mappings with their element paths and offsets.
    fn ports(&mut self, path: &Path, value: &Value<'_>) -> Vec<Element<PortMapping>> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of port mappings",
                    r#"; e.g. ports = ["8080:80/tcp"]"#,
                );
                return Vec::new();
            }
        };
        let mut out: Vec<Element<PortMapping>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let DeValue::String(text) = item.get_ref() else {
                self.wrong_type(&ipath, item, "a string", r#"; e.g. "8080:80/tcp""#);
                continue;
            };
            let mapping = match PortMapping::parse(text) {
                Ok(m) => m,
                Err(e) => {
                    self.error(at, &ipath, e);
                    continue;
                }
            };
            if let Some((epath, _, earlier)) = out.iter().find(|(_, _, m)| m.overlaps(&mapping)) {
                let message = format!(
                    "host port {}/{} ({mapping}) is already published by {epath} ({earlier})",
                    mapping.host_port, mapping.proto
                );
                self.error(at, &ipath, message);
                continue;
            }
            out.push((ipath, at, mapping));
        }
        out
    }

    /// A `domains` array: DNS names (see [`values::check_domain`]), at least one, none twice.
    /// Returns the well-formed domains with their element paths and offsets.
    fn domains(&mut self, path: &Path, value: &Value<'_>) -> Vec<Element<String>> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            DeValue::String(_) => {
                self.wrong_type(
                    path,
                    value,
                    "an array of domain names",
                    r#"; use an array, e.g. domains = ["git.home.arpa"]"#,
                );
                return Vec::new();
            }
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of domain names",
                    r#"; e.g. domains = ["git.home.arpa"]"#,
                );
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error(
                value.span().start,
                path,
                r#"must list at least one domain, e.g. domains = ["git.home.arpa"]"#,
            );
        }
        let mut out: Vec<Element<String>> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let Some(domain) = self.checked_string(&ipath, item, values::check_domain) else {
                continue;
            };
            if let Some((epath, _, _)) = out.iter().find(|(_, _, d)| *d == domain) {
                let message = format!("domain {domain:?} is already listed at {epath}");
                self.error(at, &ipath, message);
                continue;
            }
            out.push((ipath, at, domain));
        }
        out
    }

    /// The workload port a route targets: 1 to 65535.
    fn route_port(&mut self, path: &Path, value: &Value<'_>) -> Option<u16> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(path, value, "a port number", "; e.g. port = 3000");
            return None;
        };
        match integer(i) {
            Some(n) if (1..=65535).contains(&n) => u16::try_from(n).ok(),
            Some(n) => {
                self.error(at, path, format!("must be between 1 and 65535, found {n}"));
                None
            }
            None => {
                self.error(at, path, "integer out of range");
                None
            }
        }
    }

    /// `tls = "none" | "local"`, or a table of the operator's own `cert` and `key` files.
    fn tls(&mut self, path: &Path, key: &Key<'_>, value: &Value<'_>) -> Option<TlsChoice> {
        let at = value.span().start;
        let table = match value.get_ref() {
            DeValue::String(s) => {
                let s: &str = s.as_ref();
                return match s {
                    "none" => Some(TlsChoice::None),
                    "local" => Some(TlsChoice::Local),
                    _ => {
                        let message = match suggest::did_you_mean(s, &["none", "local"]) {
                            Some(close) => format!("unknown value {s:?}; did you mean {close:?}?"),
                            None => format!(
                                "unknown value {s:?}; expected \"none\", \"local\" or a table \
                                 such as {TLS_EXAMPLE}"
                            ),
                        };
                        self.error(at, path, message);
                        None
                    }
                };
            }
            DeValue::Table(t) => t,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    r#""none", "local" or a table { cert, key }"#,
                    "",
                );
                return None;
            }
        };
        let errors_before = self.diagnostics.len();
        let (mut cert, mut key_file) = (None, None);
        let (mut has_cert, mut has_key, mut misspelled) = (false, false, false);
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let tpath = path.key(field);
            self.record(&tpath, k, v);
            match field {
                "cert" => {
                    has_cert = true;
                    cert = self.checked_string(&tpath, v, values::check_tls_file);
                }
                "key" => {
                    has_key = true;
                    key_file = self.checked_string(&tpath, v, values::check_tls_file);
                }
                _ => {
                    self.unknown_key(k, &tpath, TLS_KEYS);
                    misspelled = true;
                }
            }
        }
        // An unknown key is most likely the missing one misspelled; it is reported already.
        let missing = missing_pair(("cert", has_cert), ("key", has_key), misspelled);
        if let Some(missing) = missing {
            self.error(
                key.span().start,
                path,
                format!("missing {missing}; e.g. {TLS_EXAMPLE}"),
            );
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        Some(TlsChoice::Files {
            cert: cert?,
            key: key_file?,
        })
    }

    /// A volume's `site` table: `domains` (required), `path`, `autoindex` and `tls`.
    fn site(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
        volume: &str,
    ) -> Option<SiteSpec> {
        let table = self.table(
            path,
            value,
            r#"; e.g. site = { domains = ["www.home.arpa"], autoindex = true }"#,
        )?;
        let errors_before = self.diagnostics.len();
        let mut site = SiteSpec::default();
        let mut domains: Option<Vec<Element<String>>> = None;
        let mut path_ok = true;
        let mut misspelled = false;
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let spath = path.key(field);
            self.record(&spath, k, v);
            match field {
                "domains" => domains = Some(self.domains(&spath, v)),
                "path" => match self.checked_string(&spath, v, values::check_route_path) {
                    Some(p) => site.path = p,
                    None => path_ok = false,
                },
                "autoindex" => {
                    if let Some(b) = self.boolean(&spath, v) {
                        site.autoindex = b;
                    }
                }
                "tls" => {
                    if let Some(t) = self.tls(&spath, k, v) {
                        site.tls = t;
                    }
                }
                _ => {
                    self.unknown_key(k, &spath, SITE_KEYS);
                    misspelled = true;
                }
            }
        }
        match domains {
            Some(names) => {
                for (dpath, at, domain) in names {
                    site.domains.push(domain.clone());
                    if path_ok {
                        self.routes.push(RouteUse {
                            owner: format!("volume {volume:?}"),
                            domain,
                            route_path: site.path.clone(),
                            path: dpath,
                            offset: at,
                        });
                    }
                }
            }
            // A misspelled key is most likely `domains`; it is reported already.
            None if misspelled => {}
            None => self.error(
                key.span().start,
                path,
                r#"missing `domains`; e.g. site = { domains = ["www.home.arpa"] }"#,
            ),
        }
        (self.diagnostics.len() == errors_before).then_some(site)
    }

    fn command(&mut self, path: &Path, value: &Value<'_>) -> Option<Vec<String>> {
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

    /// The `volumes` array: each element parsed, and no two at the same path. Returns the
    /// well-formed mounts with their element paths and offsets (all of them, or none if the
    /// value is not an array).
    fn volume_mounts(&mut self, path: &Path, value: &Value<'_>) -> Vec<(Path, usize, VolumeMount)> {
        let items = match value.get_ref() {
            DeValue::Array(items) => items,
            _ => {
                self.wrong_type(
                    path,
                    value,
                    "an array of mounts",
                    r#"; e.g. volumes = ["media:/srv/media:ro"]"#,
                );
                return Vec::new();
            }
        };
        let mut mounts: Vec<(Path, usize, VolumeMount)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let at = item.span().start;
            let DeValue::String(text) = item.get_ref() else {
                self.wrong_type(&ipath, item, "a string", r#"; e.g. "media:/srv/media:ro""#);
                continue;
            };
            let mount = match values::parse_mount(text) {
                Ok(mount) => mount,
                Err(reason) => {
                    self.error(at, &ipath, reason);
                    continue;
                }
            };
            let earlier = mounts.iter().position(|(_, _, m)| {
                values::path_components(&m.path) == values::path_components(&mount.path)
            });
            if let Some(j) = earlier {
                let message = format!(
                    "mount path {:?} is already used by {}",
                    mount.path, mounts[j].0
                );
                self.error(at, &ipath, message);
                continue;
            }
            mounts.push((ipath, at, mount));
        }
        mounts
    }

    /// A snapshot policy table: `every` (a duration of at least a minute) and `keep` (1 to
    /// 1000), both required.
    fn snapshots(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
    ) -> Option<SnapshotPolicy> {
        let table = self.table(
            path,
            value,
            r#"; e.g. snapshots = { every = "6h", keep = 5 }"#,
        )?;
        let errors_before = self.diagnostics.len();
        let (mut every, mut keep) = (None, None);
        let (mut has_every, mut has_keep, mut misspelled) = (false, false, false);
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let spath = path.key(field);
            self.record(&spath, k, v);
            match field {
                "every" => {
                    has_every = true;
                    every = self.every(&spath, v);
                }
                "keep" => {
                    has_keep = true;
                    keep = self.keep(&spath, v);
                }
                _ => {
                    self.unknown_key(k, &spath, SNAPSHOT_KEYS);
                    misspelled = true;
                }
            }
        }
        // An unknown key is most likely the missing one misspelled; it is reported already.
        let missing = missing_pair(("every", has_every), ("keep", has_keep), misspelled);
        if let Some(missing) = missing {
            self.error(
                key.span().start,
                path,
                format!(r#"missing {missing}; e.g. snapshots = {{ every = "6h", keep = 5 }}"#),
            );
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        Some(SnapshotPolicy {
            every_secs: every?,
            keep: keep?,
        })
    }

    /// `hooks = [ { on = EVENT, ACTION, [cron | every], [timeout] }, ... ]`.
    fn hooks(&mut self, path: &Path, value: &Value<'_>) -> Vec<crate::hooks::Hook> {
        use crate::hooks::*;
        use strum::VariantNames;
        let example = r#"; e.g. hooks = [{ on = "crash", exec = ["sh", "-c", "..."] }]"#;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(path, value, "an array of hook tables", example);
            return Vec::new();
        };
        let mut hooks = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = path.index(i);
            self.record_element(&ipath, item);
            let Some(table) = self.table(&ipath, item, example) else {
                continue;
            };
            let errors_before = self.diagnostics.len();
            let mut on = None;
            let mut actions: Vec<(usize, &str, Option<HookAction>)> = Vec::new();
            let mut schedule: Option<(usize, Option<Schedule>)> = None;
            let mut timeout = DEFAULT_HOOK_TIMEOUT;
            let mut watch: Option<(usize, Option<String>)> = None;
            let mut zone: Option<(usize, Option<TimeZone>)> = None;
            for (k, v) in table.iter() {
                let field: &str = k.get_ref();
                let hpath = ipath.key(field);
                self.record(&hpath, k, v);
                let at = k.span().start;
                match field {
                    "on" => on = self.one_of(&hpath, v),
                    "restart" => {
                        let yes = self.boolean(&hpath, v);
                        if yes == Some(false) {
                            self.error(
                                v.span().start,
                                &hpath,
                                "restart = false does nothing; leave the hook out",
                            );
                        }
                        actions.push((
                            at,
                            "restart",
                            yes.filter(|y| *y).map(|_| HookAction::Restart),
                        ));
                    }
                    "exec" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "exec", c.map(HookAction::Exec)));
                    }
                    "host" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "host", c.map(HookAction::Host)));
                    }
                    "job" => {
                        let c = self.command(&hpath, v);
                        actions.push((at, "job", c.map(HookAction::Job)));
                    }
                    "webhook" => {
                        let u = self.checked_string(&hpath, v, |s| {
                            let rest = s
                                .strip_prefix("http://")
                                .ok_or_else(|| format!("webhook {s:?} must be an http:// URL"))?;
                            if rest.is_empty()
                                || s.chars().any(|c| c.is_whitespace() || c.is_control())
                            {
                                return Err(format!("webhook {s:?} is not a URL"));
                            }
                            Ok(())
                        });
                        actions.push((at, "webhook", u.map(HookAction::Webhook)));
                    }
                    "snapshot" => {
                        let l = self.checked_string(
                            &hpath,
                            v,
                            crate::names::check_snapshot_label_prefix,
                        );
                        actions.push((at, "snapshot", l.map(HookAction::Snapshot)));
                    }
                    "scheme" => {
                        let x = self.checked_string(&hpath, v, |s| {
                            if s.trim().is_empty() {
                                Err("the Scheme expression is empty".into())
                            } else {
                                Ok(())
                            }
                        });
                        actions.push((at, "scheme", x.map(HookAction::Scheme)));
                    }
                    "cron" => {
                        let c = self.string(&hpath, v).and_then(|s| {
                            CronExpr::parse(s)
                                .map_err(|r| self.error(v.span().start, &hpath, r))
                                .ok()
                        });
                        if schedule.is_some() {
                            self.error(at, &hpath, "a hook has either `cron` or `every`");
                        }
                        schedule = Some((at, c.map(|c| Schedule::Cron(CronSchedule::utc(c)))));
                    }
                    "timezone" => {
                        let z = self.string(&hpath, v).and_then(|s| {
                            TimeZone::parse(s)
                                .map_err(|r| self.error(v.span().start, &hpath, r))
                                .ok()
                        });
                        zone = Some((at, z));
                    }
                    "every" | "timeout" => {
                        let DeValue::String(s) = v.get_ref() else {
                            self.wrong_type(&hpath, v, r#"a duration such as "10s""#, "");
                            continue;
                        };
                        match values::parse_duration(s) {
                            Ok(0) => self.error(v.span().start, &hpath, "must be at least 1s"),
                            Ok(secs) if field == "timeout" => timeout = secs,
                            Ok(secs) => {
                                if schedule.is_some() {
                                    self.error(at, &hpath, "a hook has either `cron` or `every`");
                                }
                                schedule = Some((at, Some(Schedule::Every(secs))));
                            }
                            Err(m) => self.error(v.span().start, &hpath, m),
                        }
                    }
                    "path" => {
                        let p = self.checked_string(&hpath, v, values::check_data_path);
                        watch = Some((at, p));
                    }
                    _ => self.unknown_key(k, &hpath, HOOK_KEYS),
                }
            }
            let item_at = item.span().start;
            match (on, &watch) {
                (Some(HookEvent::Change), None) => self.error(
                    item_at,
                    &ipath,
                    r#"on = "change" needs the watched `path`; e.g. path = "/data/conf""#,
                ),
                (Some(e), Some((at, _))) if e != HookEvent::Change => self.error(
                    *at,
                    &ipath.key("path"),
                    r#"`path` belongs to on = "change" hooks"#,
                ),
                _ => {}
            }
            if on.is_none() && !table.iter().any(|(k, _)| k.get_ref() == "on") {
                self.error(
                    item_at,
                    &ipath,
                    format!(
                        "a hook needs `on` (one of {}){example}",
                        HookEvent::VARIANTS.join(", ")
                    ),
                );
            }
            match actions.as_slice() {
                [] => self.error(
                    item_at,
                    &ipath,
                    "a hook needs an action: restart, exec, host, webhook, snapshot, scheme or job",
                ),
                [_] => {}
                [(_, first, _), (at, second, _), ..] => self.error(
                    *at,
                    &ipath.key(second),
                    format!("a hook has one action (`{first}` is already set)"),
                ),
            }
            match (on, &schedule) {
                (Some(HookEvent::Schedule), None) => self.error(
                    item_at,
                    &ipath,
                    r#"on = "schedule" needs `cron` (e.g. "0 3 * * *") or `every` (e.g. "15m")"#,
                ),
                (Some(e), Some((at, _))) if e != HookEvent::Schedule => self.error(
                    *at,
                    &ipath,
                    r#"`cron` and `every` belong to on = "schedule" hooks"#,
                ),
                _ => {}
            }
            match (&mut schedule, zone) {
                (Some((_, Some(Schedule::Cron(c)))), Some((_, z))) => c.zone = z,
                (Some((_, None)), Some(_)) | (_, None) => {}
                (_, Some((at, _))) => self.error(
                    at,
                    &ipath.key("timezone"),
                    r#"`timezone` belongs to a `cron` schedule; e.g. cron = "0 3 * * *", timezone = "Europe/Berlin""#,
                ),
            }
            if self.diagnostics.len() != errors_before {
                continue;
            }
            let (Some(on), Some((_, _, Some(action)))) = (on, actions.into_iter().next()) else {
                continue;
            };
            hooks.push(Hook {
                on,
                action,
                schedule: schedule.and_then(|(_, s)| s),
                path: watch.and_then(|(_, p)| p),
                timeout_secs: timeout,
            });
        }
        hooks
    }

    /// `health = { exec = [...] | http = "/path", port = N | tcp = N, interval, timeout,
    /// retries, start_period, on_unhealthy }`.
    fn health(
        &mut self,
        path: &Path,
        key: &Key<'_>,
        value: &Value<'_>,
    ) -> Option<crate::health::HealthCheck> {
        use crate::health::*;
        let example = r#"; e.g. health = { http = "/healthz", port = 8080, interval = "10s" }"#;
        let table = self.table(path, value, example)?;
        let errors_before = self.diagnostics.len();
        let mut probes: Vec<(usize, &str)> = Vec::new();
        let (mut exec, mut http, mut tcp, mut port) = (None, None, None, None);
        let mut check = HealthCheck {
            probe: Probe::Tcp(0),
            interval_secs: DEFAULT_INTERVAL,
            timeout_secs: DEFAULT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            start_period_secs: 0,
            on_unhealthy: OnUnhealthy::Restart,
        };
        for (k, v) in table.iter() {
            let field: &str = k.get_ref();
            let hpath = path.key(field);
            self.record(&hpath, k, v);
            match field {
                "exec" => {
                    probes.push((k.span().start, "exec"));
                    exec = self.command(&hpath, v);
                }
                "http" => {
                    probes.push((k.span().start, "http"));
                    http = self.checked_string(&hpath, v, |s| {
                        if s.starts_with('/') && !s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                            Ok(())
                        } else {
                            Err(format!("the http check's path must start with / and hold no spaces, found {s:?}"))
                        }
                    });
                }
                "tcp" => {
                    probes.push((k.span().start, "tcp"));
                    tcp = self.route_port(&hpath, v);
                }
                "port" => port = Some((k.span().start, self.route_port(&hpath, v))),
                "interval" | "timeout" | "start_period" => {
                    let at = v.span().start;
                    let DeValue::String(s) = v.get_ref() else {
                        self.wrong_type(&hpath, v, r#"a duration such as "10s""#, "");
                        continue;
                    };
                    match values::parse_duration(s) {
                        Ok(0) if field != "start_period" => {
                            self.error(at, &hpath, "must be at least 1s");
                        }
                        Ok(secs) => match field {
                            "interval" => check.interval_secs = secs,
                            "timeout" => check.timeout_secs = secs,
                            _ => check.start_period_secs = secs,
                        },
                        Err(m) => self.error(at, &hpath, m),
                    }
                }
                "retries" => {
                    let at = v.span().start;
                    let DeValue::Integer(i) = v.get_ref() else {
                        self.wrong_type(&hpath, v, "an integer", "");
                        continue;
                    };
                    match integer(i) {
                        Some(n) if (1..=100).contains(&n) => check.retries = n as u32,
                        _ => self.error(at, &hpath, "must be between 1 and 100"),
                    }
                }
                "on_unhealthy" => {
                    if let Some(a) = self.one_of::<crate::health::OnUnhealthy>(&hpath, v) {
                        check.on_unhealthy = a;
                    }
                }
                _ => self.unknown_key(k, &hpath, HEALTH_KEYS),
            }
        }
        match probes.as_slice() {
            [] => self.error(
                key.span().start,
                path,
                format!("needs one of exec, http or tcp{example}"),
            ),
            [_] => {}
            [(_, first), (at, second), ..] => self.error(
                *at,
                &path.key(second),
                format!("a health check has one of exec, http or tcp (`{first}` is already set)"),
            ),
        }
        match (&http, port) {
            (Some(_), None) => self.error(
                key.span().start,
                path,
                r#"an http check needs the workload's `port`; e.g. health = { http = "/healthz", port = 8080 }"#,
            ),
            (None, Some((at, _))) => {
                self.error(at, &path.key("port"), "`port` belongs to http checks (tcp = PORT names its own)")
            }
            _ => {}
        }
        if self.diagnostics.len() != errors_before {
            return None;
        }
        check.probe = match (exec, http, tcp) {
            (Some(argv), _, _) => Probe::Exec(argv),
            (_, Some(p), _) => Probe::Http {
                path: p,
                port: port.and_then(|(_, p)| p)?,
            },
            (_, _, Some(p)) => Probe::Tcp(p),
            _ => return None,
        };
        Some(check)
    }

    fn every(&mut self, path: &Path, value: &Value<'_>) -> Option<u64> {
        let at = value.span().start;
        let DeValue::String(s) = value.get_ref() else {
            self.wrong_type(path, value, r#"a duration such as "6h""#, "");
            return None;
        };
        match values::parse_duration(s) {
            Ok(secs) if secs < values::MIN_SNAPSHOT_EVERY => {
                self.error(
                    at,
                    path,
                    format!(
                        "{s:?} is below the minimum of {}",
                        values::human_duration(values::MIN_SNAPSHOT_EVERY)
                    ),
                );
                None
            }
            Ok(secs) => Some(secs),
            Err(reason) => {
                self.error(at, path, reason);
                None
            }
        }
    }

    fn keep(&mut self, path: &Path, value: &Value<'_>) -> Option<u32> {
        let at = value.span().start;
        let DeValue::Integer(i) = value.get_ref() else {
            self.wrong_type(path, value, "an integer", "");
            return None;
        };
        let max = values::MAX_SNAPSHOT_KEEP;
        match integer(i) {
            Some(n) if (1..=i128::from(max)).contains(&n) => u32::try_from(n).ok(),
            Some(n) => {
                self.error(at, path, format!("must be between 1 and {max}, found {n}"));
                None
            }
            None => {
                self.error(at, path, "integer out of range");
                None
            }
        }
    }

    fn env(&mut self, path: &Path, value: &Value<'_>) -> Option<BTreeMap<String, String>> {
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

    fn resources(&mut self, path: &Path, value: &Value<'_>, spec: &mut WorkloadSpec) {
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
    fn bytes(&mut self, path: &Path, value: &Value<'_>, min: u64) -> Option<u64> {
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

    fn cpus(&mut self, path: &Path, value: &Value<'_>) -> Option<f64> {
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

    fn pids(&mut self, path: &Path, value: &Value<'_>) -> Option<u64> {
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

#[cfg(test)]
mod tests;
