//! The jail runtime's command protocol through the recording executor: a workload's whole
//! lifecycle (create → start → exec → snapshot → stop → destroy, the snapshot through the ZFS
//! storage driver) runs exactly these commands, a failure injected at each step of creation
//! runs the undo of exactly the steps before it, and a failure at any later step (exec,
//! snapshot, stop, each step of destroy) leaves nothing half-done.

use std::path::PathBuf;
use std::sync::Arc;

use warren_exec::RecordingExecutor;
use warren_jail::devfs::{Ruleset, DEFAULT_RULESET};
use warren_jail::runtime::{epair_base, JailRuntime};
use warren_model::Resources;
use warren_runtime::{
    Backend, Bind, BridgeAddress, ExecRequest, JailParams, JailedDataset, NetNamespace, Observed,
    Runtime, WorkloadRun,
};
use warren_storage::zfs::ZfsStorage;
use warren_storage::{DatasetId, Storage};

fn spec() -> WorkloadRun {
    WorkloadRun {
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
        backend: Backend::Jail(JailParams::default()),
    }
}

/// The jail parameters of a run built here.
fn jail(s: &mut WorkloadRun) -> &mut JailParams {
    match &mut s.backend {
        Backend::Jail(p) => p,
        other => panic!("not a jail run: {other:?}"),
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

    // a one-shot command, observe, snapshot-time freeze and thaw, stop
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
        .run_in(
            "warren-web",
            &["service".into(), "nginx".into(), "reload".into()],
        )
        .unwrap();
    assert_eq!(out.stdout_str(), "Reloading nginx.\n");
    assert_eq!(
        rt.observe("warren-web").unwrap(),
        Some(Observed {
            running: true,
            frozen: false,
            pid: None
        })
    );
    rt.freeze("warren-web").unwrap();
    rt.thaw("warren-web").unwrap();
    rt.stop("warren-web").unwrap();
    // pkill exiting 1 with nothing on stderr: no process left, which is what KILL wanted.
    rt.kill("warren-web", "KILL").unwrap();

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
    assert_eq!(rt.observe("warren-web").unwrap(), None);
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
        .run_foreground(&spec(), std::path::Path::new("/b"))
        .unwrap_err()
        .to_string()
        .contains("one-off runs"));
    assert!(JailRuntime::new(rec.clone(), "bridge0;x", Ruleset::warren_default(1)).is_err());
    rec.finish();
}

// ---------------------------------------------------------------------------------------------
// A jail with every part: permissions, an addressed vnet, rules, a volume and its data
// dataset delegated to it, on the ZFS storage driver.
// ---------------------------------------------------------------------------------------------

const ZROOT: &str = "/srv/warren/zfs";
const DS: &str = "tank/warren/workloads/web/data";

fn root() -> String {
    format!("{ZROOT}/workloads/web/rootfs")
}

fn full_spec() -> WorkloadRun {
    let mut s = spec();
    s.rootfs = PathBuf::from(root());
    s.binds = vec![
        Bind {
            source: PathBuf::from(format!("{ZROOT}/workloads/web/data")),
            dest: "/data".into(),
            readonly: false,
        },
        Bind {
            source: PathBuf::from(format!("{ZROOT}/volumes/media")),
            dest: "/srv/media".into(),
            readonly: true,
        },
    ];
    s.resources = Resources {
        memory: Some(256 << 20),
        cpus: None,
        pids: Some(64),
        disk: None,
    };
    s.network = NetNamespace::Bridge;
    *jail(&mut s) = JailParams {
        allow: vec!["raw_sockets".into()],
        vnet: true,
        address: Some(BridgeAddress {
            address: "10.88.0.5".parse().unwrap(),
            prefix: 16,
            gateway: "10.88.0.1".parse().unwrap(),
        }),
        jailed_dataset: Some(JailedDataset {
            dataset: DS.into(),
            host_mountpoint: PathBuf::from(format!("{ZROOT}/workloads/web/data")),
            jail_mountpoint: "/data".into(),
        }),
    };
    s
}

/// The commands of `create` for [`full_spec`], in order, with what each prints.
fn full_create_steps() -> Vec<(String, &'static str)> {
    let wj = epair_base("warren-web");
    let r = root();
    [
        (format!("mkdir -p {r}/srv/media"), ""),
        (
            format!("mount -t nullfs -o ro {ZROOT}/volumes/media {r}/srv/media"),
            "",
        ),
        (format!("mkdir -p {r}/data"), ""),
        ("ifconfig epair create".into(), "epair7a\n"),
        ("ifconfig epair7a name WJa".into(), ""),
        ("ifconfig epair7b name WJb".into(), ""),
        ("ifconfig bridge0 addm WJa".into(), ""),
        ("ifconfig WJa up".into(), ""),
        (
            format!(
                "jail -c name=warren-web path={r} host.hostname=web vnet vnet.interface=WJb \
                 allow.mount allow.mount.zfs allow.raw_sockets enforce_statfs=1 \
                 devfs_ruleset=4711 mount.devfs persist children.max=0"
            ),
            "",
        ),
        (
            "jexec -l warren-web /sbin/ifconfig lo0 inet 127.0.0.1/8 up".into(),
            "",
        ),
        (
            "jexec -l warren-web /sbin/ifconfig WJb inet 10.88.0.5/16 up".into(),
            "",
        ),
        (
            "jexec -l warren-web /sbin/route -q add default 10.88.0.1".into(),
            "add net default: gateway 10.88.0.1\n",
        ),
        (
            "rctl -a jail:warren-web:memoryuse:deny=268435456".into(),
            "",
        ),
        ("rctl -a jail:warren-web:maxproc:deny=64".into(), ""),
        (format!("zfs set jailed=on {DS}"), ""),
        (format!("zfs set mountpoint=/data {DS}"), ""),
        (format!("zfs jail warren-web {DS}"), ""),
        (format!("jexec -l warren-web zfs mount {DS}"), ""),
    ]
    .into_iter()
    .map(|(c, out)| (c.replace("WJ", &wj), out))
    .collect()
}

/// The whole teardown of [`full_spec`]'s jail, in order.
fn full_teardown() -> Vec<String> {
    let wj = epair_base("warren-web");
    let r = root();
    vec![
        "rctl -r jail:warren-web".to_string(),
        format!("umount {r}/data"),
        format!("zfs unjail warren-web {DS}"),
        "jail -r warren-web".into(),
        format!("zfs set mountpoint={ZROOT}/workloads/web/data {DS}"),
        format!("zfs set jailed=off {DS}"),
        format!("zfs mount {DS}"),
        format!("ifconfig {wj}a destroy"),
        format!("umount {r}/srv/media"),
    ]
}

/// What undoes a failure at create step `k` of [`full_create_steps`]: the teardown of what
/// was done, in teardown order.
fn full_undo_after(k: usize) -> Vec<String> {
    let wj = epair_base("warren-web");
    let r = root();
    let mut undo = Vec::new();
    if k > 11 {
        undo.push("rctl -r jail:warren-web".to_string());
    }
    if k > 16 {
        undo.push(format!("umount {r}/data"));
        undo.push(format!("zfs unjail warren-web {DS}"));
    }
    if k > 8 {
        undo.push("jail -r warren-web".into());
    }
    if k > 14 {
        undo.push(format!(
            "zfs set mountpoint={ZROOT}/workloads/web/data {DS}"
        ));
        undo.push(format!("zfs set jailed=off {DS}"));
        undo.push(format!("zfs mount {DS}"));
    }
    if k == 4 {
        undo.push("ifconfig epair7a destroy".into());
    }
    if k > 4 {
        undo.push(format!("ifconfig {wj}a destroy"));
    }
    if k > 1 {
        undo.push(format!("umount {r}/srv/media"));
    }
    undo
}

/// The ZFS driver on `tank`, mounted under [`ZROOT`].
fn zfs_storage(rec: &Arc<RecordingExecutor>) -> ZfsStorage {
    rec.expect_ok("zfs list -Hp -o name tank", "tank\n")
        .expect_ok(
            "zfs get -Hp -t filesystem -o name,property,value,source mountpoint -d 1 tank/warren",
            &format!(
                "tank/warren\tmountpoint\t{ZROOT}\tlocal\n\
             tank/warren/volumes\tmountpoint\t{ZROOT}/volumes\tlocal\n\
             tank/warren/workloads\tmountpoint\t{ZROOT}/workloads\tlocal\n\
             tank/warren/worlds\tmountpoint\t{ZROOT}/worlds\tlocal\n"
            ),
        );
    let s = ZfsStorage::open("tank", PathBuf::from(ZROOT), rec.clone()).unwrap();
    rec.finish();
    s
}

/// The daemon's workload snapshot: the jail frozen, rootfs then data snapshotted (the first
/// deleted again if the second fails), the jail thawed whatever happened.
fn snapshot_workload(
    rt: &JailRuntime,
    storage: &ZfsStorage,
    label: &str,
) -> Result<(), warren_storage::StorageError> {
    rt.freeze("warren-web").unwrap();
    let mut taken = Vec::new();
    let mut result = Ok(());
    for id in [
        DatasetId::Rootfs("web".into()),
        DatasetId::Data("web".into()),
    ] {
        match storage.snapshot(&id, label) {
            Ok(_) => taken.push(id),
            Err(e) => {
                for t in &taken {
                    let _ = storage.delete_snapshot(t, label);
                }
                result = Err(e);
                break;
            }
        }
    }
    rt.thaw("warren-web").unwrap();
    result
}

fn expect_snapshot(rec: &RecordingExecutor, dataset: &str, label: &str, created: u64) {
    rec.expect_ok(&format!("zfs snapshot tank/warren/{dataset}@{label}"), "")
        .expect_ok(
            &format!(
                "zfs list -Hp -t snapshot -o name,used,creation tank/warren/{dataset}@{label}"
            ),
            &format!("tank/warren/{dataset}@{label}\t0\t{created}\n"),
        );
}

#[test]
fn full_lifecycle_with_a_jailed_dataset_and_a_snapshot() {
    let rec = Arc::new(RecordingExecutor::new());
    let storage = zfs_storage(&rec);
    let rt = runtime(&rec);
    let spec = full_spec();
    let plan = rt.plan(&spec).unwrap();
    assert!(plan.mounts.iter().all(|m| !m.target.ends_with("data")));

    // create
    for (c, out) in full_create_steps() {
        rec.expect_ok(&c, out);
    }
    rt.create(&plan).unwrap();
    rec.finish();

    // start: what the shim runs, and what it removes after the main process.
    let run_dir = std::path::Path::new("/var/db/warren/workloads/web");
    let cfg = rt.shim_config(&spec, &plan, run_dir).unwrap();
    assert_eq!(cfg.id, "warren-web");
    assert_eq!(cfg.jexec[..4], ["-l", "-U", "www", "warren-web"]);
    assert_eq!(cfg.jexec.last().map(String::as_str), Some("80"));
    assert_eq!(cfg.log_dir, run_dir.join("logs"));
    let teardown: Vec<String> = cfg.teardown.iter().map(|a| a.join(" ")).collect();
    assert_eq!(teardown, full_teardown());

    // exec
    rec.expect_ok("jexec -l warren-web ls /data", "db\n");
    assert_eq!(
        rt.run_in("warren-web", &["ls".into(), "/data".into()])
            .unwrap()
            .stdout_str(),
        "db\n"
    );

    // snapshot through the ZFS driver, the jail frozen meanwhile
    rec.expect_ok("pkill -STOP -j warren-web", "");
    expect_snapshot(&rec, "workloads/web/rootfs", "before", 1768471234);
    expect_snapshot(&rec, "workloads/web/data", "before", 1768471235);
    rec.expect_ok("pkill -CONT -j warren-web", "");
    snapshot_workload(&rt, &storage, "before").unwrap();

    // stop
    rec.expect_ok("pkill -TERM -j warren-web", "")
        .expect_err("pkill -KILL -j warren-web", "");
    rt.stop("warren-web").unwrap();
    rt.kill("warren-web", "KILL").unwrap();

    // destroy
    for c in full_teardown() {
        rec.expect_ok(&c, "");
    }
    rt.delete("warren-web").unwrap();
    rec.finish();
    assert_eq!(rec.ran().len(), 2 + 18 + 1 + 4 + 2 + 2 + 9);
}

#[test]
fn full_create_failing_at_each_step_undoes_exactly_what_was_done() {
    let steps = full_create_steps();
    for k in 0..steps.len() {
        let rec = Arc::new(RecordingExecutor::new());
        let rt = runtime(&rec);
        for (c, out) in &steps[..k] {
            rec.expect_ok(c, out);
        }
        rec.expect_err(&steps[k].0, "operation failed");
        for u in full_undo_after(k) {
            rec.expect_ok(&u, "");
        }
        let err = rt
            .create(&rt.plan(&full_spec()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("operation failed"), "step {k}: {err}");
        rec.finish();
    }
}

#[test]
fn later_steps_failing_leave_nothing_half_done() {
    let rec = Arc::new(RecordingExecutor::new());
    let storage = zfs_storage(&rec);
    let rt = runtime(&rec);
    for (c, out) in full_create_steps() {
        rec.expect_ok(&c, out);
    }
    rt.create(&rt.plan(&full_spec()).unwrap()).unwrap();
    rec.finish();

    // exec failing changes nothing.
    rec.expect_err("jexec -l warren-web false", "");
    assert!(rt.run_in("warren-web", &["false".into()]).is_err());
    rec.finish();

    // A data snapshot refused: the rootfs one is deleted again and the jail thawed.
    rec.expect_ok("pkill -STOP -j warren-web", "");
    expect_snapshot(&rec, "workloads/web/rootfs", "nightly", 1768471234);
    rec.expect_err(
        &format!("zfs snapshot {DS}@nightly"),
        "cannot create snapshot 'tank/warren/workloads/web/data@nightly': out of space\n",
    )
    .expect_ok("zfs destroy tank/warren/workloads/web/rootfs@nightly", "")
    .expect_ok("pkill -CONT -j warren-web", "");
    let err = snapshot_workload(&rt, &storage, "nightly")
        .unwrap_err()
        .to_string();
    assert!(err.contains("out of space"), "{err}");
    rec.finish();

    // A signal pkill cannot deliver is an error (not "no process").
    rec.expect_err(
        "pkill -TERM -j warren-web",
        "pkill: kvm_openfiles: Permission denied\n",
    );
    assert!(rt.stop("warren-web").is_err());
    rec.finish();

    // Destroy failing at each step: reported, and the next destroy finishes the job (what is
    // already gone is not an error), from the same teardown.
    let teardown = full_teardown();
    for k in 0..teardown.len() {
        for c in &teardown[..k] {
            rec.expect_ok(c, "");
        }
        rec.expect_err(&teardown[k], "device busy\n");
        assert!(rt.delete("warren-web").is_err(), "step {k}");
        rec.finish();
        for c in &teardown[..k] {
            rec.expect_err(c, "does not exist\n");
        }
        // The last retry succeeds; earlier ones stop again at the next step to test.
        for c in &teardown[k..] {
            rec.expect_ok(c, "");
        }
        rt.delete("warren-web").unwrap();
        rec.finish();
        if k + 1 < teardown.len() {
            // Made again for the next round.
            for (c, out) in full_create_steps() {
                rec.expect_ok(&c, out);
            }
            rt.create(&rt.plan(&full_spec()).unwrap()).unwrap();
            rec.finish();
        }
    }
}

#[test]
fn a_later_daemon_tears_down_from_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec).with_state_dir(dir.path().join("jails"));
    for (c, out) in full_create_steps() {
        rec.expect_ok(&c, out);
    }
    rt.create(&rt.plan(&full_spec()).unwrap()).unwrap();
    rec.finish();
    assert!(dir.path().join("jails/warren-web.json").is_file());
    drop(rt);

    // A new runtime (the daemon restarted) knows the whole teardown, mounts and dataset too.
    let rt = runtime(&rec).with_state_dir(dir.path().join("jails"));
    for c in full_teardown() {
        rec.expect_ok(&c, "");
    }
    rt.delete("warren-web").unwrap();
    rec.finish();
    assert!(!dir.path().join("jails/warren-web.json").exists());

    // Without a record: by name.
    rec.expect_ok("rctl -r jail:warren-web", "")
        .expect_err("jail -r warren-web", "jail: \"warren-web\" not found\n")
        .expect_err(
            &format!("ifconfig {}a destroy", epair_base("warren-web")),
            "ifconfig: interface does not exist\n",
        );
    rt.delete("warren-web").unwrap();
    rec.finish();
}

#[test]
fn jail_parameters_shape_the_network() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let args = |s: &WorkloadRun| rt.plan(s).unwrap().jail.create_args().unwrap();

    // No vnet on the bridge: a /32 alias of the workload's address on it, no epair.
    let mut s = full_spec();
    jail(&mut s).vnet = false;
    jail(&mut s).jailed_dataset = None;
    let p = rt.plan(&s).unwrap();
    assert!(p.epair.is_none() && p.address.is_none());
    let a = args(&s);
    assert!(
        a.contains(&"ip4.addr=bridge0|10.88.0.5/32".to_string()),
        "{a:?}"
    );
    assert!(a.contains(&"enforce_statfs=2".to_string()), "{a:?}");
    assert!(a.contains(&"allow.raw_sockets".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("allow.mount")), "{a:?}");
    // The data dataset is bound from the host again.
    assert!(p.mounts.iter().any(|m| m.target.ends_with("data")));

    // No vnet, no network: no IPv4 at all.
    s.network = NetNamespace::Private;
    assert!(args(&s).contains(&"ip4=disable".to_string()));
    // The host's network: its addresses, vnet or not.
    s.network = NetNamespace::Host;
    assert!(args(&s).contains(&"ip4=inherit".to_string()));

    // An alias needs the address.
    let mut s = full_spec();
    jail(&mut s).vnet = false;
    jail(&mut s).address = None;
    assert!(rt
        .plan(&s)
        .unwrap_err()
        .to_string()
        .contains("needs the workload's address"));

    // Hostile parameters are refused before anything runs.
    let mut s = full_spec();
    jail(&mut s).allow = vec!["raw_sockets persist".into()];
    assert!(rt.plan(&s).unwrap_err().to_string().contains("allow."));
    let mut s = full_spec();
    jail(&mut s).jailed_dataset.as_mut().unwrap().dataset = "-o readonly=off tank".into();
    assert!(rt.plan(&s).unwrap_err().to_string().contains("ZFS dataset"));
    let mut s = full_spec();
    jail(&mut s)
        .jailed_dataset
        .as_mut()
        .unwrap()
        .jail_mountpoint = "/data/../etc".into();
    assert!(rt.plan(&s).is_err());
    let mut s = full_spec();
    jail(&mut s).address.as_mut().unwrap().prefix = 31;
    assert!(rt.plan(&s).is_err());
    rec.finish();
    assert!(rec.ran().is_empty());
}

#[test]
fn exec_runs_as_the_main_process_user_in_a_clean_environment() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let req = ExecRequest {
        argv: vec!["ls".into(), "/data".into()],
        tty: true,
        env: vec!["A=1".into()],
        cwd: Some("/srv".into()),
    };
    let inner = [
        "/bin/sh",
        "-c",
        "cd -- \"$0\" && exec /usr/bin/env -i \"$@\"",
    ];
    // Before the jail is created here: root, as for a jail from before a restart.
    let mut want: Vec<String> = ["-l", "warren-web"].iter().map(|s| s.to_string()).collect();
    want.extend(inner.iter().map(|s| s.to_string()));
    want.extend(["/srv", "A=1", "ls", "/data"].map(String::from));
    assert_eq!(rt.exec_args("warren-web", &req).unwrap(), want);

    for (c, out) in full_create_steps() {
        rec.expect_ok(&c, out);
    }
    rt.create(&rt.plan(&full_spec()).unwrap()).unwrap();
    rec.finish();
    let plain = rt
        .exec_args("warren-web", &ExecRequest::new(vec!["id".into()]))
        .unwrap();
    assert_eq!(plain[..4], ["-l", "-U", "www", "warren-web"]);
    assert_eq!(plain[4..7], inner);
    assert_eq!(plain[7..], ["/", "id"]);

    assert!(rt
        .exec_args("warren-web", &ExecRequest::new(vec![]))
        .is_err());
    assert!(rt
        .exec_args("web.sub", &ExecRequest::new(vec!["id".into()]))
        .is_err());
}

#[test]
fn a_run_for_another_backend_is_refused() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    let mut oci = spec();
    oci.backend = Backend::Oci;
    let err = rt.plan(&oci).unwrap_err().to_string();
    assert!(
        err.contains("built for the oci backend, not for the jail runtime"),
        "{err}"
    );
    assert!(rec.ran().is_empty());
}

#[test]
fn observe_tells_an_active_jail_from_a_dying_one() {
    let rec = Arc::new(RecordingExecutor::new());
    let rt = runtime(&rec);
    rec.expect_ok(
        "jls --libxo json -v -d",
        r#"{"__version": "2", "jail-information": {"jail": [{"jid":4,"hostname":"web","path":"/r","name":"warren-web","state":"DYING","cpusetid":6,"ipv4_addrs": [],"ipv6_addrs": []}]}}"#,
    );
    assert_eq!(
        rt.observe("warren-web").unwrap(),
        Some(Observed {
            running: false,
            frozen: false,
            pid: None
        })
    );
    rec.finish();
}
