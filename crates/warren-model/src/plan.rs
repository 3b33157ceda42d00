//! The pure reconciliation planner.
//!
//! [`plan`] compares desired state (specs with generations and hashes) with observed state
//! (what the executor last saw: provisioned datasets, running processes, exits) at a given
//! instant and returns an ordered [`Plan`] of fully specified [`Step`]s. The executor carries
//! the steps out without making choices of its own.
//!
//! Invariants:
//! - `plan` is synchronous and deterministic and does no I/O; the current time is an argument.
//! - Steps for one workload are ordered and executed in order; different workloads are
//!   independent and may be executed in parallel.
//! - A workload marked `busy` (an operation in flight) gets no steps: the next pass plans it.
//! - Kinds are planned alike: what the host runs ([`HostCapabilities`]) is an input, and a
//!   workload of a kind the host cannot run gets no steps but a [`Refusal`] with the reason,
//!   so it never silently stays pending.
//! - Operator requests are desired state: `state` (start, stop), a restart generation
//!   ([`Desired::restart_generation`], restart) and absence (delete). The planner turns them
//!   into steps like any other difference.
//! - Restarts after an exit honour the restart policy and an exponential backoff computed from
//!   consecutive short-lived runs; a workload waiting out its backoff contributes a wake-up time
//!   ([`Plan::next_wake_ms`]) instead of steps, so it never delays other workloads.

use crate::host::HostCapabilities;
use crate::spec::{DesiredState, Kind, RestartPolicy, Source, WorkloadSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// One desired workload as stored: the spec, its generation and its drift hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub spec: WorkloadSpec,
    pub generation: u64,
    pub hash: String,
    /// Operator restarts requested so far: a run started for a lower generation
    /// ([`Observed::restart_generation`]) is restarted once.
    #[serde(default)]
    pub restart_generation: u64,
}

impl Desired {
    pub fn new(spec: WorkloadSpec, generation: u64) -> Self {
        let hash = spec.hash();
        Desired {
            spec,
            generation,
            hash,
            restart_generation: 0,
        }
    }
}

/// How the last run of a workload ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum LastExit {
    /// warren stopped it on purpose (operator stop, recreate, delete): never restarted by policy.
    Deliberate,
    /// The main process ended on its own.
    Exited {
        code: i32,
        /// The signal that ended it, if one did (rows written before this was recorded: none).
        #[serde(default)]
        signal: Option<i32>,
        oom_killed: bool,
        /// Unix milliseconds.
        at_ms: u64,
    },
}

/// Whether a run that ended this way failed: a non-zero code, a signal, or the memory limit's
/// OOM kill (a failure even when the recorded code is 0).
pub fn ended_in_failure(code: i32, signal: Option<i32>, oom_killed: bool) -> bool {
    code != 0 || signal.is_some() || oom_killed
}

impl LastExit {
    /// Whether the run failed ([`ended_in_failure`]); a deliberate stop never did.
    pub fn is_failure(&self) -> bool {
        match self {
            LastExit::Deliberate => false,
            LastExit::Exited {
                code,
                signal,
                oom_killed,
                ..
            } => ended_in_failure(*code, *signal, *oom_killed),
        }
    }
}

/// Whether `policy` restarts a workload whose last run ended as `exit`. The one place the
/// restart policy is decided: the planner plans the restart with it and the engine's status
/// (`restarting` or `exited`) reports it.
pub fn restarts_after(policy: RestartPolicy, exit: &LastExit) -> bool {
    match exit {
        LastExit::Deliberate => false,
        LastExit::Exited { .. } => match policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit.is_failure(),
            RestartPolicy::Never => false,
        },
    }
}

/// What the executor knows about one workload on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Observed {
    /// Spec hash the workload's datasets and bundle were provisioned for; None = not provisioned.
    pub provisioned: Option<String>,
    /// PID of the running main process, if running.
    pub pid: Option<i32>,
    /// How the last run ended, if it is not running.
    pub last_exit: Option<LastExit>,
    /// Consecutive runs that ended before the stability period (drives the backoff).
    pub failures: u32,
    /// Restarts made by policy since the workload was created.
    pub restarts: u32,
    /// The [`Desired::restart_generation`] the current (or last) run was started for.
    pub restart_generation: u64,
    /// An operation is in flight; the planner leaves the workload alone.
    pub busy: bool,
}

/// Backoff for crash-looping workloads: `base * 2^(failures-1)`, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
    /// A run longer than this resets the failure count.
    pub stable_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 500,
            cap_ms: 5 * 60 * 1000,
            stable_ms: 30 * 1000,
        }
    }
}

impl Backoff {
    /// Delay before the next start after `failures` consecutive short runs.
    pub fn delay_ms(&self, failures: u32) -> u64 {
        if failures == 0 {
            return 0;
        }
        let shift = (failures - 1).min(40);
        self.base_ms.saturating_mul(1u64 << shift).min(self.cap_ms)
    }

    /// The failure count after a run of `ran_ms` that ended with a failure-like exit.
    pub fn next_failures(&self, previous: u32, ran_ms: u64) -> u32 {
        if ran_ms >= self.stable_ms {
            1
        } else {
            previous.saturating_add(1)
        }
    }
}

/// A single executor operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Build a built-in world the workload's source names (kept if another step built it
    /// first).
    BuildWorld { world: String },
    /// Pull an image the workload's source names from its registry (kept if already stored).
    PullImage { reference: String },
    /// Create the rootfs from the source and ensure the data dataset; record the hash.
    Provision { hash: String },
    /// Start the main process under a shim.
    Start,
    /// Stop the main process (TERM, then KILL after the grace period).
    Stop,
    /// Delete the rootfs and bundle (the data dataset is kept).
    Deprovision,
    /// Forget a workload that is no longer desired: delete rootfs and bundle, keep data.
    Remove,
}

impl Action {
    pub fn verb(&self) -> &'static str {
        match self {
            Action::BuildWorld { .. } => "build-world",
            Action::PullImage { .. } => "pull-image",
            Action::Provision { .. } => "provision",
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Deprovision => "deprovision",
            Action::Remove => "remove",
        }
    }
}

/// One step of a plan: an action on one workload and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Step {
    pub workload: String,
    #[serde(flatten)]
    pub action: Action,
    pub reason: String,
}

/// What provisioning needs that the host does not hold: built-in worlds not built yet and
/// image references (as the spec writes them) not stored yet. Each workload provisioned from
/// one gets a build or pull step before its provision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Missing {
    pub worlds: BTreeSet<String>,
    pub images: BTreeSet<String>,
}

/// A desired workload this host cannot run: it gets no steps, and the reason is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Refusal {
    pub workload: String,
    pub kind: Kind,
    pub reason: String,
}

/// An ordered list of steps plus the earliest time something will need attention again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Desired workloads of a kind this host cannot run, in name order.
    pub refused: Vec<Refusal>,
    /// Unix milliseconds at which a backoff expires (the reconciler wakes then).
    pub next_wake_ms: Option<u64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Steps grouped by workload, preserving order: the unit of parallel execution.
    pub fn by_workload(&self) -> BTreeMap<String, Vec<Step>> {
        let mut m: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for s in &self.steps {
            m.entry(s.workload.clone()).or_default().push(s.clone());
        }
        m
    }
}

/// Computes the steps that move `observed` towards `desired` on a host that runs what `host`
/// says and lacks what `missing` names, at instant `now_ms`. A workload without an entry in
/// `observed` has never been seen; one with an entry and no desired spec is stopped and
/// removed.
pub fn plan(
    desired: &BTreeMap<String, Desired>,
    observed: &BTreeMap<String, Observed>,
    host: &HostCapabilities,
    missing: &Missing,
    now_ms: u64,
    backoff: &Backoff,
) -> Plan {
    let mut out = Plan::default();
    let names: BTreeSet<&String> = desired.keys().chain(observed.keys()).collect();
    let none = Observed::default();
    for name in names {
        let obs = observed.get(name).unwrap_or(&none);
        if obs.busy {
            continue;
        }
        match desired.get(name) {
            Some(d) => match host.refusal(d.spec.kind) {
                Some(reason) => out.refused.push(Refusal {
                    workload: name.clone(),
                    kind: d.spec.kind,
                    reason: reason.to_string(),
                }),
                None => plan_one(d, obs, missing, now_ms, backoff, &mut out),
            },
            None => {
                if obs.pid.is_some() {
                    push(&mut out, name, Action::Stop, "no longer desired");
                }
                // Whatever is left of it (datasets, runtime state, logs, address) goes.
                push(&mut out, name, Action::Remove, "no longer desired");
            }
        }
    }
    out
}

fn push(plan: &mut Plan, name: &str, action: Action, reason: impl Into<String>) {
    plan.steps.push(Step {
        workload: name.to_string(),
        action,
        reason: reason.into(),
    });
}

/// The build or pull step a provision from `d`'s source needs first, if any.
fn fetch_source(d: &Desired, missing: &Missing, out: &mut Plan) {
    let name = d.spec.name.as_str();
    match &d.spec.source {
        Source::World(w) if missing.worlds.contains(w) => push(
            out,
            name,
            Action::BuildWorld { world: w.clone() },
            format!("world {w} is not built"),
        ),
        Source::Image(r) if missing.images.contains(r) => push(
            out,
            name,
            Action::PullImage {
                reference: r.clone(),
            },
            format!("image {r} is not stored"),
        ),
        _ => {}
    }
}

fn plan_one(
    d: &Desired,
    obs: &Observed,
    missing: &Missing,
    now_ms: u64,
    backoff: &Backoff,
    out: &mut Plan,
) {
    let name = d.spec.name.as_str();
    let running = obs.pid.is_some();
    let want_running = d.spec.state == DesiredState::Running;
    match &obs.provisioned {
        None => {
            fetch_source(d, missing, out);
            push(
                out,
                name,
                Action::Provision {
                    hash: d.hash.clone(),
                },
                "new workload",
            );
            if want_running {
                push(out, name, Action::Start, "new workload");
            }
            return;
        }
        Some(h) if *h != d.hash => {
            let why = "spec changed";
            if running {
                push(out, name, Action::Stop, why);
            }
            push(out, name, Action::Deprovision, why);
            fetch_source(d, missing, out);
            push(
                out,
                name,
                Action::Provision {
                    hash: d.hash.clone(),
                },
                why,
            );
            if want_running {
                push(out, name, Action::Start, why);
            }
            return;
        }
        Some(_) => {}
    }
    let restart_requested = d.restart_generation > obs.restart_generation;
    match (want_running, running) {
        (false, true) => push(out, name, Action::Stop, "desired state is stopped"),
        (true, true) if restart_requested => {
            push(out, name, Action::Stop, "restart requested");
            push(out, name, Action::Start, "restart requested");
        }
        // Asked for by the operator: neither the restart policy nor a backoff holds it.
        (true, false) if restart_requested => push(out, name, Action::Start, "restart requested"),
        (true, false) => match &obs.last_exit {
            None | Some(LastExit::Deliberate) => push(out, name, Action::Start, "not running"),
            Some(
                exit @ LastExit::Exited {
                    code,
                    oom_killed,
                    at_ms,
                    ..
                },
            ) => {
                if !restarts_after(d.spec.restart, exit) {
                    return;
                }
                let due = at_ms.saturating_add(backoff.delay_ms(obs.failures));
                if due <= now_ms {
                    let what = if *oom_killed {
                        "out of memory".to_string()
                    } else {
                        format!("exit code {code}")
                    };
                    push(
                        out,
                        name,
                        Action::Start,
                        format!("restart policy {} after {what}", d.spec.restart.as_str()),
                    );
                } else {
                    out.next_wake_ms = Some(out.next_wake_ms.map_or(due, |w| w.min(due)));
                }
            }
        },
        _ => {}
    }
}

/// The top-level fields that differ between two specs, for plan output (`command`, `env.PORT`).
pub fn spec_diff(old: &WorkloadSpec, new: &WorkloadSpec) -> Vec<String> {
    let a = serde_json::to_value(old).expect("spec serializes");
    let b = serde_json::to_value(new).expect("spec serializes");
    let mut out = Vec::new();
    diff_values("", &a, &b, &mut out);
    out
}

fn diff_values(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => diff_values(&path, p, q, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
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
}
