//! What happened: the typed kinds of the daemon's events.
//!
//! Every event the daemon records is one [`EventKind`] with its fields (an exit's code, signal
//! and OOM kill; a start's PID; a health status). The log stores it as JSON, the API and the
//! event streams carry it (`"type": "exited"`), and everything that reacts to events (hooks,
//! REPL callbacks, code waiting for a state) matches on the variant. The human message is
//! rendered from the variant ([`std::fmt::Display`]) for text output and is never parsed back.
//!
//! [`EventKind::category`] is the short word text output shows in its kind column (`exited`,
//! `world`, `auth`): several variants share one (`world-created` and `world-removed` are both
//! `world`). [`EventKind::Legacy`] holds rows recorded before events had fields.

use crate::health::HealthStatus;
use crate::hooks::HookEvent;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One event's kind and fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum EventKind {
    // --- Workload lifecycle ---
    /// A workload's datasets were provisioned for a generation of its spec.
    Provisioned {
        generation: u64,
    },
    /// A workload's main process started.
    Started {
        pid: i32,
        generation: u64,
    },
    /// The main process ended on its own (not stopped by warren).
    Exited {
        /// Exit code; 128+signal when killed by a signal.
        code: i32,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// The kernel's OOM killer ended it (the memory limit).
        oom_killed: bool,
    },
    /// The main process ended because warren stopped it.
    Stopped {
        code: i32,
        signal: Option<i32>,
        oom_killed: bool,
    },
    /// A workload was started again after it ended or was restarted (policy, health, hook).
    Restarted {
        reason: String,
    },
    /// A stopping process did not exit after TERM within the grace period; KILL follows.
    Killing {
        grace_ms: u64,
    },
    /// A workload was deleted.
    Removed {
        data_deleted: bool,
    },
    /// A restarted daemon took over a still-running workload.
    Adopted {
        pid: i32,
        shim_pid: i32,
    },
    /// A workload's process vanished while the daemon was away (a host restart).
    Lost {
        pid: i32,
    },
    /// A workload's health status changed.
    Health {
        status: HealthStatus,
        /// Why the last probe failed, when it did.
        error: Option<String>,
        /// Failed probes in a row.
        failures: u32,
    },
    /// A workload's disk limit is reached.
    Quota {
        used: u64,
        limit: u64,
    },
    /// A hook ran.
    Hook {
        /// What triggered it.
        on: HookEvent,
        /// The hook's action (`restart`, `exec`, `webhook`, ...).
        action: String,
        outcome: HookOutcome,
        /// What the action reported (`200` for a webhook, a snapshot label) or why it failed.
        detail: Option<String>,
        /// How long it ran, in milliseconds.
        ms: u64,
    },
    /// A workload's data was re-owned for its user namespace (or shifted back).
    Userns {
        note: String,
    },
    /// A step of a workload's plan failed; the rest of its steps were skipped.
    StepFailed {
        action: String,
        error: String,
    },

    // --- Specs ---
    /// An apply stored a new generation.
    Applied {
        file: String,
        generation: u64,
        created: usize,
        updated: usize,
        removed: usize,
    },
    /// A watched spec file was applied.
    SpecFileApplied {
        file: String,
        changes: usize,
    },
    /// Live changes were written back to a watched spec file.
    SpecFileWritten {
        file: String,
    },

    // --- Ingress and network ---
    /// The ingress routes changed (the summary of the new configuration).
    RouteChanged {
        summary: String,
    },
    /// Networking someone removed was re-created.
    NetworkRepaired {
        what: String,
    },

    // --- Worlds, images and recipes ---
    WorldCreated {
        name: String,
    },
    WorldImported {
        name: String,
        entries: u64,
    },
    WorldExported {
        name: String,
    },
    WorldRemoved {
        name: String,
    },
    /// An image was pulled (`id` and `new_layers` are unknown when pulled for an apply).
    ImagePulled {
        reference: String,
        id: Option<String>,
        new_layers: Option<usize>,
    },
    ImageImported {
        reference: String,
        id: String,
        layers: usize,
        new_layers: usize,
        replaced: Option<String>,
    },
    ImageRemoved {
        reference: String,
    },
    ImageGc {
        deleted: usize,
    },
    /// A recipe version was built (or found already built).
    RecipeBuilt {
        name: String,
        version: String,
        cached: bool,
        parent: String,
    },

    // --- Datasets ---
    SnapshotTaken {
        label: String,
        volume: Option<String>,
    },
    SnapshotDeleted {
        label: String,
        target: String,
    },
    RolledBack {
        target: String,
        label: String,
    },
    Cloned {
        from: String,
        label: Option<String>,
    },
    VolumeDeleted {
        name: String,
    },
    /// The leftover of an interrupted import was deleted.
    StorageCleaned {
        place: String,
    },
    /// A snapshot was exported (as a stream), incrementally when `since` is set.
    Exported {
        label: String,
        since: Option<String>,
    },
    /// A workload's snapshot was imported, on top of `since` when incremental.
    Imported {
        label: String,
        since: Option<String>,
    },
    VolumeImported {
        name: String,
        label: String,
    },

    // --- Daemon and operators ---
    DaemonStarted {
        pid: u32,
        storage: String,
        root: String,
    },
    DaemonStopping,
    RemoteApiListening {
        address: String,
        host_id: String,
        fingerprint: String,
    },
    KeyEnrolled {
        fingerprint: String,
        name: String,
        from: String,
    },
    KeyAdded {
        fingerprint: String,
        name: String,
    },
    KeyRevoked {
        fingerprint: String,
    },
    ClaimReopened,

    /// Something failed outside a workload's plan steps.
    Error {
        message: String,
    },
    /// A row recorded before events had fields: its kind word and message only.
    Legacy {
        kind: String,
        message: String,
    },
}

/// How a hook's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HookOutcome {
    Ok,
    Failed,
    TimedOut,
}

impl EventKind {
    /// An `Exited` or `Stopped` event from how a process ended.
    pub fn ended(deliberate: bool, code: i32, signal: Option<i32>, oom_killed: bool) -> Self {
        if deliberate {
            EventKind::Stopped {
                code,
                signal,
                oom_killed,
            }
        } else {
            EventKind::Exited {
                code,
                signal,
                oom_killed,
            }
        }
    }

    /// An error event.
    pub fn error(message: impl Into<String>) -> Self {
        EventKind::Error {
            message: message.into(),
        }
    }

    /// The short word for the kind column of text output (several variants share one).
    pub fn category(&self) -> &str {
        use EventKind::*;
        match self {
            Provisioned { .. } => "provisioned",
            Started { .. } => "started",
            Exited { .. } => "exited",
            Stopped { .. } => "stopped",
            Restarted { .. } => "restarted",
            Killing { .. } => "killing",
            Removed { .. } => "removed",
            Adopted { .. } => "adopted",
            Lost { .. } => "lost",
            Health { .. } => "health",
            Quota { .. } => "quota",
            Hook { .. } => "hook",
            Userns { .. } => "userns",
            StepFailed { .. } | Error { .. } => "error",
            Applied { .. } => "applied",
            SpecFileApplied { .. } | SpecFileWritten { .. } => "spec",
            RouteChanged { .. } => "ingress",
            NetworkRepaired { .. } => "network",
            WorldCreated { .. }
            | WorldImported { .. }
            | WorldExported { .. }
            | WorldRemoved { .. } => "world",
            ImagePulled { .. } | ImageImported { .. } | ImageRemoved { .. } | ImageGc { .. } => {
                "image"
            }
            RecipeBuilt { .. } => "build",
            SnapshotTaken { .. } | SnapshotDeleted { .. } => "snapshot",
            RolledBack { .. } => "rollback",
            Cloned { .. } => "clone",
            VolumeDeleted { .. } => "volume",
            StorageCleaned { .. } => "storage",
            Exported { .. } => "export",
            Imported { .. } | VolumeImported { .. } => "import",
            DaemonStarted { .. } | DaemonStopping | RemoteApiListening { .. } => "daemon",
            KeyEnrolled { .. } | KeyAdded { .. } | KeyRevoked { .. } | ClaimReopened => "auth",
            Legacy { kind, .. } => kind,
        }
    }

    /// Whether this is a failure report (a failed step or any other error).
    pub fn is_error(&self) -> bool {
        match self {
            EventKind::StepFailed { .. } | EventKind::Error { .. } => true,
            EventKind::Legacy { kind, .. } => kind == "error",
            _ => false,
        }
    }

    /// The hook triggers this event fires: an exit is `exit`, and also `crash` unless it was
    /// a clean code 0 (a non-zero code, a signal or an OOM kill is a crash). Hook events never
    /// trigger hooks; legacy rows trigger nothing.
    pub fn hook_triggers(&self) -> Vec<HookEvent> {
        match self {
            EventKind::Started { .. } => vec![HookEvent::Start],
            EventKind::Stopped { .. } => vec![HookEvent::Stop],
            EventKind::Exited {
                code,
                signal,
                oom_killed,
            } => {
                if crate::plan::ended_in_failure(*code, *signal, *oom_killed) {
                    vec![HookEvent::Exit, HookEvent::Crash]
                } else {
                    vec![HookEvent::Exit]
                }
            }
            EventKind::Health { .. } => vec![HookEvent::Health],
            _ => Vec::new(),
        }
    }
}

/// How a process ended, in words (`exit code 0`, `killed by signal 9 (code 137)`).
fn ending(f: &mut fmt::Formatter<'_>, code: i32, signal: Option<i32>, oom: bool) -> fmt::Result {
    match (oom, signal) {
        (true, _) => write!(f, "killed by the memory limit (code {code})"),
        (false, Some(sig)) => write!(f, "killed by signal {sig} (code {code})"),
        (false, None) => write!(f, "exit code {code}"),
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EventKind::*;
        match self {
            Provisioned { generation } => write!(f, "datasets ready (generation {generation})"),
            Started { pid, generation } => write!(f, "pid {pid} (generation {generation})"),
            Exited {
                code,
                signal,
                oom_killed,
            }
            | Stopped {
                code,
                signal,
                oom_killed,
            } => ending(f, *code, *signal, *oom_killed),
            Restarted { reason } => f.write_str(reason),
            Killing { grace_ms } => write!(f, "no exit {:?} after TERM", std::time::Duration::from_millis(*grace_ms)),
            Removed { data_deleted: true } => f.write_str("workload and its data deleted"),
            Removed { data_deleted: false } => f.write_str("workload deleted; data kept"),
            Adopted { pid, shim_pid } => write!(f, "pid {pid} (shim {shim_pid})"),
            Lost { pid } => write!(f, "pid {pid} is gone (host restarted?); will start again"),
            Health {
                status,
                error,
                failures,
            } => {
                f.write_str(status.as_str())?;
                match error {
                    Some(e) => write!(f, ": {e} ({failures} failures in a row)"),
                    None => Ok(()),
                }
            }
            Quota { used, limit } => write!(
                f,
                "disk limit reached: {used} of {limit} bytes written; writes fail with EDQUOT"
            ),
            Hook {
                on,
                action,
                outcome,
                detail,
                ms,
            } => {
                let on = on.as_str();
                let detail = detail.as_deref().unwrap_or("");
                match outcome {
                    HookOutcome::Ok if detail.is_empty() => {
                        write!(f, "{on} → {action}: ok in {ms} ms")
                    }
                    HookOutcome::Ok => write!(f, "{on} → {action}: ok ({detail}) in {ms} ms"),
                    HookOutcome::Failed => write!(f, "{on} → {action}: failed: {detail}"),
                    HookOutcome::TimedOut => {
                        write!(f, "{on} → {action}: timed out after {}s", ms / 1000)
                    }
                }
            }
            Userns { note } => f.write_str(note),
            StepFailed { action, error } => write!(f, "{action} failed: {error}"),
            Applied {
                file,
                generation,
                created,
                updated,
                removed,
            } => write!(
                f,
                "{file}: generation {generation} ({created} created, {updated} updated, {removed} removed)"
            ),
            SpecFileApplied { file, changes } => write!(f, "applied {file} ({changes} changes)"),
            SpecFileWritten { file } => write!(f, "wrote live changes back to {file}"),
            RouteChanged { summary } => f.write_str(summary),
            NetworkRepaired { what } => write!(f, "repaired: {what}"),
            WorldCreated { name } => write!(f, "world {name} created"),
            WorldImported { name, entries } => {
                write!(f, "world {name} imported ({entries} entries)")
            }
            WorldExported { name } => write!(f, "world {name} exported"),
            WorldRemoved { name } => write!(f, "world {name} removed"),
            ImagePulled {
                reference,
                id: Some(id),
                new_layers,
            } => write!(
                f,
                "image {reference} pulled ({id}, {} new layers)",
                new_layers.unwrap_or(0)
            ),
            ImagePulled {
                reference,
                id: None,
                ..
            } => write!(f, "image {reference} pulled for apply"),
            ImageImported {
                reference,
                id,
                layers,
                new_layers,
                replaced,
            } => {
                write!(
                    f,
                    "image {reference} imported ({id}, {layers} layers, {new_layers} new)"
                )?;
                match replaced {
                    Some(r) => write!(f, ", replacing {r}"),
                    None => Ok(()),
                }
            }
            ImageRemoved { reference } => write!(f, "image {reference} removed"),
            ImageGc { deleted } => write!(f, "image gc deleted {deleted} unused layers"),
            RecipeBuilt {
                name,
                version,
                cached,
                parent,
            } => write!(
                f,
                "recipe {name} {version} {} ({parent})",
                if *cached { "cached" } else { "built" }
            ),
            SnapshotTaken {
                label,
                volume: None,
            } => write!(f, "snapshot {label} taken"),
            SnapshotTaken {
                label,
                volume: Some(v),
            } => write!(f, "snapshot {label} of volume {v} taken"),
            SnapshotDeleted { label, target } => write!(f, "snapshot {label} of {target} deleted"),
            RolledBack { target, label } => write!(f, "{target} rolled back to {label}"),
            Cloned { from, label } => match label {
                Some(l) => write!(f, "cloned from {from}@{l}"),
                None => write!(f, "cloned from {from}"),
            },
            VolumeDeleted { name } => write!(f, "volume {name} deleted with its data"),
            StorageCleaned { place } => {
                write!(f, "deleted the leftover of an interrupted import: {place}")
            }
            Exported { label, since } => {
                write!(f, "exported snapshot {label}")?;
                match since {
                    Some(s) => write!(f, " (incremental from {s})"),
                    None => Ok(()),
                }
            }
            Imported { label, since } => {
                write!(f, "imported snapshot {label}")?;
                match since {
                    Some(s) => write!(f, " on top of {s}"),
                    None => Ok(()),
                }
            }
            VolumeImported { name, label } => {
                write!(f, "imported volume {name} (snapshot {label})")
            }
            DaemonStarted { pid, storage, root } => {
                write!(f, "started (pid {pid}, storage {storage} at {root})")
            }
            DaemonStopping => f.write_str("stopping; workloads keep running"),
            RemoteApiListening {
                address,
                host_id,
                fingerprint,
            } => write!(
                f,
                "remote API on {address} (TLS 1.3), host id {host_id}, certificate {fingerprint}"
            ),
            KeyEnrolled {
                fingerprint,
                name,
                from,
            } => write!(
                f,
                "operator key {fingerprint} ({name}) enrolled from {from}; the claim window is closed"
            ),
            KeyAdded { fingerprint, name } => {
                write!(f, "operator key {fingerprint} ({name}) added")
            }
            KeyRevoked { fingerprint } => write!(f, "operator key {fingerprint} revoked"),
            ClaimReopened => f.write_str("claim window reopened by root on the host"),
            Error { message } | Legacy { message, .. } => f.write_str(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn exited(code: i32, signal: Option<i32>, oom_killed: bool) -> EventKind {
        EventKind::Exited {
            code,
            signal,
            oom_killed,
        }
    }

    #[test]
    fn serializes_with_an_internal_type_tag_and_its_fields() {
        let v = serde_json::to_value(exited(137, Some(9), false)).unwrap();
        assert_eq!(
            v,
            json!({"type": "exited", "code": 137, "signal": 9, "oom_killed": false})
        );
        let v = serde_json::to_value(EventKind::Started {
            pid: 42,
            generation: 3,
        })
        .unwrap();
        assert_eq!(v, json!({"type": "started", "pid": 42, "generation": 3}));
        let v = serde_json::to_value(EventKind::Health {
            status: HealthStatus::Unhealthy,
            error: Some("refused".into()),
            failures: 3,
        })
        .unwrap();
        assert_eq!(v["type"], "health");
        assert_eq!(v["status"], "unhealthy");
        assert_eq!(
            serde_json::to_value(EventKind::DaemonStopping).unwrap(),
            json!({"type": "daemon-stopping"})
        );
    }

    #[test]
    fn every_shape_round_trips() {
        let all = vec![
            EventKind::Provisioned { generation: 2 },
            EventKind::Started {
                pid: 7,
                generation: 2,
            },
            exited(0, None, false),
            exited(3, None, false),
            exited(137, Some(9), false),
            exited(137, None, true),
            EventKind::Stopped {
                code: 143,
                signal: Some(15),
                oom_killed: false,
            },
            EventKind::Restarted {
                reason: "unhealthy".into(),
            },
            EventKind::Killing { grace_ms: 10_000 },
            EventKind::Removed { data_deleted: true },
            EventKind::Adopted {
                pid: 5,
                shim_pid: 4,
            },
            EventKind::Lost { pid: 5 },
            EventKind::Health {
                status: HealthStatus::Healthy,
                error: None,
                failures: 0,
            },
            EventKind::Quota { used: 10, limit: 8 },
            EventKind::Hook {
                on: HookEvent::Crash,
                action: "webhook".into(),
                outcome: HookOutcome::Ok,
                detail: Some("200".into()),
                ms: 12,
            },
            EventKind::StepFailed {
                action: "start".into(),
                error: "no such file".into(),
            },
            EventKind::ImagePulled {
                reference: "app:v1".into(),
                id: None,
                new_layers: None,
            },
            EventKind::ClaimReopened,
            EventKind::error("boom"),
            EventKind::Legacy {
                kind: "tick".into(),
                message: "1".into(),
            },
        ];
        for ev in all {
            let text = serde_json::to_string(&ev).unwrap();
            let back: EventKind = serde_json::from_str(&text).unwrap();
            assert_eq!(back, ev, "{text}");
        }
    }

    #[test]
    fn messages_are_rendered_from_the_fields() {
        assert_eq!(exited(0, None, false).to_string(), "exit code 0");
        assert_eq!(exited(3, None, false).to_string(), "exit code 3");
        assert_eq!(
            exited(137, Some(9), false).to_string(),
            "killed by signal 9 (code 137)"
        );
        assert_eq!(
            exited(137, Some(9), true).to_string(),
            "killed by the memory limit (code 137)"
        );
        assert_eq!(
            EventKind::Started {
                pid: 7,
                generation: 2
            }
            .to_string(),
            "pid 7 (generation 2)"
        );
        assert_eq!(
            EventKind::Health {
                status: HealthStatus::Unhealthy,
                error: Some("connection refused".into()),
                failures: 3
            }
            .to_string(),
            "unhealthy: connection refused (3 failures in a row)"
        );
        assert_eq!(
            EventKind::Hook {
                on: HookEvent::Crash,
                action: "exec".into(),
                outcome: HookOutcome::Ok,
                detail: None,
                ms: 4
            }
            .to_string(),
            "crash → exec: ok in 4 ms"
        );
        assert_eq!(
            EventKind::Hook {
                on: HookEvent::Schedule,
                action: "webhook".into(),
                outcome: HookOutcome::TimedOut,
                detail: None,
                ms: 5000
            }
            .to_string(),
            "schedule → webhook: timed out after 5s"
        );
        assert_eq!(
            EventKind::Killing { grace_ms: 10_000 }.to_string(),
            "no exit 10s after TERM"
        );
        assert_eq!(
            EventKind::StepFailed {
                action: "start".into(),
                error: "x".into()
            }
            .to_string(),
            "start failed: x"
        );
    }

    #[test]
    fn categories_keep_the_short_kind_words() {
        assert_eq!(exited(1, None, false).category(), "exited");
        assert_eq!(
            EventKind::WorldRemoved { name: "w".into() }.category(),
            "world"
        );
        assert_eq!(EventKind::error("x").category(), "error");
        assert_eq!(
            EventKind::StepFailed {
                action: "a".into(),
                error: "b".into()
            }
            .category(),
            "error"
        );
        assert!(EventKind::error("x").is_error());
        assert!(!exited(1, None, false).is_error());
    }

    #[test]
    fn a_crash_is_told_from_a_clean_exit_by_the_fields() {
        use HookEvent::*;
        assert_eq!(exited(0, None, false).hook_triggers(), [Exit]);
        assert_eq!(exited(3, None, false).hook_triggers(), [Exit, Crash]);
        assert_eq!(exited(137, Some(9), false).hook_triggers(), [Exit, Crash]);
        // An OOM kill is a crash even when the recorded code is 0.
        assert_eq!(exited(0, None, true).hook_triggers(), [Exit, Crash]);
        assert_eq!(
            EventKind::Stopped {
                code: 0,
                signal: None,
                oom_killed: false
            }
            .hook_triggers(),
            [Stop]
        );
        assert_eq!(
            EventKind::Started {
                pid: 1,
                generation: 1
            }
            .hook_triggers(),
            [Start]
        );
        assert!(
            EventKind::Hook {
                on: Crash,
                action: "exec".into(),
                outcome: HookOutcome::Ok,
                detail: None,
                ms: 1
            }
            .hook_triggers()
            .is_empty(),
            "hooks never trigger hooks"
        );
        assert!(EventKind::Restarted { reason: "x".into() }
            .hook_triggers()
            .is_empty());
        // A legacy row whose message looks like a crash triggers nothing: text is not parsed.
        assert!(EventKind::Legacy {
            kind: "exited".into(),
            message: "exit code 3".into()
        }
        .hook_triggers()
        .is_empty());
    }
}
