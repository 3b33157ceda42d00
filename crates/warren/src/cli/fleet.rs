//! Fan-out: one command sent to several daemons at once (`--context a,b` or `--all`, every
//! context in the CLI's contexts file).
//!
//! The calls run concurrently on the CLI's async runtime, one per host; each host's outcome is
//! kept apart, so one host's failure is reported on its own row and the others still print.
//! Tables gain a leading HOST column; reports of actions (apply, the lifecycle verbs, snapshot)
//! print each line prefixed with its host; JSON output is one object per host,
//! `{host, ok, result}` or `{host, ok: false, error}`. `events -f` interleaves the hosts' live
//! streams, each line prefixed with its host (with `-o json` each event object gains `host`).
//! The exit status is 1 when any host failed.
//!
//! Only the commands that make sense on many hosts at once fan out: `list`, `get`, `events`,
//! `apply`, `plan`, `info`, `snapshot` and `start`/`stop`/`restart`/`delete`; the others are a
//! usage error with a fan-out selection.

use super::events;
use super::info::{self, InfoFormat};
use super::workloads;
use super::{Cmd, Exit, GetFormat, ListFormat};
use crate::client::routes::{self, Route};
use crate::client::{ApiFailure, Client, Remote};
use crate::contexts::{self, CliConfig};
use crate::wire::{Event, Info, Status};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// One host of a fan-out: the context's name and a client for it.
pub(super) struct Target {
    pub name: String,
    pub client: Client,
}

/// One host's outcome: its value, or the error's text.
type Outcome<T> = (String, Result<T, String>);

/// The context names a `--context`/`--all` selection names when it fans out (a comma list or
/// every context), else `None` (one context or the local socket).
pub(super) fn selection(
    cfg: &CliConfig,
    context: Option<&str>,
    all: bool,
) -> Result<Option<Vec<String>>> {
    if all {
        if context.is_some() {
            bail!("--all and --context name the hosts twice; use one");
        }
        if cfg.context.is_empty() {
            bail!(
                "--all: no contexts in {}; `warren adopt HOST` makes one",
                contexts::config_path()?.display()
            );
        }
        return Ok(Some(cfg.context.keys().cloned().collect()));
    }
    let Some(spec) = context.filter(|c| c.contains(',')) else {
        return Ok(None);
    };
    let mut names: Vec<String> = Vec::new();
    for n in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|m| m == n) {
            names.push(n.to_string());
        }
    }
    if names.is_empty() {
        bail!("--context {spec:?} names no context");
    }
    Ok(Some(names))
}

/// A client for each named context (every name must exist).
pub(super) fn targets(cfg: &CliConfig, names: &[String]) -> Result<Vec<Target>> {
    names
        .iter()
        .map(|n| {
            let ctx = contexts::select(cfg, Some(n), None)?.expect("a named context");
            let (key, _) = warren_auth::token::OperatorKey::load_or_create(&ctx.key)?;
            Ok(Target {
                name: n.clone(),
                client: Client {
                    socket: Default::default(),
                    remote: Some(Remote {
                        addr: ctx.host,
                        host_id: ctx.host_id,
                        fingerprint: ctx.fingerprint,
                        key: Arc::new(key),
                    }),
                },
            })
        })
        .collect()
}

/// The text of an error as `error: ...` would print it (a spec's diagnostics joined).
fn error_text(e: &anyhow::Error) -> String {
    match e.downcast_ref::<ApiFailure>() {
        Some(f) if !f.body.diagnostics.is_empty() => f
            .body
            .diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; "),
        _ => format!("{e:#}"),
    }
}

/// Runs `f` against every target concurrently; the outcomes in the targets' order.
async fn fan<'a, T, F, Fut>(targets: &'a [Target], f: F) -> Vec<Outcome<T>>
where
    F: Fn(&'a Client) -> Fut,
    Fut: Future<Output = Result<T>> + 'a,
{
    let futs = targets.iter().map(|t| {
        let fut = f(&t.client);
        async move { (t.name.clone(), fut.await.map_err(|e| error_text(&e))) }
    });
    futures_util::future::join_all(futs).await
}

/// Failure when any host failed.
fn exit_of<T>(outcomes: &[Outcome<T>]) -> Exit {
    if outcomes.iter().any(|(_, r)| r.is_err()) {
        Exit::Failure
    } else {
        Exit::Success
    }
}

/// A table with a leading HOST column: each host's rows, and a failed host's row as its name
/// and `error: ...` (error rows do not widen the other columns).
pub(super) fn host_table(header: &[&str], outcomes: &[Outcome<Vec<Vec<String>>>]) -> String {
    let mut widths: Vec<usize> = std::iter::once("HOST")
        .chain(header.iter().copied())
        .map(str::len)
        .collect();
    for (host, r) in outcomes {
        widths[0] = widths[0].max(host.chars().count());
        for row in r.iter().flatten() {
            for (i, c) in row.iter().enumerate() {
                widths[i + 1] = widths[i + 1].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    let head: Vec<&str> = std::iter::once("HOST")
        .chain(header.iter().copied())
        .collect();
    line(&head);
    for (host, r) in outcomes {
        match r {
            Ok(rows) => {
                for row in rows {
                    let cells: Vec<&str> = std::iter::once(host.as_str())
                        .chain(row.iter().map(String::as_str))
                        .collect();
                    line(&cells);
                }
            }
            Err(e) => line(&[host.as_str(), &format!("error: {e}")]),
        }
    }
    out
}

/// Report lines prefixed with their host (aligned); a failed host's `error: ...` last among
/// its lines.
pub(super) fn host_lines(outcomes: &[(String, Vec<String>, Option<String>)]) -> String {
    let width = outcomes
        .iter()
        .map(|(h, _, _)| h.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (host, lines, err) in outcomes {
        let pad = " ".repeat(width - host.chars().count() + 2);
        for l in lines {
            out.push_str(&format!("{host}{pad}{l}\n"));
        }
        if let Some(e) = err {
            out.push_str(&format!("{host}{pad}error: {e}\n"));
        }
    }
    out
}

/// One object per host: `{host, ok: true, result}` or `{host, ok: false, error}`.
pub(super) fn host_json(outcomes: &[Outcome<Value>]) -> Value {
    Value::Array(
        outcomes
            .iter()
            .map(|(host, r)| match r {
                Ok(v) => json!({"host": host, "ok": true, "result": v}),
                Err(e) => json!({"host": host, "ok": false, "error": e}),
            })
            .collect(),
    )
}

fn to_json<T: serde::Serialize>(outcomes: Vec<Outcome<T>>) -> Vec<Outcome<Value>> {
    outcomes
        .into_iter()
        .map(|(h, r)| {
            let r = r.and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()));
            (h, r)
        })
        .collect()
}

/// The hosts' events merged in time order, each line prefixed with its host; a failed host's
/// error on its own row.
pub(super) fn merged_events(outcomes: &[Outcome<Vec<Event>>]) -> String {
    let mut all: Vec<(&str, &Event)> = outcomes
        .iter()
        .filter_map(|(h, r)| r.as_ref().ok().map(|evs| (h.as_str(), evs)))
        .flat_map(|(h, evs)| evs.iter().map(move |e| (h, e)))
        .collect();
    all.sort_by_key(|(_, e)| e.ts_ms);
    let mut lines: Vec<(String, Vec<String>, Option<String>)> = all
        .into_iter()
        .map(|(h, e)| (h.to_string(), vec![events::line(e)], None))
        .collect();
    for (h, r) in outcomes {
        if let Err(e) = r {
            lines.push((h.clone(), vec![], Some(e.clone())));
        }
    }
    host_lines(&lines)
}

/// Lines reported by an action on each host, with the error that stopped it there.
async fn report<'a, F, Fut>(targets: &'a [Target], f: F) -> Exit
where
    F: Fn(&'a Client, Arc<Mutex<Vec<String>>>) -> Fut,
    Fut: Future<Output = Result<()>> + 'a,
{
    let futs = targets.iter().map(|t| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let fut = f(&t.client, lines.clone());
        async move {
            let r = fut.await.map_err(|e| error_text(&e));
            let lines = std::mem::take(&mut *lines.lock().expect("lines"));
            (t.name.clone(), lines, r.err())
        }
    });
    let outcomes = futures_util::future::join_all(futs).await;
    print!("{}", host_lines(&outcomes));
    if outcomes.iter().any(|(_, _, e)| e.is_some()) {
        Exit::Failure
    } else {
        Exit::Success
    }
}

async fn lifecycle(targets: &[Target], names: Vec<String>, verb: &str, route: Route) -> Exit {
    let names = &names;
    report(targets, |c, lines| async move {
        workloads::each_with(c, names, verb, route, &mut |l| {
            lines.lock().expect("lines").push(l)
        })
        .await
    })
    .await
}

/// Runs `cmd` on every target; a command that does not fan out is a usage error.
pub(super) async fn run(targets: Vec<Target>, cmd: Cmd) -> Result<Exit> {
    let t = &targets[..];
    let exit = match cmd {
        Cmd::List { output } => {
            let call = routes::WORKLOADS.call();
            let outs = fan(t, |c| c.get::<Vec<Status>>(&call)).await;
            let exit = exit_of(&outs);
            if output == ListFormat::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&host_json(&to_json(outs)))?
                );
            } else {
                let now = warren_store::now_ms();
                let rows: Vec<Outcome<Vec<Vec<String>>>> = outs
                    .into_iter()
                    .map(|(h, r)| (h, r.map(|items| workloads::list_rows(&items, now))))
                    .collect();
                print!("{}", host_table(&workloads::LIST_HEADER, &rows));
            }
            exit
        }
        Cmd::Get { name, output } => {
            let call = routes::WORKLOAD.at(&[&name]);
            let outs = fan(t, |c| c.get::<Value>(&call)).await;
            let v = host_json(&outs);
            match output {
                GetFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                GetFormat::Yaml => print!("{}", crate::output::yaml(&v)),
            }
            exit_of(&outs)
        }
        Cmd::Info { output } => {
            let call = routes::INFO.call();
            let outs = fan(t, |c| c.get::<Info>(&call)).await;
            let exit = exit_of(&outs);
            match output {
                InfoFormat::Table => {
                    let lines: Vec<_> = outs
                        .into_iter()
                        .map(|(h, r)| match r {
                            Ok(i) => (
                                h,
                                info::render(&i).lines().map(String::from).collect(),
                                None,
                            ),
                            Err(e) => (h, vec![], Some(e)),
                        })
                        .collect();
                    print!("{}", host_lines(&lines));
                }
                InfoFormat::Json => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&host_json(&to_json(outs)))?
                    )
                }
                InfoFormat::Yaml => print!("{}", crate::output::yaml(&host_json(&to_json(outs)))),
            }
            exit
        }
        Cmd::Events {
            workload,
            limit,
            output,
            follow,
        } => events_fan(t, workload, limit, output, follow).await?,
        Cmd::Apply {
            file,
            dry_run,
            prune,
            watch: false,
        } => apply_fan(t, &file, dry_run, prune, true).await,
        Cmd::Plan { file, prune } => apply_fan(t, &file, true, prune, false).await,
        Cmd::Start { names } => lifecycle(t, names, "start", routes::WORKLOAD_START).await,
        Cmd::Stop { names } => lifecycle(t, names, "stop", routes::WORKLOAD_STOP).await,
        Cmd::Restart { names } => lifecycle(t, names, "restart", routes::WORKLOAD_RESTART).await,
        Cmd::Delete { names, purge } => {
            let names = &names;
            report(t, |c, lines| async move {
                workloads::delete_with(c, names, purge, &mut |l| {
                    lines.lock().expect("lines").push(l)
                })
                .await
            })
            .await
        }
        Cmd::Snapshot {
            cmd: None,
            name: Some(name),
            label,
            volume,
        } => {
            let (name, label) = (&name, &label);
            report(t, |c, lines| async move {
                let l = super::datasets::snapshot_line(c, name, label.clone(), volume).await?;
                lines.lock().expect("lines").push(l);
                Ok(())
            })
            .await
        }
        _ => {
            eprintln!(
                "error: --all and --context a,b work with list, get, events, apply, plan, info, \
                 snapshot NAME, start, stop, restart and delete"
            );
            Exit::Usage
        }
    };
    Ok(exit)
}

async fn apply_fan(
    t: &[Target],
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
    apply: bool,
) -> Exit {
    report(t, |c, lines| async move {
        let (text, warnings) = workloads::apply_text(c, file, dry_run, prune, apply).await?;
        let mut l = lines.lock().expect("lines");
        l.extend(text.lines().map(String::from));
        l.extend(warnings.iter().map(|w| format!("warning: {w}")));
        Ok(())
    })
    .await
}

async fn events_fan(
    t: &[Target],
    workload: Option<String>,
    limit: usize,
    format: ListFormat,
    follow: bool,
) -> Result<Exit> {
    let call = routes::EVENTS
        .call()
        .query("limit", limit)
        .query_opt("workload", workload.as_ref());
    if !follow {
        let outs = fan(t, |c| c.get::<Vec<Event>>(&call)).await;
        if format == ListFormat::Json {
            println!(
                "{}",
                serde_json::to_string_pretty(&host_json(&to_json(outs.clone())))?
            );
        } else {
            print!("{}", merged_events(&outs));
        }
        return Ok(exit_of(&outs));
    }
    let width = t.iter().map(|t| t.name.chars().count()).max().unwrap_or(0);
    let print = move |host: &str, e: Result<&Event, &str>| -> Result<()> {
        let mut out = std::io::stdout().lock();
        let pad = " ".repeat(width - host.chars().count() + 2);
        match (format, e) {
            (ListFormat::Json, Ok(e)) => {
                let mut v = serde_json::to_value(e)?;
                v["host"] = json!(host);
                writeln!(out, "{}", serde_json::to_string(&v)?)?;
            }
            (ListFormat::Json, Err(msg)) => {
                writeln!(out, "{}", json!({"host": host, "ok": false, "error": msg}))?
            }
            (ListFormat::Table, Ok(e)) => writeln!(out, "{host}{pad}{}", events::line(e))?,
            (ListFormat::Table, Err(msg)) => writeln!(out, "{host}{pad}error: {msg}")?,
        }
        out.flush()?;
        Ok(())
    };
    let (call, workload) = (&call, &workload);
    let futs = t.iter().map(|target| async move {
        let host = target.name.as_str();
        let r: Result<()> = async {
            let evs: Vec<Event> = target.client.get(call).await?;
            for e in &evs {
                print(host, Ok(e))?;
            }
            let stream = routes::EVENTS_STREAM
                .call()
                .query("after", evs.last().map(|e| e.id).unwrap_or(0))
                .query_opt("workload", workload.as_ref());
            target
                .client
                .stream_lines(&stream, |e: Event| print(host, Ok(&e)))
                .await
        }
        .await;
        match r {
            Ok(()) => true,
            Err(e) => {
                let _ = print(host, Err(&error_text(&e)));
                false
            }
        }
    });
    let ok = futures_util::future::join_all(futs).await;
    Ok(if ok.iter().all(|ok| *ok) {
        Exit::Success
    } else {
        Exit::Failure
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> contexts::Context {
        contexts::Context {
            host: "h:7443".into(),
            host_id: "id".into(),
            fingerprint: "sha256:aa".into(),
            key: "/k".into(),
        }
    }

    #[test]
    fn selections() {
        let mut cfg = CliConfig::default();
        cfg.context.insert("b".into(), ctx());
        cfg.context.insert("a".into(), ctx());
        assert_eq!(selection(&cfg, None, false).unwrap(), None);
        assert_eq!(selection(&cfg, Some("a"), false).unwrap(), None);
        assert_eq!(
            selection(&cfg, Some("b, a,b"), false).unwrap(),
            Some(vec!["b".to_string(), "a".to_string()])
        );
        assert_eq!(
            selection(&cfg, None, true).unwrap(),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert!(selection(&cfg, Some("a"), true).is_err());
        assert!(selection(&cfg, Some(","), false).is_err());
        assert!(selection(&CliConfig::default(), None, true).is_err());
        assert!(targets(&cfg, &["a".into(), "nope".into()]).is_err());
    }

    #[test]
    fn tables_gain_a_host_column_and_error_rows() {
        let outs = vec![
            (
                "lab".to_string(),
                Ok(vec![
                    vec!["web".to_string(), "running".to_string()],
                    vec!["database".to_string(), "stopped".to_string()],
                ]),
            ),
            (
                "attic".to_string(),
                Err("connecting to a:7443: refused".to_string()),
            ),
            (
                "x".to_string(),
                Ok(vec![vec!["db".to_string(), "exited".to_string()]]),
            ),
        ];
        assert_eq!(
            host_table(&["NAME", "STATE"], &outs),
            "\
HOST   NAME      STATE
lab    web       running
lab    database  stopped
attic  error: connecting to a:7443: refused
x      db        exited
"
        );
    }

    #[test]
    fn report_lines_and_json() {
        let text = host_lines(&[
            ("lab".into(), vec!["web: running (pid 3)".into()], None),
            (
                "attic".into(),
                vec!["a: stopped".into()],
                Some("stop b: no workload b".into()),
            ),
        ]);
        assert_eq!(
            text,
            "lab    web: running (pid 3)\nattic  a: stopped\nattic  error: stop b: no workload b\n"
        );
        let v = host_json(&[
            ("lab".into(), Ok(json!([1]))),
            ("attic".into(), Err("down".into())),
        ]);
        assert_eq!(
            v,
            json!([
                {"host": "lab", "ok": true, "result": [1]},
                {"host": "attic", "ok": false, "error": "down"}
            ])
        );
    }

    #[test]
    fn events_merge_in_time_order() {
        let ev = |id, ts_ms, w: &str| Event {
            id,
            ts_ms,
            workload: Some(w.into()),
            kind: "started".into(),
            message: format!("{w} started"),
            event: warren_model::event::EventKind::Started {
                pid: 1,
                generation: 1,
            },
        };
        let outs = vec![
            (
                "a".to_string(),
                Ok(vec![ev(1, 1_000, "one"), ev(2, 3_000, "three")]),
            ),
            ("bb".to_string(), Ok(vec![ev(1, 2_000, "two")])),
            ("c".to_string(), Err("down".to_string())),
        ];
        let text = merged_events(&outs);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("a   ") && lines[0].ends_with("one started"));
        assert!(lines[1].starts_with("bb  ") && lines[1].ends_with("two started"));
        assert!(lines[2].starts_with("a   ") && lines[2].ends_with("three started"));
        assert_eq!(lines[3], "c   error: down");
    }
}
