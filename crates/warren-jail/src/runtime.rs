//! [`JailRuntime`]: the [`Runtime`] of FreeBSD hosts, a jail per workload.
//!
//! A [`WorkloadRun`] whose backend part is [`warren_runtime::Backend::Jail`] becomes a
//! [`JailPlan`] purely ([`JailRuntime::plan`]): a persistent jail (`enforce_statfs=2`,
//! warren's devfs ruleset, the run's `allow.*` permissions, no children), nullfs mounts for
//! its binds, its network, `rctl` rules for its resources and, when asked for, its data
//! dataset delegated to it. Networks ([`warren_runtime::JailParams::vnet`] chooses):
//!
//! - bridge, vnet: an epair whose host end joins warren's bridge and whose jail end holds the
//!   workload's address, with `lo0` up and a default route to the bridge;
//! - bridge, no vnet: `ip4.addr` = the workload's address as a /32 alias on the bridge;
//! - host: `ip4=inherit`; none: a bare `vnet` with only `lo0` (or `ip4=disable`).
//!
//! Every step runs through the [`Executor`] ([`JailRuntime::create`]):
//!
//! 1. `mkdir -p` and `mount -t nullfs` per bind;
//! 2. `ifconfig epair create`, both ends renamed after the jail (`wj<hash>a`/`b`), the host
//!    end added to the bridge and brought up;
//! 3. `jail -c ...` (the parameters of [`JailSpec::create_args`]);
//! 4. in a vnet jail: `jexec NAME /sbin/ifconfig lo0 ...`, the epair's address and the
//!    default route;
//! 5. `rctl -a ...` per rule;
//! 6. a jailed dataset ([`JailedDataset`]; the jail then has `allow.mount`,
//!    `allow.mount.zfs` and `enforce_statfs=1`): `zfs set jailed=on`, its `mountpoint` set to
//!    the path inside the jail, `zfs jail NAME DATASET` and `jexec NAME zfs mount DATASET`.
//!
//! When a step fails, the steps already done are undone in reverse (`umount`, `zfs unjail`,
//! the dataset's host mountpoint and `jailed=off` restored and mounted again, `rctl -r`,
//! `jail -r`, `ifconfig ... destroy`, `umount`), so nothing is left half-done.
//! [`JailRuntime::teardown_cmds`] is the same undo list for a whole plan, run by
//! [`JailRuntime::destroy`] and, as argv lists in `jail.json`, by the jail's shim when the
//! main process ends ([`warren_runtime::shim`]).
//!
//! [`Runtime::start`] creates the jail and starts the shim (`warren shim RUN_DIR`, in its own
//! session) which runs the main process as `jexec -l [-U user] NAME /bin/sh -c 'cd -- "$0" &&
//! exec /usr/bin/env -i "$@"' CWD ENV... ARGV...`, records `state.json` and `exit.json` as the
//! Linux shim does and removes the jail after it; so jails outlive the daemon and are adopted
//! by the next one. Stopping signals every process of the jail (`pkill -SIG -j NAME`).
//!
//! The teardown of each jail is also kept in `<state dir>/<name>.json` when the runtime has a
//! state dir ([`JailRuntime::with_state_dir`]), so a daemon started later removes a jail's
//! mounts and dataset delegation too, not only what its name finds.
//!
//! Everything compiles on every OS (the commands are only built and run through the executor),
//! so the command protocol is tested with the recording executor on Linux; the daemon selects
//! this runtime on FreeBSD.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren_runtime::io_err;

use warren_exec::{Cmd, ExecError, Executor};
use warren_runtime::logs::{DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES};
use warren_runtime::shim::{self, JailShimConfig};
use warren_runtime::{
    BridgeAddress, ExecRequest, JailedDataset, NetNamespace, Observed, Result, Runtime,
    RuntimeError, Started, WorkloadRun,
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

/// A data dataset delegated to the jail, as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegation {
    pub dataset: JailedDataset,
    /// Where the jail mounts it, as the host sees it (under the jail's root).
    pub target: PathBuf,
}

/// How far [`JailRuntime::create`] got: what [`JailRuntime::undo_cmds`] removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// How many of the plan's mounts are mounted.
    pub mounts: usize,
    /// The host end of the epair as it is named now (`epairNa` before its rename).
    pub epair: Option<String>,
    pub jail: bool,
    pub rules: bool,
    /// `jailed=on` is set on the delegated dataset (its mountpoint may be changed too).
    pub jailed: bool,
    /// `zfs jail` ran (the jail may have mounted it).
    pub delegated: bool,
}

/// Everything [`JailRuntime::create`] does for one workload, computed purely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPlan {
    pub jail: JailSpec,
    pub mounts: Vec<NullMount>,
    /// The epair's base name (`wj<hash>`; ends `a` on the host, `b` in the jail), for vnet
    /// jails attached to the bridge.
    pub epair: Option<String>,
    /// The address the jail end of the epair gets (vnet jails on the bridge).
    pub address: Option<BridgeAddress>,
    pub rules: Vec<Rule>,
    /// The user the main process runs as (a name in the jail's password database).
    pub user: Option<String>,
    /// The data dataset handed to the jail.
    pub delegation: Option<Delegation>,
}

/// The FreeBSD runtime.
pub struct JailRuntime {
    exec: Arc<dyn Executor>,
    /// The bridge the host ends of the epairs join.
    bridge: String,
    devfs: Ruleset,
    /// The executable run as `EXE shim RUN_DIR` (the warren binary).
    shim_exe: Option<PathBuf>,
    log_max_bytes: u64,
    log_max_files: u32,
    /// Where each jail's teardown is recorded (`<dir>/<name>.json`), if anywhere.
    state_dir: Option<PathBuf>,
    /// Teardowns of the jails this runtime created, for `delete`.
    teardowns: Mutex<HashMap<String, Vec<Cmd>>>,
    /// The user each jail's main process runs as, for `exec`.
    users: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for JailRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JailRuntime")
            .field("bridge", &self.bridge)
            .field("devfs_ruleset", &self.devfs.number)
            .field("shim_exe", &self.shim_exe)
            .field("state_dir", &self.state_dir)
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

/// Whether a failed teardown command found its object already gone (a jail, an interface, a
/// mount, a delegation or a rule set that does not exist, a dataset already mounted).
pub fn is_gone(e: &ExecError) -> bool {
    let s = e.stderr();
    jls::is_not_found(s)
        || [
            "does not exist",
            "No such",
            "not a file system root directory",
            "not jailed",
            "already mounted",
            "not currently mounted",
        ]
        .iter()
        .any(|m| s.contains(m))
}

/// A path with no `.`, `..` or empty components, relative to a root.
fn relative(id: &str, what: &str, dest: &str) -> Result<String> {
    let rel = dest.trim_start_matches('/');
    if !dest.starts_with('/')
        || rel.is_empty()
        || rel
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(RuntimeError::Spec(format!(
            "{id}: {what} {dest:?} is not a normalized absolute path"
        )));
    }
    Ok(rel.to_string())
}

/// A ZFS dataset name warren hands to `zfs`: `pool/a/b`, no option-like or odd characters.
fn check_dataset(id: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with(['-', '/'])
        && !name.ends_with('/')
        && name.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.:".contains(ch))
        });
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Spec(format!(
            "{id}: {name:?} is not a ZFS dataset name"
        )))
    }
}

impl JailRuntime {
    pub fn new(exec: Arc<dyn Executor>, bridge: &str, devfs: Ruleset) -> Result<Self> {
        crate::conf::validate_ifname("bridge", bridge)?;
        devfs.validate()?;
        Ok(JailRuntime {
            exec,
            bridge: bridge.to_string(),
            devfs,
            shim_exe: None,
            log_max_bytes: DEFAULT_MAX_BYTES,
            log_max_files: DEFAULT_MAX_FILES,
            state_dir: None,
            teardowns: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        })
    }

    /// The executable started as each jail's supervisor (`EXE shim RUN_DIR`).
    pub fn with_shim(mut self, exe: PathBuf) -> Self {
        self.shim_exe = Some(exe);
        self
    }

    /// Records each jail's teardown under `dir`, so a later runtime can undo it all.
    pub fn with_state_dir(mut self, dir: PathBuf) -> Self {
        self.state_dir = Some(dir);
        self
    }

    /// Sets the log rotation size and the number of files kept (current one included).
    pub fn with_log_limits(mut self, max_bytes: u64, max_files: u32) -> Self {
        self.log_max_bytes = max_bytes.max(1);
        self.log_max_files = max_files.max(1);
        self
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
    pub fn plan(&self, spec: &WorkloadRun) -> Result<JailPlan> {
        spec.expect_backend("jail")?;
        let name = jail_name(&spec.id)?;
        let params = spec.jail().cloned().unwrap_or_default();
        let mut jail = JailSpec::new(&name, &spec.rootfs, &spec.hostname);
        jail.devfs_ruleset = Some(self.devfs.number);
        jail.mount_devfs = true;
        jail.allow = params.allow.iter().cloned().collect();
        let mut epair = None;
        let mut address = None;
        match (&spec.network, params.vnet) {
            (NetNamespace::Host, _) => jail.net = JailNet::Inherit,
            (NetNamespace::Private, true) => jail.net = JailNet::Vnet { interface: None },
            (NetNamespace::Private, false) => jail.net = JailNet::Disable,
            (NetNamespace::Path(_) | NetNamespace::Bridge, true) => {
                let base = epair_base(&name);
                jail.net = JailNet::Vnet {
                    interface: Some(format!("{base}b")),
                };
                epair = Some(base);
                address = params.address;
            }
            (NetNamespace::Path(_) | NetNamespace::Bridge, false) => {
                let Some(a) = params.address else {
                    return Err(RuntimeError::Spec(format!(
                        "{name}: an address alias on the bridge needs the workload's address"
                    )));
                };
                jail.net = JailNet::Alias {
                    interface: self.bridge.clone(),
                    addrs: vec![(a.address, 32)],
                };
            }
        }
        if let Some(a) = &address {
            if a.prefix == 0 || a.prefix > 30 {
                return Err(RuntimeError::Spec(format!(
                    "{name}: /{} is not a bridge subnet prefix",
                    a.prefix
                )));
            }
        }
        let delegation = match &params.jailed_dataset {
            Some(d) => {
                check_dataset(&name, &d.dataset)?;
                if !d.host_mountpoint.is_absolute() {
                    return Err(RuntimeError::Spec(format!(
                        "{name}: the dataset's host mountpoint {:?} is not absolute",
                        d.host_mountpoint
                    )));
                }
                let rel = relative(&name, "jailed dataset mountpoint", &d.jail_mountpoint)?;
                jail.allow.insert("mount".into());
                jail.allow.insert("mount.zfs".into());
                jail.enforce_statfs = 1;
                Some(Delegation {
                    dataset: d.clone(),
                    target: spec.rootfs.join(rel),
                })
            }
            None => None,
        };
        jail.validate()?;
        let mut mounts = Vec::new();
        for b in &spec.binds {
            let rel = relative(&name, "bind destination", &b.dest)?;
            // The delegated dataset is mounted by the jail itself, not bound from the host.
            if delegation
                .as_ref()
                .is_some_and(|d| d.dataset.host_mountpoint == b.source)
            {
                continue;
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
            address,
            user,
            delegation,
        })
    }

    fn run(&self, c: &Cmd) -> Result<()> {
        self.exec.run(c).map(|_| ()).map_err(Into::into)
    }

    /// `jexec NAME ARGV...` as root, for the jail's own network and dataset commands.
    fn in_jail(name: &str, argv: &[&str]) -> Result<Cmd> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        Ok(jls::jexec_cmd(name, None, &argv)?)
    }

    /// The commands that configure a vnet jail's interfaces once it exists.
    fn address_cmds(name: &str, base: &str, a: &BridgeAddress) -> Result<Vec<Cmd>> {
        let jail_if = format!("{base}b");
        let cidr = format!("{}/{}", a.address, a.prefix);
        let gateway = a.gateway.to_string();
        Ok(vec![
            Self::in_jail(
                name,
                &["/sbin/ifconfig", "lo0", "inet", "127.0.0.1/8", "up"],
            )?,
            Self::in_jail(name, &["/sbin/ifconfig", &jail_if, "inet", &cidr, "up"])?,
            Self::in_jail(name, &["/sbin/route", "-q", "add", "default", &gateway])?,
        ])
    }

    fn zfs(args: &[&str]) -> Cmd {
        Cmd::new("zfs").args(args)
    }

    /// Creates the jail of `plan`; on failure undoes every step already done (the
    /// [`JailRuntime::undo_cmds`] of how far it got).
    pub fn create(&self, plan: &JailPlan) -> Result<()> {
        let name = &plan.jail.name;
        let mut done = Progress::default();
        let result = (|| -> Result<()> {
            for m in &plan.mounts {
                self.run(&Cmd::new("mkdir").arg("-p").arg(&m.target))?;
                let mut c = Cmd::new("mount").args(["-t", "nullfs"]);
                if m.readonly {
                    c = c.args(["-o", "ro"]);
                }
                self.run(&c.arg(&m.source).arg(&m.target))?;
                done.mounts += 1;
            }
            if let Some(d) = &plan.delegation {
                self.run(&Cmd::new("mkdir").arg("-p").arg(&d.target))?;
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
                done.epair = Some(host.clone());
                self.run(&Cmd::new("ifconfig").args([&host, "name", &format!("{base}a")]))?;
                done.epair = Some(format!("{base}a"));
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
            done.jail = true;
            if let (Some(base), Some(a)) = (&plan.epair, &plan.address) {
                for c in Self::address_cmds(name, base, a)? {
                    self.run(&c)?;
                }
            }
            if !plan.rules.is_empty() {
                done.rules = true;
            }
            for r in &plan.rules {
                self.run(&rctl::add_cmd(r)?)?;
            }
            if let Some(d) = &plan.delegation {
                let ds = d.dataset.dataset.as_str();
                let jail_mp = format!("mountpoint={}", d.dataset.jail_mountpoint);
                // jailed=on unmounts it from the host.
                self.run(&Self::zfs(&["set", "jailed=on", ds]))?;
                done.jailed = true;
                self.run(&Self::zfs(&["set", &jail_mp, ds]))?;
                self.run(&Self::zfs(&["jail", name, ds]))?;
                done.delegated = true;
                self.run(&Self::in_jail(name, &["zfs", "mount", ds])?)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                let teardown = Self::teardown_cmds(plan)?;
                self.record(name, &teardown);
                self.teardowns
                    .lock()
                    .unwrap()
                    .insert(name.clone(), teardown);
                let mut users = self.users.lock().unwrap();
                match &plan.user {
                    Some(u) => users.insert(name.clone(), u.clone()),
                    None => users.remove(name),
                };
                Ok(())
            }
            Err(e) => {
                // Undo failures are ignored: the original error is what is reported.
                for c in Self::undo_cmds(plan, &done)? {
                    let _ = self.exec.run(&c);
                }
                Err(e)
            }
        }
    }

    /// Everything that removes what [`JailRuntime::create`] made for `plan`, in order: the
    /// rules, the jail's own mount of its dataset and the delegation, the jail, the dataset's
    /// host mountpoint and `jailed=off` (mounted on the host again), the epair, the mounts.
    pub fn teardown_cmds(plan: &JailPlan) -> Result<Vec<Cmd>> {
        Self::undo_cmds(
            plan,
            &Progress {
                mounts: plan.mounts.len(),
                epair: plan.epair.as_ref().map(|b| format!("{b}a")),
                jail: true,
                rules: !plan.rules.is_empty(),
                jailed: plan.delegation.is_some(),
                delegated: plan.delegation.is_some(),
            },
        )
    }

    /// The part of the teardown that undoes what `done` says was made, in teardown order.
    pub fn undo_cmds(plan: &JailPlan, done: &Progress) -> Result<Vec<Cmd>> {
        let name = &plan.jail.name;
        let mut cmds = Vec::new();
        if done.rules {
            cmds.push(rctl::remove_jail_cmd(name)?);
        }
        if let (Some(d), true) = (&plan.delegation, done.delegated) {
            let ds = d.dataset.dataset.as_str();
            cmds.push(Cmd::new("umount").arg(&d.target));
            cmds.push(Self::zfs(&["unjail", name, ds]));
        }
        if done.jail {
            cmds.push(jls::remove_cmd(name)?);
        }
        if let (Some(d), true) = (&plan.delegation, done.jailed) {
            let ds = d.dataset.dataset.as_str();
            let host_mp = format!("mountpoint={}", d.dataset.host_mountpoint.display());
            cmds.push(Self::zfs(&["set", &host_mp, ds]));
            cmds.push(Self::zfs(&["set", "jailed=off", ds]));
            cmds.push(Self::zfs(&["mount", ds]));
        }
        if let Some(host_if) = &done.epair {
            cmds.push(Cmd::new("ifconfig").args([host_if.as_str(), "destroy"]));
        }
        for m in plan.mounts[..done.mounts.min(plan.mounts.len())]
            .iter()
            .rev()
        {
            cmds.push(Cmd::new("umount").arg(&m.target));
        }
        Ok(cmds)
    }

    /// The teardown of a jail known only by name: its rules, the jail, its epair.
    fn teardown_by_name(name: &str) -> Result<Vec<Cmd>> {
        Ok(vec![
            rctl::remove_jail_cmd(name)?,
            jls::remove_cmd(name)?,
            Cmd::new("ifconfig").args([&format!("{}a", epair_base(name)), "destroy"]),
        ])
    }

    fn record_path(&self, name: &str) -> Option<PathBuf> {
        Some(self.state_dir.as_ref()?.join(format!("{name}.json")))
    }

    /// Keeps the teardown in the state dir (best effort: the shim holds it too).
    fn record(&self, name: &str, teardown: &[Cmd]) {
        let Some(path) = self.record_path(name) else {
            return;
        };
        let lists: Vec<Vec<String>> = teardown.iter().map(Cmd::argv_vec).collect();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(data) = serde_json::to_vec(&lists) {
            let _ = warren_runtime::bundle::write_atomic(&path, &data);
        }
    }

    fn recorded(&self, name: &str) -> Option<Vec<Cmd>> {
        let data = std::fs::read(self.record_path(name)?).ok()?;
        let lists: Vec<Vec<String>> = serde_json::from_slice(&data).ok()?;
        lists
            .into_iter()
            .map(|l| {
                let (p, a) = l.split_first()?;
                Some(Cmd::new(p).args(a))
            })
            .collect()
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
    pub fn main_args(&self, spec: &WorkloadRun, plan: &JailPlan) -> Result<Vec<String>> {
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

    /// The shim's `jail.json` for `spec` planned as `plan`, logging under `run_dir/logs`.
    pub fn shim_config(
        &self,
        spec: &WorkloadRun,
        plan: &JailPlan,
        run_dir: &Path,
    ) -> Result<JailShimConfig> {
        Ok(JailShimConfig {
            id: spec.id.clone(),
            program: None,
            jexec: self.main_args(spec, plan)?,
            log_dir: run_dir.join("logs"),
            log_max_bytes: self.log_max_bytes,
            log_max_files: self.log_max_files,
            teardown: Self::teardown_cmds(plan)?
                .iter()
                .map(Cmd::argv_vec)
                .collect(),
        })
    }

    /// Runs a one-shot command in the jail as root through the executor (e.g. `service nginx
    /// reload`), for its output.
    pub fn run_in(&self, id: &str, argv: &[String]) -> Result<warren_exec::Output> {
        let name = jail_name(id)?;
        Ok(self.exec.run(&jls::jexec_cmd(&name, None, argv)?)?)
    }

    /// The argv (after `jexec`) of [`Runtime::exec`]: `req` as the user of the jail's main
    /// process (as this runtime created it; root otherwise), in `req.cwd` or `/`, with a clean
    /// environment of `req.env`.
    pub fn exec_args(&self, id: &str, req: &ExecRequest) -> Result<Vec<String>> {
        let name = jail_name(id)?;
        let user = self.users.lock().unwrap().get(&name).cloned();
        Self::jexec_args(
            &name,
            user.as_deref(),
            &req.argv,
            &req.env,
            req.cwd.as_deref().unwrap_or("/"),
        )
    }

    /// Removes the jail and everything [`JailRuntime::create`] made for it; what is already
    /// gone is not an error. Without a teardown in memory or in the state dir (a jail from
    /// before a restart) the rules, the jail and the epair named after it are removed.
    pub fn destroy(&self, id: &str) -> Result<()> {
        let name = jail_name(id)?;
        let known = self.teardowns.lock().unwrap().get(&name).cloned();
        let cmds = match known.or_else(|| self.recorded(&name)) {
            Some(c) => c,
            None => Self::teardown_by_name(&name)?,
        };
        for c in cmds {
            match self.exec.run(&c) {
                Ok(_) => {}
                Err(e) if is_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.teardowns.lock().unwrap().remove(&name);
        self.users.lock().unwrap().remove(&name);
        if let Some(p) = self.record_path(&name) {
            let _ = std::fs::remove_file(p);
        }
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

    /// Ends a start that did not succeed: the jail's processes, the shim, the jail.
    fn abandon(&self, id: &str, shim: &mut std::process::Child) {
        let _ = self.kill(id, "KILL");
        let _ = shim.kill();
        let _ = shim.wait();
        let _ = self.destroy(id);
    }
}

impl Runtime for JailRuntime {
    fn name(&self) -> &'static str {
        "jail"
    }

    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started> {
        if spec.terminal {
            return Err(RuntimeError::Spec(format!(
                "{}: a terminal is only available to foreground runs",
                spec.id
            )));
        }
        let Some(exe) = self.shim_exe.clone() else {
            return Err(RuntimeError::Unsupported(format!(
                "{}: the jail runtime has no shim executable to supervise jails with",
                spec.id
            )));
        };
        let plan = self.plan(spec)?;
        std::fs::create_dir_all(run_dir).map_err(io_err(run_dir))?;
        let run_dir = run_dir.canonicalize().map_err(io_err(run_dir))?;
        for stale in [shim::STATE_FILE, shim::EXIT_FILE] {
            let p = run_dir.join(stale);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&p)(e)),
                _ => {}
            }
        }
        let cfg = self.shim_config(spec, &plan, &run_dir)?;
        shim::write_jail_config(&run_dir, &cfg)?;
        self.create(&plan)?;
        shim::start(&exe, &run_dir, &spec.id, |child| match child {
            Some(child) => self.abandon(&spec.id, child),
            None => {
                let _ = self.destroy(&spec.id);
            }
        })
    }

    /// `pkill -SIG -j NAME`: every process of the jail.
    fn kill(&self, id: &str, signal: &str) -> Result<()> {
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

    /// SIGSTOP to every process of the jail (jails have no freezer).
    fn freeze(&self, id: &str) -> Result<()> {
        self.kill(id, "STOP")
    }

    /// SIGCONT to every process of the jail.
    fn thaw(&self, id: &str) -> Result<()> {
        self.kill(id, "CONT")
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.destroy(id)
    }

    /// `jls`: an active jail runs, a dying one does not; jls names no main process, and a
    /// stopped (frozen) jail looks like a running one.
    fn observe(&self, id: &str) -> Result<Option<Observed>> {
        let name = jail_name(id)?;
        let out = self.exec.run(&jls::list_cmd())?;
        let jails = jls::parse_jls(&out.stdout_str())?;
        Ok(jails.iter().find(|j| j.name == name).map(|j| Observed {
            running: j.state == jls::JailState::Active,
            frozen: false,
            pid: None,
        }))
    }

    /// `jexec [-U USER] NAME /bin/sh -c ...` as the main process's user, with a clean
    /// environment of `req.env` and `req.cwd` (default `/`); jexec has no terminal option, so
    /// with `req.tty` the caller's pty is the terminal.
    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command> {
        let args = self.exec_args(id, req)?;
        let mut c = warren_exec::std_command("jexec")?;
        c.args(args);
        Ok(c)
    }

    fn run_foreground(&self, spec: &WorkloadRun, _run_dir: &Path) -> Result<std::process::Command> {
        Err(RuntimeError::Unsupported(format!(
            "{}: one-off runs (run --rm, hook jobs, recipe builds) are not available in jails yet",
            spec.id
        )))
    }
}

/// The address of a bridge workload as the runtime wants it.
pub fn bridge_address(address: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> BridgeAddress {
    BridgeAddress {
        address,
        prefix,
        gateway,
    }
}
