//! Docker Compose files converted to `warren.toml` text.
//!
//! [`convert`] turns the text of a `docker-compose.yml` into the text of an equivalent
//! `warren.toml`: deterministic (services and volumes in file order, keys in a fixed order),
//! readable, with a comment wherever something was dropped. [`Conversion::parse`] parses the
//! result with the ordinary [`crate::parse_spec`], so applying a compose file is exactly
//! applying its conversion, and an error anywhere changes nothing.
//!
//! Every key that cannot be expressed in warren is a located error (`file:line:column`, naming
//! the key); a key whose loss is harmless (`container_name`, `logging`, `expose`, ...) is a
//! warning with its location, and a comment in the output. Nothing here does I/O: the caller
//! passes the file's text, the `.env` text next to it, the process environment and a reader for
//! the `env_file`s the file names ([`ComposeInput`]).
//!
//! Parts: [`yaml`] (a positioned YAML tree: anchors, merge keys, duplicate keys refused),
//! [`interpolate`] (`${VAR:-default}` and friends, `.env` files), `service` (the file's top
//! level and one service to one workload), `service_keys` (ports, volumes, `depends_on`,
//! `deploy`, limits), `health` (`healthcheck`), `fields` (port, volume, duration and size
//! syntaxes), `routes` (Traefik and caddy-docker-proxy labels to `domains`), `emit` (the TOML
//! text).
//! Which keys map, and to what, is written down in `docs/compose.md`.

pub(crate) mod interpolate;
pub(crate) mod yaml;

mod emit;
mod fields;
mod health;
mod routes;
mod service;
mod service_keys;

#[cfg(test)]
mod tests;

use crate::parse::{parse_spec, Diagnostic, Parsed, SpecError};
use std::collections::BTreeMap;
use yaml::{Node, Pos, Value};

/// What [`convert`] reads.
pub struct ComposeInput<'a> {
    /// The compose file's name as shown in messages (`docker-compose.yml`).
    pub file: &'a str,
    pub text: &'a str,
    /// The `.env` file next to the compose file: its name in messages and its text.
    pub dotenv: Option<(&'a str, &'a str)>,
    /// The process environment; it wins over `.env`.
    pub env: &'a BTreeMap<String, String>,
    /// Reads an `env_file` named in the compose file (the path as written, relative to the
    /// compose file's directory); `Err` carries why not (`not found` for a missing file).
    pub read: &'a Reader<'a>,
}

/// Reads an `env_file` by the path the compose file gives.
pub type Reader<'a> = dyn Fn(&str) -> Result<String, ReadError> + 'a;

/// Why an `env_file` could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    NotFound,
    Other(String),
}

/// A converted file: the `warren.toml` text, the warnings (dropped keys, each located in the
/// compose file), and for each output line the compose position it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub toml: String,
    pub warnings: Vec<Diagnostic>,
    origins: Vec<Option<(usize, usize)>>,
    file: String,
}

/// Whether a file name looks like a compose file: `compose.yaml`, `docker-compose.yml`,
/// `docker-compose.prod.yml`, or any `.yml` / `.yaml` file.
pub fn is_compose_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    base.ends_with(".yml") || base.ends_with(".yaml")
}

/// Converts a compose file to `warren.toml` text. The errors are every unmappable key and
/// malformed value found, sorted by position.
pub fn convert(input: &ComposeInput<'_>) -> Result<Conversion, SpecError> {
    let mut cx = Cx::new(input.file);
    let outer = |name: &str| input.env.get(name).cloned();
    let dotenv = match input.dotenv {
        Some((name, text)) => match interpolate::parse_dotenv(text, &outer) {
            Ok(vars) => interpolate::dotenv_map(vars),
            Err(e) => {
                return Err(SpecError {
                    diagnostics: vec![Diagnostic {
                        file: name.to_string(),
                        line: e.line,
                        column: e.column,
                        message: e.message,
                    }],
                })
            }
        },
        None => BTreeMap::new(),
    };
    let root = match yaml::parse(input.text) {
        Ok(root) => root,
        Err(e) => {
            cx.error(e.at, e.message);
            return Err(cx.into_error());
        }
    };
    let vars = |name: &str| input.env.get(name).or(dotenv.get(name)).cloned();
    cx.vars = Some(&vars);
    cx.read = Some(input.read);
    let out = service::file(&mut cx, &root);
    if !cx.errors.is_empty() {
        return Err(cx.into_error());
    }
    let (toml, origins) = emit::render(input.file, &out);
    cx.warnings.sort_by_key(|d| (d.line, d.column));
    Ok(Conversion {
        toml,
        warnings: cx.warnings,
        origins,
        file: input.file.to_string(),
    })
}

impl Conversion {
    /// Parses the converted text with the `warren.toml` parser. A diagnostic of that parser
    /// (a file-wide check such as two services claiming one host port) is located at the
    /// compose line its `warren.toml` line came from.
    pub fn parse(&self) -> Result<Parsed, SpecError> {
        parse_spec(&self.toml, &self.file).map_err(|e| SpecError {
            diagnostics: e
                .diagnostics
                .into_iter()
                .map(|d| {
                    let origin = self.origins.get(d.line.wrapping_sub(1)).copied().flatten();
                    let (line, column) = origin.unwrap_or((1, 1));
                    Diagnostic {
                        file: self.file.clone(),
                        line,
                        column,
                        message: format!("in the converted warren.toml: {}", d.message),
                    }
                })
                .collect(),
        })
    }
}

/// The conversion's state: diagnostics so far and how to read values.
pub(crate) struct Cx<'a> {
    file: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    vars: Option<&'a interpolate::Lookup<'a>>,
    read: Option<&'a Reader<'a>>,
    /// Variables already reported as unset.
    unset: Vec<String>,
}

impl<'a> Cx<'a> {
    fn new(file: &str) -> Self {
        Cx {
            file: file.to_string(),
            errors: Vec::new(),
            warnings: Vec::new(),
            vars: None,
            read: None,
            unset: Vec::new(),
        }
    }

    fn diagnostic(&self, at: Pos, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            message,
        }
    }

    pub fn error(&mut self, at: Pos, message: impl Into<String>) {
        let d = self.diagnostic(at, message.into());
        self.errors.push(d);
    }

    pub fn warn(&mut self, at: Pos, message: impl Into<String>) {
        let d = self.diagnostic(at, message.into());
        self.warnings.push(d);
    }

    fn into_error(mut self) -> SpecError {
        self.errors.sort_by_key(|d| (d.line, d.column));
        SpecError {
            diagnostics: self.errors,
        }
    }

    /// The variables: the process environment, then `.env`.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars.and_then(|v| v(name))
    }

    pub fn read_file(&self, path: &str) -> Result<String, ReadError> {
        match self.read {
            Some(read) => read(path),
            None => Err(ReadError::NotFound),
        }
    }

    /// A scalar's text, interpolated; `None` (and an error naming `path`) for a list, a
    /// mapping or a failed interpolation.
    pub fn text(&mut self, path: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::Scalar { text, .. } => self.interpolate(path, node.at, text),
            _ => {
                self.error(
                    node.at,
                    format!("{path}: expected a string, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// Interpolates `text` found at `at`.
    pub fn interpolate(&mut self, path: &str, at: Pos, text: &str) -> Option<String> {
        let vars = self.vars;
        let lookup = move |name: &str| vars.and_then(|v| v(name));
        match interpolate::interpolate(text, &lookup) {
            Ok(done) => {
                for name in done.unset {
                    if !self.unset.contains(&name) {
                        self.warn(
                            at,
                            format!("{path}: variable {name} is not set; it is an empty string"),
                        );
                        self.unset.push(name);
                    }
                }
                Some(done.text)
            }
            Err(message) => {
                self.error(at, format!("{path}: {message}"));
                None
            }
        }
    }

    /// A list of strings, or (when `split` allows it) one string split like a shell would.
    pub fn strings(&mut self, path: &str, node: &Node, split: bool) -> Option<Vec<String>> {
        match &node.value {
            Value::Seq(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.text(&format!("{path}[{i}]"), item) {
                        Some(t) => out.push(t),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
            Value::Scalar { .. } if split => {
                let text = self.text(path, node)?;
                match fields::shell_split(&text) {
                    Ok(words) => Some(words),
                    Err(m) => {
                        self.error(node.at, format!("{path}: {m}"));
                        None
                    }
                }
            }
            _ => {
                self.error(
                    node.at,
                    format!("{path}: expected a list of strings, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A mapping's entries, or an error naming `path`.
    pub fn map<'n>(&mut self, path: &str, node: &'n Node) -> Option<&'n [(yaml::Key, Node)]> {
        match &node.value {
            Value::Map(m) => Some(m),
            _ => {
                self.error(
                    node.at,
                    format!("{path}: expected a mapping, found {}", node.kind()),
                );
                None
            }
        }
    }

    /// A key no mapping of warren's can express.
    pub fn unmappable(&mut self, key: &yaml::Key, path: &str, why: &str) {
        self.error(key.at, format!("{path}: cannot be converted: {why}"));
    }
}

/// A compose name made a warren name (a DNS label): lowercase, `_` and `.` as `-`.
pub(crate) fn dns_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}
