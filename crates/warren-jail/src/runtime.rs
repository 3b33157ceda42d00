//! [`JailRuntime`]: the [`Runtime`] of FreeBSD hosts, a jail per workload.
//!
//! A [`ContainerSpec`] becomes a [`JailPlan`] purely ([`JailRuntime::plan`]): a persistent jail
//! (`enforce_statfs=2`, warren's devfs ruleset, no `allow.*`, no children), nullfs mounts for
//! its binds, an epair whose host side joins warren's bridge when the workload is networked
//! (`vnet`; `ip4=inherit` for host networking; a bare `vnet` with only `lo0` for a private
//! one), and `rctl` rules for its resources. Every step runs through the [`Executor`]:
//!
//! 1. `mkdir -p` and `mount -t nullfs` per bind;
//! 2. `ifconfig epair create`, both ends renamed after the jail (`wj<hash>a`/`b`), the host
//!    end added to the bridge and brought up;
//! 3. `jail -c ...` (the parameters of [`JailSpec::create_args`]);
//! 4. `rctl -a ...` per rule.
//!
//! When a step fails, the steps already done are undone in reverse (`rctl -r`, `jail -r`,
//! `ifconfig ... destroy`, `umount`), so nothing is left half-done. The main process is then
//! `jexec -l [-U user] NAME /bin/sh -c 'cd -- "$0" && exec /usr/bin/env -i "$@"' CWD ENV...
//! ARGV...`, a direct child of the caller: jexec attaches to the jail and execs, so its PID is
//! the workload's main process, and its exit is the workload's exit. Stopping signals every
//! process of the jail (`pkill -SIG -j NAME`); destroying removes the rules, the jail, the
//! epair and the mounts.
//!
//! Everything compiles on every OS (the commands are only built and run through the executor),
//! so the command protocol is tested with the recording executor on Linux; the daemon selects
//! this runtime on FreeBSD.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use warren_exec::{Cmd, ExecError, Executor};
use warren_runtime::{
    ContainerSpec, NetNamespace, Result, Runtime, RuntimeError, ShimState, Started,
};

use crate::conf::{JailNet, JailSpec};
use crate::devfs::Ruleset;
use crate::rctl::{self, Rule};
use crate::{jls, JailError};

impl From<JailError> for RuntimeError {
    fn from(e: JailError) -> Self {
        match e {
            JailError::Exec(e) => RuntimeError::Exec(e),
            other => RuntimeError::Spec(other.to_string()),
        }
    }
}

/// One nullfs mount into the jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullMount {
    pub source: PathBuf,
    /// The mount point as the host sees it (under the jail's root).
    pub target: PathBuf,
    pub readonly: bool,
}

/// Everything [`JailRuntime::create`] does for one workload, computed purely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPlan {
    pub jail: JailSpec,
    pub mounts: Vec<NullMount>,
    /// The epair's base name (`wj<hash>`; ends `a` on the host, `b` in the jail), for vnet
    /// jails attached to the bridge.
    pub epair: Option<String>,
    pub rules: Vec<Rule>,
    /// The user the main process runs as (a name in the jail's password database).
    pub user: Option<String>,
}

/// The FreeBSD runtime.
pub struct JailRuntime {
    exec: Arc<dyn Executor>,
    /// The bridge the host ends of the epairs join.
    bridge: String,
    devfs: Ruleset,
    /// Plans of the jails this runtime created, for `delete`.
    plans: Mutex<HashMap<String, JailPlan>>,
}

impl std::fmt::Debug for JailRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailRuntime")
            .field("bridge", &self.bridge)
            .field("devfs_ruleset", &self.devfs.number)
            .finish_non_exhaustive()
    }
}

/// `wj` and the FNV-1a hash of the jail name in hex: 10 characters, so `wj…a`/`wj…b` fit
/// FreeBSD's 15-character interface names whatever the workload is called.
pub fn epair_base(name: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("wj{h:08x}")
}

/// The jail name of a container id (ids are already unique host names such as `warren-web`).
pub fn jail_name(id: &str) -> Result<String> {
    crate::conf::validate_name(id)?;
    Ok(id.to_string())
}

fn is_missing(e: &ExecError) -> bool {
    let s = e.stderr();
    jls::is_not_found(s) || s.contains("does not exist") || s.contains("No such")
}

impl JailRuntime {
    pub fn new(exec: Arc<dyn Executor>, bridge: &str, devfs: Ruleset) -> Result<Self> {
        crate::conf::validate_ifname("bridge", bridge)?;
        devfs.validate()?;
        Ok(JailRuntime {
            exec,
            bridge: bridge.to_string(),
            devfs,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Loads warren's devfs ruleset into the kernel (`devfs rule -s N delset`, then its
    /// rules); run once when the daemon starts, before any jail is created.
    pub fn prepare_host(&self) -> Result<()> {
        for c in self.devfs.load_cmds()? {
            self.exec.run(&c)?;
        }
        Ok(())
    }

    /// The plan for `spec`, without running anything.
    pub fn plan(&self, spec: &ContainerSpec) -> Result<JailPlan> {
        let name = jail_name(&spec.id)?;
        let mut jail = JailSpec::new(&name, &spec.rootfs, &spec.hostname);
        jail.devfs_ruleset = Some(self.devfs.number);
        jail.mount_devfs = true;
        let epair = match &spec.network {
            NetNamespace::Host => {
                jail.net = JailNet::Inherit;
                None
            }
            NetNamespace::Private => {
                jail.net = JailNet::Vnet { interface: None };
                None
            }
            NetNamespace::Path(_) => {
                let base = epair_base(&name);
                jail.net = JailNet::Vnet {
                    interface: Some(format!("{base}b")),
                };
                Some(base)
            }
        };
        jail.validate()?;
        let mut mounts = Vec::new();
        for b in &spec.binds {
            let rel = b.dest.trim_start_matches('/');
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(RuntimeError::Spec(format!(
                    "{}: bind destination {:?} is not a normalized absolute path",
                    spec.id, b.dest
                )));
            }
            mounts.push(NullMount {
                source: b.source.clone(),
                target: spec.rootfs.join(rel),
                readonly: b.readonly,
            });
        }
        let user = spec
            .user
            .as_deref()
            .map(|u| u.split(':').next().unwrap_or(u).to_string())
            .filter(|u| !u.is_empty() && u != "root" && u != "0");
        Ok(JailPlan {
            rules: rctl::rules_for(&name, &spec.resources)?,
            jail,
            mounts,
            epair,
            user,
        })
    }

    fn run(&self, c: &Cmd) -> Result<()> {
        self.exec.run(c).map(|_| ()).map_err(Into::into)
    }

    /// Runs undo commands, ignoring their failures (the original error is what is reported).
    fn undo(&self, cmds: Vec<Cmd>) {
        for c in cmds.into_iter().rev() {
            let _ = self.exec.run(&c);
        }
    }

    /// Creates the jail of `plan`; on failure undoes every step already done.
    pub fn create(&self, plan: &JailPlan) -> Result<()> {
        let name = &plan.jail.name;
        let mut undo: Vec<Cmd> = Vec::new();
        let result = (|| -> Result<()> {
            for m in &plan.mounts {
                self.run(&Cmd::new("mkdir").arg("-p").arg(&m.target))?;
                let mut c = Cmd::new("mount").args(["-t", "nullfs"]);
                if m.readonly {
                    c = c.args(["-o", "ro"]);
                }
                self.run(&c.arg(&m.source).arg(&m.target))?;
                undo.push(Cmd::new("umount").arg(&m.target));
            }
            if let Some(base) = &plan.epair {
                let out = self
                    .exec
                    .run(&Cmd::new("ifconfig").args(["epair", "create"]))?;
                let host = out.stdout_str().trim().to_string();
                let Some(created) = host.strip_suffix('a').filter(|b| b.starts_with("epair"))
                else {
                    return Err(RuntimeError::Other(format!(
                        "ifconfig epair create printed {host:?}, not an epair's a side"
                    )));
                };
                let created = created.to_string();
                undo.push(Cmd::new("ifconfig").args([host.as_str(), "destroy"]));
                self.run(&Cmd::new("ifconfig").args([&host, "name", &format!("{base}a")]))?;
                undo.pop();
                undo.push(Cmd::new("ifconfig").args([&format!("{base}a"), "destroy"]));
                self.run(&Cmd::new("ifconfig").args([
                    &format!("{created}b"),
                    "name",
                    &format!("{base}b"),
                ]))?;
                self.run(&Cmd::new("ifconfig").args([
                    self.bridge.as_str(),
                    "addm",
                    &format!("{base}a"),
                ]))?;
                self.run(&Cmd::new("ifconfig").args([&format!("{base}a"), "up"]))?;
            }
            self.run(&Cmd::new("jail").arg("-c").args(plan.jail.create_args()?))?;
            undo.push(jls::remove_cmd(name)?);
            if !plan.rules.is_empty() {
                undo.push(rctl::remove_jail_cmd(name)?);
            }
            for r in &plan.rules {
                self.run(&rctl::add_cmd(r)?)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.plans
                    .lock()
                    .unwrap()
                    .insert(name.clone(), plan.clone());
                Ok(())
            }
            Err(e) => {
                self.undo(undo);
                Err(e)
            }
        }
    }

    /// The argv (after `jexec`) of a process in the jail: `cwd`, a clean environment of
    /// exactly `env`, then `argv`.
    pub fn jexec_args(
        name: &str,
        user: Option<&str>,
        argv: &[String],
        env: &[String],
        cwd: &str,
    ) -> Result<Vec<String>> {
        if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
            return Err(RuntimeError::Spec(format!(
                "environment entry {bad:?} is not KEY=VALUE"
            )));
        }
        if argv.is_empty() {
            return Err(RuntimeError::Spec(format!("{name}: an empty command")));
        }
        let mut inner = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "cd -- \"$0\" && exec /usr/bin/env -i \"$@\"".into(),
            if cwd.is_empty() {
                "/".into()
            } else {
                cwd.to_string()
            },
        ];
        inner.extend(env.iter().cloned());
        // env(1) would take a first word with '=' as a variable: run such a program by path.
        if argv[0].contains('=') {
            return Err(RuntimeError::Spec(format!(
                "{name}: program {:?} contains '='",
                argv[0]
            )));
        }
        inner.extend(argv.iter().cloned());
        Ok(jls::jexec_args(name, user, &inner)?)
    }

    /// The main process's argv (after `jexec`) for `spec`.
    pub fn main_args(&self, spec: &ContainerSpec, plan: &JailPlan) -> Result<Vec<String>> {
        let mut env = spec.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push("PATH=/sbin:/bin:/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin".into());
        }
        Self::jexec_args(
            &plan.jail.name,
            plan.user.as_deref(),
            &spec.args,
            &env,
            &spec.cwd,
        )
    }

    /// Runs a one-shot command in the jail through the executor (e.g. `service nginx reload`).
    pub fn exec(&self, id: &str, argv: &[String]) -> Result<warren_exec::Output> {
        let name = jail_name(id)?;
        Ok(self.exec.run(&jls::jexec_cmd(&name, None, argv)?)?)
    }

    /// Removes the jail and everything [`JailRuntime::create`] made for it; what is already
    /// gone is not an error. Without the plan (a jail from before a restart) the rules, the
    /// jail and the epair named after it are removed.
    pub fn destroy(&self, id: &str) -> Result<()> {
        let name = jail_name(id)?;
        let plan = self.plans.lock().unwrap().get(&name).cloned();
        let tolerant = |c: Cmd| -> Result<()> {
            match self.exec.run(&c) {
                Ok(_) => Ok(()),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        };
        if plan.as_ref().is_none_or(|p| !p.rules.is_empty()) {
            tolerant(rctl::remove_jail_cmd(&name)?)?;
        }
        tolerant(jls::remove_cmd(&name)?)?;
        let epair = match &plan {
            Some(p) => p.epair.clone(),
            None => Some(epair_base(&name)),
        };
        if let Some(base) = epair {
            tolerant(Cmd::new("ifconfig").args([&format!("{base}a"), "destroy"]))?;
        }
        if let Some(p) = &plan {
            for m in p.mounts.iter().rev() {
                match self.exec.run(&Cmd::new("umount").arg(&m.target)) {
                    Ok(_) => {}
                    Err(e) if e.stderr().contains("not a file system root directory") => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.plans.lock().unwrap().remove(&name);
        Ok(())
    }

    /// `pkill -SIG -j NAME`: signals every process of the jail.
    pub fn signal_cmd(id: &str, signal: &str) -> Result<Cmd> {
        let name = jail_name(id)?;
        if signal.is_empty()
            || !signal
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(RuntimeError::Spec(format!(
                "{signal:?} is not a signal name"
            )));
        }
        Ok(Cmd::new("pkill").args([format!("-{signal}"), "-j".into(), name]))
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Runtime for JailRuntime {
    fn name(&self) -> &'static str {
        "jail"
    }

    fn start(&self, spec: &ContainerSpec, run_dir: &Path) -> Result<Started> {
        if spec.terminal {
            return Err(RuntimeError::Spec(format!(
                "{}: a terminal is only available to foreground runs",
                spec.id
            )));
        }
        let plan = self.plan(spec)?;
        let args = self.main_args(spec, &plan)?;
        let logs = run_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
        let log_path = logs.join("console.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        let err_log = log.try_clone().map_err(io_err(&log_path))?;
        self.create(&plan)?;
        let spawned = warren_exec::std_command("jexec").and_then(|mut c| {
            c.args(&args)
                .stdin(std::process::Stdio::null())
                .stdout(log)
                .stderr(err_log)
                .current_dir("/");
            c.spawn().map_err(|source| ExecError::Spawn {
                argv: format!("jexec {}", args.join(" ")),
                source,
            })
        });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = self.destroy(&spec.id);
                return Err(e.into());
            }
        };
        let pid = child.id() as i32;
        Ok(Started {
            state: ShimState {
                id: spec.id.clone(),
                shim_pid: pid,
                shim_start_ticks: 0,
                container_pid: pid,
                started_at_ms: now_ms(),
            },
            shim: child,
        })
    }

    fn signal(&self, id: &str, signal: &str) -> Result<()> {
        match self.exec.run(&Self::signal_cmd(id, signal)?) {
            Ok(_) => Ok(()),
            // pkill exits 1 when no process matched: nothing left to signal.
            Err(ExecError::Failed { status, stderr, .. })
                if status.contains("exit status: 1") && stderr.trim().is_empty() =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn pause(&self, id: &str) -> Result<()> {
        self.signal(id, "STOP")
    }

    fn resume(&self, id: &str) -> Result<()> {
        self.signal(id, "CONT")
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.destroy(id)
    }

    fn status(&self, id: &str) -> Result<Option<String>> {
        let name = jail_name(id)?;
        let out = self.exec.run(&jls::list_cmd())?;
        let jails = jls::parse_jls(&out.stdout_str())?;
        Ok(jails.iter().find(|j| j.name == name).map(|j| {
            match j.state {
                jls::JailState::Active => "running",
                jls::JailState::Dying => "stopped",
            }
            .to_string()
        }))
    }

    fn exec_command(
        &self,
        id: &str,
        argv: &[String],
        _tty: bool,
        env: &[String],
        cwd: Option<&str>,
    ) -> Result<std::process::Command> {
        let name = jail_name(id)?;
        let user = self
            .plans
            .lock()
            .unwrap()
            .get(&name)
            .and_then(|p| p.user.clone());
        let args = Self::jexec_args(&name, user.as_deref(), argv, env, cwd.unwrap_or("/"))?;
        let mut c = warren_exec::std_command("jexec")?;
        c.args(args);
        Ok(c)
    }

    fn run_command(&self, _bundle_dir: &Path, id: &str) -> Result<std::process::Command> {
        Err(RuntimeError::Unsupported(format!(
            "{id}: foreground runs of OCI bundles need the Linux OCI runtime"
        )))
    }
}
