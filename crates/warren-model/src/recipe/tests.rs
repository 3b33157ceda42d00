use super::*;
use proptest::prelude::*;

const GOOD: &str = "# Ruby on the common base\nname lang/ruby   # the result\nversion 2.1.1\nfrom lang/common 1.0\ncopy /src\n---\napt-get install -y ruby\necho done\n";

fn errors(text: &str) -> Vec<String> {
    parse(text, "W")
        .unwrap_err()
        .0
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn key(text: &str, parent: &str, dir: &str) -> String {
    parse(text, "W").unwrap().cache_key(parent, dir)
}

#[test]
fn a_full_recipe_parses() {
    let r = parse(GOOD, "Warrenfile").unwrap();
    assert_eq!(r.name, "lang/ruby");
    assert_eq!((r.namespace(), r.short_name()), ("lang", "ruby"));
    assert_eq!(r.version.as_deref(), Some("2.1.1"));
    assert_eq!(r.world, None);
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
}

#[test]
fn optional_directives_default_to_none() {
    let bare = parse("name a/b\n---\ntrue", "W").unwrap();
    assert_eq!(
        (bare.version, bare.world, bare.from, bare.copy),
        (None, None, None, None)
    );
    assert_eq!((bare.script.as_str(), bare.script_line), ("true", 3));
    let img = parse("name a/b\nfrom image app:v1\n---\ntrue\n", "W").unwrap();
    assert_eq!(img.from, Some(Parent::Image("app:v1".into())));
    let world = parse("name a/b\nworld debian-bookworm\n---\ntrue\n", "W").unwrap();
    assert_eq!(world.world.as_deref(), Some("debian-bookworm"));
    let unversioned = parse("name a/b\nfrom c/d\n---\ntrue\n", "W").unwrap();
    assert_eq!(
        unversioned.from,
        Some(Parent::Recipe {
            name: "c/d".into(),
            prefix: None
        })
    );
}

#[test]
fn crlf_and_bom_are_tolerated_and_the_script_gets_lf() {
    let plain = parse(GOOD, "W").unwrap();
    let crlf = GOOD.replace('\n', "\r\n");
    assert_eq!(parse(&crlf, "W").unwrap(), plain);
    assert_eq!(parse(&format!("\u{feff}{crlf}"), "W").unwrap(), plain);
    assert_eq!(parse(&format!("\u{feff}{GOOD}"), "W").unwrap(), plain);
    // A BOM anywhere but the start is not skipped.
    assert!(errors(&format!("\n\u{feff}{GOOD}"))[0].starts_with("W:2:1: unknown directive"));
}

#[test]
fn the_script_is_verbatim() {
    let script = "#!/bin/sh\n  indented   # kept\n---\n\n\tname x/y\nversion ~!@\n";
    let r = parse(&format!("name a/b\n  ---  # here\n{script}"), "W").unwrap();
    assert_eq!(r.script, script);
    assert_eq!(r.script_line, 3);
}

#[test]
fn comments_start_at_a_word() {
    let r = parse(
        "#only a comment\n   # indented comment\nname a/b#c # a comment\n---\ntrue\n",
        "W",
    );
    // `a/b#c` is one word: `#` inside a word does not start a comment.
    let e = r.unwrap_err().to_string();
    assert!(e.starts_with("W:3:6: recipe name \"a/b#c\""), "{e}");
    let r = parse("name a/b\ncopy /opt/c#\t# the C# tree\n---\ntrue\n", "W").unwrap();
    assert_eq!(r.copy.as_deref(), Some("/opt/c#"));
    let r = parse("name a/b\ncopy /\n---\ntrue\n", "W").unwrap();
    assert_eq!(r.copy.as_deref(), Some("/"));
}

#[test]
fn bad_recipes_get_located_errors() {
    let cases: &[(&str, &str)] = &[
        ("name a/b\nverison 1\n---\ntrue\n", "W:2:1: unknown directive `verison`; did you mean `version`?"),
        ("name a/b\nNAME x\n---\ntrue\n", "W:2:1: unknown directive `NAME`; did you mean `name`?"),
        ("name a/b\nbogus x\n---\ntrue\n", "W:2:1: unknown directive `bogus`; expected one of name, version, world, from, copy"),
        ("name a/b\n--\ntrue\n", "W:2:1: unknown directive `--`; the line between the header and the script is exactly `---`"),
        ("name ab\n---\ntrue\n", "W:1:6: recipe name \"ab\" must be NAMESPACE/NAME (exactly one slash)"),
        ("name a/b/c\n---\ntrue\n", "W:1:6: recipe name \"a/b/c\" must be NAMESPACE/NAME (exactly one slash)"),
        ("name a/\n---\ntrue\n", "W:1:6: recipe name \"a/\": name is empty"),
        ("name A/b\n---\ntrue\n", "W:1:6: recipe name \"A/b\": name \"A\" must start with a lowercase letter"),
        ("name a/b\nname c/d\n---\ntrue\n", "W:2:1: `name` is given twice (first on line 1)"),
        ("name a/b\ncopy /a\n  copy /b\n---\ntrue\n", "W:3:3: `copy` is given twice (first on line 2)"),
        ("name a/b\nversion\n---\ntrue\n", "W:2:1: `version` needs a value: VERSION"),
        ("name a/b\nversion   # later\n---\ntrue\n", "W:2:1: `version` needs a value: VERSION"),
        ("name\n---\ntrue\n", "W:1:1: `name` needs a value: NAMESPACE/NAME"),
        ("name a/b\nversion 1 2\n---\ntrue\n", "W:2:11: unexpected `2` after `version 1`"),
        ("name a/b\nversion 1/2\n---\ntrue\n", "W:2:9: invalid version \"1/2\": 1-64 of A-Z a-z 0-9 . _ + -, starting with a letter or digit"),
        ("name a/b\nversion .1\n---\ntrue\n", "W:2:9: invalid version \".1\""),
        ("name a/b\ncopy src\n---\ntrue\n", "W:2:6: copy destination \"src\" must be an absolute path"),
        ("name a/b\ncopy /a/../b\n---\ntrue\n", "W:2:6: copy destination \"/a/../b\" must not contain `..`"),
        ("name a/b\ncopy /..\n---\ntrue\n", "W:2:6: copy destination \"/..\" must not contain `..`"),
        ("name a/b\nworld debian\nfrom c/d\n---\ntrue\n", "W:3:1: `world` (line 2) and `from` (line 3) exclude each other: the parent brings its world"),
        ("name a/b\nfrom c/d\n world debian\n---\ntrue\n", "W:3:2: `world` (line 3) and `from` (line 2) exclude each other"),
        ("name a/b\n", "W:2:1: no `---` line after the header; the header must end with a line `---`, followed by the script"),
        ("", "W:1:1: no `---` line after the header"),
        ("name a/b\n---\n  \n", "W:2:1: the script after `---` is empty (only blank lines and comments)"),
        ("name a/b\n---\n#!/bin/sh\n# nothing\n", "W:2:1: the script after `---` is empty"),
        ("name a/b\n---", "W:2:1: the script after `---` is empty"),
        ("version 1\n---\ntrue\n", "W:1:1: the recipe has no `name NAMESPACE/NAME` line"),
        ("name a/b\nfrom c/d 1 2\n---\ntrue\n", "W:2:12: unexpected `2` after the version prefix `1`"),
        ("name a/b\nfrom c/d 1/2\n---\ntrue\n", "W:2:10: version prefix: invalid version \"1/2\""),
        ("name a/b\nfrom c\n---\ntrue\n", "W:2:6: recipe name \"c\" must be NAMESPACE/NAME"),
        ("name a/b\nfrom image\n---\ntrue\n", "W:2:6: `from image` needs an image reference"),
        ("name a/b\nfrom image x y\n---\ntrue\n", "W:2:14: unexpected `y` after the image reference `x`"),
        ("name a/b\nfrom   a/b 1\n---\ntrue\n", "W:2:8: recipe a/b cannot be built from itself"),
        ("name a/b\nworld Bad\n---\ntrue\n", "W:2:7: invalid world name \"Bad\":"),
        ("name a/b\n--- x\ntrue\n", "W:2:5: unexpected `x` after `---`; the separator line holds only `---`"),
        ("name a/b\nversion 1\u{0}\n---\ntrue\n", "W:2:10: control character U+0000 in the header"),
        ("name a/b\n\u{1b}[31m\n---\ntrue\n", "W:2:1: control character U+001B in the header"),
        ("name a/b\n---\necho a\0b\n", "W:3:7: the script holds a NUL byte"),
        // Columns count characters, not bytes.
        ("name a/b\nvérsion 1\n---\ntrue\n", "W:2:1: unknown directive `vérsion`; did you mean `version`?"),
        ("name a/b\nworld é x\n---\ntrue\n", "W:2:9: unexpected `x` after `world é`"),
    ];
    let mut failures = Vec::new();
    for (text, want) in cases {
        let got = match parse(text, "W") {
            Ok(r) => vec![format!("<parsed: {r:?}>")],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        };
        if !got.iter().any(|g| g.starts_with(want)) {
            failures.push(format!("{text:?}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_problem_is_reported_in_position_order() {
    let got = errors("bogus\nname x\nversion a b\n");
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[0].starts_with("W:1:1: unknown directive `bogus`"),
        "{got:?}"
    );
    assert!(got[1].starts_with("W:2:6: recipe name \"x\""), "{got:?}");
    assert!(got[2].starts_with("W:3:11: unexpected `b`"), "{got:?}");
    assert!(got[3].starts_with("W:4:1: no `---` line"), "{got:?}");
    // An invalid name still counts as given: no second "no name" error.
    assert!(!got.iter().any(|g| g.contains("has no `name")), "{got:?}");
    // Neither does a misspelt one; a missing one is reported.
    assert_eq!(errors("nmae a/b\n---\ntrue\n").len(), 1);
    assert_eq!(
        errors("title a/b\n---\ntrue\n"),
        [
            "W:1:1: unknown directive `title`; expected one of name, version, world, from, copy",
            "W:1:1: the recipe has no `name NAMESPACE/NAME` line"
        ]
    );
}

#[test]
fn error_fields_and_hints() {
    let e = parse("name a/b\nwrold x\n---\ntrue\n", "Warrenfile").unwrap_err();
    assert_eq!(
        e.0,
        vec![RecipeError {
            file: "Warrenfile".into(),
            line: 2,
            column: 1,
            message: "unknown directive `wrold`".into(),
            hint: Some("did you mean `world`?".into()),
        }]
    );
    assert_eq!(
        e.to_string(),
        "Warrenfile:2:1: unknown directive `wrold`; did you mean `world`?"
    );
}

#[test]
fn cache_key_follows_meaning_not_formatting() {
    let k = key(GOOD, "parent-1", "dir-1");
    assert_eq!(k.len(), 64);
    assert!(k
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // Comments, spacing, order of the header and the version do not count.
    let same = [
        GOOD.replace("# the result", "")
            .replace("name lang/ruby", "name\tlang/ruby"),
        GOOD.replace("# Ruby on the common base\n", "\n\n# another comment\n"),
        GOOD.replace(
            "name lang/ruby   # the result\nversion 2.1.1\n",
            "version 2.1.1\nname lang/ruby\n",
        ),
        GOOD.replace("2.1.1", "2.1.2"),
        GOOD.replace("from lang/common 1.0", "from lang/common 1"),
        GOOD.replace('\n', "\r\n"),
    ];
    for text in &same {
        assert_eq!(key(text, "parent-1", "dir-1"), k, "{text:?}");
    }
    // The script, the parent, the copied directory and the recipe's meaning do.
    let different = [
        GOOD.replace("echo done", "echo Done"),
        GOOD.replace("echo done\n", "echo done\n\n"),
        GOOD.replace("echo done", "echo done # comment"),
        GOOD.replace("copy /src", "copy /srv"),
        GOOD.replace("copy /src\n", ""),
        GOOD.replace("lang/ruby", "lang/rubx"),
        GOOD.replace("from lang/common 1.0", "from lang/commons 1.0"),
        GOOD.replace("from lang/common 1.0", "from image lang/common"),
        GOOD.replace("from lang/common 1.0", "world debian"),
        GOOD.replace("from lang/common 1.0", ""),
    ];
    let mut keys = vec![k.clone()];
    for text in &different {
        let other = key(text, "parent-1", "dir-1");
        assert!(!keys.contains(&other), "{text:?}");
        keys.push(other);
    }
    assert_ne!(key(GOOD, "parent-2", "dir-1"), k);
    assert_ne!(key(GOOD, "parent-1", "dir-2"), k);
    // Fields are length-prefixed: moving text between parent and directory changes the key.
    assert_ne!(key(GOOD, "parent-1d", "ir-1"), k);
    // Stable across runs and builds: a fixed recipe has a fixed key.
    assert_eq!(
        key("name a/b\n---\ntrue\n", "p", "d"),
        key("name   a/b  # x\n---\ntrue\n", "p", "d")
    );
}

#[test]
fn cache_key_is_pinned() {
    // The key names cached builds on disk: changing its recipe invalidates them all, so a
    // change here must be deliberate (and bump the format tag).
    let mut h = Sha256::new();
    for part in ["warren-recipe-v1", "a/b", "world ", "p", "", "d", "true\n"] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    assert_eq!(
        key("name a/b\n---\ntrue\n", "p", "d"),
        hex::encode(h.finalize())
    );
}

#[test]
fn versions_resolve_by_prefix_to_the_newest() {
    let v = [
        "2.1.0", "2.1.1", "2.10.0", "2.1.10", "2.1.9", "3.0-rc1", "3.0", "4.0-rc1", "5.0+b1",
    ];
    assert_eq!(resolve_version(Some("2.1"), v), Some("2.1.10"));
    assert_eq!(resolve_version(Some("2.10"), v), Some("2.10.0"));
    assert_eq!(resolve_version(Some("2"), v), Some("2.10.0"));
    assert_eq!(resolve_version(Some("2."), v), Some("2.10.0"));
    assert_eq!(resolve_version(Some("3.0"), v), Some("3.0"));
    assert_eq!(resolve_version(Some("3.0-rc"), v), None);
    assert_eq!(resolve_version(Some("4.0"), v), Some("4.0-rc1"));
    assert_eq!(resolve_version(Some("5.0"), v), Some("5.0+b1"));
    assert_eq!(resolve_version(None, v), Some("5.0+b1"));
    assert_eq!(resolve_version(Some("6"), v), None);
    assert_eq!(resolve_version(Some("2.1.1"), v), Some("2.1.1"));
    assert_eq!(resolve_version(Some("2.1.1"), ["2.1.10"]), None);
    assert_eq!(resolve_version(None, []), None);
    assert!(matches_prefix("2.1", "2.1.0"));
    assert!(!matches_prefix("2.1", "2.10"));
    assert!(!matches_prefix("2.1", "2"));
}

#[test]
fn version_order_examples() {
    use Ordering::*;
    let ordered = [
        "0-1a2b3c4d",
        "1.0-alpha",
        "1.0-beta",
        "1.0-rc1",
        "1.0-rc2",
        "1.0",
        "1.0.1",
        "1.0.9",
        "1.0.10",
        "1.2",
        "1.10",
        "2",
        "99999999999999999999999999999999999999999",
        "100000000000000000000000000000000000000000",
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(compare_versions(a, b), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(compare_versions("1.0a", "1.0b"), Less);
    assert_eq!(compare_versions("1.0", "1.0"), Equal);
    // Equal as versions, distinct as text: ordered by text, never Equal.
    assert_eq!(compare_versions("1-0", "1.0"), Less);
    assert_eq!(compare_versions("1.01", "1.1"), Less);
    assert_eq!(compare_versions("1.01", "1.2"), Less);
}

fn version() -> impl Strategy<Value = String> {
    "[0-9a-c]{1,3}([._+-]([0-9a-c]{0,3}|0{0,2}[0-9]{1,30})){0,4}"
}

proptest! {
    #[test]
    fn version_order_is_a_total_order(a in version(), b in version(), c in version()) {
        use Ordering::*;
        prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        prop_assert_eq!(compare_versions(&a, &a), Equal);
        prop_assert_eq!(compare_versions(&a, &b) == Equal, a == b);
        if compare_versions(&a, &b) != Greater && compare_versions(&b, &c) != Greater {
            prop_assert_ne!(compare_versions(&a, &c), Greater);
        }
    }

    #[test]
    fn version_order_agrees_with_numbers(
        x in proptest::collection::vec(0u64..u64::MAX, 1..5),
        y in proptest::collection::vec(0u64..u64::MAX, 1..5),
    ) {
        let render = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(".");
        // All-numeric versions order like their number tuples (a longer one is newer when the
        // shorter is its prefix, as with tuples).
        prop_assert_eq!(compare_versions(&render(&x), &render(&y)), x.cmp(&y));
    }

    #[test]
    fn a_release_is_newer_than_its_pre_releases(
        base in proptest::collection::vec(0u32..100, 1..4),
        tag in "[a-z]{1,5}[0-9]{0,2}",
        extra in 0u32..100,
    ) {
        let base = base.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
        let pre = format!("{base}-{tag}");
        prop_assert_eq!(compare_versions(&base, &pre), Ordering::Greater);
        prop_assert_eq!(compare_versions(&format!("{base}.{extra}"), &base), Ordering::Greater);
    }

    #[test]
    fn resolution_picks_the_maximum_of_the_matches(
        versions in proptest::collection::vec(version(), 0..12),
        prefix in proptest::option::of(version()),
    ) {
        let got = resolve_version(prefix.as_deref(), versions.iter().map(String::as_str));
        let mut matching: Vec<&str> = versions
            .iter()
            .map(String::as_str)
            .filter(|v| prefix.as_deref().is_none_or(|p| matches_prefix(p, v)))
            .collect();
        matching.sort_by(|a, b| compare_versions(a, b));
        prop_assert_eq!(got, matching.last().copied());
        if let (Some(p), Some(g)) = (&prefix, got) {
            prop_assert!(g.starts_with(p.as_str()));
        }
    }

    #[test]
    fn parsing_arbitrary_text_never_panics_and_errors_point_inside(text in "(?s).{0,200}") {
        if let Err(e) = parse(&text, "W") {
            prop_assert!(!e.0.is_empty());
            let lines = text.split('\n').count();
            let mut previous = (0, 0);
            for d in &e.0 {
                prop_assert!(d.line >= 1 && d.line <= lines, "{d}");
                prop_assert!(d.column >= 1, "{d}");
                prop_assert!((d.line, d.column) >= previous, "unsorted: {e}");
                prop_assert!(!d.message.contains('\n'), "{d}");
                previous = (d.line, d.column);
            }
        }
    }

    #[test]
    fn header_like_lines_parse(
        ns in "[a-z][a-z0-9]{0,8}",
        n in "[a-z][a-z0-9-]{0,8}[a-z0-9]",
        v in "[0-9]{1,3}(\\.[0-9]{1,3}){0,3}",
        pad in "[ \t]{1,3}",
        comment in proptest::option::of("[ -~]{0,20}"),
        script in "[a-z][ -~\n]{0,80}",
    ) {
        let c = comment.map(|c| format!("{pad}#{c}")).unwrap_or_default();
        let text = format!("{pad}name{pad}{ns}/{n}{c}\nversion{pad}{v}{c}\n---{c}\n{script}");
        let r = parse(&text, "W").unwrap();
        prop_assert_eq!(r.name, format!("{ns}/{n}"));
        prop_assert_eq!(r.version, Some(v));
        prop_assert_eq!(r.script, script);
        prop_assert_eq!(r.script_line, 4);
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
    assert_eq!(
        parse_recipe_ref("  lang/ruby\t2.1 ")
            .unwrap()
            .prefix
            .as_deref(),
        Some("2.1")
    );
    assert_eq!(parse_recipe_ref("lang/ruby").unwrap().prefix, None);
    let bad = [
        ("ruby", "must be NAMESPACE/NAME"),
        ("lang/ruby 2.1 x", "must be \"NAMESPACE/NAME\" or"),
        ("", "must be \"NAMESPACE/NAME\" or"),
        ("lang/ruby 2/1", "invalid version \"2/1\""),
        ("Lang/ruby", "must start with a lowercase letter"),
        ("lang/ruby/x", "exactly one slash"),
    ];
    for (s, want) in bad {
        let e = parse_recipe_ref(s).unwrap_err();
        assert!(e.contains(want), "{s:?}: {e}");
    }
}
