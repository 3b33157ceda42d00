//! The live Scheme REPL: one embedded Steel Scheme engine on a thread of its own, shared by
//! every REPL session (one live image, as the seed design has it). Expressions arrive from the
//! API (`POST /v1/repl`, `warren repl`), are evaluated in order with a time limit
//! (`--repl-time-limit`, 30 s by default: an endless loop is interrupted, never the daemon), and may read and change the live model through
//! these functions:
//!
//! - `(workloads)` → names; `(workload "web")` → a hash of its status fields;
//!   `(spec "web")` → its spec as JSON text;
//! - `(set-spec! "web" "field" value)` → changes one top-level spec field (a string, number,
//!   boolean or list; text that parses as JSON is taken as JSON) and applies the whole
//!   desired state through the same validation and planner as `warren apply`;
//! - `(start! "web")`, `(stop! "web")`, `(restart! "web")`, `(snapshot! "web" "label")`;
//! - `(events)` / `(events n)` → the newest events as text lines;
//! - `(api "METHOD" "/v1/..." [json-body])` → any API verb, answered with its JSON text;
//! - `(on "web" 'crash (lambda (w ev) ...))` → a callback run (under the same time limit) for
//!   each matching event (`start`, `stop`, `exit`, `crash`, `health` and the raw event kinds);
//!   `ev` is the event message.
//!
//! - `(off "web" 'crash)` → drops those callbacks; `(callbacks)` → the registered
//!   `(workload kind)` pairs.
//!
//! Desired-state changes go through the store and reconciler, so they persist across
//! restarts. Top-level definitions and callback registrations persist too: each one that
//! evaluates successfully is kept in the store's journal ([`crate::scheme::Journal`]) and
//! replayed, in order, into the fresh image a restarted daemon (or a reset after a crash)
//! starts with; a replayed form that fails is reported as an event and skipped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use warren_model::event::EventKind;

use steel::steel_vm::engine::Engine as Scheme;
use steel::steel_vm::register_fn::RegisterFn;
use steel::SteelVal;

use super::engine::Engine;
use crate::scheme::Journal;

const PRELUDE: &str = r#"
(define *warren-callbacks* '())
(define (on workload kind proc)
  (set! *warren-callbacks*
        (cons (list workload (if (symbol? kind) (symbol->string kind) kind) proc)
              *warren-callbacks*))
  'registered)
(define (off workload kind)
  (let ((k (if (symbol? kind) (symbol->string kind) kind)))
    (set! *warren-callbacks*
          (filter (lambda (cb) (not (and (equal? (car cb) workload) (equal? (cadr cb) k))))
                  *warren-callbacks*)))
  'removed)
(define (callbacks)
  (map (lambda (cb) (list (car cb) (cadr cb))) (reverse *warren-callbacks*)))
(define (api method path . body) (%api method path (if (null? body) "" (car body))))
(define (events . n) (%events (if (null? n) 20 (car n))))
(define (warren-dispatch workload kind message)
  (for-each (lambda (cb)
              (when (and (equal? (car cb) workload) (equal? (cadr cb) kind))
                ((caddr cb) workload message)))
            (reverse *warren-callbacks*)))
"#;

enum Job {
    Eval(String, tokio::sync::oneshot::Sender<Result<String, String>>),
    Event(String, String, String),
}

/// The handle the API talks to.
///
/// The Scheme thread (and its image, several megabytes) starts on first use: the first
/// evaluation, or the daemon's start when the journal holds forms to replay (a replayed
/// callback must see the events that follow). Until then events are not fed to it: with
/// nothing evaluated and nothing journaled, no callback exists.
pub struct Repl {
    /// The Scheme thread's queue, once it runs.
    tx: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    engine: std::sync::Weak<Engine>,
    handle: tokio::runtime::Handle,
}

impl super::engine::Evaluator for Repl {
    fn eval(&self, expr: String) -> super::engine::BoxFuture<'_, Result<String, String>> {
        Box::pin(Repl::eval(self, expr))
    }
}

impl Repl {
    /// The running thread's queue, starting the thread first if it does not run yet.
    fn sender(&self) -> Result<mpsc::Sender<Job>, String> {
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = tx.as_ref() {
            return Ok(tx.clone());
        }
        let engine = self
            .engine
            .upgrade()
            .ok_or_else(|| "the daemon is stopping".to_string())?;
        let started = spawn_thread(engine, self.handle.clone());
        *tx = Some(started.clone());
        Ok(started)
    }

    /// The queue of the thread if it runs (callbacks need no thread that was never used).
    fn running(&self) -> Option<mpsc::Sender<Job>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Evaluates `expr`; the printed value of the last form, or the error.
    pub async fn eval(&self, expr: String) -> Result<String, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(Job::Eval(expr, tx))
            .map_err(|_| "the Scheme thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the Scheme thread dropped the request".to_string())?
    }
}

fn block<T>(h: &tokio::runtime::Handle, f: impl std::future::Future<Output = T>) -> T {
    h.block_on(f)
}

/// Turns a Scheme value into JSON for a spec field.
fn to_json(v: &SteelVal) -> Result<serde_json::Value, String> {
    Ok(match v {
        SteelVal::BoolV(b) => serde_json::Value::Bool(*b),
        SteelVal::IntV(i) => serde_json::json!(*i),
        SteelVal::NumV(f) => serde_json::json!(*f),
        SteelVal::StringV(s) => {
            let s = s.as_str();
            serde_json::from_str(s).unwrap_or_else(|_| serde_json::Value::String(s.to_string()))
        }
        SteelVal::SymbolV(s) => serde_json::Value::String(s.as_str().to_string()),
        SteelVal::ListV(l) => {
            serde_json::Value::Array(l.iter().map(to_json).collect::<Result<_, _>>()?)
        }
        SteelVal::Void => serde_json::Value::Null,
        other => return Err(format!("cannot use {other} as a spec value")),
    })
}

fn register(scheme: &mut Scheme, engine: Arc<Engine>, h: tokio::runtime::Handle) {
    let e = engine.clone();
    scheme.register_fn("workloads", move || -> Vec<String> {
        e.store
            .desired()
            .map(|d| d.into_keys().collect())
            .unwrap_or_default()
    });
    let e = engine.clone();
    scheme.register_fn(
        "workload",
        move |name: String| -> Result<std::collections::HashMap<String, String>, String> {
            let d = e
                .store
                .get_desired(&name)
                .map_err(|x| x.to_string())?
                .ok_or_else(|| format!("no workload named {name:?}"))?;
            let s = e.status(&d);
            let mut m = std::collections::HashMap::new();
            m.insert("name".into(), s.name);
            m.insert("state".into(), s.state);
            m.insert("desired".into(), s.desired);
            m.insert("source".into(), s.source);
            m.insert("restarts".into(), s.restarts.to_string());
            m.insert(
                "pid".into(),
                s.pid.map(|p| p.to_string()).unwrap_or_default(),
            );
            m.insert("health".into(), s.health.unwrap_or_default());
            m.insert("address".into(), s.address.unwrap_or_default());
            Ok(m)
        },
    );
    let e = engine.clone();
    scheme.register_fn("spec", move |name: String| -> Result<String, String> {
        let d = e
            .store
            .get_desired(&name)
            .map_err(|x| x.to_string())?
            .ok_or_else(|| format!("no workload named {name:?}"))?;
        serde_json::to_string(&d.spec).map_err(|x| x.to_string())
    });
    let (e, hh) = (engine.clone(), h.clone());
    scheme.register_fn(
        "set-spec!",
        move |name: String, field: String, value: SteelVal| -> Result<String, String> {
            let mut live = super::specfile::live_spec(&e).map_err(|x| format!("{x:#}"))?;
            let spec = live
                .workloads
                .get(&name)
                .ok_or_else(|| format!("no workload named {name:?}"))?;
            let mut json = serde_json::to_value(spec).map_err(|x| x.to_string())?;
            json[field.as_str()] = to_json(&value)?;
            let changed: warren_model::WorkloadSpec =
                serde_json::from_value(json).map_err(|x| format!("{field}: {x}"))?;
            live.workloads.insert(name.clone(), changed);
            let req = crate::wire::ApplyRequest {
                file: "repl".into(),
                text: warren_model::render::to_toml(&live, ""),
                prune: false,
                dry_run: false,
            };
            match block(&hh, super::apply::plan_or_apply(e.clone(), req, true)) {
                Ok(r) => Ok(format!("applied ({} changes)", r.changes.len())),
                Err(err) => Err(if err.body.diagnostics.is_empty() {
                    err.body.error
                } else {
                    err.body
                        .diagnostics
                        .iter()
                        .map(|d| d.message.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                }),
            }
        },
    );
    for (verb, what) in [("start!", 0u8), ("stop!", 1), ("restart!", 2)] {
        let (e, hh) = (engine.clone(), h.clone());
        scheme.register_fn(verb, move |name: String| -> Result<String, String> {
            if e.store.get_desired(&name).ok().flatten().is_none() {
                return Err(format!("no workload named {name:?}"));
            }
            // Like the API: the request, then the reconciler's carrying it out.
            let within = std::time::Duration::from_secs(30);
            let r = match what {
                0 => block(&hh, async {
                    e.start_now(&name).await?;
                    e.settle(&name, within, |s, _| {
                        matches!(s.state.as_str(), "running" | "waiting")
                    })
                    .await
                }),
                1 => block(&hh, async {
                    e.stop_now(&name).await?;
                    e.settle(&name, within, |s, _| s.state == "stopped").await
                }),
                _ => block(&hh, async {
                    let g = e.restart_now(&name).await?;
                    e.settle(&name, within, |s, r| {
                        s.state == "waiting"
                            || r.is_some_and(|r| r.pid.is_some() && r.restart_generation >= g)
                    })
                    .await
                }),
            };
            match r {
                Ok(Ok(_)) => Ok(name.clone()),
                Ok(Err(failed)) => Err(failed),
                Err(x) => Err(format!("{x:#}")),
            }
        });
    }
    let (e, hh) = (engine.clone(), h.clone());
    scheme.register_fn(
        "snapshot!",
        move |name: String, label: String| -> Result<String, String> {
            block(
                &hh,
                e.take_snapshot(&super::datasets::Target::Workload(name), Some(label)),
            )
            .map_err(|x| format!("{x:#}"))
        },
    );
    // Every API verb: (api "POST" "/v1/workloads/web/clone" "{\"name\": \"web2\"}").
    let (router, hh) = (super::api::router(engine.clone()), h.clone());
    scheme.register_fn(
        "%api",
        move |method: String, path: String, body: String| -> Result<String, String> {
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            let method = axum::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("{method:?} is not an HTTP method"))?;
            if !path.starts_with("/v1/") {
                return Err(format!("{path:?}: API paths start with /v1/"));
            }
            let req = axum::http::Request::builder()
                .method(method)
                .uri(&path)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .map_err(|x| x.to_string())?;
            let router = router.clone();
            block(&hh, async move {
                let resp = router.oneshot(req).await.map_err(|x| x.to_string())?;
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|x| x.to_string())?
                    .to_bytes();
                let text = String::from_utf8_lossy(&bytes).to_string();
                if status.is_success() {
                    Ok(text)
                } else {
                    Err(format!("{status}: {text}"))
                }
            })
        },
    );
    let e = engine.clone();
    scheme.register_fn("%events", move |n: usize| -> Vec<String> {
        e.store
            .events(0, None, n)
            .unwrap_or_default()
            .into_iter()
            .map(|ev| {
                format!(
                    "{} {} {}",
                    ev.workload.as_deref().unwrap_or("-"),
                    ev.kind.category(),
                    ev.kind
                )
            })
            .collect()
    });
}

/// The time limit of evaluations: one watchdog thread per image interrupts the Scheme engine
/// at its next safepoint when an evaluation runs longer than the daemon's
/// `--repl-time-limit`. (One thread that sleeps until the current deadline, not one per
/// evaluation: every event fed to callbacks is an evaluation, and a thread each sleeping out
/// the whole limit made an apply of 50 workloads leave 150 threads behind.)
struct Limit {
    limit: Duration,
    resume: Arc<dyn Fn() + Send + Sync>,
    /// The running evaluation's deadline; the lock makes "still the same evaluation?" and
    /// "interrupt it" one step.
    watch: Arc<(std::sync::Mutex<Watch>, std::sync::Condvar)>,
    fired: Arc<AtomicBool>,
}

#[derive(Default)]
struct Watch {
    deadline: Option<std::time::Instant>,
    /// The image is gone: the watchdog ends.
    stop: bool,
}

impl Limit {
    fn new(scheme: &Scheme, limit: Duration) -> Limit {
        let (a, b) = (
            scheme.get_thread_state_controller(),
            scheme.get_thread_state_controller(),
        );
        let watch: Arc<(std::sync::Mutex<Watch>, std::sync::Condvar)> = Arc::default();
        let fired = Arc::new(AtomicBool::new(false));
        let (w, f) = (watch.clone(), fired.clone());
        std::thread::Builder::new()
            .name("scheme-watchdog".into())
            .spawn(move || {
                let (lock, cv) = &*w;
                let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
                while !g.stop {
                    g = match g.deadline {
                        None => cv.wait(g).unwrap_or_else(|p| p.into_inner()),
                        Some(d) => {
                            let now = std::time::Instant::now();
                            if now >= d {
                                f.store(true, Ordering::SeqCst);
                                a.interrupt();
                                g.deadline = None;
                                g
                            } else {
                                cv.wait_timeout(g, d - now)
                                    .unwrap_or_else(|p| p.into_inner())
                                    .0
                            }
                        }
                    };
                }
            })
            .expect("the REPL watchdog starts");
        Limit {
            limit,
            resume: Arc::new(move || b.resume()),
            watch,
            fired,
        }
    }

    /// Runs `f` under the limit; whether the limit interrupted it.
    fn run<T>(&self, f: impl FnOnce() -> T) -> (T, bool) {
        let (lock, cv) = &*self.watch;
        {
            let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
            self.fired.store(false, Ordering::SeqCst);
            (self.resume)();
            g.deadline = Some(std::time::Instant::now() + self.limit);
            cv.notify_one();
        }
        let out = f();
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        g.deadline = None;
        (self.resume)();
        (out, self.fired.load(Ordering::SeqCst))
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        let (lock, cv) = &*self.watch;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cv.notify_one();
    }
}

/// The store key of the REPL's journal (JSON).
const JOURNAL_KEY: &str = "repl_journal";

fn load_journal(engine: &Engine) -> Journal {
    match engine.store.meta(JOURNAL_KEY) {
        Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_else(|e| {
            engine.event(
                None,
                EventKind::error(format!(
                    "the REPL journal is unreadable ({e}); starting without it"
                )),
            );
            Journal::default()
        }),
        Ok(None) => Journal::default(),
        Err(e) => {
            engine.event(
                None,
                EventKind::error(format!("reading the REPL journal: {e}")),
            );
            Journal::default()
        }
    }
}

fn save_journal(engine: &Engine, journal: &Journal) {
    let text = serde_json::to_string(journal).expect("the journal serializes");
    if let Err(e) = engine.store.set_meta(&[(JOURNAL_KEY, Some(&text))]) {
        engine.event(
            None,
            EventKind::error(format!("saving the REPL journal: {e}")),
        );
    }
}

/// A new image: the built-in functions, the prelude, then the journal replayed (each form
/// under the time limit; one that fails or crashes is reported and skipped).
fn fresh(engine: &Arc<Engine>, h: &tokio::runtime::Handle, journal: &Journal) -> (Scheme, Limit) {
    let build = || {
        let mut s = Scheme::new();
        register(&mut s, engine.clone(), h.clone());
        if let Err(e) = s.run(PRELUDE) {
            tracing::error!("the REPL prelude failed: {e}");
        }
        let limit = Limit::new(&s, engine.cfg.repl_time_limit);
        (s, limit)
    };
    let (mut s, mut limit) = build();
    let mut replayed = 0;
    for (i, form) in journal.forms.iter().enumerate() {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            limit.run(|| s.run(form.clone()))
        }));
        let failure = match run {
            Ok((Ok(_), _)) => {
                replayed += 1;
                continue;
            }
            Ok((Err(e), true)) => format!("interrupted after the time limit ({e})"),
            Ok((Err(e), false)) => e.to_string(),
            Err(_) => {
                (s, limit) = build();
                "it crashed the engine, which was reset".to_string()
            }
        };
        engine.event(
            None,
            EventKind::error(format!(
                "REPL journal form {} of {} not replayed: {failure}: {}",
                i + 1,
                journal.forms.len(),
                form.chars().take(200).collect::<String>()
            )),
        );
    }
    if replayed > 0 {
        tracing::info!("REPL: {replayed} journal forms replayed");
    }
    (s, limit)
}

/// The callback kinds an event runs, from its typed kind: the hook triggers it fires (`exit`,
/// and `crash` only for a failed exit; `start`, `stop`, `health`), then its kind word
/// (`exited`, `restarted`, `quota`, ...) when that is not already one of them.
fn callback_kinds(event: &EventKind) -> Vec<String> {
    let mut kinds: Vec<String> = event
        .hook_triggers()
        .into_iter()
        .map(|t| t.as_str().to_string())
        .collect();
    let word = event.category().to_string();
    if !kinds.contains(&word) {
        kinds.push(word);
    }
    kinds
}

/// The REPL handle and the event feed for callbacks; the Scheme thread starts now only when
/// the journal holds forms to replay, else on the first evaluation.
pub fn start(engine: Arc<Engine>) -> Arc<Repl> {
    let repl = Arc::new(Repl {
        tx: std::sync::Mutex::new(None),
        engine: Arc::downgrade(&engine),
        handle: tokio::runtime::Handle::current(),
    });
    if !load_journal(&engine).forms.is_empty() {
        let _ = repl.sender();
    }
    // Events for callbacks.
    let feed = repl.clone();
    tokio::spawn(async move {
        let mut rx = engine.subscribe();
        drop(engine);
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let Some(w) = ev.workload.clone() else {
                continue;
            };
            let Some(tx) = feed.running() else {
                continue;
            };
            let message = ev.kind.to_string();
            for k in callback_kinds(&ev.kind) {
                if tx.send(Job::Event(w.clone(), k, message.clone())).is_err() {
                    return;
                }
            }
        }
    });
    repl
}

/// Starts the Scheme thread: a fresh image with the journal replayed, then evaluations and
/// callbacks in arrival order.
fn spawn_thread(engine: Arc<Engine>, h: tokio::runtime::Handle) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel::<Job>();
    let e = engine;
    std::thread::Builder::new()
        .name("warren-scheme".into())
        .spawn(move || {
            let mut journal = load_journal(&e);
            let (mut scheme, mut limit) = fresh(&e, &h, &journal);
            for job in rx {
                match job {
                    Job::Eval(expr, reply) => {
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            limit.run(|| scheme.run(expr.clone()))
                        }));
                        if matches!(result, Ok((Ok(_), _))) && journal.record(&expr) {
                            save_journal(&e, &journal);
                        }
                        let answer = match result {
                            Ok((Ok(values), _)) => Ok(values
                                .last()
                                .map(|v| match v {
                                    SteelVal::Void => String::new(),
                                    v => v.to_string(),
                                })
                                .unwrap_or_default()),
                            Ok((Err(err), interrupted)) => Err(if interrupted {
                                format!(
                                    "interrupted: the expression ran longer than {}s",
                                    e.cfg.repl_time_limit.as_secs()
                                )
                            } else {
                                err.to_string()
                            }),
                            Err(_) => {
                                (scheme, limit) = fresh(&e, &h, &journal);
                                Err("the evaluation crashed; the REPL was reset".into())
                            }
                        };
                        let _ = reply.send(answer);
                    }
                    Job::Event(workload, kind, message) => {
                        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            limit.run(|| {
                                scheme.call_function_by_name_with_args(
                                    "warren-dispatch",
                                    vec![
                                        SteelVal::StringV(workload.clone().into()),
                                        SteelVal::StringV(kind.clone().into()),
                                        SteelVal::StringV(message.clone().into()),
                                    ],
                                )
                            })
                        }));
                        match run {
                            Ok((Ok(_), _)) => {}
                            Ok((Err(err), _)) => e.event(
                                Some(&workload),
                                EventKind::error(format!("REPL callback on {kind} failed: {err}")),
                            ),
                            Err(_) => (scheme, limit) = fresh(&e, &h, &journal),
                        }
                    }
                }
            }
        })
        .expect("the Scheme thread starts");
    tx
}

#[cfg(test)]
mod watchdog_tests {
    use super::*;

    fn watchdogs() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim() == "scheme-watchdog")
            })
            .count()
    }

    #[test]
    fn one_watchdog_interrupts_long_evaluations_and_spares_short_ones() {
        let mut s = Scheme::new();
        let limit = Limit::new(&s, Duration::from_millis(300));
        // Many short evaluations: none interrupted, and no thread each.
        for i in 0..50 {
            let (out, fired) = limit.run(|| s.run(format!("(+ {i} 1)")));
            assert!(out.is_ok() && !fired);
        }
        assert_eq!(watchdogs(), 1);
        // An endless loop is interrupted after the limit.
        let t = std::time::Instant::now();
        let (out, fired) = limit.run(|| s.run("(define (spin) (spin)) (spin)"));
        assert!(out.is_err() && fired, "{out:?}");
        assert!(t.elapsed() >= Duration::from_millis(300));
        // The image keeps working, and a later evaluation is not hit by the old deadline.
        std::thread::sleep(Duration::from_millis(350));
        let (out, fired) = limit.run(|| s.run("(+ 1 1)"));
        assert!(!fired);
        assert_eq!(out.unwrap().last().map(|v| v.to_string()), Some("2".into()));
        // Dropping the limit ends its watchdog.
        drop(limit);
        let t = std::time::Instant::now();
        while watchdogs() > 0 {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "the watchdog did not end"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, signal: Option<i32>, oom_killed: bool) -> EventKind {
        EventKind::Exited {
            code,
            signal,
            oom_killed,
        }
    }

    /// `(on "web" 'crash ...)` runs for a failed exit only, told by the event's fields.
    #[test]
    fn crash_callbacks_follow_the_typed_exit() {
        assert_eq!(callback_kinds(&exited(0, None, false)), ["exit", "exited"]);
        for crash in [
            exited(1, None, false),
            exited(137, Some(9), false),
            exited(0, None, true),
        ] {
            assert_eq!(
                callback_kinds(&crash),
                ["exit", "crash", "exited"],
                "{crash:?}"
            );
        }
        assert_eq!(
            callback_kinds(&EventKind::Started {
                pid: 3,
                generation: 1
            }),
            ["start", "started"]
        );
        assert_eq!(
            callback_kinds(&EventKind::Health {
                status: warren_model::health::HealthStatus::Unhealthy,
                error: Some("refused".into()),
                failures: 3
            }),
            ["health"]
        );
        assert_eq!(
            callback_kinds(&EventKind::Quota { used: 2, limit: 1 }),
            ["quota"]
        );
    }
}
