//! The OCI backend of [`Runtime`]: runc for the container, one [`crate::shim`] per workload for
//! supervision.
//!
//! One-shot runc calls (kill, delete, state) go through the [`Executor`]; the shim and the
//! exec/run commands handed to callers are built with `warren_exec::std_command`.

use crate::bundle::write_bundle;
use crate::io_err;
use crate::logs::{DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
use crate::runc::{self, is_not_found, is_not_running, Runc};
use crate::shim::{self, ShimConfig};
use crate::{ExecRequest, Observed, Result, Runtime, RuntimeError, Started, WorkloadRun};
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

        shim::start(&self.shim_exe, &run_dir, &spec.id, |child| {
            if let Some(child) = child {
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = self.runc.force_delete(self.exec.as_ref(), &spec.id);
        })
    }

    fn kill(&self, id: &str, signal: &str) -> Result<()> {
        match self.exec.run(&self.runc.kill_cmd(id, signal)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) || is_not_running(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.runc.force_delete(self.exec.as_ref(), id)
    }

    /// `runc pause`: the cgroup freezer.
    fn freeze(&self, id: &str) -> Result<()> {
        self.exec.run(&self.runc.pause_cmd(id))?;
        Ok(())
    }

    /// `runc resume`.
    fn thaw(&self, id: &str) -> Result<()> {
        self.exec.run(&self.runc.resume_cmd(id))?;
        Ok(())
    }

    /// `runc state`: `running` and `paused` run (paused is frozen), `created` has a main
    /// process that has not started, `stopped` has none.
    fn observe(&self, id: &str) -> Result<Option<Observed>> {
        Ok(self.runc.state(self.exec.as_ref(), id)?.map(|s| {
            let pid = (s.pid > 0 && s.status != "stopped").then_some(s.pid);
            Observed {
                running: matches!(s.status.as_str(), "running" | "paused"),
                frozen: s.status == "paused",
                pid,
            }
        }))
    }

    /// `runc exec` (with `--tty` for a terminal).
    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command> {
        if req.argv.is_empty() {
            return Err(RuntimeError::Spec(format!("{id}: exec needs a command")));
        }
        runc::std_command(
            &self
                .runc
                .exec_cmd(id, &req.argv, req.tty, &req.env, req.cwd.as_deref()),
        )
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
    fn freeze_and_thaw_are_runc_pause_and_resume() {
        let fake = Arc::new(RecordingExecutor::new());
        fake.expect_ok("runc --root /run/w pause c1", "")
            .expect_ok("runc --root /run/w resume c1", "")
            .expect_err("runc --root /run/w pause c2", "container does not exist");
        let r = rt(fake.clone());
        r.freeze("c1").unwrap();
        r.thaw("c1").unwrap();
        assert!(
            r.freeze("c2").is_err(),
            "a snapshot must not go on unfrozen"
        );
        fake.finish();
    }

    #[test]
    fn stop_is_term_and_kill_tolerates_absence() {
        let fake = Arc::new(RecordingExecutor::new());
        fake.expect_ok("runc --root /run/w kill c1 TERM", "")
            .expect_ok("runc --root /run/w kill c1 HUP", "")
            .expect_err("runc --root /run/w kill c1 KILL", "container not running")
            .expect_err(
                "runc --root /run/w kill c2 KILL",
                "container does not exist",
            )
            .expect_err("runc --root /run/w kill c3 KILL", "permission denied");
        let r = rt(fake.clone());
        assert_eq!(r.name(), "oci");
        r.stop("c1").unwrap();
        r.kill("c1", "HUP").unwrap();
        r.kill("c1", "KILL").unwrap();
        r.kill("c2", "KILL").unwrap();
        assert!(r.kill("c3", "KILL").is_err());
        fake.finish();
    }

    #[test]
    fn delete_is_a_forced_runc_delete_that_tolerates_absence() {
        let fake = Arc::new(RecordingExecutor::new());
        fake.expect_ok("runc --root /run/w delete --force c1", "")
            .expect_err(
                "runc --root /run/w delete --force c2",
                "container does not exist",
            )
            .expect_err("runc --root /run/w delete --force c3", "device busy");
        let r = rt(fake.clone());
        r.delete("c1").unwrap();
        r.delete("c2").unwrap();
        assert!(r.delete("c3").is_err());
        fake.finish();
    }

    #[test]
    fn observe_maps_runc_states() {
        let fake = Arc::new(RecordingExecutor::new());
        let state = |status: &str, pid: i32| {
            format!(r#"{{"id":"c1","pid":{pid},"status":"{status}","bundle":"/b"}}"#)
        };
        fake.expect_ok("runc --root /run/w state c1", &state("running", 5))
            .expect_ok("runc --root /run/w state c1", &state("paused", 5))
            .expect_ok("runc --root /run/w state c1", &state("created", 5))
            .expect_ok("runc --root /run/w state c1", &state("stopped", 0))
            .expect_err("runc --root /run/w state c2", "container does not exist");
        let r = rt(fake.clone());
        let seen = |running, frozen, pid| {
            Some(Observed {
                running,
                frozen,
                pid,
            })
        };
        assert_eq!(r.observe("c1").unwrap(), seen(true, false, Some(5)));
        assert_eq!(r.observe("c1").unwrap(), seen(true, true, Some(5)));
        assert_eq!(r.observe("c1").unwrap(), seen(false, false, Some(5)));
        assert_eq!(r.observe("c1").unwrap(), seen(false, false, None));
        assert_eq!(r.observe("c2").unwrap(), None);
        fake.finish();
    }

    #[test]
    fn adopt_needs_the_very_shim_recorded() {
        let r = rt(Arc::new(RecordingExecutor::new()));
        let me = std::process::id() as i32;
        let ticks = crate::proc::self_start_ticks().unwrap();
        let state = |shim_pid, shim_start_ticks| crate::ShimState {
            id: "c1".into(),
            shim_pid,
            shim_start_ticks,
            container_pid: shim_pid,
            started_at_ms: 0,
        };
        assert!(r.adopt(&state(me, ticks)));
        assert!(!r.adopt(&state(me, ticks + 1)), "a reused pid is not ours");
        assert!(!r.adopt(&state(i32::MAX, ticks)));
    }

    #[test]
    fn a_run_for_another_backend_is_refused() {
        let fake = Arc::new(RecordingExecutor::new());
        let r = rt(fake.clone());
        let dir = tempfile::tempdir().unwrap();
        let spec = WorkloadRun {
            backend: crate::Backend::Jail(Default::default()),
            ..WorkloadRun::one_off("c1", "/warren/c1", "c1", dir.path().join("r"), vec![])
        };
        let err = r.start(&spec, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("built for the jail backend, not for the oci runtime"),
            "{err}"
        );
        assert!(r.run_foreground(&spec, dir.path()).is_err());
        assert!(fake.ran().is_empty());
        assert!(!dir.path().join("bundle").exists());
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
        let req = ExecRequest {
            argv: vec!["tty".into()],
            tty: true,
            env: vec!["A=1".into()],
            cwd: Some("/srv".into()),
        };
        let c = r.exec("c1", &req).unwrap();
        let args: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            ["--root", "/run/w", "exec", "--tty", "--env", "A=1", "--cwd", "/srv", "c1", "tty"]
        );
        assert!(c.get_program().to_string_lossy().starts_with('/'));
        let plain = r.exec("c1", &ExecRequest::new(vec!["ls".into()])).unwrap();
        let args: Vec<_> = plain
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--root", "/run/w", "exec", "c1", "ls"]);
        assert!(r.exec("c1", &ExecRequest::new(vec![])).is_err());
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
