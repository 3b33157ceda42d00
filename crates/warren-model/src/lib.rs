//! warren's declarative model.
//!
//! This crate owns everything about *desired state* that can be decided without touching the
//! machine: the workload spec types ([`spec`]), the `warren.toml` parser and validator with
//! file:line:column diagnostics ([`parse`]), the published-port syntax and conflict checks
//! ([`ports`]), the spec hash used for drift detection, the pure reconciliation planner
//! ([`plan`]) with the host's capabilities as an input ([`host`]) and the restart-policy
//! decision, the host resource budget ([`budget`]), the typed event kinds the daemon records and streams ([`event`]), and the
//! Warrenfile recipe parser with version resolution ([`recipe`]).
//!
//! Invariant: nothing in this crate performs I/O (no filesystem, no processes, no clock). Time is
//! an input to the planner, never read by it.

pub mod budget;
pub mod compose;
pub mod event;
pub mod export;
pub mod health;
pub mod hooks;
pub mod host;
pub mod names;
pub mod parse;
pub mod plan;
pub mod ports;
pub mod recipe;
pub mod render;
pub mod spec;

pub use host::{vm_hypervisor, HostCapabilities};
pub use parse::{parse_spec, Diagnostic, Parsed, SpecError};
pub use ports::{PortMapping, Proto};
pub use spec::*;
