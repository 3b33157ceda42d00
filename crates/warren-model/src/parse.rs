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
//!
//! [volume.media]                # the key is the volume name (a DNS label)
//! size = "10G"                  # optional size limit, same units as memory
//! snapshots = { every = "6h", keep = 5 }
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
//! A successful parse returns a [`Parsed`], which keeps the position of every field so that
//! later checks (host support for a kind, port conflicts, ...) can report `file:line:column`
//! too, through [`Parsed::locate`] and [`Parsed::diagnostic`].
//!
//! Field paths in messages and in [`Parsed::locate`] are dotted (`workload.web.env.PORT`,
//! `volume.media.size`); keys that are not bare TOML keys are quoted (`workload.web.env."A.B"`)
//! and array elements are indexed (`workload.web.command[1]`, `workload.web.volumes[0]`).

mod position;
mod suggest;
mod values;

pub use position::line_column;

use crate::names::check_dns_label;
use crate::spec::{
    DesiredState, Kind, RestartPolicy, SnapshotPolicy, Source, SpecFile, VolumeMount, VolumeSpec,
    WorkloadSpec,
};
use position::LineIndex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use toml::de::{DeString, DeTable, DeValue};
use toml::Spanned;

/// One problem found in a spec file, located at `file:line:column` (1-based).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
type Value<'i> = Spanned<DeValue<'i>>;

const TOP_KEYS: &[&str] = &["workload", "volume"];
const WORKLOAD_KEYS: &[&str] = &[
    "kind",
    "world",
    "image",
    "command",
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
];
const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids", "disk"];
const VOLUME_KEYS: &[&str] = &["size", "snapshots"];
const SNAPSHOT_KEYS: &[&str] = &["every", "keep"];
const KINDS: &[(&str, Kind)] = &[
    ("container", Kind::Container),
    ("jail", Kind::Jail),
    ("vm", Kind::Vm),
];
const RESTARTS: &[(&str, RestartPolicy)] = &[
    ("always", RestartPolicy::Always),
    ("on-failure", RestartPolicy::OnFailure),
    ("never", RestartPolicy::Never),
];
const STATES: &[(&str, DesiredState)] = &[
    ("running", DesiredState::Running),
    ("stopped", DesiredState::Stopped),
];
const MAX_CPUS: f64 = 1024.0;

/// The name of a value's type in messages.
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

/// Walks the TOML tree, building the spec and collecting diagnostics and locations.
struct Walker<'t> {
    lines: LineIndex<'t>,
    file: &'t str,
    diagnostics: Vec<Diagnostic>,
    locations: BTreeMap<String, (usize, usize)>,
    /// Every well-formed mount of every workload, in file order.
    mounts: Vec<MountUse>,
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

    fn one_of<T: Copy>(
        &mut self,
        path: &Path,
        value: &Value<'_>,
        options: &[(&str, T)],
    ) -> Option<T> {
        let s = self.string(path, value)?;
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
            return Some(*v);
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        let message = match suggest::did_you_mean(s, &names) {
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
        spec
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
        };
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "size" => spec.size = self.bytes(&fpath, value, values::MIN_DISK),
                "snapshots" => spec.snapshots = self.snapshots(&fpath, key, value),
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

        let mut spec = WorkloadSpec::new(name, Source::World(String::new()));
        // (key offset, source) for each of `world` and `image` present, valid or not.
        let mut sources: Vec<(usize, &str, Option<Source>)> = Vec::new();
        // Well-formed mounts: (element path, element offset, mount).
        let mut mounts: Vec<(Path, usize, VolumeMount)> = Vec::new();
        let mut data_path_ok = true;
        for (key, value) in table.iter() {
            let field: &str = key.get_ref();
            let fpath = path.key(field);
            self.record(&fpath, key, value);
            match field {
                "kind" => {
                    if let Some(k) = self.one_of(&fpath, value, KINDS) {
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
                "command" => {
                    if let Some(c) = self.command(&fpath, value) {
                        spec.command = c;
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
                    if let Some(r) = self.one_of(&fpath, value, RESTARTS) {
                        spec.restart = r;
                    }
                }
                "state" => {
                    if let Some(s) = self.one_of(&fpath, value, STATES) {
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
                _ => self.unknown_key(key, &fpath, WORKLOAD_KEYS),
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
            [] => self.error(name_key.span().start, &path, "needs `world` or `image`"),
            [(_, _, source)] => {
                if let Some(source) = source {
                    spec.source = source.clone();
                }
            }
            [(_, first, _), (offset, second, _), ..] => {
                let (offset, first, second) = (*offset, *first, *second);
                self.error(
                    offset,
                    &path.key(second),
                    format!("a workload has either `world` or `image`, not both (`{first}` is already set)"),
                );
            }
        }
        (self.diagnostics.len() == errors_before).then_some(spec)
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
        let missing = match (has_every, has_keep) {
            (true, true) => None,
            _ if misspelled => None,
            (false, true) => Some("`every`"),
            (true, false) => Some("`keep`"),
            (false, false) => Some("`every` and `keep`"),
        };
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
