//! The runc driver: pure argv builders for every runc verb warren uses, `runc state` parsing,
//! and the few one-shot calls that go through the [`Executor`].
//!
//! Every command carries `--root`, so warren's containers live in their own runc state
//! directory (default `/run/warren/runc`) and never mix with other users of runc on the host.

use crate::{Result, RuntimeError};
use std::path::{Path, PathBuf};
use warren_exec::{Cmd, ExecError, Executor};

/// Default runc state directory.
pub const DEFAULT_ROOT: &str = "/run/warren/runc";

/// How to invoke runc.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Runc {
    /// The runc binary: a name looked up in the system path, or an absolute path.
    pub binary: PathBuf,
    /// runc's `--root` state directory.
    pub root: PathBuf,
}

impl Default for Runc {
    fn default() -> Self {
        Runc {
            binary: PathBuf::from("runc"),
            root: PathBuf::from(DEFAULT_ROOT),
        }
    }
}

/// The subset of `runc state` output warren uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RuncState {
    pub id: String,
    /// Host PID of the container's init (0 once stopped).
    #[serde(default)]
    pub pid: i32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    #[serde(default)]
    pub bundle: String,
}

/// Parses `runc state` JSON.
pub fn parse_state(json: &str) -> Result<RuncState> {
    serde_json::from_str(json)
        .map_err(|e| RuntimeError::Other(format!("cannot parse runc state output: {e}")))
}

/// Whether a failed runc call only says the container is absent.
pub fn is_not_found(err: &ExecError) -> bool {
    let s = err.stderr();
    s.contains("does not exist") || s.contains("container not found")
}

/// Whether a failed `runc kill` only says the container is no longer running.
pub fn is_not_running(err: &ExecError) -> bool {
    let s = err.stderr();
    s.contains("not running")
        || s.contains("process already finished")
        || s.contains("cannot kill a stopped container")
}

impl Runc {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Runc {
            binary: binary.into(),
            root: root.into(),
        }
    }

    fn base(&self) -> Cmd {
        Cmd::new(&self.binary.to_string_lossy())
            .arg("--root")
            .arg(&self.root)
    }

    /// `runc --root R [--log L --log-format json] create --bundle B --pid-file P ID`.
    pub fn create_cmd(&self, id: &str, bundle: &Path, pid_file: &Path, log: Option<&Path>) -> Cmd {
        let mut c = self.base();
        if let Some(log) = log {
            c = c.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        c.arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
    }

    /// `runc --root R start ID`.
    pub fn start_cmd(&self, id: &str) -> Cmd {
        self.base().arg("start").arg(id)
    }

    /// `runc --root R kill ID SIGNAL`.
    pub fn kill_cmd(&self, id: &str, signal: &str) -> Cmd {
        self.base().arg("kill").arg(id).arg(signal)
    }

    /// `runc --root R pause ID` (freezes every process of the container).
    pub fn pause_cmd(&self, id: &str) -> Cmd {
        self.base().arg("pause").arg(id)
    }

    /// `runc --root R resume ID`.
    pub fn resume_cmd(&self, id: &str) -> Cmd {
        self.base().arg("resume").arg(id)
    }

    /// `runc --root R delete [--force] ID`.
    pub fn delete_cmd(&self, id: &str, force: bool) -> Cmd {
        let c = self.base().arg("delete");
        let c = if force { c.arg("--force") } else { c };
        c.arg(id)
    }

    /// `runc --root R state ID`.
    pub fn state_cmd(&self, id: &str) -> Cmd {
        self.base().arg("state").arg(id)
    }

    /// `runc --root R exec [--tty] [--env K=V]... [--cwd D] ID ARGV...`.
    pub fn exec_cmd(
        &self,
        id: &str,
        argv: &[String],
        tty: bool,
        env: &[String],
        cwd: Option<&str>,
    ) -> Cmd {
        let mut c = self.base().arg("exec");
        if tty {
            c = c.arg("--tty");
        }
        for e in env {
            c = c.arg("--env").arg(e);
        }
        if let Some(d) = cwd {
            c = c.arg("--cwd").arg(d);
        }
        c.arg(id).args(argv)
    }

    /// `runc --root R run --bundle B ID` (foreground).
    pub fn run_cmd(&self, bundle: &Path, id: &str) -> Cmd {
        self.base().arg("run").arg("--bundle").arg(bundle).arg(id)
    }

    /// The container's runc state; None when runc does not know it.
    pub fn state(&self, exec: &dyn Executor, id: &str) -> Result<Option<RuncState>> {
        match exec.run(&self.state_cmd(id)) {
            Ok(out) => parse_state(&out.stdout_str()).map(Some),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `runc delete --force`; an absent container is not an error.
    pub fn force_delete(&self, exec: &dyn Executor, id: &str) -> Result<()> {
        match exec.run(&self.delete_cmd(id, true)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Turns a [`Cmd`] into a `std::process::Command` with the executor's hygiene, for commands that
/// must be held or streamed rather than run to completion.
pub fn std_command(cmd: &Cmd) -> Result<std::process::Command> {
    let mut c = warren_exec::std_command(&cmd.program)?;
    c.args(&cmd.args);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    fn r() -> Runc {
        Runc::new("/usr/sbin/runc", "/run/w")
    }

    #[test]
    fn argv_builders() {
        let r = r();
        let p = Path::new;
        assert_eq!(
            r.create_cmd("c1", p("/b"), p("/b/pid"), None).argv_string(),
            "/usr/sbin/runc --root /run/w create --bundle /b --pid-file /b/pid c1"
        );
        assert_eq!(
            r.create_cmd("c1", p("/b"), p("/b/pid"), Some(p("/x/runc.log")))
                .argv_string(),
            "/usr/sbin/runc --root /run/w --log /x/runc.log --log-format json create \
             --bundle /b --pid-file /b/pid c1"
        );
        assert_eq!(
            r.start_cmd("c1").argv_string(),
            "/usr/sbin/runc --root /run/w start c1"
        );
        assert_eq!(
            r.kill_cmd("c1", "TERM").argv_string(),
            "/usr/sbin/runc --root /run/w kill c1 TERM"
        );
        assert_eq!(
            r.delete_cmd("c1", true).argv_string(),
            "/usr/sbin/runc --root /run/w delete --force c1"
        );
        assert_eq!(
            r.delete_cmd("c1", false).argv_string(),
            "/usr/sbin/runc --root /run/w delete c1"
        );
        assert_eq!(
            r.state_cmd("c1").argv_string(),
            "/usr/sbin/runc --root /run/w state c1"
        );
        assert_eq!(
            r.exec_cmd(
                "c1",
                &["sh".into(), "-c".into(), "exit 7".into()],
                false,
                &[],
                None
            )
            .argv_string(),
            "/usr/sbin/runc --root /run/w exec c1 sh -c exit 7"
        );
        assert_eq!(
            r.exec_cmd(
                "c1",
                &["ls".into()],
                true,
                &["A=1".into(), "B=2".into()],
                Some("/tmp")
            )
            .argv_string(),
            "/usr/sbin/runc --root /run/w exec --tty --env A=1 --env B=2 --cwd /tmp c1 ls"
        );
        assert_eq!(
            r.run_cmd(p("/b"), "c1").argv_string(),
            "/usr/sbin/runc --root /run/w run --bundle /b c1"
        );
        let c = std_command(&r.start_cmd("c1"));
        if Path::new("/usr/sbin/runc").exists() {
            let c = c.unwrap();
            let args: Vec<_> = c.get_args().collect();
            assert_eq!(args, ["--root", "/run/w", "start", "c1"]);
        }
    }

    #[test]
    fn default_runc() {
        let d = Runc::default();
        assert_eq!(d.root, Path::new(DEFAULT_ROOT));
        assert_eq!(
            d.state_cmd("x").argv_string(),
            "runc --root /run/warren/runc state x"
        );
    }

    const STATE: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "id": "warren-web",
  "pid": 41234,
  "status": "running",
  "bundle": "/run/warren/web/bundle",
  "rootfs": "/var/lib/warren/web/rootfs",
  "created": "2024-05-01T12:00:00.123456789Z",
  "owner": ""
}"#;

    #[test]
    fn state_parsing() {
        let s = parse_state(STATE).unwrap();
        assert_eq!(
            s,
            RuncState {
                id: "warren-web".into(),
                pid: 41234,
                status: "running".into(),
                bundle: "/run/warren/web/bundle".into(),
            }
        );
        assert!(parse_state("not json").is_err());
    }

    #[test]
    fn state_and_delete_through_the_executor() {
        let r = r();
        let fake = RecordingExecutor::new();
        fake.expect_ok("/usr/sbin/runc --root /run/w state warren-web", STATE)
            .expect_err(
                "/usr/sbin/runc --root /run/w state gone",
                "container does not exist",
            )
            .expect_err(
                "/usr/sbin/runc --root /run/w state bad",
                "permission denied",
            )
            .expect_err(
                "/usr/sbin/runc --root /run/w delete --force gone",
                "container does not exist",
            );
        assert_eq!(r.state(&fake, "warren-web").unwrap().unwrap().pid, 41234);
        assert_eq!(r.state(&fake, "gone").unwrap(), None);
        assert!(r.state(&fake, "bad").is_err());
        r.force_delete(&fake, "gone").unwrap();
        fake.finish();
    }
}
