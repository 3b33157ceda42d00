//! Spec types: what an operator declares about a workload.
//!
//! These types are the validated form of a `warren.toml` (see [`crate::parse`]). They serialize
//! to JSON for the store and the API; [`WorkloadSpec::hash`] is the drift key: it covers every
//! field that shapes the running container and nothing else (`state` and `restart` change what
//! the reconciler does, `ports` and `route` change the host's nftables rules and the ingress
//! proxy, not the container itself).
//!
//! Fields added after the first release are skipped when they hold their default, so stored
//! specs and their hashes stay the same until an operator uses the new field.

use crate::ports::PortMapping;
use serde::{Deserialize, Serialize};

mod order;
pub use order::{Dependency, WaitFor};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What sort of isolation a workload runs under.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum Kind {
    #[default]
    Container,
    Jail,
    Vm,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// When a stopped main process is started again.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Whether the operator wants the workload running.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// How the workload is networked.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "kebab-case")]
pub enum NetworkMode {
    /// Its own network namespace on warren's bridge, with an address from the bridge subnet.
    #[default]
    Bridge,
    /// The host's network namespace: its sockets are the host's.
    Host,
    /// Its own network namespace with only loopback.
    None,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether this is the default ([`NetworkMode::Bridge`]), which is left out of the JSON.
    pub fn is_default(&self) -> bool {
        *self == NetworkMode::default()
    }
}

/// TLS choice of a workload's ingress routes.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, Hash, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TlsChoice {
    /// Plain HTTP.
    #[default]
    None,
    /// A certificate issued by warren's local certificate authority.
    Local,
    /// A certificate and key the operator provides (absolute paths on the host).
    Files { cert: String, key: String },
}

/// The path prefix of a route or site when none is given.
pub fn default_route_path() -> String {
    "/".to_string()
}

/// How the ingress reaches the workload: `domains` routed to `port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct RouteSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// The workload port the ingress proxies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path prefix, "/" by default.
    #[serde(default = "default_route_path")]
    pub path: String,
    #[serde(default)]
    pub websocket: bool,
    /// client_max_body_size in bytes; 0 = unlimited; None = nginx default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<u64>,
    #[serde(default)]
    pub tls: TlsChoice,
}

impl Default for RouteSpec {
    /// No domains, path "/".
    fn default() -> Self {
        RouteSpec {
            domains: Vec::new(),
            port: None,
            path: default_route_path(),
            websocket: false,
            max_body: None,
            tls: TlsChoice::None,
        }
    }
}

impl RouteSpec {
    /// Whether the workload is not routed at all (it has no domains).
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

/// Serve the volume's files over the ingress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct SiteSpec {
    pub domains: Vec<String>,
    /// Path prefix, "/" by default.
    #[serde(default = "default_route_path")]
    pub path: String,
    /// List directories that have no index file.
    #[serde(default)]
    pub autoindex: bool,
    #[serde(default)]
    pub tls: TlsChoice,
}

impl Default for SiteSpec {
    /// No domains, path "/".
    fn default() -> Self {
        SiteSpec {
            domains: Vec::new(),
            path: default_route_path(),
            autoindex: false,
            tls: TlsChoice::None,
        }
    }
}

/// Where a workload's root filesystem comes from.
///
/// A full VM (`[workload.NAME.vm]` with `disk` or `iso`, see [`VmOptions::is_full_vm`]) boots
/// its own disk and has no root filesystem: the file gives it no `world`, `image` or `recipe`,
/// and its spec holds the placeholder [`Source::World`] with an empty name
/// ([`WorkloadSpec::rootfs_source`] is `None` for it). No real world has an empty name, so the
/// placeholder never names one; code that provisions a root filesystem asks
/// [`WorkloadSpec::rootfs_source`] first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A base system by name (`host`, `busybox`, ...).
    World(String),
    /// An OCI image reference (resolved by the images subsystem).
    Image(String),
    /// A built Warrenfile recipe: `ns/name` or `ns/name VERSION-PREFIX`.
    Recipe(String),
}

/// The `allow.*` permissions a workload may ask for in `[workload.NAME.jail]` (FreeBSD's
/// jail(8) names without the `allow.` prefix).
pub const JAIL_ALLOW: &[&str] = &[
    "adjtime",
    "chflags",
    "extattr",
    "mlock",
    "mount",
    "mount.devfs",
    "mount.fdescfs",
    "mount.fusefs",
    "mount.linprocfs",
    "mount.linsysfs",
    "mount.nullfs",
    "mount.procfs",
    "mount.tmpfs",
    "mount.zfs",
    "nfsd",
    "quotas",
    "raw_sockets",
    "read_msgbuf",
    "reserved_ports",
    "routing",
    "set_hostname",
    "settime",
    "socket_af",
    "suser",
    "sysvipc",
    "unprivileged_proc_debug",
    "vmm",
];

/// FreeBSD jail options of a workload (`[workload.NAME.jail]`), used where the workload runs as
/// a jail (`kind = "jail"`, or any container on a FreeBSD host). Left out of the JSON while
/// every option holds its default, so older specs keep their hash.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, Hash, schemars::JsonSchema,
)]
pub struct JailOptions {
    /// `allow.*` permissions granted, without the prefix; sorted, each once, every one in
    /// [`JAIL_ALLOW`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Whether the jail has its own network stack (`vnet`, an epair on warren's bridge).
    /// `Some(false)`: an `ip4.addr` alias on the bridge for a bridge workload, the host's
    /// addresses for a host one, no IPv4 for `network = "none"`. `None`: vnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vnet: Option<bool>,
    /// Delegate the workload's data dataset to the jail (`zfs jail`): the jail mounts and
    /// manages it itself (needs the ZFS storage driver).
    #[serde(default, skip_serializing_if = "is_false")]
    pub jailed_dataset: bool,
}

impl JailOptions {
    /// Whether every option holds its default (the options are then left out of the JSON).
    pub fn is_default(&self) -> bool {
        *self == JailOptions::default()
    }

    /// Whether the jail gets its own network stack.
    pub fn vnet(&self) -> bool {
        self.vnet.unwrap_or(true)
    }
}

/// How a VM boots: the firmware of a full VM.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    Hash,
    schemars::JsonSchema,
    strum::Display,
    strum::EnumString,
    strum::AsRefStr,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum VmFirmware {
    /// Legacy BIOS (SeaBIOS under QEMU).
    #[default]
    Bios,
    /// UEFI (OVMF under QEMU, the UEFI bootrom under bhyve); full VMs only.
    Uefi,
}

impl VmFirmware {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Memory a VM gets when `resources.memory` is not given: 512 MiB.
pub const VM_DEFAULT_MEMORY: u64 = 512 << 20;
/// Virtual CPUs a VM gets when `resources.cpus` is not given.
pub const VM_DEFAULT_CPUS: u32 = 1;
/// The longest kernel command line a VM may be given, in bytes (Linux's x86 limit).
pub const VM_MAX_CMDLINE: usize = 2048;

/// Options of a `kind = "vm"` workload (`[workload.NAME.vm]`). A *microVM* boots a Linux
/// kernel (`kernel`, `initrd`, `cmdline`; found on the host when not given) with the
/// workload's root filesystem from its `world`, `image` or `recipe`; a *full VM* boots its own
/// `disk` or an installer `iso` with `firmware`, and has no root filesystem source. Left out of
/// the JSON while every option holds its default, so older specs keep their hash.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, Hash, schemars::JsonSchema,
)]
pub struct VmOptions {
    /// The kernel a microVM boots (an absolute path on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// The initial ramdisk of a microVM (an absolute path on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// Extra kernel command line of a microVM (at most 2048 bytes, one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// A raw or qcow2 disk image a full VM boots (an absolute path on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<PathBuf>,
    /// An installer ISO attached as a CD-ROM to a full VM (an absolute path on the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iso: Option<PathBuf>,
    /// The size in bytes of a full VM's own disk when it is made empty (an `iso` without a
    /// `disk`), or the size a copied `disk` is grown to; `None`: 8 GiB for an empty disk, a
    /// copy keeps its template's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<u64>,
    /// The firmware of a full VM; `uefi` only with `disk` or `iso`.
    #[serde(default, skip_serializing_if = "VmFirmware::is_default")]
    pub firmware: VmFirmware,
    /// Keep the serial console attachable (`warren console NAME`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub console: bool,
}

impl VmFirmware {
    /// Whether this is the default ([`VmFirmware::Bios`]), which is left out of the JSON.
    pub fn is_default(&self) -> bool {
        *self == VmFirmware::default()
    }
}

impl VmOptions {
    /// Whether every option holds its default (the options are then left out of the JSON).
    pub fn is_default(&self) -> bool {
        *self == VmOptions::default()
    }

    /// Whether this is a full VM: it boots its own `disk` or an installer `iso` (and has no
    /// root filesystem from a world, image or recipe).
    pub fn is_full_vm(&self) -> bool {
        self.disk.is_some() || self.iso.is_some()
    }
}

/// Resource limits. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct Resources {
    /// Memory limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    /// CPU limit in cores (fractional allowed, e.g. 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes/threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Bytes the workload may write (rootfs and data together, beyond its world).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<u64>,
}

/// A volume mounted into a workload: `name:/path[:ro|rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct VolumeMount {
    pub volume: String,
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

/// Automatic snapshots: one every `every_secs`, keeping the newest `keep` automatic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct SnapshotPolicy {
    pub every_secs: u64,
    pub keep: u32,
}

/// A named dataset shared by workloads (one writer at a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VolumeSpec {
    pub name: String,
    /// Size limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotPolicy>,
    /// Serve the volume's files over the ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteSpec>,
}

/// One workload as declared. `name` is a validated DNS label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    pub source: Source,
    /// argv of the main process; empty means the source's default (`/bin/sh` for worlds, the
    /// image's Cmd for images). With an image it follows the entrypoint, as its Cmd would.
    #[serde(default)]
    pub command: Vec<String>,
    /// Replaces an image's Entrypoint (images only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]`, resolved against the workload's own /etc/passwd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub state: DesiredState,
    #[serde(default)]
    pub resources: Resources,
    /// Where the persistent `data` dataset is mounted inside the workload.
    #[serde(default = "default_data_path")]
    pub data_path: String,
    /// Volumes mounted into the workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Automatic snapshots of the workload's datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotPolicy>,
    /// How the workload is networked (left out of the JSON when it is the default, bridge).
    #[serde(default, skip_serializing_if = "NetworkMode::is_default")]
    pub network: NetworkMode,
    /// Host ports published to the workload (bridge network only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// The ingress route to the workload.
    #[serde(default, skip_serializing_if = "RouteSpec::is_empty")]
    pub route: RouteSpec,
    /// The health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<crate::health::HealthCheck>,
    /// Event hooks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<crate::hooks::Hook>,
    /// Mount the root filesystem read-only (the data dataset, volumes and a tmpfs on `/tmp`,
    /// `/var/tmp` and `/run` stay writable).
    #[serde(default, skip_serializing_if = "is_false")]
    pub readonly_rootfs: bool,
    /// Run in a user namespace: root inside is an unprivileged id range on the host.
    #[serde(default, skip_serializing_if = "is_false")]
    pub userns: bool,
    /// FreeBSD jail options (left out of the JSON while all are default).
    #[serde(default, skip_serializing_if = "JailOptions::is_default")]
    pub jail: JailOptions,
    /// VM options of a `kind = "vm"` workload (left out of the JSON while all are default).
    #[serde(default, skip_serializing_if = "VmOptions::is_default")]
    pub vm: VmOptions,
    /// The workloads this one starts after, each with its condition (`after`, `wait`). Only
    /// the order of starts: not part of the drift hash, so changing it recreates nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Dependency>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

pub fn default_data_path() -> String {
    "/data".to_string()
}

impl WorkloadSpec {
    /// A minimal spec, used by tests and `run --rm`.
    pub fn new(name: &str, source: Source) -> Self {
        WorkloadSpec {
            name: name.to_string(),
            kind: Kind::Container,
            source,
            command: Vec::new(),
            entrypoint: None,
            env: BTreeMap::new(),
            workdir: None,
            user: None,
            hostname: None,
            restart: RestartPolicy::Always,
            state: DesiredState::Running,
            resources: Resources::default(),
            data_path: default_data_path(),
            volumes: Vec::new(),
            snapshots: None,
            network: NetworkMode::Bridge,
            ports: Vec::new(),
            route: RouteSpec::default(),
            health: None,
            hooks: Vec::new(),
            readonly_rootfs: false,
            userns: false,
            jail: JailOptions::default(),
            vm: VmOptions::default(),
            after: Vec::new(),
        }
    }

    /// Where the workload's root filesystem comes from; `None` for a full VM, which boots its
    /// own disk (its `source` is then a placeholder, see [`Source`]).
    pub fn rootfs_source(&self) -> Option<&Source> {
        (!(self.kind == Kind::Vm && self.vm.is_full_vm())).then_some(&self.source)
    }

    /// The guest memory of a VM in bytes: `resources.memory`, or [`VM_DEFAULT_MEMORY`]
    /// (512 MiB) when the file does not give it.
    pub fn vm_memory_bytes(&self) -> u64 {
        self.resources.memory.unwrap_or(VM_DEFAULT_MEMORY)
    }

    /// The virtual CPUs of a VM: `resources.cpus` rounded up to a whole CPU (a fraction stays
    /// the limit on host CPU time), or [`VM_DEFAULT_CPUS`] (1) when the file does not give it.
    pub fn vm_cpus(&self) -> u32 {
        match self.resources.cpus {
            Some(c) if c.is_finite() && c > 0.0 => (c.ceil() as u32).max(1),
            _ => VM_DEFAULT_CPUS,
        }
    }

    /// The drift key: sha256 over the canonical JSON of every field that shapes the container.
    /// Changing `state`, `restart`, the snapshot schedule, `ports`, `route`, `health`, `hooks` or
    /// the start order (`after`) does not change the hash; changing `network` does. A spec with the default network hashes as it did
    /// before networking existed (the field is left out of the JSON).
    pub fn hash(&self) -> String {
        let mut shape = self.clone();
        shape.state = DesiredState::Running;
        shape.restart = RestartPolicy::Always;
        shape.snapshots = None;
        shape.ports = Vec::new();
        shape.route = RouteSpec::default();
        shape.health = None;
        shape.hooks = Vec::new();
        shape.after = Vec::new();
        // serde_json over BTreeMaps and plain structs is deterministic.
        let json = serde_json::to_vec(&shape).expect("spec serializes");
        let digest = Sha256::digest(&json);
        hex::encode(&digest[..16])
    }

    /// The hostname the container sees.
    pub fn effective_hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }
}

/// A whole declarative file: every workload and volume, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct SpecFile {
    pub workloads: BTreeMap<String, WorkloadSpec>,
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeSpec>,
    /// The `[host]` table: what the host keeps for itself (`None`: the file has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<crate::budget::HostReserve>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant's spelling: the strum names list them all in order, each parses back to
    /// its variant, and `Into<&str>` and `Display` agree.
    fn assert_spellings<T>(all: &[T])
    where
        T: Copy
            + std::fmt::Debug
            + PartialEq
            + std::str::FromStr
            + strum::VariantNames
            + Into<&'static str>
            + std::fmt::Display,
    {
        let names: Vec<&'static str> = all.iter().map(|v| (*v).into()).collect();
        assert_eq!(names, T::VARIANTS, "{all:?}");
        for (v, name) in all.iter().zip(names) {
            assert_eq!(name.parse::<T>().ok(), Some(*v), "{name}");
            assert_eq!(v.to_string(), name);
        }
        assert!("no-such-variant".parse::<T>().is_err());
    }

    /// [`assert_spellings`], and the JSON form of each variant is the same spelling.
    fn assert_serde_spellings<T>(all: &[T])
    where
        T: Copy
            + std::fmt::Debug
            + PartialEq
            + std::str::FromStr
            + strum::VariantNames
            + Into<&'static str>
            + std::fmt::Display
            + Serialize
            + serde::de::DeserializeOwned,
    {
        assert_spellings(all);
        for v in all {
            let name: &'static str = (*v).into();
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(name.into()), "{v:?}");
            assert_eq!(serde_json::from_value::<T>(json).unwrap(), *v);
        }
    }

    #[test]
    fn kind_spellings() {
        assert_serde_spellings(&[Kind::Container, Kind::Jail, Kind::Vm]);
        assert_eq!(Kind::Vm.as_str(), "vm");
    }

    #[test]
    fn restart_policy_spellings() {
        use RestartPolicy::*;
        assert_serde_spellings(&[Always, OnFailure, Never]);
        assert_eq!(OnFailure.as_str(), "on-failure");
        assert!("on_failure".parse::<RestartPolicy>().is_err());
        assert!("OnFailure".parse::<RestartPolicy>().is_err());
    }

    #[test]
    fn desired_state_spellings() {
        assert_serde_spellings(&[DesiredState::Running, DesiredState::Stopped]);
    }

    #[test]
    fn network_mode_spellings() {
        use NetworkMode::*;
        assert_serde_spellings(&[Bridge, Host, None]);
    }

    #[test]
    fn health_spellings() {
        use crate::health::{HealthStatus, OnUnhealthy};
        assert_serde_spellings(&[OnUnhealthy::Restart, OnUnhealthy::None]);
        assert_serde_spellings(&[
            HealthStatus::Starting,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
        ]);
        assert_eq!(HealthStatus::Unhealthy.as_str(), "unhealthy");
    }

    #[test]
    fn hook_event_spellings() {
        use crate::hooks::HookEvent::*;
        assert_serde_spellings(&[Start, Stop, Exit, Crash, Health, Schedule, Change]);
    }

    #[test]
    fn proto_spellings() {
        use crate::ports::Proto;
        // Proto has no serde form; its spelling is the one in "8080:80/udp".
        assert_spellings(&[Proto::Tcp, Proto::Udp]);
        assert_eq!(
            crate::ports::PortMapping::parse("53:53/udp").unwrap().proto,
            Proto::Udp
        );
    }

    /// The spec whose hash is pinned below.
    fn sample() -> WorkloadSpec {
        let mut w = WorkloadSpec::new("web", Source::World("host".into()));
        w.command = vec!["python3".into(), "-m".into(), "http.server".into()];
        w.env.insert("PORT".into(), "8080".into());
        w.hostname = Some("frontend".into());
        w.resources.memory = Some(256 << 20);
        w.resources.cpus = Some(0.5);
        w.volumes = vec![VolumeMount {
            volume: "media".into(),
            path: "/srv/media".into(),
            readonly: true,
        }];
        w
    }

    /// Hashes computed before `network`, `ports` and `route` existed: workloads stored by an
    /// older warren must not be recreated on upgrade.
    #[test]
    fn hash_is_unchanged_for_specs_without_networking() {
        assert_eq!(sample().hash(), "c5b597809495abd2ccf00372e7a0b451");
        assert_eq!(
            WorkloadSpec::new("db", Source::Image("postgres:16".into())).hash(),
            "07ef1c4fdbab2f0005965ca3db3f7920"
        );
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(!json.contains("network") && !json.contains("ports") && !json.contains("route"));
    }

    /// The hardening switches are left out of the JSON while off (old hashes stay), and each
    /// changes the hash when on (the container is recreated).
    #[test]
    fn hardening_switches_change_the_hash_only_when_set() {
        let base = sample().hash();
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(!json.contains("readonly_rootfs") && !json.contains("userns"));
        let mut ro = sample();
        ro.readonly_rootfs = true;
        let mut userns = sample();
        userns.userns = true;
        assert_ne!(ro.hash(), base);
        assert_ne!(userns.hash(), base);
        assert_ne!(ro.hash(), userns.hash());
        let back: WorkloadSpec =
            serde_json::from_str(&serde_json::to_string(&userns).unwrap()).unwrap();
        assert_eq!(back, userns);
        assert_eq!(back.hash(), userns.hash());
    }

    /// Jail options are left out of the JSON while default (old hashes stay) and change the
    /// hash when set, as they shape the jail.
    #[test]
    fn jail_options_change_the_hash_only_when_set() {
        let base = sample().hash();
        assert!(!serde_json::to_string(&sample()).unwrap().contains("jail"));
        let mut w = sample();
        w.jail.allow = vec!["raw_sockets".into()];
        let allow = w.hash();
        assert_ne!(allow, base);
        w.jail.vnet = Some(false);
        assert_ne!(w.hash(), allow);
        w.jail.jailed_dataset = true;
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(
            json["jail"],
            serde_json::json!({"allow": ["raw_sockets"], "vnet": false, "jailed_dataset": true})
        );
        let back: WorkloadSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, w);
        assert!(!w.jail.vnet() && JailOptions::default().vnet());
        assert!(JAIL_ALLOW.windows(2).all(|p| p[0] < p[1]), "sorted");
    }

    /// VM options are left out of the JSON while default (old hashes stay) and change the hash
    /// when set, as they shape the VM; the firmware is spelled in lowercase.
    #[test]
    fn vm_options_change_the_hash_only_when_set() {
        assert_serde_spellings(&[VmFirmware::Bios, VmFirmware::Uefi]);
        let base = sample().hash();
        let mut w = sample();
        w.kind = Kind::Vm;
        let vm_kind = w.hash();
        assert!(!serde_json::to_string(&w).unwrap().contains("\"vm\":"));
        w.vm.console = true;
        assert_ne!(w.hash(), vm_kind);
        w.vm.cmdline = Some("quiet".into());
        let micro = w.hash();
        assert!(!w.vm.is_full_vm());
        assert_eq!(w.rootfs_source(), Some(&w.source));
        w.vm.cmdline = None;
        w.vm.disk = Some("/srv/vm/disk.qcow2".into());
        w.vm.firmware = VmFirmware::Uefi;
        assert!(w.vm.is_full_vm());
        assert_eq!(w.rootfs_source(), None);
        assert_ne!(w.hash(), micro);
        assert_ne!(w.hash(), base);
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(
            json["vm"],
            serde_json::json!({"disk": "/srv/vm/disk.qcow2", "firmware": "uefi", "console": true})
        );
        let back: WorkloadSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, w);
        // A full VM's options on a container leave its source alone.
        w.kind = Kind::Container;
        assert_eq!(w.rootfs_source(), Some(&w.source));
    }

    /// The start order is left out of the JSON while empty (old hashes stay) and never
    /// changes the hash: ordering is not a property of the running instance.
    #[test]
    fn start_order_never_changes_the_hash() {
        assert_serde_spellings(&[WaitFor::Started, WaitFor::Healthy, WaitFor::Completed]);
        let base = sample().hash();
        assert!(!serde_json::to_string(&sample()).unwrap().contains("after"));
        let mut w = sample();
        w.after = vec![
            Dependency::new("db", WaitFor::Healthy),
            Dependency::new("cache", WaitFor::Started),
        ];
        assert_eq!(w.hash(), base);
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(
            json["after"],
            serde_json::json!([{"name": "db", "wait": "healthy"}, {"name": "cache"}])
        );
        let back: WorkloadSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, w);
    }

    #[test]
    fn vm_defaults_apply_when_resources_omit_them() {
        let mut w = sample();
        w.resources = Resources::default();
        assert_eq!((w.vm_memory_bytes(), w.vm_cpus()), (512 << 20, 1));
        w.resources.memory = Some(2 << 30);
        w.resources.cpus = Some(0.25);
        assert_eq!((w.vm_memory_bytes(), w.vm_cpus()), (2 << 30, 1));
        w.resources.cpus = Some(3.0);
        assert_eq!(w.vm_cpus(), 3);
        w.resources.cpus = Some(3.01);
        assert_eq!(w.vm_cpus(), 4);
    }

    #[test]
    fn ports_and_route_do_not_change_the_hash_but_network_does() {
        let base = sample().hash();
        let mut w = sample();
        w.ports = vec![PortMapping::parse("8080:80").unwrap()];
        w.route = RouteSpec {
            domains: vec!["web.home.arpa".into()],
            port: Some(80),
            path: "/app".into(),
            websocket: true,
            max_body: Some(0),
            tls: TlsChoice::Local,
        };
        assert_eq!(w.hash(), base);
        w.network = NetworkMode::Bridge;
        assert_eq!(w.hash(), base);
        w.network = NetworkMode::Host;
        let host = w.hash();
        assert_ne!(host, base);
        w.network = NetworkMode::None;
        assert_ne!(w.hash(), base);
        assert_ne!(w.hash(), host);
    }

    #[test]
    fn new_fields_round_trip_through_json() {
        let mut w = sample();
        w.network = NetworkMode::Host;
        w.ports = vec![
            PortMapping::parse("8080:80/tcp").unwrap(),
            PortMapping::parse("[::1]:5353:53/udp").unwrap(),
        ];
        w.route = RouteSpec {
            domains: vec!["git.home.arpa".into(), "*.apps.home.arpa".into()],
            port: Some(3000),
            path: "/".into(),
            websocket: false,
            max_body: Some(50 << 20),
            tls: TlsChoice::Files {
                cert: "/etc/ssl/a.pem".into(),
                key: "/etc/ssl/a.key".into(),
            },
        };
        let json = serde_json::to_value(&w).unwrap();
        assert_eq!(json["network"], "host");
        assert_eq!(json["ports"][1], "[::1]:5353:53/udp");
        assert_eq!(json["route"]["tls"]["files"]["cert"], "/etc/ssl/a.pem");
        let back: WorkloadSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back, w);

        let v = VolumeSpec {
            name: "www".into(),
            size: None,
            snapshots: None,
            site: Some(SiteSpec {
                domains: vec!["www.home.arpa".into()],
                path: "/".into(),
                autoindex: true,
                tls: TlsChoice::Local,
            }),
        };
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(serde_json::from_str::<VolumeSpec>(&json).unwrap(), v);
    }

    #[test]
    fn defaults_fill_absent_fields() {
        let w: WorkloadSpec =
            serde_json::from_str(r#"{"name":"a","source":{"world":"host"}}"#).unwrap();
        assert_eq!(w, WorkloadSpec::new("a", Source::World("host".into())));
        assert_eq!(w.route.path, "/");
        let r: RouteSpec = serde_json::from_str(r#"{"domains":["a.b"],"port":80}"#).unwrap();
        assert_eq!(r.path, "/");
        assert_eq!(r.tls, TlsChoice::None);
        assert_eq!(
            serde_json::from_str::<TlsChoice>(r#""local""#).unwrap(),
            TlsChoice::Local
        );
        let v: VolumeSpec = serde_json::from_str(r#"{"name":"v"}"#).unwrap();
        assert_eq!(v.site, None);
        assert_eq!(NetworkMode::None.as_str(), "none");
        assert!(NetworkMode::default().is_default());
    }
}
