//! The VM's shim: `warren shim RUN_DIR` when the run directory holds `vm.json`
//! ([`VmShimConfig`]). Like a container's shim it is spawned detached by the runtime, reports
//! `ok` or `error: REASON` on the status pipe, outlives the daemon, writes `state.json` once
//! the workload's main process runs and `exit.json` when it has ended, and copies the
//! workload's output into the same rotated CRI logs. What differs is what it supervises:
//!
//! 1. it starts the hypervisor (the argv in `vm.json`: QEMU in the workload's cgroup on
//!    Linux, bhyve on FreeBSD, [`crate::bhyve_runtime`]) and connects to the agent's
//!    virtio-serial socket;
//! 2. it greets the agent, sends the main process's [`StartSpec`] and waits for `Started`
//!    (a VM that does not boot within the deadline is killed and reported);
//! 3. it relays: the main process's output into the logs; every connection on its control
//!    socket (`ctl.sock`, see [`client`]) either an exec session, multiplexed onto the
//!    agent's channels, or one control request (signal, freeze, thaw, power off) answered
//!    with `Ack` or `Error`;
//!    When the VM's console is attachable (a full VM's always, a microVM's with
//!    `console = true`), the console hub holds QEMU's one serial connection
//!    ([`SERIAL_SOCKET`]) and serves [`CONSOLE_SOCKET`] to any number of clients; a full VM's
//!    console output also goes into its log.
//! 4. SIGTERM asks the guest to power off (the agent stops the main process, syncs and
//!    unmounts); after [`STOP_GRACE`] QEMU is killed;
//! 5. when QEMU has exited it writes `exit.json` with the main process's exit status as the
//!    agent reported it (or QEMU's own, when the guest died before reporting), removes the
//!    cgroup, runs `vm.json`'s teardown (bhyve's VM and tap) and exits.
//!
//! Threads, not a poll loop: one reads the agent, one accepts control connections (and one
//! per session), one waits for signals, the main thread waits for QEMU. QEMU and the guest
//! dominate the cost of a VM; the shim stays simple.

use crate::agent::proto::{self, Frame, Kind};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The VM shim's configuration inside the run directory.
pub const CONFIG_FILE: &str = "vm.json";
/// The shim's control socket inside the run directory.
pub const CTL_SOCKET: &str = "ctl.sock";
/// The serial console clients attach to (`warren console`) inside the run directory, served
/// by the shim's console hub.
pub const CONSOLE_SOCKET: &str = "console.sock";
/// QEMU's own serial console socket inside the run directory: one connection, the shim's.
pub const SERIAL_SOCKET: &str = "serial.sock";
/// How long the guest gets to power off after a stop before QEMU is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a VM gets from QEMU's start to the agent's `Started`.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(110);

/// `RUN_DIR/vm.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmShimConfig {
    pub id: String,
    /// The hypervisor's argv, program first: QEMU's, or bhyve's on FreeBSD (the field keeps
    /// its name so `vm.json` files already written still read).
    pub qemu: Vec<String>,
    /// The agent's virtio-serial socket (QEMU listens on it).
    pub agent_socket: PathBuf,
    /// What the agent starts as the workload's main process; None for a full VM, which has
    /// no agent: it runs until QEMU exits, and its serial console is its log.
    pub start: Option<proto::StartSpec>,
    /// QEMU's serial console socket, when the console is attachable: the shim's console hub
    /// holds its one connection (and copies a full VM's console into its log).
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    /// Where the hub serves the console to clients ([`CONSOLE_SOCKET`]).
    #[serde(default)]
    pub console_attach: Option<PathBuf>,
    pub log_dir: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// The cgroup QEMU runs in (relative to the hierarchy's root), and its memory limit
    /// (Linux only).
    pub cgroup_path: String,
    pub memory_limit: Option<u64>,
    /// Commands run, in order, once the hypervisor has exited: bhyve's VM destruction
    /// (`bhyvectl --destroy`) and its tap's removal; empty for QEMU, which leaves nothing.
    #[serde(default)]
    pub teardown: Vec<Vec<String>>,
}

/// Reads `RUN_DIR/vm.json`, if the run directory is a VM's.
pub fn read_config(run_dir: &Path) -> Option<Result<VmShimConfig, String>> {
    let path = run_dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).ok()?;
    Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())))
}

/// What the shim answers a control request with: `Ack`, or `Error` with the reason.
pub fn reply_ok(frame: &Frame) -> Result<(), String> {
    match frame.kind {
        Kind::Ack => Ok(()),
        Kind::Error => Err(frame
            .parse::<proto::ErrorMsg>()
            .map(|e| e.message)
            .unwrap_or_else(|e| e.to_string())),
        other => Err(format!("unexpected {other:?} in reply")),
    }
}

#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod console;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
mod supervise;
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
pub use supervise::main;

/// The VM shim runs QEMU on Linux and bhyve on FreeBSD.
#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
pub fn main(run_dir: &Path) -> ! {
    let mut status = warren_runtime::shim::take_status_pipe();
    let msg = "the VM shim runs on Linux and FreeBSD only";
    match status.as_mut() {
        Some(s) => {
            use std::io::Write;
            let _ = write!(s, "error: {msg}");
        }
        None => warren_runtime::shim::note(run_dir, msg),
    }
    std::process::exit(1)
}

pub mod client;
