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
//! - Start order: a workload whose `after` dependencies do not meet their condition yet
//!   ([`unmet_dependencies`], judged from observed state alone) gets no `start` step, whatever
//!   the start is for (new, recreated, restarted by policy or by the operator); the steps
//!   before it (stop, provision) are planned as usual and it is listed in [`Plan::waiting`]
//!   with the reason. No wake-up time is needed: the engine plans again when a dependency's
//!   state changes. A dependency restarting never restarts its dependents.

use crate::health::HealthStatus;
use crate::host::HostCapabilities;
use crate::spec::{DesiredState, Kind, RestartPolicy, Source, WaitFor, WorkloadSpec};
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
    /// The health of the current run, for workloads with a health check (what the engine's
    /// monitor last reported; `healthy` waits of dependents read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
}

impl Observed {
    /// Whether the last run ended on its own with status 0 (no signal, no OOM kill).
    pub fn succeeded(&self) -> bool {
        matches!(&self.last_exit, Some(exit @ LastExit::Exited { .. }) if !exit.is_failure())
    }

    /// Whether this workload meets `wait` for a dependent: `started` = running or its last
    /// run succeeded; `healthy` = running and its health check passes; `completed` = not
    /// running and its last run succeeded.
    pub fn meets(&self, wait: WaitFor) -> bool {
        let running = self.pid.is_some();
        match wait {
            WaitFor::Started => running || self.succeeded(),
            WaitFor::Healthy => running && self.health == Some(HealthStatus::Healthy),
            WaitFor::Completed => !running && self.succeeded(),
        }
    }
}

/// Why `spec` may not start yet: its `after` dependencies that do not meet their condition in
/// `observed` (a dependency never observed meets none), as `waiting for db (healthy),
/// migrate (completed)`; `None` when all are met. The one decision the planner holds starts
/// back with and the engine's status (`waiting`) reports.
pub fn unmet_dependencies(
    spec: &WorkloadSpec,
    observed: &BTreeMap<String, Observed>,
) -> Option<String> {
    let unmet: Vec<String> = spec
        .after
        .iter()
        .filter(|d| !observed.get(&d.name).is_some_and(|o| o.meets(d.wait)))
        .map(|d| format!("{} ({})", d.name, d.wait.as_str()))
        .collect();
    (!unmet.is_empty()).then(|| format!("waiting for {}", unmet.join(", ")))
}

/// A desired workload whose start is held back by its start order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Waiting {
    pub workload: String,
    /// `waiting for db (healthy)`.
    pub reason: String,
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
    /// Desired workloads whose start waits for their `after` dependencies, in name order.
    pub waiting: Vec<Waiting>,
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
                None => {
                    let held = unmet_dependencies(&d.spec, observed);
                    plan_one(d, obs, missing, now_ms, backoff, held, &mut out)
                }
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

/// A `start` step for `name`, unless `held` (its unmet start order) holds it back: then the
/// workload is listed as waiting instead.
fn start(out: &mut Plan, name: &str, reason: impl Into<String>, held: &Option<String>) {
    match held {
        None => push(out, name, Action::Start, reason),
        Some(why) => out.waiting.push(Waiting {
            workload: name.to_string(),
            reason: why.clone(),
        }),
    }
}

fn plan_one(
    d: &Desired,
    obs: &Observed,
    missing: &Missing,
    now_ms: u64,
    backoff: &Backoff,
    held: Option<String>,
    out: &mut Plan,
) {
    let held = &held;
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
                start(out, name, "new workload", held);
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
                start(out, name, why, held);
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
            start(out, name, "restart requested", held);
        }
        // Asked for by the operator: neither the restart policy nor a backoff holds it.
        (true, false) if restart_requested => start(out, name, "restart requested", held),
        (true, false) => match &obs.last_exit {
            None | Some(LastExit::Deliberate) => start(out, name, "not running", held),
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
                    start(
                        out,
                        name,
                        format!("restart policy {} after {what}", d.spec.restart.as_str()),
                        held,
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
mod tests;
