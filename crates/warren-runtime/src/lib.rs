//! Workload runtimes: from a resolved [`WorkloadRun`] to a running, supervised workload.
//!
//! - [`events`] is the event-source trait (process exits, file changes): pidfd and inotify on
//!   Linux, kqueue on FreeBSD.
//! - [`bundle`] renders the OCI `config.json` (namespaces, mounts, cgroup limits, hardening).
//! - [`runc`] drives the runc binary through the command executor.
//! - [`shim`] is the per-workload supervisor process (`warren shim RUN_DIR`): it outlives the
//!   daemon, owns the container's stdio and exit status, and writes rotated logs.
//! - [`logs`] writes (shim side), reads and follows those logs.
//! - [`proc`] reads `/proc/PID/stat` to tell a live process from a reused PID.
//! - [`seccomp`] is the default seccomp profile (Docker's default policy), rendered purely.
//! - [`userns`] holds the user-namespace id ranges, the re-owning of datasets into them and
//!   the persistent user+network namespaces of bridge workloads.
//!
//! The [`Runtime`] trait is the kind-neutral backend interface the daemon programs against:
//! a [`WorkloadRun`] (the common description plus a [`Backend`] part) to start, then stop,
//! kill, freeze, thaw, observe, exec into, adopt after a restart and delete by id. The OCI
//! backend ([`oci::OciRuntime`]) implements it on Linux, the jail backend (`warren-jail`) on
//! FreeBSD. Everything compiles on every OS; where
//! Linux is needed (the shim's supervision, `/proc`) other OSes get
//! [`RuntimeError::Unsupported`] or the documented fallback.

pub mod bundle;
pub mod events;
pub mod logs;
pub mod oci;
pub mod proc;
pub mod runc;
pub mod seccomp;
pub mod shim;
pub mod userns;

use std::path::{Path, PathBuf};
use warren_model::Resources;

/// Errors from the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Exec(#[from] warren_exec::ExecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid container spec: {0}")]
    Spec(String),
    #[error("user {user:?} not found in the workload's /etc/passwd")]
    NoSuchUser { user: String },
    #[error("group {group:?} not found in the workload's /etc/group")]
    NoSuchGroup { group: String },
    #[error("shim for {id} failed to start the container: {reason}")]
    ShimFailed { id: String, reason: String },
    /// A feature this OS does not have (the OCI backend, its shim and `/proc` are Linux's).
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    pub dest: String,
    pub readonly: bool,
}

/// A workload to run, fully resolved (no defaults left to fill), in terms every backend
/// shares: the common part (identity, root filesystem, mounts, process, resources, network,
/// user namespace, placement) plus [`Backend`], what only one kind of backend needs.
///
/// Nothing persists it: the daemon builds it from the desired workload each time it starts a
/// run, and the backends write only their own artefacts (the OCI bundle, the jail's shim
/// config).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadRun {
    /// The workload's id on the host (unique there), e.g. `warren-web` or `warren-run-<n>`:
    /// the runc container id, the jail name.
    pub id: String,
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    pub binds: Vec<Bind>,
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs; PATH and HOME are filled in when absent.
    pub env: Vec<String>,
    pub cwd: String,
    /// `uid[:gid]` or `name[:group]` resolved against `<rootfs>/etc/passwd|group`; None = root.
    pub user: Option<String>,
    pub hostname: String,
    pub resources: Resources,
    /// Allocate a terminal for the main process (only for foreground `run`).
    pub terminal: bool,
    /// Where the workload is placed in the host's resource tree: the cgroup path on Linux,
    /// e.g. `/warren/web`.
    pub cgroup_path: String,
    /// The network the workload is attached to.
    #[serde(default)]
    pub network: NetNamespace,
    /// Run in a user namespace (None: the host's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<UserNamespace>,
    /// What one kind of backend needs beyond the common part.
    #[serde(default)]
    pub backend: Backend,
}

/// The backend-specific part of a [`WorkloadRun`]. A runtime refuses a run whose part is not
/// its own ([`WorkloadRun::expect_backend`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// An OCI container (runc): nothing beyond the common part.
    #[default]
    Oci,
    /// A FreeBSD jail and its parameters.
    Jail(JailParams),
    /// A virtual machine: how it boots, its console and its NIC.
    Vm(VmParams),
}

impl Backend {
    /// The kind's name, as runtimes call themselves ([`Runtime::name`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Oci => "oci",
            Backend::Jail(_) => "jail",
            Backend::Vm(_) => "vm",
        }
    }
}

impl WorkloadRun {
    /// The one builder of one-off workloads (a `run`, a hook job, a recipe build): a writable
    /// root, `/` as working directory, root, no limits, no terminal, a private network, no user
    /// namespace, no environment and the OCI backend; the caller changes what differs with
    /// struct update syntax.
    pub fn one_off(
        id: impl Into<String>,
        cgroup_path: impl Into<String>,
        hostname: impl Into<String>,
        rootfs: PathBuf,
        args: Vec<String>,
    ) -> WorkloadRun {
        WorkloadRun {
            id: id.into(),
            rootfs,
            readonly_rootfs: false,
            binds: Vec::new(),
            args,
            env: Vec::new(),
            cwd: "/".into(),
            user: None,
            hostname: hostname.into(),
            resources: Resources::default(),
            terminal: false,
            cgroup_path: cgroup_path.into(),
            network: NetNamespace::Private,
            userns: None,
            backend: Backend::Oci,
        }
    }

    /// The jail parameters of a jail run; None for any other backend.
    pub fn jail(&self) -> Option<&JailParams> {
        match &self.backend {
            Backend::Jail(p) => Some(p),
            Backend::Oci | Backend::Vm(_) => None,
        }
    }

    /// The VM parameters of a VM run; None for any other backend.
    pub fn vm(&self) -> Option<&VmParams> {
        match &self.backend {
            Backend::Vm(p) => Some(p),
            Backend::Oci | Backend::Jail(_) => None,
        }
    }

    /// Fails unless the run's backend-specific part is `runtime`'s kind (a run built for a
    /// jail handed to runc, say).
    pub fn expect_backend(&self, runtime: &str) -> Result<()> {
        if self.backend.kind() == runtime {
            Ok(())
        } else {
            Err(RuntimeError::Spec(format!(
                "{}: the run is built for the {} backend, not for the {runtime} runtime",
                self.id,
                self.backend.kind()
            )))
        }
    }
}

/// The jail-only part of a [`WorkloadRun`] ([`Backend::Jail`]): permissions, the network stack, the address on
/// warren's bridge and a delegated dataset.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JailParams {
    /// `allow.*` permissions granted (names without the prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// A network stack of its own (`vnet`); otherwise an address alias on the bridge (bridge
    /// network), the host's addresses (host) or no IPv4 (none).
    #[serde(default = "yes")]
    pub vnet: bool,
    /// The workload's address on warren's bridge ([`NetNamespace::Bridge`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<BridgeAddress>,
    /// A ZFS dataset handed to the jail with `zfs jail`, mounted by the jail itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailed_dataset: Option<JailedDataset>,
}

/// Maps an I/O error on `path` to [`RuntimeError::Io`], for `map_err`.
pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn yes() -> bool {
    true
}

impl Default for JailParams {
    /// No permissions, vnet, no address, no delegated dataset.
    fn default() -> Self {
        JailParams {
            allow: Vec::new(),
            vnet: true,
            address: None,
            jailed_dataset: None,
        }
    }
}

impl JailParams {
    pub fn is_default(&self) -> bool {
        *self == JailParams::default()
    }
}

/// The VM-only part of a [`WorkloadRun`] ([`Backend::Vm`]). The common part still says what
/// runs: `rootfs` is the tree the VM's root disk is made from (a microVM), `binds` whose
/// source is a dataset become disks of their own, `args`, `env`, `cwd`, `user` and
/// `hostname` are handed to the guest agent, `resources` size the VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct VmParams {
    /// How the VM boots.
    pub boot: VmBoot,
    /// Keep a serial console socket to attach to (`warren console`); its output is always
    /// logged.
    #[serde(default)]
    pub console: bool,
    /// The NIC on warren's bridge (bridge network only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<VmNic>,
    /// The `/etc/hosts` the guest starts with (the names of the bridge's workloads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<String>,
}

/// How a VM boots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmBoot {
    /// A microVM: a Linux kernel (None: the host's default) with warren's initramfs, whose
    /// agent mounts the root disk made from the run's rootfs.
    Kernel {
        kernel: Option<PathBuf>,
        initrd: Option<PathBuf>,
        cmdline: Option<String>,
    },
    /// A full VM: firmware boots its own disk, or an installer `iso` with that disk as the
    /// install's target. The disk lives in `store` (the workload's `data` dataset), made from
    /// the template `disk` or empty with `disk_size` bytes; without a `store` the VM boots
    /// `disk` itself.
    Firmware {
        disk: Option<PathBuf>,
        iso: Option<PathBuf>,
        uefi: bool,
        store: Option<PathBuf>,
        disk_size: Option<u64>,
    },
}

impl Default for VmBoot {
    fn default() -> Self {
        VmBoot::Kernel {
            kernel: None,
            initrd: None,
            cmdline: None,
        }
    }
}

/// A VM's NIC: a tap device the daemon put on the bridge, and the guest's address there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmNic {
    pub tap: String,
    pub address: BridgeAddress,
}

/// An address on warren's bridge: the workload's own, its prefix length and the gateway
/// (the bridge's address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BridgeAddress {
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
}

/// A workload's data dataset delegated to its jail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JailedDataset {
    /// The ZFS name (`tank/warren/workloads/web/data`).
    pub dataset: String,
    /// Where the host mounts it when it is not delegated (its `mountpoint` to restore).
    pub host_mountpoint: PathBuf,
    /// Where the jail mounts it (the workload's `data_path`).
    pub jail_mountpoint: String,
}

/// A container's user namespace: container ids `0..size` are host ids `host_id..host_id+size`
/// (uids and gids alike).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserNamespace {
    pub host_id: u32,
    pub size: u32,
    /// An existing user namespace with that mapping to join, by the path of its bind mount
    /// (a bridge workload's, which owns its network namespace); None makes a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// The network namespace a container runs in.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetNamespace {
    /// A new namespace holding only loopback.
    #[default]
    Private,
    /// The host's namespace (no network isolation).
    Host,
    /// An existing namespace, by the path of its bind mount (`/run/netns/NAME`), prepared
    /// before the container starts (the bridge veth is already in it).
    Path(PathBuf),
    /// warren's bridge, attached by the runtime itself (a jail's epair or address alias, at
    /// [`JailParams::address`]); the OCI runtime joins prepared namespaces instead.
    Bridge,
}

/// What the shim reports once the container is running.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShimState {
    pub id: String,
    pub shim_pid: i32,
    /// The shim's start time in clock ticks since boot (/proc/PID/stat field 22): guards
    /// against PID reuse when re-adopting.
    pub shim_start_ticks: u64,
    /// The container's main process as the host sees it.
    pub container_pid: i32,
    /// Unix milliseconds.
    pub started_at_ms: u64,
}

/// A freshly started container and its shim process.
#[derive(Debug)]
pub struct Started {
    pub state: ShimState,
    pub shim: std::process::Child,
}

/// How the main process ended, written by the shim.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitInfo {
    /// Exit code; 128+signal when killed by a signal.
    pub code: i32,
    pub signal: Option<i32>,
    /// True when the kernel OOM killer ended it (memory limit).
    #[serde(default)]
    pub oom_killed: bool,
    /// Unix milliseconds.
    pub finished_at_ms: u64,
}

/// A process to run inside a running workload: `warren exec`, exec health checks, hooks'
/// commands, the ingress's reloads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// Give it a terminal: the caller wires a pty's slave side to the command's stdio.
    pub tty: bool,
    /// `KEY=VALUE` pairs added to its environment.
    pub env: Vec<String>,
    /// Its working directory; None: the backend's default (the workload's, or `/`).
    pub cwd: Option<String>,
}

/// A file copy ([`Runtime::copy_out`], [`Runtime::copy_in`]): what `warren cp` asks of a
/// workload whose files the host cannot reach (a VM's).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CopyRequest {
    /// An absolute path inside the workload (`DIR/.` for a directory's contents).
    pub path: String,
    /// In: the stream holds a directory's contents, not one entry.
    pub contents: bool,
    /// In: the path must be an existing directory.
    pub directory: bool,
    /// In: keep the archive's owners (otherwise the workload's root's).
    pub keep_owners: bool,
}

impl ExecRequest {
    /// `argv` with no terminal, no extra environment and the default working directory.
    pub fn new(argv: Vec<String>) -> ExecRequest {
        ExecRequest {
            argv,
            ..ExecRequest::default()
        }
    }
}

/// What a backend sees of a workload right now ([`Runtime::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// Its main process (a jail: any process) exists; a frozen workload still runs.
    pub running: bool,
    /// Frozen by [`Runtime::freeze`], as far as the backend can tell.
    pub frozen: bool,
    /// The main process as the host sees it, when the backend knows it.
    pub pid: Option<i32>,
}

/// A workload backend (OCI containers, jails, VMs): every operation in terms of a
/// [`WorkloadRun`] and the workload's id, none in terms of one backend's tool. Methods are
/// blocking; the daemon calls them from blocking tasks.
pub trait Runtime: Send + Sync {
    /// The backend's kind, as [`Backend::kind`] names it (`oci`, `jail`).
    fn name(&self) -> &'static str;
    /// Creates the workload under `run_dir` (the OCI backend: the bundle; a jail: the jail,
    /// its mounts and network) and starts it under a detached shim (its own session,
    /// surviving the caller). Returns once the workload's main process exists (or fails with
    /// the reason, leaving nothing behind). The caller owns the returned shim child and must
    /// reap it when it exits (the shim stays a direct child so no zombie is left to PID 1).
    fn start(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<Started>;
    /// Asks the workload to end cleanly and returns without waiting (containers and jails:
    /// SIGTERM; a VM would ask its guest to power off). The deadline is the caller's: it
    /// watches the shim exit and, when the grace period is over, calls [`Runtime::kill`] with
    /// `KILL` (the engine's stop does, and records that it had to). Absent: not an error.
    fn stop(&self, id: &str) -> Result<()> {
        self.kill(id, "TERM")
    }
    /// Sends a signal, by name (`TERM`, `KILL`, `HUP`, ...), to the workload's main process
    /// (a jail: every process in it). Absent or no longer running: not an error.
    fn kill(&self, id: &str, signal: &str) -> Result<()>;
    /// Freezes every process of a running workload, so a snapshot of its datasets is
    /// consistent; [`Runtime::thaw`] lets it run again.
    fn freeze(&self, id: &str) -> Result<()>;
    /// Lets a workload frozen by [`Runtime::freeze`] run again.
    fn thaw(&self, id: &str) -> Result<()>;
    /// Removes every trace of the workload the backend keeps (runc state and cgroups; a
    /// jail, its mounts, rules and network); no error if absent.
    fn delete(&self, id: &str) -> Result<()>;
    /// What the backend sees of the workload now; None when it knows no such workload.
    fn observe(&self, id: &str) -> Result<Option<Observed>>;
    /// After a daemon restart: whether the run recorded in `state` (written by its shim when
    /// it started) is still this daemon's and running. The OCI and jail backends supervise
    /// through the shim, so the answer is whether that very shim still runs: its pid is alive
    /// with the recorded start time, so a reused pid is not taken for it.
    fn adopt(&self, state: &ShimState) -> bool {
        proc::process_alive(state.shim_pid, state.shim_start_ticks)
    }
    /// A command that runs `req` inside the running workload. The caller wires its stdio (a
    /// pty's slave side when `req.tty`), spawns it and waits; the command's exit status is
    /// the process's.
    fn exec(&self, id: &str, req: &ExecRequest) -> Result<std::process::Command>;
    /// Prepares what this backend needs under `run_dir` (the OCI backend: the bundle) and
    /// returns the command that runs `spec`'s main process in the foreground, for one-off
    /// workloads (`run --rm`, hook jobs, recipe builds); the caller wires its stdio and waits.
    /// The workload is gone when the command returns normally.
    fn run_foreground(&self, spec: &WorkloadRun, run_dir: &Path) -> Result<std::process::Command>;
    /// The workloads' names changed: `hosts` is the new hosts file. Containers and jails see
    /// the shared file (bound or copied by the network backend), so by default there is
    /// nothing to do; a VM's guest is given the new text.
    fn update_names(&self, id: &str, hosts: &str) -> Result<()> {
        let _ = (id, hosts);
        Ok(())
    }
    /// Writes the tar stream of `req.path` inside the running workload to `out`. Only
    /// backends whose workloads' files the host cannot reach implement it (a VM, through its
    /// guest agent); containers and jails are copied through their datasets.
    fn copy_out(&self, id: &str, req: &CopyRequest, out: &mut dyn std::io::Write) -> Result<()> {
        let _ = (req, out);
        Err(RuntimeError::Unsupported(format!(
            "{id}: this runtime copies no files itself"
        )))
    }
    /// Places the tar stream `input` at `req.path` inside the running workload (see
    /// [`Runtime::copy_out`]).
    fn copy_in(
        &self,
        id: &str,
        req: &CopyRequest,
        input: &mut (dyn std::io::Read + Send),
    ) -> Result<()> {
        let _ = (req, input);
        Err(RuntimeError::Unsupported(format!(
            "{id}: this runtime copies no files itself"
        )))
    }
}
