//! Compose variable interpolation and `.env` files.
//!
//! [`interpolate`] substitutes `$NAME`, `${NAME}`, `${NAME:-default}` (unset or empty),
//! `${NAME-default}` (unset), `${NAME:?message}` / `${NAME?message}` (an error when unset or
//! empty / unset), `${NAME:+alternative}` / `${NAME+alternative}`, and `$$` for a literal `$`.
//! Defaults and alternatives are themselves interpolated, so `${A:-${B:-x}}` works. An unset
//! variable without a default becomes the empty string and is reported, as Compose does. A
//! `$` followed by anything else stays as written.
//!
//! [`parse_dotenv`] reads `.env` and `env_file` text: `KEY=VALUE` lines, `export ` allowed,
//! `#` comments (also after an unquoted value, after a blank), single-quoted values literal,
//! double-quoted values with `\n`, `\t`, `\"`, `\\` escapes; unquoted and double-quoted
//! values are interpolated with the variables known so far. A line that is only `KEY` sets
//! nothing.

use std::collections::BTreeMap;

/// A variable lookup: the process environment first, then the `.env` file.
pub(crate) type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// The result of interpolating one string: the text, and the variables that were unset
/// without a default.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Interpolated {
    pub text: String,
    pub unset: Vec<String>,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Substitutes variables in `s` (see the module docs). The error is the message only; the
/// caller knows where `s` came from.
pub(crate) fn interpolate(s: &str, vars: &Lookup<'_>) -> Result<Interpolated, String> {
    let mut out = Interpolated::default();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.text.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.text.push('$');
                i += 2;
            }
            Some('{') => {
                // Find the matching brace, counting nested `${`.
                let mut depth = 1;
                let mut j = i + 2;
                while j < chars.len() {
                    match chars[j] {
                        '$' if chars.get(j + 1) == Some(&'{') => {
                            depth += 1;
                            j += 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    return Err(format!(
                        "invalid interpolation in {s:?}: `${{` is never closed"
                    ));
                }
                let inner: String = chars[i + 2..j].iter().collect();
                braced(&inner, s, vars, &mut out)?;
                i = j + 1;
            }
            Some(&n) if is_name_start(n) => {
                let mut j = i + 1;
                while j < chars.len() && is_name_char(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                match vars(&name) {
                    Some(v) => out.text.push_str(&v),
                    None => out.unset.push(name),
                }
                i = j;
            }
            _ => {
                out.text.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// One `${...}` expression (without the braces).
fn braced(
    inner: &str,
    whole: &str,
    vars: &Lookup<'_>,
    out: &mut Interpolated,
) -> Result<(), String> {
    let name_len = inner
        .char_indices()
        .find(|(_, c)| !is_name_char(*c))
        .map_or(inner.len(), |(i, _)| i);
    let (name, rest) = inner.split_at(name_len);
    if name.is_empty() || !name.starts_with(is_name_start) {
        return Err(format!(
            "invalid interpolation in {whole:?}: `${{{inner}}}` does not start with a variable name"
        ));
    }
    let value = vars(name);
    let (op, arg) = if let Some(a) = rest.strip_prefix(":-") {
        (":-", a)
    } else if let Some(a) = rest.strip_prefix(":?") {
        (":?", a)
    } else if let Some(a) = rest.strip_prefix(":+") {
        (":+", a)
    } else if rest.is_empty() {
        ("", "")
    } else {
        match rest.split_at(1) {
            (o @ ("-" | "?" | "+"), a) => (o, a),
            _ => {
                return Err(format!(
                    "invalid interpolation in {whole:?}: unknown operator in `${{{inner}}}`; \
                     use :-, -, :?, ?, :+ or +"
                ))
            }
        }
    };
    let set = value.is_some();
    let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
    let expand = |text: &str, out: &mut Interpolated| -> Result<(), String> {
        let nested = interpolate(text, vars)?;
        out.text.push_str(&nested.text);
        out.unset.extend(nested.unset);
        Ok(())
    };
    match op {
        "" => match value {
            Some(v) => out.text.push_str(&v),
            None => out.unset.push(name.to_string()),
        },
        ":-" | "-" => {
            let use_default = if op == ":-" { !non_empty } else { !set };
            if use_default {
                expand(arg, out)?;
            } else {
                out.text.push_str(value.as_deref().unwrap_or(""));
            }
        }
        ":?" | "?" => {
            let missing = if op == ":?" { !non_empty } else { !set };
            if missing {
                let why = interpolate(arg, vars)?.text;
                return Err(if why.is_empty() {
                    format!("required variable {name} is not set")
                } else {
                    format!("required variable {name} is not set: {why}")
                });
            }
            out.text.push_str(value.as_deref().unwrap_or(""));
        }
        _ => {
            let use_alt = if op == ":+" { non_empty } else { set };
            if use_alt {
                expand(arg, out)?;
            }
        }
    }
    Ok(())
}

/// One problem in a `.env` file: 1-based line and column, and the message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DotenvError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses `.env` text into variables, in file order; values see the variables of the lines
/// before them and then `outer` (the process environment). See the module docs.
pub(crate) fn parse_dotenv(
    text: &str,
    outer: &Lookup<'_>,
) -> Result<Vec<(String, String)>, DotenvError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, indent) = match line.strip_prefix("export ") {
            Some(l) => (l.trim_start(), indent + line.len() - l.trim_start().len()),
            None => (line, indent),
        };
        let err = |column: usize, message: String| DotenvError {
            line: line_no,
            column: column + 1,
            message,
        };
        let Some((key, value)) = line.split_once('=') else {
            if line.chars().all(is_name_char) {
                continue;
            }
            return Err(err(indent, format!("expected KEY=VALUE, found {line:?}")));
        };
        let key = key.trim_end();
        if key.is_empty()
            || !key.starts_with(is_name_start)
            || !key.chars().all(|c| is_name_char(c) || c == '.' || c == '-')
        {
            return Err(err(indent, format!("invalid variable name {key:?}")));
        }
        let value_col = indent + key_len_with_eq(line) + value.len() - value.trim_start().len();
        let value = value.trim_start();
        let known = vars.clone();
        let lookup = |name: &str| {
            known
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| outer(name))
        };
        let parsed = if let Some(rest) = value.strip_prefix('\'') {
            match rest.find('\'') {
                Some(end) => rest[..end].to_string(),
                None => return Err(err(value_col, "unterminated single-quoted value".into())),
            }
        } else if let Some(rest) = value.strip_prefix('"') {
            let mut s = String::new();
            let mut chars = rest.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('t') => s.push('\t'),
                        Some('r') => s.push('\r'),
                        Some(other) => {
                            if !matches!(other, '"' | '\\' | '$') {
                                s.push('\\');
                            }
                            if other == '$' {
                                s.push_str("$$");
                            } else {
                                s.push(other);
                            }
                        }
                        None => s.push('\\'),
                    },
                    c => s.push(c),
                }
            }
            if !closed {
                return Err(err(value_col, "unterminated double-quoted value".into()));
            }
            interpolate(&s, &lookup)
                .map_err(|m| err(value_col, m))?
                .text
        } else {
            let cut = value.find(" #").or_else(|| value.find("\t#"));
            let bare = cut.map_or(value, |c| &value[..c]).trim_end();
            interpolate(bare, &lookup)
                .map_err(|m| err(value_col, m))?
                .text
        };
        vars.retain(|(k, _)| k != key);
        vars.push((key.to_string(), parsed));
    }
    Ok(vars)
}

/// Bytes up to and including the first `=`.
fn key_len_with_eq(line: &str) -> usize {
    line.find('=').map_or(line.len(), |i| i + 1)
}

/// The variables of a `.env` file as a map (later lines win).
pub(crate) fn dotenv_map(vars: Vec<(String, String)>) -> BTreeMap<String, String> {
    vars.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |n: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    fn run(s: &str, pairs: &[(&str, &str)]) -> Result<Interpolated, String> {
        interpolate(s, &with(pairs))
    }

    #[test]
    fn substitutes_every_form() {
        let vars = [("A", "a"), ("E", ""), ("PORT", "8080")];
        let cases = [
            ("${A}", "a"),
            ("$A-x", "a-x"),
            ("x${A}y", "xay"),
            ("${E:-d}", "d"),
            ("${E-d}", ""),
            ("${U:-d}", "d"),
            ("${U-d}", "d"),
            ("${A:-d}", "a"),
            ("${A:+alt}", "alt"),
            ("${E:+alt}", ""),
            ("${E+alt}", "alt"),
            ("${U+alt}", ""),
            ("${U:-${PORT}}", "8080"),
            ("${U:-${V:-deep}}", "deep"),
            ("$$A", "$A"),
            ("$${A}", "${A}"),
            ("cost: $5 and $", "cost: $5 and $"),
            ("${PORT}:80", "8080:80"),
        ];
        for (input, want) in cases {
            let got = run(input, &vars).unwrap();
            assert_eq!(got.text, want, "{input}");
        }
        assert_eq!(run("${U}x$W", &vars).unwrap().unset, vec!["U", "W"]);
        assert!(run("${U:-d}", &vars).unwrap().unset.is_empty());
    }

    #[test]
    fn required_and_malformed_are_errors() {
        let vars = [("E", "")];
        assert_eq!(
            run("${DB_PASS:?set DB_PASS in .env}", &vars).unwrap_err(),
            "required variable DB_PASS is not set: set DB_PASS in .env"
        );
        assert!(run("${E:?}", &vars)
            .unwrap_err()
            .contains("required variable E"));
        assert_eq!(run("${E?}", &vars).unwrap().text, "");
        assert!(run("${A", &vars).unwrap_err().contains("never closed"));
        assert!(run("${1A}", &vars).unwrap_err().contains("variable name"));
        assert!(run("${A/x/y}", &vars)
            .unwrap_err()
            .contains("unknown operator"));
    }

    #[test]
    fn dotenv_files() {
        let text = "# comment\n\nexport A=1\nB = two words # note\nC='lit ${A}'\nD=\"q ${A}\\n\"\nE=${B}-x\nF=a#b\nBARE\n";
        let vars = parse_dotenv(text, &with(&[])).unwrap();
        let m = dotenv_map(vars);
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "lit ${A}");
        assert_eq!(m["D"], "q 1\n");
        assert_eq!(m["E"], "two words-x");
        assert_eq!(m["F"], "a#b");
        assert!(!m.contains_key("BARE"));

        let e = parse_dotenv("A=1\n  B='open\n", &with(&[])).unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
        assert!(e.message.contains("unterminated"));
        let e = parse_dotenv("9X=1\n", &with(&[])).unwrap_err();
        assert_eq!((e.line, e.column), (1, 1));
        let e = parse_dotenv("just words here\n", &with(&[])).unwrap_err();
        assert!(e.message.contains("KEY=VALUE"));
    }
}
