//! The OCI backend of [`Runtime`]: runc for the container, one [`crate::shim`] per workload for
//! supervision.
//!
//! One-shot runc calls (kill, delete, state) go through the [`Executor`]; the shim and the
//! exec/run commands handed to callers are built with `warren_exec::std_command`.

use crate::bundle::write_bundle;
use crate::logs::{DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
use crate::runc::{self, is_not_found, is_not_running, Runc};
use crate::shim::{self, ShimConfig};
use crate::{Result, Runtime, RuntimeError, Started, WorkloadRun};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warren_exec::Executor;

/// How long `start` waits for the shim to report.
pub const START_TIMEOUT: Duration = shim::START_TIMEOUT;

/// Containers through runc, each supervised by a shim process.
#[derive(Clone)]
pub struct OciRuntime {
    exec: Arc<dyn Executor>,
    runc: Runc,
    /// The executable run as `EXE shim RUN_DIR` (the warren binary).
    shim_exe: PathBuf,
    log_max_bytes: u64,
    log_max_files: u32,
}

impl std::fmt::Debug for OciRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciRuntime")
            .field("runc", &self.runc)
            .field("shim_exe", &self.shim_exe)
            .field("log_max_bytes", &self.log_max_bytes)
            .field("log_max_files", &self.log_max_files)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl OciRuntime {
    pub fn new(exec: Arc<dyn Executor>, runc: Runc, shim_exe: PathBuf) -> Self {
        OciRuntime {
            exec,
            runc,
            shim_exe,
            log_max_bytes: DEFAULT_MAX_BYTES,
            log_max_files: DEFAULT_MAX_FILES,
        }
    }

    /// Sets the log rotation size and the number of files kept (current one included).
    pub fn with_log_limits(mut self, max_bytes: u64, max_files: u32) -> Self {
        self.log_max_bytes = max_bytes.max(1);
        self.log_max_files = max_files.max(1);
        self
    }

    pub fn runc(&self) -> &Runc {
        &self.runc
    }

    fn shim_failed(id: &str, reason: impl Into<String>) -> RuntimeError {
        RuntimeError::ShimFailed {
            id: id.to_string(),
            reason: reason.into(),
        }
    }

    /// Ends a shim that did not report, removes the container and reaps the shim.
    fn abandon(&self, id: &str, shim: &mut std::process::Child) {
        let _ = shim.kill();
        let _ = shim.wait();
        let _ = self.runc.force_delete(self.exec.as_ref(), id);
    }
}

impl Runtime for OciRuntime {
    fn name(&self) -> &'static str {
        "oci"
    }

    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started> {
        spec.expect_backend(self.name())?;
        if spec.terminal {
            return Err(RuntimeError::Spec(format!(
                "{}: a terminal is only available to foreground runs",
                spec.id
            )));
        }
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let run_dir = run_dir.canonicalize().map_err(io_err(run_dir))?;
        let bundle = run_dir.join("bundle");
        write_bundle(&bundle, spec)?;
        for stale in [shim::STATE_FILE, shim::EXIT_FILE] {
            let p = run_dir.join(stale);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
                _ => {}
            }
        }
        let cfg = ShimConfig {
            id: spec.id.clone(),
            runc: self.runc.clone(),
            bundle,
            log_dir: run_dir.join("logs"),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            cgroup_path: spec.cgroup_path.clone(),
        };
        shim::write_json(&run_dir.join(shim::CONFIG_FILE), &cfg)?;
        self.runc.force_delete(self.exec.as_ref(), &spec.id)?;

        let (mut child, report) = shim::launch(&self.shim_exe, &run_dir)?;
        let report = match report {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.abandon(&spec.id, &mut child);
                return Err(Self::shim_failed(
                    &spec.id,
                    format!("no report within {}s", START_TIMEOUT.as_secs()),
                ));
            }
            Err(e) => {
                self.abandon(&spec.id, &mut child);
                return Err(e);
            }
        };
        if report.trim() == "ok" {
            match shim::read_state(&run_dir) {
                Ok(Some(state)) => return Ok(Started { state, shim: child }),
                Ok(None) => {
                    let _ = self.signal(&spec.id, "KILL");
                    let _ = child.wait();
                    return Err(Self::shim_failed(&spec.id, "the shim wrote no state.json"));
                }
                Err(e) => {
                    let _ = self.signal(&spec.id, "KILL");
                    let _ = child.wait();
                    return Err(e);
                }
            }
        }
        let status = child
            .wait()
            .map_err(|e| RuntimeError::Other(format!("waiting for the shim: {e}")))?;
        let reason = match report.strip_prefix("error: ") {
            Some(r) => r.trim().to_string(),
            None if report.trim().is_empty() => {
                format!("the shim exited without reporting ({status})")
            }
            None => report.trim().to_string(),
        };
        Err(Self::shim_failed(&spec.id, reason))
    }

    fn signal(&self, id: &str, signal: &str) -> Result<()> {
        match self.exec.run(&self.runc.kill_cmd(id, signal)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_not_running(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.runc.force_delete(self.exec.as_ref(), id)
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.exec.run(&self.runc.pause_cmd(id))?;
        Ok(())
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.exec.run(&self.runc.resume_cmd(id))?;
        Ok(())
    }

    fn status(&self, id: &str) -> Result<Option<String>> {
        Ok(self.runc.state(self.exec.as_ref(), id)?.map(|s| s.status))
    }

    fn exec_command(
        &self,
        id: &str,
        argv: &[String],
        tty: bool,
        env: &[String],
        cwd: Option<&str>,
    ) -> Result<std::process::Command> {
        if argv.is_empty() {
            return Err(RuntimeError::Spec(format!("{id}: exec needs a command")));
        }
        runc::std_command(&self.runc.exec_cmd(id, argv, tty, env, cwd))
    }

    fn run_foreground(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<std::process::Command> {
        spec.expect_backend(self.name())?;
        let bundle = run_dir.join("bundle");
        crate::bundle::write_bundle(&bundle, spec)?;
        runc::std_command(&self.runc.run_cmd(&bundle, &spec.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_exec::RecordingExecutor;

    fn rt(fake: Arc<RecordingExecutor>) -> OciRuntime {
        OciRuntime::new(fake, Runc::new("runc", "/run/w"), "/proc/self/exe".into())
    }

    #[test]
    fn pause_and_resume_commands() {
        let fake = Arc::new(RecordingExecutor::new());
        fake.expect_ok("runc --root /run/w pause c1", "")
            .expect_ok("runc --root /run/w resume c1", "");
        let r = rt(fake.clone());
        r.pause("c1").unwrap();
        r.resume("c1").unwrap();
        fake.finish();
    }

    #[test]
    fn signal_delete_status_tolerate_absence() {
        let fake = Arc::new(RecordingExecutor::new());
        fake.expect_ok("runc --root /run/w kill c1 TERM", "")
            .expect_err("runc --root /run/w kill c1 KILL", "container not running")
            .expect_err(
                "runc --root /run/w kill c2 KILL",
                "container does not exist",
            )
            .expect_err("runc --root /run/w kill c3 KILL", "permission denied")
            .expect_ok("runc --root /run/w delete --force c1", "")
            .expect_err(
                "runc --root /run/w delete --force c2",
                "container does not exist",
            )
            .expect_ok(
                "runc --root /run/w state c1",
                r#"{"id":"c1","pid":5,"status":"running","bundle":"/b"}"#,
            )
            .expect_err("runc --root /run/w state c2", "container does not exist");
        let r = rt(fake.clone());
        assert_eq!(r.name(), "oci");
        r.signal("c1", "TERM").unwrap();
        r.signal("c1", "KILL").unwrap();
        r.signal("c2", "KILL").unwrap();
        assert!(r.signal("c3", "KILL").is_err());
        r.delete("c1").unwrap();
        r.delete("c2").unwrap();
        assert_eq!(r.status("c1").unwrap().as_deref(), Some("running"));
        assert_eq!(r.status("c2").unwrap(), None);
        fake.finish();
    }

    #[test]
    fn terminal_start_is_refused_before_anything_runs() {
        let fake = Arc::new(RecordingExecutor::new());
        let r = rt(fake.clone());
        let spec = WorkloadRun {
            id: "c1".into(),
            rootfs: "/nonexistent".into(),
            readonly_rootfs: false,
            binds: vec![],
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/".into(),
            user: None,
            hostname: "c1".into(),
            resources: Default::default(),
            terminal: true,
            cgroup_path: "/warren/c1".into(),
            network: Default::default(),
            userns: None,
            backend: Default::default(),
        };
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            r.start(&spec, dir.path()),
            Err(RuntimeError::Spec(_))
        ));
        assert!(fake.ran().is_empty());
    }

    #[test]
    fn exec_and_run_commands() {
        if warren_exec::resolve("runc").is_none() {
            panic!("runc is not installed: these command builders resolve it in the system path");
        }
        let r = rt(Arc::new(RecordingExecutor::new()));
        let c = r
            .exec_command("c1", &["tty".into()], true, &["A=1".into()], Some("/srv"))
            .unwrap();
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--root", "/run/w", "exec", "--tty", "--env", "A=1", "--cwd", "/srv", "c1", "tty"]
        );
        assert!(c.get_program().to_string_lossy().starts_with('/'));
        assert!(r.exec_command("c1", &[], false, &[], None).is_err());
    }

    #[test]
    fn a_foreground_run_writes_its_bundle_and_runs_it() {
        let r = rt(Arc::new(RecordingExecutor::new()));
        let dir = tempfile::tempdir().unwrap();
        let spec = WorkloadRun::one_off(
            "c1",
            "/warren-t/c1",
            "c1",
            dir.path().join("rootfs"),
            vec!["/bin/true".into()],
        );
        let c = r.run_foreground(&spec, dir.path()).unwrap();
        let bundle = dir.path().join("bundle");
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/run/w",
                "run",
                "--bundle",
                &bundle.display().to_string(),
                "c1"
            ]
        );
        let config = std::fs::read_to_string(bundle.join("config.json")).unwrap();
        assert!(config.contains("/bin/true"), "{config}");
        assert!(config.contains("/warren-t/c1"), "{config}");
    }
}
