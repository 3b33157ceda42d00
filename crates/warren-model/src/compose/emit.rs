//! The converted file as `warren.toml` text: a header, one `[workload.NAME]` table per service
//! and one `[volume.NAME]` table per volume, in the compose file's order, each field on its own
//! line (the environment as a `[workload.NAME.env]` table of its own), comments where something
//! was dropped. Every output line remembers the compose position it came from.

use super::yaml::Pos;
use crate::render::quote;

/// A table of the output.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// `workload` or `volume`.
    pub kind: &'static str,
    pub name: String,
    pub at: Pos,
    /// Comment lines (without `# `) under the header.
    pub comments: Vec<String>,
    /// Fields in output order.
    pub fields: Vec<Field>,
    /// The environment, rendered as a sub-table.
    pub env: Vec<(String, String, Pos)>,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub key: &'static str,
    /// The TOML value, already rendered.
    pub value: String,
    pub at: Pos,
    pub comment: Option<String>,
}

impl Table {
    pub fn new(kind: &'static str, name: &str, at: Pos) -> Self {
        Table {
            kind,
            name: name.to_string(),
            at,
            ..Table::default()
        }
    }

    pub fn set(&mut self, key: &'static str, value: String, at: Pos) {
        self.fields.retain(|f| f.key != key);
        self.fields.push(Field {
            key,
            value,
            at,
            comment: None,
        });
    }

    pub fn set_commented(&mut self, key: &'static str, value: String, at: Pos, comment: &str) {
        self.set(key, value, at);
        if let Some(f) = self.fields.last_mut() {
            f.comment = Some(comment.to_string());
        }
    }
}

/// The whole output.
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// File-wide comment lines.
    pub header: Vec<String>,
    pub workloads: Vec<Table>,
    pub volumes: Vec<Table>,
}

/// Workload keys in the order they are written.
const ORDER: &[&str] = &[
    "image",
    "entrypoint",
    "command",
    "workdir",
    "user",
    "hostname",
    "state",
    "restart",
    "after",
    "network",
    "ports",
    "domains",
    "port",
    "path",
    "tls",
    "data_path",
    "volumes",
    "readonly_rootfs",
    "resources",
    "health",
    "size",
];

/// A TOML key: bare when it can be.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

/// A TOML array of strings.
pub(crate) fn strings<S: AsRef<str>>(items: &[S]) -> String {
    let q: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", q.join(", "))
}

struct Writer {
    text: String,
    origins: Vec<Option<(usize, usize)>>,
}

impl Writer {
    fn line(&mut self, line: &str, at: Option<Pos>) {
        self.text.push_str(line);
        self.text.push('\n');
        self.origins.push(at.map(|p| (p.line, p.column)));
    }
}

/// Renders `out`; returns the text and each line's compose position.
pub(crate) fn render(file: &str, out: &Out) -> (String, Vec<Option<(usize, usize)>>) {
    let mut w = Writer {
        text: String::new(),
        origins: Vec::new(),
    };
    w.line(
        &format!("# Converted from {file} by `warren compose import`."),
        None,
    );
    for c in &out.header {
        w.line(&format!("# {c}"), None);
    }
    for table in out.workloads.iter().chain(&out.volumes) {
        w.line("", None);
        w.line(
            &format!("[{}.{}]", table.kind, key(&table.name)),
            Some(table.at),
        );
        for c in &table.comments {
            w.line(&format!("# {c}"), Some(table.at));
        }
        let mut fields: Vec<&Field> = table.fields.iter().collect();
        fields.sort_by_key(|f| {
            ORDER
                .iter()
                .position(|k| *k == f.key)
                .unwrap_or(ORDER.len())
        });
        for f in fields {
            let mut line = format!("{} = {}", f.key, f.value);
            if let Some(c) = &f.comment {
                line.push_str(&format!("  # {c}"));
            }
            w.line(&line, Some(f.at));
        }
        if !table.env.is_empty() {
            w.line("", None);
            w.line(
                &format!("[{}.{}.env]", table.kind, key(&table.name)),
                Some(table.at),
            );
            for (k, v, at) in &table.env {
                w.line(&format!("{} = {}", key(k), quote(v)), Some(*at));
            }
        }
    }
    (w.text, w.origins)
}
