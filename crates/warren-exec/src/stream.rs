//! Streaming commands: a process the caller feeds or drains while it runs (`btrfs send`,
//! `zfs receive`, `tar -c`, `debootstrap`'s progress), for streams too big to hold in memory.
//!
//! [`Executor::spawn`](crate::Executor::spawn) starts one with the [`Streams`] asked for and
//! hands back a [`Process`]: the caller takes its piped ends, then [`Process::wait`]s for it,
//! which reports a failure like [`Executor::run`](crate::Executor::run) does (argv, status,
//! stderr). The host's pipes are widened to [`PIPE_SIZE`] where the system allows it, so a fast
//! producer and its reader switch far less often than with the default 64 KiB pipe.

use std::io::{Read, Write};
use std::process::Stdio;

use crate::{output_result, ExecError, Output};

/// The pipe buffer size the host executor asks for, and the chunk a stream is best read or
/// written in (a 64 KiB pipe makes producer and consumer take turns every few writes).
pub const PIPE_SIZE: usize = 1 << 20;

/// What happens to one of a spawned process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pipe {
    /// Nothing: `/dev/null`.
    #[default]
    Null,
    /// A pipe whose other end the caller takes ([`Process::stdin`], [`Process::stdout`],
    /// [`Process::stderr`]).
    Piped,
    /// Read by the executor as the process runs and returned by [`Process::wait`] (stdout and
    /// stderr only; stdin treats it as [`Pipe::Null`]).
    Collected,
}

/// The standard streams of a process to spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    pub stdin: Pipe,
    pub stdout: Pipe,
    pub stderr: Pipe,
}

impl Streams {
    /// The caller reads stdout; stderr is kept for the error (`zfs send`, `tar -c`).
    pub fn reading() -> Self {
        Streams {
            stdin: Pipe::Null,
            stdout: Pipe::Piped,
            stderr: Pipe::Collected,
        }
    }

    /// The caller writes stdin; stdout and stderr are kept for the error (`zfs receive`).
    pub fn writing() -> Self {
        Streams {
            stdin: Pipe::Piped,
            stdout: Pipe::Collected,
            stderr: Pipe::Collected,
        }
    }
}

/// A running process started by [`Executor::spawn`](crate::Executor::spawn).
pub trait Process: Send {
    /// The argv as [`Cmd::argv_string`](crate::Cmd::argv_string) renders it, for errors.
    fn argv(&self) -> &str;
    /// Takes the writing end of a [`Pipe::Piped`] stdin (once; `None` afterwards). Dropping it
    /// closes the process's stdin.
    fn stdin(&mut self) -> Option<Box<dyn Write + Send>>;
    /// Takes the reading end of a [`Pipe::Piped`] stdout (once).
    fn stdout(&mut self) -> Option<Box<dyn Read + Send>>;
    /// Takes the reading end of a [`Pipe::Piped`] stderr (once).
    fn stderr(&mut self) -> Option<Box<dyn Read + Send>>;
    /// Kills the process (when the caller gives up on the stream); [`Process::wait`] still
    /// has to be called.
    fn kill(&mut self);
    /// Waits for the process to exit: `Ok` with the [`Pipe::Collected`] streams, or
    /// [`ExecError::Failed`] carrying argv, status, stdout and stderr.
    fn wait(self: Box<Self>) -> Result<Output, ExecError>;
}

/// Spawns an already prepared `std::process::Command` (the host executor's, or one an
/// [`Executor`](crate::Executor) builds otherwise, such as an exec into a running workload)
/// with `streams`, reporting failures under `argv`.
pub fn spawn_command(
    argv: String,
    mut command: std::process::Command,
    streams: Streams,
) -> Result<Box<dyn Process>, ExecError> {
    let stdio = |p: Pipe| match p {
        Pipe::Null => Stdio::null(),
        Pipe::Piped | Pipe::Collected => Stdio::piped(),
    };
    let stdin = match streams.stdin {
        Pipe::Piped => Stdio::piped(),
        Pipe::Null | Pipe::Collected => Stdio::null(),
    };
    command
        .stdin(stdin)
        .stdout(stdio(streams.stdout))
        .stderr(stdio(streams.stderr));
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        argv: argv.clone(),
        source,
    })?;
    if let Some(p) = &child.stdin {
        widen_pipe(p);
    }
    if let Some(p) = &child.stdout {
        widen_pipe(p);
    }
    let collect_out = (streams.stdout == Pipe::Collected)
        .then(|| collect(child.stdout.take().expect("piped stdout")));
    let collect_err = (streams.stderr == Pipe::Collected)
        .then(|| collect(child.stderr.take().expect("piped stderr")));
    Ok(Box::new(HostProcess {
        argv,
        child,
        collect_out,
        collect_err,
    }))
}

fn collect(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Asks the kernel for a [`PIPE_SIZE`] pipe buffer (Linux; 64 KiB by default); a refusal (a
/// lower `/proc/sys/fs/pipe-max-size`, other systems) leaves the pipe as it was.
fn widen_pipe(pipe: &impl std::os::fd::AsRawFd) {
    #[cfg(target_os = "linux")]
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor we own changes only its buffer size.
    unsafe {
        libc::fcntl(
            pipe.as_raw_fd(),
            libc::F_SETPIPE_SZ,
            PIPE_SIZE as libc::c_int,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

/// A child process of the host.
struct HostProcess {
    argv: String,
    child: std::process::Child,
    collect_out: Option<std::thread::JoinHandle<Vec<u8>>>,
    collect_err: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Process for HostProcess {
    fn argv(&self) -> &str {
        &self.argv
    }

    fn stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.child
            .stdin
            .take()
            .map(|p| Box::new(p) as Box<dyn Write + Send>)
    }

    fn stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>)
    }

    fn stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
    }

    fn wait(mut self: Box<Self>) -> Result<Output, ExecError> {
        // Our end of stdin must be closed, or a process reading it to its end never exits.
        drop(self.child.stdin.take());
        let status = self.child.wait().map_err(|source| ExecError::Spawn {
            argv: self.argv.clone(),
            source,
        })?;
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
        };
        let out = std::process::Output {
            status,
            stdout: join(self.collect_out.take()),
            stderr: join(self.collect_err.take()),
        };
        output_result(self.argv.clone(), out)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn pipes_are_widened_to_a_mebibyte() {
        use std::os::fd::AsRawFd;
        let max: usize = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut c = crate::std_command("true").unwrap();
        c.stdout(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let size = |fd: &std::process::ChildStdout| {
            // SAFETY: F_GETPIPE_SZ only reads the size of a pipe we own.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) as usize }
        };
        let before = size(&out);
        assert!(before < PIPE_SIZE, "the default pipe is already large");
        widen_pipe(&out);
        // A system capping pipes below a mebibyte refuses, and the pipe keeps its size.
        let expected = if max >= PIPE_SIZE { PIPE_SIZE } else { before };
        assert_eq!(size(&out), expected);
        child.wait().unwrap();
    }
}
