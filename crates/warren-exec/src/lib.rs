//! The one command executor.
//!
//! Every external program warren runs (btrfs, mount, runc, nginx, ...) goes through an
//! [`Executor`]. The real one, [`HostExecutor`], resolves the program to an absolute path, clears
//! the environment except for `PATH=/usr/sbin:/usr/bin:/sbin:/bin` and `LC_ALL=C`, and turns a
//! non-zero exit into an [`ExecError`] carrying argv, status, stdout and stderr.
//!
//! Commands whose input or output is a stream too big to hold (send and receive, tar) are
//! started with [`Executor::spawn`] and fed or drained while they run ([`stream`]).
//!
//! Tests of command-building logic use [`RecordingExecutor`]: a hand-written fake with scripted
//! expectations that fails when a command arrives out of order or an expected one never ran.
//! It scripts spawned commands too ([`RecordingExecutor::expect_spawn`]): what they print and
//! how they end, recording what was fed to them ([`RecordingExecutor::fed`]).

pub mod stream;

pub use stream::{spawn_command, Pipe, Process, Streams, PIPE_SIZE};

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// A command to run: program and arguments, optional stdin bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<OsString>,
    pub stdin: Option<Vec<u8>>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            stdin: None,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, data: Vec<u8>) -> Self {
        self.stdin = Some(data);
        self
    }

    /// argv as owned strings (program first), lossy for non-UTF-8 arguments.
    pub fn argv_vec(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect()
    }

    /// argv as one display string, for errors and recordings.
    pub fn argv_string(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// A command that could not run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("program {program} not found in /usr/sbin, /usr/bin, /sbin or /bin")]
    NotFound { program: String },
    #[error("could not start `{argv}`: {source}")]
    Spawn {
        argv: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{argv}` failed ({status}): {}", summarize(.stderr, .stdout))]
    Failed {
        argv: String,
        status: String,
        stdout: String,
        stderr: String,
    },
}

fn summarize(stderr: &str, stdout: &str) -> String {
    let s = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let s = s.trim();
    if s.is_empty() {
        "no output".to_string()
    } else {
        s.to_string()
    }
}

impl ExecError {
    /// The failed command's stderr, if it ran.
    pub fn stderr(&self) -> &str {
        match self {
            ExecError::Failed { stderr, .. } => stderr,
            _ => "",
        }
    }
}

/// Runs commands. Implemented by the host executor and by the recording fake.
pub trait Executor: Send + Sync {
    /// Runs `cmd` to its end, feeding it `cmd.stdin` and collecting what it prints.
    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError>;
    /// Starts `cmd` with `streams` and returns it running, for streams fed or drained while it
    /// runs. `cmd.stdin` is not used: a process that reads stdin gets [`Pipe::Piped`].
    fn spawn(&self, cmd: &Cmd, streams: Streams) -> Result<Box<dyn Process>, ExecError>;
}

/// A finished process's output as the executor reports it: `Ok` on success, otherwise
/// [`ExecError::Failed`] carrying `argv`, the status and both streams.
pub fn output_result(argv: String, out: std::process::Output) -> Result<Output, ExecError> {
    if out.status.success() {
        Ok(Output {
            stdout: out.stdout,
            stderr: out.stderr,
        })
    } else {
        Err(ExecError::Failed {
            argv,
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

const SEARCH: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Finds `program` in the fixed system path (or accepts it if already absolute).
pub fn resolve(program: &str) -> Option<PathBuf> {
    if program.starts_with('/') {
        return Path::new(program).exists().then(|| PathBuf::from(program));
    }
    SEARCH
        .iter()
        .map(|d| Path::new(d).join(program))
        .find(|p| p.is_file())
}

/// Builds a `std::process::Command` with the executor's hygiene (absolute path, clean env),
/// for callers that must stream or hold the child (the shim, `runc run`).
pub fn std_command(program: &str) -> Result<std::process::Command, ExecError> {
    let path = resolve(program).ok_or_else(|| ExecError::NotFound {
        program: program.to_string(),
    })?;
    let mut c = std::process::Command::new(path);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C");
    Ok(c)
}

/// The real executor.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostExecutor;

impl Executor for HostExecutor {
    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let mut c = std_command(&cmd.program)?;
        c.args(&cmd.args)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let argv = cmd.argv_string();
        let mut child = c.spawn().map_err(|source| ExecError::Spawn {
            argv: argv.clone(),
            source,
        })?;
        if let Some(data) = &cmd.stdin {
            let mut stdin = child.stdin.take().expect("piped stdin");
            let data = data.clone();
            // Write from a thread so a child that fills its stdout pipe cannot deadlock us.
            std::thread::spawn(move || {
                let _ = stdin.write_all(&data);
            });
        }
        let out = child
            .wait_with_output()
            .map_err(|source| ExecError::Spawn {
                argv: argv.clone(),
                source,
            })?;
        output_result(argv, out)
    }

    fn spawn(&self, cmd: &Cmd, streams: Streams) -> Result<Box<dyn Process>, ExecError> {
        let mut c = std_command(&cmd.program)?;
        c.args(&cmd.args);
        spawn_command(cmd.argv_string(), c, streams)
    }
}

/// One scripted expectation of the recording fake.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The whole argv as `Cmd::argv_string` renders it.
    pub argv: String,
    /// `Ok(stdout)` or `Err(stderr)` (reported as exit status 1). For a spawned command, how
    /// it ends once waited for.
    pub result: Result<String, String>,
    /// `Some(bytes)` when the command is expected through [`Executor::spawn`]: what its piped
    /// stdout yields.
    pub stream: Option<Vec<u8>>,
}

/// A hand-written fake executor: commands must arrive exactly in the scripted order.
/// Call [`RecordingExecutor::finish`] at the end of a test to assert every expectation ran.
#[derive(Debug, Default)]
pub struct RecordingExecutor {
    expected: Mutex<VecDeque<Expect>>,
    ran: Mutex<Vec<String>>,
    fed: Mutex<Vec<(String, FedBytes)>>,
}

/// What one spawned command has been fed so far, shared with its recorded stdin.
type FedBytes = Arc<Mutex<Vec<u8>>>;

impl RecordingExecutor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Expect `argv` next, succeeding with `stdout`.
    pub fn expect_ok(&self, argv: &str, stdout: &str) -> &Self {
        self.expected.lock().unwrap().push_back(Expect {
            argv: argv.to_string(),
            result: Ok(stdout.to_string()),
            stream: None,
        });
        self
    }

    /// Expect `argv` next, failing with `stderr`.
    pub fn expect_err(&self, argv: &str, stderr: &str) -> &Self {
        self.expected.lock().unwrap().push_back(Expect {
            argv: argv.to_string(),
            result: Err(stderr.to_string()),
            stream: None,
        });
        self
    }

    /// Expect `argv` to be spawned next ([`Executor::spawn`]); its piped stdout yields
    /// `stdout`, and waiting for it succeeds (`Ok(())`) or fails with the given stderr.
    pub fn expect_spawn(&self, argv: &str, stdout: &[u8], result: Result<(), &str>) -> &Self {
        self.expected.lock().unwrap().push_back(Expect {
            argv: argv.to_string(),
            result: result.map(|()| String::new()).map_err(str::to_string),
            stream: Some(stdout.to_vec()),
        });
        self
    }

    /// What each spawned command was fed on its stdin so far, by argv, in spawn order.
    pub fn fed(&self) -> Vec<(String, Vec<u8>)> {
        self.fed
            .lock()
            .unwrap()
            .iter()
            .map(|(argv, data)| (argv.clone(), data.lock().unwrap().clone()))
            .collect()
    }

    /// Every argv that ran, in order.
    pub fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }

    /// Panics if any expected command never ran.
    pub fn finish(&self) {
        let left = self.expected.lock().unwrap();
        assert!(
            left.is_empty(),
            "expected commands never ran: {:?}\nran: {:#?}",
            left.iter().map(|e| &e.argv).collect::<Vec<_>>(),
            self.ran()
        );
    }
}

impl RecordingExecutor {
    /// Records `argv` and returns its expectation, which must be next and of the right sort.
    fn next(&self, argv: &str, spawned: bool) -> Expect {
        self.ran.lock().unwrap().push(argv.to_string());
        let next = self.expected.lock().unwrap().pop_front();
        let Some(exp) = next else {
            panic!("unexpected command (none scripted): {argv}");
        };
        assert_eq!(exp.argv, argv, "command out of script");
        assert_eq!(
            exp.stream.is_some(),
            spawned,
            "`{argv}` was scripted to be {} but was {}",
            if exp.stream.is_some() {
                "spawned"
            } else {
                "run"
            },
            if spawned { "spawned" } else { "run" },
        );
        exp
    }
}

impl Executor for RecordingExecutor {
    fn spawn(&self, cmd: &Cmd, streams: Streams) -> Result<Box<dyn Process>, ExecError> {
        let argv = cmd.argv_string();
        let exp = self.next(&argv, true);
        let stdin = Arc::new(Mutex::new(Vec::new()));
        if streams.stdin == Pipe::Piped {
            self.fed
                .lock()
                .unwrap()
                .push((argv.clone(), Arc::clone(&stdin)));
        }
        Ok(Box::new(RecordedProcess {
            argv,
            streams,
            stdin: (streams.stdin == Pipe::Piped).then_some(stdin),
            stdout: Some(exp.stream.unwrap_or_default()),
            result: exp.result,
        }))
    }

    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        let argv = cmd.argv_string();
        let exp = self.next(&argv, false);
        match exp.result {
            Ok(stdout) => Ok(Output {
                stdout: stdout.into_bytes(),
                stderr: Vec::new(),
            }),
            Err(stderr) => Err(ExecError::Failed {
                argv,
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr,
            }),
        }
    }
}

/// A spawned command of the recording fake: its stdout is the scripted bytes, its stdin is
/// recorded, and waiting for it ends as scripted.
struct RecordedProcess {
    argv: String,
    streams: Streams,
    stdin: Option<FedBytes>,
    stdout: Option<Vec<u8>>,
    result: Result<String, String>,
}

/// The writing end of a recorded stdin.
struct RecordedStdin(FedBytes);

impl Write for RecordedStdin {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Process for RecordedProcess {
    fn argv(&self) -> &str {
        &self.argv
    }

    fn stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.stdin
            .take()
            .map(|s| Box::new(RecordedStdin(s)) as Box<dyn Write + Send>)
    }

    fn stdout(&mut self) -> Option<Box<dyn std::io::Read + Send>> {
        if self.streams.stdout != Pipe::Piped {
            return None;
        }
        self.stdout
            .take()
            .map(|b| Box::new(std::io::Cursor::new(b)) as Box<dyn std::io::Read + Send>)
    }

    fn stderr(&mut self) -> Option<Box<dyn std::io::Read + Send>> {
        if self.streams.stderr != Pipe::Piped {
            return None;
        }
        let text = self.result.as_ref().err().cloned().unwrap_or_default();
        Some(Box::new(std::io::Cursor::new(text.into_bytes())))
    }

    fn kill(&mut self) {}

    fn wait(self: Box<Self>) -> Result<Output, ExecError> {
        let collected = |p: Pipe, bytes: Vec<u8>| {
            if p == Pipe::Collected {
                bytes
            } else {
                Vec::new()
            }
        };
        match self.result {
            Ok(_) => Ok(Output {
                stdout: collected(self.streams.stdout, self.stdout.unwrap_or_default()),
                stderr: Vec::new(),
            }),
            Err(stderr) => Err(ExecError::Failed {
                argv: self.argv,
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: String::from_utf8_lossy(&collected(
                    self.streams.stderr,
                    stderr.into_bytes(),
                ))
                .into_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_executor_success_and_failure() {
        let out = HostExecutor.run(&Cmd::new("echo").arg("hi")).unwrap();
        assert_eq!(out.stdout_str(), "hi\n");
        let err = HostExecutor
            .run(&Cmd::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
        assert!(msg.contains("3"), "{msg}");
    }

    #[test]
    fn host_executor_clears_env_and_feeds_stdin() {
        std::env::set_var("WARREN_EXEC_LEAK", "1");
        let out = HostExecutor.run(&Cmd::new("env")).unwrap().stdout_str();
        assert!(!out.contains("WARREN_EXEC_LEAK"), "{out}");
        assert!(out.contains("LC_ALL=C"), "{out}");
        let out = HostExecutor
            .run(&Cmd::new("cat").stdin(b"abc".to_vec()))
            .unwrap();
        assert_eq!(out.stdout, b"abc");
    }

    #[test]
    fn missing_program() {
        let err = HostExecutor
            .run(&Cmd::new("warren-no-such-program"))
            .unwrap_err();
        assert!(matches!(err, ExecError::NotFound { .. }));
    }

    #[test]
    fn recording_fake_checks_order_and_completion() {
        let r = RecordingExecutor::new();
        r.expect_ok("btrfs subvolume create /x", "")
            .expect_err("umount /x", "not mounted");
        r.run(&Cmd::new("btrfs").args(["subvolume", "create", "/x"]))
            .unwrap();
        assert!(r.run(&Cmd::new("umount").arg("/x")).is_err());
        r.finish();
    }

    #[test]
    fn host_spawn_streams_both_ways_and_reports_failure() {
        let mut p = HostExecutor
            .spawn(&Cmd::new("cat"), Streams::writing())
            .unwrap();
        let mut stdin = p.stdin().unwrap();
        stdin.write_all(b"through the pipe").unwrap();
        drop(stdin);
        assert_eq!(p.wait().unwrap().stdout, b"through the pipe");

        let mut p = HostExecutor
            .spawn(
                &Cmd::new("sh").args(["-c", "printf abc; echo bad >&2; exit 4"]),
                Streams::reading(),
            )
            .unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut p.stdout().unwrap(), &mut out).unwrap();
        assert_eq!(out, b"abc");
        let err = p.wait().unwrap_err();
        assert!(
            matches!(&err, ExecError::Failed { stderr, status, .. }
            if stderr == "bad\n" && status.contains('4')),
            "{err}"
        );
    }

    #[test]
    fn recording_fake_scripts_spawned_commands() {
        let r = RecordingExecutor::new();
        r.expect_spawn("zfs send tank/a@s", b"STREAM", Ok(()))
            .expect_spawn("zfs receive tank/b@s", b"", Err("cannot receive"));
        let mut p = r
            .spawn(
                &Cmd::new("zfs").args(["send", "tank/a@s"]),
                Streams::reading(),
            )
            .unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut p.stdout().unwrap(), &mut out).unwrap();
        assert_eq!(out, b"STREAM");
        p.wait().unwrap();
        let mut p = r
            .spawn(
                &Cmd::new("zfs").args(["receive", "tank/b@s"]),
                Streams::writing(),
            )
            .unwrap();
        p.stdin().unwrap().write_all(b"STREAM").unwrap();
        let err = p.wait().unwrap_err();
        assert_eq!(err.stderr(), "cannot receive");
        assert_eq!(
            r.fed(),
            vec![("zfs receive tank/b@s".to_string(), b"STREAM".to_vec())]
        );
        r.finish();
    }

    #[test]
    #[should_panic(expected = "scripted to be spawned but was run")]
    fn recording_fake_tells_spawn_from_run() {
        let r = RecordingExecutor::new();
        r.expect_spawn("zfs send tank/a@s", b"", Ok(()));
        let _ = r.run(&Cmd::new("zfs").args(["send", "tank/a@s"]));
    }

    #[test]
    #[should_panic(expected = "never ran")]
    fn recording_fake_fails_on_missing_command() {
        let r = RecordingExecutor::new();
        r.expect_ok("true", "");
        r.finish();
    }
}
