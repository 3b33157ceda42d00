//! warren's virtual machines, as pure command builders, parsers and a protocol codec, so every
//! part is compiled and tested on every OS (the bhyve half is pinned by golden files on Linux
//! hosts, as the jail backend is).
//!
//! - [`config`]: [`config::VmConfig`], the kind-neutral description of one VM (CPUs, memory,
//!   how it boots, disks, a tap NIC, the agent channel, QMP and serial console sockets, the
//!   accelerator) and its validation, every error naming the field.
//! - [`qemu`]: the `qemu-system-x86_64` argv of a config for Debian 12's QEMU 7.2: the
//!   `microvm` machine (virtio-mmio, no PCI) for kernel boots, `q35` (SeaBIOS or OVMF) for
//!   disk images and installer ISOs.
//! - [`qmp`]: a client of QEMU's machine protocol over any `Read + Write` (greeting,
//!   capability negotiation, commands, events kept aside).
//! - [`probe`]: what the host's QEMU offers (`-accel help`, `-machine help` parsers) and the
//!   choice between KVM and TCG from a probe's result.
//! - [`bhyve`]: FreeBSD's hypervisor: the `bhyve`, `bhyveload`, `grub-bhyve` and `bhyvectl`
//!   argv of a config and a lifecycle (tap into the bridge, load, start) run through the executor, a failure at
//!   any step undone exactly.
//! - [`initramfs`]: a `newc` cpio writer, and the guest initramfs of a microVM (the agent as
//!   `/init`, its shared libraries, the kernel modules it loads), cached by its inputs.
//! - [`kernel`]: the kernel microVMs boot (found or fetched from Debian and unpacked, never
//!   installed) and the dependency-ordered modules the guest needs.
//! - [`agent`]: the framed protocol between the host and the guest agent (`warren-agent`)
//!   over the agent's virtio-serial port.
//!
//! - [`agent`]: the protocol the host and the guest agent (the `warren-agent` binary, PID 1
//!   of a microVM) speak over the agent's virtio-serial port.
//! - [`disk`]: a microVM's root disk made from its rootfs tree and the persistent disks kept
//!   inside its datasets.
//! - [`guest`]: what a microVM boots: the kernel ([`kernel`], Debian's unpacked into the state
//!   dir) and warren's initramfs holding the agent ([`initramfs`]), cached; and the KVM probe.
//! - [`runtime`]: [`runtime::VmRuntime`], the `Runtime` of `kind = "vm"`: QEMU under the VM
//!   shim ([`shim`]), which relays the agent (output into the workload's logs, exec sessions
//!   and control requests over its control socket, [`shim::client`]).
//! - [`bhyve_runtime`]: [`bhyve_runtime::BhyveRuntime`], the `Runtime` of `kind = "vm"` on
//!   FreeBSD: full VMs under bhyve, supervised by the jail-style shim (`jail.json` with
//!   `bhyve` as its program and the VM's destruction as its teardown), and microVMs loaded by
//!   `grub-bhyve`, their files shared over virtio-9p, under the VM shim with the agent.
//!
//! Both runtimes are [`VmBackend`]s: the daemon's dispatcher asks them which ids they own.
//!
//! Invariants: the builders and parsers do no I/O except through [`warren_exec::Executor`] or on a stream
//! the caller hands in; an argv is only built from a config that validated. The runtime and
//! its shim are the only parts that start processes, and they do it through the executor or
//! `warren_exec::std_command`.

pub mod agent;
pub mod bhyve;
pub mod bhyve_runtime;
pub mod config;
pub mod disk;
pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod probe;
pub mod qemu;
pub mod qmp;
pub mod runtime;
pub mod shim;

pub use config::VmConfig;

/// A VM backend as the daemon's dispatcher sees it: a [`warren_runtime::Runtime`] for
/// [`warren_runtime::Backend::Vm`] runs that knows which ids it started.
pub trait VmBackend: warren_runtime::Runtime {
    /// Whether `id` is a VM this backend started (and has not deleted).
    fn owns(&self, id: &str) -> bool;
}

/// Errors of validating a VM config and of running its commands.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A value that cannot be used, naming the field.
    #[error("vm {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Command output that does not parse.
    #[error("cannot parse `{command}` output: {reason}")]
    Output { command: String, reason: String },
    #[error(transparent)]
    Exec(#[from] warren_exec::ExecError),
}

/// A VM backend's error as the `Runtime` trait reports it: a failed command stays an exec
/// error, everything else is a problem with the VM's spec or files.
impl From<VmError> for warren_runtime::RuntimeError {
    fn from(e: VmError) -> Self {
        match e {
            VmError::Exec(e) => warren_runtime::RuntimeError::Exec(e),
            other => warren_runtime::RuntimeError::Spec(other.to_string()),
        }
    }
}

impl VmError {
    /// The field an [`VmError::Invalid`] names.
    pub fn field(&self) -> Option<&str> {
        match self {
            VmError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> VmError {
    VmError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

pub type Result<T, E = VmError> = std::result::Result<T, E>;
