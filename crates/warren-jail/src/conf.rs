//! The parameters of one jail: [`JailSpec`], rendered purely as a `jail.conf` fragment
//! ([`JailSpec::render_conf`]) and as `jail -c` arguments ([`JailSpec::create_args`]), and
//! parsed back from either form ([`parse_conf`], [`JailSpec::from_args`]).
//!
//! Quoting follows jail.conf(5): every string value is written in double quotes, where a
//! backslash escapes `\`, `"` and `$` (an unescaped `$` would start a `${variable}`
//! expansion). The parser also reads single-quoted strings (taken literally), unquoted
//! words, comma-separated lists, `+=` appends to `ip4.addr`, and `#`, `//` and `/* */`
//! comments; a `${variable}` or any parameter warren does not model is refused with its line.
//! Control characters are refused in every value, so a value never spans lines.
//!
//! On the command line every parameter is one argv element `name=value` (booleans as `name`
//! or `noname`), handed to jail(8) without a shell, so no quoting is needed there.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use crate::{invalid, JailError};

/// How a jail is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JailNet {
    /// `ip4=inherit`: the host's addresses (no network isolation).
    Inherit,
    /// `ip4=disable`: no IPv4 at all.
    Disable,
    /// `ip4.addr`: aliases on a host interface (`iface|addr/prefix`), added when the jail is
    /// created and removed with it.
    Alias {
        interface: String,
        addrs: Vec<(Ipv4Addr, u8)>,
    },
    /// `vnet`: its own network stack; `interface` (the jail side of an epair whose host side
    /// is a bridge member) is moved into it. Without one the jail has only `lo0`.
    Vnet { interface: Option<String> },
}

/// Everything `jail -c` needs for one warren jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSpec {
    /// The jail's name (`name`), also the block name in `jail.conf`.
    pub name: String,
    /// The root directory (`path`).
    pub path: PathBuf,
    /// `host.hostname`.
    pub hostname: String,
    pub net: JailNet,
    /// `allow.*` permissions granted, without the `allow.` prefix (`raw_sockets`,
    /// `mount.devfs`, ...). Those not listed are left at their default (denied).
    pub allow: BTreeSet<String>,
    /// `enforce_statfs`: 0, 1 or 2 (2: the jail sees only mounts below its root).
    pub enforce_statfs: u8,
    /// `devfs_ruleset`: the ruleset applied to the jail's `/dev`.
    pub devfs_ruleset: Option<u32>,
    /// `mount.devfs`: mount devfs on `<path>/dev` when the jail is created.
    pub mount_devfs: bool,
    /// `exec.start`: a command run by `/bin/sh -c` inside the jail at creation.
    pub exec_start: Option<String>,
    /// `exec.stop`: a command run inside the jail before it is removed.
    pub exec_stop: Option<String>,
    /// `persist`: the jail stays without processes.
    pub persist: bool,
    /// `children.max`: how many child jails it may create (0: none).
    pub children_max: u32,
}

impl JailSpec {
    /// A locked-down jail: no network, no `allow.*`, `enforce_statfs=2`, persistent, no
    /// children.
    pub fn new(name: &str, path: impl Into<PathBuf>, hostname: &str) -> JailSpec {
        JailSpec {
            name: name.to_string(),
            path: path.into(),
            hostname: hostname.to_string(),
            net: JailNet::Disable,
            allow: BTreeSet::new(),
            enforce_statfs: 2,
            devfs_ruleset: None,
            mount_devfs: false,
            exec_start: None,
            exec_stop: None,
            persist: true,
            children_max: 0,
        }
    }

    /// Checks every field; the error names the parameter.
    pub fn validate(&self) -> Result<(), JailError> {
        validate_name(&self.name)?;
        validate_path("path", &self.path)?;
        validate_hostname(&self.hostname)?;
        match &self.net {
            JailNet::Inherit | JailNet::Disable | JailNet::Vnet { interface: None } => {}
            JailNet::Vnet { interface: Some(i) } => validate_ifname("vnet.interface", i)?,
            JailNet::Alias { interface, addrs } => {
                validate_ifname("ip4.addr", interface)?;
                if addrs.is_empty() {
                    return Err(invalid("ip4.addr", "at least one address is needed"));
                }
                for (a, p) in addrs {
                    if *p > 32 {
                        return Err(invalid("ip4.addr", format!("{a}/{p}: prefix above 32")));
                    }
                }
            }
        }
        for a in &self.allow {
            validate_allow(a)?;
        }
        if self.enforce_statfs > 2 {
            return Err(invalid(
                "enforce_statfs",
                format!("{} is not 0, 1 or 2", self.enforce_statfs),
            ));
        }
        for (field, v) in [
            ("exec.start", &self.exec_start),
            ("exec.stop", &self.exec_stop),
        ] {
            if let Some(v) = v {
                validate_text(field, v)?;
                if v.trim().is_empty() {
                    return Err(invalid(field, "an empty command"));
                }
            }
        }
        Ok(())
    }

    /// The parameters in their canonical order, as `(name, value)`; `None` is a boolean set.
    fn params(&self) -> Vec<(String, Param)> {
        let mut p: Vec<(String, Param)> = vec![
            (
                "path".into(),
                Param::Str(self.path.to_string_lossy().into()),
            ),
            ("host.hostname".into(), Param::Str(self.hostname.clone())),
        ];
        match &self.net {
            JailNet::Inherit => p.push(("ip4".into(), Param::Word("inherit".into()))),
            JailNet::Disable => p.push(("ip4".into(), Param::Word("disable".into()))),
            JailNet::Alias { interface, addrs } => p.push((
                "ip4.addr".into(),
                Param::List(
                    addrs
                        .iter()
                        .map(|(a, pfx)| format!("{interface}|{a}/{pfx}"))
                        .collect(),
                ),
            )),
            JailNet::Vnet { interface } => {
                p.push(("vnet".into(), Param::Flag));
                if let Some(i) = interface {
                    p.push(("vnet.interface".into(), Param::Str(i.clone())));
                }
            }
        }
        for a in &self.allow {
            p.push((format!("allow.{a}"), Param::Flag));
        }
        p.push((
            "enforce_statfs".into(),
            Param::Num(self.enforce_statfs.into()),
        ));
        if let Some(r) = self.devfs_ruleset {
            p.push(("devfs_ruleset".into(), Param::Num(r.into())));
        }
        if self.mount_devfs {
            p.push(("mount.devfs".into(), Param::Flag));
        }
        if let Some(c) = &self.exec_start {
            p.push(("exec.start".into(), Param::Str(c.clone())));
        }
        if let Some(c) = &self.exec_stop {
            p.push(("exec.stop".into(), Param::Str(c.clone())));
        }
        p.push((
            if self.persist { "persist" } else { "nopersist" }.into(),
            Param::Flag,
        ));
        p.push(("children.max".into(), Param::Num(self.children_max.into())));
        p
    }

    /// The `jail.conf` fragment: one block named after the jail, one parameter a line.
    pub fn render_conf(&self) -> Result<String, JailError> {
        self.validate()?;
        let mut s = String::new();
        let _ = writeln!(s, "{} {{", self.name);
        for (name, value) in self.params() {
            match value {
                Param::Flag => {
                    let _ = writeln!(s, "\t{name};");
                }
                Param::Num(n) => {
                    let _ = writeln!(s, "\t{name} = {n};");
                }
                Param::Word(w) => {
                    let _ = writeln!(s, "\t{name} = {w};");
                }
                Param::Str(v) => {
                    let _ = writeln!(s, "\t{name} = {};", quote(&v));
                }
                Param::List(vs) => {
                    let list: Vec<String> = vs.iter().map(|v| quote(v)).collect();
                    let _ = writeln!(s, "\t{name} = {};", list.join(", "));
                }
            }
        }
        s.push_str("}\n");
        Ok(s)
    }

    /// The arguments after `jail -c`: `name=NAME` first, then the parameters in the order of
    /// the `jail.conf` fragment.
    pub fn create_args(&self) -> Result<Vec<String>, JailError> {
        self.validate()?;
        let mut args = vec![format!("name={}", self.name)];
        for (name, value) in self.params() {
            args.push(match value {
                Param::Flag => name,
                Param::Num(n) => format!("{name}={n}"),
                Param::Word(v) | Param::Str(v) => format!("{name}={v}"),
                Param::List(vs) => format!("{name}={}", vs.join(",")),
            });
        }
        Ok(args)
    }

    /// Reads `jail -c` arguments as [`JailSpec::create_args`] writes them.
    pub fn from_args(args: &[String]) -> Result<JailSpec, JailError> {
        let mut name = None;
        let mut params = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (a.as_str(), None),
            };
            if k == "name" {
                name = Some(v.unwrap_or_default().to_string());
                continue;
            }
            let values = match (k, v) {
                (_, None) => Vec::new(),
                ("ip4.addr", Some(v)) => v.split(',').map(str::to_string).collect(),
                (_, Some(v)) => vec![v.to_string()],
            };
            params.push(RawParam {
                line: i + 1,
                name: k.to_string(),
                values,
                append: false,
            });
        }
        let name = name.ok_or_else(|| invalid("name", "no name= argument"))?;
        from_params(&name, &params)
    }
}

/// How a parameter's value is written.
enum Param {
    Flag,
    Num(u64),
    /// A keyword (`inherit`, `disable`), written bare.
    Word(String),
    Str(String),
    List(Vec<String>),
}

/// A string in jail.conf double quotes.
pub fn quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

fn validate_text(field: &str, v: &str) -> Result<(), JailError> {
    if v.chars().any(|c| c.is_control()) {
        return Err(invalid(
            field,
            format!("{v:?} contains a control character"),
        ));
    }
    Ok(())
}

/// A jail name warren uses: 1 to 64 of `A-Za-z0-9_-`, not starting with `-`, not all digits
/// (a number names a jail by id), no `.` (which separates hierarchical jails).
pub fn validate_name(name: &str) -> Result<(), JailError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('-')
        && !name.chars().all(|c| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?}: use 1 to 64 letters, digits, '_' or '-', not starting with '-', not only digits"
            ),
        ))
    }
}

fn validate_path(field: &str, p: &Path) -> Result<(), JailError> {
    let s = p.to_string_lossy();
    validate_text(field, &s)?;
    if !p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::RootDir | Component::Normal(_)))
    {
        return Err(invalid(
            field,
            format!("{s:?} is not an absolute path without '.' or '..'"),
        ));
    }
    Ok(())
}

fn validate_hostname(h: &str) -> Result<(), JailError> {
    let ok = !h.is_empty()
        && h.len() <= 255
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "host.hostname",
            format!("{h:?} is not a host name (dot-separated labels of letters, digits and '-')"),
        ))
    }
}

/// An interface name: 1 to 15 of `A-Za-z0-9_.`, starting with a letter.
pub fn validate_ifname(field: &str, i: &str) -> Result<(), JailError> {
    let ok = !i.is_empty()
        && i.len() <= 15
        && i.starts_with(|c: char| c.is_ascii_alphabetic())
        && i.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{i:?} is not an interface name (1 to 15 letters, digits, '_' or '.')"),
        ))
    }
}

fn validate_allow(a: &str) -> Result<(), JailError> {
    let ok = !a.is_empty()
        && !a.starts_with("no")
        && a.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            format!("allow.{a}"),
            "not an allow.* permission name (lowercase words joined by '.', not starting with \"no\")",
        ))
    }
}

/// One parameter as read from a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawParam {
    line: usize,
    name: String,
    values: Vec<String>,
    append: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word or a quoted string (quoted strings may be empty).
    Word(String),
    Open,
    Close,
    Semi,
    Comma,
    Eq,
    PlusEq,
}

fn conf_err(line: usize, reason: impl Into<String>) -> JailError {
    JailError::Conf {
        line,
        reason: reason.into(),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, JailError> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                let start = line;
                i += 2;
                loop {
                    match chars.get(i) {
                        None => return Err(conf_err(start, "unterminated /* comment")),
                        Some('*') if chars.get(i + 1) == Some(&'/') => {
                            i += 2;
                            break;
                        }
                        Some('\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            '{' | '}' | ';' | ',' | '=' => {
                out.push((
                    line,
                    match c {
                        '{' => Tok::Open,
                        '}' => Tok::Close,
                        ';' => Tok::Semi,
                        ',' => Tok::Comma,
                        _ => Tok::Eq,
                    },
                ));
                i += 1;
            }
            '+' if chars.get(i + 1) == Some(&'=') => {
                out.push((line, Tok::PlusEq));
                i += 2;
            }
            '"' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(conf_err(start, "unterminated \"string\"")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(e @ ('\\' | '"' | '$' | '\'')) => {
                                s.push(*e);
                                i += 2;
                            }
                            Some(e) => {
                                return Err(conf_err(
                                    line,
                                    format!("unsupported escape \\{e} in a quoted string"),
                                ))
                            }
                            None => return Err(conf_err(start, "unterminated \"string\"")),
                        },
                        Some('$') => return Err(conf_err(
                            line,
                            "variable expansion ($) is not supported; write \\$ for a dollar sign",
                        )),
                        Some('\n') => {
                            return Err(conf_err(
                                start,
                                "unterminated string (a string does not span lines)",
                            ))
                        }
                        Some(c) if c.is_control() => {
                            return Err(conf_err(line, "a control character inside a string"))
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Word(s)));
            }
            '\'' => {
                let start = line;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(conf_err(start, "unterminated 'string'")),
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some('\n') => {
                            return Err(conf_err(
                                start,
                                "unterminated string (a string does not span lines)",
                            ))
                        }
                        Some(c) if c.is_control() => {
                            return Err(conf_err(line, "a control character inside a string"))
                        }
                        Some(c) => {
                            s.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push((start, Tok::Word(s)));
            }
            '$' => {
                return Err(conf_err(line, "variable expansion ($) is not supported"));
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.get(i) {
                    if c.is_whitespace()
                        || "{};,=\"'#$".contains(c)
                        || (c == '+' && chars.get(i + 1) == Some(&'='))
                    {
                        break;
                    }
                    if c == '\\' {
                        return Err(conf_err(line, "a backslash outside a quoted string"));
                    }
                    s.push(c);
                    i += 1;
                }
                out.push((line, Tok::Word(s)));
            }
        }
    }
    Ok(out)
}

/// Parses a `jail.conf` fragment holding exactly one jail block, as
/// [`JailSpec::render_conf`] writes it (comments, either quote style and any layout allowed).
pub fn parse_conf(text: &str) -> Result<JailSpec, JailError> {
    let toks = lex(text)?;
    let last_line = text.lines().count().max(1);
    let mut it = toks.into_iter().peekable();
    let (line, name) = match it.next() {
        Some((l, Tok::Word(w))) => (l, w),
        Some((l, t)) => return Err(conf_err(l, format!("expected a jail name, found {t:?}"))),
        None => return Err(conf_err(1, "no jail block")),
    };
    if !matches!(it.next(), Some((_, Tok::Open))) {
        return Err(conf_err(
            line,
            format!("expected '{{' after jail name {name:?}"),
        ));
    }
    let mut params: Vec<RawParam> = Vec::new();
    loop {
        let (pline, pname) = match it.next() {
            Some((_, Tok::Close)) => break,
            Some((l, Tok::Word(w))) => (l, w),
            Some((l, t)) => {
                return Err(conf_err(
                    l,
                    format!("expected a parameter name, found {t:?}"),
                ))
            }
            None => return Err(conf_err(last_line, format!("jail {name:?}: missing '}}'"))),
        };
        if pname.is_empty() {
            return Err(conf_err(pline, "an empty parameter name"));
        }
        match it.next() {
            Some((_, Tok::Semi)) => params.push(RawParam {
                line: pline,
                name: pname,
                values: Vec::new(),
                append: false,
            }),
            Some((_, op @ (Tok::Eq | Tok::PlusEq))) => {
                let mut values = Vec::new();
                loop {
                    match it.next() {
                        Some((_, Tok::Word(v))) => values.push(v),
                        Some((l, t)) => {
                            return Err(conf_err(
                                l,
                                format!("{pname}: expected a value, found {t:?}"),
                            ))
                        }
                        None => return Err(conf_err(pline, format!("{pname}: missing value"))),
                    }
                    match it.next() {
                        Some((_, Tok::Comma)) => continue,
                        Some((_, Tok::Semi)) => break,
                        Some((l, t)) => {
                            return Err(conf_err(
                                l,
                                format!("{pname}: expected ',' or ';', found {t:?}"),
                            ))
                        }
                        None => return Err(conf_err(pline, format!("{pname}: missing ';'"))),
                    }
                }
                params.push(RawParam {
                    line: pline,
                    name: pname,
                    values,
                    append: op == Tok::PlusEq,
                });
            }
            Some((l, t)) => {
                return Err(conf_err(
                    l,
                    format!("{pname}: expected '=', '+=' or ';', found {t:?}"),
                ))
            }
            None => return Err(conf_err(pline, format!("{pname}: missing ';'"))),
        }
    }
    if let Some((l, t)) = it.next() {
        return Err(conf_err(
            l,
            format!("{t:?} after the jail block: a fragment holds one jail"),
        ));
    }
    from_params(&name, &params).map_err(|e| match e {
        JailError::Invalid { field, reason } => {
            let line = params
                .iter()
                .find(|p| p.name == field || field.starts_with(&p.name))
                .map(|p| p.line)
                .unwrap_or(line);
            conf_err(line, format!("{field}: {reason}"))
        }
        other => other,
    })
}

fn from_params(name: &str, params: &[RawParam]) -> Result<JailSpec, JailError> {
    let err = |p: &RawParam, r: String| conf_err(p.line, format!("{}: {r}", p.name));
    let mut spec = JailSpec::new(name, "/", "localhost");
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let (mut path, mut hostname) = (None, None);
    let mut net: Option<JailNet> = None;
    let mut vnet_if: Option<String> = None;
    let mut persist = None;
    for p in params {
        let n = p.name.as_str();
        let appending = p.append && n == "ip4.addr";
        if !appending && !seen.insert(n) {
            return Err(err(p, "given twice".into()));
        }
        if p.append && n != "ip4.addr" {
            return Err(err(p, "'+=' is only supported for ip4.addr".into()));
        }
        let flag = |p: &RawParam| -> Result<(), JailError> {
            if p.values.is_empty() {
                Ok(())
            } else {
                Err(err(p, "a boolean takes no value".into()))
            }
        };
        let one = |p: &RawParam| -> Result<String, JailError> {
            match p.values.as_slice() {
                [v] => Ok(v.clone()),
                _ => Err(err(p, "expects exactly one value".into())),
            }
        };
        let num = |p: &RawParam| -> Result<u64, JailError> {
            let v = one(p)?;
            v.parse::<u64>()
                .map_err(|_| err(p, format!("{v:?} is not a non-negative number")))
        };
        match n {
            "path" => path = Some(PathBuf::from(one(p)?)),
            "host.hostname" => hostname = Some(one(p)?),
            "ip4" => {
                let v = one(p)?;
                let new = match v.as_str() {
                    "inherit" => JailNet::Inherit,
                    "disable" => JailNet::Disable,
                    _ => return Err(err(p, format!("{v:?}: expected inherit or disable"))),
                };
                if net.is_some() {
                    return Err(err(p, "conflicts with another network parameter".into()));
                }
                net = Some(new);
            }
            "ip4.addr" => {
                if p.values.is_empty() {
                    return Err(err(p, "expects addresses".into()));
                }
                let (mut iface, mut addrs) = match net.take() {
                    Some(JailNet::Alias { interface, addrs }) => (Some(interface), addrs),
                    None => (None, Vec::new()),
                    Some(_) => {
                        return Err(err(p, "conflicts with another network parameter".into()))
                    }
                };
                for v in &p.values {
                    let (i, rest) = v
                        .split_once('|')
                        .ok_or_else(|| err(p, format!("{v:?}: expected IFACE|ADDR/PREFIX")))?;
                    let (a, pfx) = rest
                        .split_once('/')
                        .ok_or_else(|| err(p, format!("{v:?}: expected IFACE|ADDR/PREFIX")))?;
                    let a: Ipv4Addr = a
                        .parse()
                        .map_err(|_| err(p, format!("{a:?} is not an IPv4 address")))?;
                    let pfx: u8 =
                        pfx.parse().ok().filter(|x| *x <= 32).ok_or_else(|| {
                            err(p, format!("{pfx:?} is not a prefix length 0-32"))
                        })?;
                    match &iface {
                        Some(x) if x != i => {
                            return Err(err(
                                p,
                                "every address must be on the same interface".into(),
                            ))
                        }
                        _ => iface = Some(i.to_string()),
                    }
                    addrs.push((a, pfx));
                }
                net = Some(JailNet::Alias {
                    interface: iface.unwrap_or_default(),
                    addrs,
                });
            }
            "vnet" => {
                flag(p)?;
                if net.is_some() {
                    return Err(err(p, "conflicts with another network parameter".into()));
                }
                net = Some(JailNet::Vnet { interface: None });
            }
            "vnet.interface" => vnet_if = Some(one(p)?),
            "enforce_statfs" => {
                spec.enforce_statfs = u8::try_from(num(p)?)
                    .ok()
                    .filter(|x| *x <= 2)
                    .ok_or_else(|| err(p, "expected 0, 1 or 2".into()))?
            }
            "devfs_ruleset" => {
                spec.devfs_ruleset =
                    Some(u32::try_from(num(p)?).map_err(|_| err(p, "above 4294967295".into()))?)
            }
            "mount.devfs" => {
                flag(p)?;
                spec.mount_devfs = true;
            }
            "exec.start" => spec.exec_start = Some(one(p)?),
            "exec.stop" => spec.exec_stop = Some(one(p)?),
            "persist" | "nopersist" => {
                flag(p)?;
                if persist.is_some() {
                    return Err(err(p, "persist given twice".into()));
                }
                persist = Some(n == "persist");
            }
            "children.max" => {
                spec.children_max =
                    u32::try_from(num(p)?).map_err(|_| err(p, "above 4294967295".into()))?
            }
            _ if n.starts_with("allow.") => {
                flag(p)?;
                let a = &n["allow.".len()..];
                validate_allow(a).map_err(|e| err(p, e.to_string()))?;
                spec.allow.insert(a.to_string());
            }
            _ => return Err(err(p, "not a parameter warren manages".into())),
        }
    }
    spec.path = path.ok_or_else(|| conf_err(1, format!("jail {name:?}: no path")))?;
    spec.hostname =
        hostname.ok_or_else(|| conf_err(1, format!("jail {name:?}: no host.hostname")))?;
    spec.net = match (net, vnet_if) {
        (Some(JailNet::Vnet { .. }), i) => JailNet::Vnet { interface: i },
        (_, Some(_)) => {
            let p = params
                .iter()
                .find(|p| p.name == "vnet.interface")
                .expect("seen");
            return Err(err(p, "needs vnet".into()));
        }
        (Some(n), None) => n,
        (None, None) => {
            return Err(conf_err(
                1,
                format!("jail {name:?}: no ip4 or vnet parameter"),
            ))
        }
    };
    spec.persist = persist.unwrap_or(false);
    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> JailSpec {
        let mut s = JailSpec::new("warren-web", "/srv/warren/workloads/web/rootfs", "web");
        s.net = JailNet::Vnet {
            interface: Some("wj0badf00db".into()),
        };
        s.allow.insert("raw_sockets".into());
        s.devfs_ruleset = Some(4711);
        s.mount_devfs = true;
        s.exec_stop = Some("/bin/sh /etc/rc.shutdown jail".into());
        s
    }

    #[test]
    fn renders_conf_fragment() {
        assert_eq!(
            web().render_conf().unwrap(),
            "warren-web {\n\
             \tpath = \"/srv/warren/workloads/web/rootfs\";\n\
             \thost.hostname = \"web\";\n\
             \tvnet;\n\
             \tvnet.interface = \"wj0badf00db\";\n\
             \tallow.raw_sockets;\n\
             \tenforce_statfs = 2;\n\
             \tdevfs_ruleset = 4711;\n\
             \tmount.devfs;\n\
             \texec.stop = \"/bin/sh /etc/rc.shutdown jail\";\n\
             \tpersist;\n\
             \tchildren.max = 0;\n\
             }\n"
        );
    }

    #[test]
    fn renders_create_args() {
        let mut s = web();
        s.net = JailNet::Alias {
            interface: "em0".into(),
            addrs: vec![
                ("192.0.2.7".parse().unwrap(), 24),
                ("192.0.2.8".parse().unwrap(), 32),
            ],
        };
        assert_eq!(
            s.create_args().unwrap().join(" "),
            "name=warren-web path=/srv/warren/workloads/web/rootfs host.hostname=web \
             ip4.addr=em0|192.0.2.7/24,em0|192.0.2.8/32 allow.raw_sockets enforce_statfs=2 \
             devfs_ruleset=4711 mount.devfs exec.stop=/bin/sh /etc/rc.shutdown jail persist \
             children.max=0"
        );
        assert_eq!(JailSpec::from_args(&s.create_args().unwrap()).unwrap(), s);
    }

    #[test]
    fn quoting_escapes_backslash_quote_and_dollar() {
        assert_eq!(quote(r#"a "b" \c $HOME"#), r#""a \"b\" \\c \$HOME""#);
        let mut s = web();
        s.exec_start = Some(r#"echo "it's $HOME" \ ; } { # // /*"#.into());
        s.path = PathBuf::from("/srv/my jails/{web}; #1");
        let text = s.render_conf().unwrap();
        assert_eq!(parse_conf(&text).unwrap(), s);
    }

    #[test]
    fn parses_hand_written_fragment() {
        let text = "# warren's web jail\n\
                    warren-web {\n\
                    \tpath = '/jails/web';   // literal\n\
                    \thost.hostname = web.example;\n\
                    \t/* two\n addresses */ ip4.addr = \"em0|192.0.2.7/24\";\n\
                    \tip4.addr += 'em0|192.0.2.8/32';\n\
                    \tnopersist;\n\
                    \tallow.mount.devfs;\n\
                    }\n";
        let s = parse_conf(text).unwrap();
        assert_eq!(s.path, PathBuf::from("/jails/web"));
        assert_eq!(s.hostname, "web.example");
        assert_eq!(
            s.net,
            JailNet::Alias {
                interface: "em0".into(),
                addrs: vec![
                    ("192.0.2.7".parse().unwrap(), 24),
                    ("192.0.2.8".parse().unwrap(), 32)
                ]
            }
        );
        assert!(!s.persist);
        assert!(s.allow.contains("mount.devfs"));
    }

    #[test]
    fn malformed_fragments_name_the_line() {
        let cases: &[(&str, &str)] = &[
            ("", "line 1: no jail block"),
            ("web {\n path = \"/x\";\n", "missing '}'"),
            ("web {\n path = \"/x\"\n host.hostname = h;\n}\n", "line 3: path: expected ',' or ';'"),
            ("web {\n path = \"/x\";\n host.hostname = \"${name}\";\n}\n", "line 3: variable expansion"),
            ("web {\n path = \"/x\";\n host.hostname = h;\n ip4 = inherit;\n securelevel = 3;\n}\n", "line 5: securelevel: not a parameter warren manages"),
            ("web {\n path = \"/x\";\n path = \"/y\";\n}\n", "line 3: path: given twice"),
            ("web {\n path = \"relative\";\n host.hostname = h;\n ip4 = inherit;\n}\n", "line 2: path"),
            ("web {\n path = \"/x\";\n host.hostname = h;\n ip4 = inherit;\n enforce_statfs = 3;\n}\n", "line 5: enforce_statfs: expected 0, 1 or 2"),
            ("web {\n path = \"/x\";\n host.hostname = h;\n vnet.interface = e0b;\n ip4 = inherit;\n}\n", "line 4: vnet.interface: needs vnet"),
            ("web {\n path = \"/x\";\n host.hostname = h;\n ip4 = inherit;\n}\nother { }\n", "line 6"),
            ("web {\n path = \"/x\\n\";\n}\n", "line 2: unsupported escape \\n"),
            ("web {\n path = \"/x;\n}\n", "line 2: unterminated"),
            ("web {\n path = \"/x\";\n host.hostname = h;\n ip4.addr = \"em0|10.0.0.1/33\";\n}\n", "line 4: ip4.addr"),
            ("1 {\n path = \"/x\";\n host.hostname = h;\n ip4 = inherit;\n}\n", "name"),
        ];
        for (text, want) in cases {
            let e = parse_conf(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e} (wanted {want:?})");
        }
    }

    #[test]
    fn hostile_values_are_refused() {
        let mut s = web();
        s.exec_start = Some("echo hi\nrm -rf /".into());
        assert!(s
            .render_conf()
            .unwrap_err()
            .to_string()
            .contains("exec.start"));
        let mut s = web();
        s.name = "web.sub".into();
        assert!(s.create_args().unwrap_err().to_string().contains("name"));
        let mut s = web();
        s.path = PathBuf::from("/jails/../etc");
        assert!(s.render_conf().unwrap_err().to_string().contains("path"));
        let mut s = web();
        s.allow.insert("noraw_sockets".into());
        assert!(s
            .render_conf()
            .unwrap_err()
            .to_string()
            .contains("allow.noraw_sockets"));
        let mut s = web();
        s.net = JailNet::Vnet {
            interface: Some("epair0b;rm".into()),
        };
        assert!(s
            .render_conf()
            .unwrap_err()
            .to_string()
            .contains("vnet.interface"));
    }
}
