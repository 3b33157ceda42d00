//! The jail runtime's command protocol through the recording executor: a workload's whole
//! lifecycle (create → start → exec → stop → destroy) runs exactly these commands, and a
//! failure injected at each step of creation runs the undo commands of the steps before it.

use std::path::PathBuf;
use std::sync::Arc;

use warren_exec::RecordingExecutor;
use warren_jail::devfs::{Ruleset, DEFAULT_RULESET};
use warren_jail::runtime::{epair_base, JailRuntime};
use warren_model::Resources;
use warren_runtime::{Bind, ContainerSpec, NetNamespace, Runtime};

fn spec() -> ContainerSpec {
    ContainerSpec {
        id: "warren-web".into(),
        rootfs: PathBuf::from("/srv/warren/workloads/web/rootfs"),
        readonly_rootfs: false,
        binds: vec![Bind {
            source: PathBuf::from("/srv/warren/workloads/web/data"),
            dest: "/data".into(),
            readonly: false,
        }],
        args: vec!["/usr/local/bin/web".into(), "--port".into(), "80".into()],
        env: vec!["MODE=prod".into()],
        cwd: "/srv".into(),
        user: Some("www:www".into()),
        hostname: "web".into(),
        resources: Resources {
            memory: Some(256 << 20),
            cpus: Some(1.5),
            pids: Some(64),
            disk: None,
        },
        terminal: false,
        cgroup_path: "/warren/web".into(),
        network: NetNamespace::Path(PathBuf::from("/var/run/warren/netns/web")),
        userns: None,
        jail: Default::default(),
    }
}

const JAIL_C: &str = "jail -c name=warren-web path=/srv/warren/workloads/web/rootfs host.hostname=web vnet vnet.interface=WJb enforce_statfs=2 devfs_ruleset=4711 mount.devfs persist children.max=0";

/// The mutating commands of `create`, in order, with what each prints.
fn create_steps() -> Vec<(String, &'static str)> {
    let wj = epair_base("warren-web");
    [
        ("mkdir -p /srv/warren/workloads/web/rootfs/data", ""),
        (
            "mount -t nullfs /srv/warren/workloads/web/data /srv/warren/workloads/web/rootfs/data",
            "",
        ),
        ("ifconfig epair create", "epair3a\n"),
        ("ifconfig epair3a name WJa", ""),
        ("ifconfig epair3b name WJb", ""),
        ("ifconfig bridge0 addm WJa", ""),
        ("ifconfig WJa up", ""),
        (JAIL_C, ""),
        ("rctl -a jail:warren-web:memoryuse:deny=268435456", ""),
        ("rctl -a jail:warren-web:pcpu:deny=150", ""),
        ("rctl -a jail:warren-web:maxproc:deny=64", ""),
    ]
    .into_iter()
    .map(|(c, out)| (c.replace("WJ", &wj), out))
    .collect()
}

fn runtime(rec: &Arc<RecordingExecutor>) -> JailRuntime {
    JailRuntime::new(
        rec.clone(),
        "bridge0",
        Ruleset::warren_default(DEFAULT_RULESET),
    )
    .unwrap()
}

#[test]
fn full_lifecycle_runs_exactly_these_commands() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let wj = epair_base("warren-web");
    assert_eq!(wj.len(), 10);

    // Host preparation: the devfs ruleset.
    rec.expect_ok("devfs rule -s 4711 delset", "")
        .expect_ok("devfs rule -s 4711 add hide", "");
    for p in [
        "log", "null", "zero", "crypto", "random", "urandom", "ptyp*", "ptyq*", "ptyr*", "ptys*",
        "ttyp*", "ttyq*", "ttyr*", "ttys*", "pts", "pts/*", "fd", "fd/*", "stdin", "stdout",
        "stderr",
    ] {
        rec.expect_ok(&format!("devfs rule -s 4711 add path {p} unhide"), "");
    }
    rt.prepare_host().unwrap();

    // create
    for (c, out) in create_steps() {
        rec.expect_ok(&c, out);
    }
    let plan = rt.plan(&spec()).unwrap();
    rt.create(&plan).unwrap();

    // start: the main process's jexec argv (spawned by `Runtime::start`).
    assert_eq!(
        rt.main_args(&spec(), &plan).unwrap(),
        [
            "-l",
            "-U",
            "www",
            "warren-web",
            "/bin/sh",
            "-c",
            "cd -- \"$0\" && exec /usr/bin/env -i \"$@\"",
            "/srv",
            "MODE=prod",
            "PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin",
            "/usr/local/bin/web",
            "--port",
            "80"
        ]
    );

    // exec, status, snapshot-time freeze and thaw, stop
    rec.expect_ok("jexec -l warren-web service nginx reload", "Reloading nginx.\n")
        .expect_ok(
            "jls --libxo json -v -d",
            r#"{"__version": "2", "jail-information": {"jail": [{"jid":4,"hostname":"web","path":"/srv/warren/workloads/web/rootfs","name":"warren-web","state":"ACTIVE","cpusetid":6,"ipv4_addrs": [],"ipv6_addrs": []}]}}"#,
        )
        .expect_ok("pkill -STOP -j warren-web", "")
        .expect_ok("pkill -CONT -j warren-web", "")
        .expect_ok("pkill -TERM -j warren-web", "")
        .expect_err("pkill -KILL -j warren-web", "");
    let out = rt
        .exec(
            "warren-web",
            &["service".into(), "nginx".into(), "reload".into()],
        )
        .unwrap();
    assert_eq!(out.stdout_str(), "Reloading nginx.\n");
    assert_eq!(rt.status("warren-web").unwrap().as_deref(), Some("running"));
    rt.pause("warren-web").unwrap();
    rt.resume("warren-web").unwrap();
    rt.signal("warren-web", "TERM").unwrap();
    // pkill exiting 1 with nothing on stderr: no process left, which is what KILL wanted.
    rt.signal("warren-web", "KILL").unwrap();

    // destroy
    rec.expect_ok("rctl -r jail:warren-web", "")
        .expect_ok("jail -r warren-web", "warren-web: removed\n")
        .expect_ok(&format!("ifconfig {wj}a destroy"), "")
        .expect_ok("umount /srv/warren/workloads/web/rootfs/data", "")
        .expect_ok(
            "jls --libxo json -v -d",
            r#"{"__version": "2", "jail-information": {"jail": []}}"#,
        );
    rt.delete("warren-web").unwrap();
    assert_eq!(rt.status("warren-web").unwrap(), None);
    rec.finish();
}

/// The undo commands for a failure at create step `k` (0-based).
fn undo_after(k: usize) -> Vec<String> {
    let wj = epair_base("warren-web");
    let mut undo = Vec::new();
    // Steps done before k, each with the command that undoes it.
    if k > 1 {
        undo.push("umount /srv/warren/workloads/web/rootfs/data".to_string());
    }
    if k == 3 {
        undo.push("ifconfig epair3a destroy".into());
    }
    if k > 3 {
        undo.push(format!("ifconfig {wj}a destroy"));
    }
    if k > 7 {
        undo.push("jail -r warren-web".into());
        undo.push("rctl -r jail:warren-web".into());
    }
    undo.reverse();
    undo
}

#[test]
fn a_failure_at_each_step_of_create_is_undone() {
    let steps = create_steps();
    for k in 0..steps.len() {
        let rec = Arc::new(RecordingExecutor::new());
        let rt = runtime(&rec);
        for (c, out) in &steps[..k] {
            rec.expect_ok(c, out);
        }
        rec.expect_err(&steps[k].0, "operation failed");
        for u in undo_after(k) {
            rec.expect_ok(&u, "");
        }
        let err = rt
            .create(&rt.plan(&spec()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("operation failed"), "step {k}: {err}");
        rec.finish();
        // Nothing is remembered: a later delete removes by name only.
        rec.expect_ok("rctl -r jail:warren-web", "")
            .expect_err("jail -r warren-web", "jail: \"warren-web\" not found\n")
            .expect_err(
                &format!("ifconfig {}a destroy", epair_base("warren-web")),
                "ifconfig: interface wj..a does not exist\n",
            );
        rt.delete("warren-web").unwrap();
        rec.finish();
    }
}

#[test]
fn epair_create_printing_garbage_is_undone() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let steps = create_steps();
    for (c, out) in &steps[..2] {
        rec.expect_ok(c, out);
    }
    rec.expect_ok("ifconfig epair create", "bridge7\n")
        .expect_ok("umount /srv/warren/workloads/web/rootfs/data", "");
    let err = rt
        .create(&rt.plan(&spec()).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bridge7"), "{err}");
    rec.finish();
}

#[test]
fn network_modes_and_hostile_specs() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let mut s = spec();
    s.network = NetNamespace::Host;
    s.binds.clear();
    s.resources = Resources::default();
    let p = rt.plan(&s).unwrap();
    assert!(p.epair.is_none() && p.rules.is_empty());
    assert!(p
        .jail
        .create_args()
        .unwrap()
        .contains(&"ip4=inherit".to_string()));
    s.network = NetNamespace::Private;
    let p = rt.plan(&s).unwrap();
    assert!(p.jail.create_args().unwrap().contains(&"vnet".to_string()));
    assert!(!p
        .jail
        .create_args()
        .unwrap()
        .iter()
        .any(|a| a.starts_with("vnet.interface")));

    let mut bad = spec();
    bad.binds[0].dest = "/data/../../etc".into();
    assert!(rt
        .plan(&bad)
        .unwrap_err()
        .to_string()
        .contains("bind destination"));
    let mut bad = spec();
    bad.id = "web.sub".into();
    assert!(rt.plan(&bad).is_err());
    let mut bad = spec();
    bad.hostname = "web; rm -rf /".into();
    assert!(rt
        .plan(&bad)
        .unwrap_err()
        .to_string()
        .contains("host.hostname"));
    let mut bad = spec();
    bad.env = vec!["NOEQUALS".into()];
    let plan = rt.plan(&spec()).unwrap();
    assert!(rt
        .main_args(&bad, &plan)
        .unwrap_err()
        .to_string()
        .contains("NOEQUALS"));
    assert!(JailRuntime::signal_cmd("warren-web", "TERM; reboot").is_err());
    assert!(rt
        .run_command(std::path::Path::new("/b"), "warren-web")
        .is_err());
    assert!(JailRuntime::new(rec.clone(), "bridge0;x", Ruleset::warren_default(1)).is_err());
    rec.finish();
}
