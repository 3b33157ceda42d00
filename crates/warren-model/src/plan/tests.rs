//! Tests of the planner: step sequences per observed state, backoff, restart decisions, host
//! capabilities and refusals.
use super::*;
use crate::spec::Source;

fn linux() -> HostCapabilities {
    HostCapabilities::for_os("linux")
}

fn none() -> Missing {
    Missing::default()
}

fn spec(name: &str) -> WorkloadSpec {
    let mut s = WorkloadSpec::new(name, Source::World("busybox".into()));
    s.command = vec!["sleep".into(), "1000".into()];
    s
}

fn desired(specs: &[WorkloadSpec]) -> BTreeMap<String, Desired> {
    specs
        .iter()
        .map(|s| (s.name.clone(), Desired::new(s.clone(), 1)))
        .collect()
}

fn actions(p: &Plan, name: &str) -> Vec<&'static str> {
    p.steps
        .iter()
        .filter(|s| s.workload == name)
        .map(|s| s.action.verb())
        .collect()
}

fn running(hash: &str) -> Observed {
    Observed {
        provisioned: Some(hash.into()),
        pid: Some(42),
        ..Default::default()
    }
}

#[test]
fn new_workloads_are_provisioned_and_started() {
    let mut stopped = spec("b");
    stopped.state = DesiredState::Stopped;
    let d = desired(&[spec("a"), stopped]);
    let p = plan(
        &d,
        &BTreeMap::new(),
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "a"), ["provision", "start"]);
    assert_eq!(actions(&p, "b"), ["provision"]);
    assert_eq!(p.next_wake_ms, None);
}

#[test]
fn converged_state_plans_nothing() {
    let d = desired(&[spec("a")]);
    let o = BTreeMap::from([("a".to_string(), running(&d["a"].hash))]);
    assert!(plan(&d, &o, &linux(), &none(), 0, &Backoff::default()).is_empty());
}

#[test]
fn drift_recreates_but_state_change_only_stops() {
    let d0 = desired(&[spec("a")]);
    let o = BTreeMap::from([("a".to_string(), running(&d0["a"].hash))]);
    let mut changed = spec("a");
    changed.env.insert("X".into(), "1".into());
    let p = plan(
        &desired(&[changed]),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(
        actions(&p, "a"),
        ["stop", "deprovision", "provision", "start"]
    );
    assert!(p.steps.iter().all(|s| s.reason == "spec changed"));

    let mut stopped = spec("a");
    stopped.state = DesiredState::Stopped;
    stopped.restart = RestartPolicy::Never;
    let p = plan(
        &desired(&[stopped]),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "a"), ["stop"]);
}

#[test]
fn undesired_workloads_are_stopped_and_removed() {
    let o = BTreeMap::from([
        ("gone".to_string(), running("h")),
        (
            "idle".to_string(),
            Observed {
                provisioned: Some("h".into()),
                ..Default::default()
            },
        ),
    ]);
    let p = plan(
        &BTreeMap::new(),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "gone"), ["stop", "remove"]);
    assert_eq!(actions(&p, "idle"), ["remove"]);
}

#[test]
fn busy_workloads_are_left_alone() {
    let o = BTreeMap::from([(
        "a".to_string(),
        Observed {
            busy: true,
            ..Default::default()
        },
    )]);
    assert!(plan(
        &desired(&[spec("a")]),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default()
    )
    .is_empty());
}

fn exited(hash: &str, code: i32, at_ms: u64, failures: u32) -> Observed {
    Observed {
        provisioned: Some(hash.into()),
        last_exit: Some(LastExit::Exited {
            code,
            signal: None,
            oom_killed: false,
            at_ms,
        }),
        failures,
        ..Default::default()
    }
}

/// The restart decision over every policy and every way a run ends.
#[test]
fn restart_decision_table() {
    let end = |code, signal, oom_killed| LastExit::Exited {
        code,
        signal,
        oom_killed,
        at_ms: 0,
    };
    let clean = end(0, None, false);
    let nonzero = end(3, None, false);
    let signalled = end(137, Some(9), false);
    let oom_0 = end(0, None, true);
    let oom_137 = end(137, Some(9), true);
    let deliberate = LastExit::Deliberate;
    use RestartPolicy::*;
    #[rustfmt::skip]
    let table = [
        // policy     exit         failure  restarts
        (Always,    &clean,       false,   true),
        (Always,    &nonzero,     true,    true),
        (Always,    &signalled,   true,    true),
        (Always,    &oom_0,       true,    true),
        (Always,    &oom_137,     true,    true),
        (Always,    &deliberate,  false,   false),
        (OnFailure, &clean,       false,   false),
        (OnFailure, &nonzero,     true,    true),
        (OnFailure, &signalled,   true,    true),
        (OnFailure, &oom_0,       true,    true),
        (OnFailure, &oom_137,     true,    true),
        (OnFailure, &deliberate,  false,   false),
        (Never,     &clean,       false,   false),
        (Never,     &nonzero,     true,    false),
        (Never,     &signalled,   true,    false),
        (Never,     &oom_0,       true,    false),
        (Never,     &oom_137,     true,    false),
        (Never,     &deliberate,  false,   false),
    ];
    for (policy, exit, failure, restarts) in table {
        assert_eq!(exit.is_failure(), failure, "{exit:?}");
        assert_eq!(
            restarts_after(policy, exit),
            restarts,
            "{policy:?} {exit:?}"
        );
        // The planner plans exactly what the decision says.
        let mut s = spec("a");
        s.restart = policy;
        let d = desired(&[s]);
        let o = BTreeMap::from([(
            "a".to_string(),
            Observed {
                provisioned: Some(d["a"].hash.clone()),
                last_exit: Some(exit.clone()),
                ..Default::default()
            },
        )]);
        let p = plan(&d, &o, &linux(), &none(), 10, &Backoff::default());
        let planned = !p.is_empty();
        let expected = restarts || *exit == LastExit::Deliberate;
        assert_eq!(planned, expected, "{policy:?} {exit:?}: {p:?}");
    }
}

#[test]
fn restart_policies() {
    let b = Backoff {
        base_ms: 0,
        ..Default::default()
    };
    for (policy, code, restarts) in [
        (RestartPolicy::Always, 0, true),
        (RestartPolicy::Always, 1, true),
        (RestartPolicy::OnFailure, 0, false),
        (RestartPolicy::OnFailure, 137, true),
        (RestartPolicy::Never, 1, false),
    ] {
        let mut s = spec("a");
        s.restart = policy;
        let d = desired(&[s]);
        let o = BTreeMap::from([("a".to_string(), exited(&d["a"].hash, code, 0, 1))]);
        let p = plan(&d, &o, &linux(), &none(), 10, &b);
        assert_eq!(!p.is_empty(), restarts, "{policy:?} code {code}");
    }
}

#[test]
fn deliberate_stop_is_started_when_desired_running_again() {
    let mut s = spec("a");
    s.restart = RestartPolicy::Never;
    let d = desired(&[s]);
    let o = BTreeMap::from([(
        "a".to_string(),
        Observed {
            provisioned: Some(d["a"].hash.clone()),
            last_exit: Some(LastExit::Deliberate),
            ..Default::default()
        },
    )]);
    assert_eq!(
        actions(
            &plan(&d, &o, &linux(), &none(), 0, &Backoff::default()),
            "a"
        ),
        ["start"]
    );
}

#[test]
fn backoff_delays_restart_and_sets_wake_time() {
    let b = Backoff {
        base_ms: 1000,
        cap_ms: 8000,
        stable_ms: 10_000,
    };
    assert_eq!(b.delay_ms(0), 0);
    assert_eq!(b.delay_ms(1), 1000);
    assert_eq!(b.delay_ms(3), 4000);
    assert_eq!(b.delay_ms(10), 8000);
    assert_eq!(b.delay_ms(u32::MAX), 8000);
    assert_eq!(b.next_failures(5, 20_000), 1);
    assert_eq!(b.next_failures(5, 200), 6);

    let d = desired(&[spec("a"), spec("b")]);
    let o = BTreeMap::from([
        ("a".to_string(), exited(&d["a"].hash, 1, 100_000, 3)),
        ("b".to_string(), exited(&d["b"].hash, 1, 100_000, 1)),
    ]);
    // At +2s: b (1s backoff) restarts, a (4s backoff) waits and sets the wake-up time.
    let p = plan(&d, &o, &linux(), &none(), 102_000, &b);
    assert_eq!(actions(&p, "a"), Vec::<&str>::new());
    assert_eq!(actions(&p, "b"), ["start"]);
    assert_eq!(p.next_wake_ms, Some(104_000));
    let p = plan(&d, &o, &linux(), &none(), 104_000, &b);
    assert_eq!(actions(&p, "a"), ["start"]);
}

#[test]
fn undesired_leftovers_are_removed() {
    // An observed row with nothing provisioned (a provision that failed) still goes.
    let o = BTreeMap::from([(
        "left".to_string(),
        Observed {
            last_exit: Some(LastExit::Deliberate),
            ..Default::default()
        },
    )]);
    let p = plan(
        &BTreeMap::new(),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "left"), ["remove"]);
}

/// One planner input built around a workload spec (whose kind the case table varies).
struct Input {
    desired: BTreeMap<String, Desired>,
    observed: BTreeMap<String, Observed>,
    now_ms: u64,
}

fn with_observed(spec: WorkloadSpec, f: impl FnOnce(&Desired) -> Observed) -> Input {
    let d = desired(&[spec]);
    let o = f(&d["a"]);
    Input {
        observed: BTreeMap::from([("a".to_string(), o)]),
        desired: d,
        now_ms: 10_000,
    }
}

type Case = (
    &'static str,
    &'static [&'static str],
    fn(WorkloadSpec) -> Input,
);

/// Observed states and desired changes, each with the steps any runnable kind gets.
fn lifecycle_cases() -> Vec<Case> {
    vec![
        ("new", &["provision", "start"], |s| {
            with_observed(s, |_| Observed::default())
        }),
        ("new and stopped", &["provision"], |mut s| {
            s.state = DesiredState::Stopped;
            with_observed(s, |_| Observed::default())
        }),
        ("converged", &[], |s| with_observed(s, |d| running(&d.hash))),
        ("stop", &["stop"], |mut s| {
            s.state = DesiredState::Stopped;
            with_observed(s, |d| running(&d.hash))
        }),
        ("start after a deliberate stop", &["start"], |s| {
            with_observed(s, |d| Observed {
                provisioned: Some(d.hash.clone()),
                last_exit: Some(LastExit::Deliberate),
                ..Default::default()
            })
        }),
        ("restart by policy", &["start"], |s| {
            with_observed(s, |d| exited(&d.hash, 1, 0, 1))
        }),
        ("backoff not over", &[], |s| {
            with_observed(s, |d| exited(&d.hash, 1, 9_900, 3))
        }),
        ("exited, policy never", &[], |mut s| {
            s.restart = RestartPolicy::Never;
            with_observed(s, |d| exited(&d.hash, 1, 0, 1))
        }),
        ("restart requested while running", &["stop", "start"], |s| {
            let mut i = with_observed(s, |d| running(&d.hash));
            i.desired.get_mut("a").unwrap().restart_generation = 1;
            i
        }),
        ("restart requested after an exit", &["start"], |mut s| {
            s.restart = RestartPolicy::Never;
            let mut i = with_observed(s, |d| exited(&d.hash, 1, 9_900, 7));
            i.desired.get_mut("a").unwrap().restart_generation = 3;
            i.observed.get_mut("a").unwrap().restart_generation = 2;
            i
        }),
        ("restart already done", &[], |s| {
            let mut i = with_observed(s, |d| running(&d.hash));
            i.desired.get_mut("a").unwrap().restart_generation = 2;
            i.observed.get_mut("a").unwrap().restart_generation = 2;
            i
        }),
        (
            "drift",
            &["stop", "deprovision", "provision", "start"],
            |s| with_observed(s, |_| running("an older spec")),
        ),
        ("removal", &["stop", "remove"], |s| {
            let mut i = with_observed(s, |d| running(&d.hash));
            i.desired.clear();
            i
        }),
        ("busy", &[], |s| {
            with_observed(s, |_| Observed {
                busy: true,
                ..Default::default()
            })
        }),
    ]
}

/// Each step as (workload, verb, reason).
type Shape = Vec<(String, &'static str, String)>;

/// A plan without its spec hashes.
fn shape(p: &Plan) -> (Shape, Option<u64>, usize) {
    let steps = p
        .steps
        .iter()
        .map(|s| (s.workload.clone(), s.action.verb(), s.reason.clone()))
        .collect();
    (steps, p.next_wake_ms, p.refused.len())
}

fn run_case(build: fn(WorkloadSpec) -> Input, kind: Kind, host: &HostCapabilities) -> Plan {
    let mut s = spec("a");
    s.kind = kind;
    let i = build(s);
    plan(
        &i.desired,
        &i.observed,
        host,
        &none(),
        i.now_ms,
        &Backoff::default(),
    )
}

#[test]
fn a_jail_on_a_freebsd_host_plans_like_a_container() {
    let freebsd = HostCapabilities::for_os("freebsd");
    for (case, want, build) in lifecycle_cases() {
        let container = run_case(build, Kind::Container, &linux());
        let jail = run_case(build, Kind::Jail, &freebsd);
        assert_eq!(actions(&container, "a"), want, "{case}: container on linux");
        // The same steps with the same reasons, nothing refused, the same wake-up time
        // (the provisioned hash differs only because the kind is part of the spec).
        assert_eq!(shape(&jail), shape(&container), "{case}: jail on freebsd");
        assert!(jail.refused.is_empty(), "{case}");
    }
}

#[test]
fn restart_requested_ignores_policy_and_backoff_once() {
    let (_, want, build) = lifecycle_cases()
        .into_iter()
        .find(|(c, ..)| *c == "restart requested after an exit")
        .unwrap();
    let p = run_case(build, Kind::Container, &linux());
    assert_eq!(actions(&p, "a"), want);
    assert!(p.steps.iter().all(|s| s.reason == "restart requested"));
    assert_eq!(p.next_wake_ms, None);
}

#[test]
fn a_vm_on_a_host_without_the_vm_backend_is_refused_with_the_reason() {
    let host = linux().without(Kind::Vm, "no VM backend: /dev/kvm is missing");
    for (case, _, build) in lifecycle_cases() {
        // Removal needs no backend decision; a busy workload is planned on the next pass.
        if case == "removal" || case == "busy" {
            continue;
        }
        let p = run_case(build, Kind::Vm, &host);
        assert!(p.steps.is_empty(), "{case}: {:?}", p.steps);
        assert_eq!(
            p.refused,
            [Refusal {
                workload: "a".into(),
                kind: Kind::Vm,
                reason: "no VM backend: /dev/kvm is missing".into(),
            }],
            "{case}"
        );
    }
    // Once the host has the backend, the same workload is planned.
    let p = run_case(
        |s| with_observed(s, |_| Observed::default()),
        Kind::Vm,
        &host.with(Kind::Vm),
    );
    assert_eq!(actions(&p, "a"), ["provision", "start"]);
    assert!(p.refused.is_empty());
}

#[test]
fn a_jail_on_linux_is_refused_and_others_still_planned() {
    let mut j = spec("j");
    j.kind = Kind::Jail;
    let p = plan(
        &desired(&[j, spec("c")]),
        &BTreeMap::new(),
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "j"), Vec::<&str>::new());
    assert_eq!(actions(&p, "c"), ["provision", "start"]);
    assert_eq!(p.refused.len(), 1);
    assert_eq!(p.refused[0].workload, "j");
    assert!(p.refused[0].reason.contains("jails need a FreeBSD host"));
    // A removed jail is still cleaned up: removal needs no backend decision.
    let o = BTreeMap::from([("j".to_string(), running("h"))]);
    let p = plan(
        &BTreeMap::new(),
        &o,
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(actions(&p, "j"), ["stop", "remove"]);
}

#[test]
fn missing_worlds_and_images_are_built_and_pulled_before_provision() {
    let mut img = spec("i");
    img.source = Source::Image("registry.test/app:v1".into());
    let d = desired(&[spec("a"), spec("b"), img]);
    let missing = Missing {
        worlds: ["busybox".to_string()].into(),
        images: ["registry.test/app:v1".to_string()].into(),
    };
    let p = plan(
        &d,
        &BTreeMap::new(),
        &linux(),
        &missing,
        0,
        &Backoff::default(),
    );
    // Every workload provisioned from a missing source gets its own (idempotent) fetch.
    assert_eq!(actions(&p, "a"), ["build-world", "provision", "start"]);
    assert_eq!(actions(&p, "b"), ["build-world", "provision", "start"]);
    assert_eq!(actions(&p, "i"), ["pull-image", "provision", "start"]);
    assert_eq!(
        p.steps[0].action,
        Action::BuildWorld {
            world: "busybox".into()
        }
    );
    assert_eq!(p.steps[0].reason, "world busybox is not built");
    // A drifted workload fetches between deprovision and provision.
    let o = BTreeMap::from([("a".to_string(), running("an older spec"))]);
    let p = plan(
        &desired(&[spec("a")]),
        &o,
        &linux(),
        &missing,
        0,
        &Backoff::default(),
    );
    assert_eq!(
        actions(&p, "a"),
        ["stop", "deprovision", "build-world", "provision", "start"]
    );
    // Provisioned workloads need nothing fetched.
    let d = desired(&[spec("a")]);
    let o = BTreeMap::from([("a".to_string(), running(&d["a"].hash))]);
    assert!(plan(&d, &o, &linux(), &missing, 0, &Backoff::default()).is_empty());
}

#[test]
fn diff_names_changed_fields() {
    let a = spec("a");
    let mut b = spec("a");
    b.env.insert("PORT".into(), "1".into());
    b.command.push("x".into());
    assert_eq!(spec_diff(&a, &b), ["command", "env.PORT"]);
    assert!(spec_diff(&a, &a).is_empty());
}

#[test]
fn plan_is_deterministic() {
    let d = desired(&[spec("c"), spec("a"), spec("b")]);
    let p1 = plan(
        &d,
        &BTreeMap::new(),
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    let p2 = plan(
        &d,
        &BTreeMap::new(),
        &linux(),
        &none(),
        0,
        &Backoff::default(),
    );
    assert_eq!(p1, p2);
    let order: Vec<_> = p1.steps.iter().map(|s| s.workload.as_str()).collect();
    assert_eq!(order, ["a", "a", "b", "b", "c", "c"]);
}

/// `web` after `db` with `wait`, both desired.
fn ordered(wait: crate::spec::WaitFor) -> BTreeMap<String, Desired> {
    let mut web = spec("web");
    web.after = vec![crate::spec::Dependency::new("db", wait)];
    desired(&[spec("db"), web])
}

fn plan_at(d: &BTreeMap<String, Desired>, o: &BTreeMap<String, Observed>, now: u64) -> Plan {
    plan(d, o, &linux(), &none(), now, &Backoff::default())
}

fn waiting(p: &Plan) -> Vec<(&str, &str)> {
    p.waiting
        .iter()
        .map(|w| (w.workload.as_str(), w.reason.as_str()))
        .collect()
}

#[test]
fn a_new_dependent_is_provisioned_but_started_only_once_its_dependency_runs() {
    use crate::spec::WaitFor;
    let d = ordered(WaitFor::Started);
    let p = plan_at(&d, &BTreeMap::new(), 0);
    assert_eq!(actions(&p, "db"), ["provision", "start"]);
    assert_eq!(actions(&p, "web"), ["provision"]);
    assert_eq!(waiting(&p), [("web", "waiting for db (started)")]);
    assert_eq!(
        p.next_wake_ms, None,
        "woken by the dependency's change instead"
    );

    // db provisioned but still starting (busy): web waits, provisioned.
    let mut o = BTreeMap::from([
        (
            "db".to_string(),
            Observed {
                provisioned: Some(d["db"].hash.clone()),
                busy: true,
                ..Default::default()
            },
        ),
        (
            "web".to_string(),
            Observed {
                provisioned: Some(d["web"].hash.clone()),
                ..Default::default()
            },
        ),
    ]);
    let p = plan_at(&d, &o, 0);
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(waiting(&p), [("web", "waiting for db (started)")]);

    // db runs: web starts.
    o.insert("db".into(), running(&d["db"].hash));
    let p = plan_at(&d, &o, 0);
    assert_eq!(actions(&p, "web"), ["start"]);
    assert!(p.waiting.is_empty());
}

#[test]
fn healthy_waits_for_a_passing_check_of_a_running_dependency() {
    use crate::health::HealthStatus;
    use crate::spec::WaitFor;
    let d = ordered(WaitFor::Healthy);
    let idle = Observed {
        provisioned: Some(d["web"].hash.clone()),
        ..Default::default()
    };
    let with_db =
        |db: Observed| BTreeMap::from([("db".to_string(), db), ("web".to_string(), idle.clone())]);
    for health in [
        None,
        Some(HealthStatus::Starting),
        Some(HealthStatus::Unhealthy),
    ] {
        let db = Observed {
            health,
            ..running(&d["db"].hash)
        };
        let p = plan_at(&d, &with_db(db), 0);
        assert_eq!(actions(&p, "web"), Vec::<&str>::new(), "{health:?}");
        assert_eq!(waiting(&p), [("web", "waiting for db (healthy)")]);
    }
    // A health status left from a run that ended does not count.
    let gone = Observed {
        health: Some(HealthStatus::Healthy),
        ..exited(&d["db"].hash, 0, 0, 0)
    };
    assert!(actions(&plan_at(&d, &with_db(gone), 0), "web").is_empty());
    let healthy = Observed {
        health: Some(HealthStatus::Healthy),
        ..running(&d["db"].hash)
    };
    let p = plan_at(&d, &with_db(healthy), 0);
    assert_eq!(actions(&p, "web"), ["start"]);
    assert!(p.waiting.is_empty());
}

#[test]
fn completed_waits_for_a_successful_exit() {
    use crate::spec::WaitFor;
    let mut d = ordered(WaitFor::Completed);
    d.get_mut("db").unwrap().spec.restart = RestartPolicy::Never;
    let idle = Observed {
        provisioned: Some(d["web"].hash.clone()),
        ..Default::default()
    };
    let with_db =
        |db: Observed| BTreeMap::from([("db".to_string(), db), ("web".to_string(), idle.clone())]);
    let h = d["db"].hash.clone();
    let signalled = Observed {
        last_exit: Some(LastExit::Exited {
            code: 0,
            signal: Some(9),
            oom_killed: false,
            at_ms: 0,
        }),
        ..exited(&h, 0, 0, 0)
    };
    let oom = Observed {
        last_exit: Some(LastExit::Exited {
            code: 0,
            signal: None,
            oom_killed: true,
            at_ms: 0,
        }),
        ..exited(&h, 0, 0, 0)
    };
    let stopped = Observed {
        provisioned: Some(h.clone()),
        last_exit: Some(LastExit::Deliberate),
        ..Default::default()
    };
    for db in [running(&h), exited(&h, 1, 0, 1), signalled, oom, stopped] {
        let p = plan_at(&d, &with_db(db.clone()), 0);
        assert!(actions(&p, "web").is_empty(), "{db:?}");
        assert_eq!(waiting(&p), [("web", "waiting for db (completed)")]);
    }
    let p = plan_at(&d, &with_db(exited(&h, 0, 0, 0)), 0);
    assert_eq!(actions(&p, "web"), ["start"]);
}

#[test]
fn started_is_met_by_a_run_or_a_successful_exit_and_every_entry_is_named() {
    use crate::spec::{Dependency, WaitFor};
    let mut web = spec("web");
    web.after = vec![
        Dependency::new("db", WaitFor::Started),
        Dependency::new("job", WaitFor::Completed),
        Dependency::new("cache", WaitFor::Started),
    ];
    let d = desired(&[spec("db"), spec("job"), spec("cache"), web]);
    let o = BTreeMap::from([
        ("db".to_string(), exited(&d["db"].hash, 0, 0, 0)),
        ("job".to_string(), running(&d["job"].hash)),
        ("cache".to_string(), exited(&d["cache"].hash, 2, 0, 1)),
    ]);
    assert_eq!(
        unmet_dependencies(&d["web"].spec, &o).as_deref(),
        Some("waiting for job (completed), cache (started)")
    );
    assert_eq!(unmet_dependencies(&d["db"].spec, &o), None);
}

#[test]
fn every_kind_of_start_waits_but_the_steps_before_it_do_not() {
    use crate::spec::WaitFor;
    let d = ordered(WaitFor::Healthy);
    let db_down = exited(&d["db"].hash, 1, 0, 1);
    let with_web = |web: Observed| {
        BTreeMap::from([
            ("db".to_string(), db_down.clone()),
            ("web".to_string(), web),
        ])
    };
    // Drift: stopped and recreated, not started.
    let p = plan_at(&d, &with_web(running("old")), 0);
    assert_eq!(actions(&p, "web"), ["stop", "deprovision", "provision"]);
    assert_eq!(waiting(&p), [("web", "waiting for db (healthy)")]);
    // A restart the policy asks for, once its backoff is over.
    let crashed = exited(&d["web"].hash, 1, 1_000, 1);
    let p = plan_at(&d, &with_web(crashed.clone()), 1_000_000);
    assert!(actions(&p, "web").is_empty());
    assert_eq!(waiting(&p), [("web", "waiting for db (healthy)")]);
    // Still in its backoff: a wake-up time, nothing waiting yet.
    let p = plan_at(&d, &with_web(crashed), 1_000);
    assert!(p.waiting.is_empty());
    assert_eq!(p.next_wake_ms, Some(1_500));
    // The operator's restart: stopped, and started once db is healthy.
    let mut asked = d.clone();
    asked.get_mut("web").unwrap().restart_generation = 1;
    let p = plan_at(&asked, &with_web(running(&d["web"].hash)), 0);
    assert_eq!(actions(&p, "web"), ["stop"]);
    assert_eq!(waiting(&p), [("web", "waiting for db (healthy)")]);
    // A running dependent is left alone while its dependency restarts.
    let p = plan_at(&d, &with_web(running(&d["web"].hash)), 0);
    assert!(actions(&p, "web").is_empty());
    assert!(p.waiting.is_empty());
    // A dependent the operator wants stopped waits for nothing.
    let mut off = d.clone();
    off.get_mut("web").unwrap().spec.state = DesiredState::Stopped;
    let p = plan_at(&off, &BTreeMap::new(), 0);
    assert_eq!(actions(&p, "web"), ["provision"]);
    assert!(p.waiting.is_empty());
}
