//! Warrenfile recipes: a header of directives, a `---` line, then a shell script run as root
//! on top of the parent (lightjail's Jailfile semantics).
//!
//! ```text
//! # comments start with #, also after a value
//! name lang/ruby          # required: NAMESPACE/NAME, each a DNS label
//! version 2.1.1           # optional: the builder picks a random one when absent
//! world debian            # optional: the world to build on...
//! from lang/common 1.0    # ...or a parent recipe, with an optional version prefix,
//!                         #    or `from image app:v1` (an OCI image)
//! copy /src               # optional: the recipe's directory is copied there (absolute)
//! ---
//! apt-get install -y ruby
//! ```
//!
//! # Header
//!
//! One directive per line: the directive, then its value(s), separated by blanks. As in
//! the shell, a `#` at the start of a word begins a comment that runs to the end of the line
//! (`copy /opt/c#` keeps its `#`). Each directive may appear once; `copy`, like lightjail's, is
//! not repeatable. `world` and `from` exclude each other (the parent brings its world); with
//! neither the builder uses the host's default world. The header ends at the first line that is
//! exactly `---` (surrounding blanks and a trailing comment allowed).
//!
//! # Script
//!
//! Everything after the `---` line is the script, verbatim except that CRLF line endings become
//! LF (the script is run by `sh`, where a `\r` would end up in every last word). It must hold at
//! least one line that is neither blank nor a comment, and no NUL byte. [`Recipe::script_line`]
//! is the file line of the script's first line, so `sh`'s `line N` maps to file line
//! `script_line + N - 1`.
//!
//! # Input
//!
//! A byte-order mark at the start is skipped and CRLF line endings are accepted. Control
//! characters (other than tabs) are refused in the header outside comments. [`parse`] reports every problem it
//! finds, sorted by position, each as `FILE:LINE:COLUMN: message` (columns count characters),
//! with a did-you-mean hint for a misspelt directive. It performs no I/O: callers read the file.
//!
//! # Versions
//!
//! [`resolve_version`] picks the newest version matching a prefix. A prefix matches a version
//! equal to it, or one that continues it after a component separator (`.`, `-`, `+` or `_`):
//! `2.1` matches `2.1`, `2.1.0`, `2.1.1` and `2.1-rc1`, never `2.10`. A prefix that itself ends
//! with a separator (`2.1.`) matches versions starting with it.
//!
//! [`compare_versions`] is a total order. Versions are split into components at the
//! separators. Components compare pairwise: numbers numerically (of any length, leading zeros
//! ignored: `2.1.10 > 2.1.9`), other components as text (bytewise), and a number above text.
//! When one version runs out of components first, it sits between the two kinds: a numeric
//! extra component makes the longer version newer (`1.0.1 > 1.0`), a textual one makes it older,
//! a pre-release (`1.0 > 1.0-rc1 > 1.0-beta`). Versions that are still equal (`1.0` and `1-0`,
//! `1.01` and `1.1`) are ordered by their text, so only identical strings compare equal.

use std::cmp::Ordering;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::names::check_dns_label;
use crate::parse::suggest::did_you_mean;

/// The parent a recipe builds on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parent {
    /// Another recipe, by `namespace/name`, with an optional version prefix.
    Recipe {
        name: String,
        prefix: Option<String>,
    },
    /// An OCI image reference.
    Image(String),
}

/// A parsed recipe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recipe {
    /// `namespace/name` (see [`Recipe::namespace`] and [`Recipe::short_name`]).
    pub name: String,
    /// `None` when the recipe has no `version` line.
    pub version: Option<String>,
    /// `None` when the recipe has no `world` line.
    pub world: Option<String>,
    /// `None` when the recipe has no `from` line.
    pub from: Option<Parent>,
    /// Absolute destination of the recipe directory's copy inside the new layer.
    pub copy: Option<String>,
    /// The script after `---` (see the module docs).
    pub script: String,
    /// 1-based file line where the script starts.
    pub script_line: usize,
}

/// One problem in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    /// A suggestion, rendered after the message (`did you mean `version`?`).
    pub hint: Option<String>,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

/// Every problem of a recipe, sorted by position (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct RecipeErrors(pub Vec<RecipeError>);

const DIRECTIVES: &[&str] = &["name", "version", "world", "from", "copy"];
const SEPARATORS: [char; 4] = ['.', '-', '+', '_'];
const MAX_VERSION: usize = 64;

/// Checks a version string: 1-64 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= MAX_VERSION
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || SEPARATORS.contains(&c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version {v:?}: 1-{MAX_VERSION} of A-Z a-z 0-9 . _ + -, starting with a letter or digit"
        ))
    }
}

/// Checks `namespace/name`: exactly one slash, each part a DNS label.
pub fn check_recipe_name(n: &str) -> Result<(), String> {
    let parts: Vec<&str> = n.split('/').collect();
    if parts.len() != 2 {
        return Err(format!(
            "recipe name {n:?} must be NAMESPACE/NAME (exactly one slash)"
        ));
    }
    for p in parts {
        check_dns_label(p).map_err(|r| format!("recipe name {n:?}: {r}"))?;
    }
    Ok(())
}

/// A workload's `recipe = "ns/name [PREFIX]"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeRef {
    /// `namespace/name`.
    pub name: String,
    /// The version prefix, matched by [`resolve_version`].
    pub prefix: Option<String>,
}

/// Parses `ns/name` or `ns/name PREFIX` (words separated by blanks).
pub fn parse_recipe_ref(s: &str) -> Result<RecipeRef, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let (name, prefix) = match words.as_slice() {
        [name] => (*name, None),
        [name, prefix] => (*name, Some(*prefix)),
        _ => {
            return Err(format!(
                "recipe reference {s:?} must be \"NAMESPACE/NAME\" or \"NAMESPACE/NAME VERSION-PREFIX\""
            ))
        }
    };
    check_recipe_name(name)?;
    if let Some(p) = prefix {
        check_version(p)?;
    }
    Ok(RecipeRef {
        name: name.to_string(),
        prefix: prefix.map(str::to_string),
    })
}

/// A word of a header line with its 1-based character column.
#[derive(Clone, Copy)]
struct Word<'t> {
    col: usize,
    text: &'t str,
}

/// Splits a header line (without its line ending) into words, stopping at a comment. Returns
/// the column and character of the first control character instead, if any.
fn words(line: &str) -> Result<Vec<Word<'_>>, (usize, char)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte offset, column)
    for (col, (pos, c)) in (1..).zip(line.char_indices()) {
        if c.is_control() && c != '\t' {
            return Err((col, c));
        }
        if c.is_whitespace() {
            if let Some((s, scol)) = start.take() {
                out.push(Word {
                    col: scol,
                    text: &line[s..pos],
                });
            }
        } else if start.is_none() {
            if c == '#' {
                return Ok(out);
            }
            start = Some((pos, col));
        }
    }
    if let Some((s, scol)) = start {
        out.push(Word {
            col: scol,
            text: &line[s..],
        });
    }
    Ok(out)
}

/// Collects the errors of one parse.
struct Errors<'f> {
    file: &'f str,
    list: Vec<RecipeError>,
}

impl Errors<'_> {
    fn at(&mut self, line: usize, column: usize, message: impl Into<String>) {
        self.hinted(line, column, message, None);
    }

    fn hinted(
        &mut self,
        line: usize,
        column: usize,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.list.push(RecipeError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
            hint,
        });
    }
}

/// A directive's value with where it was given (line, column of the directive).
type Located<T> = Option<(usize, usize, T)>;

/// Parses a recipe; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Recipe, RecipeErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Errors {
        file,
        list: Vec::new(),
    };
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let mut name: Located<String> = None;
    let mut version: Located<String> = None;
    let mut world: Located<String> = None;
    let mut from: Located<Parent> = None;
    let mut copy: Located<String> = None;
    let mut separator: Option<(usize, usize)> = None;
    let mut misspelt: Vec<&str> = Vec::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    for (index, raw) in lines.iter().enumerate() {
        let lineno = index + 1;
        let words = match words(raw) {
            Ok(w) => w,
            Err((col, c)) => {
                errors.at(
                    lineno,
                    col,
                    format!("control character U+{:04X} in the header", u32::from(c)),
                );
                continue;
            }
        };
        let Some((&first, args)) = words.split_first() else {
            continue;
        };
        let (col, directive) = (first.col, first.text);
        if directive == "---" {
            if let Some(extra) = args.first() {
                errors.hinted(
                    lineno,
                    extra.col,
                    format!("unexpected `{}` after `---`", extra.text),
                    Some(
                        "the separator line holds only `---`; the script starts on the next line"
                            .into(),
                    ),
                );
            }
            separator = Some((lineno, col));
            break;
        }
        if !DIRECTIVES.contains(&directive) {
            let hint = if directive.len() >= 2 && directive.chars().all(|c| c == '-') {
                "the line between the header and the script is exactly `---`".to_string()
            } else {
                match did_you_mean(directive, DIRECTIVES) {
                    Some(d) => {
                        // Reported here; no second error for the missing directive.
                        misspelt.push(d);
                        format!("did you mean `{d}`?")
                    }
                    None => format!("expected one of {}", DIRECTIVES.join(", ")),
                }
            };
            errors.hinted(
                lineno,
                col,
                format!("unknown directive `{directive}`"),
                Some(hint),
            );
            continue;
        }
        if let Some((_, first_line)) = seen.iter().find(|(d, _)| *d == directive) {
            errors.at(
                lineno,
                col,
                format!("`{directive}` is given twice (first on line {first_line})"),
            );
            continue;
        }
        seen.push((directive, lineno));
        let Some((&value, rest)) = args.split_first() else {
            let form = match directive {
                "name" => "NAMESPACE/NAME",
                "version" => "VERSION",
                "world" => "WORLD",
                "from" => "NAMESPACE/NAME [VERSION-PREFIX] or `from image REFERENCE`",
                _ => "an absolute path",
            };
            errors.at(lineno, col, format!("`{directive}` needs a value: {form}"));
            continue;
        };
        // Every directive but `from` takes exactly one value.
        if directive != "from" {
            if let Some(extra) = rest.first() {
                errors.at(
                    lineno,
                    extra.col,
                    format!(
                        "unexpected `{}` after `{directive} {}`",
                        extra.text, value.text
                    ),
                );
                continue;
            }
        }
        let v = value.text;
        match directive {
            "name" => match check_recipe_name(v) {
                Ok(()) => name = Some((lineno, col, v.to_string())),
                Err(m) => errors.at(lineno, value.col, m),
            },
            "version" => match check_version(v) {
                Ok(()) => version = Some((lineno, col, v.to_string())),
                Err(m) => errors.at(lineno, value.col, m),
            },
            "world" => match check_dns_label(v) {
                Ok(()) => world = Some((lineno, col, v.to_string())),
                Err(r) => errors.at(lineno, value.col, format!("invalid world name {v:?}: {r}")),
            },
            "copy" => {
                if !v.starts_with('/') {
                    errors.at(
                        lineno,
                        value.col,
                        format!("copy destination {v:?} must be an absolute path"),
                    );
                } else if v.split('/').any(|c| c == "..") {
                    errors.at(
                        lineno,
                        value.col,
                        format!("copy destination {v:?} must not contain `..`"),
                    );
                } else {
                    copy = Some((lineno, col, v.to_string()));
                }
            }
            _ => {
                if let Some(parent) = parse_from(&mut errors, lineno, value, rest) {
                    from = Some((lineno, col, parent));
                }
            }
        }
    }
    if let (Some((wl, wc, _)), Some((fl, fc, _))) = (&world, &from) {
        let (line, column) = (*wl, *wc).max((*fl, *fc));
        errors.at(
            line,
            column,
            format!("`world` (line {wl}) and `from` (line {fl}) exclude each other: the parent brings its world"),
        );
    }
    if let (Some((_, _, own)), Some((fl, _, Parent::Recipe { name: parent, .. }))) = (&name, &from)
    {
        if own == parent {
            // The column of the parent's name: after `from` and blanks.
            let col = column_of_word(lines[fl - 1], 1);
            errors.at(
                *fl,
                col,
                format!("recipe {own} cannot be built from itself"),
            );
        }
    }
    if !seen.iter().any(|(d, _)| *d == "name") && !misspelt.contains(&"name") {
        errors.at(1, 1, "the recipe has no `name NAMESPACE/NAME` line");
    }
    let mut script = None;
    match separator {
        None => errors.hinted(
            lines.len(),
            1,
            "no `---` line after the header",
            Some("the header must end with a line `---`, followed by the script".into()),
        ),
        Some((line, col)) => {
            let body = &lines[line..];
            let commands = body
                .iter()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
            if !commands {
                errors.at(
                    line,
                    col,
                    "the script after `---` is empty (only blank lines and comments)",
                );
            }
            for (i, l) in body.iter().enumerate() {
                if let Some(pos) = l.find('\0') {
                    errors.at(
                        line + 1 + i,
                        l[..pos].chars().count() + 1,
                        "the script holds a NUL byte",
                    );
                }
            }
            script = Some((body.join("\n"), line + 1));
        }
    }
    let mut list = errors.list;
    if !list.is_empty() {
        list.sort_by_key(|e| (e.line, e.column));
        return Err(RecipeErrors(list));
    }
    let (script, script_line) = script.expect("no errors, so a separator");
    Ok(Recipe {
        name: name.expect("no errors, so a name").2,
        version: version.map(|v| v.2),
        world: world.map(|v| v.2),
        from: from.map(|v| v.2),
        copy: copy.map(|v| v.2),
        script,
        script_line,
    })
}

/// The 1-based character column of word `index` of a header line.
fn column_of_word(line: &str, index: usize) -> usize {
    words(line)
        .ok()
        .and_then(|w| w.get(index).map(|w| w.col))
        .unwrap_or(1)
}

/// `from NAMESPACE/NAME [PREFIX]` or `from image REFERENCE`.
fn parse_from(
    errors: &mut Errors<'_>,
    line: usize,
    value: Word<'_>,
    rest: &[Word<'_>],
) -> Option<Parent> {
    if value.text == "image" {
        return match rest {
            [] => {
                errors.at(line, value.col, "`from image` needs an image reference");
                None
            }
            [r] => Some(Parent::Image(r.text.to_string())),
            [r, extra, ..] => {
                errors.at(
                    line,
                    extra.col,
                    format!(
                        "unexpected `{}` after the image reference `{}`",
                        extra.text, r.text
                    ),
                );
                None
            }
        };
    }
    if let Err(m) = check_recipe_name(value.text) {
        errors.at(line, value.col, m);
        return None;
    }
    let prefix = match rest {
        [] => None,
        [p] => match check_version(p.text) {
            Ok(()) => Some(p.text.to_string()),
            Err(m) => {
                errors.at(line, p.col, format!("version prefix: {m}"));
                return None;
            }
        },
        [p, extra, ..] => {
            errors.at(
                line,
                extra.col,
                format!(
                    "unexpected `{}` after the version prefix `{}`",
                    extra.text, p.text
                ),
            );
            return None;
        }
    };
    Some(Parent::Recipe {
        name: value.text.to_string(),
        prefix,
    })
}

impl Recipe {
    /// The part of [`Recipe::name`] before the slash.
    pub fn namespace(&self) -> &str {
        self.name.split_once('/').map_or("", |(ns, _)| ns)
    }

    /// The part of [`Recipe::name`] after the slash.
    pub fn short_name(&self) -> &str {
        self.name.split_once('/').map_or(&self.name, |(_, n)| n)
    }

    /// The build cache key: a sha256 (lowercase hex) over, each length-prefixed:
    ///
    /// - a format tag (`warren-recipe-v1`), the recipe's `name`;
    /// - the kind and name of its parent (`world W`, with an empty W for the host default,
    ///   `recipe NS/NAME` or `image REF`) and `parent_id`, the identity of what that parent
    ///   resolved to (a world's creation, a build's key, an image's id);
    /// - the `copy` destination and `dir_digest`, the caller's digest of the copied
    ///   directory's content;
    /// - the script, verbatim.
    ///
    /// Not covered: comments, spacing and directive order of the header (only parsed values
    /// count), the `version` (it only names the result), and a `from` version prefix (what it
    /// resolved to is in `parent_id`).
    pub fn cache_key(&self, parent_id: &str, dir_digest: &str) -> String {
        let mut h = Sha256::new();
        let parent = match &self.from {
            None => format!("world {}", self.world.as_deref().unwrap_or("")),
            Some(Parent::Image(r)) => format!("image {r}"),
            Some(Parent::Recipe { name, .. }) => format!("recipe {name}"),
        };
        for part in [
            "warren-recipe-v1",
            &self.name,
            &parent,
            parent_id,
            self.copy.as_deref().unwrap_or(""),
            dir_digest,
            &self.script,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// One component of a version: a run of digits, or anything else.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Component<'v> {
    // Declaration order is the order between kinds: text below the end marker below numbers.
    Text(&'v str),
    /// Where a shorter version has run out of components.
    End,
    /// Digits without leading zeros (empty for zero), compared by length, then as text.
    Number(usize, &'v str),
}

fn component(c: &str) -> Component<'_> {
    if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) {
        let digits = c.trim_start_matches('0');
        Component::Number(digits.len(), digits)
    } else {
        Component::Text(c)
    }
}

/// The version order described in the module docs.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut ca, mut cb) = (a.split(SEPARATORS), b.split(SEPARATORS));
    loop {
        let x = ca.next().map_or(Component::End, component);
        let y = cb.next().map_or(Component::End, component);
        if x == Component::End && y == Component::End {
            return a.cmp(b);
        }
        match x.cmp(&y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
}

/// Whether `version` matches `prefix` (see the module docs).
pub fn matches_prefix(prefix: &str, version: &str) -> bool {
    match version.strip_prefix(prefix) {
        None => false,
        Some(rest) => {
            rest.is_empty() || rest.starts_with(SEPARATORS) || prefix.ends_with(SEPARATORS)
        }
    }
}

/// The newest of `available` matching `prefix` (see the module docs); the newest of all when
/// `None`; `None` when nothing matches.
pub fn resolve_version<'a>(
    prefix: Option<&str>,
    available: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    available
        .into_iter()
        .filter(|v| prefix.is_none_or(|p| matches_prefix(p, v)))
        .max_by(|a, b| compare_versions(a, b))
}

#[cfg(test)]
mod tests;
