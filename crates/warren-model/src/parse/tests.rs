//! Unit tests for the parser: one or more per rule, plus locations.

use super::*;
use crate::spec::{DesiredState, RestartPolicy, RouteSpec};

fn ok(text: &str) -> Parsed {
    match parse_spec(text, "t.toml") {
        Ok(p) => p,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

fn web(text: &str) -> WorkloadSpec {
    ok(text).spec.workloads["web"].clone()
}

/// Every diagnostic as `line:column: message`.
fn errors(text: &str) -> Vec<String> {
    match parse_spec(text, "t.toml") {
        Ok(p) => panic!("expected errors, got {:?}", p.spec),
        Err(e) => e
            .diagnostics
            .iter()
            .map(|d| {
                assert_eq!(d.file, "t.toml");
                format!("{}:{}: {}", d.line, d.column, d.message)
            })
            .collect(),
    }
}

/// The single diagnostic for a `[workload.web]` body (world is provided unless `body` sets a
/// source itself).
fn web_error(body: &str) -> String {
    let source = if body.contains("world") || body.contains("image") {
        ""
    } else {
        "world = \"host\"\n"
    };
    let errs = errors(&format!("[workload.web]\n{source}{body}\n"));
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.into_iter().next().unwrap()
}

#[test]
fn empty_and_workload_free_files_are_valid() {
    assert!(ok("").spec.workloads.is_empty());
    assert!(ok("# nothing here\n\n").spec.workloads.is_empty());
    assert!(ok("[workload]\n").spec.workloads.is_empty());
}

#[test]
fn full_workload() {
    let w = web(r#"
[workload.web]
kind = "container"
world = "host"
command = ["python3", "-m", "http.server", "8080"]
env = { GREETING = "hi", PORT = 8080, RATIO = 0.5, DEBUG = true, BIG = 0x10 }
workdir = "/srv"
user = "www-data"
hostname = "web.local"
restart = "on-failure"
state = "stopped"
data_path = "/var/lib/web"
resources = { memory = "256M", cpus = 0.5, pids = 100 }
"#);
    assert_eq!(w.name, "web");
    assert_eq!(w.kind, Kind::Container);
    assert_eq!(w.source, Source::World("host".into()));
    assert_eq!(w.command, ["python3", "-m", "http.server", "8080"]);
    assert_eq!(w.env["GREETING"], "hi");
    assert_eq!(w.env["PORT"], "8080");
    assert_eq!(w.env["RATIO"], "0.5");
    assert_eq!(w.env["DEBUG"], "true");
    assert_eq!(w.env["BIG"], "16");
    assert_eq!(w.workdir.as_deref(), Some("/srv"));
    assert_eq!(w.user.as_deref(), Some("www-data"));
    assert_eq!(w.hostname.as_deref(), Some("web.local"));
    assert_eq!(w.restart, RestartPolicy::OnFailure);
    assert_eq!(w.state, DesiredState::Stopped);
    assert_eq!(w.data_path, "/var/lib/web");
    assert_eq!(w.resources.memory, Some(256 << 20));
    assert_eq!(w.resources.cpus, Some(0.5));
    assert_eq!(w.resources.pids, Some(100));
}

#[test]
fn defaults() {
    let w = web("[workload.web]\nimage = \"nginx:1.27\"\n");
    assert_eq!(
        w,
        WorkloadSpec::new("web", Source::Image("nginx:1.27".into()))
    );
}

#[test]
fn kinds_jail_and_vm_parse() {
    for (text, kind) in [
        ("jail", Kind::Jail),
        ("vm", Kind::Vm),
        ("container", Kind::Container),
    ] {
        let w = web(&format!(
            "[workload.web]\nworld = \"host\"\nkind = \"{text}\"\n"
        ));
        assert_eq!(w.kind, kind);
    }
}

#[test]
fn kind_unknown() {
    assert_eq!(
        web_error("kind = \"jial\""),
        "3:8: workload.web.kind: unknown value \"jial\"; did you mean \"jail\"?"
    );
    assert_eq!(
        web_error("kind = \"docker\""),
        "3:8: workload.web.kind: unknown value \"docker\"; expected one of container, jail, vm"
    );
    assert_eq!(
        web_error("kind = 1"),
        "3:8: workload.web.kind: expected a string, found integer"
    );
}

#[test]
fn top_level_keys() {
    assert_eq!(
        errors("[workloads.web]\nworld = \"host\"\n"),
        ["1:2: workloads: unknown key; did you mean `workload`?"]
    );
    assert_eq!(
        errors("version = 2\n"),
        ["1:1: version: unknown key; expected one of workload, volume"]
    );
    assert_eq!(
        errors("workload = 3\n"),
        ["1:12: workload: expected a table, found integer"]
    );
    assert_eq!(
        errors("[[workload]]\nworld = \"host\"\n"),
        ["1:1: workload: expected a table, found array of tables; declare each workload as `[workload.NAME]`"]
    );
    assert_eq!(
        errors("[volumes.media]\n"),
        ["1:2: volumes: unknown key; did you mean `volume`?"]
    );
    assert_eq!(
        errors("[[volume]]\nsize = \"1G\"\n"),
        ["1:1: volume: expected a table, found array of tables; declare each volume as `[volume.NAME]`"]
    );
}

#[test]
fn workload_must_be_table() {
    assert_eq!(
        errors("[[workload.web]]\nworld = \"host\"\n"),
        ["1:1: workload.web: expected a table, found array of tables; write `[workload.web]`, not `[[workload.web]]`"]
    );
    assert_eq!(
        errors("[workload]\nweb = \"host\"\n"),
        ["2:7: workload.web: expected a table, found string"]
    );
}

#[test]
fn unknown_workload_key() {
    assert_eq!(
        web_error("comand = [\"sh\"]"),
        "3:1: workload.web.comand: unknown key; did you mean `command`?"
    );
    assert_eq!(
        web_error("publish = [80]"),
        "3:1: workload.web.publish: unknown key; expected one of kind, world, image, recipe, command, entrypoint, env, workdir, user, hostname, restart, state, data_path, resources, volumes, snapshots, health, hooks, network, ports, domains, port, path, websocket, max_body, tls, readonly_rootfs, userns, jail"
    );
    assert_eq!(
        web_error("domain = [\"a.b\"]"),
        "3:1: workload.web.domain: unknown key; did you mean `domains`?"
    );
}

#[test]
fn workload_names() {
    assert_eq!(
        errors("[workload.Web]\nworld = \"host\"\n"),
        ["1:11: workload.Web: invalid workload name: name \"Web\" must start with a lowercase letter"]
    );
    assert_eq!(
        errors("[workload.\"my web\"]\nworld = \"host\"\n"),
        ["1:11: workload.\"my web\": invalid workload name: name \"my web\" has ' '; only lowercase letters, digits and '-' are allowed"]
    );
}

#[test]
fn source_is_required_and_exclusive() {
    assert_eq!(
        errors("[workload.web]\nkind = \"container\"\n"),
        ["1:11: workload.web: needs `world`, `image` or `recipe`"]
    );
    assert_eq!(
        errors("[workload.web]\nimage = \"nginx\"\nworld = \"host\"\n"),
        ["3:1: workload.web.world: a workload has one of `world`, `image` or `recipe` (`image` is already set)"]
    );
    assert_eq!(
        errors("[workload.web]\nworld = \"Host\"\n"),
        ["2:9: workload.web.world: invalid world name: name \"Host\" must start with a lowercase letter"]
    );
    assert_eq!(
        errors("[workload.web]\nimage = \"\"\n"),
        ["2:9: workload.web.image: is empty"]
    );
    assert_eq!(
        errors("[workload.web]\nworld = 7\n"),
        ["2:9: workload.web.world: expected a string, found integer"]
    );
}

#[test]
fn command_rules() {
    assert_eq!(
        web_error("command = \"python3 -m http.server\""),
        "3:11: workload.web.command: expected an array of strings, found string; use an array, e.g. [\"sh\", \"-c\", \"...\"]"
    );
    assert_eq!(
        web_error("command = 5"),
        "3:11: workload.web.command: expected an array of strings, found integer"
    );
    assert_eq!(
        web_error("command = [\"sh\", 5]"),
        "3:18: workload.web.command[1]: expected a string, found integer"
    );
    assert_eq!(
        web_error("command = [\"sh\", \"\"]"),
        "3:18: workload.web.command[1]: must not be empty"
    );
    assert_eq!(
        web_error("command = [\"a\\u0000b\"]"),
        "3:12: workload.web.command[0]: must not contain a NUL character"
    );
    assert!(web("[workload.web]\nworld = \"host\"\ncommand = []\n")
        .command
        .is_empty());
}

#[test]
fn env_rules() {
    assert_eq!(
        web_error("env = { A = [\"x\"] }"),
        "3:13: workload.web.env.A: expected a string, number or boolean, found array"
    );
    assert_eq!(
        web_error("env = { \"A=B\" = \"x\" }"),
        "3:9: workload.web.env.\"A=B\": variable name must not contain '='"
    );
    assert_eq!(
        web_error("env = { \"\" = \"x\" }"),
        "3:9: workload.web.env.\"\": variable name must not be empty"
    );
    assert_eq!(
        web_error("env = { A = \"\\u0000\" }"),
        "3:13: workload.web.env.A: must not contain a NUL character"
    );
    assert_eq!(
        web_error("env = { A.B = \"x\" }"),
        "3:9: workload.web.env.A: expected a string, number or boolean, found table; quote names that contain dots, e.g. \"A.x\" = \"...\""
    );
    assert_eq!(
        web_error("env = \"A=B\""),
        "3:7: workload.web.env: expected a table, found string; e.g. env = { PORT = \"8080\" }"
    );
    assert_eq!(
        web_error("env = { T = 1979-05-27 }"),
        "3:13: workload.web.env.T: expected a string, number or boolean, found datetime"
    );
    let w = web(
        "[workload.web]\nworld = \"host\"\n[workload.web.env]\n\"A.B\" = 1_000\nF = 1e3\nN = -5\n",
    );
    assert_eq!(w.env["A.B"], "1000");
    assert_eq!(w.env["F"], "1e3");
    assert_eq!(w.env["N"], "-5");
}

#[test]
fn path_rules() {
    assert_eq!(
        web_error("workdir = \"srv\""),
        "3:11: workload.web.workdir: must be an absolute path, found \"srv\""
    );
    assert_eq!(
        web_error("data_path = \"/\""),
        "3:13: workload.web.data_path: must not be the root directory"
    );
    assert_eq!(
        web_error("data_path = \"data\""),
        "3:13: workload.web.data_path: must be an absolute path, found \"data\""
    );
}

#[test]
fn user_and_hostname() {
    assert_eq!(
        web_error("user = \"www data\""),
        "3:8: workload.web.user: \"www data\" contains ' '; expected \"name\", \"uid\", \"name:group\" or \"uid:gid\""
    );
    assert_eq!(
        web("[workload.web]\nworld = \"host\"\nuser = \"1000:1000\"\n")
            .user
            .as_deref(),
        Some("1000:1000")
    );
    assert_eq!(
        web_error("hostname = \"web_1\""),
        "3:12: workload.web.hostname: \"web_1\" has '_'; only lowercase letters, digits, '-' and '.' are allowed"
    );
}

#[test]
fn restart_and_state() {
    assert_eq!(
        web_error("restart = \"sometimes\""),
        "3:11: workload.web.restart: unknown value \"sometimes\"; expected one of always, on-failure, never"
    );
    assert_eq!(
        web_error("restart = \"onfailure\""),
        "3:11: workload.web.restart: unknown value \"onfailure\"; did you mean \"on-failure\"?"
    );
    assert_eq!(
        web_error("state = \"up\""),
        "3:9: workload.web.state: unknown value \"up\"; expected one of running, stopped"
    );
}

#[test]
fn memory_rules() {
    assert_eq!(
        web_error("resources = { memory = \"256Mo\" }"),
        "3:24: workload.web.resources.memory: unknown unit \"Mo\" in \"256Mo\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\""
    );
    assert_eq!(
        web_error("resources = { memory = \"1M\" }"),
        "3:24: workload.web.resources.memory: 1 MiB is below the minimum of 4 MiB"
    );
    assert_eq!(
        web_error("resources = { memory = 1000 }"),
        "3:24: workload.web.resources.memory: 1000 bytes is below the minimum of 4 MiB"
    );
    assert_eq!(
        web_error("resources = { memory = -5 }"),
        "3:24: workload.web.resources.memory: must be positive, found -5"
    );
    assert_eq!(
        web_error("resources = { memory = 1.5 }"),
        "3:24: workload.web.resources.memory: expected a number of bytes or a size such as \"256M\", found float"
    );
    let w = web("[workload.web]\nworld = \"host\"\nresources.memory = 4194304\n");
    assert_eq!(w.resources.memory, Some(4 << 20));
    let w = web("[workload.web]\nworld = \"host\"\nresources = { memory = \"1GB\" }\n");
    assert_eq!(w.resources.memory, Some(1_000_000_000));
}

#[test]
fn cpu_and_pid_rules() {
    assert_eq!(
        web_error("resources = { cpus = -1 }"),
        "3:22: workload.web.resources.cpus: must be greater than 0, found -1"
    );
    assert_eq!(
        web_error("resources = { cpus = 0.0 }"),
        "3:22: workload.web.resources.cpus: must be greater than 0, found 0.0"
    );
    assert_eq!(
        web_error("resources = { cpus = nan }"),
        "3:22: workload.web.resources.cpus: must be greater than 0, found nan"
    );
    assert_eq!(
        web_error("resources = { cpus = 1025 }"),
        "3:22: workload.web.resources.cpus: must be at most 1024, found 1025"
    );
    assert_eq!(
        web_error("resources = { cpus = inf }"),
        "3:22: workload.web.resources.cpus: must be at most 1024, found inf"
    );
    assert_eq!(
        web_error("resources = { cpus = \"2\" }"),
        "3:22: workload.web.resources.cpus: expected a number of cores, found string"
    );
    assert_eq!(
        web_error("resources = { pids = 0 }"),
        "3:22: workload.web.resources.pids: must be at least 1, found 0"
    );
    assert_eq!(
        web_error("resources = { pids = 1.5 }"),
        "3:22: workload.web.resources.pids: expected an integer, found float"
    );
    let w = web("[workload.web]\nworld = \"host\"\n[workload.web.resources]\ncpus = 2\npids = 1\n");
    assert_eq!(w.resources.cpus, Some(2.0));
    assert_eq!(w.resources.pids, Some(1));
    assert_eq!(w.resources.memory, None);
}

#[test]
fn unknown_resource_key() {
    assert_eq!(
        web_error("resources = { swap = \"1G\" }"),
        "3:15: workload.web.resources.swap: unknown key; expected one of memory, cpus, pids, disk"
    );
    assert_eq!(
        web_error("resources = { dsik = \"1G\" }"),
        "3:15: workload.web.resources.dsik: unknown key; did you mean `disk`?"
    );
    assert_eq!(
        web_error("resources = { memroy = \"1G\" }"),
        "3:15: workload.web.resources.memroy: unknown key; did you mean `memory`?"
    );
    assert_eq!(
        web_error("resources = \"big\""),
        "3:13: workload.web.resources: expected a table, found string; e.g. resources = { memory = \"256M\", cpus = 0.5 }"
    );
}

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
            "7:1: workload.a.foo: unknown key; expected one of kind, world, image, recipe, command, entrypoint, env, workdir, user, hostname, restart, state, data_path, resources, volumes, snapshots, health, hooks, network, ports, domains, port, path, websocket, max_body, tls, readonly_rootfs, userns, jail",
        ]
    );
}

#[test]
fn rendered_error_uses_file_line_column() {
    let err = parse_spec("[workload.web]\nkind = \"vm\"\n", "dir/warren.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dir/warren.toml:1:11: workload.web: needs `world`, `image` or `recipe`"
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

#[test]
fn disk_rules() {
    let w =
        web("[workload.web]\nworld = \"host\"\nresources = { memory = \"256M\", disk = \"2G\" }\n");
    assert_eq!(w.resources.disk, Some(2 << 30));
    let w = web("[workload.web]\nworld = \"host\"\nresources.disk = 1048576\n");
    assert_eq!(w.resources.disk, Some(1 << 20));
    assert_eq!(
        web_error("resources = { disk = \"512K\" }"),
        "3:22: workload.web.resources.disk: 512 KiB is below the minimum of 1 MiB"
    );
    assert_eq!(
        web_error("resources = { disk = \"2Q\" }"),
        "3:22: workload.web.resources.disk: unknown unit \"Q\" in \"2Q\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\""
    );
    assert_eq!(
        web_error("resources = { disk = true }"),
        "3:22: workload.web.resources.disk: expected a number of bytes or a size such as \"256M\", found boolean"
    );
    // Disk is not part of memory's minimum: 1 MiB is fine for disk, not for memory.
    assert_eq!(
        web_error("resources = { disk = \"1M\", memory = \"1M\" }"),
        "3:37: workload.web.resources.memory: 1 MiB is below the minimum of 4 MiB"
    );
}

#[test]
fn volumes_parse() {
    let p = ok(r#"
[volume.media]
size = "10G"
snapshots = { every = "6h", keep = 5 }

[volume.cache]

[workload.web]
world = "host"
volumes = ["media:/srv/media:ro", "cache:/var/cache", "media:/srv/more:ro"]

[workload.worker]
world = "host"
volumes = ["media:/media:rw", "cache:/cache:ro"]
"#);
    let media = &p.spec.volumes["media"];
    assert_eq!(media.name, "media");
    assert_eq!(media.size, Some(10 << 30));
    assert_eq!(
        media.snapshots,
        Some(SnapshotPolicy {
            every_secs: 6 * 3600,
            keep: 5
        })
    );
    assert_eq!(
        p.spec.volumes["cache"],
        VolumeSpec {
            name: "cache".into(),
            size: None,
            snapshots: None,
            site: None,
        }
    );
    let mount = |volume: &str, path: &str, readonly| VolumeMount {
        volume: volume.into(),
        path: path.into(),
        readonly,
    };
    assert_eq!(
        p.spec.workloads["web"].volumes,
        [
            mount("media", "/srv/media", true),
            mount("cache", "/var/cache", false),
            mount("media", "/srv/more", true),
        ]
    );
    assert_eq!(
        p.spec.workloads["worker"].volumes,
        [
            mount("media", "/media", false),
            mount("cache", "/cache", true)
        ]
    );
}

#[test]
fn volume_tables() {
    assert!(ok("[volume]\n").spec.volumes.is_empty());
    assert_eq!(
        errors("[volume.Media]\n"),
        ["1:9: volume.Media: invalid volume name: name \"Media\" must start with a lowercase letter"]
    );
    assert_eq!(
        errors("[volume.media]\nsise = \"1G\"\n"),
        ["2:1: volume.media.sise: unknown key; did you mean `size`?"]
    );
    assert_eq!(
        errors("[volume.media]\nowner = \"me\"\n"),
        ["2:1: volume.media.owner: unknown key; expected one of size, snapshots, site"]
    );
    assert_eq!(
        errors("[volume.media]\nsize = \"100K\"\n"),
        ["2:8: volume.media.size: 100 KiB is below the minimum of 1 MiB"]
    );
    assert_eq!(
        errors("[volume]\nmedia = \"10G\"\n"),
        ["2:9: volume.media: expected a table, found string"]
    );
    assert_eq!(
        errors("[[volume.media]]\n"),
        ["1:1: volume.media: expected a table, found array of tables; write `[volume.media]`, not `[[volume.media]]`"]
    );
    assert_eq!(
        errors("volume = 1\n"),
        ["1:10: volume: expected a table, found integer"]
    );
    // A volume with a bad body still counts as declared: no second error at the mount.
    assert_eq!(
        errors("[volume.media]\nsize = 0\n[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n"),
        ["2:8: volume.media.size: 0 bytes is below the minimum of 1 MiB"]
    );
    // Nor when `volume` itself is malformed.
    assert_eq!(
        errors("volume = 1\n[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n"),
        ["1:10: volume: expected a table, found integer"]
    );
}

#[test]
fn mount_strings() {
    let with_media = |mounts: &str| {
        let errs = errors(&format!(
            "[volume.media]\n[workload.web]\nworld = \"host\"\nvolumes = {mounts}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    };
    assert_eq!(
        with_media("\"media:/srv\""),
        "4:11: workload.web.volumes: expected an array of mounts, found string; e.g. volumes = [\"media:/srv/media:ro\"]"
    );
    assert_eq!(
        with_media("[7]"),
        "4:12: workload.web.volumes[0]: expected a string, found integer; e.g. \"media:/srv/media:ro\""
    );
    assert_eq!(
        with_media("[\"media\"]"),
        "4:12: workload.web.volumes[0]: expected \"VOLUME:/PATH\", \"VOLUME:/PATH:ro\" or \"VOLUME:/PATH:rw\", found \"media\""
    );
    assert_eq!(
        with_media("[\"media:/a\", \"media:srv\"]"),
        "4:24: workload.web.volumes[1]: mount path must be an absolute path, found \"srv\""
    );
    assert_eq!(
        with_media("[\"media:/\"]"),
        "4:12: workload.web.volumes[0]: mount path must not be the root directory"
    );
    assert_eq!(
        with_media("[\"media:/srv/../etc\"]"),
        "4:12: workload.web.volumes[0]: mount path must not contain '..', found \"/srv/../etc\""
    );
    assert_eq!(
        with_media("[\"media:/srv:readonly\"]"),
        "4:12: workload.web.volumes[0]: unknown mount mode \"readonly\" in \"media:/srv:readonly\"; expected ro or rw"
    );
    assert_eq!(
        with_media("[\"Media:/srv\"]"),
        "4:12: workload.web.volumes[0]: invalid volume name: name \"Media\" must start with a lowercase letter"
    );
    assert_eq!(
        with_media("[\"media:/srv:ro\", \"media:/srv/:ro\"]"),
        "4:29: workload.web.volumes[1]: mount path \"/srv/\" is already used by workload.web.volumes[0]"
    );
    assert!(
        web("[volume.media]\n[workload.web]\nworld = \"host\"\nvolumes = []\n")
            .volumes
            .is_empty()
    );
}

#[test]
fn mounts_stay_clear_of_data_path() {
    let with_media = |body: &str| {
        let errs = errors(&format!(
            "[volume.media]\n[workload.web]\nworld = \"host\"\n{body}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    };
    assert_eq!(
        with_media("volumes = [\"media:/data\"]"),
        "4:12: workload.web.volumes[0]: mount path \"/data\" is the workload's data_path"
    );
    assert_eq!(
        with_media("volumes = [\"media:/data/media\"]"),
        "4:12: workload.web.volumes[0]: mount path \"/data/media\" is inside the workload's data_path \"/data\""
    );
    // `data_path` after `volumes` still applies.
    assert_eq!(
        with_media("volumes = [\"media:/var\"]\ndata_path = \"/var/lib/web/\""),
        "4:12: workload.web.volumes[0]: mount path \"/var\" contains the workload's data_path \"/var/lib/web/\""
    );
    assert_eq!(
        with_media("data_path = \"/srv\"\nvolumes = [\"media:/srv/./\"]"),
        "5:12: workload.web.volumes[0]: mount path \"/srv/./\" is the workload's data_path"
    );
    // A bad data_path is reported once, not again at each mount.
    assert_eq!(
        with_media("data_path = \"/\"\nvolumes = [\"media:/srv\"]"),
        "4:13: workload.web.data_path: must not be the root directory"
    );
    let w = web("[volume.media]\n[workload.web]\nworld = \"host\"\ndata_path = \"/data\"\nvolumes = [\"media:/data2\", \"media:/dat\"]\n");
    assert_eq!(w.volumes.len(), 2);
}

#[test]
fn undeclared_volume() {
    assert_eq!(
        errors("[workload.web]\nworld = \"host\"\nvolumes = [\"media:/srv/media:ro\"]\n"),
        ["3:12: workload.web.volumes[0]: volume \"media\" is not declared; add a [volume.media] table"]
    );
    // Declared after use is fine.
    let p = ok("[workload.web]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[volume.media]\n");
    assert_eq!(p.spec.workloads["web"].volumes[0].volume, "media");
}

#[test]
fn one_writer_per_volume() {
    // The error is at the later workload in name order, wherever it is in the file.
    let text = "[volume.media]\n\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m:rw\"]\n";
    assert_eq!(
        errors(text),
        ["5:12: workload.b.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)"]
    );
    // A third writer names the first, too.
    let text = "[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n[workload.c]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n";
    assert_eq!(
        errors(text),
        [
            "7:12: workload.b.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)",
            "10:12: workload.c.volumes[0]: volume \"media\" is already mounted read-write by workload \"a\"; only one writer at a time (mount it with :ro)",
        ]
    );
    // A mount refused for its own workload does not claim the volume.
    let text = "[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/data\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\"]\n";
    assert_eq!(
        errors(text),
        ["4:12: workload.a.volumes[0]: mount path \"/data\" is the workload's data_path"]
    );
    // Any number of readers next to one writer, and one workload may mount its volume twice.
    let p = ok("[volume.media]\n[workload.a]\nworld = \"host\"\nvolumes = [\"media:/m:ro\"]\n[workload.b]\nworld = \"host\"\nvolumes = [\"media:/m\", \"media:/n\"]\n[workload.c]\nworld = \"host\"\nvolumes = [\"media:/m:ro\"]\n");
    assert_eq!(p.spec.workloads.len(), 3);
    assert!(!p.spec.workloads["b"].volumes[1].readonly);
}

#[test]
fn snapshot_policies() {
    let w = web("[workload.web]\nworld = \"host\"\nsnapshots = { every = \"30m\", keep = 10 }\n");
    assert_eq!(
        w.snapshots,
        Some(SnapshotPolicy {
            every_secs: 1800,
            keep: 10
        })
    );
    let w = web("[workload.web]\nworld = \"host\"\n[workload.web.snapshots]\nevery = \"1h30m\"\nkeep = 1000\n");
    assert_eq!(
        w.snapshots,
        Some(SnapshotPolicy {
            every_secs: 5400,
            keep: 1000
        })
    );
    let w =
        web("[workload.web]\nworld = \"host\"\nsnapshots.every = \"60s\"\nsnapshots.keep = 1\n");
    assert_eq!(w.snapshots.map(|s| s.every_secs), Some(60));
    assert_eq!(
        web_error("snapshots = { every = \"30s\", keep = 5 }"),
        "3:23: workload.web.snapshots.every: \"30s\" is below the minimum of 1m"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6x\", keep = 5 }"),
        "3:23: workload.web.snapshots.every: unknown unit \"x\" in \"6x\"; use s, m, h, d or w, e.g. \"90s\", \"6h\" or \"1h30m\""
    );
    assert_eq!(
        web_error("snapshots = { every = 3600, keep = 5 }"),
        "3:23: workload.web.snapshots.every: expected a duration such as \"6h\", found integer"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 0 }"),
        "3:36: workload.web.snapshots.keep: must be between 1 and 1000, found 0"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 1001 }"),
        "3:36: workload.web.snapshots.keep: must be between 1 and 1000, found 1001"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = \"5\" }"),
        "3:36: workload.web.snapshots.keep: expected an integer, found string"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", kep = 5 }"),
        "3:29: workload.web.snapshots.kep: unknown key; did you mean `keep`?"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\", keep = 5, at = \"03:00\" }"),
        "3:39: workload.web.snapshots.at: unknown key; expected one of every, keep"
    );
    assert_eq!(
        web_error("snapshots = { every = \"6h\" }"),
        "3:1: workload.web.snapshots: missing `keep`; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        web_error("snapshots = {}"),
        "3:1: workload.web.snapshots: missing `every` and `keep`; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        web_error("snapshots = { evry = \"6h\", keep = 5 }"),
        "3:15: workload.web.snapshots.evry: unknown key; did you mean `every`?"
    );
    assert_eq!(
        web_error("snapshots = \"6h\""),
        "3:13: workload.web.snapshots: expected a table, found string; e.g. snapshots = { every = \"6h\", keep = 5 }"
    );
    assert_eq!(
        errors("[volume.media]\n[volume.media.snapshots]\nkeep = 3\n"),
        ["2:15: volume.media.snapshots: missing `every`; e.g. snapshots = { every = \"6h\", keep = 5 }"]
    );
}

#[test]
fn locate_volume_fields() {
    let p = ok(r#"[volume.media]
size = "10G"
snapshots = { every = "6h", keep = 5 }

[workload.web]
world = "host"
volumes = ["media:/srv/media:ro",
  "media:/srv/other:ro"]
snapshots = { every = "30m", keep = 10 }
resources = { disk = "2G" }
"#);
    assert_eq!(p.locate("volume"), (1, 2));
    assert_eq!(p.locate("volume.media"), (1, 9));
    assert_eq!(p.locate("volume.media.size"), (2, 8));
    assert_eq!(p.locate("volume.media.snapshots"), (3, 1));
    assert_eq!(p.locate("volume.media.snapshots.keep"), (3, 36));
    assert_eq!(p.locate("workload.web.volumes"), (7, 11));
    assert_eq!(p.locate("workload.web.volumes[0]"), (7, 12));
    assert_eq!(p.locate("workload.web.volumes[1]"), (8, 3));
    assert_eq!(p.locate("workload.web.snapshots.every"), (9, 23));
    assert_eq!(p.locate("workload.web.resources.disk"), (10, 22));
    assert_eq!(p.locate("workload.web.volumes[5]"), (7, 11));
    assert_eq!(p.locate("volume.other.size"), (1, 2));
}

fn pm(s: &str) -> PortMapping {
    PortMapping::parse(s).unwrap()
}

#[test]
fn networking_and_route_fields() {
    let w = web(r#"
[workload.web]
world = "host"
network = "bridge"
ports = ["8080:80/tcp", "127.0.0.1:5353:53/udp", "[::1]:9000:9000"]
domains = ["git.home.arpa", "*.apps.home.arpa"]
port = 3000
path = "/api"
websocket = true
max_body = "50M"
tls = "local"
"#);
    assert_eq!(w.network, NetworkMode::Bridge);
    assert_eq!(
        w.ports,
        [
            pm("8080:80/tcp"),
            pm("127.0.0.1:5353:53/udp"),
            pm("[::1]:9000:9000")
        ]
    );
    assert_eq!(
        w.route,
        RouteSpec {
            domains: vec!["git.home.arpa".into(), "*.apps.home.arpa".into()],
            port: Some(3000),
            path: "/api".into(),
            websocket: true,
            max_body: Some(50 << 20),
            tls: TlsChoice::Local,
        }
    );
    // Defaults when only `domains` and `port` are given.
    let w = web("[workload.web]\nworld = \"host\"\ndomains = [\"a.home\"]\nport = 80\n");
    assert_eq!(w.route.path, "/");
    assert!(!w.route.websocket);
    assert_eq!(w.route.max_body, None);
    assert_eq!(w.route.tls, TlsChoice::None);
    assert_eq!(w.network, NetworkMode::Bridge);
    assert!(w.ports.is_empty());
}

#[test]
fn network_modes() {
    for (text, mode) in [
        ("bridge", NetworkMode::Bridge),
        ("host", NetworkMode::Host),
        ("none", NetworkMode::None),
    ] {
        let w = web(&format!(
            "[workload.web]\nworld = \"host\"\nnetwork = \"{text}\"\n"
        ));
        assert_eq!(w.network, mode);
    }
    assert_eq!(
        web_error("network = \"hots\""),
        "3:11: workload.web.network: unknown value \"hots\"; did you mean \"host\"?"
    );
    assert_eq!(
        web_error("network = \"overlay\""),
        "3:11: workload.web.network: unknown value \"overlay\"; expected one of bridge, host, none"
    );
    // A host-network workload may still be routed (through the host).
    let w = web(
        "[workload.web]\nworld = \"host\"\nnetwork = \"host\"\ndomains = [\"a.home\"]\nport = 80\n",
    );
    assert_eq!(w.route.port, Some(80));
}

#[test]
fn port_mappings() {
    assert_eq!(
        web_error("ports = [\"8080:80\", \"0:80\"]"),
        "3:21: workload.web.ports[1]: invalid port mapping \"0:80\": host port 0 is not allowed"
    );
    assert_eq!(
        web_error("ports = [\"8080:80/sctp\"]"),
        "3:10: workload.web.ports[0]: invalid port mapping \"8080:80/sctp\": unknown protocol \"sctp\" (expected tcp or udp)"
    );
    assert_eq!(
        web_error("ports = [8080]"),
        "3:10: workload.web.ports[0]: expected a string, found integer; e.g. \"8080:80/tcp\""
    );
    assert_eq!(
        web_error("ports = \"8080:80\""),
        "3:9: workload.web.ports: expected an array of port mappings, found string; e.g. ports = [\"8080:80/tcp\"]"
    );
    assert_eq!(
        web_error("ports = [\"8080:80\", \"127.0.0.1:8080:81\"]"),
        "3:21: workload.web.ports[1]: host port 8080/tcp (127.0.0.1:8080:81/tcp) is already published by workload.web.ports[0] (8080:80/tcp)"
    );
    // Same port, other protocol or other address: no overlap.
    let w = web("[workload.web]\nworld = \"host\"\nports = [\"53/udp\", \"53/tcp\", \"127.0.0.1:80:80\", \"127.0.0.2:80:80\"]\n");
    assert_eq!(w.ports.len(), 4);
    // An empty array is harmless, whatever the network.
    let w = web("[workload.web]\nworld = \"host\"\nnetwork = \"host\"\nports = []\n");
    assert!(w.ports.is_empty());
}

#[test]
fn ports_need_the_bridge() {
    assert_eq!(
        web_error("network = \"host\"\nports = [\"8080:80\"]"),
        "4:1: workload.web.ports: ports need network = \"bridge\"; with network = \"host\" the workload's own sockets are already on the host"
    );
    // `network` after `ports` counts too.
    assert_eq!(
        web_error("ports = [\"8080:80\"]\nnetwork = \"none\""),
        "3:1: workload.web.ports: ports need network = \"bridge\"; with network = \"none\" the workload has no network to publish"
    );
}

#[test]
fn published_ports_across_workloads() {
    let text = "[workload.web]\nworld = \"host\"\nports = [\"8080:80\"]\n\n\
                [workload.api]\nworld = \"host\"\nports = [\"9000:9000\", \"127.0.0.1:8080:3000\"]\n\n\
                [workload.dns]\nworld = \"host\"\nports = [\"53/udp\", \"8080:80/udp\"]\n\n\
                [workload.zed]\nworld = \"host\"\nports = [\"8080\"]\n";
    assert_eq!(
        errors(text),
        [
            "7:23: workload.api.ports[1]: host port 8080/tcp (127.0.0.1:8080:3000/tcp) is already published by workload \"web\" (8080:80/tcp)",
            "15:10: workload.zed.ports[0]: host port 8080/tcp (8080:8080/tcp) is already published by workload \"web\" (8080:80/tcp)",
        ]
    );
}

#[test]
fn domains_rules() {
    assert_eq!(
        web_error("domains = [\"Git.Home.arpa\"]\nport = 80"),
        "3:12: workload.web.domains[0]: domain \"Git.Home.arpa\" has uppercase letters; write \"git.home.arpa\""
    );
    assert_eq!(
        web_error("domains = [\"git\"]\nport = 80"),
        "3:12: workload.web.domains[0]: domain \"git\" needs at least two labels, e.g. \"git.home.arpa\""
    );
    assert_eq!(
        web_error("domains = [\"a.home\", \"b.home\", \"a.home\"]\nport = 80"),
        "3:32: workload.web.domains[2]: domain \"a.home\" is already listed at workload.web.domains[0]"
    );
    assert_eq!(
        web_error("domains = \"a.home\"\nport = 80"),
        "3:11: workload.web.domains: expected an array of domain names, found string; use an array, e.g. domains = [\"git.home.arpa\"]"
    );
    assert_eq!(
        web_error("domains = []\nport = 80"),
        "3:11: workload.web.domains: must list at least one domain, e.g. domains = [\"git.home.arpa\"]"
    );
    assert_eq!(
        web_error("domains = [1]\nport = 80"),
        "3:12: workload.web.domains[0]: expected a string, found integer"
    );
}

#[test]
fn domains_need_port_and_port_needs_domains() {
    assert_eq!(
        web_error("domains = [\"a.home\"]"),
        "3:1: workload.web.domains: `domains` needs `port`, the workload port to route to"
    );
    assert_eq!(
        web_error("port = 80"),
        "3:1: workload.web.port: `port` is only meaningful with `domains`; it is the workload port the ingress routes to (publish host ports with `ports`)"
    );
    for (line, key) in [
        ("path = \"/x\"", "path"),
        ("websocket = true", "websocket"),
        ("max_body = 0", "max_body"),
        ("tls = \"local\"", "tls"),
    ] {
        assert_eq!(
            web_error(line),
            format!("3:1: workload.web.{key}: `{key}` is only meaningful with `domains`")
        );
    }
    assert_eq!(
        web_error("network = \"none\"\ndomains = [\"a.home\"]\nport = 80"),
        "4:1: workload.web.domains: the ingress cannot reach a workload with network = \"none\"; use \"bridge\" or \"host\""
    );
}

#[test]
fn route_values() {
    let route = |extra: &str| format!("domains = [\"a.home\"]\nport = 80\n{extra}");
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = 0"),
        "4:8: workload.web.port: must be between 1 and 65535, found 0"
    );
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = 65536"),
        "4:8: workload.web.port: must be between 1 and 65535, found 65536"
    );
    assert_eq!(
        web_error("domains = [\"a.home\"]\nport = \"80\""),
        "4:8: workload.web.port: expected a port number, found string; e.g. port = 3000"
    );
    assert_eq!(
        web_error(&route("path = \"api\"")),
        "5:8: workload.web.path: must start with '/', found \"api\""
    );
    assert_eq!(
        web_error(&route("path = \"/a/../b\"")),
        "5:8: workload.web.path: path \"/a/../b\" must not contain a '..' segment"
    );
    assert_eq!(
        web_error(&route("websocket = \"yes\"")),
        "5:13: workload.web.websocket: expected true or false, found string"
    );
    assert_eq!(
        web_error(&route("max_body = \"5 parsecs\"")),
        "5:12: workload.web.max_body: unknown unit \"parsecs\" in \"5 parsecs\"; use K, M, G, T (×1024), KB, MB, GB, TB (×1000) or KiB, MiB, GiB, TiB, e.g. \"256M\""
    );
    for (text, bytes) in [("0", 0), ("\"0\"", 0), ("\"1K\"", 1024), ("1", 1)] {
        let w = web(&format!(
            "[workload.web]\nworld = \"host\"\n{}",
            route(&format!("max_body = {text}\n"))
        ));
        assert_eq!(w.route.max_body, Some(bytes), "{text}");
    }
}

#[test]
fn tls_choices() {
    let route = |extra: &str| format!("domains = [\"a.home\"]\nport = 80\n{extra}");
    let w = web(&format!(
        "[workload.web]\nworld = \"host\"\n{}",
        route("tls = { cert = \"/etc/tls/a.pem\", key = \"/etc/tls/a.key\" }\n")
    ));
    assert_eq!(
        w.route.tls,
        TlsChoice::Files {
            cert: "/etc/tls/a.pem".into(),
            key: "/etc/tls/a.key".into()
        }
    );
    let w = web(&format!(
        "[workload.web]\nworld = \"host\"\n{}[workload.web.tls]\ncert = \"/c\"\nkey = \"/k\"\n",
        route("")
    ));
    assert_eq!(
        w.route.tls,
        TlsChoice::Files {
            cert: "/c".into(),
            key: "/k".into()
        }
    );
    assert_eq!(
        web(&format!(
            "[workload.web]\nworld = \"host\"\n{}",
            route("tls = \"none\"\n")
        ))
        .route
        .tls,
        TlsChoice::None
    );
    assert_eq!(
        web_error(&route("tls = \"locl\"")),
        "5:7: workload.web.tls: unknown value \"locl\"; did you mean \"local\"?"
    );
    assert_eq!(
        web_error(&route("tls = \"acme\"")),
        "5:7: workload.web.tls: unknown value \"acme\"; expected \"none\", \"local\" or a table such as tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = true")),
        "5:7: workload.web.tls: expected \"none\", \"local\" or a table { cert, key }, found boolean"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"/c.pem\" }")),
        "5:1: workload.web.tls: missing `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = {}")),
        "5:1: workload.web.tls: missing `cert` and `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"/c.pem\", kye = \"/k.pem\" }")),
        "5:26: workload.web.tls.kye: unknown key; did you mean `key`?"
    );
    assert_eq!(
        web_error(&route("tls = { cert = \"c.pem\", key = \"/k.pem\" }")),
        "5:16: workload.web.tls.cert: must be an absolute path, found \"c.pem\""
    );
}

#[test]
fn domains_across_workloads_and_sites() {
    let text = r#"[workload.git]
world = "host"
domains = ["git.home.arpa"]
port = 3000

[workload.gitweb]
world = "host"
domains = ["web.home.arpa", "git.home.arpa"]
port = 80

[workload.api]
world = "host"
domains = ["git.home.arpa"]
port = 8080
path = "/api"

[volume.www]
site = { domains = ["git.home.arpa"], path = "/api" }
"#;
    assert_eq!(
        errors(text),
        [
            "8:29: workload.gitweb.domains[1]: domain \"git.home.arpa\" (path \"/\") is already routed to workload \"git\"",
            "18:21: volume.www.site.domains[0]: domain \"git.home.arpa\" (path \"/api\") is already routed to workload \"api\"",
        ]
    );
}

#[test]
fn volume_sites() {
    let p = ok(r#"
[volume.www]
size = "1G"
site = { domains = ["www.home.arpa", "*.static.home.arpa"], path = "/files", autoindex = true, tls = "local" }

[volume.docs]
[volume.docs.site]
domains = ["docs.home.arpa"]
"#);
    assert_eq!(
        p.spec.volumes["www"].site,
        Some(SiteSpec {
            domains: vec!["www.home.arpa".into(), "*.static.home.arpa".into()],
            path: "/files".into(),
            autoindex: true,
            tls: TlsChoice::Local,
        })
    );
    assert_eq!(
        p.spec.volumes["docs"].site,
        Some(SiteSpec {
            domains: vec!["docs.home.arpa".into()],
            ..SiteSpec::default()
        })
    );
    assert_eq!(p.spec.volumes["docs"].site.as_ref().unwrap().path, "/");
    assert_eq!(p.locate("volume.www.site.domains[1]"), (4, 38));
    assert_eq!(
        errors("[volume.www]\nsite = { path = \"/\" }\n"),
        ["2:1: volume.www.site: missing `domains`; e.g. site = { domains = [\"www.home.arpa\"] }"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domain = [\"a.home\"] }\n"),
        ["2:10: volume.www.site.domain: unknown key; did you mean `domains`?"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [] }\n"),
        ["2:20: volume.www.site.domains: must list at least one domain, e.g. domains = [\"git.home.arpa\"]"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [\"WWW.home\"], autoindex = 1 }\n"),
        [
            "2:21: volume.www.site.domains[0]: domain \"WWW.home\" has uppercase letters; write \"www.home\"",
            "2:46: volume.www.site.autoindex: expected true or false, found integer",
        ]
    );
    assert_eq!(
        errors("[volume.www]\nsite = \"www.home\"\n"),
        ["2:8: volume.www.site: expected a table, found string; e.g. site = { domains = [\"www.home.arpa\"], autoindex = true }"]
    );
    assert_eq!(
        errors("[volume.www]\nsite = { domains = [\"a.home\"], tls = { cert = \"/c\" } }\n"),
        ["2:32: volume.www.site.tls: missing `key`; e.g. tls = { cert = \"/etc/warren/tls/site.pem\", key = \"/etc/warren/tls/site.key\" }"]
    );
}

#[test]
fn reserved_workload_name() {
    assert_eq!(
        errors("[workload.warren-ingress]\nworld = \"host\"\n"),
        ["1:11: workload.warren-ingress: the name \"warren-ingress\" is reserved for warren's routing workload"]
    );
}

#[test]
fn locate_network_fields() {
    let p = ok("[workload.web]\nworld = \"host\"\nports = [\"80\", \"443\"]\ndomains = [\"a.home\"]\nport = 80\n");
    assert_eq!(p.locate("workload.web.ports"), (3, 9));
    assert_eq!(p.locate("workload.web.ports[1]"), (3, 16));
    assert_eq!(p.locate("workload.web.domains"), (4, 11));
    assert_eq!(p.locate("workload.web.domains[0]"), (4, 12));
    assert_eq!(p.locate("workload.web.port"), (5, 8));
}

#[test]
fn health_checks_parse_with_defaults() {
    use crate::health::*;
    let w = web(r#"[workload.web]
world = "host"
health = { http = "/healthz", port = 8080, interval = "2s", retries = 5, start_period = "1m", on_unhealthy = "none" }
"#);
    assert_eq!(
        w.health,
        Some(HealthCheck {
            probe: Probe::Http {
                path: "/healthz".into(),
                port: 8080
            },
            interval_secs: 2,
            timeout_secs: DEFAULT_TIMEOUT,
            retries: 5,
            start_period_secs: 60,
            on_unhealthy: OnUnhealthy::None,
        })
    );
    let w = web("[workload.web]\nworld = \"host\"\nnetwork = \"none\"\nhealth = { exec = [\"pg_isready\", \"-q\"] }\n");
    let h = w.health.clone().unwrap();
    assert_eq!(h.probe, Probe::Exec(vec!["pg_isready".into(), "-q".into()]));
    assert_eq!(
        (h.interval_secs, h.retries),
        (DEFAULT_INTERVAL, DEFAULT_RETRIES)
    );
    // Health checks never recreate the container.
    let mut a = w.clone();
    a.health = None;
    assert_eq!(a.hash(), w.hash());
}

#[test]
fn hardening_switches() {
    let w = web("[workload.web]\nworld = \"host\"\nreadonly_rootfs = true\nuserns = true\n");
    assert!(w.readonly_rootfs && w.userns);
    let w = web("[workload.web]\nworld = \"host\"\nreadonly_rootfs = false\nuserns = false\n");
    assert!(!w.readonly_rootfs && !w.userns);
    // userns with its own network namespace, whichever comes first.
    for network in ["bridge", "none"] {
        let w = web(&format!(
            "[workload.web]\nnetwork = \"{network}\"\nworld = \"host\"\nuserns = true\n"
        ));
        assert!(w.userns);
    }
    assert_eq!(
        web_error("readonly_rootfs = \"true\""),
        "3:19: workload.web.readonly_rootfs: expected true or false, found string"
    );
    assert_eq!(
        web_error("userns = { enabled = true }"),
        "3:10: workload.web.userns: expected true or false, found table"
    );
    assert_eq!(
        web_error("network = \"host\"\nuserns = true"),
        "4:1: workload.web.userns: userns = true needs a network namespace of its own \
         (network = \"bridge\" or \"none\"); root in a user namespace holds no privileges \
         over the host's network"
    );
    assert!(web_error("user_ns = true").contains("did you mean `userns`?"));
}

#[test]
fn hooks_parse() {
    use crate::hooks::*;
    let w = web(r#"[workload.web]
world = "host"
hooks = [
  { on = "crash", exec = ["sh", "-c", "true"], timeout = "30s" },
  { on = "schedule", cron = "0 3 * * *", snapshot = "nightly" },
  { on = "schedule", every = "15m", host = ["/bin/true"] },
  { on = "health", webhook = "http://192.0.2.1:9000/alerts" },
  { on = "stop", restart = true },
]
"#);
    assert_eq!(w.hooks.len(), 5);
    assert_eq!(w.hooks[0].on, HookEvent::Crash);
    assert_eq!(w.hooks[0].timeout_secs, 30);
    assert_eq!(
        w.hooks[1].schedule,
        Some(Schedule::Cron(CronSchedule::utc(
            CronExpr::parse("0 3 * * *").unwrap()
        )))
    );
    assert_eq!(w.hooks[1].action, HookAction::Snapshot("nightly".into()));
    assert_eq!(w.hooks[2].schedule, Some(Schedule::Every(900)));
    assert_eq!(w.hooks[3].timeout_secs, DEFAULT_HOOK_TIMEOUT);
    assert_eq!(w.hooks[4].action, HookAction::Restart);
    // Hooks never recreate the container.
    let mut a = w.clone();
    a.hooks.clear();
    assert_eq!(a.hash(), w.hash());
}

#[test]
fn cron_hooks_take_a_time_zone() {
    use crate::hooks::*;
    let w = web(r#"[workload.web]
world = "host"
hooks = [
  { on = "schedule", timezone = "Europe/Berlin", cron = "0 3 * * *", snapshot = "nightly" },
]
"#);
    let Some(Schedule::Cron(c)) = &w.hooks[0].schedule else {
        panic!("{:?}", w.hooks[0].schedule);
    };
    assert_eq!(c.expr.as_str(), "0 3 * * *");
    assert_eq!(c.zone.as_ref().map(|z| z.name()), Some("Europe/Berlin"));
    assert_eq!(
        web_error(
            r#"hooks = [{ on = "schedule", cron = "0 3 * * *", timezone = "Europe/Nowhere", restart = true }]"#
        ),
        "3:60: workload.web.hooks[0].timezone: \"Europe/Nowhere\" is not an IANA time zone name \
         (such as \"Europe/Berlin\" or \"UTC\")"
    );
    assert_eq!(
        web_error(r#"hooks = [{ on = "schedule", cron = "0 3 * * 9", restart = true }]"#),
        "3:36: workload.web.hooks[0].cron: day of week: \"9\" is not valid (0-7): number out of bounds"
    );
    assert_eq!(
        web_error(
            r#"hooks = [{ on = "schedule", every = "1h", timezone = "UTC", restart = true }]"#
        ),
        "3:43: workload.web.hooks[0].timezone: `timezone` belongs to a `cron` schedule; \
         e.g. cron = \"0 3 * * *\", timezone = \"Europe/Berlin\""
    );
}
