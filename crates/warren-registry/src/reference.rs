//! Image references: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`.
//!
//! The first `/`-separated component is the registry only when it looks like a host: it contains
//! `.` or `:`, is `localhost`, or is a bracketed IPv6 address. There is deliberately no default
//! registry: a reference without one parses (it may name a local image) but cannot be pulled.
//! Repository components follow the distribution specification's grammar
//! (`[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`), tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use warren_image::Digest;

/// The tag used when a reference names neither a tag nor a digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name the distribution specification allows (without the registry).
pub const MAX_REPOSITORY_LEN: usize = 255;
/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {problem}")]
pub struct ReferenceError {
    /// The text given.
    pub input: String,
    /// What is wrong with it, naming the part.
    pub problem: String,
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: Option<String>,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference; see the module documentation for the grammar.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let err = |problem: String| ReferenceError {
            input: input.to_string(),
            problem,
        };
        if input.is_empty() {
            return Err(err("it is empty".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!("it contains the character {c:?}")));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((left, right)) => {
                let digest: Digest = right
                    .parse()
                    .map_err(|_| err(format!("digest `{right}` is not sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")))?;
                (left, Some(digest))
            }
            None => (input, None),
        };
        // A tag follows the last `:` that comes after the last `/`.
        let last_slash = name_tag.rfind('/');
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if last_slash.is_none_or(|s| i > s) => {
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            _ => (name_tag, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest)) if looks_like_host(first) => (Some(first), rest),
            _ => (None, name),
        };
        if let Some(host) = registry {
            check_host(host).map_err(|p| err(format!("registry `{host}`: {p}")))?;
        } else if name.starts_with('[') || name.contains(':') {
            return Err(err(format!(
                "`{name}` looks like a registry but is followed by no repository: write HOST[:PORT]/REPO[:TAG]"
            )));
        }
        check_repository(repository).map_err(|p| err(format!("repository `{repository}`: {p}")))?;
        if let Some(t) = tag {
            check_tag(t).map_err(|p| err(format!("tag `{t}`: {p}")))?;
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.map(str::to_string),
            repository: repository.to_string(),
            tag,
            digest,
        })
    }

    /// The registry, `HOST[:PORT]` (IPv6 addresses in brackets), if the reference names one.
    pub fn registry(&self) -> Option<&str> {
        self.registry.as_deref()
    }

    /// The repository inside the registry, `team/app`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag: the one written, `latest` when neither a tag nor a digest was, `None` for a
    /// reference by digest alone.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry's manifest endpoint for: the digest if there is one (the tag is
    /// then only a name), else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The registry host without the port (IPv6 addresses without brackets).
    pub fn host(&self) -> Option<&str> {
        self.registry.as_deref().map(|r| split_host_port(r).0)
    }

    /// Whether the registry is on this machine: `localhost`, 127.0.0.0/8 or `::1`. Such
    /// registries may be reached over plain HTTP.
    pub fn is_loopback(&self) -> bool {
        self.host().is_some_and(is_loopback_host)
    }

    /// The name without the digest: `HOST/REPO:TAG`, or `HOST/REPO@DIGEST` when there is no
    /// tag. This is the name a pulled image is given.
    pub fn name(&self) -> String {
        let mut s = self.repo_with_registry();
        match (&self.tag, &self.digest) {
            (Some(t), _) => {
                s.push(':');
                s.push_str(t);
            }
            (None, Some(d)) => {
                s.push('@');
                s.push_str(&d.to_string());
            }
            (None, None) => {}
        }
        s
    }

    fn repo_with_registry(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.repository),
            None => self.repository.clone(),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    /// The canonical form: `HOST[:PORT]/REPO[:TAG][@DIGEST]`, with the default tag written out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo_with_registry())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn looks_like_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

/// Splits `host:port` / `[v6]:port` into the host (without brackets) and the port text.
pub(crate) fn split_host_port(registry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = registry.strip_prefix('[') {
        if let Some((v6, after)) = rest.split_once(']') {
            return (v6, after.strip_prefix(':'));
        }
        return (rest, None);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    }
}

/// Whether a host (without port or brackets) is this machine.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

fn check_host(registry: &str) -> Result<(), String> {
    let (host, port) = if registry.starts_with('[') {
        let Some(end) = registry.find(']') else {
            return Err("an IPv6 address needs a closing `]`".into());
        };
        let v6 = &registry[1..end];
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{v6}` is not an IPv6 address"));
        }
        let after = &registry[end + 1..];
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Err(format!("unexpected `{after}` after the IPv6 address")),
            },
        };
        (None, port)
    } else {
        let (h, p) = match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        };
        (Some(h), p)
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("port `{p}` is not a number from 1 to 65535")),
        }
    }
    if let Some(h) = host {
        if h.is_empty() {
            return Err("the host is empty".into());
        }
        if h.len() > 253 {
            return Err("the host name is longer than 253 characters".into());
        }
        if h.parse::<Ipv4Addr>().is_ok() {
            return Ok(());
        }
        for label in h.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "host label `{label}` must be 1-63 letters, digits or inner hyphens"
                ));
            }
        }
    }
    Ok(())
}

/// Checks a repository against the distribution specification's name grammar.
pub(crate) fn check_repository(repo: &str) -> Result<(), String> {
    if repo.is_empty() {
        return Err("the repository is empty".into());
    }
    if repo.len() > MAX_REPOSITORY_LEN {
        return Err(format!(
            "longer than {MAX_REPOSITORY_LEN} characters ({})",
            repo.len()
        ));
    }
    for component in repo.split('/') {
        check_component(component).map_err(|p| format!("component `{component}`: {p}"))?;
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty (doubled or trailing `/`)".into());
    }
    let bytes = c.as_bytes();
    if let Some(b) = bytes.iter().find(|b| {
        !(b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    }) {
        let ch = *b as char;
        return Err(if ch.is_ascii_uppercase() {
            "must be lowercase".into()
        } else {
            format!("`{ch}` is not allowed (only a-z, 0-9 and the separators . _ __ -)")
        });
    }
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return Err("must start and end with a letter or digit".into());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!(
                "separator `{sep}` is not allowed (use one of . _ __ or dashes)"
            ));
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("empty (drop the `:` or write a tag)".into());
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(format!("longer than {MAX_TAG_LEN} characters"));
    }
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let bytes = tag.as_bytes();
    if bytes[0] == b'.' || bytes[0] == b'-' {
        return Err("must start with a letter, digit or `_`".into());
    }
    if let Some(b) = bytes.iter().find(|b| !ok_char(**b)) {
        return Err(format!(
            "`{}` is not allowed (only letters, digits, `_`, `.` and `-`)",
            *b as char
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn parse(s: &str) -> Reference {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn registry_repository_tag_and_digest() {
        let r = parse("registry.example:5000/team/app:v1.2");
        assert_eq!(r.registry(), Some("registry.example:5000"));
        assert_eq!(r.host(), Some("registry.example"));
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1.2"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.manifest_reference(), "v1.2");
        assert_eq!(r.to_string(), "registry.example:5000/team/app:v1.2");

        let r = parse("localhost/app");
        assert_eq!(r.registry(), Some("localhost"));
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.to_string(), "localhost/app:latest");

        let r = parse(&format!("127.0.0.1:5000/app@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.name(), format!("127.0.0.1:5000/app@sha256:{HEX}"));
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/app@sha256:{HEX}"));

        let r = parse(&format!("reg.example/a/b/c:t@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("t"));
        assert_eq!(r.manifest_reference(), format!("sha256:{HEX}"));
        assert_eq!(r.name(), "reg.example/a/b/c:t");
        assert_eq!(r.to_string(), format!("reg.example/a/b/c:t@sha256:{HEX}"));

        let r = parse("[::1]:5000/app:1");
        assert_eq!(r.registry(), Some("[::1]:5000"));
        assert_eq!(r.host(), Some("::1"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "[::1]:5000/app:1");
    }

    #[test]
    fn first_component_is_a_host_only_when_it_looks_like_one() {
        let r = parse("team/app:1");
        assert_eq!(r.registry(), None);
        assert_eq!(r.repository(), "team/app");
        let r = parse("app");
        assert_eq!(r.registry(), None);
        assert_eq!(r.to_string(), "app:latest");
        let r = parse("my.registry/app");
        assert_eq!(r.registry(), Some("my.registry"));
        let r = parse("host:80/app");
        assert_eq!(r.registry(), Some("host:80"));
    }

    #[test]
    fn loopback_hosts() {
        for s in [
            "localhost:5000/a",
            "127.0.0.1/a",
            "127.8.9.10:1/a",
            "[::1]/a",
        ] {
            assert!(parse(s).is_loopback(), "{s}");
        }
        for s in [
            "example.com/a",
            "10.0.0.1:5000/a",
            "localhost.example/a",
            "[::2]/a",
            "a",
        ] {
            assert!(!parse(s).is_loopback(), "{s}");
        }
    }

    #[test]
    fn repository_grammar() {
        for ok in ["a", "a0/b-c", "a__b", "a_b.c", "a---b", "x/y/z/0"] {
            parse(&format!("r.example/{ok}"));
        }
        for (bad, why) in [
            ("r.example/App", "must be lowercase"),
            ("r.example/a//b", "empty"),
            ("r.example/a/", "empty"),
            ("r.example/-a", "start and end"),
            ("r.example/a.", "start and end"),
            ("r.example/a..b", "separator `..`"),
            ("r.example/a___b", "separator `___`"),
            ("r.example/a._b", "separator `._`"),
            ("r.example/a$b", "`$` is not allowed"),
            ("r.example/", "empty"),
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().contains("repository"), "{bad}: {e}");
        }
        let long = format!("r.example/{}", "a".repeat(256));
        assert!(Reference::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 255"));
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("r.example/app:", "tag ``: empty"),
            ("r.example/app:-x", "must start with"),
            ("r.example/app:a/b", "component `app:a`"),
            ("r.example/app:a+b", "`+` is not allowed"),
            ("r.example/app@sha256:abc", "digest `sha256:abc`"),
            ("r.example/app@md5:abc", "digest"),
            ("r.example/app@", "digest ``"),
            ("r.example:0/app", "port `0`"),
            ("r.example:99999/app", "port `99999`"),
            ("r.example:x/app", "port `x`"),
            ("bad_host.example/app", "host label `bad_host`"),
            ("-a.example/app", "host label `-a`"),
            ("[::1/app", "closing `]`"),
            ("[zz]:5000/app", "not an IPv6 address"),
            ("[::1]x/app", "unexpected `x`"),
            ("[::1]:5000", "followed by no repository"),
            ("r.example/app tag", "character ' '"),
            ("r.example/app\n", "character '\\n'"),
        ];
        for (input, needle) in cases {
            let e = Reference::parse(input).unwrap_err();
            assert_eq!(e.input, *input);
            assert!(e.to_string().contains(needle), "{input:?}: {e}");
        }
        let long_tag = format!("r.example/app:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let max_tag = format!("r.example/app:{}", "t".repeat(128));
        assert!(Reference::parse(&max_tag).is_ok());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "r.example/app:1",
            "localhost:5000/a/b:x_y.z-1",
            "[::1]:5000/app:latest",
            &format!("r.example/app@sha256:{HEX}"),
            &format!("r.example/app:v@sha256:{HEX}"),
        ] {
            let r = parse(s);
            assert_eq!(r.to_string(), s);
            assert_eq!(parse(&r.to_string()), r);
        }
    }
}
