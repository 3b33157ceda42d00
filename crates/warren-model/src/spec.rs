//! Spec types: what an operator declares about a workload.
//!
//! These types are the validated form of a `warren.toml` (see [`crate::parse`]). They serialize
//! to JSON for the store and the API; [`WorkloadSpec::hash`] is the drift key: it covers every
//! field that shapes the running container and nothing else (`state` and `restart` change what
//! the reconciler does, not the container itself).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What sort of isolation a workload runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Container,
    Jail,
    Vm,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Container => "container",
            Kind::Jail => "jail",
            Kind::Vm => "vm",
        }
    }
}

/// When a stopped main process is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

/// Whether the operator wants the workload running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DesiredState {
    #[default]
    Running,
    Stopped,
}

impl DesiredState {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredState::Running => "running",
            DesiredState::Stopped => "stopped",
        }
    }
}

/// Where a workload's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A base system by name (`host`, `busybox`, ...).
    World(String),
    /// An OCI image reference (resolved by the images subsystem).
    Image(String),
}

/// Resource limits. `None` means unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct VolumeMount {
    pub volume: String,
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

/// Automatic snapshots: one every `every_secs`, keeping the newest `keep` automatic ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct SnapshotPolicy {
    pub every_secs: u64,
    pub keep: u32,
}

/// A named dataset shared by workloads (one writer at a time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    /// Size limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotPolicy>,
}

/// One workload as declared. `name` is a validated DNS label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub name: String,
    #[serde(default)]
    pub kind: Kind,
    pub source: Source,
    /// argv of the main process; empty means the source's default (`/bin/sh` for worlds).
    #[serde(default)]
    pub command: Vec<String>,
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
        }
    }

    /// The drift key: sha256 over the canonical JSON of every field that shapes the container.
    /// Changing `state`, `restart` or the snapshot schedule does not change the hash.
    pub fn hash(&self) -> String {
        let mut shape = self.clone();
        shape.state = DesiredState::Running;
        shape.restart = RestartPolicy::Always;
        shape.snapshots = None;
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SpecFile {
    pub workloads: BTreeMap<String, WorkloadSpec>,
    #[serde(default)]
    pub volumes: BTreeMap<String, VolumeSpec>,
}
