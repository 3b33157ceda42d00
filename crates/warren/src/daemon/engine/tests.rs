//! The engine driven in-process over its fakes (no root, no processes): reconcile
//! convergence, adoption after a daemon restart, crash-loop backoff, OOM kills under
//! `on-failure`, drift, a parallel apply, a bridge workload's network, and a VM's run (its tap,
//! its disks, a full VM without a root filesystem). Each test asserts on the calls the fakes
//! recorded and on the observed state.

use super::fakes::{Harness, ScriptedExit};
use warren_model::event::EventKind;
use warren_model::plan::LastExit;
use warren_model::{NetworkMode, RestartPolicy, Source, WorkloadSpec};

fn spec(name: &str) -> WorkloadSpec {
    let mut s = WorkloadSpec::new(name, Source::World("base".into()));
    s.network = NetworkMode::None;
    s
}

/// Waits until `name` is not running and its last run is recorded as an exit.
async fn until_exited(h: &Harness, name: &str) {
    h.until(&format!("{name} exited"), |e| {
        e.observed_row(name).is_some_and(|r| {
            r.pid.is_none() && matches!(r.last_exit, Some(LastExit::Exited { .. }))
        })
    })
    .await;
}

fn starts(calls: &[String]) -> usize {
    calls.iter().filter(|c| c.starts_with("start ")).count()
}

#[tokio::test]
async fn reconcile_converges_and_a_second_pass_plans_nothing() {
    let h = Harness::new();
    h.apply(&[spec("web")]);
    h.pass().await;

    assert_eq!(h.runtime.calls(), ["start web"]);
    assert!(h.storage.has_rootfs("web") && h.storage.has_data("web"));
    let row = h.engine.observed_row("web").expect("observed");
    let d = h.engine.desired_all().unwrap().remove("web").unwrap();
    assert_eq!(row.provisioned.as_deref(), Some(d.hash.as_str()));
    assert!(row.pid.is_some());
    assert_eq!(h.engine.status(&d).state, "running");

    let (runtime, storage) = (h.runtime.calls(), h.storage.calls());
    h.pass().await;
    assert_eq!(
        h.runtime.calls(),
        runtime,
        "a converged pass touches no run"
    );
    assert_eq!(
        h.storage.calls(),
        storage,
        "a converged pass touches no dataset"
    );
    assert_eq!(
        h.exec.ran(),
        Vec::<String>::new(),
        "no host command without a bridge"
    );
}

#[tokio::test]
async fn a_restarted_daemon_adopts_running_workloads_without_restarting_them() {
    let mut h = Harness::new();
    h.apply(&[spec("web"), spec("db")]);
    h.pass().await;
    let pids = (
        h.engine.observed_row("web").unwrap().pid,
        h.engine.observed_row("db").unwrap().pid,
    );
    assert_eq!(starts(&h.runtime.calls()), 2);

    h.restart();
    let mut events = h.engine.subscribe();
    h.engine.adopt().await;
    h.pass().await;

    assert_eq!(starts(&h.runtime.calls()), 2, "{:?}", h.runtime.calls());
    assert!(!h.runtime.calls().iter().any(|c| c.starts_with("delete")));
    assert_eq!(
        (
            h.engine.observed_row("web").unwrap().pid,
            h.engine.observed_row("db").unwrap().pid
        ),
        pids
    );
    let mut adopted = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if matches!(ev.kind, EventKind::Adopted { .. }) {
            adopted.push(ev.workload.unwrap());
        }
    }
    adopted.sort();
    assert_eq!(adopted, ["db", "web"]);

    // The adopted run is still supervised: its exit is seen and the policy restarts it.
    h.runtime.end("web", ScriptedExit::code(0, 60_000));
    until_exited(&h, "web").await;
    h.clock.advance(61_000);
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls_for("web")), 2);
}

#[tokio::test]
async fn a_vanished_run_is_reset_on_adoption() {
    let mut h = Harness::new();
    h.apply(&[spec("web")]);
    h.pass().await;
    // The host rebooted: the shim is gone and left no exit status.
    h.runtime.end("web", ScriptedExit::code(0, 5));
    std::fs::remove_file(h.engine.run_dir("web").join("exit.json")).unwrap();
    h.restart();
    h.engine.adopt().await;
    assert_eq!(h.engine.observed_row("web").unwrap().pid, None);
    assert!(h.runtime.calls().contains(&"delete web".to_string()));
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls()), 2);
}

#[tokio::test]
async fn crash_loop_backoff_grows_and_a_long_run_resets_it() {
    let h = Harness::new();
    // base 1 s, cap 8 s, stable after 30 s (the harness's settings).
    h.runtime
        .script("web", (0..5).map(|_| ScriptedExit::code(1, 10)));
    h.apply(&[spec("web")]);

    for _ in 0..5 {
        h.pass().await;
        until_exited(&h, "web").await;
        let before = h.runtime.starts("web").len();
        let wake = h.pass().await.expect("a backoff expiry to wake for");
        // Nothing starts before the backoff expires...
        h.clock.advance(wake - 1 - h.clock_now());
        h.pass().await;
        assert_eq!(
            h.runtime.starts("web").len(),
            before,
            "started inside the backoff"
        );
        h.clock.advance(1);
    }
    let starts = h.runtime.starts("web");
    let gaps: Vec<u64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // 10 ms of run, then 1, 2, 4, 8 (the cap) seconds.
    assert_eq!(gaps, [1010, 2010, 4010, 8010]);
    assert_eq!(h.engine.observed_row("web").unwrap().failures, 5);

    // The sixth run lasts longer than the stability period: the count starts over.
    h.runtime.script("web", [ScriptedExit::code(1, 60_000)]);
    h.pass().await;
    h.clock.advance(60_000);
    until_exited(&h, "web").await;
    assert_eq!(h.engine.observed_row("web").unwrap().failures, 1);
    let wake = h.pass().await.expect("a backoff expiry to wake for");
    h.clock.advance(wake - h.clock_now());
    h.pass().await;
    let starts = h.runtime.starts("web");
    assert_eq!(starts.len(), 7);
    assert_eq!(
        starts[6] - starts[5],
        60_000 + 1000,
        "back to the base delay"
    );
}

#[tokio::test]
async fn an_oom_kill_counts_as_a_failure_for_on_failure() {
    let h = Harness::new();
    let mut oom = spec("oom");
    oom.restart = RestartPolicy::OnFailure;
    let mut clean = spec("clean");
    clean.restart = RestartPolicy::OnFailure;
    // The OOM-killed run reports code 0 from its shim: only the flag says it failed.
    h.runtime.script(
        "oom",
        [ScriptedExit {
            after_ms: 10,
            code: 0,
            signal: None,
            oom_killed: true,
        }],
    );
    h.runtime.script("clean", [ScriptedExit::code(0, 10)]);
    let mut killed = spec("killed");
    killed.restart = RestartPolicy::OnFailure;
    h.runtime.script("killed", [ScriptedExit::oom(10)]);
    h.apply(&[oom, clean, killed]);
    h.pass().await;
    for w in ["oom", "clean", "killed"] {
        until_exited(&h, w).await;
    }

    let desired = h.engine.desired_all().unwrap();
    assert_eq!(h.engine.status(&desired["oom"]).state, "restarting");
    assert_eq!(h.engine.status(&desired["clean"]).state, "exited");
    assert!(
        h.engine
            .status(&desired["oom"])
            .last_exit
            .unwrap()
            .oom_killed
    );

    h.clock.advance(60_000);
    h.pass().await;
    assert_eq!(h.runtime.starts("oom").len(), 2, "an OOM kill is restarted");
    assert_eq!(h.runtime.starts("killed").len(), 2);
    assert_eq!(h.runtime.starts("clean").len(), 1, "a clean exit is not");
}

#[tokio::test]
async fn drift_recreates_the_workload_and_keeps_its_data() {
    let h = Harness::new();
    let mut web = spec("web");
    h.apply(&[web.clone()]);
    h.pass().await;
    let first_pid = h.engine.observed_row("web").unwrap().pid;
    let before = h.storage.calls().len();

    web.env.insert("MODE".into(), "new".into());
    h.apply(&[web]);
    h.pass().await;

    assert_eq!(
        h.runtime.calls(),
        [
            "start web",
            "stop web",
            "exit web 143",
            "delete web",
            "start web"
        ]
    );
    assert_eq!(
        h.storage.calls()[before..],
        [
            "delete_rootfs web",
            "create_rootfs web base",
            "ensure_data web"
        ]
    );
    assert!(
        h.storage.has_data("web"),
        "data is kept across the recreation"
    );
    let row = h.engine.observed_row("web").unwrap();
    assert!(row.pid.is_some() && row.pid != first_pid);
    let d = h.engine.desired_all().unwrap().remove("web").unwrap();
    assert_eq!(row.provisioned.as_deref(), Some(d.hash.as_str()));
    assert_eq!(row.restarts, 0, "a recreation is not a policy restart");
}

#[tokio::test]
async fn fifty_workloads_apply_in_parallel() {
    let h = Harness::new();
    let specs: Vec<WorkloadSpec> = (0..50).map(|i| spec(&format!("w{i:02}"))).collect();
    h.apply(&specs);
    let t = std::time::Instant::now();
    h.pass().await;
    assert!(t.elapsed() < std::time::Duration::from_secs(10));

    assert_eq!(h.runtime.running(), 50);
    for s in &specs {
        assert_eq!(
            h.runtime.calls_for(&s.name),
            [format!("start {}", s.name)],
            "{} started once",
            s.name
        );
        assert!(h.engine.observed_row(&s.name).unwrap().pid.is_some());
    }
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls()), 50);
}

#[tokio::test]
async fn a_bridge_workload_is_attached_published_and_detached() {
    let h = Harness::new();
    let mut web = spec("web");
    web.network = NetworkMode::Bridge;
    web.ports = vec![warren_model::PortMapping::parse("8080:80").unwrap()];
    h.apply(&[web, spec("tool")]);
    h.pass().await;
    assert_eq!(h.net.calls(), ["attach web"], "attached before it starts");
    assert_eq!(starts(&h.runtime.calls()), 2);
    let address = h.engine.store.addresses().unwrap()["web"];

    // The next pass syncs the ruleset with the port the running workload publishes.
    h.pass().await;
    let rules = h.net.ruleset().expect("a ruleset was synced");
    assert_eq!(rules.forwards.len(), 1, "{rules:?}");
    let f = &rules.forwards[0];
    assert_eq!((f.workload.as_str(), f.address), ("web", address));
    assert_eq!((f.mapping.host_port, f.mapping.container_port), (8080, 80));
    let synced = h.net.calls().len();
    h.pass().await;
    assert_eq!(
        h.net.calls().len(),
        synced,
        "an unchanged ruleset is not synced again"
    );

    // Deleted: detached, its address released, and its port gone from the ruleset.
    h.engine.store.apply(&[], &["web".to_string()]).unwrap();
    h.pass().await;
    h.pass().await;
    assert!(
        h.net.calls().contains(&"detach web".to_string()),
        "{:?}",
        h.net.calls()
    );
    assert!(h.net.attached().is_empty());
    assert!(!h.engine.store.addresses().unwrap().contains_key("web"));
    assert_eq!(h.net.ruleset().unwrap().forwards, []);
    assert_eq!(
        h.exec.ran(),
        Vec::<String>::new(),
        "the network is the fake's"
    );
}

#[tokio::test]
async fn a_vm_gets_a_tap_and_a_vm_run_with_only_its_datasets_as_disks() {
    let h = Harness::new();
    let mut vm = spec("vm");
    vm.kind = warren_model::Kind::Vm;
    vm.network = NetworkMode::Bridge;
    vm.vm.console = true;
    h.apply(&[vm]);
    h.pass().await;
    // The pass's own rule sync may or may not have run yet; the workload's calls are a tap's.
    let calls: Vec<String> = h
        .net
        .calls()
        .into_iter()
        .filter(|c| c != "sync-rules")
        .collect();
    assert_eq!(calls, ["attach-tap vm"], "a tap, not a namespace");
    let run = h.runtime.last_run("vm").expect("the VM was started");
    let Some(p) = run.vm() else {
        panic!("a VM run: {:?}", run.backend)
    };
    assert!(p.console);
    assert!(matches!(
        p.boot,
        warren_runtime::VmBoot::Kernel { kernel: None, .. }
    ));
    let nic = p.nic.as_ref().expect("a NIC on the bridge");
    assert_eq!(nic.tap, "tap-vm");
    assert_eq!(
        nic.address.address,
        h.engine.store.addresses().unwrap()["vm"]
    );
    assert!(
        p.hosts.is_some(),
        "the guest starts with the bridge's names"
    );
    assert_eq!(
        run.binds
            .iter()
            .map(|b| b.dest.as_str())
            .collect::<Vec<_>>(),
        ["/data"],
        "only datasets become disks: {:?}",
        run.binds
    );

    // A full VM boots its own disk: no root filesystem is made for it.
    let mut full = WorkloadSpec::new("full", Source::World(String::new()));
    full.kind = warren_model::Kind::Vm;
    full.network = NetworkMode::None;
    full.vm.iso = Some("/srv/install.iso".into());
    full.vm.disk_size = Some(20 << 30);
    h.apply(&[full]);
    h.pass().await;
    let run = h.runtime.last_run("full").expect("the full VM was started");
    assert!(
        matches!(
            &run.vm().unwrap().boot,
            warren_runtime::VmBoot::Firmware {
                iso: Some(i),
                disk: None,
                uefi: false,
                store: Some(store),
                disk_size: Some(size),
            } if i.as_os_str() == "/srv/install.iso"
                && store.ends_with("workloads/full/data")
                && *size == 20 << 30
        ),
        "the full VM's own disk lives in its data dataset: {:?}",
        run.backend
    );
    assert!(!h.storage.has_rootfs("full"));
    assert!(h.storage.has_data("full"));
}

#[tokio::test]
async fn a_running_vm_is_given_the_new_names_when_they_change() {
    let h = Harness::new();
    let mut vm = spec("vm");
    vm.kind = warren_model::Kind::Vm;
    vm.network = NetworkMode::Bridge;
    h.apply(&[vm.clone()]);
    h.pass().await;
    h.pass().await;
    let pushes = || -> Vec<String> {
        h.runtime
            .calls_for("vm")
            .into_iter()
            .filter(|c| c.starts_with("update-names"))
            .collect()
    };
    // A new workload on the bridge changes the names: the running guest gets them once.
    let mut web = spec("web");
    web.network = NetworkMode::Bridge;
    h.apply(&[vm.clone(), web]);
    h.pass().await;
    h.pass().await;
    // The guest is told in a task of its own.
    for _ in 0..200 {
        if pushes().last().is_some_and(|p| p.ends_with(",vm,web")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pushed = pushes();
    assert!(
        pushed.last().is_some_and(|p| p.ends_with(",vm,web")),
        "{pushed:?}"
    );
    // Nothing changed: nothing more is pushed.
    let n = pushed.len();
    h.pass().await;
    h.pass().await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(pushes().len(), n);
    // A container is never asked: it sees the shared file.
    assert!(h
        .runtime
        .calls_for("web")
        .iter()
        .all(|c| !c.starts_with("update-names")));
}

#[tokio::test]
async fn a_dependent_waits_until_its_dependency_is_healthy_and_stays_up_when_it_restarts() {
    use warren_model::health::{HealthCheck, HealthStatus, OnUnhealthy, Probe};
    use warren_model::{Dependency, WaitFor};
    let h = Harness::new();
    let mut db = spec("db");
    // Never probed within the test: the health is set by hand below.
    db.health = Some(HealthCheck {
        probe: Probe::Exec(vec!["true".into()]),
        interval_secs: 3600,
        timeout_secs: 1,
        retries: 3,
        start_period_secs: 0,
        on_unhealthy: OnUnhealthy::None,
    });
    let mut web = spec("web");
    web.after = vec![Dependency::new("db", WaitFor::Healthy)];
    h.apply(&[db, web]);
    let desired = h.engine.desired_all().unwrap();

    h.pass().await;
    assert_eq!(h.runtime.calls(), ["start db"]);
    assert!(h.storage.has_rootfs("web"), "provisioned while it waits");
    let status = h.engine.status(&desired["web"]);
    assert_eq!(status.state, "waiting");
    assert_eq!(status.waiting.as_deref(), Some("waiting for db (healthy)"));
    // Let db's monitor report `starting` first, as it does when it begins.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    h.pass().await;
    assert_eq!(h.engine.health_of("db"), Some(HealthStatus::Starting));
    assert_eq!(starts(&h.runtime.calls_for("web")), 0);

    h.engine.set_health("db", Some(HealthStatus::Healthy));
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls_for("web")), 1);
    let status = h.engine.status(&desired["web"]);
    assert_eq!((status.state.as_str(), status.waiting), ("running", None));

    // db crashes and is restarted by its policy: web is neither stopped nor restarted.
    h.runtime.end("db", ScriptedExit::code(1, 10));
    until_exited(&h, "db").await;
    let wake = h.pass().await.expect("db's backoff");
    h.clock.advance(wake - h.clock_now());
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls_for("db")), 2);
    assert_eq!(h.runtime.calls_for("web"), ["start web"]);
    assert_eq!(
        h.engine.health_of("db"),
        Some(HealthStatus::Starting),
        "a new run is not healthy until its own checks pass"
    );

    // A direct restart (a failed health check, a hook) of web follows the order too: stopped,
    // then started by the planner once db is healthy again.
    h.engine.restart_for("web", "test").await.unwrap();
    assert!(h.runtime.calls_for("web").contains(&"stop web".to_string()));
    let status = h.engine.status(&desired["web"]);
    assert_eq!(status.state, "waiting");
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls_for("web")), 1);
    h.engine.set_health("db", Some(HealthStatus::Healthy));
    h.pass().await;
    assert_eq!(starts(&h.runtime.calls_for("web")), 2);
}
