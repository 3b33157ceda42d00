//! Tests of diagnostics and locations: syntax errors, ordering, file:line:column rendering,
//! field paths and located fields.

use super::*;

#[test]
fn syntax_errors_are_one_diagnostic() {
    assert_eq!(
        errors("[workload.web]\nworld = \"host\nkind = 1\n"),
        ["2:14: invalid TOML: invalid basic string, expected `\"`"]
    );
    assert_eq!(
        errors("[workload.web]\nworld = \"host\"\nworld = \"busybox\"\n"),
        ["3:1: duplicate key `world`"]
    );
    let e = errors("[workload.web]\nworld = \"host\"\n[workload.web]\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("3:"), "{e:?}");
    assert!(e[0].contains("duplicate key"), "{e:?}");
}

#[test]
fn all_errors_are_collected_in_position_order() {
    let text =
        "[workload.b]\nworld = \"host\"\nrestart = \"x\"\n\n[workload.a]\nkind = \"y\"\nfoo = 1\n";
    assert_eq!(
        errors(text),
        [
            "3:11: workload.b.restart: unknown value \"x\"; expected one of always, on-failure, never",
            "5:11: workload.a: needs `world`, `image` or `recipe`",
            "6:8: workload.a.kind: unknown value \"y\"; expected one of container, jail, vm",
            "7:1: workload.a.foo: unknown key; expected one of kind, world, image, recipe, command, entrypoint, env, workdir, user, hostname, restart, state, data_path, resources, volumes, snapshots, health, hooks, network, ports, domains, port, path, websocket, max_body, tls, readonly_rootfs, userns, jail, vm, after, wait",
        ]
    );
}

#[test]
fn rendered_error_uses_file_line_column() {
    let err = parse_spec("[workload.web]\nkind = \"vm\"\n", "dir/warren.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dir/warren.toml:1:11: workload.web: needs `world`, `image` or `recipe` (a microVM), or `vm.disk` or `vm.iso` (a full VM)"
    );
}

#[test]
fn positions_with_multibyte_and_crlf() {
    let text = "# héllo wörld 😀\r\n[workload.web]\r\nworld = \"host\"\r\nenv = { \"É\" = \"😀\", X = [1] }\r\n";
    assert_eq!(
        errors(text),
        ["4:24: workload.web.env.X: expected a string, number or boolean, found array"]
    );
    let text =
        "[workload.web]\r\nworld = \"host\"\r\nenv = { \"É\" = \"😀\" }\r\nkind = \"jail\"\r\n";
    let p = ok(text);
    assert_eq!(p.locate("workload.web.kind"), (4, 8));
    assert_eq!(p.locate("workload.web.env.\"É\""), (3, 15));
}

#[test]
fn locate_fields() {
    let p = ok(r#"
[workload.web]
world = "host"
kind = "jail"
command = ["a",
  "b"]
resources.memory = "8M"

[workload.db.resources]
cpus = 1

[workload.db]
image = "postgres"
"#);
    assert_eq!(p.file(), "t.toml");
    assert_eq!(p.locate("workload"), (2, 2));
    assert_eq!(p.locate("workload.web"), (2, 11));
    assert_eq!(p.locate("workload.web.kind"), (4, 8));
    assert_eq!(p.locate("workload.web.command"), (5, 11));
    assert_eq!(p.locate("workload.web.command[1]"), (6, 3));
    assert_eq!(p.locate("workload.web.resources"), (7, 1));
    assert_eq!(p.locate("workload.web.resources.memory"), (7, 20));
    assert_eq!(p.locate("workload.db.resources.cpus"), (10, 8));
    assert_eq!(p.locate("workload.db.image"), (13, 9));
    // Fallbacks: nearest located parent, then 1:1.
    assert_eq!(p.locate("workload.web.ports"), (2, 11));
    assert_eq!(p.locate("workload.web.command[7]"), (5, 11));
    assert_eq!(p.locate("workload.web.ports[0].host"), (2, 11));
    assert_eq!(p.locate("nothing.here"), (1, 1));
    assert_eq!(p.locate(""), (1, 1));

    let d = p.diagnostic(
        "workload.web.kind",
        "workload.web.kind: jails need a FreeBSD host",
    );
    assert_eq!(
        d.to_string(),
        "t.toml:4:8: workload.web.kind: jails need a FreeBSD host"
    );
}

#[test]
fn parent_paths() {
    assert_eq!(parent_path("a.b[1]"), Some("a.b"));
    assert_eq!(parent_path("a.b"), Some("a"));
    assert_eq!(parent_path("a"), None);
    assert_eq!(parent_path("a.\"b.c\""), Some("a"));
    assert_eq!(parent_path("a.\"b\\\".c\"[0]"), Some("a.\"b\\\".c\""));
    assert_eq!(parent_path(".x"), None);
}

#[test]
fn path_rendering_quotes_odd_keys() {
    let p = Path::root()
        .key("workload")
        .key("web")
        .key("env")
        .key("A.B");
    assert_eq!(p.to_string(), "workload.web.env.\"A.B\"");
    assert_eq!(Path::root().key("a").index(3).to_string(), "a[3]");
    assert_eq!(Path::root().key("").to_string(), "\"\"");
}

#[test]
fn syntax_message_tidying() {
    assert_eq!(
        syntax_message("Expected `=`.\n  while parsing", ""),
        "invalid TOML: expected `=`. while parsing"
    );
    assert_eq!(
        syntax_message("duplicate key", "name"),
        "duplicate key `name`"
    );
    assert_eq!(syntax_message("", ""), "invalid TOML: malformed document");
}

#[test]
fn bom_is_accepted() {
    let text = "\u{feff}[workload.web]\nkind = \"x\"\nworld = \"host\"\n";
    assert_eq!(
        errors(text),
        ["2:8: workload.web.kind: unknown value \"x\"; expected one of container, jail, vm"]
    );
}
