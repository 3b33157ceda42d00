//! The start order of a workload: the workloads it starts after ([`Dependency`]) and what it
//! waits for of each ([`WaitFor`]). The planner decides from them
//! ([`crate::plan::unmet_dependencies`]); they are not part of the drift hash.

use serde::{Deserialize, Serialize};

/// What a workload waits for before it starts: the condition one of its `after`
/// dependencies must meet ([`Dependency`]).
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
pub enum WaitFor {
    /// The dependency's main process is running (or its last run ended with status 0).
    #[default]
    Started,
    /// The dependency is running and its health check passes (it must declare one).
    Healthy,
    /// The dependency's last run ended with status 0 and it is not running (a one-shot job).
    Completed,
}

impl WaitFor {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether this is the default ([`WaitFor::Started`]), which is left out of the JSON.
    pub fn is_default(&self) -> bool {
        *self == WaitFor::default()
    }
}

/// One entry of a workload's `after`: the workload it starts after and what it waits for.
/// The file's `wait` on the dependent is the default of entries that do not give their own;
/// the parser resolves it, so every stored entry holds its condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash, schemars::JsonSchema)]
pub struct Dependency {
    /// The workload waited for (declared in the same file).
    pub name: String,
    #[serde(default, skip_serializing_if = "WaitFor::is_default")]
    pub wait: WaitFor,
}

impl Dependency {
    pub fn new(name: &str, wait: WaitFor) -> Self {
        Dependency {
            name: name.to_string(),
            wait,
        }
    }
}
