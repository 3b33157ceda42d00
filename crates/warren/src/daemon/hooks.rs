//! Event hooks and schedules: the workloads' `hooks` run when their events happen.
//!
//! One dispatcher task follows the engine's event stream and maps each typed event to its hook
//! triggers ([`EventKind::hook_triggers`]: `started` → start, `stopped` → stop, `exited` →
//! exit, and also crash unless it ended with code 0 and no signal or OOM kill, `health` →
//! health; nothing reads the message text); one scheduler task wakes every second for `schedule`
//! hooks (cron expressions in their time zone, UTC by default, or fixed intervals counted from when the daemon first saw
//! the hook). Every handler runs in a task of its own under its timeout, so a slow or failing
//! handler never blocks the event loop, the reconciler or other workloads; its outcome is an
//! event ([`EventKind::Hook`]), and hook events never trigger hooks.
//!
//! `change` hooks get a watcher thread each (inotify or kqueue, see [`super::watch`]) on the
//! path mapped to the host: below the data path into the data dataset, else into the root
//! filesystem; bursts of changes settle for 300 ms and fire once.
//!
//! Actions: `restart`; `exec` inside the workload (skipped when it is not running); `host`,
//! a command on the host, only when the daemon runs with `--allow-host-hooks` (it gets
//! `WARREN_WORKLOAD`, `WARREN_EVENT` and `WARREN_MESSAGE`); `webhook`, an HTTP POST of the event
//! as JSON (with the typed event and its fields under `details`); `snapshot`, labelled `PREFIX-<unix time>`; `scheme`, an expression evaluated in the
//! live REPL image with `w` and `ev` bound (under the REPL's time limit); `job`, a command in
//! an ephemeral container from the workload's world with its data mounted (scheduled jobs).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warren_model::event::{EventKind, HookOutcome};
use warren_model::hooks::{Hook, HookAction, HookEvent};

use super::engine::Engine;

/// The hooks of `hooks` that an event fires, each with the trigger it fires on (an exit that
/// failed fires both `exit` and `crash` hooks).
fn fired<'a>(hooks: &'a [Hook], event: &EventKind) -> Vec<&'a Hook> {
    let triggers = event.hook_triggers();
    hooks.iter().filter(|h| triggers.contains(&h.on)).collect()
}

/// Starts the dispatcher and the scheduler.
pub fn start(engine: Arc<Engine>) {
    let e = engine.clone();
    tokio::spawn(async move {
        let mut rx = e.subscribe();
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("hook dispatcher missed {n} events");
                    continue;
                }
                Err(_) => return,
            };
            let Some(name) = ev.workload.clone() else {
                continue;
            };
            if ev.kind.hook_triggers().is_empty() {
                continue;
            }
            let Ok(Some(d)) = e.store.get_desired(&name) else {
                continue;
            };
            for hook in fired(&d.spec.hooks, &ev.kind) {
                spawn_run(e.clone(), name.clone(), hook.clone(), Some(ev.kind.clone()));
            }
        }
    });
    tokio::spawn(scheduler(engine));
}

/// Where a path inside the workload is on the host: under its data dataset when it is below
/// the data path, else in its root filesystem.
fn host_path(engine: &Engine, spec: &warren_model::WorkloadSpec, path: &str) -> std::path::PathBuf {
    let data = spec.data_path.trim_end_matches('/');
    match path.strip_prefix(data) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => engine
            .storage
            .data_path(&spec.name)
            .join(rest.trim_start_matches('/')),
        _ => engine
            .storage
            .rootfs_path(&spec.name)
            .join(path.trim_start_matches('/')),
    }
}

/// A thread watching one `change` hook's path until `stop` is set; each burst of changes
/// (settled for 300 ms) is sent to `tx`.
fn watch_thread(
    path: std::path::PathBuf,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
) {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut watcher = None;
        while !stop.load(Ordering::Relaxed) {
            let Some(w) = watcher.as_mut() else {
                // The path may not exist yet (a fresh data dataset): try again shortly.
                match super::watch::watch(&path) {
                    Ok(w) => watcher = Some(w),
                    Err(_) => std::thread::sleep(Duration::from_secs(1)),
                }
                continue;
            };
            match w.wait(Duration::from_millis(500)) {
                Ok(true) => {
                    while let Ok(true) = w.wait(Duration::from_millis(300)) {}
                    if tx.send(()).is_err() {
                        return;
                    }
                }
                Ok(false) => {}
                Err(_) => watcher = None,
            }
            // A deleted or replaced directory needs a new watch.
            if !path.exists() {
                watcher = None;
            }
        }
    });
}

/// Fires `schedule` hooks when they are due, and keeps one watcher per `change` hook.
async fn scheduler(engine: Arc<Engine>) {
    // (workload, hook) → next time (unix seconds).
    let mut next: HashMap<(String, String), i64> = HashMap::new();
    // (workload, hook) → its watcher's stop flag.
    let mut watchers: HashMap<(String, String), Arc<std::sync::atomic::AtomicBool>> =
        HashMap::new();
    loop {
        if let Ok(desired) = engine.store.desired() {
            let mut wanted = std::collections::HashSet::new();
            for (name, d) in &desired {
                for hook in d.spec.hooks.iter().filter(|h| h.on == HookEvent::Change) {
                    let Some(path) = &hook.path else { continue };
                    let key = (
                        name.clone(),
                        serde_json::to_string(hook).unwrap_or_default(),
                    );
                    wanted.insert(key.clone());
                    if watchers.contains_key(&key) {
                        continue;
                    }
                    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    watch_thread(host_path(&engine, &d.spec, path), stop.clone(), tx);
                    let (e, n, h, p) = (engine.clone(), name.clone(), hook.clone(), path.clone());
                    tokio::spawn(async move {
                        while rx.recv().await.is_some() {
                            spawn_run_with(
                                e.clone(),
                                n.clone(),
                                h.clone(),
                                None,
                                format!("{p} changed"),
                            );
                        }
                    });
                    watchers.insert(key, stop);
                }
            }
            watchers.retain(|k, stop| {
                let keep = wanted.contains(k);
                if !keep {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                keep
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = (warren_store::now_ms() / 1000) as i64;
        let Ok(desired) = engine.store.desired() else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for (name, d) in desired {
            for hook in d.spec.hooks.iter().filter(|h| h.on == HookEvent::Schedule) {
                let Some(schedule) = &hook.schedule else {
                    continue;
                };
                let key = (
                    name.clone(),
                    serde_json::to_string(hook).unwrap_or_default(),
                );
                seen.insert(key.clone());
                let due = *next
                    .entry(key.clone())
                    .or_insert_with(|| schedule.next_after(now, now).unwrap_or(i64::MAX));
                if now >= due {
                    next.insert(key, schedule.next_after(now, due).unwrap_or(i64::MAX));
                    spawn_run(engine.clone(), name.clone(), hook.clone(), None);
                }
            }
        }
        next.retain(|k, _| seen.contains(k));
    }
}

/// Runs one hook in its own task for `event` (none for schedules and file changes); its
/// outcome becomes an event.
fn spawn_run(engine: Arc<Engine>, name: String, hook: Hook, event: Option<EventKind>) {
    let message = event.as_ref().map(|e| e.to_string()).unwrap_or_default();
    spawn_run_with(engine, name, hook, event, message);
}

/// [`spawn_run`] with the message the handler gets (`WARREN_MESSAGE`, the webhook's
/// `message`, the Scheme `ev`).
fn spawn_run_with(
    engine: Arc<Engine>,
    name: String,
    hook: Hook,
    event: Option<EventKind>,
    message: String,
) {
    let trigger = hook.on.as_str();
    tokio::spawn(async move {
        let t = Instant::now();
        let what = match &hook.action {
            HookAction::Restart => "restart",
            HookAction::Exec(_) => "exec",
            HookAction::Host(_) => "host",
            HookAction::Webhook(_) => "webhook",
            HookAction::Snapshot(_) => "snapshot",
            HookAction::Scheme(_) => "scheme",
            HookAction::Job(_) => "job",
        };
        let limit = Duration::from_secs(hook.timeout_secs.max(1));
        let ran = run(
            &engine,
            &name,
            &hook.action,
            trigger,
            &message,
            event.as_ref(),
        );
        let outcome = tokio::time::timeout(limit, ran).await;
        let ms = t.elapsed().as_millis() as u64;
        let (outcome, detail, ms) = match outcome {
            Ok(Ok(detail)) => (HookOutcome::Ok, (!detail.is_empty()).then_some(detail), ms),
            Ok(Err(e)) => (HookOutcome::Failed, Some(e), ms),
            Err(_) => (HookOutcome::TimedOut, None, hook.timeout_secs * 1000),
        };
        engine.event(
            Some(&name),
            EventKind::Hook {
                on: hook.on,
                action: what.to_string(),
                outcome,
                detail,
                ms,
            },
        );
    });
}

async fn run(
    engine: &Arc<Engine>,
    name: &str,
    action: &HookAction,
    trigger: &str,
    message: &str,
    event: Option<&EventKind>,
) -> Result<String, String> {
    match action {
        HookAction::Restart => engine
            .restart_for(name, &format!("hook on {trigger}"))
            .await
            .map(|_| String::new())
            .map_err(|e| format!("{e:#}")),
        HookAction::Exec(argv) => {
            if engine.observed_row(name).and_then(|r| r.pid).is_none() {
                return Ok("skipped: not running".into());
            }
            let cmd = engine
                .runtime
                .exec(
                    &engine.container_id(name),
                    &warren_runtime::ExecRequest {
                        env: vec![format!("WARREN_EVENT={trigger}")],
                        ..warren_runtime::ExecRequest::new(argv.clone())
                    },
                )
                .map_err(|e| e.to_string())?;
            let mut cmd = tokio::process::Command::from(cmd);
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let status = cmd.status().await.map_err(|e| e.to_string())?;
            if status.success() {
                Ok(String::new())
            } else {
                Err(format!("`{}` exited with {status}", argv.join(" ")))
            }
        }
        HookAction::Host(argv) => {
            if !engine.cfg.allow_host_hooks {
                return Err("host hooks need the daemon to run with --allow-host-hooks".into());
            }
            let mut cmd = tokio::process::Command::new(&argv[0]);
            cmd.args(&argv[1..])
                .env("WARREN_WORKLOAD", name)
                .env("WARREN_EVENT", trigger)
                .env("WARREN_MESSAGE", message)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            let status = cmd
                .status()
                .await
                .map_err(|e| format!("{}: {e}", argv[0]))?;
            if status.success() {
                Ok(String::new())
            } else {
                Err(format!("`{}` exited with {status}", argv.join(" ")))
            }
        }
        HookAction::Webhook(url) => webhook(url, name, trigger, message, event).await,
        HookAction::Job(argv) => run_job(engine, name, argv).await,
        HookAction::Scheme(expr) => {
            let repl = engine.evaluator().ok_or("the REPL is not running")?;
            let call = format!(
                "((lambda (w ev) {expr}) {} {})",
                scheme_string(name),
                scheme_string(message)
            );
            repl.eval(call).await
        }
        HookAction::Snapshot(prefix) => {
            let label = format!("{prefix}-{}", warren_store::now_ms() / 1000);
            engine
                .take_snapshot(
                    &super::datasets::Target::Workload(name.to_string()),
                    Some(label.clone()),
                )
                .await
                .map(|l| l.to_string())
                .map_err(|e| format!("{e:#}"))
        }
    }
}

static JOBS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Runs `argv` in an ephemeral container from the workload's world, with its data dataset
/// mounted at its data path and no network; the container and its root filesystem are removed
/// afterwards, also when the hook times out. A `userns` workload's job runs in the workload's
/// id range, so what it writes to the data belongs to the workload (its root filesystem, not
/// re-owned for a one-off run, is the world's, seen as unmapped ids: readable, not writable
/// except for the world-writable directories).
async fn run_job(engine: &Arc<Engine>, name: &str, argv: &[String]) -> Result<String, String> {
    let d = engine
        .store
        .get_desired(name)
        .map_err(|e| e.to_string())?
        .ok_or("the workload is gone")?;
    let world = match d
        .spec
        .rootfs_source()
        .ok_or("a full VM has no root filesystem to run a job in: use a `run` hook")?
    {
        warren_model::Source::World(w) => w.clone(),
        warren_model::Source::Image(r) => engine.image_world(r).map_err(|e| format!("{e:#}"))?,
        warren_model::Source::Recipe(r) => {
            super::recipes::resolve_ref(&engine.store, r)
                .map_err(|e| format!("{e:#}"))?
                .world
        }
    };
    let job = format!(
        "job-{}-{}",
        std::process::id(),
        JOBS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let storage = engine.storage.clone();
    let (j, w) = (job.clone(), world.clone());
    let rootfs =
        tokio::task::spawn_blocking(move || warren_storage::ephemeral::create(&*storage, &j, &w))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    let meta =
        warren_storage::worlds::world_meta(&*engine.storage, &world).map_err(|e| e.to_string())?;
    let mut binds = super::engine::world_binds(&meta);
    binds.push(warren_runtime::Bind {
        source: engine.storage.data_path(name),
        dest: d.spec.data_path.clone(),
        readonly: false,
    });
    let userns = if d.spec.userns {
        Some(warren_runtime::UserNamespace {
            host_id: engine.userns_base(name).map_err(|e| format!("{e:#}"))?,
            size: warren_runtime::userns::IDS_PER_WORKLOAD,
            path: None,
        })
    } else {
        None
    };
    let spec = warren_runtime::WorkloadRun {
        binds,
        env: vec![format!("WARREN_WORKLOAD={name}")],
        resources: d.spec.resources.clone(),
        userns,
        ..super::oneoff::spec(engine, &job, rootfs, argv.to_vec())
    };
    struct Cleanup(Arc<Engine>, String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let (e, job) = (self.0.clone(), self.1.clone());
            std::thread::spawn(move || {
                let _ = e.runtime.delete(&e.container_id(&job));
                let _ = warren_storage::ephemeral::remove(&*e.storage, &job);
                let _ = std::fs::remove_dir_all(e.run_dir(&job));
            });
        }
    }
    let _cleanup = Cleanup(engine.clone(), job.clone());
    if spec.userns.is_some() {
        engine
            .allow_traversal(&spec)
            .map_err(|e| format!("{e:#}"))?;
    }
    let cmd = engine
        .runtime
        .run_foreground(&spec, &engine.run_dir(&job))
        .map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::new())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "`{}` exited with {}{}",
            argv.join(" "),
            out.status,
            err.lines()
                .last()
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        ))
    }
}

/// A Scheme string literal.
fn scheme_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// POSTs the event as JSON to an `http://HOST[:PORT]/PATH` URL; a 2xx answer is success.
async fn webhook(
    url: &str,
    name: &str,
    trigger: &str,
    message: &str,
    event: Option<&EventKind>,
) -> Result<String, String> {
    let rest = url.strip_prefix("http://").ok_or("only http:// webhooks")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let body = serde_json::json!({
        "workload": name,
        "event": trigger,
        "message": message,
        "details": event,
        "ts_ms": warren_store::now_ms(),
    })
    .to_string();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nUser-Agent: warren-hooks\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await.map_err(|e| e.to_string())?;
    match String::from_utf8_lossy(&head)
        .get(9..12)
        .and_then(|c| c.parse::<u16>().ok())
    {
        Some(c) if (200..300).contains(&c) => Ok(c.to_string()),
        Some(c) => Err(format!("{url} answered {c}")),
        None => Err(format!("{url}: not an HTTP answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_strings_are_escaped() {
        assert_eq!(scheme_string(r#"a "b" \ c"#), r#""a \"b\" \\ c""#);
        assert_eq!(scheme_string("x\ny"), "\"x\\ny\"");
    }

    fn hook(on: HookEvent, action: HookAction) -> Hook {
        Hook {
            on,
            action,
            schedule: None,
            path: None,
            timeout_secs: 5,
        }
    }

    fn exited(code: i32, signal: Option<i32>, oom_killed: bool) -> EventKind {
        EventKind::Exited {
            code,
            signal,
            oom_killed,
        }
    }

    /// A crash is told from a clean exit by the event's fields, not by its message.
    #[test]
    fn crash_hooks_fire_on_failed_exits_only() {
        let hooks = [
            hook(HookEvent::Exit, HookAction::Restart),
            hook(HookEvent::Crash, HookAction::Webhook("http://x/".into())),
            hook(HookEvent::Start, HookAction::Exec(vec!["true".into()])),
        ];
        let ons = |ev: &EventKind| fired(&hooks, ev).iter().map(|h| h.on).collect::<Vec<_>>();
        assert_eq!(ons(&exited(0, None, false)), [HookEvent::Exit]);
        for crash in [
            exited(3, None, false),
            exited(137, Some(9), false),
            exited(137, Some(9), true),
            // An OOM kill whose code reads 0 is still a crash.
            exited(0, None, true),
        ] {
            assert_eq!(
                ons(&crash),
                [HookEvent::Exit, HookEvent::Crash],
                "{crash:?}"
            );
        }
        let stopped = EventKind::Stopped {
            code: 143,
            signal: Some(15),
            oom_killed: false,
        };
        assert!(ons(&stopped).is_empty(), "a deliberate stop is no exit");
        assert_eq!(
            ons(&EventKind::Started {
                pid: 1,
                generation: 1
            }),
            [HookEvent::Start]
        );
        let outcome = EventKind::Hook {
            on: HookEvent::Crash,
            action: "webhook".into(),
            outcome: HookOutcome::Ok,
            detail: None,
            ms: 1,
        };
        assert!(ons(&outcome).is_empty(), "hooks never trigger hooks");
        // Old rows are text only, and text is never parsed into a trigger.
        let legacy = EventKind::Legacy {
            kind: "exited".into(),
            message: "exit code 3".into(),
        };
        assert!(ons(&legacy).is_empty());
    }
}
