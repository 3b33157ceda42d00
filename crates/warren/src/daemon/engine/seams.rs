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
