//! The clients of a VM shim's control socket (`RUN_DIR/ctl.sock`): an exec session
//! ([`exec`], what `warren vm-exec` runs, so a VM's exec is a command like `runc exec`), file
//! copy sessions ([`copy_out`], [`copy_in`]: `warren cp`) and
//! one-shot control requests ([`request`]: a signal to the main process, freeze, thaw, power
//! off).
//!
//! A session speaks the agent protocol on channel 0 of its own connection; the shim maps it
//! to a channel of the agent's and back.

use crate::agent::proto::{self, CopySpec, ExecSpec, Frame, Kind, Message};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Errors of talking to a VM's shim.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{path}: {source} (is the VM running?)")]
    Connect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Proto(#[from] proto::ProtoError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The guest refused or failed the request.
    #[error("{0}")]
    Refused(String),
}

fn connect(ctl: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(ctl).map_err(|source| ClientError::Connect {
        path: ctl.display().to_string(),
        source,
    })
}

/// Sends one control request (`Signal`, `Freeze`, `Thaw`, `Poweroff`, `TimeSync`, `Hosts`) and waits
/// up to `timeout` for the answer.
pub fn request(ctl: &Path, m: &Message, timeout: Duration) -> Result<(), ClientError> {
    let mut s = connect(ctl)?;
    s.set_read_timeout(Some(timeout))?;
    proto::write_frame(&mut s, &m.to_frame(0))?;
    match proto::read_frame(&mut s)? {
        Some(f) => super::reply_ok(&f).map_err(ClientError::Refused),
        None => Err(ClientError::Refused(
            "the shim closed the connection".into(),
        )),
    }
}

/// Runs `spec` in the guest with this process's stdin, stdout and stderr, and returns its
/// exit code (128+signal when a signal ended it). With `spec.tty` and a terminal on stdin,
/// the terminal is put in raw mode for the session (the guest's pty does the echoing) and
/// restored after.
pub fn exec(ctl: &Path, mut spec: ExecSpec) -> Result<i32, ClientError> {
    let mut s = connect(ctl)?;
    let _raw = if spec.tty { RawTerminal::enter() } else { None };
    if spec.tty && spec.rows == 0 {
        if let Some((rows, cols)) = window_size() {
            spec.rows = rows;
            spec.cols = cols;
        }
    }
    proto::write_frame(&mut s, &Message::Exec(spec).to_frame(0))?;
    let w = s.try_clone()?;
    // Detached: stdin may stay open after the command ends.
    std::thread::spawn(move || pump(std::io::stdin().lock(), w));
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    session_output(&mut s, &mut out, &mut err)
}

/// The tar stream of `spec.path` in the guest, written to `out` (the agent's `CopyOut`).
pub fn copy_out(ctl: &Path, spec: CopySpec, out: &mut dyn Write) -> Result<(), ClientError> {
    let mut s = connect(ctl)?;
    proto::write_frame(&mut s, &Message::CopyOut(spec).to_frame(0))?;
    proto::write_frame(&mut s, &Frame::data(Kind::Stdin, 0, Vec::new()))?;
    let mut err = Vec::new();
    let code = session_output(&mut s, out, &mut err)?;
    copy_result(code, &err)
}

/// Places the tar stream `input` at `spec.path` in the guest (the agent's `CopyIn`).
pub fn copy_in(
    ctl: &Path,
    spec: CopySpec,
    input: &mut (dyn Read + Send),
) -> Result<(), ClientError> {
    let mut s = connect(ctl)?;
    proto::write_frame(&mut s, &Message::CopyIn(spec).to_frame(0))?;
    let w = s.try_clone()?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = std::thread::scope(|scope| {
        scope.spawn(move || pump(input, w));
        let r = session_output(&mut s, &mut out, &mut err);
        let _ = s.shutdown(std::net::Shutdown::Both);
        r
    })?;
    copy_result(code, &err)
}

fn copy_result(code: i32, err: &[u8]) -> Result<(), ClientError> {
    if code == 0 {
        return Ok(());
    }
    let text = String::from_utf8_lossy(err).trim().to_string();
    Err(ClientError::Refused(if text.is_empty() {
        format!("the guest's copy failed (status {code})")
    } else {
        text
    }))
}

/// Sends what `input` gives as `Stdin` frames, then the empty one that ends it.
fn pump(mut input: impl Read, mut w: UnixStream) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = proto::write_frame(&mut w, &Frame::data(Kind::Stdin, 0, Vec::new()));
                return;
            }
            Ok(n) => {
                if proto::write_frame(&mut w, &Frame::data(Kind::Stdin, 0, buf[..n].to_vec()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// A session's `Stdout` and `Stderr` into `out` and `err` until its `Exit` code.
fn session_output(
    s: &mut UnixStream,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32, ClientError> {
    loop {
        let Some(f) = proto::read_frame(s)? else {
            return Err(ClientError::Refused(
                "the VM went away before the command finished".into(),
            ));
        };
        match f.kind {
            Kind::Stdout => {
                out.write_all(&f.payload)?;
                out.flush()?;
            }
            Kind::Stderr => {
                err.write_all(&f.payload)?;
                err.flush()?;
            }
            Kind::Exit => return Ok(f.parse::<proto::Exit>()?.code),
            Kind::Error => return Err(ClientError::Refused(f.parse::<proto::ErrorMsg>()?.message)),
            _ => {}
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes a winsize into the struct handed to it.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 {
            Some((ws.ws_row, ws.ws_col))
        } else {
            None
        }
    }
}

/// Stdin's terminal in raw mode until dropped.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(
            std::io::stdin(),
            nix::sys::termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}
