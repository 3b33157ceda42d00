//! Hand-written fakes of the engine's backends, for tests that drive the engine in-process
//! without root: a scripted runtime (fake pids; exits scripted per workload as code, signal
//! and OOM kill; every call recorded) that is also the engine's [`Shims`] seam, an in-memory
//! storage, an executor that succeeds without running anything, a recording bridge network,
//! and a manual clock. The store is the real one on a temporary file.

use super::seams::{BoxFuture, BridgeJoin, BridgeNetwork, Clock, RunningOnBridge, Shims};
use super::{Backends, Engine};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use warren_exec::{Cmd, ExecError, Executor, Output, Process, Streams};
use warren_runtime::{ExecRequest, ExitInfo, Observed, Runtime, ShimState, Started, WorkloadRun};
use warren_storage::{
    DatasetId, DatasetInfo, Result as StorageResult, SnapshotInfo, Staged, Storage, StorageError,
};

/// A clock that moves only when told to.
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(start_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(start_ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a scripted run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptedExit {
    /// How long the run lasted, by the clock (its exit time is its start plus this).
    pub after_ms: u64,
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
}

impl ScriptedExit {
    /// A run that ends by itself with `code` after `after_ms`.
    pub fn code(code: i32, after_ms: u64) -> ScriptedExit {
        ScriptedExit {
            after_ms,
            code,
            signal: None,
            oom_killed: false,
        }
    }

    /// A run the kernel's OOM killer ends (SIGKILL).
    pub fn oom(after_ms: u64) -> ScriptedExit {
        ScriptedExit {
            after_ms,
            code: 137,
            signal: Some(9),
            oom_killed: true,
        }
    }
}

/// One run the fake runtime started.
struct Run {
    workload: String,
    run_dir: PathBuf,
    state: ShimState,
    alive: bool,
    /// Set once the shim "exited".
    exited: watch::Sender<bool>,
}

#[derive(Default)]
struct RuntimeState {
    /// Every call, in order: `start web`, `signal web TERM`, `delete web`, ...
    calls: Vec<String>,
    /// Every run by shim pid, alive or ended.
    runs: HashMap<i32, Run>,
    /// What the next runs of a workload do; a workload with nothing scripted runs until
    /// signalled.
    script: HashMap<String, VecDeque<ScriptedExit>>,
    /// Start times (by the clock) of each workload's runs.
    starts: BTreeMap<String, Vec<u64>>,
    /// Starts that fail, per workload.
    failing_starts: BTreeSet<String>,
    /// The run each workload was last started with.
    last_runs: HashMap<String, WorkloadRun>,
    next_pid: i32,
}

/// A scripted container runtime: starting returns fake pids, a run ends when its script says
/// so (or when signalled), and every call is recorded.
pub struct FakeRuntime {
    clock: Arc<ManualClock>,
    /// The engine's instance id prefix of container ids (`warren-<instance>-`).
    prefix: String,
    state: Mutex<RuntimeState>,
}

impl FakeRuntime {
    pub fn new(clock: Arc<ManualClock>, instance: &str) -> Arc<FakeRuntime> {
        Arc::new(FakeRuntime {
            clock,
            prefix: format!("warren-{instance}-"),
            state: Mutex::new(RuntimeState {
                next_pid: 1000,
                ..Default::default()
            }),
        })
    }

    fn workload<'a>(&self, id: &'a str) -> &'a str {
        id.strip_prefix(&self.prefix).unwrap_or(id)
    }

    /// Scripts how the next runs of `workload` end, in order.
    pub fn script(&self, workload: &str, exits: impl IntoIterator<Item = ScriptedExit>) {
        self.state
            .lock()
            .unwrap()
            .script
            .entry(workload.to_string())
            .or_default()
            .extend(exits);
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The calls so far naming `workload`.
    pub fn calls_for(&self, workload: &str) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.split(' ').nth(1) == Some(workload))
            .collect()
    }

    /// The clock's time at each start of `workload`.
    /// The run `workload` was last started with.
    pub fn last_run(&self, workload: &str) -> Option<WorkloadRun> {
        self.state.lock().unwrap().last_runs.get(workload).cloned()
    }

    pub fn starts(&self, workload: &str) -> Vec<u64> {
        self.state
            .lock()
            .unwrap()
            .starts
            .get(workload)
            .cloned()
            .unwrap_or_default()
    }

    /// How many runs are alive now.
    pub fn running(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .runs
            .values()
            .filter(|r| r.alive)
            .count()
    }

    /// Ends the live run of `workload` as `exit` says (the shim records it, then exits).
    pub fn end(&self, workload: &str, exit: ScriptedExit) {
        let mut st = self.state.lock().unwrap();
        if let Some(run) = st
            .runs
            .values_mut()
            .find(|r| r.alive && r.workload == workload)
        {
            run.alive = false;
            finish(run, exit);
            st.calls.push(format!("exit {workload} {}", exit.code));
        }
    }
}

impl FakeRuntime {
    /// Ends the live run of `workload` as `signal` would (TERM unless KILL), after as long as
    /// it has run by the clock.
    fn end_signalled(&self, workload: &str, signal: &str) {
        let (sig, code) = match signal {
            "KILL" => (9, 137),
            _ => (15, 143),
        };
        let ran = {
            let st = self.state.lock().unwrap();
            st.runs
                .values()
                .find(|r| r.alive && r.workload == workload)
                .map(|r| self.clock.now_ms().saturating_sub(r.state.started_at_ms))
        };
        if let Some(after_ms) = ran {
            self.end(
                workload,
                ScriptedExit {
                    after_ms,
                    code,
                    signal: Some(sig),
                    oom_killed: false,
                },
            );
        }
    }
}

/// Writes the run's exit status as the shim does, then lets its watchers see it exit.
fn finish(run: &Run, exit: ScriptedExit) {
    let info = ExitInfo {
        code: exit.code,
        signal: exit.signal,
        oom_killed: exit.oom_killed,
        finished_at_ms: run.state.started_at_ms + exit.after_ms,
    };
    std::fs::write(
        run.run_dir.join("exit.json"),
        serde_json::to_vec(&info).unwrap(),
    )
    .unwrap();
    run.exited.send_replace(true);
}

impl Runtime for FakeRuntime {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(&self, _spec: &WorkloadRun, _run_dir: &Path) -> warren_runtime::Result<Started> {
        // The engine starts workloads through its Shims seam, never here.
        Err(warren_runtime::RuntimeError::Other(
            "the fake runtime starts runs through Shims::start".into(),
        ))
    }

    fn stop(&self, id: &str) -> warren_runtime::Result<()> {
        let workload = self.workload(id).to_string();
        self.state
            .lock()
            .unwrap()
            .calls
            .push(format!("stop {workload}"));
        self.end_signalled(&workload, "TERM");
        Ok(())
    }

    fn kill(&self, id: &str, signal: &str) -> warren_runtime::Result<()> {
        let workload = self.workload(id).to_string();
        self.state
            .lock()
            .unwrap()
            .calls
            .push(format!("kill {workload} {signal}"));
        self.end_signalled(&workload, signal);
        Ok(())
    }

    fn freeze(&self, id: &str) -> warren_runtime::Result<()> {
        let w = self.workload(id).to_string();
        self.state.lock().unwrap().calls.push(format!("freeze {w}"));
        Ok(())
    }

    fn thaw(&self, id: &str) -> warren_runtime::Result<()> {
        let w = self.workload(id).to_string();
        self.state.lock().unwrap().calls.push(format!("thaw {w}"));
        Ok(())
    }

    fn update_names(&self, id: &str, hosts: &str) -> warren_runtime::Result<()> {
        let names: Vec<&str> = hosts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .collect();
        let call = format!("update-names {} {}", self.workload(id), names.join(","));
        self.state.lock().unwrap().calls.push(call);
        Ok(())
    }

    fn delete(&self, id: &str) -> warren_runtime::Result<()> {
        let w = self.workload(id).to_string();
        self.state.lock().unwrap().calls.push(format!("delete {w}"));
        Ok(())
    }

    fn observe(&self, id: &str) -> warren_runtime::Result<Option<Observed>> {
        let w = self.workload(id);
        let st = self.state.lock().unwrap();
        Ok(st
            .runs
            .values()
            .find(|r| r.alive && r.workload == w)
            .map(|r| Observed {
                running: true,
                frozen: false,
                pid: Some(r.state.container_pid),
            }))
    }

    fn adopt(&self, state: &ShimState) -> bool {
        Shims::alive(self, state)
    }

    fn exec(&self, _id: &str, _req: &ExecRequest) -> warren_runtime::Result<std::process::Command> {
        Err(warren_runtime::RuntimeError::Other(
            "the fake runtime runs no commands".into(),
        ))
    }

    fn run_foreground(
        &self,
        _spec: &WorkloadRun,
        _run_dir: &Path,
    ) -> warren_runtime::Result<std::process::Command> {
        Err(warren_runtime::RuntimeError::Other(
            "the fake runtime runs no commands".into(),
        ))
    }
}

impl Shims for FakeRuntime {
    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> anyhow::Result<ShimState> {
        let workload = self.workload(&spec.id).to_string();
        let now = self.clock.now_ms();
        let mut st = self.state.lock().unwrap();
        st.calls.push(format!("start {workload}"));
        st.starts.entry(workload.clone()).or_default().push(now);
        st.last_runs.insert(workload.clone(), spec.clone());
        if st.failing_starts.contains(&workload) {
            anyhow::bail!("scripted start failure");
        }
        st.next_pid += 2;
        let state = ShimState {
            id: spec.id.clone(),
            shim_pid: st.next_pid,
            shim_start_ticks: 1,
            container_pid: st.next_pid + 1,
            started_at_ms: now,
        };
        std::fs::write(
            run_dir.join("state.json"),
            serde_json::to_vec(&state).unwrap(),
        )?;
        let (exited, _) = watch::channel(false);
        st.runs.insert(
            state.shim_pid,
            Run {
                workload: workload.clone(),
                run_dir: run_dir.to_path_buf(),
                state: state.clone(),
                alive: true,
                exited,
            },
        );
        let scripted = st.script.get_mut(&workload).and_then(|q| q.pop_front());
        drop(st);
        if let Some(exit) = scripted {
            // Ends at once: the exit is recorded now and seen as soon as it is watched.
            self.end(&workload, exit);
        }
        Ok(state)
    }

    fn alive(&self, state: &ShimState) -> bool {
        self.state
            .lock()
            .unwrap()
            .runs
            .get(&state.shim_pid)
            .is_some_and(|r| r.alive)
    }

    fn exited(&self, state: &ShimState) -> BoxFuture<'static, std::io::Result<()>> {
        let rx = self
            .state
            .lock()
            .unwrap()
            .runs
            .get(&state.shim_pid)
            .map(|r| r.exited.subscribe());
        Box::pin(async move {
            if let Some(mut rx) = rx {
                let _ = rx.wait_for(|v| *v).await;
            }
            Ok(())
        })
    }
}

#[derive(Default)]
struct StorageState {
    /// Every mutating call, in order: `create_rootfs web base`, `ensure_data web`, ...
    calls: Vec<String>,
    worlds: BTreeSet<String>,
    /// Rootfs datasets: workload → the world it was made from.
    rootfs: BTreeMap<String, String>,
    data: BTreeSet<String>,
    volumes: BTreeSet<String>,
    quotas: BTreeMap<String, Option<u64>>,
}

/// A storage that keeps its datasets in memory. Only world metadata is a file (under a
/// temporary root), since the engine reads it as one; snapshots and streams are unsupported.
pub struct MemStorage {
    root: PathBuf,
    state: Mutex<StorageState>,
}

impl MemStorage {
    pub fn new(root: PathBuf) -> Arc<MemStorage> {
        std::fs::create_dir_all(root.join("worlds")).unwrap();
        Arc::new(MemStorage {
            root,
            state: Mutex::new(StorageState::default()),
        })
    }

    /// Adds a sealed world (with its metadata file).
    pub fn add_world(&self, name: &str) {
        let meta = warren_storage::WorldMeta {
            name: name.to_string(),
            binds: Vec::new(),
            default_command: vec!["/bin/sh".into()],
            created_at: 0,
        };
        std::fs::write(
            self.world_meta_path(name),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        self.state.lock().unwrap().worlds.insert(name.to_string());
    }

    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn has_rootfs(&self, workload: &str) -> bool {
        self.state.lock().unwrap().rootfs.contains_key(workload)
    }

    pub fn has_data(&self, workload: &str) -> bool {
        self.state.lock().unwrap().data.contains(workload)
    }

    fn record(&self, call: String) -> std::sync::MutexGuard<'_, StorageState> {
        let mut st = self.state.lock().unwrap();
        st.calls.push(call);
        st
    }

    fn unsupported<T>(what: &str) -> StorageResult<T> {
        Err(StorageError::Unsupported(format!(
            "{what}: the in-memory storage has none"
        )))
    }
}

impl Storage for MemStorage {
    fn driver(&self) -> &'static str {
        "memory"
    }

    fn root(&self) -> &Path {
        &self.root
    }

    fn create_world_dataset(&self, world: &str) -> StorageResult<PathBuf> {
        drop(self.record(format!("create_world_dataset {world}")));
        Ok(self.world_path(world))
    }

    fn create_world_from(&self, world: &str, parent: &str) -> StorageResult<PathBuf> {
        let st = self.record(format!("create_world_from {world} {parent}"));
        if !st.worlds.contains(parent) {
            return Err(StorageError::NoSuchWorld(parent.to_string()));
        }
        Ok(self.world_path(world))
    }

    fn seal_world(&self, world: &str) -> StorageResult<()> {
        let mut st = self.record(format!("seal_world {world}"));
        st.worlds.insert(world.to_string());
        Ok(())
    }

    fn delete_world(&self, world: &str) -> StorageResult<()> {
        let mut st = self.record(format!("delete_world {world}"));
        st.worlds.remove(world);
        Ok(())
    }

    fn list_worlds(&self) -> StorageResult<Vec<String>> {
        Ok(self.state.lock().unwrap().worlds.iter().cloned().collect())
    }

    fn create_rootfs(&self, workload: &str, world: &str) -> StorageResult<PathBuf> {
        let mut st = self.record(format!("create_rootfs {workload} {world}"));
        if !st.worlds.contains(world) {
            return Err(StorageError::NoSuchWorld(world.to_string()));
        }
        st.rootfs.insert(workload.to_string(), world.to_string());
        Ok(self.rootfs_path(workload))
    }

    fn delete_rootfs(&self, workload: &str) -> StorageResult<()> {
        let mut st = self.record(format!("delete_rootfs {workload}"));
        st.rootfs.remove(workload);
        Ok(())
    }

    fn ensure_data(&self, workload: &str) -> StorageResult<PathBuf> {
        let mut st = self.record(format!("ensure_data {workload}"));
        st.data.insert(workload.to_string());
        Ok(self.data_path(workload))
    }

    fn delete_data(&self, workload: &str) -> StorageResult<()> {
        let mut st = self.record(format!("delete_data {workload}"));
        st.data.remove(workload);
        Ok(())
    }

    fn list_datasets(&self) -> StorageResult<Vec<DatasetInfo>> {
        let st = self.state.lock().unwrap();
        let mut out = Vec::new();
        for w in &st.worlds {
            out.push(DatasetInfo {
                name: format!("worlds/{w}"),
                path: self.world_path(w),
                readonly: true,
            });
        }
        for w in st.rootfs.keys() {
            out.push(DatasetInfo {
                name: format!("workloads/{w}/rootfs"),
                path: self.rootfs_path(w),
                readonly: false,
            });
        }
        for w in &st.data {
            out.push(DatasetInfo {
                name: format!("workloads/{w}/data"),
                path: self.data_path(w),
                readonly: false,
            });
        }
        for v in &st.volumes {
            let id = DatasetId::Volume(v.clone());
            out.push(DatasetInfo {
                name: id.key(),
                path: self.dataset_path(&id),
                readonly: false,
            });
        }
        Ok(out)
    }

    fn ensure_volume(&self, name: &str) -> StorageResult<PathBuf> {
        let mut st = self.record(format!("ensure_volume {name}"));
        st.volumes.insert(name.to_string());
        Ok(self.dataset_path(&DatasetId::Volume(name.to_string())))
    }

    fn delete_volume(&self, name: &str) -> StorageResult<()> {
        let mut st = self.record(format!("delete_volume {name}"));
        st.volumes.remove(name);
        Ok(())
    }

    fn list_volumes(&self) -> StorageResult<Vec<String>> {
        Ok(self.state.lock().unwrap().volumes.iter().cloned().collect())
    }

    fn snapshot(&self, _id: &DatasetId, _label: &str) -> StorageResult<SnapshotInfo> {
        Self::unsupported("snapshots")
    }

    fn snapshots(&self, _id: &DatasetId) -> StorageResult<Vec<SnapshotInfo>> {
        Ok(Vec::new())
    }

    fn rollback(
        &self,
        _id: &DatasetId,
        _label: &str,
        _destroy_newer: bool,
    ) -> StorageResult<Vec<String>> {
        Self::unsupported("rollback")
    }

    fn delete_snapshot(&self, _id: &DatasetId, _label: &str) -> StorageResult<()> {
        Self::unsupported("snapshots")
    }

    fn clone_dataset(
        &self,
        _src: &DatasetId,
        _label: Option<&str>,
        _dst: &DatasetId,
    ) -> StorageResult<()> {
        Self::unsupported("clones")
    }

    fn set_quota(&self, id: &DatasetId, bytes: Option<u64>) -> StorageResult<()> {
        let mut st = self.record(format!("set_quota {} {bytes:?}", id.key()));
        st.quotas.insert(id.key(), bytes);
        Ok(())
    }

    fn set_workload_quota(&self, workload: &str, bytes: Option<u64>) -> StorageResult<()> {
        let mut st = self.record(format!("set_workload_quota {workload} {bytes:?}"));
        st.quotas.insert(workload.to_string(), bytes);
        Ok(())
    }

    fn workload_usage(&self, workload: &str) -> StorageResult<(u64, Option<u64>)> {
        let st = self.state.lock().unwrap();
        Ok((0, st.quotas.get(workload).copied().flatten()))
    }

    fn usage(&self, id: &DatasetId) -> StorageResult<(u64, Option<u64>)> {
        let st = self.state.lock().unwrap();
        Ok((0, st.quotas.get(&id.key()).copied().flatten()))
    }

    fn send(
        &self,
        _id: &DatasetId,
        _label: &str,
        _since: Option<&str>,
        _out: &mut dyn std::io::Write,
    ) -> StorageResult<()> {
        Self::unsupported("streams")
    }

    fn receive_staged(
        &self,
        _id: &DatasetId,
        _label: &str,
        _input: &mut dyn std::io::Read,
    ) -> StorageResult<Staged> {
        Self::unsupported("streams")
    }

    fn commit_staged(&self, _staged: Staged) -> StorageResult<()> {
        Self::unsupported("streams")
    }

    fn abort_staged(&self, _staged: Staged) -> StorageResult<()> {
        Self::unsupported("streams")
    }

    fn sweep_staged(&self) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// An executor that runs nothing: every command succeeds with no output and is recorded.
#[derive(Default)]
pub struct OkExecutor {
    ran: Mutex<Vec<String>>,
}

impl OkExecutor {
    pub fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }
}

impl Executor for OkExecutor {
    fn run(&self, cmd: &Cmd) -> Result<Output, ExecError> {
        self.ran.lock().unwrap().push(cmd.argv_string());
        Ok(Output {
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    fn spawn(&self, cmd: &Cmd, _streams: Streams) -> Result<Box<dyn Process>, ExecError> {
        Err(ExecError::Spawn {
            argv: cmd.argv_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the fake executor starts no processes",
            ),
        })
    }
}

/// An engine over fakes in a temporary state dir, and the fakes to script and inspect it.
/// A bridge network that records what the engine asks of it (`attach web`, `detach web`,
/// `sync-rules`, ...) and keeps every ruleset it was given, without touching the host.
/// Addresses come from the store's IPAM table, as on a host; rulesets are rendered with the
/// nft renderer, so one the engine could not load is an error here too.
pub struct FakeNet {
    settings: crate::daemon::NetSettings,
    calls: Mutex<Vec<String>>,
    attached: Mutex<BTreeSet<String>>,
    rulesets: Mutex<Vec<warren_net::ruleset::Ruleset>>,
    /// The hosts file as the real backend would render it, once synced.
    hosts: Mutex<Option<String>>,
}

impl FakeNet {
    pub fn new() -> Arc<FakeNet> {
        Arc::new(FakeNet {
            settings: Default::default(),
            calls: Mutex::new(Vec::new()),
            attached: Mutex::new(BTreeSet::new()),
            hosts: Mutex::new(None),
            rulesets: Mutex::new(Vec::new()),
        })
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The workloads attached now.
    pub fn attached(&self) -> BTreeSet<String> {
        self.attached.lock().unwrap().clone()
    }

    /// The ruleset loaded last, if any was.
    pub fn ruleset(&self) -> Option<warren_net::ruleset::Ruleset> {
        self.rulesets.lock().unwrap().last().cloned()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

impl BridgeNetwork for FakeNet {
    fn settings(&self) -> &crate::daemon::NetSettings {
        &self.settings
    }

    fn ensure_bridge(&self) -> anyhow::Result<Vec<String>> {
        self.record("ensure-bridge".into());
        Ok(Vec::new())
    }

    fn attach(
        &self,
        store: &warren_store::Store,
        name: &str,
        _userns: Option<u32>,
    ) -> anyhow::Result<std::net::Ipv4Addr> {
        let subnet = self.settings.subnet;
        let address = store.assign_address(name, |taken| {
            warren_net::ipam::allocate(&subnet, name, taken)
        })??;
        self.record(format!("attach {name}"));
        self.attached.lock().unwrap().insert(name.to_string());
        Ok(address)
    }

    fn join(&self, name: &str, _userns: Option<u32>) -> BridgeJoin {
        BridgeJoin {
            namespace: warren_runtime::NetNamespace::Path(PathBuf::from(format!(
                "/run/netns/fake-{name}"
            ))),
            binds: Vec::new(),
            userns_path: None,
        }
    }

    fn attach_tap(
        &self,
        store: &warren_store::Store,
        name: &str,
    ) -> anyhow::Result<(String, std::net::Ipv4Addr)> {
        let subnet = self.settings.subnet;
        let address = store.assign_address(name, |taken| {
            warren_net::ipam::allocate(&subnet, name, taken)
        })??;
        self.record(format!("attach-tap {name}"));
        self.attached.lock().unwrap().insert(name.to_string());
        Ok((format!("tap-{name}"), address))
    }

    fn tap_name(&self, name: &str) -> String {
        format!("tap-{name}")
    }

    fn hosts_text(&self) -> Option<String> {
        let text = self.hosts.lock().unwrap().clone();
        text.or_else(|| Some("127.0.0.1 localhost\n".into()))
    }

    fn detach(&self, store: &warren_store::Store, name: &str, release: bool) -> anyhow::Result<()> {
        self.record(format!("detach {name}"));
        self.attached.lock().unwrap().remove(name);
        if release {
            store.release_address(name)?;
        }
        Ok(())
    }

    fn rules_loaded(&self) -> bool {
        !self.rulesets.lock().unwrap().is_empty()
    }

    fn sync_rules(&self, ruleset: &warren_net::ruleset::Ruleset) -> anyhow::Result<bool> {
        warren_net::nft::render(ruleset)?;
        let mut loaded = self.rulesets.lock().unwrap();
        if loaded.last() == Some(ruleset) {
            return Ok(false);
        }
        self.record("sync-rules".into());
        loaded.push(ruleset.clone());
        Ok(true)
    }

    fn sync_hosts(
        &self,
        specs: &[&warren_model::WorkloadSpec],
        addresses: &BTreeMap<String, std::net::Ipv4Addr>,
        _rootfs: &dyn Fn(&str) -> PathBuf,
    ) -> anyhow::Result<bool> {
        let text = crate::daemon::netnames::render_hosts(specs, addresses);
        let mut last = self.hosts.lock().unwrap();
        if last.as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        *last = Some(text);
        Ok(true)
    }

    fn install_names(&self, _rootfs: &Path) -> anyhow::Result<()> {
        Ok(())
    }

    fn repair(
        &self,
        _bridge_desired: bool,
        running: &[RunningOnBridge],
    ) -> anyhow::Result<Vec<String>> {
        let names: Vec<&str> = running.iter().map(|r| r.name.as_str()).collect();
        self.record(format!("repair {}", names.join(",")));
        Ok(Vec::new())
    }
}

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub runtime: Arc<FakeRuntime>,
    pub storage: Arc<MemStorage>,
    pub exec: Arc<OkExecutor>,
    pub net: Arc<FakeNet>,
    pub engine: Arc<Engine>,
}

/// The daemon settings of a test engine in `state_dir`.
pub fn test_config(state_dir: &Path) -> crate::daemon::Config {
    crate::daemon::Config {
        state_dir: state_dir.to_path_buf(),
        socket: state_dir.join("warren.sock"),
        driver: warren_storage::pool::Driver::Dir,
        pool_size: 0,
        zfs_pool: String::new(),
        tick: Duration::from_secs(3600),
        parallel: 8,
        stop_timeout: Duration::from_secs(5),
        backoff: warren_model::plan::Backoff {
            base_ms: 1000,
            cap_ms: 8000,
            stable_ms: 30_000,
        },
        instance: "test".into(),
        runc_root: state_dir.join("runc"),
        net: Default::default(),
        ingress: Default::default(),
        listen: None,
        allow_host_hooks: false,
        spec: None,
        repl_time_limit: Duration::from_secs(1),
        metrics_listen: None,
    }
}

impl Harness {
    /// A fresh engine with one world, `base`.
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let runtime = FakeRuntime::new(clock.clone(), "test");
        let storage = MemStorage::new(dir.path().join("storage"));
        storage.add_world("base");
        let exec = Arc::new(OkExecutor::default());
        let net = FakeNet::new();
        let engine = Self::engine_over(dir.path(), &clock, &runtime, &storage, &exec, &net);
        Harness {
            dir,
            clock,
            runtime,
            storage,
            exec,
            net,
            engine,
        }
    }

    fn engine_over(
        dir: &Path,
        clock: &Arc<ManualClock>,
        runtime: &Arc<FakeRuntime>,
        storage: &Arc<MemStorage>,
        exec: &Arc<OkExecutor>,
        net: &Arc<FakeNet>,
    ) -> Arc<Engine> {
        let store = warren_store::Store::open(&dir.join("warren.db")).unwrap();
        Engine::with_backends(
            test_config(dir),
            store,
            Backends {
                storage: storage.clone(),
                runtime: runtime.clone(),
                shims: runtime.clone(),
                exec: exec.clone(),
                clock: clock.clone(),
                net: net.clone(),
                caps: warren_model::HostCapabilities::for_os("linux").with(warren_model::Kind::Vm),
            },
        )
        .unwrap()
    }

    /// A second engine over the same store, fakes and state dir: the daemon restarted
    /// (the runs the fake runtime holds survive, as shims do).
    pub fn restart(&mut self) {
        self.engine = Self::engine_over(
            self.dir.path(),
            &self.clock,
            &self.runtime,
            &self.storage,
            &self.exec,
            &self.net,
        );
    }

    /// The manual clock's time.
    pub fn clock_now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Stores `specs` as the desired state (as an apply does).
    pub fn apply(&self, specs: &[warren_model::WorkloadSpec]) {
        self.engine.store.apply(specs, &[]).unwrap();
    }

    /// One reconcile pass, waiting until every step it dispatched has finished.
    pub async fn pass(&self) -> Option<u64> {
        let next = self.engine.clone().reconcile_once().await.unwrap();
        let mut names: Vec<String> = self.engine.desired_all().unwrap().into_keys().collect();
        names.extend(self.engine.observed_all().into_keys());
        for n in names {
            drop(self.engine.lock(&n).await);
        }
        next
    }

    /// Waits (a bounded time) until `check` holds of the engine.
    pub async fn until(&self, what: &str, check: impl Fn(&Engine) -> bool) {
        for _ in 0..500 {
            if check(&self.engine) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        panic!(
            "timed out waiting until {what}: observed {:?}; events {:?}",
            self.engine.observed_all(),
            self.engine
                .store
                .events(0, None, 100)
                .unwrap()
                .into_iter()
                .map(|e| format!("{:?} {}", e.workload, e.kind))
                .collect::<Vec<_>>()
        );
    }
}
