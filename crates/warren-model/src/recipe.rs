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
//! [`parse`] checks everything it can without the host and reports each problem as
//! `FILE:LINE:COLUMN: message`, with a did-you-mean hint for misspelt directives.
//! [`resolve_version`] picks the newest version matching a prefix: `2.1` matches `2.1` and
//! `2.1.x` (never `2.10`). Versions compare component by component (split at `.`, `-`, `+`,
//! `_`): numbers numerically, other components as text, a number above text
//! (`2.1.10 > 2.1.9`). When one version is the other plus more components, a numeric extra
//! component makes it newer (`1.0.1 > 1.0`) and a textual one older, a pre-release
//! (`1.0 > 1.0-rc1`).

use std::cmp::Ordering;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::names::check_dns_label;

/// The parent a recipe builds on.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// `namespace/name`.
    pub name: String,
    pub version: Option<String>,
    pub world: Option<String>,
    pub from: Option<Parent>,
    /// Absolute destination of the recipe directory's copy inside the new layer.
    pub copy: Option<String>,
    /// The script after `---`, verbatim.
    pub script: String,
    /// 1-based line where the script starts.
    pub script_line: usize,
}

/// One problem in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// All problems of a recipe, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeErrors(pub Vec<RecipeError>);

impl fmt::Display for RecipeErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RecipeErrors {}

const DIRECTIVES: &[&str] = &["name", "version", "world", "from", "copy"];

/// Checks a version string: 1-64 of `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
pub fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.starts_with(|c: char| c.is_ascii_alphanumeric())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version {v:?}: 1-64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit"
        ))
    }
}

/// Checks `namespace/name`.
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
    pub name: String,
    pub prefix: Option<String>,
}

/// Parses `ns/name` or `ns/name PREFIX`.
pub fn parse_recipe_ref(s: &str) -> Result<RecipeRef, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [name] => {
            check_recipe_name(name)?;
            Ok(RecipeRef {
                name: name.to_string(),
                prefix: None,
            })
        }
        [name, prefix] => {
            check_recipe_name(name)?;
            check_version(prefix)?;
            Ok(RecipeRef {
                name: name.to_string(),
                prefix: Some(prefix.to_string()),
            })
        }
        _ => Err(format!(
            "recipe reference {s:?} must be \"NAMESPACE/NAME\" or \"NAMESPACE/NAME VERSION-PREFIX\""
        )),
    }
}

fn suggest(word: &str) -> Option<&'static str> {
    DIRECTIVES
        .iter()
        .copied()
        .filter(|d| crate::parse::suggest::edit_distance(word, d) <= 2)
        .min_by_key(|d| crate::parse::suggest::edit_distance(word, d))
}

/// Parses a recipe; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Recipe, RecipeErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut errors = Vec::new();
    let mut err = |line: usize, column: usize, message: String| {
        errors.push(RecipeError {
            file: file.to_string(),
            line,
            column,
            message,
        })
    };
    let mut seen: Vec<(&str, usize)> = Vec::new();
    let (mut name, mut version, mut world, mut from, mut copy) = (None, None, None, None, None);
    let mut script: Option<(String, usize)> = None;
    let lines: Vec<&str> = text.split('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i].strip_suffix('\r').unwrap_or(lines[i]);
        let lineno = i + 1;
        i += 1;
        if raw.trim() == "---" {
            let rest: Vec<&str> = lines[i..].to_vec();
            script = Some((rest.join("\n"), lineno + 1));
            break;
        }
        let content = raw.split('#').next().unwrap_or("");
        // Words with their 1-based columns.
        let mut words: Vec<(usize, &str)> = Vec::new();
        let mut start = None;
        for (pos, c) in content.char_indices().chain([(content.len(), ' ')]) {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(pos),
                (true, Some(s)) => {
                    words.push((s + 1, &content[s..pos]));
                    start = None;
                }
                _ => {}
            }
        }
        let Some(&(col, directive)) = words.first() else {
            continue;
        };
        let args = &words[1..];
        if !DIRECTIVES.contains(&directive) {
            let hint = match suggest(directive) {
                Some(d) => format!("; did you mean `{d}`?"),
                None => format!("; expected one of {}", DIRECTIVES.join(", ")),
            };
            err(
                lineno,
                col,
                format!("unknown directive `{directive}`{hint}"),
            );
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(d, _)| *d == directive) {
            err(
                lineno,
                col,
                format!("`{directive}` is given twice (first on line {first})"),
            );
            continue;
        }
        seen.push((directive, lineno));
        let want = if directive == "from" { 1..=3 } else { 1..=1 };
        if args.is_empty() {
            err(lineno, col, format!("`{directive}` needs a value"));
            continue;
        }
        if !want.contains(&args.len()) {
            let (c, w) = args[*want.end()..].first().copied().unwrap_or(args[0]);
            err(lineno, c, format!("unexpected `{w}` after `{directive}`"));
            continue;
        }
        let (vcol, value) = args[0];
        match directive {
            "name" => match check_recipe_name(value) {
                Ok(()) => name = Some(value.to_string()),
                Err(m) => err(lineno, vcol, m),
            },
            "version" => match check_version(value) {
                Ok(()) => version = Some(value.to_string()),
                Err(m) => err(lineno, vcol, m),
            },
            "world" => match check_dns_label(value) {
                Ok(()) => world = Some((lineno, value.to_string())),
                Err(r) => err(lineno, vcol, format!("invalid world name {value:?}: {r}")),
            },
            "copy" => {
                if !value.starts_with('/') {
                    err(
                        lineno,
                        vcol,
                        format!("copy destination {value:?} must be absolute"),
                    );
                } else if value.split('/').any(|c| c == "..") {
                    err(
                        lineno,
                        vcol,
                        format!("copy destination {value:?} must not contain .."),
                    );
                } else {
                    copy = Some(value.to_string());
                }
            }
            _ => {
                // from NS/NAME [PREFIX] | from image REF
                if value == "image" {
                    match args.get(1) {
                        Some((_, r)) if args.len() == 2 => {
                            from = Some((lineno, Parent::Image(r.to_string())))
                        }
                        Some(_) => err(
                            lineno,
                            args[2].0,
                            format!("unexpected `{}` after the image reference", args[2].1),
                        ),
                        None => err(lineno, vcol, "`from image` needs an image reference".into()),
                    }
                } else if args.len() > 2 {
                    err(
                        lineno,
                        args[2].0,
                        format!("unexpected `{}` after the version prefix", args[2].1),
                    );
                } else {
                    let prefix = args.get(1).map(|(c, p)| (*c, p.to_string()));
                    match (check_recipe_name(value), &prefix) {
                        (Err(m), _) => err(lineno, vcol, m),
                        (Ok(()), Some((c, p))) if check_version(p).is_err() => {
                            err(lineno, *c, check_version(p).unwrap_err())
                        }
                        _ => {
                            from = Some((
                                lineno,
                                Parent::Recipe {
                                    name: value.to_string(),
                                    prefix: prefix.map(|(_, p)| p),
                                },
                            ))
                        }
                    }
                }
            }
        }
    }
    if let (Some((wl, _)), Some((fl, _))) = (&world, &from) {
        err(
            (*wl).max(*fl),
            1,
            format!(
                "`world` (line {wl}) and `from` (line {fl}) exclude each other: the parent brings its world"
            ),
        );
    }
    let last = lines.len();
    if name.is_none() && !seen.iter().any(|(d, _)| *d == "name") {
        err(1, 1, "the recipe has no `name NAMESPACE/NAME` line".into());
    }
    match &script {
        None => err(
            last,
            1,
            "no `---` line: the header must end with `---` and the script follow".into(),
        ),
        Some((s, line)) if s.trim().is_empty() => {
            err(*line - 1, 1, "the script after `---` is empty".into())
        }
        _ => {}
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| (e.line, e.column));
        return Err(RecipeErrors(errors));
    }
    let (script, script_line) = script.expect("checked");
    Ok(Recipe {
        name: name.expect("checked"),
        version,
        world: world.map(|(_, w)| w),
        from: from.map(|(_, f)| f),
        copy,
        script,
        script_line,
    })
}

impl Recipe {
    /// The build cache key: sha256 (hex) over the recipe's meaning (name, world, parent, copy
    /// destination and the script verbatim — not comments or spacing of the header, not the
    /// version, which only names the result), the identity of what the parent resolved to,
    /// and a digest of the copied directory's content.
    pub fn cache_key(&self, parent_id: &str, dir_digest: &str) -> String {
        let mut h = Sha256::new();
        let parent = match &self.from {
            None => format!("world {}", self.world.as_deref().unwrap_or("")),
            Some(Parent::Image(r)) => format!("image {r}"),
            Some(Parent::Recipe { name, prefix }) => {
                format!("recipe {name} {}", prefix.as_deref().unwrap_or(""))
            }
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

fn components(v: &str) -> Vec<&str> {
    v.split(['.', '-', '+', '_']).collect()
}

/// The version order described in the module docs.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (ca, cb) = (components(a), components(b));
    for (x, y) in ca.iter().zip(&cb) {
        let o = match (x.parse::<u128>(), y.parse::<u128>()) {
            (Ok(p), Ok(q)) => p.cmp(&q),
            (Ok(_), Err(_)) => Ordering::Greater,
            (Err(_), Ok(_)) => Ordering::Less,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    // One is a prefix of the other: a following textual component is a pre-release.
    let tail_rank = |rest: &[&str]| match rest.first() {
        None => Ordering::Equal,
        Some(c) if c.parse::<u128>().is_ok() => Ordering::Greater,
        Some(_) => Ordering::Less,
    };
    let o = match ca.len().cmp(&cb.len()) {
        Ordering::Greater => tail_rank(&ca[cb.len()..]),
        Ordering::Less => tail_rank(&cb[ca.len()..]).reverse(),
        Ordering::Equal => Ordering::Equal,
    };
    // Distinct strings that compare equal (`1.0` vs `1-0`) are ordered as text.
    o.then_with(|| a.cmp(b))
}

/// The newest of `available` matching `prefix` (see the module docs); all when `None`.
pub fn resolve_version<'a>(
    prefix: Option<&str>,
    available: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    available
        .into_iter()
        .filter(|v| match prefix {
            None => true,
            Some(p) => {
                *v == p
                    || v.strip_prefix(p)
                        .is_some_and(|r| r.starts_with(['.', '-', '+', '_']))
            }
        })
        .max_by(|a, b| compare_versions(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# Ruby on the common base\nname lang/ruby   # the result\nversion 2.1.1\nfrom lang/common 1.0\ncopy /src\n---\napt-get install -y ruby\necho done\n";

    #[test]
    fn a_full_recipe_parses() {
        let r = parse(GOOD, "Warrenfile").unwrap();
        assert_eq!(r.name, "lang/ruby");
        assert_eq!(r.version.as_deref(), Some("2.1.1"));
        assert_eq!(
            r.from,
            Some(Parent::Recipe {
                name: "lang/common".into(),
                prefix: Some("1.0".into())
            })
        );
        assert_eq!(r.copy.as_deref(), Some("/src"));
        assert_eq!(r.script, "apt-get install -y ruby\necho done\n");
        assert_eq!(r.script_line, 7);
        let crlf = GOOD.replace('\n', "\r\n");
        let r2 = parse(&format!("\u{feff}{crlf}"), "W").unwrap();
        assert_eq!(r2.name, r.name);
        let img = parse("name a/b\nfrom image app:v1\n---\ntrue\n", "W").unwrap();
        assert_eq!(img.from, Some(Parent::Image("app:v1".into())));
        let bare = parse("name a/b\n---\ntrue\n", "W").unwrap();
        assert_eq!((bare.world, bare.from, bare.version), (None, None, None));
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text, "W")
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn bad_recipes_get_line_numbered_errors() {
        let cases: &[(&str, &str)] = &[
            ("name a/b\nverison 1\n---\ntrue\n", "W:2:1: unknown directive `verison`; did you mean `version`?"),
            ("name a/b\nbogus x\n---\ntrue\n", "W:2:1: unknown directive `bogus`; expected one of name, version, world, from, copy"),
            ("name ab\n---\ntrue\n", "W:1:6: recipe name \"ab\" must be NAMESPACE/NAME (exactly one slash)"),
            ("name a/b/c\n---\ntrue\n", "W:1:6: recipe name \"a/b/c\" must be NAMESPACE/NAME (exactly one slash)"),
            ("name a/b\nname c/d\n---\ntrue\n", "W:2:1: `name` is given twice (first on line 1)"),
            ("name a/b\nversion\n---\ntrue\n", "W:2:1: `version` needs a value"),
            ("name a/b\nversion 1 2\n---\ntrue\n", "W:2:11: unexpected `2` after `version`"),
            ("name a/b\nversion 1/2\n---\ntrue\n", "W:2:9: invalid version \"1/2\": 1-64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit"),
            ("name a/b\ncopy src\n---\ntrue\n", "W:2:6: copy destination \"src\" must be absolute"),
            ("name a/b\ncopy /a/../b\n---\ntrue\n", "W:2:6: copy destination \"/a/../b\" must not contain .."),
            ("name a/b\nworld debian\nfrom c/d\n---\ntrue\n", "W:3:1: `world` (line 2) and `from` (line 3) exclude each other: the parent brings its world"),
            ("name a/b\n", "W:2:1: no `---` line: the header must end with `---` and the script follow"),
            ("name a/b\n---\n  \n", "W:2:1: the script after `---` is empty"),
            ("version 1\n---\ntrue\n", "W:1:1: the recipe has no `name NAMESPACE/NAME` line"),
            ("name a/b\nfrom c/d 1 2\n---\ntrue\n", "W:2:12: unexpected `2` after the version prefix"),
            ("name a/b\nfrom image\n---\ntrue\n", "W:2:6: `from image` needs an image reference"),
            ("name a/b\nworld Bad\n---\ntrue\n", "W:2:7: invalid world name \"Bad\":"),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert!(
                got.iter().any(|g| g.starts_with(want)),
                "{text:?}: want {want:?}, got {got:?}"
            );
        }
        // Every problem is reported, in line order.
        let got = errors("bogus\nname x\n");
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[0].starts_with("W:1:1") && got[1].starts_with("W:2:6"));
    }

    #[test]
    fn cache_key_follows_meaning_not_formatting() {
        let r = parse(GOOD, "W").unwrap();
        let k = r.cache_key("parent-1", "dir-1");
        let reformatted = parse(
            &GOOD
                .replace("# the result", "")
                .replace("name lang/ruby", "name   lang/ruby"),
            "W",
        )
        .unwrap();
        assert_eq!(reformatted.cache_key("parent-1", "dir-1"), k);
        let other_version = parse(&GOOD.replace("2.1.1", "2.1.2"), "W").unwrap();
        assert_eq!(other_version.cache_key("parent-1", "dir-1"), k);
        assert_ne!(r.cache_key("parent-2", "dir-1"), k);
        assert_ne!(r.cache_key("parent-1", "dir-2"), k);
        let script = parse(&GOOD.replace("echo done", "echo Done"), "W").unwrap();
        assert_ne!(script.cache_key("parent-1", "dir-1"), k);
    }

    #[test]
    fn versions_resolve_by_prefix_to_the_newest() {
        let v = [
            "2.1.0", "2.1.1", "2.10.0", "2.1.10", "2.1.9", "3.0-rc1", "3.0",
        ];
        assert_eq!(resolve_version(Some("2.1"), v), Some("2.1.10"));
        assert_eq!(resolve_version(Some("2.10"), v), Some("2.10.0"));
        assert_eq!(resolve_version(Some("2"), v), Some("2.10.0"));
        assert_eq!(resolve_version(Some("3.0"), v), Some("3.0"));
        assert_eq!(resolve_version(None, v), Some("3.0"));
        assert_eq!(resolve_version(Some("4"), v), None);
        assert_eq!(resolve_version(Some("2.1.1"), v), Some("2.1.1"));
        assert_eq!(compare_versions("1.0", "1.0-rc1"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.1", "1.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.0a", "1.0b"), Ordering::Less);
    }

    proptest::proptest! {
        #[test]
        fn version_order_is_total_and_numeric(
            a in "[0-9a-c]{1,3}([.-][0-9a-c]{1,3}){0,3}",
            b in "[0-9a-c]{1,3}([.-][0-9a-c]{1,3}){0,3}",
            c in "[0-9a-c]{1,3}([.-][0-9a-c]{1,3}){0,3}",
            x in 0u32..1000, y in 0u32..1000,
        ) {
            use Ordering::*;
            proptest::prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
            proptest::prop_assert_eq!(compare_versions(&a, &a), Equal);
            if compare_versions(&a, &b) != Greater && compare_versions(&b, &c) != Greater {
                proptest::prop_assert_ne!(compare_versions(&a, &c), Greater);
            }
            proptest::prop_assert_eq!(
                compare_versions(&format!("1.{x}"), &format!("1.{y}")),
                x.cmp(&y)
            );
        }
    }

    #[test]
    fn recipe_references() {
        assert_eq!(
            parse_recipe_ref("lang/ruby 2.1").unwrap(),
            RecipeRef {
                name: "lang/ruby".into(),
                prefix: Some("2.1".into())
            }
        );
        assert_eq!(parse_recipe_ref("lang/ruby").unwrap().prefix, None);
        for bad in ["ruby", "lang/ruby 2.1 x", "", "lang/ruby 2/1"] {
            assert!(parse_recipe_ref(bad).is_err(), "{bad}");
        }
    }
}
