//! Workload commands: apply (once or watching the file), plan, list, get, start, stop,
//! restart, delete, logs, the live spec's export, and `exec` and `run` with the terminal
//! attached to the daemon's framed stream.

use super::Exit;
use super::{GetFormat, ListFormat};
use crate::client::routes::{self, Call, Route};
use crate::client::{ApiFailure, Client};
use crate::output;
use crate::wire::*;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Args)]
pub(super) struct RunCmd {
    /// Remove the container when it exits (the only mode: long-lived workloads belong in a
    /// spec file).
    #[arg(long)]
    pub(super) rm: bool,
    #[arg(short, long)]
    pub(super) tty: bool,
    #[arg(short, long = "env")]
    pub(super) env: Vec<String>,
    pub(super) world: String,
    #[arg(last = true)]
    pub(super) command: Vec<String>,
}

#[derive(Subcommand)]
pub(super) enum SpecCmd {
    /// Write the live desired state as a warren.toml that applies again as a no-op, or as
    /// Nomad job files (`-o DIR`) or Kubernetes manifests (`-o FILE`) for moving elsewhere.
    Export {
        /// A file, or a directory for `--format nomad`; `-` or none: stdout.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: super::export::SpecFormat,
        /// Export this warren.toml instead of the daemon's live desired state.
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
    },
}

pub(super) async fn apply(
    client: &Client,
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
    apply: bool,
) -> Result<Exit> {
    let (out, warnings) = apply_text(client, file, dry_run, prune, apply).await?;
    print!("{out}");
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    Ok(Exit::Success)
}

/// Applies (or plans) `file` and returns the report's text and the daemon's warnings.
pub(super) async fn apply_text(
    client: &Client,
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
    apply: bool,
) -> Result<(String, Vec<String>)> {
    let (name, text) = super::compose::spec_text(file)?;
    let req = ApplyRequest {
        file: name,
        text,
        prune,
        dry_run,
    };
    let route = if apply { routes::APPLY } else { routes::PLAN };
    let resp: ApplyResponse = client.post(&route.call(), &req).await?;
    let mut out = String::new();
    let mut orphans = Vec::new();
    for c in &resp.changes {
        if let Some(v) = c.workload.strip_prefix("volume/") {
            match c.change.as_str() {
                "create" => out.push_str(&format!("+ volume {v} (create)\n")),
                "update" => out.push_str(&format!("~ volume {v} (update)\n")),
                "remove" => out.push_str(&format!(
                    "- volume {v} (forget the declaration; data kept until `warren volume rm {v}`)\n"
                )),
                _ => {}
            }
            continue;
        }
        match c.change.as_str() {
            "create" => out.push_str(&format!("+ {} (create)\n", c.workload)),
            "update" => out.push_str(&format!(
                "~ {} (update: {})\n",
                c.workload,
                c.fields.join(", ")
            )),
            "remove" => out.push_str(&format!("- {} (delete; data kept)\n", c.workload)),
            "orphan" => orphans.push(c.workload.clone()),
            _ => {}
        }
    }
    if resp.steps.is_empty() && out.is_empty() && resp.refused.is_empty() {
        out.push_str("no changes\n");
    }
    for r in &resp.refused {
        out.push_str(&format!("  refused {}: {}\n", r.workload, r.reason));
    }
    for s in &resp.steps {
        out.push_str(&format!(
            "  {} {}: {}\n",
            s.action.verb(),
            s.workload,
            s.reason
        ));
    }
    for w in &resp.waiting {
        out.push_str(&format!("  then start {}: {}\n", w.workload, w.reason));
    }
    if !orphans.is_empty() {
        out.push_str(&format!(
            "not in {}: {} (kept; use --prune to delete)\n",
            req.file,
            orphans.join(", ")
        ));
    }
    if resp.applied {
        out.push_str(&format!("applied (generation {})\n", resp.generation));
    } else if apply {
        out.push_str("dry run: nothing changed\n");
    }
    Ok((out, resp.warnings))
}

/// `apply -f FILE --watch`: applies the file now and on every saved change (the file is the
/// whole desired state), reporting each outcome; an invalid save changes nothing.
pub(super) async fn apply_watch(client: &Client, file: &PathBuf) -> Result<Exit> {
    use http_body_util::BodyExt;
    let name = file.display().to_string();
    let mut seen: Option<Vec<u8>> = None;
    let mut valid = false;
    loop {
        match std::fs::read(file) {
            Ok(bytes) if seen.as_ref() != Some(&bytes) => {
                seen = Some(bytes);
                match apply(client, file, false, true, true).await {
                    Ok(_) => {
                        valid = true;
                        eprintln!("watching {name} (Ctrl-C stops)");
                    }
                    Err(e) => {
                        valid = false;
                        if let Some(f) = e.downcast_ref::<ApiFailure>() {
                            for d in &f.body.diagnostics {
                                eprintln!("error: {d}");
                            }
                            if f.body.diagnostics.is_empty() {
                                eprintln!("error: {}", f.body.error);
                            }
                        } else {
                            eprintln!("error: {e:#}");
                        }
                        eprintln!("nothing changed; watching {name} for the next save");
                    }
                }
            }
            // A compose file is converted, never written back.
            Ok(bytes) if valid && !super::compose::is_compose(file) => {
                // Live changes (CLI, API, REPL) are written back to the file, unless its last
                // save did not validate (an edit in progress is never overwritten).
                let text = String::from_utf8_lossy(&bytes).to_string();
                let export = client.get_stream(&routes::SPEC_EXPORT.call()).await?;
                let live_text =
                    String::from_utf8_lossy(&export.collect().await?.to_bytes()).to_string();
                let from_file = warren_model::parse_spec(&text, &name).map(|p| p.spec);
                let live = warren_model::parse_spec(&live_text, "export").map(|p| p.spec);
                if let (Ok(f), Ok(l)) = (&from_file, &live) {
                    if f != l {
                        let tmp = file.with_extension("warren-tmp");
                        std::fs::write(&tmp, &live_text)
                            .and_then(|_| std::fs::rename(&tmp, file))
                            .with_context(|| format!("writing live changes back to {name}"))?;
                        seen = Some(live_text.into_bytes());
                        eprintln!("wrote live changes back to {name}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("error: reading {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(super) async fn list(client: &Client, format: ListFormat) -> Result<Exit> {
    let items: Vec<Status> = client.get(&routes::WORKLOADS.call()).await?;
    if format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(Exit::Success);
    }
    print!(
        "{}",
        output::table(&LIST_HEADER, &list_rows(&items, warren_store::now_ms()))
    );
    Ok(Exit::Success)
}

/// The columns of `warren list`.
pub(super) const LIST_HEADER: [&str; 7] = [
    "NAME", "KIND", "STATE", "PID", "RESTARTS", "UPTIME", "SOURCE",
];

/// The rows of `warren list`, one a workload.
pub(super) fn list_rows(items: &[Status], now: u64) -> Vec<Vec<String>> {
    items
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.clone(),
                match &s.health {
                    Some(h) => format!("{} ({h})", s.state),
                    None => s.state.clone(),
                },
                s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                s.restarts.to_string(),
                match (s.pid, s.started_ms) {
                    (Some(_), Some(t)) => output::age(t, now),
                    _ => "-".into(),
                },
                s.source.clone(),
            ]
        })
        .collect()
}

pub(super) async fn get(client: &Client, name: &str, format: GetFormat) -> Result<Exit> {
    let v: serde_json::Value = client.get(&routes::WORKLOAD.at(&[name])).await?;
    match format {
        GetFormat::Json => println!("{}", serde_json::to_string_pretty(&v)?),
        GetFormat::Yaml => print!("{}", output::yaml(&v)),
    }
    Ok(Exit::Success)
}

pub(super) async fn each(
    client: &Client,
    names: Vec<String>,
    verb: &str,
    route: Route,
) -> Result<Exit> {
    each_with(client, &names, verb, route, &mut |l| println!("{l}")).await?;
    Ok(Exit::Success)
}

/// Runs `verb` on each workload in turn, handing each outcome's line to `out`; stops at the
/// first failure.
pub(super) async fn each_with(
    client: &Client,
    names: &[String],
    verb: &str,
    route: Route,
    out: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    if names.is_empty() {
        bail!("{verb}: name at least one workload");
    }
    for name in names {
        let s: Status = client
            .post(&route.at(&[name]), &())
            .await
            .with_context(|| format!("{verb} {name}"))?;
        out(match &s.waiting {
            Some(why) => format!("{}: {why}", s.name),
            None => format!(
                "{}: {}{}",
                s.name,
                s.state,
                s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
            ),
        });
    }
    Ok(())
}

pub(super) async fn delete(client: &Client, names: Vec<String>, purge: bool) -> Result<Exit> {
    delete_with(client, &names, purge, &mut |l| println!("{l}")).await?;
    Ok(Exit::Success)
}

/// Deletes each workload in turn, handing each outcome's line to `out`; stops at the first
/// failure.
pub(super) async fn delete_with(
    client: &Client,
    names: &[String],
    purge: bool,
    out: &mut (dyn FnMut(String) + Send),
) -> Result<()> {
    if names.is_empty() {
        bail!("delete: name at least one workload");
    }
    for name in names {
        let r: DeleteResponse = client
            .call(
                &routes::WORKLOAD_DELETE.at(&[name]).query("purge", purge),
                None::<&()>,
            )
            .await
            .with_context(|| format!("delete {name}"))?;
        out(match r.data_kept {
            Some(p) => format!(
                "{name}: deleted (data kept at {p}; `warren delete --purge {name}` removes it)"
            ),
            None if r.deleted => format!("{name}: deleted"),
            None => format!("{name}: the kept data of the deleted workload is deleted"),
        });
    }
    Ok(())
}

pub(super) async fn logs(
    client: &Client,
    name: &str,
    follow: bool,
    tail: Option<usize>,
    timestamps: bool,
) -> Result<Exit> {
    let call = routes::WORKLOAD_LOGS
        .at(&[name])
        .query("follow", follow)
        .query_opt("tail", tail);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    client
        .stream_lines(&call, |e: LogEntry| {
            let nl = if e.partial { "" } else { "\n" };
            let text = if timestamps {
                format!("{} {}{nl}", e.ts, e.text)
            } else {
                format!("{}{nl}", e.text)
            };
            if e.stream == "stderr" {
                let mut h = stderr.lock();
                h.write_all(text.as_bytes())?;
                h.flush()?;
            } else {
                let mut h = stdout.lock();
                h.write_all(text.as_bytes())?;
                h.flush()?;
            }
            Ok(())
        })
        .await?;
    Ok(Exit::Success)
}

fn term_size() -> (u16, u16) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize for a terminal fd; on failure ws stays zeroed.
    unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (ws.ws_row, ws.ws_col)
}

/// Restores the terminal mode on drop.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter(tty: bool) -> RawMode {
        use nix::sys::termios;
        if !tty || !nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
            return RawMode(None);
        }
        let Ok(orig) = termios::tcgetattr(std::io::stdin()) else {
            return RawMode(None);
        };
        let mut raw = orig.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, &raw);
        RawMode(Some(orig))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(orig) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                orig,
            );
        }
    }
}

/// Connects stdin/stdout/stderr to an exec or run stream; returns the remote exit status.
async fn attach(
    client: &Client,
    call: &Call,
    args: &impl serde::Serialize,
    tty: bool,
) -> Result<Exit> {
    let io = client.upgrade(call, args).await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let _raw = RawMode::enter(tty);
    // stdin → frames, from a thread: reading stdin is blocking.
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Option<Vec<u8>>>(16);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16384];
        let mut stdin = std::io::stdin().lock();
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = in_tx.blocking_send(None);
                    break;
                }
                Ok(n) => {
                    if in_tx.blocking_send(Some(buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                data = in_rx.recv() => match data {
                    Some(Some(d)) => { if wr.write_all(&encode_frame(FrameKind::Stdin, &d)).await.is_err() { break; } }
                    _ => { let _ = wr.write_all(&encode_frame(FrameKind::StdinEof, &[])).await; break; }
                },
                _ = winch.recv() => {
                    let (r, c) = term_size();
                    let mut p = r.to_be_bytes().to_vec();
                    p.extend_from_slice(&c.to_be_bytes());
                    if wr.write_all(&encode_frame(FrameKind::Resize, &p)).await.is_err() { break; }
                }
            }
        }
        // Keep the write half open so the daemon does not take EOF as a hang-up.
        std::future::pending::<()>().await;
    });
    let status = copy_output(&mut rd, &mut tokio::io::stdout(), &mut tokio::io::stderr()).await;
    writer.abort();
    let _ = rd.read(&mut [0u8; 0]).await;
    status
}

/// Copies an exec or run stream's output frames to `out` and `err` until the command's exit
/// status, which it returns; a stream that ends, or reports an error, before the status is a
/// failure (an error, like every other failure of the CLI).
async fn copy_output(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    err: &mut (impl tokio::io::AsyncWrite + Unpin),
) -> Result<Exit> {
    loop {
        match read_frame(rd).await? {
            None => {
                bail!("the stream ended before the command's exit status (see `warren events`)")
            }
            Some((FrameKind::Stdout, d)) => {
                out.write_all(&d).await?;
                out.flush().await?;
            }
            Some((FrameKind::Stderr, d)) => {
                err.write_all(&d).await?;
                err.flush().await?;
            }
            Some((FrameKind::Exit, d)) if d.len() == 4 => {
                return Ok(Exit::Remote(i32::from_be_bytes([d[0], d[1], d[2], d[3]])));
            }
            Some((FrameKind::Error, d)) => {
                bail!("{}", String::from_utf8_lossy(&d));
            }
            Some(_) => {}
        }
    }
}

/// `warren spec export`: the live desired state as a warren.toml, to a file or stdout.
pub(super) async fn spec_export(client: &Client, output: Option<PathBuf>) -> Result<Exit> {
    use http_body_util::BodyExt;
    let body = client.get_stream(&routes::SPEC_EXPORT.call()).await?;
    let text = body.collect().await?.to_bytes();
    match output {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::write(&p, &text).with_context(|| format!("writing {}", p.display()))?;
            eprintln!("wrote {}", p.display());
        }
        _ => std::io::stdout().write_all(&text)?,
    }
    Ok(Exit::Success)
}

/// `warren exec NAME -- CMD...`: a command inside a running workload; its status is returned.
pub(super) async fn exec(
    client: &Client,
    name: String,
    tty: bool,
    env: Vec<String>,
    workdir: Option<String>,
    command: Vec<String>,
) -> Result<Exit> {
    let (rows, cols) = term_size();
    let args = ExecArgs {
        argv: command,
        tty,
        env,
        workdir,
        rows,
        cols,
    };
    attach(client, &routes::WORKLOAD_EXEC.at(&[&name]), &args, tty).await
}

/// The console's detach key: Ctrl-] (0x1d), as telnet and virsh have it.
pub const DETACH_KEY: u8 = 0x1d;

/// The part of `input` before the detach key, and whether the key is in it.
fn before_detach(input: &[u8]) -> (&[u8], bool) {
    match input.iter().position(|&b| b == DETACH_KEY) {
        Some(i) => (&input[..i], true),
        None => (input, false),
    }
}

/// What the console's stdin reader hands on.
enum ConsoleInput {
    Data(Vec<u8>),
    Detach,
    Eof,
}

/// `warren console NAME`: the terminal (raw) on a running VM's serial console until Ctrl-]
/// or the VM's end; both end with status 0.
pub(super) async fn console(client: &Client, name: &str) -> Result<Exit> {
    let io = client
        .upgrade(
            &routes::WORKLOAD_CONSOLE.at(&[name]),
            &serde_json::json!({}),
        )
        .await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let interactive = nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let _raw = RawMode::enter(true);
    if interactive {
        eprint!("attached to the console of {name}; detach with Ctrl-]\r\n");
    }
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<ConsoleInput>(16);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        let mut stdin = std::io::stdin().lock();
        loop {
            let n = match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => {
                    let _ = in_tx.blocking_send(ConsoleInput::Eof);
                    return;
                }
                Ok(n) => n,
            };
            let (data, detach) = before_detach(&buf[..n]);
            if !data.is_empty()
                && in_tx
                    .blocking_send(ConsoleInput::Data(data.to_vec()))
                    .is_err()
            {
                return;
            }
            if detach {
                let _ = in_tx.blocking_send(ConsoleInput::Detach);
                return;
            }
        }
    });
    // Ok(true) on detach; Ok(false) when the connection broke. At the end of stdin the
    // connection stays open: output is shown until the VM ends or the process is ended.
    let mut writer = tokio::spawn(async move {
        while let Some(i) = in_rx.recv().await {
            match i {
                ConsoleInput::Data(d) => {
                    if wr
                        .write_all(&encode_frame(FrameKind::Stdin, &d))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                }
                ConsoleInput::Detach => return true,
                ConsoleInput::Eof => break,
            }
        }
        std::future::pending::<()>().await;
        false
    });
    let mut out = tokio::io::stdout();
    let mut writing = true;
    loop {
        tokio::select! {
            f = read_frame(&mut rd) => match f? {
                None | Some((FrameKind::Exit, _)) => {
                    eprint!("\r\nthe console of {name} closed: the VM ended\r\n");
                    break;
                }
                Some((FrameKind::Stdout, d)) => {
                    out.write_all(&d).await?;
                    out.flush().await?;
                }
                Some((FrameKind::Error, d)) => bail!("{}", String::from_utf8_lossy(&d)),
                Some(_) => {}
            },
            detached = &mut writer, if writing => {
                writing = false;
                if matches!(detached, Ok(true)) {
                    eprint!("\r\ndetached from the console of {name}\r\n");
                    break;
                }
            }
        }
    }
    writer.abort();
    Ok(Exit::Success)
}

/// `warren run --rm WORLD -- CMD...`: a one-off container; its command's status is returned.
pub(super) async fn run(client: &Client, r: RunCmd) -> Result<Exit> {
    if !r.rm {
        bail!("`warren run` creates one-off containers and needs --rm; declare long-running workloads in a spec file");
    }
    let mut env = std::collections::BTreeMap::new();
    for kv in r.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let (rows, cols) = term_size();
    let args = RunArgs {
        world: r.world,
        argv: r.command,
        tty: r.tty,
        env,
        rows,
        cols,
    };
    attach(client, &routes::RUN.call(), &args, r.tty).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_after_the_detach_key_is_not_sent() {
        assert_eq!(before_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(before_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(before_detach(b"\x1d"), (&b""[..], true));
        assert_eq!(before_detach(b""), (&b""[..], false));
    }

    async fn copied(frames: &[(FrameKind, &[u8])]) -> (Result<Exit>, Vec<u8>, Vec<u8>) {
        let mut input = Vec::new();
        for (kind, payload) in frames {
            input.extend_from_slice(&encode_frame(*kind, payload));
        }
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let r = copy_output(&mut input.as_slice(), &mut out, &mut err).await;
        (r, out, err)
    }

    #[tokio::test]
    async fn the_remote_status_is_returned_after_the_output() {
        let (r, out, err) = copied(&[
            (FrameKind::Stdout, b"hello "),
            (FrameKind::Stderr, b"oops"),
            (FrameKind::Stdout, b"world"),
            (FrameKind::Exit, &7i32.to_be_bytes()),
            (FrameKind::Stdout, b"after the exit"),
        ])
        .await;
        assert_eq!(r.unwrap(), Exit::Remote(7));
        assert_eq!(out, b"hello world");
        assert_eq!(err, b"oops");
    }

    #[tokio::test]
    async fn a_stream_without_a_status_is_a_failure_like_an_error_frame() {
        let (r, out, _) = copied(&[(FrameKind::Stdout, b"partial")]).await;
        let e = r.unwrap_err().to_string();
        assert!(e.contains("before the command's exit status"), "{e}");
        assert_eq!(out, b"partial");
        let (r, _, _) = copied(&[(FrameKind::Error, b"no such workload")]).await;
        assert_eq!(r.unwrap_err().to_string(), "no such workload");
    }
}
