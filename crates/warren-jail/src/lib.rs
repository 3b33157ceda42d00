//! warren's FreeBSD backend, as pure command builders and parsers plus one [`Runtime`]
//! implementation that drives them through the command executor.
//!
//! - [`conf`]: [`conf::JailSpec`], the parameters of one jail, rendered as a `jail.conf`
//!   fragment and as `jail -c` arguments, and the parser of such fragments (round trip).
//! - [`jls`]: observed state from `jls --libxo json -v`, and the `jexec` / `jail -r` builders.
//! - [`rctl`]: resource limits as `rctl` rules (memory, CPU percentage, processes), rendered
//!   from warren's `Resources` and parsed back from `rctl` / `rctl -h -u` output.
//! - [`devfs`]: devfs rulesets, as `/etc/devfs.rules` text and as `devfs rule` commands.
//! - [`runtime`]: [`runtime::JailRuntime`], the `Runtime` of FreeBSD hosts: create, start, exec,
//!   stop and destroy as exact command sequences, every failure undone.
//!
//! Invariants: nothing here does I/O except through [`warren_exec::Executor`] (and the
//! runtime's spawning of `jexec` for a jail's main process); everything compiles and is tested
//! on every OS, so the FreeBSD behaviour is pinned by golden files on Linux hosts.
//!
//! [`Runtime`]: warren_runtime::Runtime

pub mod conf;
pub mod devfs;
pub mod jls;
pub mod rctl;
pub mod runtime;

/// Errors of rendering, parsing and running jail commands.
#[derive(Debug, thiserror::Error)]
pub enum JailError {
    /// A value that cannot be used in a jail parameter, naming the field.
    #[error("jail {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A `jail.conf` fragment that does not parse, with its line.
    #[error("jail.conf line {line}: {reason}")]
    Conf { line: usize, reason: String },
    /// Command output that does not parse.
    #[error("cannot parse `{command}` output: {reason}")]
    Output { command: String, reason: String },
    #[error(transparent)]
    Exec(#[from] warren_exec::ExecError),
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> JailError {
    JailError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
