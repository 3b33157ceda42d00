//! The engine's seams: the traits through which it reaches what it does not own. Downward,
//! its backends (the clock its decisions read, the bridge network it syncs, the shims it
//! supervises); upward, nothing: a service above the engine that the engine's users need to
//! find (the Scheme evaluator) registers itself here, and services that react to events
//! subscribe to the engine's event bus ([`super::Engine::subscribe`]).

use std::future::Future;
use std::pin::Pin;

/// A boxed future, for the seams' async methods (trait objects cannot have `async fn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Evaluates Scheme expressions for hooks and the API (implemented by the REPL service,
/// which registers itself with [`super::Engine::set_evaluator`]).
pub trait Evaluator: Send + Sync {
    /// The printed value of the last form of `expr`, or the error.
    fn eval(&self, expr: String) -> BoxFuture<'_, Result<String, String>>;
}

/// The time the engine's decisions read (the planner's `now`, backoff expiry, the time of a
/// failed start or of an exit without a recorded status). Tests drive a manual clock.
pub trait Clock: Send + Sync {
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
}

/// The host's wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        warren_store::now_ms()
    }
}

/// The shims the engine supervises: starting a workload's main process under a shim and
/// learning when that shim exits. The shim records how the main process ended in the run
/// directory (`exit.json`, read by the engine) before it exits; this seam only says when.
pub trait Shims: Send + Sync {
    /// Starts the container under a detached shim (blocking); returns once the main process
    /// exists. The shim writes its state to `run_dir/state.json`.
    fn start(
        &self,
        spec: &warren_runtime::WorkloadRun,
        run_dir: &std::path::Path,
    ) -> anyhow::Result<warren_runtime::ShimState>;
    /// Whether the shim recorded in `state` still runs (after a daemon restart).
    fn alive(&self, state: &warren_runtime::ShimState) -> bool;
    /// Resolves when the shim of `state` has exited (and is reaped, if this daemon started it).
    fn exited(&self, state: &warren_runtime::ShimState) -> BoxFuture<'static, std::io::Result<()>>;
}
