//! Tests of the `[workload.NAME]` table: kinds, sources, command, environment, paths,
//! users, restart and state, resources, the reserved name and the hardening switches.

use super::*;

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
        ["1:1: version: unknown key; expected one of workload, volume, host"]
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
        "3:1: workload.web.publish: unknown key; expected one of kind, world, image, recipe, command, entrypoint, env, workdir, user, hostname, restart, state, data_path, resources, volumes, snapshots, health, hooks, network, ports, domains, port, path, websocket, max_body, tls, readonly_rootfs, userns, jail, vm, after, wait"
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
fn reserved_workload_name() {
    assert_eq!(
        errors("[workload.warren-ingress]\nworld = \"host\"\n"),
        ["1:11: workload.warren-ingress: the name \"warren-ingress\" is reserved for warren's routing workload"]
    );
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
