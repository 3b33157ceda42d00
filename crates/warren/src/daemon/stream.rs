//! Streaming endpoints: `logs` (NDJSON, optionally followed), and `exec` / `run --rm` over an
//! upgraded connection carrying frames (see [`crate::wire`]). A terminal session gets a real
//! pty whose master side this module pumps; otherwise stdin, stdout and stderr are pipes.
//! `console` splices a VM's serial console (the socket its shim serves) with an upgraded
//! connection: stdin frames to the guest, its output as stdout frames.

use super::engine::Engine;
use super::error::{ApiError, ErrorKind, WorkloadError, WorldError};
use crate::wire::*;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Deserialize)]
pub struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

fn entry_json(l: &warren_runtime::logs::LogLine) -> bytes::Bytes {
    crate::ndjson::line(LogEntry {
        ts: l.ts.clone(),
        stream: l.stream.as_str().to_string(),
        text: l.text.clone(),
        partial: l.partial,
    })
}

/// `GET /v1/workloads/{name}/logs?tail=N&follow=true`: NDJSON [`LogEntry`] lines.
pub async fn logs(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    if !e.desired_all()?.contains_key(&name) {
        return Err(ApiError::not_found(&name));
    }
    let dir = e.log_dir(&name);
    std::fs::create_dir_all(&dir).map_err(|err| anyhow::anyhow!("{}: {err}", dir.display()))?;
    let (tx, rx) = mpsc::channel::<bytes::Bytes>(256);
    let follow = q.follow;
    let tail = q.tail;
    std::thread::spawn(move || {
        if !follow {
            if let Ok(lines) = warren_runtime::logs::read_tail(&dir, tail) {
                for l in &lines {
                    if tx.blocking_send(entry_json(l)).is_err() {
                        return;
                    }
                }
            }
            return;
        }
        let mut f = match warren_runtime::logs::LogFollower::open(&dir, tail) {
            Ok(f) => f,
            Err(err) => {
                tracing::warn!("cannot follow logs in {}: {err}", dir.display());
                return;
            }
        };
        loop {
            match f.wait_next(Duration::from_secs(1)) {
                Ok(lines) => {
                    for l in &lines {
                        if tx.blocking_send(entry_json(l)).is_err() {
                            return;
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!("log follower: {err}");
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| (Ok::<_, std::io::Error>(v), rx))
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .expect("response builds"))
}

fn parse_args<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let raw = req.headers().get(ARGS_HEADER).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("missing {ARGS_HEADER} header"),
        )
    })?;
    serde_json::from_slice(raw.as_bytes())
        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("{ARGS_HEADER}: {e}")))
}

fn switching() -> Response {
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    r.headers_mut()
        .insert(header::UPGRADE, HeaderValue::from_static(STREAM_PROTOCOL));
    r
}

fn take_upgrade(req: &mut Request) -> Result<hyper::upgrade::OnUpgrade, ApiError> {
    req.extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| {
            ApiError::new(
                ErrorKind::BadRequest,
                "this endpoint needs an upgraded connection",
            )
        })
}

/// `GET /v1/workloads/{name}/exec` (upgrade): runs a command in the running workload.
pub async fn exec(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let args: ExecArgs = parse_args(&req)?;
    if args.argv.is_empty() {
        return Err(ApiError::new(ErrorKind::BadRequest, "exec needs a command"));
    }
    if !e.desired_all()?.contains_key(&name) {
        return Err(ApiError::not_found(&name));
    }
    if e.observed_row(&name).and_then(|r| r.pid).is_none() {
        return Err(WorkloadError::Conflict(format!("workload {name:?} is not running")).into());
    }
    let cmd = e
        .runtime
        .exec(
            &e.container_id(&name),
            &warren_runtime::ExecRequest {
                argv: args.argv.clone(),
                tty: args.tty,
                env: args.env.clone(),
                cwd: args.workdir.clone(),
            },
        )
        .map_err(|err| anyhow::anyhow!(err))?;
    let up = take_upgrade(&mut req)?;
    tokio::spawn(async move {
        match up.await {
            Ok(io) => {
                if let Ok(proc) = Proc::spawn(cmd, args.tty, args.rows, args.cols) {
                    let _ = pump(TokioIo::new(io), proc).await;
                }
            }
            Err(err) => tracing::warn!("exec upgrade failed: {err}"),
        }
    });
    Ok(switching())
}

/// `GET /v1/workloads/{name}/console` (upgrade): a running VM's serial console, both ways,
/// until the client leaves or the VM ends (an exit frame with status 0).
pub async fn console(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let desired = e.desired_all()?;
    let d = desired
        .get(&name)
        .ok_or_else(|| ApiError::not_found(&name))?;
    if d.spec.kind != warren_model::Kind::Vm {
        return Err(WorkloadError::Refused(format!(
            "workload {name:?} is a {}: only a VM has a serial console (`warren exec -t {name} -- sh` opens a shell)",
            d.spec.kind.as_str()
        ))
        .into());
    }
    if !d.spec.vm.is_full_vm() && !d.spec.vm.console {
        return Err(WorkloadError::Refused(format!(
            "VM {name:?} has no attachable serial console: `console = true` in its [workload.{name}.vm] table enables it"
        ))
        .into());
    }
    if e.observed_row(&name).and_then(|r| r.pid).is_none() {
        return Err(WorkloadError::Conflict(format!("workload {name:?} is not running")).into());
    }
    let unavailable = |why: String| -> ApiError {
        WorkloadError::Conflict(format!("the console of {name:?} is not available: {why}")).into()
    };
    let socket = warren_vm::runtime::VmRuntime::console_socket(&e.run_dir(&name))
        .ok_or_else(|| unavailable("its run has no console socket; restart it".into()))?;
    let console = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(|err| unavailable(format!("{}: {err}", socket.display())))?;
    let up = take_upgrade(&mut req)?;
    tokio::spawn(async move {
        match up.await {
            Ok(io) => splice_console(TokioIo::new(io), console).await,
            Err(err) => tracing::warn!("console upgrade failed: {err}"),
        }
    });
    Ok(switching())
}

/// Stdin frames to the console, the console's output as stdout frames; an exit frame (0)
/// when the console closes (the VM ended).
async fn splice_console(io: Io, console: tokio::net::UnixStream) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (mut from_vm, mut to_vm) = console.into_split();
    let mut input = tokio::spawn(async move {
        while let Ok(Some((kind, data))) = read_frame(&mut rd).await {
            if kind == FrameKind::Stdin && to_vm.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 16384];
    loop {
        tokio::select! {
            n = from_vm.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = wr.write_all(&encode_frame(FrameKind::Exit, &0i32.to_be_bytes())).await;
                    break;
                }
                Ok(n) => {
                    if wr.write_all(&encode_frame(FrameKind::Stdout, &buf[..n])).await.is_err() {
                        break;
                    }
                }
            },
            // The client left.
            _ = &mut input => break,
        }
    }
    input.abort();
    let _ = wr.shutdown().await;
}

static RUN_SEQ: AtomicU64 = AtomicU64::new(0);

/// `GET /v1/run` (upgrade): an ephemeral container from a world, removed when it exits.
///
/// Everything a run needs before its process exists (the overlay root filesystem, the bundle,
/// the spawn) happens in one blocking task, and the process is started before the connection
/// upgrade completes: its output waits in the pipes until the stream is there to carry it.
pub async fn run(State(e): State<Arc<Engine>>, mut req: Request) -> Result<Response, ApiError> {
    let args: RunArgs = parse_args(&req)?;
    let meta = warren_storage::worlds::world_meta(&*e.storage, &args.world)
        .map_err(|err| WorldError::NotFound(err.to_string()))?;
    let up = take_upgrade(&mut req)?;
    let name = format!(
        "run-{}-{}",
        std::process::id(),
        RUN_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let cleanup = {
        let e = e.clone();
        let name = name.clone();
        // `runc run` removes its container when it returns; only a run that did not finish
        // normally needs the (costly) forced delete.
        move |finished: bool| {
            if !finished {
                let _ = e.runtime.delete(&e.container_id(&name));
            }
            if let Err(err) = warren_storage::ephemeral::remove(&*e.storage, &name) {
                tracing::warn!("removing ephemeral rootfs of {name}: {err}");
            }
            let _ = std::fs::remove_dir_all(e.run_dir(&name));
        }
    };
    let (tty, rows, cols) = (args.tty, args.rows, args.cols);
    let started = {
        let e = e.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Proc> {
            let rootfs = warren_storage::ephemeral::create(&*e.storage, &name, &args.world)?;
            let argv = if args.argv.is_empty() {
                meta.default_command.clone()
            } else {
                args.argv
            };
            let spec = warren_runtime::WorkloadRun {
                binds: super::engine::world_binds(&meta),
                env: args.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                terminal: tty,
                ..super::oneoff::spec(&e, &name, rootfs, argv)
            };
            let cmd = e.runtime.run_foreground(&spec, &e.run_dir(&name))?;
            Proc::spawn(cmd, tty, rows, cols)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|r| r)
    };
    let proc = match started {
        Ok(p) => p,
        Err(err) => {
            tokio::task::spawn_blocking(move || cleanup(false))
                .await
                .ok();
            // Preparing and starting the run is the daemon's work: a fault unless the disk is
            // full.
            return Err(err.into());
        }
    };
    tokio::spawn(async move {
        let finished = match up.await {
            Ok(io) => pump(TokioIo::new(io), proc).await.is_ok(),
            Err(err) => {
                tracing::warn!("run upgrade failed: {err}");
                proc.abandon().await;
                false
            }
        };
        tokio::task::spawn_blocking(move || cleanup(finished))
            .await
            .ok();
    });
    Ok(switching())
}

type Io = TokioIo<hyper::upgrade::Upgraded>;

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// A started process whose stdio [`pump`] carries: pipes, or the master side of its pty.
struct Proc {
    child: tokio::process::Child,
    master: Option<std::fs::File>,
}

impl Proc {
    /// Starts `cmd` on a new pty (`tty`, sized `rows` × `cols`, 24 × 80 when unknown) or on
    /// pipes. Needs the runtime's context (a blocking task's is enough).
    fn spawn(
        mut cmd: std::process::Command,
        tty: bool,
        rows: u16,
        cols: u16,
    ) -> anyhow::Result<Proc> {
        if !tty {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let child = tokio::process::Command::from(cmd).spawn()?;
            return Ok(Proc {
                child,
                master: None,
            });
        }
        let ws = nix::pty::Winsize {
            ws_row: if rows == 0 { 24 } else { rows },
            ws_col: if cols == 0 { 80 } else { cols },
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None)?;
        let slave: OwnedFd = pty.slave;
        cmd.stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        let child = tokio::process::Command::from(cmd).spawn()?;
        Ok(Proc {
            child,
            master: Some(std::fs::File::from(pty.master)),
        })
    }

    /// Ends a process no stream will carry (its connection never came) and reaps it.
    async fn abandon(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// Pumps the stdio of `proc` through the framed connection until it exits.
async fn pump(io: Io, proc: Proc) -> anyhow::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
    let (in_tx, mut in_rx) = mpsc::channel::<(FrameKind, Vec<u8>)>(64);
    // Client → process frames.
    let reader = tokio::spawn(async move {
        while let Ok(Some(frame)) = read_frame(&mut rd).await {
            if in_tx.send(frame).await.is_err() {
                break;
            }
        }
    });
    let Proc { mut child, master } = proc;
    if let Some(master) = master {
        let mut master_r = master.try_clone()?;
        let mut master_w = master;
        let out = tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16384];
            loop {
                match master_r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out
                            .blocking_send(encode_frame(FrameKind::Stdout, &buf[..n]))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        let pid = child.id();
        std::thread::spawn(move || {
            while let Some((kind, data)) = in_rx.blocking_recv() {
                match kind {
                    // A terminal has no end of input (StdinEof is ignored); the session ends
                    // with the process.
                    FrameKind::Stdin if master_w.write_all(&data).is_err() => break,
                    FrameKind::Resize if data.len() == 4 => {
                        let ws = libc::winsize {
                            ws_row: u16::from_be_bytes([data[0], data[1]]),
                            ws_col: u16::from_be_bytes([data[2], data[3]]),
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        // SAFETY: TIOCSWINSZ with a valid winsize on our pty master.
                        unsafe { libc::ioctl(master_w.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                        if let Some(pid) = pid {
                            // SAFETY: signalling the child we spawned.
                            unsafe { libc::kill(pid as i32, libc::SIGWINCH) };
                        }
                    }
                    _ => {}
                }
            }
        });
    } else {
        let mut stdin = child.stdin.take();
        let pid = child.id();
        tokio::spawn(async move {
            while let Some((kind, data)) = in_rx.recv().await {
                match kind {
                    FrameKind::Stdin => {
                        if let Some(s) = stdin.as_mut() {
                            if s.write_all(&data).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    FrameKind::StdinEof => stdin = None,
                    _ => {}
                }
            }
            // The client went away: ask the process to end.
            if let Some(pid) = pid {
                // SAFETY: signalling the child we spawned.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        });
        for (pipe, kind) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                FrameKind::Stdout,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
                FrameKind::Stderr,
            ),
        ] {
            let Some(mut pipe) = pipe else { continue };
            let out = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                loop {
                    match pipe.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if out.send(encode_frame(kind, &buf[..n])).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    }
    drop(tx);
    let mut status = None;
    loop {
        tokio::select! {
            f = rx.recv() => match f {
                Some(f) => { if wr.write_all(&f).await.is_err() { break; } }
                None => break,
            },
            s = child.wait(), if status.is_none() => {
                status = Some(s?);
            }
        }
        if status.is_some() {
            // Output left in the pipes after exit: drain briefly (descendants may hold them).
            let deadline = tokio::time::sleep(Duration::from_millis(500));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    f = rx.recv() => match f {
                        Some(f) => { if wr.write_all(&f).await.is_err() { break; } }
                        None => break,
                    },
                    _ = &mut deadline => break,
                }
            }
            break;
        }
    }
    let status = match status {
        Some(s) => s,
        None => child.wait().await?,
    };
    let _ = wr
        .write_all(&encode_frame(
            FrameKind::Exit,
            &exit_code(status).to_be_bytes(),
        ))
        .await;
    let _ = wr.shutdown().await;
    reader.abort();
    Ok(())
}
