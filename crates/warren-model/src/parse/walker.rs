//! The walker over the TOML tree: field paths ([`Path`]), the known keys and spellings of
//! every table, and the [`Walker`] with its generic steps (diagnostics, locations, typed
//! reads of strings, tables and booleans) that the per-table files build on.

use super::*;

/// A field path as rendered in messages and used as a location key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Path(String);

impl Path {
    pub(super) fn root() -> Self {
        Path(String::new())
    }

    pub(super) fn key(&self, key: &str) -> Self {
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

    pub(super) fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(super) type Key<'i> = Spanned<DeString<'i>>;
/// A well-formed array element: its path, its offset and its value.
pub(super) type Element<T> = (Path, usize, T);
pub(super) type Value<'i> = Spanned<DeValue<'i>>;

pub(super) const TOP_KEYS: &[&str] = &["workload", "volume", "host"];
pub(super) const HOST_KEYS: &[&str] = &["reserve_memory", "reserve_cpus"];
pub(super) const WORKLOAD_KEYS: &[&str] = &[
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
    "vm",
    "after",
    "wait",
];
pub(super) const VM_KEYS: &[&str] = &[
    "kernel",
    "initrd",
    "cmdline",
    "disk",
    "iso",
    "disk_size",
    "firmware",
    "console",
];
pub(super) const JAIL_KEYS: &[&str] = &["allow", "vnet", "jailed_dataset"];
pub(super) const RESOURCE_KEYS: &[&str] = &["memory", "cpus", "pids", "disk"];
pub(super) const VOLUME_KEYS: &[&str] = &["size", "snapshots", "site"];
pub(super) const SNAPSHOT_KEYS: &[&str] = &["every", "keep"];
pub(super) const HEALTH_KEYS: &[&str] = &[
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
pub(super) const HOOK_KEYS: &[&str] = &[
    "on", "restart", "exec", "host", "webhook", "snapshot", "scheme", "job", "cron", "every",
    "timeout", "path", "timezone",
];
pub(super) const SITE_KEYS: &[&str] = &["domains", "path", "autoindex", "tls"];
pub(super) const TLS_KEYS: &[&str] = &["cert", "key"];
pub(super) const AFTER_KEYS: &[&str] = &["name", "wait"];
/// The name of the workload warren itself runs for the ingress.
pub(super) const RESERVED_WORKLOAD: &str = "warren-ingress";
pub(super) const TLS_EXAMPLE: &str =
    r#"tls = { cert = "/etc/warren/tls/site.pem", key = "/etc/warren/tls/site.key" }"#;
pub(super) const MAX_CPUS: f64 = 1024.0;

/// The name of a value's type in messages.
/// Which of a table's two required keys are missing, as "`a`", "`b`" or "`a` and `b`"; `None`
/// when both are present, or when a misspelled key (most likely the missing one) was already
/// reported.
pub(super) fn missing_pair(a: (&str, bool), b: (&str, bool), misspelled: bool) -> Option<String> {
    match (a.1, b.1) {
        (true, true) => None,
        _ if misspelled => None,
        (false, true) => Some(format!("`{}`", a.0)),
        (true, false) => Some(format!("`{}`", b.0)),
        (false, false) => Some(format!("`{}` and `{}`", a.0, b.0)),
    }
}

pub(super) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::Array(a) if !a.is_empty() && a.iter().all(|e| e.get_ref().is_table()) => {
            "array of tables"
        }
        other => other.type_str(),
    }
}

pub(super) fn integer(v: &toml::de::DeInteger<'_>) -> Option<i128> {
    i128::from_str_radix(v.as_str(), v.radix()).ok()
}

/// One well-formed volume mount, kept for the checks that need the whole file.
pub(super) struct MountUse {
    pub(super) workload: String,
    pub(super) index: usize,
    pub(super) path: Path,
    pub(super) offset: usize,
    pub(super) mount: VolumeMount,
}

/// One well-formed domain of a workload route or volume site, for the file-wide check that no
/// domain and path is claimed twice.
pub(super) struct RouteUse {
    /// `workload "git"` or `volume "www"`.
    pub(super) owner: String,
    pub(super) domain: String,
    pub(super) route_path: String,
    pub(super) path: Path,
    pub(super) offset: usize,
}

/// One well-formed published port, for the file-wide conflict check.
pub(super) struct PortUse {
    pub(super) workload: String,
    pub(super) mapping: PortMapping,
    pub(super) path: Path,
    pub(super) offset: usize,
}

/// Walks the TOML tree, building the spec and collecting diagnostics and locations.
pub(super) struct Walker<'t> {
    pub(super) lines: LineIndex<'t>,
    pub(super) file: &'t str,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) locations: BTreeMap<String, (usize, usize)>,
    /// Every well-formed mount of every workload, in file order.
    pub(super) mounts: Vec<MountUse>,
    /// Every well-formed routed domain of every workload and site.
    pub(super) routes: Vec<RouteUse>,
    /// Every well-formed published port of every workload.
    pub(super) published: Vec<PortUse>,
    /// Every well-formed `after` entry of every workload.
    pub(super) after_uses: Vec<super::order::AfterUse>,
}

impl Walker<'_> {
    pub(super) fn error(&mut self, offset: usize, path: &Path, message: impl fmt::Display) {
        let (line, column) = self.lines.position(offset);
        self.diagnostics.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: format!("{path}: {message}"),
        });
    }

    /// Remembers where `path` is: the key for tables, the value otherwise.
    pub(super) fn record(&mut self, path: &Path, key: &Key<'_>, value: &Value<'_>) {
        let offset = if value.get_ref().is_table() {
            key.span().start
        } else {
            value.span().start
        };
        let pos = self.lines.position(offset);
        self.locations.insert(path.0.clone(), pos);
    }

    pub(super) fn record_element(&mut self, path: &Path, value: &Value<'_>) {
        let pos = self.lines.position(value.span().start);
        self.locations.insert(path.0.clone(), pos);
    }

    pub(super) fn unknown_key(&mut self, key: &Key<'_>, path: &Path, known: &[&str]) {
        let message = match suggest::did_you_mean(key.get_ref(), known) {
            Some(s) => format!("unknown key; did you mean `{s}`?"),
            None if known.len() == 1 => format!("unknown key; expected `{}`", known[0]),
            None => format!("unknown key; expected one of {}", known.join(", ")),
        };
        self.error(key.span().start, path, message);
    }

    pub(super) fn wrong_type(
        &mut self,
        path: &Path,
        value: &Value<'_>,
        expected: &str,
        hint: &str,
    ) {
        let message = format!(
            "expected {expected}, found {}{hint}",
            type_name(value.get_ref())
        );
        self.error(value.span().start, path, message);
    }

    /// The common start of a `[what.NAME]` table: records its position, checks NAME as a DNS
    /// label and requires a table. Returns the path, the diagnostic count before it (so the
    /// caller can tell whether this entry added errors) and the table.
    pub(super) fn named_table<'v, 'i>(
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

    pub(super) fn table<'v, 'i>(
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

    pub(super) fn string<'v>(&mut self, path: &Path, value: &'v Value<'_>) -> Option<&'v str> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type(path, value, "a string", "");
                None
            }
        }
    }

    /// A string checked by `check`; reports the check's reason.
    pub(super) fn checked_string(
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
    pub(super) fn one_of<T: std::str::FromStr + strum::VariantNames>(
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

    pub(super) fn boolean(&mut self, path: &Path, value: &Value<'_>) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(path, value, "true or false", "");
                None
            }
        }
    }
}
